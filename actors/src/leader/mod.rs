//! The leader actor: exists only on the manager whose store is the raft leader, and moves when
//! leadership moves. It runs the orchestrators, the scheduler and the dispatcher: nodes open
//! sessions with it to report their tasks' statuses and learn their assignments, and it keeps
//! the store's tasks at what the services want.
//!
//! ```text
//!  StoreActor ── LeaderChanged(me) ──▶ spawn LeaderActor        (stopped when leadership moves)
//!  StoreActor ── Changed / Ready(nodes) ──▶ LeaderActor ──▶ pass (debounced, longer when large)
//!  node agent ── Session(statuses) ──▶ LeaderActor ──▶ Assignments (from the last pass,
//!                                                     bounded in bytes: see `answer`)
//!
//!  pass: read nodes, services, tasks ─▶ plan::plan (pure) ─▶ propose ops (compare-and-set)
//!                                                       └──▶ poke nodes whose assignments changed
//! ```
//!
//! The leader keeps nothing the store does not have: a new leader reads everything again and
//! carries on. It answers no session before its first pass (an empty answer would tell a node
//! to stop everything). A status lost on the way is reported again, since the agent sends every
//! status that differs from what its last assignments say.

pub mod answer;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::membership::MemberView;
use crate::model::{NodeDescription, NodeId, NodeState, Service, Task, TaskId, TaskStatus};
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::replica::{StoreFailure, StoreHandle};
use crate::store::{Kind, NodeObject, OPS_PER_COMMAND_MAX, ObjectBody, Op, StoreCommand};
use crate::transport::Transport;
use crate::wire::{Assignment, OneWay, Response, SessionReport, WireFailure};

use crate::scheduler::{Unseen, node_views};
use plan::{PlanInput, VersionedTask};

/// The name the leader actor has in its node's registry.
pub const LEADER_NAME: &str = "leader";

/// A pass runs at least this long after the first change that asks for one, so that a burst
/// of changes (a node's statuses, the writes of the previous pass) is handled at once.
pub const PASS_DEBOUNCE_MS: u64 = 20;

/// The longest a change waits for its pass, however large the cluster: well inside the 3 s a
/// lost task may take to be replaced.
pub const PASS_DEBOUNCE_MAX_MS: u64 = 250;

/// Objects (nodes and tasks) per millisecond of debounce: see [`pass_debounce_ms`].
pub const PASS_OBJECTS_PER_MS: usize = 10;

/// How long a change waits for its pass in a cluster of `objects` nodes and tasks (as of the
/// last pass): [`PASS_DEBOUNCE_MS`] up to 200 objects, then 1 ms per [`PASS_OBJECTS_PER_MS`]
/// objects, at most [`PASS_DEBOUNCE_MAX_MS`]. A pass reads and plans every object, so its cost
/// grows with the cluster while the changes asking for it (every applied entry, every fresh
/// status) come more often too: with a fixed 20 ms a 1,000-node cluster passed about 50 times
/// a second and the leader did little else. Growing the wait with the size keeps the leader's
/// share of time spent passing about constant. A pure function of counts, not of measured
/// time, so that the simulator stays deterministic.
pub fn pass_debounce_ms(objects: usize) -> u64 {
    let grown = (objects / PASS_OBJECTS_PER_MS) as u64;
    grown.clamp(PASS_DEBOUNCE_MS, PASS_DEBOUNCE_MAX_MS)
}

/// When the wake timer for a restart delay that ends at `end_ms` fires, asked at `now_ms`: one
/// millisecond after the end, so that the pass it brings finds the delay over.
pub fn wake_fire_ms(end_ms: u64, now_ms: u64) -> u64 {
    now_ms + end_ms.saturating_sub(now_ms) + 1
}

