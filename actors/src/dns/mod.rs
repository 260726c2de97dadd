//! The node's embedded DNS server: what its tasks use as their resolver (`TaskContext::dns`).
//!
//! ```text
//!  agent ── MeshFeed (the leader's MeshTable) ──► follow ──► listeners: UDP+TCP :53 on each gateway
//!  runtimes ── Endpoints (this node's tasks) ──┘                │
//!  task ─► query ─► hickory-server ─► Handler ─┬─► names::answer (table, asker's networks)
//!                                              └─► hickory Resolver ─► the host's resolvers
//! ```
//!
//! One hickory-server per listening address, each on UDP and TCP port 53 of a gateway this
//! node's tasks reach: the gateway of the node's ingress slice (known from its tasks' ingress
//! addresses) and that of every overlay network in the table. A task's ingress gateway is
//! bound the moment the runtime records the task's endpoint, before the task runs
//! ([`Endpoints::on_change`]), so its first query finds the server. The sockets are bound with
//! `IP_FREEBIND`, so a gateway is served from the moment the data path puts the address on its
//! bridge, whichever comes first. A network that leaves the table closes its listener.
//!
//! The asking task is found by its source address among this node's endpoints (its ingress
//! or an overlay address); it is answered the cluster's names on the networks it is on only
//! ([`names`]). Other names, and the cluster's names on networks it is not on, go to the host's
//! resolvers (`/etc/resolv.conf` read at start) through hickory's resolver, which caches by
//! the upstream TTLs. Answers from the table carry a TTL of [`DnsConfig::ttl_secs`] (1 s): a
//! task that stops leaves `tasks.<service>` with the next table, and no client holds it long.
//!
//! Bounds ([`DnsConfig`]): forwarded queries waiting at once, the time a TCP connection may
//! stay without a query, addresses per answer ([`names::ANSWER_ADDRS_MAX`]), listeners (one
//! per network of the table, at most `NETWORKS_MAX`, plus the ingress slice's).
//!
//! | file | what |
//! |---|---|
//! | `names.rs` | the cluster's names: what a name answers for an asker (pure) |
//! | `handler.rs` | hickory-server's `RequestHandler`: the asker, the answer, the forward |
//! | `listen.rs` | the listening sockets and the servers on them |

mod handler;
mod listen;
pub mod names;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::model::{INGRESS_PREFIX, INGRESS_SUBNET, NODE_SLICE_PREFIX, NodeId, prefix_mask};
use crate::runtime::Endpoints;
use crate::wire::MeshTable;
use handler::{Handler, Shared};
use listen::Listener;

/// The port the server listens on at each gateway.
pub const DNS_PORT: u16 = 53;

/// Where forwarded names go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The host's resolvers, as `/etc/resolv.conf` names them.
    System,
    /// These servers (UDP, then TCP on truncation): the tests' fake upstream.
    Servers(Vec<SocketAddr>),
}

/// The DNS server's bounds and deadlines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The port served at each gateway ([`DNS_PORT`]; tests use others).
    pub port: u16,
    /// TTL of the answers from the table.
    pub ttl_secs: u32,
    /// Forwarded queries waiting for the host's resolvers at once; one more is answered
    /// SERVFAIL at once.
    pub forwards_max: usize,
    /// Deadline of one forwarded query to one upstream server (two tries each).
    pub forward_timeout_ms: u64,
    /// A TCP connection with no query for this long is closed.
    pub tcp_idle_ms: u64,
    /// How often the ingress gateway is looked for among the node's task endpoints (between
    /// tables).
    pub watch_ms: u64,
    pub upstream: Upstream,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            port: DNS_PORT,
            ttl_secs: 1,
            forwards_max: 256,
            forward_timeout_ms: 2_000,
            tcp_idle_ms: 5_000,
            watch_ms: 100,
            upstream: Upstream::System,
        }
    }
}

