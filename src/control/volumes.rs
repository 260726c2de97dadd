//! Removing a stack's named volumes (`stack rm`): the answering node asks every node of the
//! cluster to remove its volumes labelled `com.docker.stack.namespace=<stack>` that none of
//! its tasks uses, and answers what was removed.
//!
//! ```text
//!  client ── VolumesRm{namespace} ──▶ a manager ─┬─ this node: AgentHandle::remove_volumes
//!                                                └─ others:   Request::RemoveVolumes
//!  each node: every runtime removes its labelled volumes not in use (Docker: the engine's
//!             volumes by label; process: `<data-dir>/volumes/<name>` by its labels file)
//!  answer: the names removed (once each), those still in use, the nodes not reached
//! ```
//!
//! A volume is per node (a Docker volume of that engine, a directory of that node), so one
//! name may be removed on several nodes; it is named once. Nodes are asked side by side, at
//! most [`VOLUME_ASKS_AT_ONCE`] at a time, each within [`VOLUME_ASK_DEADLINE_MS`].
//!
//! [`remove_stack_volumes`] is the client's side: the stack's tasks stop after their services
//! are removed, so a volume may still be in use for a while; it asks again until none is, for
//! at most [`VOLUMES_RM_WAIT_MS`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::{Deserialize, Serialize};
use swarm_actors::wire::{Request, Response};

use super::client::Client;
use super::context::ControlContext;
use super::proto::{ControlRequest, ControlResponse};
use super::service::{hostname, manager_store, nodes};
use crate::stack::NAMESPACE_LABEL;

/// How long one node may take to answer (its runtimes get
/// [`swarm_actors::agent::VOLUMES_RM_TIMEOUT_MS`] each); within the client's deadline.
pub const VOLUME_ASK_DEADLINE_MS: u64 = 12_000;

/// Most nodes asked at once.
pub const VOLUME_ASKS_AT_ONCE: usize = 32;

/// How long [`remove_stack_volumes`] asks again while volumes are in use or nodes are not
/// reached.
#[allow(dead_code)] // with remove_stack_volumes, until `stack rm` calls it
pub const VOLUMES_RM_WAIT_MS: u64 = 60_000;

/// Pause between two asks of [`remove_stack_volumes`].
#[allow(dead_code)] // with remove_stack_volumes, until `stack rm` calls it
const VOLUMES_RM_RETRY_MS: u64 = 500;

/// Longest stack name taken (Docker's names are far shorter).
pub const NAMESPACE_BYTES_MAX: usize = 255;

/// What `VolumesRm` did across the cluster; the control answer carries it as JSON
/// (`ControlResponse::Reply`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesRmAnswer {
    /// Volume names removed on at least one node, sorted, each once.
    pub removed: Vec<String>,
    /// `<volume> (on <node>)`: still used by a task there, left as it is.
    pub in_use: Vec<String>,
    /// `<node>: <why>`: nodes that did not answer; their volumes are left.
    pub unreachable: Vec<String>,
}

