//! The store loop's request routing: every manager runs the runtime's own [`Router`] beside its
//! store machine, fed through [`router::step`] exactly as the StoreActor feeds it.
//!
//! ```text
//!   operator / services / voter driver ── Request ──▶ Router(m) ──▶ StoreMachine(m)
//!     Router(m) ── Forward ── Network (delay, loss, partition) ──▶ Router(leader)
//!     Router(m) ◀── ForwardDone ── Network ◀── Answer(Peer) ── Router(leader)
//!     Router(m) ── RetryAfter ──▶ a queued Retry
//!     Router(m) ── Answer ──▶ the waiter; invariant (k) checks how long it waited
//! ```
//!
//! What the transport does in production is played here: a forward travels over the same
//! simulated [`Network`](crate::net::Network) as raft messages, its answer travels back the
//! same way, and the transport's request deadline fails it at the latest. Membership's view
//! (who is Ready, who is Down) is read off the run: a manager is Ready to another when the
//! partition lets it be heard, and Down once crashed for [`DOWN_AFTER_MS`] (membership's
//! suspicion time, roughly).
//!
//! Invariant (k): every write a local client routed (the operator's, the services layer's, the
//! voter driver's) is answered within the router's bound, [`OPERATION_TIMEOUT_MS`] and two
//! tick periods, not counting time its manager was paused (a paused process answers nobody).
//! A manager that crashes drops its waiters, as a dead process does; those are not counted.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::NodeId;
use swarm_actors::replica::router::{self, Answer, Router, RouterEffect, RouterInput};
use swarm_actors::replica::{OPERATION_TIMEOUT_MS, StoreFailure};
use swarm_actors::store::{StoreEffect, StoreError};
use swarm_actors::transport::TransportConfig;
use swarm_actors::wire::StoreRequest;

use crate::clock::Millis;
use crate::invariants::store_liveness;
use crate::managers::{Ev, HEAL_WRITE_BOUND_MS, HELD_MESSAGES_MAX, Status, StoreWorld};
use crate::node::{addr, node_id};
use crate::trace::{DATAGRAM_PREFIX_BYTES, TraceKind};

/// How long a crashed manager stays Ready in the other managers' membership view.
pub const DOWN_AFTER_MS: Millis = 1_000;

/// Who waits for a routed request's answer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Waiter {
    /// A local client: the operator's workload, the voter driver, or the services layer
    /// (`svc`: its request number there). `id` keys the open table of invariant (k).
    Local { id: u64, svc: Option<u64> },
    /// Manager `from`, in its life `epoch`, forwarded this to us as the leader.
    Peer {
        from: usize,
        epoch: u64,
        req: u64,
        forward: u64,
    },
}

/// A local request not answered yet.
struct Open {
    m: usize,
    since: Millis,
    /// The manager's paused time so far when the request was made.
    paused_then: Millis,
    svc: Option<u64>,
}

/// The routing's state beside the managers.
pub(crate) struct Routing {
    open: BTreeMap<u64, Open>,
    next_id: u64,
    /// Per manager: what its router was last told of membership.
    members: Vec<Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)>>,
    /// Per manager: time paused so far, and since when it is paused now.
    paused_ms: Vec<Millis>,
    paused_since: Vec<Option<Millis>>,
    crashed_at: Vec<Option<Millis>>,
    forward_deadline_ms: Millis,
    bound_ms: Millis,
}

impl Routing {
    pub(crate) fn new(managers: usize, tick_ms: Millis) -> Self {
        Routing {
            open: BTreeMap::new(),
            next_id: 1,
            members: vec![None; managers],
            paused_ms: vec![0; managers],
            paused_since: vec![None; managers],
            crashed_at: vec![None; managers],
            forward_deadline_ms: TransportConfig::new(addr(0)).request_timeout_ms,
            // A request is expired at the first tick past the timeout; a skewed timer runs at
            // most 1.25 times slower.
            bound_ms: OPERATION_TIMEOUT_MS + 2 * tick_ms,
        }
    }

    pub(crate) fn paused(&mut self, at: Millis, m: usize) {
        self.paused_since[m] = Some(at);
    }

    /// Manager `m`'s time paused until `at`.
    fn paused_by(&self, at: Millis, m: usize) -> Millis {
        self.paused_ms[m] + self.paused_since[m].map_or(0, |t0| at - t0)
    }

    /// How long request `o` waited until `at`, its manager's paused time left out.
    fn waited(&self, at: Millis, o: &Open) -> Millis {
        at - o.since - (self.paused_by(at, o.m) - o.paused_then)
    }

