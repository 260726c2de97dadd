//! The leader actor, simulated: one [`LeaderMachine`] per manager whose store machine is the
//! raft leader, gone when leadership moves or the manager crashes. Every decision is the
//! machine's, the same code the real leader actor drives; this file only maps its effects to
//! simulated events, as the actor maps them to IO:
//!
//! | effect | the actor | here |
//! |---|---|---|
//! | `Read` | three store reads off the actor | an event at the same time that lends the manager's local store in place (`StoreRead` borrows its objects) |
//! | `Propose` | `StoreHandle::propose` | `svc_propose` on the manager; its commit or refusal comes back as `LeaderProposed` |
//! | `Poke` | registry (local agent) or a one-way message | a `Poke` over the simulated network |
//! | `SetTimer` | `send_after` | a `LeaderTimer` event |
//! | `Answer` | the session's reply port | a `SessionReply` over the simulated network |
//!
//! A first pass's linearizable read is served from the leader's local store, as later passes'
//! are, once that store has applied the first entry of the leader's term (what a read index
//! confirms: every entry of earlier terms is then applied too). Served before that, it missed
//! statuses an earlier leader's last pass committed late, and answers built from it sent files
//! for tasks that had already ended (invariant (p1) caught it).
//!
//! Membership's view reaches the machine node by node (`LeaderInput::Member`) as the timeline
//! replays this manager's view changes; a node's description is its simulated one at the
//! version of its latest start, so that the machine writes descriptions as the real leader does.
//!
//! Invariants (h) and (j) are judged here: each placement the machine plans is checked against
//! the views that pass used (shown through `handle_audited`), each orphan against this
//! manager's membership and how long it had led; either is reported when its write commits.
//! So are the rolling update's (l) parallelism and (n) pause, on what the pass did to the
//! slots of services under an update (`invariants::rollout`), and (p1): the files of each
//! answer against the tasks this manager's store assigns to the node (`invariants::secrets_held`).
//!
//! A paused manager's leader handles nothing until it resumes: its events wait.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::leader::machine::{PassAudit, SessionToken};
use swarm_actors::leader::plan::ingress;
use swarm_actors::leader::{LeaderEffect, LeaderInput, LeaderMachine, SessionAnswer, StoreRead};
use swarm_actors::membership::MemberView;
use swarm_actors::model::{
    FileKey, INGRESS_NETWORK, NodeId, NodeState, Task, TaskId, TaskState, TaskStatus,
};
use swarm_actors::store::{Kind, ObjectBody, Op};

use super::{Ev, Reply, Waiter, index};
use crate::clock::Millis;
use crate::invariants::{
    addresses, depends_on, max_replicas, mesh_table, orphans, overlay, pause_holds, placement,
    rollout, secrets_held, update_parallelism,
};
use crate::managers::{Ev as StoreEv, Status as MgrStatus, StoreWorld};
use crate::node::{addr, description, node_id};
use crate::trace::TraceKind;

/// How often the events of a paused manager's leader look again whether it resumed.
const PAUSED_RETRY_MS: Millis = 50;

