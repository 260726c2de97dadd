//! The orchestrators' tests: one per rule, then properties over random task sets (fixed seed)
//! that apply the actions the way the leader would and check the slot invariants.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::tests_support::{service, task};
use super::*;
use crate::model::{
    Availability, NodeState, RestartCondition, RestartPolicy, ServiceId, TaskState,
};
use crate::scheduler::constraint::Constraint;
use crate::scheduler::filter::{check_static, has_runtime};
use crate::scheduler::tests_support::node;

fn replicated(n: u64) -> Service {
    service(ServiceMode::Replicated { replicas: n })
}

fn ended(mut t: Task, state: TaskState, at: u64) -> Task {
    t.status.state = state;
    t.status.since_ms = at;
    t
}

fn creates(actions: &[Action]) -> Vec<(u64, Option<NodeId>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { slot, node, .. } => Some((*slot, *node)),
            _ => None,
        })
        .collect()
}

fn shutdowns(actions: &[Action]) -> Vec<TaskId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Shutdown { task, .. } => Some(*task),
            _ => None,
        })
        .collect()
}

/// Applies actions as the leader would. New tasks are pending (no node) for replicated
/// services, on their node for global ones.
fn apply(tasks: &mut Vec<Task>, actions: &[Action], next_id: &mut u128, now: u64) {
    for a in actions {
        match a {
            Action::Create {
                slot,
                node,
                spec_version,
            } => {
                let mut t = task(*next_id, *slot, None);
                *next_id += 1;
                t.node_id = *node;
                t.spec_version = *spec_version;
                t.status.state = TaskState::Pending;
                t.status.since_ms = now;
                t.created_ms = now;
                tasks.push(t);
            }
            Action::Shutdown { task, .. } => {
                let t = tasks
                    .iter_mut()
                    .find(|t| t.id == *task)
                    .expect("known task");
                assert!(is_live(t), "shut down twice");
                t.desired_state = TaskState::Shutdown;
            }
            Action::MarkOrphaned { task } => {
                let t = tasks
                    .iter_mut()
                    .find(|t| t.id == *task)
                    .expect("known task");
                t.status.state = TaskState::Orphaned;
                t.desired_state = TaskState::Shutdown;
            }
            Action::Remove { task } => {
                let i = tasks
                    .iter()
                    .position(|t| t.id == *task)
                    .expect("known task");
                assert!(tasks[i].status.state.is_terminal() && !is_live(&tasks[i]));
                tasks.remove(i);
            }
            Action::RestartLater { .. } => {}
            Action::CreateHeld { .. } | Action::Release { .. } => {
                panic!("only the rolling updater holds tasks: {a:?}")
            }
        }
    }
}

// ---- replicated ----

#[test]
fn scale_up_fills_missing_slots() {
    let tasks = [task(10, 1, Some(1))];
    let a = reconcile(&replicated(3), &tasks, &[node(1)], 0);
    assert_eq!(creates(&a), vec![(2, None), (3, None)]);
    assert!(a.iter().all(|x| matches!(
        x,
        Action::Create {
            spec_version: 1,
            ..
        }
    )));
}

#[test]
fn scale_down_shuts_down_the_highest_slots() {
    let tasks = [
        task(10, 1, Some(1)),
        task(11, 2, Some(1)),
        task(12, 3, Some(1)),
    ];
    let a = reconcile(&replicated(1), &tasks, &[node(1)], 0);
    assert_eq!(
        a,
        vec![
            Action::Shutdown {
                task: TaskId(11),
                reason: "scaled down".into()
            },
            Action::Shutdown {
                task: TaskId(12),
                reason: "scaled down".into()
            },
        ]
    );
}

#[test]
fn failed_task_is_replaced_in_its_slot_after_the_delay() {
    let mut s = replicated(1);
    s.spec.task.restart.delay_ms = 5_000;
    let tasks = [ended(task(10, 1, Some(1)), TaskState::Failed, 1_000)];
    let a = reconcile(&s, &tasks, &[node(1)], 2_000);
    assert_eq!(
        a,
        vec![Action::RestartLater {
            slot: 1,
            at_ms: 6_000
        }]
    );
    let a = reconcile(&s, &tasks, &[node(1)], 6_000);
    assert_eq!(shutdowns(&a), vec![TaskId(10)]);
    assert_eq!(creates(&a), vec![(1, None)]);
}

