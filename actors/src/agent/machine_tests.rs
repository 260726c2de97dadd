//! Unit tests of the AgentMachine: fixed inputs, the effects they must give.

use super::*;
use crate::model::{
    FileKind, FileRef, RuntimeKind, SecretBytes, SecretId, ServiceId, TaskSpec, TaskStatus,
};

const T0: u64 = 1_000_000;

type M = AgentMachine<u32, Rc<Task>>;
type E = AgentEffect<u32, Rc<Task>>;
type I = AgentInput<u32, Rc<Task>>;

fn machine() -> M {
    let mut m = M::new(["process".to_string()], 0);
    step(&mut m, I::ManagersChanged(vec![10, 11, 12]));
    m
}

fn step(m: &mut M, input: I) -> Vec<E> {
    let mut out = Vec::new();
    m.handle(T0, input, &mut out);
    out
}

fn task(id: u128, state: TaskState, desired: TaskState) -> Rc<Task> {
    task_on(id, state, desired, RuntimeKind::Process)
}

fn task_on(id: u128, state: TaskState, desired: TaskState, runtime: RuntimeKind) -> Rc<Task> {
    Rc::new(Task {
        id: TaskId(id),
        service_id: ServiceId(1),
        slot: 1,
        node_id: None,
        spec: TaskSpec {
            runtime,
            image: "sleep".into(),
            ..TaskSpec::default()
        },
        status: TaskStatus::new(state, 1, "x"),
        spec_version: 1,
        desired_state: desired,
        created_ms: 1,
        running_ms: None,
        networks: Vec::new(),
    })
}

/// The sessions opened among `out`: (seq, hop, to, reported tasks).
fn opened(out: &[E]) -> Vec<(u64, u8, Target<u32>, Vec<TaskId>)> {
    out.iter()
        .filter_map(|e| match e {
            E::OpenSession {
                seq,
                hop,
                to,
                report,
                ..
            } => Some((*seq, *hop, *to, report.iter().map(|(id, _)| *id).collect())),
            _ => None,
        })
        .collect()
}

fn answer(seq: u64, hop: u8, list: Vec<Rc<Task>>) -> I {
    I::SessionDone {
        seq,
        hop,
        outcome: SessionOutcome::Assignments {
            tasks: list,
            files: Vec::new(),
            mesh: None,
        },
    }
}

fn lost(m: &M) -> Vec<(TaskId, TaskState)> {
    m.report().iter().map(|(id, s)| (*id, s.state)).collect()
}

#[test]
fn nobody_to_ask_opens_nothing_and_a_tick_asks_the_managers_in_turn() {
    let mut m = M::new(Vec::new(), 0);
    assert!(step(&mut m, I::Tick).is_empty(), "no manager, no store");
    step(&mut m, I::ManagersChanged(vec![10, 11]));
    let out = step(&mut m, I::Tick);
    assert_eq!(opened(&out), vec![(1, 0, Target::Remote(10), vec![])]);
    // A failure moves on to the next manager.
    let out = step(&mut m, I::SessionTimedOut { seq: 1 });
    assert!(matches!(
        &out[0],
        E::SessionEnded {
            seq: 1,
            result: Err(_)
        }
    ));
    let out = step(&mut m, I::Tick);
    assert_eq!(opened(&out), vec![(2, 0, Target::Remote(11), vec![])]);
}

#[test]
fn one_session_at_a_time_and_the_one_asked_for_meanwhile_follows() {
    let mut m = machine();
    assert_eq!(opened(&step(&mut m, I::Tick)).len(), 1);
    assert!(step(&mut m, I::Tick).is_empty(), "one in flight");
    let out = step(&mut m, answer(1, 0, Vec::new()));
    assert_eq!(opened(&out), vec![(2, 0, Target::Remote(10), vec![])]);
    // Without a request meanwhile, nothing follows.
    assert!(opened(&step(&mut m, answer(2, 0, Vec::new()))).is_empty());
}

