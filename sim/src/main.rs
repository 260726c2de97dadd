//! The `swarm-sim` command line: `run` one seed, or `sweep` many on several threads.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use swarm_sim::world::percentile;
use swarm_sim::{FaultKinds, SimConfig, SimReport, run};

#[derive(Parser)]
#[command(
    name = "swarm-sim",
    about = "Deterministic whole-cluster simulator for swarm-node"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one seed and print its trace hash, figures and PASS or FAIL.
    Run {
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        shape: Shape,
    },
    /// Run many seeds; print one line per failure and a summary.
    Sweep {
        /// A range `FIRST..LAST` (LAST excluded) or `FIRST..=LAST`.
        #[arg(long)]
        seeds: String,
        /// Worker threads; defaults to the machine's parallelism.
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        shape: Shape,
    },
}

#[derive(Args, Clone)]
struct Shape {
    /// All nodes, managers included (ignored when --workers is given).
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Worker nodes: the run has managers + workers nodes.
    #[arg(long)]
    workers: Option<usize>,
    /// Run without the services layer (membership and store only).
    #[arg(long)]
    no_services: bool,
    /// Managers of the store layer: 1, 3, 5 or 7.
    #[arg(long, default_value_t = 3, value_parser = parse_managers)]
    managers: usize,
    /// crash,pause,partition,loss,skew | all | none
    #[arg(long, default_value = "all")]
    faults: FaultKinds,
    /// Safety phase length: `60s`, `500ms`, `2m`.
    #[arg(long, default_value = "60s", value_parser = parse_duration_ms)]
    duration: u64,
    /// Liveness phase length.
    #[arg(long, default_value = "30s", value_parser = parse_duration_ms)]
    heal: u64,
}

impl Shape {
    fn config(&self, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: self.workers.map_or(self.nodes, |w| self.managers + w),
            managers: self.managers,
            services: !self.no_services,
            faults: self.faults,
            duration_ms: self.duration,
            heal_ms: self.heal,
            ..SimConfig::new(seed)
        }
    }
}

fn parse_managers(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(m @ (1 | 3 | 5 | 7)) => Ok(m),
        _ => Err(format!("--managers takes 1, 3, 5 or 7, got {s:?}")),
    }
}

fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1_000)
    };
    num.parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a duration like 60s, 500ms or 2m"))
}

fn parse_seeds(s: &str) -> anyhow::Result<std::ops::Range<u64>> {
    let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        bail!("--seeds takes FIRST..LAST or FIRST..=LAST, got {s:?}");
    };
    let a: u64 = a.parse().context("first seed")?;
    let b: u64 = b.parse().context("last seed")?;
    let end = if inclusive { b + 1 } else { b };
    if end <= a {
        bail!("--seeds {s:?} is empty");
    }
    Ok(a..end)
}

