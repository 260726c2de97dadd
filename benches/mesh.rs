//! Benchmark: the routing mesh against nginx, side by side in one run. `wrk` (64 connections,
//! 30 s each, keep-alive) fetches a small static page served by an nginx `http` backend:
//!
//! - (a) direct to the backend: the limit;
//! - (b) through nginx's `stream` proxy to the same backend (two workers, as the mesh has
//!   two runtime threads here);
//! - (c) through the mesh of node A, the backend on node A (a local connect);
//! - (d) through the mesh of node B, the backend on node A: each connection rides a tunnel
//!   stream of the mutual-TLS QUIC connection between the two nodes.
//!
//! The two mesh nodes run in this process, on their own loopback addresses (127.0.0.1 and
//! 127.0.0.2), each with its own QUIC endpoint and certificate, fed a table by hand: what the
//! mesh does per connection and per byte is all there, the leader is not.
//!
//! `cargo bench --bench mesh` (options: `-- --secs N --connections N --only abcd`). Needs `wrk` and
//! `nginx` (with the stream module: Debian's nginx-light and libnginx-mod-stream). Prints
//! requests/s and p99 of each and the ratios to (a) and (b); asserts nothing about speed.

// Benches run real processes in real time: they are shells, so clocks and sleeps are theirs
// to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::arg;
use swarm_actors::mesh::MeshConfig;
use swarm_actors::mesh::loopback::loopback_node;
use swarm_actors::model::{NodeId, PortConfig, ServiceId, TaskId};
use swarm_actors::runtime::TaskEndpoint;
use swarm_actors::trust::{ClusterCa, install_crypto_provider};
use swarm_actors::wire::{MeshBackend, MeshService, MeshTable};

const BACKEND_PORT: u16 = 29_081;
const NGINX_PROXY_PORT: u16 = 29_082;
const MESH_PORT: u16 = 29_083;
const PAGE: &str = "<html><body>hello from the backend</body></html>\n";
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// An nginx of its own (a master and its workers), told to stop when dropped.
struct Nginx {
    master: Child,
    conf: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `-s stop` signals this instance's master (by its pid file), which ends its workers.
        let stopped = Command::new("nginx")
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.dir)
            .args(["-s", "stop"])
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            let _ = self.master.kill();
        }
        let _ = self.master.wait();
    }
}

/// Starts nginx with `workers` worker processes and the configuration `body`.
fn nginx(dir: &std::path::Path, name: &str, workers: usize, body: &str) -> Nginx {
    let conf = dir.join(format!("{name}.conf"));
    let load = if body.contains("stream {") {
        format!("load_module {NGINX_STREAM_MODULE};\n")
    } else {
        String::new()
    };
    let text = format!(
        "{load}daemon off;\nworker_processes {workers};\npid {pid};\n\
         error_log {dir}/{name}.err warn;\nevents {{ worker_connections 4096; }}\n{body}\n",
        pid = dir.join(format!("{name}.pid")).display(),
        dir = dir.display(),
    );
    std::fs::write(&conf, text).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .spawn()
        .expect("nginx runs (apt-get install nginx-light libnginx-mod-stream)");
    Nginx {
        master: child,
        conf,
        dir: dir.to_path_buf(),
    }
}

fn wait_port(addr: SocketAddr) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on {addr}");
}

/// One wrk run: requests/s and p99 latency in ms.
#[derive(Clone, Copy, Debug)]
struct Figures {
    rps: f64,
    p99_ms: f64,
}

fn ms(text: &str) -> f64 {
    let (num, factor) = if let Some(v) = text.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (text, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * factor
}

fn wrk(addr: SocketAddr, secs: usize, connections: usize) -> Figures {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            &format!("http://{addr}/"),
        ])
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = f64::NAN;
    let mut p99 = f64::NAN;
    let mut errors = 0u64;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => rps = v.parse().unwrap_or(f64::NAN),
            ["99%", v] => p99 = ms(v),
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse().unwrap_or(0),
            _ => {}
        }
    }
    if errors > 0 {
        eprintln!("wrk to {addr}: {errors} errors\n{text}");
    }
    Figures { rps, p99_ms: p99 }
}

fn ratio(x: f64, of: f64) -> String {
    format!("{:.2}x", x / of)
}

