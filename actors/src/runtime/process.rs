//! The process runtime: a task is an OS process. IMAGE is the program (found on PATH), the
//! spec's args its arguments; the node's environment plus the spec's and the `SWARM_*` entries
//! its environment. Needs nothing installed, so it is the embedded default.
//!
//! How a task is kept from outliving its node:
//! - Each task runs behind a *shim*: a forked copy of the node (named `swarm-task-shim`) that
//!   leads the task's process group, forks the task, waits for it and exits as it did. Its
//!   parent-death signal fires when the *thread* that forked it exits (Linux's rule, not the
//!   process's), so every spawn goes through one dedicated spawner thread that lives exactly as
//!   long as the [`ProcessRuntime`]. When it fires, the shim SIGKILLs its whole group: the task
//!   and everything the task forked die with the node, however the node ends (see
//!   [`supervise`]). Dropping the runtime does the same.
//! - Every signal the runtime sends goes to the group, so what the task forks goes with it.
//! - Each task has a pid file in the directory the caller gives (`<data-dir>/tasks/`); a
//!   restarted node calls [`TaskRuntime::adopt_or_clean`], which kills the groups it finds there
//!   (checking the process start time first, so a reused PID is left alone).
//!
//! A task's secrets and configs ([`TaskContext::files`], on tmpfs): as root, the task runs in a
//! private mount namespace that shows each file at its target; without root, it reads them in
//! its directory, which `SWARM_SECRETS_DIR` and `SWARM_CONFIGS_DIR` name (see
//! [`mounts`](super::mounts)). Health checks see them as the task does.
//!
//! A task's network ([`netns`](super::netns)): as root, with the CNI plugins installed, a task
//! the leader gave an address runs in a network namespace of its own on the node's bridge (so
//! replicas of one node can all listen on port 80); its health checks join it too. Otherwise it
//! shares the host's network, and each target port it publishes is remapped to a free port
//! (`PORT`, `SWARM_PORT_<target>`). Either way the runtime records where the task is reached in
//! the node's [`Endpoints`](super::Endpoints) for the routing mesh, and releases the namespace
//! when the task's process exits, before the exit is reported. A task with neither an address
//! nor published ports runs as it always did. A task on overlay networks has a namespace even
//! without an ingress address, with one interface per network; without root or the plugins
//! it is not attached to them (a warning says so).
//!
//! Who a task runs as: the spec's `--user` ([`user`](super::user)), set on the command with
//! std's `CommandExt::uid`/`gid`, which also clears the supplementary groups (for a task with
//! files as root, the namespace set-up sets them itself, after its mounts, in the same order). The shim runs as
//! that user too (std changes the ids before the shim's code runs); having changed its ids, the
//! kernel marks it not dumpable, so the task's user cannot read the copy of the node's memory
//! the shim was forked with. Without `--user` the task runs as the node's user: root when the
//! node runs as root, able to read the data dir (docs/operations.md, "What a process task can
//! reach").

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::mounts::Placeholders;
use super::netns::{self, Nets, TaskNet, enter_namespaces, network_isolation, release_network};
use super::user::{Credentials, resolve_on_host};
use super::volumes::{Volumes, VolumesRemoved};
use super::{
    LOG_LINES_MAX, LogBuffer, LogLine, LogStream, Orphan, OrphanAction, RuntimeError,
    RuntimeFuture, TaskContext, TaskEndpoint, TaskRuntime, exit_code,
};
use crate::model::{HealthCheck, NodeId, TaskId};

/// How long to wait for a SIGKILLed group to be reaped before giving up on it.
pub const KILL_WAIT_MS: u64 = 5_000;

/// Bytes read from a task's pipe at once.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// Pid files one `adopt_or_clean` looks at; a directory with more is not ours to sweep.
pub const PID_FILES_MAX: usize = 100_000;

