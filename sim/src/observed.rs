//! What the invariants read of the layer they check, as a trait that layer implements. A leaf
//! module: the invariants import it instead of the services layer, which imports the
//! invariants to run them.

use swarm_actors::model::{ServiceId, TaskId};

/// A task whose machine is RUNNING on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub task: TaskId,
    pub service: ServiceId,
    /// The slot (0 for a global service's task).
    pub slot: u64,
    /// The service's spec version the task was made from.
    pub spec_version: u64,
}

/// A node agent as the invariants see it: the tasks its task machines run.
pub trait RunningTasks {
    /// Tasks whose machine is RUNNING.
    fn running_tasks(&self) -> impl Iterator<Item = Running> + '_;
}