#[test]
fn the_leader_learned_from_an_answer_is_asked_next_and_forgotten_after_a_failure() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let out = step(
        &mut m,
        I::SessionDone {
            seq: 1,
            hop: 0,
            outcome: SessionOutcome::NotLeader(Some(12)),
        },
    );
    assert_eq!(opened(&out), vec![(1, 1, Target::Remote(12), vec![])]);
    // The first request's answer (a duplicate, late) is stale now.
    assert!(step(&mut m, answer(1, 0, Vec::new())).is_empty());
    step(&mut m, answer(1, 1, Vec::new()));
    assert_eq!(m.view().leader, Some(12));
    assert_eq!(opened(&step(&mut m, I::Tick))[0].2, Target::Remote(12));
    step(
        &mut m,
        I::SessionDone {
            seq: 2,
            hop: 0,
            outcome: SessionOutcome::Failed("unreachable".into()),
        },
    );
    assert_eq!(m.view().leader, None);
    assert_eq!(m.view().last_error.as_deref(), Some("unreachable"));
    assert_eq!(opened(&step(&mut m, I::Tick))[0].2, Target::Remote(11));
}

#[test]
fn a_redirect_is_followed_once_over_the_network() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let redirect = |seq, hop, to| I::SessionDone {
        seq,
        hop,
        outcome: SessionOutcome::NotLeader(Some(to)),
    };
    assert_eq!(opened(&step(&mut m, redirect(1, 0, 11))).len(), 1);
    let out = step(&mut m, redirect(1, 1, 12));
    assert_eq!(
        out,
        vec![E::SessionEnded {
            seq: 1,
            result: Err("redirected twice".into())
        }]
    );
    // A manager that names itself knows no leader.
    step(&mut m, I::Tick);
    let out = step(&mut m, redirect(2, 0, 11));
    assert!(
        matches!(&out[0], E::SessionEnded { result: Err(e), .. } if e.contains("knows no leader"))
    );
}

#[test]
fn through_the_local_store_a_redirect_and_one_more_are_followed() {
    let mut m = machine();
    step(&mut m, I::LocalStore { available: true });
    assert_eq!(opened(&step(&mut m, I::Tick))[0].2, Target::Local);
    let redirect = |hop, to| I::SessionDone {
        seq: 1,
        hop,
        outcome: SessionOutcome::NotLeader(Some(to)),
    };
    assert_eq!(
        opened(&step(&mut m, redirect(0, 11)))[0].2,
        Target::Remote(11)
    );
    assert_eq!(
        opened(&step(&mut m, redirect(1, 12)))[0].2,
        Target::Remote(12)
    );
    assert!(opened(&step(&mut m, redirect(2, 10))).is_empty());
    // A local answer teaches no address.
    step(&mut m, I::Tick);
    step(&mut m, answer(2, 0, Vec::new()));
    assert_eq!(m.view().leader, None);
}

#[test]
fn a_poke_from_another_leader_abandons_the_session_in_flight() {
    let mut m = machine();
    step(&mut m, I::Tick); // to manager 10
    step(&mut m, I::Tick); // asks for another after it
    let out = step(&mut m, I::Poke { from: Some(11) });
    assert_eq!(
        out[0],
        E::SessionAbandoned {
            seq: 1,
            asked: 10,
            leader: 11
        }
    );
    assert_eq!(opened(&out), vec![(2, 0, Target::Remote(11), vec![])]);
    // The abandoned session's answer is ignored, and asks for nothing more.
    assert!(
        step(
            &mut m,
            answer(1, 0, vec![task(1, TaskState::Assigned, TaskState::Running)])
        )
        .is_empty()
    );
    // A poke from where the session went keeps it.
    let out = step(&mut m, I::Poke { from: Some(11) });
    assert!(out.is_empty());
    assert_eq!(m.in_flight(), Some(2));
    // A poke without an address (the leader on this node) abandons nothing.
    assert!(step(&mut m, I::Poke { from: None }).is_empty());
    assert_eq!(m.in_flight(), Some(2));
}

