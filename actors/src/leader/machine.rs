//! The leader as a sans-IO state machine: everything the leader decides, with time and
//! randomness given and every action returned as a [`LeaderEffect`]. The leader actor
//! (`super`) and the simulator's services layer both drive it; neither decides anything.
//!
//! ```text
//!  Start ──────────────▶ Read{linearizable} + SetTimer(Interval)
//!  StoreApplied / Session(fresh status) ─▶ dirty; SetTimer(Due, debounce) if none is set
//!  Members(changed) ───▶ dirty; SetTimer(Due, 0) if none is set
//!  Timer(Due) ─────────▶ a pass if dirty      Timer(Interval | Wake), Rebuild ─▶ a pass
//!
//!  a pass:  Read{linearizable: first pass} ─▶ ReadDone(objects, borrowed)
//!           ─▶ plan::plan ─▶ Propose(descriptions…, ops…) one command at a time
//!           ─▶ ProposeDone(ok) … ─▶ answers rebuilt; Poke(nodes) if every write committed;
//!              SetTimer(Wake) at a restart delay's end; SetTimer(Due, RETRY_MS) on failure;
//!              the mesh table recomputed (`mesh.rs`): changed ─▶ Poke(every node, once)
//!  Session{statuses, held, mesh_version} ─▶ Answer{Busy | Assignments{tasks, managers, files,
//!           mesh: the table when the node holds another version}} now, or when the pass in
//!           flight ends (queued, with its held files and version)
//! ```
//!
//! An answer's `files` are the secrets and configs the node's listed tasks need and it did not
//! say it holds, from the last pass's read (`files.rs`).
//!
//! The machine keeps nothing the store does not have: a new leader reads everything again
//! and carries on. It answers no session before its first pass (an empty answer would tell a
//! node to stop everything). A status lost on the way is reported again, since the agent
//! sends every status that differs from what its last assignments say.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tracing::{debug, warn};

use super::plan::{self, Plan, PlanInput, VersionedTask};
use super::rules::{
    DOWN_GRACE_MS, PASS_INTERVAL_MS, REPORTS_MAX, RETRY_MS, SESSIONS_QUEUED_MAX, batches,
    pass_debounce_ms, wake_fire_ms, wake_to_set,
};
use super::view::{LeaderView, ServiceView};
use crate::membership::MemberView;
use crate::model::{
    FileKey, FileMaterial, Network, NodeDescription, NodeId, NodeState, Service, ServiceId, Task,
    TaskId, TaskStatus,
};
use crate::scheduler::{NodeView, Unseen, node_views};
use crate::store::{Expect, Kind, NodeObject, ObjectBody, Op, StoreCommand, StoredObject};
use crate::wire::SESSION_HELD_MAX;
use crate::wire::{Assignment, MeshTable};

/// Names a session for the shell, which keeps where its answer goes.
pub type SessionToken = u64;

/// The machine's timers; the shell sets them as [`LeaderEffect::SetTimer`] asks and feeds
/// them back as [`LeaderInput::Timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderTimer {
    /// Every [`PASS_INTERVAL_MS`]: a pass whatever changed (the down grace ends silently).
    Interval,
    /// The debounce or retry timer: a pass if something asked for one. One at a time.
    Due,
    /// A restart delay ended: a pass.
    Wake,
}

/// What the shell read from the store for a pass, borrowed: the actor lends the objects it
/// received, the simulator its store's objects in place.
pub struct StoreRead<'a> {
    pub applied_index: u64,
    pub nodes: Vec<&'a StoredObject>,
    pub services: Vec<&'a StoredObject>,
    pub tasks: Vec<&'a StoredObject>,
    /// Secrets and configs (their data goes to a node with the tasks that need it).
    pub secrets: Vec<&'a StoredObject>,
    /// Overlay networks: where tasks get their addresses, and what the mesh table lists.
    pub networks: Vec<&'a StoredObject>,
}

