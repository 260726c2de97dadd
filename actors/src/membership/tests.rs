//! Several machines driven against each other through an in-test message shuttle: virtual
//! time, a queue ordered by (time, sequence), no sockets and no sleeps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::model::{NodeDescription, NodeId, NodeResources, NodeState, Role};

/// One-way delay of every datagram in the shuttle.
const DELAY_MS: u64 = 2;

struct Node {
    m: Membership,
    alive: bool,
    /// Timers set by an earlier incarnation of the node are dropped.
    epoch: u64,
    boot: u32,
    events: Vec<MembershipEvent>,
}

struct Cluster {
    now_ms: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    pending: BTreeMap<u64, (usize, u64, MembershipInput)>,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, usize>,
    /// Gossip timers handled so far, all nodes together.
    gossip_ticks: usize,
}

fn addr(i: usize) -> SocketAddr {
    format!("10.0.0.{}:2377", i + 1).parse().unwrap()
}

fn node_id(i: usize) -> NodeId {
    NodeId(1000 + i as u128)
}

/// Node `i` as the transport would prove it sent a datagram.
fn sender(i: usize) -> Sender {
    Sender {
        id: node_id(i),
        role: description(i).role,
    }
}

fn datagram(from: usize, data: impl Into<Bytes>) -> MembershipInput {
    MembershipInput::Datagram {
        from: sender(from),
        data: data.into(),
    }
}

fn description(i: usize) -> NodeDescription {
    NodeDescription {
        id: node_id(i),
        hostname: format!("node-{i}"),
        addr: addr(i),
        role: if i == 0 { Role::Manager } else { Role::Worker },
        resources: NodeResources {
            nano_cpus: 2_000_000_000,
            memory_bytes: 1 << 30,
        },
        labels: BTreeMap::new(),
        runtimes: vec!["process".into()],
        engine_version: "0.1.0".into(),
        version: 1,
    }
}

fn machine(i: usize, boot: u32) -> Membership {
    let me = MemberId::new(node_id(i), addr(i), boot);
    let mut d = description(i);
    d.version = u64::from(boot) + 1;
    Membership::new(
        me,
        d,
        MembershipConfig::lan(),
        42 + i as u64 * 7 + u64::from(boot),
    )
    .unwrap()
}

impl Cluster {
    fn new(n: usize) -> Self {
        let mut c = Cluster {
            now_ms: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            pending: BTreeMap::new(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            gossip_ticks: 0,
        };
        for i in 0..n {
            c.nodes.push(Node {
                m: machine(i, 0),
                alive: true,
                epoch: 0,
                boot: 0,
                events: Vec::new(),
            });
            c.by_addr.insert(addr(i), i);
        }
        for i in 0..n {
            c.input(i, MembershipInput::Start);
            if i > 0 {
                c.input(i, MembershipInput::Announce(addr(0)));
            }
        }
        c
    }

    fn push(&mut self, at_ms: u64, node: usize, input: MembershipInput) {
        self.seq += 1;
        self.heap.push(Reverse((at_ms, self.seq)));
        let epoch = self.nodes[node].epoch;
        self.pending.insert(self.seq, (node, epoch, input));
    }

    fn input(&mut self, node: usize, input: MembershipInput) {
        if input == MembershipInput::Timer(MembershipTimer::Gossip) {
            self.gossip_ticks += 1;
        }
        let mut out = Vec::new();
        self.nodes[node].m.handle(input, &mut out);
        for effect in out {
            match effect {
                MembershipEffect::Send { to, data } => {
                    if let Some(&dst) = self.by_addr.get(&to) {
                        self.push(self.now_ms + DELAY_MS, dst, datagram(node, data));
                    }
                }
                MembershipEffect::Schedule { after, timer } => {
                    let at = self.now_ms + after.as_millis() as u64;
                    self.push(at, node, MembershipInput::Timer(timer));
                }
                MembershipEffect::Event(e) => self.nodes[node].events.push(e),
            }
        }
    }

    fn run_for(&mut self, ms: u64) {
        let until = self.now_ms + ms;
        while let Some(&Reverse((at, seq))) = self.heap.peek() {
            if at > until {
                break;
            }
            self.heap.pop();
            let (node, epoch, input) = self.pending.remove(&seq).unwrap();
            self.now_ms = at;
            let n = &self.nodes[node];
            let stale_timer = matches!(input, MembershipInput::Timer(_)) && epoch != n.epoch;
            if n.alive && !stale_timer {
                self.input(node, input);
            }
        }
        self.now_ms = until;
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].epoch += 1;
    }

