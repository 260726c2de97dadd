//! Scenario tests of the store machine: machines wired by an in-test shuttle, no sockets, no
//! sleeps, fixed seeds. Time is the shuttle's tick count.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use super::*;
use crate::model::NodeId;

const TICK_MS: u64 = 50;

fn addr(id: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 2377))
}

fn body(tag: &str) -> ObjectBody {
    ObjectBody::Cluster(ClusterObject {
        ca_cert_der: vec![1],
        ca_key_pem: format!("k-{tag}"),
        worker_token: format!("w-{tag}"),
        manager_token: format!("m-{tag}"),
        rotation: None,
        unlock_key: None,
    })
}

fn put(id: &str, expect: Expect, tag: &str) -> StoreCommand {
    StoreCommand {
        now_ms: 1,
        ops: vec![Op::Put {
            kind: Kind::Cluster,
            id: id.into(),
            expect,
            body: body(tag),
        }],
    }
}

struct Shuttle {
    nodes: BTreeMap<u64, StoreMachine<MemStorage>>,
    queue: VecDeque<(u64, u64, Vec<u8>)>,
    /// Nodes cut off from everyone.
    cut: BTreeSet<u64>,
    now_ms: u64,
    /// Every effect but sends, by node.
    seen: BTreeMap<u64, Vec<StoreEffect>>,
    /// (term → leaders seen in it): at most one each.
    leaders: BTreeMap<u64, BTreeSet<u64>>,
}

impl Shuttle {
    fn new() -> Self {
        Shuttle {
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            now_ms: 0,
            seen: BTreeMap::new(),
            leaders: BTreeMap::new(),
        }
    }

    /// A cluster of `n` voters, grown one voter at a time from node 1.
    fn cluster(n: u64, cfg: StoreConfig) -> Self {
        let mut s = Shuttle::new();
        let m = StoreMachine::new(
            1,
            MemStorage::new(),
            cfg.clone(),
            1,
            Bootstrap::NewCluster {
                node_id: NodeId(1),
                addr: addr(1),
            },
        )
        .unwrap();
        s.nodes.insert(1, m);
        s.run(5);
        assert_eq!(s.leader(), Some(1));
        for id in 2..=n {
            let m = StoreMachine::new(
                id,
                MemStorage::new(),
                cfg.clone(),
                id * 7919,
                Bootstrap::Join,
            )
            .unwrap();
            s.nodes.insert(id, m);
            let leader = s.leader().unwrap();
            s.input(
                leader,
                StoreInput::AddVoter {
                    req: 1000 + id,
                    raft_id: id,
                    node_id: NodeId(u128::from(id)),
                    addr: addr(id),
                },
            );
            s.run(20);
            assert!(
                s.applied_req(leader, 1000 + id).is_some(),
                "voter {id} added: {:?} {:?}",
                s.refused(leader, 1000 + id),
                s.nodes.values().map(|m| m.stats()).collect::<Vec<_>>()
            );
        }
        s
    }

    fn input(&mut self, id: u64, input: StoreInput) {
        let mut out = Vec::new();
        let Some(m) = self.nodes.get_mut(&id) else {
            return;
        };
        m.handle(self.now_ms, input, &mut out);
        if m.is_leader() {
            self.leaders.entry(m.term()).or_default().insert(id);
        }
        for e in out {
            match e {
                StoreEffect::Send { to, msg } => self.queue.push_back((id, to, msg)),
                other => self.seen.entry(id).or_default().push(other),
            }
        }
    }

