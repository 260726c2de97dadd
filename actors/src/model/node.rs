//! What a node says about itself, and what the cluster says about it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::NodeId;

/// A node's role. Every node runs tasks; managers also hold the cluster store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Role {
    Worker,
    Manager,
}

impl Role {
    /// The organisational unit written in certificates, as SwarmKit names it.
    pub fn cert_ou(self) -> &'static str {
        match self {
            Role::Worker => "swarm-worker",
            Role::Manager => "swarm-manager",
        }
    }

    pub fn from_cert_ou(ou: &str) -> Option<Role> {
        match ou {
            "swarm-worker" => Some(Role::Worker),
            "swarm-manager" => Some(Role::Manager),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Worker => "worker",
            Role::Manager => "manager",
        })
    }
}

/// Whether the scheduler may place tasks on a node (`node update --availability`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Availability::Active => "Active",
            Availability::Pause => "Pause",
            Availability::Drain => "Drain",
        })
    }
}

/// The STATUS column of `node ls`, as this node's membership view has it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum NodeState {
    Ready,
    Down,
    Unknown,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Ready => "Ready",
            NodeState::Down => "Down",
            NodeState::Unknown => "Unknown",
        })
    }
}

/// What a node offers to tasks.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct NodeResources {
    /// CPUs in billionths, as Docker counts them (`NanoCPUs`).
    pub nano_cpus: u64,
    pub memory_bytes: u64,
}

/// Most labels a node may carry.
pub const LABELS_MAX: usize = 64;
/// Most bytes of one label's key plus value.
pub const LABEL_BYTES_MAX: usize = 256;
/// Most bytes of a hostname.
pub const HOSTNAME_BYTES_MAX: usize = 253;

/// A node's self-description. It travels with membership gossip, so its size is bounded
/// (see [`NodeDescription::validate`]); `version` grows with every change so that newer
/// descriptions replace older ones everywhere.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeDescription {
    pub id: NodeId,
    pub hostname: String,
    /// Where the node's QUIC endpoint listens.
    pub addr: SocketAddr,
    pub role: Role,
    pub resources: NodeResources,
    pub labels: BTreeMap<String, String>,
    /// Task runtimes this node can run: `process` always, `docker` when the engine answers.
    pub runtimes: Vec<String>,
    /// The Docker Engine's version when there is one, else the swarm-node version.
    pub engine_version: String,
    pub version: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeDescriptionError {
    #[error("a node may carry at most {LABELS_MAX} labels, this one has {0}")]
    TooManyLabels(usize),
    #[error("label {0:?} is longer than {LABEL_BYTES_MAX} bytes")]
    LabelTooLong(String),
    #[error(
        "label key {0:?} is empty or has characters other than letters, digits, '.', '-', '_', '/'"
    )]
    BadLabelKey(String),
    #[error("hostname {0:?} is empty or longer than {HOSTNAME_BYTES_MAX} bytes")]
    BadHostname(String),
}

impl NodeDescription {
    /// Checks the bounds that keep a description small enough to gossip.
    pub fn validate(&self) -> Result<(), NodeDescriptionError> {
        if self.hostname.is_empty() || self.hostname.len() > HOSTNAME_BYTES_MAX {
            return Err(NodeDescriptionError::BadHostname(self.hostname.clone()));
        }
        if self.labels.len() > LABELS_MAX {
            return Err(NodeDescriptionError::TooManyLabels(self.labels.len()));
        }
        for (k, v) in &self.labels {
            validate_label(k, v)?;
        }
        Ok(())
    }
}

/// Checks one label's key and size.
pub fn validate_label(key: &str, value: &str) -> Result<(), NodeDescriptionError> {
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
    if !key_ok {
        return Err(NodeDescriptionError::BadLabelKey(key.to_string()));
    }
    if key.len() + value.len() > LABEL_BYTES_MAX {
        return Err(NodeDescriptionError::LabelTooLong(key.to_string()));
    }
    Ok(())
}
