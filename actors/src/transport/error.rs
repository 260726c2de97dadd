//! The transport's errors. Each says what failed; none of them leaves state half-changed: a
//! failed request was either not delivered or its answer was lost, and the caller decides
//! whether to ask again.

use std::net::SocketAddr;

use crate::trust::TrustError;
use crate::wire::{WireError, WireFailure};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid transport configuration: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("credentials: {0}")]
    Trust(#[from] TrustError),
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error(
        "the seed {addr} is node {node}, a {role}: only a manager's certificate may receive a join token, so the token was not sent"
    )]
    SeedNotAManager {
        addr: SocketAddr,
        node: crate::model::NodeId,
        role: crate::model::Role,
    },
    #[error("connection to {addr} failed: {reason}")]
    Connection { addr: SocketAddr, reason: String },
    #[error("no answer within the deadline")]
    Timeout,
    #[error("the peer's send queue is full")]
    QueueFull,
    #[error("{0} peers already have send queues, the most allowed")]
    TooManyPeers(usize),
    #[error("datagram of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame: {0}")]
    Wire(#[from] WireError),
    #[error("refused by the peer: {0}")]
    Refused(WireFailure),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    #[error("the transport is shut down")]
    ShutDown,
}
