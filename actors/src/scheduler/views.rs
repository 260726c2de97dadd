//! The scheduler's view of the cluster's nodes, built from the store's node objects and what
//! membership sees: the leader builds it for every pass, the control API for `node ls`-like
//! answers and the simulator's convergence check for its judgement.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::NodeView;
use crate::model::{NodeId, NodeResources, NodeState, Role};
use crate::store::NodeObject;

/// The empty labels of a node without a description.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// What a node membership does not see Ready is, to the leader.
#[derive(Clone, Copy, Debug)]
pub enum Unseen<'s> {
    /// Down: membership has had time to hear from everyone.
    Down,
    /// Unknown, except these, which membership itself declared Down. A leader that just
    /// started may not have heard from every node yet and must not orphan their tasks; a death
    /// membership confirmed is the same news to it as to a leader of long standing.
    DownOnly(&'s BTreeSet<NodeId>),
}

/// Builds the scheduler's view of every node from the store's node objects and the nodes
/// membership sees Ready; a node it does not see is `Down` or `Unknown` as [`Unseen`] says.
/// The views borrow the objects' strings and maps.
pub fn node_views<'a>(
    nodes: impl IntoIterator<Item = &'a NodeObject>,
    ready: &BTreeSet<NodeId>,
    unseen: Unseen<'_>,
) -> Vec<NodeView<'a>> {
    nodes
        .into_iter()
        .map(|n| {
            let state = match unseen {
                _ if ready.contains(&n.id) => NodeState::Ready,
                Unseen::Down => NodeState::Down,
                Unseen::DownOnly(down) if down.contains(&n.id) => NodeState::Down,
                Unseen::DownOnly(_) => NodeState::Unknown,
            };
            let d = n.description.as_ref();
            NodeView {
                id: n.id,
                hostname: Cow::Borrowed(d.map_or("", |d| d.hostname.as_str())),
                role: if n.raft_id.is_some() {
                    Role::Manager
                } else {
                    n.spec.role
                },
                availability: n.spec.availability,
                // Without a description the node cannot be judged: it takes nothing new.
                state: match (d, state) {
                    (None, NodeState::Ready) => NodeState::Unknown,
                    (_, s) => s,
                },
                labels: Cow::Borrowed(&n.spec.labels),
                engine_labels: Cow::Borrowed(d.map_or(&NO_LABELS, |d| &d.labels)),
                runtimes: Cow::Borrowed(d.map_or(&[], |d| d.runtimes.as_slice())),
                resources: d.map(|d| d.resources.clone()).unwrap_or(NodeResources {
                    nano_cpus: 0,
                    memory_bytes: 0,
                }),
            }
        })
        .collect()
}