/// The wake timer to set, if any, when a pass at `now_ms` wants one to fire at `wanted`.
/// `pending` is when the one already set fires (forgotten once that time has passed) and
/// becomes the new one's time. Every pass before a restart delay ends wants the same time, so
/// only an earlier one sets another timer: one timer per delay end, however many passes.
pub fn wake_to_set(pending: &mut Option<u64>, wanted: Option<u64>, now_ms: u64) -> Option<u64> {
    *pending = pending.filter(|&w| w > now_ms);
    let wanted = wanted?;
    if pending.is_some_and(|w| w <= wanted) {
        return None;
    }
    *pending = Some(wanted);
    Some(wanted)
}

/// A pass runs at least this often, changes or not: restart delays and the down grace end
/// without a message.
pub const PASS_INTERVAL_MS: u64 = 1_000;

/// A new leader treats nodes membership does not see as Unknown, not Down, for this long: their
/// tasks are not orphaned until membership had time to hear from everyone. A node membership
/// declared Down is Down at once (the leader that died with its node, most often).
pub const DOWN_GRACE_MS: u64 = 3_000;

/// After a pass whose writes failed, the next one waits this long.
pub const RETRY_MS: u64 = 200;

/// Statuses kept between passes, across all nodes; a node's report beyond it waits for the
/// agent to send it again.
pub const REPORTS_MAX: usize = 100_000;

pub enum LeaderMsg {
    /// Reads the store and runs a pass now.
    Rebuild,
    Describe(RpcReplyPort<LeaderView>),
    /// The store applied new entries.
    Changed,
    /// Membership's view: who is Ready, and what each node says about itself.
    Members(Vec<MemberView>),
    /// A node's session: its statuses in, its assignments out.
    Session {
        from: NodeId,
        report: SessionReport,
        reply: oneshot::Sender<Response>,
    },
    /// The interval or a restart delay's end came due: a pass whatever changed.
    Pass,
    /// The debounce (or retry) timer came due: a pass if something asked for one since the
    /// last pass.
    Due,
}

/// What the leader knows, as of its last pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub term: u64,
    /// When this manager became leader (ms since the epoch).
    pub since_ms: u64,
    pub rebuilt_at_index: u64,
    pub nodes: Vec<NodeId>,
    pub managers: Vec<NodeId>,
    pub ready: Vec<NodeId>,
    pub services: usize,
    pub tasks: usize,
    pub passes: u64,
    /// Tasks waiting for a node after the last pass.
    pub pending: usize,
    pub last_error: Option<String>,
}

pub struct LeaderArgs {
    pub store: StoreHandle,
    pub term: u64,
    pub me: NodeId,
    pub members: Vec<MemberView>,
    pub transport: Transport,
    pub registry: Option<Registry>,
    pub rng_seed: u64,
}

pub struct LeaderActor;

pub struct LeaderState {
    store: StoreHandle,
    me: NodeId,
    transport: Transport,
    registry: Option<Registry>,
    rng: StdRng,
    view: LeaderView,
    ready: BTreeSet<NodeId>,
    /// Nodes membership declared Down: Down to the leader even during [`DOWN_GRACE_MS`].
    down: BTreeSet<NodeId>,
    /// What each node last said about itself (hostname, labels, runtimes, resources); the
    /// store's node objects do not carry it.
    descriptions: BTreeMap<NodeId, NodeDescription>,
    reports: BTreeMap<TaskId, TaskStatus>,
    /// From the last pass: each node's assignments and address.
    assignments: BTreeMap<NodeId, Vec<Assignment>>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    /// Where each task is, to check that only its node reports it.
    task_node: BTreeMap<TaskId, NodeId>,
    /// The debounce timer is set. Only its own firing clears it: a pass for another reason
    /// leaves it running, so that changes never set a second one (each stray timer would be
    /// one more pass, and at scale they added up to dozens of passes a second).
    scheduled: bool,
    /// Something asked for a pass since the last one began.
    dirty: bool,
    /// When the wake timer set for a restart delay's end fires (see [`wake_to_set`]).
    wake_at: Option<u64>,
}

