//! Runtimes: how a task actually runs on a node.
//!
//! ```text
//!  TaskActor ──RuntimeCmd──▶ Arc<dyn TaskRuntime> ──▶ ProcessRuntime (OS processes)
//!      ▲                                         └──▶ DockerRuntime (containers, bollard)
//!      └──────── RuntimeEvent (posted back by the tokio task that made the call)
//! ```
//!
//! One runtime value serves every task of a node; calls name the task. The trait is object-safe
//! through boxed futures rather than an enum of the two runtimes, so the simulator and tests can
//! bring their own runtime (a simulated twin) without this crate knowing about it, and the
//! TaskActor stays one non-generic type.

mod docker;
mod logs;
mod mounts;
mod netns;
pub mod overlay;
mod process;
pub mod testimage;
pub mod user;
mod volumes;

#[cfg(test)]
pub(crate) mod tests_support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use docker::{
    DockerConfig, DockerRuntime, LABEL_NODE, LABEL_PREFIX, LABEL_SERVICE, LABEL_SERVICE_NAME,
    LABEL_TASK, network_name,
};
pub use logs::{
    LOG_BYTES_MAX, LOG_LINE_BYTES_MAX, LOG_LINES_MAX, LogBuffer, LogLine, LogStream, keep_newest,
};
pub use mounts::{HOSTNAME_BYTES_MAX, valid_hostname};
pub use mounts::{file_env, running_as_root};
pub use netns::{bridge_name, cni_plugins, host_ports, port_env};
pub use process::ProcessRuntime;
pub use process::VOLUMES_DIR_NAME;
pub use user::{Credentials, UserError, UserSpec, validate_user};
pub use volumes::{VOLUME_ENTRIES_MAX, VOLUME_NAME_BYTES_MAX, VolumesRemoved, valid_volume_name};

use crate::model::{
    FileKind, HealthCheck, NetworkAttachment, NodeId, PortConfig, ServiceId, TaskId, TaskSpec,
};

/// A runtime call on its way.
pub type RuntimeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RuntimeError>> + Send + 'a>>;

/// Everything a runtime needs to know about one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskContext {
    pub task_id: TaskId,
    pub service_id: ServiceId,
    pub service_name: String,
    pub slot: u64,
    pub node_id: NodeId,
    pub spec: TaskSpec,
    /// The task's secrets and configs as the node's SecretVault wrote them (on tmpfs), one per
    /// ref of the spec; the runtime shows each at its target. Empty for a task without any.
    #[serde(default)]
    pub files: Vec<TaskFile>,
    /// The task's ingress address, when the leader gave it one: the Docker runtime attaches
    /// the container to the node's bridge network with it, the process runtime (as root) runs
    /// the task in a network namespace of its own with it.
    #[serde(default)]
    pub network: Option<NetworkAttachment>,
    /// The service's published ports (from the routing mesh's table): a process task that
    /// shares the host's network is given a port of the node's choosing for each target
    /// (`PORT`, `SWARM_PORT_<target>`).
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// The task's overlay networks, in its spec's order: its address on each (from its
    /// task's attachments) with what the node needs to make the network's bridge (from the
    /// routing mesh's table).
    #[serde(default)]
    pub overlays: Vec<OverlayAttachment>,
    /// The resolver the task is given (`/etc/resolv.conf`, `--dns`): the node's DNS server,
    /// on the gateway of the task's first attachment. None: the host's resolvers.
    #[serde(default)]
    pub dns: Option<std::net::Ipv4Addr>,
}

/// A task's attachment to one overlay network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayAttachment {
    pub attachment: NetworkAttachment,
    pub network: crate::wire::MeshNetwork,
}

/// Where a running task of this node can be reached, as its runtime set it up: what the
/// routing mesh connects to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEndpoint {
    /// The task's own address, or a loopback address when it shares the host's network.
    pub ip: std::net::IpAddr,
    /// Target ports the runtime moved: target → the port the task really listens on (only
    /// for a task sharing the host's network). A target not listed is the port itself.
    pub ports: std::collections::BTreeMap<u16, u16>,
    /// The task shares the host's network (the process runtime without root).
    pub host_network: bool,
    /// The task's address on each overlay network it is attached to: what the DNS server
    /// recognises an asking task by, and what a VIP connects to.
    #[serde(default)]
    pub overlay: std::collections::BTreeMap<crate::model::NetworkId, std::net::Ipv4Addr>,
}

