//! Ingress addresses and host-mode ports in the leader's pass.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::addresses::{Allocator, NoAddress, address, ingress};
use super::tests::{puts, run, versioned};
use super::*;
use crate::model::{
    INGRESS_NETWORK, NODE_SLICE_PREFIX, NetworkAttachment, PortConfig, PortProtocol, ServiceMode,
};
use crate::orchestrator::tests_support::{service, task};
use crate::scheduler::tests_support::node;

fn att(slice: u8, host: u8) -> NetworkAttachment {
    NetworkAttachment {
        network: INGRESS_NETWORK.into(),
        addr: address(slice, host),
        prefix: NODE_SLICE_PREFIX,
        gateway: address(slice, 1),
    }
}

fn with_addr(mut t: Task, slice: u8, host: u8) -> Task {
    t.networks.push(att(slice, host));
    t
}

#[test]
fn placed_tasks_get_the_lowest_free_address_of_their_nodes_slice_in_the_same_write() {
    let nodes = [node(1), node(2)];
    let svc = service(ServiceMode::Replicated { replicas: 4 });
    let p = run(&nodes, &[svc], &[], &BTreeMap::new());
    let put = puts(&p);
    assert_eq!(put.len(), 4);
    let mut by_node: BTreeMap<NodeId, Vec<Ipv4Addr>> = BTreeMap::new();
    for (_, t) in put.values() {
        let a = ingress(t).expect("a placed task has its address in the placing write");
        assert_eq!(a.prefix, 24);
        assert_eq!(a.gateway, Ipv4Addr::from(u32::from(a.subnet()) + 1));
        by_node.entry(t.node_id.unwrap()).or_default().push(a.addr);
    }
    let mut slices: Vec<_> = by_node
        .values()
        .map(|addrs| {
            let mut a = addrs.clone();
            a.sort();
            assert_eq!(a.len(), 2);
            let s = slice_of(a[0]).unwrap();
            assert_eq!(a, vec![address(s, 2), address(s, 3)], "lowest first");
            s
        })
        .collect();
    slices.sort();
    assert_eq!(
        slices,
        vec![0, 1],
        "each node its own slice, the lowest free"
    );
}

#[test]
fn a_node_keeps_its_slice_and_a_terminal_tasks_address_is_reused() {
    let nodes = [node(1)];
    let svc = service(ServiceMode::Replicated { replicas: 2 });
    // Node 1 holds slice 7 through task 1 (.2); task 2 (.3) failed: its address is free.
    let mut failed = with_addr(task(2, 2, Some(1)), 7, 3);
    failed.status = TaskStatus::new(TaskState::Failed, 5, "exit 1");
    let tasks = versioned(vec![with_addr(task(1, 1, Some(1)), 7, 2), failed]);
    let p = run(&nodes, &[svc], &tasks, &BTreeMap::new());
    let new: Vec<Task> = puts(&p)
        .into_values()
        .map(|(_, t)| t)
        .filter(|t| t.id.0 > 1000)
        .collect();
    assert_eq!(new.len(), 1, "slot 2 replaced");
    assert_eq!(ingress(&new[0]).unwrap().addr, address(7, 3));
}

#[test]
fn an_orphaned_task_keeps_its_address_as_it_may_still_run_on_its_node() {
    let mut orphan = with_addr(task(1, 1, Some(1)), 4, 2);
    orphan.status = TaskStatus::new(TaskState::Orphaned, 5, "node is down");
    let mut a = Allocator::new([&orphan]);
    assert_eq!(a.slice(NodeId(1)), Some(4));
    assert_eq!(a.allocate(NodeId(1)).unwrap().addr, address(4, 3));
}

#[test]
fn a_node_whose_tasks_all_ended_gets_its_old_slice_back_unless_taken() {
    let mut ended = with_addr(task(1, 1, Some(1)), 9, 4);
    ended.status = TaskStatus::new(TaskState::Complete, 5, "done");
    let mut a = Allocator::new([&ended]);
    assert_eq!(a.slice(NodeId(1)), None, "an ended task holds nothing");
    assert_eq!(a.allocate(NodeId(1)).unwrap().addr, address(9, 2));

    let other = with_addr(task(2, 1, Some(2)), 9, 2);
    let mut a = Allocator::new([&ended, &other]);
    assert_eq!(a.slice(NodeId(2)), Some(9));
    assert_eq!(
        a.allocate(NodeId(1)).unwrap().addr,
        address(0, 2),
        "slice 9 is node 2's now: the lowest free one"
    );
}

