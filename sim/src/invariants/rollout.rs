//! What one leader pass did to the slots of a service under a rolling update: the reading that
//! invariants (l) `update_parallelism` and (n) `pause_holds` judge. Not an invariant itself.
//!
//! A pass is read as the store it started from (its manager's local store, which the
//! simulator lends it), the node views it computed, and the operations it wrote. Only
//! services whose update status, before or after the pass, is rolling or paused, and that the
//! pass wrote or made a task for, are looked at, so a pass that makes no task and writes no
//! service costs one look at its operations.
//!
//! A *slot* is a replicated service's slot number, or a global service's node. A pass *starts
//! replacing* a slot when it creates a task of the service's current spec version there while
//! the slot has a live (desired Running or before) task of another version that has not ended
//! (its *old* task), and either
//! - stops that old task in the same write (desired state past Running, its status not ended,
//!   so not orphaned): the stop-first pattern; or
//! - leaves it live: the start-first pattern.
//!
//! The orchestrator makes the same stop-and-create write when it moves a task off a drained
//! node; a slot whose old task is on a node the pass saw drained or Down is not counted. It
//! also replaces a new task while the old one still runs (start-first): it restarts it after it
//! ended, or orphans it with its node; a slot where the pass took a task of the current version
//! out is not counted. Nor is a slot where it took out a task of any version whose node is Down
//! or drained: the orchestrator replaces that one, and may stop a live duplicate of the slot in
//! the same write (seed 14: a start-first task of an older update never ran, the service was
//! updated again, the node of the slot's other task went Down). Its other creations
//! (a restart after the old task ended, a replacement for an orphan, a new slot after a scale
//! up) have no old task that has not ended, so they are never counted.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::{
    Availability, NodeId, NodeState, Service, ServiceId, Task, TaskId, TaskState, UpdateOrder,
};
use swarm_actors::scheduler::NodeView;
use swarm_actors::store::{Expect, Kind, ObjectBody, Op, StoreState};

/// A slot: (slot number, node) — `(n, None)` replicated, `(0, Some(node))` global.
pub type Slot = (u64, Option<NodeId>);

/// A task's slot.
pub fn slot_of(t: &Task) -> Slot {
    match t.slot {
        0 => (0, t.node_id),
        s => (s, None),
    }
}

/// Whether the orchestrator still wants `t` and it has not ended.
pub fn live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running && !t.status.state.is_terminal()
}

/// One service as a pass left it.
pub struct Change<'a> {
    /// The service's key in the store (its name, as the control API writes it).
    pub key: &'a str,
    pub before: &'a Service,
    /// The service the pass wrote, or `before`.
    pub after: &'a Service,
    /// Whether the pass wrote the service.
    pub written: bool,
    /// Slots the pass started replacing, stop-first, with the task it created.
    pub stop_first: Vec<(Slot, TaskId)>,
    /// Slots the pass started replacing, start-first, with the task it created.
    pub start_first: Vec<(Slot, TaskId)>,
    /// Every task of the service after the pass, when (l) may judge it: the service rolls
    /// stop-first with a parallelism and the pass made a task for it. Empty otherwise, so that
    /// a pass costs no copy of every task.
    pub tasks: Vec<&'a Task>,
}

/// A task as the pass read it, and as it left it (`None`: deleted).
type Seen<'a> = (&'a Task, Option<&'a Task>);

/// Whether a service's update status makes it one to look at.
fn watched(s: &Service) -> bool {
    s.update_status
        .as_ref()
        .is_some_and(|u| u.state.is_rolling() || u.state.is_paused())
}

/// Whether (l) may judge `s` after a pass: rolling, stop-first, with a parallelism.
fn parallel_stop_first(s: &Service) -> bool {
    let config = s.rollout_config();
    s.update_status
        .as_ref()
        .is_some_and(|u| u.state.is_rolling())
        && config.order == UpdateOrder::StopFirst
        && config.parallelism > 0
}

