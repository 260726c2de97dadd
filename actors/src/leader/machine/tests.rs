//! The leader machine driven directly: inputs in, effects checked, no actor and no clock.

use std::collections::BTreeMap;

use super::*;
use crate::model::{
    Availability, FileKind, FileRef, NodeResources, Role, Secret, SecretBytes, SecretId,
    ServiceMode, TaskState, TaskStatus as Status,
};
use crate::orchestrator::tests_support::{service, task};
use crate::store::NodeSpec;

const ME: NodeId = NodeId(1);

fn description(id: u128, version: u64) -> NodeDescription {
    NodeDescription {
        id: NodeId(id),
        hostname: format!("host-{id}"),
        addr: format!("127.0.0.1:{}", 7000 + id).parse().unwrap(),
        role: Role::Worker,
        resources: NodeResources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        labels: BTreeMap::new(),
        runtimes: vec!["process".into()],
        engine_version: String::new(),
        version,
    }
}

fn stored(kind: Kind, id: String, version: u64, body: ObjectBody) -> StoredObject {
    StoredObject {
        kind,
        id,
        version,
        created_ms: 0,
        updated_ms: 0,
        body,
    }
}

fn node(id: u128, described: bool) -> StoredObject {
    let n = NodeObject {
        id: NodeId(id),
        spec: NodeSpec {
            role: Role::Worker,
            availability: Availability::Active,
            labels: BTreeMap::new(),
        },
        description: described.then(|| description(id, 1)),
        raft_id: (id == 1).then_some(1),
        addr: description(id, 1).addr,
    };
    stored(Kind::Node, NodeId(id).to_string(), 5, ObjectBody::Node(n))
}

fn member(id: u128, state: NodeState) -> MemberView {
    MemberView {
        id: NodeId(id),
        addr: description(id, 1).addr,
        state,
        description: Some(description(id, 1)),
    }
}

/// The store as a pass reads it.
struct Store {
    nodes: Vec<StoredObject>,
    services: Vec<StoredObject>,
    tasks: Vec<StoredObject>,
    secrets: Vec<StoredObject>,
}

impl Store {
    fn new(nodes: &[u128], replicas: u64, tasks: Vec<Task>) -> Self {
        let svc = service(ServiceMode::Replicated { replicas });
        Store {
            nodes: nodes.iter().map(|&n| node(n, true)).collect(),
            services: vec![stored(
                Kind::Service,
                "1".into(),
                3,
                ObjectBody::Service(svc),
            )],
            tasks: tasks
                .into_iter()
                .map(|t| stored(Kind::Task, t.id.to_string(), 4, ObjectBody::Task(t)))
                .collect(),
            secrets: Vec::new(),
        }
    }

    fn read(&self) -> LeaderInput<'_> {
        LeaderInput::ReadDone(StoreRead {
            applied_index: 9,
            nodes: self.nodes.iter().collect(),
            services: self.services.iter().collect(),
            tasks: self.tasks.iter().collect(),
            secrets: self.secrets.iter().collect(),
            networks: Vec::new(),
        })
    }
}

fn run(m: &mut LeaderMachine, now: u64, input: LeaderInput<'_>) -> Vec<LeaderEffect> {
    let mut out = Vec::new();
    m.handle(now, input, &mut out);
    out
}

