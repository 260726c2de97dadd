//! The control socket's server side, inside `swarm-node start`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_actors::model::{Availability, Role, validate_label};
use swarm_actors::node::{admission, autolock};
use swarm_actors::replica::StoreHandle;
use swarm_actors::store::lock::{self, LockError, UnlockKey};
use swarm_actors::store::{Expect, Kind, NodeObject, ObjectBody, Op, StoreCommand};
use swarm_actors::wire::{FRAME_BYTES_MAX, read_frame, write_frame};
use swarm_actors::wire::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::cas::{self, Failed};
pub use super::context::ControlContext;
use super::nodes::node_list;
use super::proto::{ControlRequest, ControlResponse, TaskRow, resolve};
use super::{logs, network, secret, service};

/// Client connections served at once; more wait in the listen backlog.
pub const CONTROL_CONNECTIONS_MAX: usize = 64;
/// Deadline for reading a request and for answering it.
pub const CONTROL_DEADLINE_MS: u64 = 10_000;

/// The control socket, bound, and who may use it.
pub struct ControlSocket {
    listener: UnixListener,
    /// The uid the node runs as (the socket's owner): with root, the only callers served.
    node_uid: u32,
}

/// Binds the control socket at `path` (replacing a stale one) so that it is never reachable by
/// others, not even for an instant: it is bound inside a fresh directory of mode 0700 next to
/// `path`, given mode 0600 there, and only then renamed to `path` (a rename keeps the bound
/// socket and its mode; a chmod after binding in place would leave a window where the socket
/// has the umask's mode). The staging directory is removed again.
pub fn bind(path: &Path) -> std::io::Result<ControlSocket> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = parent.join(format!(".control.{}.tmp", std::process::id()));
    // A leftover of a crashed start with our PID holds nothing we need.
    match std::fs::remove_dir_all(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let staged = staging.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        let node_uid = std::fs::metadata(&staged)?.uid();
        // Atomically replaces a stale socket of an earlier run.
        std::fs::rename(&staged, path)?;
        Ok(ControlSocket { listener, node_uid })
    })();
    // Empty after the rename; when something failed, what is left is ours and useless.
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Whether a caller with `peer_uid` (from the kernel's peer credentials, not from anything it
/// sent) may use the control socket of a node running as `node_uid`: root, or the node's user.
pub fn caller_allowed(peer_uid: u32, node_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == node_uid
}

/// The answer a refused caller gets before the connection is closed.
pub fn refusal(peer_uid: u32, node_uid: u32) -> String {
    format!(
        "permission denied: this node's control socket serves only root and uid {node_uid} (the user the node runs as), not uid {peer_uid}; nothing was done"
    )
}

pub async fn serve(socket: ControlSocket, ctx: ControlContext) {
    let ControlSocket { listener, node_uid } = socket;
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
            let served = async {
                if let Some(stream) = admit(stream, node_uid).await {
                    serve_one(stream, &ctx).await;
                }
            };
            if tokio::time::timeout(deadline, served).await.is_err() {
                debug!("control request hit its deadline");
            }
            drop(permit);
        });
    }
}

