//! The rolling updater through whole passes: a small world applies each plan's writes to its
//! store, and a test moves tasks along as nodes would (start, run, fail).

use std::collections::BTreeMap;

use super::*;
use crate::model::{FailureAction, ServiceMode, TaskSpec, UpdateConfig, UpdateOrder, UpdateState};
use crate::orchestrator::tests_support::{service, task};
use crate::scheduler::tests_support::node;

/// A store of one service and its tasks, and the time.
struct World {
    nodes: Vec<NodeView<'static>>,
    service: Service,
    service_version: u64,
    tasks: BTreeMap<TaskId, (u64, Task)>,
    now: u64,
    next_id: u128,
}

impl World {
    /// `replicas` tasks of version 1, Running on nodes 1..=3 since time 0.
    fn new(replicas: u64, update: UpdateConfig) -> World {
        let mut service = service(ServiceMode::Replicated { replicas });
        service.spec.update = update;
        service.spec.rollback = update;
        let tasks = (1..=replicas)
            .map(|slot| {
                let t = task(slot as u128, slot, Some((slot % 3 + 1) as u128));
                (t.id, (1, t))
            })
            .collect();
        World {
            nodes: vec![node(1), node(2), node(3)],
            service,
            service_version: 1,
            tasks,
            now: 10_000,
            next_id: 1_000,
        }
    }

    /// `service update`: the new task spec, stored as the control API stores it.
    fn update(&mut self, change: impl FnOnce(&mut TaskSpec)) {
        let mut spec = self.service.spec.clone();
        change(&mut spec.task);
        self.service = self.service.updated(spec, false);
        self.service_version += 1;
    }

    /// One leader pass; its writes applied. Returns the plan.
    fn pass(&mut self) -> Plan {
        let services = [self.service.clone()];
        let versions = [(self.service.id, ("web", self.service_version))].into();
        let tasks: Vec<VersionedTask> = self
            .tasks
            .values()
            .map(|(v, t)| VersionedTask {
                version: *v,
                task: Cow::Borrowed(t),
            })
            .collect();
        let mut next = self.next_id;
        let mut new_id = || {
            next += 1;
            TaskId(next)
        };
        let p = plan(
            &PlanInput {
                now_ms: self.now,
                nodes: &self.nodes,
                services: &services,
                networks: &[],
                service_keys: &versions,
                tasks: &tasks,
                reports: &BTreeMap::new(),
            },
            &mut new_id,
        );
        self.next_id = next;
        for op in &p.ops {
            match op {
                Op::Put {
                    body: ObjectBody::Task(t),
                    ..
                } => {
                    let v = self.tasks.get(&t.id).map_or(1, |(v, _)| v + 1);
                    self.tasks.insert(t.id, (v, t.clone()));
                }
                Op::Put {
                    body: ObjectBody::Service(s),
                    expect,
                    id,
                    ..
                } => {
                    assert_eq!(id, "web", "the service's key in the store");
                    assert_eq!(*expect, Expect::Version(self.service_version));
                    self.service = s.clone();
                    self.service_version += 1;
                }
                Op::Delete { id, .. } => {
                    self.tasks.retain(|k, _| k.to_string() != *id);
                }
                _ => {}
            }
        }
        p
    }

    /// Passes until nothing is written (at most 20).
    fn settle(&mut self) {
        for _ in 0..20 {
            if self.pass().ops.is_empty() {
                return;
            }
        }
        panic!("the plan never settled");
    }

    /// What nodes do: placed tasks that should run start (and are Running at `now`), tasks told
    /// to stop stop. `fails` says which new tasks fail instead of running.
    fn nodes_act(&mut self, fails: impl Fn(&Task) -> bool) {
        let now = self.now;
        for (v, t) in self.tasks.values_mut() {
            let mut moved = true;
            if t.desired_state > TaskState::Running && !t.status.state.is_terminal() {
                t.status = TaskStatus::new(TaskState::Shutdown, now, "shut down");
            } else if t.node_id.is_some()
                && t.status.state < TaskState::Running
                && t.desired_state == TaskState::Running
            {
                if fails(t) {
                    t.status = TaskStatus::new(TaskState::Failed, now, "failed");
                } else {
                    t.status = TaskStatus::new(TaskState::Running, now, "running");
                    t.running_ms = Some(now);
                }
            } else {
                moved = false;
            }
            if moved {
                *v += 1;
            }
        }
    }