struct SpawnJob {
    cmd: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

struct Proc {
    /// The child's PID, which is also its process group's ID.
    pid: i32,
    exit: watch::Receiver<Option<i32>>,
    logs: Arc<Mutex<LogBuffer>>,
    pid_file: PathBuf,
}

struct Inner {
    tasks_dir: PathBuf,
    spawner: std::sync::mpsc::Sender<SpawnJob>,
    tasks: Mutex<BTreeMap<TaskId, Arc<Proc>>>,
    /// Mount points made on the host for targets that did not exist (see `mounts`).
    placeholders: Placeholders,
    /// The node's named volumes, `<data-dir>/volumes` (see `volumes`).
    volumes: Volumes,
    /// The network namespaces of tasks that have one (see `netns`), until their process exits.
    /// Shared with the exit watchers, which must not hold `Inner` (its spawner would outlive
    /// the runtime, and the tasks with it).
    nets: Nets,
}

/// Runs tasks as OS processes. Cheap to clone; the clones share the tasks.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
    /// Where this node's running tasks are reached, for the routing mesh.
    endpoints: super::Endpoints,
    /// The CNI plugins' directory when tasks with an address get a network namespace of their
    /// own (root, `ip` and the plugins found); `None`: tasks share the host's network.
    cni: Option<PathBuf>,
}

