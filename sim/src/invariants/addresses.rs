//! Invariant (q): ingress addresses. For every task a pass gives an address, judged on the
//! tasks as the pass leaves them (the store it read, with its writes), reported if the write
//! commits, like (h):
//!
//! - (q1) the address is well formed (network `ingress`, a /24 slice of 10.255.0.0/16, gateway
//!   `.1`, host `.2`–`.254`), no other live (non-terminal) task holds it, the node's other live
//!   tasks are in the same slice, and no live task of another node is in that slice (an
//!   orphaned task counts as live here: it may still run on its cut-off node);
//! - (q2) ended tasks' addresses are free for reuse: the address is the lowest one free, so
//!   every address of the slice below it is held by another live task of the node (checked
//!   as a count: at most as many addresses below it as the node's other live tasks hold).

use std::collections::BTreeMap;

use swarm_actors::leader::plan::{holds_no_address, ingress, slice_of};
use swarm_actors::model::{INGRESS_NETWORK, NODE_SLICE_PREFIX, Task, TaskId};
use swarm_actors::store::{Kind, ObjectBody, Op, StoreState};

use crate::clock::Millis;

/// Each task the pass's ops give an address for the first time, with why it is wrong (one
/// sentence per fault found).
pub fn judge(state: &StoreState, ops: &[Op]) -> Vec<(Task, String)> {
    let stored = |id: &TaskId| match state.get(Kind::Task, &id.to_string()).map(|o| &o.body) {
        Some(ObjectBody::Task(t)) => Some(t),
        _ => None,
    };
    let addressed: Vec<&Task> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Put {
                body: ObjectBody::Task(t),
                ..
            } if ingress(t).is_some() && stored(&t.id).is_none_or(|o| ingress(o).is_none()) => {
                Some(t)
            }
            _ => None,
        })
        .collect();
    if addressed.is_empty() {
        return Vec::new();
    }
    // The tasks as the pass leaves them.
    let mut after: BTreeMap<TaskId, &Task> = state
        .list(Kind::Task)
        .filter_map(|o| match &o.body {
            ObjectBody::Task(t) => Some((t.id, t)),
            _ => None,
        })
        .collect();
    for op in ops {
        match op {
            Op::Put {
                body: ObjectBody::Task(t),
                ..
            } => {
                after.insert(t.id, t);
            }
            Op::Delete {
                kind: Kind::Task,
                id,
                ..
            } => {
                if let Ok(id) = id.parse() {
                    after.remove(&id);
                }
            }
            _ => {}
        }
    }
    let live: Vec<&Task> = after
        .values()
        .copied()
        .filter(|t| !holds_no_address(t) && t.node_id.is_some() && ingress(t).is_some())
        .collect();
    let mut out = Vec::new();
    for t in addressed {
        let a = ingress(t).expect("filtered");
        let [_, _, slice_byte, host] = a.addr.octets();
        let slice = slice_of(a.addr);
        let mut why = Vec::new();
        if a.network != INGRESS_NETWORK
            || a.prefix != NODE_SLICE_PREFIX
            || slice.is_none()
            || !(2..=254).contains(&host)
            || a.gateway.octets() != [10, 255, slice_byte, 1]
        {
            why.push(format!("its attachment is malformed: {a:?}"));
        }
        let mut below = 0usize;
        for o in live.iter().filter(|o| o.id != t.id) {
            let oa = ingress(o).expect("filtered");
            if oa.addr == a.addr {
                why.push(format!("task {} holds the same address", o.id.0 as u32));
            }
            let same_slice = slice_of(oa.addr) == slice;
            if o.node_id == t.node_id && !same_slice {
                why.push(format!(
                    "task {} of the same node is in another slice ({})",
                    o.id.0 as u32, oa.addr
                ));
            }
            if o.node_id != t.node_id && same_slice {
                why.push(format!(
                    "task {} of another node is in the same slice ({})",
                    o.id.0 as u32, oa.addr
                ));
            }
            if o.node_id == t.node_id {
                below += 1;
            }
        }
        if usize::from(host).saturating_sub(2) > below {
            why.push(format!(
                "it is not the lowest free address: .{host} while the node's other live tasks \
                 hold {below} (an ended task's address was not reused)"
            ));
        }
        if !why.is_empty() {
            out.push((t.clone(), why.join("; ")));
        }
    }
    out
}

pub fn violation(at: Millis, task: &Task, why: String) -> String {
    let node = task.node_id.map_or(u128::MAX, |n| n.0);
    let addr = ingress(task)
        .map(|a| a.addr.to_string())
        .unwrap_or_default();
    format!(
        "(q) at {at} ms task {} (slot {}) on node {} was given address {addr}, but {why}",
        task.id.0 as u32,
        task.slot,
        node.saturating_sub(1)
    )
}
