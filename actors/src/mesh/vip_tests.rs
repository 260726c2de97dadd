//! The VIP listener: which service and tasks a VIP reaches, which VIP tunnels a node serves,
//! and connections balanced over a local task and one on another node, on loopback (the VIP
//! is the listener's own address there, as no redirect is made).

// Tests of the shells run in real time: they wait with sleeps.
#![allow(clippy::disallowed_methods)]
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{route, tunnel_target};
use crate::mesh::{MeshConfig, loopback};
use crate::model::{EndpointMode, NetworkId, NodeId, PortProtocol, ServiceId, TaskId};
use crate::runtime::TaskEndpoint;
use crate::trust::{ClusterCa, install_crypto_provider};
use crate::wire::{
    MeshBackend, MeshNetwork, MeshService, MeshServiceNet, MeshTable, TunnelRequest,
};

const A: NodeId = NodeId(0xa);
const B: NodeId = NodeId(0xb);
const NET: NetworkId = NetworkId(77);
const OTHER: NetworkId = NetworkId(78);

fn network(id: NetworkId, third: u8) -> MeshNetwork {
    MeshNetwork {
        id,
        name: format!("n{third}"),
        subnet: Ipv4Addr::new(10, 0, third, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, third, 1),
        vni: 4_100 + u32::from(third),
        internal: false,
    }
}

fn backend(task: u128, node: NodeId, node_addr: SocketAddr, overlay: Ipv4Addr) -> MeshBackend {
    MeshBackend {
        task: TaskId(task),
        node,
        node_addr,
        addr: None,
        slot: task as u64,
        overlay: vec![(0, overlay)],
    }
}

fn table(vip: Ipv4Addr, backends: Vec<MeshBackend>) -> MeshTable {
    MeshTable {
        version: 9,
        services: vec![MeshService {
            id: ServiceId(5),
            name: "web".into(),
            ports: Vec::new(),
            endpoint_mode: EndpointMode::Vip,
            networks: vec![MeshServiceNet {
                network: 0,
                vip: Some(vip),
                aliases: Vec::new(),
            }],
            backends,
        }],
        networks: vec![network(NET, 1), network(OTHER, 2)],
        nodes: Vec::new(),
    }
}

fn request(task: u128) -> TunnelRequest {
    TunnelRequest {
        service: ServiceId(5),
        task: TaskId(task),
        protocol: PortProtocol::Tcp,
        published: 0,
        target: 80,
        client: "10.0.1.9:5000".parse().unwrap(),
        entry: "10.0.1.254:80".parse().unwrap(),
        network: Some(NET),
    }
}

#[test]
fn a_vip_reaches_its_service_and_tasks_on_that_network() {
    let somewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let vip = Ipv4Addr::new(10, 0, 1, 254);
    let t = table(
        vip,
        vec![
            backend(1, A, somewhere, Ipv4Addr::new(10, 0, 1, 2)),
            backend(2, B, somewhere, Ipv4Addr::new(10, 0, 1, 3)),
        ],
    );
    let r = route(&t, vip).expect("the VIP is the service's");
    assert_eq!(r.service, ServiceId(5));
    assert_eq!(r.network, NET);
    let addrs: Vec<Ipv4Addr> = r.backends.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        addrs,
        vec![Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)]
    );
    assert!(
        route(&t, Ipv4Addr::new(10, 0, 1, 2)).is_none(),
        "a task's address is no VIP"
    );
}

#[test]
fn a_vip_tunnel_reaches_only_a_task_of_this_node_on_that_network() {
    let somewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let t = table(
        Ipv4Addr::new(10, 0, 1, 254),
        vec![
            backend(1, A, somewhere, Ipv4Addr::new(10, 0, 1, 2)),
            backend(2, B, somewhere, Ipv4Addr::new(10, 0, 1, 3)),
        ],
    );
    assert_eq!(
        tunnel_target(&t, A, &request(1), NET),
        Ok(Ipv4Addr::new(10, 0, 1, 2))
    );
    assert!(
        tunnel_target(&t, A, &request(2), NET).is_err(),
        "another node's task"
    );
    assert!(
        tunnel_target(&t, A, &request(3), NET).is_err(),
        "a task not in rotation"
    );
    assert!(
        tunnel_target(&t, A, &request(1), OTHER).is_err(),
        "the service is not on it"
    );
    assert!(
        tunnel_target(&t, A, &request(1), NetworkId(99)).is_err(),
        "no such network"
    );
    let mut other = request(1);
    other.service = ServiceId(6);
    assert!(
        tunnel_target(&t, A, &other, NET).is_err(),
        "no such service"
    );
}

/// A task's stand-in on `ip:port`: answers each connection with `name` and closes.
async fn named_server(ip: &str, port: u16, name: &'static str) {
    let l = TcpListener::bind((ip, port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
}

fn overlay_endpoint(addr: Ipv4Addr) -> TaskEndpoint {
    TaskEndpoint {
        ip: IpAddr::V4(addr),
        ports: BTreeMap::new(),
        host_network: false,
        overlay: BTreeMap::from([(NET, addr)]),
    }
}

#[tokio::test]
async fn vip_connections_are_balanced_over_a_local_task_and_a_tunnelled_one() {
    install_crypto_provider();
    let ca = ClusterCa::generate(SystemTime::now()).unwrap();
    let a =
        loopback::loopback_node(&ca, A, "127.0.0.1".parse().unwrap(), MeshConfig::default()).await;
    let b =
        loopback::loopback_node(&ca, B, "127.0.0.2".parse().unwrap(), MeshConfig::default()).await;
    let listener = a.mesh.vip_addr().expect("A's VIP listener");
    let SocketAddr::V4(listener4) = listener else {
        panic!("an IPv4 listener");
    };
    // Without a redirect, the connection's destination is the listener itself: the VIP.
    let vip = *listener4.ip();
    let port = listener.port();
    let (local, remote) = (Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4));
    named_server("127.0.0.3", port, "local").await;
    named_server("127.0.0.4", port, "remote").await;
    a.endpoints.set(TaskId(1), overlay_endpoint(local));
    b.endpoints.set(TaskId(2), overlay_endpoint(remote));
    let t = Arc::new(table(
        vip,
        vec![
            backend(1, A, a.transport.local_addr(), local),
            backend(2, B, b.transport.local_addr(), remote),
        ],
    ));
    a.feed.send_replace(Some(t.clone()));
    b.feed.send_replace(Some(t.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.mesh.status().table_version != 9 || b.mesh.status().table_version != 9 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tables never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(listener).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut out))
            .await
            .expect("an answer")
            .unwrap();
        seen.insert(out);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["local".to_string(), "remote".to_string()]),
        "round-robin reaches both tasks"
    );
    assert!(b.mesh.status().tunnels_served >= 3, "{:?}", b.mesh.status());

    eprintln!("phase: a VIP tunnel for a task the far node does not run is refused");
    let mut wrong = request(1);
    wrong.target = port;
    let refused = a
        .transport
        .open_tunnel(b.transport.local_addr(), &wrong)
        .await;
    assert!(refused.is_err());
}
