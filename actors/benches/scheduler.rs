//! Benchmark: one `schedule` call placing 10,000 pending tasks on 1,000 nodes.
//!
//! `cargo bench -p swarm-actors --bench scheduler`. Three workloads: one service of
//! 10,000 tasks; 100 services of 100 tasks; and 100 services with a constraint, a reservation and
//! a spread preference. Criterion reports the time per call and the throughput in placements
//! per second (`thrpt`, elements = placements); a summary line per workload is printed too.
//! Nothing is asserted about speed (the machines are shared and noisy).

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use swarm_actors::model::{
    Availability, NodeId, NodeResources, NodeState, Placement, Resources, RestartPolicy, Role,
    RuntimeKind, ServiceId, TaskId, TaskSpec,
};
use swarm_actors::scheduler::{Decision, NodeView, PendingTask, TaskLoad, schedule};

const NODES: usize = 1_000;
const TASKS: usize = 10_000;

fn nodes() -> Vec<NodeView<'static>> {
    (0..NODES)
        .map(|i| {
            let mut labels = BTreeMap::new();
            labels.insert("zone".to_string(), format!("z{}", i % 5));
            labels.insert(
                "env".to_string(),
                if i % 4 == 0 { "dev" } else { "prod" }.to_string(),
            );
            NodeView {
                id: NodeId(i as u128 * 7919 + 1),
                hostname: format!("node-{i}").into(),
                role: if i < 5 { Role::Manager } else { Role::Worker },
                availability: if i % 50 == 49 {
                    Availability::Drain
                } else {
                    Availability::Active
                },
                state: NodeState::Ready,
                labels: Cow::Owned(labels),
                engine_labels: Cow::Owned(BTreeMap::new()),
                runtimes: vec!["process".to_string(), "docker".to_string()].into(),
                resources: NodeResources {
                    nano_cpus: 16_000_000_000,
                    memory_bytes: 64 << 30,
                },
            }
        })
        .collect()
}

fn spec(constrained: bool) -> TaskSpec {
    let mut placement = Placement::default();
    let mut resources = Resources::default();
    if constrained {
        placement.constraints = vec!["node.labels.env==prod".to_string()];
        placement.preferences = vec!["spread=node.labels.zone".to_string()];
        resources.reservations.nano_cpus = 100_000_000;
        resources.reservations.memory_bytes = 64 << 20;
    }
    TaskSpec {
        networks: Vec::new(),
        entrypoint: Vec::new(),
        workdir: None,
        hostname: None,
        mounts: Vec::new(),
        runtime: RuntimeKind::Docker,
        image: "nginx".to_string(),
        args: Vec::new(),
        env: Vec::new(),
        health: None,
        resources,
        restart: RestartPolicy::default(),
        placement,
        stop_grace_period_ms: 10_000,
        user: None,
        container_labels: Default::default(),
        force_update: 0,
        secrets: Vec::new(),
        configs: Vec::new(),
    }
}

/// 2,000 tasks already running, spread over the nodes, from 20 other services.
fn running(nodes: &[NodeView]) -> Vec<TaskLoad> {
    (0..2_000)
        .map(|i| TaskLoad {
            task: TaskId(1_000_000 + i as u128),
            service: ServiceId(10_000 + (i % 20) as u128),
            node: nodes[(i * 37) % nodes.len()].id,
            reservations: Default::default(),
            bytes: 1_000,
        })
        .collect()
}

fn pending<'a>(specs: &'a [TaskSpec], services: usize) -> Vec<PendingTask<'a>> {
    (0..TASKS)
        .map(|t| {
            let s = t % services;
            PendingTask {
                task: TaskId(t as u128 + 1),
                service: ServiceId(s as u128 + 1),
                spec: &specs[s],
                pin: None,
                host_ports: &[],
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let nodes = nodes();
    let running = running(&nodes);
    let plain: Vec<TaskSpec> = (0..100).map(|_| spec(false)).collect();
    let placed: Vec<TaskSpec> = (0..100).map(|_| spec(true)).collect();
    let workloads: [(&str, Vec<PendingTask<'_>>); 3] = [
        ("1 service x 10000", pending(&plain, 1)),
        ("100 services x 100", pending(&plain, 100)),
        (
            "100 services x 100, constraint+pref+reservation",
            pending(&placed, 100),
        ),
    ];
    let mut group = c.benchmark_group("schedule 10000 tasks on 1000 nodes");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.sample_size(20);
    for (name, p) in &workloads {
        let d = schedule(&nodes, &running, p);
        let placements = d
            .iter()
            .filter(|x| matches!(x, Decision::Place { .. }))
            .count();
        assert_eq!(placements, TASKS, "{name}: every task fits somewhere");
        // A summary apart from criterion's, for the report: the best of five calls.
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(schedule(&nodes, &running, p));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "{name}: {placements} placements in {:.1} ms = {:.0} placements/s",
            best * 1e3,
            placements as f64 / best
        );
        group.bench_function(*name, |b| {
            b.iter(|| schedule(black_box(&nodes), black_box(&running), black_box(p)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
