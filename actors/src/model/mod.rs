//! The cluster's object model: identifiers, nodes, services, tasks, secrets and configs.
//!
//! Plain data, shared by every layer above it. Nothing here does I/O.

mod id;
mod log;
mod network;
mod node;
mod secret;
mod service;
mod task;

pub use id::{IdParseError, NODE_ID_CHARS, NetworkId, NodeId, SecretId, ServiceId, TaskId};
pub use log::{LogLine, LogStream};
pub use network::{
    ALIASES_PER_NETWORK_MAX, EndpointMode, INGRESS_NETWORK, INGRESS_PREFIX, INGRESS_SUBNET,
    NETWORK_NAME_BYTES_MAX, NETWORKS_MAX, NETWORKS_PER_TASK_MAX, NODE_SLICE_PREFIX, Network,
    NetworkAttachment, NetworkRef, OVERLAY_DEFAULT_PREFIX, OVERLAY_POOL, OVERLAY_POOL_PREFIX,
    OVERLAY_PREFIX_MAX, OVERLAY_PREFIX_MIN, PORTS_PER_SERVICE_MAX, PUBLISHED_PORT_AUTO_MAX,
    PUBLISHED_PORT_AUTO_MIN, PortConfig, PortProtocol, PublishMode, ServiceVip, VNI_FIRST,
    VXLAN_PORT, prefix_mask,
};
pub use node::{
    Availability, HOSTNAME_BYTES_MAX, LABEL_BYTES_MAX, LABELS_MAX, NodeDescription,
    NodeDescriptionError, NodeResources, NodeState, Role, validate_label,
};
pub use secret::{
    CONFIG_BYTES_MAX, FILE_REFS_MAX, FileKey, FileKind, FileMaterial, FileRef, SECRET_BYTES_MAX,
    SECRET_NAME_CHARS_MAX, SECRETS_DIR, Secret, SecretBytes, validate_secret_data,
    validate_secret_name,
};
pub use service::{
    DEPENDENCIES_MAX, Dependency, DependencyCondition, FailureAction, HealthCheck, MOUNTS_MAX,
    Mount, MountKind, Placement, ResourceAmounts, Resources, RestartCondition, RestartPolicy,
    RuntimeKind, Service, ServiceMode, ServiceSpec, TaskSpec, UpdateConfig, UpdateOrder,
    UpdateState, UpdateStatus, no_previous_spec,
};
pub use task::{Health, STATUS_TEXT_BYTES_MAX, Task, TaskState, TaskStatus};
