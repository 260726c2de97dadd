//! The cluster's object model: identifiers, roles and node descriptions.
//!
//! Plain data, shared by every layer above it. Nothing here does I/O.

mod id;
mod node;

pub use id::{IdParseError, NodeId};
pub use node::{
    Availability, HOSTNAME_BYTES_MAX, LABEL_BYTES_MAX, LABELS_MAX, NodeDescription,
    NodeDescriptionError, NodeResources, NodeState, Role, validate_label,
};
