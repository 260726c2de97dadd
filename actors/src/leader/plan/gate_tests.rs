//! `depends_on` gating: the conditions' edge cases, then what a pass does with a gated
//! service's tasks (pending, held, not released) and what it leaves alone.

use std::collections::BTreeMap;

use super::gate::{Gates, met};
use super::tests::{puts, run, versioned};
use super::*;
use crate::model::{
    Dependency, DependencyCondition, Health, HealthCheck, ServiceMode, TaskState, UpdateOrder,
};
use crate::orchestrator::HELD;
use crate::orchestrator::tests_support::{service, task};
use crate::scheduler::tests_support::node;

use DependencyCondition::{CompletedSuccessfully, Healthy, Started};

const DB: ServiceId = ServiceId(2);

/// A task of the "db" service (ID 2), RUNNING on `node` (or unplaced, pending).
fn db_task(id: u128, slot: u64, node: Option<u128>) -> Task {
    let mut t = task(id, slot, node);
    t.service_id = DB;
    if node.is_none() {
        t.status = TaskStatus::new(TaskState::Pending, 1, "no suitable node");
        t.running_ms = None;
    }
    t
}

fn with_state(mut t: Task, state: TaskState) -> Task {
    t.status.state = state;
    t
}

/// "db", replicated, no dependencies.
fn db(replicas: u64) -> Service {
    let mut s = service(ServiceMode::Replicated { replicas });
    s.id = DB;
    s.spec.name = "db".into();
    s
}

/// "web" (ID 1) depending on "db" with `condition`.
fn web(mode: ServiceMode, condition: DependencyCondition) -> Service {
    let mut s = service(mode);
    s.spec.depends_on = vec![Dependency {
        service: "db".into(),
        condition,
    }];
    s
}

fn check() -> Option<HealthCheck> {
    Some(HealthCheck {
        cmd: "true".into(),
        interval_ms: 1_000,
        timeout_ms: 1_000,
        retries: 1,
        start_period_ms: 0,
    })
}

#[test]
fn started_needs_one_running_and_every_placed_task_meant_to_run_running() {
    assert!(!met(Started, []), "no task: not met");
    let running = db_task(1, 1, Some(1));
    assert!(met(Started, [&running]));
    let starting = with_state(db_task(2, 2, Some(2)), TaskState::Starting);
    assert!(
        !met(Started, [&running, &starting]),
        "a placed task not running yet"
    );
    let unplaced = db_task(3, 3, None);
    assert!(
        met(Started, [&running, &unplaced]),
        "an unplaced task does not count"
    );
    assert!(!met(Started, [&unplaced]), "nothing runs");
    let mut stopping = db_task(4, 1, Some(1));
    stopping.desired_state = TaskState::Shutdown;
    assert!(
        !met(Started, [&stopping]),
        "a task being stopped is not meant to run"
    );
    let mut held = with_state(db_task(5, 2, Some(2)), TaskState::Assigned);
    held.desired_state = HELD;
    assert!(
        met(Started, [&running, &held]),
        "a held task is not meant to run yet"
    );
    let failed = with_state(db_task(6, 2, Some(2)), TaskState::Failed);
    assert!(
        met(Started, [&running, &failed]),
        "an ended task waiting for its restart is not meant to run"
    );
}

#[test]
fn healthy_needs_health_where_there_is_a_check() {
    let plain = db_task(1, 1, Some(1));
    assert!(met(Healthy, [&plain]), "no check: running is enough");
    let mut checked = db_task(2, 2, Some(2));
    checked.spec.health = check();
    assert!(!met(Healthy, [&plain, &checked]), "no health reported yet");
    checked.status.health = Some(Health::Starting);
    assert!(!met(Healthy, [&checked]));
    checked.status.health = Some(Health::Unhealthy);
    assert!(!met(Healthy, [&checked]));
    assert!(met(Started, [&checked]), "unhealthy is still started");
    checked.status.health = Some(Health::Healthy);
    assert!(met(Healthy, [&plain, &checked]));
}

