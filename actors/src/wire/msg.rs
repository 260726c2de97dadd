//! The messages nodes send each other over the transport.
//!
//! Requests travel on bidirectional streams and get exactly one [`Response`]; one-way messages
//! travel on unidirectional streams; membership gossip travels as QUIC datagrams, not frames:
//! a tag byte (foca packet, node description, or description digest) then the membership
//! layer's own encoding (see `membership::codec` and `membership::machine`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::LogLine;
use crate::model::{
    FileKey, FileMaterial, NodeDescription, NodeId, Role, Task, TaskId, TaskStatus,
};

/// A request from one node to another. Every variant but [`Request::Join`] needs a mutual-TLS
/// connection; `Join` is the one thing a node without a certificate may ask.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Join(JoinRequest),
    /// A node asks for a fresh certificate for its own ID and role before the old one expires.
    Renew(RenewRequest),
    /// Asks the peer for its current self-description.
    Describe,
    Ping,
    /// A manager forwards a store operation to the leader.
    Store(StoreRequest),
    /// A manager tells a node its role changed in the store (`node promote` / `node demote`):
    /// become a voter with this raft ID, or stop being one.
    SetRole {
        raft_id: Option<u64>,
    },
    /// A node's session with the dispatcher on the leader: the statuses of its tasks that
    /// changed (at most [`SESSION_STATUSES_MAX`]); the answer is the node's assignments.
    Session(SessionReport),
    /// The last lines of these tasks' output, as the node that runs them keeps them.
    Logs {
        tasks: Vec<TaskId>,
        tail: usize,
    },
    /// A node asks a manager which root to trust and whether to renew now (a root rotation
    /// is under way and it has not renewed in the current phase). Sent every
    /// `node::rotation::TRUST_CHECK_INTERVAL`.
    Trust,
    /// Opens a routing-mesh tunnel to a task of the answering node (see `wire::mesh`): the
    /// answer is `TunnelOpen` or `Failed`, and after `TunnelOpen` the stream carries the
    /// connection's bytes.
    Tunnel(super::TunnelRequest),
    /// Removes the answering node's named volumes labelled `label=value` that none of its
    /// tasks uses (`stack rm`: the stack's namespace label). Managers only.
    RemoveVolumes {
        label: String,
        value: String,
    },
}

/// Most task statuses in one session report; more wait for the next one.
pub const SESSION_STATUSES_MAX: usize = 1_000;

/// Most assignments in one answer: a node runs at most this many tasks (history included).
pub const ASSIGNMENTS_MAX: usize = 2_000;

/// Most tasks one logs request names.
pub const LOG_TASKS_MAX: usize = 256;

/// Most bytes of log text in one answer, so that it fits a frame with room to spare.
pub const LOG_REPLY_BYTES_MAX: usize = 512 * 1024;

/// Most secrets and configs a node says it holds in one report (the leader sends again what
/// it does not list).
pub const SESSION_HELD_MAX: usize = 4_096;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionReport {
    pub statuses: Vec<(TaskId, TaskStatus)>,
    /// The secrets and configs the node holds, at most [`SESSION_HELD_MAX`]: the leader sends
    /// only the ones its tasks need and it lacks.
    pub held: Vec<FileKey>,
    /// The version of the routing mesh's table the node holds (0: none); the answer carries
    /// the table when the leader's differs.
    pub mesh_version: u64,
}

/// One task the leader wants a node to run (or stop: see `task.desired_state`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Assignment {
    pub task: Task,
    pub service_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreRequest {
    Propose(crate::store::StoreCommand),
    /// A follower asks the leader for a read index (linearizable reads).
    ReadIndex,
    AddVoter {
        raft_id: u64,
        node_id: NodeId,
        addr: SocketAddr,
    },
    RemoveVoter {
        raft_id: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoreReply {
    Applied { index: u64 },
    ReadIndex { index: u64 },
    Failed(super::StoreFailure),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `SWMTKN-1-<ca digest>-<secret>`.
    pub token: String,
    /// A PKCS#10 certificate signing request, DER, for the key the node just made.
    pub csr_der: Vec<u8>,
    pub hostname: String,
    /// Where the joining node's own endpoint listens, so others can reach it.
    pub addr: SocketAddr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: NodeId,
    pub role: Role,
    pub cert_der: Vec<u8>,
    pub ca_cert_der: Vec<u8>,
    /// Addresses of live members to announce to, the answering node first.
    pub peers: Vec<SocketAddr>,
    /// Set for a manager: its raft ID, already added as a voter.
    pub raft_id: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_der: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Joined(JoinResponse),
    Renewed {
        cert_der: Vec<u8>,
        /// Certificates between `cert_der` and the root: the new root cross-signed by the old
        /// one during a root rotation, else none.
        intermediates: Vec<Vec<u8>>,
    },
    Trust(TrustView),
    Description(NodeDescription),
    Pong,
    Store(StoreReply),
    /// The node's assignments, complete: a task not listed is no longer this node's; and the
    /// managers the store names now, so that the node stops obeying a demoted one
    /// (`trust::authz`).
    Assignments {
        tasks: Vec<Assignment>,
        managers: Vec<NodeId>,
        /// The data of secrets and configs the listed tasks need and the node said it lacks,
        /// at most `answer::FILES_ANSWER_BYTES_MAX` (the rest come with the next answers).
        files: Vec<FileMaterial>,
        /// The routing mesh's table, when the node's `mesh_version` is not the leader's.
        mesh: Option<super::MeshTable>,
    },
    /// A tunnel is open: the stream now carries the connection's bytes.
    TunnelOpen,
    /// This manager does not lead; the leader is there, when known.
    NotLeader {
        leader: Option<SocketAddr>,
    },
    /// Lines per task, oldest first; tasks this node does not know are left out.
    Logs(Vec<(TaskId, Vec<LogLine>)>),
    /// What [`Request::RemoveVolumes`] did on the answering node: the volumes removed, and
    /// those left because a task of the node uses them.
    VolumesRemoved {
        removed: Vec<String>,
        in_use: Vec<String>,
    },
    Failed(WireFailure),
}

/// A manager's answer to [`Request::Trust`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustView {
    /// The cluster's root certificate (DER): the node trusts it from now on if its own
    /// certificate chains to it.
    pub root_der: Vec<u8>,
    /// Renew now: a root rotation is under way and this node has not renewed in its phase.
    pub renew: bool,
}

/// Why a request was refused. Each says nothing changed on the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireFailure {
    #[error("join refused: the token is not valid for this cluster (wrong, or rotated)")]
    BadToken,
    #[error("join refused: the token's CA digest does not match this cluster's CA")]
    WrongCa,
    #[error("join refused: this node holds no CA key; ask a manager at {0:?}")]
    NotAManager(Vec<SocketAddr>),
    #[error("refused: the request needs a node certificate")]
    Unauthenticated,
    #[error("refused: {0}")]
    Invalid(String),
    #[error("the node is busy, try again")]
    Busy,
    /// A routing-mesh tunnel could not reach its task; the sender tries another.
    #[error("the task cannot be reached: {0}")]
    Unreachable(String),
}

/// One-way messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum OneWay {
    /// Keeps the connection's path warm; carries nothing.
    Nop,
    /// A piece of a raft message between managers.
    Raft(super::RaftChunk),
    /// A manager tells every node that a node was removed: refuse it from now on.
    Removed(NodeId),
    /// The leader changed this node's assignments: open a session now.
    Poke,
}
