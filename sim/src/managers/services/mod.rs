//! The services layer: the leader's passes, the node agents' sessions and the task machines,
//! driven on top of the simulated raft store.
//!
//! ```text
//!  membership loop ── Timeline (views, worker crashes/pauses, network) ──┐ replayed
//!                                                                        ▼
//!  operator (workload.rs; updates.rs: service update, rollback, --force) ── Propose(service/
//!     node writes) ──▶ a manager's router (routing.rs)
//!  leader (leader.rs), on the raft leader manager: the real LeaderMachine, its effects as
//!     events: Read ─▶ its local store lent in place; Propose ─▶ the store (chunked, CAS);
//!     Poke / Answer ─▶ over the network; SetTimer ─▶ a LeaderTimer event
//!  agent (agent.rs), on every worker: the real AgentMachine, its effects as events:
//!     every SESSION_INTERVAL_MS, on a poke, on a status change:
//!     OpenSession(statuses the store lacks, files held) ─ network ─▶ manager ─▶ leader /
//!     NotLeader / Busy ◀─ outcome (tasks, files) to the machine ─▶ StartTask: a TaskMachine,
//!     ShutdownTask, StopTask: drop it; HoldFiles / DropFiles: the node's simulated vault
//!  runtime (runtime.rs): the machines' runtime commands come back as events after delays
//! ```
//!
//! The leader's decisions are the real `LeaderMachine`'s (`actors/src/leader/machine.rs`) and
//! the agents' the real `AgentMachine`'s (`actors/src/agent/machine.rs`); `leader.rs` and
//! `agent.rs` only wire their effects to simulated events, and each task runs the real
//! `TaskMachine`. Where the wiring simplifies, the file says so.
//!
//! Invariants (g) one task per slot, (h) placement, (i) convergence, (j) orphans, and the
//! rolling updates' (l) parallelism, (m) failed update rolled back, (n) pause holds, (o)
//! convergence to the current spec, and (p) secrets held are in `crate::invariants`; this
//! module feeds them.

mod agent;
mod leader;
mod networks;
mod runtime;
mod updates;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use swarm_actors::model::{FileKey, NodeId, TaskId, TaskStatus};
use swarm_actors::task::{RuntimeEvent, TaskTimer};

use crate::clock::Millis;
use crate::invariants::{convergence, one_task_per_slot};
use crate::managers::{Ev as StoreEv, Status as MgrStatus, StoreWorld};
use crate::net::Network;
use crate::node::node_id;
use crate::timeline::Change;
use crate::trace::TraceKind;

pub use agent::Agent;
pub use leader::LeaderSim;

/// Agent events a paused node holds until it resumes; later ones are lost.
pub const HELD_EVENTS_MAX: usize = 4_096;
/// How often convergence is looked at in the liveness phase.
pub const CHECK_INTERVAL_MS: Millis = 500;

/// What the services layer reports.
#[derive(Clone, Debug, Default)]
pub struct ServicesReport {
    pub passes: u64,
    pub pass_ops: u64,
    pub passes_failed: u64,
    pub tasks_created: u64,
    pub tasks_placed: u64,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub tasks_started: u64,
    /// Task machines that ended FAILED or REJECTED (runtime faults, health, lost with a node).
    pub tasks_failed: u64,
    pub secrets: SecretsReport,
    pub operator_writes: u64,
    pub operator_refused: u64,
    /// At the end: services in the store and tasks RUNNING on the agents.
    pub services_at_end: usize,
    pub running_at_end: usize,
    /// Time from heal until every service was converged (invariant i).
    pub converged_ms: Option<Millis>,
    pub updates: UpdatesReport,
    pub mesh: MeshReport,
    /// Tasks the passes held back for a dependency (`depends_on`), summed over passes: a task
    /// waiting through three passes counts three times.
    pub gated: u64,
}

/// Task addresses and the routing mesh's tables.
#[derive(Clone, Debug, Default)]
pub struct MeshReport {
    /// Tasks given an ingress address in a committed write.
    pub addressed: u64,
    /// Tasks given overlay network addresses in a pass's plan.
    pub attached: u64,
    /// Answers that carried a table, and the tables agents took as new.
    pub tables_sent: u64,
    pub tables_received: u64,
    /// The most services and backends one table sent listed.
    pub services_max: usize,
    pub backends_max: usize,
}

