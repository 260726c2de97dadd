//! Messages the AgentActor takes: its timer, pokes and news from the node actor, statuses from
//! its task actors, the outcomes of the session requests it sent off the actor, and questions
//! from the control API and the admin shell.

use std::net::SocketAddr;

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::machine::SessionOutcome;
use crate::model::{TaskId, TaskState, TaskStatus};
use crate::replica::StoreHandle;
use crate::wire::{Assignment, Response};

pub enum AgentMsg {
    /// The session interval's timer: open a session unless one is in flight.
    Tick,
    /// A poke from the leader at this address (none: the leader on this node): its node's
    /// assignments changed, ask it now.
    Poke(Option<SocketAddr>),
    /// The managers membership sees Ready, to find the leader through.
    ManagersReady(Vec<SocketAddr>),
    /// This node's store while it is a manager (a session goes to it without the network), or
    /// none.
    LocalStore(Option<StoreHandle>),
    /// A task actor reported a status.
    TaskStatus(TaskId, TaskStatus),
    /// Request `hop` of session `seq` ended this way.
    SessionDone {
        seq: u64,
        hop: u8,
        outcome: SessionOutcome<SocketAddr, Assignment>,
    },
    /// Session `seq` ran out of its [`SESSION_TIMEOUT_MS`](super::SESSION_TIMEOUT_MS).
    SessionTimedOut {
        seq: u64,
    },
    /// The last `tail` lines of these tasks' output, for `service logs`.
    Logs {
        tasks: Vec<TaskId>,
        tail: usize,
        reply: oneshot::Sender<Response>,
    },
    /// Removes the node's named volumes labelled `label=value` that no task uses, in every
    /// runtime, for `stack rm`.
    RemoveVolumes {
        label: String,
        value: String,
        reply: oneshot::Sender<Response>,
    },
    Describe(RpcReplyPort<AgentView>),
}

/// What the agent runs, for the admin shell. `A` is how a manager is addressed (an index in the
/// simulator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView<A = SocketAddr> {
    pub leader: Option<A>,
    pub managers: Vec<A>,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub last_error: Option<String>,
    /// Task, state, desired state.
    pub tasks: Vec<(TaskId, TaskState, TaskState)>,
}
