//! The certificate authority's duties: admit joining nodes by token, issue and renew
//! certificates, rotate join tokens.
//!
//! The CA key and the tokens live in the replicated store (a [`ClusterObject`], sealed at rest),
//! so every manager can build an `Authority` from its local replica. Nothing here writes: a
//! changed token set goes back to the store as a new `ClusterObject` through raft.

use std::time::{Duration, SystemTime};

use crate::model::{NodeId, Role};
use crate::store::ClusterObject;
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
    ca: ClusterCa,
    tokens: Tokens,
    cert_validity: Duration,
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
        Ok(Authority {
            ca,
            tokens: Tokens { worker, manager },
            cert_validity,
        })
    }

    /// What the store keeps of this authority.
    pub fn to_cluster(&self) -> ClusterObject {
        ClusterObject {
            ca_cert_der: self.ca.cert_der().to_vec(),
            ca_key_pem: self.ca.key_pem(),
            worker_token: self.tokens.worker.to_string(),
            manager_token: self.tokens.manager.to_string(),
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
    /// the store gives it now.
    pub fn renew(
        &self,
        node_id: NodeId,
        role: Role,
        csr_der: &[u8],
        now: SystemTime,
    ) -> Result<Vec<u8>, WireFailure> {
        self.ca
            .issue(csr_der, node_id, role, now, self.cert_validity)
            .map_err(|e| WireFailure::Invalid(e.to_string()))
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
