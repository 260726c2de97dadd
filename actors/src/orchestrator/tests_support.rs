//! Builders for the orchestrators' tests.

use std::collections::BTreeMap;

use crate::model::{
    NodeId, Service, ServiceId, ServiceMode, ServiceSpec, Task, TaskId, TaskState, TaskStatus,
    UpdateConfig,
};
use crate::scheduler::tests_support::spec;

/// A task of service 1, spec version 1, desired and actually Running, created at `id` ms.
pub fn task(id: u128, slot: u64, node: Option<u128>) -> Task {
    Task {
        id: TaskId(id),
        service_id: ServiceId(1),
        slot,
        node_id: node.map(NodeId),
        spec: spec(),
        spec_version: 1,
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Running,
            since_ms: id as u64,
            message: String::new(),
            error: None,
            exit_code: None,
            health: None,
        },
        created_ms: id as u64,
        running_ms: Some(id as u64),
        networks: Vec::new(),
    }
}

/// Service 1, "web", spec version 1, in `mode`, with the default restart policy.
pub fn service(mode: ServiceMode) -> Service {
    Service {
        vips: Vec::new(),
        id: ServiceId(1),
        spec: ServiceSpec {
            endpoint_mode: Default::default(),
            depends_on: Vec::new(),
            name: "web".to_string(),
            labels: BTreeMap::new(),
            mode,
            task: spec(),
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            ports: Vec::new(),
        },
        previous_spec: None,
        previous_spec_version: None,
        update_status: None,
        spec_version: 1,
    }
}
