//! The certificate authority's duties: admit joining nodes by token, issue and renew
//! certificates, rotate join tokens, and rotate the root CA itself.
//!
//! The CA key and the tokens live in the replicated store (a [`ClusterObject`], sealed at rest),
//! so every manager can build an `Authority` from its local replica. Nothing here writes: a
//! changed token set or rotation step goes back to the store as a new `ClusterObject` through
//! raft, compare-and-set on the object's version, so two managers deciding the same step at
//! once write it once.
//!
//! Root rotation (`swarm ca --rotate`), as SwarmKit does it, decided here without I/O:
//!
//! ```text
//!  start_rotation      new root N, cross = N's key and name signed by the old root O
//!  Certs phase         issue under N with [cross]; nodes trusting O accept leaf ← cross ← O
//!                      every node renews; renewal_recorded adds it to `done`
//!  advance(live ⊆ done) root := N, tokens carry N's digest (old tokens refused)
//!  Roots phase         nodes switch their trust to N (O's certificates refused from then on),
//!                      renew once more; renewal_recorded adds it to `done`
//!  advance(live ⊆ done) rotation over: certificates issued under N alone
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::model::{NodeId, Role};
use crate::store::lock::UnlockKey;
use crate::store::{ClusterObject, RootRotation, RotationPhase};
use crate::trust::{
    ClusterCa, JoinToken, NodeCredentials, NodeKey, PeerIdentity, Tokens, TrustError,
};
use crate::wire::{JoinRequest, WireFailure};

/// How long node certificates are valid by default (90 days, as SwarmKit's default).
pub const CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest validity accepted: renewal happens between 50 % and 80 % of it, so anything
/// shorter would have nodes renewing more often than every few seconds.
pub const CERT_VALIDITY_MIN: Duration = Duration::from_secs(10);

pub struct Authority {
    /// The cluster's root: the old one until a rotation's first phase is done.
    ca: ClusterCa,
    tokens: Tokens,
    cert_validity: Duration,
    /// The new root while one is being rolled out (the same as `ca` in the second phase).
    next: Option<ClusterCa>,
    rotation: Option<RootRotation>,
    /// Autolock's key, kept so that the objects this authority writes keep it.
    unlock_key: Option<UnlockKey>,
}

impl Authority {
    /// A new cluster's CA and join tokens.
    pub fn generate(
        now: SystemTime,
        cert_validity: Duration,
        rng: &mut impl rand::Rng,
    ) -> Result<Authority, TrustError> {
        let ca = ClusterCa::generate(now)?;
        let tokens = Tokens::generate(ca.digest(), rng);
        Ok(Authority {
            ca,
            tokens,
            cert_validity,
            next: None,
            rotation: None,
            unlock_key: None,
        })
    }

    /// The authority the store's cluster object describes.
    pub fn from_cluster(
        obj: &ClusterObject,
        cert_validity: Duration,
    ) -> Result<Authority, TrustError> {
        let ca = ClusterCa::from_parts(obj.ca_cert_der.clone(), &obj.ca_key_pem)?;
        let worker: JoinToken = obj.worker_token.parse()?;
        let manager: JoinToken = obj.manager_token.parse()?;
        let next = match &obj.rotation {
            Some(r) => Some(ClusterCa::from_parts(
                r.new_ca_cert_der.clone(),
                &r.new_ca_key_pem,
            )?),
            None => None,
        };
        Ok(Authority {
            ca,
            tokens: Tokens { worker, manager },
            cert_validity,
            next,
            rotation: obj.rotation.clone(),
            unlock_key: obj.unlock_key.clone(),
        })
    }

    /// What the store keeps of this authority.
    pub fn to_cluster(&self) -> ClusterObject {
        ClusterObject {
            ca_cert_der: self.ca.cert_der().to_vec(),
            ca_key_pem: self.ca.key_pem(),
            worker_token: self.tokens.worker.to_string(),
            manager_token: self.tokens.manager.to_string(),
            rotation: self.rotation.clone(),
            unlock_key: self.unlock_key.clone(),
        }
    }

