//! One simulated run: boot the cluster, inject faults in the safety phase, heal, check.
//!
//! ```text
//!   0 ─ boot (staggered) ─ faults from 3 s ─┬─ duration: heal everything ─ settle ─┬─ end
//!                safety phase               │        liveness phase (b) checked ───┘
//!                                           └─ crashed nodes restart  (a), (c) checked at end
//! ```
//!
//! Every node's machine gets its RNG seed from the run's seed and its index and boot, the
//! network and the fault plan get their own streams, so one seed decides the whole run.
//!
//! With the services layer on, this loop also records a [`Timeline`] (manager views, worker
//! crashes and pauses, network conditions) that the store loop, on its own thread, replays as
//! the batches arrive, and it leaves the managers' crashes and pauses to the store loop.

use std::collections::BTreeSet;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use swarm_actors::membership::{
    MemberId, Membership, MembershipConfig, MembershipEffect, MembershipEvent, MembershipInput,
    Sender,
};

use crate::clock::{EventQueue, Millis};
use crate::config::SimConfig;
use crate::faults::{self, DUPLICATION_PCT, Fault};
use crate::invariants::{REPORT_MAX, all_ready, descriptions, no_false_down};
use crate::managers::StoreReport;
use crate::net::{NetStats, Network};
use crate::node::{self, SimNode, Status, addr, index_of, index_of_addr, node_id};
use crate::timeline::{BATCH_MS, BATCHES_IN_FLIGHT_MAX, Batch, Change, Timeline};
use crate::trace::{DATAGRAM_PREFIX_BYTES, Trace, TraceKind};

/// Most nodes a run may have (addresses are 10.a.b.c).
pub const NODES_MAX: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct SimReport {
    pub config: SimConfig,
    pub trace_hash: u64,
    pub events: u64,
    pub virtual_ms: Millis,
    pub wall: Duration,
    pub violations: Vec<String>,
    /// Virtual time from a crash to each other live node's Down for it.
    pub detection_ms: Vec<Millis>,
    pub faults_struck: usize,
    pub net: NetStats,
    pub datagrams_refused: u64,
    /// The store and services layers' figures (their violations are in `violations` too).
    pub store: StoreReport,
}

impl SimReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The `p`-th percentile (0-100) of the detection times.
    pub fn detection_percentile(&self, p: usize) -> Option<Millis> {
        percentile(&self.detection_ms, p)
    }
}

/// The `p`-th percentile (0-100) of `samples`.
pub fn percentile(samples: &[Millis], p: usize) -> Option<Millis> {
    let mut v = samples.to_vec();
    v.sort_unstable();
    let last = v.len().checked_sub(1)?;
    Some(v[(last * p.min(100)).div_ceil(100)])
}

enum Ev {
    /// A datagram (epoch None) or a timer of the node's `epoch`-th life.
    Input {
        node: usize,
        epoch: Option<u64>,
        input: MembershipInput,
    },
    Boot(usize),
    Fault(Fault),
    Restart {
        node: usize,
        epoch: u64,
    },
    Resume {
        node: usize,
        epoch: u64,
    },
    Heal {
        generation: u64,
    },
    LossEnd {
        generation: u64,
    },
    SkewEnd {
        node: usize,
        generation: u64,
    },
    /// Workload: a node's operator changes a label.
    Relabel,
    EndSafety,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
}

struct World {
    cfg: SimConfig,
    q: EventQueue<Ev>,
    net: Network,
    nodes: Vec<SimNode>,
    trace: Trace,
    rng: StdRng,
    phase: Phase,
    generation: u64,
    out: Vec<MembershipEffect>,
    crashed_at: Vec<Option<Millis>>,
    detected: Vec<BTreeSet<usize>>,
    /// What the services layer replays (only recorded when it is on).
    timeline: Option<Timeline>,
    /// Where the timeline's batches go, and when the next one is due.
    to_store: Option<SyncSender<Batch>>,
    next_batch_at: Millis,
    /// The store loop, running beside this one.
    store: Option<JoinHandle<StoreReport>>,
    report: SimReport,
}

