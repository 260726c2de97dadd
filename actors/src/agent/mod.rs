//! The node agent: one per node. It keeps a session with the dispatcher on the leader, runs one
//! [`TaskActor`](crate::task::TaskActor) per task assigned here, and reports their statuses.
//!
//! ```text
//!  every SESSION_INTERVAL_MS, on a poke, on a status change:
//!    agent ── Session(statuses the store does not hold yet) ──▶ leader (any manager
//!          ◀── Assignments (complete list) ────────────────────  redirects to it)
//!    a new routing-mesh table   ──▶ published on `AgentArgs::mesh`, kept for task ports
//!    new task, desired Running  ──▶ spawn TaskActor, Start (its service's published ports
//!                                   from the latest table in its context)
//!    known task, desired Shutdown ──▶ TaskHandle::shutdown
//!    task no longer listed        ──▶ stop its actor (its runtime leftovers go with it)
//! ```
//!
//! Every decision is the [`AgentMachine`]'s (`machine.rs`, sans-IO, which the simulator drives
//! too): when a session opens and where it goes, what it reports, which answer counts, when a
//! poke abandons the session in flight, which tasks start, shut down or stop, and which are
//! reported lost. This actor is its shell: it feeds the machine its timer, the node actor's
//! news (pokes, the Ready managers, this node's store), its task actors' statuses and the
//! outcomes of session requests, and carries out the effects — task actors spawned, told or
//! stopped, and each session request sent off the actor (through this node's store, or over
//! the network to a manager whose certificate says it is one) within [`SESSION_TIMEOUT_MS`].
//!
//! At start the agent cleans what a previous run of this node left behind (processes,
//! containers) before its first session: a task the store still thinks runs here, but that
//! this run never started, is reported failed ("lost when the node restarted") and replaced.

pub mod machine;
mod msg;
pub mod overlay;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub use machine::{
    AgentEffect, AgentInput, AgentMachine, AssignedTask, SESSION_NETWORK_REQUESTS_MAX,
    SessionOutcome, Target, lost_status,
};
pub use msg::{AgentMsg, AgentView};

use crate::model::{NodeId, TaskId, TaskStatus};
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::replica::StoreHandle;
use crate::runtime::{LogLine, TaskContext, TaskRuntime, keep_newest};
use crate::task::{TaskArgs, TaskHandle, spawn_task};
use crate::transport::Transport;
use crate::vault::{VAULT_BASE_DIR, VaultArgs, VaultHandle, spawn_vault};
use crate::wire::{
    Assignment, LOG_REPLY_BYTES_MAX, LOG_TASKS_MAX, MeshTable, Request, Response, SessionReport,
    WireFailure,
};

/// The name the agent has in its node's registry.
pub const AGENT_NAME: &str = "agent";

/// A session opens at least this often.
pub const SESSION_INTERVAL_MS: u64 = 1_000;

/// How long one session (its redirect included) may take before it counts as failed.
pub const SESSION_TIMEOUT_MS: u64 = 5_000;

/// Status reports from task actors waiting for the agent; a full channel makes the task actors
/// wait.
pub const STATUS_QUEUE_MAX: usize = 256;

/// How long one runtime may take to remove a stack's volumes.
pub const VOLUMES_RM_TIMEOUT_MS: u64 = 10_000;

/// How long cleaning a previous run's leftovers may take at start, per runtime.
pub const CLEAN_TIMEOUT_MS: u64 = 30_000;

pub struct AgentArgs {
    pub node_id: NodeId,
    pub transport: Transport,
    pub runtimes: Vec<Arc<dyn TaskRuntime>>,
    pub registry: Option<Registry>,
    /// Register task actors in the registry (the admin shell reaches them as `task/<id>`).
    pub register_tasks: bool,
    /// The managers the store names, shared with the node actor: an answer to a session is
    /// taken only from one of them, and each answer renews the list.
    pub managers: crate::trust::ManagerSet,
    /// Where the agent publishes each routing-mesh table a session answer brings.
    pub mesh: Option<crate::wire::MeshFeed>,
    /// The port of the routing mesh's VIP listener, where this node redirects TCP
    /// connections to the VIPs of its overlay networks (None: nothing is redirected).
    pub vip_port: Option<u16>,
}

