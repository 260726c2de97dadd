//! Invariant (j): no task is orphaned on a node the orphaning leader could not yet call Down.
//!
//! A leader orphans a node's tasks (and has them replaced elsewhere) when the node is Down to
//! it: membership declared it Down, or the leader has led for [`DOWN_GRACE_MS`] and its
//! membership does not see the node. A leader that just took over has not heard from every
//! node yet; orphaning an unseen node's tasks then would stop work that runs fine, on every
//! failover. Judged against the orphaning manager's own membership view (what it saw Up, what
//! it declared Down) when the pass computes, reported if its write commits, like (h).

use swarm_actors::leader::DOWN_GRACE_MS;
use swarm_actors::model::Task;

use crate::clock::Millis;

/// What the orphaning leader's membership said about the task's node when the pass ran.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Membership sees the node Up.
    pub up: bool,
    /// Membership declared the node Down (and has not seen it Up since).
    pub declared_down: bool,
    /// How long the leader had led.
    pub led_ms: Millis,
}

/// Why orphaning a task on a node seen as `seen` was wrong, or `None` if it was allowed.
pub fn judge(seen: Seen) -> Option<String> {
    if seen.up {
        return Some("its leader's membership saw the node Up".into());
    }
    if !seen.declared_down && seen.led_ms < DOWN_GRACE_MS {
        return Some(format!(
            "the node was only unseen, {} ms into a leadership (grace {DOWN_GRACE_MS} ms)",
            seen.led_ms
        ));
    }
    None
}

pub fn violation(at: Millis, task: &Task, why: String) -> String {
    let node = task.node_id.map_or(u128::MAX, |n| n.0);
    format!(
        "(j) at {at} ms task {} (slot {}) on node {} was orphaned although {why}",
        task.id.0 as u32,
        task.slot,
        node.saturating_sub(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_only_what_membership_lost_or_declared_down() {
        let seen = |up, declared_down, led_ms| Seen {
            up,
            declared_down,
            led_ms,
        };
        assert!(judge(seen(true, false, 10_000)).is_some());
        assert!(judge(seen(false, false, 100)).is_some());
        assert!(judge(seen(false, true, 100)).is_none());
        assert!(judge(seen(false, false, DOWN_GRACE_MS)).is_none());
    }
}