    fn restart(&mut self, i: usize) {
        let boot = self.nodes[i].boot + 1;
        self.nodes[i] = Node {
            m: machine(i, boot),
            alive: true,
            epoch: self.nodes[i].epoch + 1,
            boot,
            events: Vec::new(),
        };
        self.input(i, MembershipInput::Start);
        self.input(i, MembershipInput::Announce(addr(0)));
    }

    /// Hands `data` to node `at` outside the simulated network and returns the tags of the
    /// datagrams it sends to `to` in response (not delivered).
    fn handle_directly(&mut self, at: usize, from: usize, data: Bytes, to: SocketAddr) -> Vec<u8> {
        let mut out = Vec::new();
        self.nodes[at].m.handle(datagram(from, data), &mut out);
        out.iter()
            .filter_map(|e| match e {
                MembershipEffect::Send { to: t, data } if *t == to => Some(data[0]),
                _ => None,
            })
            .collect()
    }

    fn states(&self, observer: usize) -> BTreeMap<NodeId, NodeState> {
        self.nodes[observer]
            .m
            .members()
            .into_iter()
            .map(|v| (v.id, v.state))
            .collect()
    }
}

fn formed(n: usize) -> Cluster {
    let mut c = Cluster::new(n);
    c.run_for(5_000);
    c
}

#[test]
fn five_machines_form_a_cluster_and_share_descriptions() {
    let c = formed(5);
    for (i, node) in c.nodes.iter().enumerate() {
        let view = node.m.members();
        assert_eq!(view.len(), 5, "node {i} sees {view:?}");
        for (j, row) in view.iter().enumerate() {
            assert_eq!(row.id, node_id(j));
            assert_eq!(row.addr, addr(j));
            assert_eq!(row.state, NodeState::Ready, "node {i} on node {j}");
            assert_eq!(
                row.description.as_ref(),
                Some(&description(j)),
                "node {i} on {j}"
            );
        }
        let ups = node
            .events
            .iter()
            .filter(|e| matches!(e, MembershipEvent::Up(_)))
            .count();
        assert!(ups >= 4, "node {i} reported {ups} ups");
        assert_eq!(node.m.stats().datagrams_refused, 0);
    }
}

#[test]
fn a_silent_node_is_marked_down_and_comes_back_with_a_higher_bump() {
    let mut c = formed(5);
    let old_bump = c.nodes[4].m.me().bump;
    c.kill(4);
    c.run_for(5_000);
    for i in 0..4 {
        assert_eq!(c.states(i)[&node_id(4)], NodeState::Down, "node {i}");
        assert!(
            c.nodes[i]
                .events
                .contains(&MembershipEvent::Down(node_id(4))),
            "node {i} reported the down"
        );
        assert_eq!(c.states(i).len(), 5, "a down node stays listed");
    }

    c.restart(4);
    c.run_for(5_000);
    assert!(c.nodes[4].m.me().bump > old_bump);
    for i in 0..5 {
        let states = c.states(i);
        assert_eq!(states.len(), 5, "one row per node on node {i}: {states:?}");
        assert!(
            states.values().all(|s| *s == NodeState::Ready),
            "node {i}: {states:?}"
        );
        // The restarted node's description (version 2) replaced the old one everywhere.
        assert_eq!(c.nodes[i].m.description(node_id(4)).unwrap().version, 2);
    }
}