/// Secrets and configs on their way to nodes.
#[derive(Clone, Debug, Default)]
pub struct SecretsReport {
    /// Answers that carried files, and the files in them.
    pub answers_with_files: u64,
    pub files_sent: u64,
    /// Files the agents kept (`HoldFiles`) and dropped (`DropFiles`).
    pub held: u64,
    pub dropped: u64,
    /// Tasks started that name a file.
    pub tasks_with_files: u64,
    /// Most files one node held at once.
    pub node_held_max: usize,
}

/// The operator's updates (committed, as the operator was told) and where they stood at the end.
#[derive(Clone, Debug, Default)]
pub struct UpdatesReport {
    pub good: u64,
    pub failing: u64,
    pub rollbacks: u64,
    pub forced: u64,
    /// Services at the end by update state: completed, paused, rollback completed, rollback
    /// paused, still rolling (updating or rollback started), never updated.
    pub completed: usize,
    pub paused: usize,
    pub rollback_completed: usize,
    pub rollback_paused: usize,
    pub rolling: usize,
    pub none: usize,
}

/// An answer to a session, as the transport would carry it.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A node's list, shared with the leader machine's copy: a reply (and its duplicate) is
    /// not a copy; and the files sent with it.
    Assignments(
        Arc<[swarm_actors::wire::Assignment]>,
        Arc<[swarm_actors::model::FileMaterial]>,
        Option<Arc<swarm_actors::wire::MeshTable>>,
    ),
    NotLeader(Option<usize>),
    Busy,
}

/// The services layer's events (inside the store loop's queue).
#[derive(Clone, Debug)]
pub enum Ev {
    Timeline(Change),
    /// A timer manager `m`'s leader machine set came due.
    LeaderTimer {
        m: usize,
        term: u64,
        timer: swarm_actors::leader::LeaderTimer,
    },
    /// The read a pass of manager `m`'s leader asked for.
    LeaderRead {
        m: usize,
        term: u64,
        /// The first pass of a term: served once the leader applied its term's first entry.
        linearizable: bool,
    },
    /// A proposal of a pass came back (deferred so that the store is not re-entered).
    LeaderProposed {
        m: usize,
        term: u64,
        ok: bool,
    },
    AgentTick {
        node: usize,
        boot: u64,
    },
    /// A session request arriving at manager `to`; `hop` 0 or 1 (one redirect is followed).
    SessionArrive {
        to: usize,
        from: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        statuses: Vec<(TaskId, TaskStatus)>,
        held: Vec<FileKey>,
        mesh_version: u64,
    },
    SessionReply {
        node: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        from: usize,
        reply: Reply,
    },
    SessionTimeout {
        node: usize,
        boot: u64,
        seq: u64,
    },
    Poke {
        node: usize,
        boot: u64,
        leader: usize,
    },
    Runtime {
        node: usize,
        boot: u64,
        task: TaskId,
        event: RuntimeEvent,
    },
    TaskTimer {
        node: usize,
        boot: u64,
        task: TaskId,
        timer: TaskTimer,
    },
    Workload,
    Check,
}

