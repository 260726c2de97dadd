//! The global orchestrator: one live task on every eligible node.
//!
//! A node is eligible when it is Ready and Active, has the service's runtime and matches its
//! constraints. Per node, in ID order: eligible and no live task → create one there; eligible
//! and its task ended → what the restart policy says; down or removed → orphan the running task,
//! with no replacement elsewhere; drained, no longer matching the constraints, or without the
//! runtime → shut the task down. A paused node, or one whose state is unknown, keeps what it
//! runs and gets nothing new. Each node's history is trimmed like a replicated slot's.

use std::collections::BTreeMap;

use crate::model::{Availability, NodeId, NodeState, Service, Task};
use crate::scheduler::NodeView;
use crate::scheduler::constraint::{Constraint, all_match};
use crate::scheduler::filter::{available, has_runtime};

use super::restart::{AfterEnd, after_end, trim_history};
use super::{Action, dedupe, is_live};

pub(super) fn reconcile(
    service: &Service,
    tasks: &[&Task],
    nodes: &BTreeMap<NodeId, &NodeView>,
    now_ms: u64,
    out: &mut Vec<Action>,
) {
    let spec = &service.spec.task;
    let policy = &spec.restart;
    // Constraints are validated when the service is stored. Should a bad one get through, no
    // node is judged against it: creating or shutting down on a misread would be worse.
    let Ok(constraints) = Constraint::parse_all(&spec.placement.constraints) else {
        return;
    };
    // The tasks grouped by node in one sorted list (stable: a node's tasks keep their order)
    // rather than a list per node: this runs on every pass, over every node.
    let mut placed: Vec<&Task> = Vec::with_capacity(tasks.len());
    for &t in tasks {
        match t.node_id {
            Some(_) => placed.push(t),
            // A global task is made for one node; one without a node has no place to go.
            None if is_live(t) => out.push(Action::Shutdown {
                task: t.id,
                reason: "global task without a node".to_string(),
            }),
            None => {}
        }
    }
    placed.sort_by_key(|t| t.node_id);
    let mut all: Vec<NodeId> = nodes.keys().copied().collect();
    all.extend(placed.iter().filter_map(|t| t.node_id));
    all.sort_unstable();
    all.dedup();
    let mut rest: &[&Task] = &placed;
    for id in all {
        let n = rest.iter().take_while(|t| t.node_id == Some(id)).count();
        let (here, after) = rest.split_at(n);
        rest = after;
        let (keep, overlap) = dedupe(here, service.spec_version, out);
        // A start-first update's old task on this node: it goes with its node, or when the
        // node no longer fits; otherwise it stays until its replacement runs.
        for t in overlap {
            match nodes.get(&id) {
                Some(n) if n.state != NodeState::Down => {
                    let fits = n.availability != Availability::Drain
                        && has_runtime(n, spec.runtime)
                        && all_match(&constraints, n);
                    if !fits {
                        out.push(Action::Shutdown {
                            task: t.id,
                            reason: "node no longer fits the service".to_string(),
                        });
                    }
                }
                _ => out.push(Action::MarkOrphaned { task: t.id }),
            }
        }
        let running = keep.filter(|t| !t.status.state.is_terminal());
        let create = Action::Create {
            slot: 0,
            node: Some(id),
            spec_version: service.spec_version,
        };
        match nodes.get(&id) {
            None => {
                if let Some(t) = running {
                    out.push(Action::MarkOrphaned { task: t.id });
                } else if let Some(t) = keep {
                    out.push(Action::Shutdown {
                        task: t.id,
                        reason: "node removed".to_string(),
                    });
                }
            }
            Some(n) if n.state == NodeState::Down => {
                if let Some(t) = running {
                    out.push(Action::MarkOrphaned { task: t.id });
                }
            }
            Some(n) => {
                let unfit = if n.availability == Availability::Drain {
                    Some("node is drained")
                } else if !has_runtime(n, spec.runtime) {
                    Some("node lacks the runtime")
                } else if !all_match(&constraints, n) {
                    Some("node no longer satisfies the constraints")
                } else {
                    None
                };
                match (unfit, keep) {
                    (Some(reason), Some(t)) => out.push(Action::Shutdown {
                        task: t.id,
                        reason: reason.to_string(),
                    }),
                    (Some(_), None) => {}
                    // Paused or not Ready: keep what runs, start nothing.
                    (None, _) if !available(n) => {}
                    (None, None) => out.push(create),
                    (None, Some(t)) if !t.status.state.is_terminal() => {}
                    (None, Some(t)) => match after_end(policy, t, here, false, now_ms) {
                        AfterEnd::Keep => {}
                        AfterEnd::RestartNow => {
                            out.push(Action::Shutdown {
                                task: t.id,
                                reason: format!("task ended ({}): replaced", t.status.state),
                            });
                            out.push(create);
                        }
                        AfterEnd::RestartAt(at_ms) => {
                            out.push(Action::RestartLater { slot: 0, at_ms });
                        }
                    },
                }
            }
        }
        for task in trim_history(here, policy, now_ms) {
            out.push(Action::Remove { task });
        }
    }
}
