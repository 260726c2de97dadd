//! Benchmark: what secret delivery costs. Three nodes on loopback (a manager and two workers),
//! the process runtime, a service of 20 replicas created with 5 secrets against the same
//! service created without any, in the same run, alternating.
//!
//! `cargo bench --bench secrets` (options: `-- --replicas R --secrets S --secret-bytes B
//! --rounds N`; the defaults are 20, 5, 4096, 5).
//! - **plain**: `service create --detach --replicas R --runtime process sleep 100000`, timed
//!   from the command's start until `service ps` shows R tasks Running; then `service rm` and
//!   a wait until no task of it runs.
//! - **secrets**: the same with `--secret s0 … --secret s{S-1}` (each B random bytes, created
//!   once before the rounds): each task's node receives the secrets with its assignment, its
//!   vault writes them to the task's tmpfs directory and the task starts with them mounted.
//!
//! The rounds alternate plain and secrets so that drift on a shared machine hits both alike.
//! Prints the medians and the overhead; asserts nothing about speed.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Node, VaultDirs, arg, task_state, three_nodes, wait_until};

const BASE_PORT: u16 = 27_951;
const POLL: Duration = Duration::from_millis(20);
const LIMIT: Duration = Duration::from_secs(300);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Tasks of `svc` that are Running and meant to be.
fn running(n: &Node, svc: &str) -> usize {
    n.service_ps(svc)
        .iter()
        .filter(|r| r["DesiredState"] == "Running" && task_state(r) == "Running")
        .count()
}

/// Creates `svc` with `extra` flags and times it until `replicas` tasks run; then removes it
/// and waits until none is listed.
fn create_timed(m: &Node, svc: &str, replicas: usize, extra: &[String]) -> Duration {
    let r = replicas.to_string();
    let mut args: Vec<&str> = vec![
        "service",
        "create",
        "--detach",
        "--name",
        svc,
        "--replicas",
        &r,
        "--runtime",
        "process",
    ];
    args.extend(extra.iter().map(String::as_str));
    args.extend(["sleep", "100000"]);
    let t0 = Instant::now();
    m.ok(&args);
    while running(m, svc) < replicas {
        assert!(t0.elapsed() < LIMIT, "{svc}: the tasks never all ran");
        std::thread::sleep(POLL);
    }
    let took = t0.elapsed();
    m.ok(&["service", "rm", svc]);
    assert!(
        wait_until(LIMIT, || m.service_ps(svc).is_empty()),
        "{svc}: its tasks were not removed"
    );
    // The next round starts on quiet nodes: the agents stop the removed tasks at their next
    // session.
    std::thread::sleep(Duration::from_secs(1));
    took
}

fn run(root: &Path, replicas: usize, secrets: usize, bytes: usize, rounds: usize) {
    let nodes = three_nodes(root, BASE_PORT);
    let m = &nodes[0];
    let ids = m
        .node_ls()
        .iter()
        .filter_map(|r| r["ID"].as_str().map(str::to_string))
        .collect();
    let _vaults = VaultDirs(ids);
    let mut flags = Vec::new();
    for i in 0..secrets {
        let name = format!("s{i}");
        let file = root.join(&name);
        let data: Vec<u8> = (0..bytes).map(|j| (j * 31 + i * 7) as u8).collect();
        std::fs::write(&file, data).expect("secret file written");
        m.ok(&[
            "secret",
            "create",
            &name,
            file.to_str().expect("utf-8 path"),
        ]);
        std::fs::remove_file(&file).expect("secret file removed");
        flags.push("--secret".to_string());
        flags.push(name);
    }
    // One of each first, untimed: images of the program in the page cache, first sessions.
    create_timed(m, "warm", replicas, &[]);
    create_timed(m, "warm-secrets", replicas, &flags);

    let (mut plain, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let p = create_timed(m, &format!("plain{round}"), replicas, &[]);
        let s = create_timed(m, &format!("secrets{round}"), replicas, &flags);
        println!(
            "round {}: plain {:.0} ms, with {secrets} secrets {:.0} ms",
            round + 1,
            ms(p),
            ms(s)
        );
        plain.push(ms(p));
        with.push(ms(s));
    }
    let (p, s) = (median(plain), median(with));
    println!(
        "service create → {replicas} tasks Running, process runtime, 3 nodes: \
         plain median {p:.0} ms, with {secrets} secrets of {bytes} bytes median {s:.0} ms \
         over {rounds} rounds: overhead {:.0} ms ({:+.1} %)",
        s - p,
        (s - p) / p * 100.0
    );
}

fn main() {
    let replicas = arg("--replicas", 20);
    let secrets = arg("--secrets", 5);
    let bytes = arg("--secret-bytes", 4096);
    let rounds = arg("--rounds", 5);
    let dir = tempfile::tempdir().expect("a temporary directory");
    run(dir.path(), replicas, secrets, bytes, rounds);
}