/// Who waits for a proposal.
enum Waiter {
    Pass {
        m: usize,
        term: u64,
    },
    /// The operator, and which update the write is when it is one.
    Operator(Option<updates::UpdateKind>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    Down,
    Alive,
    Paused,
}

pub struct Services {
    net: Network,
    /// Runtime delays and task fates.
    runtime_rng: StdRng,
    workload_rng: StdRng,
    life: Vec<Life>,
    /// Grows at every start of a node: events of an earlier life are dropped.
    boots: Vec<u64>,
    pub(crate) gone_for_good: BTreeSet<usize>,
    /// Per manager, the nodes its membership sees Up.
    views: Vec<BTreeSet<usize>>,
    /// Per manager, the nodes its membership declared Down (and has not seen Up since).
    downs: Vec<BTreeSet<usize>>,
    leaders: BTreeMap<usize, LeaderSim>,
    agents: Vec<Option<Agent>>,
    /// How deep agent inputs nest (a start's status is fed while the answer's effects are
    /// carried out): (p2) is judged when the outermost one is done.
    agent_depth: u32,
    held: Vec<Vec<Ev>>,
    waiting: BTreeMap<u64, Waiter>,
    registered: bool,
    liveness: bool,
    heal_at: Millis,
    violations: Vec<String>,
    pub report: ServicesReport,
}

impl Services {
    pub fn new(seed: u64, nodes: usize, managers: usize) -> Self {
        Services {
            net: Network::new(seed ^ 0x5e55_1045),
            runtime_rng: StdRng::seed_from_u64(seed ^ 0x7a5c_0de5),
            workload_rng: StdRng::seed_from_u64(seed ^ 0x0be7_a702),
            life: vec![Life::Down; nodes],
            boots: vec![0; nodes],
            gone_for_good: BTreeSet::new(),
            views: vec![BTreeSet::new(); managers],
            downs: vec![BTreeSet::new(); managers],
            leaders: BTreeMap::new(),
            agents: (0..nodes).map(|_| None).collect(),
            agent_depth: 0,
            held: vec![Vec::new(); nodes],
            waiting: BTreeMap::new(),
            registered: false,
            liveness: false,
            heal_at: 0,
            violations: Vec::new(),
            report: ServicesReport::default(),
        }
    }

    fn violation(&mut self, v: Option<String>) {
        if let Some(v) = v
            && self.violations.len() < crate::invariants::REPORT_MAX
        {
            self.violations.push(v);
        }
    }
}

/// Node `i`'s index back from its ID, within the run.
fn index(id: NodeId, nodes: usize) -> Option<usize> {
    crate::node::index_of(id).filter(|&i| i < nodes)
}

impl StoreWorld {
    fn svc(&mut self) -> &mut Services {
        self.svc.as_mut().expect("the services layer is on")
    }

    /// Queues the layer's first events (the timeline's changes are queued as they arrive).
    pub(crate) fn svc_start(&mut self) {
        self.q.push(500, StoreEv::Svc(Ev::Workload));
        self.q.push(self.cfg.duration_ms, StoreEv::Svc(Ev::Check));
    }

    pub(crate) fn svc_step(&mut self, at: Millis, ev: Ev) {
        // Events of a node's agent wait while the node is paused.
        if let Some(node) = agent_of(&ev) {
            let svc = self.svc();
            if svc.life[node] == Life::Paused {
                if svc.held[node].len() < HELD_EVENTS_MAX {
                    svc.held[node].push(ev);
                }
                return;
            }
        }
        match ev {
            Ev::Timeline(c) => self.svc_timeline(at, c),
            ev @ (Ev::LeaderTimer { .. } | Ev::LeaderRead { .. } | Ev::LeaderProposed { .. }) => {
                self.leader_event(at, ev)
            }
            Ev::SessionArrive {
                to,
                from,
                boot,
                seq,
                hop,
                statuses,
                held,
                mesh_version,
            } => {
                let report = (statuses, held, mesh_version);
                self.manager_session(at, to, from, boot, seq, hop, report)
            }
            Ev::SessionReply {
                node,
                boot,
                seq,
                hop,
                from,
                reply,
            } => self.agent_reply(at, node, boot, seq, hop, from, reply),
            Ev::SessionTimeout { node, boot, seq } => self.agent_timeout(at, node, boot, seq),
            Ev::Poke { node, boot, leader } => self.agent_poke(at, node, boot, leader),
            Ev::AgentTick { node, boot } => self.agent_tick(at, node, boot),
            Ev::Runtime {
                node,
                boot,
                task,
                event,
            } => self.agent_runtime(at, node, boot, task, event),
            Ev::TaskTimer {
                node,
                boot,
                task,
                timer,
            } => self.agent_timer(at, node, boot, task, timer),
            Ev::Workload => self.operator(at),
            Ev::Check => self.svc_check(at),
        }
    }

