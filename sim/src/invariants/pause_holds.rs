//! Invariant (n): a paused update (`paused` or `rollback_paused`) stays paused until the
//! operator writes the service again (a new update, a scale, a rollback).
//!
//! Judged on every pass, from the service as that pass read it: if it was paused, the pass
//! must not write it with another update state or start time (only the operator may: its
//! `service update` clears the status, its `service rollback` starts a rollback), and it must
//! not start replacing any slot, stop-first or start-first (see `rollout`: a task of the current
//! version made where an old task still runs). The orchestrator's own work goes on meanwhile:
//! a task that ended is restarted (from the current spec), an orphan or a task on a drained node
//! replaced; none of those is counted. Reported when the pass's write commits.

use super::rollout::{Change, slot_name};

/// Why the pass `c` broke (n), or `None`.
pub fn judge(c: &Change) -> Option<String> {
    let before = c.before.update_status.as_ref()?;
    if !before.state.is_paused() {
        return None;
    }
    let name = &c.before.spec.name;
    if c.written {
        let after = c.after.update_status.as_ref();
        let same =
            after.is_some_and(|a| a.state == before.state && a.started_ms == before.started_ms);
        if !same {
            return Some(format!(
                "service {name} left {} on its own: the leader wrote {}",
                before.state.as_str(),
                after.map_or("no update status", |a| a.state.as_str())
            ));
        }
    }
    let started: Vec<String> = c
        .stop_first
        .iter()
        .chain(&c.start_first)
        .map(|(slot, _)| slot_name(slot))
        .collect();
    (!started.is_empty()).then(|| {
        format!(
            "service {name}, {}, had slots replaced by the updater: {}",
            before.state.as_str(),
            started.join(", ")
        )
    })
}
