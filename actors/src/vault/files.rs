//! The vault's state, without the actor: the material a node holds (in memory) and the files it
//! wrote for its tasks (on tmpfs only).
//!
//! ```text
//!  <root>/                          = <base>/<node-id>, 0700, emptied when the vault opens,
//!                                     made with the first task that has files
//!    <task-id>/                     0700, one per task that has files, removed when it ends
//!      secrets/<file name of target>   the ref's mode, uid and gid (chown only as root)
//!      configs/<file name of target>
//! ```
//!
//! A runtime shows each file at its target (a bind mount) or, for a process task without
//! root, tells the task the two directories (`SWARM_SECRETS_DIR`, `SWARM_CONFIGS_DIR`); that
//! is why a file is named by its target's file name, and why two refs of one kind whose
//! targets share a file name are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{FileKey, FileKind, FileMaterial, FileRef, NodeId, TaskId};
use crate::runtime::{TaskFile, running_as_root};

/// Where the vault of every node of this host writes: one directory per node below it.
pub const VAULT_BASE_DIR: &str = "/dev/shm/swarm-node";

/// Most bytes of material one node holds in memory. The store keeps at most 32 MiB of secrets
/// and configs in all, so a node can hold every one of them.
pub const HELD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most secrets and configs one node holds at once.
pub const HELD_FILES_MAX: usize = 4_096;

/// Most tasks with files one node keeps at once (a node runs far fewer tasks).
pub const TASKS_MAX: usize = 1_024;

/// Most bytes of files the vault keeps on tmpfs for all its tasks together (each task's copy
/// counts): tmpfs is memory.
pub const WRITTEN_BYTES_MAX: usize = 256 * 1024 * 1024;

/// `statfs` type of tmpfs (linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Why the vault refused; nothing changed when it did (a half-written task directory is
/// removed again).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VaultError {
    #[error("{0} is not on a tmpfs: secrets and configs are written only to memory")]
    NotTmpfs(String),
    #[error("{} {name} is not on this node (its data did not come with the assignment)", kind.as_str())]
    NotHeld { kind: FileKind, name: String },
    #[error("this node holds {HELD_FILES_MAX} secrets and configs already")]
    TooManyFiles,
    #[error("this node holds {HELD_BYTES_MAX} bytes of secrets and configs already")]
    TooManyBytes,
    #[error("this node keeps files for {TASKS_MAX} tasks already")]
    TooManyTasks,
    #[error("the files of this node's tasks would pass {WRITTEN_BYTES_MAX} bytes")]
    TooMuchWritten,
    #[error("invalid target {target:?} of {} {name}: {why}", kind.as_str())]
    BadTarget {
        kind: FileKind,
        name: String,
        target: String,
        why: &'static str,
    },
    #[error("writing {path}: {why}")]
    Io { path: String, why: String },
}

/// One held secret or config as `List` shows it: never its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldFile {
    pub kind: FileKind,
    pub name: String,
    pub id: String,
    pub bytes: usize,
    /// The tasks whose files were written from it.
    pub tasks: Vec<TaskId>,
}

/// What the vault wrote for one task.
struct Written {
    dir: PathBuf,
    keys: BTreeSet<FileKey>,
    files: Vec<TaskFile>,
    bytes: usize,
}

pub struct Vault {
    root: PathBuf,
    /// Why files cannot be written here (the root is not on tmpfs), checked once at open.
    unusable: Option<VaultError>,
    held: BTreeMap<FileKey, FileMaterial>,
    held_bytes: usize,
    tasks: BTreeMap<TaskId, Written>,
    written_bytes: usize,
}

