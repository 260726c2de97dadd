//! Unit tests of the TaskMachine: fixed inputs, every path.

use super::*;

const T0: u64 = 1_000_000;

fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
    HealthCheck {
        cmd: "true".into(),
        interval_ms: 1_000,
        timeout_ms: 500,
        retries,
        start_period_ms,
    }
}

fn machine(health: Option<HealthCheck>, judge: HealthJudge) -> TaskMachine {
    TaskMachine::new(TaskId(7), health, 0, judge, T0)
}

fn step(m: &mut TaskMachine, now: u64, input: TaskInput) -> Vec<TaskEffect> {
    let mut out = Vec::new();
    m.handle(now, input, &mut out);
    out
}

fn ev(e: RuntimeEvent) -> TaskInput {
    TaskInput::RuntimeEvent(e)
}

fn states(out: &[TaskEffect]) -> Vec<TaskState> {
    out.iter()
        .filter_map(|e| match e {
            TaskEffect::Report(s) => Some(s.state),
            _ => None,
        })
        .collect()
}

fn last_report(out: &[TaskEffect]) -> TaskStatus {
    out.iter()
        .rev()
        .find_map(|e| match e {
            TaskEffect::Report(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a report")
}

fn runtime_cmds(out: &[TaskEffect]) -> Vec<RuntimeCmd> {
    out.iter()
        .filter_map(|e| match e {
            TaskEffect::Runtime(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Drives a machine to RUNNING at `T0 + 20`.
fn running(health: Option<HealthCheck>, judge: HealthJudge) -> TaskMachine {
    let mut m = machine(health, judge);
    step(&mut m, T0, TaskInput::Start);
    step(&mut m, T0 + 10, ev(RuntimeEvent::Prepared));
    step(&mut m, T0 + 20, ev(RuntimeEvent::Started));
    assert_eq!(m.state(), TaskState::Running);
    m
}

#[test]
fn runs_to_complete_reporting_every_state() {
    let mut m = machine(None, HealthJudge::Machine);
    let out = step(&mut m, T0, TaskInput::Start);
    assert_eq!(states(&out), [TaskState::Accepted, TaskState::Preparing]);
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::Prepare]);
    // A second Start changes nothing.
    assert!(step(&mut m, T0 + 1, TaskInput::Start).is_empty());

    let out = step(&mut m, T0 + 10, ev(RuntimeEvent::Prepared));
    assert_eq!(states(&out), [TaskState::Starting]);
    assert_eq!(last_report(&out).message, "starting");
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::Start]);

    let out = step(&mut m, T0 + 20, ev(RuntimeEvent::Started));
    let s = last_report(&out);
    assert_eq!(
        (s.state, s.since_ms, s.message.as_str()),
        (TaskState::Running, T0 + 20, "started")
    );
    assert_eq!(s.health, None, "no health check, no health");
    assert!(runtime_cmds(&out).is_empty());

    let out = step(&mut m, T0 + 30, ev(RuntimeEvent::Exited { code: 0 }));
    let s = last_report(&out);
    assert_eq!(
        (s.state, s.since_ms, s.exit_code),
        (TaskState::Complete, T0 + 30, Some(0))
    );
    assert_eq!(s.error, None);
    // Terminal: late news changes nothing.
    assert!(step(&mut m, T0 + 40, ev(RuntimeEvent::Exited { code: 1 })).is_empty());
    assert!(step(&mut m, T0 + 40, TaskInput::Shutdown).is_empty());
}

#[test]
fn non_zero_exit_fails_with_dockers_error() {
    let mut m = running(None, HealthJudge::Machine);
    let out = step(&mut m, T0 + 30, ev(RuntimeEvent::Exited { code: 3 }));
    let s = last_report(&out);
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.error.as_deref(), Some("task: non-zero exit (3)"));
}

#[test]
fn prepare_failure_rejects_and_start_failure_fails() {
    let mut m = machine(None, HealthJudge::Machine);
    step(&mut m, T0, TaskInput::Start);
    let out = step(
        &mut m,
        T0 + 5,
        ev(RuntimeEvent::PrepareFailed("No such image: nope:1".into())),
    );
    let s = last_report(&out);
    assert_eq!(s.state, TaskState::Rejected);
    assert_eq!(s.error.as_deref(), Some("No such image: nope:1"));
    assert!(runtime_cmds(&out).is_empty());

    let mut m = machine(None, HealthJudge::Machine);
    step(&mut m, T0, TaskInput::Start);
    step(&mut m, T0 + 5, ev(RuntimeEvent::Prepared));
    let out = step(
        &mut m,
        T0 + 6,
        ev(RuntimeEvent::StartFailed("exec: boom".into())),
    );
    let s = last_report(&out);
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(s.error.as_deref(), Some("exec: boom"));
}

#[test]
fn shutdown_stops_with_default_grace_then_reports_shutdown() {
    let mut m = running(None, HealthJudge::Machine);
    let out = step(&mut m, T0 + 30, TaskInput::Shutdown);
    assert_eq!(
        runtime_cmds(&out),
        [RuntimeCmd::Stop {
            grace_ms: STOP_GRACE_DEFAULT_MS
        }]
    );
    assert!(out.contains(&TaskEffect::Schedule {
        after_ms: STOP_GRACE_DEFAULT_MS + STOP_KILL_MARGIN_MS,
        timer: TaskTimer::StopDeadline
    }));
    assert!(states(&out).is_empty(), "still running until it exits");
    // A second Shutdown sends nothing more.
    assert!(step(&mut m, T0 + 31, TaskInput::Shutdown).is_empty());
    // SIGTERM made it exit with 143: that is still a shutdown, not a failure.
    let out = step(&mut m, T0 + 40, ev(RuntimeEvent::Exited { code: 143 }));
    let s = last_report(&out);
    assert_eq!(s.state, TaskState::Shutdown);
    assert_eq!(s.error, None);
    assert_eq!(s.exit_code, Some(143));
    // The deadline timer arriving afterwards does nothing.
    assert!(
        step(
            &mut m,
            T0 + 99_999,
            TaskInput::Timer(TaskTimer::StopDeadline)
        )
        .is_empty()
    );
}

#[test]
fn stop_deadline_escalates_to_kill() {
    let mut m = TaskMachine::new(TaskId(1), None, 2_000, HealthJudge::Machine, T0);
    step(&mut m, T0, TaskInput::Start);
    step(&mut m, T0, ev(RuntimeEvent::Prepared));
    step(&mut m, T0, ev(RuntimeEvent::Started));
    let out = step(&mut m, T0 + 1, TaskInput::NodeShutdown);
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::Stop { grace_ms: 2_000 }]);
    let out = step(
        &mut m,
        T0 + 7_001,
        TaskInput::Timer(TaskTimer::StopDeadline),
    );
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::Kill]);
    let out = step(&mut m, T0 + 7_002, ev(RuntimeEvent::Exited { code: 137 }));
    let s = last_report(&out);
    assert_eq!(
        (s.state, s.message.as_str()),
        (TaskState::Shutdown, "node shutting down")
    );
}