#[test]
fn completed_successfully_needs_every_slot_complete_with_status_0() {
    assert!(!met(CompletedSuccessfully, []));
    let mut done = with_state(db_task(1, 1, Some(1)), TaskState::Complete);
    done.status.exit_code = Some(0);
    assert!(met(CompletedSuccessfully, [&done]));
    let running = db_task(2, 2, Some(2));
    assert!(
        !met(CompletedSuccessfully, [&done, &running]),
        "one still runs"
    );
    let mut bad = with_state(db_task(3, 2, Some(2)), TaskState::Complete);
    bad.status.exit_code = Some(3);
    assert!(!met(CompletedSuccessfully, [&done, &bad]));
    let failed = with_state(db_task(4, 2, Some(2)), TaskState::Failed);
    assert!(!met(CompletedSuccessfully, [&done, &failed]));
    let unplaced = db_task(5, 2, None);
    assert!(
        !met(CompletedSuccessfully, [&done, &unplaced]),
        "a slot not run yet"
    );
    // An old failure replaced by the task that completed does not hold a slot.
    let mut replaced = failed.clone();
    replaced.desired_state = TaskState::Shutdown;
    assert!(met(CompletedSuccessfully, [&done, &replaced]));
    assert!(
        !met(CompletedSuccessfully, [&replaced]),
        "no task holds a slot"
    );
}

#[test]
fn a_missing_dependency_is_not_met_and_the_first_unmet_one_is_named() {
    let mut w = web(ServiceMode::Replicated { replicas: 1 }, Started);
    let gates = Gates::new(std::slice::from_ref(&w), std::iter::empty());
    assert_eq!(
        gates.waiting(w.id),
        Some("waiting for service db: service_started")
    );
    w.spec.depends_on.insert(
        0,
        Dependency {
            service: "cache".into(),
            condition: Healthy,
        },
    );
    let running = db_task(7, 1, Some(1));
    let services = [w.clone(), db(1)];
    let gates = Gates::new(&services, [&running].into_iter());
    assert_eq!(
        gates.waiting(w.id),
        Some("waiting for service cache: service_healthy")
    );
    assert_eq!(gates.waiting(DB), None);
}

