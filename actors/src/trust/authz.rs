//! Authorization per message: who may tell this node what.
//!
//! A certificate of the cluster's CA proves a peer's node ID and the role it had when the
//! certificate was issued. That is not enough for the messages only managers may send
//! (assignments, pokes, removals, role changes, log reads): a demoted manager keeps a manager
//! certificate until it expires. So a manager-only message needs both a manager certificate and
//! the store's word that the node is a manager now. Managers read that from their store; every
//! node also learns it from each session answer of the leader ([`ManagerSet::learn`]), so a
//! worker stops obeying a demoted manager at its next session (at most a second later).
//!
//! Who is a manager is never taken from gossip: a node's description says what the node claims,
//! not what the cluster granted. The addresses a node asks for its session are those whose
//! connections proved a manager certificate ([`CertifiedPeers`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::model::{NodeId, Role};
use crate::trust::PeerIdentity;

/// Addresses whose proven identity is kept; past it the oldest-inserted entries not in the
/// membership are dropped on the next prune (one per member is all that is needed).
pub const CERTIFIED_PEERS_MAX: usize = 8_192;

/// The managers of the cluster as the store last named them, shared by the node actor (which
/// checks manager-only messages) and the agent (which learns the set from session answers).
#[derive(Clone, Debug, Default)]
pub struct ManagerSet {
    inner: Arc<RwLock<Option<BTreeSet<NodeId>>>>,
}

impl ManagerSet {
    /// Takes the store's list of managers (from a leader's session answer).
    pub fn learn(&self, managers: impl IntoIterator<Item = NodeId>) {
        let set: BTreeSet<NodeId> = managers.into_iter().collect();
        // An empty list comes only from a leader that read no node yet: keep what we had.
        if set.is_empty() {
            return;
        }
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
    }

    /// The last list learned, if any.
    pub fn known(&self) -> Option<BTreeSet<NodeId>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `peer` may send a manager-only message: its certificate says manager, and the
    /// store (as last learned) lists it as one. Before the first list arrives, the certificate
    /// alone decides: a node that just joined has nothing else yet.
    pub fn may_command(&self, peer: &PeerIdentity) -> bool {
        peer.role == Role::Manager
            && self
                .inner
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_none_or(|set| set.contains(&peer.node_id))
    }
}

/// The identity each peer address proved on its connection, as traffic arrives from it.
#[derive(Debug, Default)]
pub struct CertifiedPeers {
    by_addr: BTreeMap<SocketAddr, PeerIdentity>,
}

impl CertifiedPeers {
    /// Records that `addr` proved `who`. Returns whether that is news.
    pub fn saw(&mut self, addr: SocketAddr, who: PeerIdentity) -> bool {
        if self.by_addr.len() >= CERTIFIED_PEERS_MAX && !self.by_addr.contains_key(&addr) {
            return false; // `retain` makes room at the next membership change
        }
        self.by_addr.insert(addr, who) != Some(who)
    }

    /// The identity `addr` proved, if it did.
    pub fn at(&self, addr: SocketAddr) -> Option<PeerIdentity> {
        self.by_addr.get(&addr).copied()
    }

    /// Keeps only the addresses `keep` says are still members.
    pub fn retain(&mut self, keep: impl Fn(SocketAddr) -> bool) {
        self.by_addr.retain(|a, _| keep(*a));
    }
}

/// Whether the member `id` at `addr` is a manager the node may open its session with: the
/// connection from `addr` proved a manager certificate for `id`, and `managers` allows it.
pub fn is_certified_manager(
    certified: &CertifiedPeers,
    managers: &ManagerSet,
    id: NodeId,
    addr: SocketAddr,
) -> bool {
    certified
        .at(addr)
        .is_some_and(|p| p.node_id == id && managers.may_command(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u128, role: Role) -> PeerIdentity {
        PeerIdentity {
            node_id: NodeId(n),
            role,
        }
    }

    #[test]
    fn a_manager_needs_the_certificate_and_the_store() {
        let set = ManagerSet::default();
        assert!(
            set.may_command(&peer(1, Role::Manager)),
            "no list yet: the certificate"
        );
        assert!(
            !set.may_command(&peer(2, Role::Worker)),
            "a worker certificate never"
        );
        set.learn([NodeId(1)]);
        assert!(set.may_command(&peer(1, Role::Manager)));
        assert!(
            !set.may_command(&peer(3, Role::Manager)),
            "a demoted manager's certificate alone is not enough"
        );
        set.learn([]);
        assert!(
            set.may_command(&peer(1, Role::Manager)),
            "an empty list is ignored"
        );
    }

    #[test]
    fn session_targets_come_from_proven_identities() {
        let addr: SocketAddr = "10.0.0.1:2377".parse().unwrap();
        let set = ManagerSet::default();
        let mut certified = CertifiedPeers::default();
        assert!(
            !is_certified_manager(&certified, &set, NodeId(1), addr),
            "nothing proven"
        );
        certified.saw(addr, peer(1, Role::Worker));
        assert!(
            !is_certified_manager(&certified, &set, NodeId(1), addr),
            "a worker"
        );
        certified.saw(addr, peer(1, Role::Manager));
        assert!(is_certified_manager(&certified, &set, NodeId(1), addr));
        assert!(
            !is_certified_manager(&certified, &set, NodeId(2), addr),
            "another node's address"
        );
        certified.retain(|_| false);
        assert!(!is_certified_manager(&certified, &set, NodeId(1), addr));
    }
}
