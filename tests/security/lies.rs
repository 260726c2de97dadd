//! A node with a real worker (or demoted manager) certificate that lies: it answers sessions
//! with work of its choosing, gossips descriptions and identities it does not own, sends raft
//! traffic, and tells nodes to remove each other. Holes 1, 2, 3 and 8 of the trust issue.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use foca::{Codec, Header, Incarnation, Member, Message};
use raft::eraftpb::{Message as RaftMessage, MessageType};
use swarm_actors::membership::{
    BincodeCodec, DescriptionItem, MemberId, TAG_DESCRIPTION, TAG_FOCA,
};
use swarm_actors::model::{
    NodeDescription, NodeId, NodeResources, Role, RuntimeKind, Task, TaskId, TaskSpec, TaskState,
    TaskStatus,
};
use swarm_actors::replica::chunks::split;
use swarm_actors::transport::Inbound;
use swarm_actors::wire::{Assignment, OneWay, Response};

use crate::common::{Node, phase, wait_until};
use crate::peer::{Liar, runtime};

const LIMIT: Duration = Duration::from_secs(60);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn node_id(n: &Node) -> NodeId {
    n.id().parse().expect("a node ID")
}

/// Answers what the cluster asks the liar: every session with `work` (and itself as the only
/// manager), everything else with a bare acknowledgement. Counts the sessions it answered.
fn answer_everything(liar: &mut Liar, work: Vec<Assignment>) -> Arc<AtomicU64> {
    let asked = Arc::new(AtomicU64::new(0));
    let (count, me) = (asked.clone(), liar.id());
    let (_unused, empty) = tokio::sync::mpsc::channel(1);
    let mut inbound = std::mem::replace(&mut liar.inbound, empty);
    tokio::spawn(async move {
        while let Some(msg) = inbound.recv().await {
            if let Inbound::Request { req, reply, .. } = msg {
                let resp = match req {
                    swarm_actors::wire::Request::Session(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        Response::Assignments {
                            tasks: work.clone(),
                            managers: vec![me],
                            files: Vec::new(),
                            mesh: None,
                        }
                    }
                    _ => Response::Pong,
                };
                let _ = reply.send(resp); // the asker may have gone
            }
        }
    });
    asked
}

/// A description datagram as a node pushes its own: `TAG_DESCRIPTION`, no reply address, item.
fn description_datagram(description: NodeDescription, bump: u64) -> Bytes {
    let mut data = vec![TAG_DESCRIPTION];
    data.extend(
        bincode::serde::encode_to_vec(None::<SocketAddr>, bincode::config::standard()).unwrap(),
    );
    data.extend(DescriptionItem { bump, description }.encode().unwrap());
    data.into()
}

fn description(
    id: NodeId,
    hostname: &str,
    addr: SocketAddr,
    role: Role,
    version: u64,
) -> NodeDescription {
    NodeDescription {
        id,
        hostname: hostname.into(),
        addr,
        role,
        resources: NodeResources {
            nano_cpus: 64_000_000_000,
            memory_bytes: 1 << 40,
        },
        labels: Default::default(),
        runtimes: vec!["process".into()],
        engine_version: "0.1.0".into(),
        version,
    }
}

/// A foca packet with header `src`, carrying `updates`.
fn foca_packet(src: MemberId, dst: MemberId, updates: &[Member<MemberId>]) -> Bytes {
    let mut codec = BincodeCodec;
    let mut buf = BytesMut::new();
    buf.put_u8(TAG_FOCA);
    let header = Header {
        src,
        src_incarnation: Incarnation::default(),
        dst,
        message: Message::Gossip,
    };
    codec.encode_header(&header, &mut buf).unwrap();
    buf.put_u16(updates.len() as u16);
    for u in updates {
        codec.encode_member(u, &mut buf).unwrap();
    }
    buf.freeze()
}

/// A task that leaves `marker` behind if it ever runs.
fn evil_task(marker: &Path) -> Assignment {
    let spec = TaskSpec {
        runtime: RuntimeKind::Process,
        image: "sh".into(),
        args: vec![
            "-c".into(),
            format!("echo pwned > {}; sleep 600", marker.display()),
        ],
        ..TaskSpec::default()
    };
    Assignment {
        task: Task {
            id: TaskId(0x5eed),
            service_id: swarm_actors::model::ServiceId(0x5eed),
            slot: 1,
            node_id: None,
            spec,
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::new(TaskState::Assigned, 0, "assigned"),
            created_ms: 0,
            running_ms: None,
            networks: Vec::new(),
        },
        service_name: "evil".into(),
    }
}

/// Column `key` of node `id`'s row in `n`'s `node ls`.
fn node_column(n: &Node, id: &NodeId, key: &str) -> Option<String> {
    let id = id.to_string();
    n.node_ls().into_iter().find_map(|row| {
        let shown = row["ID"].as_str()?.trim_end_matches('*').trim();
        (id.starts_with(shown) || shown.starts_with(&id))
            .then(|| row[key].as_str().unwrap_or_default().to_string())
    })
}

