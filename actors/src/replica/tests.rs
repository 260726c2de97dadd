//! Scenario tests of the router over three store machines: an in-test network with a clock,
//! forwards with the transport's deadline, no sockets, no sleeps, fixed seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::StoreFailure;
use super::router::{self, Answer, Router, RouterEffect, RouterInput};
use crate::model::NodeId;
use crate::store::{
    Bootstrap, ClusterObject, Expect, Kind, MemStorage, ObjectBody, Op, StoreCommand, StoreConfig,
    StoreEffect, StoreMachine,
};
use crate::transport::TransportConfig;
use crate::wire::StoreRequest;

const TICK_MS: u64 = 50;
/// One way across the simulated network.
const HOP_MS: u64 = 1;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 2377))
}

fn node_id(i: usize) -> NodeId {
    NodeId(i as u128 + 1)
}

fn put(id: &str, tag: u64) -> StoreRequest {
    StoreRequest::Propose(StoreCommand {
        now_ms: 1,
        ops: vec![Op::Put {
            kind: Kind::Cluster,
            id: id.into(),
            expect: Expect::Any,
            body: ObjectBody::Cluster(ClusterObject {
                ca_cert_der: vec![1],
                ca_key_pem: String::new(),
                worker_token: format!("w{tag}"),
                manager_token: String::new(),
                rotation: None,
                unlock_key: None,
            }),
        }],
    })
}

/// Who waits for an answer: a client of the test, or a manager that forwarded to us.
#[derive(Debug)]
enum Who {
    Client(u64),
    Peer { from: usize, req: u64, forward: u64 },
}

enum Ev {
    Tick(usize),
    Raft {
        to: usize,
        from: u64,
        bytes: Vec<u8>,
    },
    Request {
        to: usize,
        op: StoreRequest,
        who: Who,
    },
    ForwardDone {
        to: usize,
        req: u64,
        forward: u64,
        result: Result<u64, StoreFailure>,
    },
    Retry {
        to: usize,
        req: u64,
    },
}

struct Node {
    machine: StoreMachine<MemStorage>,
    router: Router<Who>,
}

struct Net {
    nodes: Vec<Node>,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    now_ms: u64,
    /// Pairs that cannot reach each other (both directions listed).
    cut: BTreeSet<(usize, usize)>,
    answers: BTreeMap<u64, (u64, Answer)>,
    next_client: u64,
    /// The transport's request deadline: a forward nobody answers fails after it.
    forward_deadline_ms: u64,
}

