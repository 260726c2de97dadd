//! Messages the NodeActor takes: from the transport, from its own timers, and from the control
//! API and the admin shell.

use std::net::SocketAddr;

use bytes::Bytes;
use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::membership::{MemberView, MembershipStats, MembershipTimer};
use crate::model::{NodeDescription, Role};
use crate::trust::PeerIdentity;
use crate::wire::{Request, Response};

pub enum NodeMsg {
    /// Gossip from a peer.
    Datagram {
        from: PeerIdentity,
        remote: SocketAddr,
        data: Bytes,
        slot: InFlight,
    },
    /// A request from a peer (or, for `Join`, from a node without a certificate yet).
    Request {
        from: Option<PeerIdentity>,
        remote: SocketAddr,
        req: Request,
        reply: oneshot::Sender<Response>,
        slot: InFlight,
    },
    /// A one-way message from a peer (raft traffic for managers).
    OneWay {
        from: PeerIdentity,
        remote: SocketAddr,
        msg: crate::wire::OneWay,
        slot: InFlight,
    },
    /// A membership timer came due.
    Timer(MembershipTimer),
    /// Time to renew this node's certificate.
    RenewCertificate,
    /// The outcome of a renewal carried out off the actor.
    Renewed(Result<Box<crate::trust::NodeCredentials>, String>),
    Describe(RpcReplyPort<NodeDescription>),
    Members(RpcReplyPort<Vec<MemberView>>),
    JoinTokens(RpcReplyPort<Result<JoinTokensView, String>>),
    RotateToken(Role, RpcReplyPort<Result<JoinTokensView, String>>),
    Stats(RpcReplyPort<NodeStats>),
    /// The manager's store handle, if this node is a manager.
    Store(RpcReplyPort<Option<crate::replica::StoreHandle>>),
    /// Sends a request to a peer and hands back its answer (for the control API).
    Ask {
        addr: SocketAddr,
        req: Request,
        reply: RpcReplyPort<Result<Response, String>>,
    },
    /// Where the store stands changed (term, leading, leader's address): the leader actor is
    /// started or stopped to match (see `leadership`).
    StoreProgress(crate::replica::Progress),
    /// The store was started (promotion) or stopped (demotion) off the actor.
    StoreChanged(Option<crate::replica::StoreHandle>),
    /// Refuse a removed node from now on, here and (through one-way messages) on every member.
    Deny(crate::model::NodeId, RpcReplyPort<()>),
    /// Leave the cluster politely before shutting down.
    Leave(RpcReplyPort<()>),
    /// Time to ask which root CA to trust and whether to renew now (root rotation).
    TrustCheck,
    /// The answer to a trust check, carried out off the actor.
    TrustSeen(Result<crate::wire::TrustView, String>),
    /// `swarm ca`: the root CA and the rotation's progress; `rotate` starts a rotation first.
    Ca {
        rotate: bool,
        port: RpcReplyPort<Result<CaView, String>>,
    },
}

/// A place in the bounded set of inbound messages waiting for the actor; the place is freed
/// when the message is dropped, that is once the actor has handled it.
pub struct InFlight(pub Option<tokio::sync::OwnedSemaphorePermit>);

/// The join tokens and the address to give them with, for `swarm join-token`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokensView {
    pub worker: String,
    pub manager: String,
    pub addr: SocketAddr,
}

/// The cluster's root CA as `swarm ca` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaView {
    /// The root certificate nodes trust, PEM.
    pub root_pem: String,
    /// The root rotation under way, if any.
    pub rotation: Option<RotationView>,
}

/// How far a root rotation has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationView {
    /// "certs": nodes are being re-issued certificates under the new root; "roots": nodes are
    /// switching their trust to the new root.
    pub phase: String,
    /// Live nodes that have renewed in this phase, of `total` live nodes.
    pub done: usize,
    pub total: usize,
}

/// Counters for the admin shell and benchmarks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStats {
    pub membership: MembershipStats,
    pub requests_served: u64,
    pub joins_admitted: u64,
    pub joins_refused: u64,
    pub certificate_not_after_unix: u64,
}

/// The NodeActor's messages as the admin shell names them (`send node/<id> Describe`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NodeAdmin {
    Describe,
    Members,
    Stats,
    JoinTokens,
    RotateToken { role: Role },
}

impl NodeAdmin {
    pub const NAMES: &'static [&'static str] =
        &["Describe", "Members", "Stats", "JoinTokens", "RotateToken"];
}