#[test]
fn shutdown_before_start_ends_at_once_and_during_start_waits_for_it() {
    // Before anything runs.
    let mut m = machine(None, HealthJudge::Machine);
    step(&mut m, T0, TaskInput::Start);
    let out = step(&mut m, T0 + 1, TaskInput::Shutdown);
    assert_eq!(states(&out), [TaskState::Shutdown]);
    assert!(runtime_cmds(&out).is_empty());
    assert!(step(&mut m, T0 + 2, ev(RuntimeEvent::Prepared)).is_empty());

    // While the start is in flight: the stop goes out once the start lands.
    let mut m = machine(None, HealthJudge::Machine);
    step(&mut m, T0, TaskInput::Start);
    step(&mut m, T0, ev(RuntimeEvent::Prepared));
    let out = step(&mut m, T0 + 1, TaskInput::Shutdown);
    assert!(out.is_empty());
    let out = step(&mut m, T0 + 2, ev(RuntimeEvent::Started));
    assert_eq!(states(&out), [TaskState::Running]);
    assert!(matches!(runtime_cmds(&out)[..], [RuntimeCmd::Stop { .. }]));
    let out = step(&mut m, T0 + 3, ev(RuntimeEvent::Exited { code: 0 }));
    assert_eq!(states(&out), [TaskState::Shutdown]);

    // While the start is in flight and it fails: shut down, not failed.
    let mut m = machine(None, HealthJudge::Machine);
    step(&mut m, T0, TaskInput::Start);
    step(&mut m, T0, ev(RuntimeEvent::Prepared));
    step(&mut m, T0 + 1, TaskInput::Shutdown);
    let out = step(&mut m, T0 + 2, ev(RuntimeEvent::StartFailed("x".into())));
    assert_eq!(last_report(&out).state, TaskState::Shutdown);
    assert_eq!(last_report(&out).error, None);
}