#[test]
fn restart_conditions_none_and_on_failure() {
    let mut s = replicated(2);
    s.spec.task.restart = RestartPolicy {
        condition: RestartCondition::None,
        delay_ms: 0,
        max_attempts: None,
        window_ms: 0,
    };
    let tasks = [
        ended(task(10, 1, Some(1)), TaskState::Complete, 0),
        ended(task(11, 2, Some(1)), TaskState::Failed, 0),
    ];
    assert!(
        reconcile(&s, &tasks, &[node(1)], 10).is_empty(),
        "none: ended tasks keep their slots"
    );
    s.spec.task.restart.condition = RestartCondition::OnFailure;
    let a = reconcile(&s, &tasks, &[node(1)], 10);
    assert_eq!(
        creates(&a),
        vec![(2, None)],
        "on-failure: only the failed one"
    );
    assert_eq!(shutdowns(&a), vec![TaskId(11)]);
}

#[test]
fn max_attempts_stops_restarts() {
    let mut s = replicated(1);
    s.spec.task.restart = RestartPolicy {
        condition: RestartCondition::Any,
        delay_ms: 0,
        max_attempts: Some(2),
        window_ms: 0,
    };
    let mut tasks = vec![task(1, 1, Some(1))];
    let mut next = 100;
    let mut restarts = 0;
    for round in 0..6u64 {
        // The live task of slot 1 fails.
        let live = tasks.iter_mut().find(|t| is_live(t)).unwrap();
        if !live.status.state.is_terminal() {
            live.status.state = TaskState::Failed;
            live.status.since_ms = round * 10;
        }
        let a = reconcile(&s, &tasks, &[node(1)], round * 10 + 1);
        restarts += creates(&a).len();
        apply(&mut tasks, &a, &mut next, round * 10 + 1);
    }
    assert_eq!(restarts, 2);
    assert_eq!(tasks.iter().filter(|t| is_live(t)).count(), 1);
}

#[test]
fn task_on_a_down_or_removed_node_is_orphaned_and_replaced_at_once() {
    let mut s = replicated(2);
    s.spec.task.restart.delay_ms = 60_000;
    let mut down = node(1);
    down.state = NodeState::Down;
    let tasks = [task(10, 1, Some(1)), task(11, 2, Some(9))];
    let a = reconcile(&s, &tasks, &[down, node(2)], 0);
    assert_eq!(
        a,
        vec![
            Action::MarkOrphaned { task: TaskId(10) },
            Action::Create {
                slot: 1,
                node: None,
                spec_version: 1
            },
            Action::MarkOrphaned { task: TaskId(11) },
            Action::Create {
                slot: 2,
                node: None,
                spec_version: 1
            },
        ]
    );
}

#[test]
fn drain_moves_tasks_and_pause_keeps_them() {
    let s = replicated(2);
    let mut drained = node(1);
    drained.availability = Availability::Drain;
    let mut paused = node(2);
    paused.availability = Availability::Pause;
    let tasks = [task(10, 1, Some(1)), task(11, 2, Some(2))];
    let a = reconcile(&s, &tasks, &[drained.clone(), paused], 0);
    assert_eq!(
        a[0],
        Action::Shutdown {
            task: TaskId(10),
            reason: "node is drained".into()
        }
    );
    assert_eq!(creates(&a), vec![(1, None)]);
    assert_eq!(a.len(), 2, "the paused node's task stays");
    // A task that ended on a drained node is replaced without the restart delay.
    let tasks = [ended(task(10, 1, Some(1)), TaskState::Failed, 100)];
    let a = reconcile(&replicated(1), &tasks, &[drained], 101);
    assert_eq!(creates(&a), vec![(1, None)]);
}

#[test]
fn history_keeps_five_tasks_per_slot() {
    let s = replicated(1);
    let mut tasks: Vec<Task> = (1..=7)
        .map(|i| {
            let mut t = ended(task(i, 1, Some(1)), TaskState::Failed, i as u64);
            t.desired_state = TaskState::Shutdown;
            t
        })
        .collect();
    tasks.push(task(8, 1, Some(1)));
    let a = reconcile(&s, &tasks, &[node(1)], 100);
    assert_eq!(
        a,
        vec![
            Action::Remove { task: TaskId(1) },
            Action::Remove { task: TaskId(2) },
            Action::Remove { task: TaskId(3) },
        ]
    );
}

#[test]
fn duplicates_in_a_slot_keep_the_most_advanced() {
    let mut pending = task(12, 1, None);
    pending.status.state = TaskState::Pending;
    let tasks = [task(10, 1, Some(1)), pending];
    let a = reconcile(&replicated(1), &tasks, &[node(1)], 0);
    assert_eq!(shutdowns(&a), vec![TaskId(12)]);
}

