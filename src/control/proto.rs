//! Control requests and responses.

use serde::{Deserialize, Serialize};
use swarm_actors::model::{Availability, Role};
use swarm_actors::node::JoinTokensView;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    NodeLs,
    /// `node update`: availability, labels; compare-and-set on the node's version.
    NodeUpdate {
        node: String,
        availability: Option<Availability>,
        label_add: Vec<(String, String)>,
        label_rm: Vec<String>,
    },
    NodeRm {
        node: String,
        force: bool,
    },
    /// `node promote` (manager = true) and `node demote`.
    NodeRole {
        node: String,
        manager: bool,
    },
    JoinToken {
        role: Role,
        rotate: bool,
    },
    Actors,
    /// Sends a typed message to a named actor; `args` is JSON text ("" for none).
    Send {
        actor: String,
        msg: String,
        args: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Nodes, and whether the list came from a replica that could not confirm it is current.
    Nodes {
        nodes: Vec<NodeInfo>,
        stale: bool,
    },
    /// A write went through; the text says what changed.
    Done(String),
    Tokens(JoinTokensView),
    Actors(Vec<(String, Vec<String>)>),
    /// An actor's answer, as JSON text.
    Reply(String),
    Error(String),
}

/// One node as the answering node sees it: what `node ls` and `node inspect` show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub status: String,
    pub availability: String,
    pub role: String,
    /// "Leader", "Reachable", "Unreachable" for managers; empty for workers.
    pub manager_status: String,
    pub engine_version: String,
    pub addr: String,
    /// The node's own labels (`start --label`), Docker's engine labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Labels set with `node update --label-add`.
    pub node_labels: std::collections::BTreeMap<String, String>,
    pub nano_cpus: u64,
    pub memory_bytes: u64,
    pub runtimes: Vec<String>,
    pub description_version: u64,
    /// The node object's version in the store (what `node update` compares), 0 if unknown.
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// True for the node that answered.
    pub is_self: bool,
}

/// Finds a node by full ID, unique ID prefix, hostname, or `self`.
pub fn resolve<'a>(nodes: &'a [NodeInfo], name: &str) -> Result<&'a NodeInfo, String> {
    if name == "self" {
        return nodes
            .iter()
            .find(|n| n.is_self)
            .ok_or_else(|| "the answering node is not in its own list".to_string());
    }
    if let Some(n) = nodes.iter().find(|n| n.id == name) {
        return Ok(n);
    }
    let by_host: Vec<_> = nodes.iter().filter(|n| n.hostname == name).collect();
    if by_host.len() == 1 {
        return Ok(by_host[0]);
    }
    let by_prefix: Vec<_> = nodes.iter().filter(|n| n.id.starts_with(name)).collect();
    match (by_prefix.len(), by_host.len()) {
        (1, _) => Ok(by_prefix[0]),
        (0, 0) => Err(format!("no such node: {name}")),
        _ => Err(format!("node {name} is ambiguous: give more of its ID")),
    }
}