#[test]
fn remove_stops_then_removes_once() {
    let mut m = running(None, HealthJudge::Machine);
    let out = step(&mut m, T0 + 30, TaskInput::Remove);
    assert!(matches!(runtime_cmds(&out)[..], [RuntimeCmd::Stop { .. }]));
    let out = step(&mut m, T0 + 40, ev(RuntimeEvent::Exited { code: 0 }));
    assert_eq!(states(&out), [TaskState::Shutdown]);
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::Remove]);
    assert!(step(&mut m, T0 + 50, TaskInput::Remove).is_empty());

    // Already over: remove at once.
    let mut m = running(None, HealthJudge::Machine);
    step(&mut m, T0 + 30, ev(RuntimeEvent::Exited { code: 1 }));
    let out = step(&mut m, T0 + 40, TaskInput::Remove);
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::Remove]);
}

#[test]
fn health_checks_run_every_interval_and_mark_healthy() {
    let mut m = machine(Some(check(3, 0)), HealthJudge::Machine);
    step(&mut m, T0, TaskInput::Start);
    step(&mut m, T0, ev(RuntimeEvent::Prepared));
    let out = step(&mut m, T0 + 20, ev(RuntimeEvent::Started));
    assert_eq!(last_report(&out).health, Some(Health::Starting));
    assert!(out.contains(&TaskEffect::Schedule {
        after_ms: 1_000,
        timer: TaskTimer::HealthCheck
    }));
    let out = step(&mut m, T0 + 1_020, TaskInput::Timer(TaskTimer::HealthCheck));
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::RunHealthCheck]);
    assert!(
        !out.iter().any(|e| matches!(e, TaskEffect::Schedule { .. })),
        "the next check is scheduled when this one ends"
    );
    let out = step(
        &mut m,
        T0 + 1_030,
        ev(RuntimeEvent::HealthResult { ok: true }),
    );
    let s = last_report(&out);
    assert_eq!(
        (s.state, s.health),
        (TaskState::Running, Some(Health::Healthy))
    );
    assert_eq!(
        s.since_ms,
        T0 + 20,
        "a health change keeps the state's time"
    );
    assert!(out.contains(&TaskEffect::Schedule {
        after_ms: 1_000,
        timer: TaskTimer::HealthCheck
    }));
    // Healthy again: no new report.
    let out = step(
        &mut m,
        T0 + 2_040,
        ev(RuntimeEvent::HealthResult { ok: true }),
    );
    assert!(states(&out).is_empty());
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let mut m = running(Some(check(2, 5_000)), HealthJudge::Machine);
    for t in [1_000, 2_000, 3_000, 4_000] {
        let out = step(
            &mut m,
            T0 + 20 + t,
            ev(RuntimeEvent::HealthResult { ok: false }),
        );
        assert!(states(&out).is_empty() && runtime_cmds(&out).is_empty());
    }
    assert_eq!(m.failures(), 0);
    assert_eq!(m.status().health, Some(Health::Starting));
    // Past the start period they count: two make it unhealthy.
    step(
        &mut m,
        T0 + 5_020,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert_eq!(m.failures(), 1);
    let out = step(
        &mut m,
        T0 + 6_020,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert_eq!(last_report(&out).health, Some(Health::Unhealthy));
    assert!(matches!(runtime_cmds(&out)[..], [RuntimeCmd::Stop { .. }]));
}

#[test]
fn once_healthy_the_start_period_is_over() {
    let mut m = running(Some(check(1, 60_000)), HealthJudge::Machine);
    step(
        &mut m,
        T0 + 1_000,
        ev(RuntimeEvent::HealthResult { ok: true }),
    );
    let out = step(
        &mut m,
        T0 + 2_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert_eq!(last_report(&out).health, Some(Health::Unhealthy));
}

#[test]
fn retries_consecutive_failures_make_it_unhealthy_then_failed() {
    let mut m = running(Some(check(3, 0)), HealthJudge::Machine);
    for i in 1..=2 {
        let out = step(
            &mut m,
            T0 + i * 1_000,
            ev(RuntimeEvent::HealthResult { ok: false }),
        );
        assert!(states(&out).is_empty());
        assert_eq!(m.failures(), i as u32);
    }
    let out = step(
        &mut m,
        T0 + 3_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    let s = last_report(&out);
    assert_eq!(
        (s.state, s.health),
        (TaskState::Running, Some(Health::Unhealthy))
    );
    assert!(matches!(runtime_cmds(&out)[..], [RuntimeCmd::Stop { .. }]));
    // No more checks once unhealthy.
    assert!(step(&mut m, T0 + 4_000, TaskInput::Timer(TaskTimer::HealthCheck)).is_empty());
    assert!(
        step(
            &mut m,
            T0 + 4_000,
            ev(RuntimeEvent::HealthResult { ok: true })
        )
        .is_empty()
    );
    // A shutdown now does not change why it is stopping.
    assert!(step(&mut m, T0 + 4_500, TaskInput::Shutdown).is_empty());
    let out = step(&mut m, T0 + 5_000, ev(RuntimeEvent::Exited { code: 143 }));
    let s = last_report(&out);
    assert_eq!(s.state, TaskState::Failed);
    assert_eq!(s.error.as_deref(), Some("task: unhealthy container"));
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut m = running(Some(check(3, 0)), HealthJudge::Machine);
    step(
        &mut m,
        T0 + 1_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    step(
        &mut m,
        T0 + 2_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert_eq!(m.failures(), 2);
    step(
        &mut m,
        T0 + 3_000,
        ev(RuntimeEvent::HealthResult { ok: true }),
    );
    assert_eq!(m.failures(), 0);
    assert_eq!(m.status().health, Some(Health::Healthy));
    step(
        &mut m,
        T0 + 4_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    let out = step(
        &mut m,
        T0 + 5_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert!(
        states(&out).is_empty(),
        "two failures after the reset are not three"
    );
    assert_eq!(m.status().health, Some(Health::Healthy));
    let out = step(
        &mut m,
        T0 + 6_000,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert_eq!(last_report(&out).health, Some(Health::Unhealthy));
}

#[test]
fn engine_judged_health_polls_and_takes_one_verdict() {
    let mut m = running(Some(check(3, 0)), HealthJudge::Engine);
    let out = step(&mut m, T0 + 1_020, TaskInput::Timer(TaskTimer::HealthCheck));
    assert_eq!(runtime_cmds(&out), [RuntimeCmd::RunHealthCheck]);
    assert!(
        out.iter().any(|e| matches!(
            e,
            TaskEffect::Schedule {
                timer: TaskTimer::HealthCheck,
                ..
            }
        )),
        "the engine is polled every interval"
    );
    let out = step(
        &mut m,
        T0 + 1_030,
        ev(RuntimeEvent::HealthResult { ok: true }),
    );
    assert_eq!(last_report(&out).health, Some(Health::Healthy));
    assert!(
        !out.iter().any(|e| matches!(e, TaskEffect::Schedule { .. })),
        "a verdict schedules nothing more; the poll timer already runs"
    );
    let out = step(
        &mut m,
        T0 + 2_030,
        ev(RuntimeEvent::HealthResult { ok: false }),
    );
    assert_eq!(last_report(&out).health, Some(Health::Unhealthy));
    assert!(matches!(runtime_cmds(&out)[..], [RuntimeCmd::Stop { .. }]));
}

#[test]
fn a_health_result_without_a_check_is_ignored() {
    let mut m = running(None, HealthJudge::Machine);
    assert!(
        step(
            &mut m,
            T0 + 100,
            ev(RuntimeEvent::HealthResult { ok: false })
        )
        .is_empty()
    );
    assert!(step(&mut m, T0 + 100, TaskInput::Timer(TaskTimer::HealthCheck)).is_empty());
}
