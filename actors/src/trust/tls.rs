//! rustls configurations for the transport: mutual TLS inside the cluster, and the one-sided
//! handshake a joining node makes while it pins the CA by the digest in its token.
//!
//! Every configuration names the ring provider explicitly and speaks TLS 1.3 only (QUIC
//! requires it) with the ALPN protocol [`ALPN`].

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::{CaDigest, NodeCredentials, TrustError};

/// The name every node's certificate carries and every client asks for. Nodes are found by
/// address, not by DNS, so one shared name lets TLS check "a node of this cluster"; which node
/// it is comes from the certificate's subject ([`super::peer_identity`]).
pub const SERVER_NAME: &str = "swarm-node.cluster";

/// The application protocol, negotiated in the handshake so that another program's QUIC
/// endpoint is refused before any frame is read.
pub const ALPN: &[u8] = b"swarm/1";

fn tls_err(e: impl std::fmt::Display) -> TrustError {
    TrustError::Tls(e.to_string())
}

pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn roots(ca_der: &[u8]) -> Result<Arc<RootCertStore>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    Ok(Arc::new(roots))
}

/// What a node shows in every handshake: its certificate, the intermediates that lead from it
/// to the root (the cross-signed new root during a root rotation, so that peers still trusting
/// the old root accept it), then the root it trusts, which a joining node looks for by digest.
pub(super) fn chain(creds: &NodeCredentials) -> Vec<CertificateDer<'static>> {
    std::iter::once(&creds.cert_der)
        .chain(&creds.intermediates)
        .chain(std::iter::once(&creds.ca_cert_der))
        .map(|der| CertificateDer::from(der.clone()))
        .collect()
}

fn key(creds: &NodeCredentials) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key().pkcs8_der()))
}

/// The server side of every node: presents the node certificate with the CA; verifies a client
/// certificate against the cluster CA when there is one. A client certificate is optional
/// because a joining node has none yet; the transport serves such a peer nothing but
/// `Request::Join`.
pub fn server_config(creds: &NodeCredentials) -> Result<ServerConfig, TrustError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        roots(&creds.ca_cert_der).map_err(tls_err)?,
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(tls_err)?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(creds), key(creds))
        .map_err(tls_err)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The client side between members: trusts only the cluster CA and presents the node
/// certificate.
pub fn client_config(creds: &NodeCredentials) -> Result<ClientConfig, TrustError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots(&creds.ca_cert_der).map_err(tls_err)?)
        .with_client_auth_cert(chain(creds), key(creds))
        .map_err(tls_err)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The client side of a join: no certificate to present, and no CA known yet except by its
/// digest. The server is accepted only if its chain holds a certificate with that digest and
/// its own certificate verifies against it.
pub fn join_client_config(ca_digest: &CaDigest) -> Result<ClientConfig, TrustError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        digest: *ca_digest,
        provider: provider.clone(),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// Verifies a server against the CA named by a digest (see [`join_client_config`]).
#[derive(Debug)]
struct PinnedCaVerifier {
    digest: CaDigest,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| CaDigest::of_cert(c) == self.digest)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the server's CA does not match the join token's CA digest {}: \
                     it belongs to another cluster",
                    self.digest
                ))
            })?;
        // The digest pins the CA; webpki then checks the server's certificate as usual
        // (signature, validity, name, key usage) with that CA as the only root.
        let inner = WebPkiServerVerifier::builder_with_provider(roots(ca)?, self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
