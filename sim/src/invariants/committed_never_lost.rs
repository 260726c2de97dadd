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