    /// Nodes act, the leader passes, twice: a stop-first task is released only in the pass
    /// after its old task stopped.
    fn round(&mut self, fails: impl Fn(&Task) -> bool) {
        for _ in 0..2 {
            self.nodes_act(&fails);
            self.settle();
        }
    }

    fn state(&self) -> Option<UpdateState> {
        self.service.update_status.as_ref().map(|s| s.state)
    }

    fn live(&self) -> Vec<&Task> {
        self.tasks
            .values()
            .map(|(_, t)| t)
            .filter(|t| t.desired_state <= TaskState::Running && !t.status.state.is_terminal())
            .collect()
    }

    /// Live tasks of `version` that are Running.
    fn running(&self, version: u64) -> usize {
        self.live()
            .iter()
            .filter(|t| t.spec_version == version && t.status.state == TaskState::Running)
            .count()
    }

    /// Slots being replaced: no live old task left and the new one not Running yet.
    fn replacing(&self) -> usize {
        let v = self.service.spec_version;
        let live = self.live();
        live.iter()
            .filter(|t| t.spec_version == v && t.status.state < TaskState::Running)
            .filter(|t| !live.iter().any(|o| o.slot == t.slot && o.spec_version != v))
            .count()
    }
}

fn config(parallelism: u64, delay_ms: u64, monitor_ms: u64) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        delay_ms,
        monitor_ms,
        ..UpdateConfig::default()
    }
}

#[test]
fn an_update_starts_by_writing_its_status_alone() {
    let mut w = World::new(3, config(1, 0, 1_000));
    w.update(|t| t.image = "v2".into());
    let p = w.pass();
    assert_eq!(p.ops.len(), 1, "only the status: {:?}", p.ops);
    assert_eq!(w.state(), Some(UpdateState::Updating));
    let s = w.service.update_status.clone().unwrap();
    assert_eq!(
        (s.started_ms, s.message.as_str()),
        (w.now, "update in progress")
    );
    // A scale is not an update: no status.
    let mut w = World::new(3, config(1, 0, 1_000));
    let mut spec = w.service.spec.clone();
    spec.mode = ServiceMode::Replicated { replicas: 4 };
    w.service = w.service.updated(spec, false);
    w.settle();
    assert_eq!(w.state(), None);
}

#[test]
fn stop_first_replaces_parallelism_slots_at_a_time_with_the_delay_between() {
    let mut w = World::new(6, config(2, 2_000, 1_000));
    w.update(|t| t.image = "v2".into());
    w.settle();
    let mut batches = Vec::new();
    for _ in 0..40 {
        let before = w.running(2);
        assert!(w.replacing() <= 2, "at most 2 slots replaced at once");
        w.nodes_act(|_| false);
        let now_running = w.running(2);
        if now_running > before {
            batches.push((w.now, now_running - before));
        }
        w.settle();
        w.now += 500;
    }
    assert_eq!(w.running(2), 6, "every slot on the new spec");
    assert_eq!(w.running(1), 0);
    let sizes: Vec<usize> = batches.iter().map(|b| b.1).collect();
    assert_eq!(sizes, [2, 2, 2], "two per batch: {batches:?}");
    for pair in batches.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 2_000,
            "the delay between batches: {batches:?}"
        );
    }
    assert_eq!(w.state(), Some(UpdateState::Completed));
    assert_eq!(
        w.service.update_status.as_ref().unwrap().message,
        "update completed"
    );
}

