//! The orchestrators: what tasks a service needs, as a pure reconciliation.
//!
//! The leader calls [`reconcile`] whenever a service, its tasks or the nodes change, applies the
//! [`Action`]s to the store, and hands new tasks to the scheduler. The function reads no clock
//! (`now_ms` comes in) and keeps no memory between calls: everything it needs is in the tasks.
//!
//! ```text
//! service + its tasks + nodes + now ──▶ replicated.rs (slots 1..=replicas)  ──▶ Vec<Action>
//!                                   └─▶ global.rs     (one task per node)
//!                both use restart.rs: restart policy, delay, max_attempts, history trimming
//! ```
//!
//! Rules the caller relies on:
//! - A task is *live* while its desired state is `Running` or before. Each slot (each node, for
//!   global services) has at most one live task once the actions are applied; a replicated slot
//!   in `1..=replicas` has exactly one.
//! - A task that ended keeps desired `Running` until it is replaced, or for good when the
//!   restart policy says no more. So a finished task of a `--restart-condition none` service
//!   holds its slot and is not refilled.
//! - `nodes` must hold every node of the cluster: a task on a node not in it is treated as on a
//!   removed node and orphaned.
//! - The restart policy is the service's current one. Tasks made from an older spec version are
//!   left alone: replacing them is the rolling updater's work.

mod global;
mod replicated;
pub mod restart;

use std::collections::BTreeMap;

use crate::model::{NodeId, Service, ServiceMode, Task, TaskId, TaskState};
use crate::scheduler::NodeView;

/// What the leader should do to the store.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Create a task (state New, desired `Running`) from the service's current spec.
    /// Replicated: `slot` ≥ 1 and `node` is `None` (the scheduler picks). Global: `slot` is 0
    /// and `node` is the node it must run on.
    Create {
        slot: u64,
        node: Option<NodeId>,
        spec_version: u64,
    },
    /// Set the task's desired state to `Shutdown`; the node stops it.
    Shutdown { task: TaskId, reason: String },
    /// The task's node is down or gone: set its state to `Orphaned` and its desired state to
    /// `Shutdown` (if the node comes back, it stops the task).
    MarkOrphaned { task: TaskId },
    /// Delete an old, ended task from the store (history trimming).
    Remove { task: TaskId },
    /// Call `reconcile` again at `at_ms`: a restart delay ends then. Global services use
    /// slot 0.
    RestartLater { slot: u64, at_ms: u64 },
}

/// Reconciles one service. `tasks` are all the tasks of this service in any state (tasks of
/// other services are ignored), borrowed: the leader's pass does not copy them; `nodes` every
/// node of the cluster.
pub fn reconcile<'t>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'t Task>,
    nodes: &[NodeView],
    now_ms: u64,
) -> Vec<Action> {
    let nodes: BTreeMap<NodeId, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    let tasks: Vec<&Task> = tasks
        .into_iter()
        .filter(|t| t.service_id == service.id)
        .collect();
    let mut out = Vec::new();
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => {
            replicated::reconcile(service, replicas, &tasks, &nodes, now_ms, &mut out)
        }
        ServiceMode::Global => global::reconcile(service, &tasks, &nodes, now_ms, &mut out),
    }
    out
}

/// The name `service ps` shows: `web.1` for a replicated slot, `web.<node id>` for a global task.
pub fn task_name(service_name: &str, slot: u64, node: Option<NodeId>) -> String {
    match (slot, node) {
        (0, Some(node)) => format!("{service_name}.{node}"),
        (slot, _) => format!("{service_name}.{slot}"),
    }
}

/// A task the orchestrator still wants (desired `Running` or before).
fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running
}

/// Of the live tasks of one slot, the one to keep: not ended first, then furthest along, then
/// newest, then highest ID. The others are duplicates to shut down.
fn keeper<'a>(live: impl Iterator<Item = &'a Task>) -> Option<&'a Task> {
    live.max_by_key(|t| {
        (
            !t.status.state.is_terminal(),
            t.status.state,
            t.created_ms,
            t.id,
        )
    })
}

/// Shuts down every live task of `slot_tasks` but the keeper, and returns the keeper, with the
/// slot's *overlap*: during a start-first update a slot holds its old task (an older spec
/// version, not ended) next to the new one until the new one runs. When the slot has a live
/// task of `spec_version`, the keeper is chosen among those, and the old ones that have not
/// ended are left to the rolling updater (returned, so the caller can still orphan them with
/// their node).
fn dedupe<'a>(
    slot_tasks: &[&'a Task],
    spec_version: u64,
    out: &mut Vec<Action>,
) -> (Option<&'a Task>, Vec<&'a Task>) {
    let live = || slot_tasks.iter().copied().filter(|t| is_live(t));
    let has_current = live().any(|t| t.spec_version == spec_version);
    let overlapping =
        |t: &Task| has_current && t.spec_version != spec_version && !t.status.state.is_terminal();
    let candidate = |t: &Task| !has_current || t.spec_version == spec_version;
    let Some(keep) = keeper(live().filter(|t| candidate(t))) else {
        return (None, Vec::new());
    };
    let mut overlap = Vec::new();
    for t in live() {
        if overlapping(t) {
            overlap.push(t);
        } else if t.id != keep.id {
            out.push(Action::Shutdown {
                task: t.id,
                reason: "duplicate task for the slot".to_string(),
            });
        }
    }
    (Some(keep), overlap)
}

#[cfg(test)]
pub(crate) mod tests_support;

#[cfg(test)]
mod tests;
