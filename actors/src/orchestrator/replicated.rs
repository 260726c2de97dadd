//! The replicated orchestrator: slots `1..=replicas`, one live task each.
//!
//! Per slot, in slot order: no live task → create one; a live task on a down or removed node →
//! orphan it and create a replacement at once; on a drained node → shut it down and create a
//! replacement at once; ended → what the restart policy says (now, later, or never). Slots above
//! `replicas` (after a scale down) have their live tasks shut down. Then each slot's history is
//! trimmed. A paused node keeps its tasks; the scheduler places nothing new there.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Availability, NodeId, NodeState, Service, Task};
use crate::scheduler::NodeView;

use super::restart::{AfterEnd, after_end, trim_history};
use super::{Action, dedupe, is_live};

pub(super) fn reconcile(
    service: &Service,
    replicas: u64,
    tasks: &[&Task],
    nodes: &BTreeMap<NodeId, &NodeView>,
    now_ms: u64,
    out: &mut Vec<Action>,
) {
    let policy = &service.spec.task.restart;
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for &t in tasks {
        slots.entry(t.slot).or_default().push(t);
    }
    // Every wanted slot, plus every slot that has tasks (the extra ones are scaled away).
    let all: BTreeSet<u64> = (1..=replicas).chain(slots.keys().copied()).collect();
    let create = |slot| Action::Create {
        slot,
        node: None,
        spec_version: service.spec_version,
    };
    for slot in all {
        let here: &[&Task] = slots.get(&slot).map(Vec::as_slice).unwrap_or(&[]);
        if slot == 0 || slot > replicas {
            for t in here.iter().filter(|t| is_live(t)) {
                out.push(Action::Shutdown {
                    task: t.id,
                    reason: "scaled down".to_string(),
                });
            }
        } else {
            let (keep, overlap) = dedupe(here, service.spec_version, out);
            // A start-first update's old task stays until its replacement runs, unless its
            // node is gone or drained.
            for t in overlap {
                match t.node_id.map(|id| nodes.get(&id)) {
                    Some(None) => out.push(Action::MarkOrphaned { task: t.id }),
                    Some(Some(n)) if n.state == NodeState::Down => {
                        out.push(Action::MarkOrphaned { task: t.id })
                    }
                    Some(Some(n)) if n.availability == Availability::Drain => {
                        out.push(Action::Shutdown {
                            task: t.id,
                            reason: "node is drained".to_string(),
                        })
                    }
                    _ => {}
                }
            }
            match keep {
                None => out.push(create(slot)),
                Some(t) if !t.status.state.is_terminal() => {
                    let node = t.node_id.map(|id| nodes.get(&id));
                    match node {
                        // Still pending, or on a node that is fine (paused included).
                        None => {}
                        Some(None) => {
                            out.push(Action::MarkOrphaned { task: t.id });
                            out.push(create(slot));
                        }
                        Some(Some(n)) if n.state == NodeState::Down => {
                            out.push(Action::MarkOrphaned { task: t.id });
                            out.push(create(slot));
                        }
                        Some(Some(n)) if n.availability == Availability::Drain => {
                            out.push(Action::Shutdown {
                                task: t.id,
                                reason: "node is drained".to_string(),
                            });
                            out.push(create(slot));
                        }
                        Some(Some(_)) => {}
                    }
                }
                Some(t) => {
                    let drained = t
                        .node_id
                        .and_then(|id| nodes.get(&id))
                        .is_some_and(|n| n.availability == Availability::Drain);
                    match after_end(policy, t, here, drained, now_ms) {
                        AfterEnd::Keep => {}
                        AfterEnd::RestartNow => {
                            out.push(Action::Shutdown {
                                task: t.id,
                                reason: format!("task ended ({}): replaced", t.status.state),
                            });
                            out.push(create(slot));
                        }
                        AfterEnd::RestartAt(at_ms) => {
                            out.push(Action::RestartLater { slot, at_ms });
                        }
                    }
                }
            }
        }
        for task in trim_history(here, policy, now_ms) {
            out.push(Action::Remove { task });
        }
    }
}