#[test]
fn completion_waits_for_the_monitor_period_after_the_last_task_ran() {
    let mut w = World::new(1, config(1, 0, 5_000));
    w.update(|t| t.image = "v2".into());
    w.settle();
    w.round(|_| false);
    let ran = w.now;
    assert_eq!(w.state(), Some(UpdateState::Updating));
    w.now = ran + 4_999;
    let p = w.pass();
    assert_eq!(w.state(), Some(UpdateState::Updating));
    assert_eq!(
        p.wake_at_ms,
        Some(ran + 5_000),
        "woken when the period ends"
    );
    w.now = ran + 5_000;
    w.pass();
    assert_eq!(w.state(), Some(UpdateState::Completed));
    assert_eq!(
        w.service.update_status.as_ref().unwrap().completed_ms,
        Some(ran + 5_000)
    );
}

#[test]
fn a_failure_pauses_the_update_by_default_and_it_stays_paused() {
    let mut w = World::new(4, config(1, 0, 1_000));
    w.update(|t| t.image = "bad".into());
    w.settle();
    w.round(|t| t.spec.image == "bad");
    assert_eq!(w.state(), Some(UpdateState::Paused));
    let failed = w
        .tasks
        .values()
        .find(|(_, t)| t.status.state == TaskState::Failed)
        .unwrap()
        .1
        .id;
    assert_eq!(
        w.service.update_status.as_ref().unwrap().message,
        format!("update paused due to failure or early termination of task {failed}")
    );
    // Paused: nothing more is replaced, however long it waits.
    let old = w.running(1);
    for _ in 0..10 {
        w.now += 10_000;
        w.round(|t| t.spec.image == "bad");
    }
    assert_eq!(w.state(), Some(UpdateState::Paused));
    assert_eq!(w.running(1), old, "no further old task replaced");
    // A new update starts afresh.
    w.update(|t| t.image = "v3".into());
    w.settle();
    assert_eq!(w.state(), Some(UpdateState::Updating));
}

#[test]
fn a_failure_within_the_monitor_period_counts_and_one_after_does_not() {
    for (fail_after, paused) in [(500, true), (1_500, false)] {
        let mut w = World::new(1, config(1, 0, 1_000));
        w.update(|t| t.image = "v2".into());
        w.settle();
        w.round(|_| false);
        w.now += fail_after;
        let (v, t) = w
            .tasks
            .values_mut()
            .find(|(_, t)| t.spec_version == 2)
            .unwrap();
        t.status = TaskStatus::new(TaskState::Failed, w.now, "exited");
        *v += 1;
        w.settle();
        let state = w.state();
        assert_eq!(
            state == Some(UpdateState::Paused),
            paused,
            "failed {fail_after} ms after running: {state:?}"
        );
    }
}

#[test]
fn failure_action_rollback_restores_the_previous_spec_with_the_rollback_config() {
    let mut w = World::new(4, config(2, 0, 1_000));
    w.service.spec.update.failure_action = FailureAction::Rollback;
    w.service.spec.rollback = config(0, 0, 500);
    w.update(|t| t.image = "bad".into());
    w.settle();
    w.round(|t| t.spec.image == "bad");
    assert_eq!(w.state(), Some(UpdateState::RollbackStarted));
    let status = w.service.update_status.clone().unwrap();
    assert!(
        status
            .message
            .starts_with("update rolled back due to failure or early termination of task "),
        "{}",
        status.message
    );
    assert_eq!(w.service.spec.task.image, "sleep", "the previous spec");
    assert_eq!(w.service.spec_version, 1, "and its version");
    for _ in 0..10 {
        w.round(|t| t.spec.image == "bad");
        w.now += 300;
    }
    assert_eq!(w.state(), Some(UpdateState::RollbackCompleted));
    assert_eq!(w.running(1), 4, "every slot back on the previous spec");
    assert!(w.live().iter().all(|t| t.spec.image == "sleep"));
    // The old tasks that were never replaced kept running: only the failed slots were redone.
    assert!(w.tasks.contains_key(&TaskId(3)) && w.tasks.contains_key(&TaskId(4)));
    assert!(w.live().iter().any(|t| t.id == TaskId(3)));
}

