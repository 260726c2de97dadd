//! Invariant (b): in the liveness phase, once the settle time has passed, no node marks a live
//! node Down. Faults have stopped and every node is reachable, so such a Down is a false one.
//!
//! Checked at every Down event, so the report names the moment it happened.

use crate::clock::Millis;
use crate::node::SimNode;

pub fn on_down(at: Millis, observer: usize, subject: usize, nodes: &[SimNode]) -> Option<String> {
    nodes[subject].is_alive().then(|| {
        format!("(b) at {at} ms node {observer} marked live, reachable node {subject} Down")
    })
}