/// Checks the caller's uid through the kernel's peer credentials (SO_PEERCRED) before reading
/// anything: a refused caller gets one error frame and the connection is closed, nothing read
/// and nothing done.
async fn admit(mut stream: UnixStream, node_uid: u32) -> Option<UnixStream> {
    let peer = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "control caller without peer credentials: refused");
            return None;
        }
    };
    if caller_allowed(peer.uid(), node_uid) {
        return Some(stream);
    }
    warn!(
        uid = peer.uid(),
        pid = ?peer.pid(),
        "control caller refused: neither root nor the node's user"
    );
    let resp = ControlResponse::Error(refusal(peer.uid(), node_uid));
    // The caller may be gone already; it is refused either way.
    let _ = write_frame(&mut stream, &resp).await;
    // Its request is read and thrown away (at most one frame, within the connection's
    // deadline) rather than left unread: closing first could fail the caller's write with
    // EPIPE, and it would never see why it was refused.
    let _ = stream.shutdown().await; // the answer is out; a failure only means it is gone
    let _ = tokio::io::copy(
        &mut (&mut stream).take(FRAME_BYTES_MAX as u64 + 4),
        &mut tokio::io::sink(),
    )
    .await; // discarded either way
    None
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
        ControlRequest::NodeLs => match node_list(ctx, true).await {
            Ok((nodes, stale)) => ControlResponse::Nodes { nodes, stale },
            Err(e) => ControlResponse::Error(e),
        },
        ControlRequest::NodeUpdate {
            node,
            availability,
            label_add,
            label_rm,
        } => match node_update(ctx, &node, availability, label_add, label_rm).await {
            Ok(id) => ControlResponse::Done(id),
            Err(e) => ControlResponse::Error(e),
        },
        ControlRequest::NodeRole { node, manager } => match node_role(ctx, &node, manager).await {
            Ok(text) => ControlResponse::Done(text),
            Err(e) => ControlResponse::Error(e),
        },
        ControlRequest::NodeRm { node, force } => match node_rm(ctx, &node, force).await {
            Ok(id) => ControlResponse::Done(id),
            Err(e) => ControlResponse::Error(e),
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
        ControlRequest::Ca { rotate } => match ctx.node.ca(rotate).await {
            Ok(v) => ControlResponse::Ca(v),
            Err(e) => ControlResponse::Error(e.to_string()),
        },
        ControlRequest::ServiceCreate { spec, networks } => {
            done(service::create(ctx, *spec, &networks).await)
        }
        ControlRequest::NetworkCreate(req) => done(network::create(ctx, &req).await),
        ControlRequest::NetworkRm { name } => done(network::remove(ctx, &name).await),
        ControlRequest::VolumesRm { namespace } => {
            super::volumes::response(super::volumes::remove(ctx, &namespace).await)
        }
        ControlRequest::NetworkLs => network::list(ctx)
            .await
            .map_or_else(ControlResponse::Error, ControlResponse::Networks),
        ControlRequest::NetworkInspect { names } => network::inspect(ctx, &names)
            .await
            .map_or_else(ControlResponse::Error, ControlResponse::Networks),
        ControlRequest::ServiceLs => match service::list(ctx).await {
            Ok(rows) => ControlResponse::Services(rows),
            Err(e) => ControlResponse::Error(e),
        },
        ControlRequest::ServiceInspect { services } => {
            match service::inspect(ctx, &services).await {
                Ok(docs) => ControlResponse::ServiceDocs(docs),
                Err(e) => ControlResponse::Error(e),
            }
        }
        ControlRequest::ServiceUpdate { service, change } => {
            done(service::update(ctx, &service, &change).await)
        }
        ControlRequest::ServiceRollback { service } => done(service::rollback(ctx, &service).await),
        ControlRequest::ServiceRm { service } => done(service::remove(ctx, &service).await),
        ControlRequest::ServiceReplace { spec, networks } => {
            applied(service::replace(ctx, *spec, &networks).await)
        }
        ControlRequest::ServicePs { service } => tasks(service::ps(ctx, &service).await),
        ControlRequest::NodePs { node } => tasks(service::node_ps(ctx, &node).await),
        ControlRequest::ServiceProgress { service } => {
            match service::progress(ctx, &service).await {
                Ok(p) => ControlResponse::Progress(p),
                Err(e) => ControlResponse::Error(e),
            }
        }
        ControlRequest::ServiceLogs { service, tail } => {
            match logs::logs(ctx, &service, tail).await {
                Ok((lines, unreachable)) => ControlResponse::Logs { lines, unreachable },
                Err(e) => ControlResponse::Error(e),
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
        // Secrets and configs
        ControlRequest::SecretCreate {
            kind,
            name,
            labels,
            data,
        } => done(secret::create(ctx, kind, &name, &labels, data).await),
        ControlRequest::SecretLs { kind } => secrets(secret::list(ctx, kind).await),
        ControlRequest::SecretDeploy {
            kind,
            name,
            labels,
            data,
        } => applied(secret::deploy(ctx, kind, &name, &labels, data).await),
        ControlRequest::SecretInspect { kind, names } => {
            secrets(secret::inspect(ctx, kind, &names).await)
        }
        ControlRequest::SecretRm { kind, name } => done(secret::remove(ctx, kind, &name).await),
        ControlRequest::SecretUpdate {
            kind,
            name,
            label_add,
            label_rm,
        } => done(secret::update_labels(ctx, kind, &name, &label_add, &label_rm).await),
        // Autolock
        ControlRequest::SwarmUpdate { autolock } => swarm_update(ctx, autolock).await,
        ControlRequest::UnlockKey { rotate } => unlock_key(ctx, rotate).await,
        ControlRequest::Unlock { .. } => ControlResponse::Error(LockError::NotLocked.to_string()),
    }
}

fn secrets(result: Result<Vec<super::proto::SecretDoc>, String>) -> ControlResponse {
    match result {
        Ok(docs) => ControlResponse::Secrets(docs),
        Err(e) => ControlResponse::Error(e),
    }
}

fn applied(result: Result<(String, bool), String>) -> ControlResponse {
    match result {
        Ok((id, changed)) => ControlResponse::Applied { id, changed },
        Err(e) => ControlResponse::Error(e),
    }
}

fn done(result: Result<String, String>) -> ControlResponse {
    match result {
        Ok(text) => ControlResponse::Done(text),
        Err(e) => ControlResponse::Error(e),
    }
}

fn tasks(result: Result<Vec<TaskRow>, String>) -> ControlResponse {
    match result {
        Ok(rows) => ControlResponse::Tasks(rows),
        Err(e) => ControlResponse::Error(e),
    }
}

fn not_a_manager() -> String {
    "this node is not a manager: run the command on a manager (`node ls` on a worker shows only what membership knows)".to_string()
}

/// The node object `name` names, with its stored version.
async fn find_node(
    ctx: &ControlContext,
    store: &StoreHandle,
    name: &str,
) -> Result<(NodeObject, u64), String> {
    let (rows, _) = node_list(ctx, true).await?;
    let row = resolve(&rows, name)?;
    let (objects, _) = admission::nodes(store, true)
        .await
        .map_err(|e| e.to_string())?;
    objects
        .into_iter()
        .find(|(n, _)| n.id.to_string() == row.id)
        .map(|(n, o)| (n, o.version))
        .ok_or_else(|| format!("node {name} is not in the cluster store"))
}

async fn node_update(
    ctx: &ControlContext,
    name: &str,
    availability: Option<Availability>,
    label_add: Vec<(String, String)>,
    label_rm: Vec<String>,
) -> Result<String, String> {
    let store = &ctx.store().await.ok_or_else(not_a_manager)?;
    for (k, v) in &label_add {
        validate_label(k, v).map_err(|e| e.to_string())?;
    }
    cas::retrying(|| node_update_once(ctx, store, name, availability, &label_add, &label_rm)).await
}

async fn node_update_once(
    ctx: &ControlContext,
    store: &StoreHandle,
    name: &str,
    availability: Option<Availability>,
    label_add: &[(String, String)],
    label_rm: &[String],
) -> Result<String, Failed> {
    let (mut node, version) = find_node(ctx, store, name).await?;
    for k in label_rm {
        if node.spec.labels.remove(k).is_none() {
            return Err(format!("label {k} does not exist on node {}", node.id).into());
        }
    }
    for (k, v) in label_add {
        node.spec.labels.insert(k.clone(), v.clone());
    }
    if let Some(a) = availability {
        node.spec.availability = a;
    }
    if node.spec.labels.len() > swarm_actors::model::LABELS_MAX {
        return Err(format!(
            "a node may carry at most {} labels",
            swarm_actors::model::LABELS_MAX
        )
        .into());
    }
    let id = node.id.to_string();
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Put {
            kind: Kind::Node,
            id: id.clone(),
            expect: Expect::Version(version),
            body: ObjectBody::Node(node),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    Ok(id)
}

async fn node_rm(ctx: &ControlContext, name: &str, force: bool) -> Result<String, String> {
    let store = &ctx.store().await.ok_or_else(not_a_manager)?;
    cas::retrying(|| node_rm_once(ctx, store, name, force)).await
}

async fn node_rm_once(
    ctx: &ControlContext,
    store: &StoreHandle,
    name: &str,
    force: bool,
) -> Result<String, Failed> {
    let (rows, _) = node_list(ctx, true).await?;
    let row = resolve(&rows, name)?.clone();
    let (node, version) = find_node(ctx, store, name).await?;
    if node.spec.role == Role::Manager {
        return Err(format!(
            "node {} is a cluster manager and is a member of the raft cluster: demote it before removal",
            node.id
        )
        .into());
    }
    if row.status == "Ready" && !force {
        return Err(format!(
            "node {} is not down and can't be removed: stop it first, or use --force",
            node.id
        )
        .into());
    }
    let id = node.id.to_string();
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Delete {
            kind: Kind::Node,
            id: id.clone(),
            expect: Expect::Version(version),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    ctx.node.deny(node.id).await.map_err(|e| e.to_string())?;
    Ok(id)
}

/// `node promote` (`manager`) and `node demote`: the store first (role, raft ID, voters), then
/// the node is told to start or stop its own store.
async fn node_role(ctx: &ControlContext, name: &str, manager: bool) -> Result<String, String> {
    let store = &ctx.store().await.ok_or_else(not_a_manager)?;
    cas::retrying(|| node_role_once(ctx, store, name, manager)).await
}

async fn node_role_once(
    ctx: &ControlContext,
    store: &StoreHandle,
    name: &str,
    manager: bool,
) -> Result<String, Failed> {
    let (rows, _) = node_list(ctx, true).await?;
    let row = resolve(&rows, name)?.clone();
    let (mut node, version) = find_node(ctx, store, name).await?;
    let id = node.id;
    let old_raft_id = node.raft_id;
    let status = store.status().await.map_err(|e| e.to_string())?;
    let raft_id = if manager {
        if node.spec.role == Role::Manager {
            return Ok(format!("Node {id} is already a manager."));
        }
        if row.status != "Ready" {
            return Err(format!("node {id} is not Ready: it cannot become a manager now").into());
        }
        let raft_id = rand::random::<u64>().max(1);
        node.spec.role = Role::Manager;
        node.raft_id = Some(raft_id);
        Some(raft_id)
    } else {
        if node.spec.role != Role::Manager {
            return Ok(format!("Node {id} is already a worker."));
        }
        let voters = &status.voters;
        if voters.len() <= 1 {
            return Err(
                format!("cannot demote node {id}: it is the last manager of the cluster").into(),
            );
        }
        let remaining: Vec<_> = voters.iter().filter(|v| v.1 != id).collect();
        let reachable = remaining
            .iter()
            .filter(|v| {
                rows.iter()
                    .any(|r| r.id == v.1.to_string() && r.status == "Ready")
            })
            .count();
        if reachable * 2 <= remaining.len() {
            return Err(format!(
                "cannot demote node {id}: the other managers would lose quorum ({reachable} of {} reachable)",
                remaining.len()
            )
            .into());
        }
        node.spec.role = Role::Worker;
        node.raft_id = None;
        None
    };
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Put {
            kind: Kind::Node,
            id: id.to_string(),
            expect: Expect::Version(version),
            body: ObjectBody::Node(node.clone()),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    match (raft_id, old_raft_id) {
        (Some(r), _) => store
            .add_voter(r, id, node.addr)
            .await
            .map_err(|e| e.to_string())?,
        (None, Some(r)) => store.remove_voter(r).await.map_err(|e| e.to_string())?,
        (None, None) => 0,
    };
    let addr: std::net::SocketAddr = row
        .addr
        .parse()
        .map_err(|e| format!("bad address {}: {e}", row.addr))?;
    // Also when the node is this one: the same path through the transport, to itself.
    let told = ctx.node.ask(addr, Request::SetRole { raft_id }).await;
    match told {
        Ok(Response::Pong) => {}
        Ok(other) => {
            return Err(format!("node {id} did not take its new role: {other:?}").into());
        }
        Err(e) => {
            return Err(
                format!("the store has the new role, but node {id} was not told: {e}").into(),
            );
        }
    }
    Ok(if manager {
        format!("Node {id} promoted to a manager in the swarm.")
    } else {
        format!("Manager {id} demoted in the swarm.")
    })
}

// Autolock

/// Every answer of a locked node but a successful unlock (Docker: "Swarm is encrypted and
/// needs to be unlocked before it can be used").
pub const LOCKED: &str = "This node is locked: swarm is encrypted and needs to be unlocked before it can be used. Run `swarm-node swarm unlock` and give the unlock key; nothing was done";

async fn swarm_update(ctx: &ControlContext, autolock: Option<bool>) -> ControlResponse {
    let Some(on) = autolock else {
        return ControlResponse::Error(
            "nothing to update: give --autolock=true or --autolock=false".into(),
        );
    };
    let Some(store) = ctx.store().await else {
        return ControlResponse::Error(not_a_manager());
    };
    match autolock::set_autolock(&store, on).await {
        Ok(c) => ControlResponse::UnlockKey {
            key: c.key.map(|k| k.to_string()),
            changed: c.changed,
        },
        Err(e) => ControlResponse::Error(e),
    }
}

async fn unlock_key(ctx: &ControlContext, rotate: bool) -> ControlResponse {
    let Some(store) = ctx.store().await else {
        return ControlResponse::Error(not_a_manager());
    };
    let key = if rotate {
        autolock::rotate_unlock_key(&store).await.map(Some)
    } else {
        autolock::unlock_key(&store).await
    };
    match key {
        Ok(Some(k)) => ControlResponse::UnlockKey {
            key: Some(k.to_string()),
            changed: rotate,
        },
        Ok(None) => ControlResponse::Error(autolock::NO_KEY.into()),
        Err(e) => ControlResponse::Error(e),
    }
}

/// Serves the control socket of a locked manager, one connection at a time (each within
/// [`CONTROL_DEADLINE_MS`]), until a `swarm unlock` gives the key that opens `data_dir`'s
/// sealed store key. Every other request is answered [`LOCKED`]; a wrong key is refused and
/// changes nothing.
pub async fn serve_locked(socket: &ControlSocket, data_dir: &Path) {
    loop {
        let stream = match socket.listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let deadline = Duration::from_millis(CONTROL_DEADLINE_MS);
        let served = async {
            let mut stream = admit(stream, socket.node_uid).await?;
            let req: ControlRequest = read_frame(&mut stream).await.ok()??;
            let (resp, unlocked) = match req {
                ControlRequest::Unlock { key } => match key
                    .parse::<UnlockKey>()
                    .and_then(|k| lock::unlock(data_dir, &k))
                {
                    Ok(()) => (ControlResponse::Done("unlocked".into()), true),
                    Err(e) => (ControlResponse::Error(e.to_string()), false),
                },
                _ => (ControlResponse::Error(LOCKED.into()), false),
            };
            // The caller may have gone; the unlock stands either way.
            let _ = write_frame(&mut stream, &resp).await;
            Some(unlocked)
        };
        match tokio::time::timeout(deadline, served).await {
            Ok(Some(true)) => return,
            Ok(_) => {}
            Err(_) => debug!("control request hit its deadline"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn only_root_and_the_nodes_user_are_served() {
        assert!(caller_allowed(0, 1000), "root is always served");
        assert!(caller_allowed(1000, 1000), "the node's own user is served");
        assert!(caller_allowed(0, 0));
        assert!(!caller_allowed(1001, 1000));
        assert!(!caller_allowed(65534, 0));
        let text = refusal(65534, 0);
        assert!(
            text.contains("uid 65534") && text.contains("nothing was done"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_socket_is_bound_with_mode_0600_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, "stale").unwrap();
        let socket = bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The staging directory is gone; only the socket is left.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["control.sock"]);
        // The socket answers at its final path.
        let (client, accepted) = tokio::join!(UnixStream::connect(&path), socket.listener.accept());
        let (server_side, _) = accepted.unwrap();
        let peer = server_side.peer_cred().unwrap();
        assert_eq!(
            peer.uid(),
            socket.node_uid,
            "the caller is this test: the node's user"
        );
        drop(client);
    }
}
