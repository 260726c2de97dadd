//! The docker runtime: a task is one container on the node's Docker Engine (bollard).
//!
//! The container is named `<service>.<slot>.<task id>` and labelled with the service, task and
//! node, so a restarted node finds its containers again (`adopt_or_clean`); the service's
//! container labels go on it too, never over those four. Resource limits and the health check
//! go to the engine, which runs the checks itself; the TaskMachine only polls the engine's
//! verdict ([`TaskRuntime::judges_health`] is true). Logs are read from the engine, bounded by
//! the tail asked for and by [`LogBuffer`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, Mount, MountTmpfsOptions,
    MountType, MountVolumeOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    ListVolumesOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::{
    LOG_LINES_MAX, LogBuffer, LogLine, LogStream, Orphan, OrphanAction, RuntimeError,
    RuntimeFuture, TaskContext, TaskEndpoint, TaskRuntime, VOLUME_ENTRIES_MAX, VolumesRemoved,
};

#[path = "docker_net.rs"]
mod net;
#[path = "docker_overlay.rs"]
mod overlay_net;
use crate::model::{HealthCheck, NodeId, TaskId};
pub use net::network_name;

/// The namespace of the runtime's own labels. The control API refuses container labels in it,
/// and [`DockerRuntime::create_body`] lets the runtime's win over any that got through.
pub const LABEL_PREFIX: &str = "com.swarm-node.";
pub const LABEL_SERVICE: &str = "com.swarm-node.service.id";
pub const LABEL_TASK: &str = "com.swarm-node.task.id";
pub const LABEL_NODE: &str = "com.swarm-node.node.id";
pub const LABEL_SERVICE_NAME: &str = "com.swarm-node.service.name";

/// Containers one `adopt_or_clean` looks at.
pub const ORPHANS_MAX: usize = 10_000;

#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// The longest a missing image's pull may take before the task is rejected.
    pub pull_timeout_ms: u64,
    /// Deadline of every other engine call (a stop adds its grace period to it).
    pub call_timeout_ms: u64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            pull_timeout_ms: 120_000,
            call_timeout_ms: 30_000,
        }
    }
}