pub enum LeaderInput<'a> {
    /// The machine was made: the first pass and the interval timer.
    Start,
    /// Membership's whole view: who is Ready or Down, and what each node says about itself.
    Members(&'a [MemberView]),
    /// One node's entry of membership's view changed.
    Member(&'a MemberView),
    /// The store applied new entries.
    StoreApplied,
    /// A node's session: its statuses in, its assignments out (as [`LeaderEffect::Answer`]).
    Session {
        session: SessionToken,
        from: NodeId,
        statuses: Vec<(TaskId, TaskStatus)>,
        /// The secrets and configs the node says it holds.
        held: Vec<FileKey>,
        /// The version of the mesh table the node holds (0: none).
        mesh_version: u64,
    },
    /// A pass now (the admin shell's `Rebuild`).
    Rebuild,
    Timer(LeaderTimer),
    /// The read a [`LeaderEffect::Read`] asked for.
    ReadDone(StoreRead<'a>),
    ReadFailed(String),
    /// The last [`LeaderEffect::Propose`] committed, or failed with this text.
    ProposeDone(Result<(), String>),
}

/// A session's answer.
#[derive(Clone, Debug)]
pub enum SessionAnswer {
    /// No pass yet, or too many sessions wait for the pass in flight: ask again.
    Busy,
    /// The node's assignments (shared with the machine: an answer is not a copy) and the
    /// managers the store names.
    Assignments {
        tasks: Arc<[Assignment]>,
        managers: Arc<[NodeId]>,
        /// The data of secrets and configs the node's tasks need and it lacks, within
        /// `answer::FILES_ANSWER_BYTES_MAX`.
        files: Vec<FileMaterial>,
        /// The routing mesh's table, when the node holds another version (shared, not a copy).
        mesh: Option<Arc<MeshTable>>,
    },
}

#[derive(Debug)]
pub enum LeaderEffect {
    /// Read nodes, services and tasks, then feed [`LeaderInput::ReadDone`] or `ReadFailed`.
    /// `linearizable`: confirm with a read index first (the first pass of a term).
    Read {
        linearizable: bool,
    },
    /// Propose this command, then feed [`LeaderInput::ProposeDone`]; one at a time.
    Propose(StoreCommand),
    /// Tell a node its assignments changed (best effort: agents ask every second anyway).
    Poke {
        node: NodeId,
        addr: Option<SocketAddr>,
    },
    SetTimer {
        after_ms: u64,
        timer: LeaderTimer,
    },
    Answer {
        session: SessionToken,
        answer: SessionAnswer,
    },
    /// A pass ended: what it did, for logs and counters.
    Passed(PassSummary),
    /// The set of service names changed (the admin shell's `service/<name>` entries).
    ServicesChanged(Vec<String>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub ok: bool,
    pub ops: usize,
    pub created: usize,
    pub placed: usize,
    pub pending: usize,
}

/// What a pass planned, shown to an observer before its writes (the simulator judges each
/// placement against the views the pass used).
pub struct PassAudit<'v, 'a> {
    pub views: &'v [NodeView<'a>],
    pub plan: &'v Plan,
    /// The statuses nodes reported that the pass started from, besides the store's tasks
    /// (its view of which tasks run, for `depends_on`).
    pub reports: &'v BTreeMap<TaskId, TaskStatus>,
}

/// A session held while a pass is in flight.
struct Queued {
    session: SessionToken,
    from: NodeId,
    statuses: Vec<(TaskId, TaskStatus)>,
    held: BTreeSet<FileKey>,
    mesh_version: u64,
}

/// A pass whose writes are in flight.
struct InPass {
    now: u64,
    ops: Vec<Op>,
    chunks: Vec<std::ops::Range<usize>>,
    /// The first `describing` chunks write node descriptions: their failure skips to the plan.
    describing: usize,
    next: usize,
    /// The tasks as they will be once the writes land, for the answers until the next read.
    current: BTreeMap<TaskId, Arc<Task>>,
    services: Vec<Service>,
    networks: Vec<Network>,
    /// The secrets and configs the pass read, for the answers until the next pass.
    files: BTreeMap<FileKey, FileMaterial>,
    poke: BTreeSet<NodeId>,
    /// The nodes the pass saw Down: their tasks are out of the mesh's rotation.
    down: BTreeSet<NodeId>,
    wake_at: Option<u64>,
    summary: PassSummary,
    error: Option<String>,
}

enum Phase {
    Idle,
    Reading,
    Writing(Box<InPass>),
}

pub struct LeaderMachine {
    me: NodeId,
    rng: StdRng,
    view: LeaderView,
    ready: BTreeSet<NodeId>,
    /// Nodes membership declared Down: Down to the leader even during [`DOWN_GRACE_MS`].
    down: BTreeSet<NodeId>,
    /// What each node last said about itself; the store keeps the newest (see `write`).
    descriptions: BTreeMap<NodeId, NodeDescription>,
    reports: BTreeMap<TaskId, TaskStatus>,
    /// From the last pass: each node's answer and address, where each task is (only its node
    /// reports it), the managers, the services and their tasks.
    answers: BTreeMap<NodeId, NodeAnswer>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    task_node: BTreeMap<TaskId, NodeId>,
    managers: Arc<[NodeId]>,
    services: Vec<Service>,
    /// The overlay networks the last pass read, by ID.
    networks: Vec<Network>,
    tasks: BTreeMap<TaskId, Arc<Task>>,
    /// The secrets and configs the last pass read, by key: what answers carry (`files`).
    files: BTreeMap<FileKey, FileMaterial>,
    /// The tasks the last read returned, by store version: the next read copies only those
    /// whose version changed.
    read: BTreeMap<TaskId, (u64, Arc<Task>)>,
    /// The debounce timer is set. Only its own firing clears it: a pass for another reason
    /// leaves it running, so that changes never set a second one (each stray timer would be
    /// one more pass, and at scale they added up to dozens of passes a second).
    scheduled: bool,
    /// Something asked for a pass since the last one began.
    dirty: bool,
    /// When the wake timer set for a restart delay's end fires (see [`wake_to_set`]).
    wake_at: Option<u64>,
    phase: Phase,
    /// A pass was asked for while one was in flight: run it when that one ends.
    again: bool,
    queued: VecDeque<Queued>,
    /// The routing mesh's table as of the last pass; `None` before the first.
    mesh: Option<Arc<MeshTable>>,
}

impl LeaderMachine {
    /// The leader of `term` on node `me`, from `now_ms` (when the down grace starts).
    pub fn new(me: NodeId, term: u64, now_ms: u64, rng_seed: u64) -> Self {
        LeaderMachine {
            me,
            rng: StdRng::seed_from_u64(rng_seed),
            view: LeaderView {
                term,
                since_ms: now_ms,
                ..LeaderView::default()
            },
            ready: BTreeSet::new(),
            down: BTreeSet::new(),
            descriptions: BTreeMap::new(),
            reports: BTreeMap::new(),
            answers: BTreeMap::new(),
            addrs: BTreeMap::new(),
            task_node: BTreeMap::new(),
            managers: Arc::from([]),
            services: Vec::new(),
            networks: Vec::new(),
            tasks: BTreeMap::new(),
            files: BTreeMap::new(),
            read: BTreeMap::new(),
            scheduled: false,
            dirty: false,
            wake_at: None,
            phase: Phase::Idle,
            again: false,
            queued: VecDeque::new(),
            mesh: None,
        }
    }

    /// What the leader knows, as of its last pass.
    pub fn view(&self) -> &LeaderView {
        &self.view
    }

    /// One service as the last pass left it, by name.
    pub fn service(&self, name: &str) -> Option<ServiceView> {
        let s = self.services.iter().find(|s| s.spec.name == name)?;
        Some(ServiceView::of(s, self.tasks.values().map(|t| &**t)))
    }

    pub fn handle(&mut self, now: u64, input: LeaderInput<'_>, out: &mut Vec<LeaderEffect>) {
        self.handle_audited(now, input, out, &mut |_| {});
    }

    /// [`Self::handle`], showing each pass's plan to `audit` before its writes.
    pub fn handle_audited(
        &mut self,
        now: u64,
        input: LeaderInput<'_>,
        out: &mut Vec<LeaderEffect>,
        audit: &mut dyn FnMut(&PassAudit),
    ) {
        match input {
            LeaderInput::Start => {
                out.push(LeaderEffect::SetTimer {
                    after_ms: PASS_INTERVAL_MS,
                    timer: LeaderTimer::Interval,
                });
                self.pass(out);
            }
            LeaderInput::Members(members) => {
                if self.learn(members) {
                    self.soon(0, out);
                }
            }
            LeaderInput::Member(m) => {
                if self.learn_one(m) {
                    self.soon(0, out);
                }
            }
            LeaderInput::StoreApplied => self.soon(self.debounce_ms(), out),
            LeaderInput::Session {
                session,
                from,
                statuses,
                held,
                mesh_version,
            } => {
                // The wire bounds the list; a longer one from elsewhere is cut the same way
                // (the leader sends again what is not listed, which costs bytes, not safety).
                let held = held.into_iter().take(SESSION_HELD_MAX).collect();
                self.session(session, from, statuses, held, mesh_version, out)
            }
            LeaderInput::Rebuild | LeaderInput::Timer(LeaderTimer::Wake) => self.pass(out),
            LeaderInput::Timer(LeaderTimer::Interval) => {
                out.push(LeaderEffect::SetTimer {
                    after_ms: PASS_INTERVAL_MS,
                    timer: LeaderTimer::Interval,
                });
                self.pass(out);
            }
            LeaderInput::Timer(LeaderTimer::Due) => {
                self.scheduled = false;
                if self.dirty {
                    self.pass(out);
                }
            }
            LeaderInput::ReadDone(read) => {
                if matches!(self.phase, Phase::Reading) {
                    self.planned(now, read, out, audit);
                }
            }
            LeaderInput::ReadFailed(e) => {
                if matches!(self.phase, Phase::Reading) {
                    warn!(error = %e, "leader pass could not read the store; trying again");
                    self.view.last_error = Some(e);
                    self.phase = Phase::Idle;
                    self.soon(RETRY_MS, out);
                    self.after_pass(out);
                }
            }
            LeaderInput::ProposeDone(result) => self.proposed(now, result, out),
        }
    }

    /// Takes membership's whole view; true when something the scheduler looks at changed.
    fn learn(&mut self, members: &[MemberView]) -> bool {
        let (mut ready, mut down) = (BTreeSet::new(), BTreeSet::new());
        for m in members {
            match m.state {
                NodeState::Ready => ready.insert(m.id),
                NodeState::Down => down.insert(m.id),
                NodeState::Unknown => false,
            };
        }
        let mut changed = ready != self.ready || down != self.down;
        self.ready = ready;
        self.down = down;
        let listed = members.iter().filter(|m| m.description.is_some()).count();
        changed |= listed != self.descriptions.len();
        if listed != self.descriptions.len() {
            self.descriptions.clear();
        }
        for m in members {
            if let Some(d) = &m.description
                && self.descriptions.get(&m.id) != Some(d)
            {
                self.descriptions.insert(m.id, d.clone());
                changed = true;
            }
        }
        changed
    }

    /// Takes one node's entry; true when something the scheduler looks at changed.
    fn learn_one(&mut self, m: &MemberView) -> bool {
        let (ready, down) = match m.state {
            NodeState::Ready => (self.ready.insert(m.id), self.down.remove(&m.id)),
            NodeState::Down => (self.ready.remove(&m.id), self.down.insert(m.id)),
            NodeState::Unknown => (self.ready.remove(&m.id), self.down.remove(&m.id)),
        };
        let described = match &m.description {
            Some(d) if self.descriptions.get(&m.id) != Some(d) => {
                self.descriptions.insert(m.id, d.clone());
                true
            }
            _ => false,
        };
        ready | down | described
    }

    /// How long a change waits for its pass, from the size the last pass saw.
    fn debounce_ms(&self) -> u64 {
        pass_debounce_ms(self.view.nodes.len() + self.view.tasks)
    }

    /// Asks for a pass in `after_ms`, or when the debounce timer already set fires.
    fn soon(&mut self, after_ms: u64, out: &mut Vec<LeaderEffect>) {
        self.dirty = true;
        if !self.scheduled {
            self.scheduled = true;
            out.push(LeaderEffect::SetTimer {
                after_ms,
                timer: LeaderTimer::Due,
            });
        }
    }

    /// Starts a pass, or asks for one after the pass in flight.
    fn pass(&mut self, out: &mut Vec<LeaderEffect>) {
        if !matches!(self.phase, Phase::Idle) {
            self.again = true;
            return;
        }
        self.dirty = false;
        self.phase = Phase::Reading;
        // The first pass confirms with a read index that this replica applied everything
        // committed before the term began: a pass over an older state would not see the
        // newest tasks and create their slots again. Later passes read the leader's own
        // replica, which applies every commit first.
        out.push(LeaderEffect::Read {
            linearizable: self.view.passes == 0,
        });
    }

    fn session(
        &mut self,
        session: SessionToken,
        from: NodeId,
        statuses: Vec<(TaskId, TaskStatus)>,
        held: BTreeSet<FileKey>,
        mesh_version: u64,
        out: &mut Vec<LeaderEffect>,
    ) {
        if !matches!(self.phase, Phase::Idle) {
            if self.queued.len() < SESSIONS_QUEUED_MAX {
                self.queued.push_back(Queued {
                    session,
                    from,
                    statuses,
                    held,
                    mesh_version,
                });
            } else {
                let answer = SessionAnswer::Busy;
                out.push(LeaderEffect::Answer { session, answer });
            }
            return;
        }
        if self.view.passes == 0 {
            // Nothing read yet: an empty answer would tell the node to stop everything.
            let answer = SessionAnswer::Busy;
            out.push(LeaderEffect::Answer { session, answer });
            return;
        }
        let mut fresh = false;
        for (task, status) in statuses {
            // Only the node a task is on speaks for it.
            if self.task_node.get(&task) != Some(&from) {
                continue;
            }
            if self.reports.len() >= REPORTS_MAX && !self.reports.contains_key(&task) {
                break;
            }
            self.reports.insert(task, status);
            fresh = true;
        }
        if fresh {
            self.soon(self.debounce_ms(), out);
        }
        let tasks = match self.answers.get(&from) {
            Some(a) => Arc::clone(&a.list),
            None => Arc::from([]),
        };
        let managers = Arc::clone(&self.managers);
        let files = files::answer_files(from, &tasks, &held, &self.files);
        let mesh = self
            .mesh
            .as_ref()
            .filter(|m| m.version != mesh_version && !(mesh_version == 0 && m.services.is_empty()))
            .map(Arc::clone);
        let answer = SessionAnswer::Assignments {
            tasks,
            managers,
            files,
            mesh,
        };
        out.push(LeaderEffect::Answer { session, answer });
    }

    /// The read came back: plan, and start writing.
    fn planned(
        &mut self,
        now: u64,
        read: StoreRead<'_>,
        out: &mut Vec<LeaderEffect>,
        audit: &mut dyn FnMut(&PassAudit),
    ) {
        let nodes: Vec<(&StoredObject, &NodeObject)> = read
            .nodes
            .iter()
            .filter_map(|o| match &o.body {
                ObjectBody::Node(n) => Some((*o, n)),
                _ => None,
            })
            .collect();
        let services: Vec<Service> = read
            .services
            .iter()
            .filter_map(|o| match &o.body {
                ObjectBody::Service(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let service_keys: BTreeMap<ServiceId, (&str, u64)> = read
            .services
            .iter()
            .filter_map(|o| match &o.body {
                ObjectBody::Service(s) => Some((s.id, (o.id.as_str(), o.version))),
                _ => None,
            })
            .collect();
        let mut networks: Vec<Network> = read
            .networks
            .iter()
            .filter_map(|o| match &o.body {
                ObjectBody::Network(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        networks.sort_by_key(|n| n.id);
        let tasks: Vec<VersionedTask> = read
            .tasks
            .iter()
            .filter_map(|o| match &o.body {
                ObjectBody::Task(t) => Some(VersionedTask {
                    version: o.version,
                    task: std::borrow::Cow::Borrowed(t),
                }),
                _ => None,
            })
            .collect();
        // Descriptions go in commands of their own, first: their failure must not take task
        // writes with it.
        let mut ops = self.describe_ops(&nodes);
        let mut chunks = batches(&ops);
        let describing = chunks.len();
        let described = ops.len();

        let mut ready = self.ready.clone();
        ready.insert(self.me);
        let unseen = if now.saturating_sub(self.view.since_ms) >= DOWN_GRACE_MS {
            Unseen::Down
        } else {
            Unseen::DownOnly(&self.down)
        };
        let views = node_views(nodes.iter().map(|(_, n)| *n), &ready, unseen);
        let down = views
            .iter()
            .filter(|v| v.state == NodeState::Down)
            .map(|v| v.id)
            .collect();
        let rng = &mut self.rng;
        let mut new_id = || TaskId(rng.random::<u128>());
        let p = plan::plan(
            &PlanInput {
                now_ms: now,
                nodes: &views,
                services: &services,
                networks: &networks,
                service_keys: &service_keys,
                tasks: &tasks,
                reports: &self.reports,
            },
            &mut new_id,
        );
        audit(&PassAudit {
            views: &views,
            plan: &p,
            reports: &self.reports,
        });
        for (service, why) in &p.unattached {
            debug!(%service, reason = %why, "global task not made: no overlay address");
        }

        // The tasks as read, shared with the last read where their version is the same.
        let mut before = std::mem::take(&mut self.read);
        let mut current = BTreeMap::new();
        for t in &tasks {
            let unchanged = before
                .remove(&t.task.id)
                .filter(|(version, _)| *version == t.version);
            let task = match unchanged {
                Some((_, task)) => task,
                None => Arc::new(t.task.as_ref().clone()),
            };
            current.insert(t.task.id, Arc::clone(&task));
            self.read.insert(t.task.id, (t.version, task));
        }

        self.addrs = nodes.iter().map(|(_, n)| (n.id, n.addr)).collect();
        self.view.rebuilt_at_index = read.applied_index;
        self.view.nodes = nodes.iter().map(|(_, n)| n.id).collect();
        self.view.managers = nodes
            .iter()
            .filter(|(_, n)| n.raft_id.is_some())
            .map(|(_, n)| n.id)
            .collect();
        self.view.ready = ready.into_iter().collect();
        self.view.services = services.len();
        self.view.pending = p.pending;

        let summary = PassSummary {
            ok: true,
            ops: p.ops.len(),
            created: p.created,
            placed: p.placed,
            pending: p.pending,
        };
        chunks.extend(
            batches(&p.ops)
                .into_iter()
                .map(|r| r.start + described..r.end + described),
        );
        ops.extend(p.ops);
        let pass = InPass {
            now,
            ops,
            chunks,
            describing,
            next: 0,
            current,
            services,
            networks,
            files: files::by_key(&read.secrets),
            poke: p.poke,
            down,
            wake_at: p.wake_at_ms,
            summary,
            error: None,
        };
        self.phase = Phase::Writing(Box::new(pass));
        self.propose_next(out);
    }

    /// Node descriptions come from gossip; the store keeps the newest one seen, so that
    /// `node ls`, `service ps` and a manager that restarts know every node by name.
    fn describe_ops(&self, nodes: &[(&StoredObject, &NodeObject)]) -> Vec<Op> {
        let mut ops = Vec::new();
        for (o, n) in nodes {
            let Some(d) = self.descriptions.get(&n.id) else {
                continue;
            };
            let newer = n
                .description
                .as_ref()
                .is_none_or(|old| old.version < d.version);
            if newer {
                let mut n = (*n).clone();
                n.description = Some(d.clone());
                ops.push(Op::Put {
                    kind: Kind::Node,
                    id: o.id.clone(),
                    expect: Expect::Version(o.version),
                    body: ObjectBody::Node(n),
                });
            }
        }
        ops
    }

    /// Proposes the next command of the pass in flight, or ends the pass.
    fn propose_next(&mut self, out: &mut Vec<LeaderEffect>) {
        let Phase::Writing(p) = &self.phase else {
            return;
        };
        match p.chunks.get(p.next) {
            Some(r) => out.push(LeaderEffect::Propose(StoreCommand {
                now_ms: p.now,
                ops: p.ops[r.clone()].to_vec(),
            })),
            None => self.finish(out),
        }
    }

    fn proposed(&mut self, now: u64, result: Result<(), String>, out: &mut Vec<LeaderEffect>) {
        let Phase::Writing(p) = &mut self.phase else {
            return;
        };
        let _ = now; // the pass's writes carry the pass's own time
        let describing = p.next < p.describing;
        match result {
            Ok(()) => {
                for op in &p.ops[p.chunks[p.next].clone()] {
                    match op {
                        Op::Put {
                            body: ObjectBody::Task(t),
                            ..
                        } => {
                            p.current.insert(t.id, Arc::new(t.clone()));
                        }
                        Op::Delete { id, .. } => {
                            if let Ok(id) = id.parse() {
                                p.current.remove(&id);
                            }
                        }
                        Op::Put { .. } => {}
                    }
                }
                p.next += 1;
            }
            Err(e) if describing => {
                // Names only; the pass goes on, and the next one tries again.
                debug!(error = %e, "node descriptions not written");
                p.next = p.describing;
            }
            Err(e) => {
                // The next commands could depend on this one: stop at the first failure.
                p.error = Some(e);
                p.next = p.chunks.len();
            }
        }
        self.propose_next(out);
    }

    /// The pass's writes are done (or stopped at a failure): new answers, pokes, timers.
    fn finish(&mut self, out: &mut Vec<LeaderEffect>) {
        let Phase::Writing(p) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let p = *p;
        let ok = p.error.is_none();
        if ok {
            // Reported statuses are in the store now (or were refused for good: a stale or
            // backward one). A failed write keeps them for the next pass.
            self.reports.clear();
        }
        if p.summary.ops > 0 {
            debug!(
                ops = p.summary.ops,
                created = p.summary.created,
                placed = p.summary.placed,
                pending = p.summary.pending,
                "leader pass"
            );
        }
        let names_changed = self.services.len() != p.services.len()
            || self
                .services
                .iter()
                .zip(&p.services)
                .any(|(a, b)| a.id != b.id || a.spec.name != b.spec.name);
        if names_changed {
            let names = p.services.iter().map(|s| s.spec.name.clone()).collect();
            out.push(LeaderEffect::ServicesChanged(names));
            self.answers.clear();
        }
        self.services = p.services;
        self.networks = p.networks;
        self.files = p.files;
        self.rebuild_answers(&p.current);
        self.tasks = p.current;
        self.managers = self.view.managers.iter().copied().collect();
        let mut poke = if ok { p.poke } else { BTreeSet::new() };
        if self.remesh(&p.down) {
            // Every node in the store, once (a node poked for its tasks is not poked twice):
            // at most one one-way message per node per pass, and a pass runs at most every
            // debounce interval.
            poke.extend(self.addrs.keys().copied());
        }
        for node in &poke {
            let addr = self.addrs.get(node).copied();
            out.push(LeaderEffect::Poke { node: *node, addr });
        }
        let wanted = p.wake_at.map(|end| wake_fire_ms(end, p.now));
        if let Some(fire) = wake_to_set(&mut self.wake_at, wanted, p.now) {
            out.push(LeaderEffect::SetTimer {
                after_ms: fire - p.now,
                timer: LeaderTimer::Wake,
            });
        }
        self.view.passes += 1;
        self.view.tasks = self.tasks.len();
        match p.error {
            None => self.view.last_error = None,
            Some(e) => {
                warn!(error = %e, "leader pass failed; trying again");
                self.view.last_error = Some(e);
                self.soon(RETRY_MS, out);
            }
        }
        out.push(LeaderEffect::Passed(PassSummary { ok, ..p.summary }));
        self.after_pass(out);
    }

    /// After a pass (or its failed read): the sessions that waited, then the pass asked for
    /// meanwhile.
    fn after_pass(&mut self, out: &mut Vec<LeaderEffect>) {
        while matches!(self.phase, Phase::Idle)
            && let Some(q) = self.queued.pop_front()
        {
            self.session(q.session, q.from, q.statuses, q.held, q.mesh_version, out);
        }
        if std::mem::take(&mut self.again) {
            self.pass(out);
        }
    }

    /// The routing mesh's table from the tasks as the pass left them; true when it changed.
    fn remesh(&mut self, down: &BTreeSet<NodeId>) -> bool {
        let tasks = self.tasks.values().map(|t| &**t);
        let (table, cut) =
            mesh::mesh_table(&self.services, &self.networks, tasks, &self.addrs, down);
        let before = self.mesh.as_ref().map_or(0, |m| m.services.len());
        if self
            .mesh
            .as_ref()
            .is_some_and(|m| m.version == table.version)
        {
            return false;
        }
        // Nodes hold no table at first, the same as one without services: no news for them.
        let news = before > 0 || !table.services.is_empty();
        if cut != mesh::MeshCut::default() {
            warn!(
                services_left_out = cut.services,
                backends_left_out = cut.backends,
                networks_left_out = cut.networks,
                nodes_left_out = cut.nodes,
                aliases_left_out = cut.aliases,
                "the routing mesh's table passes its bounds; cut"
            );
        }
        self.view.mesh_version = table.version;
        self.view.mesh_backends = table.services.iter().map(|s| s.backends.len()).sum();
        self.mesh = Some(Arc::new(table));
        news
    }

    /// The routing mesh's table as of the last pass.
    pub fn mesh(&self) -> Option<&Arc<MeshTable>> {
        self.mesh.as_ref()
    }
}

mod answers;
mod files;
pub mod mesh;
use answers::NodeAnswer;
pub use files::needs_files;

#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod tests;
