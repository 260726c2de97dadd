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

use super::{Credentials, RuntimeError, TaskContext, TaskFile};
use crate::model::{FileKind, SECRETS_DIR, TaskId};

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
    /// Makes every mount private, so the mounts below stay in the namespace.
    Private,
    Tmpfs(CString),
    Mkdir(CString),
    Placeholder(CString),
    /// Binds `src` at `dst`, then makes that mount read-only.
    Bind {
        src: CString,
        dst: CString,
    },
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

    /// `task` is removed: placeholders no task uses any more go.
    pub(super) fn release(&self, task: TaskId) {
        let mut users = self.users.lock().expect("placeholders lock");
        let before = users.len();
        users.retain(|path, u| {
            u.remove(&task);
            if u.is_empty() {
                remove_placeholder(path);
            }
            !u.is_empty()
        });
        if users.len() != before {
            self.save(&users);
        }
    }

    /// Removes the placeholders a previous run of the node recorded (called at start, before
    /// any task of this run).
    pub(super) fn clean_leftovers(&self) {
        let users = self.users.lock().expect("placeholders lock");
        if let Ok(text) = std::fs::read_to_string(&self.record) {
            for line in text.lines().filter(|l| !l.is_empty()) {
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

/// Removes a placeholder, only if it still is an empty regular file (never anything else).
fn remove_placeholder(path: &Path) {
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.is_file() && m.len() == 0)
    {
        let _ = std::fs::remove_file(path); // gone already is what we wanted
    }
}

/// Plans the namespace that shows `ctx`'s files (as root), making `/run/secrets` on the host
/// when a target needs it as a mount point, and the placeholders of other targets that do not
/// exist when `placeholders` is given (starting a task; a health check makes none). `None`
/// when the task has no files.
fn plan(
    ctx: &TaskContext,
    placeholders: Option<&Placeholders>,
) -> Result<Option<Vec<Step>>, RuntimeError> {
    let resolv = resolv_bind(ctx)?;
    if ctx.files.is_empty() && resolv.is_none() {
        return Ok(None);
    }
    let secrets_prefix = format!("{SECRETS_DIR}/");
    let mut steps = vec![Step::Private];
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
    if let Some((src, dst)) = resolv {
        steps.push(Step::Bind { src, dst });
    }
    Ok(Some(steps))
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

/// Arranges for `cmd`'s child to see `ctx`'s files. As root: a private mount namespace made in
/// the child before anything else runs there, then the task's ids (returned `None`: they are
/// set here, after the mounts, not by std before them). Without root: the variables of
/// [`file_env`]; `user` is returned unchanged.
pub(super) fn show_files(
    cmd: &mut std::process::Command,
    ctx: &TaskContext,
    user: Option<Credentials>,
    placeholders: Option<&Placeholders>,
) -> Result<Option<Credentials>, RuntimeError> {
    if ctx.files.is_empty() && ctx.dns.is_none() {
        return Ok(user);
    }
    if !running_as_root() {
        cmd.envs(file_env(&ctx.files));
        return Ok(user);
    }
    let Some(steps) = plan(ctx, placeholders)? else {
        return Ok(user);
    };
    in_namespace(cmd, steps, user);
    Ok(None)
}

/// Registers the child's namespace set-up; it runs before the shim's own (see
/// `process::supervise`), which is registered later.
///
/// `unsafe` because the closure runs in the forked child of a threaded process: it calls only
/// `unshare`, `mount`, `mkdir`, `open`, `close`, `setgroups`, `setgid` and `setuid`, all
/// async-signal-safe, on paths made before the fork, and allocates nothing.
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
            check(libc::unshare(libc::CLONE_NEWNS))?;
            let null = std::ptr::null::<libc::c_char>();
            for step in &steps {
                match step {
                    Step::Private => check(libc::mount(
                        null,
                        root.as_ptr(),
                        null,
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ))?,
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