#[test]
fn a_failing_rollback_pauses_rather_than_rolling_back_again() {
    let mut w = World::new(2, config(1, 0, 1_000));
    w.update(|t| t.image = "v2".into());
    w.settle();
    for _ in 0..6 {
        w.round(|_| false);
        w.now += 1_000;
    }
    assert_eq!(w.state(), Some(UpdateState::Completed));
    // Roll back to a spec that now fails.
    w.service.spec.rollback.failure_action = FailureAction::Rollback;
    w.service = w.service.manual_rollback(w.now).unwrap();
    w.service_version += 1;
    assert_eq!(w.state(), Some(UpdateState::RollbackStarted));
    w.settle();
    w.round(|t| t.spec.image == "sleep");
    assert_eq!(w.state(), Some(UpdateState::RollbackPaused));
    assert!(
        w.service
            .update_status
            .as_ref()
            .unwrap()
            .message
            .starts_with("rollback paused due to failure or early termination of task ")
    );
}

#[test]
fn continue_carries_on_past_failures() {
    let mut w = World::new(3, config(1, 0, 500));
    w.service.spec.update.failure_action = FailureAction::Continue;
    w.update(|t| t.image = "v2".into());
    let mut first = true;
    for _ in 0..20 {
        w.settle();
        // The first new task fails; the others run.
        w.nodes_act(|t| first && t.spec_version == 2);
        if w.tasks
            .values()
            .any(|(_, t)| t.status.state == TaskState::Failed)
        {
            first = false;
        }
        w.now += 6_000;
    }
    w.settle();
    assert_ne!(w.state(), Some(UpdateState::Paused));
    assert_eq!(w.running(2), 3);
    assert_eq!(w.state(), Some(UpdateState::Completed));
}

#[test]
fn max_failure_ratio_tolerates_that_share_of_slots() {
    let mut w = World::new(4, config(0, 0, 1_000));
    w.service.spec.update.max_failure_ratio = 0.25;
    w.update(|t| t.image = "v2".into());
    w.settle();
    // One slot of four fails: 0.25 is not above the ratio.
    w.round(|t| t.spec_version == 2 && t.slot == 1);
    assert_eq!(w.state(), Some(UpdateState::Updating));
    // A second one: 0.5 is.
    let (v, t) = w
        .tasks
        .values_mut()
        .find(|(_, t)| t.spec_version == 2 && t.slot == 2)
        .unwrap();
    t.status = TaskStatus::new(TaskState::Failed, w.now, "exited");
    *v += 1;
    w.settle();
    assert_eq!(w.state(), Some(UpdateState::Paused));
}

#[test]
fn start_first_keeps_the_old_task_until_the_new_one_runs() {
    let mut w = World::new(3, config(1, 0, 500));
    w.service.spec.update.order = UpdateOrder::StartFirst;
    w.update(|t| t.image = "v2".into());
    for _ in 0..20 {
        w.settle();
        let running = w
            .live()
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .count();
        assert!(running >= 3, "never below the replica count: {running}");
        w.nodes_act(|_| false);
        w.now += 600;
    }
    w.settle();
    assert_eq!(w.running(2), 3);
    assert_eq!(w.running(1), 0);
    assert_eq!(w.state(), Some(UpdateState::Completed));
}

#[test]
fn manual_rollback_twice_goes_back_then_forward() {
    let mut w = World::new(2, config(0, 0, 100));
    let step = |w: &mut World| {
        for _ in 0..5 {
            w.settle();
            w.nodes_act(|_| false);
            w.now += 200;
        }
        w.settle();
    };
    w.update(|t| t.image = "v2".into());
    step(&mut w);
    assert_eq!(w.running(2), 2);
    w.service = w.service.manual_rollback(w.now).unwrap();
    w.service_version += 1;
    step(&mut w);
    assert_eq!(w.state(), Some(UpdateState::RollbackCompleted));
    assert!(w.live().iter().all(|t| t.spec.image == "sleep"));
    w.service = w.service.manual_rollback(w.now).unwrap();
    w.service_version += 1;
    step(&mut w);
    assert!(w.live().iter().all(|t| t.spec.image == "v2"));
    assert_eq!(w.live().len(), 2);
}

