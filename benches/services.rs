//! Benchmark: services on the process runtime, three nodes on loopback (a manager and two
//! workers).
//!
//! `cargo bench --bench services` (options: `-- --kills N --replicas R`).
//! - **converge**: `service create --replicas R` (R = 100 by default) until R tasks are Running.
//! - **replace**: SIGKILL of a worker running two tasks of a 6-replica service → every slot
//!   Running again on the surviving nodes. Between kills the worker is restarted and the
//!   service scaled to 0 and back to 6, so that the next victim runs tasks. N = 20.
//!
//! The cluster is watched through `service ps --format json` on the manager every 50 ms, so each
//! figure includes up to that much polling. Prints figures; asserts nothing about speed.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Node, all_ready, arg, running_per_node, wait_until};

const BASE_PORT: u16 = 24_901;
const POLL: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(120);

/// Running tasks (wanted and running) per node hostname.
fn running(n: &Node, svc: &str) -> BTreeMap<String, usize> {
    running_per_node(&n.service_ps(svc))
}

fn wait_running(n: &Node, svc: &str, want: usize, not_on: Option<&str>) -> Duration {
    let t0 = Instant::now();
    loop {
        let r = running(n, svc);
        let off = not_on.is_none_or(|name| !r.contains_key(name));
        if off && r.values().sum::<usize>() == want {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < LIMIT, "{svc} never reached {want}: {r:?}");
        std::thread::sleep(POLL);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(what: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: n={} p50={:.0} ms p90={:.0} ms max={:.0} ms",
        v.len(),
        p(0.5),
        p(0.9),
        p(1.0)
    );
}

fn main() {
    let kills = arg("--kills", 20);
    let replicas = arg("--replicas", 100);
    let root = tempfile::tempdir().unwrap();
    let m = Node::bootstrap(root.path(), "s1", BASE_PORT);
    let token = m.token("worker");
    let mut workers = [
        Node::join(root.path(), "s2", BASE_PORT + 1, m.addr, &token),
        Node::join(root.path(), "s3", BASE_PORT + 2, m.addr, &token),
    ];
    assert!(
        wait_until(LIMIT, || all_ready(&m.node_ls(), 3)),
        "the nodes did not form"
    );

    let n = replicas.to_string();
    let t0 = Instant::now();
    let out = m.cli(&[
        "service",
        "create",
        "--name",
        "many",
        "--replicas",
        &n,
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "100000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_running(&m, "many", replicas, None);
    let converge = t0.elapsed();
    println!(
        "converge: service create --replicas {replicas} → all Running in {:.0} ms",
        ms(converge)
    );
    let out = m.cli(&["service", "rm", "many"]);
    assert!(out.status.success());

    let out = m.cli(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "6",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "100000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_running(&m, "web", 6, None);
    let mut figures = Vec::new();
    for round in 0..kills {
        // Spread the tasks again (a restarted node gets none back), so the victim runs two.
        for (replicas, want) in [("web=0", 0), ("web=6", 6)] {
            let out = m.cli(&["service", "scale", "--detach", replicas]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            wait_running(&m, "web", want, None);
        }
        let victim = round % 2;
        assert!(
            running(&m, "web")
                .get(&workers[victim].name)
                .copied()
                .unwrap_or(0)
                > 0,
            "the victim runs no task: the measurement would be empty"
        );
        let name = workers[victim].name.clone();
        let t0 = Instant::now();
        workers[victim].kill();
        wait_running(&m, "web", 6, Some(&name));
        let took = t0.elapsed();
        println!(
            "kill {round}: {name} → 6/6 Running elsewhere in {:.0} ms",
            ms(took)
        );
        figures.push(ms(took));
        workers[victim].spawn();
        workers[victim].wait_control();
        assert!(
            wait_until(LIMIT, || all_ready(&m.node_ls(), 3)),
            "{name} did not come back"
        );
    }
    summary("replace (SIGKILL worker → replacements Running)", figures);
}
