//! Invariant (g): one task per replicated slot, defined as what the orchestrator guarantees.
//!
//! A cut-off node keeps running its task while the leader, which sees it Down, orphans that
//! task and starts a replacement elsewhere: two processes of one slot may then run at once,
//! and SwarmKit accepts this. What must hold instead:
//!
//! - (g1) in every manager's applied store, after every entry: no slot has two tasks that the
//!   orchestrator still wants (desired state Running or before) and whose stored status is
//!   RUNNING. An orphaned or shut-down task has its desired state past Running in the same
//!   write that creates its replacement, so a duplicate here means the orchestrator itself
//!   kept two;
//! - (g2) once the cluster healed and [`SETTLE_MS`] passed (sessions resumed, old tasks
//!   stopped within their grace and the kill margin), no slot has two task machines RUNNING on
//!   live nodes (every live node is reachable then). Checked whenever a machine enters RUNNING
//!   and at every convergence check. Two tasks of different spec versions are a rolling
//!   update's old task and its replacement: the old one stops in its grace (stop-first) or
//!   once the new one runs (start-first), and is not counted here.

use std::collections::BTreeMap;

use swarm_actors::model::{ServiceId, TaskState};
use swarm_actors::store::{Kind, ObjectBody, StoreState};

use crate::clock::Millis;
use crate::observed::RunningTasks;

/// After heal, how long old tasks of cut-off nodes have to stop: a session (1 s) after
/// membership sees the node again (a few s), then the longest stop grace the workload sets
/// (5 s) and the kill margin (5 s).
pub const SETTLE_MS: Millis = 15_000;

/// (g1) on one manager's store.
pub fn check_store(at: Millis, manager: usize, state: &StoreState) -> Option<String> {
    let mut seen: BTreeMap<(ServiceId, u64), u128> = BTreeMap::new();
    for o in state.list(Kind::Task) {
        let ObjectBody::Task(t) = &o.body else {
            continue;
        };
        if t.slot == 0
            || t.desired_state > TaskState::Running
            || t.status.state != TaskState::Running
        {
            continue;
        }
        if let Some(other) = seen.insert((t.service_id, t.slot), t.id.0) {
            return Some(format!(
                "(g1) at {at} ms manager {manager}'s store has tasks {} and {} both wanted and \
                 RUNNING in slot {} of service {}",
                other as u32, t.id.0 as u32, t.slot, t.service_id.0 as u16
            ));
        }
    }
    None
}

/// (g2) over the task machines of every live node.
pub fn check_machines(at: Millis, agents: &[Option<impl RunningTasks>]) -> Option<String> {
    let mut seen: BTreeMap<(ServiceId, u64, u64), usize> = BTreeMap::new();
    for (node, a) in agents.iter().enumerate() {
        let Some(a) = a else { continue };
        for r in a.running_tasks() {
            let (service, slot) = (r.service, r.slot);
            if slot == 0 {
                continue;
            }
            // A rolling update replaces a slot's task with one of another version; the old
            // one stops in its own time (stop-first) or once the new one runs (start-first).
            if let Some(other) = seen.insert((service, slot, r.spec_version), node) {
                return Some(format!(
                    "(g2) at {at} ms, after heal, nodes {other} and {node} both run slot {slot} \
                     of service {}",
                    service.0 as u16
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_actors::model::{RuntimeKind, Task, TaskId, TaskSpec, TaskStatus};
    use swarm_actors::store::{Expect, Op, StoreCommand};

    fn task(id: u128, slot: u64, desired: TaskState, state: TaskState) -> Op {
        let t = Task {
            id: TaskId(id),
            service_id: ServiceId(9),
            slot,
            node_id: None,
            spec: TaskSpec {
                runtime: RuntimeKind::Process,
                image: "sim".into(),
                ..TaskSpec::default()
            },
            spec_version: 1,
            desired_state: desired,
            status: TaskStatus::new(state, 0, ""),
            created_ms: 0,
            running_ms: None,
            networks: Vec::new(),
        };
        Op::Put {
            kind: Kind::Task,
            id: t.id.to_string(),
            expect: Expect::Any,
            body: ObjectBody::Task(t),
        }
    }

    #[test]
    fn two_wanted_running_tasks_of_one_slot_are_a_violation() {
        use TaskState::{Running, Shutdown};
        let mut st = StoreState::new();
        let apply = |st: &mut StoreState, index, ops| {
            st.apply(index, &StoreCommand { now_ms: 0, ops }).unwrap();
        };
        // An orphaned task still running next to its replacement is fine...
        apply(
            &mut st,
            1,
            vec![task(1, 1, Shutdown, Running), task(2, 1, Running, Running)],
        );
        // ...and so are running tasks of other slots and of global services (slot 0).
        apply(
            &mut st,
            2,
            vec![task(3, 2, Running, Running), task(4, 0, Running, Running)],
        );
        apply(&mut st, 3, vec![task(5, 0, Running, Running)]);
        assert_eq!(check_store(0, 0, &st), None);
        apply(&mut st, 4, vec![task(6, 1, Running, Running)]);
        assert!(check_store(0, 0, &st).unwrap().starts_with("(g1)"));
    }
}
