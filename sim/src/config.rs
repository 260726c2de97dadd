//! What a run is asked to do: the seed, the cluster's size, the faults and the phases. A leaf
//! module: the membership loop (`world`), the store loop (`managers`) and the services layer all
//! read it, and it imports none of them.

use crate::clock::Millis;
use crate::faults::FaultKinds;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Managers of the store layer (1, 3, 5 or 7).
    pub managers: usize,
    pub faults: FaultKinds,
    /// Length of the safety phase (faults on).
    pub duration_ms: Millis,
    /// Length of the liveness phase (faults off; the cluster must heal).
    pub heal_ms: Millis,
    /// Time into the liveness phase after which a Down of a live node is a violation.
    pub settle_ms: Millis,
    /// Run the services layer (leader passes, node agents, task machines) on the store layer.
    /// It needs at least one worker: `nodes > managers`.
    pub services: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: 16,
            managers: 3,
            faults: FaultKinds::ALL,
            duration_ms: 60_000,
            heal_ms: 30_000,
            settle_ms: 10_000,
            services: true,
        }
    }

    /// Nodes that are not managers: they run the node agents and the tasks.
    pub fn workers(&self) -> usize {
        self.nodes.saturating_sub(self.managers)
    }

    /// Whether this run has a services layer (asked for, and a worker to run tasks on).
    pub fn services_on(&self) -> bool {
        self.services && self.workers() > 0
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "swarm-sim run --seed {} --workers {} --managers {} --faults {} --duration {}ms --heal {}ms{}",
            self.seed,
            self.workers(),
            self.managers,
            self.faults,
            self.duration_ms,
            self.heal_ms,
            if self.services { "" } else { " --no-services" }
        )
    }
}