    fn svc_timeline(&mut self, at: Millis, change: Change) {
        let managers = self.ms.len();
        match change {
            Change::View {
                observer,
                subject,
                up,
            } => {
                let svc = self.svc();
                let (views, downs) = (&mut svc.views[observer], &mut svc.downs[observer]);
                let changed = if up {
                    views.insert(subject) | downs.remove(&subject)
                } else {
                    views.remove(&subject) | downs.insert(subject)
                };
                if changed {
                    self.leader_member_changed(at, observer, subject);
                }
            }
            // Managers' crashes and pauses are the store loop's; the timeline has none.
            Change::Start(i) if i >= managers => self.agent_boot(at, i),
            Change::Crash(i) if i >= managers => {
                let svc = self.svc();
                svc.life[i] = Life::Down;
                svc.agents[i] = None;
                svc.held[i].clear();
            }
            Change::Pause(i) if i >= managers => self.svc().life[i] = Life::Paused,
            Change::Resume(i) if i >= managers => {
                let svc = self.svc();
                svc.life[i] = Life::Alive;
                for ev in std::mem::take(&mut svc.held[i]) {
                    self.q.push(at, StoreEv::Svc(ev));
                }
            }
            Change::Start(_) | Change::Crash(_) | Change::Pause(_) | Change::Resume(_) => {}
            Change::Partition(p) => self.svc().net.set_partition(p),
            Change::Loss(pct) => self.svc().net.set_loss(pct),
            Change::Duplication(pct) => self.svc().net.set_duplication(pct),
        }
    }

    /// A store effect on manager `i`: an entry applied (`applied`; `ok` is its result and `req`
    /// is set on the proposer), or a proposal refused (`ok` false).
    pub(crate) fn svc_store_effect(
        &mut self,
        at: Millis,
        i: usize,
        req: Option<u64>,
        ok: bool,
        applied: bool,
    ) {
        if let Some(req) = req
            && let Some(w) = self.svc().waiting.remove(&req)
        {
            match w {
                Waiter::Pass { m, term } => {
                    self.q
                        .push(at, StoreEv::Svc(Ev::LeaderProposed { m, term, ok }));
                }
                Waiter::Operator(kind) => {
                    let r = &mut self.svc().report;
                    if ok {
                        r.operator_writes += 1;
                        let u = &mut r.updates;
                        match kind {
                            Some(updates::UpdateKind::Good) => u.good += 1,
                            Some(updates::UpdateKind::Failing) => u.failing += 1,
                            Some(updates::UpdateKind::Rollback) => u.rollbacks += 1,
                            Some(updates::UpdateKind::Force) => u.forced += 1,
                            None => {}
                        }
                    } else {
                        r.operator_refused += 1;
                    }
                }
            }
        }
        if applied {
            if let Some(m) = self.ms[i].machine.as_ref() {
                let v = one_task_per_slot::check_store(at, i, m.state());
                self.svc().violation(v);
            }
            self.leader_applied(at, i);
        }
    }

    /// Proposes `ops` on manager `m` for `waiter`, from the queue.
    fn svc_propose(
        &mut self,
        at: Millis,
        m: usize,
        ops: Vec<swarm_actors::store::Op>,
        waiter: Waiter,
    ) {
        let req = self.next_req;
        self.next_req += 1;
        self.svc().waiting.insert(req, waiter);
        let cmd = swarm_actors::store::StoreCommand { now_ms: at, ops };
        // Deferred: a proposal can commit at once, and its effects come back into this layer.
        self.q.push(at, StoreEv::Propose { m, req, cmd });
    }

    /// Whether manager `m` runs and is not paused.
    fn manager_up(&self, m: usize) -> bool {
        self.ms[m].status == MgrStatus::Alive && self.ms[m].machine.is_some()
    }

    pub(crate) fn svc_end_safety(&mut self, at: Millis) {
        let svc = self.svc();
        svc.liveness = true;
        svc.heal_at = at;
    }

