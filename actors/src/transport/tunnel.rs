//! Tunnels: bidirectional streams that carry a connection's bytes to a task on another node
//! after one `Request::Tunnel` frame and its `TunnelOpen` answer (see `wire::mesh`).
//!
//! The opener ([`Transport::open_tunnel`](super::Transport::open_tunnel)) and the server (the
//! handler registered with [`Transport::serve_tunnels`](super::Transport::serve_tunnels)) each
//! hold at most `tunnels_per_peer_max` tunnels per peer, below `streams_per_connection_max` so
//! that requests always find a stream. A tunnel refused at the bound is answered `Busy`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{RecvStream, SendStream};

use crate::trust::PeerIdentity;
use crate::wire::{Response, TunnelRequest, WireFailure, write_frame};

/// Counts open tunnels per key (a peer's node ID or address), each below `max`.
pub(crate) struct TunnelBudget<K> {
    max: usize,
    open: Mutex<HashMap<K, usize>>,
}

impl<K: std::hash::Hash + Eq + Clone + Send + 'static> TunnelBudget<K> {
    pub fn new(max: usize) -> Arc<TunnelBudget<K>> {
        Arc::new(TunnelBudget {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one tunnel of `key`, or `None` when `max` are open.
    pub fn try_take(self: &Arc<Self>, key: K) -> Option<TunnelSlot<K>> {
        let mut open = self.open.lock().expect("tunnel budget lock");
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(TunnelSlot {
            budget: self.clone(),
            key: Some(key),
        })
    }

    pub fn open(&self, key: &K) -> usize {
        let open = self.open.lock().expect("tunnel budget lock");
        open.get(key).copied().unwrap_or(0)
    }
}

/// One tunnel's place in its budget, given back when dropped.
pub struct TunnelSlot<K: std::hash::Hash + Eq = crate::model::NodeId> {
    budget: Arc<TunnelBudget<K>>,
    key: Option<K>,
}

impl<K: std::hash::Hash + Eq> Drop for TunnelSlot<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut open = self.budget.open.lock().expect("tunnel budget lock");
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

impl<K: std::hash::Hash + Eq> std::fmt::Debug for TunnelSlot<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelSlot")
    }
}

/// A tunnel a peer asked for, handed to the registered handler. Answer it within the request
/// deadline with [`InboundTunnel::accept`] (then the streams carry the connection) or
/// [`InboundTunnel::refuse`]; dropping it unanswered resets the stream.
#[derive(Debug)]
pub struct InboundTunnel {
    pub from: PeerIdentity,
    pub remote: SocketAddr,
    pub req: TunnelRequest,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) deadline: Duration,
    pub(crate) slot: TunnelSlot,
}

/// An open tunnel's two halves, and its place in the per-peer budget (held while it lives).
#[derive(Debug)]
pub struct TunnelStreams {
    pub send: SendStream,
    pub recv: RecvStream,
    pub slot: TunnelSlot<SocketAddr>,
}

/// The server side of an accepted tunnel.
#[derive(Debug)]
pub struct AcceptedTunnel {
    pub send: SendStream,
    pub recv: RecvStream,
    pub slot: TunnelSlot,
}

impl InboundTunnel {
    /// Answers `TunnelOpen`: from now on the streams carry the connection's bytes.
    pub async fn accept(mut self) -> std::io::Result<AcceptedTunnel> {
        let write = write_frame(&mut self.send, &Response::TunnelOpen);
        match tokio::time::timeout(self.deadline, write).await {
            Ok(Ok(())) => Ok(AcceptedTunnel {
                send: self.send,
                recv: self.recv,
                slot: self.slot,
            }),
            Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the tunnel's answer was not taken within the deadline",
            )),
        }
    }

    /// Answers `Failed(failure)` and ends the stream.
    pub async fn refuse(mut self, failure: WireFailure) {
        let deadline = self.deadline;
        let write = async {
            write_frame(&mut self.send, &Response::Failed(failure)).await?;
            self.send
                .finish()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, crate::wire::WireError>(())
        };
        // The opener may be gone already; nothing more to tell it then.
        let _ = tokio::time::timeout(deadline, write).await;
        let _ = self.recv.stop(super::conn::CODE_SHUTDOWN);
    }
}
