//! The routing mesh: every node listens on each published port and forwards each connection
//! (each flow, for UDP) to a task of the service in rotation, wherever it runs.
//!
//! ```text
//!  agent ── MeshFeed (watch: the leader's MeshTable) ──► reconcile ──► listeners by (proto, port)
//!  client ─► TCP/UDP listener ─► Route::pick ─┬─► local task: connect Endpoints[task].socket(target)
//!                                             └─► remote task: Transport::open_tunnel(node_addr)
//!  peer ─► Transport tunnel ─► serve_tunnel: the task is this node's and publishes the port?
//!                              ─► connect locally ─► TunnelOpen ─► bytes both ways
//! ```
//!
//! A connection tries its pick and, if the connect (or tunnel) fails, one other backend; then
//! the client's connection is closed. The node that connects to the task writes the PROXY v2
//! header (`proxy-protocol=v2`) with the client's address as the entry node saw it. UDP flows
//! ride a local socket or a tunnel stream of length-prefixed datagrams, and end after
//! [`MeshConfig::udp_flow_idle_ms`] without traffic. Ingress ports are bound on every node;
//! host ports only while this node runs a task of the service. A port that cannot be bound is
//! logged and kept in [`MeshStatus::bind_errors`] (shown by `node inspect`), retried every
//! [`BIND_RETRY_MS`]; the other ports keep serving. A backend that leaves the table takes no
//! new connections; those in flight go on until either end closes them. Each TCP connection
//! that reaches a task of this node (from a local entry, a VIP, or a peer's tunnel) is counted
//! in the [`Endpoints`] while it lasts (`Endpoints::connection`): a task being stopped is
//! signalled only once they have ended, or its stop grace period has passed (`task::drain`).
//! UDP flows are not waited for.
//!
//! Connections to a service's VIP on an overlay network reach the node's one VIP listener
//! (the data path redirects them there, [`Mesh::vip_addr`]); it balances them round-robin
//! over the service's tasks on that network by the same engine, the tunnel naming the
//! network (`TunnelRequest::network`) so that the far node connects to its task's address on
//! it (`vip.rs`).
//!
//! Bounds ([`MeshConfig`]): connections per published port, connections through VIPs,
//! connections per backend, UDP
//! flows per published port, datagrams queued per flow, tunnels waiting for an answer; the
//! transport bounds tunnels per peer (`TransportConfig::tunnels_per_peer_max`).
//!
//! | file | what |
//! |---|---|
//! | `route.rs` | a port's backends and the pick: round-robin, client-address affinity |
//! | `tcp.rs` | TCP listeners, forwarding, and the far end of TCP tunnels |
//! | `udp.rs` | UDP listeners, flows, and the far end of UDP tunnels |
//! | `vip.rs` | the VIP listener: connections the data path redirects from a service's VIP |
//! | `proxy.rs` | the PROXY protocol v2 header |
//! | `loopback.rs` | a mesh node on a loopback address, for the tests and the benchmark |

pub mod loopback;
mod proxy;
mod route;
mod tcp;
mod udp;
mod vip;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::model::{NodeId, PortConfig, PortProtocol, PublishMode};
use crate::runtime::Endpoints;
use crate::transport::{InboundTunnel, Transport};
use crate::wire::{MeshTable, TunnelRequest, WireFailure};
use route::{BackendLoad, Route, RouteState};

pub use proxy::header as proxy_header;

/// How often ports that could not be bound are tried again.
pub const BIND_RETRY_MS: u64 = 5_000;

/// The pause after a listener's accept or receive fails (out of descriptors, say), so a
/// persistent error does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The mesh's bounds and deadlines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshConfig {
    /// The address the published ports are bound on (every address: `0.0.0.0`).
    pub bind_ip: IpAddr,
    /// TCP connections open at once through one published port; further ones are closed at
    /// accept.
    pub connections_per_port_max: usize,
    /// Connections (and UDP flows) open at once to one task; a task at its bound is passed
    /// over for another.
    pub connections_per_backend_max: usize,
    /// UDP flows (client addresses) at once through one published port; datagrams of further
    /// clients are dropped.
    pub udp_flows_per_port_max: usize,
    /// Datagrams queued for one flow's backend; further ones are dropped.
    pub udp_flow_queue_max: usize,
    /// A UDP flow with no datagram either way for this long ends.
    pub udp_flow_idle_ms: u64,
    /// Deadline of a connect to a local task.
    pub connect_timeout_ms: u64,
    /// Tunnels from peers waiting for this node to connect them.
    pub tunnel_queue_max: usize,
    /// TCP connections open at once through the node's VIP listener, over all VIPs;
    /// further ones are closed at accept.
    pub vip_connections_max: usize,
}

