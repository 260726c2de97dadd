//! Benchmark: `stack deploy` of a 20-service compose file to every service converged, on three
//! nodes in their own network namespaces (process runtime), with and without `depends_on`.
//!
//! `cargo bench --bench stack` (options: `-- --services S --rounds N`; defaults 20 and 3).
//! Each round deploys a fresh stack and times, from the command's start:
//! - *deploy*: until `stack deploy` returns (networks, services created);
//! - *converged*: until `stack ps` shows every service's one task running.
//!
//! Three files, each with S services of one replica (`sleep`):
//! - **independent**: no `depends_on`;
//! - **chain, started**: service i depends on service i−1 (`condition: service_started`), so
//!   the tasks start one after another;
//! - **chain, healthy**: the same with `condition: service_healthy` and a health check that
//!   passes at once (interval 1 s): each link waits for a health verdict.
//!
//! The stack is removed (`stack rm`) and its services waited gone between rounds. Needs root
//! and `ip netns` (the lab); prints the reason and exits otherwise. Prints figures; asserts
//! nothing about speed.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the test's helpers the benchmark does not need
#[path = "../tests/stack/lab.rs"]
mod lab;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Node, arg, wait_until};
use lab::{BENCH_NET, Cluster, skip};

const LIMIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy)]
enum Shape {
    Independent,
    ChainStarted,
    ChainHealthy,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Independent => "independent",
            Shape::ChainStarted => "chain, service_started",
            Shape::ChainHealthy => "chain, service_healthy",
        }
    }
}

fn compose(services: usize, shape: Shape) -> String {
    let mut s = String::from("version: \"3.8\"\nservices:\n");
    for i in 0..services {
        s += &format!(
            "  s{i:02}:\n    image: sleep\n    x-swarm-runtime: process\n    command: [\"1000\"]\n"
        );
        if i > 0 {
            match shape {
                Shape::Independent => {}
                Shape::ChainStarted => {
                    s += &format!(
                        "    depends_on:\n      s{:02}:\n        condition: service_started\n",
                        i - 1
                    )
                }
                Shape::ChainHealthy => {
                    s += &format!(
                        "    depends_on:\n      s{:02}:\n        condition: service_healthy\n",
                        i - 1
                    )
                }
            }
        }
        if matches!(shape, Shape::ChainHealthy) {
            s += "    healthcheck:\n      test: [\"CMD-SHELL\", \"true\"]\n      interval: 1s\n      \
                  timeout: 2s\n      retries: 1\n";
        }
    }
    s
}

/// Tasks shown meant to run and running in `stack ps STACK`.
fn running(n: &Node, stack: &str) -> usize {
    let out = n.cli(&["stack", "ps", stack]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.windows(2).any(|w| w == ["Running", "Running"])
        })
        .count()
}

/// One deploy: (until the command returned, until every service runs).
fn round(c: &Cluster, file: &Path, stack: &str, services: usize) -> (Duration, Duration) {
    let f = file.display().to_string();
    let start = Instant::now();
    let out = c
        .n1()
        .cli_within(LIMIT, &["stack", "deploy", "-c", &f, stack])
        .expect("stack deploy answers");
    let deployed = start.elapsed();
    assert!(
        out.status.success(),
        "stack deploy failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    loop {
        if running(c.n1(), stack) == services {
            break;
        }
        assert!(start.elapsed() < LIMIT, "{stack} did not converge");
        std::thread::sleep(POLL);
    }
    let converged = start.elapsed();
    let rm = c
        .n1()
        .cli_within(LIMIT, &["stack", "rm", stack])
        .expect("stack rm answers");
    assert!(
        rm.status.success(),
        "stack rm failed: {}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let gone = wait_until(LIMIT, || {
        c.n1().ok(&["service", "ls", "-q"]).trim().is_empty()
    });
    assert!(gone, "{stack}'s services were not removed");
    (deployed, converged)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn main() {
    if skip("the stack benchmark") {
        return;
    }
    let services = arg("--services", 20);
    let rounds = arg("--rounds", 3);
    let c = Cluster::form(BENCH_NET);
    let dir = c.dir("files");
    println!(
        "stack deploy of {services} services (process runtime, 3 nodes, one replica each), \
         {rounds} rounds"
    );
    println!(
        "{:<24} {:>12} {:>12} {:>14} {:>14}",
        "file", "deploy ms", "(min)", "converged ms", "(min)"
    );
    for (k, shape) in [Shape::Independent, Shape::ChainStarted, Shape::ChainHealthy]
        .into_iter()
        .enumerate()
    {
        let file = dir.join(format!("stack-{k}.yml"));
        std::fs::write(&file, compose(services, shape)).unwrap();
        let mut deploy = Vec::new();
        let mut converge = Vec::new();
        for r in 0..rounds {
            let (d, cv) = round(&c, &file, &format!("bench{k}r{r}"), services);
            deploy.push(ms(d));
            converge.push(ms(cv));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{:<24} {:>12.0} {:>12.0} {:>14.0} {:>14.0}",
            shape.name(),
            mean(&deploy),
            min(&deploy),
            mean(&converge),
            min(&converge)
        );
    }
}
