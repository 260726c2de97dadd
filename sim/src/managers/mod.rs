//! The store layer of a run: M managers running [`StoreMachine`]s over [`MemStorage`] and the
//! simulated network, under the same kinds of fault as the membership layer, with a workload of
//! creates and compare-and-set updates.
//!
//! It runs as its own event loop beside the membership layer, on a second thread, from streams
//! of the same seed, so adding it did not disturb the membership layer's schedule. Its trace
//! hash is folded into the run's.
//!
//! ```text
//!   0 ─ manager 1 bootstraps; the others are added as voters ─ faults from 3 s ─┬─ heal ─ end
//!                  safety phase: (d) one leader per term, (e) committed never changes │
//!                                             liveness: (f) a write commits in bound ─┘
//! ```
//!
//! Every write goes through the runtime's request router of a manager, as in production
//! (`routing`): the operator's through a manager drawn from the run's stream, forwarded to
//! the leader over the simulated network.
//!
//! A manager crashed with its disk restarts from what it synced; one crashed without its disk
//! comes back empty under a new raft ID (reusing the old one would let it vote twice), and the
//! sim's membership driver, playing the integrator, removes the old ID and adds the new one.

mod routing;
pub mod services;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use swarm_actors::model::NodeId;
use swarm_actors::replica::router::{Router, RouterInput};
use swarm_actors::store::{
    Bootstrap, ClusterObject, Expect, Kind, MemStorage, ObjectBody, Op, StoreCommand, StoreConfig,
    StoreMachine,
};
use swarm_actors::wire::StoreRequest;

use crate::clock::{EventQueue, Millis};
use crate::config::SimConfig;
use crate::faults::{self, DUPLICATION_PCT, Fault};
use crate::invariants::{committed_never_lost, one_leader_per_term, store_liveness};
use crate::net::Network;
use crate::node::addr;
use crate::timeline::Batch;
use crate::trace::{Trace, TraceKind};
use routing::{Routing, Waiter};
use services::{Services, ServicesReport};

/// Inputs (raft messages, forwards, retries) a paused manager holds until it resumes; later
/// ones are lost.
pub const HELD_MESSAGES_MAX: usize = 4_096;
/// How often the membership driver adds or removes one voter.
const DRIVER_PERIOD_MS: Millis = 200;
/// After heal, how long until a write must have committed (invariant f).
pub const HEAL_WRITE_BOUND_MS: Millis = 10_000;

/// What the store layer reports.
#[derive(Clone, Debug, Default)]
pub struct StoreReport {
    pub trace_hash: u64,
    pub violations: Vec<String>,
    /// Virtual time from a crash of the leader to the next committed write.
    pub failover_ms: Vec<Millis>,
    pub writes_committed: u64,
    pub writes_refused: u64,
    pub max_term: u64,
    /// Time from heal to the first committed write of the liveness phase.
    pub heal_write_ms: Option<Millis>,
    /// Requests local clients routed (the operator's writes, the services layer's, the voter
    /// driver's), those answered with a failure, and the longest wait for an answer (paused
    /// time left out; invariant (k) bounds it).
    pub routed: u64,
    pub routed_failed: u64,
    pub routed_max_wait_ms: Millis,
    /// Forwards to the leader, and retries while an election ran or the leader was Down.
    pub forwards: u64,
    pub retries: u64,
    /// The services layer's figures (default when it is off).
    pub services: ServicesReport,
}

pub(crate) enum Ev {
    Tick {
        m: usize,
        epoch: u64,
    },
    /// An input for manager `m`'s router in its life `epoch`: a raft message, a request (a
    /// local client's, or a forward from another manager), a forward's answer, a retry.
    Route {
        m: usize,
        epoch: u64,
        input: RouterInput<Waiter>,
    },
    Fault(Fault),
    Restart {
        m: usize,
        epoch: u64,
    },
    Resume {
        m: usize,
        epoch: u64,
    },
    Heal {
        generation: u64,
    },
    LossEnd {
        generation: u64,
    },
    Workload,
    Driver,
    EndSafety,
    /// A proposal of the services layer, made from the queue so that the store machine is
    /// never re-entered from its own effects.
    Propose {
        m: usize,
        req: u64,
        cmd: StoreCommand,
    },
    Svc(services::Ev),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Alive,
    Paused,
    Crashed,
}

