//! The leader's pass from the store's point of view: what it writes, in which cases.

use std::collections::BTreeMap;

use super::*;
use crate::model::{Availability, Role, ServiceMode, TaskState};
use crate::orchestrator::tests_support::{service, task};
use crate::scheduler::tests_support::node;
use crate::scheduler::{Unseen, node_views};
use crate::store::NodeObject;

pub(super) fn versioned(tasks: Vec<Task>) -> Vec<VersionedTask<'static>> {
    tasks
        .into_iter()
        .enumerate()
        .map(|(i, task)| VersionedTask {
            version: 10 + i as u64,
            task: Cow::Owned(task),
        })
        .collect()
}

/// Runs a pass; new task IDs count up from 1000.
pub(super) fn run(
    nodes: &[NodeView],
    services: &[Service],
    tasks: &[VersionedTask<'_>],
    reports: &BTreeMap<TaskId, TaskStatus>,
) -> Plan {
    let mut next = 1000u128;
    let mut new_id = || {
        next += 1;
        TaskId(next)
    };
    let versions = services.iter().map(|s| (s.id, ("web", 1))).collect();
    plan(
        &PlanInput {
            now_ms: 1_000_000,
            nodes,
            services,
            networks: &[],
            service_keys: &versions,
            tasks,
            reports,
        },
        &mut new_id,
    )
}

/// The tasks the ops put, by ID.
pub(super) fn puts(p: &Plan) -> BTreeMap<TaskId, (Expect, Task)> {
    p.ops
        .iter()
        .filter_map(|op| match op {
            Op::Put {
                expect,
                body: ObjectBody::Task(t),
                ..
            } => Some((t.id, (*expect, t.clone()))),
            _ => None,
        })
        .collect()
}

fn deletes(p: &Plan) -> Vec<String> {
    p.ops
        .iter()
        .filter_map(|op| match op {
            Op::Delete { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_service_gets_its_tasks_created_and_spread() {
    let nodes = [node(1), node(2), node(3)];
    let svc = service(ServiceMode::Replicated { replicas: 6 });
    let p = run(&nodes, &[svc], &[], &BTreeMap::new());
    let put = puts(&p);
    assert_eq!(put.len(), 6);
    assert_eq!((p.created, p.placed, p.pending), (6, 6, 0));
    let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (expect, t) in put.values() {
        assert_eq!(*expect, Expect::Absent, "a new task must not exist yet");
        assert_eq!(t.status.state, TaskState::Assigned);
        assert_eq!(t.desired_state, TaskState::Running);
        *per_node.entry(t.node_id.unwrap()).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    assert_eq!(p.poke.len(), 3);
}

#[test]
fn a_converged_service_writes_nothing() {
    let nodes = [node(1), node(2)];
    let svc = service(ServiceMode::Replicated { replicas: 2 });
    let tasks = versioned(vec![task(1, 1, Some(1)), task(2, 2, Some(2))]);
    let p = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert!(p.poke.is_empty());
}

#[test]
fn reports_move_status_forward_only_and_compare_versions() {
    let nodes = [node(1)];
    let svc = service(ServiceMode::Replicated { replicas: 2 });
    let mut starting = task(1, 1, Some(1));
    starting.status.state = TaskState::Starting;
    let running = task(2, 2, Some(1));
    let tasks = versioned(vec![starting, running]);
    let mut reports = BTreeMap::new();
    let mut now_running = tasks[0].task.status.clone();
    now_running.state = TaskState::Running;
    reports.insert(TaskId(1), now_running);
    // Backward: the stored Running must stay.
    let mut backward = tasks[1].task.status.clone();
    backward.state = TaskState::Preparing;
    reports.insert(TaskId(2), backward);
    let p = run(&nodes, &[svc], &tasks, &reports);
    let put = puts(&p);
    assert_eq!(put.len(), 1, "only the forward report is written: {put:?}");
    let (expect, t) = &put[&TaskId(1)];
    assert_eq!(*expect, Expect::Version(10));
    assert_eq!(t.status.state, TaskState::Running);
}

#[test]
fn a_terminal_status_is_final() {
    let mut orphaned = task(1, 1, Some(1)).status;
    orphaned.state = TaskState::Orphaned;
    let mut running = orphaned.clone();
    running.state = TaskState::Running;
    assert!(!orphaned.accepts(&running));
    let mut failed = orphaned.clone();
    failed.state = TaskState::Failed;
    assert!(!orphaned.accepts(&failed));
    let mut healthy = running.clone();
    healthy.health = Some(crate::model::Health::Healthy);
    assert!(running.accepts(&healthy), "health changes within a state");
    assert!(!running.accepts(&running.clone()), "nothing new");
}

#[test]
fn a_down_node_gets_its_tasks_orphaned_and_replaced_elsewhere() {
    let mut down = node(1);
    down.state = NodeState::Down;
    let nodes = [down, node(2)];
    let svc = service(ServiceMode::Replicated { replicas: 2 });
    let tasks = versioned(vec![task(1, 1, Some(1)), task(2, 2, Some(2))]);
    let p = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    let put = puts(&p);
    let (_, old) = &put[&TaskId(1)];
    assert_eq!(old.status.state, TaskState::Orphaned);
    assert_eq!(old.desired_state, TaskState::Shutdown);
    let new: Vec<&Task> = put
        .values()
        .map(|(_, t)| t)
        .filter(|t| t.id != TaskId(1))
        .collect();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].slot, 1);
    assert_eq!(
        new[0].node_id,
        Some(NodeId(2)),
        "never back on the down node"
    );
}

#[test]
fn an_unknown_node_keeps_its_tasks() {
    let mut unknown = node(1);
    unknown.state = NodeState::Unknown;
    let nodes = [unknown, node(2)];
    let svc = service(ServiceMode::Replicated { replicas: 1 });
    let tasks = versioned(vec![task(1, 1, Some(1))]);
    let p = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    assert!(p.ops.is_empty(), "{:?}", p.ops);
}

#[test]
fn a_drained_node_gets_nothing_and_its_tasks_move() {
    let mut drained = node(1);
    drained.availability = Availability::Drain;
    let nodes = [drained, node(2)];
    let svc = service(ServiceMode::Replicated { replicas: 2 });
    let tasks = versioned(vec![task(1, 1, Some(1)), task(2, 2, Some(2))]);
    let p = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    let put = puts(&p);
    assert_eq!(put[&TaskId(1)].1.desired_state, TaskState::Shutdown);
    let placed: Vec<NodeId> = put
        .values()
        .filter(|(_, t)| t.status.state == TaskState::Assigned)
        .map(|(_, t)| t.node_id.unwrap())
        .collect();
    assert_eq!(placed, [NodeId(2)]);
    assert!(
        p.poke.contains(&NodeId(1)),
        "the drained node must stop its task"
    );
}

#[test]
fn no_suitable_node_leaves_the_task_pending_with_the_reason_once() {
    let nodes = [node(1)];
    let mut svc = service(ServiceMode::Replicated { replicas: 1 });
    svc.spec.task.placement.constraints = vec!["node.labels.env==prod".into()];
    let p = run(&nodes, &[svc.clone()], &[], &BTreeMap::new());
    let put = puts(&p);
    let (_, t) = put.values().next().unwrap();
    assert_eq!(t.status.state, TaskState::Pending);
    assert!(t.node_id.is_none());
    assert!(
        t.status.message.starts_with("no suitable node"),
        "{}",
        t.status.message
    );
    // The same pass again writes nothing: the reason did not change.
    let tasks = versioned(vec![t.clone()]);
    let again = run(&nodes, &[svc.clone()], &tasks, &BTreeMap::new());
    assert!(again.ops.is_empty(), "{:?}", again.ops);
    // The label appears: the task is placed.
    let mut labelled = node(1);
    labelled.labels.to_mut().insert("env".into(), "prod".into());
    let placed = run(&[labelled], &[svc], &tasks, &BTreeMap::new());
    let put = puts(&placed);
    assert_eq!(put[&t.id].1.status.state, TaskState::Assigned);
    assert_eq!(put[&t.id].0, Expect::Version(10));
}

#[test]
fn tasks_of_a_removed_service_are_stopped_then_deleted() {
    let nodes = [node(1)];
    let running = task(1, 1, Some(1));
    let mut ended = task(2, 2, Some(1));
    ended.status.state = TaskState::Shutdown;
    ended.desired_state = TaskState::Shutdown;
    let mut never_placed = task(3, 3, None);
    never_placed.status.state = TaskState::Pending;
    let tasks = versioned(vec![running, ended, never_placed]);
    let p = run(&nodes, &[], &tasks, &BTreeMap::new());
    let put = puts(&p);
    assert_eq!(put.len(), 1);
    assert_eq!(put[&TaskId(1)].1.desired_state, TaskState::Shutdown);
    let mut del = deletes(&p);
    del.sort();
    assert_eq!(del, [TaskId(2).to_string(), TaskId(3).to_string()]);
}

#[test]
fn a_global_service_is_assigned_to_every_eligible_node_at_once() {
    let mut drained = node(3);
    drained.availability = Availability::Drain;
    let nodes = [node(1), node(2), drained];
    let svc = service(ServiceMode::Global);
    let p = run(&nodes, &[svc], &[], &BTreeMap::new());
    let mut on: Vec<NodeId> = puts(&p)
        .values()
        .map(|(_, t)| {
            assert_eq!(t.slot, 0);
            assert_eq!(t.status.state, TaskState::Assigned);
            t.node_id.unwrap()
        })
        .collect();
    on.sort();
    assert_eq!(on, [NodeId(1), NodeId(2)]);
}

#[test]
fn node_views_follow_membership_and_the_grace() {
    use crate::model::{NodeDescription, NodeResources};
    use crate::store::NodeSpec;
    let obj = |id: u128, described: bool| NodeObject {
        id: NodeId(id),
        spec: NodeSpec {
            role: Role::Worker,
            availability: Availability::Active,
            labels: Default::default(),
        },
        description: described.then(|| NodeDescription {
            id: NodeId(id),
            hostname: format!("h{id}"),
            addr: "127.0.0.1:1".parse().unwrap(),
            role: Role::Worker,
            resources: NodeResources {
                nano_cpus: 1,
                memory_bytes: 1,
            },
            labels: Default::default(),
            runtimes: vec!["process".into()],
            engine_version: String::new(),
            version: 1,
        }),
        raft_id: None,
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    let objs = [obj(1, true), obj(2, true), obj(3, false)];
    let ready: BTreeSet<NodeId> = [NodeId(1), NodeId(3)].into();
    let states = |unseen| -> Vec<NodeState> {
        node_views(&objs, &ready, unseen)
            .into_iter()
            .map(|v| v.state)
            .collect()
    };
    let none = BTreeSet::new();
    assert_eq!(
        states(Unseen::DownOnly(&none)),
        [NodeState::Ready, NodeState::Unknown, NodeState::Unknown]
    );
    assert_eq!(
        states(Unseen::Down),
        [NodeState::Ready, NodeState::Down, NodeState::Unknown]
    );
    // Membership declared node 2 Down: Down even while the leader is new.
    let down = [NodeId(2)].into();
    assert_eq!(
        states(Unseen::DownOnly(&down)),
        [NodeState::Ready, NodeState::Down, NodeState::Unknown]
    );
}

#[test]
fn an_update_replaces_old_tasks_parallelism_at_a_time() {
    let nodes = [node(1), node(2)];
    let mut svc = service(ServiceMode::Replicated { replicas: 3 });
    svc.spec_version = 2;
    svc.spec.task.image = "sleep-v2".into();
    svc.update_status = Some(crate::model::UpdateStatus {
        state: crate::model::UpdateState::Updating,
        started_ms: 0,
        completed_ms: None,
        message: "update in progress".into(),
    });
    let tasks = versioned(vec![
        task(1, 1, Some(1)),
        task(2, 2, Some(2)),
        task(3, 3, Some(1)),
    ]);
    let p = run(&nodes, &[svc.clone()], &tasks, &BTreeMap::new());
    let put = puts(&p);
    assert_eq!(
        put[&TaskId(1)].1.desired_state,
        TaskState::Shutdown,
        "slot 1 first"
    );
    let new: Vec<&Task> = put
        .values()
        .map(|(_, t)| t)
        .filter(|t| t.spec_version == 2)
        .collect();
    assert_eq!(new.len(), 1, "parallelism 1: one at a time");
    assert_eq!((new[0].slot, new[0].spec.image.as_str()), (1, "sleep-v2"));

    // While the replacement is not Running yet, nothing else is replaced.
    let mut after: Vec<Task> = tasks.iter().map(|t| t.task.clone().into_owned()).collect();
    after[0] = put[&TaskId(1)].1.clone();
    after.push(new[0].clone());
    let waiting = run(
        &nodes,
        &[svc.clone()],
        &versioned(after.clone()),
        &BTreeMap::new(),
    );
    assert!(
        puts(&waiting)
            .values()
            .all(|(_, t)| t.spec_version == 2 || t.desired_state == TaskState::Running),
        "no second replacement while the first starts"
    );

    // Once it runs, the next slot goes.
    let last = after.len() - 1;
    after[last].status.state = TaskState::Running;
    let next = run(&nodes, &[svc.clone()], &versioned(after), &BTreeMap::new());
    let put = puts(&next);
    assert_eq!(
        put[&TaskId(2)].1.desired_state,
        TaskState::Shutdown,
        "then slot 2"
    );

    // Parallelism 0 replaces everything at once.
    svc.spec.update.parallelism = 0;
    let all = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    let created = puts(&all)
        .values()
        .filter(|(_, t)| t.spec_version == 2)
        .count();
    assert_eq!(created, 3);
}

#[test]
fn a_node_at_the_task_limit_leaves_a_new_task_pending_as_full() {
    tracing::info!(
        "phase: one node already runs ASSIGNMENTS_MAX tasks; the service wants one more"
    );
    let max = crate::wire::ASSIGNMENTS_MAX as u64;
    let nodes = [node(1)];
    let svc = service(ServiceMode::Replicated { replicas: max + 1 });
    let tasks = versioned(
        (1..=max)
            .map(|slot| task(slot as u128, slot, Some(1)))
            .collect(),
    );
    let p = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    assert_eq!((p.created, p.placed, p.pending), (1, 0, 1));
    let put = puts(&p);
    let (_, t) = put.values().next().expect("the new task is written");
    assert_eq!(t.node_id, None);
    assert_eq!(t.status.state, TaskState::Pending);
    // The status message is what `service ps` shows after "Pending".
    assert_eq!(t.status.message, "no suitable node (1 node full)");
}

#[test]
fn a_reported_status_has_its_texts_cut() {
    use crate::wire::answer::STATUS_TEXT_BYTES_MAX;
    let nodes = [node(1)];
    let svc = service(ServiceMode::Replicated { replicas: 1 });
    let mut starting = task(1, 1, Some(1));
    starting.status.state = TaskState::Starting;
    let tasks = versioned(vec![starting]);
    let mut failed = TaskStatus::new(TaskState::Failed, 5, "x".repeat(100_000));
    failed.error = Some("y".repeat(100_000));
    let p = run(
        &nodes,
        &[svc],
        &tasks,
        &BTreeMap::from([(TaskId(1), failed)]),
    );
    let (_, t) = &puts(&p)[&TaskId(1)];
    assert_eq!(t.status.state, TaskState::Failed);
    assert_eq!(t.status.message.len(), STATUS_TEXT_BYTES_MAX);
    assert_eq!(
        t.status.error.as_ref().map(String::len),
        Some(STATUS_TEXT_BYTES_MAX)
    );
}