#[test]
fn tasks_of_other_services_are_ignored() {
    let mut other = task(10, 1, Some(1));
    other.service_id = ServiceId(2);
    let a = reconcile(&replicated(1), &[other], &[node(1)], 0);
    assert_eq!(creates(&a), vec![(1, None)]);
}

#[test]
fn task_names() {
    assert_eq!(task_name("web", 1, None), "web.1");
    assert_eq!(
        task_name("web", 0, Some(NodeId(5))),
        format!("web.{}", NodeId(5))
    );
}

// ---- global ----

#[test]
fn global_runs_one_task_per_eligible_node_and_follows_joins() {
    let s = service(ServiceMode::Global);
    let mut nodes = vec![node(1), node(2)];
    let a = reconcile(&s, &[], &nodes, 0);
    assert_eq!(
        creates(&a),
        vec![(0, Some(NodeId(1))), (0, Some(NodeId(2)))]
    );
    let tasks = [task(10, 0, Some(1)), task(11, 0, Some(2))];
    assert!(reconcile(&s, &tasks, &nodes, 0).is_empty());
    nodes.push(node(3));
    let a = reconcile(&s, &tasks, &nodes, 0);
    assert_eq!(
        creates(&a),
        vec![(0, Some(NodeId(3)))],
        "a node that joins gets one"
    );
    nodes[2].runtimes = Vec::new().into();
    assert!(
        reconcile(&s, &tasks, &nodes, 0).is_empty(),
        "no runtime, no task"
    );
}

#[test]
fn global_node_that_stops_matching_loses_its_task() {
    let mut s = service(ServiceMode::Global);
    s.spec.task.placement.constraints = vec!["node.labels.env==prod".into()];
    let mut nodes = vec![node(1), node(2), node(3)];
    for n in &mut nodes {
        n.labels.to_mut().insert("env".into(), "prod".into());
    }
    let tasks = [
        task(10, 0, Some(1)),
        task(11, 0, Some(2)),
        task(12, 0, Some(3)),
    ];
    nodes[0].labels.to_mut().clear();
    nodes[1].availability = Availability::Drain;
    nodes[2].availability = Availability::Pause;
    let a = reconcile(&s, &tasks, &nodes, 0);
    assert_eq!(
        a,
        vec![
            Action::Shutdown {
                task: TaskId(10),
                reason: "node no longer satisfies the constraints".into()
            },
            Action::Shutdown {
                task: TaskId(11),
                reason: "node is drained".into()
            },
        ],
        "the paused node keeps its task"
    );
    let a = reconcile(&s, &[], &nodes, 0);
    assert!(a.is_empty(), "a paused node gets nothing new");
}

#[test]
fn global_down_node_task_is_orphaned_not_moved() {
    let s = service(ServiceMode::Global);
    let mut nodes = vec![node(1), node(2)];
    nodes[0].state = NodeState::Down;
    let tasks = [
        task(10, 0, Some(1)),
        task(11, 0, Some(2)),
        task(12, 0, Some(7)),
    ];
    let a = reconcile(&s, &tasks, &nodes, 0);
    assert_eq!(
        a,
        vec![
            Action::MarkOrphaned { task: TaskId(10) },
            Action::MarkOrphaned { task: TaskId(12) },
        ]
    );
    // Back up: the orphaned task stays down, a new one starts there.
    nodes[0].state = NodeState::Ready;
    let mut tasks = tasks.to_vec();
    let mut next = 100;
    apply(&mut tasks, &a, &mut next, 0);
    let a = reconcile(&s, &tasks, &nodes, 1);
    assert_eq!(creates(&a), vec![(0, Some(NodeId(1)))]);
}

#[test]
fn global_failed_task_restarts_on_its_node_after_the_delay() {
    let mut s = service(ServiceMode::Global);
    s.spec.task.restart.delay_ms = 1_000;
    let tasks = [ended(task(10, 0, Some(1)), TaskState::Failed, 500)];
    let a = reconcile(&s, &tasks, &[node(1)], 600);
    assert_eq!(
        a,
        vec![Action::RestartLater {
            slot: 0,
            at_ms: 1_500
        }]
    );
    let a = reconcile(&s, &tasks, &[node(1)], 1_500);
    assert_eq!(shutdowns(&a), vec![TaskId(10)]);
    assert_eq!(creates(&a), vec![(0, Some(NodeId(1)))]);
}

