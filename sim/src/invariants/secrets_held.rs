//! Invariant (p): a node only ever holds secrets and configs of tasks assigned to it, and none
//! after its last such task ended; the leader never sends a file for a task not on that node.
//!
//! Two checks, each on what the run can see independently of the machine judged:
//!
//! - (p1) every file an answer carries to node N is named by a task that the answering
//!   leader's store replica assigns to N and that has not ended there (its status not
//!   terminal), judged when the leader answers;
//! - (p2) after every input the node's agent machine handled, what the node's shell holds
//!   (the simulated SecretVault, filled by `HoldFiles` and emptied by `DropFiles`) is what the
//!   machine's `held()` says, and each file in it is named by a task assigned to N (as the
//!   answer that listed it said) that has not ended on N: one whose task machine runs and is
//!   not terminal, or one the node's last answer listed that waits to start (not started here,
//!   status at most Assigned, desired at most Running).

use std::collections::BTreeSet;

use swarm_actors::model::{FileKey, FileMaterial, NodeId, TaskState};
use swarm_actors::store::{Kind, ObjectBody, StoreState};

use crate::clock::Millis;

/// Why the files of an answer to `node` break (p1), or `None`.
pub fn judge_answer(state: &StoreState, node: NodeId, files: &[FileMaterial]) -> Option<String> {
    if files.is_empty() {
        return None;
    }
    let named: BTreeSet<FileKey> = state
        .list(Kind::Task)
        .filter_map(|o| match &o.body {
            ObjectBody::Task(t) if t.node_id == Some(node) && !t.status.state.is_terminal() => {
                Some(t)
            }
            _ => None,
        })
        .flat_map(|t| t.spec.files().map(|(k, _)| k))
        .collect();
    let stray: Vec<String> = files
        .iter()
        .filter(|f| !named.contains(&f.key))
        .map(|f| {
            // The node's ended tasks that name it, if any: what the answer went by.
            let ended: Vec<String> = (state.list(Kind::Task))
                .filter_map(|o| match &o.body {
                    ObjectBody::Task(t)
                        if t.node_id == Some(node) && t.spec.files().any(|(k, _)| k == f.key) =>
                    {
                        Some(format!(
                            "task {} {:?}: {}",
                            t.id, t.status.state, t.status.message
                        ))
                    }
                    _ => None,
                })
                .collect();
            match ended.is_empty() {
                true => format!("{} {}", f.key.kind.as_str(), f.name),
                false => format!("{} {} ({})", f.key.kind.as_str(), f.name, ended.join(", ")),
            }
        })
        .collect();
    (!stray.is_empty()).then(|| {
        format!(
            "the leader sent node {node} {} that no live task of the node names",
            stray.join(", ")
        )
    })
}

/// One task the node may hold files for, as (p2) reads it.
pub struct Holder {
    /// The node the task is assigned to, as the answer that listed it said.
    pub node: Option<NodeId>,
    /// Whether it has ended on the node (its machine terminal), or cannot start any more.
    pub ended: bool,
    pub files: Vec<FileKey>,
}

/// A waiting task of the node's last answer, by its status and desired state: whether it
/// still may start here.
pub fn may_start(state: TaskState, desired: TaskState) -> bool {
    state <= TaskState::Assigned && desired <= TaskState::Running
}

/// Why what node `node` holds breaks (p2), or `None`. `shell`: the keys its vault holds;
/// `machine`: the agent machine's `held()`; `holders`: its task machines and the tasks its
/// last answer listed that were not started.
pub fn check_node<'a>(
    at: Millis,
    node: NodeId,
    shell: impl Iterator<Item = &'a FileKey>,
    machine: impl Iterator<Item = &'a FileKey>,
    holders: impl Iterator<Item = Holder>,
) -> Option<String> {
    let shell: BTreeSet<FileKey> = shell.copied().collect();
    let machine: BTreeSet<FileKey> = machine.copied().collect();
    if shell != machine {
        return Some(format!(
            "(p) at {at} ms node {node} holds {} files, its agent machine says {}",
            shell.len(),
            machine.len()
        ));
    }
    if shell.is_empty() {
        return None;
    }
    let named: BTreeSet<FileKey> = holders
        .filter(|h| h.node == Some(node) && !h.ended)
        .flat_map(|h| h.files)
        .collect();
    let stray: Vec<String> = shell
        .iter()
        .filter(|k| !named.contains(k))
        .map(|k| format!("{} {}", k.kind.as_str(), k.id))
        .collect();
    (!stray.is_empty()).then(|| {
        format!(
            "(p) at {at} ms node {node} holds {} that no task of its own that has not ended names",
            stray.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_actors::model::{FileKind, SecretId};

    fn key(id: u128) -> FileKey {
        FileKey {
            kind: FileKind::Secret,
            id: SecretId(id),
        }
    }

    #[test]
    fn a_file_no_live_task_of_the_node_names_is_a_violation() {
        let node = NodeId(2);
        let k1 = [key(1)];
        let holders = || {
            [
                Holder {
                    node: Some(node),
                    ended: false,
                    files: vec![key(1)],
                },
                Holder {
                    node: Some(node),
                    ended: true,
                    files: vec![key(2)],
                },
            ]
            .into_iter()
        };
        assert!(check_node(1, node, k1.iter(), k1.iter(), holders()).is_none());
        let both = [key(1), key(2)];
        let v = check_node(1, node, both.iter(), both.iter(), holders()).expect("stray");
        assert!(v.starts_with("(p) at 1 ms node"), "{v}");
        // The shell and the machine disagree.
        assert!(check_node(1, node, both.iter(), k1.iter(), holders()).is_some());
        // Another node's task does not count.
        let other = [Holder {
            node: Some(NodeId(3)),
            ended: false,
            files: vec![key(1)],
        }];
        assert!(check_node(1, node, k1.iter(), k1.iter(), other.into_iter()).is_some());
    }
}
