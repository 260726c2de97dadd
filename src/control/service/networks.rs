//! A service's networks in the control API: `--network` / `--network-add` / `--network-rm`
//! resolved against the stored networks (by name, full ID or unique ID prefix; the spec keeps
//! IDs), and the store write's VIPs ([`AddressBook::assign`]).

use swarm_actors::model::{NetworkRef, Service};
use swarm_actors::replica::StoreHandle;
use swarm_actors::store::{ObjectBody, Op, StoreCommand};

use crate::control::network;
use crate::control::proto::{NetworkArg, NetworkBrief, ServiceChange};
use crate::control::reads::{FoundNetwork, networks, services, tasks};
use crate::control::vips::{AddressBook, needs_book};

/// Docker's words when a service names the ingress network.
const INGRESS_REFUSED: &str =
    "service cannot be explicitly attached to the ingress network \"ingress\"";

/// The refs `--network` flags name, IDs resolved; a missing network, the ingress network or
/// one network twice is refused.
pub fn resolve_args(args: &[NetworkArg], nets: &[FoundNetwork]) -> Result<Vec<NetworkRef>, String> {
    let mut out: Vec<NetworkRef> = Vec::new();
    for a in args {
        if a.target == swarm_actors::model::INGRESS_NETWORK {
            return Err(INGRESS_REFUSED.into());
        }
        let found = network::resolve(nets.to_vec(), &a.target)?;
        if out.iter().any(|r| r.network == found.network.id) {
            return Err(format!("network {} is given twice", found.network.name));
        }
        out.push(NetworkRef {
            network: found.network.id,
            aliases: a.aliases.clone(),
        });
    }
    Ok(out)
}

/// `change` with its `--network-add` targets and `--network-rm` names turned into full network
/// IDs, for [`super::change::apply_change`]. A removal names a stored network (by name, ID or
/// prefix).
pub fn resolve_change(change: &mut ServiceChange, nets: &[FoundNetwork]) -> Result<(), String> {
    let added = resolve_args(&change.network_add, nets)?;
    for (arg, r) in change.network_add.iter_mut().zip(added) {
        arg.target = r.network.to_string();
    }
    for name in &mut change.network_rm {
        *name = network::resolve(nets.to_vec(), name)?
            .network
            .id
            .to_string();
    }
    Ok(())
}

/// What the VIP allocation of a write of `service` reads; empty (nothing read) when the
/// service is on no network and holds no VIP. Its own stored object is left out of the
/// services.
pub async fn book(
    store: &StoreHandle,
    service: &Service,
    nets: Vec<FoundNetwork>,
) -> Result<AddressBook, String> {
    if !needs_book(service) {
        return Ok(AddressBook::default());
    }
    Ok(AddressBook {
        networks: nets.into_iter().map(|f| f.network).collect(),
        services: services(store)
            .await?
            .into_iter()
            .map(|f| f.service)
            .filter(|s| s.id != service.id)
            .collect(),
        tasks: tasks(store).await?,
    })
}

/// Whether a write (or an inspect) of `service` needs the stored networks.
pub fn needs_networks(service: &Service) -> bool {
    needs_book(service)
}

/// The networks `service`'s specs and VIPs name, for inspect: ID, name, prefix.
pub fn briefs(service: &Service, nets: &[FoundNetwork]) -> Vec<NetworkBrief> {
    nets.iter()
        .filter(|f| {
            let id = f.network.id;
            service.vips.iter().any(|v| v.network == id)
                || std::iter::once(&service.spec)
                    .chain(service.previous_spec.as_ref())
                    .any(|s| s.task.networks.iter().any(|r| r.network == id))
        })
        .map(|f| NetworkBrief {
            id: f.network.id.to_string(),
            name: f.network.name.clone(),
            prefix: f.network.prefix,
        })
        .collect()
}

/// The store's networks, read only when `needed`.
pub async fn networks_if(store: &StoreHandle, needed: bool) -> Result<Vec<FoundNetwork>, String> {
    if needed {
        networks(store).await
    } else {
        Ok(Vec::new())
    }
}

