//! The state behind [`Transport`](super::Transport): connections by address, peer queues,
//! the deny list and the counters, shared by the handle, the accept loop, connection servers
//! and peer tasks.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, VarInt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::conn::{
    self, CODE_BAD_IDENTITY, CODE_BUSY, CODE_SHUTDOWN, Connected, PeerSlot, identity_of,
};
use super::peer::{self, Outgoing, PeerSender};
use super::registry::{Budget, Registry};
use super::tunnel::TunnelBudget;
use super::{DATAGRAM_BYTES_MAX, Inbound, TransportConfig, TransportError};
use crate::model::NodeId;
use crate::trust::{self, NodeCredentials, PeerIdentity, SERVER_NAME};
use crate::wire::{Request, Response, encode_frame, read_frame};

#[derive(Default)]
pub(crate) struct Counters {
    pub datagrams_sent: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagrams_refused: AtomicU64,
    pub oneway_sent: AtomicU64,
    pub oneway_dropped: AtomicU64,
    pub oneway_received: AtomicU64,
    pub requests_busy: AtomicU64,
    pub frames_refused: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    pub unauthenticated_refused: AtomicU64,
    pub tunnels_refused: AtomicU64,
}

/// State shared by the handle, the accept loop, connection servers and peer tasks.
pub(crate) struct Shared {
    pub config: TransportConfig,
    pub endpoint: Endpoint,
    pub(super) quic: Arc<quinn::TransportConfig>,
    /// Replaced on certificate renewal; each new connection takes the current one.
    pub(super) client: Mutex<quinn::ClientConfig>,
    pub(super) slots: Mutex<HashMap<SocketAddr, Arc<PeerSlot>>>,
    pub(super) senders: Mutex<HashMap<SocketAddr, PeerSender>>,
    pub(super) next_sender_id: AtomicU64,
    pub inbound: mpsc::Sender<Inbound>,
    pub counters: Counters,
    pub(super) closed: AtomicBool,
    pub shutdown: watch::Receiver<bool>,
    pub(super) shutdown_tx: watch::Sender<bool>,
    pub(super) runtime: tokio::runtime::Handle,
    /// Nodes removed from the cluster: their certificates may still be valid, so they are
    /// refused by ID at every handshake, both ways, and at every stream and datagram.
    pub(super) denied: RwLock<BTreeSet<NodeId>>,
    /// Every authenticated connection, either direction, by node: what `deny` closes.
    pub(super) registry: Registry<quinn::Connection>,
    /// Connections from peers without a certificate, counted apart from `connections_open`.
    pub unauthenticated: Arc<Budget>,
    /// Where inbound tunnels go (the routing mesh); none: refused `Unreachable`.
    pub tunnels: Mutex<Option<mpsc::Sender<super::InboundTunnel>>>,
    /// Tunnels open from each peer node, and to each peer address.
    pub tunnels_in: Arc<TunnelBudget<NodeId>>,
    pub tunnels_out: Arc<TunnelBudget<SocketAddr>>,
}

pub(super) fn quic_transport(
    cfg: &TransportConfig,
) -> Result<quinn::TransportConfig, TransportError> {
    let mut t = quinn::TransportConfig::default();
    let streams = VarInt::from_u32(cfg.streams_per_connection_max);
    t.max_concurrent_bidi_streams(streams);
    t.max_concurrent_uni_streams(streams);
    let idle = IdleTimeout::try_from(Duration::from_millis(cfg.idle_timeout_ms))
        .map_err(|e| TransportError::Config(format!("idle_timeout_ms: {e}")))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(Duration::from_millis(cfg.keep_alive_ms)));
    // Room for a full datagram queue's worth of datagrams in each direction.
    let dgram_bytes = cfg.datagram_queue_max.saturating_mul(DATAGRAM_BYTES_MAX);
    t.datagram_receive_buffer_size(Some(dgram_bytes));
    t.datagram_send_buffer_size(dgram_bytes);
    Ok(t)
}

pub(super) fn server_config(
    creds: &NodeCredentials,
    quic: &Arc<quinn::TransportConfig>,
    connections_max: usize,
) -> Result<quinn::ServerConfig, TransportError> {
    let tls = trust::server_config(creds)?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(quic.clone());
    cfg.max_incoming(connections_max);
    Ok(cfg)
}

pub(super) fn client_config(
    tls: rustls::ClientConfig,
    quic: &Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(quic.clone());
    Ok(cfg)
}

impl Shared {
    pub fn is_denied(&self, id: &PeerIdentity) -> bool {
        self.denied
            .read()
            .expect("denied lock")
            .contains(&id.node_id)
    }