impl TaskEndpoint {
    /// The socket address that reaches `target` of this task.
    pub fn socket(&self, target: u16) -> std::net::SocketAddr {
        let port = self.ports.get(&target).copied().unwrap_or(target);
        std::net::SocketAddr::new(self.ip, port)
    }
}

/// The endpoints of this node's running tasks, shared by the node's runtimes (which set an
/// entry before a task's process or container starts and clear it when the task is removed)
/// and the routing mesh and the DNS server (which read them). Cheap to clone.
///
/// A reader that must act before a task runs (the DNS server, which listens on the gateway
/// of the node's ingress slice only while a task there needs it) registers a watcher with
/// [`Endpoints::on_change`]: it is called on the setting thread, after each set or clear, so
/// that what it does is done before the runtime goes on to start the task.
#[derive(Clone, Default)]
pub struct Endpoints(std::sync::Arc<EndpointsInner>);

/// Called after every change of the endpoints.
type EndpointsWatcher = std::sync::Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct EndpointsInner {
    map: std::sync::RwLock<std::collections::HashMap<TaskId, TaskEndpoint>>,
    /// At most [`ENDPOINT_WATCHERS_MAX`]: one per reader that needs it (the DNS server).
    watchers: std::sync::RwLock<Vec<EndpointsWatcher>>,
    /// Connections the routing mesh carries to each task now (tasks with none are absent):
    /// at most one entry per task of the node, each at most the mesh's bound of connections
    /// per backend plus those tunnelled in from other nodes.
    in_flight: std::sync::Mutex<std::collections::HashMap<TaskId, usize>>,
    /// Woken when a task's last connection ends.
    drained: tokio::sync::Notify,
    /// Woken when an endpoint is cleared: the connections still open to that task are cut.
    cleared: tokio::sync::Notify,
}

