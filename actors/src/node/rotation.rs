//! Root CA rotation as a node carries it out: the store writes that start and advance a
//! rotation (managers), and the trust check every node makes on a timer.
//!
//! The decisions (what a step writes, who must renew, when a phase is done) are the pure
//! functions of [`super::authority`]; this file reads the store, writes through raft and asks
//! managers. How a node learns of a rotation:
//!
//! ```text
//!  every TRUST_CHECK_INTERVAL            manager                        worker
//!   NodeMsg::TrustCheck ─► own replica ─► trust_view(me)        Request::Trust ─► a manager
//!                          advance(live nodes)  (managers only)  Response::Trust(TrustView)
//!   NodeMsg::TrustSeen(view): root differs → trust it (if our certificate chains to it)
//!                             view.renew   → renew now (not at 50-80 % of the certificate's life)
//! ```
//!
//! A timer rather than a field on the agent's session keeps the path one request long and the
//! same for managers and workers; its cost is one small request per node per interval.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::admission;
use super::authority::{self, Authority};
use ractor::ActorRef;

use super::msg::{CaView, NodeMsg, RotationView};
use crate::model::{NodeId, NodeState};
use crate::replica::{StoreFailure, StoreHandle};
use crate::store::{ClusterObject, RotationPhase};
use crate::transport::Transport;
use crate::wire::{Request, Response, TrustView, WireFailure};

