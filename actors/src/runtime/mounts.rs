//! How a process task sees its secrets and configs (the files the SecretVault wrote on tmpfs).
//!
//! As root, the task (and its shim, and its health checks) gets a private mount namespace in
//! which each target shows its file, read-only, as in a container:
//! - mount propagation is made private first, so nothing below reaches the host;
//! - targets under `/run/secrets` (every secret's default): a small tmpfs is mounted over
//!   `/run/secrets` inside the namespace, the subdirectories and an empty placeholder per file
//!   are made *in that tmpfs*, and each file is bind-mounted over its placeholder. The host
//!   keeps only the empty directory `/run/secrets` as a mount point (made when missing; `/run`
//!   is a tmpfs, so it goes at reboot), never a file;
//! - any other target is bind-mounted over a regular file at that path: one that exists on
//!   the host is covered inside the namespace only (the host keeps seeing its own); for one
//!   that does not, whose directory exists (a config's default `/<name>`), the runtime makes an
//!   empty placeholder file on the host as the mount point, shared by the node's tasks with
//!   that target and removed when the last of them is removed ([`Placeholders`]). The
//!   placeholders are recorded in the node's tasks directory, so a node killed before it
//!   could remove them removes them at its next start. A target whose directory does not
//!   exist is refused with a clear error. (Several nodes on one host sharing such a target
//!   would remove each other's placeholder; one node per host is the deployment.)
//!
//! A task with a DNS server of its own (it is on overlay networks, or has an ingress address)
//! gets the same namespace for its resolver: its `resolv.conf`, written with its network
//! namespace, is bound over `/etc/resolv.conf`.
//!
//! The namespace and its mounts end with the task's last process; nothing is left to unmount.
//! The ids of a task with `--user` are set after the mounts (mounting needs root), in the same
//! order as std does (supplementary groups cleared, gid, uid).
//!
//! Without root there is no namespace: the task reads the files in its own directory (0700,
//! the node's user, which is also the task's) and learns where from two variables,
//! `SWARM_SECRETS_DIR` and `SWARM_CONFIGS_DIR` (set when the task has files of that kind), in
//! which each file is named by its target's file name.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::volumes::Volumes;
use super::{Credentials, RuntimeError, TaskContext, TaskFile};
use crate::model::{FileKind, MOUNTS_MAX, Mount, MountKind, SECRETS_DIR, TaskId};

/// Size of the tmpfs over `/run/secrets` inside a task's namespace: it holds only empty
/// placeholders and directories (the data stays in the vault's files, bind-mounted).
const SECRETS_TMPFS_OPTIONS: &str = "mode=0755,size=64k,nr_inodes=1024";
/// The resolver configuration a task with a DNS server sees its own copy of.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Whether this process runs as root (effective uid 0).
#[allow(unsafe_code)]
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) takes nothing and always succeeds.
    unsafe { libc::geteuid() == 0 }
}

/// One thing done in the task's new namespace, its paths prepared beforehand (the child of a
/// fork may not allocate).
enum Step {
    /// A UTS namespace of the task's own, with this host name (`--hostname`).
    Hostname(CString),
    /// A mount namespace of the task's own, every mount in it made private, so the mounts
    /// below stay in the namespace.
    Private,
    Tmpfs(CString),
    Mkdir(CString),
    Placeholder(CString),
    /// Binds `src` at `dst`, then makes that mount read-only.
    Bind {
        src: CString,
        dst: CString,
    },
    /// A mount of the spec's (`--mount`): `src` (a volume's directory or a host path) bound
    /// at `dst`, recursively, read-only when asked.
    MountBind {
        src: CString,
        dst: CString,
        read_only: bool,
    },
    /// A tmpfs of the spec's at `dst`, with its options (`mode=1777,size=…`).
    MountTmpfs {
        dst: CString,
        options: CString,
        read_only: bool,
    },
    /// Makes each directory of the list that is missing (parents first): a mount point or a
    /// working directory inside an earlier mount of the task.
    MkdirAll(Vec<CString>),
    /// The task's working directory (`--workdir`), entered after its mounts.
    Chdir(CString),
}

/// Longest host name a task may be given (the kernel's `HOST_NAME_MAX`).
pub const HOSTNAME_BYTES_MAX: usize = 64;