impl ProcessRuntime {
    /// A runtime keeping pid files in `tasks_dir` (created if missing), and named volumes in
    /// `volumes` beside it (`<data-dir>/tasks` → `<data-dir>/volumes`, made on first use).
    /// Must be called inside a tokio runtime: its spawner thread spawns children into it.
    pub fn new(tasks_dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&tasks_dir)?;
        let volumes = tasks_dir
            .parent()
            .unwrap_or(&tasks_dir)
            .join(VOLUMES_DIR_NAME);
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("task-spawner".into())
            .spawn(move || {
                // Children need the tokio runtime for their pipes and exit notification.
                let _guard = handle.enter();
                for mut job in rx {
                    // The asker may have given up; the child is then dropped, and it dies with
                    // this thread at the latest.
                    let _ = job.reply.send(job.cmd.spawn());
                }
            })?;
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                placeholders: Placeholders::new(&tasks_dir),
                volumes: Volumes::new(volumes),
                tasks_dir,
                spawner: tx,
                tasks: Mutex::new(BTreeMap::new()),
                nets: Arc::new(Mutex::new(BTreeMap::new())),
            }),
            endpoints: super::Endpoints::default(),
            cni: network_isolation(),
        })
    }

    /// This runtime, running every task on the host's network (with its target ports
    /// remapped), as it does without root or without the CNI plugins.
    pub fn share_host_network(mut self) -> Self {
        self.cni = None;
        self
    }

    /// Whether tasks with an address run in a network namespace of their own.
    pub fn isolates_networks(&self) -> bool {
        self.cni.is_some()
    }

    /// This runtime, recording its tasks' endpoints in `endpoints` (shared with the mesh).
    pub fn with_endpoints(mut self, endpoints: super::Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The task's network: its own namespace with its address (as root, with the plugins), or
    /// the host's with its target ports remapped; the endpoint the mesh reaches it at and the
    /// variables that tell it its ports. A task with neither an address nor ports: nothing.
    async fn network(
        &self,
        ctx: &TaskContext,
    ) -> Result<(Option<TaskNet>, Option<TaskEndpoint>, Vec<(String, String)>), RuntimeError> {
        if let (Some(plugins), Some(endpoint)) = (&self.cni, ctx.endpoint()) {
            let net = netns::attach(plugins, &self.inner.tasks_dir, ctx).await?;
            return Ok((Some(net), Some(endpoint), Vec::new()));
        }
        if !ctx.overlays.is_empty() {
            warn!(task = %ctx.task_id, "the task is on overlay networks, but process tasks share the host's network here (no root, no CNI plugins or no `ip`): it is not attached to them");
        }
        if ctx.network.is_none() && ctx.ports.is_empty() {
            return Ok((None, None, Vec::new()));
        }
        let picked = netns::host_ports(&ctx.ports)?;
        info!(task = %ctx.task_id, ports = ?picked, "the task shares the host's network; target ports remapped (target → port)");
        let env = netns::port_env(&ctx.ports, &picked);
        let endpoint = TaskEndpoint {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            ports: picked,
            host_network: true,
            overlay: BTreeMap::new(),
        };
        Ok((None, Some(endpoint), env))
    }

    /// Spawns the task's process (in `net` when given) and starts watching it.
    async fn launch(
        &self,
        ctx: &TaskContext,
        user: Option<Credentials>,
        net: Option<&TaskNet>,
        port_env: Vec<(String, String)>,
    ) -> Result<(), RuntimeError> {
        let task = ctx.task_id;
        let (program, before) = program_of(ctx);
        let mut cmd = Command::new(program);
        cmd.args(before)
            .args(&ctx.spec.args)
            .envs(ctx.env())
            .envs(ctx.spec.hostname.as_ref().map(|h| ("HOSTNAME", h)))
            .envs(port_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Before the shim's set-up: the namespaces (as root) come first.
        let user = enter_namespaces(
            &mut cmd,
            ctx,
            user,
            net,
            Some(&self.inner.placeholders),
            &self.inner.volumes,
        )?;

        let mut child = self.spawn(cmd, user).await.map_err(|e| match e {
            RuntimeError::Failed(m) => RuntimeError::Failed(format!("starting {program}: {m}")),
            e => e,
        })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| RuntimeError::Failed("the child has no PID".into()))?;
        let pid_file = self.pid_file(task);
        let record = format!(
            "{pid} {} {} {task}\n",
            start_time(pid).unwrap_or(0),
            ctx.node_id
        );
        if let Err(e) = std::fs::write(&pid_file, record) {
            // Without a pid file a crash of this node could leave the task behind; refuse.
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await; // reaping only: we know it was killed
            return Err(RuntimeError::Failed(format!(
                "writing {}: {e}",
                pid_file.display()
            )));
        }
        let logs = Arc::new(Mutex::new(LogBuffer::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump_logs(out, LogStream::Stdout, logs.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump_logs(err, LogStream::Stderr, logs.clone()));
        }
        let (tx, rx) = watch::channel(None);
        let file = pid_file.clone();
        let (nets, cni, endpoints) = (
            self.inner.nets.clone(),
            self.cni.clone(),
            self.endpoints.clone(),
        );
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(e) => {
                    warn!(%task, error = %e, "cannot wait for the task's process");
                    -1
                }
            };
            // What the task forked dies with it, as in a container. The group cannot have
            // been reused while any member lives, and an empty group only yields ESRCH.
            signal_group(pid, libc::SIGKILL);
            let _ = std::fs::remove_file(&file); // gone already is fine
            // Before the exit is told: once the leader hears of it, it may give the address
            // to another task of this node, which must not find it still on the bridge.
            release_network(&nets, cni.as_deref(), &endpoints, task).await;
            debug!(%task, code, "task process exited");
            let _ = tx.send(Some(code)); // nobody waiting is fine
        });
        self.inner.tasks.lock().expect("tasks lock").insert(
            task,
            Arc::new(Proc {
                pid,
                exit: rx,
                logs,
                pid_file,
            }),
        );
        Ok(())
    }

    fn pid_file(&self, task: TaskId) -> PathBuf {
        self.inner.tasks_dir.join(format!("{task}.pid"))
    }

    fn get(&self, task: TaskId) -> Option<Arc<Proc>> {
        self.inner
            .tasks
            .lock()
            .expect("tasks lock")
            .get(&task)
            .cloned()
    }

    /// Spawns on the spawner thread, in a process group of its own, behind a shim that takes the
    /// group down with the node ([`supervise`]), as `user` when given.
    async fn spawn(
        &self,
        mut cmd: Command,
        user: Option<Credentials>,
    ) -> Result<Child, RuntimeError> {
        if let Some(c) = user {
            // Applied in the child before the shim's code: groups cleared, gid, then uid.
            cmd.uid(c.uid).gid(c.gid);
        }
        cmd.process_group(0);
        supervise(cmd.as_std_mut());
        let (tx, rx) = oneshot::channel();
        self.inner
            .spawner
            .send(SpawnJob { cmd, reply: tx })
            .map_err(|_| RuntimeError::Failed("the spawner thread is gone".into()))?;
        rx.await
            .map_err(|_| RuntimeError::Failed("the spawner thread is gone".into()))?
            .map_err(|e| RuntimeError::Failed(e.to_string()))
    }
}