/// Runs tasks as containers. Cheap to clone; the clones share the engine connection.
pub struct DockerRuntime {
    docker: Docker,
    cfg: DockerConfig,
    /// Container names of the tasks this runtime started or adopted.
    names: Mutex<BTreeMap<TaskId, String>>,
    /// Where this node's running tasks are reached, for the routing mesh.
    endpoints: super::Endpoints,
    /// The engine networks each task's container is attached to (the node's, its overlay
    /// networks'), until the task is removed.
    networks: Mutex<BTreeMap<TaskId, Vec<String>>>,
    /// Held from making sure the node's network exists to the container's creation, and while
    /// an unused network is removed, so that the two never cross.
    net_lock: tokio::sync::Mutex<()>,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket), agrees on an API
    /// version the engine speaks, and checks it answers.
    pub async fn connect(cfg: DockerConfig) -> Result<Self, RuntimeError> {
        let fail = |e: DockerError| RuntimeError::Failed(format!("docker engine: {e}"));
        let docker = Docker::connect_with_local_defaults()
            .map_err(fail)?
            .with_timeout(Duration::from_millis(cfg.call_timeout_ms));
        let docker = tokio::time::timeout(
            Duration::from_millis(cfg.call_timeout_ms),
            docker.negotiate_version(),
        )
        .await
        .map_err(|_| RuntimeError::Failed("docker engine: no answer".into()))?
        .map_err(fail)?;
        docker.ping().await.map_err(fail)?;
        Ok(DockerRuntime {
            docker,
            cfg,
            names: Mutex::new(BTreeMap::new()),
            endpoints: super::Endpoints::default(),
            networks: Mutex::new(BTreeMap::new()),
            net_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// This runtime, recording its tasks' endpoints in `endpoints` (shared with the mesh).
    pub fn with_endpoints(mut self, endpoints: super::Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// `<service>.<slot>.<task id>`, as Docker Swarm names task containers.
    pub fn container_name(ctx: &TaskContext) -> String {
        format!("{}.{}.{}", ctx.service_name, ctx.slot, ctx.task_id)
    }

    /// Every container, running or not, whose label `key` has `value`.
    async fn containers_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{key}={value}")],
            )])),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| RuntimeError::Failed(format!("listing containers: {e}")))
    }

    /// The container of a task: remembered, or found by its label (after a restart).
    async fn name(&self, task: TaskId) -> Result<String, RuntimeError> {
        if let Some(n) = self.names.lock().expect("names lock").get(&task) {
            return Ok(n.clone());
        }
        let found = self
            .containers_labelled(LABEL_TASK, &task.to_string())
            .await?;
        found
            .into_iter()
            .find_map(|c| c.id)
            .ok_or(RuntimeError::NoSuchTask(task))
    }

    async fn pull(&self, image: &str) -> Result<(), String> {
        let (repo, tag) = split_tag(image);
        let opts = CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| e.to_string())?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(err);
            }
        }
        Ok(())
    }

    fn create_body(ctx: &TaskContext) -> ContainerCreateBody {
        let spec = &ctx.spec;
        // The user's labels first, so that the runtime's own (which `adopt_or_clean` and
        // `container_of` find containers by) overwrite any with the same key.
        let mut labels: HashMap<String, String> = spec
            .container_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.extend([
            (LABEL_SERVICE.to_string(), ctx.service_id.to_string()),
            (LABEL_TASK.to_string(), ctx.task_id.to_string()),
            (LABEL_NODE.to_string(), ctx.node_id.to_string()),
            (LABEL_SERVICE_NAME.to_string(), ctx.service_name.clone()),
        ]);
        let ms_to_ns = |ms: u64| i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let healthcheck = spec.health.as_ref().map(|h| HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), h.cmd.clone()]),
            // The engine refuses intervals under 1 ms; 0 would mean its 30 s default.
            interval: Some(ms_to_ns(h.interval_ms.max(1))),
            timeout: Some(ms_to_ns(h.timeout_ms.max(1))),
            retries: Some(i64::from(h.retries.max(1))),
            start_period: Some(ms_to_ns(h.start_period_ms)),
            start_interval: None,
        });
        let limit = |v: u64| (v > 0).then(|| i64::try_from(v).unwrap_or(i64::MAX));
        let (network_mode, networking_config) = net::networking(ctx).unzip();
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            // `--entrypoint`: replaces the image's; empty keeps it.
            entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
            working_dir: spec.workdir.clone(),
            hostname: spec.hostname.clone(),
            env: Some(
                ctx.env()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(labels),
            healthcheck,
            // `--user` as Docker takes it; the engine resolves names in the image's
            // /etc/passwd. None: the image's own user.
            user: spec.user.clone(),
            host_config: Some(HostConfig {
                nano_cpus: limit(spec.resources.limits.nano_cpus),
                memory: limit(spec.resources.limits.memory_bytes),
                mounts: (!ctx.files.is_empty() || !spec.mounts.is_empty()).then(|| {
                    let mut all = spec_mounts(ctx);
                    all.extend(file_mounts(ctx));
                    all
                }),
                network_mode,
                dns: ctx.dns.map(|d| vec![d.to_string()]),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        }
    }

    async fn force_remove(&self, name: &str) -> Result<(), DockerError> {
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(name, Some(opts)).await {
            // 404: gone already; 409 (with force): another removal of it is under way.
            Err(e) if matches!(status(&e), Some(404 | 409)) => Ok(()),
            other => other,
        }
    }
}