#[test]
fn an_answer_starts_new_tasks_and_reports_what_this_run_never_ran() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let start = task(1, TaskState::Assigned, TaskState::Running);
    let list = vec![
        start.clone(),
        task(2, TaskState::Running, TaskState::Running), // from before this run
        task(3, TaskState::Assigned, TaskState::Shutdown), // never started here
        task(4, TaskState::Complete, TaskState::Shutdown), // history
        task_on(
            5,
            TaskState::Assigned,
            TaskState::Running,
            RuntimeKind::Docker,
        ),
    ];
    let out = step(&mut m, answer(1, 0, list));
    assert_eq!(
        out,
        vec![
            E::SessionEnded {
                seq: 1,
                result: Ok(5)
            },
            E::StartTask(start)
        ]
    );
    assert_eq!(
        lost(&m),
        vec![
            (TaskId(1), TaskState::Assigned),
            (TaskId(2), TaskState::Failed),
            (TaskId(3), TaskState::Shutdown),
            (TaskId(5), TaskState::Rejected),
        ]
    );
    // A task actor that did not start is reported rejected, and never started again.
    step(
        &mut m,
        I::TaskStartFailed {
            task: TaskId(1),
            error: "boom".into(),
        },
    );
    let report = m.report();
    let (_, s) = &report[0];
    assert_eq!(s.state, TaskState::Rejected);
    assert!(s.message.contains("boom"));
}

#[test]
fn lost_statuses_are_reported_until_the_store_holds_them() {
    let mut m = machine();
    step(&mut m, I::Tick);
    step(
        &mut m,
        answer(1, 0, vec![task(2, TaskState::Running, TaskState::Running)]),
    );
    let out = step(&mut m, I::Tick);
    assert_eq!(opened(&out)[0].3, vec![TaskId(2)]);
    // The store now holds FAILED: nothing more to say, and nothing started.
    let out = step(
        &mut m,
        answer(2, 0, vec![task(2, TaskState::Failed, TaskState::Running)]),
    );
    assert_eq!(out.len(), 1);
    assert!(m.report().is_empty());
}

#[test]
fn desired_shutdown_is_sent_once_and_an_unlisted_task_is_stopped() {
    let mut m = machine();
    step(&mut m, I::Tick);
    step(
        &mut m,
        answer(1, 0, vec![task(1, TaskState::Assigned, TaskState::Running)]),
    );
    step(&mut m, I::Tick);
    let shutdown = vec![task(1, TaskState::Running, TaskState::Shutdown)];
    let out = step(&mut m, answer(2, 0, shutdown.clone()));
    assert_eq!(out[1], E::ShutdownTask(TaskId(1)));
    step(&mut m, I::Tick);
    let out = step(&mut m, answer(3, 0, shutdown));
    assert_eq!(out.len(), 1, "shutdown once: {out:?}");
    assert_eq!(
        m.view().tasks,
        vec![(TaskId(1), TaskState::Assigned, TaskState::Shutdown)]
    );
    step(&mut m, I::Tick);
    let out = step(&mut m, answer(4, 0, Vec::new()));
    assert_eq!(out[1], E::StopTask(TaskId(1)));
    assert!(m.view().tasks.is_empty());
}

#[test]
fn a_status_change_asks_for_a_session_and_only_what_the_store_would_accept_is_reported() {
    let mut m = machine();
    step(&mut m, I::Tick);
    step(
        &mut m,
        answer(1, 0, vec![task(1, TaskState::Assigned, TaskState::Running)]),
    );
    let long = "x".repeat(10_000);
    let out = step(
        &mut m,
        I::TaskStatus {
            task: TaskId(1),
            status: TaskStatus::new(TaskState::Running, 5, long.clone()),
        },
    );
    let report = match &out[..] {
        [E::OpenSession { report, .. }] => report.clone(),
        other => panic!("{other:?}"),
    };
    let (_, s) = &report[0];
    assert!(
        s.message.len() < long.len(),
        "kept cut as the leader stores it"
    );
    // The store holds it now (as cut): nothing to report.
    let mut held = (*task(1, TaskState::Running, TaskState::Running)).clone();
    held.status = s.clone();
    step(&mut m, answer(2, 0, vec![Rc::new(held)]));
    assert!(m.report().is_empty());
    // A status for a task this run does not run asks for nothing.
    let unknown = I::TaskStatus {
        task: TaskId(9),
        status: TaskStatus::new(TaskState::Running, 5, "x"),
    };
    assert!(step(&mut m, unknown).is_empty());
}

#[test]
fn a_report_is_cut_to_its_bound() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let list: Vec<Rc<Task>> = (0..SESSION_STATUSES_MAX as u128 + 5)
        .map(|i| task(i, TaskState::Running, TaskState::Running))
        .collect();
    step(&mut m, answer(1, 0, list));
    assert_eq!(m.report().len(), SESSION_STATUSES_MAX);
}

