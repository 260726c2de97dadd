//! The small file that makes a restarted node the same node: boot counter and known peers.
//!
//! Credentials live beside it (see `trust`); this file holds what membership needs to find the
//! cluster again and to come back with a newer identity than any it used before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most peer addresses remembered for rejoining.
pub const PEERS_MAX: usize = 1_000;

const FILE: &str = "node.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// Incremented at every start; becomes the membership identity's bump, so the cluster tells
    /// this run from the last one.
    pub boots: u64,
    /// Addresses to announce to at start: the join seed and every peer seen since.
    pub peers: Vec<SocketAddr>,
    /// This node's raft ID while it is a manager.
    #[serde(default)]
    pub raft_id: Option<u64>,
    /// Nodes removed from the cluster, refused at every handshake.
    #[serde(default)]
    pub denied: Vec<crate::model::NodeId>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeFileError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid node file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl NodeFile {
    pub fn load(dir: &Path) -> Result<NodeFile, NodeFileError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| NodeFileError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeFile::default()),
            Err(source) => Err(NodeFileError::Io { path, source }),
        }
    }

    /// Writes the file atomically (a temporary file renamed over the old one).
    pub fn save(&self, dir: &Path) -> Result<(), NodeFileError> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("a NodeFile always serializes");
        std::fs::write(&tmp, bytes).map_err(|source| NodeFileError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| NodeFileError::Io { path, source })
    }

    /// Adds peers, newest last, keeping at most [`PEERS_MAX`] and no duplicates.
    pub fn remember(&mut self, peers: impl IntoIterator<Item = SocketAddr>) -> bool {
        let before = self.peers.clone();
        for p in peers {
            self.peers.retain(|q| *q != p);
            self.peers.push(p);
        }
        let excess = self.peers.len().saturating_sub(PEERS_MAX);
        self.peers.drain(..excess);
        before != self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds_peers() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = NodeFile::load(dir.path()).unwrap();
        assert_eq!(f, NodeFile::default());
        f.boots = 3;
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(f.remember([a, a]));
        assert!(!f.remember([a]));
        f.save(dir.path()).unwrap();
        assert_eq!(NodeFile::load(dir.path()).unwrap(), f);

        let many = (0..PEERS_MAX as u16 + 5).map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        f.remember(many);
        assert_eq!(f.peers.len(), PEERS_MAX);
    }

    #[test]
    fn refuses_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(matches!(
            NodeFile::load(dir.path()),
            Err(NodeFileError::Parse { .. })
        ));
    }
}