/// How often every node asks which root to trust and whether to renew. A rotation's phase
/// ends at most about two intervals after its last live node renews.
pub const TRUST_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Compare-and-set attempts on the cluster object before a rotation write gives up (renewals
/// of many nodes at once all add themselves to it). The node asking retries later.
pub const CLUSTER_WRITE_ATTEMPTS_MAX: u32 = 8;

/// Pause between compare-and-set attempts, times the attempt number, so that the local
/// replica can catch up with the write that won.
const CLUSTER_WRITE_BACKOFF: Duration = Duration::from_millis(50);

/// Reads the cluster object, asks `step` for its replacement and writes it, compare-and-set
/// on the version; on a lost race, reads again. `Ok(false)` when `step` had nothing to write.
pub(crate) async fn update_cluster(
    store: &StoreHandle,
    step: impl Fn(&ClusterObject) -> Result<Option<ClusterObject>, StoreFailure>,
) -> Result<bool, StoreFailure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (obj, version) = admission::cluster(store).await?;
        let Some(next) = step(&obj)? else {
            return Ok(false);
        };
        match store.propose(admission::put_cluster(next, version)).await {
            Ok(_) => return Ok(true),
            Err(StoreFailure::OutOfSequence(_)) if attempt < CLUSTER_WRITE_ATTEMPTS_MAX => {
                #[allow(clippy::disallowed_methods)]
                // a bounded backoff between compare-and-set attempts of an admin request
                tokio::time::sleep(CLUSTER_WRITE_BACKOFF * attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Counts `node` as renewed in the rotation's current phase.
pub async fn record_renewal(store: &StoreHandle, node: NodeId) -> Result<(), StoreFailure> {
    update_cluster(store, |obj| Ok(authority::renewal_recorded(obj, node)))
        .await
        .map(|_| ())
}

/// Starts a root rotation: a new root, cross-signed by the current one, written to the store.
pub async fn start(store: &StoreHandle, validity: Duration) -> Result<(), StoreFailure> {
    update_cluster(store, |obj| {
        let auth = Authority::from_cluster(obj, validity)
            .map_err(|e| StoreFailure::Refused(e.to_string()))?;
        #[allow(clippy::disallowed_methods)] // a new root is issued at the real time
        auth.start_rotation(SystemTime::now())
            .map(Some)
            .map_err(|e| StoreFailure::Refused(e.to_string()))
    })
    .await
    .map(|_| ())
}

/// The nodes a rotation waits for: in the store, and alive as membership sees them.
pub async fn live_nodes(
    store: &StoreHandle,
    ready: &BTreeSet<NodeId>,
) -> Result<BTreeSet<NodeId>, StoreFailure> {
    let (nodes, _) = admission::nodes(store, false).await?;
    Ok(nodes
        .into_iter()
        .map(|(n, _)| n.id)
        .filter(|id| ready.contains(id))
        .collect())
}

/// Moves the rotation on when every live node has renewed in its phase. Any manager may
/// call it; the compare-and-set makes two that decide at once write one step.
pub async fn advance(store: &StoreHandle, ready: &BTreeSet<NodeId>) -> Result<(), StoreFailure> {
    let live = live_nodes(store, ready).await?;
    let wrote = update_cluster(store, |obj| {
        #[allow(clippy::disallowed_methods)] // new keys and token secrets must be unpredictable
        authority::advance(obj, &live, &mut rand::rng())
            .map_err(|e| StoreFailure::Refused(e.to_string()))
    })
    .await?;
    if wrote {
        tracing::info!(nodes = live.len(), "root rotation advanced a phase");
    }
    Ok(())
}

/// What `node` should trust and whether it must renew, from this manager's replica.
pub async fn trust_view(store: &StoreHandle, node: NodeId) -> Result<TrustView, StoreFailure> {
    let (obj, _) = admission::cluster(store).await?;
    Ok(TrustView {
        renew: authority::must_renew(&obj, node),
        root_der: obj.ca_cert_der,
    })
}

/// Asks the managers in turn, stopping at the first answer.
pub async fn ask_trust(
    transport: &Transport,
    managers: Vec<SocketAddr>,
) -> Result<TrustView, String> {
    let mut last = "no manager is reachable".to_string();
    for addr in managers {
        match transport.request(addr, Request::Trust).await {
            Ok(Response::Trust(view)) => return Ok(view),
            Ok(other) => last = format!("{addr} answered {other:?}"),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// `swarm ca`: the root certificate and the rotation's progress, starting one first when
/// `rotate`.
pub async fn ca_view(
    store: &StoreHandle,
    ready: &BTreeSet<NodeId>,
    rotate: bool,
    validity: Duration,
) -> Result<CaView, StoreFailure> {
    if rotate {
        start(store, validity).await?;
        tracing::info!("root CA rotation started");
    }
    let (obj, _) = admission::cluster(store).await?;
    let live = live_nodes(store, ready).await?;
    let rotation = authority::progress(&obj, &live).map(|(phase, done, total)| RotationView {
        phase: match phase {
            RotationPhase::Certs => "certs".to_string(),
            RotationPhase::Roots => "roots".to_string(),
        },
        done,
        total,
    });
    Ok(CaView {
        root_pem: crate::trust::pem_certificate(&obj.ca_cert_der),
        rotation,
    })
}

impl super::NodeActorState {
    /// The nodes membership sees alive, this one included.
    fn ready_nodes(&self) -> BTreeSet<NodeId> {
        let mut ready: BTreeSet<NodeId> = self
            .membership
            .member_states()
            .into_iter()
            .filter(|(_, s)| *s == NodeState::Ready)
            .map(|(id, _)| id)
            .collect();
        ready.insert(self.creds.node_id);
        ready
    }

    /// The timer's turn: a manager moves a rotation on and reads its own replica; a worker
    /// asks a manager. The answer comes back as [`NodeMsg::TrustSeen`], which schedules the
    /// next check.
    pub(super) fn trust_check(&mut self, myself: &ActorRef<NodeMsg>) {
        let me = self.creds.node_id;
        let myself = myself.clone();
        if let Some(store) = self.store.clone() {
            let ready = self.ready_nodes();
            tokio::spawn(async move {
                if let Err(e) = advance(&store, &ready).await {
                    tracing::debug!(error = %e, "root rotation not advanced");
                }
                let view = trust_view(&store, me).await.map_err(|e| e.to_string());
                let _ = myself.send_message(NodeMsg::TrustSeen(view)); // node may be stopping
            });
        } else {
            let transport = self.transport.clone();
            let managers = self.manager_addrs();
            tokio::spawn(async move {
                let view = ask_trust(&transport, managers).await;
                let _ = myself.send_message(NodeMsg::TrustSeen(view)); // node may be stopping
            });
        }
    }

    /// Acts on a manager's answer: trust the cluster's root when it changed, renew when told.
    pub(super) fn trust_seen(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        view: Result<TrustView, String>,
    ) {
        myself.send_after(TRUST_CHECK_INTERVAL, || NodeMsg::TrustCheck);
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "trust check got no answer");
                return;
            }
        };
        if view.root_der != self.creds.ca_cert_der {
            match self.creds.with_root(view.root_der) {
                Ok(creds) => {
                    tracing::info!(
                        root = %crate::trust::CaDigest::of_cert(&creds.ca_cert_der),
                        "the cluster's root CA changed: trusting the new root only"
                    );
                    self.install_credentials(myself, creds);
                }
                Err(e) => {
                    // Missed the rotation (down while it ran): nothing here can fix that.
                    tracing::warn!(
                        error = %e,
                        "the cluster moved to a new root CA and this node's certificate is not \
                         under it: remove the node and join it again with a current token"
                    );
                    return;
                }
            }
        }
        if view.renew && !self.renewing {
            tracing::info!("root CA rotation: renewing the certificate now");
            self.renew(myself);
        }
    }

    /// `swarm ca [--rotate]`, off the actor since it reads and writes the store.
    pub(super) fn ca(
        &self,
        myself: &ActorRef<NodeMsg>,
        rotate: bool,
        port: ractor::RpcReplyPort<Result<CaView, String>>,
    ) {
        let Some(store) = self.store.clone() else {
            let _ = port.send(Err(super::not_a_manager())); // the caller may have timed out
            return;
        };
        let ready = self.ready_nodes();
        let validity = self.cert_validity;
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = ca_view(&store, &ready, rotate, validity)
                .await
                .map_err(|e| e.to_string());
            if rotate && result.is_ok() {
                // This manager renews at once rather than at its next check.
                let _ = myself.send_message(NodeMsg::TrustCheck); // node may be stopping
            }
            let _ = port.send(result); // the caller may have timed out
        });
    }

    /// Answers [`Request::Trust`] from a peer with a certificate.
    pub(super) fn answer_trust(
        &self,
        from: Option<crate::trust::PeerIdentity>,
        reply: tokio::sync::oneshot::Sender<Response>,
    ) {
        // In every arm, the asker may have given up (deadline passed); nothing to do then.
        let Some(peer) = from else {
            let _ = reply.send(Response::Failed(WireFailure::Unauthenticated));
            return;
        };
        let Some(store) = self.store.clone() else {
            let _ = reply.send(Response::Failed(WireFailure::NotAManager(
                self.manager_addrs(),
            )));
            return;
        };
        tokio::spawn(async move {
            let resp = match trust_view(&store, peer.node_id).await {
                Ok(view) => Response::Trust(view),
                Err(e) => Response::Failed(WireFailure::Invalid(e.to_string())),
            };
            let _ = reply.send(resp);
        });
    }
}
