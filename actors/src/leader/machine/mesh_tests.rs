//! The mesh table's overlay part: networks, services on networks with their VIPs and aliases,
//! backends' overlay addresses, the nodes to flood to, and the digest over all of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use super::mesh::{MeshCut, mesh_table};
use crate::model::{
    EndpointMode, INGRESS_NETWORK, Network, NetworkAttachment, NetworkId, NetworkRef, NodeId,
    ServiceId, ServiceMode, ServiceVip, TaskState,
};
use crate::orchestrator::tests_support::{service, task};

fn network(id: u128, name: &str, third: u8) -> Network {
    Network {
        id: NetworkId(id),
        name: name.into(),
        driver: "overlay".into(),
        subnet: Ipv4Addr::new(10, 0, third, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, third, 1),
        vni: 4_096 + id as u32,
        attachable: false,
        internal: id == 2,
        labels: BTreeMap::new(),
    }
}

fn att(network: &str, addr: Ipv4Addr) -> NetworkAttachment {
    NetworkAttachment {
        network: network.into(),
        addr,
        prefix: 24,
        gateway: Ipv4Addr::from(u32::from(addr) & !0xff | 1),
    }
}

#[test]
fn services_on_networks_are_listed_with_vips_aliases_and_overlay_addresses() {
    // Listed out of ID order: the table sorts them.
    let nets = [network(2, "back", 1), network(1, "front", 0)];
    let mut web = service(ServiceMode::Replicated { replicas: 2 });
    web.spec.task.networks = vec![
        NetworkRef {
            network: NetworkId(1),
            aliases: vec!["www".into(), "x".repeat(65)],
        },
        NetworkRef {
            network: NetworkId(2),
            aliases: Vec::new(),
        },
    ];
    web.vips = vec![
        ServiceVip {
            network: NetworkId(1),
            addr: Ipv4Addr::new(10, 0, 0, 254),
        },
        ServiceVip {
            network: NetworkId(2),
            addr: Ipv4Addr::new(10, 0, 1, 254),
        },
    ];
    let mut db = service(ServiceMode::Replicated { replicas: 1 });
    db.id = ServiceId(2);
    db.spec.name = "db".into();
    db.spec.endpoint_mode = EndpointMode::Dnsrr;
    db.spec.task.networks = vec![NetworkRef {
        network: NetworkId(2),
        aliases: Vec::new(),
    }];
    // A service on no network and with no ports: not listed.
    let mut lone = service(ServiceMode::Replicated { replicas: 1 });
    lone.id = ServiceId(3);

    let mut t1 = task(11, 1, Some(1));
    t1.networks = vec![
        att(INGRESS_NETWORK, Ipv4Addr::new(10, 255, 0, 2)),
        att("front", Ipv4Addr::new(10, 0, 0, 2)),
        att("back", Ipv4Addr::new(10, 0, 1, 2)),
    ];
    // Starting, not in rotation: its node is still one to flood to.
    let mut t2 = task(12, 2, Some(2));
    t2.status.state = TaskState::Starting;
    t2.networks = vec![att("front", Ipv4Addr::new(10, 0, 0, 3))];
    let mut t3 = task(13, 1, Some(3));
    t3.service_id = ServiceId(2);
    // An attachment outside its network's subnet (a stale name) is not listed.
    t3.networks = vec![
        att("back", Ipv4Addr::new(10, 0, 1, 3)),
        att("front", Ipv4Addr::new(10, 9, 9, 9)),
    ];
    // Ended: holds nothing, floods nowhere.
    let mut t4 = task(14, 2, Some(4));
    t4.status.state = TaskState::Failed;
    t4.networks = vec![att("front", Ipv4Addr::new(10, 0, 0, 4))];
    let addrs: BTreeMap<NodeId, SocketAddr> = (1..=4)
        .map(|i| (NodeId(i), format!("192.0.2.{i}:2377").parse().unwrap()))
        .collect();
    let all = [t1, t2, t3, t4];
    let services = [web.clone(), db, lone];
    let (t, cut) = mesh_table(&services, &nets, &all, &addrs, &BTreeSet::new());
    assert_eq!(
        cut,
        MeshCut {
            aliases: 1,
            ..MeshCut::default()
        }
    );
    let names: Vec<_> = t.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["front", "back"]);
    assert!(t.networks[1].internal && !t.networks[0].internal);
    let nodes: Vec<_> = t.nodes.iter().map(|n| n.id).collect();
    assert_eq!(nodes, [NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(t.nodes[0].addr, addrs[&NodeId(1)]);

    assert_eq!(t.services.len(), 2);
    let w = &t.services[0];
    assert_eq!(w.networks.len(), 2);
    assert_eq!(
        (w.networks[0].network, w.networks[0].vip),
        (0, Some(Ipv4Addr::new(10, 0, 0, 254)))
    );
    assert_eq!(
        w.networks[0].aliases,
        ["www"],
        "the over-long alias is left out"
    );
    assert_eq!(w.networks[1].network, 1);
    assert_eq!(w.backends.len(), 1);
    assert_eq!(w.backends[0].slot, 1);
    assert_eq!(w.backends[0].addr, Some(Ipv4Addr::new(10, 255, 0, 2)));
    assert_eq!(
        w.backends[0].overlay,
        [
            (0, Ipv4Addr::new(10, 0, 0, 2)),
            (1, Ipv4Addr::new(10, 0, 1, 2))
        ]
    );
    let d = &t.services[1];
    assert_eq!(d.endpoint_mode, EndpointMode::Dnsrr);
    assert_eq!(d.networks[0].vip, None, "no VIP in dnsrr mode");
    assert_eq!(d.backends[0].overlay, [(1, Ipv4Addr::new(10, 0, 1, 3))]);
    assert_eq!(d.backends[0].addr, None);

    // The version is a digest of everything listed: a network's change is news.
    let mut moved = nets.clone();
    moved[0].vni += 1;
    let (again, _) = mesh_table(&services, &moved, &all, &addrs, &BTreeSet::new());
    assert_ne!(again.version, t.version);
    let (same, _) = mesh_table(&services, &nets, &all, &addrs, &BTreeSet::new());
    assert_eq!(same.version, t.version);
}