/// Whether `name` is a host name the kernel and resolvers take: letters, digits, `-` and `.`,
/// 1 to [`HOSTNAME_BYTES_MAX`] bytes.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= HOSTNAME_BYTES_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The variables that tell a task without a namespace where its files are.
pub fn file_env(files: &[TaskFile]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (kind, var) in [
        (FileKind::Secret, "SWARM_SECRETS_DIR"),
        (FileKind::Config, "SWARM_CONFIGS_DIR"),
    ] {
        if let Some(dir) = files
            .iter()
            .find(|f| f.kind == kind)
            .and_then(|f| f.host_path.parent())
        {
            env.push((var.to_string(), dir.display().to_string()));
        }
    }
    env
}

fn cstr(p: &str) -> Result<CString, RuntimeError> {
    CString::new(p).map_err(|_| RuntimeError::InvalidSpec(format!("path {p:?} has a NUL byte")))
}

fn clean_absolute(p: &str) -> bool {
    p.starts_with('/')
        && p.split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Empty files this runtime made on the host as mount points, each with the tasks that use it.
pub(super) struct Placeholders {
    /// `<tasks-dir>/placeholders`: one path a line, rewritten on each change.
    record: PathBuf,
    users: Mutex<BTreeMap<PathBuf, BTreeSet<TaskId>>>,
}

impl Placeholders {
    pub(super) fn new(tasks_dir: &Path) -> Placeholders {
        Placeholders {
            record: tasks_dir.join("placeholders"),
            users: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes sure a regular file is at `target` for `task`: one that is there already is used
    /// as it is (and shared when it is one of ours); a missing one is made, empty, when its
    /// directory exists.
    fn take(&self, target: &Path, task: TaskId, what: &str) -> Result<(), RuntimeError> {
        let mut users = self.users.lock().expect("placeholders lock");
        if let Some(u) = users.get_mut(target) {
            u.insert(task);
            return Ok(());
        }
        match target.symlink_metadata() {
            Ok(m) if m.is_file() => return Ok(()),
            Ok(_) => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "{what}: target {} is not a regular file on this host",
                    target.display()
                )));
            }
            Err(_) => {}
        }
        if !target.parent().is_some_and(Path::is_dir) {
            return Err(RuntimeError::InvalidSpec(format!(
                "{what}: the directory of target {} does not exist on this host; the process \
                 runtime makes no directories outside {SECRETS_DIR}",
                target.display()
            )));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(target)
            .map_err(|e| {
                RuntimeError::Failed(format!(
                    "{what}: making the mount point {}: {e}",
                    target.display()
                ))
            })?;
        users.insert(target.to_path_buf(), BTreeSet::from([task]));
        self.save(&users);
        Ok(())
    }

    /// Makes sure a directory is at `target` for `task` (a mount point of a `--mount`): one
    /// that is there is used as it is; the missing ones on the way are made, empty, and
    /// removed when no task of this node needs them any more.
    fn take_dir(&self, target: &Path, task: TaskId, what: &str) -> Result<(), RuntimeError> {
        let mut users = self.users.lock().expect("placeholders lock");
        let mut missing = Vec::new();
        let mut at = Some(target);
        while let Some(p) = at {
            match p.symlink_metadata() {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "{what}: {} is not a directory on this host",
                        p.display()
                    )));
                }
                Err(_) => missing.push(p.to_path_buf()),
            }
            at = p.parent();
        }
        // Ours already (made for another task's mount point, or on its way): shared.
        for p in target.ancestors() {
            if let Some(u) = users.get_mut(p) {
                u.insert(task);
            }
        }
        let mut made = false;
        for p in missing.iter().rev() {
            match std::fs::create_dir(p) {
                Ok(()) => {
                    users.insert(p.clone(), BTreeSet::from([task]));
                    made = true;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    if made {
                        self.save(&users);
                    }
                    return Err(RuntimeError::Failed(format!(
                        "{what}: making the mount point {}: {e}",
                        p.display()
                    )));
                }
            }
        }
        if made {
            self.save(&users);
        }
        Ok(())
    }

    /// `task` is removed: placeholders no task uses any more go (the deepest first, so that
    /// a directory made for a mount point is empty when its turn comes).
    pub(super) fn release(&self, task: TaskId) {
        let mut users = self.users.lock().expect("placeholders lock");
        let before = users.len();
        let mut unused = Vec::new();
        users.retain(|path, u| {
            u.remove(&task);
            if u.is_empty() {
                unused.push(path.clone());
            }
            !u.is_empty()
        });
        for path in unused.iter().rev() {
            remove_placeholder(path);
        }
        if users.len() != before {
            self.save(&users);
        }
    }

    /// Removes the placeholders a previous run of the node recorded (called at start, before
    /// any task of this run).
    pub(super) fn clean_leftovers(&self) {
        let users = self.users.lock().expect("placeholders lock");
        if let Ok(text) = std::fs::read_to_string(&self.record) {
            // Deepest first, as `release` does.
            let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            lines.sort_unstable();
            for line in lines.into_iter().rev() {
                // One of this run's own (a later call) stays.
                if !users.contains_key(Path::new(line)) {
                    remove_placeholder(Path::new(line));
                }
            }
        }
        self.save(&users);
    }

    fn save(&self, users: &BTreeMap<PathBuf, BTreeSet<TaskId>>) {
        let text: String = users.keys().map(|p| format!("{}\n", p.display())).collect();
        let done = if text.is_empty() {
            std::fs::remove_file(&self.record)
                .or_else(|e| (e.kind() == io::ErrorKind::NotFound).then_some(()).ok_or(e))
        } else {
            std::fs::write(&self.record, text)
        };
        if let Err(e) = done {
            tracing::warn!(file = %self.record.display(), error = %e, "recording the placeholders failed");
        }
    }
}

