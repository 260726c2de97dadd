//! The server end to end on loopback: a client asks over UDP and TCP from an address the
//! node's endpoints know as a task's (or do not), a fake upstream answers forwarded names.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{Dns, DnsConfig, Upstream};
use crate::model::{EndpointMode, NetworkId, NodeId, ServiceId, TaskId};
use crate::runtime::{Endpoints, TaskEndpoint};
use crate::wire::{MeshBackend, MeshNetwork, MeshService, MeshServiceNet, MeshTable};

const ME: NodeId = NodeId(1);
const FRONT: NetworkId = NetworkId(11);
const BACK: NetworkId = NetworkId(12);
/// The name the fake upstream knows, and its address.
const UPSTREAM_NAME: &str = "upstream.example.";
const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn table() -> MeshTable {
    let net = |id: NetworkId, third: u8| MeshNetwork {
        id,
        name: format!("n{third}"),
        subnet: Ipv4Addr::new(10, 0, third, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, third, 1),
        vni: 4096 + u32::from(third),
        internal: false,
    };
    let backend = |task: u128, slot: u64, net: u16, addr: [u8; 4]| MeshBackend {
        task: TaskId(task),
        node: NodeId(2),
        node_addr: "127.0.0.1:1".parse().unwrap(),
        addr: None,
        slot,
        overlay: vec![(net, Ipv4Addr::from(addr))],
    };
    MeshTable {
        version: 3,
        services: vec![
            MeshService {
                id: ServiceId(1),
                name: "web".into(),
                ports: Vec::new(),
                endpoint_mode: EndpointMode::Vip,
                networks: vec![MeshServiceNet {
                    network: 0,
                    vip: Some(Ipv4Addr::new(10, 0, 1, 254)),
                    aliases: vec!["www".into()],
                }],
                backends: vec![
                    backend(101, 1, 0, [10, 0, 1, 2]),
                    backend(102, 2, 0, [10, 0, 1, 3]),
                ],
            },
            MeshService {
                id: ServiceId(2),
                name: "db".into(),
                ports: Vec::new(),
                endpoint_mode: EndpointMode::Dnsrr,
                networks: vec![MeshServiceNet {
                    network: 1,
                    vip: None,
                    aliases: Vec::new(),
                }],
                backends: vec![backend(201, 1, 1, [10, 0, 2, 5])],
            },
        ],
        networks: vec![net(FRONT, 1), net(BACK, 2)],
        nodes: Vec::new(),
    }
}

/// A fake upstream on loopback: `UPSTREAM_NAME` has one address, every other name NXDOMAIN.
async fn fake_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_bytes(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_available = true;
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            let query = q.queries[0].clone();
            if query.name.to_ascii().eq_ignore_ascii_case(UPSTREAM_NAME)
                && query.query_type == RecordType::A
            {
                r.answers.push(Record::from_rdata(
                    query.name.clone(),
                    300,
                    RData::A(A(UPSTREAM_ADDR)),
                ));
            } else {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
            r.queries.push(query);
            let _ = sock.send_to(&r.to_bytes().unwrap(), from).await;
        }
    });
    addr
}

