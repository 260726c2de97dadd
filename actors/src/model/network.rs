//! Networks and published ports: the `ingress` network every task is attached to, the address
//! a task holds on it, and the ports a service publishes through the routing mesh.
//!
//! The ingress network's subnet is cut into one slice per node ([`NODE_SLICE_PREFIX`]); the
//! leader gives each node a slice the first time it places a task there and each task an
//! address from its node's slice, so addresses never collide across the cluster and a node's
//! tasks share one local bridge whose gateway is the slice's first address.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

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

/// A task's address on one network, as the leader allocated it.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The network's name (`ingress`).
    pub network: String,
    pub addr: Ipv4Addr,
    /// The prefix length of the node's slice the address is in (its local bridge's subnet).
    pub prefix: u8,
    /// The first address of the slice: the node's end of the local bridge.
    pub gateway: Ipv4Addr,
}

impl NetworkAttachment {
    /// The slice's network address, e.g. `10.255.3.0` for `10.255.3.7/24`.
    pub fn subnet(&self) -> Ipv4Addr {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        Ipv4Addr::from(u32::from(self.addr) & mask)
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