impl Vault {
    /// Opens the vault of `node` under `base`: removes whatever a previous run of the node left
    /// there (before any task runs), and checks that it is a tmpfs. A vault on another
    /// filesystem opens, but refuses every task with files ([`VaultError::NotTmpfs`]).
    pub fn open(base: &Path, node: NodeId) -> Vault {
        let root = base.join(node.to_string());
        let unusable = prepare_root(base, &root).err();
        Vault {
            root,
            unusable,
            held: BTreeMap::new(),
            held_bytes: 0,
            tasks: BTreeMap::new(),
            written_bytes: 0,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps this material; one that is held already is replaced (same key, same data). Each
    /// file is taken or refused alone: the first refusal is returned, the rest are still tried.
    pub fn hold(&mut self, files: Vec<FileMaterial>) -> Result<(), VaultError> {
        let mut first = Ok(());
        for m in files {
            let before = self.held.get(&m.key).map_or(0, |h| h.data.len());
            let refused = if before == 0 && self.held.len() >= HELD_FILES_MAX {
                Some(VaultError::TooManyFiles)
            } else if self.held_bytes - before + m.data.len() > HELD_BYTES_MAX {
                Some(VaultError::TooManyBytes)
            } else {
                None
            };
            match refused {
                Some(e) => {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
                None => {
                    self.held_bytes = self.held_bytes - before + m.data.len();
                    self.held.insert(m.key, m);
                }
            }
        }
        first
    }

    /// Forgets this material. Files written from it for tasks still running stay until those
    /// tasks end: they are the tasks', and the agent drops material only once no task uses it.
    pub fn forget(&mut self, keys: &[FileKey]) {
        for k in keys {
            if let Some(m) = self.held.remove(k) {
                self.held_bytes -= m.data.len();
            }
        }
    }

    pub fn holds(&self, key: &FileKey) -> bool {
        self.held.contains_key(key)
    }

    /// Writes `task`'s files (its `secrets` then its `configs`) and returns where they are. A
    /// task whose files were written already gets the same files again. On a refusal nothing
    /// is left behind.
    pub fn materialize(
        &mut self,
        task: TaskId,
        secrets: &[FileRef],
        configs: &[FileRef],
    ) -> Result<Vec<TaskFile>, VaultError> {
        if let Some(w) = self.tasks.get(&task) {
            return Ok(w.files.clone());
        }
        if secrets.is_empty() && configs.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(e) = &self.unusable {
            return Err(e.clone());
        }
        if self.tasks.len() >= TASKS_MAX {
            return Err(VaultError::TooManyTasks);
        }
        let refs: Vec<(FileKind, &FileRef)> = secrets
            .iter()
            .map(|r| (FileKind::Secret, r))
            .chain(configs.iter().map(|r| (FileKind::Config, r)))
            .collect();
        // Check everything before writing anything.
        let mut names = BTreeSet::new();
        let mut bytes = 0;
        let mut plan = Vec::with_capacity(refs.len());
        for (kind, r) in &refs {
            let key = FileKey {
                kind: *kind,
                id: r.id,
            };
            let m = self.held.get(&key).ok_or_else(|| VaultError::NotHeld {
                kind: *kind,
                name: r.name.clone(),
            })?;
            let file_name = file_name(*kind, r)?;
            if !names.insert((*kind, file_name.clone())) {
                return Err(bad_target(
                    *kind,
                    r,
                    "another of the task's targets has the same file name",
                ));
            }
            bytes += m.data.len();
            plan.push((*kind, key, *r, file_name));
        }
        if self.written_bytes + bytes > WRITTEN_BYTES_MAX {
            return Err(VaultError::TooMuchWritten);
        }
        let dir = self.root.join(task.to_string());
        let written = self.write_task(&dir, &plan);
        let files = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir); // what was written is not kept
                return Err(e);
            }
        };
        self.written_bytes += bytes;
        self.tasks.insert(
            task,
            Written {
                dir,
                keys: plan.iter().map(|p| p.1).collect(),
                files: files.clone(),
                bytes,
            },
        );
        Ok(files)
    }

    fn write_task(
        &self,
        dir: &Path,
        plan: &[(FileKind, FileKey, &FileRef, String)],
    ) -> Result<Vec<TaskFile>, VaultError> {
        let root = running_as_root();
        if !self.root.exists() {
            mkdir(&self.root)?;
        }
        mkdir(dir)?;
        let mut files = Vec::with_capacity(plan.len());
        for (kind, key, r, file_name) in plan {
            let sub = dir.join(kind_dir(*kind));
            if !sub.exists() {
                mkdir(&sub)?;
            }
            let path = sub.join(file_name);
            let data = self.held[key].data.expose();
            write_file(&path, data, r, root)?;
            files.push(TaskFile {
                kind: *kind,
                name: r.name.clone(),
                host_path: path,
                target: r.target.clone(),
                uid: r.uid,
                gid: r.gid,
                mode: r.mode,
            });
        }
        Ok(files)
    }

