//! One QUIC connection: who is on the other end, and the loop that serves what the peer opens
//! on it (requests, one-way messages, datagrams).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use tracing::{debug, warn};

use super::Inbound;
use super::shared::Shared;
use crate::trust::{PeerIdentity, peer_identity};
use crate::wire::{OneWay, Request, Response, WireFailure, read_frame, write_frame};

/// Application error codes on streams and connections.
pub(crate) const CODE_SHUTDOWN: VarInt = VarInt::from_u32(0);
/// The stream carried a frame that is oversized, truncated or undecodable.
pub(crate) const CODE_BAD_FRAME: VarInt = VarInt::from_u32(1);
/// The stream's frame did not arrive within the deadline.
pub(crate) const CODE_TOO_SLOW: VarInt = VarInt::from_u32(2);
/// The node did not answer the request.
pub(crate) const CODE_NO_ANSWER: VarInt = VarInt::from_u32(3);
// Code 4 meant "a one-way stream without a certificate"; such streams are now never
// accepted (see `serve_one`), so it is no longer sent.
/// The peer's certificate verified but carries no usable identity, or names a removed node.
pub(crate) const CODE_BAD_IDENTITY: VarInt = VarInt::from_u32(5);
/// The connection was refused at a bound on open connections.
pub(crate) const CODE_BUSY: VarInt = VarInt::from_u32(6);
/// A joining node closes a seed whose certificate does not say manager, token unsent.
pub(crate) const CODE_NOT_A_MANAGER: VarInt = VarInt::from_u32(7);
/// A connection without a certificate got its one answer.
pub(crate) const CODE_ANSWERED: VarInt = VarInt::from_u32(8);

/// How long a connection without a certificate stays open after its answer for the peer to
/// read it and close first; then the node closes it.
const ANSWERED_LINGER_MS: u64 = 1000;

/// An established connection and the identity its certificate proved (`None`: the peer
/// presented no certificate, which only a joining node may do).
#[derive(Clone)]
pub(crate) struct Connected {
    pub conn: quinn::Connection,
    pub identity: Option<PeerIdentity>,
}

impl Connected {
    pub fn is_live(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

/// The identity in the peer's certificate. `Ok(None)` when it presented none; an error when it
/// presented one that TLS accepted but that names no node (a misissued certificate).
pub(crate) fn identity_of(
    conn: &quinn::Connection,
) -> Result<Option<PeerIdentity>, crate::trust::TrustError> {
    let Some(any) = conn.peer_identity() else {
        return Ok(None);
    };
    let Ok(certs) = any.downcast::<Vec<CertificateDer<'static>>>() else {
        return Ok(None);
    };
    match certs.first() {
        Some(leaf) => peer_identity(leaf).map(Some),
        None => Ok(None),
    }
}

/// The connection to one peer address, shared by requests and the peer's send task.
#[derive(Default)]
pub(crate) struct PeerSlot {
    pub current: Mutex<Option<Connected>>,
    /// Held while connecting, so there is at most one attempt in flight per peer.
    pub connecting: tokio::sync::Mutex<()>,
    /// Woken when the peer connects to us first and its connection is adopted, so an attempt
    /// of ours still waiting on a handshake (to a peer that was not listening yet) gives way.
    pub adopted: tokio::sync::Notify,
}

impl PeerSlot {
    pub fn live(&self) -> Option<Connected> {
        let cur = self.current.lock().expect("slot lock");
        cur.as_ref().filter(|c| c.is_live()).cloned()
    }
}

/// Serves one authenticated connection until it closes: every stream and datagram the peer
/// opens. Concurrency is bounded by the connection's stream limits
/// (`streams_per_connection_max`): the peer cannot open more streams than that at once, so at
/// most that many handlers run.
///
/// The deny list is checked at every stream and datagram, not only at the handshake: a
/// connection of a removed node that is still open (closing it raced with its handshake) is
/// closed at its next use instead of being served.
pub(crate) async fn serve(shared: Arc<Shared>, c: Connected, remote: SocketAddr) {
    let conn = c.conn.clone();
    let from = c
        .identity
        .expect("only authenticated connections are served here; see serve_one");
    loop {
        let removed = || {
            let denied = shared.is_denied(&from);
            if denied {
                warn!(%remote, node = %from.node_id, "a removed node used a connection still open: closed");
                conn.close(CODE_BAD_IDENTITY, b"removed");
            }
            denied
        };
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((mut send, mut recv)) => {
                    if removed() {
                        refuse_stream(&mut send, &mut recv, CODE_BAD_IDENTITY);
                        break;
                    }
                    tokio::spawn(handle_bi(shared.clone(), Some(from), remote, send, recv));
                }
                Err(e) => { debug!(%remote, "connection ended: {e}"); break; }
            },
            uni = conn.accept_uni() => match uni {
                Ok(mut recv) => {
                    if removed() {
                        // Refused; an error means the stream is already gone.
                        let _ = recv.stop(CODE_BAD_IDENTITY);
                        break;
                    }
                    tokio::spawn(handle_uni(shared.clone(), from, remote, recv));
                }
                Err(e) => { debug!(%remote, "connection ended: {e}"); break; }
            },
            dg = conn.read_datagram() => match dg {
                Ok(data) => {
                    if removed() {
                        shared.counters.datagrams_refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    handle_datagram(&shared, Some(from), remote, data)
                }
                Err(e) => { debug!(%remote, "connection ended: {e}"); break; }
            },
        }
    }
    shared.connection_closed(remote, &c);
}

