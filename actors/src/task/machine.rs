//! The TaskMachine: one task's life on its node, as a sans-IO state machine.
//!
//! ```text
//!  ASSIGNED ─Start─▶ ACCEPTED ─▶ PREPARING ─Prepared─▶ STARTING ─Started─▶ RUNNING ─Exited(0)─▶ COMPLETE
//!                                   │                      │                  ├─Exited(≠0)──▶ FAILED
//!                                   └PrepareFailed▶REJECTED └StartFailed▶FAILED├─unhealthy → Stop → FAILED
//!                                                                              └─Shutdown → Stop → SHUTDOWN
//! ```
//!
//! The [`TaskActor`](super::TaskActor) feeds it inputs (the agent's orders, the runtime's events,
//! its own timers) and carries out its effects (runtime commands, timers, status reports). The
//! simulator can drive it the same way without processes or containers. Time comes in as
//! `now_ms`; nothing here reads a clock.

use crate::model::{Health, HealthCheck, TaskId, TaskState, TaskStatus};

/// Stop grace used when the spec leaves `stop_grace_period_ms` at 0, as Docker's 10 s default.
pub const STOP_GRACE_DEFAULT_MS: u64 = 10_000;

/// Time past the grace period after which a stop that has not ended the task is escalated to a
/// kill. The runtime kills at the end of the grace period itself; this covers a runtime call that
/// got lost or hung.
pub const STOP_KILL_MARGIN_MS: u64 = 5_000;

/// What the machine is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskInput {
    /// The node agent takes the assignment on.
    Start,
    /// Something the runtime did or saw.
    RuntimeEvent(RuntimeEvent),
    /// A timer the machine scheduled came due.
    Timer(TaskTimer),
    /// The orchestrator no longer wants the task to run (desired state changed).
    Shutdown,
    /// The node is going down; stop the task politely.
    NodeShutdown,
    /// The task's record is gone: stop it if needed, then remove what the runtime keeps of it.
    Remove,
}

/// What the runtime reports back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeEvent {
    Prepared,
    PrepareFailed(String),
    Started,
    StartFailed(String),
    Exited {
        code: i32,
    },
    /// One health check's outcome (or, for a runtime that judges health itself, its verdict).
    HealthResult {
        ok: bool,
    },
}

/// The machine's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskTimer {
    /// Time for the next health check.
    HealthCheck,
    /// The stop grace period (plus margin) is over.
    StopDeadline,
}

/// What the machine asks the runtime to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeCmd {
    /// Make sure the image (docker) or program (process) is there.
    Prepare,
    /// Start the task, then watch for its exit.
    Start,
    /// SIGTERM, then SIGKILL after `grace_ms`.
    Stop {
        grace_ms: u64,
    },
    Kill,
    /// Run one health check (bounded by the check's `timeout_ms`), or read the engine's verdict.
    RunHealthCheck,
    /// Forget the task: remove its container, pid file and logs.
    Remove,
}

/// What the machine wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEffect {
    Runtime(RuntimeCmd),
    Schedule { after_ms: u64, timer: TaskTimer },
    Report(TaskStatus),
}

/// Who judges health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthJudge {
    /// The machine runs checks and applies start period and retries (process runtime).
    Machine,
    /// The engine runs checks and applies start period and retries; the machine only polls its
    /// verdict every interval, and one `HealthResult { ok: false }` means unhealthy (docker).
    Engine,
}

/// Why a running task is being stopped: decides the terminal state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Shutdown,
    NodeShutdown,
    Unhealthy,
}

pub struct TaskMachine {
    task_id: TaskId,
    health_check: Option<HealthCheck>,
    judge: HealthJudge,
    grace_ms: u64,
    status: TaskStatus,
    /// When the task reached RUNNING, for the health start period.
    started_ms: u64,
    /// Consecutive failed checks outside the start period.
    failures: u32,
    /// Set once a stop has been asked for; the exit that follows ends the task with this reason.
    stopping: Option<StopReason>,
    /// A stop asked for while the start was in flight: sent once `Started` arrives.
    stop_after_start: bool,
    /// Remove the runtime's leftovers once the task is over.
    remove_when_done: bool,
    removed: bool,
}