/// The services under a rolling or paused update that the pass read or wrote, as it left them.
pub fn changes<'a>(read: &'a StoreState, views: &[NodeView], ops: &'a [Op]) -> Vec<Change<'a>> {
    let mut written: BTreeMap<ServiceId, &'a Service> = BTreeMap::new();
    // Tasks the pass made, and those it changed or deleted, by ID.
    let mut made: Vec<&'a Task> = Vec::new();
    let mut changed: BTreeMap<String, Option<&'a Task>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put {
                body: ObjectBody::Service(s),
                ..
            } => {
                written.insert(s.id, s);
            }
            Op::Put {
                body: ObjectBody::Task(t),
                expect: Expect::Absent,
                ..
            } => made.push(t),
            Op::Put {
                id,
                body: ObjectBody::Task(t),
                ..
            } => {
                changed.insert(id.clone(), Some(t));
            }
            Op::Delete {
                kind: Kind::Task,
                id,
                ..
            } => {
                changed.insert(id.clone(), None);
            }
            _ => {}
        }
    }
    if written.is_empty() && made.is_empty() {
        return Vec::new();
    }
    let making: BTreeSet<ServiceId> = made.iter().map(|t| t.service_id).collect();
    let mut out: Vec<Change<'a>> = Vec::new();
    for o in read.list(Kind::Service) {
        let ObjectBody::Service(before) = &o.body else {
            continue;
        };
        let after = written.get(&before.id).copied();
        if !watched(before) && !after.is_some_and(watched) {
            continue;
        }
        if after.is_none() && !making.contains(&before.id) {
            continue;
        }
        out.push(Change {
            key: &o.id,
            before,
            after: after.unwrap_or(before),
            written: after.is_some(),
            stop_first: Vec::new(),
            start_first: Vec::new(),
            tasks: Vec::new(),
        });
    }
    if out.is_empty() {
        return out;
    }
    let index: BTreeMap<ServiceId, usize> = out
        .iter()
        .enumerate()
        .map(|(i, c)| (c.before.id, i))
        .collect();
    // The slots the pass made a task in, with their tasks as read and as left.
    let mut slots: BTreeMap<(ServiceId, Slot), Vec<Seen<'a>>> = made
        .iter()
        .filter(|t| index.contains_key(&t.service_id))
        .map(|t| ((t.service_id, slot_of(t)), Vec::new()))
        .collect();
    let whole: BTreeSet<ServiceId> = out
        .iter()
        .filter(|c| making.contains(&c.before.id) && parallel_stop_first(c.after))
        .map(|c| c.before.id)
        .collect();
    for o in read.list(Kind::Task) {
        let ObjectBody::Task(t) = &o.body else {
            continue;
        };
        let Some(&i) = index.get(&t.service_id) else {
            continue;
        };
        let now = match changed.get(&o.id) {
            Some(now) => *now,
            None => Some(t),
        };
        if let Some(v) = slots.get_mut(&(t.service_id, slot_of(t))) {
            v.push((t, now));
        }
        if whole.contains(&t.service_id)
            && let Some(n) = now
        {
            out[i].tasks.push(n);
        }
    }
    for t in &made {
        if let Some(&i) = index.get(&t.service_id)
            && whole.contains(&t.service_id)
        {
            out[i].tasks.push(t);
        }
    }
    let moved_off: BTreeSet<NodeId> = views
        .iter()
        .filter(|v| v.availability == Availability::Drain || v.state == NodeState::Down)
        .map(|v| v.id)
        .collect();
    for t in made {
        let Some(&i) = index.get(&t.service_id) else {
            continue;
        };
        let c = &mut out[i];
        let current = c.after.spec_version;
        if t.spec_version != current || !live(t) {
            continue;
        }
        let slot = slot_of(t);
        let here = &slots[&(t.service_id, slot)];
        // The orchestrator replacing a new task (restarting it after it ended, or moving it
        // off a node that is Down or drained): it takes that one out in the same write.
        // Or replacing a task of any version that it takes out because its node is Down or
        // drained: the updater never replaces a slot whose task was lost with its node, so a
        // live old task that the same write stops there (a duplicate of the slot) is the
        // orchestrator's clean-up, not a stop-first start.
        let restarted = here.iter().any(|(was, now)| {
            (was.spec_version == current || was.node_id.is_some_and(|n| moved_off.contains(&n)))
                && was.desired_state <= TaskState::Running
                && now.is_some_and(|n| n.desired_state > TaskState::Running)
        });
        if restarted {
            continue;
        }
        for (o, now) in here {
            if o.spec_version == current || !live(o) {
                continue;
            }
            if o.node_id.is_some_and(|n| moved_off.contains(&n)) {
                continue;
            }
            match now {
                Some(n) if live(n) => c.start_first.push((slot, t.id)),
                Some(n) if !n.status.state.is_terminal() => c.stop_first.push((slot, t.id)),
                _ => {}
            }
        }
    }
    out
}