/// The ids the task runs as: its spec's `--user` resolved on this host, or `None` (the node's
/// own user).
fn task_user(ctx: &TaskContext) -> Result<Option<Credentials>, RuntimeError> {
    ctx.spec
        .user
        .as_deref()
        .map(resolve_on_host)
        .transpose()
        .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))
}

/// Where named volumes live, beside the tasks directory.
pub const VOLUMES_DIR_NAME: &str = "volumes";

/// What a task runs: the first word of its entrypoint, or IMAGE; and the entrypoint's other
/// words, which come before the spec's args.
fn program_of(ctx: &TaskContext) -> (&str, &[String]) {
    match ctx.spec.entrypoint.split_first() {
        Some((first, rest)) => (first, rest),
        None => (&ctx.spec.image, &[]),
    }
}

/// Finds a program as `execvp` would: a name with a slash as it is, others along PATH.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return runnable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| runnable(p))
}

impl TaskRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn judges_health(&self) -> bool {
        false
    }

    fn prepare<'a>(&'a self, ctx: &'a TaskContext) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let (program, _) = program_of(ctx);
            if program.is_empty() {
                return Err(RuntimeError::InvalidSpec("no program given".into()));
            }
            task_user(ctx)?;
            match find_program(program) {
                Some(_) => Ok(()),
                None => Err(RuntimeError::NoSuchImage(program.to_string())),
            }
        })
    }

    fn start<'a>(&'a self, ctx: &'a TaskContext) -> RuntimeFuture<'a, ()> {
        Box::pin(async move {
            let task = ctx.task_id;
            if self.get(task).is_some() {
                return Err(RuntimeError::AlreadyStarted(task));
            }
            let user = task_user(ctx)?;
            let (net, endpoint, env) = self.network(ctx).await?;
            // Recorded before the process runs, so that its exit (however soon) releases them.
            if let Some(net) = &net {
                self.inner
                    .nets
                    .lock()
                    .expect("nets lock")
                    .insert(task, net.clone());
            }
            if let Some(endpoint) = endpoint {
                self.endpoints.set(task, endpoint);
            }
            let launched = self.launch(ctx, user, net.as_ref(), env).await;
            if launched.is_err() {
                release_network(&self.inner.nets, self.cni.as_deref(), &self.endpoints, task).await;
                // Nothing runs that could use them.
                self.inner.volumes.release(task);
                self.inner.placeholders.release(task);
            }
            launched
        })
    }

    fn wait(&self, task: TaskId) -> RuntimeFuture<'_, i32> {
        Box::pin(async move {
            let proc = self.get(task).ok_or(RuntimeError::NoSuchTask(task))?;
            let mut rx = proc.exit.clone();
            let code = rx
                .wait_for(|c| c.is_some())
                .await
                .map_err(|_| RuntimeError::Failed("the exit watcher is gone".into()))?;
            Ok(code.expect("waited for Some"))
        })
    }

    fn stop(&self, task: TaskId, grace_ms: u64) -> RuntimeFuture<'_, ()> {
        Box::pin(async move {
            let Some(proc) = self.get(task) else {
                return Ok(());
            };
            let mut rx = proc.exit.clone();
            if rx.borrow().is_some() {
                return Ok(());
            }
            signal_group(proc.pid, libc::SIGTERM);
            let exited = tokio::time::timeout(
                Duration::from_millis(grace_ms),
                rx.wait_for(|c| c.is_some()),
            )
            .await
            .is_ok();
            if !exited {
                debug!(%task, grace_ms, "grace period over; killing");
                signal_group(proc.pid, libc::SIGKILL);
                // Bounded: a process in uninterruptible sleep may take its time to die.
                let _ = tokio::time::timeout(
                    Duration::from_millis(KILL_WAIT_MS),
                    rx.wait_for(|c| c.is_some()),
                )
                .await;
            }
            Ok(())
        })
    }

    fn endpoints(&self) -> Option<super::Endpoints> {
        Some(self.endpoints.clone())
    }

    fn kill(&self, task: TaskId) -> RuntimeFuture<'_, ()> {
        Box::pin(async move {
            if let Some(proc) = self.get(task)
                && proc.exit.borrow().is_none()
            {
                signal_group(proc.pid, libc::SIGKILL);
            }
            Ok(())
        })
    }

    fn health<'a>(
        &'a self,
        ctx: &'a TaskContext,
        check: &'a HealthCheck,
    ) -> RuntimeFuture<'a, Option<bool>> {
        Box::pin(async move {
            // The check is the service's code too: it runs as the task does.
            let user = task_user(ctx)?;
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(&check.cmd)
                .envs(ctx.env())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            // The check sees the task's files and network as the task does.
            let net = self
                .inner
                .nets
                .lock()
                .expect("nets lock")
                .get(&ctx.task_id)
                .cloned();
            let user =
                enter_namespaces(&mut cmd, ctx, user, net.as_ref(), None, &self.inner.volumes)?;
            let mut child = self.spawn(cmd, user).await?;
            let pid = child.id().and_then(|p| i32::try_from(p).ok());
            match tokio::time::timeout(Duration::from_millis(check.timeout_ms), child.wait()).await
            {
                Ok(Ok(status)) => Ok(Some(status.success())),
                Ok(Err(e)) => Err(RuntimeError::Failed(format!("health check: {e}"))),
                Err(_) => {
                    // Timed out: the check's whole group goes, not just its shell.
                    if let Some(pid) = pid {
                        signal_group(pid, libc::SIGKILL);
                    }
                    Ok(Some(false))
                }
            }
        })
    }

    fn logs(&self, task: TaskId, tail: usize) -> RuntimeFuture<'_, Vec<LogLine>> {
        Box::pin(async move {
            let proc = self.get(task).ok_or(RuntimeError::NoSuchTask(task))?;
            let logs = proc.logs.lock().expect("log lock");
            Ok(logs.tail(tail.min(LOG_LINES_MAX)))
        })
    }

    fn remove(&self, task: TaskId) -> RuntimeFuture<'_, ()> {
        Box::pin(async move {
            let proc = self.inner.tasks.lock().expect("tasks lock").remove(&task);
            // The mesh stops choosing it before it goes.
            self.endpoints.clear(task);
            // The mount over it is in the task's own namespace: the host's placeholder can go
            // as soon as no task of this node needs it.
            self.inner.placeholders.release(task);
            if let Some(proc) = proc {
                let mut rx = proc.exit.clone();
                if rx.borrow().is_none() {
                    signal_group(proc.pid, libc::SIGKILL);
                    let _ = tokio::time::timeout(
                        Duration::from_millis(KILL_WAIT_MS),
                        rx.wait_for(|c| c.is_some()),
                    )
                    .await;
                }
                let _ = std::fs::remove_file(&proc.pid_file); // the exit watcher may have
            }
            // Its process is gone: its volumes may be removed now.
            self.inner.volumes.release(task);
            // Its exit released them already, unless it never ran.
            release_network(&self.inner.nets, self.cni.as_deref(), &self.endpoints, task).await;
            Ok(())
        })
    }

    fn remove_volumes<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RuntimeFuture<'a, VolumesRemoved> {
        Box::pin(async move {
            let done = self.inner.volumes.remove_labelled(label, value)?;
            if !done.removed.is_empty() {
                info!(volumes = ?done.removed, dir = %self.inner.volumes.dir().display(), "removed volumes");
            }
            Ok(done)
        })
    }

    fn adopt_or_clean<'a>(
        &'a self,
        node: NodeId,
        _known: &'a BTreeSet<TaskId>,
    ) -> RuntimeFuture<'a, Vec<Orphan>> {
        // A process from an earlier run is not our child: we could neither wait for it nor read
        // its output, so it cannot be adopted. Every leftover is killed, known or not; the node
        // reports those tasks as ended and the orchestrator replaces them.
        Box::pin(async move {
            self.inner.placeholders.clean_leftovers();
            let dir = &self.inner.tasks_dir;
            let entries = std::fs::read_dir(dir)
                .map_err(|e| RuntimeError::Failed(format!("reading {}: {e}", dir.display())))?;
            let mut found = Vec::new();
            for entry in entries.take(PID_FILES_MAX).flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let Some(rec) = PidRecord::parse(&text) else {
                    warn!(file = %path.display(), "unreadable pid file; removing it");
                    let _ = std::fs::remove_file(&path); // it tells us nothing either way
                    continue;
                };
                if rec.node != node || self.get(rec.task).is_some() {
                    continue; // another node's, or one of ours from this run
                }
                let action = match start_time(rec.pid) {
                    // The PID now names another process: leave it alone.
                    Some(t) if t != rec.start_time => OrphanAction::AlreadyGone,
                    Some(_) => {
                        signal_group(rec.pid, libc::SIGKILL);
                        OrphanAction::Removed
                    }
                    // The leader is gone, but members of its group may live on; the group's ID
                    // cannot be reused while they do, so signalling it reaches only them.
                    None => {
                        if signal_group(rec.pid, libc::SIGKILL) {
                            OrphanAction::Removed
                        } else {
                            OrphanAction::AlreadyGone
                        }
                    }
                };
                let _ = std::fs::remove_file(&path); // handled; a second sweep would find nothing
                found.push(Orphan {
                    task_id: Some(rec.task),
                    what: format!("pid {}", rec.pid),
                    action,
                });
            }
            // Namespaces of tasks of an earlier run (their processes are gone by now).
            let ours: BTreeSet<TaskId> = self
                .inner
                .nets
                .lock()
                .expect("nets lock")
                .keys()
                .copied()
                .collect();
            let nets = netns::clean_leftovers(self.cni.as_deref(), dir, &ours).await;
            if !nets.is_empty() {
                info!(tasks = ?nets, "removed the network namespaces of an earlier run's tasks");
            }
            found.sort_by_key(|o| o.task_id);
            Ok(found)
        })
    }
}