/// Serves a connection from a peer without a certificate: its first bidirectional stream and
/// nothing else (one-way streams and datagrams are never read), then closes it once the peer
/// has read the answer and closed, or after [`ANSWERED_LINGER_MS`]. The whole life is bounded
/// by deadlines: the stream must open within `request_timeout_ms`, and `handle_bi` bounds the
/// frame's read and the answer's write.
pub(crate) async fn serve_one(shared: Arc<Shared>, conn: quinn::Connection, remote: SocketAddr) {
    let deadline = Duration::from_millis(shared.config.request_timeout_ms);
    match tokio::time::timeout(deadline, conn.accept_bi()).await {
        Ok(Ok((send, recv))) => handle_bi(shared, None, remote, send, recv).await,
        Ok(Err(e)) => debug!(%remote, "connection without a certificate ended: {e}"),
        Err(_) => debug!(%remote, "connection without a certificate sent nothing in time"),
    }
    let linger = Duration::from_millis(ANSWERED_LINGER_MS);
    // Either the peer closed (the join client does once it has its answer) or the linger ran
    // out: closed either way below.
    let _ = tokio::time::timeout(linger, conn.closed()).await;
    conn.close(
        CODE_ANSWERED,
        b"one request per connection without a certificate",
    );
}

fn refuse_stream(send: &mut SendStream, recv: &mut RecvStream, code: VarInt) {
    // Either side may already be closed by the peer; there is nothing left to refuse then.
    let _ = recv.stop(code);
    let _ = send.reset(code);
}

async fn handle_bi(
    shared: Arc<Shared>,
    from: Option<PeerIdentity>,
    remote: SocketAddr,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let deadline = Duration::from_millis(shared.config.request_timeout_ms);
    let req: Request = match tokio::time::timeout(deadline, read_frame(&mut recv)).await {
        Ok(Ok(Some(req))) => req,
        Ok(Ok(None)) => {
            // The peer opened a stream and finished it without a word: nothing to answer.
            refuse_stream(&mut send, &mut recv, CODE_BAD_FRAME);
            return;
        }
        Ok(Err(e)) => {
            warn!(%remote, "refused a request frame: {e}");
            shared
                .counters
                .frames_refused
                .fetch_add(1, Ordering::Relaxed);
            refuse_stream(&mut send, &mut recv, CODE_BAD_FRAME);
            return;
        }
        Err(_) => {
            warn!(%remote, "request frame did not arrive within {} ms", deadline.as_millis());
            shared
                .counters
                .frames_refused
                .fetch_add(1, Ordering::Relaxed);
            refuse_stream(&mut send, &mut recv, CODE_TOO_SLOW);
            return;
        }
    };
    let req = match (req, from) {
        (Request::Tunnel(t), Some(from)) => {
            match tunnel_to_handler(&shared, from, remote, t, send, recv, deadline) {
                Ok(()) => return,
                Err((s, r, failure)) => {
                    (send, recv) = (s, r);
                    shared
                        .counters
                        .tunnels_refused
                        .fetch_add(1, Ordering::Relaxed);
                    answer(&mut send, remote, &Response::Failed(failure), deadline).await;
                    let _ = recv.stop(CODE_SHUTDOWN);
                    return;
                }
            }
        }
        (req, _) => req,
    };
    let resp = if from.is_none() && !matches!(req, Request::Join(_)) {
        Response::Failed(WireFailure::Unauthenticated)
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inbound = Inbound::Request {
            from,
            remote,
            req,
            reply: tx,
        };
        match shared.inbound.try_send(inbound) {
            Ok(()) => match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(_)) | Err(_) => {
                    debug!(%remote, "request got no answer from the node");
                    refuse_stream(&mut send, &mut recv, CODE_NO_ANSWER);
                    return;
                }
            },
            Err(_) => {
                debug!(%remote, "inbound queue full: request answered Busy");
                shared
                    .counters
                    .requests_busy
                    .fetch_add(1, Ordering::Relaxed);
                Response::Failed(WireFailure::Busy)
            }
        }
    };
    answer(&mut send, remote, &resp, deadline).await;
}