fn key(kind: FileKind, id: u128) -> FileKey {
    FileKey {
        kind,
        id: SecretId(id),
    }
}

fn material(kind: FileKind, id: u128) -> FileMaterial {
    FileMaterial {
        key: key(kind, id),
        name: format!("f{id}"),
        data: SecretBytes::new(b"data".to_vec()),
    }
}

fn file_ref(id: u128) -> FileRef {
    FileRef {
        id: SecretId(id),
        name: format!("f{id}"),
        target: format!("/run/secrets/f{id}"),
        uid: 0,
        gid: 0,
        mode: FileRef::DEFAULT_MODE,
    }
}

/// A new task (assigned, desired running) that reads these secrets and configs.
fn task_with_files(id: u128, secrets: &[u128], configs: &[u128]) -> Rc<Task> {
    let mut t = (*task(id, TaskState::Assigned, TaskState::Running)).clone();
    t.spec.secrets = secrets.iter().map(|&s| file_ref(s)).collect();
    t.spec.configs = configs.iter().map(|&c| file_ref(c)).collect();
    Rc::new(t)
}

fn answer_with(seq: u64, list: Vec<Rc<Task>>, files: Vec<FileMaterial>) -> I {
    I::SessionDone {
        seq,
        hop: 0,
        outcome: SessionOutcome::Assignments {
            tasks: list,
            files,
            mesh: None,
        },
    }
}

fn held_reported(out: &[E]) -> Vec<Vec<FileKey>> {
    out.iter()
        .filter_map(|e| match e {
            E::OpenSession { held, .. } => Some(held.clone()),
            _ => None,
        })
        .collect()
}

fn held(m: &M) -> Vec<FileKey> {
    m.held().keys().copied().collect()
}

fn ended(task: u128, state: TaskState) -> I {
    I::TaskStatus {
        task: TaskId(task),
        status: TaskStatus::new(state, T0, "x"),
    }
}

#[test]
fn a_task_waits_for_its_files_and_starts_once_answers_brought_them_all() {
    let mut m = machine();
    let out = step(&mut m, I::Tick);
    assert_eq!(held_reported(&out), [vec![]]);
    let t = task_with_files(1, &[1], &[2]);
    // The first answer brings one of the two: held, the task waits, the next session opens
    // at once and reports it.
    let out = step(
        &mut m,
        answer_with(1, vec![t.clone()], vec![material(FileKind::Secret, 1)]),
    );
    assert!(out.contains(&E::HoldFiles(vec![material(FileKind::Secret, 1)])));
    assert!(!out.iter().any(|e| matches!(e, E::StartTask(_))));
    assert_eq!(held_reported(&out), [vec![key(FileKind::Secret, 1)]]);
    assert_eq!(lost(&m), [], "a waiting task is not reported");
    // The second brings the other: held before the task starts.
    let out = step(
        &mut m,
        answer_with(2, vec![t.clone()], vec![material(FileKind::Config, 2)]),
    );
    let hold = out.iter().position(|e| matches!(e, E::HoldFiles(_)));
    let start = out.iter().position(|e| matches!(e, E::StartTask(_)));
    assert!(hold.is_some() && hold < start, "{out:?}");
    assert_eq!(
        held(&m),
        [key(FileKind::Secret, 1), key(FileKind::Config, 2)]
    );
    assert!(opened(&out).is_empty(), "nothing waits any more");
}

#[test]
fn files_are_dropped_once_no_task_here_needs_them() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let (a, b) = (
        task_with_files(1, &[1], &[]),
        task_with_files(2, &[1], &[2]),
    );
    let files = vec![material(FileKind::Secret, 1), material(FileKind::Config, 2)];
    step(&mut m, answer_with(1, vec![a.clone(), b.clone()], files));
    assert_eq!(m.tasks().count(), 2);
    // Task 2 ends: its config goes, the shared secret stays for task 1.
    let out = step(&mut m, ended(2, TaskState::Failed));
    assert!(out.contains(&E::DropFiles(vec![key(FileKind::Config, 2)])));
    assert_eq!(held(&m), [key(FileKind::Secret, 1)]);
    // Task 1 is no longer listed: stopped, and the secret goes with it.
    step(&mut m, I::Tick);
    let out = step(&mut m, answer_with(2, vec![b], Vec::new()));
    assert!(out.contains(&E::StopTask(TaskId(1))));
    assert!(out.contains(&E::DropFiles(vec![key(FileKind::Secret, 1)])));
    assert!(held(&m).is_empty());
}