/// Removes a placeholder, only if it still is an empty regular file or an empty directory
/// (never anything else).
fn remove_placeholder(path: &Path) {
    match path.symlink_metadata() {
        Ok(m) if m.is_file() && m.len() == 0 => {
            let _ = std::fs::remove_file(path); // gone already is what we wanted
        }
        Ok(m) if m.is_dir() => {
            // Refused when not empty: something was put there, so it stays.
            let _ = std::fs::remove_dir(path);
        }
        _ => {}
    }
}

/// Plans the namespaces of a task (as root): its host name's, and the mount namespace that
/// shows its mounts and files. Makes `/run/secrets` on the host when a target needs it as a
/// mount point, and, when `placeholders` is given (starting a task; a health check makes
/// none), the volumes and the placeholders of targets that do not exist. `None` when the
/// task needs no namespace.
fn plan(
    ctx: &TaskContext,
    placeholders: Option<&Placeholders>,
    volumes: &Volumes,
) -> Result<Option<Vec<Step>>, RuntimeError> {
    let resolv = resolv_bind(ctx)?;
    let spec = &ctx.spec;
    let mut steps = Vec::new();
    if let Some(h) = &spec.hostname {
        steps.push(Step::Hostname(cstr(h)?));
    }
    if !ctx.files.is_empty() || resolv.is_some() || !spec.mounts.is_empty() {
        steps.push(Step::Private);
        mount_steps(ctx, placeholders, volumes, &mut steps)?;
        file_steps(ctx, placeholders, &mut steps)?;
        if let Some((src, dst)) = resolv {
            steps.push(Step::Bind { src, dst });
        }
    }
    if steps.is_empty() {
        return Ok(None);
    }
    // After the mounts, so that a working directory inside one is the mount's.
    if let Some(w) = &spec.workdir {
        steps.push(Step::MkdirAll(chain(w)?));
        steps.push(Step::Chdir(cstr(w)?));
    }
    Ok(Some(steps))
}

/// Every directory from the root down to `path`, parents first (`/a/b` → `/a`, `/a/b`).
fn chain(path: &str) -> Result<Vec<CString>, RuntimeError> {
    let mut out = Vec::new();
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at = format!("{at}/{part}");
        out.push(cstr(&at)?);
    }
    Ok(out)
}