#[test]
fn force_replaces_every_task_of_an_unchanged_spec() {
    let mut w = World::new(2, config(0, 0, 100));
    let spec = w.service.spec.clone();
    w.service = w.service.updated(spec, true);
    w.service_version += 1;
    assert_eq!(w.service.spec_version, 2);
    for _ in 0..5 {
        w.settle();
        w.nodes_act(|_| false);
        w.now += 200;
    }
    w.settle();
    assert_eq!(w.running(2), 2);
    assert!(
        !w.tasks.contains_key(&TaskId(1))
            || w.tasks[&TaskId(1)].1.desired_state == TaskState::Shutdown
    );
    assert_eq!(w.state(), Some(UpdateState::Completed));
}

#[test]
fn a_status_write_compares_with_the_stored_service() {
    let mut w = World::new(1, config(1, 0, 100));
    w.update(|t| t.image = "v2".into());
    let stored = w.service_version;
    let p = w.pass();
    let expect = p.ops.iter().find_map(|op| match op {
        Op::Put {
            body: ObjectBody::Service(_),
            expect,
            ..
        } => Some(*expect),
        _ => None,
    });
    assert_eq!(expect, Some(Expect::Version(stored)));
    assert_eq!(p.services_changed, 1);
}

#[test]
fn stop_first_starts_the_new_task_only_once_the_old_one_stopped() {
    let mut w = World::new(1, config(1, 0, 100));
    w.tasks
        .get_mut(&TaskId(1))
        .unwrap()
        .1
        .spec
        .stop_grace_period_ms = 10_000;
    w.update(|t| t.image = "v2".into());
    w.settle();
    let new = |w: &World| {
        w.tasks
            .values()
            .map(|(_, t)| t.clone())
            .find(|t| t.spec_version == 2)
            .expect("the new task is made at once")
    };
    assert_eq!(new(&w).desired_state, crate::orchestrator::HELD, "held");
    assert!(new(&w).node_id.is_some(), "but placed");
    // The old task takes its time to stop: the new one waits.
    w.now += 3_000;
    let p = w.pass();
    assert_eq!(new(&w).desired_state, crate::orchestrator::HELD);
    assert_eq!(
        p.wake_at_ms,
        Some(new(&w).created_ms + 10_000 + super::update::HOLD_MARGIN_MS),
        "at most the grace period and a margin"
    );
    // It stopped: the new task is released, and its node poked.
    let (v, old) = w.tasks.get_mut(&TaskId(1)).unwrap();
    old.status = TaskStatus::new(TaskState::Shutdown, w.now, "stopped");
    *v += 1;
    let p = w.pass();
    assert_eq!(new(&w).desired_state, TaskState::Running);
    assert!(p.poke.contains(&new(&w).node_id.unwrap()));

    // A node that never says the old task stopped holds the slot no longer than that.
    let mut w = World::new(1, config(1, 0, 100));
    w.tasks
        .get_mut(&TaskId(1))
        .unwrap()
        .1
        .spec
        .stop_grace_period_ms = 1_000;
    w.update(|t| t.image = "v2".into());
    w.settle();
    w.now += 1_000 + super::update::HOLD_MARGIN_MS;
    w.settle();
    assert_eq!(new(&w).desired_state, TaskState::Running);
}

#[test]
fn a_held_task_of_a_rolled_back_version_goes_and_its_slot_is_refilled() {
    let mut w = World::new(1, config(1, 0, 100));
    w.update(|t| t.image = "v2".into());
    w.settle();
    let held = w
        .tasks
        .values()
        .map(|(_, t)| t.clone())
        .find(|t| t.spec_version == 2)
        .unwrap();
    assert_eq!(held.desired_state, crate::orchestrator::HELD);
    // Rolled back (and paused) before the old task stopped: the held task is of the old
    // version now, and would never be released.
    w.service = w.service.manual_rollback(w.now).unwrap();
    w.service.update_status.as_mut().unwrap().state = UpdateState::RollbackPaused;
    w.service_version += 1;
    w.round(|_| false);
    assert!(
        w.tasks[&held.id].1.desired_state > TaskState::Running,
        "it goes"
    );
    assert_eq!(w.running(1), 1, "the slot runs the spec rolled back to");
}
