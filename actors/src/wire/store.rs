//! What the store's traffic carries between nodes: a raft message's chunks, and the failure a
//! store operation answers with. Plain data, so that the wire names them without depending on
//! the StoreActor that produces them.

use serde::{Deserialize, Serialize};

/// One piece of a raft message cut to fit a transport frame (see `replica::chunks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftChunk {
    /// The sender's raft ID.
    pub from: u64,
    /// Numbers the sender's messages, so chunks of different messages do not mix.
    pub message: u64,
    pub index: u32,
    pub total: u32,
    pub bytes: Vec<u8>,
}

/// Why a store operation did not happen, and whether a write may have committed anyway: only
/// [`StoreFailure::MayHaveCommitted`] says it may (see [`StoreFailure::may_have_committed`]);
/// every other variant says nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StoreFailure {
    #[error("no quorum: {reachable} of {voters} managers reachable; nothing was written")]
    NoQuorum { reachable: usize, voters: usize },
    /// No leader, and a majority of managers reachable: one is being elected.
    #[error("no store leader yet (an election is under way); nothing was written: try again")]
    ElectionUnderWay,
    /// Refused before it reached raft; the reason says why.
    #[error("{0}")]
    Refused(String),
    /// A compare-and-set lost to another write of the same object: read it again, then retry.
    #[error("{0}")]
    OutOfSequence(String),
    #[error("the store is busy; nothing was written: try again")]
    Busy,
    /// Not answered in time, and the request never reached a leader (or was a read).
    #[error("the store did not answer in time; nothing was written")]
    Timeout,
    /// The write reached a leader and then its answer was lost (a timeout, lost leadership, a
    /// leader that stopped answering): it may still commit. Read before retrying.
    #[error("{0}")]
    MayHaveCommitted(String),
}

impl StoreFailure {
    /// Whether the write this failure answers may have committed all the same.
    pub fn may_have_committed(&self) -> bool {
        matches!(self, StoreFailure::MayHaveCommitted(_))
    }
}
