//! [`Router`]: where each store request goes, as a sans-IO machine beside the
//! [`StoreMachine`]. No clock, no IO: time comes in as `now_ms`, and what to do comes out as
//! [`RouterEffect`]s that the StoreActor (or the simulator) carries out.
//!
//! ```text
//!   request ──▶ Router ── ToMachine ──▶ StoreMachine ── Applied / Refused / ReadReady ──┐
//!     ▲          │  ▲                                                                     │
//!     │          │  └──────────────────────── (pumped back by [`step`]) ◀─────────────────┘
//!     │          ├── Forward { to the leader, forward number } ──▶ transport ── ForwardDone ─┐
//!     │          ├── RetryAfter { ms } ──▶ timer ── Retry ───────────────────────────────────┤
//!     │          └── Answer { waiter, answer }                                               │
//!     └───────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The rules, all in one table of pending requests (writes, voter changes, read indexes):
//! - Admission: at most [`PENDING_MAX`] wait at once; past it, `Busy` at once.
//! - A request this manager's raft refuses as `NotLeader` is forwarded to the leader raft
//!   names, once: a request another manager forwarded here is never forwarded again, so one
//!   hop bounds the chase.
//! - With no leader and a majority of voters reachable an election is under way: a write asks
//!   raft again every [`LEADER_DOWN_RETRY_MS`]; a read is answered `ElectionUnderWay` at once
//!   (the control API falls back to a local read). Without a majority: `NoQuorum` at once.
//! - A forward is abandoned, and the request asks raft again, when membership sees the leader
//!   it went to Down, or when raft names another leader or a new term: a leader cut off from
//!   the other managers (still reached by workers, so never Down) steps down by
//!   `check_quorum` within an election timeout, and a forward to it would otherwise wait out
//!   the transport's deadline. A late answer to an abandoned forward is recognised by its
//!   number and ignored.
//! - A request still waiting after [`OPERATION_TIMEOUT_MS`] is answered: a write that reached
//!   a leader (this manager's raft as leader, or a forward) `MayHaveCommitted`, any other
//!   `Timeout`, `ElectionUnderWay` or `NoQuorum` (nothing was written).
//!
//! An abandoned forward may still commit on the leader it reached; the write asked again may
//! then commit twice. The store's writes are compare-and-set (the second then fails
//! `OutOfSequence` and changes nothing) or puts of the same value, so that is harmless; the
//! alternative, waiting for a leader that cannot answer, is what the split rounds measured.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use super::msg::StoreFailure;
use crate::model::NodeId;
use crate::store::{LogStorage, StoreEffect, StoreError, StoreInput, StoreMachine};
use crate::wire::StoreRequest;

/// Requests waiting at once (writes, voter changes and read indexes together); past it, new
/// ones are refused `Busy`.
pub const PENDING_MAX: usize = 1_024;
/// How long a request may wait before it is answered (see the module doc for with what).
pub const OPERATION_TIMEOUT_MS: u64 = 5_000;
/// How long a request waits before asking raft again while an election runs, or while the
/// leader raft names is Down.
pub const LEADER_DOWN_RETRY_MS: u64 = 50;

/// What the router is told.
#[derive(Debug)]
pub enum RouterInput<W> {
    /// Time passes: raft ticks, and requests past [`OPERATION_TIMEOUT_MS`] are answered.
    Tick,
    /// An encoded raft message from raft peer `from`, for the machine.
    Raft { from: u64, bytes: Vec<u8> },
    /// A request: from this node, or (`from_peer`) one another manager forwarded to us as the
    /// leader. `waiter` is whoever is answered, opaque to the router.
    Request {
        op: StoreRequest,
        from_peer: bool,
        waiter: W,
    },
    /// A forward's outcome: the leader's answer, or the transport's failure.
    ForwardDone {
        req: u64,
        forward: u64,
        result: Result<u64, StoreFailure>,
    },
    /// A [`RouterEffect::RetryAfter`] came due.
    Retry { req: u64 },
    /// Membership's view: nodes Ready (for quorum answers) and nodes Down (whose forwards are
    /// abandoned).
    Members {
        ready: BTreeSet<NodeId>,
        down: BTreeSet<NodeId>,
    },
    /// An effect of the machine about a request or the leadership (fed back by [`step`]).
    Store(StoreEffect),
}