// ---- properties ----

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        rng_seed: RngSeed::Fixed(0x0c4e_57a7_0123),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeView<'static>>> {
    prop::collection::vec(
        (
            prop_oneof![
                4 => Just(NodeState::Ready),
                1 => Just(NodeState::Down),
                1 => Just(NodeState::Unknown)
            ],
            prop_oneof![
                4 => Just(Availability::Active),
                1 => Just(Availability::Pause),
                1 => Just(Availability::Drain)
            ],
            any::<bool>(),
            any::<bool>(),
        ),
        1..5,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (state, availability, prod, runtime))| {
                let mut n = node(i as u128 + 1);
                n.state = state;
                n.availability = availability;
                if prod {
                    n.labels.to_mut().insert("env".into(), "prod".into());
                }
                if !runtime {
                    n.runtimes = Vec::new().into();
                }
                n
            })
            .collect()
    })
}

fn arb_state() -> impl Strategy<Value = TaskState> {
    prop::sample::select(vec![
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Orphaned,
    ])
}

/// Tasks on slots 0..8 (global: slot 0) and nodes 1..6, node 5 and 6 never in the cluster.
fn arb_tasks(global: bool) -> impl Strategy<Value = Vec<Task>> {
    prop::collection::vec(
        (
            0u64..8,
            prop::option::of(1u128..7),
            arb_state(),
            any::<bool>(),
            0u64..20_000,
            1u64..3,
        ),
        0..30,
    )
    .prop_map(move |v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (slot, node, state, live, at, version))| {
                let node = if global { node.or(Some(1)) } else { node };
                let mut t = task(i as u128 + 1, if global { 0 } else { slot }, node);
                t.status.state = state;
                t.status.since_ms = at;
                t.created_ms = at;
                t.spec_version = version;
                if !live {
                    t.desired_state = TaskState::Shutdown;
                }
                t
            })
            .collect()
    })
}

fn arb_policy() -> impl Strategy<Value = RestartPolicy> {
    (
        prop::sample::select(vec![
            RestartCondition::Any,
            RestartCondition::OnFailure,
            RestartCondition::None,
        ]),
        prop::sample::select(vec![0u64, 1_000, 50_000]),
        prop::option::of(0u64..4),
        prop::sample::select(vec![0u64, 5_000]),
    )
        .prop_map(
            |(condition, delay_ms, max_attempts, window_ms)| RestartPolicy {
                condition,
                delay_ms,
                max_attempts,
                window_ms,
            },
        )
}

/// A start-first update's old task: of another version, not ended, next to a live task of the
/// current version. The orchestrator leaves it to the rolling updater.
fn overlapping(t: &Task, slot: &[&Task], version: u64) -> bool {
    t.spec_version != version
        && !t.status.state.is_terminal()
        && slot.iter().any(|o| o.spec_version == version)
}

fn quiet(actions: &[Action]) -> bool {
    actions
        .iter()
        .all(|a| matches!(a, Action::Remove { .. } | Action::RestartLater { .. }))
}