pub(crate) struct Manager {
    pub(crate) machine: Option<StoreMachine<MemStorage>>,
    /// The runtime's request router beside the machine; a new one at every boot.
    pub(crate) router: Router<Waiter>,
    pub(crate) raft_id: u64,
    pub(crate) status: Status,
    pub(crate) epoch: u64,
    boot: u64,
    /// Router inputs held while paused.
    pub(crate) held: Vec<RouterInput<Waiter>>,
    timer_rate: f64,
}

pub(crate) struct StoreWorld {
    pub(crate) cfg: SimConfig,
    store_cfg: StoreConfig,
    pub(crate) q: EventQueue<Ev>,
    pub(crate) net: Network,
    pub(crate) ms: Vec<Manager>,
    /// What each crashed manager's disk holds until it restarts (`None`: lost).
    disks: BTreeMap<usize, Option<MemStorage>>,
    pub(crate) trace: Trace,
    rng: StdRng,
    pub(crate) liveness: bool,
    generation: u64,
    next_raft_id: u64,
    pub(crate) next_req: u64,
    next_obj: u64,
    pub(crate) leaders: one_leader_per_term::Leaders,
    pub(crate) committed: committed_never_lost::Committed,
    /// When the leader was crashed, waiting for the next committed write.
    pub(crate) leader_crashed_at: Option<Millis>,
    pub(crate) heal_at: Millis,
    pub(crate) report: StoreReport,
    pub(crate) routing: Routing,
    /// The services layer, when the run has one.
    pub(crate) svc: Option<Services>,
}

/// Sequence numbers set aside for the timeline's changes: far more than a run records.
const TIMELINE_CHANGES_MAX: u64 = 1 << 40;

/// Runs the store layer of `cfg` to the end, with the services layer on it when `timeline`
/// (what the membership loop does, in batches as it runs) is given.
pub fn run(cfg: &SimConfig, timeline: Option<Receiver<Batch>>) -> StoreReport {
    let m = cfg.managers;
    assert!((1..=7).contains(&m), "1..=7 managers");
    let store_cfg = StoreConfig {
        // Small enough that snapshots, compaction and catch-up from a snapshot happen in a run.
        snapshot_every_entries: 200,
        ..StoreConfig::default()
    };
    let tick_ms = store_cfg.tick_ms;
    let mut w = StoreWorld {
        cfg: cfg.clone(),
        store_cfg,
        q: EventQueue::default(),
        net: Network::new(cfg.seed ^ 0x5707_e000),
        ms: (0..m)
            .map(|i| Manager {
                machine: None,
                router: Router::default(),
                raft_id: i as u64 + 1,
                status: Status::Crashed,
                epoch: 0,
                boot: 0,
                held: Vec::new(),
                timer_rate: 1.0,
            })
            .collect(),
        disks: BTreeMap::new(),
        trace: Trace::default(),
        rng: StdRng::seed_from_u64(cfg.seed ^ 0x5707_e5eed),
        liveness: false,
        generation: 0,
        next_raft_id: m as u64 + 1,
        next_req: 1,
        next_obj: 0,
        leaders: Default::default(),
        committed: Default::default(),
        leader_crashed_at: None,
        heal_at: cfg.duration_ms,
        report: StoreReport::default(),
        routing: Routing::new(m, tick_ms),
        svc: timeline
            .as_ref()
            .map(|_| Services::new(cfg.seed, cfg.nodes, m)),
    };
    w.start();
    // The timeline's changes sort after the events queued so far and before any queued later,
    // whenever they arrive (see `timeline`).
    let mut next_change = w.q.reserve(TIMELINE_CHANGES_MAX);
    if w.svc.is_some() {
        w.svc_start();
    }
    let end = cfg.duration_ms + cfg.heal_ms;
    // Every change before `upto` is queued.
    let mut upto = if timeline.is_some() { 0 } else { Millis::MAX };
    loop {
        let next = w.q.peek_at().unwrap_or(Millis::MAX).min(end);
        while upto <= next {
            let Some(batch) = timeline.as_ref().and_then(|rx| rx.recv().ok()) else {
                // The membership loop is gone without its last batch: it panicked, and its
                // thread's panic is what the run reports.
                return w.report;
            };
            for (at, change) in batch.changes {
                w.q.push_as(at, next_change, Ev::Svc(services::Ev::Timeline(change)));
                next_change += 1;
            }
            if let Some(svc) = w.svc.as_mut() {
                svc.gone_for_good.extend(batch.gone_for_good);
            }
            upto = batch.upto;
        }
        let Some((at, ev)) = w.q.pop_until(end) else {
            break;
        };
        w.step(at, ev);
    }
    if w.report.heal_write_ms.is_none() {
        w.violation(store_liveness::no_write(w.heal_at, end));
    }
    w.route_finish(end);
    if w.svc.is_some() {
        for v in w.svc_finish(end) {
            w.violation(Some(v));
        }
        w.report.services = w.svc.as_ref().expect("on").report.clone();
    }
    w.report.trace_hash = w.trace.hash();
    w.report
}