/// What a waiter is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The write was applied at this raft index.
    Applied(u64),
    /// A read of this node: the local replica has applied through the read index, read it now.
    ReadReady,
    /// A read index another manager asked us for as the leader.
    ReadIndex(u64),
    Failed(StoreFailure),
}

/// What the router asks its shell to do.
#[derive(Debug)]
pub enum RouterEffect<W> {
    /// Hand this to the store machine ([`step`] does, and feeds its effects back).
    ToMachine(StoreInput),
    /// Send `op` to the leader at `addr` (node `to`); its outcome comes back as
    /// [`RouterInput::ForwardDone`] with `req` and `forward`. The transport's own deadline
    /// bounds it.
    Forward {
        req: u64,
        forward: u64,
        to: NodeId,
        addr: SocketAddr,
        op: StoreRequest,
    },
    Answer {
        waiter: W,
        answer: Answer,
    },
    /// Send [`RouterInput::Retry`] for `req` after `after_ms`.
    RetryAfter {
        req: u64,
        after_ms: u64,
    },
}

/// Where a pending request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Handed to this manager's machine, which answers or refuses it.
    Machine,
    /// Waiting for a [`RouterInput::Retry`] to ask raft again.
    Waiting,
    /// Sent to the leader `leader` (raft ID, on node `node`) that raft named in `term`.
    Forwarded {
        node: NodeId,
        leader: u64,
        term: u64,
        forward: u64,
    },
    /// A read of this node whose index the leader gave: waits for the local replica to apply
    /// that far (raft's read-index read, served locally).
    Indexed(u64),
}

struct Pending<W> {
    waiter: W,
    op: StoreRequest,
    /// Forwarded to us by another manager: answered from here, never forwarded again.
    from_peer: bool,
    since_ms: u64,
    /// A write that reached a leader: if it is not answered, it may still commit.
    maybe_written: bool,
    stage: Stage,
}

impl<W> Pending<W> {
    fn is_read(&self) -> bool {
        matches!(self.op, StoreRequest::ReadIndex)
    }
}

/// The request router (see the module doc). `W` is whoever waits for an answer.
pub struct Router<W> {
    /// Every request waiting, by request number; at most [`PENDING_MAX`].
    pending: BTreeMap<u64, Pending<W>>,
    next_req: u64,
    /// Numbers forwards, so that the late answer of an abandoned one is recognised.
    next_forward: u64,
    /// Nodes membership sees Ready: with a majority of voters among them and no leader, an
    /// election is under way.
    ready: BTreeSet<NodeId>,
    /// Nodes membership sees Down: a forward to one is abandoned.
    down: BTreeSet<NodeId>,
}

impl<W> Default for Router<W> {
    fn default() -> Self {
        Router {
            pending: BTreeMap::new(),
            next_req: 1,
            next_forward: 0,
            ready: BTreeSet::new(),
            down: BTreeSet::new(),
        }
    }
}

/// Feeds `input` to the router and every input the router makes for the machine to `machine`,
/// and the machine's effects about requests and leadership back to the router, until neither
/// has more. The machine's effects go to `raft` (every one: the shell sends the messages and
/// follows leadership); the router's outward effects go to `out`.
pub fn step<S: LogStorage, W>(
    machine: &mut StoreMachine<S>,
    router: &mut Router<W>,
    now_ms: u64,
    input: RouterInput<W>,
    raft: &mut Vec<StoreEffect>,
    out: &mut Vec<RouterEffect<W>>,
) {
    let mut inputs = VecDeque::from([input]);
    let mut routed = Vec::new();
    let mut made = Vec::new();
    while let Some(input) = inputs.pop_front() {
        router.handle(now_ms, machine, input, &mut routed);
        for effect in routed.drain(..) {
            let RouterEffect::ToMachine(i) = effect else {
                out.push(effect);
                continue;
            };
            machine.handle(now_ms, i, &mut made);
            for e in made.drain(..) {
                let about_requests = matches!(
                    e,
                    StoreEffect::Applied { req: Some(_), .. }
                        | StoreEffect::Refused { .. }
                        | StoreEffect::ReadReady { .. }
                        | StoreEffect::LeaderChanged { .. }
                );
                if about_requests {
                    inputs.push_back(RouterInput::Store(e.clone()));
                }
                raft.push(e);
            }
        }
    }
    router.finish_reads(machine, out);
}