/// The spec's `--mount`s, shallowest target first (so that one inside another is mounted in
/// it, as Docker orders them): each source bound, or a tmpfs mounted, at its target.
fn mount_steps(
    ctx: &TaskContext,
    placeholders: Option<&Placeholders>,
    volumes: &Volumes,
    steps: &mut Vec<Step>,
) -> Result<(), RuntimeError> {
    let mounts = &ctx.spec.mounts;
    if mounts.len() > MOUNTS_MAX {
        return Err(RuntimeError::InvalidSpec(format!(
            "{} mounts: at most {MOUNTS_MAX}",
            mounts.len()
        )));
    }
    let mut order: Vec<(usize, &Mount)> = mounts.iter().enumerate().collect();
    order.sort_by_key(|(_, m)| m.target.matches('/').count());
    let mut done: Vec<&str> = Vec::new();
    for (index, m) in order {
        let what = format!("mount {} at {}", m.kind.as_str(), m.target);
        if !clean_absolute(&m.target) {
            return Err(RuntimeError::InvalidSpec(format!(
                "{what}: the target is not a clean absolute path"
            )));
        }
        if done.contains(&m.target.as_str()) {
            return Err(RuntimeError::InvalidSpec(format!(
                "{what}: another mount has that target"
            )));
        }
        let dst = cstr(&m.target)?;
        let (src, is_file) = match m.kind {
            MountKind::Volume => {
                let dir = match placeholders {
                    Some(_) => volumes.take(ctx.task_id, index, m)?,
                    None => volumes.path(ctx.task_id, index, m),
                };
                (Some(dir), false)
            }
            MountKind::Bind => {
                if !clean_absolute(&m.source) {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "{what}: the source {:?} is not a clean absolute path",
                        m.source
                    )));
                }
                let meta = Path::new(&m.source).metadata().map_err(|e| {
                    RuntimeError::InvalidSpec(format!(
                        "{what}: the source {} cannot be used: {e}",
                        m.source
                    ))
                })?;
                (Some(PathBuf::from(&m.source)), !meta.is_dir())
            }
            MountKind::Tmpfs => (None, false),
        };
        // Inside an earlier mount of the task: its mount point is made in the namespace.
        let inside = done.iter().any(|t| m.target.starts_with(&format!("{t}/")));
        if inside {
            if is_file {
                return Err(RuntimeError::InvalidSpec(format!(
                    "{what}: a file bound inside another mount of the task is not supported"
                )));
            }
            steps.push(Step::MkdirAll(chain(&m.target)?));
        } else if let Some(p) = placeholders {
            if is_file {
                p.take(Path::new(&m.target), ctx.task_id, &what)?;
            } else {
                p.take_dir(Path::new(&m.target), ctx.task_id, &what)?;
            }
        }
        steps.push(match src {
            Some(src) => Step::MountBind {
                src: CString::new(src.as_os_str().as_bytes()).map_err(|_| {
                    RuntimeError::InvalidSpec(format!("{what}: its source has a NUL byte"))
                })?,
                dst,
                read_only: m.read_only,
            },
            None => {
                let mut options = String::from("mode=1777");
                if m.tmpfs_size_bytes > 0 {
                    options.push_str(&format!(",size={}", m.tmpfs_size_bytes));
                }
                Step::MountTmpfs {
                    dst,
                    options: cstr(&options)?,
                    read_only: m.read_only,
                }
            }
        });
        done.push(&m.target);
    }
    Ok(())
}

/// The task's secrets and configs, each bound read-only at its target.
fn file_steps(
    ctx: &TaskContext,
    placeholders: Option<&Placeholders>,
    steps: &mut Vec<Step>,
) -> Result<(), RuntimeError> {
    let secrets_prefix = format!("{SECRETS_DIR}/");
    let mut dirs = std::collections::BTreeSet::new();
    let mut binds = Vec::new();
    let mut under_secrets = false;
    for f in &ctx.files {
        let what = format!("{} {}", f.kind.as_str(), f.name);
        if !clean_absolute(&f.target) {
            return Err(RuntimeError::InvalidSpec(format!(
                "{what}: target {:?} is not a clean absolute path",
                f.target
            )));
        }
        let src = CString::new(f.host_path.as_os_str().as_bytes()).map_err(|_| {
            RuntimeError::InvalidSpec(format!("{what}: its file's path has a NUL byte"))
        })?;
        let dst = cstr(&f.target)?;
        if let Some(rest) = f.target.strip_prefix(&secrets_prefix) {
            under_secrets = true;
            // Every directory between /run/secrets and the file, parents first (BTreeSet
            // order puts "/a" before "/a/b").
            let mut at = SECRETS_DIR.to_string();
            let parts: Vec<&str> = rest.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                at = format!("{at}/{p}");
                dirs.insert(at.clone());
            }
            binds.push((true, src, dst));
        } else {
            if let Some(p) = placeholders {
                p.take(Path::new(&f.target), ctx.task_id, &what)?;
            }
            let on_host = Path::new(&f.target).symlink_metadata();
            if !on_host.map(|m| m.is_file()).unwrap_or(false) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "{what}: target {} is not a file on this host",
                    f.target
                )));
            }
            binds.push((false, src, dst));
        }
    }
    if under_secrets {
        std::fs::create_dir_all(SECRETS_DIR).map_err(|e| {
            RuntimeError::Failed(format!("making the mount point {SECRETS_DIR}: {e}"))
        })?;
        steps.push(Step::Tmpfs(cstr(SECRETS_DIR)?));
        for d in dirs {
            steps.push(Step::Mkdir(cstr(&d)?));
        }
    }
    for (placeholder, src, dst) in binds {
        if placeholder {
            steps.push(Step::Placeholder(dst.clone()));
        }
        steps.push(Step::Bind { src, dst });
    }
    Ok(())
}

