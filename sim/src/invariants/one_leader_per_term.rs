//! Invariant (d): at most one leader per term, across every manager and every restart.
//!
//! Checked after every input a manager handles: whoever is leader then is recorded for its
//! term, and a second raft ID leading the same term is a violation.

use std::collections::BTreeMap;

use crate::clock::Millis;

#[derive(Default)]
pub struct Leaders {
    by_term: BTreeMap<u64, u64>,
}

impl Leaders {
    pub fn observe(&mut self, at: Millis, term: u64, raft_id: u64) -> Option<String> {
        let first = *self.by_term.entry(term).or_insert(raft_id);
        (first != raft_id).then(|| {
            format!("(d) at {at} ms raft {raft_id} leads term {term}, which raft {first} led")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_leader_in_a_term_is_a_violation() {
        let mut l = Leaders::default();
        assert!(l.observe(1, 4, 1).is_none());
        assert!(l.observe(2, 4, 1).is_none());
        assert!(l.observe(3, 5, 2).is_none());
        assert!(l.observe(4, 4, 3).is_some());
    }
}
