//! Certificates a node reads: a peer's identity from its certificate, and a join answer's
//! certificate and CA put together with the node's key (what a joining node does with the
//! bytes a manager sent back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_actors::trust::{NodeCredentials, NodeKey, peer_identity};
use swarm_node_fuzz::pieces;

fuzz_target!(|data: &[u8]| {
    let _ = peer_identity(data);
    let mut parts = pieces(data);
    let (Some(cert), Some(ca)) = (parts.next(), parts.next()) else {
        return;
    };
    // A fresh key per input: NodeKey is not Clone, and the certificate never matches it
    // unless the fuzzer forges a signature, so only the checks before the key's are reached.
    let key = NodeKey::generate().expect("a key");
    let _ = NodeCredentials::from_parts(key, cert.to_vec(), ca.to_vec());
});