    pub(super) fn slot(&self, addr: SocketAddr) -> Arc<PeerSlot> {
        let mut slots = self.slots.lock().expect("slots lock");
        slots.entry(addr).or_default().clone()
    }

    pub fn live(&self, addr: SocketAddr) -> Option<Connected> {
        let slots = self.slots.lock().expect("slots lock");
        slots.get(&addr).and_then(|s| s.live())
    }

    /// Drops the slot of `addr` if it holds no connection and nobody is using it, so the map
    /// only holds peers we talk to.
    pub(super) fn tidy(&self, addr: SocketAddr) {
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(slot) = slots.get(&addr)
            && Arc::strong_count(slot) == 1
            && slot.live().is_none()
        {
            slots.remove(&addr);
        }
    }

    /// The live connection to `addr`, connecting if there is none. At most one connection
    /// attempt per peer is in flight; others wait for its outcome.
    pub async fn connection(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<Connected, TransportError> {
        let slot = self.slot(addr);
        let result = async {
            if let Some(c) = slot.live() {
                return Ok(c);
            }
            let _attempt = slot.connecting.lock().await;
            if let Some(c) = slot.live() {
                return Ok(c);
            }
            // The attempt runs in its own task so that, when the peer's connection to us is
            // adopted first, ours still completes rather than being dropped mid-handshake (the
            // peer may be using it, as its adopted connection, already).
            let adopted = slot.adopted.notified();
            let shared = self.clone();
            let attempt_slot = slot.clone();
            let mut attempt = tokio::spawn(async move {
                let c = shared.connect(addr).await?;
                let mut cur = attempt_slot.current.lock().expect("slot lock");
                if !cur.as_ref().is_some_and(Connected::is_live) {
                    *cur = Some(c.clone());
                }
                Ok::<_, TransportError>(c)
            });
            tokio::select! {
                done = &mut attempt => match done {
                    Ok(result) => result,
                    Err(e) => Err(TransportError::Connect { addr, reason: e.to_string() }),
                },
                () = adopted => match slot.live() {
                    Some(c) => Ok(c),
                    // The adopted connection is gone already: wait for our own attempt.
                    None => match attempt.await {
                        Ok(result) => result,
                        Err(e) => Err(TransportError::Connect { addr, reason: e.to_string() }),
                    },
                },
            }
        }
        .await;
        drop(slot);
        if result.is_err() {
            self.tidy(addr);
        }
        result
    }

    pub(super) async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<Connected, TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::ShutDown);
        }
        let cfg = self.client.lock().expect("client config lock").clone();
        let connecting = self
            .endpoint
            .connect_with(cfg, addr, SERVER_NAME)
            .map_err(|e| TransportError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let deadline = Duration::from_millis(self.config.connect_timeout_ms);
        let conn = match tokio::time::timeout(deadline, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(TransportError::Connect {
                    addr,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(TransportError::Connect {
                    addr,
                    reason: format!("no handshake within {} ms", deadline.as_millis()),
                });
            }
        };
        // The client configuration requires a server certificate from the cluster CA, so a
        // missing or nameless identity means a misissued certificate.
        let identity = match identity_of(&conn) {
            Ok(Some(id)) => id,
            Ok(None) => {
                conn.close(CODE_BAD_IDENTITY, b"no certificate");
                return Err(TransportError::Connect {
                    addr,
                    reason: "the server presented no certificate".into(),
                });
            }
            Err(e) => {
                conn.close(CODE_BAD_IDENTITY, b"bad identity");
                return Err(TransportError::Connect {
                    addr,
                    reason: e.to_string(),
                });
            }
        };
        if !self
            .registry
            .add(identity.node_id, conn.stable_id(), conn.clone())
        {
            conn.close(CODE_BUSY, b"too many connections");
            return Err(TransportError::Connect {
                addr,
                reason: format!(
                    "{} connections open, the most allowed",
                    self.config.connections_max
                ),
            });
        }
        // Checked after registering, so a `deny` racing with this handshake either sees the
        // connection in the registry or is seen here.
        if self.is_denied(&identity) {
            conn.close(CODE_BAD_IDENTITY, b"removed");
            self.registry.remove(identity.node_id, conn.stable_id());
            return Err(TransportError::Connect {
                addr,
                reason: format!("node {} was removed from the cluster", identity.node_id),
            });
        }
        debug!(%addr, node = %identity.node_id, "connected");
        let c = Connected {
            conn,
            identity: Some(identity),
        };
        self.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        self.runtime
            .spawn(conn::serve(self.clone(), c.clone(), addr));
        Ok(c)
    }

    /// Called by an authenticated connection's server when the connection is gone.
    pub fn connection_closed(&self, addr: SocketAddr, c: &Connected) {
        let conn = &c.conn;
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(id) = c.identity {
            self.registry.remove(id.node_id, conn.stable_id());
        }
        {
            let slots = self.slots.lock().expect("slots lock");
            if let Some(slot) = slots.get(&addr) {
                let mut cur = slot.current.lock().expect("slot lock");
                if cur
                    .as_ref()
                    .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
                {
                    *cur = None;
                }
            }
        }
        self.tidy(addr);
    }

    /// Forgets a cached connection that turned out dead, so the next use reconnects.
    pub(super) fn forget(&self, addr: SocketAddr, conn: &quinn::Connection) {
        let slots = self.slots.lock().expect("slots lock");
        if let Some(slot) = slots.get(&addr) {
            let mut cur = slot.current.lock().expect("slot lock");
            if cur
                .as_ref()
                .is_some_and(|c| c.conn.stable_id() == conn.stable_id())
            {
                *cur = None;
            }
        }
    }

    /// Keeps an authenticated inbound connection for sends to its address, so two nodes that
    /// talk both ways share one connection. It replaces the one we hold: a peer that connects
    /// to us holds no live connection to us, so ours is either from before the peer restarted
    /// (a killed peer's connection lives on until the idle timeout, and what we send on it is
    /// lost: a restarted manager went unheard by some nodes for 5 s) or one made at the same
    /// moment as the peer's, when either works. The one replaced is left to close by itself.
    pub(super) fn adopt(&self, addr: SocketAddr, c: &Connected) {
        let slot = self.slot(addr);
        let mut cur = slot.current.lock().expect("slot lock");
        *cur = Some(c.clone());
        slot.adopted.notify_waiters();
    }

    pub(super) async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let open = self.counters.connections_open.load(Ordering::Relaxed);
            if open >= self.config.connections_max as u64 {
                warn!(remote = %incoming.remote_address(), "connection refused: {open} open, the most allowed");
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                incoming.refuse();
                continue;
            }
            self.counters
                .connections_open
                .fetch_add(1, Ordering::Relaxed);
            let shared = self.clone();
            self.runtime.spawn(async move {
                let remote = incoming.remote_address();
                let deadline = Duration::from_millis(shared.config.connect_timeout_ms);
                let conn = match tokio::time::timeout(deadline, incoming).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        debug!(%remote, "inbound handshake failed: {e}");
                        shared.handshake_failed();
                        return;
                    }
                    Err(_) => {
                        debug!(%remote, "inbound handshake took longer than {} ms", deadline.as_millis());
                        shared.handshake_failed();
                        return;
                    }
                };
                let identity = match identity_of(&conn) {
                    Ok(id) => id,
                    Err(e) => {
                        warn!(%remote, "connection refused: {e}");
                        conn.close(CODE_BAD_IDENTITY, b"bad identity");
                        shared.handshake_failed();
                        return;
                    }
                };
                let Some(id) = identity else {
                    shared.serve_unauthenticated(conn, remote).await;
                    return;
                };
                if !shared.registry.add(id.node_id, conn.stable_id(), conn.clone()) {
                    warn!(%remote, "connection refused: {} open, the most allowed", shared.config.connections_max);
                    conn.close(CODE_BUSY, b"too many connections");
                    shared.handshake_failed();
                    return;
                }
                // After registering: see `connect`.
                if shared.is_denied(&id) {
                    warn!(%remote, node = %id.node_id, "connection refused: the node was removed from the cluster");
                    conn.close(CODE_BAD_IDENTITY, b"removed");
                    shared.registry.remove(id.node_id, conn.stable_id());
                    shared.handshake_failed();
                    return;
                }
                let c = Connected { conn, identity };
                shared.adopt(remote, &c);
                conn::serve(shared, c, remote).await;
            });
        }
        debug!("endpoint closed: accept loop ends");
    }

    /// A connection from a peer without a certificate, handshake done: it leaves the count of
    /// member connections for its own budget, and is served its one request or refused.
    pub(super) async fn serve_unauthenticated(
        self: Arc<Self>,
        conn: quinn::Connection,
        remote: SocketAddr,
    ) {
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        let Some(slot) = self.unauthenticated.try_take() else {
            debug!(%remote, "connection without a certificate refused: {} open, the most allowed", self.config.unauthenticated_connections_max);
            conn.close(CODE_BUSY, b"too many connections without a certificate");
            self.counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .unauthenticated_refused
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        conn::serve_one(self, conn, remote).await;
        drop(slot);
    }

    /// Stops sends, peer tasks and the endpoint at once. Idempotent.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Receivers may all be gone already; then there is nobody to tell.
        let _ = self.shutdown_tx.send(true);
        self.senders.lock().expect("senders lock").clear();
        self.endpoint.close(CODE_SHUTDOWN, b"shutdown");
    }

    pub(super) fn handshake_failed(&self) {
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.counters
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Queues `item` for `to`'s peer task, starting one when there is none.
    pub(super) fn enqueue(
        self: &Arc<Self>,
        to: SocketAddr,
        item: Outgoing,
    ) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::ShutDown);
        }
        let mut senders = self.senders.lock().expect("senders lock");
        if !senders.contains_key(&to) && senders.len() >= self.config.peers_max {
            return Err(TransportError::TooManyPeers(senders.len()));
        }
        let sender = senders.entry(to).or_insert_with(|| self.spawn_peer(to));
        match sender.try_send(item) {
            Ok(()) => Ok(()),
            Err(peer::TrySendError::Full) => Err(TransportError::QueueFull),
            Err(peer::TrySendError::Closed(item)) => {
                // The task ended without removing itself (it panicked): start another.
                let fresh = self.spawn_peer(to);
                let result = fresh.try_send(item);
                senders.insert(to, fresh);
                result.map_err(|_| TransportError::QueueFull)
            }
        }
    }

    pub(super) fn spawn_peer(self: &Arc<Self>, to: SocketAddr) -> PeerSender {
        let id = self.next_sender_id.fetch_add(1, Ordering::Relaxed);
        let (sender, task) = peer::PeerTask::new(self.clone(), to, id);
        self.runtime.spawn(task.run());
        sender
    }

    /// Removes peer task `id`'s queue entry if the task may end: the entry is its own and its
    /// queues are empty. Holding the map lock makes the check and removal atomic with respect
    /// to senders. True when the task should end.
    pub fn retire_peer(
        &self,
        to: SocketAddr,
        id: u64,
        queues_empty: impl FnOnce() -> bool,
    ) -> bool {
        let mut senders = self.senders.lock().expect("senders lock");
        match senders.get(&to) {
            Some(s) if s.id == id => {
                if queues_empty() {
                    senders.remove(&to);
                    true
                } else {
                    false
                }
            }
            // Replaced or removed at shutdown: nobody can send to this task any more.
            _ => true,
        }
    }

    /// A new bidirectional stream to `to`, on the cached connection or a new one: a cached
    /// connection may have died since its last use, so a failed open reconnects once.
    async fn open_stream(
        self: &Arc<Self>,
        to: SocketAddr,
    ) -> Result<(Connected, quinn::SendStream, quinn::RecvStream), TransportError> {
        let mut retried = false;
        loop {
            let c = self.connection(to).await?;
            match c.conn.open_bi().await {
                Ok((send, recv)) => return Ok((c, send, recv)),
                Err(e) if !retried => {
                    debug!(%to, "cached connection unusable ({e}), reconnecting");
                    self.forget(to, &c.conn);
                    retried = true;
                }
                Err(e) => {
                    return Err(TransportError::Connection {
                        addr: to,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// Opens a stream to `to`, sends the tunnel request and reads the answer; the streams,
    /// once the answer is `TunnelOpen`. The caller bounds the time.
    pub(super) async fn open_tunnel(
        self: &Arc<Self>,
        to: SocketAddr,
        req: &Request,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        let frame = encode_frame(req)?;
        let (_, mut send, mut recv) = self.open_stream(to).await?;
        let lost = |e: &dyn std::fmt::Display| TransportError::Connection {
            addr: to,
            reason: e.to_string(),
        };
        // Not finished: the stream goes on carrying the connection.
        send.write_all(&frame).await.map_err(|e| lost(&e))?;
        let resp: Option<Response> = read_frame(&mut recv).await?;
        match resp {
            Some(Response::TunnelOpen) => Ok((send, recv)),
            Some(Response::Failed(f)) => Err(TransportError::Refused(f)),
            Some(other) => Err(TransportError::Unexpected(format!("{other:?}"))),
            None => Err(lost(&"the peer ended the stream without an answer")),
        }
    }

    pub(super) async fn request(
        self: &Arc<Self>,
        to: SocketAddr,
        req: &Request,
    ) -> Result<(PeerIdentity, Response), TransportError> {
        let frame = encode_frame(req)?;
        let (c, mut send, mut recv) = self.open_stream(to).await?;
        let lost = |e: &dyn std::fmt::Display| TransportError::Connection {
            addr: to,
            reason: e.to_string(),
        };
        send.write_all(&frame).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        let resp: Option<Response> = read_frame(&mut recv).await?;
        let resp = resp.ok_or_else(|| lost(&"the peer ended the stream without an answer"))?;
        // A client connection always carries the server's identity (see `connect`); an
        // adopted inbound one carries the client's, also always present.
        let id = c.identity.expect("outgoing connections are authenticated");
        Ok((id, resp))
    }
}
