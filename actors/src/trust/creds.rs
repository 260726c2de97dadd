//! A node's own credentials (key, certificate, the CA it trusts) and the identity read from a
//! peer's certificate.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use x509_parser::certificate::X509Certificate;

use super::TrustError;
use super::files::{self, SECRET_MODE};
use crate::model::{NodeId, Role};

const NODE_CERT_FILE: &str = "node.crt";
const NODE_KEY_FILE: &str = "node.key";
const CA_CERT_FILE: &str = "ca.crt";

/// A node's private key (ECDSA P-256). Made on the node and never sent anywhere: the CA sees
/// only a certificate signing request for it.
pub struct NodeKey {
    pair: KeyPair,
}

impl NodeKey {
    pub fn generate() -> Result<NodeKey, TrustError> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|pair| NodeKey { pair })
            .map_err(|e| TrustError::Generate(e.to_string()))
    }

    /// A PKCS#10 request for this key. Its subject is a placeholder: the CA decides the identity.
    pub fn csr_der(&self) -> Result<Vec<u8>, TrustError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .serialize_request(&self.pair)
            .map(|csr| csr.der().to_vec())
            .map_err(|e| TrustError::Generate(e.to_string()))
    }

    /// The key as PKCS#8 DER, for TLS configurations.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.pair.serialize_der()
    }

    /// The raw public key (an uncompressed P-256 point), as a certificate's SPKI carries it.
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    fn from_pem(pem: &str) -> Result<NodeKey, TrustError> {
        KeyPair::from_pem(pem)
            .map(|pair| NodeKey { pair })
            .map_err(|e| TrustError::BadKey(e.to_string()))
    }
}

impl Clone for NodeKey {
    fn clone(&self) -> Self {
        // rcgen's KeyPair is not Clone; a round trip through PKCS#8 is exact.
        let pair = KeyPair::try_from(self.pair.serialize_der().as_slice())
            .expect("a key re-parses from its own PKCS#8 encoding");
        NodeKey { pair }
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

/// Who is on the other end of a verified TLS connection, read from its certificate.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PeerIdentity {
    pub node_id: NodeId,
    pub role: Role,
}

/// Reads the node ID (subject CN) and role (subject OU) from a certificate. It does not verify
/// the certificate: call it on certificates TLS has already verified against the cluster CA.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, TrustError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| TrustError::BadCert(e.to_string()))?;
    identity_of(&cert)
}

fn identity_of(cert: &X509Certificate<'_>) -> Result<PeerIdentity, TrustError> {
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| TrustError::BadIdentity("no common name".into()))?;
    let node_id: NodeId = cn
        .parse()
        .map_err(|e| TrustError::BadIdentity(format!("common name: {e}")))?;
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| TrustError::BadIdentity("no organisational unit".into()))?;
    let role = Role::from_cert_ou(ou)
        .ok_or_else(|| TrustError::BadIdentity(format!("unknown role {ou:?}")))?;
    Ok(PeerIdentity { node_id, role })
}

/// Everything a node needs to speak mutual TLS in its cluster.
#[derive(Clone)]
pub struct NodeCredentials {
    pub node_id: NodeId,
    pub role: Role,
    pub cert_der: Vec<u8>,
    /// Certificates between `cert_der` and the root, sent with it in every handshake: the new
    /// root cross-signed by the old one while the cluster's root is being rotated, else none.
    pub intermediates: Vec<Vec<u8>>,
    /// The root this node trusts: a peer's certificate must chain to it.
    pub ca_cert_der: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    key: NodeKey,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Checks that `cert` names `issuer` as its issuer and carries its signature.
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), TrustError> {
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|e| TrustError::NotSignedByCa(e.to_string()))?;
    if cert.issuer() != issuer.subject() {
        return Err(TrustError::NotSignedByCa(format!(
            "issued by {}, the CA is {}",
            cert.issuer(),
            issuer.subject()
        )));
    }
    Ok(())
}