/// What `node inspect` could show of the DNS server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// Addresses served now, e.g. `10.0.1.1:53`.
    pub listening: Vec<String>,
    /// Addresses that could not be bound, with why.
    pub bind_errors: Vec<String>,
    /// Queries answered from the table, forwarded, refused at the forwarding bound.
    pub answered: u64,
    pub forwarded: u64,
    pub refused: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The host's resolver configuration could not be read: nothing was started.
    #[error("cannot read the host's resolvers: {0}")]
    SystemConfig(String),
    /// The forwarding resolver could not be made: nothing was started.
    #[error("cannot make the forwarding resolver: {0}")]
    Resolver(String),
}

struct State {
    /// Listeners the table and endpoints asked for, by gateway.
    gateways: BTreeMap<Ipv4Addr, Listener>,
    /// Listeners asked for by [`Dns::listen_on`], kept whatever the table says.
    pinned: Vec<Listener>,
    bind_errors: BTreeMap<Ipv4Addr, String>,
}

struct Inner {
    config: DnsConfig,
    shared: Arc<Shared>,
    state: Mutex<State>,
}

/// The node's DNS server. Dropping the last handle closes its listeners.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
    _follow: Arc<Follow>,
}

struct Follow(JoinHandle<()>);

impl Drop for Follow {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("node", &self.inner.shared.me)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Starts the DNS server of node `me`: it follows `feed` (the tables the agent receives)
    /// and this node's task endpoints, and forwards to `config.upstream`.
    pub fn start(
        me: NodeId,
        config: DnsConfig,
        endpoints: Endpoints,
        feed: watch::Receiver<Option<Arc<MeshTable>>>,
        seed: u64,
    ) -> Result<Dns, DnsError> {
        let forwarder = forwarder(&config)?;
        let shared = Arc::new(Shared::new(
            me,
            config.ttl_secs,
            endpoints,
            forwarder,
            config.forwards_max,
            seed,
        ));
        let inner = Arc::new(Inner {
            config,
            shared,
            state: Mutex::new(State {
                gateways: BTreeMap::new(),
                pinned: Vec::new(),
                bind_errors: BTreeMap::new(),
            }),
        });
        // A task's gateway is served before the task runs: the runtime records its endpoint
        // first, and this binds the listener then and there (the follow loop's poll could
        // come after the task's first query). Weak: the endpoints outlive the server.
        let weak = Arc::downgrade(&inner);
        let watching = inner.shared.endpoints.on_change(move || {
            if let Some(inner) = weak.upgrade() {
                let table = inner.shared.table.read().expect("dns table lock").clone();
                inner.reconcile(table.as_deref());
            }
        });
        if !watching {
            warn!("the DNS server follows the task endpoints by polling only: too many watchers");
        }
        let follow = tokio::spawn(follow(inner.clone(), feed));
        Ok(Dns {
            inner,
            _follow: Arc::new(Follow(follow)),
        })
    }

    /// Serves `addr` too (UDP and TCP on one port; port 0: one the system picks), whatever the
    /// table says; returns the address bound.
    pub fn listen_on(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let l = Listener::bind(addr, &self.inner.config, Handler(self.inner.shared.clone()))?;
        let bound = l.addr;
        self.inner
            .state
            .lock()
            .expect("dns state lock")
            .pinned
            .push(l);
        Ok(bound)
    }

    pub fn status(&self) -> DnsStatus {
        let st = self.inner.state.lock().expect("dns state lock");
        let c = &self.inner.shared.counters;
        DnsStatus {
            listening: st
                .gateways
                .values()
                .chain(&st.pinned)
                .map(|l| l.addr.to_string())
                .collect(),
            bind_errors: st.bind_errors.values().cloned().collect(),
            answered: c.answered.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }
}

/// The DNS server in the node's registry (`dns/<node>`): `Status` answers [`DnsStatus`].
impl crate::registry::AdminTarget for Dns {
    fn messages(&self) -> &'static [&'static str] {
        &["Status"]
    }

    fn call(&self, _msg: &str, _args: serde_json::Value) -> crate::registry::AdminReply<'_> {
        let status = self.status();
        Box::pin(async move {
            serde_json::to_value(status)
                .map_err(|e| crate::registry::AdminError::NoAnswer("dns".into(), e.to_string()))
        })
    }
}