/// Runs one simulation to the end and reports on it.
pub fn run(cfg: SimConfig) -> SimReport {
    assert!(
        (1..=NODES_MAX).contains(&cfg.nodes),
        "1..={NODES_MAX} nodes"
    );
    #[allow(clippy::disallowed_methods)]
    // the run's wall time, reported beside the virtual time; it decides nothing
    let started = Instant::now();
    let n = cfg.nodes;
    let mut w = World {
        q: EventQueue::default(),
        net: Network::new(cfg.seed ^ 0x0e7_5eed),
        nodes: (0..n).map(|_| SimNode::new()).collect(),
        trace: Trace::default(),
        rng: StdRng::seed_from_u64(cfg.seed ^ 0x3027_5eed),
        phase: Phase::Safety,
        generation: 0,
        out: Vec::new(),
        crashed_at: vec![None; n],
        detected: vec![BTreeSet::new(); n],
        timeline: cfg.services_on().then(Timeline::default),
        to_store: None,
        next_batch_at: 0,
        store: None,
        report: SimReport {
            config: cfg.clone(),
            trace_hash: 0,
            events: 0,
            virtual_ms: 0,
            wall: Duration::ZERO,
            violations: Vec::new(),
            detection_ms: Vec::new(),
            faults_struck: 0,
            net: NetStats::default(),
            datagrams_refused: 0,
            store: StoreReport::default(),
        },
        cfg,
    };
    w.start_store();
    w.schedule_start();
    let end = w.cfg.duration_ms + w.cfg.heal_ms;
    while let Some((at, ev)) = w.q.pop_until(end) {
        if at >= w.next_batch_at {
            w.send_batch(at);
        }
        w.step(at, ev);
    }
    w.q.advance_to(end);
    w.finish(started)
}

impl World {
    fn schedule_start(&mut self) {
        let n = self.cfg.nodes;
        // Node 0 starts first; the others join it over the first two seconds.
        let spread = (2 * n as Millis).min(2_000);
        self.q.push(0, Ev::Boot(0));
        for i in 1..n {
            let at = self.rng.random_range(0..=spread);
            self.q.push(at, Ev::Boot(i));
        }
        for (at, fault) in faults::plan(self.cfg.seed, n, self.cfg.faults, self.cfg.duration_ms) {
            self.q.push(at, Ev::Fault(fault));
        }
        let mut t = faults::FAULTS_FROM_MS;
        loop {
            t += self.rng.random_range(5_000..=15_000);
            if t >= self.cfg.duration_ms {
                break;
            }
            self.q.push(t, Ev::Relabel);
        }
        self.q.push(self.cfg.duration_ms, Ev::EndSafety);
    }

    fn step(&mut self, at: Millis, ev: Ev) {
        match ev {
            Ev::Input { node, epoch, input } => self.input(at, node, epoch, input),
            Ev::Boot(i) => self.boot(i, &[0]),
            Ev::Fault(f) => self.strike(at, f),
            Ev::Restart { node, epoch } => {
                if self.nodes[node].status == Status::Crashed && self.nodes[node].epoch == epoch {
                    self.restart(node);
                }
            }
            Ev::Resume { node, epoch } => {
                if self.nodes[node].status == Status::Paused && self.nodes[node].epoch == epoch {
                    self.resume(node);
                }
            }
            Ev::Heal { generation } => {
                if generation == self.generation {
                    self.net.set_partition(None);
                    self.record(at, Change::Partition(None));
                }
            }
            Ev::LossEnd { generation } => {
                if generation == self.generation {
                    self.net.set_loss(0);
                    self.record(at, Change::Loss(0));
                }
            }
            Ev::SkewEnd { node, generation } => {
                if generation == self.generation {
                    self.nodes[node].timer_rate = 1.0;
                }
            }
            Ev::Relabel => self.relabel(at),
            Ev::EndSafety => self.end_safety(),
        }
    }