    /// Credentials for a node this authority names directly (the bootstrap node).
    pub fn issue_local(
        &self,
        node_id: NodeId,
        role: Role,
        now: SystemTime,
    ) -> Result<NodeCredentials, TrustError> {
        let key = NodeKey::generate()?;
        let cert = self
            .ca
            .issue(&key.csr_der()?, node_id, role, now, self.cert_validity)?;
        NodeCredentials::from_parts(key, cert, self.ca.cert_der().to_vec())
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Checks a join: the token decides the role, the CSR's key gets a certificate naming
    /// `node_id`. Nothing is written, so a refusal changes nothing.
    pub fn admit(
        &self,
        req: &JoinRequest,
        node_id: NodeId,
        now: SystemTime,
    ) -> Result<(Role, Vec<u8>), WireFailure> {
        let role = self.tokens.check(&req.token).map_err(WireFailure::from)?;
        let cert = self
            .ca
            .issue(&req.csr_der, node_id, role, now, self.cert_validity)
            .map_err(|e| WireFailure::Invalid(e.to_string()))?;
        Ok((role, cert))
    }

    /// A fresh certificate for a node that proved who it is with its current one, in the role
    /// the store gives it now, with the intermediates it must show with it. During a root
    /// rotation it is issued by the new root and comes with the cross-signed new root.
    pub fn renew(
        &self,
        node_id: NodeId,
        role: Role,
        csr_der: &[u8],
        now: SystemTime,
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>), WireFailure> {
        let (signer, intermediates) = match (&self.next, &self.rotation) {
            (Some(next), Some(r)) => (next, vec![r.cross_der.clone()]),
            _ => (&self.ca, Vec::new()),
        };
        let cert = signer
            .issue(csr_der, node_id, role, now, self.cert_validity)
            .map_err(|e| WireFailure::Invalid(e.to_string()))?;
        Ok((cert, intermediates))
    }

    /// The rotation under way, if any.
    pub fn rotation(&self) -> Option<&RootRotation> {
        self.rotation.as_ref()
    }

    /// The cluster object that starts a root rotation: a new root made at `now`, cross-signed
    /// by the current one. Refused while a rotation is under way (it must finish first, or a
    /// node could be left holding a certificate of a root that is neither old nor new).
    pub fn start_rotation(&self, now: SystemTime) -> Result<ClusterObject, TrustError> {
        if let Some(r) = &self.rotation {
            return Err(TrustError::Generate(format!(
                "a root rotation is already under way ({:?} phase)",
                r.phase
            )));
        }
        let next = ClusterCa::generate(now)?;
        let cross_der = self.ca.cross_sign(&next)?;
        Ok(ClusterObject {
            rotation: Some(RootRotation {
                phase: RotationPhase::Certs,
                new_ca_cert_der: next.cert_der().to_vec(),
                new_ca_key_pem: next.key_pem(),
                cross_der,
                done: BTreeSet::new(),
            }),
            ..self.to_cluster()
        })
    }

    pub fn ca_cert_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    /// The same authority with one role's token replaced; the caller writes it to the store.
    pub fn rotated(&self, role: Role, rng: &mut impl rand::Rng) -> ClusterObject {
        let mut tokens = self.tokens.clone();
        tokens.rotate(role, rng);
        ClusterObject {
            worker_token: tokens.worker.to_string(),
            manager_token: tokens.manager.to_string(),
            ..self.to_cluster()
        }
    }

    /// The peer identity type's view, for renewals of this node's own certificate.
    pub fn me(node_id: NodeId, role: Role) -> PeerIdentity {
        PeerIdentity { node_id, role }
    }
}

/// The cluster object with `node` counted as renewed in the rotation's current phase; `None`
/// when there is nothing to record (no rotation, or already counted).
pub fn renewal_recorded(obj: &ClusterObject, node: NodeId) -> Option<ClusterObject> {
    let r = obj.rotation.as_ref()?;
    if r.done.contains(&node) {
        return None;
    }
    let mut next = obj.clone();
    next.rotation.as_mut()?.done.insert(node);
    Some(next)
}

/// Whether `node` should renew now: a rotation is under way and it has not renewed in this
/// phase.
pub fn must_renew(obj: &ClusterObject, node: NodeId) -> bool {
    obj.rotation
        .as_ref()
        .is_some_and(|r| !r.done.contains(&node))
}

/// The rotation's next step once every node in `live` (the nodes in the store that membership
/// sees alive) has renewed in this phase; `None` while some have not. Nodes that are down or
/// unknown are not waited for: they hold certificates of the old root and must join again.
pub fn advance(
    obj: &ClusterObject,
    live: &BTreeSet<NodeId>,
    rng: &mut impl rand::Rng,
) -> Result<Option<ClusterObject>, TrustError> {
    let Some(r) = &obj.rotation else {
        return Ok(None);
    };
    if !live.is_subset(&r.done) {
        return Ok(None);
    }
    let mut next = obj.clone();
    match r.phase {
        RotationPhase::Certs => {
            // Checked before it becomes the root: a broken new root must not lock the cluster out.
            let new = ClusterCa::from_parts(r.new_ca_cert_der.clone(), &r.new_ca_key_pem)?;
            let tokens = Tokens::generate(new.digest(), rng);
            next.ca_cert_der = new.cert_der().to_vec();
            next.ca_key_pem = new.key_pem();
            next.worker_token = tokens.worker.to_string();
            next.manager_token = tokens.manager.to_string();
            let rot = next.rotation.as_mut().expect("checked above");
            rot.phase = RotationPhase::Roots;
            rot.done.clear();
        }
        RotationPhase::Roots => next.rotation = None,
    }
    Ok(Some(next))
}

/// How far a rotation has come: its phase, and how many of the live nodes have renewed in it.
pub fn progress(
    obj: &ClusterObject,
    live: &BTreeSet<NodeId>,
) -> Option<(RotationPhase, usize, usize)> {
    let r = obj.rotation.as_ref()?;
    Some((r.phase, live.intersection(&r.done).count(), live.len()))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::trust::TokenRefusal;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    fn set(ids: &[u128]) -> BTreeSet<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    /// Renews `node` against the authority the object describes, as a node would, trusting
    /// `root`.
    fn renew(obj: &ClusterObject, node: u128, root: &[u8]) -> NodeCredentials {
        let auth = Authority::from_cluster(obj, CERT_VALIDITY).unwrap();
        let key = NodeKey::generate().unwrap();
        let (cert, mids) = auth
            .renew(NodeId(node), Role::Worker, &key.csr_der().unwrap(), now())
            .unwrap();
        NodeCredentials::from_chain(key, cert, mids, root.to_vec()).unwrap()
    }

    #[test]
    fn a_root_rotation_moves_through_both_phases_and_changes_the_tokens() {
        let mut rng = StdRng::seed_from_u64(7);
        let auth = Authority::generate(now(), CERT_VALIDITY, &mut rng).unwrap();
        let old_root = auth.ca_cert_der().to_vec();
        let start = auth.to_cluster();
        let old_worker_token = start.worker_token.clone();
        let live = set(&[1, 2, 3]);
        assert_eq!(advance(&start, &live, &mut rng).unwrap(), None);
        assert!(!must_renew(&start, NodeId(1)));

        tracing::info!("phase: certs: issued under the new root, with the cross-signed root");
        let mut obj = auth.start_rotation(now()).unwrap();
        assert!(
            Authority::from_cluster(&obj, CERT_VALIDITY)
                .unwrap()
                .start_rotation(now())
                .is_err(),
            "a second rotation waits for the first"
        );
        let new_root = obj.rotation.as_ref().unwrap().new_ca_cert_der.clone();
        assert_eq!(obj.ca_cert_der, old_root);
        let c1 = renew(&obj, 1, &old_root);
        assert!(c1.issued_by(&new_root));
        assert_eq!(c1.intermediates.len(), 1);
        assert!(must_renew(&obj, NodeId(1)));
        obj = renewal_recorded(&obj, NodeId(1)).unwrap();
        assert_eq!(renewal_recorded(&obj, NodeId(1)), None, "counted once");
        assert!(!must_renew(&obj, NodeId(1)));
        obj = renewal_recorded(&obj, NodeId(2)).unwrap();
        assert_eq!(progress(&obj, &live), Some((RotationPhase::Certs, 2, 3)));
        assert_eq!(
            advance(&obj, &live, &mut rng).unwrap(),
            None,
            "node 3 not renewed"
        );
        // Node 3 went down: it is not waited for.
        obj = advance(&obj, &set(&[1, 2]), &mut rng).unwrap().unwrap();

        tracing::info!("phase: roots: the new root is the cluster's, the tokens carry its digest");
        assert_eq!(obj.ca_cert_der, new_root);
        assert_eq!(progress(&obj, &live), Some((RotationPhase::Roots, 0, 3)));
        assert!(must_renew(&obj, NodeId(1)));
        let new_auth = Authority::from_cluster(&obj, CERT_VALIDITY).unwrap();
        assert_eq!(
            new_auth.tokens().worker.ca_digest,
            crate::trust::CaDigest::of_cert(&new_root)
        );
        assert_eq!(
            new_auth.tokens().check(&old_worker_token),
            Err(TokenRefusal::WrongCa)
        );
        // Still with the cross-signed root: nodes that have not switched yet must accept it.
        let c1 = renew(&obj, 1, &new_root);
        assert_eq!(c1.intermediates.len(), 1);
        obj = renewal_recorded(&obj, NodeId(1)).unwrap();
        obj = renewal_recorded(&obj, NodeId(2)).unwrap();
        obj = advance(&obj, &set(&[1, 2]), &mut rng).unwrap().unwrap();

        tracing::info!("phase: over: certificates under the new root alone");
        assert_eq!(obj.rotation, None);
        assert!(!must_renew(&obj, NodeId(1)));
        let c1 = renew(&obj, 1, &new_root);
        assert!(c1.intermediates.is_empty());
        assert!(
            NodeCredentials::from_parts(c1.key().clone(), c1.cert_der.clone(), old_root).is_err()
        );
    }
}