/// A wrong write of a pass, by the invariant it breaks.
enum Bad {
    Placed(Task, String),
    Orphaned(Task, String),
    /// (q): an address given.
    Address(Task, String),
    /// (s): overlay addresses given.
    Overlay(Task, String),
    /// (l) or (n), with its letter.
    Update(&'static str, String),
    /// (t): a task started before its service's dependencies met their conditions.
    Gated(Task, String),
    /// (u): a node left with more of a service than its max replicas.
    MaxReplicas(Task, String),
}

/// Where a session's answer goes.
struct Asked {
    from: usize,
    boot: u64,
    seq: u64,
    hop: u8,
}

pub struct LeaderSim {
    term: u64,
    /// When this leadership began, for invariant (j).
    since_ms: Millis,
    machine: LeaderMachine,
    sessions: BTreeMap<SessionToken, Asked>,
    next_session: SessionToken,
    /// Placements (invariant h), orphans (j) and update steps (l, n) of the pass in flight
    /// that were wrong, as violations to be (the text without the time), by the store ID of
    /// the object whose write carries them.
    bad: BTreeMap<String, Vec<Bad>>,
    /// Those of them in the command in flight, reported if it commits.
    proposed_bad: Vec<Bad>,
    /// The log's last index when leadership began (the term's first entry): a linearizable
    /// read waits until the store applied it.
    term_start_index: u64,
    /// The nodes the last pass saw Down, for invariant (r).
    down: BTreeSet<NodeId>,
}

impl StoreWorld {
    /// Starts or stops manager `i`'s leader actor after its store machine handled an input.
    pub(crate) fn leader_changed(&mut self, at: Millis, i: usize) {
        let leading = match (&self.ms[i].machine, self.ms[i].status) {
            (Some(m), s) if s != MgrStatus::Crashed && m.is_leader() => Some(m.term()),
            _ => None,
        };
        let seed = self.cfg.seed;
        let svc = self.svc();
        let current = svc.leaders.get(&i).map(|l| l.term);
        if current == leading {
            return;
        }
        svc.leaders.remove(&i);
        let Some(term) = leading else {
            return;
        };
        let rng_seed = seed ^ ((i as u64) << 40) ^ term ^ 0x1ead;
        let term_start_index = (self.ms[i].machine.as_ref()).map_or(0, |m| m.stats().last_index);
        let svc = self.svc();
        let mut machine = LeaderMachine::new(node_id(i), term, at, rng_seed);
        let members: Vec<MemberView> = (0..svc.life.len())
            .filter_map(|n| self.member(i, n))
            .collect();
        let mut out = Vec::new();
        machine.handle(at, LeaderInput::Members(&members), &mut out);
        machine.handle(at, LeaderInput::Start, &mut out);
        let l = LeaderSim {
            term,
            since_ms: at,
            machine,
            sessions: BTreeMap::new(),
            next_session: 0,
            bad: BTreeMap::new(),
            proposed_bad: Vec::new(),
            term_start_index,
            down: BTreeSet::new(),
        };
        self.svc().leaders.insert(i, l);
        self.leader_effects(at, i, term, out);
    }

    /// Node `n` as manager `m`'s membership sees it, if it sees it at all.
    fn member(&self, m: usize, n: usize) -> Option<MemberView> {
        let svc = self.svc.as_ref().expect("on");
        let state = if n == m || svc.views[m].contains(&n) {
            NodeState::Ready
        } else if svc.downs[m].contains(&n) {
            NodeState::Down
        } else {
            return None;
        };
        let version = svc.boots[n].max(1);
        Some(MemberView {
            id: node_id(n),
            addr: addr(n),
            state,
            description: Some(description(n, self.ms.len(), version)),
        })
    }

    /// An entry was applied on manager `i`.
    pub(crate) fn leader_applied(&mut self, at: Millis, i: usize) {
        if let Some(term) = self.svc().leaders.get(&i).map(|l| l.term) {
            self.leader_feed(at, i, term, LeaderInput::StoreApplied);
        }
    }

    /// Manager `m`'s membership changed its mind about node `n`.
    pub(super) fn leader_member_changed(&mut self, at: Millis, m: usize, n: usize) {
        let Some(term) = self.svc().leaders.get(&m).map(|l| l.term) else {
            return;
        };
        let view = self.member(m, n).unwrap_or(MemberView {
            id: node_id(n),
            addr: addr(n),
            state: NodeState::Unknown,
            description: None,
        });
        self.leader_feed(at, m, term, LeaderInput::Member(&view));
    }

    fn leader_is(&mut self, m: usize, term: u64) -> bool {
        self.svc().leaders.get(&m).is_some_and(|l| l.term == term)
    }