    /// Starts node `i` from its data dir and has it announce to `seeds`.
    fn boot(&mut self, i: usize, seeds: &[usize]) {
        let node = &mut self.nodes[i];
        node.description_version += 1;
        let me = MemberId::new(node_id(i), addr(i), node.boot);
        let rng_seed = self.cfg.seed ^ ((i as u64) << 20) ^ (u64::from(node.boot) << 52);
        let version = node.description_version;
        let d = node::description(i, self.cfg.managers, version);
        let mut m = Membership::new(me, d, MembershipConfig::lan(), rng_seed)
            .expect("the simulator's config and descriptions are valid");
        m.set_cluster_size_hint(self.cfg.nodes);
        let node = &mut self.nodes[i];
        node.machine = Some(m);
        node.status = Status::Alive;
        node.boot += 1;
        let epoch = node.epoch;
        self.record(self.q.now(), Change::Start(i));
        self.input(self.q.now(), i, Some(epoch), MembershipInput::Start);
        for &s in seeds {
            if s != i {
                self.input(
                    self.q.now(),
                    i,
                    Some(epoch),
                    MembershipInput::Announce(addr(s)),
                );
            }
        }
    }

    fn restart(&mut self, i: usize) {
        self.crashed_at[i] = None;
        self.detected[i].clear();
        // A restarted node knows the seed it was given plus a couple of peers.
        let n = self.cfg.nodes;
        let seeds = [0, self.rng.random_range(0..n), self.rng.random_range(0..n)];
        self.boot(i, &seeds);
    }

    fn crash(&mut self, at: Millis, i: usize) {
        let node = &mut self.nodes[i];
        node.machine = None;
        node.status = Status::Crashed;
        node.epoch += 1;
        node.take_held();
        self.crashed_at[i] = Some(at);
        self.detected[i].clear();
        self.record(at, Change::Crash(i));
    }

    fn resume(&mut self, i: usize) {
        self.record(self.q.now(), Change::Resume(i));
        let node = &mut self.nodes[i];
        node.status = Status::Alive;
        let epoch = node.epoch;
        for (_, input) in node.take_held() {
            let epoch = matches!(input, MembershipInput::Timer(_)).then_some(epoch);
            let now = self.q.now();
            self.q.push(
                now,
                Ev::Input {
                    node: i,
                    epoch,
                    input,
                },
            );
        }
    }

    fn strike(&mut self, at: Millis, fault: Fault) {
        if self.phase != Phase::Safety {
            return;
        }
        let n = self.cfg.nodes;
        if self.timeline.is_some()
            && let Fault::Crash { node, .. } | Fault::Pause { node, .. } = &fault
            && *node < self.cfg.managers
        {
            // The store loop crashes and pauses managers (see `timeline`).
            return;
        }
        self.report.faults_struck += 1;
        self.trace.event(at, n, TraceKind::Fault);
        match fault {
            Fault::Crash {
                node,
                restart_after_ms,
            } => {
                let down = self.nodes.iter().filter(|s| !s.is_alive()).count();
                if !self.nodes[node].is_alive() || down + 1 > n / 3 {
                    self.report.faults_struck -= 1;
                    return;
                }
                self.crash(at, node);
                match restart_after_ms {
                    Some(after) => {
                        let epoch = self.nodes[node].epoch;
                        self.q.push(at + after, Ev::Restart { node, epoch });
                    }
                    None => {
                        self.nodes[node].gone_for_good = true;
                        if let Some(t) = self.timeline.as_mut() {
                            t.gone_for_good.push(node);
                        }
                    }
                }
            }
            Fault::Pause { node, for_ms } => {
                if self.nodes[node].status != Status::Alive {
                    self.report.faults_struck -= 1;
                    return;
                }
                self.nodes[node].status = Status::Paused;
                self.record(at, Change::Pause(node));
                let epoch = self.nodes[node].epoch;
                self.q.push(at + for_ms, Ev::Resume { node, epoch });
            }
            Fault::Partition { partition, for_ms } => {
                self.generation += 1;
                self.record(at, Change::Partition(Some(partition.clone())));
                self.net.set_partition(Some(partition));
                let generation = self.generation;
                self.q.push(at + for_ms, Ev::Heal { generation });
            }
            Fault::Loss { pct, for_ms } => {
                self.generation += 1;
                self.net.set_loss(pct);
                self.net.set_duplication(DUPLICATION_PCT);
                self.record(at, Change::Loss(pct));
                self.record(at, Change::Duplication(DUPLICATION_PCT));
                let generation = self.generation;
                self.q.push(at + for_ms, Ev::LossEnd { generation });
            }
            Fault::Skew { node, rate, for_ms } => {
                self.generation += 1;
                self.nodes[node].timer_rate = rate;
                let generation = self.generation;
                self.q.push(at + for_ms, Ev::SkewEnd { node, generation });
            }
        }
    }