/// A slot as a report names it: `3` or `on node 7`.
pub fn slot_name(slot: &Slot) -> String {
    match slot {
        (0, Some(n)) => format!("on node {}", n.0.saturating_sub(1)),
        (s, _) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::{pause_holds, update_parallelism};
    use swarm_actors::model::{
        NodeResources, Role, ServiceMode, ServiceSpec, TaskSpec, TaskStatus, UpdateConfig,
        UpdateState, UpdateStatus,
    };
    use swarm_actors::store::StoreCommand;

    const SVC: ServiceId = ServiceId(9);

    fn service(state: UpdateState, parallelism: u64) -> Service {
        let spec = ServiceSpec {
            endpoint_mode: Default::default(),
            name: "web".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 3 },
            task: TaskSpec::default(),
            update: UpdateConfig {
                parallelism,
                ..UpdateConfig::default()
            },
            rollback: UpdateConfig::default(),
            ports: Vec::new(),
            depends_on: Vec::new(),
        };
        let mut s = Service::new(SVC, spec);
        s.spec_version = 2;
        s.previous_spec_version = Some(1);
        s.update_status = Some(UpdateStatus {
            state,
            started_ms: 100,
            completed_ms: None,
            message: String::new(),
        });
        s
    }

    fn task(id: u128, slot: u64, version: u64, node: u128) -> Task {
        Task {
            id: TaskId(id),
            service_id: SVC,
            slot,
            node_id: Some(NodeId(node)),
            spec: TaskSpec::default(),
            spec_version: version,
            desired_state: TaskState::Running,
            status: TaskStatus::new(TaskState::Running, 0, "running"),
            created_ms: 0,
            running_ms: Some(0),
            networks: Vec::new(),
        }
    }

    fn put_task(t: Task, expect: Expect) -> Op {
        Op::Put {
            kind: Kind::Task,
            id: t.id.to_string(),
            expect,
            body: ObjectBody::Task(t),
        }
    }

    fn view(id: u128, availability: Availability) -> NodeView<'static> {
        NodeView {
            id: NodeId(id),
            hostname: format!("n{id}").into(),
            role: Role::Worker,
            availability,
            state: NodeState::Ready,
            labels: Default::default(),
            engine_labels: Default::default(),
            runtimes: vec!["process".into()].into(),
            resources: NodeResources {
                nano_cpus: 1,
                memory_bytes: 1,
            },
        }
    }

    /// A store with `s` and three old tasks (slots 1..=3 on nodes 1..=3).
    fn store(s: &Service) -> StoreState {
        let mut st = StoreState::new();
        let mut ops = vec![Op::Put {
            kind: Kind::Service,
            id: s.id.to_string(),
            expect: Expect::Any,
            body: ObjectBody::Service(s.clone()),
        }];
        ops.extend((1..=3).map(|i| put_task(task(i, i as u64, 1, i), Expect::Any)));
        st.apply(1, &StoreCommand { now_ms: 0, ops }).unwrap();
        st
    }

    /// The pass's ops that replace slot `slot` stop-first: the old task stopped, a new made.
    fn replace(slot: u64) -> Vec<Op> {
        let mut old = task(slot as u128, slot, 1, slot as u128);
        old.desired_state = TaskState::Shutdown;
        let mut new = task(100 + slot as u128, slot, 2, 0);
        new.node_id = None;
        new.status = TaskStatus::new(TaskState::New, 200, "created");
        new.created_ms = 200;
        new.running_ms = None;
        vec![
            put_task(old, Expect::Version(1)),
            put_task(new, Expect::Absent),
        ]
    }

    #[test]
    fn stop_first_replacements_are_counted_against_parallelism() {
        let s = service(UpdateState::Updating, 1);
        let st = store(&s);
        let views: Vec<NodeView> = (1..=3).map(|i| view(i, Availability::Active)).collect();
        let one = replace(1);
        let c = changes(&st, &views, &one);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].stop_first.len(), 1);
        assert!(c[0].start_first.is_empty());
        assert_eq!(update_parallelism::judge(&c[0]), None);
        let two: Vec<Op> = replace(1).into_iter().chain(replace(2)).collect();
        let c = changes(&st, &views, &two);
        let why = update_parallelism::judge(&c[0]).expect("two slots at parallelism 1");
        assert!(why.contains("2 slots being replaced"), "{why}");
        assert_eq!(pause_holds::judge(&c[0]), None);
    }

    #[test]
    fn replacing_a_task_lost_with_its_node_is_the_orchestrators_even_with_a_duplicate() {
        // Slot 1 holds its running task on node 1 and a duplicate of another old version on
        // node 4 that never ran. Node 1 is Down: the pass orphans its task, stops the
        // duplicate and makes the slot's task of the current version.
        let s = service(UpdateState::Updating, 1);
        let mut st = store(&s);
        let mut dup = task(4, 1, 0, 4);
        dup.status = TaskStatus::new(TaskState::Preparing, 0, "preparing");
        dup.running_ms = None;
        let ops = vec![put_task(dup.clone(), Expect::Any)];
        st.apply(2, &StoreCommand { now_ms: 0, ops }).unwrap();
        let mut views: Vec<NodeView> = (1..=4).map(|i| view(i, Availability::Active)).collect();
        views[0].state = NodeState::Down;
        let mut ops = replace(1);
        if let Op::Put {
            body: ObjectBody::Task(t),
            ..
        } = &mut ops[0]
        {
            t.status = TaskStatus::new(TaskState::Orphaned, 200, "node is down");
        }
        dup.desired_state = TaskState::Shutdown;
        ops.push(put_task(dup, Expect::Version(2)));
        let c = changes(&st, &views, &ops);
        assert!(c[0].stop_first.is_empty());
        assert!(c[0].start_first.is_empty());
        assert_eq!(update_parallelism::judge(&c[0]), None);
    }

    #[test]
    fn a_drained_node_is_the_orchestrator_moving_a_task() {
        let s = service(UpdateState::Paused, 1);
        let st = store(&s);
        let views = vec![
            view(1, Availability::Drain),
            view(2, Availability::Active),
            view(3, Availability::Active),
        ];
        let ops = replace(1);
        let c = changes(&st, &views, &ops);
        assert!(c[0].stop_first.is_empty());
        assert_eq!(pause_holds::judge(&c[0]), None);
    }

    #[test]
    fn a_paused_update_replaces_nothing_and_stays_paused() {
        let s = service(UpdateState::Paused, 1);
        let st = store(&s);
        let views: Vec<NodeView> = (1..=3).map(|i| view(i, Availability::Active)).collect();
        let ops = replace(3);
        let c = changes(&st, &views, &ops);
        let why = pause_holds::judge(&c[0]).expect("a replacement while paused");
        assert!(why.contains("replaced by the updater: 3"), "{why}");
        // Start-first: the new task made, the old one left running.
        let ops = vec![replace(3).remove(1)];
        let c = changes(&st, &views, &ops);
        assert_eq!(c[0].start_first.len(), 1);
        assert!(pause_holds::judge(&c[0]).is_some());
        // The status written by the leader.
        let resumed = service(UpdateState::Updating, 1);
        let ops = vec![Op::Put {
            kind: Kind::Service,
            id: s.id.to_string(),
            expect: Expect::Version(1),
            body: ObjectBody::Service(resumed),
        }];
        let c = changes(&st, &views, &ops);
        let why = pause_holds::judge(&c[0]).expect("left paused");
        assert!(why.contains("left paused on its own"), "{why}");
    }
}
