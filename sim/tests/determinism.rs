//! The simulator's own guarantees: one seed, one trace (services layer included); and a small
//! sweep passes.
//!
//! Both run in seconds in release so CI can afford them on every change.

use swarm_sim::{FaultKinds, SimConfig, run};

fn small(seed: u64) -> SimConfig {
    SimConfig {
        nodes: 8,
        managers: 3,
        faults: FaultKinds::ALL,
        duration_ms: 20_000,
        heal_ms: 20_000,
        ..SimConfig::new(seed)
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    eprintln!("phase: one seed twice must give byte-identical traces");
    let a = run(small(7));
    let b = run(small(7));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_eq!(a.detection_ms, b.detection_ms);
    assert!(
        a.events > 1_000,
        "the run did something: {} events",
        a.events
    );

    eprintln!("phase: the services layer ran and is part of the trace");
    let (sa, sb) = (&a.store.services, &b.store.services);
    assert!(a.config.services_on());
    assert!(
        sa.tasks_started > 0 && sa.passes > 0 && sa.sessions_ok > 0,
        "{sa:?}"
    );
    assert_eq!(
        (sa.passes, sa.pass_ops, sa.tasks_started, sa.sessions_ok),
        (sb.passes, sb.pass_ops, sb.tasks_started, sb.sessions_ok)
    );
    assert_eq!(sa.converged_ms, sb.converged_ms);
    let off = run(SimConfig {
        services: false,
        ..small(7)
    });
    assert_ne!(
        off.trace_hash, a.trace_hash,
        "the services layer enters the trace"
    );

    eprintln!("phase: another seed must give another trace (or the hash sees nothing)");
    let c = run(small(8));
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn a_small_sweep_passes() {
    eprintln!("phase: 20 seeds, 8 nodes, all faults, short phases: every invariant holds");
    let failed: Vec<String> = (1..=20)
        .map(|seed| run(small(seed)))
        .filter(|r| !r.passed())
        .map(|r| format!("{:?} -> {}", r.violations, r.config.replay_command()))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