/// One pid file: `<pid> <start time in clock ticks> <node id> <task id>`.
struct PidRecord {
    pid: i32,
    start_time: u64,
    node: NodeId,
    task: TaskId,
}

impl PidRecord {
    fn parse(text: &str) -> Option<PidRecord> {
        let mut it = text.split_whitespace();
        let pid: i32 = it.next()?.parse().ok()?;
        let start_time = it.next()?.parse().ok()?;
        let node = it.next()?.parse().ok()?;
        let task = it.next()?.parse().ok()?;
        (pid > 1).then_some(PidRecord {
            pid,
            start_time,
            node,
            task,
        })
    }
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), or `None` when there is no such
/// process. Together with the PID it names one process for the life of the machine.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

async fn pump_logs(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: LogStream,
    logs: Arc<Mutex<LogBuffer>>,
) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => logs.lock().expect("log lock").push_bytes(
                crate::clock::unix_ms(),
                stream,
                &buf[..n],
            ),
        }
    }
    logs.lock()
        .expect("log lock")
        .close(crate::clock::unix_ms(), stream);
}

/// The signal the kernel sends a task's shim when the node's spawner thread ends.
const PARENT_DIED: libc::c_int = libc::SIGUSR1;

/// Exits with the status a shell would give for the child's end: its exit code, or 128 plus
/// the signal that killed it (as [`exit_code`](super::exit_code) reads it back).
#[allow(unsafe_code)]
fn shim_exit(status: libc::c_int) -> ! {
    let code = if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    };
    // SAFETY: _exit is async-signal-safe and ends the process without running anything else.
    unsafe { libc::_exit(code) }
}

