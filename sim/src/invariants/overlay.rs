//! Invariant (s): overlay network addresses. For every task a pass attaches to overlay
//! networks, judged on the tasks as the pass leaves them (the store it read, with its writes),
//! reported if the write commits, like (q):
//!
//! - (s1) it is attached to exactly the networks of its spec, each once, each attachment well
//!   formed (the network's name, prefix and gateway; an address inside the subnet that is not
//!   the network address, the gateway or the broadcast address); it has an ingress address
//!   unless every network of its spec is internal and its service publishes no port;
//! - (s2) no other live task (not ended, or orphaned: it may still run on its cut-off node)
//!   holds the address on that network, and no service's VIP is that address;
//! - (s3) addresses are released when their task ends: the address is the lowest free one,
//!   so every usable address below it is held by a live task or a VIP.
//!
//! The table's side (every backend's overlay addresses are its task's) is judged by (r).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use swarm_actors::leader::plan::{holds_no_address, ingress};
use swarm_actors::model::{Network, NetworkId, Service, Task, TaskId};
use swarm_actors::store::{Kind, ObjectBody, Op, StoreState};

use crate::clock::Millis;

/// The overlay attachments of `t`: every one but ingress.
fn overlays(t: &Task) -> impl Iterator<Item = &swarm_actors::model::NetworkAttachment> {
    t.networks
        .iter()
        .filter(|a| a.network != swarm_actors::model::INGRESS_NETWORK)
}

/// Each task the pass's ops attach to overlay networks for the first time, with why it is
/// wrong (one sentence per fault found).
pub fn judge(state: &StoreState, ops: &[Op]) -> Vec<(Task, String)> {
    let stored = |id: &TaskId| match state.get(Kind::Task, &id.to_string()).map(|o| &o.body) {
        Some(ObjectBody::Task(t)) => Some(t),
        _ => None,
    };
    let attached: Vec<&Task> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Put {
                body: ObjectBody::Task(t),
                ..
            } if !t.spec.networks.is_empty()
                && t.node_id.is_some()
                && stored(&t.id).is_none_or(|o| o.networks.is_empty()) =>
            {
                Some(t)
            }
            _ => None,
        })
        .collect();
    if attached.is_empty() {
        return Vec::new();
    }
    let networks: BTreeMap<NetworkId, &Network> = state
        .list(Kind::Network)
        .filter_map(|o| match &o.body {
            ObjectBody::Network(n) => Some((n.id, n)),
            _ => None,
        })
        .collect();
    let mut services: BTreeMap<_, &Service> = state
        .list(Kind::Service)
        .filter_map(|o| match &o.body {
            ObjectBody::Service(s) => Some((s.id, s)),
            _ => None,
        })
        .collect();
    // The tasks (and services) as the pass leaves them.
    let mut after: BTreeMap<TaskId, &Task> = state
        .list(Kind::Task)
        .filter_map(|o| match &o.body {
            ObjectBody::Task(t) => Some((t.id, t)),
            _ => None,
        })
        .collect();
    for op in ops {
        match op {
            Op::Put {
                body: ObjectBody::Task(t),
                ..
            } => {
                after.insert(t.id, t);
            }
            Op::Put {
                body: ObjectBody::Service(s),
                ..
            } => {
                services.insert(s.id, s);
            }
            Op::Delete {
                kind: Kind::Task,
                id,
                ..
            } => {
                if let Ok(id) = id.parse() {
                    after.remove(&id);
                }
            }
            _ => {}
        }
    }
    // Network name → (address → the live tasks holding it), and every VIP.
    let mut held: BTreeMap<&str, BTreeMap<Ipv4Addr, Vec<TaskId>>> = BTreeMap::new();
    for t in after.values().filter(|t| !holds_no_address(t)) {
        for a in overlays(t) {
            let e = held.entry(a.network.as_str()).or_default();
            e.entry(a.addr).or_default().push(t.id);
        }
    }
    let vips: BTreeSet<(NetworkId, Ipv4Addr)> = services
        .values()
        .flat_map(|s| s.vips.iter().map(|v| (v.network, v.addr)))
        .collect();

    let mut out = Vec::new();
    for t in attached {
        let mut why = Vec::new();
        let ports = services
            .get(&t.service_id)
            .map_or(0, |s| s.spec.ports.len());
        let all_internal = t
            .spec
            .networks
            .iter()
            .all(|r| networks.get(&r.network).is_some_and(|n| n.internal));
        let want_ingress = ports > 0 || !all_internal;
        // A global task stays on its node without an ingress address when its slice is full.
        let unaddressed = t.slot == 0 && want_ingress;
        if ingress(t).is_some() != want_ingress && !unaddressed {
            why.push(format!(
                "it has {}an ingress address (publishes {ports} ports, internal networks only: \
                 {all_internal})",
                if want_ingress { "no " } else { "" }
            ));
        }
        let got: Vec<_> = overlays(t).collect();
        if got.len() != t.spec.networks.len() {
            why.push(format!(
                "it has {} overlay attachments for {} networks",
                got.len(),
                t.spec.networks.len()
            ));
        }
        for (r, a) in t.spec.networks.iter().zip(&got) {
            let Some(n) = networks.get(&r.network) else {
                why.push(format!("network {} is not in the store", r.network));
                continue;
            };
            let usable = |addr: Ipv4Addr| {
                n.contains(addr) && addr != n.subnet && addr != n.gateway && addr != n.broadcast()
            };
            if a.network != n.name || a.prefix != n.prefix || a.gateway != n.gateway {
                why.push(format!("its attachment {a:?} is malformed for {}", n.name));
            }
            if !usable(a.addr) {
                why.push(format!("{} is not a task address of {}", a.addr, n.name));
            }
            let holders = held.get(n.name.as_str()).and_then(|h| h.get(&a.addr));
            for o in holders.into_iter().flatten().filter(|o| **o != t.id) {
                why.push(format!(
                    "task {} holds the same address {} on {}",
                    o.0 as u32, a.addr, n.name
                ));
            }
            if vips.contains(&(n.id, a.addr)) {
                why.push(format!("{} is a VIP on {}", a.addr, n.name));
            }
            // (s3): every usable address below it is held.
            let free_below = (u32::from(n.subnet)..u32::from(a.addr))
                .map(Ipv4Addr::from)
                .find(|b| {
                    usable(*b)
                        && !vips.contains(&(n.id, *b))
                        && held.get(n.name.as_str()).is_none_or(|h| !h.contains_key(b))
                });
            if let Some(b) = free_below {
                why.push(format!(
                    "it is not the lowest free address of {}: {b} is free (an ended task's \
                     address was not released)",
                    n.name
                ));
            }
        }
        if !why.is_empty() {
            out.push((t.clone(), why.join("; ")));
        }
    }
    out
}

pub fn violation(at: Millis, task: &Task, why: String) -> String {
    let node = task.node_id.map_or(u128::MAX, |n| n.0);
    let addrs: Vec<String> = overlays(task)
        .map(|a| format!("{} {}", a.network, a.addr))
        .collect();
    format!(
        "(s) at {at} ms task {} (slot {}) on node {} was attached [{}], but {why}",
        task.id.0 as u32,
        task.slot,
        node.saturating_sub(1),
        addrs.join(", ")
    )
}
