//! What a stack deploy makes: the compose files' objects, named and labelled, in the order
//! they are created.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use swarm_actors::model::{FileKind, ServiceSpec};

use crate::control::proto::{NetworkArg, NetworkCreate};

/// The label every object of a stack carries, with the stack's name (Docker's).
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// Everything one `stack deploy` makes or updates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StackPlan {
    /// The stack's name.
    pub namespace: String,
    pub networks: Vec<StackNetwork>,
    pub secrets: Vec<StackFile>,
    pub configs: Vec<StackFile>,
    pub volumes: Vec<StackVolume>,
    /// Dependencies before their dependents (`depends_on` has no cycle: refused earlier).
    pub services: Vec<StackService>,
    /// Docker's warnings, e.g. `Ignoring unsupported options: build, restart`, printed
    /// before the deploy goes on.
    pub warnings: Vec<String>,
}

/// A network of the stack: made when missing (`<stack>_default` among them when a service
/// names no network), or `external`, which must exist already and is never made or removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackNetwork {
    pub external: bool,
    /// `create.name` is the full name; `create.labels` carry [`NAMESPACE_LABEL`].
    pub create: NetworkCreate,
}

/// A secret or config of the stack. `data` is `None` for an external one (it must exist);
/// otherwise the file's bytes, read at conversion (`file:`, relative to the first compose
/// file's folder) or `environment:` (the variable's value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFile {
    pub kind: FileKind,
    /// The full name.
    pub name: String,
    pub external: bool,
    pub data: Option<Vec<u8>>,
    pub labels: BTreeMap<String, String>,
}

/// A named volume of the stack. Volumes are made by the runtime on first use (the mount's
/// `volume_labels` say whose); `stack rm` removes the ones labelled with the stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackVolume {
    /// The full name.
    pub name: String,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// A service of the stack, as `service create` would send it: the spec (full name, labels
/// with [`NAMESPACE_LABEL`], secrets and configs as refs by full name with a placeholder ID,
/// mounts by full volume name, `depends_on` by full service name) and its networks by full
/// name, which the node resolves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackService {
    pub spec: ServiceSpec,
    pub networks: Vec<NetworkArg>,
}
