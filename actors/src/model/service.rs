//! Services: what a user asks the cluster to keep running.
//!
//! Field names follow Docker's service spec where one exists, so `service inspect` reads the
//! way Docker users expect. Durations are milliseconds (`_ms`), sizes bytes, CPUs billionths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ServiceId;

/// How many tasks a service wants.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ServiceMode {
    Replicated {
        replicas: u64,
    },
    /// One task on every node that can run it.
    Global,
}

/// Where a task's process comes from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
pub enum RuntimeKind {
    /// A container on the node's Docker Engine.
    #[default]
    Docker,
    /// An OS process: IMAGE is the program, found on PATH.
    Process,
}

impl RuntimeKind {
    /// The name nodes advertise in `NodeDescription::runtimes`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Process => "process",
        }
    }
}

/// A health check, as `--health-cmd` and friends set it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Run through `sh -c` on the task's side.
    pub cmd: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures that make a task unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count.
    pub start_period_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ResourceAmounts {
    pub nano_cpus: u64,
    pub memory_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Resources {
    /// What the scheduler sets aside on the chosen node.
    pub reservations: ResourceAmounts,
    /// What the runtime enforces (0 = no limit).
    pub limits: ResourceAmounts,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum RestartCondition {
    #[default]
    Any,
    OnFailure,
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    /// At most this many restarts within `window_ms` (0 window = ever); `None` = unlimited.
    pub max_attempts: Option<u64>,
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: None,
            window_ms: 0,
        }
    }
}

/// Constraints (`node.labels.env==prod`) and spread preferences (`spread=node.labels.zone`),
/// kept as the user wrote them; the scheduler parses and checks them.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Placement {
    pub constraints: Vec<String>,
    pub preferences: Vec<String>,
}

/// What every task of a service runs.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct TaskSpec {
    pub runtime: RuntimeKind,
    pub image: String,
    /// Command and arguments; empty means the image's default (docker) and is refused for the
    /// process runtime, whose IMAGE is the program itself.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub health: Option<HealthCheck>,
    pub resources: Resources,
    pub restart: RestartPolicy,
    pub placement: Placement,
    pub stop_grace_period_ms: u64,
    /// `--user`: who the task runs as, Docker's `uid[:gid]` or `name[:group]`
    /// (`runtime::UserSpec`). `None`: the process runtime runs the task as the node's own user
    /// (root when the node runs as root, with everything root can reach, the data dir
    /// included); docker as the image's user.
    pub user: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// How an update (or a rollback) replaces tasks.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks replaced at once (0 = all at once).
    pub parallelism: u64,
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure.
    pub monitor_ms: u64,
    pub max_failure_ratio: f32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// A published port (`--publish 8080:80`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PortConfig {
    pub published: u16,
    pub target: u16,
}

/// What the user asked for.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub mode: ServiceMode,
    pub task: TaskSpec,
    pub update: UpdateConfig,
    pub rollback: UpdateConfig,
    pub ports: Vec<PortConfig>,
}

/// A service as the store keeps it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `service rollback`.
    pub previous_spec: Option<ServiceSpec>,
    /// Grows with every spec change; tasks record the one they were made from.
    pub spec_version: u64,
}
