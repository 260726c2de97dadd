//! Trust: the cluster's certificate authority, node certificates, join tokens and the TLS
//! configurations the transport runs on.
//!
//! ```text
//!  bootstrap node                       joining node
//!  ClusterCa::generate ──► ca.crt/ca.key
//!  Tokens::generate(digest) ──► SWMTKN-1-<digest>-<secret>  ──(operator)──►  token
//!                                        join_client_config(digest): pins the CA by digest
//!  server_config(creds) ◄──────── QUIC/TLS 1.3, no client cert ────────┘
//!  Tokens::check(token) → Role
//!  ClusterCa::issue(csr, id, role) ──── cert ────►  NodeCredentials::from_parts(key, cert, ca)
//!                                                   client_config / server_config (mutual TLS)
//! ```
//!
//! A node's ID and role live in its certificate (CN and OU), so [`peer_identity`] of a verified
//! TLS peer certificate is proof of who is on the other end. Nothing here reads the clock: every
//! function that needs the time takes it as an argument. Key generation draws from the
//! operating system's RNG through ring, which is the one source of randomness fit for keys.

pub mod authz;
mod ca;
mod creds;
mod digest;
mod files;
mod tls;
mod token;

pub use authz::ManagerSet;
pub use ca::{CA_COMMON_NAME, CA_VALIDITY, CERT_BACKDATE, ClusterCa, NODE_CERT_ORG};
pub use creds::{NodeCredentials, NodeKey, PeerIdentity, peer_identity};
pub use digest::CaDigest;
pub use tls::{ALPN, SERVER_NAME, client_config, join_client_config, server_config};
pub use token::{JoinToken, TOKEN_PREFIX, TOKEN_SECRET_CHARS, TokenRefusal, Tokens};

use std::path::PathBuf;

/// Everything that can go wrong making, reading or checking credentials. Each variant means
/// nothing was changed: no file written half-way, no key replaced.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("the certificate signing request is unusable: {0}")]
    BadCsr(String),
    #[error("the certificate does not parse: {0}")]
    BadCert(String),
    #[error("the certificate was not signed by this cluster's CA: {0}")]
    NotSignedByCa(String),
    #[error("the certificate's public key is not the node's key")]
    KeyMismatch,
    #[error("the certificate carries no usable node identity: {0}")]
    BadIdentity(String),
    #[error("the private key does not parse: {0}")]
    BadKey(String),
    #[error("malformed CA digest {0:?}: expected 50 characters from 0-9 and a-z")]
    BadDigest(String),
    #[error("malformed join token: {0}")]
    BadToken(String),
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
}

/// A certificate as one PEM block, as `swarm ca` prints the root.
pub fn pem_certificate(der: &[u8]) -> String {
    files::pem_encode("CERTIFICATE", der)
}

/// Installs rustls's ring provider as the process default. The configurations made here name
/// their provider explicitly, so this only matters to code that uses rustls's defaults (quinn's
/// helpers, tests). Calling it twice is harmless.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is the state we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
