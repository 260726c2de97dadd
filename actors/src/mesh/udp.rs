//! UDP through the mesh: a flow per client address, to a local task's socket or through a
//! tunnel stream that carries each datagram with a two-byte length before it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::debug;

use super::route::Route;
use super::{Inner, proxy};
use crate::model::{PortConfig, PortProtocol};
use crate::transport::{InboundTunnel, TunnelStreams};
use crate::wire::{MeshBackend, WireFailure};

/// The largest UDP payload.
const DATAGRAM_MAX: usize = 65_535;

/// A port's flows by client address; each entry carries its flow's ID so an ending flow
/// removes only itself.
type Flows = Arc<Mutex<HashMap<SocketAddr, (u64, mpsc::Sender<Bytes>)>>>;

pub(super) fn listen(
    inner: Arc<Inner>,
    route: Arc<Route>,
    addr: SocketAddr,
) -> std::io::Result<JoinHandle<()>> {
    let std = std::net::UdpSocket::bind(addr)?;
    std.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(std)?);
    Ok(tokio::spawn(recv_loop(inner, route, socket)))
}

// The pause after a failed read: the mesh is a shell, and its own sleep is its timer.
#[allow(clippy::disallowed_methods)]
async fn recv_loop(inner: Arc<Inner>, route: Arc<Route>, socket: Arc<UdpSocket>) {
    let flows: Flows = Arc::default();
    let next_id = AtomicU64::new(0);
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // An ICMP error reported on the socket, and the like: the next read may work.
                debug!("udp receive failed: {e}");
                tokio::time::sleep(super::ERROR_PAUSE).await;
                continue;
            }
        };
        let mut data = Bytes::copy_from_slice(&buf[..n]);
        let mut map = flows.lock().expect("flows lock");
        if let Some((_, tx)) = map.get(&client) {
            match tx.try_send(data) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(%client, "flow queue full: datagram dropped");
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    map.remove(&client);
                    data = d;
                }
            }
        }
        if map.len() >= inner.config.udp_flows_per_port_max {
            route.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%client, "datagram dropped: the port's bound of flows is reached");
            continue;
        }
        let (tx, rx) = mpsc::channel(inner.config.udp_flow_queue_max);
        // A fresh channel has room for the first datagram.
        let _ = tx.try_send(data);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        map.insert(client, (id, tx));
        route.open.fetch_add(1, Ordering::AcqRel);
        let (inner, route, socket, flows) =
            (inner.clone(), route.clone(), socket.clone(), flows.clone());
        tokio::spawn(async move {
            flow(&inner, &route, &socket, client, rx).await;
            let mut map = flows.lock().expect("flows lock");
            if map.get(&client).is_some_and(|(i, _)| *i == id) {
                map.remove(&client);
            }
            route.open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

enum Upstream {
    Local(UdpSocket),
    Tunnel(TunnelStreams),
}

async fn flow(
    inner: &Arc<Inner>,
    route: &Route,
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    rx: mpsc::Receiver<Bytes>,
) {
    let entry = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(inner.config.bind_ip, 0));
    let max = inner.config.connections_per_backend_max;
    let (state, picked) = route.pick(client.ip(), |t| inner.load.is_full(t, max));
    inner.counters.connections.fetch_add(1, Ordering::Relaxed);
    for backend in &picked {
        let Some(_slot) = inner.load.try_take(backend.task, max) else {
            continue;
        };
        match open(inner, &state.port, state.service, backend, client, entry).await {
            Ok(Upstream::Local(sock)) => {
                let header = state
                    .port
                    .proxy_protocol
                    .then(|| proxy::header(PortProtocol::Udp, client, entry));
                local_flow(inner, sock, header, rx, listener, client).await;
                return;
            }
            Ok(Upstream::Tunnel(t)) => {
                tunnel_flow(inner, t, rx, listener, client).await;
                return;
            }
            Err(e) => debug!(task = %backend.task, "backend unusable for a udp flow: {e}"),
        }
    }
    inner
        .counters
        .connections_failed
        .fetch_add(1, Ordering::Relaxed);
    debug!(%client, "no backend took the udp flow: its datagrams are dropped");
}

async fn open(
    inner: &Arc<Inner>,
    port: &PortConfig,
    service: crate::model::ServiceId,
    backend: &MeshBackend,
    client: SocketAddr,
    entry: SocketAddr,
) -> Result<Upstream, String> {
    if backend.node == inner.me {
        let to = inner.local_target(backend, port)?;
        return connect_local(to).await.map(Upstream::Local);
    }
    inner
        .tunnel(port, service, backend, client, entry)
        .await
        .map(Upstream::Tunnel)
}

async fn connect_local(to: SocketAddr) -> Result<UdpSocket, String> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("address")
    } else {
        "[::]:0".parse().expect("address")
    };
    let sock = UdpSocket::bind(any)
        .await
        .map_err(|e| format!("udp socket: {e}"))?;
    sock.connect(to)
        .await
        .map_err(|e| format!("udp connect to {to}: {e}"))?;
    Ok(sock)
}

