//! The routing mesh's table, computed after each pass from the tasks as its writes left them.
//!
//! A service is listed when it publishes ports; its backends are its tasks in rotation:
//! observed RUNNING with desired state Running, healthy when the spec has a health check, on a
//! node the leader does not see Down, with the node's address from its node object and the
//! task's ingress address. Services in ID order, backends in task ID order, so that equal
//! content gives an equal table, and the version is a digest of that content (never 0, which
//! is "no table" on the wire).
//!
//! Bounds: at most `MESH_SERVICES_MAX` services and `MESH_BACKENDS_MAX` backends over all of
//! them; past either the table is cut (services past the bound are left out, then backends past
//! the bound) and the leader warns. At those bounds the table fits its share of a session
//! answer's frame (`wire::mesh`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::model::{Health, NodeId, Service, Task, TaskState};
use crate::wire::{MESH_BACKENDS_MAX, MESH_SERVICES_MAX, MeshBackend, MeshService, MeshTable};

use super::super::plan::ingress;

/// What was left out of a table to keep it within its bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshCut {
    pub services: usize,
    pub backends: usize,
}

/// Whether `t` is in rotation, given the spec of its service.
pub fn in_rotation(t: &Task, down: &BTreeSet<NodeId>) -> bool {
    let healthy = t.spec.health.is_none() || t.status.health == Some(Health::Healthy);
    t.status.state == TaskState::Running
        && t.desired_state == TaskState::Running
        && healthy
        && t.node_id.is_some_and(|n| !down.contains(&n))
}

/// The table of `services` over `tasks`; `addrs` are the nodes' addresses from the store and
/// `down` the nodes the leader sees Down. A task whose node is not in the store is left out.
pub fn mesh_table<'t>(
    services: &[Service],
    tasks: impl IntoIterator<Item = &'t Task>,
    addrs: &BTreeMap<NodeId, SocketAddr>,
    down: &BTreeSet<NodeId>,
) -> (MeshTable, MeshCut) {
    let mut cut = MeshCut::default();
    let mut published: Vec<&Service> = services
        .iter()
        .filter(|s| !s.spec.ports.is_empty())
        .collect();
    published.sort_by_key(|s| s.id);
    if published.len() > MESH_SERVICES_MAX {
        cut.services = published.len() - MESH_SERVICES_MAX;
        published.truncate(MESH_SERVICES_MAX);
    }
    let mut by_service: BTreeMap<_, Vec<&Task>> =
        published.iter().map(|s| (s.id, Vec::new())).collect();
    for t in tasks {
        if let Some(list) = by_service.get_mut(&t.service_id)
            && in_rotation(t, down)
        {
            list.push(t);
        }
    }
    let mut room = MESH_BACKENDS_MAX;
    let mut out = Vec::with_capacity(published.len());
    for s in published {
        let mut tasks = by_service.remove(&s.id).unwrap_or_default();
        tasks.sort_by_key(|t| t.id);
        let mut backends = Vec::with_capacity(tasks.len().min(room));
        for t in tasks {
            let Some(node) = t.node_id else { continue };
            let Some(node_addr) = addrs.get(&node) else {
                continue;
            };
            if room == 0 {
                cut.backends += 1;
                continue;
            }
            room -= 1;
            let addr = ingress(t).map(|a| a.addr);
            backends.push(MeshBackend {
                task: t.id,
                node,
                node_addr: *node_addr,
                addr,
                slot: t.slot,
                overlay: Vec::new(),
            });
        }
        out.push(MeshService {
            id: s.id,
            name: s.spec.name.clone(),
            ports: s.spec.ports.clone(),
            endpoint_mode: s.spec.endpoint_mode,
            networks: Vec::new(),
            backends,
        });
    }
    let mut table = MeshTable {
        version: 0,
        services: out,
        networks: Vec::new(),
        nodes: Vec::new(),
    };
    table.version = digest(&table);
    (table, cut)
}

/// A stable 64-bit digest of the table's content (FNV-1a over its wire encoding), never 0.
pub fn digest(table: &MeshTable) -> u64 {
    let services = bincode::serde::encode_to_vec(&table.services, bincode::config::standard())
        .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in services {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}
