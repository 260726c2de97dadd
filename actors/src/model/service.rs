//! Services: what a user asks the cluster to keep running.
//!
//! Field names follow Docker's service spec where one exists, so `service inspect` reads the
//! way Docker users expect. Durations are milliseconds (`_ms`), sizes bytes, CPUs billionths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    EndpointMode, FileKey, FileKind, FileRef, NetworkRef, PortConfig, ServiceId, ServiceVip,
};

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
    /// `--replicas-max-per-node` (compose `max_replicas_per_node`): at most this many live
    /// tasks of the service on one node; 0 = no limit.
    pub max_replicas: u64,
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
    /// `--container-label-add`: labels the Docker runtime puts on each task's container.
    pub container_labels: BTreeMap<String, String>,
    /// Docker's `ForceUpdate`: `service update --force` raises it, so that every task counts
    /// as made from an older spec and is replaced although nothing else changed.
    pub force_update: u64,
    /// `--secret`: secrets the task reads as files (data sent to its node with it).
    pub secrets: Vec<FileRef>,
    /// `--config`: configs the task reads as files.
    pub configs: Vec<FileRef>,
    /// Overlay networks the tasks attach to besides ingress, in the order given (Docker's
    /// `TaskTemplate.Networks`: a change replaces the tasks).
    pub networks: Vec<NetworkRef>,
    /// `--entrypoint` (compose `entrypoint`): replaces the image's entrypoint (docker); on the
    /// process runtime its first word is the program run instead of IMAGE, the rest come
    /// before `args`. Empty: the image's own.
    pub entrypoint: Vec<String>,
    /// `--workdir` (compose `working_dir`): the task's working directory.
    pub workdir: Option<String>,
    /// `--hostname` (compose `hostname`): the task's host name.
    pub hostname: Option<String>,
    /// `--mount` (compose `volumes` and `tmpfs`): named volumes, bind mounts and tmpfs.
    pub mounts: Vec<Mount>,
}

/// Most mounts one task spec has.
pub const MOUNTS_MAX: usize = 64;

/// What a [`Mount`] puts at its target.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub enum MountKind {
    /// A named volume: a Docker volume labelled like the service (docker), a directory of
    /// the node's own under its data dir (process). Made on first use, kept after the task.
    #[default]
    Volume,
    /// A path of the node's file system.
    Bind,
    /// A fresh in-memory file system per task.
    Tmpfs,
}

impl MountKind {
    /// Docker's spelling (`Mounts[].Type`).
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Volume => "volume",
            MountKind::Bind => "bind",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a task (Docker's `ContainerSpec.Mounts[]`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Volume: its name (empty: an anonymous volume of the task). Bind: an absolute host
    /// path. Tmpfs: empty.
    pub source: String,
    /// Absolute path inside the task.
    pub target: String,
    pub read_only: bool,
    /// Volume: labels put on the volume when it is made (a stack's namespace label).
    pub volume_labels: BTreeMap<String, String>,
    /// Tmpfs: its size in bytes (0: the runtime's default).
    pub tmpfs_size_bytes: u64,
}

impl TaskSpec {
    /// Every secret and config the task reads, with its kind.
    pub fn files(&self) -> impl Iterator<Item = (FileKey, &FileRef)> {
        fn keyed(kind: FileKind) -> impl Fn(&FileRef) -> (FileKey, &FileRef) {
            move |r| (FileKey { kind, id: r.id }, r)
        }
        (self.secrets.iter().map(keyed(FileKind::Secret)))
            .chain(self.configs.iter().map(keyed(FileKind::Config)))
    }
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
    /// How the service's name resolves on its networks (Docker's `EndpointSpec.Mode`).
    pub endpoint_mode: EndpointMode,
    /// Compose's `depends_on`: the leader starts no task of this service until every service
    /// named here meets its condition. Swarm ignores `depends_on`; we honour it.
    pub depends_on: Vec<Dependency>,
}

/// Most services one service depends on.
pub const DEPENDENCIES_MAX: usize = 64;

/// When a dependency counts as met (compose's `depends_on.<name>.condition`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub enum DependencyCondition {
    /// `service_started`: its tasks are RUNNING — at least one, and every task of it placed
    /// on a node and meant to run.
    #[default]
    Started,
    /// `service_healthy`: running and healthy (running, when it has no health check).
    Healthy,
    /// `service_completed_successfully`: its tasks have exited with status 0.
    CompletedSuccessfully,
}

impl DependencyCondition {
    /// Compose's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyCondition::Started => "service_started",
            DependencyCondition::Healthy => "service_healthy",
            DependencyCondition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

/// One `depends_on` entry: a service (by its full name) and the condition it must meet.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: DependencyCondition,
}

