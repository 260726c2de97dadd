//! Builders shared by the scheduler's and the orchestrators' tests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::model::{Availability, NodeId, NodeResources, NodeState, Role, RuntimeKind, TaskSpec};

use super::NodeView;

/// A Ready, Active worker with the process runtime, 4 CPUs and 8 GiB.
pub fn node(id: u128) -> NodeView<'static> {
    NodeView {
        id: NodeId(id),
        hostname: format!("host-{id}").into(),
        role: Role::Worker,
        availability: Availability::Active,
        state: NodeState::Ready,
        labels: Cow::Owned(BTreeMap::new()),
        engine_labels: Cow::Owned(BTreeMap::new()),
        runtimes: vec!["process".to_string()].into(),
        resources: NodeResources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
    }
}

/// A process-runtime task spec with no constraints and no reservations.
pub fn spec() -> TaskSpec {
    TaskSpec {
        runtime: RuntimeKind::Process,
        image: "sleep".to_string(),
        args: vec!["1000".to_string()],
        stop_grace_period_ms: 10_000,
        ..TaskSpec::default()
    }
}