/// The task's own `resolv.conf` (its network namespace's, see `netns::resolv_path`) over the
/// host's, when it has a DNS server and the file was written.
fn resolv_bind(ctx: &TaskContext) -> Result<Option<(CString, CString)>, RuntimeError> {
    let own = super::netns::resolv_path(ctx.task_id);
    if ctx.dns.is_none() || !own.is_file() || !Path::new(RESOLV_CONF).is_file() {
        return Ok(None);
    }
    let src = CString::new(own.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::InvalidSpec("the resolv.conf path has a NUL byte".into()))?;
    Ok(Some((src, cstr(RESOLV_CONF)?)))
}

/// Arranges for `cmd`'s child to see `ctx`'s files and mounts, with its host name and in its
/// working directory. As root: namespaces made in the child before anything else runs there
/// (see [`plan`]), then the task's ids (returned `None`: they are set here, after the mounts,
/// not by std before them). Without root: the variables of [`file_env`], no host name (a
/// warning says so), and a task with mounts is refused; `user` is returned unchanged.
pub(super) fn show_files(
    cmd: &mut std::process::Command,
    ctx: &TaskContext,
    user: Option<Credentials>,
    placeholders: Option<&Placeholders>,
    volumes: &Volumes,
) -> Result<Option<Credentials>, RuntimeError> {
    if let Some(h) = &ctx.spec.hostname
        && !valid_hostname(h)
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "hostname {h:?}: letters, digits, '-' and '.', at most {HOSTNAME_BYTES_MAX} bytes"
        )));
    }
    if let Some(w) = &ctx.spec.workdir
        && !clean_absolute(w)
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "workdir {w:?} is not a clean absolute path"
        )));
    }
    if !running_as_root() {
        if !ctx.spec.mounts.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "mounts (volumes, binds, tmpfs) need the node to run as root on the process \
                 runtime (each task gets a mount namespace of its own); this node does not"
                    .into(),
            ));
        }
        if placeholders.is_some()
            && let Some(h) = &ctx.spec.hostname
        {
            tracing::warn!(task = %ctx.task_id, hostname = %h, "not running as root: the task's hostname is not applied (HOSTNAME is set)");
        }
        cmd.envs(file_env(&ctx.files));
        workdir_outside(cmd, ctx, placeholders.is_some())?;
        return Ok(user);
    }
    let Some(steps) = plan(ctx, placeholders, volumes)? else {
        workdir_outside(cmd, ctx, placeholders.is_some())?;
        return Ok(user);
    };
    in_namespace(cmd, steps, user);
    Ok(None)
}

/// The working directory of a task that has no namespace: made on the host when missing
/// (starting; Docker makes it too), entered by std before the task runs.
fn workdir_outside(
    cmd: &mut std::process::Command,
    ctx: &TaskContext,
    starting: bool,
) -> Result<(), RuntimeError> {
    if let Some(w) = &ctx.spec.workdir {
        if starting {
            std::fs::create_dir_all(w)
                .map_err(|e| RuntimeError::Failed(format!("making the workdir {w}: {e}")))?;
        }
        cmd.current_dir(w);
    }
    Ok(())
}