fn asn1_time(t: &x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

impl NodeCredentials {
    /// Puts credentials together after a join or renewal, checking that the certificate was
    /// signed by `ca_cert_der` and is for `key`. The identity and validity come from the
    /// certificate itself.
    pub fn from_parts(
        key: NodeKey,
        cert_der: Vec<u8>,
        ca_cert_der: Vec<u8>,
    ) -> Result<NodeCredentials, TrustError> {
        NodeCredentials::from_chain(key, cert_der, Vec::new(), ca_cert_der)
    }

    /// As [`NodeCredentials::from_parts`], for a certificate that may reach the trusted root
    /// through one intermediate: during a root rotation, certificates are issued by the new
    /// root and carry the new root cross-signed by the old one, so a node still trusting the
    /// old root accepts them. The certificate must be signed by the root itself or by one of
    /// `intermediates` that the root signed.
    pub fn from_chain(
        key: NodeKey,
        cert_der: Vec<u8>,
        intermediates: Vec<Vec<u8>>,
        ca_cert_der: Vec<u8>,
    ) -> Result<NodeCredentials, TrustError> {
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_cert_der)
            .map_err(|e| TrustError::BadCert(format!("CA certificate: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| TrustError::BadCert(e.to_string()))?;
        if signed_by(&cert, &ca).is_err() {
            let through = intermediates.iter().any(|der| {
                x509_parser::parse_x509_certificate(der).is_ok_and(|(_, mid)| {
                    signed_by(&mid, &ca).is_ok() && signed_by(&cert, &mid).is_ok()
                })
            });
            if !through {
                // Report the direct check's reason: it names what is wrong in the usual case.
                signed_by(&cert, &ca)?;
            }
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TrustError::KeyMismatch);
        }
        let id = identity_of(&cert)?;
        let not_before = asn1_time(&cert.validity().not_before);
        let not_after = asn1_time(&cert.validity().not_after);
        Ok(NodeCredentials {
            node_id: id.node_id,
            role: id.role,
            cert_der,
            intermediates,
            ca_cert_der,
            not_before,
            not_after,
            key,
        })
    }

    /// The same certificate and key trusting `ca_cert_der` instead: what a node does when the
    /// cluster's root rotation reaches the new root. Refused, changing nothing, unless the
    /// certificate reaches the new root (directly or through its intermediate).
    pub fn with_root(&self, ca_cert_der: Vec<u8>) -> Result<NodeCredentials, TrustError> {
        NodeCredentials::from_chain(
            self.key.clone(),
            self.cert_der.clone(),
            self.intermediates.clone(),
            ca_cert_der,
        )
    }

    /// Whether this node's certificate was signed by the CA whose certificate is `ca_cert_der`
    /// (directly, not through an intermediate).
    pub fn issued_by(&self, ca_cert_der: &[u8]) -> bool {
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_cert_der) else {
            return false;
        };
        x509_parser::parse_x509_certificate(&self.cert_der)
            .is_ok_and(|(_, cert)| signed_by(&cert, &ca).is_ok())
    }

    /// The private key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// When to ask for a new certificate: `issued + fraction × validity`, where `issued` is
    /// `not_before` without the backdating the CA adds for clock skew (otherwise a short-lived
    /// certificate would be due for renewal the moment it is issued). The caller draws
    /// `fraction` uniformly from [0.5, 0.8) with its own RNG, so that nodes whose certificates
    /// were issued together do not all renew at the same moment (SwarmKit does the same).
    pub fn renewal_at(&self, fraction: f64) -> SystemTime {
        let issued = (self.not_before + crate::trust::CERT_BACKDATE).min(self.not_after);
        let validity = self
            .not_after
            .duration_since(issued)
            .unwrap_or(Duration::ZERO);
        issued + validity.mul_f64(fraction.clamp(0.0, 1.0))
    }

    /// Writes `node.key` (mode 0600), `node.crt` (with its intermediates) and `ca.crt`, each atomically. The key is
    /// written first so that a crash never leaves a certificate for a key that is not on disk.
    pub fn save(&self, dir: &Path) -> Result<(), TrustError> {
        files::write_atomic(
            dir,
            NODE_KEY_FILE,
            self.key.pair.serialize_pem().as_bytes(),
            SECRET_MODE,
        )?;
        // The node certificate first, then its intermediates, as a TLS chain is ordered.
        let mut chain = files::pem_encode("CERTIFICATE", &self.cert_der);
        for der in &self.intermediates {
            chain.push_str(&files::pem_encode("CERTIFICATE", der));
        }
        files::write_atomic(dir, NODE_CERT_FILE, chain.as_bytes(), files::PUBLIC_MODE)?;
        files::write_atomic(
            dir,
            CA_CERT_FILE,
            files::pem_encode("CERTIFICATE", &self.ca_cert_der).as_bytes(),
            files::PUBLIC_MODE,
        )
    }

    /// Reads credentials saved by [`NodeCredentials::save`] and checks them as
    /// [`NodeCredentials::from_parts`] does. `Ok(None)` when there is no `node.crt` (the node
    /// has not joined yet).
    pub fn load(dir: &Path) -> Result<Option<NodeCredentials>, TrustError> {
        let Some(cert_pem) = files::read_optional(dir, NODE_CERT_FILE)? else {
            return Ok(None);
        };
        let key_pem = files::read_optional(dir, NODE_KEY_FILE)?
            .ok_or_else(|| files::bad_file(dir, NODE_KEY_FILE, "missing"))?;
        let ca_pem = files::read_optional(dir, CA_CERT_FILE)?
            .ok_or_else(|| files::bad_file(dir, CA_CERT_FILE, "missing"))?;
        let mut chain = files::certs_from_pem(dir, NODE_CERT_FILE, &cert_pem)?.into_iter();
        let cert_der = chain
            .next()
            .ok_or_else(|| files::bad_file(dir, NODE_CERT_FILE, "no PEM certificate"))?;
        let intermediates: Vec<Vec<u8>> = chain.collect();
        let ca_cert_der = files::cert_from_pem(dir, CA_CERT_FILE, &ca_pem)?;
        let key_pem = String::from_utf8(key_pem)
            .map_err(|_| files::bad_file(dir, NODE_KEY_FILE, "not UTF-8 PEM"))?;
        let key =
            NodeKey::from_pem(&key_pem).map_err(|e| files::bad_file(dir, NODE_KEY_FILE, e))?;
        NodeCredentials::from_chain(key, cert_der, intermediates, ca_cert_der)
            .map(Some)
            .map_err(|e| files::bad_file(dir, NODE_CERT_FILE, e))
    }
}