impl Default for MeshConfig {
    fn default() -> MeshConfig {
        MeshConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            connections_per_port_max: 4_096,
            connections_per_backend_max: 1_024,
            udp_flows_per_port_max: 1_024,
            udp_flow_queue_max: 64,
            udp_flow_idle_ms: 30_000,
            connect_timeout_ms: 1_000,
            tunnel_queue_max: 256,
            vip_connections_max: 4_096,
        }
    }
}

/// What `node inspect` shows of the mesh (`Mesh`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// The table's version this node routes by (0: none yet).
    pub table_version: u64,
    /// Ports listening now, e.g. `8080/tcp`.
    pub listening: Vec<String>,
    /// Ports that could not be bound, with why, e.g. `8080/tcp (service web): Address in use`.
    pub bind_errors: Vec<String>,
    /// Connections and flows through the mesh since start, and those refused at a bound or
    /// with no backend left to try.
    pub connections: u64,
    pub connections_failed: u64,
    pub tunnels_served: u64,
    pub tunnels_refused: u64,
    /// Where the VIP listener listens (the data path's redirect target), if it could bind.
    #[serde(default)]
    pub vip_listener: Option<String>,
}

type PortKey = (PortProtocol, u16);

fn key_text((proto, port): PortKey) -> String {
    format!("{port}/{}", proto.as_str())
}

/// A bound port: its route, and the task that accepts on it (aborted when the port goes).
struct Listener {
    route: Arc<Route>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    connections_failed: AtomicU64,
    tunnels_served: AtomicU64,
    tunnels_refused: AtomicU64,
}

/// State shared by the reconciler, the listeners and the tunnel server.
pub(crate) struct Inner {
    me: NodeId,
    config: MeshConfig,
    transport: Transport,
    endpoints: Endpoints,
    table: RwLock<Option<Arc<MeshTable>>>,
    listeners: Mutex<HashMap<PortKey, Listener>>,
    bind_errors: Mutex<BTreeMap<PortKey, String>>,
    load: Arc<BackendLoad>,
    counters: Counters,
    /// Connections open through the VIP listener now.
    vip_open: std::sync::atomic::AtomicUsize,
    vip_turns: vip::VipTurns,
}

/// The node's routing mesh. Dropping the handle stops the listeners.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
    vip_addr: Option<SocketAddr>,
    _tasks: Arc<Tasks>,
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("node", &self.inner.me)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// Starts the mesh of node `me`: it follows `feed` (the tables the agent receives), serves
    /// the tunnels peers open on `transport`, and reaches local tasks through `endpoints`.
    pub fn start(
        me: NodeId,
        config: MeshConfig,
        transport: Transport,
        endpoints: Endpoints,
        feed: watch::Receiver<Option<Arc<MeshTable>>>,
    ) -> Mesh {
        let inner = Arc::new(Inner {
            me,
            config: config.clone(),
            transport: transport.clone(),
            endpoints,
            table: RwLock::new(None),
            listeners: Mutex::new(HashMap::new()),
            bind_errors: Mutex::new(BTreeMap::new()),
            load: Arc::new(BackendLoad::default()),
            counters: Counters::default(),
            vip_open: std::sync::atomic::AtomicUsize::new(0),
            vip_turns: vip::VipTurns::default(),
        });
        let (tx, rx) = mpsc::channel(config.tunnel_queue_max);
        transport.serve_tunnels(tx);
        let follow = tokio::spawn(follow(inner.clone(), feed));
        let serve = tokio::spawn(serve_tunnels(inner.clone(), rx));
        let mut tasks = vec![follow, serve];
        let vip_addr = match vip::listen(inner.clone(), SocketAddr::new(config.bind_ip, 0)) {
            Ok((task, addr)) => {
                tasks.push(task);
                Some(addr)
            }
            Err(e) => {
                warn!("cannot bind the VIP listener: connections to VIPs will not be carried: {e}");
                None
            }
        };
        Mesh {
            inner,
            vip_addr,
            _tasks: Arc::new(Tasks(tasks)),
        }
    }

    /// Where the VIP listener listens: the data path redirects connections to VIPs to its
    /// port. None when it could not be bound.
    pub fn vip_addr(&self) -> Option<SocketAddr> {
        self.vip_addr
    }

    pub fn status(&self) -> MeshStatus {
        let i = &self.inner;
        let version = i
            .table
            .read()
            .expect("table lock")
            .as_ref()
            .map_or(0, |t| t.version);
        let mut listening: Vec<PortKey> = i
            .listeners
            .lock()
            .expect("listeners lock")
            .keys()
            .copied()
            .collect();
        listening.sort();
        let bind_errors = i
            .bind_errors
            .lock()
            .expect("bind errors lock")
            .values()
            .cloned()
            .collect();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MeshStatus {
            table_version: version,
            listening: listening.into_iter().map(key_text).collect(),
            bind_errors,
            connections: get(&i.counters.connections),
            connections_failed: get(&i.counters.connections_failed),
            tunnels_served: get(&i.counters.tunnels_served),
            tunnels_refused: get(&i.counters.tunnels_refused),
            vip_listener: self.vip_addr.map(|a| a.to_string()),
        }
    }

    /// Connections open now to `task` from this node's mesh.
    pub fn backend_connections(&self, task: crate::model::TaskId) -> usize {
        self.inner.load.open(task)
    }
}

