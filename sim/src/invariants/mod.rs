//! The invariants a run must keep, one per file.
//!
//! | file | invariant | checked |
//! |---|---|---|
//! | `all_ready.rs` | (a) after heal every live node sees every live node Ready, and no node gone for good as Ready | end of the liveness phase |
//! | `no_false_down.rs` | (b) in the liveness phase, after the settle time, no live node is marked Down | at every Down event |
//! | `descriptions.rs` | (c) after heal every live node holds every live node's current description | end of the liveness phase |
//! | `one_leader_per_term.rs` | (d) at most one store leader per term | after every store input |
//! | `committed_never_lost.rs` | (e) a committed store entry is never lost or changed | after every store input |
//! | `store_liveness.rs` | (f) after heal a store write commits within a bound | first write after heal, end |
//! | `one_task_per_slot.rs` | (g1) no slot has two wanted RUNNING tasks in any store; (g2) after heal and a settle time, no slot runs on two nodes | (g1) after every applied entry; (g2) when a task starts running, every 500 ms |
//! | `placement.rs` | (h) no task placed on a node drained, paused, not Ready, or not matching, in the placing pass's view | when the placement commits |
//! | `orphans.rs` | (j) no task orphaned on a node its leader's membership sees Up, or has only not seen yet within the grace after leadership began | when the orphaning write commits |
//! | `convergence.rs` | (i) after heal every service converges within a bound and stays so | every 500 ms after heal, end |
//! | `../routing.rs` | (k) every write a client routed through a manager's router is answered within the router's bound (5 s + two ticks), paused time left out | when the answer reaches the waiter, and at the end |
//!
//! A check returns what it found wrong, as sentences; an empty list is a pass. Lists are cut
//! at [`REPORT_MAX`] so a broken run stays readable.

pub mod all_ready;
pub mod committed_never_lost;
pub mod convergence;
pub mod descriptions;
pub mod no_false_down;
pub mod one_leader_per_term;
pub mod one_task_per_slot;
pub mod orphans;
pub mod placement;
pub mod store_liveness;

/// Most violations one check reports.
pub const REPORT_MAX: usize = 20;
