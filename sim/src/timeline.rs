//! What the membership layer did, recorded for the services layer to replay.
//!
//! Membership depends on nothing above it, so the membership loop runs ahead and records, in
//! time order: each manager's view (who it sees Up or Down), which worker nodes crashed,
//! restarted, paused and resumed, and the network's conditions (partition, loss, duplication).
//! The store loop, which carries the services layer, replays these events at the same virtual
//! times. The leader then sees exactly what its manager's membership saw, and a worker cut off
//! by a partition is both unreachable for sessions and Down in the leader's view, as in a real
//! cluster where sessions and gossip share the network.
//!
//! Managers are not crashed or paused by the membership loop while the services layer is on:
//! the store loop crashes and pauses them (so a manager's membership view never vanishes while
//! its store runs).
//!
//! The two loops run at once, on two threads: the membership loop hands the changes over in
//! [`Batch`]es, each saying up to when it is complete, and the store loop takes an event only
//! once every change up to that event's time has arrived. Changes keep their places in the
//! store loop's queue (before any event queued after its start), so a run's outcome and trace
//! do not depend on how the threads happen to interleave.

use crate::clock::Millis;
use crate::net::Partition;

/// One recorded change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Manager `observer`'s membership marked `subject` Up (`true`) or Down.
    View {
        observer: usize,
        subject: usize,
        up: bool,
    },
    /// A node crashed (its processes and agent are gone).
    Crash(usize),
    /// A node started: its first boot, or a restart after a crash.
    Start(usize),
    Pause(usize),
    Resume(usize),
    Partition(Option<Partition>),
    Loss(u32),
    Duplication(u32),
}

/// The recorded changes, in the order they happened.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub changes: Vec<(Millis, Change)>,
    /// Nodes crashed for good (never restarted).
    pub gone_for_good: Vec<usize>,
}

impl Timeline {
    pub fn push(&mut self, at: Millis, change: Change) {
        debug_assert!(self.changes.last().is_none_or(|(t, _)| *t <= at));
        self.changes.push((at, change));
    }

    /// The changes recorded since the last batch, complete up to (not including) `upto`.
    pub fn batch(&mut self, upto: Millis) -> Batch {
        Batch {
            changes: std::mem::take(&mut self.changes),
            gone_for_good: std::mem::take(&mut self.gone_for_good),
            upto,
        }
    }
}

/// Part of the timeline, handed from the membership loop to the store loop.
#[derive(Debug)]
pub struct Batch {
    pub changes: Vec<(Millis, Change)>,
    pub gone_for_good: Vec<usize>,
    /// Every change before this time is in this batch or an earlier one; `Millis::MAX` in the
    /// last batch.
    pub upto: Millis,
}

/// How much virtual time one batch covers. Batches hold a few changes each; the store loop
/// waits for the membership loop at most this far ahead.
pub const BATCH_MS: Millis = 500;

/// Batches in flight at most: the membership loop waits when the store loop is this far
/// behind.
pub const BATCHES_IN_FLIGHT_MAX: usize = 256;
