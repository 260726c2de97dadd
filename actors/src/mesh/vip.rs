//! Service VIPs: one TCP listener per node that takes every connection to a VIP (the data
//! path redirects them to it: `REDIRECT --to-ports` on each overlay bridge), reads where the
//! connection was going (`SO_ORIGINAL_DST`), and balances it round-robin over the service's
//! tasks on that network, by the published ports' engine: a local task's overlay address, or
//! a tunnel that names the network, whose far node connects to its task's overlay address.
//!
//! UDP to a VIP is not carried (yet): a UDP service is reached by its tasks' names
//! (`tasks.<service>`, or `dnsrr`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

use super::Inner;
use crate::model::{NetworkId, PortConfig, ServiceId, TaskId};
use crate::wire::{MeshBackend, MeshTable, TunnelRequest};

/// A VIP's destination in the table: the service, the network, and the tasks on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VipRoute {
    pub service: ServiceId,
    pub network: NetworkId,
    /// The tasks in rotation, each with its address on the network.
    pub backends: Vec<(MeshBackend, Ipv4Addr)>,
}

/// What `vip` reaches in `table`, if it is a service's VIP.
pub(crate) fn route(table: &MeshTable, vip: Ipv4Addr) -> Option<VipRoute> {
    table.services.iter().find_map(|s| {
        let n = s.networks.iter().find(|n| n.vip == Some(vip))?;
        let network = table.networks.get(usize::from(n.network))?.id;
        let backends = s
            .backends
            .iter()
            .filter_map(|b| {
                let (_, addr) = b.overlay.iter().find(|(i, _)| *i == n.network)?;
                Some((b.clone(), *addr))
            })
            .collect();
        Some(VipRoute {
            service: s.id,
            network,
            backends,
        })
    })
}

/// Where a tunnel that names `req.network` goes: the task's address on that network, if
/// the task is this node's, in rotation for the service, and on that network.
pub(crate) fn tunnel_target(
    table: &MeshTable,
    me: crate::model::NodeId,
    req: &TunnelRequest,
    network: NetworkId,
) -> Result<Ipv4Addr, String> {
    let Some(index) = table.networks.iter().position(|n| n.id == network) else {
        return Err(format!("no network {network}"));
    };
    let Some(service) = table.services.iter().find(|s| s.id == req.service) else {
        return Err(format!("no service {}", req.service));
    };
    if !service
        .networks
        .iter()
        .any(|n| usize::from(n.network) == index)
    {
        return Err(format!(
            "service {} is not on network {network}",
            service.name
        ));
    }
    let backend = service
        .backends
        .iter()
        .find(|b| b.task == req.task && b.node == me)
        .ok_or_else(|| {
            format!(
                "task {} of service {} is not in rotation on this node",
                req.task, service.name
            )
        })?;
    backend
        .overlay
        .iter()
        .find(|(i, _)| usize::from(*i) == index)
        .map(|(_, a)| *a)
        .ok_or_else(|| format!("task {} is not on network {network}", req.task))
}

/// Round-robin positions, one per VIP.
#[derive(Default)]
pub(crate) struct VipTurns(std::sync::Mutex<HashMap<Ipv4Addr, usize>>);

impl VipTurns {
    /// The backends to try, best first: the next in turn and, for the one retry, another.
    fn pick(
        &self,
        vip: Ipv4Addr,
        route: &VipRoute,
        full: impl Fn(TaskId) -> bool,
    ) -> Vec<(MeshBackend, Ipv4Addr)> {
        let usable: Vec<&(MeshBackend, Ipv4Addr)> = route
            .backends
            .iter()
            .filter(|(b, _)| !full(b.task))
            .collect();
        let n = usable.len();
        if n == 0 {
            return Vec::new();
        }
        let i = {
            let mut turns = self.0.lock().expect("vip turns lock");
            let next = turns.entry(vip).or_insert(0);
            let i = *next % n;
            *next = next.wrapping_add(1);
            i
        };
        let mut picked = vec![usable[i].clone()];
        if n > 1 {
            picked.push(usable[(i + 1) % n].clone());
        }
        picked
    }

