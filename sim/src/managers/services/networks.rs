//! The operator's overlay networks: three made at registration (one internal, one a /28 that
//! fills up), the networks each service is on (from its ID and spec version, with no draw from
//! the seed, as `file_refs` does, so the rest of the workload is what it was before networks),
//! its endpoint mode, and its VIPs as the control API gives them in the write that names the
//! networks: one per network of the spec and of the previous spec (none in dnsrr mode),
//! highest free address first, never a live task's address or another VIP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use swarm_actors::leader::plan::holds_no_address;
use swarm_actors::model::{
    EndpointMode, Network, NetworkId, NetworkRef, Service, ServiceId, ServiceVip, VNI_FIRST,
};
use swarm_actors::store::{Expect, Kind, ObjectBody, Op, StoreState};

/// ID, name, subnet, prefix, internal.
pub const NETWORKS: &[(u128, &str, [u8; 4], u8, bool)] = &[
    (1, "front", [10, 0, 0, 0], 24, false),
    (2, "back", [10, 0, 1, 0], 24, true),
    (3, "edge", [10, 0, 2, 0], 25, false),
];

/// The networks of [`NETWORKS`] not in the store yet.
pub fn registrations(state: &StoreState) -> Vec<Op> {
    NETWORKS
        .iter()
        .enumerate()
        .filter(|(_, n)| state.get(Kind::Network, n.1).is_none())
        .map(|(i, &(id, name, subnet, prefix, internal))| {
            let subnet = Ipv4Addr::from(subnet);
            Op::Put {
                kind: Kind::Network,
                id: name.to_string(),
                expect: Expect::Absent,
                body: ObjectBody::Network(Network {
                    id: NetworkId(id),
                    name: name.to_string(),
                    driver: "overlay".into(),
                    subnet,
                    prefix,
                    gateway: Ipv4Addr::from(u32::from(subnet) + 1),
                    vni: VNI_FIRST + i as u32,
                    attachable: false,
                    internal,
                    labels: BTreeMap::new(),
                }),
            }
        })
        .collect()
}

/// The networks a service's tasks are on at spec `version`: none ever for a quarter of the
/// services (so that whether a service is listed in the mesh table does not change with an
/// update), one or two of [`NETWORKS`] for the others, changing with the version; the first
/// one carries an alias for half of them.
pub fn networks_of(id: ServiceId, version: u64) -> Vec<NetworkRef> {
    if id.0 % 4 == 1 {
        return Vec::new();
    }
    const SETS: &[&[u128]] = &[&[1], &[2], &[1, 2], &[3], &[1, 3], &[2, 3]];
    let h = (id.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version.wrapping_mul(0xff51);
    let set = SETS[((h >> 7) % SETS.len() as u64) as usize];
    set.iter()
        .enumerate()
        .map(|(i, n)| NetworkRef {
            network: NetworkId(*n),
            aliases: if i == 0 && h & 8 == 0 {
                vec![format!("a{:x}", id.0 as u16)]
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// dnsrr for a fifth of the services that publish nothing (the control API refuses ports
/// with dnsrr, as Docker does for the routing mesh), vip for the others.
pub fn endpoint_mode(id: ServiceId, publishes: bool) -> EndpointMode {
    if !publishes && id.0.is_multiple_of(5) {
        EndpointMode::Dnsrr
    } else {
        EndpointMode::Vip
    }
}

/// The VIPs of `service` after a write that leaves it on `spec` networks with `previous` the
/// networks of its previous spec: the ones it has kept, new ones highest free first. A full
/// network gives none (the control API refuses the write; the simulator writes it anyway
/// and the tasks' side must still hold).
pub fn vips(state: &StoreState, service: &Service, previous: &[NetworkRef]) -> Vec<ServiceVip> {
    if service.spec.endpoint_mode == EndpointMode::Dnsrr {
        return Vec::new();
    }
    let networks: BTreeMap<NetworkId, Network> = state
        .list(Kind::Network)
        .filter_map(|o| match &o.body {
            ObjectBody::Network(n) => Some((n.id, n.clone())),
            _ => None,
        })
        .collect();
    let mut taken: BTreeSet<(NetworkId, Ipv4Addr)> = BTreeSet::new();
    for o in state.list(Kind::Service) {
        if let ObjectBody::Service(s) = &o.body
            && s.id != service.id
        {
            taken.extend(s.vips.iter().map(|v| (v.network, v.addr)));
        }
    }
    for o in state.list(Kind::Task) {
        let ObjectBody::Task(t) = &o.body else {
            continue;
        };
        if holds_no_address(t) {
            continue;
        }
        for a in &t.networks {
            if let Some(n) = networks.values().find(|n| n.name == a.network) {
                taken.insert((n.id, a.addr));
            }
        }
    }
    let wanted: BTreeSet<NetworkId> = (service.spec.task.networks.iter())
        .chain(previous)
        .map(|r| r.network)
        .collect();
    let mut out = Vec::new();
    for id in wanted {
        if let Some(v) = service.vips.iter().find(|v| v.network == id) {
            out.push(*v);
            continue;
        }
        let Some(n) = networks.get(&id) else { continue };
        let first = u32::from(n.subnet) + 1;
        let free = (first..u32::from(n.broadcast()))
            .rev()
            .map(Ipv4Addr::from)
            .find(|a| *a != n.gateway && !taken.contains(&(id, *a)));
        if let Some(addr) = free {
            out.push(ServiceVip { network: id, addr });
        }
    }
    out
}
