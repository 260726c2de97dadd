//! The leader's timing and size rules as plain functions and constants: how long a change
//! waits for its pass, when a restart delay's wake timer fires, and how a pass's operations
//! are cut into commands. [`super::machine::LeaderMachine`] applies them; they are pure so
//! that their tests need no machine.

use crate::store::{OPS_PER_COMMAND_MAX, Op};

/// A pass runs at least this long after the first change that asks for one, so that a burst
/// of changes (a node's statuses, the writes of the previous pass) is handled at once.
pub const PASS_DEBOUNCE_MS: u64 = 20;

/// The longest a change waits for its pass, however large the cluster: well inside the 3 s a
/// lost task may take to be replaced.
pub const PASS_DEBOUNCE_MAX_MS: u64 = 250;

/// Objects (nodes and tasks) per millisecond of debounce: see [`pass_debounce_ms`].
pub const PASS_OBJECTS_PER_MS: usize = 10;

/// A pass runs at least this often, changes or not: restart delays and the down grace end
/// without a message.
pub const PASS_INTERVAL_MS: u64 = 1_000;

/// A new leader treats nodes membership does not see as Unknown, not Down, for this long: their
/// tasks are not orphaned until membership had time to hear from everyone. A node membership
/// declared Down is Down at once (the leader that died with its node, most often).
pub const DOWN_GRACE_MS: u64 = 3_000;

/// After a pass whose read or writes failed, the next one waits this long.
pub const RETRY_MS: u64 = 200;

/// Statuses kept between passes, across all nodes; a node's report beyond it waits for the
/// agent to send it again.
pub const REPORTS_MAX: usize = 100_000;

/// Sessions held while a pass waits for its read or writes; they are answered when it ends,
/// with its assignments (the actor before the machine blocked its mailbox for the pass, and
/// sessions waited there). Later ones are answered Busy and the agent asks again.
pub const SESSIONS_QUEUED_MAX: usize = 1_024;

/// Bytes of operations the leader puts in one command: well under the store's bound, which
/// leaves room for the command's own framing and keeps each entry small.
pub const BATCH_BYTES_MAX: usize = 384 * 1024;
const _: () = assert!(2 * BATCH_BYTES_MAX <= crate::store::COMMAND_BYTES_MAX);

/// How long a change waits for its pass in a cluster of `objects` nodes and tasks (as of the
/// last pass): [`PASS_DEBOUNCE_MS`] up to 200 objects, then 1 ms per [`PASS_OBJECTS_PER_MS`]
/// objects, at most [`PASS_DEBOUNCE_MAX_MS`]. A pass reads and plans every object, so its cost
/// grows with the cluster while the changes asking for it (every applied entry, every fresh
/// status) come more often too: with a fixed 20 ms a 1,000-node cluster passed about 50 times
/// a second and the leader did little else. Growing the wait with the size keeps the leader's
/// share of time spent passing about constant. A pure function of counts, not of measured
/// time, so that the simulator stays deterministic.
pub fn pass_debounce_ms(objects: usize) -> u64 {
    let grown = (objects / PASS_OBJECTS_PER_MS) as u64;
    grown.clamp(PASS_DEBOUNCE_MS, PASS_DEBOUNCE_MAX_MS)
}

/// When the wake timer for a restart delay that ends at `end_ms` fires, asked at `now_ms`: one
/// millisecond after the end, so that the pass it brings finds the delay over.
pub fn wake_fire_ms(end_ms: u64, now_ms: u64) -> u64 {
    now_ms + end_ms.saturating_sub(now_ms) + 1
}

/// The wake timer to set, if any, when a pass at `now_ms` wants one to fire at `wanted`.
/// `pending` is when the one already set fires (forgotten once that time has passed) and
/// becomes the new one's time. Every pass before a restart delay ends wants the same time, so
/// only an earlier one sets another timer: one timer per delay end, however many passes.
pub fn wake_to_set(pending: &mut Option<u64>, wanted: Option<u64>, now_ms: u64) -> Option<u64> {
    *pending = pending.filter(|&w| w > now_ms);
    let wanted = wanted?;
    if pending.is_some_and(|w| w <= wanted) {
        return None;
    }
    *pending = Some(wanted);
    Some(wanted)
}

/// Splits `ops` into commands of at most [`OPS_PER_COMMAND_MAX`] operations and about
/// [`BATCH_BYTES_MAX`] bytes (an operation bigger than that goes alone, and the store refuses
/// it with a clear error). Returns the end of each command in `ops`.
pub fn batches(ops: &[Op]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, op) in ops.iter().enumerate() {
        let size = crate::wire::answer::encoded_len(op);
        if i > start && (i - start == OPS_PER_COMMAND_MAX || bytes + size > BATCH_BYTES_MAX) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < ops.len() {
        out.push(start..ops.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expect, Kind};

    fn op(bytes: usize) -> Op {
        Op::Delete {
            kind: Kind::Task,
            id: "x".repeat(bytes),
            expect: Expect::Any,
        }
    }

    #[test]
    fn one_wake_timer_per_restart_delay_end() {
        assert_eq!(wake_fire_ms(5_000, 1_000), 5_001);
        assert_eq!(
            wake_fire_ms(500, 1_000),
            1_001,
            "an end already past wakes at once"
        );
        let mut pending = None;
        assert_eq!(wake_to_set(&mut pending, Some(5_001), 1_000), Some(5_001));
        assert_eq!(
            wake_to_set(&mut pending, Some(5_001), 2_000),
            None,
            "same end"
        );
        assert_eq!(
            wake_to_set(&mut pending, Some(9_001), 3_000),
            None,
            "a later end"
        );
        assert_eq!(wake_to_set(&mut pending, Some(4_001), 3_000), Some(4_001));
        assert_eq!(wake_to_set(&mut pending, None, 3_500), None);
        assert_eq!(pending, Some(4_001));
        // Once it has fired it is forgotten, and the next end sets one again.
        assert_eq!(wake_to_set(&mut pending, Some(9_001), 4_001), Some(9_001));
    }

    #[test]
    fn the_debounce_grows_with_the_cluster_within_bounds() {
        assert_eq!(pass_debounce_ms(0), PASS_DEBOUNCE_MS);
        assert_eq!(pass_debounce_ms(200), PASS_DEBOUNCE_MS);
        assert_eq!(pass_debounce_ms(1_000), 100);
        assert_eq!(pass_debounce_ms(100_000), PASS_DEBOUNCE_MAX_MS);
        let steps: Vec<u64> = (0..5_000).step_by(100).map(pass_debounce_ms).collect();
        assert!(steps.is_sorted(), "{steps:?}");
    }

    #[test]
    fn batches_respect_the_count_and_the_size() {
        let many: Vec<Op> = (0..2_500).map(|_| op(1)).collect();
        let sizes: Vec<usize> = batches(&many).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);

        let big: Vec<Op> = (0..10).map(|_| op(BATCH_BYTES_MAX / 3)).collect();
        let b = batches(&big);
        assert!(
            b.iter().all(|b| b.len() <= 2),
            "{:?}",
            b.iter().map(|b| b.len()).collect::<Vec<_>>()
        );
        assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 10, "nothing lost");
        assert!(batches(&[]).is_empty());
    }
}
