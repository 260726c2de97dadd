//! Benchmark: time from SIGKILL of one node to `Down` on every other node, in a five-node
//! loopback cluster, over 20 kills; and the idle resident memory of a node.
//!
//! `cargo bench --bench detect_down` (options: `-- --kills N --nodes N`). Prints figures; asserts
//! nothing about speed (these machines are shared and noisy).

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Node, all_ready, arg, status_of, wait_until};

const BASE_PORT: u16 = 23_001;
const POLL: Duration = Duration::from_millis(10);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let kills = arg("--kills", 20);
    let n = arg("--nodes", 5);
    let root = tempfile::tempdir().unwrap();
    let first = Node::bootstrap(root.path(), "b1", BASE_PORT);
    let token = first.token("worker");
    let mut nodes = vec![first];
    for i in 1..n {
        let seed = nodes[0].addr;
        nodes.push(Node::join(
            root.path(),
            &format!("b{}", i + 1),
            BASE_PORT + i as u16,
            seed,
            &token,
        ));
    }
    for node in &nodes {
        assert!(
            wait_until(Duration::from_secs(60), || all_ready(&node.node_ls(), n)),
            "cluster did not form"
        );
    }
    let ids: Vec<String> = nodes.iter().map(|x| x.id()).collect();

    std::thread::sleep(Duration::from_secs(10));
    let rss: Vec<u64> = nodes.iter().filter_map(|x| x.pid()).map(rss_kib).collect();
    println!("idle RSS after 10 s, {n} nodes (KiB): {rss:?}");

    let mut detect_ms = Vec::new();
    for round in 0..kills {
        // Never the bootstrap node: it holds the CA, and the others' rejoin goes through anyone.
        let victim = 1 + round % (n - 1);
        let t0 = Instant::now();
        nodes[victim].kill();
        let observers: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        let times: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = observers
                .iter()
                .map(|&i| {
                    let node = &nodes[i];
                    let id = &ids[victim];
                    s.spawn(move || {
                        while t0.elapsed() < Duration::from_secs(30) {
                            if status_of(&node.node_ls(), id).as_deref() == Some("Down") {
                                return t0.elapsed().as_secs_f64() * 1000.0;
                            }
                            std::thread::sleep(POLL);
                        }
                        f64::INFINITY
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all = times.iter().cloned().fold(0.0, f64::max);
        println!(
            "kill {:2}: node {} Down on every other node after {:.0} ms (each: {:?})",
            round + 1,
            victim + 1,
            all,
            times.iter().map(|t| t.round() as u64).collect::<Vec<_>>()
        );
        detect_ms.push(all);
        nodes[victim].spawn();
        nodes[victim].wait_control();
        for node in &nodes {
            assert!(
                wait_until(Duration::from_secs(60), || all_ready(&node.node_ls(), n)),
                "cluster did not heal"
            );
        }
    }
    detect_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "SIGKILL -> Down on all {} others, {} kills: p50 {:.0} ms, max {:.0} ms",
        n - 1,
        kills,
        percentile(&detect_ms, 0.5),
        detect_ms.last().unwrap()
    );
}
