//! Control requests and responses.

use serde::{Deserialize, Serialize};
use swarm_actors::model::Role;
use swarm_actors::node::JoinTokensView;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    NodeLs,
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
    Nodes(Vec<NodeInfo>),
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
    pub labels: std::collections::BTreeMap<String, String>,
    pub nano_cpus: u64,
    pub memory_bytes: u64,
    pub runtimes: Vec<String>,
    pub description_version: u64,
    /// True for the node that answered.
    pub is_self: bool,
}
