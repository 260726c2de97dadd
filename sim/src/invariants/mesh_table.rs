//! Invariant (r): the routing mesh's table a leader sends lists exactly the tasks in rotation.
//! Judged at every session answer that carries a table, against the leader's own store (the
//! store its last pass wrote; answers are given only between passes) and the nodes that pass
//! saw Down:
//!
//! - (r1) every backend is a task of the store, observed RUNNING, desired Running, healthy
//!   when its spec has a health check, on the node the backend names, that node not Down, with
//!   the node's address from its node object and the task's own ingress address;
//! - (r2) every such task of a service in the store that publishes ports or is on an overlay
//!   network is listed (the tables of the runs stay far below the table's bounds), under its
//!   service;
//! - (r3) the table lists the store's overlay networks, every backend's overlay addresses are
//!   exactly its task's (on networks of the store, inside their subnets), and the nodes listed
//!   are exactly those holding live (not ended) tasks attached to an overlay network.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::leader::plan::ingress;
use swarm_actors::model::{Health, INGRESS_NETWORK, Network, NodeId, Task, TaskId, TaskState};
use swarm_actors::store::{Kind, ObjectBody, StoreState};
use swarm_actors::wire::MeshTable;

use super::REPORT_MAX;

/// Whether `t` is in rotation, by the rule of the issue (not the leader's code).
fn in_rotation(t: &Task, down: &BTreeSet<NodeId>) -> bool {
    t.status.state == TaskState::Running
        && t.desired_state == TaskState::Running
        && (t.spec.health.is_none() || t.status.health == Some(Health::Healthy))
        && t.node_id.is_some_and(|n| !down.contains(&n))
}

/// What is wrong with `table`, as sentences.
pub fn judge(state: &StoreState, down: &BTreeSet<NodeId>, table: &MeshTable) -> Vec<String> {
    let mut out = Vec::new();
    if table.version == 0 {
        out.push("its version is 0".to_string());
    }
    let tasks: BTreeMap<TaskId, &Task> = state
        .list(Kind::Task)
        .filter_map(|o| match &o.body {
            ObjectBody::Task(t) => Some((t.id, t)),
            _ => None,
        })
        .collect();
    let node_addrs: BTreeMap<NodeId, _> = state
        .list(Kind::Node)
        .filter_map(|o| match &o.body {
            ObjectBody::Node(n) => Some((n.id, n.addr)),
            _ => None,
        })
        .collect();
    let networks: Vec<&Network> = state
        .list(Kind::Network)
        .filter_map(|o| match &o.body {
            ObjectBody::Network(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut ids: Vec<_> = networks.iter().map(|n| n.id).collect();
    ids.sort();
    let listed: Vec<_> = table.networks.iter().map(|n| n.id).collect();
    if listed != ids {
        out.push(format!(
            "(r3) it lists networks {listed:?}, the store has {ids:?}"
        ));
    }
    // A task's overlay addresses as the table should list them: (index, address).
    let overlay_of = |t: &Task| -> Vec<(u16, std::net::Ipv4Addr)> {
        (t.networks.iter())
            .filter(|a| a.network != INGRESS_NETWORK)
            .filter_map(|a| {
                let n = networks.iter().find(|n| n.name == a.network)?;
                let i = table.networks.iter().position(|m| m.id == n.id)?;
                n.contains(a.addr).then_some((i as u16, a.addr))
            })
            .collect()
    };
    let flood: BTreeSet<NodeId> = tasks
        .values()
        .filter(|t| !t.status.state.is_terminal() && !overlay_of(t).is_empty())
        .filter_map(|t| t.node_id.filter(|n| node_addrs.contains_key(n)))
        .collect();
    let nodes: BTreeSet<NodeId> = table.nodes.iter().map(|n| n.id).collect();
    if nodes != flood {
        out.push(format!(
            "(r3) it lists nodes {:?} to flood to, the live overlay tasks are on {:?}",
            nodes
                .iter()
                .map(|n| n.0.saturating_sub(1))
                .collect::<Vec<_>>(),
            flood
                .iter()
                .map(|n| n.0.saturating_sub(1))
                .collect::<Vec<_>>()
        ));
    }
    for s in &table.services {
        for b in &s.backends {
            let who = format!("backend {} of service {}", b.task.0 as u32, s.name);
            let Some(t) = tasks.get(&b.task) else {
                out.push(format!("(r1) {who} is not in the store"));
                continue;
            };
            if !in_rotation(t, down) {
                out.push(format!(
                    "(r1) {who} is not in rotation: {} (desired {}, health {:?}) on node {}{}",
                    t.status.state,
                    t.desired_state,
                    t.status.health,
                    t.node_id.map_or(u128::MAX, |n| n.0).saturating_sub(1),
                    if t.node_id.is_some_and(|n| down.contains(&n)) {
                        ", Down"
                    } else {
                        ""
                    }
                ));
            }
            if t.node_id != Some(b.node) || node_addrs.get(&b.node) != Some(&b.node_addr) {
                out.push(format!("(r1) {who} names the wrong node or node address"));
            }
            if ingress(t).map(|a| a.addr) != b.addr {
                out.push(format!("(r1) {who} has another address than its task"));
            }
            let want = overlay_of(t);
            if want != b.overlay {
                out.push(format!(
                    "(r3) {who} lists overlay addresses {:?}, its task holds {want:?}",
                    b.overlay
                ));
            }
        }
    }
    // A service the operator wrote since the pass may be missing or differ; its tasks cannot:
    // only passes write tasks, and answers are given between passes.
    let services: BTreeMap<_, _> = table.services.iter().map(|s| (s.id, s)).collect();
    let publishing: BTreeMap<_, _> = state
        .list(Kind::Service)
        .filter_map(|o| match &o.body {
            ObjectBody::Service(svc)
                if !svc.spec.ports.is_empty() || !svc.spec.task.networks.is_empty() =>
            {
                Some((svc.id, svc))
            }
            _ => None,
        })
        .collect();
    for t in tasks.values() {
        let Some(svc) = publishing.get(&t.service_id) else {
            continue;
        };
        let under = services
            .get(&svc.id)
            .is_some_and(|s| s.backends.iter().any(|b| b.task == t.id));
        if in_rotation(t, down) && !under {
            out.push(format!(
                "(r2) task {} of service {} is in rotation but not listed",
                t.id.0 as u32, svc.spec.name
            ));
        }
    }
    out.truncate(REPORT_MAX);
    out
}