proptest! {
    #![proptest_config(config())]

    /// After the actions are applied, slots 1..=replicas have exactly one live task each,
    /// no other slot has one, no running task sits on a down, removed or drained node, history
    /// is trimmed, and a second call at the same time has nothing more to do.
    #[test]
    fn replicated_slots_hold_exactly_one_live_task(
        replicas in 0u64..6,
        policy in arb_policy(),
        nodes in arb_nodes(),
        mut tasks in arb_tasks(false),
        now in 0u64..30_000,
    ) {
        let mut s = replicated(replicas);
        s.spec.task.restart = policy;
        let a = reconcile(&s, &tasks, &nodes, now);
        let before = tasks.clone();
        let mut next = 1_000;
        apply(&mut tasks, &a, &mut next, now);
        for slot in 0..10 {
            let here: Vec<&Task> = tasks.iter().filter(|t| t.slot == slot && is_live(t)).collect();
            let live = here.iter().filter(|t| !overlapping(t, &here, s.spec_version)).count();
            let want = usize::from(slot >= 1 && slot <= replicas);
            prop_assert_eq!(live, want, "slot {}", slot);
        }
        for t in tasks.iter().filter(|t| is_live(t) && !t.status.state.is_terminal()) {
            if let Some(id) = t.node_id {
                let n = nodes.iter().find(|n| n.id == id);
                prop_assert!(n.is_some_and(|n| n.state != NodeState::Down
                    && n.availability != Availability::Drain), "{:?} on a bad node", t.id);
            }
        }
        // History: per slot, what is left of the input has at most five tasks, or nothing
        // removable (max_attempts may keep counted ones too).
        if policy.max_attempts.is_none() {
            for slot in 0..10 {
                let left: Vec<&Task> = before
                    .iter()
                    .filter(|b| b.slot == slot && tasks.iter().any(|t| t.id == b.id))
                    .collect();
                let removable = left
                    .iter()
                    .filter(|t| t.status.state.is_terminal() && !is_live(t))
                    .count();
                prop_assert!(left.len() <= 5 || removable == 0, "slot {} keeps {}", slot, left.len());
            }
        }
        prop_assert!(quiet(&reconcile(&s, &tasks, &nodes, now)));
    }

    /// After the actions are applied, every eligible node has exactly one live task; drained,
    /// unfit and removed nodes none; down nodes no running one; and a second call is quiet.
    #[test]
    fn global_runs_one_live_task_per_eligible_node(
        constrained in any::<bool>(),
        policy in arb_policy(),
        nodes in arb_nodes(),
        mut tasks in arb_tasks(true),
        now in 0u64..30_000,
    ) {
        let mut s = service(ServiceMode::Global);
        s.spec.task.restart = policy;
        if constrained {
            s.spec.task.placement.constraints = vec!["node.labels.env==prod".into()];
        }
        let constraints = Constraint::parse_all(&s.spec.task.placement.constraints).unwrap();
        let a = reconcile(&s, &tasks, &nodes, now);
        let mut next = 1_000;
        apply(&mut tasks, &a, &mut next, now);
        for id in 1..7u128 {
            let here: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.node_id == Some(NodeId(id)) && is_live(t))
                .collect();
            let live: Vec<&Task> = here
                .iter()
                .copied()
                .filter(|t| !overlapping(t, &here, s.spec_version))
                .collect();
            match nodes.iter().find(|n| n.id == NodeId(id)) {
                None => prop_assert!(live.is_empty(), "removed node {}", id),
                Some(n) if n.state == NodeState::Down => {
                    prop_assert!(live.iter().all(|t| t.status.state.is_terminal()));
                    prop_assert!(live.len() <= 1);
                }
                Some(n) if check_static(n, s.spec.task.runtime, &constraints).is_ok() => {
                    prop_assert_eq!(live.len(), 1, "eligible node {}", id);
                }
                Some(n) if n.availability == Availability::Drain
                    || !has_runtime(n, s.spec.task.runtime)
                    || !constraints.iter().all(|c| c.matches(n)) => {
                    prop_assert!(live.is_empty(), "unfit node {}", id);
                }
                Some(_) => prop_assert!(live.len() <= 1, "node {}", id),
            }
        }
        prop_assert!(quiet(&reconcile(&s, &tasks, &nodes, now)));
    }
}

/// The loop the leader runs: reconcile, apply, schedule the new tasks, record the placements.
/// A node going down moves its tasks to the others, one each.
#[test]
fn reconcile_then_schedule_end_to_end() {
    use crate::scheduler::{Decision, PendingTask, TaskLoad, schedule};
    let s = replicated(6);
    let mut nodes = vec![node(1), node(2), node(3)];
    let mut tasks = Vec::new();
    let mut next = 100;
    let mut step = |tasks: &mut Vec<Task>, nodes: &[NodeView], now: u64| {
        let a = reconcile(&s, tasks.iter(), nodes, now);
        apply(tasks, &a, &mut next, now);
        let running: Vec<TaskLoad> = tasks
            .iter()
            .filter(|t| is_live(t) && !t.status.state.is_terminal())
            .filter_map(|t| {
                t.node_id.map(|node| TaskLoad {
                    task: t.id,
                    service: t.service_id,
                    node,
                    reservations: t.spec.resources.reservations,
                    bytes: 0,
                })
            })
            .collect();
        let pending: Vec<PendingTask<'_>> = tasks
            .iter()
            .filter(|t| t.node_id.is_none() && is_live(t))
            .map(|t| PendingTask {
                task: t.id,
                service: t.service_id,
                spec: &t.spec,
                pin: None,
                host_ports: &[],
            })
            .collect();
        let decisions = schedule(nodes, &running, &pending);
        for d in decisions {
            if let Decision::Place { task, node } = d {
                let t = tasks.iter_mut().find(|t| t.id == task).unwrap();
                t.node_id = Some(node);
                t.status.state = TaskState::Running;
            }
        }
    };
    let on = |tasks: &Vec<Task>, id: u128| {
        tasks
            .iter()
            .filter(|t| is_live(t) && t.node_id == Some(NodeId(id)))
            .count()
    };
    step(&mut tasks, &nodes, 0);
    assert_eq!([on(&tasks, 1), on(&tasks, 2), on(&tasks, 3)], [2, 2, 2]);
    nodes[1].state = NodeState::Down;
    step(&mut tasks, &nodes, 10);
    assert_eq!([on(&tasks, 1), on(&tasks, 2), on(&tasks, 3)], [3, 0, 3]);
    let orphaned = tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Orphaned)
        .count();
    assert_eq!(orphaned, 2);
}
