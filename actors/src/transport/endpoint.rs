//! The endpoint: [`Transport`], the handle the node holds, and the shared state behind it.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, IdleTimeout, VarInt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::conn::{
    self, CODE_BAD_IDENTITY, CODE_BUSY, CODE_NOT_A_MANAGER, CODE_SHUTDOWN, Connected, PeerSlot,
    identity_of,
};
use super::peer::{self, Outgoing, PeerSender};
use super::registry::{Budget, Registry};
use super::{DATAGRAM_BYTES_MAX, Inbound, TransportConfig, TransportError, TransportStats};
use crate::model::{NodeId, Role};
use crate::trust::{self, CaDigest, NodeCredentials, PeerIdentity, SERVER_NAME, TrustError};
use crate::wire::{
    JoinRequest, JoinResponse, Request, Response, WireFailure, encode_frame, read_frame,
};

/// How long `shutdown` waits for connections to say goodbye.
const SHUTDOWN_WAIT_MS: u64 = 1000;
/// How long `join` waits for the seed to acknowledge the close of its one-shot connection.
const JOIN_LINGER_MS: u64 = 200;

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
}

/// State shared by the handle, the accept loop, connection servers and peer tasks.
pub(crate) struct Shared {
    pub config: TransportConfig,
    pub endpoint: Endpoint,
    quic: Arc<quinn::TransportConfig>,
    /// Replaced on certificate renewal; each new connection takes the current one.
    client: Mutex<quinn::ClientConfig>,
    slots: Mutex<HashMap<SocketAddr, Arc<PeerSlot>>>,
    senders: Mutex<HashMap<SocketAddr, PeerSender>>,
    next_sender_id: AtomicU64,
    pub inbound: mpsc::Sender<Inbound>,
    pub counters: Counters,
    closed: AtomicBool,
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
    /// Nodes removed from the cluster: their certificates may still be valid, so they are
    /// refused by ID at every handshake, both ways, and at every stream and datagram.
    denied: RwLock<BTreeSet<NodeId>>,
    /// Every authenticated connection, either direction, by node: what `deny` closes.
    registry: Registry<quinn::Connection>,
    /// Connections from peers without a certificate, counted apart from `connections_open`.
    pub unauthenticated: Arc<Budget>,
}