#[test]
fn an_answer_without_files_rejects_a_task_whose_file_the_leader_does_not_have() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let t = task_with_files(1, &[7], &[]);
    let out = step(&mut m, answer_with(1, vec![t], Vec::new()));
    assert!(!out.iter().any(|e| matches!(e, E::StartTask(_))));
    let report = m.report();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].1.state, TaskState::Rejected);
    assert_eq!(report[0].1.error.as_deref(), Some("secret f7 not found"));
}

#[test]
fn files_no_task_here_needs_are_not_kept_and_held_tasks_keep_theirs() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let mut held_task = (*task_with_files(1, &[1], &[])).clone();
    held_task.desired_state = TaskState::Assigned;
    let files = vec![material(FileKind::Secret, 1), material(FileKind::Secret, 9)];
    let out = step(&mut m, answer_with(1, vec![Rc::new(held_task)], files));
    assert!(out.contains(&E::HoldFiles(vec![material(FileKind::Secret, 1)])));
    assert_eq!(held(&m), [key(FileKind::Secret, 1)]);
    assert!(!out.iter().any(|e| matches!(e, E::StartTask(_))));
}

#[test]
fn sessions_for_files_in_a_row_are_bounded() {
    let mut m = machine();
    step(&mut m, I::Tick);
    let ids: Vec<u128> = (1..=40).collect();
    let t = task_with_files(1, &ids, &[]);
    let mut seq = 1;
    let mut at_once = 0;
    for id in 1..=30 {
        let out = step(
            &mut m,
            answer_with(seq, vec![t.clone()], vec![material(FileKind::Secret, id)]),
        );
        match opened(&out).first() {
            Some((s, ..)) => {
                at_once += 1;
                seq = *s;
            }
            None => break,
        }
    }
    assert_eq!(at_once, FILE_SESSIONS_MAX);
    // A tick starts a new run of them.
    let out = step(&mut m, I::Tick);
    let seq = opened(&out)[0].0;
    let out = step(
        &mut m,
        answer_with(seq, vec![t], vec![material(FileKind::Secret, 40)]),
    );
    assert_eq!(opened(&out).len(), 1);
}

#[test]
fn a_new_mesh_table_is_published_before_the_tasks_start_and_its_version_reported() {
    use crate::wire::MeshTable;
    use std::sync::Arc;
    let mut m = M::new(["process".to_string()], 0);
    let mut out = Vec::new();
    m.handle(0, I::ManagersChanged(vec![7]), &mut out);
    m.handle(0, I::Tick, &mut out);
    let version_of = |out: &[E]| {
        out.iter().find_map(|e| match e {
            E::OpenSession { mesh_version, .. } => Some(*mesh_version),
            _ => None,
        })
    };
    assert_eq!(version_of(&out), Some(0), "no table yet");
    let table = Arc::new(MeshTable {
        networks: Vec::new(),
        nodes: Vec::new(),
        version: 42,
        services: Vec::new(),
    });
    let done = |seq, mesh: Option<Arc<MeshTable>>| I::SessionDone {
        seq,
        hop: 0,
        outcome: SessionOutcome::Assignments {
            tasks: vec![task(5, TaskState::Assigned, TaskState::Running)],
            files: Vec::new(),
            mesh,
        },
    };
    let mut out = Vec::new();
    m.handle(1, done(1, Some(Arc::clone(&table))), &mut out);
    let mesh_at = out
        .iter()
        .position(|e| matches!(e, E::MeshTable(t) if t.version == 42));
    let start_at = out.iter().position(|e| matches!(e, E::StartTask(_)));
    assert!(mesh_at.is_some() && start_at.is_some(), "{out:?}");
    assert!(
        mesh_at < start_at,
        "the table's ports are there when the task starts"
    );
    assert_eq!(m.mesh_version(), 42);

    let mut out = Vec::new();
    m.handle(2, I::Tick, &mut out);
    assert_eq!(version_of(&out), Some(42), "the version held is reported");
    let mut out = Vec::new();
    m.handle(3, done(2, Some(table)), &mut out);
    assert!(
        !out.iter().any(|e| matches!(e, E::MeshTable(_))),
        "the same version again is not news"
    );
}
