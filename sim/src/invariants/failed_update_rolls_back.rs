//! Invariant (m): an update whose failure action is rollback and whose new spec fails — at
//! start (`SIM_FAIL=start`), or after RUNNING well within the update's monitor period
//! (`SIM_FAIL=after:<ms>` with `ms` + [`REPORT_MARGIN_MS`] ≤ `monitor`) — ends, once the
//! cluster has healed, rolled back: every live task of the service on the previous spec and
//! the status `rollback_completed`.
//!
//! Likewise, such an update whose failure action is pause ends `paused`.
//!
//! Checked at the end of the run on the leader's committed store. The operator writes a
//! failing spec only over a good one (`updates.rs`), so the spec rolled back to runs. Cases:
//! - the current spec is such a failing one and the previous is good, and an update started
//!   (a status is set) that is not a rollback: it should have been rolled back. (A rollback
//!   state with the failing spec current is the operator's own `service rollback` to it.)
//! - the previous spec is such a failing one, the current good, and the status a rollback's:
//!   the failed update was rolled back (or the operator went back and forth), and the
//!   rollback must have completed with every live task at the current version. A rollback
//!   may instead pause (`rollback_paused`) when one of its own tasks failed (a runtime fault
//!   before heal, not the spec): the task its message names must then be of the current
//!   version, if the store still holds it.
//!
//! Services no live node is eligible for are left out: their new tasks never get a node, so
//! they neither run nor fail.

use swarm_actors::model::{FailureAction, Service, ServiceSpec, TaskState};
use swarm_actors::store::{Kind, ObjectBody, StoreState};

use crate::failing::{SpecFail, spec_fail};

/// How much earlier than the end of the monitor period a task must fail for (m) to expect the
/// leader to see it in time: its status reaches the leader with the agent's next session (at
/// once, or within a session interval when the first try is lost).
pub const REPORT_MARGIN_MS: u64 = 1_000;

/// Whether the tasks of `spec` fail within its update's monitor period.
fn fails_within_monitor(spec: &ServiceSpec) -> bool {
    match spec_fail(&spec.task) {
        Some(SpecFail::Start) => true,
        Some(SpecFail::After(ms)) => ms + REPORT_MARGIN_MS <= spec.update.monitor_ms,
        None => false,
    }
}

/// A spec whose tasks fail within the monitor period and that asks for its failed update to be
/// rolled back.
fn fails_with_rollback(spec: &ServiceSpec) -> bool {
    fails_within_monitor(spec) && spec.update.failure_action == FailureAction::Rollback
}

/// What is wrong with service `s` at the end, or `None`. `placeable`: some live node is
/// eligible for its current spec.
pub fn check(state: &StoreState, s: &Service, placeable: bool) -> Option<String> {
    let (Some(previous), Some(status)) = (&s.previous_spec, &s.update_status) else {
        return None;
    };
    if !placeable {
        return None;
    }
    let name = &s.spec.name;
    let current_good = spec_fail(&s.spec.task).is_none();
    let previous_good = spec_fail(&previous.task).is_none();
    // Likewise, failure action pause: the update ends paused.
    if fails_within_monitor(&s.spec)
        && s.spec.update.failure_action == FailureAction::Pause
        && previous_good
        && !status.state.is_rollback()
        && status.state != swarm_actors::model::UpdateState::Paused
    {
        return Some(format!(
            "(m) at the end service {name}'s update to a failing spec with failure action \
             pause is not paused: {} ({})",
            status.state.as_str(),
            status.message
        ));
    }
    if fails_with_rollback(&s.spec) && previous_good && !status.state.is_rollback() {
        return Some(format!(
            "(m) at the end service {name}'s update to a failing spec with failure action \
             rollback was not rolled back: {} ({})",
            status.state.as_str(),
            status.message
        ));
    }
    if !(fails_with_rollback(previous) && current_good && status.state.is_rollback()) {
        return None;
    }
    let tasks = state.list(Kind::Task).filter_map(|o| match &o.body {
        ObjectBody::Task(t) if t.service_id == s.id => Some(t),
        _ => None,
    });
    match status.state {
        swarm_actors::model::UpdateState::RollbackCompleted => {
            let stale: Vec<String> = tasks
                .filter(|t| t.desired_state <= TaskState::Running && !t.status.state.is_terminal())
                .filter(|t| t.spec_version != s.spec_version)
                .map(|t| {
                    format!(
                        "{} (slot {}, version {})",
                        t.id.0 as u32, t.slot, t.spec_version
                    )
                })
                .collect();
            (!stale.is_empty()).then(|| {
                format!(
                    "(m) at the end service {name} completed its rollback to version {} with \
                     live tasks of another version: {}",
                    s.spec_version,
                    stale.join(", ")
                )
            })
        }
        swarm_actors::model::UpdateState::RollbackPaused => {
            let named = status.message.rsplit(' ').next().unwrap_or("");
            let task = state.get(Kind::Task, named).and_then(|o| match &o.body {
                ObjectBody::Task(t) => Some(t),
                _ => None,
            });
            match task {
                Some(t) if t.spec_version != s.spec_version => Some(format!(
                    "(m) at the end service {name}'s rollback is paused by task {} of version {}, \
                     not of the version rolled back to ({}): {}",
                    t.id.0 as u32, t.spec_version, s.spec_version, status.message
                )),
                _ => None,
            }
        }
        // Still rolling back at the end: (o) says whether that is in time.
        _ => None,
    }
}