/// Where a rolling update (or rollback) stands, Docker's `UpdateStatus.State`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    /// Docker's spelling (`service inspect`'s `UpdateStatus.State`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// A rollback's states: the rollout uses the service's rollback config, and a failure
    /// pauses it rather than rolling back again.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }

    /// The updater replaces tasks only in these states.
    pub fn is_rolling(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    pub fn is_paused(self) -> bool {
        matches!(self, UpdateState::Paused | UpdateState::RollbackPaused)
    }
}

/// Docker's `UpdateStatus`: kept in the store with the service, so that a new leader carries
/// on an update, a pause or a rollback where the old one left it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    /// When this update (or rollback) started, milliseconds since the Unix epoch: tasks made
    /// since then are the ones it watches.
    pub started_ms: u64,
    pub completed_ms: Option<u64>,
    pub message: String,
}

/// A service as the store keeps it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `service rollback`.
    pub previous_spec: Option<ServiceSpec>,
    /// The spec version tasks made from `spec` carry. A new task spec gets a version above
    /// both this and `previous_spec_version`; a rollback swaps the two, so tasks already made
    /// from the spec rolled back to are not replaced again.
    pub spec_version: u64,
    /// `spec_version` of `previous_spec`.
    pub previous_spec_version: Option<u64>,
    /// The last rolling update's progress; `None` until one starts (and again after each
    /// `service update`, which starts afresh).
    pub update_status: Option<UpdateStatus>,
    /// The service's virtual address on each of its networks (`endpoint_mode` vip), allocated
    /// by the control API with the spec that names the network.
    pub vips: Vec<ServiceVip>,
}

/// Docker's message when a rollback is asked for and there is nothing to go back to.
pub fn no_previous_spec(name: &str) -> String {
    format!("service {name} does not have a previous spec")
}

impl Service {
    /// A new service at spec version 1.
    pub fn new(id: ServiceId, spec: ServiceSpec) -> Service {
        Service {
            id,
            spec,
            previous_spec: None,
            spec_version: 1,
            previous_spec_version: None,
            update_status: None,
            vips: Vec::new(),
        }
    }

    /// The service after `service update` set `spec`. The current spec becomes the previous
    /// one; a changed task spec gets a new version (so every task is replaced); the update
    /// status is cleared, so a paused update starts afresh and the leader starts the rollout.
    /// `force` (`--force`) raises `force_update`: every task is replaced even if nothing else
    /// changed.
    pub fn updated(&self, mut spec: ServiceSpec, force: bool) -> Service {
        if force {
            spec.task.force_update = self.spec.task.force_update.wrapping_add(1);
        }
        let task_changed = spec.task != self.spec.task;
        let spec_version = if task_changed {
            self.spec_version
                .max(self.previous_spec_version.unwrap_or(0))
                .saturating_add(1)
        } else {
            self.spec_version
        };
        Service {
            id: self.id,
            spec,
            previous_spec: Some(self.spec.clone()),
            spec_version,
            previous_spec_version: Some(self.spec_version),
            update_status: None,
            vips: self.vips.clone(),
        }
    }

    /// The service with its spec and previous spec swapped (versions too): `service rollback`,
    /// and the leader's rollback after a failed update. `status` is the rollback's
    /// `RollbackStarted` status. Fails when there is no previous spec.
    pub fn rolled_back(&self, status: UpdateStatus) -> Result<Service, String> {
        let previous = self
            .previous_spec
            .clone()
            .ok_or_else(|| no_previous_spec(&self.spec.name))?;
        let version = match self.previous_spec_version {
            Some(v) => v,
            // Stored before versions were kept with the previous spec: a fresh one.
            None if previous.task == self.spec.task => self.spec_version,
            None => self.spec_version.saturating_add(1),
        };
        Ok(Service {
            id: self.id,
            spec: previous,
            previous_spec: Some(self.spec.clone()),
            spec_version: version,
            previous_spec_version: Some(self.spec_version),
            update_status: Some(status),
            vips: self.vips.clone(),
        })
    }

    /// `service rollback` (and `service update --rollback`): back to the previous spec, rolled
    /// out with the rollback config.
    pub fn manual_rollback(&self, now_ms: u64) -> Result<Service, String> {
        self.rolled_back(UpdateStatus {
            state: UpdateState::RollbackStarted,
            started_ms: now_ms,
            completed_ms: None,
            message: "manually requested rollback".to_string(),
        })
    }

    /// The config the current rollout uses: the rollback config during a rollback.
    pub fn rollout_config(&self) -> &UpdateConfig {
        match &self.update_status {
            Some(u) if u.state.is_rollback() => &self.spec.rollback,
            _ => &self.spec.update,
        }
    }
}
