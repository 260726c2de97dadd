//! Control requests and responses.

use serde::{Deserialize, Serialize};
use swarm_actors::model::{
    Availability, EndpointMode, FailureAction, FileKind, FileRef, HealthCheck, Mount, PortConfig,
    PortProtocol, RestartCondition, Role, SecretBytes, Service, ServiceSpec, TaskState,
    UpdateConfig, UpdateOrder, UpdateState, UpdateStatus,
};
use swarm_actors::node::{CaView, JoinTokensView};
use swarm_actors::runtime::LogStream;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    NodeLs,
    /// `node update`: availability, labels; compare-and-set on the node's version.
    NodeUpdate {
        node: String,
        availability: Option<Availability>,
        label_add: Vec<(String, String)>,
        label_rm: Vec<String>,
    },
    NodeRm {
        node: String,
        force: bool,
    },
    /// `node promote` (manager = true) and `node demote`.
    NodeRole {
        node: String,
        manager: bool,
    },
    JoinToken {
        role: Role,
        rotate: bool,
    },
    /// `swarm ca`: the root CA and its rotation's progress; `rotate` starts a rotation.
    Ca {
        rotate: bool,
    },
    Actors,
    /// `service create`: the spec as the flags built it; validated again on the node.
    /// `networks`: the `--network` flags, by name or ID; the node resolves them into the
    /// spec's `task.networks` and allocates the service's VIPs.
    ServiceCreate {
        spec: Box<ServiceSpec>,
        #[serde(default)]
        networks: Vec<NetworkArg>,
    },
    ServiceLs,
    /// Services by name, ID or unique ID prefix.
    ServiceInspect {
        services: Vec<String>,
    },
    /// `service update` (and `service scale`, which changes only the replicas).
    ServiceUpdate {
        service: String,
        change: Box<ServiceChange>,
    },
    /// `service rollback` and `service update --rollback`: the previous spec becomes the
    /// current one again, rolled out with the rollback config.
    ServiceRollback {
        service: String,
    },
    ServiceRm {
        service: String,
    },
    /// `stack deploy` of a service that exists: its whole spec replaced by `spec` (named by
    /// `spec.name`, networks as in `ServiceCreate`), rolled out with the new spec's update
    /// config as `service update` does. When the resolved spec equals the stored one, nothing
    /// is written and the answer says so ([`ControlResponse::Applied`] with `changed: false`).
    ServiceReplace {
        spec: Box<ServiceSpec>,
        #[serde(default)]
        networks: Vec<NetworkArg>,
    },
    /// The tasks of a service, history included.
    ServicePs {
        service: String,
    },
    /// The tasks placed on a node (`self` for the answering node).
    NodePs {
        node: String,
    },
    /// Where a service's tasks stand against its current spec, for the progress display.
    ServiceProgress {
        service: String,
    },
    /// The last `tail` lines of every task of a service, from every node that ran one.
    ServiceLogs {
        service: String,
        tail: usize,
    },
    /// `network ls`.
    NetworkLs,
    /// `network inspect`: by name or ID prefix.
    NetworkInspect {
        names: Vec<String>,
    },
    /// `network create`: an overlay network; the node picks the subnet when none is given.
    NetworkCreate(Box<NetworkCreate>),
    /// `network rm`: refused while a service or a live task uses it.
    NetworkRm {
        name: String,
    },
    /// `stack rm`: removes the stack's named volumes (labelled with its namespace) on every
    /// node, those no task uses; answered as `Reply` with a `volumes::VolumesRmAnswer` (JSON).
    VolumesRm {
        namespace: String,
    },
    /// Sends a typed message to a named actor; `args` is JSON text ("" for none).
    Send {
        actor: String,
        msg: String,
        args: String,
    },
    // Secrets and configs
    /// `secret create` / `config create`: the data travels to the node once, here; no answer
    /// ever carries a secret's data back.
    SecretCreate {
        kind: FileKind,
        name: String,
        labels: Vec<(String, String)>,
        data: SecretBytes,
    },
    SecretLs {
        kind: FileKind,
    },
    /// `stack deploy` of a secret or config: made when missing; when one of the name exists,
    /// its data must be the same (secrets and configs are immutable: a change is refused and
    /// nothing is written) and its labels become `labels`. The node compares the data: no
    /// answer carries it back.
    SecretDeploy {
        kind: FileKind,
        name: String,
        labels: Vec<(String, String)>,
        data: SecretBytes,
    },
    /// By name, full ID or unique ID prefix; a config's answer carries its data, a secret's
    /// never does.
    SecretInspect {
        kind: FileKind,
        names: Vec<String>,
    },
    /// Refused while a service's spec refers to it.
    SecretRm {
        kind: FileKind,
        name: String,
    },
    /// `secret update` / `config update`: labels only, the one thing that can change.
    SecretUpdate {
        kind: FileKind,
        name: String,
        label_add: Vec<(String, String)>,
        label_rm: Vec<String>,
    },
    // Autolock
    /// `swarm update`: `autolock` turns autolock on (a new unlock key) or off.
    SwarmUpdate {
        autolock: Option<bool>,
    },
    /// `swarm unlock-key`: the cluster's unlock key; `rotate` replaces it first.
    UnlockKey {
        rotate: bool,
    },
    /// `swarm unlock`: the key that opens a locked manager's store (`SWMKEY-1-…`).
    Unlock {
        key: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Nodes, and whether the list came from a replica that could not confirm it is current.
    Nodes {
        nodes: Vec<NodeInfo>,
        stale: bool,
    },
    /// A write went through; the text says what changed.
    Done(String),
    Tokens(JoinTokensView),
    Ca(CaView),
    Actors(Vec<(String, Vec<String>)>),
    /// An actor's answer, as JSON text.
    Reply(String),
    Services(Vec<ServiceInfo>),
    ServiceDocs(Vec<ServiceDoc>),
    /// Networks, with the tasks holding addresses for `network inspect`.
    Networks(Vec<NetworkDoc>),
    /// Task rows, at most [`TASK_ROWS_MAX`] (the newest are kept).
    Tasks(Vec<TaskRow>),
    Progress(ProgressView),
    /// Log lines oldest first, and the nodes that could not be asked (shown as warnings).
    Logs {
        lines: Vec<LogEntry>,
        unreachable: Vec<String>,
    },
    Error(String),
    /// `ServiceReplace` and `SecretDeploy`: the object's ID, and whether anything was written
    /// (a replaced spec, a secret made or its labels changed).
    Applied {
        id: String,
        changed: bool,
    },
    // Secrets and configs
    /// Secrets or configs, metadata only (a config's data with `config inspect`).
    Secrets(Vec<SecretDoc>),
    // Autolock
    /// The cluster's unlock key as text (`None`: autolock is off), and whether the request
    /// changed the setting or the key.
    UnlockKey {
        key: Option<String>,
        changed: bool,
    },
}