impl Net {
    fn new(n: usize) -> Self {
        let mut net = Net {
            nodes: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            now_ms: 0,
            cut: BTreeSet::new(),
            answers: BTreeMap::new(),
            next_client: 0,
            forward_deadline_ms: TransportConfig::new(addr(0)).request_timeout_ms,
        };
        for i in 0..n {
            let how = if i == 0 {
                Bootstrap::NewCluster {
                    node_id: node_id(0),
                    addr: addr(0),
                }
            } else {
                Bootstrap::Join
            };
            let config = StoreConfig {
                tick_ms: TICK_MS,
                ..StoreConfig::default()
            };
            let machine =
                StoreMachine::new(i as u64 + 1, MemStorage::new(), config, 7 + i as u64, how)
                    .expect("valid");
            net.nodes.push(Node {
                machine,
                router: Router::default(),
            });
            net.push(i as u64 * 17, Ev::Tick(i));
        }
        // Membership sees every node Ready throughout: workers still reach a cut-off manager.
        let ready: BTreeSet<NodeId> = (0..n).map(node_id).collect();
        for i in 0..n {
            let input = RouterInput::Members {
                ready: ready.clone(),
                down: BTreeSet::new(),
            };
            net.input(i, input);
        }
        net
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn reaches(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a, b))
    }

    fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            if j != i {
                self.cut.insert((i, j));
                self.cut.insert((j, i));
            }
        }
    }

    fn input(&mut self, i: usize, input: RouterInput<Who>) {
        let (mut raft, mut out) = (Vec::new(), Vec::new());
        let node = &mut self.nodes[i];
        router::step(
            &mut node.machine,
            &mut node.router,
            self.now_ms,
            input,
            &mut raft,
            &mut out,
        );
        let now = self.now_ms;
        for e in raft {
            if let StoreEffect::Send { to, msg } = e {
                let to = to as usize - 1;
                if self.reaches(i, to) {
                    let from = i as u64 + 1;
                    self.push(
                        now + HOP_MS,
                        Ev::Raft {
                            to,
                            from,
                            bytes: msg,
                        },
                    );
                }
            }
        }
        for e in out {
            match e {
                RouterEffect::Forward {
                    req,
                    forward,
                    to,
                    op,
                    ..
                } => {
                    let to = to.0 as usize - 1;
                    if self.reaches(i, to) {
                        let who = Who::Peer {
                            from: i,
                            req,
                            forward,
                        };
                        self.push(now + HOP_MS, Ev::Request { to, op, who });
                    }
                    // The transport gives up on every request at its deadline; an answered
                    // forward's late failure is ignored by its number.
                    let result = Err(StoreFailure::MayHaveCommitted("deadline".into()));
                    let at = now + self.forward_deadline_ms;
                    let done = Ev::ForwardDone {
                        to: i,
                        req,
                        forward,
                        result,
                    };
                    self.push(at, done);
                }
                RouterEffect::Answer { waiter, answer } => match waiter {
                    Who::Client(id) => {
                        self.answers.insert(id, (now, answer));
                    }
                    Who::Peer { from, req, forward } => {
                        let result = match answer {
                            Answer::Applied(i) | Answer::ReadIndex(i) => Ok(i),
                            Answer::Failed(f) => Err(f),
                            Answer::ReadReady => unreachable!("peers get an index"),
                        };
                        if self.reaches(i, from) {
                            let done = Ev::ForwardDone {
                                to: from,
                                req,
                                forward,
                                result,
                            };
                            self.push(now + HOP_MS, done);
                        }
                    }
                },
                RouterEffect::RetryAfter { req, after_ms } => {
                    self.push(now + after_ms, Ev::Retry { to: i, req })
                }
                RouterEffect::ToMachine(_) => unreachable!("step feeds the machine"),
            }
        }
    }

    /// Runs events until `until_ms`.
    fn run_until(&mut self, until_ms: u64) {
        while let Some(entry) = self.queue.first_entry() {
            let (at, _) = *entry.key();
            if at > until_ms {
                break;
            }
            let ev = entry.remove();
            self.now_ms = at;
            match ev {
                Ev::Tick(i) => {
                    self.push(at + TICK_MS, Ev::Tick(i));
                    self.input(i, RouterInput::Tick);
                }
                Ev::Raft { to, from, bytes } => self.input(to, RouterInput::Raft { from, bytes }),
                Ev::Request { to, op, who } => {
                    let from_peer = matches!(who, Who::Peer { .. });
                    let input = RouterInput::Request {
                        op,
                        from_peer,
                        waiter: who,
                    };
                    self.input(to, input);
                }
                Ev::ForwardDone {
                    to,
                    req,
                    forward,
                    result,
                } => self.input(
                    to,
                    RouterInput::ForwardDone {
                        req,
                        forward,
                        result,
                    },
                ),
                Ev::Retry { to, req } => self.input(to, RouterInput::Retry { req }),
            }
        }
        self.now_ms = until_ms;
    }

    /// Sends `op` to node `via` as its client and runs until it is answered (or `limit_ms`).
    fn ask(&mut self, via: usize, op: StoreRequest, limit_ms: u64) -> Option<Answer> {
        self.next_client += 1;
        let id = self.next_client;
        let now = self.now_ms;
        let who = Who::Client(id);
        self.push(now, Ev::Request { to: via, op, who });
        let end = now + limit_ms;
        while self.now_ms < end {
            let next = self.now_ms + 1;
            self.run_until(next);
            if let Some((_, a)) = self.answers.remove(&id) {
                return Some(a);
            }
        }
        None
    }

    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.nodes[i].machine.is_leader())
    }
}

/// Three managers, node 0 leading, voters 1 and 2 added through the router.
fn three_managers() -> Net {
    let mut net = Net::new(3);
    net.run_until(500);
    assert_eq!(net.leader(), Some(0), "the bootstrap manager leads");
    for i in 1..3 {
        let op = StoreRequest::AddVoter {
            raft_id: i as u64 + 1,
            node_id: node_id(i),
            addr: addr(i),
        };
        let a = net.ask(0, op, 5_000);
        assert!(
            matches!(a, Some(Answer::Applied(_))),
            "voter {i} added: {a:?}"
        );
    }
    let until = net.now_ms + 2_000;
    net.run_until(until);
    net
}