    pub(crate) fn resumed(&mut self, at: Millis, m: usize) {
        if let Some(t0) = self.paused_since[m].take() {
            self.paused_ms[m] += at - t0;
        }
    }
}

impl StoreWorld {
    /// Queues `op` for manager `m`'s router as a local client's request; `svc` is the services
    /// layer's request number when it is theirs.
    pub(crate) fn route_request(
        &mut self,
        at: Millis,
        m: usize,
        op: StoreRequest,
        svc: Option<u64>,
    ) {
        let r = &mut self.routing;
        let id = r.next_id;
        r.next_id += 1;
        let paused_then = r.paused_by(at, m);
        r.open.insert(
            id,
            Open {
                m,
                since: at,
                paused_then,
                svc,
            },
        );
        self.report.routed += 1;
        let input = RouterInput::Request {
            op,
            from_peer: false,
            waiter: Waiter::Local { id, svc },
        };
        let epoch = self.ms[m].epoch;
        // From the queue: an answer may come at once, and it goes back into the asking layer.
        self.q.push(at, Ev::Route { m, epoch, input });
    }

    /// A router input arriving at manager `m` in its life `epoch`.
    pub(crate) fn route_arrive(
        &mut self,
        at: Millis,
        m: usize,
        epoch: u64,
        input: RouterInput<Waiter>,
    ) {
        let mgr = &mut self.ms[m];
        if mgr.epoch != epoch || mgr.status == Status::Crashed {
            if let RouterInput::Request { waiter, .. } = input {
                self.gone(at, waiter);
            }
            return;
        }
        if mgr.status == Status::Paused {
            if mgr.held.len() < HELD_MESSAGES_MAX {
                mgr.held.push(input);
            } else if let RouterInput::Request { waiter, .. } = input {
                self.gone(at, waiter);
            }
            return;
        }
        self.route(at, m, input);
    }

    /// A waiter whose manager is gone: a local client sees the connection fail.
    fn gone(&mut self, at: Millis, waiter: Waiter) {
        if let Waiter::Local { id, svc } = waiter {
            self.routing.open.remove(&id);
            if let Some(req) = svc {
                self.svc_store_effect(at, 0, Some(req), false, false);
            }
        }
    }

