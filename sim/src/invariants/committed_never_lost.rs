//! Invariant (e): a committed entry is never lost or changed.
//!
//! Every manager's state carries a running digest of the log prefix it applied (index, term,
//! data of each entry). After every input the applied index and digest are recorded; two
//! observations at the same index, on any managers at any time (before or after crashes,
//! snapshots and restarts), must agree, or a replica applied a different entry there.

use std::collections::BTreeMap;

use crate::clock::Millis;

#[derive(Default)]
pub struct Committed {
    /// Applied index → (digest of the prefix up to it, who first reported it).
    seen: BTreeMap<u64, (u64, u64)>,
}

impl Committed {
    pub fn observe(&mut self, at: Millis, raft_id: u64, index: u64, digest: u64) -> Option<String> {
        if index == 0 {
            return None;
        }
        let (want, first) = *self.seen.entry(index).or_insert((digest, raft_id));
        (want != digest).then(|| {
            format!(
                "(e) at {at} ms raft {raft_id} applied a log prefix to index {index} that differs \
                 from the one raft {first} applied"
            )
        })
    }

    pub fn highest(&self) -> u64 {
        self.seen.keys().next_back().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_different_prefix_at_a_seen_index_is_a_violation() {
        let mut c = Committed::default();
        assert!(c.observe(1, 1, 5, 0xaa).is_none());
        assert!(c.observe(2, 2, 5, 0xaa).is_none());
        assert!(c.observe(3, 3, 5, 0xbb).is_some());
        assert_eq!(c.highest(), 5);
    }
}