fn main() {
    let secs = arg("--secs", 30);
    let connections = arg("--connections", 64);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), PAGE).unwrap();
    let backend = SocketAddr::from(([127, 0, 0, 1], BACKEND_PORT));
    let _backend = nginx(
        dir.path(),
        "backend",
        2,
        &format!(
            "http {{ access_log off; keepalive_requests 1000000; server {{ listen {backend}; \
             root {}; }} }}",
            dir.path().join("www").display()
        ),
    );
    let proxy = SocketAddr::from(([127, 0, 0, 1], NGINX_PROXY_PORT));
    let _proxy = nginx(
        dir.path(),
        "proxy",
        2,
        &format!("stream {{ server {{ listen {proxy}; proxy_pass {backend}; }} }}"),
    );
    wait_port(backend);
    wait_port(proxy);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    install_crypto_provider();
    let ca = ClusterCa::generate(SystemTime::now()).unwrap();
    let (a, b) = (NodeId(0xa), NodeId(0xb));
    let (node_a, node_b) = rt.block_on(async {
        let ip = |s: &str| s.parse().unwrap();
        let na = loopback_node(&ca, a, ip("127.0.0.1"), MeshConfig::default()).await;
        let nb = loopback_node(&ca, b, ip("127.0.0.2"), MeshConfig::default()).await;
        (na, nb)
    });
    node_a.endpoints.set(
        TaskId(1),
        TaskEndpoint {
            overlay: Default::default(),
            ip: backend.ip(),
            ports: BTreeMap::from([(80, BACKEND_PORT)]),
            host_network: true,
        },
    );
    let table = Arc::new(MeshTable {
        networks: Vec::new(),
        nodes: Vec::new(),
        version: 1,
        services: vec![MeshService {
            endpoint_mode: Default::default(),
            networks: Vec::new(),
            id: ServiceId(1),
            name: "web".into(),
            ports: vec![PortConfig::tcp(MESH_PORT, 80)],
            backends: vec![MeshBackend {
                overlay: Default::default(),
                slot: 0,
                task: TaskId(1),
                node: a,
                node_addr: node_a.transport.local_addr(),
                addr: None,
            }],
        }],
    });
    node_a.feed.send_replace(Some(table.clone()));
    node_b.feed.send_replace(Some(table));
    let mesh_local = SocketAddr::from(([127, 0, 0, 1], MESH_PORT));
    let mesh_remote = SocketAddr::from(([127, 0, 0, 2], MESH_PORT));
    wait_port(mesh_local);
    wait_port(mesh_remote);

    println!(
        "wrk: {connections} connections, {secs} s each, a {} byte page",
        PAGE.len()
    );
    let runs = [
        ("(a) direct", backend),
        ("(b) nginx stream proxy", proxy),
        ("(c) mesh, backend on this node", mesh_local),
        ("(d) mesh, backend on another node", mesh_remote),
    ];
    // `--only d` (any of the letters a–d) runs those paths alone: for a profiler attached to
    // this process, which then sees one path's work. The ratios need (a) and (b).
    let only = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .unwrap_or_else(|| "abcd".into());
    let mut results = Vec::new();
    for (name, addr) in runs {
        if !only.contains(&name[1..2]) {
            continue;
        }
        let f = wrk(addr, secs, connections);
        println!("{name:<36} {:>10.0} req/s  p99 {:>7.2} ms", f.rps, f.p99_ms);
        results.push((name, f));
    }
    if !(only.contains('a') && only.contains('b')) {
        rt.block_on(async { drop((node_a, node_b)) });
        return;
    }
    let (direct, nginx_proxy) = (results[0].1, results[1].1);
    println!();
    println!(
        "{:<36} {:>12} {:>12} {:>12} {:>12}",
        "", "req/s vs a", "req/s vs b", "p99 vs a", "p99 vs b"
    );
    for (name, f) in &results {
        println!(
            "{name:<36} {:>12} {:>12} {:>12} {:>12}",
            ratio(f.rps, direct.rps),
            ratio(f.rps, nginx_proxy.rps),
            ratio(f.p99_ms, direct.p99_ms),
            ratio(f.p99_ms, nginx_proxy.p99_ms),
        );
    }
    let (sa, sb) = (node_a.mesh.status(), node_b.mesh.status());
    println!(
        "\nmesh A: {} connections, {} failed, {} tunnels served; mesh B: {} connections, {} failed",
        sa.connections,
        sa.connections_failed,
        sa.tunnels_served,
        sb.connections,
        sb.connections_failed
    );
    rt.block_on(async { drop((node_a, node_b)) });
    rt.shutdown_timeout(Duration::from_secs(1));
}
