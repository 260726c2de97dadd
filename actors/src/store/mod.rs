//! The cluster store: the managers' Raft-replicated log and the state machine it feeds, the
//! single source of truth for every cluster object. Sans-IO, like membership.
//!
//! ```text
//!   StoreInput ──► StoreMachine::handle ──► Vec<StoreEffect>
//!      Tick, peer message,      │  raft-rs RawNode (election, replication, read index)
//!      Propose, ReadIndex,      │  LogStorage: entries + hard state synced before sending
//!      Add/RemoveVoter          ▼
//!                         StoreState: objects by (kind, id), versions for compare-and-set
//! ```
//!
//! The node actor feeds the machine ticks (every `tick_ms`), peers' raft messages and client
//! requests, and carries out its effects: send these bytes to raft peer N, this request was
//! applied (or refused), this read may proceed, the leader changed. Raft IDs are u64s the
//! integrator assigns; the voters' node IDs and addresses travel inside the log.
//!
//! # Layout
//!
//! | file | what |
//! |---|---|
//! | `state.rs` | [`StoreState`]: objects, commands, compare-and-set, snapshots |
//! | `codec.rs` | raft messages, commands and voter changes to and from bytes |
//! | `storage.rs` | [`LogStorage`], the in-memory [`MemStorage`], forced recovery |
//! | `redb.rs` | [`RedbStorage`]: the durable log in redb, sealed at rest |
//! | `lock.rs` | the data key's file, plain or sealed under the unlock key (autolock) |
//! | `config.rs` | [`StoreConfig`]: timings and bounds, validated once |
//! | `events.rs` | [`StoreInput`], [`StoreEffect`], [`Bootstrap`], [`StoreStats`]: what the machine takes and gives |
//! | `machine.rs` | [`StoreMachine`]: the Ready loop, proposals, reads, voter changes |

// raft-rs's protobuf types are built field by field, as its own examples do.
#![allow(clippy::field_reassign_with_default)]

mod codec;
mod config;
mod events;
pub mod lock;
mod machine;
mod redb;
mod state;
mod storage;

#[cfg(test)]
mod tests;

pub use codec::{
    COMMAND_BYTES_MAX, Decoded, MESSAGE_BYTES_MAX, decode_entry, decode_message, encode_message,
};
pub use config::StoreConfig;
pub use events::{Bootstrap, StoreEffect, StoreInput, StoreStats};
pub use machine::StoreMachine;
pub use redb::RedbStorage;
pub use state::{
    CLUSTER_ID, ClusterObject, Expect, Kind, Member, NodeObject, NodeSpec, OBJECT_ID_BYTES_MAX,
    OPS_PER_COMMAND_MAX, ObjectBody, Op, RootRotation, RotationPhase, SNAPSHOT_BYTES_MAX,
    StoreCommand, StoreState, StoredObject, check_command,
};
pub use storage::{LogStorage, MemStorage, force_new_cluster};

use serde::{Deserialize, Serialize};

/// Why the store refused or failed something. Each variant says whether anything changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error(
        "update out of sequence: {kind:?} {id:?} is at version {actual}, not {expected}; nothing changed"
    )]
    OutOfSequence {
        kind: Kind,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("{kind:?} {id:?} not found; nothing changed")]
    NotFound { kind: Kind, id: String },
    #[error("{kind:?} {id:?} already exists; nothing changed")]
    Exists { kind: Kind, id: String },
    #[error("invalid request: {0}; nothing changed")]
    Invalid(String),
    #[error("command too large (over {max} bytes): {detail}; nothing changed")]
    CommandTooLarge { detail: String, max: usize },
    /// A snapshot (the whole store state) over [`SNAPSHOT_BYTES_MAX`], or one whose
    /// length prefixes claim more: refused before anything is allocated for it or installed.
    #[error("store snapshot too large (over {max} bytes): {detail}; nothing changed")]
    SnapshotTooLarge { detail: String, max: usize },
    #[error("this manager is not the leader (leader: {leader:?}); nothing changed")]
    NotLeader { leader: Option<u64> },
    #[error(
        "the store is busy (too many requests in flight, or a voter change pending); nothing changed"
    )]
    Busy,
    #[error(
        "leadership was lost before the request was answered (new leader: {leader:?}); it may still commit: read before retrying"
    )]
    LeadershipLost { leader: Option<u64> },
    #[error("the request was not answered in time; it may still commit: read before retrying")]
    Timeout,
    #[error("encoding: {0}")]
    Codec(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("store config: {field} {reason}")]
    Config {
        field: &'static str,
        reason: &'static str,
    },
    #[error("the store stopped after a storage failure: {0}")]
    Failed(String),
}
