//! Benchmark: the replicated store on three managers over real QUIC on loopback.
//!
//! `cargo bench -p swarm-actors --bench store` prints:
//! - write latency through the leader, one write at a time (p50, p99);
//! - writes per second with 64 writers at once;
//! - with 100,000 objects written (in batches of 1,000), the time to restart a manager from its
//!   disk (snapshot + log) until its replica holds all of them again.
//!
//! Prints figures; asserts only that the work was done.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use swarm_actors::model::{Availability, NodeId, Role};
use swarm_actors::replica::{StoreArgs, StoreHandle, spawn_store};
use swarm_actors::store::{
    Bootstrap, Expect, Kind, NodeObject, NodeSpec, ObjectBody, Op, StoreCommand, StoreConfig,
};
use swarm_actors::transport::{Inbound, Transport, TransportConfig};
use swarm_actors::trust::{self, ClusterCa, NodeCredentials, NodeKey};
use swarm_actors::wire::{OneWay, Request, StoreRequest};
use tokio::sync::mpsc;

const WRITES_SEQUENTIAL: usize = 2_000;
const WRITERS: usize = 64;
const WRITES_CONCURRENT: usize = 20_000;
const OBJECTS_BIG: usize = 100_000;
const BATCH: usize = 1_000;

fn node_object(i: usize, addr: SocketAddr) -> ObjectBody {
    ObjectBody::Node(NodeObject {
        id: NodeId(i as u128 + 1),
        spec: NodeSpec {
            role: Role::Worker,
            availability: Availability::Active,
            labels: [("bench".to_string(), format!("{i}"))].into(),
        },
        description: None,
        raft_id: None,
        addr,
    })
}

fn put(i: usize, addr: SocketAddr) -> Op {
    Op::Put {
        kind: Kind::Node,
        id: format!("bench-{i}"),
        expect: Expect::Any,
        body: node_object(i, addr),
    }
}

fn command(ops: Vec<Op>) -> StoreCommand {
    StoreCommand {
        now_ms: swarm_actors::clock::unix_ms(),
        ops,
    }
}

/// Carries raft traffic and forwarded operations from a transport into a store, as the
/// NodeActor does in a real node.
fn pump(mut rx: mpsc::Receiver<Inbound>, store: StoreHandle) {
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                Inbound::OneWay {
                    from,
                    remote,
                    msg: OneWay::Raft(chunk),
                } => store.raft(chunk, remote, from),
                Inbound::Request {
                    from: Some(p),
                    req: Request::Store(op),
                    reply,
                    ..
                } => match op {
                    StoreRequest::ReadIndex => store.forwarded_read(p.node_id, reply),
                    op => store.forwarded(op, p.node_id, reply),
                },
                _ => {}
            }
        }
    });
}

struct Manager {
    store: StoreHandle,
    transport: Transport,
    creds: NodeCredentials,
    dir: std::path::PathBuf,
    raft_id: u64,
}

async fn manager(
    ca: &ClusterCa,
    i: u64,
    root: &std::path::Path,
    bootstrap: impl FnOnce(NodeId, SocketAddr) -> Bootstrap,
    config: StoreConfig,
) -> Manager {
    let key = NodeKey::generate().unwrap();
    let id = NodeId(1_000 + i as u128);
    let cert = ca
        .issue(
            &key.csr_der().unwrap(),
            id,
            Role::Manager,
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let creds = NodeCredentials::from_parts(key, cert, ca.cert_der().to_vec()).unwrap();
    let (transport, rx) =
        Transport::bind(TransportConfig::new("127.0.0.1:0".parse().unwrap()), &creds)
            .await
            .unwrap();
    let dir = root.join(format!("m{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let args = StoreArgs {
        data_dir: dir.clone(),
        raft_id: i,
        node_id: id,
        bootstrap: bootstrap(id, transport.local_addr()),
        config,
        transport: transport.clone(),
        rng_seed: i,
        registry: None,
        managers: Default::default(),
    };
    let (store, _) = spawn_store(args).await.unwrap();
    pump(rx, store.clone());
    Manager {
        store,
        transport,
        creds,
        dir,
        raft_id: i,
    }
}

async fn retry_until_ok<
    T,
    F: std::future::Future<Output = Result<T, swarm_actors::replica::StoreFailure>>,
>(
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e; // not ready yet: an election or a catch-up is under way
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the store did not take the operation: {e}"),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    trust::install_crypto_provider();
    let root = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate(SystemTime::now()).unwrap();
    let config = StoreConfig {
        snapshot_every_entries: 50,
        ..StoreConfig::default()
    };
    let m1 = manager(
        &ca,
        1,
        root.path(),
        |node_id, addr| Bootstrap::NewCluster { node_id, addr },
        config.clone(),
    )
    .await;
    let mut others = Vec::new();
    for i in 2..=3u64 {
        let m = manager(&ca, i, root.path(), |_, _| Bootstrap::Join, config.clone()).await;
        let (id, addr) = (m.creds.node_id, m.transport.local_addr());
        retry_until_ok(|| m1.store.add_voter(m.raft_id, id, addr)).await;
        others.push(m);
    }
    let addr = m1.transport.local_addr();
    retry_until_ok(|| m1.store.propose(command(vec![put(0, addr)]))).await;

    let mut lat = Vec::with_capacity(WRITES_SEQUENTIAL);
    for i in 0..WRITES_SEQUENTIAL {
        let t = Instant::now();
        m1.store.propose(command(vec![put(i, addr)])).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "write latency through the leader, {WRITES_SEQUENTIAL} sequential small writes: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = m1.store.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..WRITES_CONCURRENT / WRITERS {
                let i = w * 1_000_000 + j;
                store.propose(command(vec![put(i, addr)])).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "throughput, {WRITERS} writers, {WRITES_CONCURRENT} writes: {:.0} writes/s ({secs:.2} s)",
        WRITES_CONCURRENT as f64 / secs
    );

    let t = Instant::now();
    for b in 0..OBJECTS_BIG / BATCH {
        let ops = (0..BATCH)
            .map(|k| put(10_000_000 + b * BATCH + k, addr))
            .collect();
        m1.store.propose(command(ops)).await.unwrap();
    }
    println!(
        "wrote {OBJECTS_BIG} objects in batches of {BATCH}: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let total = m1.store.read(Kind::Node, true).await.unwrap().objects.len();
    assert!(total >= OBJECTS_BIG);

    // Restart one follower from its disk alone: its replica comes back from snapshot + log.
    let m3 = others.pop().unwrap();
    let dir = m3.dir.clone();
    m3.store
        .actor()
        .stop_and_wait(None, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let t = Instant::now();
    let args = StoreArgs {
        data_dir: dir,
        raft_id: m3.raft_id,
        node_id: m3.creds.node_id,
        bootstrap: Bootstrap::Restart,
        config: config.clone(),
        transport: m3.transport.clone(),
        rng_seed: 3,
        registry: None,
        managers: Default::default(),
    };
    let (store, _) = spawn_store(args).await.unwrap();
    let opened = t.elapsed();
    loop {
        let n = store.read(Kind::Node, false).await.unwrap().objects.len();
        if n >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "restart of a manager with {total} objects ({:.1} MiB on disk): store open {:.0} ms, all objects back {:.0} ms",
        size as f64 / (1 << 20) as f64,
        opened.as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64() * 1000.0
    );
    std::process::exit(0);
}
