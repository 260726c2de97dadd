//! The node's side of `network create | ls | inspect | rm`. `ingress` is built in (not
//! stored): every task has an address on it, from its node's slice. Overlay networks are
//! [`Network`] objects stored under their NAME (so that `Expect::Absent` makes names unique in
//! one atomic write), made by [`alloc::new_network`]; the leader gives their tasks addresses
//! and services hold VIPs on them ([`super::vips`]).
//!
//! `network rm` is refused while a service's current spec names the network, or a live task
//! holds an address on it (Docker's "in use by task"), so that no node tears down a network
//! its tasks still use. Only the current spec counts (as for secrets), so that
//! `service update --network-rm` then `network rm` works; a rollback to a spec naming a
//! removed network is refused by `service rollback`, and the VIP a service held on it is
//! dropped at the service's next write. Creates on one node are serialized with the service writes
//! that allocate VIPs ([`ADDRESSES`]); two managers creating at the same instant may pick
//! the same subnet (each reads, then writes its own object), a race the store cannot refuse.

pub mod alloc;

use std::collections::BTreeMap;

use swarm_actors::model::{INGRESS_NETWORK, INGRESS_PREFIX, INGRESS_SUBNET, Network, NetworkId};
use swarm_actors::node::admission;
use swarm_actors::replica::StoreHandle;
use swarm_actors::store::{Expect, Kind, ObjectBody, Op, StoreCommand};
use tokio::sync::Mutex;

use super::cas::{self, Failed};
use super::context::ControlContext;
use super::proto::{NetworkCreate, NetworkDoc, NetworkTask};
use super::reads::{FoundNetwork, manager_store, networks, resolve_named, services, tasks};

/// Most tasks one `network inspect` lists (the answer fits a control frame); the rest are
/// counted in `tasks_left_out`.
pub const NETWORK_TASKS_MAX: usize = 2_000;

/// Serializes this node's network creates and the service writes that allocate VIPs, so that
/// each allocation reads a store no other one of this node is about to change.
pub static ADDRESSES: Mutex<()> = Mutex::const_new(());

/// A network's ID: 25 hex digits, Docker's length for swarm networks, the same on every
/// node and in every run (two FNV-1a digests of the name).
pub fn network_id(name: &str) -> String {
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let id = format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    );
    id[..25].to_string()
}

/// The ingress network, without its tasks.
pub fn ingress() -> NetworkDoc {
    NetworkDoc {
        id: network_id(INGRESS_NETWORK),
        name: INGRESS_NETWORK.into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        ingress: true,
        subnet: format!("{INGRESS_SUBNET}/{INGRESS_PREFIX}"),
        tasks: Vec::new(),
        tasks_left_out: 0,
        gateway: String::new(),
        internal: false,
        attachable: false,
        labels: BTreeMap::new(),
        vni: 0,
        vips: Vec::new(),
        version: 0,
        created_ms: 0,
    }
}

/// An overlay network, without its tasks.
pub fn overlay(f: &FoundNetwork) -> NetworkDoc {
    let n = &f.network;
    NetworkDoc {
        id: n.id.to_string(),
        name: n.name.clone(),
        driver: n.driver.clone(),
        scope: "swarm".into(),
        ingress: false,
        subnet: format!("{}/{}", n.subnet, n.prefix),
        tasks: Vec::new(),
        tasks_left_out: 0,
        gateway: n.gateway.to_string(),
        internal: n.internal,
        attachable: n.attachable,
        labels: n.labels.clone(),
        vni: n.vni,
        vips: Vec::new(),
        version: f.obj.version,
        created_ms: f.obj.created_ms,
    }
}

/// Finds an overlay network by name, full ID or unique ID prefix.
pub fn resolve(found: Vec<FoundNetwork>, name: &str) -> Result<FoundNetwork, String> {
    resolve_named("network", found, name, |f| {
        (f.network.name.as_str(), f.network.id.to_string())
    })
}

/// Whether `name` names the ingress network (its name, or a prefix of its ID of at least
/// four digits).
fn is_ingress(name: &str) -> bool {
    name == INGRESS_NETWORK || (name.len() >= 4 && network_id(INGRESS_NETWORK).starts_with(name))
}

/// `network ls`: ingress, then the overlay networks by name.
pub async fn list(ctx: &ControlContext) -> Result<Vec<NetworkDoc>, String> {
    // Only a manager answers, as Docker's swarm networks are listed by managers.
    let store = manager_store(ctx).await?;
    let mut found = networks(&store).await?;
    found.sort_by(|a, b| a.network.name.cmp(&b.network.name));
    let mut out = vec![ingress()];
    out.extend(found.iter().map(overlay));
    Ok(out)
}

