//! The TaskActor: one per task on the node that runs it. It owns one [`TaskMachine`] and a
//! handle to the node's runtime, feeds the machine, and carries out its effects.
//!
//! ```text
//!  node agent ──Start/Shutdown──▶ TaskActor ──▶ TaskMachine (sans-IO)
//!                                  │  ▲            │ effects
//!      runtime call in a tokio task│  │RuntimeEvent ├─ Runtime(cmd) ──▶ tokio task ──▶ TaskRuntime
//!                                  ▼  │             ├─ Schedule ──▶ send_after(Timer)
//!                                  ────             └─ Report ──▶ reporter (bounded mpsc)
//! ```
//!
//! Runtime calls never run on the actor: each runs in its own tokio task and posts its outcome
//! back as a message, so a slow pull or a grace period never blocks `Describe` or `Shutdown`.
//! The calls in flight per task are bounded by the machine: at most one prepare, one start (and
//! its wait), one stop and one kill, one health check, one remove.

pub mod machine;
mod msg;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use machine::{
    HealthJudge, RuntimeCmd, RuntimeEvent, STOP_GRACE_DEFAULT_MS, STOP_KILL_MARGIN_MS, TaskEffect,
    TaskInput, TaskMachine, TaskTimer,
};
pub use msg::{TaskAdmin, TaskMsg, TaskView};

use crate::model::{TaskId, TaskStatus};
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::runtime::{LOG_LINES_MAX, LogLine, TaskContext, TaskRuntime};

/// How long a caller waits for the TaskActor to answer.
pub const CALL_TIMEOUT_MS: u64 = 5_000;

/// Slack on top of a health check's own timeout before the actor gives up on the runtime call
/// and counts the check as failed.
pub const HEALTH_CALL_MARGIN_MS: u64 = 2_000;

/// Lines `Logs` answers when the caller names no number.
pub const LOGS_TAIL_DEFAULT: usize = 100;

/// Where status reports go: `(task, status)` pairs on a bounded channel the node agent reads.
/// A full channel makes the actor wait (backpressure), so the bound is the channel's capacity.
pub type Reporter = mpsc::Sender<(TaskId, TaskStatus)>;

/// Everything a TaskActor starts from.
pub struct TaskArgs {
    pub ctx: TaskContext,
    pub runtime: Arc<dyn TaskRuntime>,
    pub reporter: Reporter,
    /// When given, the actor registers as `task/<id>` for the admin shell and leaves on stop.
    pub registry: Option<Registry>,
}

pub struct TaskActor;

pub struct TaskActorState {
    machine: TaskMachine,
    ctx: Arc<TaskContext>,
    runtime: Arc<dyn TaskRuntime>,
    reporter: Reporter,
    registry: Option<Registry>,
}

impl Actor for TaskActor {
    type Msg = TaskMsg;
    type State = TaskActorState;
    type Arguments = TaskArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TaskMsg>,
        args: TaskArgs,
    ) -> Result<TaskActorState, ActorProcessingErr> {
        let judge = if args.runtime.judges_health() {
            HealthJudge::Engine
        } else {
            HealthJudge::Machine
        };
        let machine = TaskMachine::new(
            args.ctx.task_id,
            args.ctx.spec.health.clone(),
            args.ctx.spec.stop_grace_period_ms,
            judge,
            crate::clock::unix_ms(),
        );
        Ok(TaskActorState {
            machine,
            ctx: Arc::new(args.ctx),
            runtime: args.runtime,
            reporter: args.reporter,
            registry: args.registry,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TaskMsg>,
        msg: TaskMsg,
        state: &mut TaskActorState,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            TaskMsg::Input(input) => input,
            TaskMsg::Runtime(ev) => TaskInput::RuntimeEvent(ev),
            TaskMsg::Timer(t) => TaskInput::Timer(t),
            TaskMsg::Describe(port) => {
                let view = TaskView {
                    ctx: (*state.ctx).clone(),
                    status: state.machine.status().clone(),
                    runtime: state.runtime.name().to_string(),
                };
                let _ = port.send(view); // the caller may have timed out
                return Ok(());
            }
            TaskMsg::Logs { tail, reply } => {
                let runtime = state.runtime.clone();
                let task = state.ctx.task_id;
                // Off the actor: docker reads logs from the engine.
                tokio::spawn(async move {
                    let lines = runtime
                        .logs(task, tail.min(LOG_LINES_MAX))
                        .await
                        .map_err(|e| e.to_string());
                    let _ = reply.send(lines); // the caller may have timed out
                });
                return Ok(());
            }
        };
        let mut out = Vec::new();
        state
            .machine
            .handle(crate::clock::unix_ms(), input, &mut out);
        state.apply(&myself, out).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TaskMsg>,
        state: &mut TaskActorState,
    ) -> Result<(), ActorProcessingErr> {
        let task = state.ctx.task_id;
        if let Some(reg) = &state.registry {
            reg.unregister(&format!("task/{task}"));
        }
        // The runtime's leftovers (container, pid file, log buffer) go with the actor: nobody
        // could reach them through it any more. A task still running is killed rather than left
        // unattended. Removing twice is harmless.
        if !state.machine.state().is_terminal() {
            warn!(%task, state = %state.machine.state(), "task actor stopped before its task ended; removing it");
        }
        let runtime = state.runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.remove(task).await {
                warn!(%task, error = %e, "removing the task failed");
            }
        });
        Ok(())
    }
}

