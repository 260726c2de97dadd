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
//! A manager crashed with its disk restarts from what it synced; one crashed without its disk
//! comes back empty under a new raft ID (reusing the old one would let it vote twice), and the
//! sim's membership driver, playing the integrator, removes the old ID and adds the new one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use swarm_actors::model::NodeId;
use swarm_actors::store::{
    Bootstrap, ClusterObject, Expect, Kind, MemStorage, ObjectBody, Op, StoreCommand, StoreConfig,
    StoreEffect, StoreError, StoreInput, StoreMachine,
};

use crate::clock::{EventQueue, Millis};
use crate::config::SimConfig;
use crate::faults::{self, DUPLICATION_PCT, Fault};
use crate::invariants::{committed_never_lost, one_leader_per_term, store_liveness};
use crate::net::Network;
use crate::node::addr;
use crate::services::{self, Services, ServicesReport};
use crate::timeline::Batch;
use crate::trace::{DATAGRAM_PREFIX_BYTES, Trace, TraceKind};

/// Raft messages a paused manager holds until it resumes; later ones are lost.
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
    /// The services layer's figures (default when it is off).
    pub services: ServicesReport,
}

pub(crate) enum Ev {
    Tick {
        m: usize,
        epoch: u64,
    },
    Deliver {
        to: usize,
        /// The sender's raft ID, as the transport would prove it.
        from: u64,
        epoch: u64,
        msg: Vec<u8>,
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
    pub(crate) raft_id: u64,
    pub(crate) status: Status,
    epoch: u64,
    boot: u64,
    /// Messages held while paused: epoch, sender's raft ID, bytes.
    held: Vec<(u64, u64, Vec<u8>)>,
    timer_rate: f64,
}

pub(crate) struct StoreWorld {
    pub(crate) cfg: SimConfig,
    store_cfg: StoreConfig,
    pub(crate) q: EventQueue<Ev>,
    net: Network,
    pub(crate) ms: Vec<Manager>,
    /// What each crashed manager's disk holds until it restarts (`None`: lost).
    disks: BTreeMap<usize, Option<MemStorage>>,
    pub(crate) trace: Trace,
    rng: StdRng,
    liveness: bool,
    generation: u64,
    next_raft_id: u64,
    pub(crate) next_req: u64,
    next_obj: u64,
    leaders: one_leader_per_term::Leaders,
    committed: committed_never_lost::Committed,
    /// When the leader was crashed, waiting for the next committed write.
    leader_crashed_at: Option<Millis>,
    heal_at: Millis,
    report: StoreReport,
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
    let mut w = StoreWorld {
        cfg: cfg.clone(),
        store_cfg,
        q: EventQueue::default(),
        net: Network::new(cfg.seed ^ 0x5707_e000),
        ms: (0..m)
            .map(|i| Manager {
                machine: None,
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
        mgr.status = Status::Alive;
        let epoch = mgr.epoch;
        // Ticks start at a random phase, as real processes do.
        let phase = self.rng.random_range(0..self.store_cfg.tick_ms);
        let now = self.q.now();
        self.q.push(now + phase, Ev::Tick { m: i, epoch });
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
                    self.input(at, m, StoreInput::Tick);
                }
            }
            Ev::Deliver {
                to,
                from,
                epoch,
                msg,
            } => {
                let mgr = &mut self.ms[to];
                if mgr.epoch != epoch {
                    return;
                }
                match mgr.status {
                    Status::Crashed => {}
                    Status::Paused => {
                        if mgr.held.len() < HELD_MESSAGES_MAX {
                            mgr.held.push((epoch, from, msg));
                        }
                    }
                    Status::Alive => self.input(at, to, StoreInput::Message { from, bytes: msg }),
                }
            }
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
            Ev::Propose { m, req, cmd } => {
                if self.ms[m].machine.is_some() && self.ms[m].status != Status::Crashed {
                    self.input(at, m, StoreInput::Propose { req, cmd });
                } else {
                    self.svc_store_effect(at, m, Some(req), false, false);
                }
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

    fn workload(&mut self, at: Millis) {
        let Some(l) = self.leader() else {
            return;
        };
        let req = self.next_req;
        self.next_req += 1;
        let m = self.ms[l].machine.as_ref().expect("leader has a machine");
        let existing = m.state().list(Kind::Cluster).count() as u64;
        let op = if existing > 0 && self.rng.random_range(0..2) == 0 {
            // A compare-and-set update from the leader's (possibly stale) view.
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
        self.input(at, l, StoreInput::Propose { req, cmd });
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
        let req = self.next_req;
        self.next_req += 1;
        if let Some(&stale) = voters.iter().find(|v| !current.contains(v)) {
            self.input(
                at,
                l,
                StoreInput::RemoveVoter {
                    req,
                    raft_id: stale,
                },
            );
        } else if let Some(i) = (0..self.ms.len()).find(|&i| !voters.contains(&self.ms[i].raft_id))
        {
            let input = StoreInput::AddVoter {
                req,
                raft_id: self.ms[i].raft_id,
                node_id: NodeId(i as u128 + 1),
                addr: manager_addr(i),
            };
            self.input(at, l, input);
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
    fn crash(&mut self, _at: Millis, i: usize, keep_disk: bool) {
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
        let held = std::mem::take(&mut self.ms[i].held);
        for (_, from, bytes) in held {
            self.input(at, i, StoreInput::Message { from, bytes });
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

    fn violation(&mut self, v: Option<String>) {
        if let Some(v) = v
            && self.report.violations.len() < crate::invariants::REPORT_MAX
        {
            self.report.violations.push(v);
        }
    }

    fn input(&mut self, at: Millis, i: usize, input: StoreInput) {
        let kind = match &input {
            StoreInput::Tick => Some(TraceKind::StoreTick),
            StoreInput::Message { bytes: msg, .. } => {
                self.trace.event(at, i, TraceKind::RaftMessage);
                self.trace.u64(msg.len() as u64);
                self.trace
                    .bytes(&msg[..msg.len().min(DATAGRAM_PREFIX_BYTES)]);
                None
            }
            StoreInput::Propose { .. } => Some(TraceKind::Propose),
            StoreInput::ReadIndex { .. } => Some(TraceKind::ReadIndex),
            StoreInput::AddVoter { .. } => Some(TraceKind::AddVoter),
            StoreInput::RemoveVoter { .. } => Some(TraceKind::RemoveVoter),
        };
        if let Some(kind) = kind {
            self.trace.event(at, i, kind);
        }
        let Some(m) = self.ms[i].machine.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        m.handle(at, input, &mut out);
        let (raft_id, term, leading) = (m.raft_id(), m.term(), m.is_leader());
        let (applied, digest) = (m.state().applied_index(), m.state().digest());
        self.report.max_term = self.report.max_term.max(term);
        if leading {
            let v = self.leaders.observe(at, term, raft_id);
            self.violation(v);
        }
        let v = self.committed.observe(at, raft_id, applied, digest);
        self.violation(v);
        let epoch = self.ms[i].epoch;
        for e in out {
            let hook = match &e {
                StoreEffect::Applied { req, result, .. } => Some((*req, result.is_ok(), true)),
                StoreEffect::Refused { req, .. } => Some((Some(*req), false, false)),
                _ => None,
            };
            if let Some((req, ok, applied)) = hook
                && self.svc.is_some()
            {
                self.svc_store_effect(at, i, req, ok, applied);
            }
            match e {
                StoreEffect::Send { to, msg } => self.send(at, i, to, msg, epoch),
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
        if self.svc.is_some() {
            self.leader_changed(at, i);
        }
    }

    fn send(&mut self, _at: Millis, from: usize, to_raft: u64, msg: Vec<u8>, _epoch: u64) {
        let Some(to) = self.ms.iter().position(|m| m.raft_id == to_raft) else {
            return;
        };
        let route = self.net.route(from, to);
        let epoch = self.ms[to].epoch;
        let now = self.q.now();
        let from_raft = self.ms[from].raft_id;
        for delay in [route.first, route.dup].into_iter().flatten() {
            self.q.push(
                now + delay,
                Ev::Deliver {
                    to,
                    from: from_raft,
                    epoch,
                    msg: msg.clone(),
                },
            );
        }
    }
}

fn manager_addr(i: usize) -> SocketAddr {
    addr(i)
}
