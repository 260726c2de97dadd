//! Tasks: one running instance of a service, on one node.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{NetworkAttachment, NodeId, ServiceId, TaskId, TaskSpec};

/// Longest status message or error the store keeps, in bytes (see [`TaskStatus::cut`]): a
/// node's report may carry any text, and every answer to that node repeats it.
pub const STATUS_TEXT_BYTES_MAX: usize = 512;

/// A task's life, in order. A task only moves forward; the last five (`Complete` onwards) are
/// terminal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum TaskState {
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Orphaned,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TaskState::New => "New",
            TaskState::Pending => "Pending",
            TaskState::Assigned => "Assigned",
            TaskState::Accepted => "Accepted",
            TaskState::Preparing => "Preparing",
            TaskState::Starting => "Starting",
            TaskState::Running => "Running",
            TaskState::Complete => "Complete",
            TaskState::Shutdown => "Shutdown",
            TaskState::Failed => "Failed",
            TaskState::Rejected => "Rejected",
            TaskState::Orphaned => "Orphaned",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// What the node last reported about a task.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// When the task entered `state`, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Human text for CURRENT STATE's detail, e.g. "no suitable node (…)".
    pub message: String,
    /// The ERROR column.
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub health: Option<Health>,
}

impl TaskStatus {
    /// This status with its message and error cut to [`STATUS_TEXT_BYTES_MAX`] bytes (at a
    /// character boundary): what the leader accepts of a node's report, and what the agent
    /// keeps so that a long text does not differ from the stored one for ever. Borrowed when
    /// nothing needs cutting.
    pub fn cut(&self) -> Cow<'_, TaskStatus> {
        let long = |s: &str| s.len() > STATUS_TEXT_BYTES_MAX;
        if !long(&self.message) && !self.error.as_deref().is_some_and(long) {
            return Cow::Borrowed(self);
        }
        let cut = |s: &str| {
            let mut end = STATUS_TEXT_BYTES_MAX.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        Cow::Owned(TaskStatus {
            message: cut(&self.message),
            error: self.error.as_deref().map(cut),
            ..self.clone()
        })
    }

    /// Whether a reported status may replace this stored one: states only move forward, a
    /// terminal state is final, and within one state only the health, message or error may
    /// change. The leader applies it to reports and the agent to what it sends.
    pub fn accepts(&self, reported: &TaskStatus) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        match reported.state.cmp(&self.state) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                reported.health != self.health
                    || reported.message != self.message
                    || reported.error != self.error
            }
        }
    }

    /// A status entering `state` at `since_ms`, with no error, exit code or health yet.
    pub fn new(state: TaskState, since_ms: u64, message: impl Into<String>) -> Self {
        TaskStatus {
            state,
            since_ms,
            message: message.into(),
            error: None,
            exit_code: None,
            health: None,
        }
    }
}

/// A task as the store keeps it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub service_id: ServiceId,
    /// Replicated services: 1..=replicas. Global services: 0 (the node identifies the task).
    pub slot: u64,
    /// The node the scheduler chose; `None` while pending.
    pub node_id: Option<NodeId>,
    pub spec: TaskSpec,
    /// The service spec version this task was made from.
    pub spec_version: u64,
    /// What the orchestrator wants: `Running`, or `Shutdown` to stop it.
    pub desired_state: TaskState,
    pub status: TaskStatus,
    pub created_ms: u64,
    /// When the task was first reported `Running` (the node's time), for the rolling
    /// updater's monitor window; `None` while it has not run.
    pub running_ms: Option<u64>,
    /// The task's addresses, one per network it is attached to (`ingress` for every task),
    /// allocated by the leader once the task has a node; empty before. An address is the
    /// task's until the task is terminal.
    pub networks: Vec<NetworkAttachment>,
}