    /// Forgets the VIPs no longer in `table`.
    pub fn retain(&self, table: &MeshTable) {
        let mut turns = self.0.lock().expect("vip turns lock");
        turns.retain(|vip, _| {
            table
                .services
                .iter()
                .any(|s| s.networks.iter().any(|n| n.vip == Some(*vip)))
        });
    }
}

/// Binds `addr` (port 0: one the system picks) and accepts on it until the task is aborted.
pub(super) fn listen(
    inner: Arc<Inner>,
    addr: SocketAddr,
) -> std::io::Result<(JoinHandle<()>, SocketAddr)> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    let bound = listener.local_addr()?;
    Ok((tokio::spawn(accept_loop(inner, listener)), bound))
}

// The pause after a failed accept: the mesh is a shell, and its own sleep is its timer.
#[allow(clippy::disallowed_methods)]
async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                debug!("VIP accept failed: {e}");
                tokio::time::sleep(super::ERROR_PAUSE).await;
                continue;
            }
        };
        let open = &inner.vip_open;
        if open.fetch_add(1, Ordering::AcqRel) >= inner.config.vip_connections_max {
            open.fetch_sub(1, Ordering::AcqRel);
            inner
                .counters
                .connections_failed
                .fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "VIP connection closed: the bound of VIP connections is reached");
            continue;
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            forward(&inner, client, peer).await;
            inner.vip_open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Where the client was going: the VIP and port before the redirect (or, on a connection that
/// was not redirected, the address it reached).
fn original_destination(client: &TcpStream) -> Option<SocketAddrV4> {
    let sock = socket2::SockRef::from(client);
    let orig = sock.original_dst_v4().ok().and_then(|a| a.as_socket_ipv4());
    orig.or_else(|| match client.local_addr().ok()? {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    })
}

async fn forward(inner: &Arc<Inner>, client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    inner.counters.connections.fetch_add(1, Ordering::Relaxed);
    let Some(dest) = original_destination(&client) else {
        inner
            .counters
            .connections_failed
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    let table = inner.table.read().expect("table lock").clone();
    let Some(route) = table.as_deref().and_then(|t| route(t, *dest.ip())) else {
        inner
            .counters
            .connections_failed
            .fetch_add(1, Ordering::Relaxed);
        debug!(%peer, %dest, "VIP connection to no service's VIP: closed");
        return;
    };
    let max = inner.config.connections_per_backend_max;
    let picked = inner
        .vip_turns
        .pick(*dest.ip(), &route, |t| inner.load.is_full(t, max));
    let port = PortConfig::tcp(0, dest.port());
    for (backend, addr) in &picked {
        let Some(slot) = inner.load.try_take(backend.task, max) else {
            continue;
        };
        let up = if backend.node == inner.me {
            let to = inner
                .endpoints
                .get(backend.task)
                .and_then(|ep| ep.overlay.get(&route.network).copied())
                .unwrap_or(*addr);
            let in_flight = inner.endpoints.connection(backend.task);
            super::tcp::connect_local(inner, SocketAddr::new(to.into(), dest.port()))
                .await
                .map(|s| super::tcp::Upstream::Local(s, in_flight))
        } else {
            let req = TunnelRequest {
                service: route.service,
                task: backend.task,
                protocol: port.protocol,
                published: 0,
                target: dest.port(),
                client: peer,
                entry: SocketAddr::V4(dest),
                network: Some(route.network),
            };
            inner
                .transport
                .open_tunnel(backend.node_addr, &req)
                .await
                .map(super::tcp::Upstream::Tunnel)
                .map_err(|e| e.to_string())
        };
        match up {
            Ok(up) => {
                super::tcp::pipe(client, up, slot).await;
                return;
            }
            Err(e) => debug!(task = %backend.task, "VIP backend unusable: {e}"),
        }
    }
    inner
        .counters
        .connections_failed
        .fetch_add(1, Ordering::Relaxed);
    debug!(%peer, %dest, "no task took the VIP connection: closed");
}

#[cfg(test)]
#[path = "vip_tests.rs"]
mod tests;