/// Most task rows in one answer, so that it fits a control frame; the newest are kept.
pub const TASK_ROWS_MAX: usize = 2_000;

/// What `service update` changes; every field left empty keeps the stored value. The client
/// parses the flags into it; the node applies it to the stored spec and checks the result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub replicas: Option<u64>,
    pub image: Option<String>,
    /// `--args`: the command's arguments, all of them replaced.
    pub args: Option<Vec<String>>,
    pub constraint_add: Vec<String>,
    pub constraint_rm: Vec<String>,
    pub placement_pref_add: Vec<String>,
    pub placement_pref_rm: Vec<String>,
    /// `KEY=VALUE`: replaces an entry with the same key.
    pub env_add: Vec<String>,
    /// Keys whose entries go.
    pub env_rm: Vec<String>,
    /// Service labels set (an existing key's value replaced).
    pub label_add: Vec<(String, String)>,
    /// Service label keys that go.
    pub label_rm: Vec<String>,
    /// Labels put on each task's container (docker runtime).
    pub container_label_add: Vec<(String, String)>,
    pub container_label_rm: Vec<String>,
    pub reserve_nano_cpus: Option<u64>,
    pub reserve_memory_bytes: Option<u64>,
    pub limit_nano_cpus: Option<u64>,
    pub limit_memory_bytes: Option<u64>,
    pub health: HealthChange,
    pub restart: RestartChange,
    pub stop_grace_period_ms: Option<u64>,
    /// `--update-*`.
    pub update: RolloutChange,
    /// `--rollback-*`.
    pub rollback: RolloutChange,
    /// `--force`: every task is replaced even if the task spec did not change.
    pub force: bool,
    /// `--secret-rm` (by name or ID), then `--secret-add`: refs as the flags give them, their
    /// IDs resolved by name on the node.
    #[serde(default)]
    pub secret_rm: Vec<String>,
    #[serde(default)]
    pub secret_add: Vec<FileRef>,
    /// `--config-rm`, then `--config-add`.
    #[serde(default)]
    pub config_rm: Vec<String>,
    #[serde(default)]
    pub config_add: Vec<FileRef>,
    /// `--publish-rm`, then `--publish-add` (a port with the published port and protocol of
    /// one the service has replaces it; published 0: the node picks one).
    #[serde(default)]
    pub publish_rm: Vec<PortRm>,
    #[serde(default)]
    pub publish_add: Vec<PortConfig>,
    /// `--network-rm` (by name or ID), then `--network-add`.
    #[serde(default)]
    pub network_rm: Vec<String>,
    #[serde(default)]
    pub network_add: Vec<NetworkArg>,
    /// `--endpoint-mode`.
    #[serde(default)]
    pub endpoint_mode: Option<EndpointMode>,
    /// `--entrypoint`: all of it replaced (an empty list: the image's own again, Docker's
    /// `--entrypoint ""`).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `--workdir` (empty: none).
    #[serde(default)]
    pub workdir: Option<String>,
    /// `--hostname` (empty: none).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `--mount-rm` (by target), then `--mount-add` (a mount on a target the service has
    /// replaces it).
    #[serde(default)]
    pub mount_rm: Vec<String>,
    #[serde(default)]
    pub mount_add: Vec<Mount>,
    /// `--replicas-max-per-node` (0: no limit).
    #[serde(default)]
    pub max_replicas: Option<u64>,
}