#[test]
fn a_description_change_reaches_everyone() {
    let mut c = formed(5);
    let mut d = description(2);
    d.labels.insert("env".into(), "prod".into());
    c.input(2, MembershipInput::Describe(d));
    c.run_for(3_000);
    for i in 0..5 {
        let seen = c.nodes[i].m.description(node_id(2)).unwrap();
        assert_eq!(
            seen.labels.get("env").map(String::as_str),
            Some("prod"),
            "node {i}"
        );
        assert_eq!(seen.version, 2, "the version grew");
    }
    assert!(c.nodes[0].events.iter().any(|e| matches!(
        e,
        MembershipEvent::Described(d) if d.id == node_id(2) && d.version == 2
    )));
}

#[test]
fn garbage_datagrams_are_counted_and_ignored() {
    let mut c = formed(5);
    let mut rng = StdRng::seed_from_u64(7);
    let before = c.nodes[0].m.stats().datagrams_refused;
    let mut sent = 0;
    for len in [0usize, 1, 2, 3, 10, 100, 1000, 5000] {
        for tag in [TAG_FOCA, TAG_DESCRIPTION, 0x00] {
            let mut junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(first) = junk.first_mut() {
                *first = tag;
            }
            c.input(0, datagram(1, junk));
            sent += 1;
        }
    }
    assert_eq!(c.nodes[0].m.stats().datagrams_refused - before, sent);
    c.run_for(3_000);
    let states = c.states(0);
    assert_eq!(states.len(), 5);
    assert!(states.values().all(|s| *s == NodeState::Ready));
}

#[test]
fn a_node_leaving_is_marked_down() {
    let mut c = formed(3);
    c.input(2, MembershipInput::Leave);
    c.run_for(2_000);
    assert_eq!(c.states(0)[&node_id(2)], NodeState::Down);
    assert_eq!(c.states(1)[&node_id(2)], NodeState::Down);
}

#[test]
fn new_refuses_bad_inputs() {
    let me = MemberId::new(node_id(0), addr(0), 0);
    let mut d = description(0);
    d.hostname.clear();
    assert!(matches!(
        Membership::new(me.clone(), d, MembershipConfig::lan(), 1),
        Err(MembershipError::Description(_))
    ));
    assert!(matches!(
        Membership::new(me.clone(), description(1), MembershipConfig::lan(), 1),
        Err(MembershipError::DescriptionNotOurs { .. })
    ));
    assert_eq!(
        Membership::new(
            MemberId::seed(addr(0)),
            description(0),
            MembershipConfig::lan(),
            1
        )
        .err(),
        Some(MembershipError::UnknownIdentity)
    );
    let mut big = description(0);
    for i in 0..40 {
        big.labels.insert(format!("key{i}"), "v".repeat(40));
    }
    assert!(matches!(
        Membership::new(me.clone(), big.clone(), MembershipConfig::lan(), 1),
        Err(MembershipError::DescriptionTooLarge { .. })
    ));
    // Describe refuses it too, and the old description stays.
    let mut m = Membership::new(me, description(0), MembershipConfig::lan(), 1).unwrap();
    let mut out = Vec::new();
    m.handle(MembershipInput::Describe(big), &mut out);
    assert_eq!(m.stats().descriptions_refused, 1);
    assert_eq!(m.description(node_id(0)), Some(&description(0)));
    assert!(out.is_empty());
}

#[test]
fn start_schedules_the_machines_own_timers() {
    let mut m = machine(0, 0);
    let mut out = Vec::new();
    m.handle(MembershipInput::Start, &mut out);
    let timers: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            MembershipEffect::Schedule { after, timer } => Some((*after, timer.clone())),
            _ => None,
        })
        .collect();
    assert!(timers.contains(&(Duration::from_secs(5), MembershipTimer::Rebroadcast)));
    assert!(timers.contains(&(Duration::from_secs(2), MembershipTimer::Reannounce)));
    // The seed placeholder is never listed.
    m.handle(MembershipInput::Announce(addr(1)), &mut out);
    assert_eq!(m.members().len(), 1);
}

