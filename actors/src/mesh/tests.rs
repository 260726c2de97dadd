//! The mesh on real sockets: two nodes' transports on loopback and tables made by hand. Node
//! A's mesh binds on 127.0.0.1, node B's on 127.0.0.2 (both loopback), so one published port
//! is bound by both.

// Tests of the shells run in real time: they wait with sleeps.
#![allow(clippy::disallowed_methods)]
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;
use crate::model::{PortConfig, ServiceId, TaskId};
use crate::runtime::TaskEndpoint;
use crate::transport::TransportError;
use crate::trust::{ClusterCa, install_crypto_provider};
use crate::wire::{MeshBackend, MeshService};

const PATIENCE: Duration = Duration::from_secs(20);
const A: NodeId = NodeId(0xa);
const B: NodeId = NodeId(0xb);

type TestNode = loopback::LoopbackNode;

async fn node(ca: &ClusterCa, id: NodeId, ip: &str) -> TestNode {
    let config = MeshConfig {
        udp_flow_idle_ms: 2_000,
        ..MeshConfig::default()
    };
    loopback::loopback_node(ca, id, ip.parse().unwrap(), config).await
}

async fn two_nodes() -> (TestNode, TestNode) {
    install_crypto_provider();
    let ca = ClusterCa::generate(SystemTime::now()).unwrap();
    (
        node(&ca, A, "127.0.0.1").await,
        node(&ca, B, "127.0.0.2").await,
    )
}

/// A port number free on both test addresses now.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let u1 = std::net::UdpSocket::bind(("127.0.0.1", port));
        let t2 = std::net::TcpListener::bind(("127.0.0.2", port));
        let u2 = std::net::UdpSocket::bind(("127.0.0.2", port));
        if u1.is_ok() && t2.is_ok() && u2.is_ok() {
            return port;
        }
    }
}