impl<W> Router<W> {
    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes one input; `machine` is read (leader, term, voters, members), never changed: what
    /// it must do comes out as [`RouterEffect::ToMachine`].
    pub fn handle<S: LogStorage>(
        &mut self,
        now_ms: u64,
        machine: &StoreMachine<S>,
        input: RouterInput<W>,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        match input {
            RouterInput::Tick => {
                out.push(RouterEffect::ToMachine(StoreInput::Tick));
                self.expire(now_ms, machine, out);
            }
            RouterInput::Raft { from, bytes } => {
                out.push(RouterEffect::ToMachine(StoreInput::Message { from, bytes }));
            }
            RouterInput::Request {
                op,
                from_peer,
                waiter,
            } => {
                if self.pending.len() >= PENDING_MAX {
                    let answer = Answer::Failed(StoreFailure::Busy);
                    out.push(RouterEffect::Answer { waiter, answer });
                    return;
                }
                let req = self.next_req;
                self.next_req += 1;
                let p = Pending {
                    waiter,
                    op,
                    from_peer,
                    since_ms: now_ms,
                    maybe_written: false,
                    stage: Stage::Machine,
                };
                self.pending.insert(req, p);
                self.submit(req, machine, out);
            }
            RouterInput::ForwardDone {
                req,
                forward,
                result,
            } => self.forward_done(req, forward, result, out),
            RouterInput::Retry { req } => {
                if self
                    .pending
                    .get(&req)
                    .is_some_and(|p| p.stage == Stage::Waiting)
                {
                    self.submit(req, machine, out);
                }
            }
            RouterInput::Members { ready, down } => {
                let to_down = self.forwards_where(|node, _, _| down.contains(&node));
                self.ready = ready;
                self.down = down;
                for req in to_down {
                    // The election that replaces the dead leader is under way: ask raft again
                    // at once instead of waiting out the forward's deadline.
                    self.submit(req, machine, out);
                }
            }
            RouterInput::Store(effect) => self.store_effect(machine, effect, out),
        }
    }

    fn store_effect<S: LogStorage>(
        &mut self,
        machine: &StoreMachine<S>,
        effect: StoreEffect,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        match effect {
            StoreEffect::Applied {
                req: Some(req),
                index,
                result,
            } => {
                if let Some(p) = self.take_at_machine(req) {
                    let answer = match result {
                        Ok(()) => Answer::Applied(index),
                        Err(e) => Answer::Failed(refusal(&e, p.is_read())),
                    };
                    answer_to(p, answer, out);
                }
            }
            StoreEffect::ReadReady { req, index } => {
                if let Some(p) = self.take_at_machine(req) {
                    // The machine says so once this replica applied through `index`.
                    let answer = if p.from_peer {
                        Answer::ReadIndex(index)
                    } else {
                        Answer::ReadReady
                    };
                    answer_to(p, answer, out);
                }
            }
            StoreEffect::Refused { req, error } => self.refused(machine, req, error, out),
            StoreEffect::LeaderChanged { leader, term } => {
                // A forward to another leader, or to one of an older term, may never be
                // answered: that leader stepped down (cut off from the other managers, it
                // did by check_quorum) or is gone. Ask raft again: the new leader, or wait
                // for the election.
                let stale = self.forwards_where(|_, l, t| leader != Some(l) || t != term);
                for req in stale {
                    self.submit(req, machine, out);
                }
            }
            StoreEffect::Applied { req: None, .. }
            | StoreEffect::Send { .. }
            | StoreEffect::VotersChanged(_) => {}
        }
    }

