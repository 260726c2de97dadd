//! Services' virtual addresses on overlay networks, allocated by the control API in the same
//! store write that stores the spec naming the network (create, update, rollback), and the
//! check that a network has room for a service's tasks.
//!
//! A service in `vip` mode holds one VIP on each network of its spec and of its previous spec
//! (so that a rollback finds its VIP, and tasks of the old spec keep theirs while an update
//! replaces them); a `dnsrr` service holds none. A VIP is taken **highest free address first**
//! while the leader gives tasks the lowest first, so the two meet only on a full network. A
//! VIP is never the gateway, the network or broadcast address, another service's VIP, or the
//! address of a live (non-terminal) task on the network, orphans included. A VIP a service
//! already holds on a network it keeps.
//!
//! Pure: the caller reads networks, services and tasks, and writes the result. Two writes on
//! two managers at the same instant may pick the same VIP (each reads, then writes its own
//! service object); creates and updates on one manager are serialized by the caller.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use swarm_actors::model::{
    EndpointMode, Network, NetworkId, Service, ServiceId, ServiceMode, ServiceSpec, ServiceVip,
    Task,
};

/// What an allocation reads: the overlay networks, the other services (their VIPs) and the
/// tasks (their addresses), as the store holds them.
#[derive(Default)]
pub struct AddressBook {
    pub networks: Vec<Network>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
}

impl AddressBook {
    /// Checks that `service`'s networks have room for it and gives it its VIPs.
    pub fn assign(&self, service: &mut Service) -> Result<(), String> {
        check_room(
            service.id,
            &service.spec,
            &self.networks,
            &self.services,
            &self.tasks,
        )?;
        service.vips = plan_vips(service, &self.networks, &self.services, &self.tasks)?;
        Ok(())
    }
}

/// Whether a write of `service` needs the networks, services and tasks read: it is (or was)
/// on a network, or holds a VIP.
pub fn needs_book(service: &Service) -> bool {
    !service.vips.is_empty()
        || std::iter::once(&service.spec)
            .chain(service.previous_spec.as_ref())
            .any(|s| !s.task.networks.is_empty())
}

/// Addresses on `net` held by live tasks (any service's, orphans too) and by the VIPs of
/// services other than `own`.
fn held(net: &Network, own: ServiceId, services: &[Service], tasks: &[Task]) -> BTreeSet<u32> {
    let vips = services
        .iter()
        .filter(|s| s.id != own)
        .flat_map(|s| s.vips.iter())
        .filter(|v| v.network == net.id)
        .map(|v| u32::from(v.addr));
    let live = tasks
        .iter()
        .filter(|t| !t.status.state.is_terminal())
        .flat_map(|t| t.networks.iter())
        .filter(|a| a.network == net.name)
        .map(|a| u32::from(a.addr));
    vips.chain(live).collect()
}

/// The networks a service in `vip` mode holds a VIP on: its spec's, then its previous spec's.
fn vip_networks(service: &Service) -> Vec<NetworkId> {
    if service.spec.endpoint_mode != EndpointMode::Vip {
        return Vec::new();
    }
    let mut ids = Vec::new();
    let specs = std::iter::once(&service.spec).chain(service.previous_spec.as_ref());
    for r in specs.flat_map(|s| s.task.networks.iter()) {
        if !ids.contains(&r.network) {
            ids.push(r.network);
        }
    }
    ids
}

/// The VIPs `service` (as it is about to be stored, its current `vips` the ones it held)
/// holds: kept where it had one, else the highest free address of the network. `services`
/// and `tasks` are the store's; a network of the previous spec that is gone gets none.
pub fn plan_vips(
    service: &Service,
    networks: &[Network],
    services: &[Service],
    tasks: &[Task],
) -> Result<Vec<ServiceVip>, String> {
    let mut out = Vec::new();
    for id in vip_networks(service) {
        let Some(net) = networks.iter().find(|n| n.id == id) else {
            if service.spec.task.networks.iter().any(|r| r.network == id) {
                return Err(format!("network {id} not found"));
            }
            continue;
        };
        if let Some(v) = service
            .vips
            .iter()
            .find(|v| v.network == id && net.contains(v.addr))
        {
            out.push(*v);
            continue;
        }
        let held = held(net, service.id, services, tasks);
        let first = u32::from(net.gateway) + 1;
        let last = u32::from(net.broadcast()) - 1;
        let addr = (first..=last)
            .rev()
            .find(|a| !held.contains(a))
            .ok_or_else(|| {
                format!(
                    "network {} ({}/{}) is full: no address is left for the VIP of service {}",
                    net.name, net.subnet, net.prefix, service.spec.name
                )
            })?;
        out.push(ServiceVip {
            network: id,
            addr: Ipv4Addr::from(addr),
        });
    }
    Ok(out)
}

