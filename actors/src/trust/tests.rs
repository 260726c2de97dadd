//! Trust tests: tokens, the CA, node credentials and their files.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::model::{NodeId, Role};
use crate::wire::WireFailure;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    // A fixed instant keeps certificates reproducible in what the tests check; it must lie in
    // the present era only because TLS tests elsewhere verify against the real clock.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn node(ca: &ClusterCa, id: u128, role: Role) -> NodeCredentials {
    let key = NodeKey::generate().unwrap();
    let cert = ca
        .issue(&key.csr_der().unwrap(), NodeId(id), role, now(), 90 * DAY)
        .unwrap();
    NodeCredentials::from_parts(key, cert, ca.cert_der().to_vec()).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn token_round_trips_through_text() {
    let mut rng = StdRng::seed_from_u64(1);
    let digest = CaDigest::of_cert(b"ca");
    let token = JoinToken::generate(digest, &mut rng);
    let text = token.to_string();
    assert!(text.starts_with(TOKEN_PREFIX));
    assert_eq!(text.len(), TOKEN_PREFIX.len() + 50 + 1 + TOKEN_SECRET_CHARS);
    assert_eq!(text.parse::<JoinToken>().unwrap(), token);
    assert!(
        !format!("{token:?}").contains(&token.secret),
        "Debug must not show the secret"
    );
}

#[test]
fn token_refuses_malformed_text() {
    let mut rng = StdRng::seed_from_u64(2);
    let good = JoinToken::generate(CaDigest::of_cert(b"ca"), &mut rng).to_string();
    let (head, secret) = good.rsplit_once('-').unwrap();
    let cases = [
        String::new(),
        "SWMTKN-1-".to_string(),
        good.replace("SWMTKN-1-", "SWMTKN-2-"),
        format!("{head}-{}", &secret[1..]),
        format!("{head}-{}X", &secret[1..]),
        format!("{head}-{secret}-extra"),
        good.replacen(&head[9..10], "", 1),
        good.to_uppercase(),
    ];
    for case in cases {
        let err = case.parse::<JoinToken>().unwrap_err();
        assert!(matches!(err, TrustError::BadToken(_)), "{case:?}: {err}");
    }
}

#[test]
fn check_tells_roles_and_refusals_apart() {
    let mut rng = StdRng::seed_from_u64(3);
    let digest = CaDigest::of_cert(b"ca");
    let mut tokens = Tokens::generate(digest, &mut rng);
    assert_ne!(tokens.worker.secret, tokens.manager.secret);
    assert_eq!(tokens.check(&tokens.worker.to_string()), Ok(Role::Worker));
    assert_eq!(tokens.check(&tokens.manager.to_string()), Ok(Role::Manager));

    let stranger = JoinToken::generate(digest, &mut rng).to_string();
    assert_eq!(tokens.check(&stranger), Err(TokenRefusal::BadToken));

    let other_ca = JoinToken::generate(CaDigest::of_cert(b"other"), &mut rng).to_string();
    assert_eq!(tokens.check(&other_ca), Err(TokenRefusal::WrongCa));

    assert!(matches!(
        tokens.check("SWMTKN-1-nonsense"),
        Err(TokenRefusal::Malformed(_))
    ));

    let old_worker = tokens.worker.to_string();
    let manager = tokens.manager.to_string();
    tokens.rotate(Role::Worker, &mut rng);
    assert_eq!(tokens.check(&old_worker), Err(TokenRefusal::BadToken));
    assert_eq!(tokens.check(&tokens.worker.to_string()), Ok(Role::Worker));
    assert_eq!(
        tokens.check(&manager),
        Ok(Role::Manager),
        "rotation is per role"
    );

    assert_eq!(
        WireFailure::from(TokenRefusal::WrongCa),
        WireFailure::WrongCa
    );
    assert_eq!(
        WireFailure::from(TokenRefusal::BadToken),
        WireFailure::BadToken
    );
    assert!(matches!(
        WireFailure::from(TokenRefusal::Malformed("x".into())),
        WireFailure::Invalid(_)
    ));
}

#[test]
fn tokens_are_reproducible_from_a_seed() {
    let digest = CaDigest::of_cert(b"ca");
    let a = Tokens::generate(digest, &mut StdRng::seed_from_u64(9));
    let b = Tokens::generate(digest, &mut StdRng::seed_from_u64(9));
    assert_eq!(a, b);
}

#[test]
fn issued_certificate_carries_identity_and_validity() {
    let ca = ClusterCa::generate(now()).unwrap();
    let id = NodeId(0x1234_5678_9abc_def0_1122_3344_5566_7788);
    let creds = node(&ca, id.0, Role::Manager);
    assert_eq!(creds.node_id, id);
    assert_eq!(creds.role, Role::Manager);
    assert_eq!(creds.not_before, now() - CERT_BACKDATE);
    assert_eq!(creds.not_after, now() + 90 * DAY);
    assert_eq!(
        peer_identity(&creds.cert_der).unwrap(),
        PeerIdentity {
            node_id: id,
            role: Role::Manager
        }
    );

    let (_, cert) = x509_parser::parse_x509_certificate(&creds.cert_der).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(names.iter().any(|n| n.contains(SERVER_NAME)), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains(&id.to_string())),
        "{names:?}"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let org = cert.subject().iter_organization().next().unwrap();
    assert_eq!(org.as_str().unwrap(), NODE_CERT_ORG);
}

