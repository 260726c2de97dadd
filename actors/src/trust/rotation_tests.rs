//! Root rotation's trust: the cross-signed new root, credentials that reach the old root
//! through it, and the TLS verifiers accepting old-or-new during the transition and only the
//! new root after it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use super::tls::{chain, provider, roots};
use super::*;
use crate::model::{NodeId, Role};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// The verifiers check validity against this instant, a minute after the certificates' issue.
fn verify_at() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(1_750_000_060))
}

/// Credentials issued by `signer` with `intermediates`, trusting `root`.
fn issued(
    signer: &ClusterCa,
    intermediates: Vec<Vec<u8>>,
    root: &ClusterCa,
    id: u128,
) -> Result<NodeCredentials, TrustError> {
    let key = NodeKey::generate().unwrap();
    let cert = signer
        .issue(
            &key.csr_der().unwrap(),
            NodeId(id),
            Role::Worker,
            now(),
            90 * DAY,
        )
        .unwrap();
    NodeCredentials::from_chain(key, cert, intermediates, root.cert_der().to_vec())
}

/// Whether a node trusting `root` accepts `peer` as a TLS client and as a TLS server.
fn accepts(root: &ClusterCa, peer: &NodeCredentials) -> (bool, bool) {
    let shown = chain(peer);
    let (end, rest) = shown.split_first().unwrap();
    let client =
        WebPkiClientVerifier::builder_with_provider(roots(root.cert_der()).unwrap(), provider())
            .build()
            .unwrap()
            .verify_client_cert(end, rest, verify_at())
            .is_ok();
    let server: Arc<WebPkiServerVerifier> =
        WebPkiServerVerifier::builder_with_provider(roots(root.cert_der()).unwrap(), provider())
            .build()
            .unwrap();
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let server = server
        .verify_server_cert(end, rest, &name, &[], verify_at())
        .is_ok();
    (client, server)
}

#[test]
fn a_certificate_of_the_new_root_reaches_the_old_root_through_the_cross_signed_one() {
    tracing::info!("phase: a new root, cross-signed by the old one");
    let old = ClusterCa::generate(now()).unwrap();
    let new = ClusterCa::generate(now()).unwrap();
    let cross = old.cross_sign(&new).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&cross).unwrap();
    let (_, new_parsed) = x509_parser::parse_x509_certificate(new.cert_der()).unwrap();
    assert_eq!(parsed.subject(), new_parsed.subject());
    assert_eq!(parsed.public_key(), new_parsed.public_key());
    assert!(parsed.is_ca());
    assert_ne!(CaDigest::of_cert(&cross), new.digest());

    tracing::info!("phase: a node still trusting the old root takes the new certificate");
    let renewed = issued(&new, vec![cross.clone()], &old, 1).unwrap();
    assert!(renewed.issued_by(new.cert_der()));
    assert!(!renewed.issued_by(old.cert_der()));

    tracing::info!("phase: without the intermediate, the old root does not reach it");
    assert!(matches!(
        issued(&new, vec![], &old, 2),
        Err(TrustError::NotSignedByCa(_))
    ));
    // Nor does an intermediate that is not signed by the root.
    let stranger = ClusterCa::generate(now()).unwrap();
    let foreign_cross = stranger.cross_sign(&new).unwrap();
    assert!(issued(&new, vec![foreign_cross], &old, 3).is_err());

    tracing::info!(
        "phase: the switch to the new root keeps the certificate; an old one cannot switch"
    );
    let switched = renewed.with_root(new.cert_der().to_vec()).unwrap();
    assert_eq!(switched.cert_der, renewed.cert_der);
    let stale = issued(&old, vec![], &old, 4).unwrap();
    assert!(matches!(
        stale.with_root(new.cert_der().to_vec()),
        Err(TrustError::NotSignedByCa(_))
    ));
}

#[test]
fn verifiers_accept_old_or_new_during_the_rotation_and_only_new_after() {
    let old = ClusterCa::generate(now()).unwrap();
    let new = ClusterCa::generate(now()).unwrap();
    let cross = old.cross_sign(&new).unwrap();
    let stale = issued(&old, vec![], &old, 1).unwrap();
    let renewed = issued(&new, vec![cross.clone()], &old, 2).unwrap();

    tracing::info!("phase: during the rotation nodes trust the old root: both certificates pass");
    assert_eq!(accepts(&old, &stale), (true, true));
    assert_eq!(accepts(&old, &renewed), (true, true));
    // The chain shown is leaf, cross-signed root, trusted root.
    let shown: Vec<CertificateDer<'_>> = chain(&renewed);
    assert_eq!(shown.len(), 3);
    assert_eq!(shown[1].as_ref(), cross.as_slice());

    tracing::info!("phase: after it, nodes trust the new root: only the new certificate passes");
    let switched = renewed.with_root(new.cert_der().to_vec()).unwrap();
    assert_eq!(accepts(&new, &switched), (true, true));
    assert_eq!(accepts(&new, &renewed), (true, true));
    assert_eq!(accepts(&new, &stale), (false, false));
    // A holder of an old certificate gains nothing by showing the cross-signed root too.
    let mut forged = stale.clone();
    forged.intermediates = vec![cross];
    assert_eq!(accepts(&new, &forged), (false, false));

    tracing::info!("phase: a certificate issued after the rotation, without the intermediate");
    let fresh = issued(&new, vec![], &new, 3).unwrap();
    assert_eq!(accepts(&new, &fresh), (true, true));
}

#[test]
fn credentials_keep_their_intermediates_through_save_and_load() {
    let old = ClusterCa::generate(now()).unwrap();
    let new = ClusterCa::generate(now()).unwrap();
    let cross = old.cross_sign(&new).unwrap();
    let renewed = issued(&new, vec![cross.clone()], &old, 7).unwrap();
    let dir = tempfile::tempdir().unwrap();
    renewed.save(dir.path()).unwrap();
    let loaded = NodeCredentials::load(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.cert_der, renewed.cert_der);
    assert_eq!(loaded.intermediates, vec![cross]);
    assert_eq!(loaded.ca_cert_der, old.cert_der());
}
