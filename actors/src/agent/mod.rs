//! The node agent: one per node. It keeps a session with the dispatcher on the leader, runs one
//! [`TaskActor`](crate::task::TaskActor) per task assigned here, and reports their statuses.
//!
//! ```text
//!  every SESSION_INTERVAL_MS, on a poke, on a status change:
//!    agent ── Session(statuses that differ from the last assignments) ──▶ leader (any manager
//!          ◀── Assignments (complete list) ──────────────────────────────  redirects to it)
//!    new task, desired Running  ──▶ spawn TaskActor, Start
//!    known task, desired Shutdown ──▶ TaskHandle::shutdown
//!    task no longer listed        ──▶ stop its actor (its runtime leftovers go with it)
//! ```
//!
//! Sessions run off the actor, one at a time; a status that changes while one is in flight goes
//! in the next. A poke from a leader other than the manager the session in flight went to
//! abandons that session (it would wait on a dead leader until the request deadline). Nothing
//! is kept between sessions but the task actors: what to report is the difference between each
//! actor's status and what the last answer says the store holds, so a status lost on the way (a
//! leader that changed, a failed write) is simply sent again.
//!
//! At start the agent cleans what a previous run of this node left behind (processes,
//! containers) before its first session: a task the store still thinks runs here, but that
//! this run never started, is reported failed ("lost when the node restarted") and replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::model::{NodeId, TaskId, TaskState, TaskStatus};
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::replica::StoreHandle;
use crate::runtime::{LogLine, TaskContext, TaskRuntime, keep_newest};
use crate::task::{TaskArgs, TaskHandle, spawn_task};
use crate::transport::Transport;
use crate::wire::{
    Assignment, LOG_REPLY_BYTES_MAX, LOG_TASKS_MAX, Request, Response, SESSION_STATUSES_MAX,
    SessionReport, WireFailure,
};

/// The name the agent has in its node's registry.
pub const AGENT_NAME: &str = "agent";

/// A session opens at least this often.
pub const SESSION_INTERVAL_MS: u64 = 1_000;

/// How long one session may take before it counts as failed.
pub const SESSION_TIMEOUT_MS: u64 = 5_000;

/// Status reports from task actors waiting for the agent; a full channel makes the task actors
/// wait.
pub const STATUS_QUEUE_MAX: usize = 256;

/// How long cleaning a previous run's leftovers may take at start, per runtime.
pub const CLEAN_TIMEOUT_MS: u64 = 30_000;

pub enum AgentMsg {
    /// Open a session now (a poke from the leader, a timer, a status change).
    Session,
    /// A poke from a leader at this address: ask it first.
    Poke(Option<SocketAddr>),
    /// The managers membership sees Ready, to find the leader through.
    Managers(Vec<SocketAddr>),
    /// This node's store, while it is a manager (a session goes to it without the network).
    Store(Option<StoreHandle>),
    /// A task actor reported a status.
    Status(TaskId, TaskStatus),
    /// A session ended: its number, the answer and the address that gave it.
    SessionDone(u64, Result<(Vec<Assignment>, Option<SocketAddr>), String>),
    Logs {
        tasks: Vec<TaskId>,
        tail: usize,
        reply: oneshot::Sender<Response>,
    },
    Describe(RpcReplyPort<AgentView>),
}

/// What the agent runs, for the admin shell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub leader: Option<SocketAddr>,
    pub managers: Vec<SocketAddr>,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub last_error: Option<String>,
    /// Task, state, desired state.
    pub tasks: Vec<(TaskId, TaskState, TaskState)>,
}

pub struct AgentArgs {
    pub node_id: NodeId,
    pub transport: Transport,
    pub runtimes: Vec<Arc<dyn TaskRuntime>>,
    pub registry: Option<Registry>,
    /// Register task actors in the registry (the admin shell reaches them as `task/<id>`).
    pub register_tasks: bool,
    /// The managers the store names, shared with the node actor: an answer to a session is
    /// taken only from one of them, and each answer renews the list.
    pub managers: crate::node::ManagerSet,
}