/// One `--network` (or `--network-add`): a network by name or ID, with the service's aliases
/// on it (`name=x,alias=y`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkArg {
    pub target: String,
    pub aliases: Vec<String>,
}

/// `network create`'s flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    /// `overlay` (the only driver).
    pub driver: String,
    /// `10.0.9.0/24`; `None`: the next free /24 of `10.0.0.0/8`.
    pub subnet: Option<String>,
    pub attachable: bool,
    pub internal: bool,
    pub labels: Vec<(String, String)>,
}

/// One `--publish-rm`: `N[/proto]` (the port published on N; failing that, Docker's rule:
/// the ports whose target is N, as `--publish N` made them) or `P:T[/proto]` (exactly that
/// pair). Without a protocol, both protocols match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRm {
    pub published: Option<u16>,
    pub port: u16,
    pub protocol: Option<PortProtocol>,
}

impl PortRm {
    /// Removes the ports this names from `ports`; an error naming the port when none matched.
    pub fn apply(&self, service: &str, ports: &mut Vec<PortConfig>) -> Result<(), String> {
        let proto = |p: &PortConfig| self.protocol.is_none_or(|x| x == p.protocol);
        let before = ports.len();
        match self.published {
            Some(published) => {
                ports.retain(|p| !(proto(p) && p.published == published && p.target == self.port))
            }
            None => {
                ports.retain(|p| !(proto(p) && p.published == self.port));
                if ports.len() == before {
                    ports.retain(|p| !(proto(p) && p.target == self.port));
                }
            }
        }
        if ports.len() == before {
            return Err(format!("service {service} does not publish port {self}"));
        }
        Ok(())
    }
}

impl std::fmt::Display for PortRm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.published {
            write!(f, "{p}:")?;
        }
        write!(f, "{}", self.port)?;
        if let Some(proto) = self.protocol {
            write!(f, "/{}", proto.as_str())?;
        }
        Ok(())
    }
}

/// `--health-*` and `--no-healthcheck` of `service update`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthChange {
    pub cmd: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub start_period_ms: Option<u64>,
    /// `--no-healthcheck`: the service loses its health check.
    pub none: bool,
}

impl HealthChange {
    /// A check running `cmd` with Docker's defaults: every 30 s, 30 s to answer, unhealthy
    /// after 3 failures, no start period.
    pub fn check(cmd: String) -> HealthCheck {
        HealthCheck {
            cmd,
            interval_ms: 30_000,
            timeout_ms: 30_000,
            retries: 3,
            start_period_ms: 0,
        }
    }
}

/// `--restart-*` of `service update`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartChange {
    pub condition: Option<RestartCondition>,
    pub delay_ms: Option<u64>,
    pub max_attempts: Option<u64>,
    pub window_ms: Option<u64>,
}

