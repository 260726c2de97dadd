//! Transport tests on real sockets (127.0.0.1, port 0), with credentials from a real CA.
//!
//! No test asserts how long something takes; where an event is asynchronous the test waits
//! for it under a generous limit and fails if it never comes.

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;

use super::*;
use crate::model::{NodeId, Role};
use crate::trust::{
    self, ClusterCa, NodeCredentials, NodeKey, PeerIdentity, SERVER_NAME, install_crypto_provider,
};
use crate::wire::{
    FRAME_BYTES_MAX, JoinRequest, JoinResponse, OneWay, PROTOCOL_VERSION, Request, Response,
    WireFailure, encode_frame, read_frame,
};

mod joining;
mod tunnels;

/// The longest any test waits for an event that should come at once.
const PATIENCE: Duration = Duration::from_secs(20);
const GOOD_TOKEN: &str = "the-good-token";

fn new_ca() -> ClusterCa {
    install_crypto_provider();
    ClusterCa::generate(SystemTime::now()).unwrap()
}

fn creds(ca: &ClusterCa, id: u128, role: Role) -> NodeCredentials {
    let key = NodeKey::generate().unwrap();
    let cert = ca
        .issue(
            &key.csr_der().unwrap(),
            NodeId(id),
            role,
            SystemTime::now(),
            Duration::from_secs(24 * 3600),
        )
        .unwrap();
    NodeCredentials::from_parts(key, cert, ca.cert_der().to_vec()).unwrap()
}

fn ident(c: &NodeCredentials) -> PeerIdentity {
    PeerIdentity {
        node_id: c.node_id,
        role: c.role,
    }
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// What a test node's responder saw, in arrival order.
#[derive(Debug, PartialEq)]
enum Seen {
    Request(Option<PeerIdentity>),
    OneWay(PeerIdentity),
    Datagram(PeerIdentity, Bytes),
}

/// A transport whose inbound messages are answered by a simple responder: `Ping` → `Pong`,
/// `Join` with [`GOOD_TOKEN`] → `Joined`, any other join → `BadToken`.
async fn node(
    config: TransportConfig,
    c: &NodeCredentials,
) -> (Transport, mpsc::UnboundedReceiver<Seen>) {
    let (t, mut rx) = Transport::bind(config, c).await.unwrap();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let me = ident(c);
    let ca_der = c.ca_cert_der.clone();
    tokio::spawn(async move {
        while let Some(inbound) = rx.recv().await {
            match inbound {
                Inbound::Request {
                    from, req, reply, ..
                } => {
                    // The test may have stopped listening; the responder carries on.
                    let _ = seen_tx.send(Seen::Request(from));
                    let resp = match req {
                        Request::Ping => Response::Pong,
                        Request::Join(j) if j.token == GOOD_TOKEN => {
                            Response::Joined(JoinResponse {
                                node_id: NodeId(99),
                                role: Role::Worker,
                                cert_der: vec![],
                                ca_cert_der: ca_der.clone(),
                                peers: vec![j.addr],
                                raft_id: None,
                            })
                        }
                        Request::Join(_) => Response::Failed(WireFailure::BadToken),
                        _ => Response::Failed(WireFailure::Invalid(format!("{me:?}"))),
                    };
                    let _ = reply.send(resp);
                }
                Inbound::OneWay { from, .. } => {
                    let _ = seen_tx.send(Seen::OneWay(from));
                }
                Inbound::Datagram { from, data, .. } => {
                    let _ = seen_tx.send(Seen::Datagram(from, data));
                }
            }
        }
    });
    (t, seen_rx)
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("an inbound message within the patience limit")
        .expect("responder alive")
}

/// A bare QUIC connection with any TLS client configuration, for speaking out of turn.
async fn raw_connect(
    tls: rustls::ClientConfig,
    server: SocketAddr,
) -> (
    quinn::Endpoint,
    Result<quinn::Connection, quinn::ConnectionError>,
) {
    let endpoint = quinn::Endpoint::client(local()).unwrap();
    let cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let conn = endpoint
        .connect_with(cfg, server, SERVER_NAME)
        .unwrap()
        .await;
    (endpoint, conn)
}

/// Writes raw bytes on a new bidirectional stream and reads the answer frame, if any.
async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<Option<Response>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    // The server may have reset the stream already; the read below tells.
    let _ = send.finish();
    tokio::time::timeout(PATIENCE, read_frame::<Response, _>(&mut recv))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())
}

