//! The routing mesh's table, computed after each pass from the tasks as its writes left them.
//!
//! A service is listed when it publishes ports or is on an overlay network (its current
//! spec's networks, each with its VIP from `Service::vips` in vip mode and its aliases); its
//! backends are its tasks in rotation: observed RUNNING with desired state Running, healthy
//! when the spec has a health check, on a node the leader does not see Down, with the node's
//! address from its node object, the task's ingress address and its address on each overlay
//! network it is attached to. Every overlay network of the store is listed (by ID); services
//! and backends point into that list by index. The nodes listed are those holding live (not
//! ended) tasks attached to an overlay network: every node's VXLAN devices flood to them. All
//! lists are in ID order, so that equal content gives an equal table, and the version is a
//! digest of that content (never 0, which is "no table" on the wire).
//!
//! Bounds (`wire::mesh`): at most `MESH_SERVICES_MAX` services, `MESH_BACKENDS_MAX` backends
//! and `MESH_OVERLAY_ADDRS_MAX` overlay addresses over all of them (a backend whose overlay
//! addresses do not all fit is left out whole), `MESH_NETWORKS_MAX` networks, `MESH_NODES_MAX`
//! nodes and `MESH_ALIASES_MAX` aliases of at most `MESH_ALIAS_BYTES_MAX` bytes; past any of
//! them the table is cut and the leader warns. At those bounds the table fits its share of a
//! session answer's frame.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::model::{EndpointMode, Health, Network, NodeId, Service, Task, TaskState};
use crate::wire::{
    MESH_ALIAS_BYTES_MAX, MESH_ALIASES_MAX, MESH_BACKENDS_MAX, MESH_NETWORKS_MAX, MESH_NODES_MAX,
    MESH_OVERLAY_ADDRS_MAX, MESH_SERVICES_MAX, MeshBackend, MeshNetwork, MeshNode, MeshService,
    MeshServiceNet, MeshTable,
};

use super::super::plan::ingress;

/// What was left out of a table to keep it within its bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshCut {
    pub services: usize,
    pub backends: usize,
    pub networks: usize,
    pub nodes: usize,
    pub aliases: usize,
}

/// Whether `t` is in rotation, given the spec of its service.
pub fn in_rotation(t: &Task, down: &BTreeSet<NodeId>) -> bool {
    let healthy = t.spec.health.is_none() || t.status.health == Some(Health::Healthy);
    t.status.state == TaskState::Running
        && t.desired_state == TaskState::Running
        && healthy
        && t.node_id.is_some_and(|n| !down.contains(&n))
}