/// Hands a tunnel to the registered handler (the routing mesh), which answers it; or gives the
/// streams back with the failure to answer: no handler, its queue full, or the peer at its
/// bound of open tunnels.
#[allow(clippy::result_large_err)]
fn tunnel_to_handler(
    shared: &Shared,
    from: PeerIdentity,
    remote: SocketAddr,
    req: crate::wire::TunnelRequest,
    send: SendStream,
    recv: RecvStream,
    deadline: Duration,
) -> Result<(), (SendStream, RecvStream, WireFailure)> {
    let handler = shared.tunnels.lock().expect("tunnels lock").clone();
    let Some(handler) = handler else {
        return Err((
            send,
            recv,
            WireFailure::Unreachable("this node runs no routing mesh".into()),
        ));
    };
    let Some(slot) = shared.tunnels_in.try_take(from.node_id) else {
        debug!(%remote, "tunnel refused: {} open from this peer, the most allowed", shared.config.tunnels_per_peer_max);
        return Err((send, recv, WireFailure::Busy));
    };
    let tunnel = super::InboundTunnel {
        from,
        remote,
        req,
        send,
        recv,
        deadline,
        slot,
    };
    handler.try_send(tunnel).map_err(|e| {
        let t = match e {
            tokio::sync::mpsc::error::TrySendError::Full(t)
            | tokio::sync::mpsc::error::TrySendError::Closed(t) => t,
        };
        debug!(%remote, "tunnel refused: the routing mesh's queue is full or gone");
        (t.send, t.recv, WireFailure::Busy)
    })
}

/// Writes `resp` and finishes the stream, within `deadline`.
async fn answer(send: &mut SendStream, remote: SocketAddr, resp: &Response, deadline: Duration) {
    let write = async {
        write_frame(send, resp).await?;
        send.finish()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok::<_, crate::wire::WireError>(())
    };
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%remote, "answer not sent: {e}"),
        Err(_) => {
            debug!(%remote, "answer not taken within the deadline");
            // Gone or stuck: the reset tells the peer, if it is still there.
            let _ = send.reset(CODE_TOO_SLOW);
        }
    }
}

async fn handle_uni(
    shared: Arc<Shared>,
    from: PeerIdentity,
    remote: SocketAddr,
    mut recv: RecvStream,
) {
    let deadline = Duration::from_millis(shared.config.request_timeout_ms);
    // One message per stream: the sender finishes the stream after one frame.
    let msg: OneWay = match tokio::time::timeout(deadline, read_frame(&mut recv)).await {
        Ok(Ok(Some(msg))) => msg,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(%remote, "refused a one-way frame: {e}");
            shared
                .counters
                .frames_refused
                .fetch_add(1, Ordering::Relaxed);
            // The stream is being discarded; an error means it is already gone.
            let _ = recv.stop(CODE_BAD_FRAME);
            return;
        }
        Err(_) => {
            warn!(%remote, "one-way frame did not arrive within {} ms", deadline.as_millis());
            shared
                .counters
                .frames_refused
                .fetch_add(1, Ordering::Relaxed);
            let _ = recv.stop(CODE_TOO_SLOW);
            return;
        }
    };
    // Anything after the one frame is not read; stopping tells the sender.
    let _ = recv.stop(CODE_SHUTDOWN);
    match shared
        .inbound
        .try_send(Inbound::OneWay { from, remote, msg })
    {
        Ok(()) => {
            shared
                .counters
                .oneway_received
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            debug!(%remote, "inbound queue full: one-way message dropped");
            shared
                .counters
                .oneway_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn handle_datagram(
    shared: &Shared,
    from: Option<PeerIdentity>,
    remote: SocketAddr,
    data: bytes::Bytes,
) {
    let Some(from) = from else {
        shared
            .counters
            .datagrams_refused
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    if data.len() > super::DATAGRAM_BYTES_MAX {
        shared
            .counters
            .datagrams_refused
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    match shared
        .inbound
        .try_send(Inbound::Datagram { from, remote, data })
    {
        Ok(()) => {
            shared
                .counters
                .datagrams_received
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            debug!(%remote, "inbound queue full: datagram dropped");
            shared
                .counters
                .datagrams_refused
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