#[test]
fn a_node_between_tasks_keeps_its_slice_from_a_node_new_to_slices() {
    // Node 1 held slice 0 and node 2 slice 1; both are between tasks (all ended). Node 3,
    // new, must not take slice 0 or 1 from under them while a slice nobody had is free.
    let mut ended1 = with_addr(task(1, 1, Some(1)), 0, 2);
    ended1.status = TaskStatus::new(TaskState::Shutdown, 5, "shut down");
    let mut ended2 = with_addr(task(2, 1, Some(2)), 1, 2);
    ended2.status = TaskStatus::new(TaskState::Complete, 5, "done");
    let mut a = Allocator::new([&ended1, &ended2]);
    assert_eq!(a.allocate(NodeId(3)).unwrap().addr, address(2, 2));
    assert_eq!(a.allocate(NodeId(2)).unwrap().addr, address(1, 2));
    assert_eq!(a.allocate(NodeId(1)).unwrap().addr, address(0, 2));
}

#[test]
fn a_full_slice_leaves_a_replicated_task_pending_saying_why() {
    let nodes = [node(1)];
    let svc = service(ServiceMode::Replicated {
        replicas: SLICE_ADDRESSES as u64 + 1,
    });
    let tasks: Vec<Task> = (0..SLICE_ADDRESSES)
        .map(|i| with_addr(task(i as u128 + 1, i as u64 + 1, Some(1)), 3, 2 + i as u8))
        .collect();
    let p = run(&nodes, &[svc], &versioned(tasks), &BTreeMap::new());
    let put = puts(&p);
    assert_eq!(put.len(), 1);
    let (_, t) = put.values().next().unwrap();
    assert_eq!(t.node_id, None);
    assert_eq!(t.status.state, TaskState::Pending);
    assert_eq!(
        t.status.message,
        NoAddress::SliceFull {
            node: NodeId(1),
            slice: 3
        }
        .to_string()
    );
    assert!(t.status.message.contains("10.255.3.0/24 is full"));
    assert_eq!((p.placed, p.pending), (0, 1));
}

#[test]
fn all_slices_taken_is_a_clear_error() {
    let tasks: Vec<Task> = (0..SLICES)
        .map(|s| with_addr(task(s as u128 + 1, 1, Some(s as u128 + 1)), s as u8, 2))
        .collect();
    let mut a = Allocator::new(&tasks);
    let e = a.allocate(NodeId(999)).unwrap_err();
    assert_eq!(e, NoAddress::NoSlice { node: NodeId(999) });
    assert!(e.to_string().contains("all 256 slices"));
    assert_eq!(
        a.allocate(NodeId(5)).unwrap().addr,
        address(4, 3),
        "a node with a slice still gets one"
    );
}

#[test]
fn host_mode_ports_keep_tasks_apart_and_say_why_when_no_node_is_left() {
    let nodes = [node(1), node(2)];
    let mut svc = service(ServiceMode::Replicated { replicas: 3 });
    let mut p9000 = PortConfig::tcp(9000, 80);
    p9000.mode = PublishMode::Host;
    svc.spec.ports = vec![p9000];
    let p = run(&nodes, &[svc.clone()], &[], &BTreeMap::new());
    let put = puts(&p);
    let placed: Vec<_> = put.values().filter_map(|(_, t)| t.node_id).collect();
    assert_eq!(placed.len(), 2);
    assert_ne!(placed[0], placed[1], "one host-mode 9000/tcp per node");
    let pending: Vec<_> = put.values().filter(|(_, t)| t.node_id.is_none()).collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].1.status.message,
        "host-mode port 9000/tcp already in use on every suitable node"
    );

    // Another service's live task holds 9000/tcp on node 1; 9000/udp is another port.
    let mut other = service(ServiceMode::Replicated { replicas: 1 });
    other.id = ServiceId(2);
    other.spec.name = "other".into();
    other.spec.ports = vec![p9000];
    let mut holder = task(1, 1, Some(1));
    holder.service_id = ServiceId(2);
    svc.spec.mode = ServiceMode::Replicated { replicas: 1 };
    let p = run(
        &nodes,
        &[svc.clone(), other.clone()],
        &versioned(vec![holder.clone()]),
        &BTreeMap::new(),
    );
    let put = puts(&p);
    assert_eq!(put.len(), 1);
    assert_eq!(put.values().next().unwrap().1.node_id, Some(NodeId(2)));
    svc.spec.ports[0].protocol = PortProtocol::Udp;
    let p = run(
        &nodes[..1],
        &[svc, other],
        &versioned(vec![holder]),
        &BTreeMap::new(),
    );
    assert_eq!(puts(&p).values().next().unwrap().1.node_id, Some(NodeId(1)));
}
