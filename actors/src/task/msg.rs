//! Messages the TaskActor takes: orders from the node agent, events from the runtime calls it
//! made, its own timers, and questions from the control API and the admin shell.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use super::machine::{RuntimeEvent, TaskInput, TaskTimer};
use crate::model::TaskStatus;
use crate::runtime::{LogLine, TaskContext};

pub enum TaskMsg {
    /// An order for the machine (`Start`, `Shutdown`, `NodeShutdown`, `Remove`).
    Input(TaskInput),
    /// The outcome of a runtime call made off the actor.
    Runtime(RuntimeEvent),
    Timer(TaskTimer),
    Describe(RpcReplyPort<TaskView>),
    /// The last `tail` lines of output (bounded by the runtime's log buffer).
    Logs {
        tail: usize,
        reply: RpcReplyPort<Result<Vec<LogLine>, String>>,
    },
}

/// What `Describe` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub ctx: TaskContext,
    pub status: TaskStatus,
    pub runtime: String,
}

/// The TaskActor's messages as the admin shell names them (`send task/<id> Logs {"tail": 20}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskAdmin {
    Describe,
    Logs {
        #[serde(default)]
        tail: Option<usize>,
    },
    /// Stops the task as if the orchestrator had asked (it ends SHUTDOWN).
    Stop,
}

impl TaskAdmin {
    pub const NAMES: &'static [&'static str] = &["Describe", "Logs", "Stop"];
}