struct Local {
    handle: TaskHandle,
    status: TaskStatus,
    desired: TaskState,
    shutdown_sent: bool,
}

pub struct AgentActor;

pub struct AgentState {
    me: NodeId,
    transport: Transport,
    runtimes: BTreeMap<&'static str, Arc<dyn TaskRuntime>>,
    registry: Option<Registry>,
    register_tasks: bool,
    reporter: mpsc::Sender<(TaskId, TaskStatus)>,
    tasks: BTreeMap<TaskId, Local>,
    /// What the last answer said the store holds, per task.
    known: BTreeMap<TaskId, TaskStatus>,
    /// Tasks that were running here before this run and are gone: reported failed.
    lost: BTreeMap<TaskId, TaskStatus>,
    leader: Option<SocketAddr>,
    managers: Vec<SocketAddr>,
    next_manager: usize,
    store: Option<StoreHandle>,
    in_flight: bool,
    /// Where the session in flight went first, when it went over the network.
    in_flight_to: Option<SocketAddr>,
    /// Numbers sessions: the answer of an abandoned one is ignored.
    session_seq: u64,
    again: bool,
    view: AgentView,
    /// The managers the store names (see `node::authz`), renewed by every answer.
    confirmed: crate::node::ManagerSet,
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        // Whatever a previous run left is ours to remove: this run has started nothing yet.
        let none = BTreeSet::new();
        for rt in &args.runtimes {
            let clean = rt.adopt_or_clean(args.node_id, &none);
            match tokio::time::timeout(Duration::from_millis(CLEAN_TIMEOUT_MS), clean).await {
                Ok(Ok(found)) if !found.is_empty() => {
                    info!(
                        runtime = rt.name(),
                        removed = found.len(),
                        "removed what a previous run left behind"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    warn!(runtime = rt.name(), error = %e, "cleaning a previous run failed")
                }
                Err(_) => warn!(runtime = rt.name(), "cleaning a previous run timed out"),
            }
        }
        let (reporter, mut reports) = mpsc::channel(STATUS_QUEUE_MAX);
        let me = myself.clone();
        tokio::spawn(async move {
            while let Some((task, status)) = reports.recv().await {
                if me.send_message(AgentMsg::Status(task, status)).is_err() {
                    return;
                }
            }
        });
        if let Some(r) = &args.registry {
            let poke = r.agent_poke();
            let me = myself.clone();
            tokio::spawn(async move {
                loop {
                    poke.notified().await;
                    if me.send_message(AgentMsg::Poke(None)).is_err() {
                        return;
                    }
                }
            });
        }
        myself.send_interval(Duration::from_millis(SESSION_INTERVAL_MS), || {
            AgentMsg::Session
        });
        Ok(AgentState {
            me: args.node_id,
            transport: args.transport,
            runtimes: args.runtimes.into_iter().map(|r| (r.name(), r)).collect(),
            registry: args.registry,
            register_tasks: args.register_tasks,
            reporter,
            tasks: BTreeMap::new(),
            known: BTreeMap::new(),
            lost: BTreeMap::new(),
            leader: None,
            managers: Vec::new(),
            next_manager: 0,
            store: None,
            in_flight: false,
            in_flight_to: None,
            session_seq: 0,
            again: false,
            view: AgentView::default(),
            confirmed: args.managers,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Session => state.session(&myself),
            AgentMsg::Poke(from) => {
                if let Some(from) = from {
                    state.leader = Some(from);
                    // The leader that poked is alive. A session still waiting on another
                    // manager (most often the old leader, dead, until the request deadline)
                    // is abandoned: its answer will be ignored, and it ends by its own
                    // timeout. One abandoned per poke from a new address at most.
                    if state.in_flight && state.in_flight_to.is_some_and(|to| to != from) {
                        debug!(to = ?state.in_flight_to, leader = ?from, "session abandoned for the leader that poked");
                        state.in_flight = false;
                        state.again = false;
                    }
                }
                state.session(&myself);
            }
            AgentMsg::Managers(m) => state.managers = m,
            AgentMsg::Store(s) => state.store = s,
            AgentMsg::Status(task, status) => {
                if let Some(l) = state.tasks.get_mut(&task) {
                    // Cut as the leader stores it, or a long text would differ from the
                    // stored one for ever and be reported again at every session.
                    l.status = status.cut().into_owned();
                    state.session(&myself);
                }
            }
            AgentMsg::SessionDone(seq, _) if seq != state.session_seq => {}
            AgentMsg::SessionDone(_, result) => {
                state.in_flight = false;
                match result {
                    Ok((assignments, from)) => {
                        state.view.sessions_ok += 1;
                        state.view.last_error = None;
                        if from.is_some() {
                            state.leader = from;
                        }
                        state.apply(assignments).await;
                    }
                    Err(e) => {
                        state.view.sessions_failed += 1;
                        debug!(error = %e, "session failed");
                        state.view.last_error = Some(e);
                        state.leader = None;
                        state.next_manager = state.next_manager.wrapping_add(1);
                    }
                }
                if std::mem::take(&mut state.again) {
                    state.session(&myself);
                }
            }
            AgentMsg::Logs { tasks, tail, reply } => state.logs(tasks, tail, reply),
            AgentMsg::Describe(port) => {
                let mut view = state.view.clone();
                view.leader = state.leader;
                view.managers = state.managers.clone();
                view.tasks = state
                    .tasks
                    .iter()
                    .map(|(id, l)| (*id, l.status.state, l.desired))
                    .collect();
                let _ = port.send(view); // the caller may have timed out
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // The node is stopping: its tasks stop with it (the process runtime's children die
        // with the node anyway; containers are removed by the next run's clean-up otherwise).
        for l in state.tasks.values() {
            let _ = l.handle.node_shutdown();
        }
        Ok(())
    }
}

impl AgentState {
    /// The statuses the store does not have yet.
    fn report(&self) -> SessionReport {
        let mut statuses: Vec<(TaskId, TaskStatus)> = self
            .tasks
            .iter()
            .filter(|(id, l)| self.known.get(id).is_none_or(|k| k.accepts(&l.status)))
            .map(|(id, l)| (*id, l.status.clone()))
            .chain(self.lost.iter().map(|(id, s)| (*id, s.clone())))
            .collect();
        statuses.truncate(SESSION_STATUSES_MAX);
        SessionReport { statuses }
    }

    /// Opens a session unless one is in flight (then another follows it).
    fn session(&mut self, myself: &ActorRef<AgentMsg>) {
        if self.in_flight {
            self.again = true;
            return;
        }
        let target = self.leader.or_else(|| {
            (!self.managers.is_empty())
                .then(|| self.managers[self.next_manager % self.managers.len()])
        });
        if target.is_none() && self.store.is_none() {
            return; // nobody to ask yet; the next tick tries again
        }
        self.in_flight = true;
        self.in_flight_to = target;
        self.session_seq += 1;
        let seq = self.session_seq;
        let report = self.report();
        let store = self.store.clone();
        let transport = self.transport.clone();
        let me = myself.clone();
        let node = self.me;
        let confirmed = self.confirmed.clone();
        tokio::spawn(async move {
            let bound = Duration::from_millis(SESSION_TIMEOUT_MS);
            let session = open(store, transport, &confirmed, node, target, report);
            let result = tokio::time::timeout(bound, session)
                .await
                .unwrap_or_else(|_| Err("the session timed out".into()));
            let _ = me.send_message(AgentMsg::SessionDone(seq, result)); // the agent may be stopping
        });
    }

    async fn apply(&mut self, assignments: Vec<Assignment>) {
        self.known = assignments
            .iter()
            .map(|a| (a.task.id, a.task.status.clone()))
            .collect();
        self.lost
            .retain(|id, s| self.known.get(id).is_some_and(|k| k.accepts(s)));
        let listed: BTreeSet<TaskId> = assignments.iter().map(|a| a.task.id).collect();
        let gone: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| !listed.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(l) = self.tasks.remove(&id) {
                // Stopping the actor removes what the runtime keeps of the task.
                l.handle.actor().stop(Some("no longer assigned".into()));
            }
        }
        for a in assignments {
            let t = &a.task;
            let wanted = t.desired_state <= TaskState::Running;
            if let Some(l) = self.tasks.get_mut(&t.id) {
                l.desired = t.desired_state;
                if !wanted && !l.shutdown_sent {
                    l.shutdown_sent = true;
                    let _ = l.handle.shutdown();
                }
                continue;
            }
            if t.status.state.is_terminal() {
                continue; // history from before this run
            }
            let now = crate::clock::unix_ms();
            if !wanted {
                self.lost.insert(
                    t.id,
                    lost_status(TaskState::Shutdown, now, "shut down before it started here"),
                );
            } else if t.status.state > TaskState::Assigned {
                self.lost.insert(
                    t.id,
                    lost_status(TaskState::Failed, now, "task lost when the node restarted"),
                );
            } else {
                self.start(a).await;
            }
        }
    }

    async fn start(&mut self, a: Assignment) {
        let t = a.task;
        let name = t.spec.runtime.as_str();
        let now = crate::clock::unix_ms();
        let Some(runtime) = self.runtimes.get(name).cloned() else {
            let msg = format!("runtime {name} is not available on this node");
            self.lost
                .insert(t.id, lost_status(TaskState::Rejected, now, &msg));
            return;
        };
        let ctx = TaskContext {
            task_id: t.id,
            service_id: t.service_id,
            service_name: a.service_name,
            slot: t.slot,
            node_id: self.me,
            spec: t.spec,
        };
        let args = TaskArgs {
            ctx,
            runtime,
            reporter: self.reporter.clone(),
            registry: self.registry.clone().filter(|_| self.register_tasks),
        };
        match spawn_task(args).await {
            Ok((handle, _)) => {
                let _ = handle.start();
                let status = TaskStatus::new(TaskState::Assigned, now, "assigned");
                self.tasks.insert(
                    t.id,
                    Local {
                        handle,
                        status,
                        desired: t.desired_state,
                        shutdown_sent: false,
                    },
                );
            }
            Err(e) => {
                let msg = format!("the task actor did not start: {e}");
                self.lost
                    .insert(t.id, lost_status(TaskState::Rejected, now, &msg));
            }
        }
    }

    fn logs(&self, tasks: Vec<TaskId>, tail: usize, reply: oneshot::Sender<Response>) {
        let handles: Vec<TaskHandle> = tasks
            .iter()
            .take(LOG_TASKS_MAX)
            .filter_map(|id| self.tasks.get(id).map(|l| l.handle.clone()))
            .collect();
        tokio::spawn(async move {
            let mut out: Vec<(TaskId, Vec<LogLine>)> = Vec::new();
            let mut bytes = 0usize;
            for h in handles {
                let Ok(mut lines) = h.logs(tail).await else {
                    continue;
                };
                // Newest lines are kept when the answer would grow past its bound.
                bytes += keep_newest(&mut lines, LOG_REPLY_BYTES_MAX - bytes, |l| l.text.len());
                out.push((h.id(), lines));
            }
            let _ = reply.send(Response::Logs(out)); // the asker may have gone
        });
    }
}

/// The status an agent reports for a task it never ran (or lost): `msg` is also the error,
/// unless the task was merely shut down.
pub fn lost_status(state: TaskState, now: u64, msg: &str) -> TaskStatus {
    TaskStatus {
        error: (state != TaskState::Shutdown).then(|| msg.to_string()),
        ..TaskStatus::new(state, now, msg)
    }
}

/// One session: through the local store when this node is a manager, else over the network to
/// `target`; a redirect to the leader is followed once. Over the network only a manager (by
/// its certificate and the store's last word, see `node::authz`) may answer: assignments from
/// anyone else would make this node run what they chose.
async fn open(
    store: Option<StoreHandle>,
    transport: Transport,
    managers: &crate::node::ManagerSet,
    node: NodeId,
    target: Option<SocketAddr>,
    report: SessionReport,
) -> Result<(Vec<Assignment>, Option<SocketAddr>), String> {
    let mut addr = target;
    if let Some(store) = store {
        match store.session(node, report.clone()).await {
            Response::Assignments { tasks, managers: m } => {
                managers.learn(m);
                return Ok((tasks, None));
            }
            Response::NotLeader { leader: Some(l) } => addr = Some(l),
            Response::NotLeader { leader: None } => return Err("no leader".into()),
            other => return Err(answer_error(other)),
        }
    }
    for _ in 0..2 {
        let Some(to) = addr else {
            return Err("no manager known".into());
        };
        let answer = transport
            .request_identified(to, Request::Session(report.clone()))
            .await;
        if let Ok((who, _)) = &answer
            && !managers.may_command(who)
        {
            warn!(%to, node = %who.node_id, role = %who.role, "session answered by a node that is no manager: refused");
            return Err(format!("{to} is no manager: its answer was refused"));
        }
        match answer.map(|(_, resp)| resp) {
            Ok(Response::Assignments { tasks, managers: m }) => {
                managers.learn(m);
                return Ok((tasks, Some(to)));
            }
            Ok(Response::NotLeader { leader: Some(l) }) if l != to => addr = Some(l),
            Ok(Response::NotLeader { .. }) => return Err(format!("{to} knows no leader")),
            Ok(other) => return Err(answer_error(other)),
            Err(e) => return Err(format!("cannot reach {to}: {e}")),
        }
    }
    Err("redirected twice".into())
}

fn answer_error(r: Response) -> String {
    match r {
        Response::Failed(WireFailure::Busy) => "the leader is not ready yet".into(),
        Response::Failed(f) => f.to_string(),
        other => format!("unexpected answer {other:?}"),
    }
}

/// The typed handle the node and the control API hold.
#[derive(Clone)]
pub struct AgentHandle {
    actor: ActorRef<AgentMsg>,
}

impl AgentHandle {
    pub fn actor(&self) -> &ActorRef<AgentMsg> {
        &self.actor
    }

    /// Messages to the agent are hints or carry their own reply: one lost while the agent stops
    /// has nobody to matter to.
    pub fn tell(&self, msg: AgentMsg) {
        let _ = self.actor.send_message(msg);
    }

    pub async fn describe(&self) -> Result<AgentView, String> {
        crate::ask::ask(&self.actor, AgentMsg::Describe, 5_000)
            .await
            .map_err(|e| e.to_string())
    }

    /// The last `tail` lines of the tasks this node runs, for `service logs`.
    pub async fn logs(&self, tasks: Vec<TaskId>, tail: usize) -> Response {
        let (tx, rx) = oneshot::channel();
        self.tell(AgentMsg::Logs {
            tasks,
            tail,
            reply: tx,
        });
        rx.await.unwrap_or(Response::Failed(WireFailure::Invalid(
            "the agent stopped".into(),
        )))
    }
}

impl AdminTarget for AgentHandle {
    fn messages(&self) -> &'static [&'static str] {
        &["Describe"]
    }

    fn call(&self, _msg: &str, _args: Value) -> AdminReply<'_> {
        Box::pin(async move {
            let view = self
                .describe()
                .await
                .map_err(|e| AdminError::NoAnswer(AGENT_NAME.into(), e))?;
            serde_json::to_value(view)
                .map_err(|e| AdminError::NoAnswer(AGENT_NAME.into(), e.to_string()))
        })
    }
}

/// Starts the agent and registers it as `agent`.
pub async fn spawn_agent(
    args: AgentArgs,
) -> Result<(AgentHandle, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let registry = args.registry.clone();
    let (actor, join) = Actor::spawn(None, AgentActor, args).await?;
    let handle = AgentHandle { actor };
    if let Some(r) = registry {
        r.register(AGENT_NAME.into(), Arc::new(handle.clone()))?;
    }
    Ok((handle, join))
}
