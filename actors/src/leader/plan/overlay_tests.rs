//! Overlay addresses given by the pass: lowest free cluster wide, skipping VIPs, the gateway
//! and live tasks' addresses; freed when a task ends; all or none; ingress by the rule.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::tests::{puts, versioned};
use super::*;
use crate::model::{
    INGRESS_NETWORK, Network, NetworkAttachment, NetworkId, NetworkRef, PortConfig, ServiceMode,
    ServiceVip,
};
use crate::orchestrator::tests_support::{service, task};
use crate::scheduler::tests_support::node;

fn network(id: u128, name: &str, subnet: [u8; 4], prefix: u8, internal: bool) -> Network {
    let subnet = Ipv4Addr::from(subnet);
    Network {
        id: NetworkId(id),
        name: name.into(),
        driver: "overlay".into(),
        subnet,
        prefix,
        gateway: Ipv4Addr::from(u32::from(subnet) + 1),
        vni: 4_096 + id as u32,
        attachable: false,
        internal,
        labels: BTreeMap::new(),
    }
}

fn on(ids: &[u128]) -> Vec<NetworkRef> {
    ids.iter()
        .map(|i| NetworkRef {
            network: NetworkId(*i),
            aliases: Vec::new(),
        })
        .collect()
}

fn run(
    nodes: &[NodeView],
    services: &[Service],
    networks: &[Network],
    tasks: &[VersionedTask<'_>],
) -> Plan {
    let mut next = 1000u128;
    let mut new_id = || {
        next += 1;
        TaskId(next)
    };
    let versions = services.iter().map(|s| (s.id, ("web", 1))).collect();
    plan(
        &PlanInput {
            now_ms: 1_000_000,
            nodes,
            services,
            networks,
            service_keys: &versions,
            tasks,
            reports: &BTreeMap::new(),
        },
        &mut new_id,
    )
}

fn addr_on<'t>(t: &'t Task, net: &str) -> Option<&'t NetworkAttachment> {
    t.networks.iter().find(|a| a.network == net)
}

#[test]
fn tasks_get_the_lowest_free_addresses_cluster_wide_skipping_vips_and_the_gateway() {
    let nets = [
        network(1, "front", [10, 0, 0, 0], 24, false),
        network(2, "back", [10, 0, 1, 0], 24, false),
    ];
    let mut svc = service(ServiceMode::Replicated { replicas: 4 });
    svc.spec.task.networks = on(&[1, 2]);
    svc.vips = vec![
        ServiceVip {
            network: NetworkId(1),
            addr: Ipv4Addr::new(10, 0, 0, 254),
        },
        // Another service's VIP low in the subnet (written by hand): skipped too.
        ServiceVip {
            network: NetworkId(2),
            addr: Ipv4Addr::new(10, 0, 1, 3),
        },
    ];
    let nodes = [node(1), node(2)];
    let p = run(&nodes, &[svc], &nets, &[]);
    let put = puts(&p);
    assert_eq!(put.len(), 4);
    let mut front: Vec<_> = put
        .values()
        .map(|(_, t)| addr_on(t, "front").unwrap().addr)
        .collect();
    let mut back: Vec<_> = put
        .values()
        .map(|(_, t)| addr_on(t, "back").unwrap().addr)
        .collect();
    front.sort();
    back.sort();
    // Spread over two nodes, still one subnet: .2 .3 .4 .5 (.1 is the gateway).
    assert_eq!(
        front,
        (2..=5)
            .map(|h| Ipv4Addr::new(10, 0, 0, h))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        back,
        [2, 4, 5, 6].map(|h| Ipv4Addr::new(10, 0, 1, h)).to_vec()
    );
    for (_, t) in put.values() {
        // Ingress first, then the networks in the spec's order, with prefix and gateway.
        let names: Vec<_> = t.networks.iter().map(|a| a.network.as_str()).collect();
        assert_eq!(names, [INGRESS_NETWORK, "front", "back"]);
        let f = addr_on(t, "front").unwrap();
        assert_eq!((f.prefix, f.gateway), (24, Ipv4Addr::new(10, 0, 0, 1)));
    }
}