#[test]
fn a_follower_forwards_a_write_to_the_leader_once() {
    let mut net = three_managers();
    let a = net.ask(1, put("o", 1), 5_000);
    assert!(matches!(a, Some(Answer::Applied(_))), "{a:?}");
    // A read of a follower: the leader gives the index, the follower serves it.
    let a = net.ask(2, StoreRequest::ReadIndex, 5_000);
    assert_eq!(a, Some(Answer::ReadReady));
    assert!(net.nodes.iter().all(|n| n.router.is_empty()));
}

/// The manager split: the leader is cut off from the other managers, but membership still
/// sees it Ready (workers reach it). It must step down within an election timeout, and a
/// write through a follower must succeed within 1.5 s: the follower abandons its forward to
/// the old leader when raft names a new leader or term, instead of waiting out the
/// transport's deadline (3 s) as it did.
#[test]
fn a_split_leader_steps_down_and_a_write_on_the_majority_succeeds_within_1500_ms() {
    let mut net = three_managers();
    assert_eq!(net.leader(), Some(0));
    net.isolate(0);
    let t0 = net.now_ms;
    // The client writes through the majority's managers in turn, as the chaos harness does,
    // 20 ms after each failure.
    let mut tries = 0;
    let elapsed = loop {
        let via = 1 + tries % 2;
        tries += 1;
        match net.ask(via, put("split", tries as u64), 10_000) {
            Some(Answer::Applied(_)) => break net.now_ms - t0,
            other => {
                assert!(net.now_ms - t0 < 10_000, "no write within 10 s: {other:?}");
                let next = net.now_ms + 20;
                net.run_until(next);
            }
        }
    };
    assert!(
        elapsed <= 1_500,
        "the first write on the majority took {elapsed} ms (tries: {tries})"
    );
    // check_quorum: the cut-off leader steps down at its next quorum check. raft-rs checks
    // once per election timeout (500 ms) whether a majority was heard from since the last
    // check, so that is at most two election timeouts after the cut.
    let election_ms = TICK_MS * StoreConfig::default().election_ticks as u64;
    net.run_until(t0 + 2 * election_ms + TICK_MS);
    assert!(
        !net.nodes[0].machine.is_leader(),
        "the old leader stepped down"
    );
    assert!(matches!(net.leader(), Some(1 | 2)));
}

#[test]
fn admission_is_bounded_by_pending_max() {
    let mut net = three_managers();
    // Node 0 is cut off: its writes wait for a quorum it cannot reach.
    net.isolate(0);
    for n in 0..router::PENDING_MAX as u64 {
        net.next_client += 1;
        let who = Who::Client(net.next_client);
        let input = RouterInput::Request {
            op: put("busy", n),
            from_peer: false,
            waiter: who,
        };
        net.input(0, input);
    }
    assert_eq!(net.nodes[0].router.len(), router::PENDING_MAX);
    let a = net.ask(0, put("one-more", 0), 1);
    assert_eq!(a, Some(Answer::Failed(StoreFailure::Busy)));
}

#[test]
fn a_write_with_no_quorum_is_answered_at_once_and_one_past_its_deadline_may_have_committed() {
    let mut net = three_managers();
    net.isolate(0);
    // Membership sees the other two Down from node 0: no quorum.
    let input = RouterInput::Members {
        ready: [node_id(0)].into(),
        down: [node_id(1), node_id(2)].into(),
    };
    net.input(0, input);
    // Still leader (check_quorum has not run yet): the write reaches raft and never commits.
    let a = net.ask(0, put("late", 1), 20_000);
    let Some(Answer::Failed(f)) = a else {
        panic!("{a:?}")
    };
    assert!(f.may_have_committed(), "{f}");
    // Stepped down now: the next write is refused before raft, with the count.
    let a = net.ask(0, put("none", 2), 1_000);
    assert_eq!(
        a,
        Some(Answer::Failed(StoreFailure::NoQuorum {
            reachable: 1,
            voters: 3
        }))
    );
}
