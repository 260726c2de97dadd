//! The per-peer send task: drains one peer's bounded queues of one-way messages and
//! datagrams, so that a slow or dead peer never stalls the caller or sends to anyone else.
//!
//! When the peer has no live connection the task tries to connect, at most one attempt in
//! flight, and after a failure waits with a doubling backoff (up to
//! [`RECONNECT_BACKOFF_MAX_MS`]) before the next; whatever arrives meanwhile is dropped and
//! counted. A task with nothing to do for `idle_timeout_ms` ends and frees its queues.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use quinn::SendDatagramError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::conn::Connected;
use super::shared::Shared;
use super::{RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS};
use crate::wire::{OneWay, write_frame};

pub(crate) enum Outgoing {
    OneWay(OneWay),
    Datagram(Bytes),
}

pub(crate) enum TrySendError {
    Full,
    Closed(Outgoing),
}

/// The sending half of a peer task's queues.
pub(crate) struct PeerSender {
    pub id: u64,
    oneway: mpsc::Sender<OneWay>,
    datagrams: mpsc::Sender<Bytes>,
}

impl PeerSender {
    pub fn try_send(&self, item: Outgoing) -> Result<(), TrySendError> {
        use mpsc::error::TrySendError as E;
        match item {
            Outgoing::OneWay(m) => self.oneway.try_send(m).map_err(|e| match e {
                E::Full(_) => TrySendError::Full,
                E::Closed(m) => TrySendError::Closed(Outgoing::OneWay(m)),
            }),
            Outgoing::Datagram(d) => self.datagrams.try_send(d).map_err(|e| match e {
                E::Full(_) => TrySendError::Full,
                E::Closed(d) => TrySendError::Closed(Outgoing::Datagram(d)),
            }),
        }
    }
}

/// Reconnect pacing for one peer.
struct Backoff {
    next_try: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next_try: None,
            delay: Duration::from_millis(RECONNECT_BACKOFF_MIN_MS),
        }
    }

    fn may_try(&self, now: Instant) -> bool {
        self.next_try.is_none_or(|t| now >= t)
    }

    fn failed(&mut self, now: Instant) {
        self.next_try = Some(now + self.delay);
        self.delay = (self.delay * 2).min(Duration::from_millis(RECONNECT_BACKOFF_MAX_MS));
    }

    fn succeeded(&mut self) {
        *self = Backoff::new();
    }
}

pub(crate) struct PeerTask {
    shared: Arc<Shared>,
    to: SocketAddr,
    id: u64,
    oneway: mpsc::Receiver<OneWay>,
    datagrams: mpsc::Receiver<Bytes>,
    backoff: Backoff,
}

impl PeerTask {
    pub fn new(shared: Arc<Shared>, to: SocketAddr, id: u64) -> (PeerSender, PeerTask) {
        let (otx, orx) = mpsc::channel(shared.config.peer_queue_max);
        let (dtx, drx) = mpsc::channel(shared.config.datagram_queue_max);
        let sender = PeerSender {
            id,
            oneway: otx,
            datagrams: dtx,
        };
        let task = PeerTask {
            shared,
            to,
            id,
            oneway: orx,
            datagrams: drx,
            backoff: Backoff::new(),
        };
        (sender, task)
    }

    // The idle connection's timer: the transport is a shell, and its own sleep is its timer.
    #[allow(clippy::disallowed_methods)]
    pub async fn run(mut self) {
        let idle = Duration::from_millis(self.shared.config.idle_timeout_ms);
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let item = tokio::select! {
                // Datagrams first: gossip is what tells the cluster this node is alive.
                biased;
                _ = shutdown.changed() => return,
                Some(d) = self.datagrams.recv() => Outgoing::Datagram(d),
                Some(m) = self.oneway.recv() => Outgoing::OneWay(m),
                _ = tokio::time::sleep(idle) => {
                    let (o, d) = (&self.oneway, &self.datagrams);
                    if self.shared.retire_peer(self.to, self.id, || o.is_empty() && d.is_empty()) {
                        return;
                    }
                    continue;
                }
            };
            match self.connection().await {
                Some(c) => self.send(&c, item).await,
                None => self.dropped(&item),
            }
        }
    }

    async fn connection(&mut self) -> Option<Connected> {
        if let Some(c) = self.shared.live(self.to) {
            return Some(c);
        }
        let now = Instant::now();
        if !self.backoff.may_try(now) {
            return None;
        }
        match self.shared.connection(self.to).await {
            Ok(c) => {
                self.backoff.succeeded();
                Some(c)
            }
            Err(e) => {
                debug!(to = %self.to, "peer unreachable: {e}");
                self.backoff.failed(Instant::now());
                None
            }
        }
    }

    fn dropped(&self, item: &Outgoing) {
        let counter = match item {
            Outgoing::OneWay(_) => &self.shared.counters.oneway_dropped,
            Outgoing::Datagram(_) => &self.shared.counters.datagrams_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    async fn send(&mut self, c: &Connected, item: Outgoing) {
        let counters = &self.shared.counters;
        match item {
            Outgoing::Datagram(d) => match c.conn.send_datagram(d) {
                Ok(()) => {
                    counters.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if matches!(e, SendDatagramError::ConnectionLost(_)) {
                        debug!(to = %self.to, "datagram not sent: {e}");
                    }
                    counters.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            Outgoing::OneWay(m) => {
                // Bounded by the request deadline: opening a stream waits while the peer's
                // stream limit is reached, and a stuck peer must not hold its queue forever.
                let deadline = Duration::from_millis(self.shared.config.request_timeout_ms);
                let sent = tokio::time::timeout(deadline, async {
                    let mut stream = c.conn.open_uni().await.map_err(|e| e.to_string())?;
                    write_frame(&mut stream, &m)
                        .await
                        .map_err(|e| e.to_string())?;
                    stream.finish().map_err(|e| e.to_string())
                })
                .await;
                match sent {
                    Ok(Ok(())) => {
                        counters.oneway_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        debug!(to = %self.to, "one-way message not sent: {e}");
                        counters.oneway_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        debug!(to = %self.to, "one-way message not sent within the deadline");
                        counters.oneway_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