#[test]
fn an_ended_task_frees_its_address_and_an_orphan_keeps_it() {
    let nets = [network(1, "front", [10, 0, 0, 0], 24, false)];
    let mut svc = service(ServiceMode::Replicated { replicas: 3 });
    svc.spec.task.networks = on(&[1]);
    let attach = |t: &mut Task, host: u8| {
        t.spec.networks = on(&[1]);
        t.networks.push(NetworkAttachment {
            network: "front".into(),
            addr: Ipv4Addr::new(10, 0, 0, host),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        });
    };
    let mut ended = task(1, 1, Some(1));
    attach(&mut ended, 2);
    ended.status.state = TaskState::Failed;
    ended.desired_state = TaskState::Shutdown;
    let mut orphan = task(2, 2, Some(2));
    attach(&mut orphan, 3);
    orphan.status.state = TaskState::Orphaned;
    orphan.desired_state = TaskState::Shutdown;
    let mut running = task(3, 3, Some(1));
    attach(&mut running, 4);
    let nodes = [node(1), node(2)];
    let p = run(
        &nodes,
        &[svc],
        &nets,
        &versioned(vec![ended, orphan, running]),
    );
    let made: Vec<_> = puts(&p)
        .into_values()
        .filter(|(e, _)| *e == Expect::Absent)
        .map(|(_, t)| addr_on(&t, "front").unwrap().addr)
        .collect();
    let want: Vec<_> = [2, 5].map(|h| Ipv4Addr::new(10, 0, 0, h)).to_vec();
    let mut made = made;
    made.sort();
    assert_eq!(
        made, want,
        "the ended task's .2 is reused, the orphan's .3 is not"
    );
}

#[test]
fn a_full_or_missing_network_leaves_the_task_pending_holding_nothing() {
    // A /29: .1 gateway, .2–.6 usable, .7 broadcast; the VIP takes .6.
    let nets = [
        network(1, "tiny", [10, 0, 2, 0], 29, false),
        network(2, "big", [10, 0, 3, 0], 24, false),
    ];
    let mut svc = service(ServiceMode::Replicated { replicas: 6 });
    svc.spec.task.networks = on(&[2, 1]);
    svc.vips = vec![ServiceVip {
        network: NetworkId(1),
        addr: Ipv4Addr::new(10, 0, 2, 6),
    }];
    let p = run(&[node(1)], &[svc.clone()], &nets, &[]);
    let put = puts(&p);
    let (placed, pending): (Vec<_>, Vec<_>) = put.values().partition(|(_, t)| t.node_id.is_some());
    assert_eq!((placed.len(), pending.len()), (4, 2));
    assert_eq!(p.pending, 2);
    for (_, t) in &pending {
        assert_eq!(t.status.state, TaskState::Pending);
        assert!(
            t.status.message.contains("no free address on network tiny"),
            "{}",
            t.status.message
        );
        assert!(t.networks.is_empty(), "all or none: {:?}", t.networks);
    }
    // The addresses "big" gave the pending tasks were given back: the placed hold .2–.5.
    let mut big: Vec<_> = placed
        .iter()
        .map(|(_, t)| addr_on(t, "big").unwrap().addr.octets()[3])
        .collect();
    big.sort();
    assert_eq!(big, [2, 3, 4, 5]);

    // A network the store no longer has.
    svc.spec.task.networks = on(&[9]);
    let p = run(&[node(1)], &[svc], &nets, &[]);
    let put = puts(&p);
    assert!(put.values().all(|(_, t)| t.node_id.is_none()
        && t.status.message == format!("network {} not found", NetworkId(9))));
}

#[test]
fn a_global_task_without_its_network_is_not_made() {
    let mut svc = service(ServiceMode::Global);
    svc.spec.task.networks = on(&[9]);
    let p = run(&[node(1), node(2)], &[svc], &[], &[]);
    assert!(puts(&p).is_empty());
    assert_eq!(p.unattached.len(), 2);
    assert_eq!(p.created, 0);
}

#[test]
fn only_internal_networks_and_no_ports_means_no_ingress_address() {
    let nets = [
        network(1, "private", [10, 0, 4, 0], 24, true),
        network(2, "public", [10, 0, 5, 0], 24, false),
    ];
    let mut svc = service(ServiceMode::Replicated { replicas: 1 });
    svc.spec.task.networks = on(&[1]);
    let names = |p: &Plan| -> Vec<String> {
        let (_, t) = puts(p).into_values().next().unwrap();
        t.networks.into_iter().map(|a| a.network).collect()
    };
    let p = run(&[node(1)], &[svc.clone()], &nets, &[]);
    assert_eq!(names(&p), ["private"]);
    // Publishing a port: ingress again.
    let mut published = svc.clone();
    published.spec.ports = vec![PortConfig::tcp(8080, 80)];
    let p = run(&[node(1)], &[published], &nets, &[]);
    assert_eq!(names(&p), [INGRESS_NETWORK, "private"]);
    // One network with a way out: ingress again.
    svc.spec.task.networks = on(&[1, 2]);
    let p = run(&[node(1)], &[svc], &nets, &[]);
    assert_eq!(names(&p), [INGRESS_NETWORK, "private", "public"]);
}
