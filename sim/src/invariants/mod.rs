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
//! | `update_parallelism.rs` | (l) a stop-first update with parallelism p > 0 has at most p slots being replaced at once, failures aside | when a pass that starts replacing slots commits (`rollout.rs` reads the pass) |
//! | `failed_update_rolls_back.rs` | (m) an update to a spec failing at start, with failure action rollback, ends rolled back: every live task on the previous spec, `rollback_completed` | end |
//! | `pause_holds.rs` | (n) a paused update stays paused, and replaces nothing, until the operator writes the service again | when the pass's write commits |
//! | `update_converges.rs` | (o) after heal every service also converges to its current spec, its update ended (paused ones keep their mix); judged with (i) | with (i) |
//! | `secrets_held.rs` | (p) a node holds only the secrets and configs of its own tasks that have not ended (the shell's vault as the agent machine says), and an answer carries only files of the node's live tasks | (p2) after every agent input; (p1) at every answer with files |
//! | `addresses.rs` | (q) a task given an address gets a well-formed one of its node's slice, held by no other live task, no other node's live task in that slice, and the lowest free (ended tasks' addresses reused) | when the pass's write commits |
//! | `mesh_table.rs` | (r) the routing mesh's table a leader sends lists exactly the tasks in rotation: RUNNING, wanted, healthy when checked, on nodes its last pass did not see Down, with their addresses and their services' ports | at every answer carrying a table |
//! | `overlay.rs` | (s) a task attached to overlay networks gets one well-formed address on each network of its spec (ingress unless all are internal and nothing is published), held by no other live task and no VIP, and the lowest free (ended tasks' addresses released); the table's (r3) lists the store's networks, each backend's overlay addresses as its task holds them, and the nodes with live overlay tasks | when the pass's write commits; (r3) at every answer carrying a table |
//! | `depends_on.rs` | (t) no task of a service with `depends_on` is started (given a node and desired Running) before each dependency met its condition in the starting pass's view (store as read plus the reports it accepted) | when the starting write commits |
//! | `max_replicas.rs` | (u) no pass leaves a node with more live tasks of a replicated service than its max replicas | when the placing write commits |
//! | `../routing.rs` | (k) every write a client routed through a manager's router is answered within the router's bound (5 s + two ticks), paused time left out | when the answer reaches the waiter, and at the end |
//!
//! A check returns what it found wrong, as sentences; an empty list is a pass. Lists are cut
//! at [`REPORT_MAX`] so a broken run stays readable.

pub mod addresses;
pub mod all_ready;
pub mod committed_never_lost;
pub mod convergence;
pub mod depends_on;
pub mod descriptions;
pub mod failed_update_rolls_back;
pub mod max_replicas;
pub mod mesh_table;
pub mod no_false_down;
pub mod one_leader_per_term;
pub mod one_task_per_slot;
pub mod orphans;
pub mod overlay;
pub mod pause_holds;
pub mod placement;
pub mod rollout;
pub mod secrets_held;
pub mod store_liveness;
pub mod update_converges;
pub mod update_parallelism;

/// Most violations one check reports.
pub const REPORT_MAX: usize = 20;
