//! The lying peer: a node that joined for real (through a token, so it holds a certificate of
//! the cluster's CA) and then, instead of running swarm-node's code, sends whatever a test
//! tells it to. This is what a compromised machine running a modified binary can do.

#![allow(dead_code)] // each attack uses a different part of this

use std::net::SocketAddr;
use std::time::Duration;

use swarm_actors::model::{NodeId, Role};
use swarm_actors::transport::{self, Inbound, Transport, TransportConfig};
use swarm_actors::trust::{JoinToken, NodeCredentials, NodeKey};
use swarm_actors::wire::{JoinRequest, JoinResponse};
use tokio::sync::mpsc;

/// A peer holding a real certificate, driven by the test.
pub struct Liar {
    pub creds: NodeCredentials,
    pub joined: JoinResponse,
    pub transport: Transport,
    /// What the cluster sends the liar; tests read it or leave it to fill (it is bounded).
    pub inbound: mpsc::Receiver<Inbound>,
}

impl Liar {
    /// Joins through `seed` with `token`, as `start --seed … --token …` would, and binds an
    /// endpoint on `listen` with the certificate it got.
    pub async fn join(seed: SocketAddr, token: &str, listen: SocketAddr, hostname: &str) -> Liar {
        swarm_actors::trust::install_crypto_provider();
        let token: JoinToken = token.parse().expect("a well-formed token");
        let key = NodeKey::generate().expect("key");
        let req = JoinRequest {
            token: token.to_string(),
            csr_der: key.csr_der().expect("csr"),
            hostname: hostname.to_string(),
            addr: listen,
        };
        let joined = transport::join(seed, &token.ca_digest, req, Duration::from_secs(10))
            .await
            .expect("the liar joins for real");
        let creds =
            NodeCredentials::from_parts(key, joined.cert_der.clone(), joined.ca_cert_der.clone())
                .expect("credentials from the join");
        let (transport, inbound) = Transport::bind(TransportConfig::new(listen), &creds)
            .await
            .expect("the liar's endpoint binds");
        Liar {
            creds,
            joined,
            transport,
            inbound,
        }
    }

    pub fn id(&self) -> NodeId {
        self.creds.node_id
    }

    pub fn role(&self) -> Role {
        self.creds.role
    }
}

/// A multi-threaded runtime for a test's async part.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