/// Puts a shim between the node and every task, so that a task and everything it forks die
/// with the node, however the node ends (SIGKILL included).
///
/// The process `spawn` forks (the *shim*, already leader of its own process group) forks once
/// more before `exec`; the grandchild goes on to `exec` the task, the shim stays behind:
/// - Its parent-death signal ([`PARENT_DIED`]) fires when the node's spawner thread ends; it
///   then SIGKILLs its whole group: the task and all it forked. A parent-death signal alone
///   (the task's own) would reach the task but not its children.
/// - It blocks the signals a stop sends the group (SIGTERM and the like) and waits for the
///   task, then exits as the task did, so the runtime's exit codes and grace periods are the
///   task's own.
/// - It closes every descriptor it inherited, so the task's pipes end when the task's do.
/// - The task gets SIGKILL as its parent-death signal, should the shim ever die first.
///
/// `unsafe` because the closure runs in the forked child of a threaded process, where only
/// async-signal-safe calls are allowed. It calls `sigprocmask`, `prctl`, `getpid`, `getppid`,
/// `_Fork` (the async-signal-safe `fork`, glibc 2.34+), `close_range`, `sigwaitinfo`,
/// `waitpid`, `kill` and `_exit`, and allocates nothing.
#[allow(unsafe_code)]
fn supervise(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    unsafe extern "C" {
        fn _Fork() -> libc::pid_t;
    }
    let node = std::process::id() as libc::pid_t;
    // SAFETY: see above: every call is async-signal-safe; the closure touches no shared state.
    unsafe {
        cmd.pre_exec(move || {
            let mut watched: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut watched);
            for sig in [
                PARENT_DIED,
                libc::SIGCHLD,
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGQUIT,
            ] {
                libc::sigaddset(&mut watched, sig);
            }
            let mut before: libc::sigset_t = std::mem::zeroed();
            if libc::sigprocmask(libc::SIG_BLOCK, &watched, &mut before) != 0
                || libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    PARENT_DIED as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The node may have gone before prctl took effect; then nobody would tell us.
            if libc::getppid() != node {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            let shim = libc::getpid();
            let task = _Fork();
            if task < 0 {
                return Err(io::Error::last_os_error());
            }
            if task == 0 {
                // The task: back to the signal mask it was given, dies if the shim does.
                if libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) != 0
                    || libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != shim {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                return Ok(()); // on to exec
            }
            // The shim. "swarm-task-shim" fits the 15 bytes a process name may have.
            libc::prctl(libc::PR_SET_NAME, c"swarm-task-shim".as_ptr(), 0, 0, 0);
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..1024 {
                    libc::close(fd);
                }
            }
            loop {
                let sig = libc::sigwaitinfo(&watched, std::ptr::null_mut());
                if sig == PARENT_DIED || libc::getppid() != node {
                    // The node is gone: so is the group (this shim with it).
                    libc::kill(0, libc::SIGKILL);
                    libc::_exit(128 + libc::SIGKILL);
                }
                if sig == libc::SIGCHLD {
                    let mut status = 0;
                    if libc::waitpid(task, &mut status, libc::WNOHANG) == task {
                        shim_exit(status);
                    }
                }
                // A stop's SIGTERM reached the task too (same group): wait for it to act.
            }
        });
    }
}

/// Sends `sig` to the process group `pgid`. Returns whether any process got it.
///
/// `unsafe` only because it is a foreign function: kill(2) takes two integers and touches no
/// memory of ours. The assertion keeps it from ever signalling init, every process (-1), or our
/// own group (0).
#[allow(unsafe_code)]
fn signal_group(pgid: i32, sig: libc::c_int) -> bool {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: plain system call with integer arguments.
    unsafe { libc::kill(-pgid, sig) == 0 }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "process_net_tests.rs"]
pub(super) mod net_tests;