/// Registers the child's namespace set-up; it runs before the shim's own (see
/// `process::supervise`), which is registered later.
///
/// `unsafe` because the closure runs in the forked child of a threaded process: it calls only
/// `unshare`, `sethostname`, `mount`, `mkdir`, `chdir`, `open`, `close`, `setgroups`, `setgid`
/// and `setuid`, all async-signal-safe, on paths made before the fork, and allocates nothing.
#[allow(unsafe_code)]
fn in_namespace(cmd: &mut std::process::Command, steps: Vec<Step>, user: Option<Credentials>) {
    use std::os::unix::process::CommandExt;
    let tmpfs = c"tmpfs";
    let options = CString::new(SECRETS_TMPFS_OPTIONS).expect("no NUL");
    let root = c"/";
    // SAFETY: see above.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc != 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            let null = std::ptr::null::<libc::c_char>();
            let remount_ro = |dst: &CString, extra: libc::c_ulong| {
                check(libc::mount(
                    null,
                    dst.as_ptr(),
                    null,
                    libc::MS_REMOUNT | libc::MS_RDONLY | extra,
                    std::ptr::null(),
                ))
            };
            for step in &steps {
                match step {
                    Step::Hostname(name) => {
                        check(libc::unshare(libc::CLONE_NEWUTS))?;
                        check(libc::sethostname(name.as_ptr(), name.as_bytes().len()))?;
                    }
                    Step::Private => {
                        check(libc::unshare(libc::CLONE_NEWNS))?;
                        check(libc::mount(
                            null,
                            root.as_ptr(),
                            null,
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ))?
                    }
                    Step::MountBind {
                        src,
                        dst,
                        read_only,
                    } => {
                        check(libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ))?;
                        if *read_only {
                            remount_ro(dst, libc::MS_BIND)?;
                        }
                    }
                    Step::MountTmpfs {
                        dst,
                        options,
                        read_only,
                    } => {
                        let flags = libc::MS_NOSUID | libc::MS_NODEV;
                        check(libc::mount(
                            tmpfs.as_ptr(),
                            dst.as_ptr(),
                            tmpfs.as_ptr(),
                            flags,
                            options.as_ptr().cast(),
                        ))?;
                        if *read_only {
                            remount_ro(dst, flags)?;
                        }
                    }
                    Step::MkdirAll(dirs) => {
                        for d in dirs {
                            if libc::mkdir(d.as_ptr(), 0o755) != 0 {
                                let e = io::Error::last_os_error();
                                if e.raw_os_error() != Some(libc::EEXIST) {
                                    return Err(e);
                                }
                            }
                        }
                    }
                    Step::Chdir(dir) => check(libc::chdir(dir.as_ptr()))?,
                    Step::Tmpfs(dir) => check(libc::mount(
                        tmpfs.as_ptr(),
                        dir.as_ptr(),
                        tmpfs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        options.as_ptr().cast(),
                    ))?,
                    Step::Mkdir(dir) => check(libc::mkdir(dir.as_ptr(), 0o755))?,
                    Step::Placeholder(file) => {
                        let fd = libc::open(
                            file.as_ptr(),
                            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o444,
                        );
                        if fd < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        libc::close(fd);
                    }
                    Step::Bind { src, dst } => {
                        check(libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            null,
                            libc::MS_BIND,
                            std::ptr::null(),
                        ))?;
                        check(libc::mount(
                            null,
                            dst.as_ptr(),
                            null,
                            libc::MS_BIND
                                | libc::MS_REMOUNT
                                | libc::MS_RDONLY
                                | libc::MS_NOSUID
                                | libc::MS_NODEV
                                | libc::MS_NOEXEC,
                            std::ptr::null(),
                        ))?;
                    }
                }
            }
            if let Some(c) = user {
                take_ids(c)?;
            }
            Ok(())
        });
    }
}

/// Takes `user`'s ids, in the order std does (supplementary groups cleared, gid, uid), in a
/// child that had to keep root until now (to mount, or to join a namespace).
///
/// `unsafe` only for the foreign calls: `setgroups`, `setgid` and `setuid` take integers (and a
/// null list), are async-signal-safe, and allocate nothing, so a forked child may call this.
#[allow(unsafe_code)]
pub(super) fn take_ids(user: Credentials) -> io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc != 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: see above.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setgid(user.gid))?;
        check(libc::setuid(user.uid))
    }
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
