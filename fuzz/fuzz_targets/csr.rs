//! A joining node's certificate signing request, as a manager handles it: the join is admitted
//! with a valid token by a fixed test CA, and a certificate it issues must name the identity
//! the manager chose, whatever the CSR said.
#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use swarm_actors::model::{NodeId, Role};
use swarm_actors::node::{Authority, CERT_VALIDITY};
use swarm_actors::trust::peer_identity;
use swarm_actors::wire::JoinRequest;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

static AUTHORITY: LazyLock<Authority> = LazyLock::new(|| {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    Authority::generate(now(), CERT_VALIDITY, &mut rng).expect("a test CA")
});

fuzz_target!(|data: &[u8]| {
    let req = JoinRequest {
        token: AUTHORITY.tokens().worker.to_string(),
        csr_der: data.to_vec(),
        hostname: "fuzz".into(),
        addr: SocketAddr::from(([10, 0, 0, 9], 2377)),
    };
    let node_id = NodeId(0x5eed);
    if let Ok((role, cert)) = AUTHORITY.admit(&req, node_id, now()) {
        assert_eq!(role, Role::Worker);
        let who = peer_identity(&cert).expect("an issued certificate names a node");
        assert_eq!((who.node_id, who.role), (node_id, Role::Worker));
    }
    let _ = AUTHORITY.renew(node_id, Role::Manager, data, now());
});