/// A task's stand-in: answers each TCP connection with `name` and closes.
async fn named_server(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// A task's stand-in that reads a PROXY v2 header (IPv4: 28 bytes) and answers the source
/// address it names.
async fn proxy_reading_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut h = [0u8; 28];
                s.read_exact(&mut h).await.unwrap();
                let header = ppp::v2::Header::try_from(&h[..]).unwrap();
                let answer = match header.addresses {
                    ppp::v2::Addresses::IPv4(a) => {
                        format!("{}:{}", a.source_address, a.source_port)
                    }
                    other => format!("{other:?}"),
                };
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

fn endpoint(target: u16, real: u16) -> TaskEndpoint {
    TaskEndpoint {
        overlay: Default::default(),
        ip: "127.0.0.1".parse().unwrap(),
        ports: BTreeMap::from([(target, real)]),
        host_network: true,
    }
}

fn backend(task: u128, on: &TestNode, node: NodeId) -> MeshBackend {
    MeshBackend {
        overlay: Default::default(),
        slot: 0,
        task: TaskId(task),
        node,
        node_addr: on.transport.local_addr(),
        addr: None,
    }
}

fn table(ports: Vec<PortConfig>, backends: Vec<MeshBackend>) -> Arc<MeshTable> {
    Arc::new(MeshTable {
        networks: Vec::new(),
        nodes: Vec::new(),
        version: 7,
        services: vec![MeshService {
            endpoint_mode: Default::default(),
            networks: Vec::new(),
            id: ServiceId(1),
            name: "web".into(),
            ports,
            backends,
        }],
    })
}

fn give(nodes: &[&TestNode], t: &Arc<MeshTable>) {
    for n in nodes {
        n.feed.send_replace(Some(t.clone()));
    }
}

async fn listening(n: &TestNode, port: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !n.mesh.status().listening.iter().any(|p| p == port) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{port} never listened: {:?}",
            n.mesh.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn fetch(n: &TestNode, port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(SocketAddr::new(n.ip, port)).await?;
    let mut out = String::new();
    tokio::time::timeout(PATIENCE, s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    Ok(out)
}

#[tokio::test]
async fn a_connection_reaches_a_local_task_and_one_on_another_node_through_a_tunnel() {
    let (a, b) = two_nodes().await;
    let real = named_server("task-1").await;
    a.endpoints.set(TaskId(1), endpoint(80, real));
    let port = free_port();
    let t = table(vec![PortConfig::tcp(port, 80)], vec![backend(1, &a, A)]);
    give(&[&a, &b], &t);
    let key = format!("{port}/tcp");
    listening(&a, &key).await;
    listening(&b, &key).await;

    eprintln!("phase: node A forwards to its own task");
    assert_eq!(fetch(&a, port).await.unwrap(), "task-1");
    eprintln!("phase: node B, which runs no task, tunnels to node A");
    for _ in 0..5 {
        assert_eq!(fetch(&b, port).await.unwrap(), "task-1");
    }
    assert!(a.mesh.status().tunnels_served >= 5);
    assert_eq!(a.mesh.status().table_version, 7);

    eprintln!("phase: a table without the port closes the listener on both nodes");
    give(&[&a, &b], &table(vec![], vec![]));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(SocketAddr::new(b.ip, port))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the port stayed open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn round_robin_reaches_every_task_and_a_refusing_task_is_retried_on_another() {
    let (a, b) = two_nodes().await;
    let one = named_server("task-1").await;
    let two = named_server("task-2").await;
    // Task 3's port is closed: its connect is refused.
    let dead = free_port();
    a.endpoints.set(TaskId(1), endpoint(80, one));
    a.endpoints.set(TaskId(2), endpoint(80, two));
    a.endpoints.set(TaskId(3), endpoint(80, dead));
    let port = free_port();
    let t = table(
        vec![PortConfig::tcp(port, 80)],
        vec![backend(1, &a, A), backend(2, &a, A), backend(3, &a, A)],
    );
    give(&[&a, &b], &t);
    listening(&a, &format!("{port}/tcp")).await;
    listening(&b, &format!("{port}/tcp")).await;
    for n in [&a, &b] {
        let mut seen = BTreeMap::new();
        for _ in 0..30 {
            let got = fetch(n, port)
                .await
                .expect("every connection gets an answer");
            *seen.entry(got).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 2, "both live tasks answered: {seen:?}");
        assert!(seen.values().all(|n| *n >= 10), "{seen:?}");
    }
    assert_eq!(a.mesh.status().connections_failed, 0);
}

#[tokio::test]
async fn the_task_gets_a_proxy_header_with_the_clients_address_locally_and_through_a_tunnel() {
    let (a, b) = two_nodes().await;
    let real = proxy_reading_server().await;
    a.endpoints.set(TaskId(1), endpoint(80, real));
    let port = free_port();
    let mut p = PortConfig::tcp(port, 80);
    p.proxy_protocol = true;
    give(&[&a, &b], &table(vec![p], vec![backend(1, &a, A)]));
    listening(&a, &format!("{port}/tcp")).await;
    listening(&b, &format!("{port}/tcp")).await;
    for n in [&a, &b] {
        // The client binds its own address so the test knows what the header must say.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let client = sock.local_addr().unwrap();
        let mut s = sock.connect(SocketAddr::new(n.ip, port)).await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(PATIENCE, s.read_to_string(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, client.to_string(), "through node {}", n.ip);
    }
}

#[tokio::test]
async fn udp_datagrams_go_both_ways_locally_and_through_a_tunnel() {
    let (a, b) = two_nodes().await;
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let real = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = echo.send_to(&reply, from).await;
        }
    });
    a.endpoints.set(TaskId(1), endpoint(53, real));
    let port = free_port();
    let mut p = PortConfig::tcp(port, 53);
    p.protocol = PortProtocol::Udp;
    give(&[&a, &b], &table(vec![p], vec![backend(1, &a, A)]));
    listening(&a, &format!("{port}/udp")).await;
    listening(&b, &format!("{port}/udp")).await;
    for n in [&a, &b] {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(SocketAddr::new(n.ip, port)).await.unwrap();
        for i in 0..3 {
            let msg = format!("ping {i}");
            client.send(msg.as_bytes()).await.unwrap();
            let mut buf = [0u8; 2048];
            let len = tokio::time::timeout(PATIENCE, client.recv(&mut buf))
                .await
                .expect("a reply through the mesh")
                .unwrap();
            assert_eq!(&buf[..len], format!("echo:{msg}").as_bytes());
        }
    }
    assert!(
        a.mesh.status().tunnels_served >= 1,
        "B's flow rode a tunnel"
    );
}

#[tokio::test]
async fn a_tunnel_for_a_task_or_port_the_node_does_not_serve_is_refused() {
    let (a, b) = two_nodes().await;
    let real = named_server("task-1").await;
    a.endpoints.set(TaskId(1), endpoint(80, real));
    let port = free_port();
    give(
        &[&a, &b],
        &table(vec![PortConfig::tcp(port, 80)], vec![backend(1, &a, A)]),
    );
    listening(&a, &format!("{port}/tcp")).await;
    let good = TunnelRequest {
        network: None,
        service: ServiceId(1),
        task: TaskId(1),
        protocol: PortProtocol::Tcp,
        published: port,
        target: 80,
        client: "127.0.0.9:1000".parse().unwrap(),
        entry: "127.0.0.2:1".parse().unwrap(),
    };
    let refused = |r: Result<crate::transport::TunnelStreams, TransportError>| match r {
        Err(TransportError::Refused(WireFailure::Unreachable(why))) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let to = a.transport.local_addr();
    eprintln!("phase: a task that is not A's");
    let mut r = good.clone();
    r.task = TaskId(99);
    let why = refused(b.transport.open_tunnel(to, &r).await);
    assert!(why.contains("not in rotation"), "{why}");
    eprintln!("phase: a port the service does not publish (reaching another port of the task)");
    let mut r = good.clone();
    r.target = 22;
    let why = refused(b.transport.open_tunnel(to, &r).await);
    assert!(why.contains("publishes no port"), "{why}");
    eprintln!("phase: the same request, well formed, opens");
    let t = b.transport.open_tunnel(to, &good).await.unwrap();
    let mut s = tokio::io::join(t.recv, t.send);
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "task-1");
    assert!(a.mesh.status().tunnels_refused >= 2);
}

#[tokio::test]
async fn a_port_that_cannot_be_bound_is_reported_and_the_others_serve() {
    let (a, _b) = two_nodes().await;
    let real = named_server("task-1").await;
    a.endpoints.set(TaskId(1), endpoint(80, real));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let port = free_port();
    give(
        &[&a],
        &table(
            vec![PortConfig::tcp(busy, 80), PortConfig::tcp(port, 80)],
            vec![backend(1, &a, A)],
        ),
    );
    listening(&a, &format!("{port}/tcp")).await;
    let status = a.mesh.status();
    assert_eq!(status.bind_errors.len(), 1, "{status:?}");
    assert!(status.bind_errors[0].starts_with(&format!("{busy}/tcp (service web)")));
    assert_eq!(fetch(&a, port).await.unwrap(), "task-1");
    eprintln!("phase: freed, the port is bound at the next retry");
    drop(taken);
    listening(&a, &format!("{busy}/tcp")).await;
    assert!(a.mesh.status().bind_errors.is_empty());
}

#[tokio::test]
async fn a_host_mode_port_listens_only_on_a_node_with_a_task() {
    let (a, b) = two_nodes().await;
    let real = named_server("task-1").await;
    a.endpoints.set(TaskId(1), endpoint(80, real));
    let port = free_port();
    let mut p = PortConfig::tcp(port, 80);
    p.mode = PublishMode::Host;
    give(&[&a, &b], &table(vec![p], vec![backend(1, &a, A)]));
    listening(&a, &format!("{port}/tcp")).await;
    assert_eq!(fetch(&a, port).await.unwrap(), "task-1");
    // B has had the table as long as A: it binds nothing for the port.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.mesh.status().listening.is_empty());
    assert!(
        TcpStream::connect(SocketAddr::new(b.ip, port))
            .await
            .is_err()
    );
}