pub struct AgentActor;

pub struct AgentState {
    me: NodeId,
    transport: Transport,
    runtimes: BTreeMap<&'static str, Arc<dyn TaskRuntime>>,
    registry: Option<Registry>,
    register_tasks: bool,
    reporter: mpsc::Sender<(TaskId, TaskStatus)>,
    machine: AgentMachine,
    /// The task actors the machine asked for, until it stops them.
    actors: BTreeMap<TaskId, TaskHandle>,
    store: Option<StoreHandle>,
    /// When the session in flight must end, by its number: a redirect's request gets what
    /// is left.
    deadline: Option<(u64, tokio::time::Instant)>,
    /// The managers the store names (see `trust::authz`), renewed by every answer.
    confirmed: crate::trust::ManagerSet,
    /// The node's SecretVault: the secrets and configs this node's tasks need, in memory, and
    /// each task's files on tmpfs while it runs.
    vault: VaultHandle,
    /// The latest routing-mesh table, for the ports of the tasks it starts.
    mesh: Option<Arc<MeshTable>>,
    /// Where each new table is published for the routing mesh.
    mesh_feed: Option<crate::wire::MeshFeed>,
    /// The overlay networks of this node's tasks, and their devices.
    overlays: overlay::NodeOverlays,
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
        // The overlay devices an earlier run left go before any task of this run starts.
        let overlays = overlay::NodeOverlays::new(args.vip_port);
        overlays.sweep().await;
        // The vault empties the node's secrets directory before any task of this run starts.
        let (vault, _) = spawn_vault(VaultArgs {
            node_id: args.node_id,
            base: VAULT_BASE_DIR.into(),
            registry: args.registry.clone(),
        })
        .await?;
        let (reporter, mut reports) = mpsc::channel(STATUS_QUEUE_MAX);
        let me = myself.clone();
        tokio::spawn(async move {
            while let Some((task, status)) = reports.recv().await {
                if me.send_message(AgentMsg::TaskStatus(task, status)).is_err() {
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
            AgentMsg::Tick
        });
        let names = args.runtimes.iter().map(|r| r.name().to_string());
        Ok(AgentState {
            me: args.node_id,
            transport: args.transport,
            machine: AgentMachine::new(names, 0),
            runtimes: args.runtimes.into_iter().map(|r| (r.name(), r)).collect(),
            registry: args.registry,
            register_tasks: args.register_tasks,
            reporter,
            actors: BTreeMap::new(),
            store: None,
            deadline: None,
            confirmed: args.managers,
            vault,
            mesh: None,
            mesh_feed: args.mesh,
            overlays,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            AgentMsg::Tick => AgentInput::Tick,
            AgentMsg::Poke(from) => AgentInput::Poke { from },
            AgentMsg::ManagersReady(m) => AgentInput::ManagersChanged(m),
            AgentMsg::LocalStore(s) => {
                let available = s.is_some();
                state.store = s;
                AgentInput::LocalStore { available }
            }
            AgentMsg::TaskStatus(task, status) => {
                if status.state.is_terminal() {
                    // The task's files go with its end; its container or namespace is done
                    // with them.
                    state.vault.release(task);
                }
                AgentInput::TaskStatus { task, status }
            }
            AgentMsg::SessionDone { seq, hop, outcome } => {
                AgentInput::SessionDone { seq, hop, outcome }
            }
            AgentMsg::SessionTimedOut { seq } => AgentInput::SessionTimedOut { seq },
            AgentMsg::Logs { tasks, tail, reply } => {
                state.logs(tasks, tail, reply);
                return Ok(());
            }
            AgentMsg::RemoveVolumes {
                label,
                value,
                reply,
            } => {
                state.remove_volumes(label, value, reply);
                return Ok(());
            }
            AgentMsg::Describe(port) => {
                let _ = port.send(state.machine.view()); // the caller may have timed out
                return Ok(());
            }
        };
        state.feed(&myself, input).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        // The node is stopping: its tasks stop with it (the process runtime's children die
        // with the node anyway; containers are removed by the next run's clean-up otherwise).
        for h in state.actors.values() {
            let _ = h.node_shutdown();
        }
        // The vault removes every file of this node's tasks as it stops.
        state.vault.actor().stop(Some("the agent stopped".into()));
        Ok(())
    }
}

impl AgentState {
    /// Feeds the machine one input and carries out its effects; a task actor that fails to
    /// start goes back in as an input.
    async fn feed(
        &mut self,
        myself: &ActorRef<AgentMsg>,
        input: AgentInput<SocketAddr, Assignment>,
    ) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let mut out = Vec::new();
            self.machine
                .handle(crate::clock::unix_ms(), input, &mut out);
            for effect in out {
                match effect {
                    AgentEffect::OpenSession {
                        seq,
                        hop,
                        to,
                        report,
                        held,
                        mesh_version,
                    } => self.open(
                        myself,
                        seq,
                        hop,
                        to,
                        SessionReport {
                            statuses: report,
                            held,
                            mesh_version,
                        },
                    ),
                    AgentEffect::MeshTable(table) => {
                        debug!(
                            version = table.version,
                            services = table.services.len(),
                            "new routing-mesh table"
                        );
                        if let Some(feed) = &self.mesh_feed {
                            // Kept by the channel even while the mesh is not watching.
                            feed.send_replace(Some(Arc::clone(&table)));
                        }
                        self.mesh = Some(table);
                        // Peers and VIPs follow the table; a network that fails here is
                        // retried with the next table or task.
                        self.overlays.sync(self.me, self.mesh.as_deref()).await;
                    }
                    AgentEffect::HoldFiles(files) => self.vault.hold(files),
                    AgentEffect::DropFiles(keys) => self.vault.forget(keys),
                    AgentEffect::StartTask(a) => {
                        let task = a.task.id;
                        if let Err(error) = self.start(a).await {
                            inputs.push_back(AgentInput::TaskStartFailed { task, error });
                        }
                    }
                    AgentEffect::ShutdownTask(id) => {
                        if let Some(h) = self.actors.get(&id) {
                            let _ = h.shutdown(); // an actor that stopped has nothing to stop
                        }
                    }
                    AgentEffect::StopTask(id) => {
                        if let Some(h) = self.actors.remove(&id) {
                            // Stopping the actor removes what the runtime keeps of the task.
                            h.actor().stop(Some("no longer assigned".into()));
                        }
                        self.vault.release(id);
                        let table = self.mesh.clone();
                        self.overlays
                            .task_removed(self.me, table.as_deref(), id)
                            .await;
                    }
                    AgentEffect::SessionEnded { result: Err(e), .. } => {
                        debug!(error = %e, "session failed")
                    }
                    AgentEffect::SessionEnded { result: Ok(_), .. } => {}
                    AgentEffect::SessionAbandoned { asked, leader, .. } => {
                        debug!(to = %asked, %leader, "session abandoned for the leader that poked")
                    }
                }
            }
        }
    }

