//! A mesh node on a loopback address, with a certificate from a test CA and a table fed by
//! hand: what the mesh's tests and its benchmark (`benches/mesh.rs`) run on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{Mesh, MeshConfig};
use crate::model::{NodeId, Role};
use crate::runtime::Endpoints;
use crate::transport::{Transport, TransportConfig};
use crate::trust::{ClusterCa, NodeCredentials, NodeKey};
use crate::wire::MeshTable;

/// One node: its transport, its tasks' endpoints, its table feed and its mesh, bound on `ip`.
pub struct LoopbackNode {
    pub transport: Transport,
    pub endpoints: Endpoints,
    pub feed: watch::Sender<Option<Arc<MeshTable>>>,
    pub mesh: Mesh,
    pub ip: IpAddr,
}

/// A worker's credentials for node `id`, issued by `ca`, valid for an hour from now.
// The certificate's start: a test fixture reads the clock, as the tests do.
#[allow(clippy::disallowed_methods)]
pub fn credentials(ca: &ClusterCa, id: NodeId) -> NodeCredentials {
    let key = NodeKey::generate().expect("a key");
    let cert = ca
        .issue(
            &key.csr_der().expect("a CSR"),
            id,
            Role::Worker,
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .expect("a certificate");
    NodeCredentials::from_parts(key, cert, ca.cert_der().to_vec()).expect("credentials")
}

/// Starts node `id` on `ip` (its transport on an ephemeral port, its published ports on `ip`
/// whatever `config.bind_ip` says). Nothing reads the transport's inbound queue: such a node
/// serves tunnels and nothing else.
pub async fn loopback_node(
    ca: &ClusterCa,
    id: NodeId,
    ip: IpAddr,
    config: MeshConfig,
) -> LoopbackNode {
    let (transport, inbound) = Transport::bind(
        TransportConfig::new(SocketAddr::new(ip, 0)),
        &credentials(ca, id),
    )
    .await
    .expect("a transport on loopback");
    std::mem::forget(inbound);
    let endpoints = Endpoints::default();
    let (feed, rx) = watch::channel(None);
    let config = MeshConfig {
        bind_ip: ip,
        ..config
    };
    let mesh = Mesh::start(id, config, transport.clone(), endpoints.clone(), rx);
    LoopbackNode {
        transport,
        endpoints,
        feed,
        mesh,
        ip,
    }
}
