//! The process runtime's named volumes: a directory of the node's own per volume,
//! `<data-dir>/volumes/<name>`, made on first use and kept after the task, as a Docker volume
//! is. The labels it was made with (a stack's namespace label) are kept beside it in
//! `<data-dir>/volumes/.<name>.labels` (JSON), which is what [`Volumes::remove_labelled`]
//! (`stack rm`) finds a stack's volumes by. A volume name never starts with a dot, so the two
//! never collide. An anonymous volume (a mount without a source) is a directory of its task,
//! `<data-dir>/volumes/.anonymous/<task>-<n>`, removed with the task.
//!
//! The runtime counts which of its tasks use each volume; a volume in use is never removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::RuntimeError;
use crate::model::{Mount, TaskId};

/// Longest volume name, in bytes (a file name must fit).
pub const VOLUME_NAME_BYTES_MAX: usize = 200;

/// Entries of the volumes directory one removal looks at; past that the rest are left (and a
/// warning says so).
pub const VOLUME_ENTRIES_MAX: usize = 100_000;

/// Bytes of one labels file read back; a bigger one is not ours and is left alone.
const LABELS_FILE_BYTES_MAX: u64 = 64 * 1024;

/// The folder anonymous volumes live in.
const ANONYMOUS_DIR: &str = ".anonymous";

/// Whether `name` is a volume name as Docker takes it: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most
/// [`VOLUME_NAME_BYTES_MAX`] bytes. Anything else could name a path outside the volumes
/// directory.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= VOLUME_NAME_BYTES_MAX
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What one removal by label did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumesRemoved {
    /// The volumes removed, by name.
    pub removed: Vec<String>,
    /// Volumes with the label that a task of this node still uses: left as they are.
    pub in_use: Vec<String>,
}

/// A node's named volumes (process runtime).
pub(super) struct Volumes {
    dir: PathBuf,
    /// Volume name (or the anonymous volume's directory name) → the tasks that mount it now.
    users: Mutex<BTreeMap<String, BTreeSet<TaskId>>>,
}

impl Volumes {
    pub(super) fn new(dir: PathBuf) -> Volumes {
        Volumes {
            dir,
            users: Mutex::new(BTreeMap::new()),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the volume of `mount` (mount `index` of `task`) is on this host, without making
    /// it: for a health check, which runs after its task took the volume.
    pub(super) fn path(&self, task: TaskId, index: usize, mount: &Mount) -> PathBuf {
        if mount.source.is_empty() {
            self.dir.join(ANONYMOUS_DIR).join(format!("{task}-{index}"))
        } else {
            self.dir.join(&mount.source)
        }
    }

    /// Makes the volume of `mount` when it is not there yet (with its labels beside it) and
    /// counts `task` among its users. Returns its directory.
    pub(super) fn take(
        &self,
        task: TaskId,
        index: usize,
        mount: &Mount,
    ) -> Result<PathBuf, RuntimeError> {
        let anonymous = mount.source.is_empty();
        if !anonymous && !valid_volume_name(&mount.source) {
            return Err(RuntimeError::InvalidSpec(format!(
                "volume name {:?} is not valid: [A-Za-z0-9][A-Za-z0-9_.-]*, at most \
                 {VOLUME_NAME_BYTES_MAX} bytes",
                mount.source
            )));
        }
        let path = self.path(task, index, mount);
        let key = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut users = self.users.lock().expect("volumes lock");
        let failed = |e: io::Error| {
            RuntimeError::Failed(format!("making the volume {}: {e}", path.display()))
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(path.parent().expect("a volume has a parent"))
            .map_err(failed)?;
        match std::fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) if !anonymous => {
                let labels = serde_json::to_vec(&mount.volume_labels)
                    .expect("a map of strings always encodes");
                if let Err(e) = std::fs::write(self.labels_file(&mount.source), labels) {
                    // A volume without its labels would be left behind by `stack rm`.
                    let _ = std::fs::remove_dir(&path); // made just now, empty
                    return Err(failed(e));
                }
            }
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(failed(e)),
        }
        users.entry(key).or_default().insert(task);
        Ok(path)
    }

    /// `task` is removed: it uses no volume any more; its anonymous volumes go.
    pub(super) fn release(&self, task: TaskId) {
        let mut users = self.users.lock().expect("volumes lock");
        let prefix = format!("{task}-");
        users.retain(|_, u| {
            u.remove(&task);
            !u.is_empty()
        });
        let anonymous = self.dir.join(ANONYMOUS_DIR);
        let Ok(entries) = std::fs::read_dir(&anonymous) else {
            return;
        };
        for e in entries.take(VOLUME_ENTRIES_MAX).flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path()); // best effort: its task is gone
            }
        }
    }

    fn labels_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.labels"))
    }

    /// The labels `name` was made with, when it is a volume of ours.
    fn labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let file = self.labels_file(name);
        if file.metadata().ok()?.len() > LABELS_FILE_BYTES_MAX {
            return None;
        }
        serde_json::from_slice(&std::fs::read(file).ok()?).ok()
    }

    /// Removes every volume labelled `key=value` that no task of this node uses.
    pub(super) fn remove_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<VolumesRemoved, RuntimeError> {
        let users = self.users.lock().expect("volumes lock");
        let mut out = VolumesRemoved::default();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(RuntimeError::Failed(format!(
                    "reading {}: {e}",
                    self.dir.display()
                )));
            }
        };
        let mut names = Vec::new();
        for e in entries.take(VOLUME_ENTRIES_MAX).flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = file
                .strip_prefix('.')
                .and_then(|f| f.strip_suffix(".labels"))
                && valid_volume_name(name)
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        for name in names {
            let Some(labels) = self.labels(&name) else {
                continue;
            };
            if labels.get(key).map(String::as_str) != Some(value) {
                continue;
            }
            if users.get(&name).is_some_and(|u| !u.is_empty()) {
                out.in_use.push(name);
                continue;
            }
            let dir = self.dir.join(&name);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RuntimeError::Failed(format!(
                        "removing the volume {}: {e} (removed before it: {:?})",
                        dir.display(),
                        out.removed
                    )));
                }
            }
            let _ = std::fs::remove_file(self.labels_file(&name)); // its volume is gone
            out.removed.push(name);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