    fn relabel(&mut self, at: Millis) {
        let i = self.rng.random_range(0..self.cfg.nodes);
        let Some(m) = self.nodes[i].machine.as_ref() else {
            return;
        };
        let Some(mut d) = m.description(node_id(i)).cloned() else {
            return;
        };
        d.labels.insert("rev".into(), at.to_string());
        let epoch = self.nodes[i].epoch;
        self.input(at, i, Some(epoch), MembershipInput::Describe(d));
        if let Some(m) = self.nodes[i].machine.as_ref() {
            let v = m.description(node_id(i)).map_or(0, |d| d.version);
            self.nodes[i].description_version = self.nodes[i].description_version.max(v);
        }
    }

    fn end_safety(&mut self) {
        self.phase = Phase::Liveness;
        self.generation += 1;
        self.net.set_partition(None);
        self.net.set_loss(0);
        self.net.set_duplication(0);
        let now = self.q.now();
        self.record(now, Change::Partition(None));
        self.record(now, Change::Loss(0));
        self.record(now, Change::Duplication(0));
        for i in 0..self.cfg.nodes {
            self.nodes[i].timer_rate = 1.0;
            match self.nodes[i].status {
                Status::Paused => self.resume(i),
                Status::Crashed if !self.nodes[i].gone_for_good => self.restart(i),
                _ => {}
            }
        }
    }

    fn input(&mut self, at: Millis, i: usize, epoch: Option<u64>, input: MembershipInput) {
        let node = &mut self.nodes[i];
        match node.status {
            Status::Crashed => return,
            Status::Paused => {
                node.hold(at, input);
                return;
            }
            Status::Alive => {}
        }
        if epoch.is_some_and(|e| e != node.epoch) {
            return;
        }
        self.trace.event(at, i, node::trace_kind(&input));
        if let MembershipInput::Datagram { data, .. } = &input {
            self.trace.u64(data.len() as u64);
            self.trace
                .bytes(&data[..data.len().min(DATAGRAM_PREFIX_BYTES)]);
        }
        let mut out = std::mem::take(&mut self.out);
        let m = node.machine.as_mut().expect("an alive node has a machine");
        m.handle(input, &mut out);
        for effect in out.drain(..) {
            self.effect(at, i, effect);
        }
        self.out = out;
    }

    fn effect(&mut self, at: Millis, i: usize, effect: MembershipEffect) {
        match effect {
            MembershipEffect::Send { to, data } => {
                let Some(j) = index_of_addr(to).filter(|&j| j < self.cfg.nodes) else {
                    return;
                };
                let route = self.net.route(i, j);
                // The transport proves the sender's certificate; here the sender is node `i`.
                let from = Sender {
                    id: node::node_id(i),
                    role: node::role(i, self.cfg.managers),
                };
                for delay in [route.first, route.dup].into_iter().flatten() {
                    let input = MembershipInput::Datagram {
                        from,
                        data: data.clone(),
                    };
                    self.q.push(
                        at + delay,
                        Ev::Input {
                            node: j,
                            epoch: None,
                            input,
                        },
                    );
                }
            }
            MembershipEffect::Schedule { after, timer } => {
                let node = &self.nodes[i];
                let after = node.skewed(after.as_millis() as Millis);
                let ev = Ev::Input {
                    node: i,
                    epoch: Some(node.epoch),
                    input: MembershipInput::Timer(timer),
                };
                self.q.push(at + after, ev);
            }
            MembershipEffect::Event(e) => self.event(at, i, e),
        }
    }

