//! Each node's answer, rebuilt after a pass from the tasks as they will be once its writes
//! landed: the list of the node's tasks (cut as `wire::answer` says), kept with the tasks it
//! was made from so that the next pass reuses it when they are the same objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{debug, warn};

use super::LeaderMachine;
use crate::model::{NodeId, ServiceId, Task, TaskId};
use crate::wire::Assignment;
use crate::wire::answer;

/// One node's answer, kept with the tasks it was made from: the next pass reuses it when its
/// node's tasks are the same objects (copying every answer on every pass cost more than the
/// plan at 1,000 nodes).
pub(super) struct NodeAnswer {
    pub(super) from: Vec<Arc<Task>>,
    pub(super) list: Arc<[Assignment]>,
}

impl LeaderMachine {
    /// Each node's answer from the tasks as they are, reusing the last one where its node's
    /// tasks are the same objects.
    pub(super) fn rebuild_answers(&mut self, current: &BTreeMap<TaskId, Arc<Task>>) {
        let mut by_node: BTreeMap<NodeId, Vec<Arc<Task>>> = BTreeMap::new();
        self.task_node.clear();
        for t in current.values() {
            if let Some(node) = t.node_id {
                self.task_node.insert(t.id, node);
                by_node.entry(node).or_default().push(Arc::clone(t));
            }
        }
        let names: BTreeMap<ServiceId, &str> = self
            .services
            .iter()
            .map(|s| (s.id, s.spec.name.as_str()))
            .collect();
        let name = |t: &Task| names.get(&t.service_id).copied().unwrap_or("");
        let mut before = std::mem::take(&mut self.answers);
        for (node, from) in by_node {
            let same = before.remove(&node).filter(|a| {
                a.from.len() == from.len()
                    && a.from.iter().zip(&from).all(|(a, b)| Arc::ptr_eq(a, b))
            });
            if let Some(a) = same {
                self.answers.insert(node, a);
                continue;
            }
            let (listed, cut) = answer::session_answer(from.clone(), name);
            if cut.live_over {
                // Listed anyway: leaving a live task out would stop it (see `answer`).
                warn!(%node, tasks = listed.len(), "the node's live tasks pass the answer's byte bound");
            }
            if cut.history_left_out > 0 {
                debug!(%node, left_out = cut.history_left_out, "old task history left out of the node's answer");
            }
            let list = listed
                .iter()
                .map(|t| Assignment {
                    task: (**t).clone(),
                    service_name: name(t).to_string(),
                })
                .collect();
            self.answers.insert(node, NodeAnswer { from, list });
        }
    }
}