/// hickory's resolver, set to ask `config.upstream` for names as given (no search list, no
/// hosts file), keeping CNAME chains in its answers.
fn forwarder(config: &DnsConfig) -> Result<handler::Forwarder, DnsError> {
    let (servers, mut opts) = match &config.upstream {
        Upstream::System => {
            let (conf, opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
            (conf.name_servers().to_vec(), opts)
        }
        Upstream::Servers(addrs) => {
            let servers = addrs
                .iter()
                .map(|a| {
                    let mut s = NameServerConfig::udp_and_tcp(a.ip());
                    for c in &mut s.connections {
                        c.port = a.port();
                    }
                    s
                })
                .collect();
            (servers, ResolverOpts::default())
        }
    };
    opts.timeout = Duration::from_millis(config.forward_timeout_ms);
    opts.attempts = 2;
    opts.preserve_intermediates = true;
    opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    opts.ndots = 0;
    let conf = ResolverConfig::from_parts(None, Vec::new(), servers);
    hickory_resolver::Resolver::builder_with_config(conf, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| DnsError::Resolver(e.to_string()))
}

/// The gateways to serve: the ingress slice's of this node's tasks, and every overlay
/// network's of the table.
fn gateways(table: Option<&MeshTable>, endpoints: &Endpoints) -> BTreeSet<Ipv4Addr> {
    let ingress = prefix_mask(INGRESS_PREFIX);
    let slice = prefix_mask(NODE_SLICE_PREFIX);
    let mut out: BTreeSet<Ipv4Addr> = endpoints
        .all()
        .into_iter()
        .filter(|(_, ep)| !ep.host_network)
        .filter_map(|(_, ep)| match ep.ip {
            IpAddr::V4(a) if u32::from(a) & ingress == u32::from(INGRESS_SUBNET) => {
                Some(Ipv4Addr::from((u32::from(a) & slice) + 1))
            }
            _ => None,
        })
        .collect();
    if let Some(t) = table {
        out.extend(t.networks.iter().map(|n| n.gateway));
    }
    out
}

/// Follows the feed and the endpoints: each new table is handed to the handler, and the
/// listeners are made to match the gateways.
// The watch's timer: the server is a shell, and its own sleep is its timer.
#[allow(clippy::disallowed_methods)]
async fn follow(inner: Arc<Inner>, mut feed: watch::Receiver<Option<Arc<MeshTable>>>) {
    let mut feed_open = true;
    loop {
        let table = feed.borrow_and_update().clone();
        if let Some(t) = &table {
            *inner.shared.table.write().expect("dns table lock") = Some(t.clone());
        }
        inner.reconcile(table.as_deref());
        let pause = tokio::time::sleep(Duration::from_millis(inner.config.watch_ms));
        tokio::select! {
            changed = feed.changed(), if feed_open => if changed.is_err() {
                debug!("the mesh feed is gone: the DNS server answers from its last table");
                feed_open = false;
            },
            () = pause => {}
        }
    }
}

impl Inner {
    fn reconcile(&self, table: Option<&MeshTable>) {
        let wanted = gateways(table, &self.shared.endpoints);
        let mut st = self.state.lock().expect("dns state lock");
        st.gateways.retain(|g, _| wanted.contains(g));
        st.bind_errors.retain(|g, _| wanted.contains(g));
        for gw in wanted {
            if st.gateways.contains_key(&gw) {
                continue;
            }
            let addr = SocketAddr::new(IpAddr::V4(gw), self.config.port);
            match Listener::bind(addr, &self.config, Handler(self.shared.clone())) {
                Ok(l) => {
                    if st.bind_errors.remove(&gw).is_some() {
                        info!(%addr, "DNS server listening after all");
                    } else {
                        debug!(%addr, "DNS server listening");
                    }
                    st.gateways.insert(gw, l);
                }
                Err(e) => {
                    let why = format!("{addr}: {e}");
                    if st.bind_errors.get(&gw) != Some(&why) {
                        warn!("the DNS server cannot listen on {why}; tried again shortly");
                    }
                    st.bind_errors.insert(gw, why);
                }
            }
        }
    }
}