/// The table of `services` and `networks` over `tasks`; `addrs` are the nodes' addresses from
/// the store and `down` the nodes the leader sees Down. A task whose node is not in the store
/// is left out.
pub fn mesh_table<'t>(
    services: &[Service],
    networks: &[Network],
    tasks: impl IntoIterator<Item = &'t Task>,
    addrs: &BTreeMap<NodeId, SocketAddr>,
    down: &BTreeSet<NodeId>,
) -> (MeshTable, MeshCut) {
    let mut cut = MeshCut::default();
    let mut nets: Vec<&Network> = networks.iter().collect();
    nets.sort_by_key(|n| n.id);
    if nets.len() > MESH_NETWORKS_MAX {
        cut.networks = nets.len() - MESH_NETWORKS_MAX;
        nets.truncate(MESH_NETWORKS_MAX);
    }
    let index_of_id: BTreeMap<_, u16> = (nets.iter().enumerate())
        .map(|(i, n)| (n.id, i as u16))
        .collect();
    let index_of_name: BTreeMap<&str, (u16, &Network)> = (nets.iter().enumerate())
        .map(|(i, n)| (n.name.as_str(), (i as u16, *n)))
        .collect();
    // A task's overlay attachments, as (index, address): those naming a listed network whose
    // subnet holds the address.
    let overlay_of = |t: &Task| -> Vec<(u16, std::net::Ipv4Addr)> {
        (t.networks.iter())
            .filter_map(|a| {
                let (i, n) = index_of_name.get(a.network.as_str())?;
                n.contains(a.addr).then_some((*i, a.addr))
            })
            .collect()
    };

    let mut listed: Vec<&Service> = services
        .iter()
        .filter(|s| !s.spec.ports.is_empty() || !s.spec.task.networks.is_empty())
        .collect();
    listed.sort_by_key(|s| s.id);
    if listed.len() > MESH_SERVICES_MAX {
        cut.services = listed.len() - MESH_SERVICES_MAX;
        listed.truncate(MESH_SERVICES_MAX);
    }
    let mut by_service: BTreeMap<_, Vec<&Task>> =
        listed.iter().map(|s| (s.id, Vec::new())).collect();
    let mut overlay_nodes = BTreeSet::new();
    for t in tasks {
        if let Some(node) = t.node_id
            && !t.status.state.is_terminal()
            && addrs.contains_key(&node)
            && !overlay_of(t).is_empty()
        {
            overlay_nodes.insert(node);
        }
        if let Some(list) = by_service.get_mut(&t.service_id)
            && in_rotation(t, down)
        {
            list.push(t);
        }
    }
    let mut room = MESH_BACKENDS_MAX;
    let mut overlay_room = MESH_OVERLAY_ADDRS_MAX;
    let mut alias_room = MESH_ALIASES_MAX;
    let mut out = Vec::with_capacity(listed.len());
    for s in listed {
        let mut tasks = by_service.remove(&s.id).unwrap_or_default();
        tasks.sort_by_key(|t| t.id);
        let mut backends = Vec::with_capacity(tasks.len().min(room));
        for t in tasks {
            let Some(node) = t.node_id else { continue };
            let Some(node_addr) = addrs.get(&node) else {
                continue;
            };
            let overlay = overlay_of(t);
            if room == 0 || overlay.len() > overlay_room {
                cut.backends += 1;
                continue;
            }
            room -= 1;
            overlay_room -= overlay.len();
            backends.push(MeshBackend {
                task: t.id,
                node,
                node_addr: *node_addr,
                addr: ingress(t).map(|a| a.addr),
                slot: t.slot,
                overlay,
            });
        }
        let mut networks = Vec::with_capacity(s.spec.task.networks.len());
        for r in &s.spec.task.networks {
            let Some(&network) = index_of_id.get(&r.network) else {
                continue;
            };
            let vip = match s.spec.endpoint_mode {
                EndpointMode::Vip => (s.vips.iter())
                    .find(|v| v.network == r.network)
                    .map(|v| v.addr),
                EndpointMode::Dnsrr => None,
            };
            let mut aliases = Vec::new();
            for a in &r.aliases {
                if a.len() > MESH_ALIAS_BYTES_MAX || alias_room == 0 {
                    cut.aliases += 1;
                    continue;
                }
                alias_room -= 1;
                aliases.push(a.clone());
            }
            networks.push(MeshServiceNet {
                network,
                vip,
                aliases,
            });
        }
        out.push(MeshService {
            id: s.id,
            name: s.spec.name.clone(),
            ports: s.spec.ports.clone(),
            endpoint_mode: s.spec.endpoint_mode,
            networks,
            backends,
        });
    }
    let mut nodes: Vec<MeshNode> = (overlay_nodes.into_iter())
        .filter_map(|id| {
            Some(MeshNode {
                id,
                addr: *addrs.get(&id)?,
            })
        })
        .collect();
    if nodes.len() > MESH_NODES_MAX {
        cut.nodes = nodes.len() - MESH_NODES_MAX;
        nodes.truncate(MESH_NODES_MAX);
    }
    let networks = nets
        .iter()
        .map(|n| MeshNetwork {
            id: n.id,
            name: n.name.clone(),
            subnet: n.subnet,
            prefix: n.prefix,
            gateway: n.gateway,
            vni: n.vni,
            internal: n.internal,
        })
        .collect();
    let mut table = MeshTable {
        version: 0,
        services: out,
        networks,
        nodes,
    };
    table.version = digest(&table);
    (table, cut)
}

/// A stable 64-bit digest of the table's content (FNV-1a over its wire encoding), never 0.
pub fn digest(table: &MeshTable) -> u64 {
    let content = (&table.services, &table.networks, &table.nodes);
    let services =
        bincode::serde::encode_to_vec(content, bincode::config::standard()).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in services {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}