    /// Removes `task`'s files (its task ended or its actor stopped). Unknown tasks are fine.
    pub fn release(&mut self, task: TaskId) -> bool {
        let Some(w) = self.tasks.remove(&task) else {
            return false;
        };
        self.written_bytes -= w.bytes;
        if let Err(e) = std::fs::remove_dir_all(&w.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%task, error = %e, "removing the task's secrets failed");
        }
        true
    }

    /// Tasks whose files are written.
    pub fn tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks.keys().copied()
    }

    /// What the node holds and for which tasks, without data.
    pub fn list(&self) -> Vec<HeldFile> {
        let mut out: BTreeMap<FileKey, HeldFile> = self
            .held
            .values()
            .map(|m| {
                (
                    m.key,
                    HeldFile {
                        kind: m.key.kind,
                        name: m.name.clone(),
                        id: m.key.id.to_string(),
                        bytes: m.data.len(),
                        tasks: Vec::new(),
                    },
                )
            })
            .collect();
        for (task, w) in &self.tasks {
            for k in &w.keys {
                if let Some(h) = out.get_mut(k) {
                    h.tasks.push(*task);
                }
            }
        }
        out.into_values().collect()
    }

    /// Removes every file and forgets every material (the node is stopping).
    pub fn close(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
        self.tasks.clear();
        self.written_bytes = 0;
        if let Err(e) = std::fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.root.display(), error = %e, "removing the vault's files failed");
        }
    }
}

fn kind_dir(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Secret => "secrets",
        FileKind::Config => "configs",
    }
}

fn bad_target(kind: FileKind, r: &FileRef, why: &'static str) -> VaultError {
    VaultError::BadTarget {
        kind,
        name: r.name.clone(),
        target: r.target.clone(),
        why,
    }
}

/// The file name a ref's file gets in the task's directory: its target's last component.
/// Targets are absolute, without `.` or `..` components (the control API resolves them; this
/// checks again, since a path is about to be built from it).
fn file_name(kind: FileKind, r: &FileRef) -> Result<String, VaultError> {
    let t = &r.target;
    if !t.starts_with('/') {
        return Err(bad_target(kind, r, "not an absolute path"));
    }
    let parts: Vec<&str> = t.split('/').skip(1).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(bad_target(kind, r, "empty, `.` or `..` components"));
    }
    if t.contains('\0') {
        return Err(bad_target(kind, r, "a NUL byte"));
    }
    Ok(parts.last().expect("checked non-empty").to_string())
}

fn io_err(path: &Path, e: std::io::Error) -> VaultError {
    VaultError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn mkdir(dir: &Path) -> Result<(), VaultError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, e))
}

/// Writes one file: created new (never through a link), the data, then its owner (as root)
/// and mode. It is created 0600 so nobody reads it before its mode is set.
fn write_file(path: &Path, data: &[u8], r: &FileRef, root: bool) -> Result<(), VaultError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(data).map_err(|e| io_err(path, e))?;
    if root {
        std::os::unix::fs::fchown(&f, Some(r.uid), Some(r.gid)).map_err(|e| io_err(path, e))?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(r.mode & 0o7777))
        .map_err(|e| io_err(path, e))?;
    Ok(())
}

/// Empties the node's directory (whatever a previous run left) and makes sure it is on tmpfs.
/// The directory itself is made with the first task that has files, so a node that never runs
/// one leaves nothing in `/dev/shm`.
fn prepare_root(base: &Path, root: &Path) -> Result<(), VaultError> {
    match std::fs::remove_dir_all(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(root, e)),
    }
    if !base.exists() {
        // The base is shared by the nodes of this host; each node's own directory is 0700.
        std::fs::DirBuilder::new()
            .mode(0o711)
            .recursive(true)
            .create(base)
            .map_err(|e| io_err(base, e))?;
    }
    if !is_tmpfs(base) {
        return Err(VaultError::NotTmpfs(base.display().to_string()));
    }
    Ok(())
}

/// Whether `path` is on a tmpfs (statfs(2)).
#[allow(unsafe_code)]
pub fn is_tmpfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a properly sized, writable statfs
    // that the kernel fills; nothing else is touched.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let kind = buf.f_type as i64;
    rc == 0 && kind == TMPFS_MAGIC
}