impl Actor for LeaderActor {
    type Msg = LeaderMsg;
    type State = LeaderState;
    type Arguments = LeaderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LeaderMsg>,
        args: LeaderArgs,
    ) -> Result<LeaderState, ActorProcessingErr> {
        // The first pass runs from the mailbox: the store actor that spawned us must not be
        // waited on while it is busy spawning.
        myself.send_message(LeaderMsg::Rebuild)?;
        myself.send_interval(Duration::from_millis(PASS_INTERVAL_MS), || LeaderMsg::Pass);
        let mut state = LeaderState {
            store: args.store,
            me: args.me,
            transport: args.transport,
            registry: args.registry,
            rng: StdRng::seed_from_u64(args.rng_seed),
            view: LeaderView {
                term: args.term,
                since_ms: crate::clock::unix_ms(),
                ..LeaderView::default()
            },
            ready: BTreeSet::new(),
            down: BTreeSet::new(),
            descriptions: BTreeMap::new(),
            reports: BTreeMap::new(),
            assignments: BTreeMap::new(),
            addrs: BTreeMap::new(),
            task_node: BTreeMap::new(),
            scheduled: false,
            dirty: false,
            wake_at: None,
        };
        state.learn(args.members);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<LeaderMsg>,
        msg: LeaderMsg,
        state: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LeaderMsg::Rebuild | LeaderMsg::Pass => state.pass(&myself).await,
            LeaderMsg::Due => {
                state.scheduled = false;
                if state.dirty {
                    state.pass(&myself).await;
                }
            }
            LeaderMsg::Describe(port) => {
                let _ = port.send(state.view.clone()); // the caller may have timed out
            }
            LeaderMsg::Changed => state.soon(&myself, state.debounce_ms()),
            LeaderMsg::Members(members) => {
                if state.learn(members) {
                    state.soon(&myself, 0);
                }
            }
            LeaderMsg::Session {
                from,
                report,
                reply,
            } => {
                if state.view.passes == 0 {
                    // Nothing read yet: an empty answer would tell the node to stop everything.
                    let _ = reply.send(Response::Failed(WireFailure::Busy)); // as below
                    return Ok(());
                }
                let mut fresh = false;
                for (task, status) in report.statuses {
                    // Only the node a task is on speaks for it.
                    if state.task_node.get(&task) != Some(&from) {
                        continue;
                    }
                    if state.reports.len() >= REPORTS_MAX && !state.reports.contains_key(&task) {
                        break;
                    }
                    state.reports.insert(task, status);
                    fresh = true;
                }
                if fresh {
                    state.soon(&myself, state.debounce_ms());
                }
                let mine = state.assignments.get(&from).cloned().unwrap_or_default();
                let managers = state.view.managers.clone();
                let answer = Response::Assignments {
                    tasks: mine,
                    managers,
                };
                let _ = reply.send(answer); // the node may have gone
            }
        }
        Ok(())
    }
}

impl LeaderState {
    /// Takes membership's view; true when something the scheduler looks at changed.
    fn learn(&mut self, members: Vec<MemberView>) -> bool {
        let (mut ready, mut down) = (BTreeSet::new(), BTreeSet::new());
        for m in &members {
            match m.state {
                NodeState::Ready => {
                    ready.insert(m.id);
                }
                NodeState::Down => {
                    down.insert(m.id);
                }
                NodeState::Unknown => {}
            }
        }
        let descriptions: BTreeMap<NodeId, NodeDescription> = members
            .into_iter()
            .filter_map(|m| m.description.map(|d| (m.id, d)))
            .collect();
        let changed = ready != self.ready || down != self.down || descriptions != self.descriptions;
        self.ready = ready;
        self.down = down;
        self.descriptions = descriptions;
        changed
    }

    /// How long a change waits for its pass, from the size the last pass saw.
    fn debounce_ms(&self) -> u64 {
        pass_debounce_ms(self.view.nodes.len() + self.view.tasks)
    }

    /// Asks for a pass in `after_ms`, or when the debounce timer already set fires.
    fn soon(&mut self, myself: &ActorRef<LeaderMsg>, after_ms: u64) {
        self.dirty = true;
        if !self.scheduled {
            self.scheduled = true;
            myself.send_after(Duration::from_millis(after_ms), || LeaderMsg::Due);
        }
    }