    fn deliver(&mut self) {
        let mut budget = 100_000;
        while let Some((from, to, msg)) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "messages never settle");
            if self.cut.contains(&from) || self.cut.contains(&to) {
                continue;
            }
            self.input(to, StoreInput::Message { from, bytes: msg });
        }
    }

    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.now_ms += TICK_MS;
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                self.input(id, StoreInput::Tick);
            }
            self.deliver();
        }
        for (term, ls) in &self.leaders {
            assert!(ls.len() <= 1, "two leaders in term {term}: {ls:?}");
        }
    }

    /// The one leader among the nodes not cut off.
    fn leader(&self) -> Option<u64> {
        let ls: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(id, m)| m.is_leader() && !self.cut.contains(id))
            .map(|(id, _)| *id)
            .collect();
        assert!(ls.len() <= 1, "several leaders: {ls:?}");
        ls.first().copied()
    }

    fn applied_req(&self, id: u64, req: u64) -> Option<Result<(), StoreError>> {
        self.seen.get(&id)?.iter().find_map(|e| match e {
            StoreEffect::Applied {
                req: Some(r),
                result,
                ..
            } if *r == req => Some(result.clone()),
            _ => None,
        })
    }

    fn refused(&self, id: u64, req: u64) -> Option<StoreError> {
        self.seen.get(&id)?.iter().find_map(|e| match e {
            StoreEffect::Refused { req: r, error } if *r == req => Some(error.clone()),
            _ => None,
        })
    }

    fn write(&mut self, req: u64, cmd: StoreCommand) -> Result<(), StoreError> {
        let leader = self.leader().expect("a leader");
        self.input(leader, StoreInput::Propose { req, cmd });
        self.run(5);
        if let Some(e) = self.refused(leader, req) {
            return Err(e);
        }
        self.applied_req(leader, req).expect("answered")
    }

    fn version(&self, id: u64, obj: &str) -> Option<u64> {
        self.nodes[&id]
            .state()
            .get(Kind::Cluster, obj)
            .map(|o| o.version)
    }
}

fn small_cfg() -> StoreConfig {
    StoreConfig {
        snapshot_every_entries: 20,
        ..StoreConfig::default()
    }
}

#[test]
fn three_elect_one_leader_and_a_write_commits_everywhere() {
    eprintln!("phase: a cluster of three grows from one and has exactly one leader");
    let mut s = Shuttle::cluster(3, small_cfg());
    assert_eq!(s.leader(), Some(1));
    for m in s.nodes.values() {
        assert_eq!(m.voters(), vec![1, 2, 3]);
        assert_eq!(
            m.members().len(),
            3,
            "every member learns every voter's address"
        );
        assert_eq!(m.members()[&3].addr, addr(3));
    }
    eprintln!("phase: a write commits and is applied on all three");
    s.write(1, put("a", Expect::Absent, "1")).unwrap();
    let v = s.version(1, "a").unwrap();
    for id in 1..=3 {
        assert_eq!(s.version(id, "a"), Some(v), "node {id}");
    }
    eprintln!("phase: a follower refuses proposals and names the leader");
    s.input(
        2,
        StoreInput::Propose {
            req: 9,
            cmd: put("b", Expect::Absent, "1"),
        },
    );
    assert_eq!(
        s.refused(2, 9),
        Some(StoreError::NotLeader { leader: Some(1) })
    );
    eprintln!("phase: garbage from a peer is refused and changes nothing");
    s.input(
        2,
        StoreInput::Message {
            from: 1,
            bytes: vec![0xff; 13],
        },
    );
    assert_eq!(s.nodes[&2].stats().messages_refused, 1);
}

#[test]
fn a_stale_version_is_refused_and_changes_nothing() {
    let mut s = Shuttle::cluster(3, small_cfg());
    s.write(1, put("a", Expect::Absent, "1")).unwrap();
    let v1 = s.version(1, "a").unwrap();
    s.write(2, put("a", Expect::Version(v1), "2")).unwrap();
    let v2 = s.version(1, "a").unwrap();
    eprintln!("phase: a writer still holding version {v1} is refused");
    let r = s.write(3, put("a", Expect::Version(v1), "3"));
    assert_eq!(
        r,
        Err(StoreError::OutOfSequence {
            kind: Kind::Cluster,
            id: "a".into(),
            expected: v1,
            actual: v2
        })
    );
    for id in 1..=3 {
        let o = s.nodes[&id].state().get(Kind::Cluster, "a").unwrap();
        assert_eq!((o.version, &o.body), (v2, &body("2")), "node {id}");
    }
}

