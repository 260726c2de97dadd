//! The CI sweep: 100 seeds of the default cluster (16 nodes of which 3 managers, every fault
//! kind, 60 s of faults then 30 s to heal, the services layer on). About 15 s in release on one
//! core; a failure names the seed and the replay command.

use swarm_sim::{SimConfig, run};

#[test]
fn one_hundred_seeds_pass() {
    eprintln!("phase: 100 seeds, default shape, all faults: every invariant holds");
    let failed: Vec<String> = (1..=100)
        .map(|seed| run(SimConfig::new(seed)))
        .filter(|r| !r.passed())
        .map(|r| format!("{:?} -> {}", r.violations, r.config.replay_command()))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