/// The node's side of `VolumesRm`.
pub async fn remove(ctx: &ControlContext, namespace: &str) -> Result<VolumesRmAnswer, String> {
    if namespace.is_empty() || namespace.len() > NAMESPACE_BYTES_MAX {
        return Err(format!(
            "a stack name of 1 to {NAMESPACE_BYTES_MAX} bytes is needed; nothing was removed"
        ));
    }
    let store = manager_store(ctx).await?;
    let me = ctx.node.id();
    let mut todo: Vec<(bool, std::net::SocketAddr, String)> = nodes(&store)
        .await?
        .into_iter()
        .map(|n| (n.id == me, n.addr, hostname(&n)))
        .collect();
    todo.sort_by(|a, b| a.2.cmp(&b.2));
    let mut todo = todo.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut removed = BTreeSet::new();
    let mut answer = VolumesRmAnswer::default();
    loop {
        while running.len() < VOLUME_ASKS_AT_ONCE {
            let Some((local, addr, host)) = todo.next() else {
                break;
            };
            let ctx = ctx.clone();
            let value = namespace.to_string();
            running.spawn(async move { (host, ask_node(&ctx, local, addr, value).await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let Ok((host, result)) = done else {
            continue; // a panicked ask: that node is simply not in the answer
        };
        match result {
            Ok(r) => {
                removed.extend(r.removed);
                answer
                    .in_use
                    .extend(r.in_use.into_iter().map(|v| format!("{v} (on {host})")));
            }
            Err(e) => answer.unreachable.push(format!("{host}: {e}")),
        }
    }
    answer.removed = removed.into_iter().collect();
    answer.in_use.sort();
    answer.unreachable.sort();
    Ok(answer)
}

async fn ask_node(
    ctx: &ControlContext,
    local: bool,
    addr: std::net::SocketAddr,
    value: String,
) -> Result<swarm_actors::runtime::VolumesRemoved, String> {
    let deadline = Duration::from_millis(VOLUME_ASK_DEADLINE_MS);
    let label = NAMESPACE_LABEL.to_string();
    let answer = if local {
        let agent = ctx
            .agent
            .as_ref()
            .ok_or_else(|| "this node runs no agent".to_string())?;
        tokio::time::timeout(deadline, agent.remove_volumes(label, value)).await
    } else {
        let req = Request::RemoveVolumes { label, value };
        match tokio::time::timeout(deadline, ctx.node.ask(addr, req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => Err(e),
        }
    };
    match answer {
        Ok(Response::VolumesRemoved { removed, in_use }) => {
            Ok(swarm_actors::runtime::VolumesRemoved { removed, in_use })
        }
        Ok(Response::Failed(f)) => Err(f.to_string()),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(_) => Err(format!("no answer within {VOLUME_ASK_DEADLINE_MS} ms")),
    }
}

/// The control answer of `VolumesRm`.
pub fn response(result: Result<VolumesRmAnswer, String>) -> ControlResponse {
    match result {
        Ok(a) => ControlResponse::Reply(
            serde_json::to_string(&a).expect("a struct of strings always encodes"),
        ),
        Err(e) => ControlResponse::Error(e),
    }
}

/// Removes the named volumes of stack `namespace` on every node, asking again while some are
/// still used by the stack's stopping tasks (at most [`VOLUMES_RM_WAIT_MS`]). Returns the names
/// removed, sorted; an error when some are left (in use, or on a node not reached), naming
/// them and what was removed.
#[allow(dead_code)] // `stack rm` calls it
pub async fn remove_stack_volumes(client: &Client, namespace: &str) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut removed = BTreeSet::new();
    loop {
        let req = ControlRequest::VolumesRm {
            namespace: namespace.to_string(),
        };
        let answer: VolumesRmAnswer = match client.call(req).await? {
            ControlResponse::Reply(json) => serde_json::from_str(&json)?,
            other => bail!("unexpected answer to a volume removal: {other:?}"),
        };
        removed.extend(answer.removed);
        if answer.in_use.is_empty() && answer.unreachable.is_empty() {
            return Ok(removed.into_iter().collect());
        }
        if started.elapsed() >= Duration::from_millis(VOLUMES_RM_WAIT_MS) {
            let removed: Vec<String> = removed.into_iter().collect();
            bail!(
                "volumes of stack {namespace} are left after {} s: in use {:?}, on nodes not \
                 reached {:?} (removed: {:?})",
                VOLUMES_RM_WAIT_MS / 1_000,
                answer.in_use,
                answer.unreachable,
                removed
            );
        }
        tokio::time::sleep(Duration::from_millis(VOLUMES_RM_RETRY_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_travels_as_json_and_back() {
        tracing::info!("phase: what the node answers is what the client reads");
        let a = VolumesRmAnswer {
            removed: vec!["wp_db_data".into()],
            in_use: vec!["wp_logs (on n2)".into()],
            unreachable: vec!["n3: no answer within 12000 ms".into()],
        };
        let ControlResponse::Reply(json) = response(Ok(a.clone())) else {
            panic!("a Reply");
        };
        assert_eq!(serde_json::from_str::<VolumesRmAnswer>(&json).unwrap(), a);
        assert!(matches!(
            response(Err("no".into())),
            ControlResponse::Error(e) if e == "no"
        ));
    }
}