#[test]
fn issue_ignores_the_subject_the_csr_asks_for() {
    let ca = ClusterCa::generate(now()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "0000000000000000000000001");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "swarm-manager");
    let csr = params.serialize_request(&key).unwrap();
    let cert = ca
        .issue(csr.der(), NodeId(77), Role::Worker, now(), DAY)
        .unwrap();
    let id = peer_identity(&cert).unwrap();
    assert_eq!(id.node_id, NodeId(77));
    assert_eq!(id.role, Role::Worker);
}

#[test]
fn issue_refuses_a_broken_csr() {
    let ca = ClusterCa::generate(now()).unwrap();
    let key = NodeKey::generate().unwrap();
    let mut csr = key.csr_der().unwrap();
    let last = csr.len() - 1;
    csr[last] ^= 0x55;
    for bad in [&b"not a csr"[..], &csr] {
        let err = ca
            .issue(bad, NodeId(1), Role::Worker, now(), DAY)
            .unwrap_err();
        assert!(matches!(err, TrustError::BadCsr(_)), "{err}");
    }
}

#[test]
fn from_parts_refuses_another_cas_certificate_and_another_key() {
    let ca = ClusterCa::generate(now()).unwrap();
    let other = ClusterCa::generate(now()).unwrap();
    assert_ne!(ca.digest(), other.digest());
    let key = NodeKey::generate().unwrap();
    let foreign = other
        .issue(&key.csr_der().unwrap(), NodeId(5), Role::Worker, now(), DAY)
        .unwrap();
    let err =
        NodeCredentials::from_parts(key.clone(), foreign, ca.cert_der().to_vec()).unwrap_err();
    assert!(matches!(err, TrustError::NotSignedByCa(_)), "{err}");

    let cert = ca
        .issue(&key.csr_der().unwrap(), NodeId(5), Role::Worker, now(), DAY)
        .unwrap();
    let err =
        NodeCredentials::from_parts(NodeKey::generate().unwrap(), cert, ca.cert_der().to_vec())
            .unwrap_err();
    assert!(matches!(err, TrustError::KeyMismatch), "{err}");
}

#[test]
fn ca_survives_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ClusterCa::load(dir.path()).unwrap().is_none());
    let ca = ClusterCa::generate(now()).unwrap();
    ca.save(dir.path()).unwrap();
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    let loaded = ClusterCa::load(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.cert_der(), ca.cert_der());
    assert_eq!(loaded.digest(), ca.digest());
    // The loaded CA signs certificates that verify against the original certificate.
    let creds = node(&loaded, 42, Role::Worker);
    assert_eq!(creds.node_id, NodeId(42));

    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    assert!(
        ClusterCa::load(dir.path()).is_err(),
        "half a CA is an error"
    );
}

#[test]
fn credentials_and_tokens_survive_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    assert!(NodeCredentials::load(dir.path()).unwrap().is_none());
    let ca = ClusterCa::generate(now()).unwrap();
    let creds = node(&ca, 9, Role::Worker);
    creds.save(dir.path()).unwrap();
    assert_eq!(mode(&dir.path().join("node.key")), 0o600);
    let loaded = NodeCredentials::load(dir.path()).unwrap().unwrap();
    assert_eq!(loaded.cert_der, creds.cert_der);
    assert_eq!(loaded.ca_cert_der, creds.ca_cert_der);
    assert_eq!(loaded.key().pkcs8_der(), creds.key().pkcs8_der());
    assert_eq!(loaded.node_id, NodeId(9));

    let mut rng = StdRng::seed_from_u64(4);
    assert!(Tokens::load(dir.path()).unwrap().is_none());
    let tokens = Tokens::generate(ca.digest(), &mut rng);
    tokens.save(dir.path()).unwrap();
    assert_eq!(mode(&dir.path().join("tokens.json")), 0o600);
    assert_eq!(Tokens::load(dir.path()).unwrap().unwrap(), tokens);

    std::fs::write(dir.path().join("tokens.json"), b"{\"worker\": 1}").unwrap();
    assert!(Tokens::load(dir.path()).is_err());
}

#[test]
fn renewal_falls_inside_the_validity() {
    let ca = ClusterCa::generate(now()).unwrap();
    let creds = node(&ca, 3, Role::Worker);
    let issued = creds.not_before + CERT_BACKDATE;
    let validity = creds.not_after.duration_since(issued).unwrap();
    assert_eq!(creds.renewal_at(0.5), issued + validity / 2);
    assert!(
        creds.renewal_at(0.0) >= issued,
        "backdating is not counted as life used"
    );
    let late = creds.renewal_at(0.8);
    assert!(late > creds.renewal_at(0.5) && late < creds.not_after);
    assert_eq!(
        creds.renewal_at(7.0),
        creds.not_after,
        "fractions are clamped"
    );
}

#[test]
fn tls_configs_build() {
    install_crypto_provider();
    install_crypto_provider();
    let ca = ClusterCa::generate(now()).unwrap();
    let creds = node(&ca, 3, Role::Manager);
    let server = server_config(&creds).unwrap();
    assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
    let client = client_config(&creds).unwrap();
    assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
    join_client_config(&ca.digest()).unwrap();
}