/// Sends `data` to the task, after the PROXY header when there is one.
async fn send_to_task(sock: &UdpSocket, header: Option<&[u8]>, data: &[u8]) {
    let sent = match header {
        Some(h) => {
            let mut d = Vec::with_capacity(h.len() + data.len());
            d.extend_from_slice(h);
            d.extend_from_slice(data);
            sock.send(&d).await
        }
        None => sock.send(data).await,
    };
    if let Err(e) = sent {
        // Nothing listening yet, most likely: UDP says so only by an ICMP error.
        debug!("datagram to the task not sent: {e}");
    }
}

// A flow's idle timer: the mesh is a shell, and its own sleep is its timer.
#[allow(clippy::disallowed_methods)]
async fn local_flow(
    inner: &Inner,
    sock: UdpSocket,
    header: Option<Vec<u8>>,
    mut rx: mpsc::Receiver<Bytes>,
    listener: &UdpSocket,
    client: SocketAddr,
) {
    let idle = Duration::from_millis(inner.config.udp_flow_idle_ms);
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => send_to_task(&sock, header.as_deref(), &d).await,
                None => return,
            },
            r = sock.recv(&mut buf) => match r {
                Ok(n) => { let _ = listener.send_to(&buf[..n], client).await; }
                Err(e) => debug!("datagram from the task not read: {e}"),
            },
            () = tokio::time::sleep(idle) => return,
        }
    }
}

/// Writes one datagram on a tunnel stream: its length, then its bytes.
async fn write_datagram<W: AsyncWrite + Unpin>(w: &mut W, d: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(d.len()).map_err(|_| std::io::Error::other("datagram too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(d).await
}

/// Reads one datagram from a tunnel stream; `None` at its clean end.
async fn read_datagram<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut d = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut d).await?;
    Ok(Some(d))
}

#[allow(clippy::disallowed_methods)]
async fn tunnel_flow(
    inner: &Inner,
    t: TunnelStreams,
    mut rx: mpsc::Receiver<Bytes>,
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
) {
    let idle = Duration::from_millis(inner.config.udp_flow_idle_ms);
    let TunnelStreams {
        mut send,
        mut recv,
        slot: _slot,
    } = t;
    let active = Arc::new(Notify::new());
    let reader = {
        let (listener, active) = (listener.clone(), active.clone());
        tokio::spawn(async move {
            while let Ok(Some(d)) = read_datagram(&mut recv).await {
                active.notify_one();
                let _ = listener.send_to(&d, client).await;
            }
        })
    };
    let _abort = AbortOnDrop(reader);
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => if let Err(e) = write_datagram(&mut send, &d).await {
                    debug!("udp tunnel ended: {e}");
                    return;
                },
                None => return,
            },
            () = active.notified() => {}
            () = tokio::time::sleep(idle) => return,
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The far end of a UDP tunnel: a socket connected to the task, datagrams both ways until
/// the tunnel ends or the flow is idle.
#[allow(clippy::disallowed_methods)]
pub(super) async fn serve_tunnel(
    inner: &Arc<Inner>,
    t: InboundTunnel,
    port: &PortConfig,
    to: SocketAddr,
) {
    let header = port
        .proxy_protocol
        .then(|| proxy::header(PortProtocol::Udp, t.req.client, t.req.entry));
    let sock = match connect_local(to).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            inner.tunnel_answered(false);
            t.refuse(WireFailure::Unreachable(e)).await;
            return;
        }
    };
    let accepted = match t.accept().await {
        Ok(a) => a,
        Err(e) => {
            debug!("udp tunnel lost before it opened: {e}");
            return;
        }
    };
    inner.tunnel_answered(true);
    let (mut send, mut recv, _slot) = (accepted.send, accepted.recv, accepted.slot);
    let active = Arc::new(Notify::new());
    let reader = {
        let (sock, active) = (sock.clone(), active.clone());
        tokio::spawn(async move {
            while let Ok(Some(d)) = read_datagram(&mut recv).await {
                active.notify_one();
                send_to_task(&sock, header.as_deref(), &d).await;
            }
        })
    };
    let mut reader = AbortOnDrop(reader);
    let idle = Duration::from_millis(inner.config.udp_flow_idle_ms);
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        tokio::select! {
            r = sock.recv(&mut buf) => match r {
                Ok(n) => if write_datagram(&mut send, &buf[..n]).await.is_err() { break },
                Err(e) => debug!("datagram from the task not read: {e}"),
            },
            () = active.notified() => {}
            _ = &mut reader.0 => break,
            () = tokio::time::sleep(idle) => break,
        }
    }
    let _ = send.finish();
}