fn print_report(r: &SimReport) {
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    println!("seed {}: {verdict}", r.config.seed);
    println!("trace   {:016x}", r.trace_hash);
    println!(
        "run     {} nodes, faults {}, {} events, {:.1} virtual s, {:.2} wall s",
        r.config.nodes,
        r.config.faults,
        r.events,
        r.virtual_ms as f64 / 1000.0,
        r.wall.as_secs_f64()
    );
    println!(
        "net     {} sent, {} lost, {} partitioned, {} duplicated; {} refused by machines; {} faults struck",
        r.net.sent,
        r.net.lost,
        r.net.partitioned,
        r.net.duplicated,
        r.datagrams_refused,
        r.faults_struck
    );
    match (r.detection_percentile(50), r.detection_percentile(100)) {
        (Some(p50), Some(max)) => println!(
            "detect  crash to Down on each other node: p50 {p50} ms, p99 {} ms, max {max} ms ({} samples)",
            r.detection_percentile(99).unwrap_or(max),
            r.detection_ms.len()
        ),
        _ => println!("detect  no crash was detected (no crash faults, or none lasted)"),
    }
    let st = &r.store;
    println!(
        "store   {} managers: {} writes committed, {} refused, highest term {}, first write {} ms after heal",
        r.config.managers,
        st.writes_committed,
        st.writes_refused,
        st.max_term,
        st.heal_write_ms
            .map_or("never".to_string(), |t| t.to_string())
    );
    match (
        percentile(&st.failover_ms, 50),
        percentile(&st.failover_ms, 100),
    ) {
        (Some(p50), Some(max)) => println!(
            "failover leader crash to next committed write: p50 {p50} ms, max {max} ms ({} samples)",
            st.failover_ms.len()
        ),
        _ => println!("failover no leader crash in this run"),
    }
    let sv = &st.services;
    if r.config.services_on() {
        println!(
            "services {} passes ({} failed, {} ops), {} tasks created, {} placed, {} started, {} failed; \
             sessions {} ok, {} failed; operator {} writes, {} refused",
            sv.passes,
            sv.passes_failed,
            sv.pass_ops,
            sv.tasks_created,
            sv.tasks_placed,
            sv.tasks_started,
            sv.tasks_failed,
            sv.sessions_ok,
            sv.sessions_failed,
            sv.operator_writes,
            sv.operator_refused
        );
        println!(
            "converge {} services, {} tasks running at the end; converged {} after heal",
            sv.services_at_end,
            sv.running_at_end,
            sv.converged_ms
                .map_or("never".to_string(), |t| format!("{t} ms"))
        );
        let u = &sv.updates;
        println!(
            "updates {} good, {} failing, {} rollbacks, {} forced; at the end {} completed, \
             {} paused, {} rollback completed, {} rollback paused, {} rolling, {} never updated",
            u.good,
            u.failing,
            u.rollbacks,
            u.forced,
            u.completed,
            u.paused,
            u.rollback_completed,
            u.rollback_paused,
            u.rolling,
            u.none
        );
        let f = &sv.secrets;
        println!(
            "secrets {} answers carried {} files; agents held {}, dropped {}; {} tasks started with files; \
             at most {} files on a node",
            f.answers_with_files,
            f.files_sent,
            f.held,
            f.dropped,
            f.tasks_with_files,
            f.node_held_max
        );
        let m = &sv.mesh;
        println!(
            "mesh {} tasks addressed, {} on overlay networks; {} answers carried a table, {} taken as \
             new; at most {} services, {} backends in one",
            m.addressed,
            m.attached,
            m.tables_sent,
            m.tables_received,
            m.services_max,
            m.backends_max
        );
        println!(
            "depends_on {} task-passes held back for a dependency",
            sv.gated
        );
    } else {
        println!("services off");
    }
    if !r.passed() {
        for v in &r.violations {
            println!("  {v}");
        }
        println!("replay: {}", r.config.replay_command());
    }
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Run { seed, shape } => {
            let r = run(shape.config(seed));
            print_report(&r);
            Ok(if r.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Sweep { seeds, jobs, shape } => {
            let range = parse_seeds(&seeds)?;
            let jobs = jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            #[allow(clippy::disallowed_methods)] // the sweep's wall time, for its summary line
            let started = Instant::now();
            let next = AtomicU64::new(range.start);
            let failures: Mutex<Vec<SimReport>> = Mutex::new(Vec::new());
            let passed = AtomicU64::new(0);
            let failover: Mutex<Vec<u64>> = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for _ in 0..jobs {
                    s.spawn(|| {
                        loop {
                            let seed = next.fetch_add(1, Ordering::Relaxed);
                            if seed >= range.end {
                                break;
                            }
                            let r = run(shape.config(seed));
                            failover
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .extend(&r.store.failover_ms);
                            if r.passed() {
                                passed.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failures.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                            }
                        }
                    });
                }
            });
            let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
            failures.sort_by_key(|r| r.config.seed);
            for r in &failures {
                println!(
                    "FAIL seed {}: {} | replay: {}",
                    r.config.seed,
                    r.violations.first().map_or("", String::as_str),
                    r.config.replay_command()
                );
            }
            let failover = failover.into_inner().unwrap_or_else(|e| e.into_inner());
            if let (Some(p50), Some(p99), Some(max)) = (
                percentile(&failover, 50),
                percentile(&failover, 99),
                percentile(&failover, 100),
            ) {
                println!(
                    "failover leader crash to next committed write: p50 {p50} ms, p99 {p99} ms, max {max} ms ({} samples)",
                    failover.len()
                );
            }
            println!(
                "{} passed, {} failed ({:.1} wall s)",
                passed.load(Ordering::Relaxed),
                failures.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