#[test]
fn gossip_ticks_only_while_something_waits_to_be_sent() {
    // A node alone keeps its own description queued, with no one to send it to: no timer.
    let mut m = machine(0, 0);
    let mut out = Vec::new();
    m.handle(MembershipInput::Start, &mut out);
    let gossip = |out: &[MembershipEffect]| {
        out.iter().any(|e| {
            matches!(
                e,
                MembershipEffect::Schedule {
                    timer: MembershipTimer::Gossip,
                    ..
                }
            )
        })
    };
    assert!(!gossip(&out));

    // A quiet cluster gossips far less often than a timer ticking every period would
    // (3 nodes, 30 s, every 100 ms: 900 ticks); `a_description_change_reaches_everyone`
    // shows that a change still does.
    let mut c = formed(3);
    let before = c.gossip_ticks;
    c.run_for(30_000);
    let quiet = c.gossip_ticks - before;
    assert!(quiet > 0 && quiet < 300, "{quiet} gossip ticks in 30 s");
}

#[test]
fn a_digest_with_a_newer_version_makes_us_ask_its_owner() {
    let mut c = formed(3);
    let config = crate::membership::codec::bincode_config();
    let entries = vec![(node_id(0), 0u64, 9u64), (node_id(2), 0, 1)];
    let mut data = vec![TAG_DIGEST];
    data.extend(bincode::serde::encode_to_vec(&entries, config).unwrap());
    let mut out = Vec::new();
    c.nodes[1].m.handle(datagram(2, data), &mut out);
    let asked: Vec<SocketAddr> = out
        .iter()
        .filter_map(|e| match e {
            MembershipEffect::Send { to, data } if data[0] == TAG_DESCRIPTION => Some(*to),
            _ => None,
        })
        .collect();
    // Node 0 claims a newer version than node 1 holds; node 2's is current.
    assert_eq!(asked, vec![addr(0)]);

    // An oversized or malformed digest is refused.
    let too_many: Vec<(NodeId, u64, u64)> = (0..DIGEST_ENTRIES_MAX as u128 + 1)
        .map(|i| (NodeId(5000 + i), 0, 1))
        .collect();
    let mut data = vec![TAG_DIGEST];
    data.extend(bincode::serde::encode_to_vec(&too_many, config).unwrap());
    let before = c.nodes[1].m.stats().datagrams_refused;
    c.nodes[1].m.handle(datagram(2, data), &mut out);
    c.nodes[1]
        .m
        .handle(datagram(2, vec![TAG_DIGEST, 0xff]), &mut out);
    assert_eq!(c.nodes[1].m.stats().datagrams_refused - before, 2);
}

#[test]
fn a_description_from_a_node_we_do_not_list_makes_it_a_member() {
    let mut c = formed(3);
    // Node 3 runs but nobody lists it, and it lists nobody.
    c.nodes.push(Node {
        m: machine(3, 0),
        alive: true,
        epoch: 0,
        boot: 0,
        events: Vec::new(),
    });
    c.by_addr.insert(addr(3), 3);
    c.input(3, MembershipInput::Start);

    // Node 3 pushes its description to node 1, as a member that saw node 1 come up does.
    let backlog = c.nodes[1].m.stats().updates_backlog;
    let tags_to_3 = c.handle_directly(1, 3, description_datagram(3, None), addr(3));
    // Node 1 lists node 3 at once (without gossiping it) and, as for any member that comes
    // up, sends it its description.
    assert_eq!(tags_to_3, vec![TAG_DESCRIPTION]);
    assert_eq!(c.states(1).get(&node_id(3)), Some(&NodeState::Ready));
    assert_eq!(c.nodes[1].m.stats().updates_backlog, backlog);

    // Node 1's probes make node 3 list it too.
    c.run_for(3_000);
    assert_eq!(c.states(1).get(&node_id(3)), Some(&NodeState::Ready));
    assert_eq!(c.states(3).get(&node_id(1)), Some(&NodeState::Ready));

    // Asked for its description by a node it lists as live, node 1 only answers.
    let tags_to_3 = c.handle_directly(1, 3, description_datagram(3, Some(addr(3))), addr(3));
    assert_eq!(tags_to_3, vec![TAG_DESCRIPTION]);
}

