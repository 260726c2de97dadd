//! Tunnels: the handoff to the registered handler, and the per-peer bounds.

use super::*;
use crate::model::{PortProtocol, ServiceId, TaskId};
use crate::wire::TunnelRequest;

fn tunnel_request() -> TunnelRequest {
    TunnelRequest {
        network: None,
        service: ServiceId(1),
        task: TaskId(1),
        protocol: PortProtocol::Tcp,
        published: 8080,
        target: 80,
        client: "127.0.0.9:1000".parse().unwrap(),
        entry: "127.0.0.1:8080".parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_reach_the_handler_within_their_bounds_and_requests_still_pass() {
    let ca = new_ca();
    let ca_ = creds(&ca, 1, Role::Worker);
    let cb = creds(&ca, 2, Role::Worker);
    let mut config = TransportConfig::new(local());
    config.streams_per_connection_max = 8;
    config.tunnels_per_peer_max = 2;
    let (a, _a_seen) = node(config.clone(), &ca_).await;
    let (b, _b_seen) = node(config, &cb).await;
    let req = tunnel_request();

    tracing::info!("phase: no handler on a: the tunnel is refused Unreachable");
    match b.open_tunnel(a.local_addr(), &req).await {
        Err(TransportError::Refused(WireFailure::Unreachable(_))) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }

    tracing::info!("phase: a's handler accepts each tunnel and echoes its bytes");
    let (tx, mut rx) = mpsc::channel::<InboundTunnel>(8);
    a.serve_tunnels(tx);
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            assert_eq!(t.from.node_id, NodeId(2));
            tokio::spawn(async move {
                let mut open = t.accept().await.unwrap();
                let _ = tokio::io::copy(&mut open.recv, &mut open.send).await;
                let _ = open.send.finish();
            });
        }
    });
    let mut one = b.open_tunnel(a.local_addr(), &req).await.unwrap();
    let two = b.open_tunnel(a.local_addr(), &req).await.unwrap();
    assert_eq!(b.tunnels_open_to(a.local_addr()), 2);
    one.send.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::io::AsyncReadExt::read_exact(&mut one.recv, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"hello");

    tracing::info!("phase: a third tunnel to the same peer is refused at b's bound");
    assert!(matches!(
        b.open_tunnel(a.local_addr(), &req).await,
        Err(TransportError::QueueFull)
    ));
    assert_eq!(b.stats().tunnels_refused, 1);
    tracing::info!("phase: requests still find a stream while the tunnels are open");
    let resp = b.request(a.local_addr(), Request::Ping).await.unwrap();
    assert!(matches!(resp, Response::Pong), "{resp:?}");

    tracing::info!("phase: a closed tunnel gives its place back");
    drop(two);
    assert_eq!(b.tunnels_open_to(a.local_addr()), 1);
    // b frees its place at once; a frees its own when it sees the stream end, a moment later,
    // and until then refuses the tunnel as Busy at its per-peer bound.
    let mut third = Err(TransportError::QueueFull);
    for _ in 0..100 {
        third = b.open_tunnel(a.local_addr(), &req).await;
        match &third {
            Err(TransportError::Refused(WireFailure::Busy)) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            _ => break,
        }
    }
    let _three = third.unwrap();
}

#[test]
fn tunnels_must_leave_streams_for_requests() {
    let mut c = TransportConfig::new(local());
    c.streams_per_connection_max = 16;
    c.tunnels_per_peer_max = 16;
    assert!(c.validate().is_err());
    c.tunnels_per_peer_max = 15;
    c.validate().unwrap();
    c.tunnels_per_peer_max = 0;
    assert!(c.validate().is_err());
}
