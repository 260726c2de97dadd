//! The QUIC transport: one mutual-TLS connection per peer address, reused by every exchange.
//!
//! ```text
//!  Transport::request ──► connection(addr) ──► bidi stream: Request frame ─► Response frame
//!  Transport::send_oneway ──► peer queue ─┐
//!  Transport::send_datagram ──► peer queue ┴► peer task ──► uni stream / QUIC datagram
//!
//!  accept ──► handshake ──► serve(conn) ──► bidi: Inbound::Request (+ reply port)
//!                                       ├─► bidi Request::Tunnel: InboundTunnel ─► the mesh
//!                                       ├─► uni:  Inbound::OneWay   (authenticated only)
//!                                       └─► datagram: Inbound::Datagram (authenticated only)
//! ```
//!
//! Connections are symmetric: either side may open streams on a connection, whoever dialled,
//! so a peer that connected to us is answered on its own connection. A peer without a
//! certificate (a node that is joining) may send one `Request::Join` and nothing else: its
//! connection counts against `unauthenticated_connections_max`, not `connections_max`, and is
//! closed after the answer. A joining node sends its token only to a seed whose certificate
//! says manager.
//!
//! Every authenticated connection is registered by node ID, so removing a node
//! ([`Transport::deny`]) closes all of its connections, and the deny list is checked again at
//! every stream and datagram.
//!
//! Bounds: the inbound channel (`inbound_queue_max`; a full channel answers `Busy` or drops
//! the datagram), each peer's one-way and datagram queues, streams per connection,
//! connections with and without a certificate, peers with queues, and a deadline on every
//! request and every stream read. A frame's buffer grows with the bytes that arrive, never
//! from its length prefix alone. A bad frame resets only its stream. Sends to a dead peer never block the caller: its task
//! drops what it cannot deliver and backs off its reconnect attempts (at most one in flight).
//!
//! # Layout
//!
//! | file | what |
//! |---|---|
//! | `endpoint.rs` | [`Transport`]: the handle the node holds; bind, send, deny, renew, shut down |
//! | `shared.rs` | `Shared`: the state behind it, connections by address, the accept loop, requests |
//! | `join.rs` | [`join`]: the one exchange of a node that has no certificate yet |
//! | `conn.rs` | one connection: handshake identity, serving its streams and datagrams |
//! | `peer.rs` | a peer's task and queues for one-way messages and datagrams |
//! | `tunnel.rs` | routing-mesh tunnels: the inbound handoff, the per-peer budgets |
//! | `registry.rs` | connections by node (what `deny` closes) and connection budgets |
//! | `config.rs`, `error.rs` | [`TransportConfig`], [`TransportError`] |
//! | `tests/` | tests on real sockets; `tests/joining.rs` for joining |

mod config;
mod conn;
mod endpoint;
mod error;
mod join;
mod peer;
mod registry;
mod shared;
mod tunnel;

#[cfg(test)]
mod tests;

pub use config::{
    DATAGRAM_BYTES_MAX, RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS,
    STREAMS_PER_CONNECTION_LIMIT, TransportConfig,
};
pub use endpoint::Transport;
pub use error::TransportError;
pub use join::join;
pub use tunnel::{AcceptedTunnel, InboundTunnel, TunnelSlot, TunnelStreams};

use std::net::SocketAddr;

use bytes::Bytes;

use crate::trust::PeerIdentity;
use crate::wire::{OneWay, Request, Response};

/// What the transport hands to the node.
#[derive(Debug)]
pub enum Inbound {
    /// A request; answer it through `reply` within the request deadline, or the peer sees its
    /// stream reset. `from` is `None` only for `Request::Join`, from a node without a
    /// certificate yet.
    Request {
        from: Option<PeerIdentity>,
        remote: SocketAddr,
        req: Request,
        reply: tokio::sync::oneshot::Sender<Response>,
    },
    OneWay {
        from: PeerIdentity,
        remote: SocketAddr,
        msg: OneWay,
    },
    Datagram {
        from: PeerIdentity,
        remote: SocketAddr,
        data: Bytes,
    },
}

/// Counters since `bind`, for `node inspect` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub datagrams_sent: u64,
    /// Outgoing datagrams dropped: queue full, peer unreachable, or too large for the path.
    pub datagrams_dropped: u64,
    pub datagrams_received: u64,
    /// Incoming datagrams dropped: inbound channel full, or the peer is unauthenticated.
    pub datagrams_refused: u64,
    pub oneway_sent: u64,
    pub oneway_dropped: u64,
    pub oneway_received: u64,
    /// Requests answered `Busy` because the inbound channel was full.
    pub requests_busy: u64,
    /// Frames refused: oversized, truncated, undecodable, or too slow to arrive.
    pub frames_refused: u64,
    /// Connections open now (either direction, handshakes included).
    pub connections_open: u64,
    /// Inbound connections refused at the `connections_max` bound, the
    /// `unauthenticated_connections_max` bound, or in the handshake.
    pub connections_refused: u64,
    /// Connections from peers without a certificate open now (not in `connections_open`).
    pub unauthenticated_open: u64,
    /// Connections from peers without a certificate refused at their own bound.
    pub unauthenticated_refused: u64,
    /// Tunnels refused: no handler, its queue full, or `tunnels_per_peer_max` open.
    pub tunnels_refused: u64,
}