/// The six `--update-*` (or `--rollback-*`) flags: how tasks are replaced. `service create`
/// applies them to Docker's defaults, `service update` to the stored config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutChange {
    pub parallelism: Option<u64>,
    pub delay_ms: Option<u64>,
    pub monitor_ms: Option<u64>,
    pub failure_action: Option<FailureAction>,
    pub max_failure_ratio: Option<f32>,
    pub order: Option<UpdateOrder>,
}

impl RolloutChange {
    /// Sets what was given; the rest of `config` stays.
    pub fn apply(&self, config: &mut UpdateConfig) {
        if let Some(v) = self.parallelism {
            config.parallelism = v;
        }
        if let Some(v) = self.delay_ms {
            config.delay_ms = v;
        }
        if let Some(v) = self.monitor_ms {
            config.monitor_ms = v;
        }
        if let Some(v) = self.failure_action {
            config.failure_action = v;
        }
        if let Some(v) = self.max_failure_ratio {
            config.max_failure_ratio = v;
        }
        if let Some(v) = self.order {
            config.order = v;
        }
    }
}

/// A secret or config as `ls` and `inspect` show it. Its data only for a config, and only
/// for `config inspect`: a secret's data never leaves the store through the control API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretDoc {
    pub id: String,
    pub kind: FileKind,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The store object's version (Docker's `Version.Index`).
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// A config's data (`config inspect` only); always `None` for a secret.
    pub data: Option<Vec<u8>>,
}

/// One row of `service ls`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    /// "replicated" or "global".
    pub mode: String,
    pub running: u64,
    /// Replicas, or for a global service the nodes that may run it.
    pub desired: u64,
    pub image: String,
    pub ports: String,
    /// The service's labels: `stack ls` and `stack services` find a stack's services by
    /// `com.docker.stack.namespace`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A network as `network ls` and `network inspect` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkDoc {
    /// Stable across nodes and runs (25 hex digits, Docker's length).
    pub id: String,
    pub name: String,
    /// `overlay`: it spans the nodes.
    pub driver: String,
    /// `swarm`: the cluster's, not one node's.
    pub scope: String,
    /// Whether published ports are reached through it.
    pub ingress: bool,
    /// `10.255.0.0/16`.
    pub subnet: String,
    /// Tasks holding an address (`inspect` only), lowest address first.
    pub tasks: Vec<NetworkTask>,
    /// Tasks beyond the answer's bound, counted.
    pub tasks_left_out: usize,
    /// The subnet's first address (an overlay network's; empty for ingress, whose gateways
    /// are one per node slice).
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The VXLAN network identifier (0 for ingress, whose traffic crosses nodes over the
    /// mesh's tunnels).
    #[serde(default)]
    pub vni: u32,
    /// The services with a VIP on it (`inspect` only): name and address, by name.
    #[serde(default)]
    pub vips: Vec<(String, String)>,
    /// The store object's version and times (0 for ingress, which is not stored).
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub created_ms: u64,
}

/// A task's address on a network, as Docker's `Containers` entries show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkTask {
    /// `web.1.<task id>`, Docker's container name of a task.
    pub name: String,
    pub id: String,
    /// `10.255.3.7/24`.
    pub ipv4: String,
}

/// A stored service with its store metadata, for `service inspect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceDoc {
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub service: Service,
    /// The networks the service's specs and VIPs name: ID, name and prefix length, so that
    /// inspect can show names and `addr/prefix`.
    #[serde(default)]
    pub networks: Vec<NetworkBrief>,
}

/// A network as a service's inspect names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkBrief {
    pub id: String,
    pub name: String,
    pub prefix: u8,
}

/// One task as `service ps` and `node ps` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    /// `web.1` or `web.<node id>`: rows with the same name are one slot's history.
    pub name: String,
    pub service: String,
    /// Sorts slots: replicated by slot number, global by node.
    pub slot: u64,
    pub image: String,
    /// The node's hostname (its ID when the hostname is unknown); empty while pending.
    pub node: String,
    pub desired: TaskState,
    pub state: TaskState,
    pub since_ms: u64,
    /// The pending reason or the error, as the ERROR column shows it.
    pub error: String,
    pub created_ms: u64,
    /// The task's addresses, `ingress=10.255.3.7/24`-style as `network=addr/prefix`; empty
    /// before the leader allocates one.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The host-mode ports a live task publishes on its node (`*:9000->80/tcp`), as Docker's
    /// PORTS column of `service ps` shows them; empty for a terminal task.
    #[serde(default)]
    pub ports: String,
}