impl TaskActorState {
    async fn apply(&mut self, myself: &ActorRef<TaskMsg>, effects: Vec<TaskEffect>) {
        for effect in effects {
            match effect {
                TaskEffect::Runtime(cmd) => self.run(myself, cmd),
                TaskEffect::Schedule { after_ms, timer } => {
                    myself.send_after(Duration::from_millis(after_ms), move || {
                        TaskMsg::Timer(timer)
                    });
                }
                TaskEffect::Report(status) => {
                    debug!(task = %self.ctx.task_id, state = %status.state, health = ?status.health, "task status");
                    if self
                        .reporter
                        .send((self.ctx.task_id, status))
                        .await
                        .is_err()
                    {
                        // The agent is gone (the node is stopping): nobody to tell.
                        debug!(task = %self.ctx.task_id, "no reporter; status dropped");
                    }
                }
            }
        }
    }

    /// Carries out one runtime command in its own tokio task and posts the outcome back.
    fn run(&self, myself: &ActorRef<TaskMsg>, cmd: RuntimeCmd) {
        let runtime = self.runtime.clone();
        let ctx = self.ctx.clone();
        let me = myself.clone();
        let task = ctx.task_id;
        // Posting fails only once the actor has stopped; the outcome has nobody to go to then.
        let post = move |ev: RuntimeEvent| {
            let _ = me.send_message(TaskMsg::Runtime(ev));
        };
        match cmd {
            RuntimeCmd::Prepare => {
                tokio::spawn(async move {
                    match runtime.prepare(&ctx).await {
                        Ok(()) => post(RuntimeEvent::Prepared),
                        Err(e) => post(RuntimeEvent::PrepareFailed(e.to_string())),
                    }
                });
            }
            RuntimeCmd::Start => {
                tokio::spawn(async move {
                    if let Err(e) = runtime.start(&ctx).await {
                        post(RuntimeEvent::StartFailed(e.to_string()));
                        return;
                    }
                    post(RuntimeEvent::Started);
                    let code = match runtime.wait(task).await {
                        Ok(code) => code,
                        Err(e) => {
                            warn!(%task, error = %e, "lost track of the task; counting it as failed");
                            -1
                        }
                    };
                    post(RuntimeEvent::Exited { code });
                });
            }
            RuntimeCmd::Stop { grace_ms } => {
                let endpoints = runtime.endpoints();
                tokio::spawn(async move {
                    let grace_ms = match endpoints {
                        Some(endpoints) => drain(&endpoints, task, grace_ms).await,
                        None => grace_ms,
                    };
                    if let Err(e) = runtime.stop(task, grace_ms).await {
                        warn!(%task, error = %e, "stop failed");
                    }
                });
            }
            RuntimeCmd::Kill => {
                tokio::spawn(async move {
                    if let Err(e) = runtime.kill(task).await {
                        warn!(%task, error = %e, "kill failed");
                    }
                });
            }
            RuntimeCmd::RunHealthCheck => {
                let Some(check) = ctx.spec.health.clone() else {
                    return; // the machine asks only when there is a check
                };
                let engine = runtime.judges_health();
                tokio::spawn(async move {
                    let bound = Duration::from_millis(check.timeout_ms + HEALTH_CALL_MARGIN_MS);
                    let verdict =
                        match tokio::time::timeout(bound, runtime.health(&ctx, &check)).await {
                            Ok(Ok(v)) => v,
                            Ok(Err(e)) => {
                                debug!(%task, error = %e, "health check could not run");
                                // The engine is polled again at the next interval anyway.
                                (!engine).then_some(false)
                            }
                            Err(_) => (!engine).then_some(false),
                        };
                    match verdict {
                        Some(ok) => post(RuntimeEvent::HealthResult { ok }),
                        // Our own checks always answer, or the next one would never be
                        // scheduled; only the engine may have no verdict yet.
                        None if !engine => post(RuntimeEvent::HealthResult { ok: false }),
                        None => {}
                    }
                });
            }
            RuntimeCmd::Remove => {
                tokio::spawn(async move {
                    if let Err(e) = runtime.remove(task).await {
                        warn!(%task, error = %e, "remove failed");
                    }
                });
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the task actor did not answer: {0}")]
    NoAnswer(String),
    #[error("{0}")]
    Refused(String),
}

/// The typed handle callers hold instead of the TaskActor's raw mailbox.
#[derive(Clone)]
pub struct TaskHandle {
    actor: ActorRef<TaskMsg>,
    id: TaskId,
}

impl TaskHandle {
    pub fn id(&self) -> TaskId {
        self.id
    }

    pub fn actor(&self) -> &ActorRef<TaskMsg> {
        &self.actor
    }

    fn order(&self, input: TaskInput) -> Result<(), TaskError> {
        self.actor
            .send_message(TaskMsg::Input(input))
            .map_err(|e| TaskError::NoAnswer(e.to_string()))
    }

    /// Takes the assignment on: prepare, start, run.
    pub fn start(&self) -> Result<(), TaskError> {
        self.order(TaskInput::Start)
    }

    /// The desired state became SHUTDOWN.
    pub fn shutdown(&self) -> Result<(), TaskError> {
        self.order(TaskInput::Shutdown)
    }

    pub fn node_shutdown(&self) -> Result<(), TaskError> {
        self.order(TaskInput::NodeShutdown)
    }

    /// Stops the task if needed, then removes what the runtime keeps of it.
    pub fn remove(&self) -> Result<(), TaskError> {
        self.order(TaskInput::Remove)
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> TaskMsg,
    ) -> Result<T, TaskError> {
        crate::ask::ask(&self.actor, msg, CALL_TIMEOUT_MS)
            .await
            .map_err(|e| TaskError::NoAnswer(e.to_string()))
    }

    pub async fn describe(&self) -> Result<TaskView, TaskError> {
        self.call(TaskMsg::Describe).await
    }

    pub async fn logs(&self, tail: usize) -> Result<Vec<LogLine>, TaskError> {
        self.call(|reply| TaskMsg::Logs { tail, reply })
            .await?
            .map_err(TaskError::Refused)
    }

    async fn admin(&self, msg: TaskAdmin) -> Result<Value, TaskError> {
        fn json<T: serde::Serialize>(v: T) -> Result<Value, TaskError> {
            serde_json::to_value(v)
                .map_err(|e| TaskError::Refused(format!("answer does not encode: {e}")))
        }
        match msg {
            TaskAdmin::Describe => json(self.describe().await?),
            TaskAdmin::Logs { tail } => json(self.logs(tail.unwrap_or(LOGS_TAIL_DEFAULT)).await?),
            TaskAdmin::Stop => json(self.shutdown()?),
        }
    }
}

impl AdminTarget for TaskHandle {
    fn messages(&self) -> &'static [&'static str] {
        TaskAdmin::NAMES
    }

    fn call(&self, msg: &str, args: Value) -> AdminReply<'_> {
        let name = msg.to_string();
        Box::pin(async move {
            let typed: TaskAdmin = crate::registry::decode(&name, args)?;
            self.admin(typed)
                .await
                .map_err(|e| AdminError::NoAnswer(format!("task/{}", self.id), e.to_string()))
        })
    }
}

/// Starts a TaskActor (it waits in ASSIGNED until [`TaskHandle::start`]) and registers it as
/// `task/<id>` when a registry is given.
pub async fn spawn_task(
    args: TaskArgs,
) -> Result<(TaskHandle, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let id = args.ctx.task_id;
    let registry = args.registry.clone();
    // No name: ractor's registry is global to the process (see `registry`).
    let (actor, join) = Actor::spawn(None, TaskActor, args).await?;
    let handle = TaskHandle { actor, id };
    if let Some(reg) = registry
        && let Err(e) = reg.register(format!("task/{id}"), Arc::new(handle.clone()))
    {
        handle.actor.stop(None);
        return Err(e.into());
    }
    Ok((handle, join))
}

#[cfg(test)]
mod tests;

/// What is left of a stop's grace period for the task itself, at least this (or the whole
/// period when it is shorter), however long its connections took to end.
pub const STOP_AFTER_DRAIN_MIN_MS: u64 = 1_000;

/// Before a task is signalled: the connections the routing mesh carries to it (it left the
/// rotation with the table that stopped it, so no new one comes) are left to end, for at most
/// the stop grace period. Answers the grace left for the stop itself, so that the whole stop
/// stays within the grace period plus [`STOP_AFTER_DRAIN_MIN_MS`], inside the machine's
/// deadline (`STOP_KILL_MARGIN_MS` past the grace period).
pub(crate) async fn drain(
    endpoints: &crate::runtime::Endpoints,
    task: TaskId,
    grace_ms: u64,
) -> u64 {
    let open = endpoints.connections(task);
    if open == 0 {
        return grace_ms;
    }
    let start = tokio::time::Instant::now();
    info!(%task, open, grace_ms, "waiting for the routing mesh's connections to the task to end");
    let drained = endpoints
        .drained(task, Duration::from_millis(grace_ms))
        .await;
    let spent = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !drained {
        warn!(%task, left = endpoints.connections(task), "connections still open at the end of the grace period");
    }
    grace_ms
        .saturating_sub(spent)
        .max(STOP_AFTER_DRAIN_MIN_MS.min(grace_ms))
}
