//! What the invariants read of the layer they check, as a trait that layer implements. A leaf
//! module: the invariants import it instead of the services layer, which imports the
//! invariants to run them.

use swarm_actors::model::{ServiceId, TaskId};

/// A node agent as the invariants see it: the tasks its task machines run.
pub trait RunningTasks {
    /// Tasks whose machine is RUNNING: (task, service, slot).
    fn running_tasks(&self) -> impl Iterator<Item = (TaskId, ServiceId, u64)> + '_;
}
