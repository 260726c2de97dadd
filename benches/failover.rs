//! Benchmark: SIGKILL of the store's leader among three managers → the next write accepted,
//! over 20 kills, on loopback.
//!
//! `cargo bench --bench failover` (options: `-- --kills N`). A write is attempted from a
//! surviving manager every 25 ms in parallel (each attempt is a `node update` through the CLI),
//! so a slow attempt (one still waiting on the dead leader) never hides a faster one; the figure
//! is the end of the first attempt that succeeds. Prints figures; asserts nothing about speed.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Node, all_ready, arg, wait_until};

const BASE_PORT: u16 = 23_701;
const ATTEMPT_EVERY: Duration = Duration::from_millis(25);
/// Attempts per kill at most (30 s worth).
const ATTEMPTS_MAX: usize = 1_200;

fn leader(n: &Node) -> Option<String> {
    n.node_ls()
        .iter()
        .find(|r| r["ManagerStatus"] == "Leader")
        .and_then(|r| r["Hostname"].as_str().map(str::to_string))
}

fn main() {
    let kills = arg("--kills", 20);
    let root = tempfile::tempdir().unwrap();
    let m1 = Node::bootstrap(root.path(), "f1", BASE_PORT);
    let token = m1.token("manager");
    let m2 = Node::join(root.path(), "f2", BASE_PORT + 1, m1.addr, &token);
    let m3 = Node::join(root.path(), "f3", BASE_PORT + 2, m1.addr, &token);
    let mut nodes = vec![m1, m2, m3];
    let healthy = |nodes: &[Node]| {
        nodes.iter().all(|n| {
            wait_until(Duration::from_secs(60), || {
                all_ready(&n.node_ls(), 3) && leader(n).is_some()
            })
        })
    };
    assert!(healthy(&nodes), "the managers did not form");

    let mut figures = Vec::new();
    for round in 0..kills {
        let name = leader(&nodes[0]).expect("a leader");
        let victim = nodes.iter().position(|n| n.name == name).unwrap();
        let survivor = (victim + 1) % 3;
        let t0 = Instant::now();
        nodes[victim].kill();
        let first: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
        let last_error: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        std::thread::scope(|s| {
            for attempt in 0..ATTEMPTS_MAX {
                if first.lock().unwrap().is_some() {
                    break;
                }
                let first = first.clone();
                let last_error = last_error.clone();
                let node = &nodes[survivor];
                s.spawn(move || {
                    let label = format!("bench=r{round}a{attempt}");
                    let out = node.cli(&["node", "update", "--label-add", &label, "self"]);
                    if out.status.success() {
                        let mut f = first.lock().unwrap();
                        let t = t0.elapsed();
                        if f.is_none_or(|old| t < old) {
                            *f = Some(t);
                        }
                    } else {
                        *last_error.lock().unwrap() =
                            String::from_utf8_lossy(&out.stderr).to_string();
                    }
                });
                std::thread::sleep(ATTEMPT_EVERY);
            }
        });
        let Some(t) = *first.lock().unwrap() else {
            let dir = root.keep();
            panic!(
                "no write accepted within 30 s after killing {name}; last error: {}\nlogs kept in {}",
                last_error.lock().unwrap(),
                dir.display()
            );
        };
        println!(
            "kill {:2}: leader {} → write accepted after {:.0} ms",
            round + 1,
            name,
            t.as_secs_f64() * 1000.0
        );
        figures.push(t.as_secs_f64() * 1000.0);
        nodes[victim].spawn();
        nodes[victim].wait_control();
        assert!(healthy(&nodes), "the managers did not heal");
    }
    figures.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "leader SIGKILL -> next accepted write, 3 managers, {} kills: p50 {:.0} ms, max {:.0} ms",
        kills,
        figures[figures.len() / 2],
        figures.last().unwrap()
    );
}
