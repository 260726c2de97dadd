//! Joining: what a node without a certificate may do, how a seed is pinned and checked, and the
//! join itself, on real sockets like the other transport tests.

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_pins_the_ca_by_digest() {
    let ca = new_ca();
    let other = new_ca();
    let cb = creds(&ca, 2, Role::Manager);
    let (b, mut b_seen) = node(TransportConfig::new(local()), &cb).await;
    let t = Duration::from_secs(10);

    tracing::info!("phase: the right digest and token join, unauthenticated");
    let resp = join(b.local_addr(), &ca.digest(), join_request(), t)
        .await
        .unwrap();
    assert_eq!(resp.node_id, NodeId(99));
    assert_eq!(next_seen(&mut b_seen).await, Seen::Request(None));

    tracing::info!("phase: a refusal from the seed comes back as Refused");
    let mut bad = join_request();
    bad.token = "wrong".into();
    let err = join(b.local_addr(), &ca.digest(), bad, t)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Refused(WireFailure::BadToken)),
        "{err}"
    );
    assert_eq!(next_seen(&mut b_seen).await, Seen::Request(None));

    tracing::info!("phase: a digest of another CA fails the handshake; b never hears of it");
    let err = join(b.local_addr(), &other.digest(), join_request(), t)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    b.request(b.local_addr(), Request::Ping).await.unwrap();
    assert_eq!(
        next_seen(&mut b_seen).await,
        Seen::Request(Some(ident(&cb))),
        "the next thing b saw is its own ping, not the foreign join"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_peer_may_only_join() {
    let ca = new_ca();
    let cb = creds(&ca, 2, Role::Worker);
    let (b, mut b_seen) = node(TransportConfig::new(local()), &cb).await;
    let (_ep, conn) = raw_connect(
        trust::join_client_config(&ca.digest()).unwrap(),
        b.local_addr(),
    )
    .await;
    let conn = conn.unwrap();

    tracing::info!("phase: a ping without a certificate is refused before the node sees it");
    let ping = encode_frame(&Request::Ping).unwrap();
    let resp = raw_exchange(&conn, &ping).await.unwrap();
    assert!(
        matches!(resp, Some(Response::Failed(WireFailure::Unauthenticated))),
        "{resp:?}"
    );

    tracing::info!("phase: the connection is closed after its one answer");
    let closed = tokio::time::timeout(PATIENCE, conn.closed())
        .await
        .expect("closed after the answer");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == conn::CODE_ANSWERED),
        "{closed}"
    );

    tracing::info!("phase: a join on a new connection goes through");
    let (_ep, conn) = raw_connect(
        trust::join_client_config(&ca.digest()).unwrap(),
        b.local_addr(),
    )
    .await;
    let join = encode_frame(&Request::Join(join_request())).unwrap();
    let resp = raw_exchange(&conn.unwrap(), &join).await.unwrap();
    assert!(matches!(resp, Some(Response::Joined(_))), "{resp:?}");
    assert_eq!(next_seen(&mut b_seen).await, Seen::Request(None));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_a_certificate_have_their_own_budget() {
    let ca = new_ca();
    let cb = creds(&ca, 2, Role::Manager);
    let cc = creds(&ca, 3, Role::Worker);
    let mut config = TransportConfig::new(local());
    config.unauthenticated_connections_max = 2;
    config.connections_max = 4;
    let (b, _b_seen) = node(config, &cb).await;

    tracing::info!("phase: four anonymous peers send a 1 MiB length prefix and nothing more");
    let prefix = (FRAME_BYTES_MAX as u32).to_be_bytes();
    let mut held = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let (ep, conn) = raw_connect(
            trust::join_client_config(&ca.digest()).unwrap(),
            b.local_addr(),
        )
        .await;
        if let Ok(conn) = &conn
            && let Ok((mut send, recv)) = conn.open_bi().await
        {
            // A refused connection may be closed before this is written: fine.
            let _ = send.write_all(&prefix).await;
            streams.push((send, recv));
        }
        held.push((ep, conn));
    }
    let is_busy = |e: &quinn::ConnectionError| matches!(e, quinn::ConnectionError::ApplicationClosed(a) if a.error_code == conn::CODE_BUSY);
    let refused = |held: &[(
        quinn::Endpoint,
        Result<quinn::Connection, quinn::ConnectionError>,
    )]| {
        held.iter()
            .filter(|(_, c)| match c {
                Ok(c) => c.close_reason().is_some_and(|e| is_busy(&e)),
                Err(e) => is_busy(e),
            })
            .count()
    };
    let ok = tokio::time::timeout(PATIENCE, async {
        while refused(&held) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "the two over the budget were not refused");
    assert_eq!(b.stats().unauthenticated_refused, 2, "{:?}", b.stats());
    assert_eq!(b.stats().unauthenticated_open, 2, "{:?}", b.stats());

    tracing::info!("phase: members still connect: anonymous peers hold none of connections_max");
    let (c, _c_seen) = node(TransportConfig::new(local()), &cc).await;
    let resp = c.request(b.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong));

    tracing::info!(
        "phase: the stalled ones are cut at the read deadline, and the budget comes back"
    );
    let ok = tokio::time::timeout(PATIENCE, async {
        while b.stats().unauthenticated_open > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{:?}", b.stats());
    drop((held, streams));
    c.shutdown().await;
    b.shutdown().await;
}

#[test]
fn only_a_managers_certificate_may_take_a_join_token() {
    let seed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let manager = PeerIdentity {
        node_id: NodeId(1),
        role: Role::Manager,
    };
    let worker = PeerIdentity {
        node_id: NodeId(2),
        role: Role::Worker,
    };
    assert_eq!(
        join::seed_may_take_token(seed, Ok(Some(manager))).unwrap(),
        manager
    );
    let err = join::seed_may_take_token(seed, Ok(Some(worker))).unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::SeedNotAManager {
                node: NodeId(2),
                role: Role::Worker,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not sent"), "{err}");
    let err = join::seed_may_take_token(seed, Ok(None)).unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    let bad = trust::TrustError::BadIdentity("no common name".into());
    let err = join::seed_may_take_token(seed, Err(bad)).unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_never_sends_its_token_to_a_worker() {
    let ca = new_ca();
    let cw = creds(&ca, 5, Role::Worker);
    let (w, mut w_seen) = node(TransportConfig::new(local()), &cw).await;

    tracing::info!("phase: a join through a worker fails before the request is written");
    let err = join(
        w.local_addr(),
        &ca.digest(),
        join_request(),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::SeedNotAManager {
                node: NodeId(5),
                ..
            }
        ),
        "{err}"
    );

    tracing::info!("phase: the worker saw nothing; the next thing it sees is its own ping");
    w.request(w.local_addr(), Request::Ping).await.unwrap();
    assert_eq!(
        next_seen(&mut w_seen).await,
        Seen::Request(Some(ident(&cw)))
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_token_and_then_speaks_mutual_tls() {
    use rand::SeedableRng;
    let ca = new_ca();
    let seed_creds = creds(&ca, 1, Role::Manager);
    let tokens = trust::Tokens::generate(ca.digest(), &mut rand::rngs::StdRng::seed_from_u64(5));
    let worker_token = tokens.worker.to_string();
    let (seed, mut rx) = Transport::bind(TransportConfig::new(local()), &seed_creds)
        .await
        .unwrap();
    let ca_der = ca.cert_der().to_vec();
    let seed_addr = seed.local_addr();
    tokio::spawn(async move {
        // The seed's side of a join, as the node will do it: check the token, sign the CSR.
        while let Some(inbound) = rx.recv().await {
            if let Inbound::Request { req, reply, .. } = inbound {
                let resp = match req {
                    Request::Join(j) => match tokens.check(&j.token) {
                        Ok(role) => {
                            let cert = ca
                                .issue(
                                    &j.csr_der,
                                    NodeId(7),
                                    role,
                                    SystemTime::now(),
                                    Duration::from_secs(3600),
                                )
                                .unwrap();
                            Response::Joined(JoinResponse {
                                node_id: NodeId(7),
                                role,
                                cert_der: cert,
                                ca_cert_der: ca_der.clone(),
                                peers: vec![seed_addr],
                                raft_id: None,
                            })
                        }
                        Err(refusal) => Response::Failed(refusal.into()),
                    },
                    Request::Ping => Response::Pong,
                    _ => Response::Failed(WireFailure::Invalid("unexpected".into())),
                };
                let _ = reply.send(resp);
            }
        }
    });

    tracing::info!("phase: a rotated-away or foreign token is refused with the right reason");
    let key = NodeKey::generate().unwrap();
    let mut req = JoinRequest {
        token: {
            // The worker token with its last character changed: a wrong secret.
            let (head, last) = worker_token.split_at(worker_token.len() - 1);
            format!("{head}{}", if last == "x" { "y" } else { "x" })
        },
        csr_der: key.csr_der().unwrap(),
        hostname: "w".into(),
        addr: local(),
    };
    let digest = seed_creds_digest(&seed_creds);
    let t = Duration::from_secs(10);
    let err = join(seed_addr, &digest, req.clone(), t).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Refused(WireFailure::BadToken)),
        "{err}"
    );

    tracing::info!("phase: the worker token gets a certificate that works for mutual TLS");
    req.token = worker_token;
    let resp = join(seed_addr, &digest, req, t).await.unwrap();
    let mine = NodeCredentials::from_parts(key, resp.cert_der, resp.ca_cert_der).unwrap();
    assert_eq!((mine.node_id, mine.role), (NodeId(7), Role::Worker));
    let (me, _rx) = Transport::bind(TransportConfig::new(local()), &mine)
        .await
        .unwrap();
    let (who, resp) = me
        .request_identified(seed_addr, Request::Ping)
        .await
        .unwrap();
    assert!(matches!(resp, Response::Pong));
    assert_eq!(who, ident(&seed_creds));
    me.shutdown().await;
    seed.shutdown().await;
}

fn seed_creds_digest(c: &NodeCredentials) -> trust::CaDigest {
    trust::CaDigest::of_cert(&c.ca_cert_der)
}