fn quic_transport(cfg: &TransportConfig) -> Result<quinn::TransportConfig, TransportError> {
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

fn server_config(
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

fn client_config(
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

    fn slot(&self, addr: SocketAddr) -> Arc<PeerSlot> {
        let mut slots = self.slots.lock().expect("slots lock");
        slots.entry(addr).or_default().clone()
    }

    pub fn live(&self, addr: SocketAddr) -> Option<Connected> {
        let slots = self.slots.lock().expect("slots lock");
        slots.get(&addr).and_then(|s| s.live())
    }

    /// Drops the slot of `addr` if it holds no connection and nobody is using it, so the map
    /// only holds peers we talk to.
    fn tidy(&self, addr: SocketAddr) {
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

    async fn connect(self: &Arc<Self>, addr: SocketAddr) -> Result<Connected, TransportError> {
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
    fn forget(&self, addr: SocketAddr, conn: &quinn::Connection) {
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
    fn adopt(&self, addr: SocketAddr, c: &Connected) {
        let slot = self.slot(addr);
        let mut cur = slot.current.lock().expect("slot lock");
        *cur = Some(c.clone());
        slot.adopted.notify_waiters();
    }

    async fn accept_loop(self: Arc<Self>) {
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
    async fn serve_unauthenticated(self: Arc<Self>, conn: quinn::Connection, remote: SocketAddr) {
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
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Receivers may all be gone already; then there is nobody to tell.
        let _ = self.shutdown_tx.send(true);
        self.senders.lock().expect("senders lock").clear();
        self.endpoint.close(CODE_SHUTDOWN, b"shutdown");
    }

    fn handshake_failed(&self) {
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.counters
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Queues `item` for `to`'s peer task, starting one when there is none.
    fn enqueue(self: &Arc<Self>, to: SocketAddr, item: Outgoing) -> Result<(), TransportError> {
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

    fn spawn_peer(self: &Arc<Self>, to: SocketAddr) -> PeerSender {
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

    async fn request(
        self: &Arc<Self>,
        to: SocketAddr,
        req: &Request,
    ) -> Result<(PeerIdentity, Response), TransportError> {
        let frame = encode_frame(req)?;
        let mut retried = false;
        loop {
            let c = self.connection(to).await?;
            let (mut send, mut recv) = match c.conn.open_bi().await {
                Ok(streams) => streams,
                // A cached connection may have died since its last use: reconnect once.
                Err(e) if !retried => {
                    debug!(%to, "cached connection unusable ({e}), reconnecting");
                    self.forget(to, &c.conn);
                    retried = true;
                    continue;
                }
                Err(e) => {
                    return Err(TransportError::Connection {
                        addr: to,
                        reason: e.to_string(),
                    });
                }
            };
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
            return Ok((id, resp));
        }
    }
}

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
        }
    }
}

/// Whether a seed may be given a join token: only a manager's certificate (the CA is already
/// pinned by the handshake) says the seed can admit a node; anyone else holding a cluster
/// certificate, a worker, could keep the token and join as whatever it grants. Nothing is sent
/// before this says yes.
pub(crate) fn seed_may_take_token(
    seed: SocketAddr,
    identity: Result<Option<PeerIdentity>, TrustError>,
) -> Result<PeerIdentity, TransportError> {
    match identity {
        Ok(Some(id)) if id.role == Role::Manager => Ok(id),
        Ok(Some(id)) => Err(TransportError::SeedNotAManager {
            addr: seed,
            node: id.node_id,
            role: id.role,
        }),
        Ok(None) => Err(TransportError::Connect {
            addr: seed,
            reason: "the seed presented no certificate".into(),
        }),
        Err(e) => Err(TransportError::Connect {
            addr: seed,
            reason: format!("the seed's certificate names no node: {e}"),
        }),
    }
}

/// Whether the seed closed the connection at its bound on connections without a
/// certificate: it is busy, not gone, and the joiner may try again.
fn closed_busy(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CODE_BUSY)
}

/// Asks the node at `seed` to let this node join, before this node has a certificate: a
/// one-shot endpoint on an ephemeral port, the seed pinned by `ca_digest` (a seed of another
/// cluster fails the handshake), its certificate checked to say manager (else
/// [`TransportError::SeedNotAManager`], and the token is not sent), `Request::Join`, and the
/// answer. `Response::Failed(f)` comes back as [`TransportError::Refused`]; everything runs
/// under `timeout`.
pub async fn join(
    seed: SocketAddr,
    ca_digest: &CaDigest,
    req: JoinRequest,
    timeout: Duration,
) -> Result<JoinResponse, TransportError> {
    let tls = trust::join_client_config(ca_digest)?;
    let mut quic = quinn::TransportConfig::default();
    let idle = IdleTimeout::try_from(timeout.max(Duration::from_millis(1)))
        .map_err(|e| TransportError::Config(format!("join timeout: {e}")))?;
    quic.max_idle_timeout(Some(idle));
    let client = client_config(tls, &Arc::new(quic))?;
    let bind: SocketAddr = if seed.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint =
        Endpoint::client(bind).map_err(|source| TransportError::Bind { addr: bind, source })?;
    let exchange = async {
        let conn = endpoint
            .connect_with(client, seed, SERVER_NAME)
            .map_err(|e| TransportError::Connect {
                addr: seed,
                reason: e.to_string(),
            })?
            .await
            .map_err(|e| {
                if closed_busy(&e) {
                    TransportError::Refused(WireFailure::Busy)
                } else {
                    TransportError::Connect {
                        addr: seed,
                        reason: e.to_string(),
                    }
                }
            })?;
        if let Err(e) = seed_may_take_token(seed, identity_of(&conn)) {
            conn.close(CODE_NOT_A_MANAGER, b"a join goes to a manager only");
            return Err(e);
        }
        let lost = |e: &dyn std::fmt::Display| match conn.close_reason() {
            Some(reason) if closed_busy(&reason) => TransportError::Refused(WireFailure::Busy),
            _ => TransportError::Connection {
                addr: seed,
                reason: e.to_string(),
            },
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
        let frame = encode_frame(&Request::Join(req))?;
        send.write_all(&frame).await.map_err(|e| lost(&e))?;
        send.finish().map_err(|e| lost(&e))?;
        let resp: Option<Response> =
            read_frame(&mut recv)
                .await
                .map_err(|e| match conn.close_reason() {
                    Some(reason) if closed_busy(&reason) => {
                        TransportError::Refused(WireFailure::Busy)
                    }
                    _ => TransportError::Wire(e),
                })?;
        conn.close(CODE_SHUTDOWN, b"joined");
        resp.ok_or_else(|| lost(&"the seed ended the stream without an answer"))
    };
    let result = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(TransportError::Timeout));
    endpoint.close(CODE_SHUTDOWN, b"done");
    // Briefly, so the seed hears the close instead of waiting out its idle timeout.
    let linger = Duration::from_millis(JOIN_LINGER_MS);
    if tokio::time::timeout(linger, endpoint.wait_idle())
        .await
        .is_err()
    {
        debug!("the seed did not acknowledge the close within {JOIN_LINGER_MS} ms");
    }
    match result? {
        Response::Joined(resp) => Ok(resp),
        Response::Failed(f) => Err(TransportError::Refused(f)),
        other => Err(TransportError::Unexpected(format!("{other:?}"))),
    }
}