/// Refuses a spec whose tasks (its replicas; one for a global service, whose count depends on
/// the nodes) and VIP do not fit the free addresses of one of its networks. The addresses of
/// the service's own tasks count as free: its tasks are replaced, not added.
pub fn check_room(
    own: ServiceId,
    spec: &ServiceSpec,
    networks: &[Network],
    services: &[Service],
    tasks: &[Task],
) -> Result<(), String> {
    let replicas = match spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => 1,
    };
    let vip = u64::from(spec.endpoint_mode == EndpointMode::Vip);
    for r in &spec.task.networks {
        let Some(net) = networks.iter().find(|n| n.id == r.network) else {
            return Err(format!("network {} not found", r.network));
        };
        let others: Vec<Task> = tasks
            .iter()
            .filter(|t| t.service_id != own)
            .cloned()
            .collect();
        let used = held(net, own, services, &others).len() as u64;
        let free = u64::from(net.capacity()).saturating_sub(used);
        if replicas + vip > free {
            let what = match (spec.mode, vip) {
                (ServiceMode::Global, 1) => "a task and a VIP".to_string(),
                (ServiceMode::Global, _) => "a task".to_string(),
                (_, 1) => format!("{replicas} tasks and a VIP"),
                _ => format!("{replicas} tasks"),
            };
            return Err(format!(
                "network {} ({}/{}) is too small for service {}: it needs {} addresses ({what}), {free} are free",
                net.name,
                net.subnet,
                net.prefix,
                spec.name,
                replicas + vip
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::network::alloc::tests::net;
    use crate::control::validate::tests::spec;
    use swarm_actors::model::{NetworkAttachment, NetworkRef, TaskId, TaskState, TaskStatus};

    fn on(s: &mut ServiceSpec, id: u128) {
        s.task.networks.push(NetworkRef {
            network: NetworkId(id),
            aliases: vec![],
        });
    }

    fn task(service: u128, network: &str, addr: [u8; 4], state: TaskState) -> Task {
        Task {
            id: TaskId(rand::random()),
            service_id: ServiceId(service),
            slot: 1,
            node_id: None,
            spec: spec("x").task,
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::new(state, 0, ""),
            created_ms: 0,
            running_ms: None,
            networks: vec![NetworkAttachment {
                network: network.into(),
                addr: addr.into(),
                prefix: 29,
                gateway: [10, 0, 9, 1].into(),
            }],
        }
    }

    #[test]
    fn a_vip_is_the_highest_free_address_and_is_kept() {
        let nets = [net(1, "front", "10.0.9.0/29")];
        let mut web = spec("web");
        on(&mut web, 1);
        let mut s = Service::new(ServiceId(5), web);
        let mut other = Service::new(ServiceId(6), spec("db"));
        other.vips.push(ServiceVip {
            network: NetworkId(1),
            addr: [10, 0, 9, 6].into(),
        });
        let tasks = [
            task(7, "front", [10, 0, 9, 5], TaskState::Running),
            // A finished task's address is free again.
            task(7, "front", [10, 0, 9, 4], TaskState::Complete),
            // Another network's address with the same digits does not count.
            task(7, "back", [10, 0, 9, 4], TaskState::Running),
        ];
        let vips = plan_vips(&s, &nets, &[other.clone()], &tasks).unwrap();
        assert_eq!(vips[0].addr, Ipv4Addr::new(10, 0, 9, 4));
        s.vips = vips.clone();
        // Kept as it is, even when a lower address frees up.
        assert_eq!(plan_vips(&s, &nets, &[other.clone()], &[]).unwrap(), vips);
        // dnsrr: none.
        s.spec.endpoint_mode = EndpointMode::Dnsrr;
        assert!(plan_vips(&s, &nets, &[other], &[]).unwrap().is_empty());
    }

    #[test]
    fn the_previous_specs_networks_keep_their_vips() {
        let nets = [
            net(1, "front", "10.0.9.0/24"),
            net(2, "back", "10.0.10.0/24"),
        ];
        let mut old = spec("web");
        on(&mut old, 1);
        let mut s = Service::new(ServiceId(5), old);
        s.vips = plan_vips(&s, &nets, &[], &[]).unwrap();
        let mut new = s.spec.clone();
        new.task.networks.clear();
        on(&mut new, 2);
        let s = s.updated(new, false);
        let vips = plan_vips(&s, &nets, &[], &[]).unwrap();
        let got: Vec<_> = vips.iter().map(|v| (v.network.0, v.addr)).collect();
        assert_eq!(
            got,
            [
                (2, Ipv4Addr::new(10, 0, 10, 254)),
                (1, Ipv4Addr::new(10, 0, 9, 254))
            ]
        );
        // A network of the current spec that is gone is an error; of the previous, skipped.
        assert!(
            plan_vips(&s, &nets[..1], &[], &[])
                .unwrap_err()
                .contains("not found")
        );
        assert_eq!(plan_vips(&s, &nets[1..], &[], &[]).unwrap().len(), 1);
    }

    #[test]
    fn a_full_network_is_refused() {
        let nets = [net(1, "front", "10.0.9.0/29")];
        let mut web = spec("web");
        on(&mut web, 1);
        let s = Service::new(ServiceId(5), web.clone());
        let tasks: Vec<Task> = (2..=6)
            .map(|i| task(7, "front", [10, 0, 9, i], TaskState::Running))
            .collect();
        assert!(
            plan_vips(&s, &nets, &[], &tasks)
                .unwrap_err()
                .contains("is full")
        );
        // Room: 5 addresses in a /29; 3 replicas and a VIP fit, 5 and a VIP do not.
        web.mode = ServiceMode::Replicated { replicas: 3 };
        check_room(ServiceId(5), &web, &nets, &[], &tasks[..1]).unwrap();
        let e = check_room(ServiceId(5), &web, &nets, &[], &tasks[..2]).unwrap_err();
        assert!(
            e.contains("needs 4 addresses (3 tasks and a VIP), 3 are free"),
            "{e}"
        );
        // The service's own tasks are replaced, not added.
        let own: Vec<Task> = (2..=4)
            .map(|i| task(5, "front", [10, 0, 9, i], TaskState::Running))
            .collect();
        check_room(ServiceId(5), &web, &nets, &[], &own).unwrap();
        web.endpoint_mode = EndpointMode::Dnsrr;
        web.mode = ServiceMode::Replicated { replicas: 5 };
        check_room(ServiceId(5), &web, &nets, &[], &[]).unwrap();
    }
}
