//! Invariant (u): no pass leaves a node with more live tasks of a replicated service than the
//! service's `max_replicas` (`--replicas-max-per-node`).
//!
//! For every replicated task a pass places (it gets a node it had not) whose spec has a
//! limit N > 0: in the tasks as the pass leaves them (the store it read with its writes
//! applied), the node holds at most N tasks of the service that have not ended, whatever
//! their spec version, the task's own included (a task being stopped still runs there). The
//! simulator's services keep one limit in every spec version. Global tasks are one per node
//! and have no limit. Judged when the pass computes, reported when its write commits.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::{NodeId, ServiceId, Task, TaskId};
use swarm_actors::store::{Kind, ObjectBody, Op, StoreState};

use crate::clock::Millis;

/// Every task the pass of `ops` places on a node that then holds more of its service than
/// its spec allows, with the reason.
pub fn judge(state: &StoreState, ops: &[Op]) -> Vec<(Task, String)> {
    let stored = |id: &TaskId| match state.get(Kind::Task, &id.to_string()).map(|o| &o.body) {
        Some(ObjectBody::Task(t)) => Some(t),
        _ => None,
    };
    let placed: Vec<&Task> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Put {
                body: ObjectBody::Task(t),
                ..
            } => Some(t),
            _ => None,
        })
        .filter(|t| t.slot != 0 && t.spec.placement.max_replicas > 0 && t.node_id.is_some())
        .filter(|t| stored(&t.id).is_none_or(|o| o.node_id.is_none()))
        .collect();
    if placed.is_empty() {
        return Vec::new();
    }
    let watched: BTreeSet<(ServiceId, NodeId)> = placed
        .iter()
        .filter_map(|t| t.node_id.map(|n| (t.service_id, n)))
        .collect();
    // The pass's writes, then the store's tasks it did not write.
    // Keyed as the store keys tasks.
    let mut after: BTreeMap<String, Option<&Task>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put {
                body: ObjectBody::Task(t),
                ..
            } => {
                after.insert(t.id.to_string(), Some(t));
            }
            Op::Delete {
                kind: Kind::Task,
                id,
                ..
            } => {
                after.insert(id.clone(), None);
            }
            _ => {}
        }
    }
    for o in state.list(Kind::Task) {
        if let ObjectBody::Task(t) = &o.body {
            after.entry(o.id.clone()).or_insert(Some(t));
        }
    }
    let mut live: BTreeMap<(ServiceId, NodeId), Vec<TaskId>> = BTreeMap::new();
    for t in after.values().flatten() {
        let Some(n) = t.node_id else { continue };
        if watched.contains(&(t.service_id, n)) && !t.status.state.is_terminal() {
            live.entry((t.service_id, n)).or_default().push(t.id);
        }
    }
    let mut found = Vec::new();
    for t in placed {
        let n = t.node_id.expect("placed");
        let max = t.spec.placement.max_replicas;
        let here = live.get(&(t.service_id, n)).map_or(0, Vec::len) as u64;
        if here > max {
            found.push((
                t.clone(),
                format!("the node then holds {here} live tasks of its service, max replicas {max}"),
            ));
        }
    }
    found
}

pub fn violation(at: Millis, task: &Task, why: String) -> String {
    let node = task.node_id.map_or(u128::MAX, |n| n.0);
    format!(
        "(u) at {at} ms task {} (slot {}) was placed on node {} although {why}",
        task.id.0 as u32,
        task.slot,
        node.saturating_sub(1)
    )
}