/// The task's secrets and configs: each file the SecretVault wrote on this host's tmpfs,
/// bind-mounted read-only at its target, as Docker's own secrets are. The engine makes a
/// missing mount point in the container's layer (an empty file), never a copy of the data;
/// the file's owner and mode are the ones the vault gave it.
fn file_mounts(ctx: &TaskContext) -> Vec<Mount> {
    ctx.files
        .iter()
        .map(|f| Mount {
            target: Some(f.target.clone()),
            source: Some(f.host_path.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        })
        .collect()
}

/// The spec's `--mount`s as the engine takes them. A named volume the engine does not have
/// yet is made with the mount's labels (a stack's namespace label, which `stack rm` finds it
/// by); an empty source is an anonymous volume of the container.
fn spec_mounts(ctx: &TaskContext) -> Vec<Mount> {
    use crate::model::MountKind;
    ctx.spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: (!m.source.is_empty()).then(|| m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Volume => MountType::VOLUME,
                MountKind::Bind => MountType::BIND,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            volume_options: (m.kind == MountKind::Volume && !m.volume_labels.is_empty()).then(
                || MountVolumeOptions {
                    labels: Some(
                        m.volume_labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    ..Default::default()
                },
            ),
            tmpfs_options: (m.kind == MountKind::Tmpfs && m.tmpfs_size_bytes > 0).then(|| {
                MountTmpfsOptions {
                    size_bytes: Some(i64::try_from(m.tmpfs_size_bytes).unwrap_or(i64::MAX)),
                    ..Default::default()
                }
            }),
            ..Default::default()
        })
        .collect()
}

/// The HTTP status of an engine error, when it has one.
fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// `repo[:tag]` → (repo, tag), the tag defaulting to `latest` (an empty tag would pull every
/// tag). A `:` before the last `/` is a registry port, not a tag; digests stay whole.
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

impl TaskRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn judges_health(&self) -> bool {
        true
    }

    fn prepare<'a>(&'a self, ctx: &'a TaskContext) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let image = &ctx.spec.image;
            if image.is_empty() {
                return Err(RuntimeError::InvalidSpec("no image given".into()));
            }
            if self.docker.inspect_image(image).await.is_ok() {
                return Ok(());
            }
            let pulled = tokio::time::timeout(
                Duration::from_millis(self.cfg.pull_timeout_ms),
                self.pull(image),
            )
            .await;
            match pulled {
                Ok(Ok(())) if self.docker.inspect_image(image).await.is_ok() => Ok(()),
                Ok(Ok(())) => Err(RuntimeError::NoSuchImage(image.clone())),
                Ok(Err(why)) => {
                    debug!(%image, %why, "pull failed");
                    Err(RuntimeError::NoSuchImage(image.clone()))
                }
                Err(_) => {
                    debug!(%image, "pull timed out");
                    Err(RuntimeError::NoSuchImage(image.clone()))
                }
            }
        })
    }

    fn start<'a>(&'a self, ctx: &'a TaskContext) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let task = ctx.task_id;
            if self.names.lock().expect("names lock").contains_key(&task) {
                return Err(RuntimeError::AlreadyStarted(task));
            }
            let name = Self::container_name(ctx);
            let opts = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            let body = Self::create_body(ctx);
            // Held until the container is on the network, so that no removal of the network
            // (its last other task gone) comes in between.
            let held = self.net_lock.lock().await;
            let connect = self.ensure_networks(ctx).await?;
            let created = match self
                .docker
                .create_container(Some(opts.clone()), body.clone())
                .await
            {
                // A container of this very task from an attempt that did not finish: replace it.
                Err(e) if status(&e) == Some(409) => {
                    self.force_remove(&name)
                        .await
                        .map_err(|e| RuntimeError::Failed(format!("replacing {name}: {e}")))?;
                    self.docker.create_container(Some(opts), body).await
                }
                other => other,
            };
            match created {
                Ok(_) => {}
                Err(e) if status(&e) == Some(404) => {
                    return Err(RuntimeError::NoSuchImage(ctx.spec.image.clone()));
                }
                Err(e) => return Err(RuntimeError::Failed(format!("creating {name}: {e}"))),
            }
            for (network, o) in connect {
                self.connect_overlay(&name, &network, o).await?;
            }
            drop(held);
            self.names
                .lock()
                .expect("names lock")
                .insert(task, name.clone());
            // Recorded before the container runs, so that the node's DNS server listens on
            // its gateway by the time the container asks it anything.
            let endpoint = ctx.endpoint();
            if let Some(endpoint) = endpoint.clone() {
                self.endpoints.set(task, endpoint);
            }
            let started = self.docker.start_container(&name, None).await;
            if let Err(e) = started {
                if endpoint.is_some() {
                    self.endpoints.clear(task);
                }
                return Err(RuntimeError::Failed(format!("starting {name}: {e}")));
            }
            Ok(())
        })
    }

    fn wait(&self, task: TaskId) -> RuntimeFuture<'_, i32> {
        Box::pin(async move {
            let name = self.name(task).await?;
            let opts = WaitContainerOptions {
                condition: "not-running".into(),
            };
            // No deadline: a task runs as long as it runs. The engine connection has none
            // either for this call, since it is a stream.
            let mut stream = self.docker.wait_container(&name, Some(opts));
            match stream.next().await {
                Some(Ok(r)) => Ok(r.status_code as i32),
                // bollard turns a non-zero exit into an error carrying the code.
                Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code as i32),
                Some(Err(e)) => Err(RuntimeError::Failed(format!("waiting for {name}: {e}"))),
                None => Err(RuntimeError::Failed(format!(
                    "waiting for {name}: no answer"
                ))),
            }
        })
    }

    fn stop(&self, task: TaskId, grace_ms: u64) -> RuntimeFuture<'_, ()> {
        Box::pin(async move {
            let name = match self.name(task).await {
                Err(RuntimeError::NoSuchTask(_)) => return Ok(()),
                other => other?,
            };
            // The engine counts the grace period in whole seconds; round up.
            let secs = i32::try_from(grace_ms.div_ceil(1_000)).unwrap_or(i32::MAX);
            let docker = self.docker.clone().with_timeout(Duration::from_millis(
                self.cfg.call_timeout_ms.saturating_add(grace_ms),
            ));
            let opts = StopContainerOptions {
                t: Some(secs),
                signal: None,
            };
            match docker.stop_container(&name, Some(opts)).await {
                Ok(()) => Ok(()),
                // 304: not running; 404: gone. Both mean stopped.
                Err(e) if matches!(status(&e), Some(304 | 404)) => Ok(()),
                Err(e) => Err(RuntimeError::Failed(format!("stopping {name}: {e}"))),
            }
        })
    }

    fn endpoints(&self) -> Option<super::Endpoints> {
        Some(self.endpoints.clone())
    }

    fn kill(&self, task: TaskId) -> RuntimeFuture<'_, ()> {
        Box::pin(async move {
            let name = match self.name(task).await {
                Err(RuntimeError::NoSuchTask(_)) => return Ok(()),
                other => other?,
            };
            let opts = KillContainerOptions {
                signal: "KILL".into(),
            };
            match self.docker.kill_container(&name, Some(opts)).await {
                Ok(()) => Ok(()),
                // 404: gone; 409: not running.
                Err(e) if matches!(status(&e), Some(404 | 409)) => Ok(()),
                Err(e) => Err(RuntimeError::Failed(format!("killing {name}: {e}"))),
            }
        })
    }

    fn health<'a>(
        &'a self,
        ctx: &'a TaskContext,
        _check: &'a HealthCheck,
    ) -> RuntimeFuture<'a, Option<bool>> {
        Box::pin(async move {
            let name = self.name(ctx.task_id).await?;
            let info = self
                .docker
                .inspect_container(&name, None)
                .await
                .map_err(|e| RuntimeError::Failed(format!("inspecting {name}: {e}")))?;
            let status = info.state.and_then(|s| s.health).and_then(|h| h.status);
            Ok(match status {
                Some(HealthStatusEnum::HEALTHY) => Some(true),
                Some(HealthStatusEnum::UNHEALTHY) => Some(false),
                _ => None,
            })
        })
    }

    fn logs(&self, task: TaskId, tail: usize) -> RuntimeFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            let name = self.name(task).await?;
            let tail = tail.min(LOG_LINES_MAX);
            let opts = LogsOptions {
                stdout: true,
                stderr: true,
                timestamps: true,
                tail: tail.to_string(),
                ..Default::default()
            };
            let mut buf = LogBuffer::new();
            let mut stream = self.docker.logs(&name, Some(opts));
            while let Some(item) = stream.next().await {
                let (stream, bytes) = match item {
                    Ok(bollard::container::LogOutput::StdOut { message }) => {
                        (LogStream::Stdout, message)
                    }
                    Ok(bollard::container::LogOutput::StdErr { message }) => {
                        (LogStream::Stderr, message)
                    }
                    Ok(_) => continue,
                    Err(e) if status(&e) == Some(404) => {
                        return Err(RuntimeError::NoSuchTask(task));
                    }
                    Err(e) => return Err(RuntimeError::Failed(format!("logs of {name}: {e}"))),
                };
                // With timestamps on, every line starts with its RFC 3339 time and a space.
                for line in String::from_utf8_lossy(&bytes).lines() {
                    let (ts_ms, text) = match line.split_once(' ') {
                        Some((ts, text)) => match rfc3339_ms(ts) {
                            Some(ms) => (ms, text),
                            None => (0, line),
                        },
                        None => (rfc3339_ms(line).unwrap_or(0), ""),
                    };
                    buf.push(ts_ms, stream, text);
                }
            }
            Ok(buf.tail(tail))
        })
    }

    fn remove(&self, task: TaskId) -> RuntimeFuture<'_, ()> {
        Box::pin(async move {
            // The mesh stops choosing it before it goes.
            self.endpoints.clear(task);
            let network = self.networks.lock().expect("networks lock").remove(&task);
            let name = match self.name(task).await {
                Err(RuntimeError::NoSuchTask(_)) => None,
                other => Some(other?),
            };
            if let Some(name) = name {
                self.force_remove(&name)
                    .await
                    .map_err(|e| RuntimeError::Failed(format!("removing {name}: {e}")))?;
                self.names.lock().expect("names lock").remove(&task);
            }
            let _held = self.net_lock.lock().await;
            for network in network.into_iter().flatten() {
                self.release_network(&network).await;
            }
            Ok(())
        })
    }

    fn remove_volumes<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RuntimeFuture<'a, VolumesRemoved> {
        Box::pin(async move {
            let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
            let listed = self
                .docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: Some(filters),
                }))
                .await
                .map_err(|e| RuntimeError::Failed(format!("listing volumes: {e}")))?;
            let mut names: Vec<String> = listed
                .volumes
                .unwrap_or_default()
                .into_iter()
                // The engine filtered already; checked again, as removing is for good.
                .filter(|v| v.labels.get(label).map(String::as_str) == Some(value))
                .map(|v| v.name)
                .take(VOLUME_ENTRIES_MAX)
                .collect();
            names.sort();
            let mut out = VolumesRemoved::default();
            for name in names {
                match self
                    .docker
                    .remove_volume(
                        &name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                {
                    Ok(()) => out.removed.push(name),
                    // 404: gone already.
                    Err(e) if status(&e) == Some(404) => {}
                    // 409: a container uses it.
                    Err(e) if status(&e) == Some(409) => out.in_use.push(name),
                    Err(e) => {
                        return Err(RuntimeError::Failed(format!(
                            "removing the volume {name}: {e} (removed before it: {:?})",
                            out.removed
                        )));
                    }
                }
            }
            if !out.removed.is_empty() {
                info!(volumes = ?out.removed, "removed volumes");
            }
            Ok(out)
        })
    }

    fn adopt_or_clean<'a>(
        &'a self,
        node: NodeId,
        known: &'a BTreeSet<TaskId>,
    ) -> RuntimeFuture<'a, Vec<Orphan>> {
        Box::pin(async move {
            let found = self
                .containers_labelled(LABEL_NODE, &node.to_string())
                .await?;
            let mut out = Vec::new();
            for c in found.into_iter().take(ORPHANS_MAX) {
                let Some(id) = c.id.clone() else { continue };
                let task: Option<TaskId> = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_TASK))
                    .and_then(|t| t.parse().ok());
                let action = match task {
                    Some(t) if known.contains(&t) => {
                        // Remember it so that wait, stop and logs reach it by task ID, and the
                        // mesh where it is.
                        self.names.lock().expect("names lock").insert(t, id.clone());
                        self.adopt_endpoint(node, t, &c);
                        OrphanAction::Kept
                    }
                    _ => {
                        if let Err(e) = self.force_remove(&id).await {
                            warn!(container = %id, error = %e, "cannot remove a leftover container");
                            continue;
                        }
                        info!(container = %id, task = ?task, "removed a leftover container");
                        OrphanAction::Removed
                    }
                };
                out.push(Orphan {
                    task_id: task,
                    what: id,
                    action,
                });
            }
            // Networks the removed containers were the last on.
            self.clean_networks(node).await;
            out.sort_by(|a, b| (a.task_id, &a.what).cmp(&(b.task_id, &b.what)));
            Ok(out)
        })
    }
}

/// `2024-05-07T21:09:36.123456789Z` → milliseconds since the Unix epoch. The engine writes log
/// timestamps in UTC with a `Z`; anything else is refused.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':');
    let h: u64 = t.next()?.parse().ok()?;
    let mi: u64 = t.next()?.parse().ok()?;
    let sec: u64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let ms: u64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1_000 + ms)
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