#[test]
fn news_of_a_death_reaches_a_member_that_still_lists_the_dead_node() {
    let mut c = formed(4);
    let config = crate::membership::codec::bincode_config();
    let news = |ids: &[MemberId]| {
        let mut data = vec![TAG_DOWNS];
        data.extend(bincode::serde::encode_to_vec(ids, config).unwrap());
        Bytes::from(data)
    };
    assert_eq!(c.states(1).get(&node_id(3)), Some(&NodeState::Ready));

    eprintln!("phase: news about an identity older than the one node 1 lists changes nothing");
    c.restart(2);
    c.run_for(3_000);
    assert_eq!(c.states(1).get(&node_id(2)), Some(&NodeState::Ready));
    let older = MemberId::new(node_id(2), addr(2), 0);
    let backlog = c.nodes[1].m.stats().updates_backlog;
    assert!(c.handle_directly(1, 0, news(&[older]), addr(0)).is_empty());
    assert_eq!(c.states(1).get(&node_id(2)), Some(&NodeState::Ready));
    assert_eq!(c.nodes[1].m.stats().updates_backlog, backlog);

    eprintln!(
        "phase: news of a newer identity of node 3 than node 1 lists (it missed a rejoin) makes \
         node 1 hold node 3 Down and gossip that"
    );
    let mut out = Vec::new();
    let dead = MemberId::new(node_id(3), addr(3), 1);
    c.nodes[1].m.handle(datagram(0, news(&[dead])), &mut out);
    assert_eq!(c.states(1).get(&node_id(3)), Some(&NodeState::Down));
    assert!(out.contains(&MembershipEffect::Event(MembershipEvent::Down(node_id(3)))));
    assert!(c.nodes[1].m.stats().updates_backlog > backlog);

    eprintln!("phase: node 1 tells the death every tick, for DOWN_NEWS_TICKS ticks");
    let tick = |c: &mut Cluster| {
        let mut out = Vec::new();
        c.nodes[1].m.handle(
            MembershipInput::Timer(MembershipTimer::Rebroadcast),
            &mut out,
        );
        let sent: Vec<(SocketAddr, u8)> = out
            .iter()
            .filter_map(|e| match e {
                MembershipEffect::Send { to, data }
                    if data[0] == TAG_DIGEST || data[0] == TAG_DOWNS =>
                {
                    Some((*to, data[0]))
                }
                _ => None,
            })
            .collect();
        sent
    };
    let sent = tick(&mut c);
    let told = sent.iter().filter(|(_, tag)| *tag == TAG_DOWNS).count();
    assert_eq!(
        told, DOWN_NEWS_FANOUT,
        "the news to a few members: {sent:?}"
    );
    assert_eq!(
        sent.len(),
        told + DIGEST_FANOUT_MAX,
        "and the digest: {sent:?}"
    );
    for _ in 1..DOWN_NEWS_TICKS {
        assert!(tick(&mut c).iter().any(|(_, tag)| *tag == TAG_DOWNS));
    }
    assert!(tick(&mut c).iter().all(|(_, tag)| *tag == TAG_DIGEST));

    eprintln!("phase: oversized or malformed news is refused");
    let too_many: Vec<MemberId> = (0..DOWN_NEWS_MAX + 1)
        .map(|i| MemberId::new(node_id(100 + i), addr(100 + i), 0))
        .collect();
    let before = c.nodes[2].m.stats().datagrams_refused;
    c.handle_directly(2, 0, news(&too_many), addr(0));
    c.handle_directly(2, 0, Bytes::from_static(&[TAG_DOWNS, 0xff]), addr(0));
    assert_eq!(c.nodes[2].m.stats().datagrams_refused - before, 2);
    assert_eq!(c.states(2).get(&node_id(0)), Some(&NodeState::Ready));
}

/// A direct description datagram carrying node `i`'s description, asking for a reply at
/// `reply_to` if any.
fn description_datagram(i: usize, reply_to: Option<SocketAddr>) -> Bytes {
    let item = DescriptionItem {
        bump: 0,
        description: description(i),
    };
    let config = crate::membership::codec::bincode_config();
    let mut data = vec![TAG_DESCRIPTION];
    data.extend(bincode::serde::encode_to_vec(reply_to, config).unwrap());
    data.extend(item.encode().unwrap());
    data.into()
}
