//! Networks and published ports: the `ingress` network every task is attached to, the address
//! a task holds on it, and the ports a service publishes through the routing mesh.
//!
//! The ingress network's subnet is cut into one slice per node ([`NODE_SLICE_PREFIX`]); the
//! leader gives each node a slice the first time it places a task there and each task an
//! address from its node's slice, so addresses never collide across the cluster and a node's
//! tasks share one local bridge whose gateway is the slice's first address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::NetworkId;

/// The network every task is attached to, and the one published ports are reached through.
pub const INGRESS_NETWORK: &str = "ingress";
/// The ingress network's subnet (`10.255.0.0/16`): room for 256 node slices.
pub const INGRESS_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 0);
pub const INGRESS_PREFIX: u8 = 16;
/// Each node's slice of a network's subnet: 253 task addresses (the first is the node's
/// gateway, the last the broadcast address).
pub const NODE_SLICE_PREFIX: u8 = 24;
/// Where a published port is picked when the user names only the target (`--publish 80`),
/// as Docker does.
pub const PUBLISHED_PORT_AUTO_MIN: u16 = 30_000;
pub const PUBLISHED_PORT_AUTO_MAX: u16 = 32_767;
/// Most published ports one service may have.
pub const PORTS_PER_SERVICE_MAX: usize = 64;
/// Most networks one task is attached to.
pub const NETWORKS_PER_TASK_MAX: usize = 16;
/// Longest network name, in bytes.
pub const NETWORK_NAME_BYTES_MAX: usize = 64;

/// Where overlay networks get their subnet when the user names none: the next free
/// [`OVERLAY_DEFAULT_PREFIX`] of `10.0.0.0/8`, as Swarm's default address pool does (the
/// ingress subnet, inside it, is never given out).
pub const OVERLAY_POOL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
pub const OVERLAY_POOL_PREFIX: u8 = 8;
pub const OVERLAY_DEFAULT_PREFIX: u8 = 24;
/// The widest and the narrowest subnet a user may give an overlay network: a /16 holds 65,533
/// addresses, a /29 five (a VIP, a few tasks).
pub const OVERLAY_PREFIX_MIN: u8 = 16;
pub const OVERLAY_PREFIX_MAX: u8 = 29;
/// Most overlay networks in the cluster.
pub const NETWORKS_MAX: usize = 256;
/// The first VXLAN network identifier given to an overlay network (as Docker's, above 4096);
/// each network gets the lowest free one from here.
pub const VNI_FIRST: u32 = 4_097;
/// The UDP port VXLAN packets between nodes go to (IANA's, as Docker's overlay driver uses).
pub const VXLAN_PORT: u16 = 4_789;
/// Most aliases one service has on one network.
pub const ALIASES_PER_NETWORK_MAX: usize = 8;

/// An overlay network (`network create --driver overlay`), as the store keeps it. Its subnet's
/// first address is the gateway: every node attached to the network holds it on its bridge
/// for the network (with one MAC address on every node, so whichever node answers ARP, the
/// frame stays local). Task addresses are allocated by the leader, lowest free first, cluster
/// wide; services' VIPs by the control API, highest free first.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: NetworkId,
    pub name: String,
    /// `overlay`: the only driver.
    pub driver: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The VXLAN network identifier of its traffic between nodes.
    pub vni: u32,
    /// Tasks of services not on it may attach (`docker run --network` in Docker; kept and
    /// shown here).
    pub attachable: bool,
    /// No route out: its tasks reach its other tasks and its VIPs, nothing else.
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// The network's subnet mask as a number.
    pub fn mask(&self) -> u32 {
        prefix_mask(self.prefix)
    }

    /// Whether `addr` is inside the subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.subnet)
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) | !self.mask())
    }

    /// Addresses tasks and VIPs may hold: all but the network address, the gateway and the
    /// broadcast address.
    pub fn capacity(&self) -> u32 {
        (!self.mask()).saturating_sub(2)
    }
}