/// The mesh in the node's registry (`mesh/<node>`): `Status` answers [`MeshStatus`], what
/// `node inspect` shows.
impl crate::registry::AdminTarget for Mesh {
    fn messages(&self) -> &'static [&'static str] {
        &["Status"]
    }

    fn call(&self, _msg: &str, _args: serde_json::Value) -> crate::registry::AdminReply<'_> {
        let status = self.status();
        Box::pin(async move {
            serde_json::to_value(status)
                .map_err(|e| crate::registry::AdminError::NoAnswer("mesh".into(), e.to_string()))
        })
    }
}

/// Follows the feed: each new table re-plans the listeners. Ports that failed to bind are
/// tried again every [`BIND_RETRY_MS`].
// The retry's timer: the mesh is a shell, and its own sleep is its timer.
#[allow(clippy::disallowed_methods)]
async fn follow(inner: Arc<Inner>, mut feed: watch::Receiver<Option<Arc<MeshTable>>>) {
    loop {
        let table = feed.borrow_and_update().clone();
        if let Some(table) = table {
            inner.apply(table);
        }
        let retry = !inner
            .bind_errors
            .lock()
            .expect("bind errors lock")
            .is_empty();
        tokio::select! {
            changed = feed.changed() => if changed.is_err() {
                debug!("the mesh feed is gone: the listeners stay as they are");
                return;
            },
            () = tokio::time::sleep(Duration::from_millis(BIND_RETRY_MS)), if retry => {}
        }
    }
}

impl Inner {
    /// Where `port`'s target of `backend`, a task of this node, is reached.
    fn local_target(
        &self,
        backend: &crate::wire::MeshBackend,
        port: &PortConfig,
    ) -> Result<SocketAddr, String> {
        self.endpoints
            .get(backend.task)
            .map(|ep| ep.socket(port.target))
            .ok_or_else(|| "the task has no endpoint on this node".to_string())
    }

    /// A tunnel to `backend`, a task of another node, for one connection or flow of `port`.
    async fn tunnel(
        &self,
        port: &PortConfig,
        service: crate::model::ServiceId,
        backend: &crate::wire::MeshBackend,
        client: SocketAddr,
        entry: SocketAddr,
    ) -> Result<crate::transport::TunnelStreams, String> {
        let req = crate::wire::TunnelRequest {
            service,
            task: backend.task,
            protocol: port.protocol,
            published: port.published,
            target: port.target,
            client,
            entry,
            network: None,
        };
        self.transport
            .open_tunnel(backend.node_addr, &req)
            .await
            .map_err(|e| e.to_string())
    }