    /// A leader event: handled now, dropped if that leader is gone, later if its manager is
    /// paused.
    pub(super) fn leader_event(&mut self, at: Millis, ev: Ev) {
        let (m, term) = match &ev {
            Ev::LeaderTimer { m, term, .. }
            | Ev::LeaderRead { m, term, .. }
            | Ev::LeaderProposed { m, term, .. } => (*m, *term),
            _ => unreachable!("only leader events come here"),
        };
        if !self.leader_is(m, term) {
            return;
        }
        if !self.manager_up(m) {
            self.q.push(at + PAUSED_RETRY_MS, StoreEv::Svc(ev));
            return;
        }
        match ev {
            Ev::LeaderTimer { timer, .. } => {
                self.leader_feed(at, m, term, LeaderInput::Timer(timer));
            }
            Ev::LeaderRead { linearizable, .. } => {
                let start = self
                    .svc()
                    .leaders
                    .get(&m)
                    .expect("checked")
                    .term_start_index;
                let applied =
                    (self.ms[m].machine.as_ref()).map_or(0, |s| s.state().applied_index());
                if linearizable && applied < start {
                    let ev = Ev::LeaderRead {
                        m,
                        term,
                        linearizable,
                    };
                    self.q.push(at + PAUSED_RETRY_MS, StoreEv::Svc(ev));
                    return;
                }
                self.leader_read(at, m, term)
            }
            Ev::LeaderProposed { ok, .. } => {
                let l = self.svc().leaders.get_mut(&m).expect("checked");
                let judged = std::mem::take(&mut l.proposed_bad);
                if ok {
                    for bad in judged {
                        let v = match bad {
                            Bad::Placed(t, why) => placement::violation(at, &t, why),
                            Bad::Orphaned(t, why) => orphans::violation(at, &t, why),
                            Bad::Address(t, why) => addresses::violation(at, &t, why),
                            Bad::Overlay(t, why) => overlay::violation(at, &t, why),
                            Bad::Update(letter, why) => format!("({letter}) at {at} ms {why}"),
                            Bad::Gated(t, why) => depends_on::violation(at, &t, why),
                            Bad::MaxReplicas(t, why) => max_replicas::violation(at, &t, why),
                        };
                        self.svc().violation(Some(v));
                    }
                }
                let result = if ok { Ok(()) } else { Err("refused".into()) };
                self.leader_feed(at, m, term, LeaderInput::ProposeDone(result));
            }
            _ => unreachable!("matched above"),
        }
    }

    /// Hands `input` to manager `m`'s leader machine and carries out its effects.
    fn leader_feed(&mut self, at: Millis, m: usize, term: u64, input: LeaderInput<'_>) {
        let l = self.svc().leaders.get_mut(&m).expect("a live leader");
        let mut out = Vec::new();
        l.machine.handle(at, input, &mut out);
        self.leader_effects(at, m, term, out);
    }