#[test]
fn an_isolated_leader_is_replaced_and_its_minority_writes_never_commit() {
    let mut s = Shuttle::cluster(3, small_cfg());
    s.write(1, put("old", Expect::Absent, "1")).unwrap();
    eprintln!("phase: cut the leader off; the other two elect a new one");
    s.cut.insert(1);
    s.input(
        1,
        StoreInput::Propose {
            req: 50,
            cmd: put("minority", Expect::Absent, "x"),
        },
    );
    s.run(60);
    let new = s.leader().expect("a new leader");
    assert_ne!(new, 1);
    assert!(
        s.nodes[&new].state().get(Kind::Cluster, "old").is_some(),
        "the old write survives"
    );
    s.write(51, put("new", Expect::Absent, "2")).unwrap();
    eprintln!("phase: heal; the minority write is never applied anywhere");
    s.cut.clear();
    s.run(60);
    assert!(s.applied_req(1, 50).is_none());
    assert!(
        matches!(
            s.refused(1, 50),
            Some(StoreError::LeadershipLost { .. } | StoreError::Timeout)
        ),
        "the old leader answered its pending proposal: {:?}",
        s.refused(1, 50)
    );
    for id in 1..=3 {
        let st = s.nodes[&id].state();
        assert!(st.get(Kind::Cluster, "minority").is_none(), "node {id}");
        assert!(
            st.get(Kind::Cluster, "new").is_some(),
            "node {id} caught up"
        );
        assert!(st.get(Kind::Cluster, "old").is_some(), "node {id}");
    }
}

#[test]
fn restart_from_storage_keeps_every_committed_object() {
    let mut s = Shuttle::cluster(3, small_cfg());
    for i in 0..30 {
        s.write(i, put(&format!("o{i}"), Expect::Absent, "1"))
            .unwrap();
    }
    let before = s.nodes[&2].state().clone();
    eprintln!("phase: crash node 2 keeping its disk, restart it");
    let disk = s.nodes.remove(&2).unwrap().storage().clone().crash(true);
    let m = StoreMachine::new(2, disk, small_cfg(), 99, Bootstrap::Restart).unwrap();
    s.nodes.insert(2, m);
    s.run(1);
    let after = s.nodes[&2].state();
    assert_eq!(after.len(), 30);
    for o in before.objects() {
        assert_eq!(after.get(o.kind, &o.id), Some(o));
    }
    eprintln!("phase: crash all three with disks; they come back with every object");
    let ids: Vec<u64> = s.nodes.keys().copied().collect();
    for id in ids {
        let disk = s.nodes.remove(&id).unwrap().storage().clone().crash(true);
        let m = StoreMachine::new(id, disk, small_cfg(), id + 500, Bootstrap::Restart).unwrap();
        s.nodes.insert(id, m);
    }
    s.run(60);
    assert!(s.leader().is_some());
    s.write(100, put("after", Expect::Absent, "1")).unwrap();
    for id in 1..=3 {
        assert_eq!(s.nodes[&id].state().len(), 31, "node {id}");
    }
}

#[test]
fn snapshots_compact_the_log_and_a_lagging_follower_catches_up_from_one() {
    let mut s = Shuttle::cluster(3, small_cfg());
    eprintln!("phase: cut node 3 off; write past two snapshots");
    s.cut.insert(3);
    for i in 0..50 {
        s.write(i, put(&format!("o{i}"), Expect::Absent, "1"))
            .unwrap();
    }
    let st = s.nodes[&1].stats();
    assert!(st.snapshots_made >= 2, "{st:?}");
    assert!(st.first_index > 20, "the log was compacted: {st:?}");
    eprintln!("phase: heal; node 3 installs a snapshot and holds every object");
    s.cut.clear();
    s.run(40);
    let st3 = s.nodes[&3].stats();
    assert!(st3.snapshots_installed >= 1, "{st3:?}");
    assert_eq!(s.nodes[&3].state().objects().count(), 50);
    assert_eq!(s.nodes[&3].state().members().len(), 3);
}