fn proposals(out: &[LeaderEffect]) -> Vec<&StoreCommand> {
    out.iter()
        .filter_map(|e| match e {
            LeaderEffect::Propose(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn answers(out: &[LeaderEffect]) -> Vec<(SessionToken, Option<usize>)> {
    out.iter()
        .filter_map(|e| match e {
            LeaderEffect::Answer { session, answer } => Some((
                *session,
                match answer {
                    SessionAnswer::Busy => None,
                    SessionAnswer::Assignments { tasks, .. } => Some(tasks.len()),
                },
            )),
            _ => None,
        })
        .collect()
}

fn session(
    token: SessionToken,
    from: u128,
    statuses: Vec<(TaskId, Status)>,
) -> LeaderInput<'static> {
    LeaderInput::Session {
        session: token,
        from: NodeId(from),
        statuses,
        held: Vec::new(),
        mesh_version: 0,
    }
}

#[test]
fn the_first_pass_reads_linearizably_and_sessions_wait_for_it() {
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(
        &mut m,
        0,
        LeaderInput::Members(&[member(2, NodeState::Ready)]),
    );
    let out = run(&mut m, 0, LeaderInput::Start);
    assert!(out.iter().any(|e| matches!(
        e,
        LeaderEffect::SetTimer {
            timer: LeaderTimer::Interval,
            ..
        }
    )));
    assert!(matches!(
        out.last(),
        Some(LeaderEffect::Read { linearizable: true })
    ));

    // A session during the pass waits for it; one beyond the queue would be Busy.
    assert!(answers(&run(&mut m, 1, session(1, 2, vec![]))).is_empty());
    let store = Store::new(&[1, 2], 2, vec![]);
    let out = run(&mut m, 2, store.read());
    let cmds = proposals(&out);
    assert_eq!(cmds.len(), 1, "the two new tasks in one command");
    assert_eq!(cmds[0].ops.len(), 2);
    let out = run(&mut m, 3, LeaderInput::ProposeDone(Ok(())));
    assert_eq!(answers(&out), [(1, Some(1))], "answered with its new task");
    assert!(
        out.iter()
            .any(|e| matches!(e, LeaderEffect::Poke { node, .. } if *node == NodeId(2)))
    );
    assert!(
        out.iter()
            .any(|e| matches!(e, LeaderEffect::ServicesChanged(n) if n == &["web"]))
    );
    assert_eq!(m.view().passes, 1);
    assert_eq!(m.service("web").expect("known").desired.len(), 2);

    // Later passes read the leader's own replica.
    let out = run(&mut m, 1_000, LeaderInput::Timer(LeaderTimer::Interval));
    assert!(matches!(
        out.last(),
        Some(LeaderEffect::Read {
            linearizable: false
        })
    ));
}

#[test]
fn no_session_is_answered_before_the_first_pass_ends() {
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    // Before any pass is asked for (the shell feeds Start first), and after a failed read.
    assert_eq!(answers(&run(&mut m, 0, session(1, 2, vec![]))), [(1, None)]);
    run(&mut m, 0, LeaderInput::Start);
    let out = run(&mut m, 1, LeaderInput::ReadFailed("no quorum".into()));
    assert!(out.iter().any(|e| matches!(
        e,
        LeaderEffect::SetTimer {
            after_ms: RETRY_MS,
            timer: LeaderTimer::Due
        }
    )));
    assert_eq!(answers(&run(&mut m, 2, session(2, 2, vec![]))), [(2, None)]);
}

#[test]
fn only_the_node_a_task_is_on_reports_it() {
    let running = task(10, 1, Some(2));
    let store = Store::new(&[1, 2, 3], 1, vec![running]);
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    let members = [member(2, NodeState::Ready), member(3, NodeState::Ready)];
    run(&mut m, 0, LeaderInput::Members(&members));
    run(&mut m, 0, LeaderInput::Start);
    let out = run(&mut m, 1, store.read());
    assert!(proposals(&out).is_empty(), "{out:?}");
    // The debounce timer the members asked for fires into a pass already done.
    assert!(run(&mut m, 1, LeaderInput::Timer(LeaderTimer::Due)).is_empty());
    let failed = Status::new(TaskState::Failed, 5, "exit 1");
    // Node 3 speaks for node 2's task: ignored, no pass asked for.
    let out = run(&mut m, 5, session(1, 3, vec![(TaskId(10), failed.clone())]));
    assert_eq!(answers(&out), [(1, Some(0))]);
    assert!(
        !out.iter()
            .any(|e| matches!(e, LeaderEffect::SetTimer { .. }))
    );
    // Node 2 does: a pass after the debounce, which writes the status.
    let out = run(&mut m, 6, session(2, 2, vec![(TaskId(10), failed)]));
    assert!(out.iter().any(|e| matches!(
        e,
        LeaderEffect::SetTimer {
            timer: LeaderTimer::Due,
            ..
        }
    )));
    let out = run(&mut m, 30, LeaderInput::Timer(LeaderTimer::Due));
    assert!(matches!(
        out.last(),
        Some(LeaderEffect::Read {
            linearizable: false
        })
    ));
    let out = run(&mut m, 31, store.read());
    let put_failed = proposals(&out)[0].ops.iter().any(|op| {
        matches!(op, Op::Put { body: ObjectBody::Task(t), .. } if t.status.state == TaskState::Failed)
    });
    assert!(put_failed);
}

#[test]
fn unseen_nodes_are_unknown_during_the_down_grace_then_down() {
    let store = Store::new(&[1, 2], 1, vec![task(10, 1, Some(2))]);
    let orphans = |out: &[LeaderEffect]| {
        proposals(out).iter().flat_map(|c| &c.ops).any(|op| {
            matches!(op, Op::Put { body: ObjectBody::Task(t), .. } if t.status.state == TaskState::Orphaned)
        })
    };
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(&mut m, 0, LeaderInput::Start);
    let out = run(&mut m, 1, store.read());
    assert!(
        !orphans(&out),
        "within the grace node 2 is Unknown: {out:?}"
    );
    run(&mut m, 2, LeaderInput::ProposeDone(Ok(())));
    run(
        &mut m,
        DOWN_GRACE_MS,
        LeaderInput::Timer(LeaderTimer::Interval),
    );
    let out = run(&mut m, DOWN_GRACE_MS, store.read());
    assert!(orphans(&out), "after the grace it is Down");

    // Membership's own Down counts at once.
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(
        &mut m,
        0,
        LeaderInput::Members(&[member(2, NodeState::Down)]),
    );
    run(&mut m, 0, LeaderInput::Start);
    assert!(orphans(&run(&mut m, 1, store.read())));
}

#[test]
fn a_failed_write_ends_the_pass_without_pokes_and_retries() {
    let store = Store::new(&[1, 2], 2, vec![]);
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(
        &mut m,
        0,
        LeaderInput::Members(&[member(2, NodeState::Ready)]),
    );
    run(&mut m, 0, LeaderInput::Start);
    run(&mut m, 1, store.read());
    run(&mut m, 1, LeaderInput::Timer(LeaderTimer::Due));
    let out = run(
        &mut m,
        2,
        LeaderInput::ProposeDone(Err("out of sequence".into())),
    );
    assert!(!out.iter().any(|e| matches!(e, LeaderEffect::Poke { .. })));
    assert!(out.iter().any(|e| matches!(
        e,
        LeaderEffect::SetTimer {
            after_ms: RETRY_MS,
            timer: LeaderTimer::Due
        }
    )));
    assert!(
        out.iter()
            .any(|e| matches!(e, LeaderEffect::Passed(PassSummary { ok: false, .. })))
    );
    assert_eq!(m.view().last_error.as_deref(), Some("out of sequence"));
    // The tasks were not written: the answers do not list them.
    assert_eq!(
        answers(&run(&mut m, 3, session(1, 2, vec![]))),
        [(1, Some(0))]
    );
}

#[test]
fn the_store_keeps_the_newest_gossip_description_and_its_failure_spares_the_pass() {
    let mut store = Store::new(&[1, 2], 1, vec![]);
    store.nodes[1] = node(2, false);
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    let members = [member(1, NodeState::Ready), member(2, NodeState::Ready)];
    run(&mut m, 0, LeaderInput::Members(&members));
    run(&mut m, 0, LeaderInput::Start);
    let out = run(&mut m, 1, store.read());
    let first = proposals(&out)[0];
    assert!(matches!(
        &first.ops[..],
        [Op::Put {
            kind: Kind::Node,
            expect: Expect::Version(5),
            ..
        }]
    ));
    // Its failure goes on to the task writes.
    let out = run(
        &mut m,
        2,
        LeaderInput::ProposeDone(Err("out of sequence".into())),
    );
    assert!(proposals(&out)[0].ops.iter().all(|op| matches!(
        op,
        Op::Put {
            kind: Kind::Task,
            ..
        }
    )));
}

#[test]
fn one_debounce_timer_at_a_time() {
    let store = Store::new(&[1], 0, vec![]);
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(&mut m, 0, LeaderInput::Start);
    run(&mut m, 1, store.read());
    let timers = |out: &[LeaderEffect]| {
        out.iter()
            .filter(|e| {
                matches!(
                    e,
                    LeaderEffect::SetTimer {
                        timer: LeaderTimer::Due,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(timers(&run(&mut m, 2, LeaderInput::StoreApplied)), 1);
    assert_eq!(timers(&run(&mut m, 3, LeaderInput::StoreApplied)), 0);
    // A pass for another reason leaves it set.
    run(&mut m, 4, LeaderInput::Rebuild);
    run(&mut m, 5, store.read());
    assert_eq!(timers(&run(&mut m, 6, LeaderInput::StoreApplied)), 0);
    // Its firing clears it; the pass in between cleared `dirty` but the applied entry at 6
    // set it again.
    let out = run(&mut m, 22, LeaderInput::Timer(LeaderTimer::Due));
    assert!(matches!(out.last(), Some(LeaderEffect::Read { .. })));
}

/// A secret or config of `bytes` bytes, as the store keeps it (under its name).
fn file(kind: FileKind, id: u128, bytes: usize) -> StoredObject {
    let s = Secret {
        id: SecretId(id),
        kind,
        name: format!("f{id}"),
        labels: BTreeMap::new(),
        data: SecretBytes::new(vec![b'x'; bytes]),
    };
    let store_kind = match kind {
        FileKind::Secret => Kind::Secret,
        FileKind::Config => Kind::Config,
    };
    stored(store_kind, s.name.clone(), 1, ObjectBody::Secret(s))
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

fn key(kind: FileKind, id: u128) -> FileKey {
    FileKey {
        kind,
        id: SecretId(id),
    }
}

/// A task on `node` that reads secrets `secrets` and configs `configs`.
fn task_with_files(id: u128, slot: u64, node: u128, secrets: &[u128], configs: &[u128]) -> Task {
    let mut t = task(id, slot, Some(node));
    t.spec.secrets = secrets.iter().map(|&s| file_ref(s)).collect();
    t.spec.configs = configs.iter().map(|&c| file_ref(c)).collect();
    t
}

/// A leader whose first pass over `store` has ended.
fn passed(store: &Store, members: &[MemberView]) -> LeaderMachine {
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(&mut m, 0, LeaderInput::Members(members));
    run(&mut m, 0, LeaderInput::Start);
    let mut out = run(&mut m, 1, store.read());
    while !proposals(&out).is_empty() {
        out = run(&mut m, 2, LeaderInput::ProposeDone(Ok(())));
    }
    assert_eq!(m.view().passes, 1);
    m
}

/// The keys of the files in the answers among `out`.
fn sent(out: &[LeaderEffect]) -> Vec<FileKey> {
    out.iter()
        .flat_map(|e| match e {
            LeaderEffect::Answer {
                answer: SessionAnswer::Assignments { files, .. },
                ..
            } => files.iter().map(|f| f.key).collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn session_holding(token: SessionToken, from: u128, held: Vec<FileKey>) -> LeaderInput<'static> {
    LeaderInput::Session {
        session: token,
        from: NodeId(from),
        statuses: Vec::new(),
        held,
        mesh_version: 0,
    }
}

#[test]
fn an_answer_carries_the_files_of_the_nodes_own_live_tasks_that_it_lacks() {
    let mut ended = task_with_files(12, 1, 2, &[4], &[]);
    ended.status = Status::new(TaskState::Failed, 5, "exit 1");
    ended.desired_state = TaskState::Shutdown;
    let tasks = vec![
        task_with_files(10, 1, 2, &[1, 2], &[3]),
        task_with_files(11, 2, 3, &[5], &[]),
        ended,
    ];
    let mut store = Store::new(&[1, 2, 3], 2, tasks);
    store.secrets = vec![
        file(FileKind::Secret, 1, 10),
        file(FileKind::Secret, 2, 10),
        file(FileKind::Config, 3, 10),
        file(FileKind::Secret, 4, 10),
        file(FileKind::Secret, 5, 10),
    ];
    let members = [member(2, NodeState::Ready), member(3, NodeState::Ready)];
    let mut m = passed(&store, &members);
    // Node 2: its running task's files, not the ended task's, not node 3's.
    let out = run(&mut m, 10, session_holding(1, 2, Vec::new()));
    let all = [
        key(FileKind::Secret, 1),
        key(FileKind::Secret, 2),
        key(FileKind::Config, 3),
    ];
    assert_eq!(sent(&out), all);
    // What it holds is not sent again; a config is not a secret of the same ID.
    let held = vec![key(FileKind::Secret, 1), key(FileKind::Secret, 3)];
    let out = run(&mut m, 11, session_holding(2, 2, held));
    assert_eq!(
        sent(&out),
        [key(FileKind::Secret, 2), key(FileKind::Config, 3)]
    );
    let out = run(&mut m, 12, session_holding(3, 2, all.to_vec()));
    assert_eq!(answers(&out), [(3, Some(2))]);
    assert!(sent(&out).is_empty());
    // Node 3 gets its own; node 4 has no task and gets nothing.
    assert_eq!(
        sent(&run(&mut m, 13, session_holding(4, 3, Vec::new()))),
        [key(FileKind::Secret, 5)]
    );
    assert!(sent(&run(&mut m, 14, session_holding(5, 4, Vec::new()))).is_empty());
}

#[test]
fn files_past_the_answers_bound_wait_and_a_missing_one_is_left_out() {
    use crate::model::CONFIG_BYTES_MAX;
    let tasks = vec![task_with_files(10, 1, 2, &[1], &[2, 3, 4, 5])];
    let mut store = Store::new(&[1, 2], 1, tasks);
    // Secret 1 is not in the store (removed in a race); configs at the bound, and a small one.
    store.secrets = vec![
        file(FileKind::Config, 2, CONFIG_BYTES_MAX),
        file(FileKind::Config, 3, CONFIG_BYTES_MAX),
        file(FileKind::Config, 4, 5),
        file(FileKind::Config, 5, CONFIG_BYTES_MAX),
    ];
    let mut m = passed(&store, &[member(2, NodeState::Ready)]);
    let out = run(&mut m, 10, session_holding(1, 2, Vec::new()));
    // Three at the bound pass FILES_ANSWER_BYTES_MAX together: the third waits, the small
    // one still fits.
    let first = [
        key(FileKind::Config, 2),
        key(FileKind::Config, 3),
        key(FileKind::Config, 4),
    ];
    assert_eq!(sent(&out), first);
    let out = run(&mut m, 11, session_holding(2, 2, first.to_vec()));
    assert_eq!(sent(&out), [key(FileKind::Config, 5)]);
    // All held but the missing secret: an answer without files.
    let held = vec![
        key(FileKind::Config, 2),
        key(FileKind::Config, 3),
        key(FileKind::Config, 4),
        key(FileKind::Config, 5),
    ];
    let out = run(&mut m, 12, session_holding(3, 2, held));
    assert_eq!(answers(&out), [(3, Some(1))]);
    assert!(sent(&out).is_empty());
}

#[test]
fn a_session_queued_behind_a_pass_keeps_what_it_holds() {
    let tasks = vec![task_with_files(10, 1, 2, &[1, 2], &[])];
    let mut store = Store::new(&[1, 2], 1, tasks);
    store.secrets = vec![file(FileKind::Secret, 1, 3), file(FileKind::Secret, 2, 3)];
    let mut m = passed(&store, &[member(2, NodeState::Ready)]);
    run(&mut m, 10, LeaderInput::Rebuild);
    let out = run(
        &mut m,
        11,
        session_holding(1, 2, vec![key(FileKind::Secret, 1)]),
    );
    assert!(answers(&out).is_empty(), "it waits for the pass");
    let mut out = run(&mut m, 12, store.read());
    while !proposals(&out).is_empty() {
        out = run(&mut m, 13, LeaderInput::ProposeDone(Ok(())));
    }
    assert_eq!(sent(&out), [key(FileKind::Secret, 2)]);
}

#[test]
fn held_tasks_get_their_files_ahead_and_shut_down_ones_do_not() {
    let mut held = task_with_files(10, 1, 2, &[1], &[]);
    held.desired_state = TaskState::Assigned;
    held.status = Status::new(TaskState::Assigned, 5, "assigned");
    let mut stopping = task_with_files(11, 1, 2, &[2], &[]);
    stopping.desired_state = TaskState::Shutdown;
    assert!(needs_files(&held) && !needs_files(&stopping));
    let mut store = Store::new(&[1, 2], 1, vec![held, stopping]);
    store.secrets = vec![file(FileKind::Secret, 1, 3), file(FileKind::Secret, 2, 3)];
    let mut m = passed(&store, &[member(2, NodeState::Ready)]);
    assert_eq!(
        sent(&run(&mut m, 10, session_holding(1, 2, Vec::new()))),
        [key(FileKind::Secret, 1)]
    );
}

/// The mesh table in the answer among `out`, if any.
fn mesh_sent(out: &[LeaderEffect]) -> Option<Arc<MeshTable>> {
    out.iter().find_map(|e| match e {
        LeaderEffect::Answer {
            answer: SessionAnswer::Assignments { mesh, .. },
            ..
        } => mesh.clone(),
        _ => None,
    })
}

fn mesh_session(token: SessionToken, from: u128, version: u64) -> LeaderInput<'static> {
    LeaderInput::Session {
        session: token,
        from: NodeId(from),
        statuses: Vec::new(),
        held: Vec::new(),
        mesh_version: version,
    }
}

#[test]
fn the_mesh_table_lists_running_tasks_goes_to_nodes_without_it_and_pokes_all_when_it_changes() {
    let running = |id, node| {
        let mut t = task(id, id as u64, Some(node));
        t.networks.push(crate::model::NetworkAttachment {
            network: "ingress".into(),
            addr: std::net::Ipv4Addr::new(10, 255, node as u8, id as u8),
            prefix: 24,
            gateway: std::net::Ipv4Addr::new(10, 255, node as u8, 1),
        });
        t
    };
    let mut starting = running(3, 3);
    starting.status = Status::new(TaskState::Starting, 3, "starting");
    let mut store = Store::new(&[1, 2, 3], 3, vec![running(1, 2), running(2, 3), starting]);
    if let ObjectBody::Service(s) = &mut store.services[0].body {
        s.spec.ports = vec![crate::model::PortConfig::tcp(8080, 80)];
    }
    let members = [member(2, NodeState::Ready), member(3, NodeState::Ready)];
    let mut m = LeaderMachine::new(ME, 1, 0, 7);
    run(&mut m, 0, LeaderInput::Members(&members));
    run(&mut m, 0, LeaderInput::Start);
    let mut out = run(&mut m, 1, store.read());
    while !proposals(&out).is_empty() {
        out = run(&mut m, 2, LeaderInput::ProposeDone(Ok(())));
    }
    let pokes: BTreeSet<NodeId> = out
        .iter()
        .filter_map(|e| match e {
            LeaderEffect::Poke { node, .. } => Some(*node),
            _ => None,
        })
        .collect();
    assert_eq!(
        pokes,
        [1, 2, 3].map(NodeId).into(),
        "a new table: every node poked once"
    );
    let table = m.mesh().expect("a table after the pass").clone();
    assert_ne!(table.version, 0);
    assert_eq!(table.services.len(), 1);
    let backends: Vec<_> = table.services[0]
        .backends
        .iter()
        .map(|b| (b.task, b.node, b.node_addr, b.addr))
        .collect();
    assert_eq!(
        backends,
        vec![
            (
                TaskId(1),
                NodeId(2),
                description(2, 1).addr,
                Some("10.255.2.1".parse().unwrap())
            ),
            (
                TaskId(2),
                NodeId(3),
                description(3, 1).addr,
                Some("10.255.3.2".parse().unwrap())
            ),
        ],
        "RUNNING tasks only, in task order"
    );

    let out = run(&mut m, 3, mesh_session(7, 2, 0));
    assert_eq!(
        mesh_sent(&out).as_deref(),
        Some(&*table),
        "a node without it gets it"
    );
    let out = run(&mut m, 3, mesh_session(8, 2, table.version));
    assert_eq!(answers(&out).len(), 1);
    assert_eq!(mesh_sent(&out), None, "a node holding it gets nothing more");

    // Node 3 goes Down: its task leaves the rotation, and the new table is news to all.
    run(
        &mut m,
        4,
        LeaderInput::Members(&[member(2, NodeState::Ready), member(3, NodeState::Down)]),
    );
    let mut out = run(&mut m, 5, LeaderInput::Rebuild);
    out.extend(run(&mut m, 6, store.read()));
    while !proposals(&out).is_empty() {
        out = run(&mut m, 7, LeaderInput::ProposeDone(Ok(())));
    }
    let after = m.mesh().unwrap().clone();
    assert_ne!(after.version, table.version);
    let tasks: Vec<_> = after.services[0].backends.iter().map(|b| b.task).collect();
    assert_eq!(tasks, vec![TaskId(1)]);
    let out = run(&mut m, 8, mesh_session(9, 2, table.version));
    assert_eq!(mesh_sent(&out).map(|t| t.version), Some(after.version));
}

#[test]
fn the_mesh_table_follows_health_and_desired_state_and_is_bounded() {
    use crate::model::{Health, HealthCheck};
    let mut svc = service(ServiceMode::Replicated { replicas: 3 });
    svc.spec.ports = vec![crate::model::PortConfig::tcp(8080, 80)];
    let addrs: BTreeMap<NodeId, SocketAddr> = [(NodeId(2), description(2, 1).addr)].into();
    let mut healthy = task(1, 1, Some(2));
    let mut unhealthy = task(2, 2, Some(2));
    let mut stopping = task(3, 3, Some(2));
    for t in [&mut healthy, &mut unhealthy, &mut stopping] {
        t.spec.health = Some(HealthCheck {
            cmd: "true".into(),
            interval_ms: 1_000,
            timeout_ms: 1_000,
            retries: 1,
            start_period_ms: 0,
        });
    }
    healthy.status.health = Some(Health::Healthy);
    unhealthy.status.health = Some(Health::Unhealthy);
    stopping.status.health = Some(Health::Healthy);
    stopping.desired_state = TaskState::Shutdown;
    let all = [healthy.clone(), unhealthy, stopping];
    let (t, cut) = mesh::mesh_table(
        std::slice::from_ref(&svc),
        &[],
        &all,
        &addrs,
        &BTreeSet::new(),
    );
    assert_eq!(cut, mesh::MeshCut::default());
    let listed: Vec<_> = t.services[0].backends.iter().map(|b| b.task).collect();
    assert_eq!(listed, vec![TaskId(1)], "healthy and wanted only");
    let (again, _) = mesh::mesh_table(
        std::slice::from_ref(&svc),
        &[],
        &all,
        &addrs,
        &BTreeSet::new(),
    );
    assert_eq!(again.version, t.version, "a digest of the content");

    // Past the backends bound the table is cut, and says so.
    let many: Vec<Task> = (0..crate::wire::MESH_BACKENDS_MAX as u128 + 5)
        .map(|i| task(100 + i, 1, Some(2)))
        .collect();
    let (t, cut) = mesh::mesh_table(
        std::slice::from_ref(&svc),
        &[],
        &many,
        &addrs,
        &BTreeSet::new(),
    );
    assert_eq!(t.services[0].backends.len(), crate::wire::MESH_BACKENDS_MAX);
    assert_eq!(cut.backends, 5);
    // A service without ports is not listed.
    let (t, _) = mesh::mesh_table(
        &[service(ServiceMode::Global)],
        &[],
        &many,
        &addrs,
        &BTreeSet::new(),
    );
    assert!(t.services.is_empty());
    assert_ne!(t.version, 0);
}
