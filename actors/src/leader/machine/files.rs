//! Which secrets and configs a session's answer carries.
//!
//! A node receives the data of a secret or config only with the assignment of a task of its
//! own that names it: the answer carries the material of every file referenced by the node's
//! listed tasks that still need theirs ([`needs_files`]) and that the node did not report
//! holding, as far as [`FILES_ANSWER_BYTES_MAX`] allows (each file counted as its data and
//! [`FILE_REST_BYTES_MAX`]); one file always fits, the rest come with the next answers, which
//! the agent asks for at once while a task waits for them.
//!
//! A ref to a secret the store no longer has (removed between the control API's check that it
//! exists and the task's answer, a rare race: `secret rm` refuses while a service uses it) is
//! left out. An answer that carries no file at all therefore tells the node that none of the
//! files its listed tasks lack and did not report holding exists: the agent rejects a task
//! waiting for such a file ("secret x not found") rather than letting it wait for ever.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{FileKey, FileMaterial, NodeId, Task, TaskState};
use crate::store::{ObjectBody, StoredObject};
use crate::wire::Assignment;
use crate::wire::answer::{FILE_REST_BYTES_MAX, FILES_ANSWER_BYTES_MAX};

/// Whether the node a task is on should hold its files: the task has not ended and may still
/// run (held tasks, desired below Running, included: their files come ahead of the release).
pub fn needs_files(t: &Task) -> bool {
    !t.status.state.is_terminal() && t.desired_state <= TaskState::Running
}

/// The secrets and configs of a pass's read, by key (the data shared with the read, not
/// copied).
pub(super) fn by_key(read: &[&StoredObject]) -> BTreeMap<FileKey, FileMaterial> {
    read.iter()
        .filter_map(|o| match &o.body {
            ObjectBody::Secret(s) => Some((s.key(), s.material())),
            _ => None,
        })
        .collect()
}

/// The files to send node `from` with its answer `list`, in key order: those its tasks need
/// that it does not hold and the store has, within [`FILES_ANSWER_BYTES_MAX`].
pub(super) fn answer_files(
    from: NodeId,
    list: &[Assignment],
    held: &BTreeSet<FileKey>,
    store: &BTreeMap<FileKey, FileMaterial>,
) -> Vec<FileMaterial> {
    let mut wanted = BTreeSet::new();
    for a in list {
        // The answer is built from the tasks on this node alone.
        assert_eq!(
            a.task.node_id,
            Some(from),
            "a task of another node in an answer"
        );
        if needs_files(&a.task) {
            wanted.extend(
                a.task
                    .spec
                    .files()
                    .map(|(k, _)| k)
                    .filter(|k| !held.contains(k)),
            );
        }
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    for key in wanted {
        let Some(m) = store.get(&key) else {
            continue; // removed from the store: see the module doc
        };
        let size = m.data.len() + FILE_REST_BYTES_MAX;
        // The first always goes (the largest config fits the bound alone); a later one that
        // would pass the bound waits for the next answer, a smaller one may still fit.
        if !files.is_empty() && bytes + size > FILES_ANSWER_BYTES_MAX {
            continue;
        }
        bytes += size;
        files.push(m.clone());
    }
    files
}
