//! swarm-sim: whole swarm-node clusters in one thread, in virtual time, from one seed.
//!
//! The simulator drives the runtime's own state machines ([`swarm_actors::membership`],
//! [`swarm_actors::store`], the leader's [`plan`](swarm_actors::leader::plan) and the
//! [`TaskMachine`](swarm_actors::task::TaskMachine)) over a simulated network, injects faults,
//! and checks invariants. One seed decides every
//! delay, loss, fault and random choice, so the same seed gives the same trace hash.
//!
//! A run has two phases: a safety phase with faults (crashes and restarts, pauses, partitions,
//! loss bursts, timer skew), then a liveness phase with none, in which the cluster must heal.
//!
//! # Layout
//!
//! | module | responsibility |
//! |---|---|
//! | [`clock`] | virtual time and the event queue, ordered by (time, sequence) |
//! | [`config`] | what a run is asked to do (`SimConfig`): a leaf that every layer reads |
//! | [`failing`] | the convention for specs that fail on purpose (`SIM_FAIL`): a leaf |
//! | [`net`] | the simulated network: delay, jitter (reordering), loss, duplication, partitions |
//! | [`node`] | a simulated node: its membership machine, alive/crashed/paused, boot counter |
//! | [`faults`] | the fault schedule drawn from the seed |
//! | [`managers`] | the store loop: M managers running the store machine, workload, figures; its `routing` (a router per manager, forwards over the network, (k)) and its [`managers::services`] layer (leader passes, node agents, task machines, operator) are its submodules, since they extend the same loop |
//! | [`timeline`] | what the membership loop did, recorded for the services layer to replay |
//! | [`invariants`] | one file per invariant, checked after each step or at phase end |
//! | [`observed`] | what the invariants read of the services layer (a trait it implements): a leaf |
//! | [`trace`] | the running hash of everything delivered |
//! | [`world`] | the run itself: phases, dispatch, figures, the report |
//!
//! The `swarm-sim` binary (`main.rs`) wraps [`world::run`] in `run` and `sweep` commands.

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod failing;
pub mod faults;
pub mod invariants;
pub mod managers;
pub mod net;
pub mod node;
pub mod observed;
pub mod timeline;
pub mod trace;
pub mod world;

pub use config::SimConfig;
pub use faults::FaultKinds;
pub use world::{SimReport, run};
