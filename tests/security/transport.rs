//! Attacks on the transport and admission layers: a worker posing as a seed to collect a
//! manager token, a removed node keeping a second connection, and peers without a certificate
//! flooding a manager with connections and bare length prefixes. Ports 25301-25499.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use swarm_actors::transport::Inbound;
use swarm_actors::trust::{self, JoinToken, SERVER_NAME};
use swarm_actors::wire::{
    FRAME_BYTES_MAX, JoinRequest, Request, Response, WireFailure, encode_frame, read_frame,
};

use crate::common::{self, Node, phase, wait_until};
use crate::peer::{Liar, runtime};

const LIMIT: Duration = Duration::from_secs(30);

/// The transport's close code for a connection refused at a bound (`conn::CODE_BUSY`).
const CODE_BUSY: u32 = 6;
/// The close code for a removed node's connection (`conn::CODE_BAD_IDENTITY`).
const CODE_REMOVED: u32 = 5;
/// The close code after the one answer a peer without a certificate gets.
const CODE_ANSWERED: u32 = 8;

/// A QUIC client configuration from one of the trust module's TLS configurations.
macro_rules! quic_client {
    ($tls:expr) => {
        quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from($tls.expect("a TLS configuration"))
                .expect("a QUIC-capable TLS configuration"),
        ))
    };
}

fn closed_with(e: &quinn::ConnectionError, code: u32) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(a) if a.error_code == quinn::VarInt::from_u32(code))
}

/// Sends `req` on a new stream of `conn` and reads the answer.
async fn exchange(conn: &quinn::Connection, req: &Request) -> Result<Option<Response>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let frame = encode_frame(req).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    // The peer may have reset the stream already; the read says.
    let _ = send.finish();
    tokio::time::timeout(LIMIT, read_frame::<Response, _>(&mut recv))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())
}

#[test]
fn a_worker_posing_as_a_seed_never_receives_a_manager_token() {
    common::phase(
        "attack: a worker poses as a seed to collect a manager token from a joining node",
    );
    // The test talks to the nodes itself, from this process's namespace.
    let _host = common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let m = Node::bootstrap(root.path(), "m", 25301);
    let manager_token = m.token("manager");
    let rt = runtime();
    let liar_addr: SocketAddr = "127.0.0.1:25302".parse().unwrap();
    let mut liar = rt.block_on(Liar::join(m.addr, &m.token("worker"), liar_addr, "liar"));

    phase("a real node is told to join through the liar with the manager token: it refuses");
    let victim = Node::new(
        root.path(),
        "victim",
        25303,
        Some((liar_addr, manager_token.clone())),
    );
    let out = victim.start_command().output().unwrap();

    phase("the liar's endpoint never saw a join request, so never the token");
    while let Ok(inbound) = liar.inbound.try_recv() {
        if let Inbound::Request {
            req: Request::Join(j),
            ..
        } = inbound
        {
            panic!(
                "the liar received a join request (token {} the manager's)",
                if j.token == manager_token {
                    "is"
                } else {
                    "is not"
                }
            );
        }
    }

    phase("the joining node failed, and says the seed is no manager");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "joined through a worker: {stderr}");
    assert!(
        stderr.contains("not sent") && stderr.contains("manager"),
        "the error does not say the seed is no manager: {stderr}"
    );

    phase("nothing joined: the cluster holds the manager and the liar only");
    let rows = m.node_ls();
    assert!(
        rows.len() == 2 && !rows.iter().any(|r| r["Hostname"] == "victim"),
        "{rows:?}"
    );
    rt.block_on(liar.transport.shutdown());
}

#[test]
fn a_removed_node_loses_every_connection_it_holds() {
    common::phase("attack: a removed node keeps a second connection open and goes on asking");
    // The test talks to the nodes itself, from this process's namespace.
    let _host = common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let m = Node::bootstrap(root.path(), "m", 25311);
    let rt = runtime();
    let liar_addr: SocketAddr = "127.0.0.1:25312".parse().unwrap();
    let liar = rt.block_on(Liar::join(m.addr, &m.token("worker"), liar_addr, "liar"));

    phase("the liar opens two connections from one address, as simultaneous dials do");
    let conns = rt.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let cfg = quic_client!(trust::client_config(&liar.creds));
        let mut conns = Vec::new();
        for _ in 0..2 {
            let conn = endpoint
                .connect_with(cfg.clone(), m.addr, SERVER_NAME)
                .unwrap()
                .await
                .expect("the liar's certificate is good");
            let resp = exchange(&conn, &Request::Ping).await;
            assert!(matches!(resp, Ok(Some(Response::Pong))), "{resp:?}");
            conns.push(conn);
        }
        (endpoint, conns)
    });

    phase("node rm --force the liar through the manager");
    m.ok(&["node", "rm", "--force", &liar.id().to_string()]);

    phase("both connections are cut, and neither is served again");
    rt.block_on(async {
        for (i, conn) in conns.1.iter().enumerate() {
            let closed = tokio::time::timeout(LIMIT, conn.closed())
                .await
                .unwrap_or_else(|_| panic!("connection {i} of the removed node is still open"));
            assert!(
                closed_with(&closed, CODE_REMOVED),
                "connection {i}: {closed}"
            );
            let resp = exchange(conn, &Request::Ping).await;
            assert!(resp.is_err(), "connection {i} still served: {resp:?}");
        }
        let resp = liar.transport.request(m.addr, Request::Ping).await;
        assert!(resp.is_err(), "a new connection was served: {resp:?}");
    });

    phase("the manager still serves its own CLI");
    m.ok(&["node", "ls"]);
}

