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
//!
//! A check returns what it found wrong, as sentences; an empty list is a pass. Lists are cut
//! at [`REPORT_MAX`] so a broken run stays readable.

pub mod all_ready;
pub mod committed_never_lost;
pub mod descriptions;
pub mod no_false_down;
pub mod one_leader_per_term;
pub mod store_liveness;

/// Most violations one check reports.
pub const REPORT_MAX: usize = 20;