/// The service a write command puts.
pub fn written_service(cmd: &mut StoreCommand) -> &mut Service {
    match cmd.ops.as_mut_slice() {
        [
            Op::Put {
                body: ObjectBody::Service(s),
                ..
            },
        ] => s,
        other => panic!("a service write is one service put, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::network::alloc::tests::net;
    use swarm_actors::store::StoredObject;

    fn found(id: u128, name: &str, subnet: &str) -> FoundNetwork {
        let network = net(id, name, subnet);
        FoundNetwork {
            obj: StoredObject {
                kind: swarm_actors::store::Kind::Network,
                id: name.into(),
                version: 1,
                created_ms: 0,
                updated_ms: 0,
                body: ObjectBody::Network(network.clone()),
            },
            network,
        }
    }

    fn arg(target: &str, aliases: &[&str]) -> NetworkArg {
        NetworkArg {
            target: target.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn network_flags_resolve_by_name_or_id() {
        let nets = [
            found(1, "front", "10.0.9.0/24"),
            found(u128::MAX, "back", "10.0.10.0/24"),
        ];
        let full = swarm_actors::model::NetworkId(u128::MAX).to_string();
        let refs = resolve_args(&[arg("front", &["web"]), arg(&full[..6], &[])], &nets).unwrap();
        assert_eq!(refs[0].network.0, 1);
        assert_eq!(refs[0].aliases, ["web"]);
        assert_eq!(refs[1].network.0, u128::MAX);
        let e = |args: &[NetworkArg]| resolve_args(args, &nets).unwrap_err();
        assert!(e(&[arg("nope", &[])]).contains("network nope not found"));
        assert!(e(&[arg("ingress", &[])]).contains("ingress"));
        assert!(e(&[arg("front", &[]), arg("front", &[])]).contains("given twice"));
        let mut change = ServiceChange {
            network_add: vec![arg("back", &["b"])],
            network_rm: vec!["front".into()],
            ..Default::default()
        };
        resolve_change(&mut change, &nets).unwrap();
        assert_eq!(change.network_add[0].target, full);
        assert_eq!(
            change.network_rm[0],
            swarm_actors::model::NetworkId(1).to_string()
        );
    }

    #[test]
    fn update_moves_a_service_between_networks_and_modes() {
        use super::super::change::update_write;
        use crate::control::service::tests::stored;
        use crate::control::vips::AddressBook;
        use swarm_actors::model::{EndpointMode, NetworkId};
        let nets = [
            found(1, "front", "10.0.9.0/24"),
            found(u128::MAX, "back", "10.0.10.0/24"),
        ];
        let mut f = stored("web", 7);
        f.service.spec.task.networks = resolve_args(&[arg("front", &[])], &nets).unwrap();
        let book = AddressBook {
            networks: nets.iter().map(|n| n.network.clone()).collect(),
            ..Default::default()
        };
        book.assign(&mut f.service).unwrap();
        assert_eq!(f.service.vips.len(), 1);
        let mut change = ServiceChange {
            network_rm: vec!["front".into()],
            network_add: vec![arg("back", &["api"])],
            ..Default::default()
        };
        resolve_change(&mut change, &nets).unwrap();
        let (_, mut cmd) = update_write(&f, &change, &[], 5).unwrap();
        let s = written_service(&mut cmd);
        book.assign(s).unwrap();
        assert_eq!(s.spec.task.networks.len(), 1);
        assert_eq!(s.spec.task.networks[0].network, NetworkId(u128::MAX));
        assert_eq!(s.spec.task.networks[0].aliases, ["api"]);
        // The new network's VIP, and the old one's kept for the previous spec.
        let held: Vec<_> = s.vips.iter().map(|v| v.addr.to_string()).collect();
        assert_eq!(held, ["10.0.10.254", "10.0.9.254"]);
        // dnsrr drops the VIPs.
        let dnsrr = ServiceChange {
            endpoint_mode: Some(EndpointMode::Dnsrr),
            ..Default::default()
        };
        let (_, mut cmd) = update_write(&f, &dnsrr, &[], 5).unwrap();
        let s = written_service(&mut cmd);
        book.assign(s).unwrap();
        assert_eq!(s.spec.endpoint_mode, EndpointMode::Dnsrr);
        assert!(s.vips.is_empty());
        // Removing a network the service is not on is refused.
        let mut bad = ServiceChange {
            network_rm: vec!["back".into()],
            ..Default::default()
        };
        resolve_change(&mut bad, &nets).unwrap();
        let e = update_write(&f, &bad, &[], 5).unwrap_err();
        assert!(e.contains("is not on network"), "{e}");
    }
}