pub async fn inspect(ctx: &ControlContext, names: &[String]) -> Result<Vec<NetworkDoc>, String> {
    let store = manager_store(ctx).await?;
    let nets = networks(&store).await?;
    let found = services(&store).await?;
    let all_tasks = tasks(&store).await?;
    let service_names: BTreeMap<_, _> = found
        .iter()
        .map(|f| (f.service.id, f.obj.id.clone()))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let mut doc = if is_ingress(name) {
            ingress()
        } else {
            let f = resolve(nets.clone(), name)?;
            let mut doc = overlay(&f);
            let mut vips: Vec<(String, String)> = found
                .iter()
                .flat_map(|s| {
                    s.service
                        .vips
                        .iter()
                        .filter(|v| v.network == f.network.id)
                        .map(|v| (s.obj.id.clone(), format!("{}/{}", v.addr, f.network.prefix)))
                })
                .collect();
            vips.sort();
            doc.vips = vips;
            doc
        };
        let mut held: Vec<(u32, NetworkTask)> = all_tasks
            .iter()
            .filter(|t| !t.status.state.is_terminal())
            .flat_map(|t| {
                let service = service_names
                    .get(&t.service_id)
                    .cloned()
                    .unwrap_or_default();
                let task = swarm_actors::orchestrator::task_name(&service, t.slot, t.node_id);
                let net = doc.name.clone();
                t.networks
                    .iter()
                    .filter(move |a| a.network == net)
                    .map(move |a| {
                        let row = NetworkTask {
                            name: format!("{task}.{}", t.id),
                            id: t.id.to_string(),
                            ipv4: format!("{}/{}", a.addr, a.prefix),
                        };
                        (u32::from(a.addr), row)
                    })
            })
            .collect();
        held.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        doc.tasks_left_out = held.len().saturating_sub(NETWORK_TASKS_MAX);
        held.truncate(NETWORK_TASKS_MAX);
        doc.tasks = held.into_iter().map(|(_, t)| t).collect();
        out.push(doc);
    }
    Ok(out)
}

/// `network create`: the new network's ID.
pub async fn create(ctx: &ControlContext, req: &NetworkCreate) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    let _one_at_a_time = ADDRESSES.lock().await;
    let existing: Vec<Network> = networks(&store)
        .await?
        .into_iter()
        .map(|f| f.network)
        .collect();
    let id = loop {
        let id = NetworkId(rand::random());
        if !alloc::id_clashes(id, &existing) {
            break id;
        }
    };
    let network = alloc::new_network(id, req, &existing)?;
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Put {
            kind: Kind::Network,
            id: network.name.clone(),
            expect: Expect::Absent,
            body: ObjectBody::Network(network),
        }],
    };
    if let Err(e) = store.propose(cmd).await {
        // A create of the same name on another manager may have won the race.
        let won = networks(&store).await.map(|n| {
            n.iter()
                .any(|f| f.network.name == req.name && f.network.id != id)
        });
        return match won {
            Ok(true) => Err(format!("network with name {} already exists", req.name)),
            _ => Err(e.to_string()),
        };
    }
    Ok(id.to_string())
}

/// `network rm`: the name given, once removed.
pub async fn remove(ctx: &ControlContext, name: &str) -> Result<String, String> {
    if is_ingress(name) {
        return Err(
            "ingress network cannot be removed: published ports are reached through it".into(),
        );
    }
    let store = manager_store(ctx).await?;
    cas::retrying(|| remove_once(&store, name)).await
}

async fn remove_once(store: &StoreHandle, name: &str) -> Result<String, Failed> {
    let found = resolve(networks(store).await?, name)?;
    let net = &found.network;
    let users: std::collections::BTreeSet<String> = services(store)
        .await?
        .into_iter()
        .filter(|f| {
            let refs = &f.service.spec.task.networks;
            refs.iter().any(|r| r.network == net.id)
        })
        .map(|f| f.obj.id)
        .collect();
    if !users.is_empty() {
        return Err(format!(
            "network {} is in use by service(s): {}",
            net.name,
            users.into_iter().collect::<Vec<_>>().join(", ")
        )
        .into());
    }
    if let Some(t) = tasks(store)
        .await?
        .iter()
        .find(|t| !t.status.state.is_terminal() && t.networks.iter().any(|a| a.network == net.name))
    {
        return Err(format!(
            "network {} is in use by task {}: it has not stopped yet, try again shortly",
            net.name, t.id
        )
        .into());
    }
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Delete {
            kind: Kind::Network,
            id: found.obj.id.clone(),
            expect: Expect::Version(found.obj.version),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingress_id_is_stable_and_dockers_length() {
        let id = network_id("ingress");
        assert_eq!(id.len(), 25);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, network_id("ingress"));
        assert_ne!(id, network_id("ingres"));
        assert_eq!(ingress().subnet, "10.255.0.0/16");
    }
}