    /// The pass's read: the manager's local store, lent in place.
    fn leader_read(&mut self, at: Millis, m: usize, term: u64) {
        let state = self.ms[m].machine.as_ref().expect("up").state();
        let read = StoreRead {
            applied_index: state.applied_index(),
            nodes: state.list(Kind::Node).collect(),
            services: state.list(Kind::Service).collect(),
            tasks: state.list(Kind::Task).collect(),
            secrets: (state.list(Kind::Secret))
                .chain(state.list(Kind::Config))
                .collect(),
            networks: state.list(Kind::Network).collect(),
        };
        let svc = self.svc.as_mut().expect("on");
        let (views, downs, nodes_n) = (&svc.views[m], &svc.downs[m], svc.life.len());
        let l = svc.leaders.get_mut(&m).expect("checked");
        let led_ms = at.saturating_sub(l.since_ms);
        let mut bad: BTreeMap<String, Vec<Bad>> = BTreeMap::new();
        let mut figures = (0, 0, 0);
        let mut pass_down = BTreeSet::new();
        let mut addressed = 0u64;
        let mut attached = 0u64;
        let mut gated = 0u64;
        // Invariant (h): judge every placement against the views this pass used; (j) every
        // orphan against this manager's membership.
        let mut audit = |a: &PassAudit| {
            figures = (a.plan.ops.len(), a.plan.created, a.plan.placed);
            pass_down = (a.views.iter())
                .filter(|v| v.state == NodeState::Down)
                .map(|v| v.id)
                .collect();
            // (q): every address the pass gives, against the tasks as it leaves them.
            for (t, why) in addresses::judge(state, &a.plan.ops) {
                let key = t.id.to_string();
                bad.entry(key).or_default().push(Bad::Address(t, why));
            }
            // (t): every task the pass starts, against its dependencies in the pass's view;
            // (u): every node the pass places a task of a service with max replicas on.
            gated += a.plan.gated as u64;
            for (t, why) in depends_on::judge(state, a.reports, &a.plan.ops) {
                let key = t.id.to_string();
                bad.entry(key).or_default().push(Bad::Gated(t, why));
            }
            for (t, why) in max_replicas::judge(state, &a.plan.ops) {
                let key = t.id.to_string();
                bad.entry(key).or_default().push(Bad::MaxReplicas(t, why));
            }
            // (s): every overlay address the pass gives, likewise.
            for (t, why) in overlay::judge(state, &a.plan.ops) {
                let key = t.id.to_string();
                bad.entry(key).or_default().push(Bad::Overlay(t, why));
            }
            addressed += (a.plan.ops.iter())
                .filter(|op| match op {
                    Op::Put {
                        body: ObjectBody::Task(t),
                        ..
                    } => t.status.state == TaskState::Assigned && ingress(t).is_some(),
                    _ => false,
                })
                .count() as u64;
            attached += (a.plan.ops.iter())
                .filter(|op| match op {
                    Op::Put {
                        body: ObjectBody::Task(t),
                        ..
                    } => {
                        t.status.state == TaskState::Assigned
                            && t.networks.iter().any(|n| n.network != INGRESS_NETWORK)
                    }
                    _ => false,
                })
                .count() as u64;
            for op in &a.plan.ops {
                let Op::Put {
                    body: ObjectBody::Task(t),
                    ..
                } = op
                else {
                    continue;
                };
                let Some(n) = t.node_id else { continue };
                let old = stored_task(state, t);
                if t.status.state == TaskState::Assigned
                    && old.is_none_or(|old| old.node_id.is_none())
                    && let Some(why) = placement::judge(a.views, n, &t.spec)
                {
                    let b = Bad::Placed(t.clone(), why);
                    bad.entry(t.id.to_string()).or_default().push(b);
                }
                if t.status.state == TaskState::Orphaned
                    && old.is_some_and(|old| old.status.state != TaskState::Orphaned)
                    && let Some(i) = index(n, nodes_n)
                {
                    let seen = orphans::Seen {
                        up: i == m || views.contains(&i),
                        declared_down: downs.contains(&i),
                        led_ms,
                    };
                    if let Some(why) = orphans::judge(seen) {
                        let b = Bad::Orphaned(t.clone(), why);
                        bad.entry(t.id.to_string()).or_default().push(b);
                    }
                }
            }
            // (l) and (n): what the pass did to services under an update.
            for c in rollout::changes(state, a.views, &a.plan.ops) {
                // Carried by the write of the first task it made, or of the service.
                let key = c
                    .stop_first
                    .iter()
                    .chain(&c.start_first)
                    .map(|(_, t)| t.to_string())
                    .next()
                    .unwrap_or_else(|| c.key.to_string());
                if let Some(why) = update_parallelism::judge(&c) {
                    bad.entry(key.clone())
                        .or_default()
                        .push(Bad::Update("l", why));
                }
                if let Some(why) = pause_holds::judge(&c) {
                    bad.entry(key).or_default().push(Bad::Update("n", why));
                }
            }
        };
        let mut out = Vec::new();
        l.machine
            .handle_audited(at, LeaderInput::ReadDone(read), &mut out, &mut audit);
        l.bad = bad;
        l.down = pass_down;
        svc.report.mesh.addressed += addressed;
        svc.report.mesh.attached += attached;
        svc.report.gated += gated;
        let (ops, created, placed) = figures;
        svc.report.pass_ops += ops as u64;
        svc.report.tasks_created += created as u64;
        svc.report.tasks_placed += placed as u64;
        self.svc_trace(at, m, TraceKind::Pass, ops as u64);
        self.leader_effects(at, m, term, out);
    }