    fn event(&mut self, at: Millis, observer: usize, e: MembershipEvent) {
        let (kind, subject) = match &e {
            MembershipEvent::Up(id) => (TraceKind::Up, index_of(*id)),
            MembershipEvent::Down(id) => (TraceKind::Down, index_of(*id)),
            MembershipEvent::Described(d) => (TraceKind::Described, index_of(d.id)),
            MembershipEvent::Rejoined => (TraceKind::Rejoined, Some(observer)),
        };
        self.trace.event(at, observer, kind);
        self.trace.u64(subject.map_or(u64::MAX, |s| s as u64));
        if observer < self.cfg.managers
            && let (MembershipEvent::Up(_) | MembershipEvent::Down(_), Some(subject)) =
                (&e, subject)
        {
            let up = matches!(e, MembershipEvent::Up(_));
            self.record(
                at,
                Change::View {
                    observer,
                    subject,
                    up,
                },
            );
        }
        let (MembershipEvent::Down(_), Some(x)) = (&e, subject) else {
            return;
        };
        if x >= self.cfg.nodes {
            return;
        }
        if let Some(t0) = self.crashed_at[x]
            && self.detected[x].insert(observer)
        {
            self.report.detection_ms.push(at - t0);
        }
        let settled = self.cfg.duration_ms + self.cfg.settle_ms;
        if self.phase == Phase::Liveness
            && at >= settled
            && self.report.violations.len() < REPORT_MAX
            && let Some(v) = no_false_down::on_down(at, observer, x, &self.nodes)
        {
            self.report.violations.push(v);
        }
    }

    /// Starts the store loop on its own thread. With the services layer on, it replays this
    /// loop's timeline as the batches arrive; without, it needs nothing from this loop.
    fn start_store(&mut self) {
        let (tx, rx) = sync_channel(BATCHES_IN_FLIGHT_MAX);
        let feed = self.timeline.is_some().then_some(rx);
        self.to_store = feed.is_some().then_some(tx);
        let cfg = self.cfg.clone();
        let store = std::thread::Builder::new()
            .name("store loop".into())
            .spawn(move || crate::managers::run(&cfg, feed))
            .expect("a thread for the store loop");
        self.store = Some(store);
    }

    /// Hands the changes recorded before `upto` to the store loop.
    fn send_batch(&mut self, upto: Millis) {
        self.next_batch_at = upto.saturating_add(BATCH_MS);
        if let (Some(t), Some(tx)) = (self.timeline.as_mut(), self.to_store.as_ref()) {
            // A store loop that stopped early (it panicked) is reported when it is joined.
            let _ = tx.send(t.batch(upto));
        }
    }

    fn record(&mut self, at: Millis, change: Change) {
        if let Some(t) = self.timeline.as_mut() {
            t.push(at, change);
        }
    }

    fn finish(mut self, started: Instant) -> SimReport {
        self.report.violations.extend(all_ready::check(&self.nodes));
        self.report
            .violations
            .extend(descriptions::check(&self.nodes));
        self.report.datagrams_refused = self
            .nodes
            .iter()
            .filter_map(|n| n.machine.as_ref())
            .map(|m| m.stats().datagrams_refused)
            .sum();
        self.send_batch(Millis::MAX);
        self.to_store = None;
        let store = match self.store.take().expect("started with the run").join() {
            Ok(report) => report,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        self.trace.u64(store.trace_hash);
        self.report
            .violations
            .extend(store.violations.iter().cloned());
        self.report.store = store;
        self.report.trace_hash = self.trace.hash();
        self.report.events = self.trace.events();
        self.report.virtual_ms = self.q.now();
        self.report.net = self.net.stats.clone();
        // Freeing a large cluster's machines takes seconds (1,000 nodes hold a million
        // descriptions): another thread does it once the run is over. Doing it while the store
        // layer ran slowed that layer down, both threads contending for the allocator.
        let nodes = std::mem::take(&mut self.nodes);
        std::thread::spawn(move || drop(nodes));
        self.report.wall = started.elapsed();
        self.report
    }
}
