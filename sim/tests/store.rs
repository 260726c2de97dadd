//! The store layer's guarantees over a small sweep: one leader per term, committed entries
//! never change, and a write commits soon after heal, for 1, 3 and 5 managers.

use swarm_sim::{FaultKinds, SimConfig, run};

fn small(seed: u64, managers: usize) -> SimConfig {
    SimConfig {
        nodes: 4,
        managers,
        faults: FaultKinds::ALL,
        duration_ms: 30_000,
        heal_ms: 15_000,
        ..SimConfig::new(seed)
    }
}

#[test]
fn a_small_store_sweep_keeps_every_store_invariant() {
    for managers in [1, 3, 5] {
        eprintln!(
            "phase: {managers} managers, 12 seeds, all faults: invariants (d), (e), (f), (k) hold"
        );
        let mut failed = Vec::new();
        let (mut committed, mut forwards, mut routed) = (0, 0, 0);
        for seed in 1..=12 {
            let r = run(small(seed, managers));
            committed += r.store.writes_committed;
            forwards += r.store.forwards;
            routed += r.store.routed;
            // Membership's own invariants are checked by the determinism test's sweep.
            let store: Vec<&String> = r
                .violations
                .iter()
                .filter(|v| {
                    ["(d)", "(e)", "(f)", "(k)"]
                        .iter()
                        .any(|p| v.starts_with(p))
                })
                .collect();
            if !store.is_empty() {
                failed.push(format!("{store:?} -> {}", r.config.replay_command()));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(
            committed > 100,
            "the workload committed writes: {committed}"
        );
        eprintln!("{managers} managers: {routed} routed, {forwards} forwarded");
        // The operator writes through any manager: with more than one, some writes are
        // forwarded to the leader.
        assert!(managers == 1 || forwards > 0, "no write was forwarded");
    }
}

#[test]
fn the_store_layer_is_deterministic_and_fails_over() {
    eprintln!("phase: one seed twice gives the same store trace and figures");
    let cfg = SimConfig {
        faults: "crash".parse().unwrap(),
        ..small(3, 3)
    };
    let a = run(cfg.clone());
    let b = run(cfg);
    assert_eq!(a.store.trace_hash, b.store.trace_hash);
    assert_eq!(a.store.failover_ms, b.store.failover_ms);
    assert_eq!(a.trace_hash, b.trace_hash);
    eprintln!("phase: over a crash-only sweep the leader is crashed and writes resume");
    let samples: Vec<u64> = (1..=10)
        .flat_map(|seed| {
            let cfg = SimConfig {
                faults: "crash".parse().unwrap(),
                ..small(seed, 3)
            };
            run(cfg).store.failover_ms
        })
        .collect();
    assert!(!samples.is_empty(), "some run crashed the leader");
}