fn obj_body(n: u64) -> ObjectBody {
    ObjectBody::Cluster(ClusterObject {
        ca_cert_der: n.to_le_bytes().to_vec(),
        ca_key_pem: String::new(),
        worker_token: format!("w{n}"),
        manager_token: String::new(),
        rotation: None,
        unlock_key: None,
    })
}

impl StoreWorld {
    fn start(&mut self) {
        let first = Bootstrap::NewCluster {
            node_id: NodeId(1),
            addr: addr(0),
        };
        self.boot(0, MemStorage::new(), first);
        for i in 1..self.ms.len() {
            self.boot(i, MemStorage::new(), Bootstrap::Join);
        }
        // Managers crash at most a minority at a time, so the plan is drawn for them alone.
        let plan = faults::plan(
            self.cfg.seed ^ 0x5707_fa17,
            self.ms.len(),
            self.cfg.faults,
            self.cfg.duration_ms,
        );
        for (at, f) in plan {
            self.q.push(at, Ev::Fault(f));
        }
        self.q.push(DRIVER_PERIOD_MS, Ev::Driver);
        self.q.push(500, Ev::Workload);
        self.q.push(self.cfg.duration_ms, Ev::EndSafety);
    }

    fn boot(&mut self, i: usize, disk: MemStorage, how: Bootstrap) {
        let mgr = &mut self.ms[i];
        mgr.boot += 1;
        let seed = self.cfg.seed ^ ((i as u64) << 24) ^ (mgr.boot << 48) ^ 0x5707;
        let machine = StoreMachine::new(mgr.raft_id, disk, self.store_cfg.clone(), seed, how)
            .expect("the simulator's store config is valid");
        mgr.machine = Some(machine);
        mgr.router = Router::default();
        mgr.status = Status::Alive;
        let epoch = mgr.epoch;
        // Ticks start at a random phase, as real processes do.
        let phase = self.rng.random_range(0..self.store_cfg.tick_ms);
        let now = self.q.now();
        self.q.push(now + phase, Ev::Tick { m: i, epoch });
        self.route_boot(i);
    }

    fn step(&mut self, at: Millis, ev: Ev) {
        match ev {
            Ev::Tick { m, epoch } => {
                if self.ms[m].epoch != epoch || self.ms[m].status == Status::Crashed {
                    return;
                }
                let next =
                    (self.store_cfg.tick_ms as f64 * self.ms[m].timer_rate).round() as Millis;
                self.q.push(at + next.max(1), Ev::Tick { m, epoch });
                if self.ms[m].status == Status::Alive {
                    self.route(at, m, RouterInput::Tick);
                }
            }
            Ev::Route { m, epoch, input } => self.route_arrive(at, m, epoch, input),
            Ev::Fault(f) => self.strike(at, f),
            Ev::Restart { m, epoch } => {
                if self.ms[m].status == Status::Crashed && self.ms[m].epoch == epoch {
                    self.restart(m);
                }
            }
            Ev::Resume { m, epoch } => {
                if self.ms[m].status == Status::Paused && self.ms[m].epoch == epoch {
                    self.resume(at, m);
                }
            }
            Ev::Heal { generation } => {
                if generation == self.generation {
                    self.net.set_partition(None);
                }
            }
            Ev::LossEnd { generation } => {
                if generation == self.generation {
                    self.net.set_loss(0);
                }
            }
            Ev::Workload => {
                let gap = self.rng.random_range(50..=150);
                self.q.push(at + gap, Ev::Workload);
                self.workload(at);
            }
            Ev::Driver => {
                self.q.push(at + DRIVER_PERIOD_MS, Ev::Driver);
                self.drive_voters(at);
            }
            Ev::EndSafety => self.end_safety(at),
            // Through the manager's router: a pass of a leader that lost its leadership is
            // forwarded to the new one, as the real leader actor's StoreHandle does.
            Ev::Propose { m, req, cmd } => {
                self.route_request(at, m, StoreRequest::Propose(cmd), Some(req))
            }
            Ev::Svc(e) => self.svc_step(at, e),
        }
    }