#[test]
fn force_new_cluster_keeps_objects_with_one_voter() {
    let mut s = Shuttle::cluster(3, small_cfg());
    for i in 0..25 {
        s.write(i, put(&format!("o{i}"), Expect::Absent, "1"))
            .unwrap();
    }
    eprintln!("phase: two managers are lost for good; the third is forced into a new cluster");
    let mut disk = s.nodes[&2].storage().clone().crash(true);
    disk.force_new_cluster(2).unwrap();
    let mut lone = Shuttle::new();
    lone.nodes.insert(
        2,
        StoreMachine::new(2, disk, small_cfg(), 3, Bootstrap::Restart).unwrap(),
    );
    lone.run(30);
    assert_eq!(lone.leader(), Some(2));
    assert_eq!(lone.nodes[&2].voters(), vec![2]);
    assert_eq!(
        lone.nodes[&2].members().keys().copied().collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(lone.nodes[&2].state().len(), 25);
    lone.write(100, put("after", Expect::Absent, "1")).unwrap();
    assert_eq!(lone.nodes[&2].state().len(), 26);
}

#[test]
fn read_index_answers_on_the_leader_and_requests_are_bounded() {
    let cfg = StoreConfig {
        proposals_pending_max: 2,
        ..small_cfg()
    };
    let mut s = Shuttle::cluster(3, cfg);
    s.input(1, StoreInput::ReadIndex { req: 7 });
    s.run(3);
    assert!(
        s.seen[&1]
            .iter()
            .any(|e| matches!(e, StoreEffect::ReadReady { req: 7, .. }))
    );
    eprintln!("phase: past the bound, proposals are refused Busy at once");
    s.cut.insert(2);
    s.cut.insert(3);
    for req in 20..23 {
        s.input(
            1,
            StoreInput::Propose {
                req,
                cmd: put(&format!("x{req}"), Expect::Any, "1"),
            },
        );
    }
    assert_eq!(s.refused(1, 22), Some(StoreError::Busy));
    eprintln!(
        "phase: the leader loses quorum; its pending proposals are answered, not left hanging"
    );
    s.run(60);
    for req in 20..22 {
        assert!(s.refused(1, req).is_some(), "req {req} answered");
    }
}

#[test]
fn a_read_on_a_new_leader_waits_for_its_first_commit_instead_of_being_dropped() {
    let mut s = Shuttle::cluster(3, small_cfg());
    assert_eq!(s.leader(), Some(1));
    eprintln!("phase: the leader is cut off; messages go one at a time until 2 or 3 leads");
    s.cut.insert(1);
    let mut new_leader = None;
    'elect: for _ in 0..200 {
        s.now_ms += TICK_MS;
        for id in [2, 3] {
            s.input(id, StoreInput::Tick);
        }
        while let Some((from, to, msg)) = s.queue.pop_front() {
            if s.cut.contains(&from) || s.cut.contains(&to) {
                continue;
            }
            s.input(to, StoreInput::Message { from, bytes: msg });
            new_leader = [2, 3].into_iter().find(|id| s.nodes[id].is_leader());
            if new_leader.is_some() {
                break 'elect;
            }
        }
    }
    let l = new_leader.expect("a new leader");
    eprintln!("phase: a read the moment it leads, before its term's first entry commits");
    s.input(l, StoreInput::ReadIndex { req: 9 });
    // raft-rs drops such a read; the machine holds it until the entry commits. A dropped one
    // would wait for the request timeout, far beyond these few ticks.
    s.run(3);
    assert!(
        s.seen[&l]
            .iter()
            .any(|e| matches!(e, StoreEffect::ReadReady { req: 9, .. })),
        "{:?}",
        s.seen[&l]
    );
}

/// A store state whose first object ID claims to be 1 TiB long: what a decoder without a bound
/// would try to allocate.
fn snapshot_claiming_a_tebibyte() -> Vec<u8> {
    // One object; its key's kind (variant 0); then the ID's length as bincode's u64 varint.
    let mut bytes = vec![1u8, 0, 253];
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    bytes
}

#[test]
fn a_snapshot_that_does_not_restore_is_dropped_before_raft_sees_it() {
    use raft::eraftpb::{Message, MessageType, Snapshot};
    eprintln!("phase: attack: a leader's snapshot whose data claims 1 TiB reaches a follower");
    let mut s = Shuttle::cluster(3, small_cfg());
    s.write(1, put("a", Expect::Absent, "1")).unwrap();
    let before = s.nodes[&2].state().clone();
    let refused = s.nodes[&2].stats().messages_refused;
    let term = s.nodes[&2].term();
    let mut snap = Snapshot::default();
    snap.data = snapshot_claiming_a_tebibyte().into();
    snap.mut_metadata().index = before.applied_index() + 1_000;
    snap.mut_metadata().term = term;
    snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgSnapshot);
    msg.from = 1;
    msg.to = 2;
    msg.term = term;
    msg.set_snapshot(snap);
    s.input(
        2,
        StoreInput::Message {
            from: 1,
            bytes: encode_message(&msg).unwrap(),
        },
    );

    eprintln!("phase: it is refused, the state is untouched and the follower keeps working");
    assert_eq!(s.nodes[&2].stats().messages_refused, refused + 1);
    assert_eq!(s.nodes[&2].state(), &before);
    s.write(2, put("b", Expect::Absent, "1")).unwrap();
    assert!(
        s.version(2, "b").is_some(),
        "the follower still applies writes"
    );
}