/// Watchers one [`Endpoints`] takes; a further one is refused (`on_change` returns false).
pub const ENDPOINT_WATCHERS_MAX: usize = 4;

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("tasks", &self.len())
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    pub fn get(&self, task: TaskId) -> Option<TaskEndpoint> {
        self.0
            .map
            .read()
            .expect("endpoints lock")
            .get(&task)
            .cloned()
    }

    pub fn set(&self, task: TaskId, endpoint: TaskEndpoint) {
        self.0
            .map
            .write()
            .expect("endpoints lock")
            .insert(task, endpoint);
        self.changed();
    }

    pub fn clear(&self, task: TaskId) {
        let removed = self.0.map.write().expect("endpoints lock").remove(&task);
        if removed.is_some() {
            self.changed();
            self.0.cleared.notify_waiters();
        }
    }

    /// Calls `watcher` after every later set or clear, on the thread that made it (with no
    /// lock of the endpoints held: it may read them). False, and not registered, past
    /// [`ENDPOINT_WATCHERS_MAX`].
    pub fn on_change(&self, watcher: impl Fn() + Send + Sync + 'static) -> bool {
        let mut w = self.0.watchers.write().expect("endpoints watchers lock");
        if w.len() >= ENDPOINT_WATCHERS_MAX {
            return false;
        }
        w.push(std::sync::Arc::new(watcher));
        true
    }

    fn changed(&self) {
        let watchers = self
            .0
            .watchers
            .read()
            .expect("endpoints watchers lock")
            .clone();
        for w in watchers {
            w();
        }
    }

    /// Every endpoint now, in task order: what the DNS server finds an asking task among,
    /// and the ingress gateways it listens on.
    pub fn all(&self) -> Vec<(TaskId, TaskEndpoint)> {
        let map = self.0.map.read().expect("endpoints lock");
        let mut all: Vec<(TaskId, TaskEndpoint)> =
            map.iter().map(|(t, e)| (*t, e.clone())).collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }

    pub fn len(&self) -> usize {
        self.0.map.read().expect("endpoints lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one connection the routing mesh carries to `task` (a task of this node, reached
    /// on its own socket) until the value is dropped.
    pub fn connection(&self, task: TaskId) -> InFlight {
        *self.in_flight().entry(task).or_default() += 1;
        InFlight {
            endpoints: self.clone(),
            task,
        }
    }

    /// The connections the routing mesh carries to `task` now.
    pub fn connections(&self, task: TaskId) -> usize {
        self.in_flight().get(&task).copied().unwrap_or(0)
    }

    /// Waits until no connection to `task` is in flight, at most `limit`: whether none is.
    pub async fn drained(&self, task: TaskId, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let woken = self.0.drained.notified();
            tokio::pin!(woken);
            // Registered before the count is read, so a drop in between still wakes it.
            woken.as_mut().enable();
            if self.connections(task) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.connections(task) == 0;
            }
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<TaskId, usize>> {
        self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection to a task that the routing mesh carries, counted while it lives (see
/// [`Endpoints::connection`]): a task being stopped is left its grace period to finish them.
pub struct InFlight {
    endpoints: Endpoints,
    task: TaskId,
}

impl InFlight {
    /// Resolves once the task's endpoint is cleared (the runtime removed the task): a
    /// connection still open then is cut, as the task's end would not close it (its network
    /// namespace, and what it had not sent, go with it).
    pub async fn task_gone(&self) {
        loop {
            let woken = self.endpoints.0.cleared.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // A clear wakes every open connection of the node: a lookup, not a copy.
            let held =
                (self.endpoints.0.map.read().expect("endpoints lock")).contains_key(&self.task);
            if !held {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.endpoints.in_flight();
        let last = match map.get_mut(&self.task) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        };
        if last {
            map.remove(&self.task);
            drop(map);
            self.endpoints.0.drained.notify_waiters();
        }
    }
}

/// One secret or config of a task, written by the SecretVault: where its data is on this
/// host (a file on tmpfs) and how the task must see it. Never the data itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    pub kind: FileKind,
    /// The secret's or config's name, for messages.
    pub name: String,
    /// The file on this host, in the task's directory under the vault's tmpfs root.
    pub host_path: std::path::PathBuf,
    /// The absolute path the task sees.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl TaskContext {
    /// Where the mesh and the DNS server reach the task when it has an address of its own: its
    /// ingress address (else its first overlay address), and its address on each overlay
    /// network. None for a task without one (it shares the host's network).
    pub(crate) fn endpoint(&self) -> Option<TaskEndpoint> {
        let first = self
            .network
            .as_ref()
            .or(self.overlays.first().map(|o| &o.attachment))?;
        Some(TaskEndpoint {
            ip: first.addr.into(),
            ports: BTreeMap::new(),
            host_network: false,
            overlay: self
                .overlays
                .iter()
                .map(|o| (o.network.id, o.attachment.addr))
                .collect(),
        })
    }

    /// The spec's `KEY=VALUE` entries plus the four a task can learn its place from.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .spec
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                // Docker passes a bare `KEY` through from its own environment; we set it empty.
                None => (kv.clone(), String::new()),
            })
            .collect();
        env.push(("SWARM_SERVICE_NAME".into(), self.service_name.clone()));
        env.push(("SWARM_TASK_SLOT".into(), self.slot.to_string()));
        env.push(("SWARM_TASK_ID".into(), self.task_id.to_string()));
        env.push(("SWARM_NODE_ID".into(), self.node_id.to_string()));
        env
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The image (docker) or program (process) is not there and could not be fetched.
    /// Nothing was started.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// The spec cannot run on this runtime. Nothing was started.
    #[error("invalid task spec: {0}")]
    InvalidSpec(String),
    /// The runtime does not know this task (never started here, or removed).
    #[error("no such task: {0}")]
    NoSuchTask(TaskId),
    /// The task is known already: a second `start` changes nothing.
    #[error("task {0} was started already")]
    AlreadyStarted(TaskId),
    /// The operating system or the engine refused; the message says what was being done.
    #[error("{0}")]
    Failed(String),
}

/// What `adopt_or_clean` found of a previous run of this node, and what it did about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// The task it belonged to, when that could be read.
    pub task_id: Option<TaskId>,
    /// Container ID (docker) or process ID (process).
    pub what: String,
    pub action: OrphanAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrphanAction {
    /// Killed and forgotten.
    Removed,
    /// Left running: its task is still known to the caller.
    Kept,
    /// Its process was already gone; only the record was cleaned up.
    AlreadyGone,
}

/// How a task runs. Every call names its task; a runtime serves all the tasks of one node.
pub trait TaskRuntime: Send + Sync + 'static {
    /// `"process"` or `"docker"`, as `RuntimeKind::as_str`.
    fn name(&self) -> &'static str;

    /// Whether the runtime judges health itself (the engine runs the checks, applies the start
    /// period and retries): the TaskMachine then only polls [`TaskRuntime::health`].
    fn judges_health(&self) -> bool;

    /// Makes sure what the task runs is here: the image (docker: pull when missing) or the
    /// program on PATH (process).
    fn prepare<'a>(&'a self, ctx: &'a TaskContext) -> RuntimeFuture<'a, ()>;

    /// Starts the task. Returns once it runs (or could not be started).
    fn start<'a>(&'a self, ctx: &'a TaskContext) -> RuntimeFuture<'a, ()>;

    /// Waits until the task's process exits and returns its exit code (128 + signal when a
    /// signal ended it).
    fn wait(&self, task: TaskId) -> RuntimeFuture<'_, i32>;

    /// SIGTERM, then SIGKILL once `grace_ms` has passed. Returns when the task has exited or
    /// the kill was sent. A task that is not running is not an error.
    fn stop(&self, task: TaskId, grace_ms: u64) -> RuntimeFuture<'_, ()>;

    /// SIGKILL now.
    fn kill(&self, task: TaskId) -> RuntimeFuture<'_, ()>;

    /// Where this runtime records its tasks' endpoints (shared with the routing mesh, which
    /// counts its connections to each task there): the TaskActor waits for a stopping task's
    /// connections to end before it asks for the stop. None for a runtime whose tasks the
    /// mesh does not reach.
    fn endpoints(&self) -> Option<Endpoints> {
        None
    }

    /// One health check: `Some(true)` healthy, `Some(false)` not, `None` no verdict yet (the
    /// engine is still in its start period). The process runtime runs `sh -c <cmd>` bounded by
    /// `timeout_ms`; docker reads the engine's status.
    fn health<'a>(
        &'a self,
        ctx: &'a TaskContext,
        check: &'a HealthCheck,
    ) -> RuntimeFuture<'a, Option<bool>>;

    /// The last `tail` lines the task wrote (at most [`LOG_LINES_MAX`]), oldest first.
    fn logs(&self, task: TaskId, tail: usize) -> RuntimeFuture<'_, Vec<LogLine>>;

    /// Forgets the task: kills what is left of it, removes its container or pid file and logs.
    fn remove(&self, task: TaskId) -> RuntimeFuture<'_, ()>;

    /// Removes this node's named volumes labelled `label=value` (a stack's namespace label,
    /// for `stack rm`) that no task of the node uses; those in use are named and left. Docker:
    /// the engine's volumes with that label; process: the volume directories whose labels
    /// file has it. A runtime without volumes removes nothing.
    fn remove_volumes<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RuntimeFuture<'a, VolumesRemoved> {
        let _ = (label, value); // nothing to match them against
        Box::pin(async { Ok(VolumesRemoved::default()) })
    }

    /// Finds what a previous run of this node left behind and removes what the caller does not
    /// know (`known` are the task IDs the node still has assignments for). Call once at start,
    /// before starting tasks.
    fn adopt_or_clean<'a>(
        &'a self,
        node: NodeId,
        known: &'a BTreeSet<TaskId>,
    ) -> RuntimeFuture<'a, Vec<Orphan>>;
}

/// The exit code a shell would show: the code, or 128 + the signal that ended the process.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}
