//! Transport configuration: every bound and deadline of the QUIC endpoint, validated once.

use std::net::SocketAddr;

use super::TransportError;

/// The largest datagram payload the transport sends or hands in. QUIC datagrams must fit one
/// packet; 1100 bytes fit under the 1200-byte minimum QUIC path MTU with the packet overhead,
/// so membership gossip sized to this never depends on path MTU discovery.
pub const DATAGRAM_BYTES_MAX: usize = 1100;

/// Most streams per connection that may be open at once, whatever the configuration says.
pub const STREAMS_PER_CONNECTION_LIMIT: u32 = 4096;

/// Longest wait before a new connection attempt to a peer that just failed one. Attempts to
/// a dead peer back off from [`RECONNECT_BACKOFF_MIN_MS`] to this, doubling.
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 1000;
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 50;

/// Bounds and deadlines of the QUIC endpoint. Times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Where the endpoint listens; also the source address of its outgoing connections.
    pub listen: SocketAddr,
    /// Deadline of a QUIC handshake, in either direction.
    pub connect_timeout_ms: u64,
    /// Deadline of a whole request (connect, send, answer), and of reading any one stream.
    pub request_timeout_ms: u64,
    /// A connection with no packets for this long is closed.
    pub idle_timeout_ms: u64,
    /// Keep-alive period, shorter than the idle timeout so live peers stay connected.
    pub keep_alive_ms: u64,
    /// Capacity of the channel that hands inbound messages to the node.
    pub inbound_queue_max: usize,
    /// Capacity of each peer's outgoing one-way message queue.
    pub peer_queue_max: usize,
    /// Streams of each kind a peer may have open at once on one connection. Routing-mesh
    /// tunnels take bidirectional streams too, at most `tunnels_per_peer_max` of them.
    pub streams_per_connection_max: u32,
    /// Routing-mesh tunnels open at once to one peer address (outgoing) and from one peer node
    /// (incoming); further ones are refused `Busy`. Below `streams_per_connection_max`, so
    /// requests always find a stream however many tunnels are open.
    pub tunnels_per_peer_max: usize,
    /// Capacity of each peer's outgoing datagram queue.
    pub datagram_queue_max: usize,
    /// Peers that may have outgoing queues at once (each has a task); senders to more get
    /// `TooManyPeers`.
    pub peers_max: usize,
    /// Connections (open or in handshake) at once; further inbound ones are refused.
    pub connections_max: usize,
    /// Connections from peers without a certificate (joining nodes) open at once, counted
    /// apart from `connections_max` once their handshake is done, so that anonymous peers
    /// cannot take the room members need. Each such connection carries one request and is
    /// closed after its answer; further ones are refused.
    pub unauthenticated_connections_max: usize,
}

impl TransportConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> TransportConfig {
        TransportConfig {
            listen,
            connect_timeout_ms: 1000,
            request_timeout_ms: 3000,
            idle_timeout_ms: 5000,
            keep_alive_ms: 1000,
            inbound_queue_max: 1024,
            peer_queue_max: 256,
            streams_per_connection_max: 1024,
            tunnels_per_peer_max: 768,
            datagram_queue_max: 512,
            peers_max: 4096,
            connections_max: 4096,
            unauthenticated_connections_max: 64,
        }
    }

    /// Checks that every bound is usable. Called by `Transport::bind`.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |why: String| Err(TransportError::Config(why));
        for (name, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("keep_alive_ms", self.keep_alive_ms),
        ] {
            if v == 0 || v > 3_600_000 {
                return bad(format!("{name} must be between 1 and 3600000, got {v}"));
            }
        }
        if self.keep_alive_ms >= self.idle_timeout_ms {
            return bad(format!(
                "keep_alive_ms ({}) must be below idle_timeout_ms ({}), or idle peers disconnect",
                self.keep_alive_ms, self.idle_timeout_ms
            ));
        }
        if self.connect_timeout_ms > self.request_timeout_ms {
            return bad(format!(
                "connect_timeout_ms ({}) must not exceed request_timeout_ms ({}), which includes it",
                self.connect_timeout_ms, self.request_timeout_ms
            ));
        }
        for (name, v) in [
            ("inbound_queue_max", self.inbound_queue_max),
            ("peer_queue_max", self.peer_queue_max),
            ("datagram_queue_max", self.datagram_queue_max),
            ("peers_max", self.peers_max),
            ("connections_max", self.connections_max),
            (
                "unauthenticated_connections_max",
                self.unauthenticated_connections_max,
            ),
        ] {
            if v == 0 || v > 1 << 20 {
                return bad(format!("{name} must be between 1 and {}, got {v}", 1 << 20));
            }
        }
        if self.streams_per_connection_max == 0
            || self.streams_per_connection_max > STREAMS_PER_CONNECTION_LIMIT
        {
            return bad(format!(
                "streams_per_connection_max must be between 1 and {STREAMS_PER_CONNECTION_LIMIT}, got {}",
                self.streams_per_connection_max
            ));
        }
        if self.tunnels_per_peer_max == 0
            || self.tunnels_per_peer_max >= self.streams_per_connection_max as usize
        {
            return bad(format!(
                "tunnels_per_peer_max must be between 1 and streams_per_connection_max - 1 ({}), got {}",
                self.streams_per_connection_max.saturating_sub(1),
                self.tunnels_per_peer_max
            ));
        }
        Ok(())
    }
}