#[test]
fn peers_without_a_certificate_are_bounded_and_everyone_else_is_served() {
    common::phase(
        "attack: peers without a certificate open many connections and send bare 1 MiB length prefixes",
    );
    // The test talks to the nodes itself, from this process's namespace.
    let _host = common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    let m = Node::bootstrap(root.path(), "m", 25321);
    let worker_token = m.token("worker");
    let digest = worker_token.parse::<JoinToken>().unwrap().ca_digest;
    let rt = runtime();
    let member = rt.block_on(Liar::join(
        m.addr,
        &worker_token,
        "127.0.0.1:25322".parse().unwrap(),
        "member",
    ));
    let anon = || quic_client!(trust::join_client_config(&digest));

    phase("200 anonymous connections, each a stream with a 1 MiB prefix and no body");
    const FLOOD: usize = 200;
    let (endpoint, flood) = rt.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..FLOOD {
            let (endpoint, cfg, to) = (endpoint.clone(), anon(), m.addr);
            tasks.push(tokio::spawn(async move {
                let conn = endpoint.connect_with(cfg, to, SERVER_NAME).unwrap().await?;
                let mut stream = None;
                if let Ok((mut send, recv)) = conn.open_bi().await {
                    let prefix = (FRAME_BYTES_MAX as u32).to_be_bytes();
                    // Refused connections close under the write: fine.
                    let _ = send.write_all(&prefix).await;
                    stream = Some((send, recv));
                }
                Ok::<_, quinn::ConnectionError>((conn, stream))
            }));
        }
        let (mut flood, mut streams) = (Vec::new(), Vec::new());
        for t in tasks {
            match t.await.unwrap() {
                Ok((conn, stream)) => {
                    flood.push(Ok(conn));
                    // Held so each stream stays open until the node gives up on it.
                    streams.push(stream);
                }
                Err(e) => flood.push(Err(e)),
            }
        }
        (endpoint, (flood, streams))
    });
    let (flood, _streams) = flood;
    let refused = |flood: &[Result<quinn::Connection, quinn::ConnectionError>]| {
        flood
            .iter()
            .filter(|c| match c {
                Ok(c) => c.close_reason().is_some_and(|e| closed_with(&e, CODE_BUSY)),
                Err(e) => closed_with(e, CODE_BUSY),
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || refused(&flood) > 0),
        "no anonymous connection was refused: all {FLOOD} were taken"
    );
    eprintln!("{} of {FLOOD} refused at the budget", refused(&flood));

    phase("while they are open, members are served: the CLI, and a member's requests");
    m.ok(&["node", "ls"]);
    let resp = rt.block_on(member.transport.request(m.addr, Request::Ping));
    assert!(matches!(resp, Ok(Response::Pong)), "{resp:?}");

    phase("the stalled ones are cut at the read deadline; then a real worker joins");
    rt.block_on(async {
        let all_closed = tokio::time::timeout(LIMIT, async {
            for c in flood.iter().flatten() {
                c.closed().await;
            }
        })
        .await;
        assert!(all_closed.is_ok(), "some anonymous connection stayed open");
    });
    let w = Node::join(root.path(), "w", 25323, m.addr, &worker_token);
    assert!(
        wait_until(LIMIT, || m
            .node_ls()
            .iter()
            .any(|r| r["Hostname"] == "w" && r["Status"] == "Ready")),
        "{:?}",
        m.node_ls()
    );
    drop(w);

    phase("a peer without a certificate may not ask anything but Join, and gets one answer");
    rt.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(anon(), m.addr, SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let resp = exchange(&conn, &Request::Ping).await;
        assert!(
            matches!(
                resp,
                Ok(Some(Response::Failed(WireFailure::Unauthenticated)))
            ),
            "{resp:?}"
        );
        let closed = tokio::time::timeout(LIMIT, conn.closed())
            .await
            .expect("closed after its one answer");
        assert!(closed_with(&closed, CODE_ANSWERED), "{closed}");
    });

    phase("a wrong token from a peer without a certificate is refused, nothing changed");
    rt.block_on(async {
        let conn = endpoint
            .connect_with(anon(), m.addr, SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (digest_part, _) = worker_token.rsplit_once('-').unwrap();
        let req = Request::Join(JoinRequest {
            token: format!("{digest_part}-{}", "0".repeat(25)),
            csr_der: vec![1, 2, 3],
            hostname: "anon".into(),
            addr: "127.0.0.1:9".parse().unwrap(),
        });
        let resp = exchange(&conn, &req).await;
        assert!(
            matches!(resp, Ok(Some(Response::Failed(WireFailure::BadToken)))),
            "{resp:?}"
        );
    });
    assert!(
        !m.node_ls().iter().any(|r| r["Hostname"] == "anon"),
        "{:?}",
        m.node_ls()
    );
}