fn hostname_on(n: &Node, id: &NodeId) -> Option<String> {
    node_column(n, id, "Hostname")
}

fn status_on(n: &Node, id: &NodeId) -> Option<String> {
    node_column(n, id, "Status")
}

/// Holes 1 and 3: a worker claims to be the only manager (its own description says manager,
/// the real manager's says worker) and answers the sessions it gets with a task of its own.
#[test]
fn a_worker_cannot_hand_out_work() {
    phase("attack: a worker poses as the only manager and answers sessions with its own task");
    // The test talks to the nodes itself, from this process's namespace.
    let _host = crate::common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let mut n1 = Node::bootstrap(root.path(), "n1", 25001);
    let token = n1.token("worker");
    let n2 = Node::join(root.path(), "n2", 25002, n1.addr, &token);
    assert!(wait_until(LIMIT, || crate::common::all_ready(
        &n1.node_ls(),
        2
    )));
    let n1_id = node_id(&n1);
    let marker = root.path().join("pwned");

    let rt = runtime();
    let asked = rt.block_on(async {
        let mut liar = Liar::join(n1.addr, &token, loopback(25003), "liar").await;
        let asked = answer_everything(&mut liar, vec![evil_task(&marker)]);
        let (liar_id, liar_addr) = (liar.id(), liar.transport.local_addr());
        // The liar's description says manager; its description of n1 says worker.
        let transport = liar.transport.clone();
        let n2_addr = n2.addr;
        tokio::spawn(async move {
            for version in 1_000.. {
                let own = description(liar_id, "liar", liar_addr, Role::Manager, version);
                let forged = description(n1_id, "n1", loopback(25001), Role::Worker, u64::MAX - 1);
                let _ = transport.send_datagram(n2_addr, description_datagram(own, 1 << 32));
                let _ = transport.send_datagram(n2_addr, description_datagram(forged, 1 << 40));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::mem::forget(liar); // keeps its endpoint open for the rest of the test
        asked
    });

    phase("the real manager dies: n2's sessions fail and it looks for another manager");
    n1.kill();
    let ran = wait_until(Duration::from_secs(15), || marker.exists());
    assert!(
        !ran,
        "n2 ran the task a worker handed it ({} sessions answered by the liar)",
        asked.load(Ordering::Relaxed)
    );
    eprintln!(
        "the liar answered {} sessions; nothing ran",
        asked.load(Ordering::Relaxed)
    );
    drop(rt);
}

/// Hole 3: a worker tells a manager that another node has a new name, and gossips identities
/// that are not its own (the other node at its own address, far ahead of its real identity).
#[test]
fn gossip_cannot_speak_for_another_node() {
    phase("attack: a worker forges another node's description and identity in gossip");
    // The test talks to the nodes itself, from this process's namespace.
    let _host = crate::common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 25011);
    let token = n1.token("worker");
    let n2 = Node::join(root.path(), "n2", 25012, n1.addr, &token);
    assert!(wait_until(LIMIT, || crate::common::all_ready(
        &n1.node_ls(),
        2
    )));
    let n2_id = node_id(&n2);
    let n1_id = node_id(&n1);

    let rt = runtime();
    let liar = rt.block_on(async {
        let liar = Liar::join(n1.addr, &token, loopback(25013), "liar").await;
        let me = MemberId {
            id: liar.id(),
            addr: liar.transport.local_addr(),
            bump: 1 << 32,
        };
        let n1_member = MemberId {
            id: n1_id,
            addr: n1.addr,
            bump: 0,
        };
        let forged_n2 = MemberId {
            id: n2_id,
            addr: n2.addr,
            bump: u64::MAX,
        };
        for _ in 0..10 {
            // n2's description, renamed and with a version nobody can beat.
            let fake = description(n2_id, "pwned", n2.addr, Role::Manager, u64::MAX);
            let _ = liar
                .transport
                .send_datagram(n1.addr, description_datagram(fake, u64::MAX));
            // A packet posing as n2 outright, and one from the liar carrying n2's identity
            // pushed to the maximum (which would make n2's real packets lose for ever).
            let as_n2 = foca_packet(forged_n2.clone(), n1_member.clone(), &[]);
            let _ = liar.transport.send_datagram(n1.addr, as_n2);
            let ahead = foca_packet(
                me.clone(),
                n1_member.clone(),
                &[Member::new(
                    forged_n2.clone(),
                    Incarnation::MAX,
                    foca::State::Alive,
                )],
            );
            let _ = liar.transport.send_datagram(n1.addr, ahead);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        liar
    });

    phase("n1 still shows n2 under its own name, Ready, for the next 5 s");
    for _ in 0..10 {
        assert_eq!(
            hostname_on(&n1, &n2_id).as_deref(),
            Some("n2"),
            "n2 renamed by a liar"
        );
        assert_eq!(
            status_on(&n1, &n2_id).as_deref(),
            Some("Ready"),
            "n2 pushed out by a liar"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(liar);
    drop(rt);
}

/// Hole 2: raft traffic from a worker, and raft traffic that claims another sender.
#[test]
fn raft_from_a_worker_is_dropped() {
    phase("attack: a worker sends raft heartbeats at a higher term that would depose the leader");
    // The test talks to the nodes itself, from this process's namespace.
    let _host = crate::common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 25021);
    let token = n1.token("worker");
    let term_before = store_term(&n1);
    let raft_id = store_raft_id(&n1);

    let rt = runtime();
    rt.block_on(async {
        let liar = Liar::join(n1.addr, &token, loopback(25022), "liar").await;
        for (claimed, inner_from) in [(777, 777), (raft_id + 1, 777), (777, raft_id)] {
            // A heartbeat from a "leader" at a far higher term: a node that takes it steps
            // down, follows the liar, and the term moves.
            let mut m = RaftMessage::default();
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.to = raft_id;
            m.from = inner_from;
            m.term = term_before + 1_000;
            m.log_term = u64::MAX / 2;
            m.index = u64::MAX / 2;
            let bytes = swarm_actors::store::encode_message(&m).unwrap();
            for chunk in split(claimed, 1, &bytes) {
                liar.transport
                    .send_oneway(n1.addr, OneWay::Raft(chunk))
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    });

    phase("the store's term did not move and writes still land");
    let term_after = store_term(&n1);
    assert_eq!(
        term_after, term_before,
        "a worker's raft message moved the term"
    );
    let out = n1.cli(&[
        "service",
        "create",
        "--name",
        "still-writes",
        "--replicas",
        "1",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "600",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(rt);
}

/// Hole 8: a demoted manager keeps its manager certificate, and uses it to tell the other
/// managers to remove a node.
#[test]
fn a_demoted_manager_cannot_command() {
    phase("attack: a demoted manager, certificate still saying manager, orders a node removed");
    // The test talks to the nodes itself, from this process's namespace.
    let _host = crate::common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 25031);
    let manager = n1.token("manager");
    let worker = n1.token("worker");
    let n2 = Node::join(root.path(), "n2", 25032, n1.addr, &manager);
    let n3 = Node::join(root.path(), "n3", 25033, n1.addr, &manager);
    let w = Node::join(root.path(), "w", 25034, n1.addr, &worker);
    assert!(wait_until(LIMIT, || crate::common::all_ready(
        &n1.node_ls(),
        4
    )));
    let w_id = node_id(&w);

    let rt = runtime();
    let mut liar = rt.block_on(Liar::join(n1.addr, &manager, loopback(25035), "liar"));
    assert_eq!(liar.role(), Role::Manager);
    let _asked = rt.block_on(async { answer_everything(&mut liar, Vec::new()) });
    let liar_id = liar.id().to_string();

    phase("the liar is demoted: the store no longer counts it a manager");
    let out = n1.cli(&["node", "demote", &liar_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every node learns the store's managers from its next session answer.
    std::thread::sleep(Duration::from_secs(3));

    rt.block_on(async {
        for to in [n2.addr, n3.addr, w.addr] {
            liar.transport
                .send_oneway(to, OneWay::Removed(w_id))
                .unwrap();
            liar.transport.send_oneway(to, OneWay::Poke).unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    });

    phase("no node removed w: it stays Ready everywhere");
    for _ in 0..8 {
        for n in [&n2, &n3] {
            assert_eq!(
                status_on(n, &w_id).as_deref(),
                Some("Ready"),
                "{} obeyed a demoted manager",
                n.name
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs = n2.logs() + &n3.logs() + &w.logs();
    assert!(
        logs.contains("refused: only a manager may remove a node"),
        "the refusal is logged"
    );
    drop(liar);
    drop(rt);
}

/// The store's status through the admin shell: `send store/<id> Status`.
fn store_status(n: &Node) -> serde_json::Value {
    let id = n.id();
    let out = shell(n, &format!("send store/{id} Status"));
    let start = out.find('{').unwrap_or_else(|| panic!("no JSON in {out}"));
    let end = out.rfind('}').unwrap();
    serde_json::from_str(&out[start..=end]).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn store_term(n: &Node) -> u64 {
    store_status(n)["term"].as_u64().expect("a term")
}

fn store_raft_id(n: &Node) -> u64 {
    store_status(n)["raft_id"].as_u64().expect("a raft ID")
}

fn shell(n: &Node, line: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::common::BIN)
        .args(["--data-dir", n.dir.to_str().unwrap(), "shell"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{line}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}
