//! The node's side of `network ls` and `network inspect`: the one network there is today,
//! `ingress`, with the addresses the leader allocated to tasks, read from the store.
//! User-defined networks (`network create`, `network rm`) come with a later change.

use swarm_actors::model::{INGRESS_NETWORK, INGRESS_PREFIX, INGRESS_SUBNET};

use super::context::ControlContext;
use super::proto::{NetworkDoc, NetworkTask};
use super::reads::{manager_store, services, tasks};

/// Most tasks one `network inspect` lists (the answer fits a control frame); the rest are
/// counted in `tasks_left_out`.
pub const NETWORK_TASKS_MAX: usize = 2_000;

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
    }
}

pub async fn list(ctx: &ControlContext) -> Result<Vec<NetworkDoc>, String> {
    // Only a manager answers, as Docker's swarm networks are listed by managers.
    manager_store(ctx).await?;
    Ok(vec![ingress()])
}

pub async fn inspect(ctx: &ControlContext, names: &[String]) -> Result<Vec<NetworkDoc>, String> {
    let store = manager_store(ctx).await?;
    let mut out = Vec::new();
    for name in names {
        let mut doc = ingress();
        if name != &doc.name && !(name.len() >= 4 && doc.id.starts_with(name.as_str())) {
            return Err(format!("network {name} not found"));
        }
        let found = services(&store).await?;
        let names: std::collections::BTreeMap<_, _> = found
            .iter()
            .map(|f| (f.service.id, f.obj.id.clone()))
            .collect();
        let mut held: Vec<NetworkTask> = tasks(&store)
            .await?
            .iter()
            .filter(|t| !t.status.state.is_terminal())
            .flat_map(|t| {
                let service = names.get(&t.service_id).cloned().unwrap_or_default();
                let name = swarm_actors::orchestrator::task_name(&service, t.slot, t.node_id);
                t.networks
                    .iter()
                    .filter(|a| a.network == INGRESS_NETWORK)
                    .map(move |a| NetworkTask {
                        name: format!("{name}.{}", t.id),
                        id: t.id.to_string(),
                        ipv4: format!("{}/{}", a.addr, a.prefix),
                    })
            })
            .collect();
        held.sort_by(|a, b| a.ipv4.cmp(&b.ipv4).then(a.id.cmp(&b.id)));
        doc.tasks_left_out = held.len().saturating_sub(NETWORK_TASKS_MAX);
        held.truncate(NETWORK_TASKS_MAX);
        doc.tasks = held;
        out.push(doc);
    }
    Ok(out)
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