    /// Counts a tunnel answered: opened, or refused.
    fn tunnel_answered(&self, opened: bool) {
        let c = if opened {
            &self.counters.tunnels_served
        } else {
            &self.counters.tunnels_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes the listeners match `table`: a route per published port (host ports only with a
    /// task here), new ports bound, gone ports closed, the rest given their new backends.
    fn apply(self: &Arc<Self>, table: Arc<MeshTable>) {
        *self.table.write().expect("table lock") = Some(table.clone());
        self.vip_turns.retain(&table);
        let mut wanted: BTreeMap<PortKey, RouteState> = BTreeMap::new();
        for service in &table.services {
            for port in &service.ports {
                let key = (port.protocol, port.published);
                let state = RouteState::new(service, port, self.me);
                if port.mode == PublishMode::Host && state.backends.is_empty() {
                    continue;
                }
                if let Some(other) = wanted.get(&key) {
                    warn!(port = %key_text(key), first = %other.service_name, second = %service.name,
                        "two services publish one port; the first keeps it");
                    continue;
                }
                wanted.insert(key, state);
            }
        }
        let mut listeners = self.listeners.lock().expect("listeners lock");
        let mut errors = self.bind_errors.lock().expect("bind errors lock");
        listeners.retain(|key, _| wanted.contains_key(key));
        errors.retain(|key, _| wanted.contains_key(key));
        for (key, state) in wanted {
            if let Some(l) = listeners.get(&key) {
                l.route.update(state);
                continue;
            }
            let name = state.service_name.clone();
            let route = Arc::new(Route::new(state));
            let addr = SocketAddr::new(self.config.bind_ip, key.1);
            let bound = match key.0 {
                PortProtocol::Tcp => tcp::listen(self.clone(), route.clone(), addr),
                PortProtocol::Udp => udp::listen(self.clone(), route.clone(), addr),
            };
            match bound {
                Ok(task) => {
                    if errors.remove(&key).is_some() {
                        info!(port = %key_text(key), service = %name, "published port bound after all");
                    } else {
                        debug!(port = %key_text(key), service = %name, "published port bound");
                    }
                    listeners.insert(key, Listener { route, task });
                }
                Err(e) => {
                    let why = format!("{} (service {name}): {e}", key_text(key));
                    if errors.get(&key) != Some(&why) {
                        warn!("cannot bind published port {why}; the other ports keep serving");
                    }
                    errors.insert(key, why);
                }
            }
        }
    }

    /// The port config of `req`'s service that the request names, if the task is one of this
    /// node's tasks in rotation for that service: what a tunnel may reach.
    fn tunnel_port(&self, req: &TunnelRequest) -> Result<PortConfig, String> {
        let table = self.table.read().expect("table lock").clone();
        let Some(table) = table else {
            return Err("this node has no mesh table yet".into());
        };
        let Some(service) = table.services.iter().find(|s| s.id == req.service) else {
            return Err(format!("service {} publishes no port", req.service));
        };
        let Some(port) = service.ports.iter().find(|p| {
            p.published == req.published && p.target == req.target && p.protocol == req.protocol
        }) else {
            return Err(format!(
                "service {} publishes no port {}->{}/{}",
                service.name,
                req.published,
                req.target,
                req.protocol.as_str()
            ));
        };
        if !service
            .backends
            .iter()
            .any(|b| b.task == req.task && b.node == self.me)
        {
            return Err(format!(
                "task {} of service {} is not in rotation on this node",
                req.task, service.name
            ));
        }
        Ok(*port)
    }
}

/// Takes the tunnels peers open, each in its own task; a bad one is refused `Unreachable`.
async fn serve_tunnels(inner: Arc<Inner>, mut rx: mpsc::Receiver<InboundTunnel>) {
    while let Some(t) = rx.recv().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Some(network) = t.req.network {
                serve_vip_tunnel(&inner, t, network).await;
                return;
            }
            let checked = inner.tunnel_port(&t.req).and_then(|port| {
                let ep = inner
                    .endpoints
                    .get(t.req.task)
                    .ok_or_else(|| format!("task {} is not running on this node", t.req.task))?;
                Ok((port, ep.socket(t.req.target)))
            });
            let (port, to) = match checked {
                Ok(ok) => ok,
                Err(why) => {
                    debug!(from = %t.from.node_id, "tunnel refused: {why}");
                    inner
                        .counters
                        .tunnels_refused
                        .fetch_add(1, Ordering::Relaxed);
                    t.refuse(WireFailure::Unreachable(why)).await;
                    return;
                }
            };
            match port.protocol {
                PortProtocol::Tcp => tcp::serve_tunnel(&inner, t, &port, to).await,
                PortProtocol::Udp => udp::serve_tunnel(&inner, t, &port, to).await,
            }
        });
    }
}

/// A tunnel for a connection to a VIP: to the task's address on the network it names, if the
/// task is this node's, in rotation, and on that network (TCP only).
async fn serve_vip_tunnel(inner: &Arc<Inner>, t: InboundTunnel, network: crate::model::NetworkId) {
    let checked = (|| {
        if t.req.protocol != PortProtocol::Tcp || t.req.published != 0 {
            return Err("a VIP tunnel carries TCP to no published port".to_string());
        }
        let table = inner.table.read().expect("table lock").clone();
        let table = table.ok_or("this node has no mesh table yet")?;
        let addr = vip::tunnel_target(&table, inner.me, &t.req, network)?;
        let ep = inner
            .endpoints
            .get(t.req.task)
            .ok_or_else(|| format!("task {} is not running on this node", t.req.task))?;
        let addr = ep.overlay.get(&network).copied().unwrap_or(addr);
        Ok(SocketAddr::new(IpAddr::V4(addr), t.req.target))
    })();
    match checked {
        Ok(to) => {
            let port = PortConfig::tcp(0, t.req.target);
            tcp::serve_tunnel(inner, t, &port, to).await;
        }
        Err(why) => {
            debug!(from = %t.from.node_id, "VIP tunnel refused: {why}");
            inner.tunnel_answered(false);
            t.refuse(WireFailure::Unreachable(why)).await;
        }
    }
}