    fn svc_check(&mut self, at: Millis) {
        self.q.push(at + CHECK_INTERVAL_MS, StoreEv::Svc(Ev::Check));
        let settled = at >= self.cfg.duration_ms + one_task_per_slot::SETTLE_MS;
        if settled {
            let v = one_task_per_slot::check_machines(at, &self.svc().agents);
            self.svc().violation(v);
        }
        if self.svc().report.converged_ms.is_none() && self.svc_converged(None).is_none() {
            let heal = self.svc().heal_at;
            self.svc().report.converged_ms = Some(at - heal);
        }
    }

    /// What keeps the services from being converged now, or `None`; with `ended`, the
    /// end-of-run checks ((m)) add their violations to it.
    fn svc_converged(&self, ended: Option<&mut Vec<String>>) -> Option<convergence::NotConverged> {
        let svc = self.svc.as_ref().expect("on");
        let Some(l) = self.leader() else {
            return Some(convergence::NotConverged {
                letter: "i",
                why: "no leader".into(),
            });
        };
        let state = self.ms[l].machine.as_ref().expect("leader").state();
        let live: BTreeSet<NodeId> = (0..svc.life.len())
            .filter(|i| svc.life[*i] != Life::Down && !svc.gone_for_good.contains(i))
            .map(node_id)
            .collect();
        convergence::check(state, &live, &svc.agents, ended)
    }

    /// Ends the layer: the last checks and figures. Returns its violations.
    pub(crate) fn svc_finish(&mut self, end: Millis) -> Vec<String> {
        let bound = convergence::BOUND_MS;
        let heal = self.svc().heal_at;
        let mut ended = Vec::new();
        let now_wrong = self.svc_converged(Some(&mut ended));
        self.svc_update_figures();
        let svc = self.svc();
        let v = convergence::verdict(heal, end, bound, svc.report.converged_ms, now_wrong);
        svc.violation(v);
        for v in ended {
            svc.violation(Some(v));
        }
        svc.report.running_at_end = svc
            .agents
            .iter()
            .flatten()
            .map(Agent::running)
            .sum::<usize>();
        // The services' end state enters the trace: which task runs where.
        for (i, a) in self.svc.as_ref().expect("on").agents.iter().enumerate() {
            for r in a.iter().flat_map(|a| a.running_tasks()) {
                self.trace.u64(i as u64);
                self.trace.u64(r.task.0 as u64);
            }
        }
        let services = self.leader().map_or(0, |l| {
            let m = self.ms[l].machine.as_ref().expect("leader");
            m.state().list(swarm_actors::store::Kind::Service).count()
        });
        let svc = self.svc();
        svc.report.services_at_end = services;
        std::mem::take(&mut svc.violations)
    }

    /// Counts the services by update state at the end.
    fn svc_update_figures(&mut self) {
        let Some(l) = self.leader() else {
            return;
        };
        let state = self.ms[l].machine.as_ref().expect("leader").state();
        let mut u = self.svc.as_ref().expect("on").report.updates.clone();
        for o in state.list(swarm_actors::store::Kind::Service) {
            let swarm_actors::store::ObjectBody::Service(s) = &o.body else {
                continue;
            };
            use swarm_actors::model::UpdateState as U;
            match s.update_status.as_ref().map(|u| u.state) {
                None => u.none += 1,
                Some(U::Completed) => u.completed += 1,
                Some(U::Paused) => u.paused += 1,
                Some(U::RollbackCompleted) => u.rollback_completed += 1,
                Some(U::RollbackPaused) => u.rollback_paused += 1,
                Some(U::Updating | U::RollbackStarted) => u.rolling += 1,
            }
        }
        self.svc().report.updates = u;
    }

    /// Hashes a services event into the trace.
    fn svc_trace(&mut self, at: Millis, node: usize, kind: TraceKind, v: u64) {
        self.trace.event(at, node, kind);
        self.trace.u64(v);
    }
}

/// The node whose agent an event belongs to.
fn agent_of(ev: &Ev) -> Option<usize> {
    match ev {
        Ev::AgentTick { node, .. }
        | Ev::SessionReply { node, .. }
        | Ev::SessionTimeout { node, .. }
        | Ev::Poke { node, .. }
        | Ev::Runtime { node, .. }
        | Ev::TaskTimer { node, .. } => Some(*node),
        _ => None,
    }
}