#[test]
fn a_gated_replicated_service_leaves_its_tasks_pending_with_the_reason() {
    let nodes = [node(1), node(2)];
    let services = [web(ServiceMode::Replicated { replicas: 2 }, Healthy), db(1)];
    // db's task is placed and still starting.
    let tasks = versioned(vec![with_state(
        db_task(7, 1, Some(1)),
        TaskState::Starting,
    )]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    let put = puts(&p);
    let webs: Vec<_> = put
        .values()
        .filter(|(_, t)| t.service_id == ServiceId(1))
        .collect();
    assert_eq!(webs.len(), 2);
    for (_, t) in &webs {
        assert_eq!(t.node_id, None, "not placed");
        assert_eq!(t.status.state, TaskState::Pending);
        assert_eq!(t.status.message, "waiting for service db: service_healthy");
    }
    assert_eq!((p.created, p.placed, p.pending, p.gated), (2, 0, 2, 2));

    // Next pass, nothing changed: the pending tasks are not written again.
    let stored: Vec<Task> = put.into_values().map(|(_, t)| t).collect();
    let mut all = stored.clone();
    all.push(with_state(db_task(7, 1, Some(1)), TaskState::Starting));
    let tasks = versioned(all);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    assert!(p.ops.is_empty(), "{:?}", p.ops);

    // db's RUNNING report arrives: the same pass places web's tasks.
    let reports = BTreeMap::from([(TaskId(7), TaskStatus::new(TaskState::Running, 5, "started"))]);
    let p = run(&nodes, &services, &tasks, &reports);
    let put = puts(&p);
    let placed = (put.values())
        .filter(|(_, t)| t.service_id == ServiceId(1) && t.node_id.is_some())
        .count();
    assert_eq!(placed, 2);
    assert_eq!(p.gated, 0);
}

#[test]
fn a_gated_global_task_is_held_on_its_node_then_released() {
    let nodes = [node(1)];
    let services = [web(ServiceMode::Global, Started), db(1)];
    let tasks = versioned(vec![db_task(7, 1, None)]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    let put = puts(&p);
    let (_, t) = (put.values())
        .find(|(_, t)| t.service_id == ServiceId(1))
        .expect("made for its node");
    assert_eq!(t.node_id, Some(NodeId(1)));
    assert_eq!(t.desired_state, HELD, "its node must not start it");
    assert_eq!(t.status.message, "waiting for service db: service_started");
    assert_eq!(p.gated, 1);

    // Still not met: the held task stays held.
    let held = t.clone();
    let tasks = versioned(vec![held.clone(), db_task(7, 1, None)]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    assert!(
        puts(&p)
            .get(&held.id)
            .is_none_or(|(_, t)| t.desired_state == HELD)
    );
    assert_eq!(p.gated, 1);

    // db runs: the task is released.
    let tasks = versioned(vec![held.clone(), db_task(7, 1, Some(1))]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    let (_, t) = &puts(&p)[&held.id];
    assert_eq!(t.desired_state, TaskState::Running);
    assert_eq!(p.gated, 0);
}

#[test]
fn started_tasks_are_left_alone_when_a_dependency_fails_and_replacements_wait() {
    let nodes = [node(1), node(2)];
    let services = [web(ServiceMode::Replicated { replicas: 2 }, Started), db(1)];
    let mut ended = task(1, 1, Some(1));
    ended.status = TaskStatus::new(TaskState::Failed, 10, "exit 1");
    let tasks = versioned(vec![
        ended,
        task(2, 2, Some(2)),
        with_state(db_task(7, 1, Some(1)), TaskState::Failed),
    ]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    let put = puts(&p);
    assert!(
        put.get(&TaskId(2)).is_none(),
        "the running task is not stopped"
    );
    let new: Vec<_> = (put.values())
        .filter(|(e, t)| *e == Expect::Absent && t.service_id == ServiceId(1))
        .collect();
    assert_eq!(new.len(), 1, "slot 1's replacement is made");
    assert_eq!(new[0].1.node_id, None, "and waits");
    assert_eq!(
        new[0].1.status.message,
        "waiting for service db: service_started"
    );
}

#[test]
fn a_stop_first_update_s_held_task_is_not_released_while_gated() {
    let nodes = [node(1)];
    let mut w = web(ServiceMode::Replicated { replicas: 1 }, Started);
    w.spec.update.order = UpdateOrder::StopFirst;
    w.spec_version = 2;
    // Slot 1's new task is held and placed; its old one has stopped.
    let mut new = task(3, 1, Some(1));
    new.spec_version = 2;
    new.desired_state = HELD;
    new.status = TaskStatus::new(TaskState::Assigned, 3, "assigned");
    let mut old = task(1, 1, Some(1));
    old.desired_state = TaskState::Shutdown;
    old.status = TaskStatus::new(TaskState::Shutdown, 2, "shut down");
    let services = [w, db(1)];
    let tasks = versioned(vec![new.clone(), old.clone(), db_task(7, 1, None)]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    assert!(
        puts(&p)
            .get(&TaskId(3))
            .is_none_or(|(_, t)| t.desired_state == HELD),
        "released while db does not run"
    );
    assert!(p.gated >= 1);
    let tasks = versioned(vec![new, old, db_task(7, 1, Some(1))]);
    let p = run(&nodes, &services, &tasks, &BTreeMap::new());
    assert_eq!(puts(&p)[&TaskId(3)].1.desired_state, TaskState::Running);
}

#[test]
fn a_service_without_dependencies_is_never_gated() {
    let nodes = [node(1)];
    let services = [service(ServiceMode::Replicated { replicas: 1 })];
    let p = run(&nodes, &services, &[], &BTreeMap::new());
    assert_eq!((p.placed, p.gated), (1, 0));
}