    async fn pass(&mut self, myself: &ActorRef<LeaderMsg>) {
        self.dirty = false;
        match self.try_pass(myself).await {
            Ok(()) => self.view.last_error = None,
            Err(e) => {
                warn!(error = %e, "leader pass failed; trying again");
                self.view.last_error = Some(e.to_string());
                self.soon(myself, RETRY_MS);
            }
        }
    }

    async fn try_pass(&mut self, myself: &ActorRef<LeaderMsg>) -> Result<(), StoreFailure> {
        let now = crate::clock::unix_ms();
        // The first pass confirms with a read index that this replica applied everything
        // committed before the term began: a pass over an older state would not see the newest
        // tasks and create their slots again. Later passes read the leader's own replica, which
        // applies every commit first.
        let fresh = self.view.passes == 0;
        let nodes = self.store.read(Kind::Node, fresh).await?;
        let services = self.store.read(Kind::Service, false).await?;
        let tasks = self.store.read(Kind::Task, false).await?;
        // Node descriptions come from gossip; the store keeps the newest one seen, so that
        // `node ls`, `service ps` and a manager that restarts know every node by name.
        let mut describe_ops = Vec::new();
        let node_objects: Vec<NodeObject> = nodes
            .objects
            .into_iter()
            .filter_map(|o| match o.body {
                ObjectBody::Node(mut n) => {
                    if let Some(d) = self.descriptions.get(&n.id) {
                        let newer = n
                            .description
                            .as_ref()
                            .is_none_or(|old| old.version < d.version);
                        if newer {
                            n.description = Some(d.clone());
                            describe_ops.push(Op::Put {
                                kind: Kind::Node,
                                id: o.id.clone(),
                                expect: crate::store::Expect::Version(o.version),
                                body: ObjectBody::Node(n.clone()),
                            });
                        }
                    }
                    Some(n)
                }
                _ => None,
            })
            .collect();
        let services: Vec<Service> = services
            .objects
            .into_iter()
            .filter_map(|o| match o.body {
                ObjectBody::Service(s) => Some(s),
                _ => None,
            })
            .collect();
        let tasks: Vec<VersionedTask> = tasks
            .objects
            .into_iter()
            .filter_map(|o| match o.body {
                ObjectBody::Task(task) => Some(VersionedTask {
                    version: o.version,
                    task: std::borrow::Cow::Owned(task),
                }),
                _ => None,
            })
            .collect();
        let mut ready = self.ready.clone();
        ready.insert(self.me);
        let unseen = if now.saturating_sub(self.view.since_ms) >= DOWN_GRACE_MS {
            Unseen::Down
        } else {
            Unseen::DownOnly(&self.down)
        };
        let views = node_views(&node_objects, &ready, unseen);
        let rng = &mut self.rng;
        let mut new_id = || TaskId(rng.random::<u128>());
        let plan = plan::plan(
            &PlanInput {
                now_ms: now,
                nodes: &views,
                services: &services,
                tasks: &tasks,
                reports: &self.reports,
            },
            &mut new_id,
        );

        // The tasks as they will be once the writes land, for the assignments handed out
        // before the next read.
        let mut current: BTreeMap<TaskId, Task> = tasks
            .into_iter()
            .map(|t| (t.task.id, t.task.into_owned()))
            .collect();
        let mut result = Ok(());
        if !describe_ops.is_empty()
            && let Err(e) = self.propose_all(now, &describe_ops).await
        {
            // Names only; the pass goes on, and the next one tries again.
            debug!(error = %e, "node descriptions not written");
        }
        for chunk in batches(&plan.ops) {
            let cmd = StoreCommand {
                now_ms: now,
                ops: chunk.to_vec(),
            };
            match self.store.propose(cmd).await {
                Ok(_) => {
                    for op in chunk {
                        match op {
                            Op::Put {
                                body: ObjectBody::Task(t),
                                ..
                            } => {
                                current.insert(t.id, t.clone());
                            }
                            Op::Delete { id, .. } => {
                                if let Ok(id) = id.parse() {
                                    current.remove(&id);
                                }
                            }
                            Op::Put { .. } => {}
                        }
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            // Reported statuses are in the store now (or were refused for good: a stale or
            // backward one). A failed write keeps them for the next pass.
            self.reports.clear();
        }
        if !plan.ops.is_empty() {
            debug!(
                ops = plan.ops.len(),
                created = plan.created,
                placed = plan.placed,
                pending = plan.pending,
                "leader pass"
            );
        }

        let names: BTreeMap<_, _> = services
            .iter()
            .map(|s| (s.id, s.spec.name.clone()))
            .collect();
        self.task_node = current
            .values()
            .filter_map(|t| t.node_id.map(|n| (t.id, n)))
            .collect();
        self.assignments.clear();
        for (node, (list, cut)) in answer::answers(current.values(), &names) {
            if cut.live_over {
                // Listed anyway: leaving a live task out would stop it (see `answer`).
                warn!(%node, tasks = list.len(), "the node's live tasks pass the answer's byte bound");
            }
            if cut.history_left_out > 0 {
                debug!(%node, left_out = cut.history_left_out, "old task history left out of the node's answer");
            }
            self.assignments.insert(node, list);
        }
        self.addrs = node_objects.iter().map(|n| (n.id, n.addr)).collect();
        if result.is_ok() {
            for node in &plan.poke {
                self.poke(*node);
            }
        }
        let wanted = plan.wake_at_ms.map(|end| wake_fire_ms(end, now));
        if let Some(fire) = wake_to_set(&mut self.wake_at, wanted, now) {
            myself.send_after(Duration::from_millis(fire - now), || LeaderMsg::Pass);
        }

        self.view.passes += 1;
        self.view.rebuilt_at_index = nodes.applied_index;
        self.view.nodes = node_objects.iter().map(|n| n.id).collect();
        self.view.managers = node_objects
            .iter()
            .filter(|n| n.raft_id.is_some())
            .map(|n| n.id)
            .collect();
        self.view.ready = ready.into_iter().collect();
        self.view.services = services.len();
        self.view.tasks = current.len();
        self.view.pending = plan.pending;
        result
    }

    async fn propose_all(&self, now: u64, ops: &[Op]) -> Result<(), StoreFailure> {
        for chunk in batches(ops) {
            let cmd = StoreCommand {
                now_ms: now,
                ops: chunk.to_vec(),
            };
            self.store.propose(cmd).await?;
        }
        Ok(())
    }

    /// Tells a node its assignments changed: the local agent through the registry, others
    /// with a one-way message (best effort: the agent asks every second anyway).
    fn poke(&self, node: NodeId) {
        if node == self.me {
            if let Some(r) = &self.registry {
                r.agent_poke().notify_one();
            }
        } else if let Some(addr) = self.addrs.get(&node) {
            let _ = self.transport.send_oneway(*addr, OneWay::Poke);
        }
    }
}

/// Bytes of operations the leader puts in one command: half the store's bound leaves room for
/// the command's own framing.
pub const BATCH_BYTES_MAX: usize = crate::store::COMMAND_BYTES_MAX / 2;

/// Splits `ops` into commands of at most [`OPS_PER_COMMAND_MAX`] operations and about
/// [`BATCH_BYTES_MAX`] bytes (an operation bigger than that goes alone, and the store refuses
/// it with a clear error).
fn batches(ops: &[Op]) -> Vec<&[Op]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, op) in ops.iter().enumerate() {
        let size = bincode::serde::encode_to_vec(op, bincode::config::standard())
            .map(|v| v.len())
            .unwrap_or(BATCH_BYTES_MAX);
        if i > start && (i - start == OPS_PER_COMMAND_MAX || bytes + size > BATCH_BYTES_MAX) {
            out.push(&ops[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

/// The leader actor as the admin shell sees it.
struct LeaderAdmin(ActorRef<LeaderMsg>);

impl AdminTarget for LeaderAdmin {
    fn messages(&self) -> &'static [&'static str] {
        &["Describe", "Rebuild"]
    }

    fn call(&self, msg: &str, _args: Value) -> AdminReply<'_> {
        let msg = msg.to_string();
        Box::pin(async move {
            let no_answer = |e: String| AdminError::NoAnswer(LEADER_NAME.into(), e);
            if msg == "Rebuild" {
                self.0
                    .send_message(LeaderMsg::Rebuild)
                    .map_err(|e| no_answer(e.to_string()))?;
            }
            let view = ractor::call_t!(self.0, LeaderMsg::Describe, 5_000)
                .map_err(|e| no_answer(e.to_string()))?;
            serde_json::to_value(view).map_err(|e| no_answer(e.to_string()))
        })
    }
}

/// Starts the leader actor for `term` and registers it as `leader`.
pub async fn start(args: LeaderArgs) -> Result<ActorRef<LeaderMsg>, ActorProcessingErr> {
    let registry = args.registry.clone();
    let term = args.term;
    let (actor, _) = Actor::spawn(None, LeaderActor, args).await?;
    if let Some(r) = &registry {
        r.unregister(LEADER_NAME);
        r.register(LEADER_NAME.into(), Arc::new(LeaderAdmin(actor.clone())))?;
    }
    info!(term, "leader actor started");
    Ok(actor)
}

/// Stops the leader actor (leadership moved) and unregisters it.
pub fn stop(actor: ActorRef<LeaderMsg>, registry: Option<&Registry>) {
    if let Some(r) = registry {
        r.unregister(LEADER_NAME);
    }
    actor.stop(Some("leadership moved".into()));
    info!("leader actor stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Expect;

    fn op(bytes: usize) -> Op {
        Op::Delete {
            kind: Kind::Task,
            id: "x".repeat(bytes),
            expect: Expect::Any,
        }
    }

    #[test]
    fn one_wake_timer_per_restart_delay_end() {
        assert_eq!(wake_fire_ms(5_000, 1_000), 5_001);
        assert_eq!(
            wake_fire_ms(500, 1_000),
            1_001,
            "an end already past wakes at once"
        );
        let mut pending = None;
        assert_eq!(wake_to_set(&mut pending, Some(5_001), 1_000), Some(5_001));
        assert_eq!(
            wake_to_set(&mut pending, Some(5_001), 2_000),
            None,
            "same end"
        );
        assert_eq!(
            wake_to_set(&mut pending, Some(9_001), 3_000),
            None,
            "a later end"
        );
        assert_eq!(wake_to_set(&mut pending, Some(4_001), 3_000), Some(4_001));
        assert_eq!(wake_to_set(&mut pending, None, 3_500), None);
        assert_eq!(pending, Some(4_001));
        // Once it has fired it is forgotten, and the next end sets one again.
        assert_eq!(wake_to_set(&mut pending, Some(9_001), 4_001), Some(9_001));
    }

    #[test]
    fn the_debounce_grows_with_the_cluster_within_bounds() {
        assert_eq!(pass_debounce_ms(0), PASS_DEBOUNCE_MS);
        assert_eq!(pass_debounce_ms(200), PASS_DEBOUNCE_MS);
        assert_eq!(pass_debounce_ms(1_000), 100);
        assert_eq!(pass_debounce_ms(100_000), PASS_DEBOUNCE_MAX_MS);
        let steps: Vec<u64> = (0..5_000).step_by(100).map(pass_debounce_ms).collect();
        assert!(steps.is_sorted(), "{steps:?}");
    }

    #[test]
    fn batches_respect_the_count_and_the_size() {
        let many: Vec<Op> = (0..2_500).map(|_| op(1)).collect();
        let sizes: Vec<usize> = batches(&many).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);

        let big: Vec<Op> = (0..10).map(|_| op(BATCH_BYTES_MAX / 3)).collect();
        let b = batches(&big);
        assert!(
            b.iter().all(|b| b.len() <= 2),
            "{:?}",
            b.iter().map(|b| b.len()).collect::<Vec<_>>()
        );
        assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 10, "nothing lost");
        assert!(batches(&[]).is_empty());
    }
}