    /// Removes `req` if the machine holds it (a forwarded or waiting request's number is not
    /// the machine's business any more).
    fn take_at_machine(&mut self, req: u64) -> Option<Pending<W>> {
        if self.pending.get(&req)?.stage != Stage::Machine {
            return None;
        }
        self.pending.remove(&req)
    }

    /// Forwards matching `abandon(node, leader, term)`, set back to waiting; their numbers.
    fn forwards_where(&mut self, abandon: impl Fn(NodeId, u64, u64) -> bool) -> Vec<u64> {
        let mut reqs = Vec::new();
        for (req, p) in self.pending.iter_mut() {
            if let Stage::Forwarded {
                node, leader, term, ..
            } = p.stage
                && abandon(node, leader, term)
            {
                p.stage = Stage::Waiting;
                reqs.push(*req);
            }
        }
        reqs
    }

    /// Hands `req` to the machine (again).
    fn submit<S: LogStorage>(
        &mut self,
        req: u64,
        machine: &StoreMachine<S>,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        p.stage = Stage::Machine;
        if machine.is_leader() && !p.is_read() {
            // Taken or refused at once; if taken, it may commit whatever happens next.
            p.maybe_written = true;
        }
        out.push(RouterEffect::ToMachine(op_input(req, p.op.clone())));
    }

    fn wait(&mut self, req: u64, out: &mut Vec<RouterEffect<W>>) {
        if let Some(p) = self.pending.get_mut(&req) {
            p.stage = Stage::Waiting;
            out.push(RouterEffect::RetryAfter {
                req,
                after_ms: LEADER_DOWN_RETRY_MS,
            });
        }
    }

    fn refused<S: LogStorage>(
        &mut self,
        machine: &StoreMachine<S>,
        req: u64,
        error: StoreError,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        let Some(p) = self.pending.get(&req).filter(|p| p.stage == Stage::Machine) else {
            return;
        };
        let (local, read) = (!p.from_peer, p.is_read());
        match error {
            // Raft still names a dead leader until the next election; a request forwarded to
            // it would wait out the whole deadline. Ask again shortly; `expire` bounds it.
            StoreError::NotLeader { leader: Some(l) }
                if (local || read) && self.leader_is_down(machine, l) =>
            {
                self.wait(req, out)
            }
            StoreError::NotLeader { leader: Some(l) } if local => {
                let Some(member) = machine.members().get(&l).copied() else {
                    let f = self.failure_without_leader(machine);
                    return self.answer(req, Answer::Failed(f), out);
                };
                self.next_forward += 1;
                let forward = self.next_forward;
                let p = self.pending.get_mut(&req).expect("looked up above");
                p.maybe_written |= !read;
                p.stage = Stage::Forwarded {
                    node: member.node_id,
                    leader: l,
                    term: machine.term(),
                    forward,
                };
                out.push(RouterEffect::Forward {
                    req,
                    forward,
                    to: member.node_id,
                    addr: member.addr,
                    op: p.op.clone(),
                });
            }
            StoreError::NotLeader { .. } => {
                let f = self.failure_without_leader(machine);
                if local && !read && f == StoreFailure::ElectionUnderWay {
                    // A majority is reachable: the election ends soon. Ask again shortly.
                    self.wait(req, out);
                } else {
                    self.answer(req, Answer::Failed(f), out);
                }
            }
            other => self.answer(req, Answer::Failed(refusal(&other, read)), out),
        }
    }

    fn forward_done(
        &mut self,
        req: u64,
        forward: u64,
        result: Result<u64, StoreFailure>,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        if !matches!(p.stage, Stage::Forwarded { forward: f, .. } if f == forward) {
            // An abandoned forward: the request asked raft again.
            return;
        }
        match result {
            Ok(index) if p.is_read() => p.stage = Stage::Indexed(index),
            Ok(index) => self.answer(req, Answer::Applied(index), out),
            // The leader it went to is no longer one; the next is being elected.
            Err(StoreFailure::ElectionUnderWay) => self.wait(req, out),
            Err(f) => self.answer(req, Answer::Failed(f), out),
        }
    }