/// Where a service's tasks and its rolling update stand, for the progress display of
/// `create`, `update`, `scale` and `rollback`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressView {
    pub id: String,
    pub global: bool,
    pub spec_version: u64,
    /// The service's `update.monitor_ms`: how long converged tasks are watched before the
    /// service counts as converged.
    pub monitor_ms: u64,
    pub slots: Vec<SlotProgress>,
    /// The service's update status as the leader last wrote it; `None` for a service that no
    /// update touched since its last `create` or `update` (a create or a scale).
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
    /// Live tasks (desired and observed at most Running, on a Ready node or not yet placed)
    /// made from an older spec version: a start-first update overlaps old and new tasks, and
    /// the service has not converged while an old one is still up.
    #[serde(default)]
    pub old_live: u64,
}

/// One slot (replicated) or one eligible node (global).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotProgress {
    /// `1`…`N`, or the node's short ID.
    pub label: String,
    /// The state of the slot's live task made from the current spec; `None` while there is none.
    pub state: Option<TaskState>,
    /// Why the task waits (the scheduler's reason) or failed.
    pub message: String,
}

impl ProgressView {
    /// Every slot has a task of the current spec, running, and no task of an older spec is
    /// still live.
    pub fn converged(&self) -> bool {
        self.old_live == 0
            && self
                .slots
                .iter()
                .all(|s| s.state == Some(TaskState::Running))
    }

    /// The update status's state, if the service has one.
    pub fn update_state(&self) -> Option<UpdateState> {
        self.update_status.as_ref().map(|u| u.state)
    }

    /// A rollback (automatic or asked for) is what the tasks are heading for.
    pub fn rolling_back(&self) -> bool {
        self.update_state().is_some_and(UpdateState::is_rollback)
    }

    pub fn running(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == Some(TaskState::Running))
            .count()
    }
}

/// One line of `service logs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub task_id: String,
    /// `web.1`.
    pub task_name: String,
    /// The hostname of the node that ran the task.
    pub node: String,
    pub ts_ms: u64,
    pub stream: LogStream,
    pub text: String,
}

/// One node as the answering node sees it: what `node ls` and `node inspect` show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub status: String,
    pub availability: String,
    pub role: String,
    /// "Leader", "Reachable", "Unreachable" for managers; empty for workers.
    pub manager_status: String,
    pub engine_version: String,
    pub addr: String,
    /// The node's own labels (`start --label`), Docker's engine labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Labels set with `node update --label-add`.
    pub node_labels: std::collections::BTreeMap<String, String>,
    pub nano_cpus: u64,
    pub memory_bytes: u64,
    pub runtimes: Vec<String>,
    pub description_version: u64,
    /// The node object's version in the store (what `node update` compares), 0 if unknown.
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// True for the node that answered.
    pub is_self: bool,
    /// The routing mesh of the node that answered (its row only): ports bound, bind errors.
    #[serde(default)]
    pub mesh: Option<swarm_actors::mesh::MeshStatus>,
}

/// Finds a node by full ID, unique ID prefix, hostname, or `self`.
pub fn resolve<'a>(nodes: &'a [NodeInfo], name: &str) -> Result<&'a NodeInfo, String> {
    if name == "self" {
        return nodes
            .iter()
            .find(|n| n.is_self)
            .ok_or_else(|| "the answering node is not in its own list".to_string());
    }
    if let Some(n) = nodes.iter().find(|n| n.id == name) {
        return Ok(n);
    }
    let by_host: Vec<_> = nodes.iter().filter(|n| n.hostname == name).collect();
    if by_host.len() == 1 {
        return Ok(by_host[0]);
    }
    let by_prefix: Vec<_> = nodes.iter().filter(|n| n.id.starts_with(name)).collect();
    match (by_prefix.len(), by_host.len()) {
        (1, _) => Ok(by_prefix[0]),
        (0, 0) => Err(format!("no such node: {name}")),
        _ => Err(format!("node {name} is ambiguous: give more of its ID")),
    }
}
