//! TCP through the mesh: the listener of a published port, forwarding each connection to a
//! local task or through a tunnel, and the far end of a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

use super::route::{BackendSlot, Route};
use super::{Inner, proxy};
use crate::model::{PortConfig, PortProtocol};
use crate::transport::{InboundTunnel, TunnelStreams};
use crate::wire::{MeshBackend, WireFailure};

/// Binds `addr` and accepts on it until the returned task is aborted.
pub(super) fn listen(
    inner: Arc<Inner>,
    route: Arc<Route>,
    addr: SocketAddr,
) -> std::io::Result<JoinHandle<()>> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    Ok(tokio::spawn(accept_loop(inner, route, listener)))
}

// The pause after a failed accept: the mesh is a shell, and its own sleep is its timer.
#[allow(clippy::disallowed_methods)]
async fn accept_loop(inner: Arc<Inner>, route: Arc<Route>, listener: TcpListener) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: the next accept may work.
                debug!("accept failed: {e}");
                tokio::time::sleep(super::ERROR_PAUSE).await;
                continue;
            }
        };
        if route.open.fetch_add(1, Ordering::AcqRel) >= inner.config.connections_per_port_max {
            route.open.fetch_sub(1, Ordering::AcqRel);
            route.refused.fetch_add(1, Ordering::Relaxed);
            inner
                .counters
                .connections_failed
                .fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "connection closed: the port's bound of connections is reached");
            continue;
        }
        let (inner, route) = (inner.clone(), route.clone());
        tokio::spawn(async move {
            forward(&inner, &route, client, peer).await;
            route.open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Where a connection goes: a local task's socket (counted as in flight to the task while
/// it lasts), or a tunnel to the task's node.
pub(super) enum Upstream {
    Local(TcpStream, crate::runtime::InFlight),
    Tunnel(TunnelStreams),
}

async fn forward(inner: &Arc<Inner>, route: &Route, client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let entry = client
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(inner.config.bind_ip, 0));
    let max = inner.config.connections_per_backend_max;
    let (state, picked) = route.pick(peer.ip(), |t| inner.load.is_full(t, max));
    inner.counters.connections.fetch_add(1, Ordering::Relaxed);
    for backend in &picked {
        let Some(slot) = inner.load.try_take(backend.task, max) else {
            continue;
        };
        match connect(inner, &state.port, state.service, backend, peer, entry).await {
            Ok(up) => {
                pipe(client, up, slot).await;
                return;
            }
            Err(e) => debug!(task = %backend.task, "backend unusable, {}: {e}",
                if std::ptr::eq(backend, picked.last().expect("not empty")) { "no retry left" } else { "trying another" }),
        }
    }
    inner
        .counters
        .connections_failed
        .fetch_add(1, Ordering::Relaxed);
    debug!(%peer, port = state.port.published, "no backend took the connection: closed");
}

async fn connect(
    inner: &Arc<Inner>,
    port: &PortConfig,
    service: crate::model::ServiceId,
    backend: &MeshBackend,
    client: SocketAddr,
    entry: SocketAddr,
) -> Result<Upstream, String> {
    if backend.node == inner.me {
        let to = inner.local_target(backend, port)?;
        let in_flight = inner.endpoints.connection(backend.task);
        let stream = connect_local(inner, to).await?;
        return finish_local(stream, port, client, entry)
            .await
            .map(|s| Upstream::Local(s, in_flight));
    }
    inner
        .tunnel(port, service, backend, client, entry)
        .await
        .map(Upstream::Tunnel)
}

pub(super) async fn connect_local(inner: &Inner, to: SocketAddr) -> Result<TcpStream, String> {
    let deadline = Duration::from_millis(inner.config.connect_timeout_ms);
    match tokio::time::timeout(deadline, TcpStream::connect(to)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("connect to {to}: {e}")),
        Err(_) => Err(format!(
            "connect to {to}: no answer within {} ms",
            deadline.as_millis()
        )),
    }
}

/// Writes the PROXY header when the port asks for one.
async fn finish_local(
    mut stream: TcpStream,
    port: &PortConfig,
    client: SocketAddr,
    entry: SocketAddr,
) -> Result<TcpStream, String> {
    if port.proxy_protocol {
        let header = proxy::header(PortProtocol::Tcp, client, entry);
        stream
            .write_all(&header)
            .await
            .map_err(|e| format!("PROXY header not sent: {e}"))?;
    }
    Ok(stream)
}

pub(super) async fn pipe(mut client: TcpStream, up: Upstream, _slot: BackendSlot) {
    let done = match up {
        Upstream::Local(mut s, in_flight) => tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut s) => r,
            () = in_flight.task_gone() => Err(std::io::Error::other("the task is gone")),
        },
        Upstream::Tunnel(t) => {
            let mut stream = tokio::io::join(t.recv, t.send);
            let r = tokio::io::copy_bidirectional(&mut client, &mut stream).await;
            drop(t.slot);
            r
        }
    };
    if let Err(e) = done {
        debug!("connection ended: {e}");
    }
}

/// The far end of a TCP tunnel: connects to the task, answers, and carries the bytes.
pub(super) async fn serve_tunnel(
    inner: &Arc<Inner>,
    t: InboundTunnel,
    port: &PortConfig,
    to: SocketAddr,
) {
    let (client, entry) = (t.req.client, t.req.entry);
    let in_flight = inner.endpoints.connection(t.req.task);
    let stream = match connect_local(inner, to).await {
        Ok(s) => s,
        Err(e) => {
            inner.tunnel_answered(false);
            t.refuse(WireFailure::Unreachable(e)).await;
            return;
        }
    };
    let mut stream = match finish_local(stream, port, client, entry).await {
        Ok(s) => s,
        Err(e) => {
            inner.tunnel_answered(false);
            t.refuse(WireFailure::Unreachable(e)).await;
            return;
        }
    };
    let accepted = match t.accept().await {
        Ok(a) => a,
        Err(e) => {
            debug!("tunnel lost before it opened: {e}");
            return;
        }
    };
    inner.tunnel_answered(true);
    let mut tunnel = tokio::io::join(accepted.recv, accepted.send);
    let done = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut stream, &mut tunnel) => r,
        () = in_flight.task_gone() => Err(std::io::Error::other("the task is gone")),
    };
    if let Err(e) = done {
        debug!("tunnelled connection ended: {e}");
    }
    drop(accepted.slot);
}
