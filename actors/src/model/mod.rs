//! The cluster's object model: identifiers, nodes, services and tasks.
//!
//! Plain data, shared by every layer above it. Nothing here does I/O.

mod id;
mod node;
mod service;
mod task;

pub use id::{IdParseError, NODE_ID_CHARS, NodeId, ServiceId, TaskId};
pub use node::{
    Availability, HOSTNAME_BYTES_MAX, LABEL_BYTES_MAX, LABELS_MAX, NodeDescription,
    NodeDescriptionError, NodeResources, NodeState, Role, validate_label,
};
pub use service::{
    FailureAction, HealthCheck, Placement, PortConfig, ResourceAmounts, Resources,
    RestartCondition, RestartPolicy, RuntimeKind, Service, ServiceMode, ServiceSpec, TaskSpec,
    UpdateConfig, UpdateOrder, UpdateState, UpdateStatus, no_previous_spec,
};
pub use task::{Health, STATUS_TEXT_BYTES_MAX, Task, TaskState, TaskStatus};