/// The mask of a prefix length, as a number.
pub fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// How a service's name resolves on its networks (`--endpoint-mode`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub enum EndpointMode {
    /// The name answers one virtual address per network; connections to it are balanced over
    /// the tasks in rotation.
    #[default]
    Vip,
    /// The name answers the addresses of the tasks in rotation (DNS round robin), no VIP.
    Dnsrr,
}

impl EndpointMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }
}

/// A service's attachment to an overlay network (`--network name=x,alias=y`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct NetworkRef {
    pub network: NetworkId,
    /// More names the service answers to on this network.
    pub aliases: Vec<String>,
}

/// A service's virtual address on one network (Docker's `Endpoint.VirtualIPs`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct ServiceVip {
    pub network: NetworkId,
    pub addr: Ipv4Addr,
}

/// A task's address on one network, as the leader allocated it.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The network's name (`ingress`, or an overlay network's).
    pub network: String,
    pub addr: Ipv4Addr,
    /// Ingress: the prefix length of the node's slice the address is in (its local bridge's
    /// subnet). Overlay: the network's prefix length.
    pub prefix: u8,
    /// Ingress: the first address of the slice, the node's end of the local bridge. Overlay:
    /// the network's gateway (held by every node's bridge for it).
    pub gateway: Ipv4Addr,
}

impl NetworkAttachment {
    /// The slice's network address, e.g. `10.255.3.0` for `10.255.3.7/24`.
    pub fn subnet(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & prefix_mask(self.prefix))
    }
}

#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub enum PortProtocol {
    #[default]
    Tcp,
    Udp,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        }
    }
}

#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub enum PublishMode {
    /// Every node listens and forwards to a task anywhere (the routing mesh).
    #[default]
    Ingress,
    /// Only nodes running a task listen, and forward to their own task.
    Host,
}

impl PublishMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        }
    }
}

/// A published port (`--publish 8080:80`, or the long form
/// `published=8080,target=80,protocol=udp,mode=host,proxy-protocol=v2,affinity=client-ip`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct PortConfig {
    pub protocol: PortProtocol,
    /// The port the task listens on.
    pub target: u16,
    /// The port every node (ingress) or the task's node (host) listens on. Never 0 in the
    /// store: the control API picks one from [`PUBLISHED_PORT_AUTO_MIN`]..=
    /// [`PUBLISHED_PORT_AUTO_MAX`] when the user named none.
    pub published: u16,
    pub mode: PublishMode,
    /// Send a PROXY protocol v2 header to the task first, with the client's real address.
    pub proxy_protocol: bool,
    /// Client-address affinity: the same client address goes to the same task while it is in
    /// rotation (consistent hashing, so a scale change moves few clients).
    pub affinity: bool,
}

impl PortConfig {
    /// A plain ingress TCP port, `published:target`.
    pub fn tcp(published: u16, target: u16) -> PortConfig {
        PortConfig {
            protocol: PortProtocol::Tcp,
            target,
            published,
            mode: PublishMode::Ingress,
            proxy_protocol: false,
            affinity: false,
        }
    }

    /// Docker's `PORTS` column: `*:8080->80/tcp`.
    pub fn display(&self) -> String {
        format!(
            "*:{}->{}/{}",
            self.published,
            self.target,
            self.protocol.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_knows_its_slice() {
        let a = NetworkAttachment {
            network: INGRESS_NETWORK.into(),
            addr: Ipv4Addr::new(10, 255, 3, 7),
            prefix: NODE_SLICE_PREFIX,
            gateway: Ipv4Addr::new(10, 255, 3, 1),
        };
        assert_eq!(a.subnet(), Ipv4Addr::new(10, 255, 3, 0));
        assert_eq!(PortConfig::tcp(8080, 80).display(), "*:8080->80/tcp");
    }
}