    /// Sends request `hop` of session `seq` off the actor; its outcome, or the session's
    /// timeout, comes back as a message.
    fn open(
        &mut self,
        myself: &ActorRef<AgentMsg>,
        seq: u64,
        hop: u8,
        to: Target<SocketAddr>,
        report: SessionReport,
    ) {
        let deadline = match self.deadline {
            Some((s, d)) if s == seq && hop > 0 => d,
            _ => tokio::time::Instant::now() + Duration::from_millis(SESSION_TIMEOUT_MS),
        };
        self.deadline = Some((seq, deadline));
        let store = self.store.clone();
        let transport = self.transport.clone();
        let confirmed = self.confirmed.clone();
        let node = self.me;
        let me = myself.clone();
        tokio::spawn(async move {
            let request = async {
                match to {
                    Target::Local => local_session(store, &confirmed, node, report).await,
                    Target::Remote(addr) => {
                        remote_session(&transport, &confirmed, addr, report).await
                    }
                }
            };
            let msg = match tokio::time::timeout_at(deadline, request).await {
                Ok(outcome) => AgentMsg::SessionDone { seq, hop, outcome },
                Err(_) => AgentMsg::SessionTimedOut { seq },
            };
            let _ = me.send_message(msg); // the agent may be stopping
        });
    }