    /// Manager `m` crashed: its router and every waiter in it are gone.
    pub(crate) fn route_crash(&mut self, at: Millis, m: usize) {
        self.ms[m].router = Router::default();
        let r = &mut self.routing;
        r.members[m] = None;
        r.resumed(at, m);
        r.crashed_at[m] = Some(at);
        let ids: Vec<u64> = r
            .open
            .iter()
            .filter(|(_, o)| o.m == m)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let svc = self.routing.open[&id].svc;
            self.gone(at, Waiter::Local { id, svc });
        }
    }

    pub(crate) fn route_boot(&mut self, m: usize) {
        self.routing.crashed_at[m] = None;
        self.routing.members[m] = None;
    }

    /// Tells manager `m`'s router of membership's view, when it changed.
    fn route_members(&mut self, at: Millis, m: usize) {
        let n = self.ms.len();
        let partition = self.net.partition();
        let ready: BTreeSet<NodeId> = (0..n)
            .filter(|&j| self.ms[j].status != Status::Crashed)
            .filter(|&j| j == m || !partition.is_some_and(|p| p.blocks(j, m)))
            .map(node_id)
            .collect();
        let down: BTreeSet<NodeId> = (0..n)
            .filter(|&j| {
                self.routing.crashed_at[j].is_some_and(|t0| at.saturating_sub(t0) >= DOWN_AFTER_MS)
            })
            .map(node_id)
            .collect();
        let now = (ready, down);
        if self.routing.members[m].as_ref() != Some(&now) {
            self.routing.members[m] = Some(now.clone());
            let (ready, down) = now;
            self.route(at, m, RouterInput::Members { ready, down });
        }
    }

    /// Feeds `input` to manager `i`'s router and machine, checks (d) and (e), and carries out
    /// what they asked for.
    pub(crate) fn route(&mut self, at: Millis, i: usize, input: RouterInput<Waiter>) {
        if matches!(input, RouterInput::Tick) {
            self.route_members(at, i);
        }
        self.trace_input(at, i, &input);
        let mgr = &mut self.ms[i];
        let Some(m) = mgr.machine.as_mut() else {
            return;
        };
        let (mut raft, mut out) = (Vec::new(), Vec::new());
        router::step(m, &mut mgr.router, at, input, &mut raft, &mut out);
        let (raft_id, term, leading) = (m.raft_id(), m.term(), m.is_leader());
        let (applied, digest) = (m.state().applied_index(), m.state().digest());
        self.report.max_term = self.report.max_term.max(term);
        if leading {
            let v = self.leaders.observe(at, term, raft_id);
            self.violation(v);
        }
        let v = self.committed.observe(at, raft_id, applied, digest);
        self.violation(v);
        for e in raft {
            self.store_effect(at, i, e);
        }
        for e in out {
            self.router_effect(at, i, e);
        }
        if self.svc.is_some() {
            self.leader_changed(at, i);
        }
    }

    fn trace_input(&mut self, at: Millis, i: usize, input: &RouterInput<Waiter>) {
        let t = &mut self.trace;
        match input {
            RouterInput::Tick => t.event(at, i, TraceKind::StoreTick),
            RouterInput::Raft { bytes, .. } => {
                t.event(at, i, TraceKind::RaftMessage);
                t.u64(bytes.len() as u64);
                t.bytes(&bytes[..bytes.len().min(DATAGRAM_PREFIX_BYTES)]);
            }
            RouterInput::Request { op, from_peer, .. } => {
                let kind = match op {
                    StoreRequest::Propose(_) => TraceKind::Propose,
                    StoreRequest::ReadIndex => TraceKind::ReadIndex,
                    StoreRequest::AddVoter { .. } => TraceKind::AddVoter,
                    StoreRequest::RemoveVoter { .. } => TraceKind::RemoveVoter,
                };
                t.event(at, i, kind);
                t.u64(u64::from(*from_peer));
            }
            RouterInput::ForwardDone { req, forward, .. } => {
                t.event(at, i, TraceKind::ForwardDone);
                t.u64(*req);
                t.u64(*forward);
            }
            RouterInput::Retry { req } => {
                t.event(at, i, TraceKind::Retry);
                t.u64(*req);
            }
            RouterInput::Members { .. } | RouterInput::Store(_) => {}
        }
    }

    /// One effect of manager `i`'s store machine.
    fn store_effect(&mut self, at: Millis, i: usize, e: StoreEffect) {
        if self.svc.is_some()
            && let StoreEffect::Applied { result, .. } = &e
        {
            // Who proposed it learns from its router's answer; here only what was applied.
            self.svc_store_effect(at, i, None, result.is_ok(), true);
        }
        match e {
            StoreEffect::Send { to, msg } => self.send(i, to, msg),
            StoreEffect::Applied {
                req: Some(_),
                result,
                ..
            } => {
                self.trace.event(at, i, TraceKind::Applied);
                if result.is_ok() {
                    self.report.writes_committed += 1;
                }
                if let Some(t0) = self.leader_crashed_at.take() {
                    self.report.failover_ms.push(at - t0);
                }
                if self.liveness && self.report.heal_write_ms.is_none() {
                    self.report.heal_write_ms = Some(at - self.heal_at);
                    let v = store_liveness::check(at - self.heal_at, HEAL_WRITE_BOUND_MS);
                    self.violation(v);
                }
            }
            StoreEffect::Refused { error, .. } => {
                self.trace.event(at, i, TraceKind::Refused);
                if !matches!(error, StoreError::NotLeader { .. }) {
                    self.report.writes_refused += 1;
                }
            }
            StoreEffect::LeaderChanged { leader, term } => {
                self.trace.event(at, i, TraceKind::LeaderChanged);
                self.trace.u64(leader.unwrap_or(0) ^ (term << 32));
            }
            StoreEffect::Applied { .. }
            | StoreEffect::ReadReady { .. }
            | StoreEffect::VotersChanged(_) => {}
        }
    }

    /// One effect of manager `i`'s router.
    fn router_effect(&mut self, at: Millis, i: usize, e: RouterEffect<Waiter>) {
        match e {
            RouterEffect::Forward {
                req,
                forward,
                to,
                op,
                ..
            } => {
                self.trace.event(at, i, TraceKind::Forward);
                self.trace.u64(to.0 as u64);
                self.report.forwards += 1;
                let epoch = self.ms[i].epoch;
                if let Some(to) = (0..self.ms.len()).find(|&j| node_id(j) == to) {
                    let waiter = Waiter::Peer {
                        from: i,
                        epoch,
                        req,
                        forward,
                    };
                    let request = |waiter| RouterInput::Request {
                        op: op.clone(),
                        from_peer: true,
                        waiter,
                    };
                    self.carry(i, to, request(waiter), Some(request(waiter)));
                }
                // The transport gives up at its deadline; a forward answered sooner has its
                // late failure ignored by its number.
                let f = StoreFailure::MayHaveCommitted("the transport's deadline".into());
                let done = RouterInput::ForwardDone {
                    req,
                    forward,
                    result: Err(f),
                };
                let at = at + self.routing.forward_deadline_ms;
                self.q.push(
                    at,
                    Ev::Route {
                        m: i,
                        epoch,
                        input: done,
                    },
                );
            }
            RouterEffect::Answer { waiter, answer } => self.answered(at, i, waiter, answer),
            RouterEffect::RetryAfter { req, after_ms } => {
                self.report.retries += 1;
                let epoch = self.ms[i].epoch;
                let input = RouterInput::Retry { req };
                self.q.push(at + after_ms, Ev::Route { m: i, epoch, input });
            }
            RouterEffect::ToMachine(_) => unreachable!("router::step feeds the machine"),
        }
    }

    fn answered(&mut self, at: Millis, i: usize, waiter: Waiter, answer: Answer) {
        let ok = matches!(answer, Answer::Applied(_));
        self.trace.event(at, i, TraceKind::Answered);
        self.trace.u64(u64::from(ok));
        match waiter {
            Waiter::Local { id, svc } => {
                if !ok {
                    self.report.routed_failed += 1;
                }
                if let Some(o) = self.routing.open.remove(&id) {
                    let waited = self.routing.waited(at, &o);
                    self.report.routed_max_wait_ms = self.report.routed_max_wait_ms.max(waited);
                    let v = self.unanswered(id, o.m, waited, "was answered");
                    self.violation(v);
                }
                if let Some(req) = svc {
                    self.svc_store_effect(at, i, Some(req), ok, false);
                }
            }
            Waiter::Peer {
                from,
                epoch,
                req,
                forward,
            } => {
                let result = match answer {
                    Answer::Applied(index) | Answer::ReadIndex(index) => Ok(index),
                    Answer::Failed(f) => Err(f),
                    Answer::ReadReady => unreachable!("a peer is answered an index"),
                };
                let done = |result| RouterInput::ForwardDone {
                    req,
                    forward,
                    result,
                };
                let dup = done(result.clone());
                self.carry_to(i, from, epoch, done(result), Some(dup));
            }
        }
    }

    /// Invariant (k) for request `id` of manager `m` after `waited` ms (paused time left out).
    fn unanswered(&self, id: u64, m: usize, waited: Millis, what: &str) -> Option<String> {
        let bound = self.routing.bound_ms;
        (waited > bound).then(|| {
            format!(
                "(k) a write routed through manager {m} (request {id}) {what} after {waited} ms, \
                 over the router's bound {bound} ms"
            )
        })
    }

    /// At the end: every request still open must be younger than the bound.
    pub(crate) fn route_finish(&mut self, end: Millis) {
        let mut vs = Vec::new();
        for (id, o) in &self.routing.open {
            let waited = self.routing.waited(end, o);
            vs.push(self.unanswered(*id, o.m, waited, "was not answered by the end"));
        }
        for v in vs {
            self.violation(v);
        }
    }

    /// Carries a router input from manager `from` to manager `to`'s current life over the
    /// network; `dup` is the copy the network may deliver twice.
    fn carry(
        &mut self,
        from: usize,
        to: usize,
        input: RouterInput<Waiter>,
        dup: Option<RouterInput<Waiter>>,
    ) {
        let epoch = self.ms[to].epoch;
        self.carry_to(from, to, epoch, input, dup);
    }

    fn carry_to(
        &mut self,
        from: usize,
        to: usize,
        epoch: u64,
        input: RouterInput<Waiter>,
        dup: Option<RouterInput<Waiter>>,
    ) {
        let route = self.net.route(from, to);
        let now = self.q.now();
        let copies = [(route.first, Some(input)), (route.dup, dup)];
        for (delay, input) in copies {
            if let (Some(delay), Some(input)) = (delay, input) {
                self.q.push(
                    now + delay,
                    Ev::Route {
                        m: to,
                        epoch,
                        input,
                    },
                );
            }
        }
    }

    /// Sends a raft message from manager `from` to the manager with raft ID `to_raft`.
    fn send(&mut self, from: usize, to_raft: u64, msg: Vec<u8>) {
        let Some(to) = self.ms.iter().position(|m| m.raft_id == to_raft) else {
            return;
        };
        let route = self.net.route(from, to);
        let epoch = self.ms[to].epoch;
        let now = self.q.now();
        let from_raft = self.ms[from].raft_id;
        for delay in [route.first, route.dup].into_iter().flatten() {
            let msg = msg.clone();
            let input = RouterInput::Raft {
                from: from_raft,
                bytes: msg,
            };
            self.q.push(
                now + delay,
                Ev::Route {
                    m: to,
                    epoch,
                    input,
                },
            );
        }
    }
}
