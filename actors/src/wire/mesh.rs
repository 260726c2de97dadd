//! What the routing mesh needs from the leader, and the request that opens a tunnel to a task
//! on another node.
//!
//! The leader computes one [`MeshTable`] for the whole cluster: every service that publishes
//! ports or is on an overlay network, its ports, its networks with its VIP and aliases on each,
//! and the tasks in rotation (RUNNING, desired running, healthy when the service has a health
//! check, on a node that is not Down) with their ingress and overlay addresses; every overlay
//! network of the store; and the nodes holding live tasks on overlay networks. Each session report says which
//! version the node holds (`SessionReport::mesh_version`); an answer carries the table only
//! when that differs, and the leader pokes every node when the table changes.
//!
//! A node forwards a connection to a task on another node through a bidirectional stream of
//! the mutual-TLS QUIC connection between the two: the stream opens with a
//! `Request::Tunnel(TunnelRequest)` frame, the task's node answers `Response::TunnelOpen` once
//! it has connected to the task (or `Response::Failed` when it could not, and the sender tries
//! another task), and from then on the stream carries the connection's bytes both ways.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{EndpointMode, NetworkId, NodeId, PortConfig, PortProtocol, ServiceId, TaskId};

/// Most services the table lists (with published ports or overlay networks).
pub const MESH_SERVICES_MAX: usize = 256;
/// Most backends the table lists, over all services. Halved from 7,168 when backends gained
/// their slot and overlay addresses and the table its networks, nodes and aliases: the table
/// must still fit its share of a session answer's frame at every bound at once.
pub const MESH_BACKENDS_MAX: usize = 3_584;
/// Most overlay addresses of backends ([`MeshBackend::overlay`] entries) the table lists, over
/// all backends: two per backend on average at the backend bound.
pub const MESH_OVERLAY_ADDRS_MAX: usize = 7_168;
/// Most overlay networks the table lists: every network the store may hold.
pub const MESH_NETWORKS_MAX: usize = crate::model::NETWORKS_MAX;
/// Most nodes the table lists as holding overlay tasks.
pub const MESH_NODES_MAX: usize = 1_024;
/// Most aliases the table lists, over all services and networks.
pub const MESH_ALIASES_MAX: usize = 1_024;
/// Longest alias the table lists, in bytes (a DNS name's label is at most 63): a longer one
/// is left out.
pub const MESH_ALIAS_BYTES_MAX: usize = 64;
/// Most bytes one service entry takes encoded, its backends and aliases apart: its ID, its
/// name (at most `answer::SERVICE_NAME_BYTES_MAX`), at most `PORTS_PER_SERVICE_MAX` ports of a
/// few bytes each, its endpoint mode and at most `NETWORKS_PER_TASK_MAX` networks (index and
/// VIP), with room to spare (checked by a test on the largest entry).
pub const MESH_SERVICE_BYTES_MAX: usize = 1_280;
/// Most bytes one backend takes encoded, its overlay addresses apart: two IDs, an IPv6 socket
/// address, an IPv4 address, a slot.
pub const MESH_BACKEND_BYTES_MAX: usize = 112;
/// Most bytes one overlay address of a backend takes: a network index and an IPv4 address.
pub const MESH_OVERLAY_ADDR_BYTES_MAX: usize = 8;
/// Most bytes one network, one node and one alias take encoded.
pub const MESH_NETWORK_BYTES_MAX: usize = 128;
pub const MESH_NODE_BYTES_MAX: usize = 64;
pub const MESH_ALIAS_ENCODED_BYTES_MAX: usize = MESH_ALIAS_BYTES_MAX + 8;
/// Most bytes of a table in one session answer: it rides in the frame with the assignments
/// and the files (see `answer`), and all of it at its bounds fits.
pub const MESH_TABLE_BYTES_MAX: usize = (1 << 20) - 64 * 1024;

const _: () = assert!(
    MESH_SERVICES_MAX * MESH_SERVICE_BYTES_MAX
        + MESH_BACKENDS_MAX * MESH_BACKEND_BYTES_MAX
        + MESH_OVERLAY_ADDRS_MAX * MESH_OVERLAY_ADDR_BYTES_MAX
        + MESH_NETWORKS_MAX * MESH_NETWORK_BYTES_MAX
        + MESH_NODES_MAX * MESH_NODE_BYTES_MAX
        + MESH_ALIASES_MAX * MESH_ALIAS_ENCODED_BYTES_MAX
        + 64
        <= MESH_TABLE_BYTES_MAX
);
const _: () = assert!(
    super::answer::ANSWER_BYTES_MAX
        + super::answer::FILES_ANSWER_BYTES_MAX
        + MESH_TABLE_BYTES_MAX
        + super::answer::ANSWER_FRAMING_BYTES
        <= super::FRAME_BYTES_MAX
);
const _: () = assert!(MESH_NETWORKS_MAX <= u16::MAX as usize);