    /// Spawns the task actor for `a` and tells it Start.
    async fn start(&mut self, a: Assignment) -> Result<(), String> {
        let t = a.task;
        let name = t.spec.runtime.as_str();
        let runtime = self
            .runtimes
            .get(name)
            .cloned()
            .ok_or_else(|| format!("runtime {name} is not available on this node"))?;
        let id = t.id;
        let (overlays, dns) = overlay::task_networks(&t.networks, self.mesh.as_deref())?;
        // The task's secrets and configs, written to tmpfs before it starts; a task that cannot
        // have them does not start (it is reported rejected, with the reason).
        let files = if t.spec.secrets.is_empty() && t.spec.configs.is_empty() {
            Vec::new()
        } else {
            self.vault
                .materialize(id, t.spec.secrets.clone(), t.spec.configs.clone())
                .await?
        };
        // Its overlay networks as the table describes them, made on this node before it starts.
        let table = self.mesh.clone();
        if let Err(e) = self
            .overlays
            .task_starting(self.me, table.as_deref(), id, &overlays)
            .await
        {
            self.vault.release(id);
            return Err(e);
        }
        let ctx = TaskContext {
            task_id: t.id,
            service_id: t.service_id,
            service_name: a.service_name,
            slot: t.slot,
            node_id: self.me,
            spec: t.spec,
            files,
            network: t
                .networks
                .iter()
                .find(|n| n.network == crate::model::INGRESS_NETWORK)
                .cloned(),
            // The service's published ports, from the latest routing-mesh table (an answer
            // brings a new table before the tasks it starts).
            ports: self
                .mesh
                .as_ref()
                .and_then(|m| m.services.iter().find(|s| s.id == t.service_id))
                .map(|s| s.ports.clone())
                .unwrap_or_default(),
            overlays,
            dns,
        };
        let args = TaskArgs {
            ctx,
            runtime,
            reporter: self.reporter.clone(),
            registry: self.registry.clone().filter(|_| self.register_tasks),
        };
        let (handle, _) = match spawn_task(args).await {
            Ok(h) => h,
            Err(e) => {
                self.vault.release(id);
                self.overlays
                    .task_removed(self.me, table.as_deref(), id)
                    .await;
                return Err(e.to_string());
            }
        };
        let _ = handle.start(); // an actor that stopped at once reports nothing more
        self.actors.insert(id, handle);
        Ok(())
    }

