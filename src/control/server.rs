//! The control socket's server side, inside `swarm-node start`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_actors::membership::MemberView;
use swarm_actors::model::{NodeState, Role};
use swarm_actors::node::NodeHandle;
use swarm_actors::registry::Registry;
use swarm_actors::wire::{read_frame, write_frame};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::proto::{ControlRequest, ControlResponse, NodeInfo};

/// Client connections served at once; more wait in the listen backlog.
pub const CONTROL_CONNECTIONS_MAX: usize = 64;
/// Deadline for reading a request and for answering it.
pub const CONTROL_DEADLINE_MS: u64 = 10_000;

#[derive(Clone)]
pub struct ControlContext {
    pub node: NodeHandle,
    pub registry: Registry,
    /// Whether this node leads the cluster's management (holds the CA, for now).
    pub leads: bool,
}

/// Binds the socket (replacing a stale one) with mode 0600 and serves it until the task is
/// dropped.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, ctx: ControlContext) {
    let slots = Arc::new(Semaphore::new(CONTROL_CONNECTIONS_MAX));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return, // never closed
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let deadline = Duration::from_millis(CONTROL_DEADLINE_MS);
            if tokio::time::timeout(deadline, serve_one(stream, &ctx))
                .await
                .is_err()
            {
                debug!("control request hit its deadline");
            }
            drop(permit);
        });
    }
}

async fn serve_one(mut stream: UnixStream, ctx: &ControlContext) {
    let req: ControlRequest = match read_frame(&mut stream).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let resp = ControlResponse::Error(format!("bad control request: {e}"));
            // The client sent garbage; it may not be listening either.
            let _ = write_frame(&mut stream, &resp).await;
            return;
        }
    };
    let resp = answer(req, ctx).await;
    if let Err(e) = write_frame(&mut stream, &resp).await {
        debug!(error = %e, "control client went away before its answer");
    }
}

async fn answer(req: ControlRequest, ctx: &ControlContext) -> ControlResponse {
    match req {
        ControlRequest::NodeLs => match ctx.node.members().await {
            Ok(members) => {
                ControlResponse::Nodes(members.into_iter().map(|m| node_info(m, ctx)).collect())
            }
            Err(e) => ControlResponse::Error(e.to_string()),
        },
        ControlRequest::JoinToken { role, rotate } => {
            let result = if rotate {
                ctx.node.rotate_token(role).await
            } else {
                ctx.node.join_tokens().await
            };
            match result {
                Ok(t) => ControlResponse::Tokens(t),
                Err(e) => ControlResponse::Error(e.to_string()),
            }
        }
        ControlRequest::Actors => ControlResponse::Actors(ctx.registry.list()),
        ControlRequest::Send { actor, msg, args } => {
            let args = if args.trim().is_empty() {
                serde_json::Value::Null
            } else {
                match serde_json::from_str(&args) {
                    Ok(v) => v,
                    Err(e) => {
                        return ControlResponse::Error(format!("arguments are not JSON: {e}"));
                    }
                }
            };
            match ctx.registry.send(&actor, &msg, args).await {
                Ok(v) => ControlResponse::Reply(
                    serde_json::to_string_pretty(&v).expect("JSON values always print"),
                ),
                Err(e) => ControlResponse::Error(e.to_string()),
            }
        }
    }
}

fn node_info(m: MemberView, ctx: &ControlContext) -> NodeInfo {
    let is_self = m.id == ctx.node.id();
    let status = m.state.to_string();
    let d = m.description;
    let role = d.as_ref().map(|d| d.role);
    let manager_status = match role {
        Some(Role::Manager) if is_self && ctx.leads => "Leader",
        Some(Role::Manager) if m.state == NodeState::Ready => "Reachable",
        Some(Role::Manager) => "Unreachable",
        _ => "",
    };
    NodeInfo {
        id: m.id.to_string(),
        hostname: d.as_ref().map(|d| d.hostname.clone()).unwrap_or_default(),
        status,
        availability: "Active".to_string(),
        role: role.map(|r| r.to_string()).unwrap_or_default(),
        manager_status: manager_status.to_string(),
        engine_version: d
            .as_ref()
            .map(|d| d.engine_version.clone())
            .unwrap_or_default(),
        addr: m.addr.to_string(),
        labels: d.as_ref().map(|d| d.labels.clone()).unwrap_or_default(),
        nano_cpus: d.as_ref().map(|d| d.resources.nano_cpus).unwrap_or(0),
        memory_bytes: d.as_ref().map(|d| d.resources.memory_bytes).unwrap_or(0),
        runtimes: d.as_ref().map(|d| d.runtimes.clone()).unwrap_or_default(),
        description_version: d.as_ref().map(|d| d.version).unwrap_or(0),
        is_self,
    }
}
