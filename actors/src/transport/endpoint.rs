//! The endpoint: [`Transport`], the handle the node holds (its state: `shared.rs`).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use quinn::Endpoint;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::conn::{CODE_BAD_IDENTITY, CODE_SHUTDOWN};
use super::peer::Outgoing;
use super::registry::{Budget, Registry};
use super::shared::{Counters, Shared, client_config, quic_transport, server_config};
use super::tunnel::{InboundTunnel, TunnelBudget, TunnelStreams};
use super::{DATAGRAM_BYTES_MAX, Inbound, TransportConfig, TransportError, TransportStats};
use crate::model::NodeId;
use crate::trust::{self, NodeCredentials, PeerIdentity};
use crate::wire::{Request, Response, TunnelRequest};

/// How long `shutdown` waits for connections to say goodbye.
const SHUTDOWN_WAIT_MS: u64 = 1000;

/// The node's handle on its QUIC endpoint. Cheap to clone; all clones share one endpoint,
/// which closes when [`Transport::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
    /// Closes the endpoint when the last handle goes; the background tasks hold `shared`
    /// only, so without this a forgotten handle would keep the port open forever.
    _guard: Arc<CloseOnDrop>,
    local: SocketAddr,
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Validates `config`, binds the endpoint and starts accepting. Inbound messages arrive on
    /// the returned channel, which holds at most `inbound_queue_max`.
    pub async fn bind(
        config: TransportConfig,
        creds: &NodeCredentials,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        config.validate()?;
        let quic = Arc::new(quic_transport(&config)?);
        let server = server_config(creds, &quic, config.connections_max)?;
        let client = client_config(trust::client_config(creds)?, &quic)?;
        let endpoint =
            Endpoint::server(server, config.listen).map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        let local = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: config.listen,
                source,
            })?;
        let (tx, rx) = mpsc::channel(config.inbound_queue_max);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let config_connections_max = config.connections_max;
        let config_unauthenticated_max = config.unauthenticated_connections_max;
        let tunnels_max = config.tunnels_per_peer_max;
        let shared = Arc::new(Shared {
            config,
            endpoint,
            quic,
            client: Mutex::new(client),
            slots: Mutex::new(HashMap::new()),
            senders: Mutex::new(HashMap::new()),
            next_sender_id: AtomicU64::new(0),
            inbound: tx,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            shutdown,
            shutdown_tx,
            runtime: tokio::runtime::Handle::current(),
            denied: RwLock::new(BTreeSet::new()),
            registry: Registry::new(config_connections_max),
            unauthenticated: Budget::new(config_unauthenticated_max),
            tunnels: Mutex::new(None),
            tunnels_in: TunnelBudget::new(tunnels_max),
            tunnels_out: TunnelBudget::new(tunnels_max),
        });
        tokio::spawn(shared.clone().accept_loop());
        info!(%local, node = %creds.node_id, "transport listening");
        let guard = Arc::new(CloseOnDrop(shared.clone()));
        Ok((
            Transport {
                shared,
                _guard: guard,
                local,
            },
            rx,
        ))
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `req` to `to` and waits for the answer; the whole exchange, connecting included,
    /// runs under `request_timeout_ms`.
    pub async fn request(&self, to: SocketAddr, req: Request) -> Result<Response, TransportError> {
        self.request_identified(to, req).await.map(|(_, resp)| resp)
    }

    /// [`Transport::request`], also returning who answered (from its certificate). This is how
    /// a node learns the ID behind a seed address.
    pub async fn request_identified(
        &self,
        to: SocketAddr,
        req: Request,
    ) -> Result<(PeerIdentity, Response), TransportError> {
        let deadline = Duration::from_millis(self.shared.config.request_timeout_ms);
        tokio::time::timeout(deadline, self.shared.request(to, &req))
            .await
            .unwrap_or(Err(TransportError::Timeout))
    }

    /// Opens a routing-mesh tunnel to the node at `to`: sends `req` on a new bidirectional
    /// stream and waits, under `request_timeout_ms` (connecting included), for `TunnelOpen`.
    /// Then the streams carry the connection's bytes. `Refused(..)` carries the far node's
    /// failure (`Unreachable`: no such task or port there, or its connect failed; `Busy`: at a
    /// bound); `QueueFull` when `tunnels_per_peer_max` tunnels to `to` are open already.
    pub async fn open_tunnel(
        &self,
        to: SocketAddr,
        req: &TunnelRequest,
    ) -> Result<TunnelStreams, TransportError> {
        let Some(slot) = self.shared.tunnels_out.try_take(to) else {
            self.shared
                .counters
                .tunnels_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(TransportError::QueueFull);
        };
        let deadline = Duration::from_millis(self.shared.config.request_timeout_ms);
        let (send, recv) = tokio::time::timeout(
            deadline,
            self.shared.open_tunnel(to, &Request::Tunnel(req.clone())),
        )
        .await
        .unwrap_or(Err(TransportError::Timeout))?;
        Ok(TunnelStreams { send, recv, slot })
    }

    /// Hands every tunnel a peer opens to `handler` from now on (replacing any earlier one).
    /// A tunnel that finds the handler's queue full, or its peer at `tunnels_per_peer_max`,
    /// is answered `Busy`; with no handler, `Unreachable`.
    pub fn serve_tunnels(&self, handler: mpsc::Sender<InboundTunnel>) {
        *self.shared.tunnels.lock().expect("tunnels lock") = Some(handler);
    }

    /// Tunnels open now to the peer at `to` (outgoing).
    pub fn tunnels_open_to(&self, to: SocketAddr) -> usize {
        self.shared.tunnels_out.open(&to)
    }

    /// Queues a one-way message for `to`; `QueueFull` when `peer_queue_max` are waiting. A
    /// queued message may still be dropped if the peer cannot be reached (counted in stats).
    pub fn send_oneway(
        &self,
        to: SocketAddr,
        msg: crate::wire::OneWay,
    ) -> Result<(), TransportError> {
        self.shared.enqueue(to, Outgoing::OneWay(msg))
    }

    /// Queues a datagram for `to` and returns at once. Datagrams are best effort: when the
    /// peer's queue is full or the peer is unreachable the datagram is dropped and counted,
    /// and this still returns `Ok`. Errors only for a datagram over [`DATAGRAM_BYTES_MAX`],
    /// too many peers, or a shut-down transport.
    pub fn send_datagram(&self, to: SocketAddr, data: Bytes) -> Result<(), TransportError> {
        if data.len() > DATAGRAM_BYTES_MAX {
            return Err(TransportError::TooLarge {
                len: data.len(),
                max: DATAGRAM_BYTES_MAX,
            });
        }
        match self.shared.enqueue(to, Outgoing::Datagram(data)) {
            Err(TransportError::QueueFull) => {
                debug!(%to, "datagram queue full: dropped");
                self.shared
                    .counters
                    .datagrams_dropped
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            other => other,
        }
    }

    /// Refuses `node` from now on, at every handshake in either direction and at every stream
    /// and datagram, and closes every connection open to it, however many (simultaneous dials
    /// make two). For nodes removed from the cluster (`node rm`).
    pub fn deny(&self, node: NodeId) {
        self.shared
            .denied
            .write()
            .expect("denied lock")
            .insert(node);
        // Inserted first: a connection registered after this read is refused by its own
        // check of the deny list (see `Shared::connect`).
        for conn in self.shared.registry.of(node) {
            conn.close(CODE_BAD_IDENTITY, b"removed");
        }
    }

    /// Closes every connection open now, so that the next exchange with each peer opens a new
    /// one presenting the current certificate (after a renewal that changed this node's role:
    /// peers judge a message by the certificate on its connection).
    pub fn reconnect_all(&self) {
        for conn in self.shared.registry.all() {
            conn.close(CODE_SHUTDOWN, b"new certificate");
        }
    }

    /// Puts `node` on the deny list without closing its connections: how a connection that
    /// slipped past `deny`'s close looks, for the test of the per-stream check.
    #[cfg(test)]
    pub(crate) fn deny_list_only(&self, node: NodeId) {
        self.shared
            .denied
            .write()
            .expect("denied lock")
            .insert(node);
    }

    /// The identity of the peer at `to`, if there is a live connection to it.
    pub fn peer_identity(&self, to: SocketAddr) -> Option<PeerIdentity> {
        self.shared.live(to).and_then(|c| c.identity)
    }

    /// Takes renewed credentials: connections made from now on, in either direction, present
    /// the new certificate. Open connections keep the one they were made with.
    pub fn reload_credentials(&self, creds: &NodeCredentials) -> Result<(), TransportError> {
        let server = server_config(creds, &self.shared.quic, self.shared.config.connections_max)?;
        let client = client_config(trust::client_config(creds)?, &self.shared.quic)?;
        self.shared.endpoint.set_server_config(Some(server));
        *self.shared.client.lock().expect("client config lock") = client;
        info!(node = %creds.node_id, "transport credentials reloaded");
        Ok(())
    }

    /// Closes every connection and the endpoint, and stops the peer tasks. Waits up to
    /// [`SHUTDOWN_WAIT_MS`] for peers to acknowledge the close.
    pub async fn shutdown(&self) {
        self.shared.close();
        let wait = Duration::from_millis(SHUTDOWN_WAIT_MS);
        if tokio::time::timeout(wait, self.shared.endpoint.wait_idle())
            .await
            .is_err()
        {
            debug!("peers did not acknowledge the close within {SHUTDOWN_WAIT_MS} ms");
        }
    }

    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportStats {
            datagrams_sent: get(&c.datagrams_sent),
            datagrams_dropped: get(&c.datagrams_dropped),
            datagrams_received: get(&c.datagrams_received),
            datagrams_refused: get(&c.datagrams_refused),
            oneway_sent: get(&c.oneway_sent),
            oneway_dropped: get(&c.oneway_dropped),
            oneway_received: get(&c.oneway_received),
            requests_busy: get(&c.requests_busy),
            frames_refused: get(&c.frames_refused),
            connections_open: get(&c.connections_open),
            connections_refused: get(&c.connections_refused),
            unauthenticated_open: self.shared.unauthenticated.open() as u64,
            unauthenticated_refused: get(&c.unauthenticated_refused),
            tunnels_refused: get(&c.tunnels_refused),
        }
    }
}
