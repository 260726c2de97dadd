//! What a [`super::StoreMachine`] takes and gives: how it starts, its inputs, its effects and
//! its counters. Plain data, shared by the machine, the StoreActor, the router and the
//! simulator.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::state::StoreCommand;
use crate::model::NodeId;

/// How a machine starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A new cluster whose only voter is this manager (its node ID and address go into the log
    /// so that later members learn them). The storage must be empty.
    NewCluster { node_id: NodeId, addr: SocketAddr },
    /// Empty: wait for the leader, which has added us with `AddVoter`, to send a snapshot.
    Join,
    /// From what the storage holds.
    Restart,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StoreInput {
    Tick,
    /// An encoded raft message from a peer.
    /// A raft message, and the raft ID of the voter the transport proved sent it: a message
    /// that claims another sender is refused.
    Message {
        from: u64,
        bytes: Vec<u8>,
    },
    Propose {
        req: u64,
        cmd: StoreCommand,
    },
    /// Asks when a linearizable read of the local state may proceed.
    ReadIndex {
        req: u64,
    },
    AddVoter {
        req: u64,
        raft_id: u64,
        node_id: NodeId,
        addr: SocketAddr,
    },
    RemoveVoter {
        req: u64,
        raft_id: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum StoreEffect {
    Send {
        to: u64,
        msg: Vec<u8>,
    },
    /// A committed entry was applied; `req` is set on the manager that proposed it.
    Applied {
        req: Option<u64>,
        index: u64,
        result: Result<(), StoreError>,
    },
    /// The local state has caught up with the leader's commit index at the time of the read.
    ReadReady {
        req: u64,
        index: u64,
    },
    Refused {
        req: u64,
        error: StoreError,
    },
    LeaderChanged {
        leader: Option<u64>,
        term: u64,
    },
    VotersChanged(Vec<u64>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    pub raft_id: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied_index: u64,
    pub commit_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub pending_proposals: usize,
    pub pending_reads: usize,
    pub entries_applied: u64,
    pub snapshots_made: u64,
    pub snapshots_installed: u64,
    /// Peer messages that did not decode, were not for us, or raft refused; each changed
    /// nothing.
    pub messages_refused: u64,
    pub requests_refused: u64,
}
