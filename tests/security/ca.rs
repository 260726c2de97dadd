//! Root CA rotation (`swarm ca --rotate`): every live node is re-issued a certificate under a
//! new root and then trusts it alone, while the cluster keeps working; a node that held on to
//! a certificate of the old root, and the old join tokens, are refused afterwards.
//! Ports 25601-25699.

use std::net::SocketAddr;
use std::time::Duration;

use swarm_actors::model::NodeId;
use swarm_actors::transport;
use swarm_actors::trust::{JoinToken, NodeCredentials, NodeKey, pem_certificate};
use swarm_actors::wire::{JoinRequest, Request, Response};

use crate::common::{self, Node, phase, running_per_node, status_of, wait_until};
use crate::peer::{Liar, runtime};

const CONVERGE: Duration = Duration::from_secs(60);

/// The root a node trusts, from its credentials on disk, as DER and as `swarm ca` prints it.
fn trusted_root(n: &Node) -> (NodeCredentials, String) {
    let creds = NodeCredentials::load(&n.dir).unwrap().expect("credentials");
    let pem = pem_certificate(&creds.ca_cert_der);
    (creds, pem)
}

fn running(n: &Node, svc: &str) -> usize {
    running_per_node(&n.service_ps(svc)).values().sum()
}

fn ready(n: &Node, ids: &[String]) -> bool {
    let rows = n.node_ls();
    ids.iter()
        .all(|id| status_of(&rows, id).as_deref() == Some("Ready"))
}

#[test]
fn ca_rotation_reissues_every_node_and_refuses_the_old_root() {
    common::phase(
        "attack: a node that joined before `swarm ca --rotate` keeps its certificate of the old \
         root and speaks after the rotation; a join with a token of the old root",
    );
    // The test talks to the nodes itself, from this process's namespace.
    let _host = crate::common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let m1 = Node::bootstrap(root.path(), "m1", 25601);
    let old_token = m1.token("worker");
    let w1 = Node::join(root.path(), "w1", 25602, m1.addr, &old_token);
    let w2 = Node::join(root.path(), "w2", 25603, m1.addr, &old_token);
    let nodes = [&m1, &w1, &w2];
    let ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();
    assert!(wait_until(CONVERGE, || ready(&m1, &ids)), "3 nodes Ready");
    m1.ok(&[
        "service",
        "create",
        "--name",
        "pause",
        "--replicas",
        "3",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "100000",
    ]);
    assert!(
        wait_until(CONVERGE, || running(&m1, "pause") == 3),
        "3 tasks run"
    );
    let (m1_creds, old_root_pem) = trusted_root(&m1);
    assert_eq!(
        m1.ok(&["swarm", "ca"]),
        old_root_pem,
        "swarm ca prints the root"
    );
    let old_root = m1_creds.ca_cert_der;

    phase("a lying peer joins before the rotation and keeps its certificate");
    let rt = runtime();
    let liar_addr: SocketAddr = "127.0.0.1:25604".parse().unwrap();
    let liar = rt.block_on(Liar::join(m1.addr, &old_token, liar_addr, "liar"));
    assert!(liar.creds.issued_by(&old_root));

    phase("swarm ca --rotate, with progress");
    let out = m1
        .cli_within(Duration::from_secs(180), &["swarm", "ca", "--rotate"])
        .expect("the rotation finishes");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "swarm ca --rotate failed");
    assert!(text.contains("rotated TLS certificates:"), "{text}");
    assert!(text.contains("rotated CA certificates:"), "{text}");
    assert!(text.contains("3/3 nodes"), "{text}");
    assert!(text.contains("Successfully rotated root CA"), "{text}");
    let new_root_pem = m1.ok(&["swarm", "ca"]);
    assert_ne!(new_root_pem, old_root_pem, "the root changed");
    assert!(
        text.ends_with(&new_root_pem),
        "the new root is printed last: {text}"
    );
    let new_root = trusted_root(&m1).0.ca_cert_der;

    phase("every node holds a certificate of the new root and trusts it alone");
    for n in nodes {
        let creds = NodeCredentials::load(&n.dir).unwrap().expect("credentials");
        assert!(
            creds.issued_by(&new_root),
            "{}: certificate of the new root",
            n.name
        );
        assert_eq!(
            creds.ca_cert_der, new_root,
            "{}: trusts the new root",
            n.name
        );
    }

    phase("the cluster keeps working: nodes Ready, the service converges to a new count");
    assert!(wait_until(CONVERGE, || ready(&m1, &ids)), "3 nodes Ready");
    m1.ok(&["service", "scale", "--detach", "pause=5"]);
    assert!(
        wait_until(CONVERGE, || running(&m1, "pause") == 5),
        "5 tasks run after the rotation"
    );

    phase("the old certificate is refused at the handshake, by manager and worker alike");
    for n in nodes {
        let r = rt.block_on(liar.transport.request(n.addr, Request::Ping));
        assert!(r.is_err(), "{}: old certificate refused, got {r:?}", n.name);
    }

    phase("the old join token is refused; the new one admits");
    let old: JoinToken = old_token.parse().unwrap();
    let key = NodeKey::generate().unwrap();
    let req = JoinRequest {
        token: old_token.clone(),
        csr_der: key.csr_der().unwrap(),
        hostname: "late".into(),
        addr: "127.0.0.1:25605".parse().unwrap(),
    };
    let r = rt.block_on(transport::join(
        m1.addr,
        &old.ca_digest,
        req,
        Duration::from_secs(10),
    ));
    assert!(r.is_err(), "old token refused, got {r:?}");
    let new_token = m1.token("worker");
    assert_ne!(new_token, old_token);
    let fresh = rt.block_on(Liar::join(
        m1.addr,
        &new_token,
        "127.0.0.1:25606".parse().unwrap(),
        "fresh",
    ));
    assert_ne!(fresh.id(), NodeId(0));
    let r = rt.block_on(fresh.transport.request(m1.addr, Request::Ping));
    assert!(
        matches!(r, Ok(Response::Pong)),
        "new certificate accepted: {r:?}"
    );
}