/// The routing mesh's view of the cluster, as the leader computed it: what every node's mesh,
/// VIPs, overlay data path and DNS server work from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshTable {
    /// A digest of the content: equal tables have equal versions; 0 is "no table yet".
    pub version: u64,
    /// Services that publish at least one port or are on at least one overlay network, by ID.
    pub services: Vec<MeshService>,
    /// Every overlay network of the store, by ID; [`MeshBackend::overlay`] and
    /// [`MeshServiceNet`] point into it by index.
    pub networks: Vec<MeshNetwork>,
    /// The nodes holding live tasks on overlay networks, by ID: where each node's VXLAN
    /// devices send broadcast and unknown frames (head-end replication).
    pub nodes: Vec<MeshNode>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshService {
    pub id: ServiceId,
    pub name: String,
    pub ports: Vec<PortConfig>,
    pub endpoint_mode: EndpointMode,
    /// The overlay networks the service is on (its current spec's), with its VIP on each.
    pub networks: Vec<MeshServiceNet>,
    /// The tasks in rotation, in task ID order.
    pub backends: Vec<MeshBackend>,
}

/// A service on one overlay network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshServiceNet {
    /// Index into [`MeshTable::networks`].
    pub network: u16,
    /// The service's VIP there (none in dnsrr mode).
    pub vip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
}

/// One task in rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshBackend {
    pub task: TaskId,
    pub node: NodeId,
    /// Where the task's node listens (its QUIC endpoint).
    pub node_addr: SocketAddr,
    /// The task's ingress address, when it has one.
    pub addr: Option<Ipv4Addr>,
    /// The task's slot (replicated) or 0 (global): `<service>.<slot>.<task id>` in DNS.
    pub slot: u64,
    /// The task's address on each overlay network it is on: (index into
    /// [`MeshTable::networks`], address).
    pub overlay: Vec<(u16, Ipv4Addr)>,
}

/// An overlay network as every node needs it: to make its bridge and VXLAN device, and to
/// answer and balance names on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshNetwork {
    pub id: NetworkId,
    pub name: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub vni: u32,
    pub internal: bool,
}

/// A node holding live tasks on overlay networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshNode {
    pub id: NodeId,
    /// Its address (the VXLAN packets go to its IP).
    pub addr: SocketAddr,
}

/// Opens a tunnel to `task`'s `target` port on the node that runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRequest {
    pub service: ServiceId,
    pub task: TaskId,
    pub protocol: PortProtocol,
    /// The published port the client connected to (which port config applies).
    pub published: u16,
    pub target: u16,
    /// The client's address as the entry node saw it, for the PROXY protocol header.
    pub client: SocketAddr,
    /// The entry node's address the client connected to.
    pub entry: SocketAddr,
    /// Set when the connection came to the service's VIP on this overlay network rather than
    /// to a published port: `published` is then 0, any `target` port may be asked for, and
    /// the far node connects to the task's address on that network.
    pub network: Option<NetworkId>,
}

/// Where the agent publishes each new table; the mesh watches it.
pub type MeshFeed = tokio::sync::watch::Sender<Option<Arc<MeshTable>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        NETWORK_NAME_BYTES_MAX, NETWORKS_PER_TASK_MAX, PORTS_PER_SERVICE_MAX, PortConfig,
        PublishMode,
    };
    use crate::wire::answer::{SERVICE_NAME_BYTES_MAX, encoded_len};

    #[test]
    fn the_largest_entries_fit_their_byte_bounds() {
        let mut port = PortConfig::tcp(u16::MAX, u16::MAX);
        port.mode = PublishMode::Host;
        port.protocol = PortProtocol::Udp;
        port.proxy_protocol = true;
        port.affinity = true;
        let net = MeshServiceNet {
            network: u16::MAX,
            vip: Some(Ipv4Addr::BROADCAST),
            aliases: Vec::new(),
        };
        let service = MeshService {
            endpoint_mode: EndpointMode::Dnsrr,
            networks: vec![net; NETWORKS_PER_TASK_MAX],
            id: ServiceId(u128::MAX),
            name: "x".repeat(SERVICE_NAME_BYTES_MAX),
            ports: vec![port; PORTS_PER_SERVICE_MAX],
            backends: Vec::new(),
        };
        assert!(
            encoded_len(&service) <= MESH_SERVICE_BYTES_MAX,
            "{}",
            encoded_len(&service)
        );
        let backend = MeshBackend {
            overlay: Vec::new(),
            slot: u64::MAX,
            task: TaskId(u128::MAX),
            node: NodeId(u128::MAX),
            node_addr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
                .parse()
                .unwrap(),
            addr: Some(Ipv4Addr::BROADCAST),
        };
        assert!(
            encoded_len(&backend) <= MESH_BACKEND_BYTES_MAX,
            "{}",
            encoded_len(&backend)
        );
        let one = |overlay| {
            let b = MeshBackend {
                overlay,
                ..backend.clone()
            };
            encoded_len(&b)
        };
        let addr = (u16::MAX, Ipv4Addr::BROADCAST);
        assert!(one(vec![addr; 2]) - one(Vec::new()) <= 2 * MESH_OVERLAY_ADDR_BYTES_MAX);
        let network = MeshNetwork {
            id: NetworkId(u128::MAX),
            name: "x".repeat(NETWORK_NAME_BYTES_MAX),
            subnet: Ipv4Addr::BROADCAST,
            prefix: 32,
            gateway: Ipv4Addr::BROADCAST,
            vni: u32::MAX,
            internal: true,
        };
        assert!(encoded_len(&network) <= MESH_NETWORK_BYTES_MAX);
        let node = MeshNode {
            id: NodeId(u128::MAX),
            addr: backend.node_addr,
        };
        assert!(encoded_len(&node) <= MESH_NODE_BYTES_MAX);
        assert!(encoded_len(&"x".repeat(MESH_ALIAS_BYTES_MAX)) <= MESH_ALIAS_ENCODED_BYTES_MAX);
    }
}