    /// Answers the reads of this node whose read index the local replica has applied.
    pub fn finish_reads<S: LogStorage>(
        &mut self,
        machine: &StoreMachine<S>,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        let applied = machine.state().applied_index();
        let ready: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.stage, Stage::Indexed(i) if i <= applied))
            .map(|(req, _)| *req)
            .collect();
        for req in ready {
            self.answer(req, Answer::ReadReady, out);
        }
    }

    /// Answers whatever waited longer than [`OPERATION_TIMEOUT_MS`].
    fn expire<S: LogStorage>(
        &mut self,
        now_ms: u64,
        machine: &StoreMachine<S>,
        out: &mut Vec<RouterEffect<W>>,
    ) {
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.since_ms) > OPERATION_TIMEOUT_MS)
            .map(|(req, _)| *req)
            .collect();
        for req in stale {
            let p = &self.pending[&req];
            let f = if p.maybe_written {
                StoreFailure::MayHaveCommitted(format!(
                    "the write was not answered within {OPERATION_TIMEOUT_MS} ms after it \
                     reached the leader; it may have committed: read before retrying"
                ))
            } else if machine.leader().is_none() && !p.is_read() {
                self.failure_without_leader(machine)
            } else {
                StoreFailure::Timeout
            };
            self.answer(req, Answer::Failed(f), out);
        }
    }

    fn answer(&mut self, req: u64, answer: Answer, out: &mut Vec<RouterEffect<W>>) {
        if let Some(p) = self.pending.remove(&req) {
            answer_to(p, answer, out);
        }
    }

    /// Whether membership says the node of raft leader `l` is Down.
    fn leader_is_down<S: LogStorage>(&self, machine: &StoreMachine<S>, l: u64) -> bool {
        machine
            .members()
            .get(&l)
            .is_some_and(|m| self.down.contains(&m.node_id))
    }

    /// What to tell a writer when there is no leader to take the write: with a majority of
    /// voters reachable an election is under way (try again); without, there is no quorum.
    pub fn failure_without_leader<S: LogStorage>(&self, machine: &StoreMachine<S>) -> StoreFailure {
        let members = machine.members();
        let voters = machine.voters();
        let reachable = voters
            .iter()
            .filter(|id| {
                **id == machine.raft_id()
                    || members
                        .get(id)
                        .is_some_and(|m| self.ready.contains(&m.node_id))
            })
            .count();
        if voters.is_empty() {
            StoreFailure::Refused("this manager is not a voter of the store".into())
        } else if reachable * 2 > voters.len() {
            StoreFailure::ElectionUnderWay
        } else {
            StoreFailure::NoQuorum {
                reachable,
                voters: voters.len(),
            }
        }
    }
}

fn answer_to<W>(p: Pending<W>, answer: Answer, out: &mut Vec<RouterEffect<W>>) {
    out.push(RouterEffect::Answer {
        waiter: p.waiter,
        answer,
    });
}

/// The machine's input for request `req`.
pub fn op_input(req: u64, op: StoreRequest) -> StoreInput {
    match op {
        StoreRequest::Propose(cmd) => StoreInput::Propose { req, cmd },
        StoreRequest::AddVoter {
            raft_id,
            node_id,
            addr,
        } => StoreInput::AddVoter {
            req,
            raft_id,
            node_id,
            addr,
        },
        StoreRequest::RemoveVoter { raft_id } => StoreInput::RemoveVoter { req, raft_id },
        StoreRequest::ReadIndex => StoreInput::ReadIndex { req },
    }
}

/// The failure a store refusal is told as. A refusal after a write reached raft (a timeout,
/// lost leadership) may still commit; every other refusal changed nothing.
pub fn refusal(e: &StoreError, read: bool) -> StoreFailure {
    match e {
        StoreError::Busy => StoreFailure::Busy,
        e @ StoreError::OutOfSequence { .. } => StoreFailure::OutOfSequence(e.to_string()),
        StoreError::Timeout if read => StoreFailure::Timeout,
        e @ (StoreError::Timeout | StoreError::LeadershipLost { .. }) if !read => {
            StoreFailure::MayHaveCommitted(e.to_string())
        }
        other => StoreFailure::Refused(other.to_string()),
    }
}