    fn leader_effects(&mut self, at: Millis, m: usize, term: u64, out: Vec<LeaderEffect>) {
        for effect in out {
            match effect {
                LeaderEffect::Read { linearizable } => {
                    let ev = Ev::LeaderRead {
                        m,
                        term,
                        linearizable,
                    };
                    self.q.push(at, StoreEv::Svc(ev));
                }
                LeaderEffect::Propose(cmd) => {
                    let l = self.svc().leaders.get_mut(&m).expect("a live leader");
                    if !l.bad.is_empty() {
                        for op in &cmd.ops {
                            let id = match op {
                                Op::Put { id, .. } | Op::Delete { id, .. } => id,
                            };
                            if let Some(bad) = l.bad.remove(id) {
                                l.proposed_bad.extend(bad);
                            }
                        }
                    }
                    self.svc_propose(at, m, cmd.ops, Waiter::Pass { m, term });
                }
                LeaderEffect::Poke { node, .. } => {
                    let svc = self.svc();
                    let Some(node) = index(node, svc.life.len()) else {
                        continue;
                    };
                    let route = svc.net.route(m, node);
                    let boot = svc.boots[node];
                    for d in [route.first, route.dup].into_iter().flatten() {
                        let ev = Ev::Poke {
                            node,
                            boot,
                            leader: m,
                        };
                        self.q.push(at + d, StoreEv::Svc(ev));
                    }
                }
                LeaderEffect::SetTimer { after_ms, timer } => {
                    let ev = Ev::LeaderTimer { m, term, timer };
                    self.q.push(at + after_ms, StoreEv::Svc(ev));
                }
                LeaderEffect::Answer { session, answer } => {
                    let l = self.svc().leaders.get_mut(&m).expect("a live leader");
                    let Some(a) = l.sessions.remove(&session) else {
                        continue;
                    };
                    let reply = match answer {
                        SessionAnswer::Busy => Reply::Busy,
                        SessionAnswer::Assignments {
                            tasks, files, mesh, ..
                        } => {
                            if !files.is_empty() {
                                let state = self.ms[m].machine.as_ref().expect("up").state();
                                let why =
                                    secrets_held::judge_answer(state, node_id(a.from), &files);
                                let svc = self.svc();
                                svc.violation(why.map(|w| format!("(p) at {at} ms {w}")));
                                svc.report.secrets.answers_with_files += 1;
                                svc.report.secrets.files_sent += files.len() as u64;
                                self.svc_trace(
                                    at,
                                    a.from,
                                    TraceKind::FilesSent,
                                    files.len() as u64,
                                );
                            }
                            if let Some(table) = &mesh {
                                let l = self.svc().leaders.get(&m).expect("a live leader");
                                let down = l.down.clone();
                                let state = self.ms[m].machine.as_ref().expect("up").state();
                                let found = mesh_table::judge(state, &down, table);
                                let svc = self.svc();
                                for w in found {
                                    svc.violation(Some(format!("(r) at {at} ms {w}")));
                                }
                                let r = &mut svc.report.mesh;
                                r.tables_sent += 1;
                                r.services_max = r.services_max.max(table.services.len());
                                let backends = table.services.iter().map(|s| s.backends.len());
                                r.backends_max = r.backends_max.max(backends.sum());
                            }
                            Reply::Assignments(tasks, files.into(), mesh)
                        }
                    };
                    self.svc_reply(at, m, a.from, a.boot, a.seq, a.hop, reply);
                }
                LeaderEffect::Passed(summary) => {
                    let r = &mut self.svc().report;
                    r.passes += 1;
                    if !summary.ok {
                        r.passes_failed += 1;
                    }
                }
                LeaderEffect::ServicesChanged(_) => {}
            }
        }
    }

    /// A session request reaches manager `to`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn manager_session(
        &mut self,
        at: Millis,
        to: usize,
        from: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        (statuses, held, mesh_version): (Vec<(TaskId, TaskStatus)>, Vec<FileKey>, u64),
    ) {
        if !self.manager_up(to) {
            return; // lost with the manager; the agent's session times out
        }
        let leader_of = self.ms[to]
            .machine
            .as_ref()
            .and_then(|m| m.leader())
            .and_then(|rid| self.ms.iter().position(|mg| mg.raft_id == rid));
        let leading = self.ms[to].machine.as_ref().is_some_and(|m| m.is_leader());
        let reply = match self.svc().leaders.get_mut(&to) {
            Some(l) => {
                let session = l.next_session;
                l.next_session += 1;
                let asked = Asked {
                    from,
                    boot,
                    seq,
                    hop,
                };
                l.sessions.insert(session, asked);
                let term = l.term;
                let input = LeaderInput::Session {
                    session,
                    from: node_id(from),
                    statuses,
                    held,
                    mesh_version,
                };
                self.leader_feed(at, to, term, input);
                return;
            }
            None if leading => Reply::Busy,
            None => Reply::NotLeader(leader_of),
        };
        self.svc_reply(at, to, from, boot, seq, hop, reply);
    }

    /// Sends a session's answer from manager `to` back to node `from`.
    #[allow(clippy::too_many_arguments)]
    fn svc_reply(
        &mut self,
        at: Millis,
        to: usize,
        from: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        reply: Reply,
    ) {
        let svc = self.svc();
        let route = svc.net.route(to, from);
        for d in [route.first, route.dup].into_iter().flatten() {
            let ev = Ev::SessionReply {
                node: from,
                boot,
                seq,
                hop,
                from: to,
                reply: reply.clone(),
            };
            self.q.push(at + d, StoreEv::Svc(ev));
        }
    }
}

/// The task `t` as the store holds it, before the pass's write.
fn stored_task<'s>(state: &'s swarm_actors::store::StoreState, t: &Task) -> Option<&'s Task> {
    match state.get(Kind::Task, &t.id.to_string()).map(|o| &o.body) {
        Some(ObjectBody::Task(old)) => Some(old),
        _ => None,
    }
}
