//! The cluster certificate authority: made once at bootstrap, kept by managers, signs every
//! node certificate.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateSigningRequestDer;

use super::digest::CaDigest;
use super::files::{self, SECRET_MODE};
use super::{SERVER_NAME, TrustError};
use crate::model::{NodeId, Role};

/// Common name of the CA certificate.
pub const CA_COMMON_NAME: &str = "swarm-ca";
/// Organisation written in node certificates.
pub const NODE_CERT_ORG: &str = "swarm-node";
/// How long the CA certificate is valid. Long, as in SwarmKit: rotating the root is a separate,
/// deliberate operation, not something that expires under a running cluster.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// How far back a certificate's validity starts, so that clocks a little behind the issuer's
/// still accept it.
pub const CERT_BACKDATE: Duration = Duration::from_secs(5 * 60);

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";

/// The cluster CA: its certificate and signing key.
pub struct ClusterCa {
    cert_der: Vec<u8>,
    /// Signing identity rebuilt from the certificate, so a loaded CA issues exactly what the
    /// original did (same issuer name, same key identifier method).
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("ClusterCa")
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

fn gen_err(e: rcgen::Error) -> TrustError {
    TrustError::Generate(e.to_string())
}

/// What every root certificate of a cluster says: its name, that it is a CA that signs node
/// certificates only (no CA below it), and what its key may do. Validity and serial are the
/// caller's.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl ClusterCa {
    /// Makes a new self-signed CA (ECDSA P-256), valid from a little before `now` for
    /// [`CA_VALIDITY`].
    pub fn generate(now: SystemTime) -> Result<ClusterCa, TrustError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = ca_params();
        params.not_before = backdated(now).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(serial_for(&[key.public_key_raw(), &nanos(now)]));
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let cert_der = cert.der().to_vec();
        Ok(ClusterCa {
            cert_der,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The digest join tokens carry.
    pub fn digest(&self) -> CaDigest {
        CaDigest::of_cert(&self.cert_der)
    }

    /// Signs a node certificate for the key in `csr_der`. Only the CSR's key is used: its
    /// subject and extensions are ignored, and the identity comes from the caller, who has
    /// checked the join token (or, on renewal, the TLS peer certificate).
    pub fn issue(
        &self,
        csr_der: &[u8],
        node_id: NodeId,
        role: Role,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Vec<u8>, TrustError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| TrustError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id.to_string());
        dn.push(DnType::OrganizationalUnitName, role.cert_ou());
        dn.push(DnType::OrganizationName, NODE_CERT_ORG);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(SERVER_NAME.try_into().map_err(gen_err)?),
            SanType::DnsName(
                format!("{node_id}.{SERVER_NAME}")
                    .try_into()
                    .map_err(gen_err)?,
            ),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        // ECDSA keys only sign (TLS 1.3 has no key transport); the extended key usages say
        // the certificate serves both ends of a connection.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = backdated(now).into();
        params.not_after = (now + validity).into();
        // rcgen would derive the serial from the key alone; renewing with the same key would
        // then repeat a serial. Mixing in the identity and the time keeps serials unique.
        params.serial_number = Some(serial_for(&[
            rcgen::PublicKeyData::der_bytes(&csr.public_key),
            &node_id.0.to_be_bytes(),
            role.cert_ou().as_bytes(),
            &nanos(now),
        ]));
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(gen_err)?;
        Ok(cert.der().to_vec())
    }

    /// Cross-signs `next`, the root that replaces this one: a CA certificate with `next`'s
    /// subject and public key, issued by this root. A node that still trusts only this root
    /// accepts a certificate issued by `next` when the chain it is shown carries this
    /// certificate as the intermediate (leaf ← cross-signed ← this root), which is what lets a
    /// cluster move to a new root without a moment when two nodes cannot talk (SwarmKit's
    /// root rotation does the same). Its validity is `next`'s own, so it lasts as long as the
    /// root it stands in for.
    pub fn cross_sign(&self, next: &ClusterCa) -> Result<Vec<u8>, TrustError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(&next.cert_der)
            .map_err(|e| TrustError::BadCert(format!("new CA: {e}")))?;
        let mut params = ca_params();
        params.use_authority_key_identifier_extension = true;
        params.not_before = parsed.validity().not_before.to_datetime();
        params.not_after = parsed.validity().not_after.to_datetime();
        params.serial_number = Some(serial_for(&[
            next.issuer.key().public_key_raw(),
            self.issuer.key().public_key_raw(),
            b"cross-signed",
        ]));
        let cert = params
            .signed_by(next.issuer.key(), &self.issuer)
            .map_err(gen_err)?;
        Ok(cert.der().to_vec())
    }

    /// Writes `ca.crt` (PEM) and `ca.key` (PEM, mode 0600), each atomically.
    pub fn save(&self, dir: &Path) -> Result<(), TrustError> {
        files::write_atomic(
            dir,
            CA_KEY_FILE,
            self.issuer.key().serialize_pem().as_bytes(),
            SECRET_MODE,
        )?;
        files::write_atomic(
            dir,
            CA_CERT_FILE,
            files::pem_encode("CERTIFICATE", &self.cert_der).as_bytes(),
            files::PUBLIC_MODE,
        )
    }

    /// Reads the CA saved by [`ClusterCa::save`]. `Ok(None)` when neither file exists (this
    /// node holds no CA); an error when only one does or either is broken.
    pub fn load(dir: &Path) -> Result<Option<ClusterCa>, TrustError> {
        let cert = files::read_optional(dir, CA_CERT_FILE)?;
        let key = files::read_optional(dir, CA_KEY_FILE)?;
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => return Err(files::bad_file(dir, CA_KEY_FILE, "missing")),
            (None, Some(_)) => return Err(files::bad_file(dir, CA_CERT_FILE, "missing")),
        };
        let cert_der = files::cert_from_pem(dir, CA_CERT_FILE, &cert)?;
        let key_pem = String::from_utf8(key)
            .map_err(|_| files::bad_file(dir, CA_KEY_FILE, "not UTF-8 PEM"))?;
        ClusterCa::from_parts(cert_der, &key_pem).map(Some)
    }

    /// The CA key as PEM, for the replicated store (which seals it at rest).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Rebuilds a CA from its certificate and key, checking that they belong together.
    pub fn from_parts(cert_der: Vec<u8>, key_pem: &str) -> Result<ClusterCa, TrustError> {
        let bad = |why: String| TrustError::BadCert(format!("CA: {why}"));
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(e.to_string()))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad(e.to_string()))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad("the key does not belong to the certificate".into()));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| bad(e.to_string()))?;
        Ok(ClusterCa { cert_der, issuer })
    }
}

/// `now` less [`CERT_BACKDATE`], or the epoch for times too early to subtract from.
fn backdated(now: SystemTime) -> SystemTime {
    now.checked_sub(CERT_BACKDATE)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn nanos(t: SystemTime) -> [u8; 16] {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_be_bytes()
}

/// A positive 20-byte serial from the SHA-256 of the parts (RFC 5280 allows at most 20 bytes).
fn serial_for(parts: &[&[u8]]) -> SerialNumber {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut s = d.as_ref()[..20].to_vec();
    s[0] &= 0x7f;
    // A leading zero byte would be stripped in DER; keep the length fixed.
    s[0] |= 0x01;
    SerialNumber::from_slice(&s)
}