    /// Asks every runtime, off the actor (the engine may take its time), to remove the
    /// volumes labelled `label=value`; answers what they removed and what is in use.
    fn remove_volumes(&self, label: String, value: String, reply: oneshot::Sender<Response>) {
        let runtimes: Vec<Arc<dyn TaskRuntime>> = self.runtimes.values().cloned().collect();
        tokio::spawn(async move {
            let mut all = crate::runtime::VolumesRemoved::default();
            for rt in runtimes {
                let asked = rt.remove_volumes(&label, &value);
                match tokio::time::timeout(Duration::from_millis(VOLUMES_RM_TIMEOUT_MS), asked)
                    .await
                {
                    Ok(Ok(done)) => {
                        all.removed.extend(done.removed);
                        all.in_use.extend(done.in_use);
                    }
                    Ok(Err(e)) => {
                        let _ = reply.send(Response::Failed(WireFailure::Invalid(format!(
                            "{} runtime: {e} (removed: {:?})",
                            rt.name(),
                            all.removed
                        ))));
                        return;
                    }
                    Err(_) => {
                        let _ = reply.send(Response::Failed(WireFailure::Invalid(format!(
                            "{} runtime: no answer within {VOLUMES_RM_TIMEOUT_MS} ms (removed: {:?})",
                            rt.name(),
                            all.removed
                        ))));
                        return;
                    }
                }
            }
            // The asker may have gone.
            let _ = reply.send(Response::VolumesRemoved {
                removed: all.removed,
                in_use: all.in_use,
            });
        });
    }

    fn logs(&self, tasks: Vec<TaskId>, tail: usize, reply: oneshot::Sender<Response>) {
        let handles: Vec<TaskHandle> = tasks
            .iter()
            .take(LOG_TASKS_MAX)
            .filter_map(|id| self.actors.get(id).cloned())
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

/// A session request to this node's own store (the node is a manager): its leader answers, or
/// it names the leader. The one place the agent reaches the local store, kept small because
/// the way to it may move (the node actor owns the leader's lifecycle).
async fn local_session(
    store: Option<StoreHandle>,
    managers: &crate::trust::ManagerSet,
    node: NodeId,
    report: SessionReport,
) -> SessionOutcome<SocketAddr, Assignment> {
    match store {
        Some(store) => outcome(store.session(node, report).await, managers),
        None => SessionOutcome::NotLeader(None), // the store stopped: no leader here then
    }
}

/// A session request over the network to `to`. Only a manager (by its certificate and the
/// store's last word, see `trust::authz`) may answer: assignments from anyone else would make
/// this node run what they chose.
async fn remote_session(
    transport: &Transport,
    managers: &crate::trust::ManagerSet,
    to: SocketAddr,
    report: SessionReport,
) -> SessionOutcome<SocketAddr, Assignment> {
    match transport
        .request_identified(to, Request::Session(report))
        .await
    {
        Ok((who, _)) if !managers.may_command(&who) => {
            warn!(%to, node = %who.node_id, role = %who.role, "session answered by a node that is no manager: refused");
            SessionOutcome::Failed(format!("{to} is no manager: its answer was refused"))
        }
        Ok((_, resp)) => outcome(resp, managers),
        Err(e) => SessionOutcome::Failed(format!("cannot reach {to}: {e}")),
    }
}

/// What an answer means to the machine; an answer with assignments also renews the managers
/// the store names.
fn outcome(
    r: Response,
    managers: &crate::trust::ManagerSet,
) -> SessionOutcome<SocketAddr, Assignment> {
    match r {
        Response::Assignments {
            tasks,
            managers: m,
            files,
            mesh,
        } => {
            managers.learn(m);
            SessionOutcome::Assignments {
                tasks,
                files,
                mesh: mesh.map(Arc::new),
            }
        }
        Response::NotLeader { leader } => SessionOutcome::NotLeader(leader),
        Response::Failed(WireFailure::Busy) => {
            SessionOutcome::Failed("the leader is not ready yet".into())
        }
        Response::Failed(f) => SessionOutcome::Failed(f.to_string()),
        other => SessionOutcome::Failed(format!("unexpected answer {other:?}")),
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

    /// Removes this node's volumes labelled `label=value` that no task uses (`stack rm`).
    pub async fn remove_volumes(&self, label: String, value: String) -> Response {
        let (tx, rx) = oneshot::channel();
        self.tell(AgentMsg::RemoveVolumes {
            label,
            value,
            reply: tx,
        });
        rx.await.unwrap_or(Response::Failed(WireFailure::Invalid(
            "the agent stopped".into(),
        )))
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
