//! The certificate authority's duties on the node that holds the cluster CA: admit joining
//! nodes by token, issue and renew certificates, and keep the join tokens.
//!
//! Only a node holding the CA key has an `Authority`; every other node answers a join with the
//! addresses of the managers to ask instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::model::{NodeId, Role};
use crate::trust::{ClusterCa, NodeCredentials, NodeKey, PeerIdentity, Tokens, TrustError};
use crate::wire::{JoinRequest, WireFailure};

/// How long node certificates are valid by default (90 days, as SwarmKit's default).
pub const CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest validity accepted: renewal happens between 50 % and 80 % of it, so anything
/// shorter would have nodes renewing more often than every few seconds.
pub const CERT_VALIDITY_MIN: Duration = Duration::from_secs(10);

pub struct Authority {
    ca: ClusterCa,
    tokens: Tokens,
    dir: PathBuf,
    cert_validity: Duration,
}

impl Authority {
    /// Makes a new cluster: its CA, both join tokens, and the first node's manager certificate.
    pub fn bootstrap(
        dir: &Path,
        node_id: NodeId,
        now: SystemTime,
        cert_validity: Duration,
        rng: &mut impl rand::Rng,
    ) -> Result<(Authority, NodeCredentials), TrustError> {
        let ca = ClusterCa::generate(now)?;
        let tokens = Tokens::generate(ca.digest(), rng);
        let key = NodeKey::generate()?;
        let cert = ca.issue(&key.csr_der()?, node_id, Role::Manager, now, cert_validity)?;
        let creds = NodeCredentials::from_parts(key, cert, ca.cert_der().to_vec())?;
        ca.save(dir)?;
        tokens.save(dir)?;
        creds.save(dir)?;
        let authority = Authority {
            ca,
            tokens,
            dir: dir.to_path_buf(),
            cert_validity,
        };
        Ok((authority, creds))
    }

    /// The authority kept in `dir`, if this node holds the CA key. It issues certificates valid
    /// for `cert_validity`.
    pub fn load(dir: &Path, cert_validity: Duration) -> Result<Option<Authority>, TrustError> {
        // Every node keeps the CA certificate (`ca.crt`); only the CA holder has its key.
        if !dir.join("ca.key").exists() {
            return Ok(None);
        }
        let Some(ca) = ClusterCa::load(dir)? else {
            return Ok(None);
        };
        let Some(tokens) = Tokens::load(dir)? else {
            return Ok(None);
        };
        Ok(Some(Authority {
            ca,
            tokens,
            dir: dir.to_path_buf(),
            cert_validity,
        }))
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Admits a joining node: the token decides its role, the CSR's key gets a certificate
    /// naming `node_id`. Nothing is written, so a refusal changes nothing.
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

    /// A fresh certificate for a node that proved who it is with its current one.
    pub fn renew(
        &self,
        peer: &PeerIdentity,
        csr_der: &[u8],
        now: SystemTime,
    ) -> Result<Vec<u8>, WireFailure> {
        self.ca
            .issue(csr_der, peer.node_id, peer.role, now, self.cert_validity)
            .map_err(|e| WireFailure::Invalid(e.to_string()))
    }

    pub fn ca_cert_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    /// Replaces one role's token; the old one stops admitting nodes at once.
    pub fn rotate(&mut self, role: Role, rng: &mut impl rand::Rng) -> Result<(), TrustError> {
        let mut tokens = self.tokens.clone();
        tokens.rotate(role, rng);
        tokens.save(&self.dir)?;
        self.tokens = tokens;
        Ok(())
    }
}