impl TaskMachine {
    /// A machine for a task the dispatcher has assigned to this node.
    pub fn new(
        task_id: TaskId,
        health_check: Option<HealthCheck>,
        stop_grace_period_ms: u64,
        judge: HealthJudge,
        now_ms: u64,
    ) -> Self {
        let grace_ms = if stop_grace_period_ms == 0 {
            STOP_GRACE_DEFAULT_MS
        } else {
            stop_grace_period_ms
        };
        TaskMachine {
            task_id,
            health_check,
            judge,
            grace_ms,
            status: TaskStatus::new(TaskState::Assigned, now_ms, "assigned"),
            started_ms: 0,
            failures: 0,
            stopping: None,
            stop_after_start: false,
            remove_when_done: false,
            removed: false,
        }
    }

    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    pub fn status(&self) -> &TaskStatus {
        &self.status
    }

    pub fn state(&self) -> TaskState {
        self.status.state
    }

    /// Consecutive failed health checks counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn handle(&mut self, now_ms: u64, input: TaskInput, out: &mut Vec<TaskEffect>) {
        let state = self.status.state;
        match input {
            TaskInput::Start => {
                if state != TaskState::Assigned {
                    return; // a repeated order: the task is on its way already
                }
                self.enter(now_ms, TaskState::Accepted, "accepted", out);
                self.enter(now_ms, TaskState::Preparing, "preparing", out);
                out.push(TaskEffect::Runtime(RuntimeCmd::Prepare));
            }
            TaskInput::Shutdown => self.stop(now_ms, StopReason::Shutdown, out),
            TaskInput::NodeShutdown => self.stop(now_ms, StopReason::NodeShutdown, out),
            TaskInput::Remove => {
                self.remove_when_done = true;
                if state.is_terminal() {
                    self.remove(out);
                } else {
                    self.stop(now_ms, StopReason::Shutdown, out);
                }
            }
            TaskInput::RuntimeEvent(ev) => self.on_runtime(now_ms, ev, out),
            TaskInput::Timer(TaskTimer::HealthCheck) => {
                if state == TaskState::Running
                    && self.health_check.is_some()
                    && self.stopping.is_none()
                    && self.status.health != Some(Health::Unhealthy)
                {
                    out.push(TaskEffect::Runtime(RuntimeCmd::RunHealthCheck));
                    // The engine answers at once and may have no verdict yet; poll again at the
                    // interval. The machine's own checks schedule the next one when they end, so
                    // two never overlap.
                    if self.judge == HealthJudge::Engine {
                        self.schedule_health(out);
                    }
                }
            }
            TaskInput::Timer(TaskTimer::StopDeadline) => {
                if !state.is_terminal() && self.stopping.is_some() {
                    out.push(TaskEffect::Runtime(RuntimeCmd::Kill));
                }
            }
        }
    }

    fn on_runtime(&mut self, now_ms: u64, ev: RuntimeEvent, out: &mut Vec<TaskEffect>) {
        let state = self.status.state;
        if state.is_terminal() {
            return; // late news about a task that is over
        }
        match ev {
            RuntimeEvent::Prepared if state == TaskState::Preparing => {
                self.enter(now_ms, TaskState::Starting, "starting", out);
                out.push(TaskEffect::Runtime(RuntimeCmd::Start));
            }
            RuntimeEvent::PrepareFailed(err) if state == TaskState::Preparing => {
                self.status.error = Some(err);
                self.finish(now_ms, TaskState::Rejected, "preparing failed", out);
            }
            RuntimeEvent::Started if state == TaskState::Starting => {
                self.started_ms = now_ms;
                if self.health_check.is_some() {
                    self.status.health = Some(Health::Starting);
                }
                self.enter(now_ms, TaskState::Running, "started", out);
                if self.stop_after_start {
                    self.send_stop(out);
                } else if self.health_check.is_some() {
                    self.schedule_health(out);
                }
            }
            RuntimeEvent::StartFailed(err) if state == TaskState::Starting => {
                if self.stopping.is_some() {
                    self.finish(now_ms, TaskState::Shutdown, "shutdown", out);
                } else {
                    self.status.error = Some(err);
                    self.finish(now_ms, TaskState::Failed, "starting failed", out);
                }
            }
            RuntimeEvent::Exited { code } if state >= TaskState::Starting => {
                self.status.exit_code = Some(code);
                match self.stopping {
                    Some(StopReason::Unhealthy) => {
                        self.status.error = Some("task: unhealthy container".into());
                        self.finish(now_ms, TaskState::Failed, "unhealthy", out);
                    }
                    Some(StopReason::Shutdown) => {
                        self.finish(now_ms, TaskState::Shutdown, "shutdown", out)
                    }
                    Some(StopReason::NodeShutdown) => {
                        self.finish(now_ms, TaskState::Shutdown, "node shutting down", out)
                    }
                    None if code == 0 => self.finish(now_ms, TaskState::Complete, "finished", out),
                    None => {
                        self.status.error = Some(format!("task: non-zero exit ({code})"));
                        self.finish(now_ms, TaskState::Failed, "failed", out);
                    }
                }
            }
            RuntimeEvent::HealthResult { ok } if state == TaskState::Running => {
                self.on_health(now_ms, ok, out)
            }
            // An event that does not fit the state (a duplicate, or one overtaken by a stop).
            _ => {}
        }
    }

    fn on_health(&mut self, now_ms: u64, ok: bool, out: &mut Vec<TaskEffect>) {
        if self.stopping.is_some() || self.status.health == Some(Health::Unhealthy) {
            return;
        }
        let Some(check) = self.health_check.clone() else {
            return; // no check configured: a stray result
        };
        let unhealthy = if ok {
            self.failures = 0;
            self.set_health(Health::Healthy, out);
            false
        } else {
            match self.judge {
                HealthJudge::Engine => true,
                HealthJudge::Machine => {
                    // Docker's rule: while the task has not yet been healthy, failures inside
                    // the start period do not count.
                    let in_start_period = self.status.health == Some(Health::Starting)
                        && now_ms.saturating_sub(self.started_ms) < check.start_period_ms;
                    if !in_start_period {
                        self.failures += 1;
                    }
                    self.failures >= check.retries.max(1)
                }
            }
        };
        if unhealthy {
            self.set_health(Health::Unhealthy, out);
            self.stopping = Some(StopReason::Unhealthy);
            self.send_stop(out);
        } else if self.judge == HealthJudge::Machine {
            self.schedule_health(out);
        }
    }

    /// Reports a change of health. The state is unchanged, so `since_ms` stays the time the
    /// state began, as the model defines it.
    fn set_health(&mut self, health: Health, out: &mut Vec<TaskEffect>) {
        if self.status.health != Some(health) {
            self.status.health = Some(health);
            out.push(TaskEffect::Report(self.status.clone()));
        }
    }

    fn stop(&mut self, now_ms: u64, reason: StopReason, out: &mut Vec<TaskEffect>) {
        let state = self.status.state;
        if state.is_terminal() || self.stopping.is_some() {
            return;
        }
        self.stopping = Some(reason);
        let message = match reason {
            StopReason::NodeShutdown => "node shutting down",
            _ => "shutdown",
        };
        match state {
            // Nothing runs yet (a prepare in flight only fetches an image): done at once.
            TaskState::New
            | TaskState::Pending
            | TaskState::Assigned
            | TaskState::Accepted
            | TaskState::Preparing => self.finish(now_ms, TaskState::Shutdown, message, out),
            // The start is in flight: stopping now could miss the process it is about to make.
            TaskState::Starting => self.stop_after_start = true,
            _ => self.send_stop(out),
        }
    }

    fn send_stop(&mut self, out: &mut Vec<TaskEffect>) {
        out.push(TaskEffect::Runtime(RuntimeCmd::Stop {
            grace_ms: self.grace_ms,
        }));
        out.push(TaskEffect::Schedule {
            after_ms: self.grace_ms + STOP_KILL_MARGIN_MS,
            timer: TaskTimer::StopDeadline,
        });
    }

    fn schedule_health(&self, out: &mut Vec<TaskEffect>) {
        if let Some(check) = &self.health_check {
            out.push(TaskEffect::Schedule {
                // An interval of 0 would spin.
                after_ms: check.interval_ms.max(HEALTH_INTERVAL_MIN_MS),
                timer: TaskTimer::HealthCheck,
            });
        }
    }

    fn enter(&mut self, now_ms: u64, state: TaskState, message: &str, out: &mut Vec<TaskEffect>) {
        assert!(
            state > self.status.state,
            "a task only moves forward: {} -> {state}",
            self.status.state
        );
        self.status.state = state;
        self.status.since_ms = now_ms;
        self.status.message = message.to_string();
        out.push(TaskEffect::Report(self.status.clone()));
    }

    fn finish(&mut self, now_ms: u64, state: TaskState, message: &str, out: &mut Vec<TaskEffect>) {
        debug_assert!(state.is_terminal());
        self.enter(now_ms, state, message, out);
        if self.remove_when_done {
            self.remove(out);
        }
    }

    fn remove(&mut self, out: &mut Vec<TaskEffect>) {
        if !self.removed {
            self.removed = true;
            out.push(TaskEffect::Runtime(RuntimeCmd::Remove));
        }
    }
}

/// The shortest interval between health checks, so a zero in a spec cannot make a busy loop.
pub const HEALTH_INTERVAL_MIN_MS: u64 = 100;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
