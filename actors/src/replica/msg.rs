//! Messages the StoreActor takes.

use std::net::SocketAddr;

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::chunks::RaftChunk;
use crate::model::NodeId;
use crate::store::{Kind, StoreCommand, StoredObject};
use crate::wire::Response;
pub use crate::wire::StoreFailure;

pub enum StoreMsg {
    /// Time passes for raft.
    Tick,
    /// A piece of a raft message from a peer, and the address it came from (a node's one QUIC
    /// endpoint both listens and sends, so this is where it can be reached).
    Raft {
        chunk: RaftChunk,
        remote: SocketAddr,
        /// Who sent it, as its certificate proves: raft is taken only from a current voter,
        /// and only under that voter's own raft ID.
        from: crate::trust::PeerIdentity,
    },
    /// Commit a command; the answer is the raft index it was applied at.
    Propose {
        cmd: StoreCommand,
        reply: RpcReplyPort<Result<u64, StoreFailure>>,
    },
    /// An operation another manager forwarded to us as the leader.
    Forwarded {
        op: crate::wire::StoreRequest,
        /// Who sent it: refused unless a voter.
        from: NodeId,
        reply: oneshot::Sender<Response>,
    },
    /// Objects of one kind; `linearizable` waits for a read index from the leader first.
    Read {
        kind: Kind,
        linearizable: bool,
        reply: RpcReplyPort<Result<ReadResult, StoreFailure>>,
    },
    /// Makes a node a voter (its raft ID, node ID and address).
    AddVoter {
        raft_id: u64,
        node_id: NodeId,
        addr: SocketAddr,
        reply: RpcReplyPort<Result<u64, StoreFailure>>,
    },
    RemoveVoter {
        raft_id: u64,
        reply: RpcReplyPort<Result<u64, StoreFailure>>,
    },
    /// A follower asks us, as the leader, for a read index.
    ForwardedRead {
        from: NodeId,
        reply: oneshot::Sender<Response>,
    },
    Status(RpcReplyPort<Result<StoreStatus, StoreFailure>>),
    /// Membership's view of every node: who is Ready tells "no quorum: 1 of 3 managers
    /// reachable", and who is Down which forwards to abandon.
    Members(Vec<crate::membership::MemberView>),
    /// Ask raft again for a request that found no leader, or its leader Down (see
    /// `LEADER_DOWN_RETRY_MS`).
    Retry {
        req: u64,
    },
    /// A forward's outcome came back: the raft index a write was applied at, or the read
    /// index the leader gave.
    ForwardDone {
        req: u64,
        /// Which forward of the operation answered.
        forward: u64,
        result: Result<u64, StoreFailure>,
    },
}

/// Objects read from the store, and whether they may be out of date.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadResult {
    pub objects: Vec<StoredObject>,
    /// True when the read was served from the local replica without a leader to confirm it.
    pub stale: bool,
    pub applied_index: u64,
}

/// The store as this manager sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub raft_id: u64,
    pub leader: Option<u64>,
    /// The leader's node ID when it is known.
    pub leader_node: Option<NodeId>,
    pub term: u64,
    /// Voters: raft ID, node ID, address.
    pub voters: Vec<(u64, NodeId, SocketAddr)>,
    pub applied_index: u64,
}