    pub(crate) fn leader(&self) -> Option<usize> {
        // The newest-term leader among live managers: a deposed one may not know it yet.
        (0..self.ms.len())
            .filter(|&i| self.ms[i].status == Status::Alive)
            .filter_map(|i| {
                let m = self.ms[i].machine.as_ref()?;
                m.is_leader().then_some((m.term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// The operator writes through a manager drawn from the run's stream, not always the
    /// leader: its router forwards the write, or retries it while an election runs.
    fn workload(&mut self, at: Millis) {
        let up: Vec<usize> = (0..self.ms.len())
            .filter(|&i| self.ms[i].status != Status::Crashed && self.ms[i].machine.is_some())
            .collect();
        if up.is_empty() {
            return;
        }
        let l = up[self.rng.random_range(0..up.len())];
        let req = self.next_req;
        self.next_req += 1;
        let m = self.ms[l]
            .machine
            .as_ref()
            .expect("a live manager has a machine");
        let existing = m.state().list(Kind::Cluster).count() as u64;
        let op = if existing > 0 && self.rng.random_range(0..2) == 0 {
            // A compare-and-set update from that manager's (possibly stale) view.
            let pick = self.rng.random_range(0..existing) as usize;
            let o = m
                .state()
                .list(Kind::Cluster)
                .nth(pick)
                .expect("picked within the count");
            Op::Put {
                kind: Kind::Cluster,
                id: o.id.clone(),
                expect: Expect::Version(o.version),
                body: obj_body(req),
            }
        } else {
            self.next_obj += 1;
            Op::Put {
                kind: Kind::Cluster,
                id: format!("o{}", self.next_obj),
                expect: Expect::Absent,
                body: obj_body(req),
            }
        };
        let cmd = StoreCommand {
            now_ms: at,
            ops: vec![op],
        };
        self.route_request(at, l, StoreRequest::Propose(cmd), None);
    }

    /// Plays the integrator: keeps the voters equal to the managers' current raft IDs, one
    /// change at a time.
    fn drive_voters(&mut self, at: Millis) {
        let Some(l) = self.leader() else {
            return;
        };
        let voters = self.ms[l]
            .machine
            .as_ref()
            .map(|m| m.voters())
            .unwrap_or_default();
        let current: Vec<u64> = self.ms.iter().map(|m| m.raft_id).collect();
        if let Some(&stale) = voters.iter().find(|v| !current.contains(v)) {
            let op = StoreRequest::RemoveVoter { raft_id: stale };
            self.route_request(at, l, op, None);
        } else if let Some(i) = (0..self.ms.len()).find(|&i| !voters.contains(&self.ms[i].raft_id))
        {
            let op = StoreRequest::AddVoter {
                raft_id: self.ms[i].raft_id,
                node_id: NodeId(i as u128 + 1),
                addr: manager_addr(i),
            };
            self.route_request(at, l, op, None);
        }
    }

    fn strike(&mut self, at: Millis, fault: Fault) {
        if self.liveness {
            return;
        }
        let n = self.ms.len();
        self.trace.event(at, n, TraceKind::Fault);
        match fault {
            Fault::Crash {
                node,
                restart_after_ms,
            } => {
                let down = self
                    .ms
                    .iter()
                    .filter(|m| m.status == Status::Crashed)
                    .count();
                if self.ms[node].status == Status::Crashed || down + 1 > (n - 1) / 2 {
                    return;
                }
                let was_leader = self.leader() == Some(node);
                // Losing a disk is survivable only while the rest hold a full, current
                // configuration; a second loss before the first is replaced could take a
                // committed entry's every copy, which no consensus protocol survives.
                let keep_disk = self.rng.random_range(0..100) < 70 || !self.config_complete();
                self.crash(at, node, keep_disk);
                if was_leader && self.leader_crashed_at.is_none() {
                    self.leader_crashed_at = Some(at);
                }
                // Every manager comes back (at the latest when the cluster heals).
                let after = restart_after_ms.unwrap_or(self.cfg.duration_ms);
                let epoch = self.ms[node].epoch;
                self.q.push(at + after, Ev::Restart { m: node, epoch });
            }
            Fault::Pause { node, for_ms } => {
                if self.ms[node].status != Status::Alive {
                    return;
                }
                self.ms[node].status = Status::Paused;
                self.routing.paused(at, node);
                let epoch = self.ms[node].epoch;
                self.q.push(at + for_ms, Ev::Resume { m: node, epoch });
            }
            Fault::Partition { partition, for_ms } => {
                self.generation += 1;
                self.net.set_partition(Some(partition));
                let generation = self.generation;
                self.q.push(at + for_ms, Ev::Heal { generation });
            }
            Fault::Loss { pct, for_ms } => {
                self.generation += 1;
                self.net.set_loss(pct);
                self.net.set_duplication(DUPLICATION_PCT);
                let generation = self.generation;
                self.q.push(at + for_ms, Ev::LossEnd { generation });
            }
            Fault::Skew { node, rate, .. } => self.ms[node].timer_rate = rate,
        }
    }

    /// Whether the voters are exactly the managers' current raft IDs, all up.
    fn config_complete(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let mut current: Vec<u64> = self.ms.iter().map(|m| m.raft_id).collect();
        current.sort_unstable();
        let voters = self.ms[l].machine.as_ref().map(|m| m.voters());
        let all_up = self.ms.iter().all(|m| m.status != Status::Crashed);
        all_up && voters == Some(current)
    }

    /// The disk a crashed manager keeps: what it synced, or nothing.
    fn crash(&mut self, at: Millis, i: usize, keep_disk: bool) {
        let mgr = &mut self.ms[i];
        let disk = mgr
            .machine
            .take()
            .map(|m| m.storage().clone().crash(keep_disk));
        mgr.status = Status::Crashed;
        mgr.epoch += 1;
        mgr.held.clear();
        if !keep_disk {
            // Its votes and log are gone: it must come back as a new member.
            mgr.raft_id = self.next_raft_id;
            self.next_raft_id += 1;
        }
        self.disks.insert(i, disk.filter(|_| keep_disk));
        self.route_crash(at, i);
        if self.svc.is_some() {
            self.leader_changed(self.q.now(), i);
        }
    }

    fn restart(&mut self, i: usize) {
        let disk = self.disks.remove(&i).flatten();
        match disk {
            Some(d) => self.boot(i, d, Bootstrap::Restart),
            None => self.boot(i, MemStorage::new(), Bootstrap::Join),
        }
    }

    fn resume(&mut self, at: Millis, i: usize) {
        self.ms[i].status = Status::Alive;
        self.routing.resumed(at, i);
        let held = std::mem::take(&mut self.ms[i].held);
        for input in held {
            self.route(at, i, input);
        }
    }

    fn end_safety(&mut self, at: Millis) {
        self.liveness = true;
        if self.svc.is_some() {
            self.svc_end_safety(at);
        }
        self.heal_at = at;
        self.generation += 1;
        self.net.set_partition(None);
        self.net.set_loss(0);
        self.net.set_duplication(0);
        for i in 0..self.ms.len() {
            self.ms[i].timer_rate = 1.0;
            match self.ms[i].status {
                Status::Paused => self.resume(at, i),
                Status::Crashed => self.restart(i),
                Status::Alive => {}
            }
        }
    }

    pub(crate) fn violation(&mut self, v: Option<String>) {
        if let Some(v) = v
            && self.report.violations.len() < crate::invariants::REPORT_MAX
        {
            self.report.violations.push(v);
        }
    }
}

fn manager_addr(i: usize) -> SocketAddr {
    addr(i)
}