fn join_request() -> JoinRequest {
    JoinRequest {
        token: GOOD_TOKEN.into(),
        csr_der: vec![],
        hostname: "joiner".into(),
        addr: "127.0.0.1:4000".parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_round_trip_shows_identities_on_both_sides() {
    let ca = new_ca();
    let (ca_, cb) = (creds(&ca, 1, Role::Manager), creds(&ca, 2, Role::Worker));
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let (b, mut b_seen) = node(TransportConfig::new(local()), &cb).await;

    tracing::info!("phase: a asks b; each side sees the other's certificate identity");
    let (who, resp) = a
        .request_identified(b.local_addr(), Request::Ping)
        .await
        .unwrap();
    assert!(matches!(resp, Response::Pong), "{resp:?}");
    assert_eq!(who, ident(&cb));
    assert_eq!(
        next_seen(&mut b_seen).await,
        Seen::Request(Some(ident(&ca_)))
    );
    assert_eq!(a.peer_identity(b.local_addr()), Some(ident(&cb)));

    tracing::info!("phase: the connection is reused, and b can ask a back");
    let resp = a.request(b.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong));
    let resp = b.request(a.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong));
    assert_eq!(a.stats().connections_open, 1, "{:?}", a.stats());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_and_oneway_messages_arrive_with_identity() {
    let ca = new_ca();
    let (ca_, cb) = (creds(&ca, 1, Role::Manager), creds(&ca, 2, Role::Worker));
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let (b, mut b_seen) = node(TransportConfig::new(local()), &cb).await;

    tracing::info!("phase: a one-way message from a reaches b, marked as a's");
    a.send_oneway(b.local_addr(), OneWay::Nop).unwrap();
    assert_eq!(next_seen(&mut b_seen).await, Seen::OneWay(ident(&ca_)));

    tracing::info!("phase: a datagram reaches b (resent until it does: datagrams may be lost)");
    let payload = Bytes::from_static(b"gossip");
    let got = tokio::time::timeout(PATIENCE, async {
        loop {
            a.send_datagram(b.local_addr(), payload.clone()).unwrap();
            if let Ok(Some(seen)) =
                tokio::time::timeout(Duration::from_millis(200), b_seen.recv()).await
            {
                return seen;
            }
        }
    })
    .await
    .expect("a datagram arrives");
    assert_eq!(got, Seen::Datagram(ident(&ca_), payload));
    assert!(a.stats().datagrams_sent >= 1);
    assert!(b.stats().datagrams_received >= 1);

    tracing::info!("phase: an oversized datagram is refused at the call");
    let big = Bytes::from(vec![0u8; DATAGRAM_BYTES_MAX + 1]);
    assert!(matches!(
        a.send_datagram(b.local_addr(), big),
        Err(TransportError::TooLarge { .. })
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_is_refused_at_the_handshake() {
    let ca = new_ca();
    let other = new_ca();
    let cb = creds(&ca, 2, Role::Worker);
    let foreign = creds(&other, 3, Role::Manager);
    let (b, mut b_seen) = node(TransportConfig::new(local()), &cb).await;

    tracing::info!("phase: a transport of another cluster cannot reach b");
    let (x, _x_seen) = node(TransportConfig::new(local()), &foreign).await;
    assert!(x.request(b.local_addr(), Request::Ping).await.is_err());

    tracing::info!("phase: a client that trusts b's CA but presents a foreign certificate");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .unwrap();
        roots
    })
    .with_client_auth_cert(
        vec![CertificateDer::from(foreign.cert_der.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(foreign.key().pkcs8_der())),
    )
    .unwrap();
    let mut tls = tls;
    tls.alpn_protocols = vec![trust::ALPN.to_vec()];
    let (_ep, conn) = raw_connect(tls, b.local_addr()).await;
    // TLS 1.3 lets the client finish before the server has judged its certificate, so the
    // refusal may show at the handshake or at the first exchange; either way nothing gets in.
    if let Ok(conn) = conn {
        let ping = encode_frame(&Request::Ping).unwrap();
        assert!(raw_exchange(&conn, &ping).await.is_err());
    }
    b.request(b.local_addr(), Request::Ping).await.unwrap();
    assert_eq!(
        next_seen(&mut b_seen).await,
        Seen::Request(Some(ident(&cb)))
    );
    assert!(b.stats().connections_refused >= 1, "{:?}", b.stats());
    x.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_cuts_every_connection_of_the_node_from_one_address() {
    let ca = new_ca();
    let ca_ = creds(&ca, 1, Role::Manager);
    let cb = creds(&ca, 2, Role::Worker);
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;

    tracing::info!("phase: b dials a twice from one endpoint, as simultaneous dials do");
    let endpoint = quinn::Endpoint::client(local()).unwrap();
    let tls = trust::client_config(&cb).unwrap();
    let cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut conns = Vec::new();
    for _ in 0..2 {
        let conn = endpoint
            .connect_with(cfg.clone(), a.local_addr(), SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let ping = encode_frame(&Request::Ping).unwrap();
        let resp = raw_exchange(&conn, &ping).await.unwrap();
        assert!(matches!(resp, Some(Response::Pong)), "{resp:?}");
        conns.push(conn);
    }

    tracing::info!("phase: a denies b: both connections close, neither is served");
    a.deny(NodeId(2));
    for conn in &conns {
        let closed = tokio::time::timeout(PATIENCE, conn.closed())
            .await
            .expect("every connection of the removed node closes");
        assert!(
            matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == conn::CODE_BAD_IDENTITY),
            "{closed}"
        );
        let ping = encode_frame(&Request::Ping).unwrap();
        assert!(raw_exchange(conn, &ping).await.is_err());
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_closes_only_its_stream() {
    let ca = new_ca();
    let (ca_, cb, cc) = (
        creds(&ca, 1, Role::Manager),
        creds(&ca, 2, Role::Worker),
        creds(&ca, 3, Role::Worker),
    );
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let (b, _b_seen) = node(TransportConfig::new(local()), &cb).await;
    let (_ep, conn) = raw_connect(trust::client_config(&cc).unwrap(), b.local_addr()).await;
    let conn = conn.unwrap();
    let ping = encode_frame(&Request::Ping).unwrap();

    let mut oversized = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0u8; 64]);
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    truncated.extend_from_slice(&[0u8; 10]);
    let mut undecodable = 6u32.to_be_bytes().to_vec();
    undecodable.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    undecodable.extend_from_slice(&[0xff; 4]);
    let mut other_version = ping.clone();
    other_version[4] = 0x7f;
    let cases = [
        ("oversized length", oversized),
        ("truncated", truncated),
        ("undecodable", undecodable),
        ("other protocol version", other_version),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        tracing::info!("phase: a {what} frame resets its stream, and only that");
        let got = raw_exchange(&conn, bytes).await;
        assert!(!matches!(got, Ok(Some(_))), "{what}: {got:?}");
        let resp = raw_exchange(&conn, &ping).await.unwrap();
        assert!(matches!(resp, Some(Response::Pong)), "{what}: {resp:?}");
        assert_eq!(b.stats().frames_refused, i as u64 + 1);
    }

    tracing::info!("phase: another peer is still served");
    let resp = a.request(b.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong));
    assert!(conn.close_reason().is_none(), "the connection survived");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbound_queue_answers_busy() {
    let ca = new_ca();
    let (ca_, cb) = (creds(&ca, 1, Role::Manager), creds(&ca, 2, Role::Worker));
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let mut config = TransportConfig::new(local());
    config.inbound_queue_max = 1;
    // b's inbound channel is never read: the first request fills it.
    let (b, _b_rx) = Transport::bind(config, &cb).await.unwrap();
    let to = b.local_addr();
    let (r1, r2) = tokio::join!(a.request(to, Request::Ping), a.request(to, Request::Ping));
    let busy = [&r1, &r2]
        .iter()
        .filter(|r| matches!(r, Ok(Response::Failed(WireFailure::Busy))))
        .count();
    assert_eq!(busy, 1, "{r1:?} {r2:?}");
    assert_eq!(b.stats().requests_busy, 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// An address on which nothing listens: a port the OS gave us, then closed.
fn dead_addr() -> SocketAddr {
    let sock = std::net::UdpSocket::bind(local()).unwrap();
    sock.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_fails_fast_and_stalls_nobody() {
    let ca = new_ca();
    let (ca_, cb) = (creds(&ca, 1, Role::Manager), creds(&ca, 2, Role::Worker));
    let mut config = TransportConfig::new(local());
    config.connect_timeout_ms = 300;
    config.request_timeout_ms = 600;
    let (a, _a_seen) = node(config, &ca_).await;
    let (b, mut b_seen) = node(TransportConfig::new(local()), &cb).await;
    let dead = dead_addr();

    tracing::info!("phase: a request to a dead address errs (the deadline bounds it)");
    let r = tokio::time::timeout(PATIENCE, a.request(dead, Request::Ping))
        .await
        .expect("the request deadline ends the wait");
    assert!(r.is_err(), "{r:?}");

    tracing::info!("phase: datagrams to the dead address are accepted at once, then dropped");
    for _ in 0..2000 {
        a.send_datagram(dead, Bytes::from_static(b"x")).unwrap();
    }
    tracing::info!("phase: meanwhile datagrams to a live peer still get through");
    let got = tokio::time::timeout(PATIENCE, async {
        loop {
            a.send_datagram(b.local_addr(), Bytes::from_static(b"alive"))
                .unwrap();
            if let Ok(Some(seen)) =
                tokio::time::timeout(Duration::from_millis(200), b_seen.recv()).await
            {
                return seen;
            }
        }
    })
    .await
    .expect("a datagram to the live peer arrives");
    assert!(matches!(got, Seen::Datagram(..)));
    tokio::time::timeout(PATIENCE, async {
        while a.stats().datagrams_dropped == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("datagrams to the dead peer are counted as dropped");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_credentials_serve_new_connections() {
    let ca = new_ca();
    let (ca_, cb, cc) = (
        creds(&ca, 1, Role::Manager),
        creds(&ca, 2, Role::Worker),
        creds(&ca, 3, Role::Worker),
    );
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let (b, _b_seen) = node(TransportConfig::new(local()), &cb).await;
    a.request(b.local_addr(), Request::Ping).await.unwrap();

    tracing::info!("phase: b renews as a manager; a new connection sees the new certificate");
    let renewed = creds(&ca, 2, Role::Manager);
    b.reload_credentials(&renewed).unwrap();
    let (_ep, conn) = raw_connect(trust::client_config(&cc).unwrap(), b.local_addr()).await;
    let conn = conn.unwrap();
    let certs = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<CertificateDer<'static>>>()
        .unwrap();
    assert_eq!(certs[0].as_ref(), renewed.cert_der.as_slice());
    let resp = raw_exchange(&conn, &encode_frame(&Request::Ping).unwrap())
        .await
        .unwrap();
    assert!(matches!(resp, Some(Response::Pong)));

    tracing::info!("phase: b's own outgoing connections present the new certificate too");
    let (c, mut c_seen) = node(TransportConfig::new(local()), &cc).await;
    b.request(c.local_addr(), Request::Ping).await.unwrap();
    assert_eq!(
        next_seen(&mut c_seen).await,
        Seen::Request(Some(ident(&renewed)))
    );
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn shutdown_refuses_further_sends() {
    let ca = new_ca();
    let (t, _seen) = node(TransportConfig::new(local()), &creds(&ca, 1, Role::Worker)).await;
    t.shutdown().await;
    assert!(matches!(
        t.send_datagram(dead_addr(), Bytes::new()),
        Err(TransportError::ShutDown)
    ));
    assert!(matches!(
        t.send_oneway(dead_addr(), OneWay::Nop),
        Err(TransportError::ShutDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sender_loses_its_stream_at_the_deadline() {
    let ca = new_ca();
    let (cb, cc) = (creds(&ca, 2, Role::Worker), creds(&ca, 3, Role::Worker));
    let mut config = TransportConfig::new(local());
    config.connect_timeout_ms = 300;
    config.request_timeout_ms = 300;
    let (b, _b_seen) = node(config, &cb).await;
    let (_ep, conn) = raw_connect(trust::client_config(&cc).unwrap(), b.local_addr()).await;
    let conn = conn.unwrap();

    tracing::info!("phase: two bytes of a length prefix, then silence: the stream is reset");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0]).await.unwrap();
    let got = tokio::time::timeout(PATIENCE, read_frame::<Response, _>(&mut recv))
        .await
        .expect("the server gives up on the stream");
    assert!(got.is_err(), "{got:?}");
    assert_eq!(b.stats().frames_refused, 1);

    tracing::info!("phase: the connection still serves a prompt request");
    let resp = raw_exchange(&conn, &encode_frame(&Request::Ping).unwrap())
        .await
        .unwrap();
    assert!(matches!(resp, Some(Response::Pong)));
    b.shutdown().await;
}

#[tokio::test]
async fn a_full_peer_queue_refuses_oneway_messages() {
    // A single-threaded runtime: the peer task cannot run between these calls, so the queue
    // fills deterministically.
    let ca = new_ca();
    let mut config = TransportConfig::new(local());
    config.peer_queue_max = 2;
    config.peers_max = 1;
    let (t, _seen) = node(config, &creds(&ca, 1, Role::Worker)).await;
    let dead = dead_addr();
    t.send_oneway(dead, OneWay::Nop).unwrap();
    t.send_oneway(dead, OneWay::Nop).unwrap();
    assert!(matches!(
        t.send_oneway(dead, OneWay::Nop),
        Err(TransportError::QueueFull)
    ));
    tracing::info!("phase: a second peer is over peers_max");
    let other = dead_addr();
    assert!(matches!(
        t.send_oneway(other, OneWay::Nop),
        Err(TransportError::TooManyPeers(1))
    ));
    t.shutdown().await;
}

#[test]
fn config_validation_names_the_bad_field() {
    assert!(TransportConfig::new(local()).validate().is_ok());
    let mut c = TransportConfig::new(local());
    c.keep_alive_ms = c.idle_timeout_ms;
    assert!(matches!(c.validate(), Err(TransportError::Config(m)) if m.contains("keep_alive_ms")));
    let mut c = TransportConfig::new(local());
    c.inbound_queue_max = 0;
    assert!(
        matches!(c.validate(), Err(TransportError::Config(m)) if m.contains("inbound_queue_max"))
    );
    let mut c = TransportConfig::new(local());
    c.streams_per_connection_max = STREAMS_PER_CONNECTION_LIMIT + 1;
    assert!(c.validate().is_err());
    let mut c = TransportConfig::new(local());
    c.connect_timeout_ms = c.request_timeout_ms + 1;
    assert!(c.validate().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_node_is_refused_both_ways() {
    let ca = new_ca();
    let (ca_, cb, cc) = (
        creds(&ca, 1, Role::Manager),
        creds(&ca, 2, Role::Worker),
        creds(&ca, 3, Role::Worker),
    );
    let (a, _a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let (b, _b_seen) = node(TransportConfig::new(local()), &cb).await;
    let (c, _c_seen) = node(TransportConfig::new(local()), &cc).await;

    tracing::info!("phase: b talks to a before it is removed");
    let resp = b.request(a.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong));

    tracing::info!("phase: a denies b: b's open connection closes, new ones fail either way");
    a.deny(NodeId(2));
    let err = b.request(a.local_addr(), Request::Ping).await;
    assert!(err.is_err(), "a removed node was served: {err:?}");
    let err = a.request(b.local_addr(), Request::Ping).await;
    assert!(err.is_err(), "a connected to a removed node: {err:?}");

    tracing::info!("phase: everyone else is still served");
    let resp = c.request(a.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong));
    for t in [a, b, c] {
        t.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_node_is_refused_at_its_next_stream_on_a_connection_still_open() {
    let ca = new_ca();
    let ca_ = creds(&ca, 1, Role::Manager);
    let cb = creds(&ca, 2, Role::Worker);
    let (a, mut a_seen) = node(TransportConfig::new(local()), &ca_).await;
    let (_ep, conn) = raw_connect(trust::client_config(&cb).unwrap(), a.local_addr()).await;
    let conn = conn.unwrap();
    let ping = encode_frame(&Request::Ping).unwrap();
    let resp = raw_exchange(&conn, &ping).await.unwrap();
    assert!(matches!(resp, Some(Response::Pong)), "{resp:?}");
    assert_eq!(
        next_seen(&mut a_seen).await,
        Seen::Request(Some(ident(&cb)))
    );

    tracing::info!("phase: b is denied but its connection is left open, as if the close raced");
    a.deny_list_only(NodeId(2));
    assert!(conn.close_reason().is_none());

    tracing::info!("phase: b's next stream is refused and its connection closed");
    assert!(raw_exchange(&conn, &ping).await.is_err());
    let closed = tokio::time::timeout(PATIENCE, conn.closed())
        .await
        .expect("closed at its next stream");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == conn::CODE_BAD_IDENTITY),
        "{closed}"
    );
    a.request(a.local_addr(), Request::Ping).await.unwrap();
    assert_eq!(
        next_seen(&mut a_seen).await,
        Seen::Request(Some(ident(&ca_))),
        "the next thing a served is its own ping, not b's"
    );
    a.shutdown().await;
}