/// A server on 127.0.0.1 (any port), whose endpoints know a task at 127.0.0.1 on `FRONT`.
async fn server() -> (Dns, SocketAddr) {
    let upstream = fake_upstream().await;
    let endpoints = Endpoints::default();
    endpoints.set(
        TaskId(900),
        TaskEndpoint {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: BTreeMap::new(),
            host_network: false,
            overlay: [(FRONT, Ipv4Addr::new(10, 0, 1, 9))].into_iter().collect(),
        },
    );
    let (_tx, rx) = tokio::sync::watch::channel(Some(Arc::new(table())));
    // The sender may go: the server keeps answering from the last table.
    let config = DnsConfig {
        // Port 0 on the table's gateways: not reachable here, but harmless; the test talks
        // to the loopback listener.
        port: 0,
        upstream: Upstream::Servers(vec![upstream]),
        forward_timeout_ms: 500,
        ..DnsConfig::default()
    };
    let dns = Dns::start(ME, config, endpoints, rx, 1).unwrap();
    let addr = dns.listen_on("127.0.0.1:0".parse().unwrap()).unwrap();
    // The follower takes the table on its first turn.
    tokio::time::timeout(Duration::from_secs(2), async {
        while dns.inner.shared.table.read().unwrap().is_none() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the table reaches the handler");
    (dns, addr)
}

fn query(name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::new(4321, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_bytes().unwrap()
}

async fn ask_udp(from: Ipv4Addr, server: SocketAddr, name: &str, ty: RecordType) -> Message {
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(from), 0))
        .await
        .unwrap();
    sock.send_to(&query(name, ty), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_bytes(&buf[..n]).unwrap()
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_task_is_answered_the_names_of_its_networks_and_the_rest_is_forwarded() {
    let (dns, at) = server().await;
    let me = Ipv4Addr::LOCALHOST;

    eprintln!("phase: the VIP of a service on the asker's network, with a 1 s TTL");
    let m = ask_udp(me, at, "web", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 0, 1, 254)]);
    assert!(m.answers.iter().all(|r| r.ttl == 1));
    assert!(m.metadata.authoritative);

    eprintln!("phase: tasks.<service>, an alias, a task's own name");
    let m = ask_udp(me, at, "tasks.web.", RecordType::A).await;
    assert_eq!(
        addrs(&m),
        vec![Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)]
    );
    let m = ask_udp(me, at, "www", RecordType::A).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 0, 1, 254)]);
    let m = ask_udp(me, at, &format!("web.2.{}", TaskId(102)), RecordType::A).await;
    assert_eq!(addrs(&m), vec![Ipv4Addr::new(10, 0, 1, 3)]);

    eprintln!("phase: our name, another type: no data, not forwarded");
    let m = ask_udp(me, at, "web", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    eprintln!("phase: a service on a network the asker is not on goes upstream: NXDOMAIN");
    let m = ask_udp(me, at, "db", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    eprintln!("phase: an outside name is forwarded to the upstream and its answer relayed");
    let m = ask_udp(me, at, UPSTREAM_NAME, RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), vec![UPSTREAM_ADDR]);
    assert!(!m.metadata.authoritative);

    eprintln!("phase: an address no task of this node holds learns no cluster name");
    let m = ask_udp(Ipv4Addr::new(127, 0, 0, 2), at, "web", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let status = dns.status();
    assert!(status.answered >= 5, "{status:?}");
    assert!(status.forwarded >= 3, "{status:?}");
}

#[tokio::test]
async fn tcp_carries_the_same_answers() {
    let (_dns, at) = server().await;
    let mut s = TcpStream::connect(at).await.unwrap();
    let q = query("tasks.web", RecordType::A);
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    let m = Message::from_bytes(&buf).unwrap();
    assert_eq!(
        addrs(&m),
        vec![Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 1, 3)]
    );
}

/// A task's endpoint with only an ingress address.
fn ingress_endpoint(ip: Ipv4Addr) -> TaskEndpoint {
    TaskEndpoint {
        ip: IpAddr::V4(ip),
        ports: BTreeMap::new(),
        host_network: false,
        overlay: BTreeMap::new(),
    }
}

#[tokio::test]
async fn the_server_listens_on_the_gateways_of_the_table_and_of_the_ingress_slice() {
    let endpoints = Endpoints::default();
    endpoints.set(TaskId(5), ingress_endpoint(Ipv4Addr::new(10, 255, 7, 9)));
    let t = table();
    let got = super::gateways(Some(&t), &endpoints);
    let want: Vec<Ipv4Addr> = vec![
        Ipv4Addr::new(10, 0, 1, 1),
        Ipv4Addr::new(10, 0, 2, 1),
        Ipv4Addr::new(10, 255, 7, 1),
    ];
    assert_eq!(got.into_iter().collect::<Vec<_>>(), want);
}

#[tokio::test]
async fn a_tasks_ingress_gateway_is_served_the_moment_its_endpoint_is_recorded() {
    let endpoints = Endpoints::default();
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let config = DnsConfig {
        port: 0,
        upstream: Upstream::Servers(vec!["127.0.0.1:9".parse().unwrap()]),
        // The follow loop's poll comes once a minute: only the endpoints' watcher can bind
        // the gateway within the test.
        watch_ms: 60_000,
        ..DnsConfig::default()
    };
    let dns = Dns::start(ME, config, endpoints.clone(), rx, 1).unwrap();
    tokio::task::yield_now().await; // the follow loop's first turn: nothing to serve yet
    let serving = |dns: &Dns| (dns.status().listening.iter()).any(|a| a.starts_with("10.255.7.1:"));
    assert!(!serving(&dns));
    endpoints.set(TaskId(5), ingress_endpoint(Ipv4Addr::new(10, 255, 7, 9)));
    // No await in between: the runtime starts the task right after recording it.
    assert!(serving(&dns), "{:?}", dns.status());
    endpoints.clear(TaskId(5));
    assert!(!serving(&dns), "the last task's gateway is let go with it");
}
