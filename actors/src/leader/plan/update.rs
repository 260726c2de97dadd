//! The rolling updater: how a service moves its tasks from an older spec version to its
//! current one, a few slots at a time, watching the new tasks and pausing or rolling back when
//! they fail (SwarmKit's semantics, Docker's defaults).
//!
//! Like the rest of the plan it keeps no memory between passes: where an update stands is the
//! service's [`UpdateStatus`] in the store and the tasks themselves (their spec version, when
//! they were made and when they first ran), so a new leader carries on where the old one left
//! off.
//!
//! ```text
//!  none / completed ──(a slot runs an older version)──▶ updating ──(done + monitor)──▶ completed
//!                                                        │ failures > ratio
//!                         pause ◀────────────────────────┼──────────────▶ rollback: spec swapped
//!                           │                            │ continue          │
//!                        paused (until a new update)     ▼                   ▼
//!                                                     (goes on)       rollback_started ──▶ rollback_completed
//!                                                                            │ failures > ratio
//!                                                                            ▼
//!                                                                     rollback_paused
//! ```
//!
//! Per pass, for one service:
//! 1. A start-first slot whose new task runs has its old task shut down, and a stop-first
//!    slot's held new task is let start once its old task stopped (in any state).
//! 2. With no update under way (no status, or completed) and a slot running an older version,
//!    the update starts: status `updating`. Nothing else is done for the service in that pass:
//!    each status change is written alone, and the next pass works from it.
//! 3. Updating or rolling back: failures are counted — tasks of the current version made since
//!    the update started that ended by themselves before running or within `monitor` after
//!    running, one per slot. More than `max_failure_ratio` of the service's slots fires the
//!    failure action.
//! 4. Otherwise slots still on an older version are replaced, at most `parallelism` in flight
//!    (0: all at once). A slot is in flight while its new task has not run, or has run for less
//!    than `delay`. Stop-first: the old task is told to stop and the new one is made held
//!    (desired [`HELD`](crate::orchestrator::HELD)); step 1 of a later pass lets it start once
//!    the old one has stopped, as SwarmKit's restart supervisor does.
//! 5. No older version left, nothing in flight, and `monitor` past since the last new task ran:
//!    `completed` (or `rollback_completed`).

use std::collections::BTreeMap;

use crate::model::{
    Availability, FailureAction, NodeId, NodeState, Service, ServiceMode, Task, TaskId, TaskState,
    UpdateOrder, UpdateState, UpdateStatus,
};
use crate::orchestrator::Action;

/// A stop-first update's new task waits for the old one's stop at most its stop grace period
/// plus this: a node that is gone without being Down yet does not hold the slot for ever.
pub const HOLD_MARGIN_MS: u64 = 5_000;

/// What the updater decided for one service in one pass.
#[derive(Debug, Default)]
pub(super) struct Rollout {
    pub actions: Vec<Action>,
    /// The service with its new status (or its spec rolled back), to write.
    pub service: Option<Service>,
    /// Run again then: a delay or a monitor period ends.
    pub wake_at_ms: Option<u64>,
}

/// A slot's key: its number for a replicated service, its node for a global one.
type SlotKey = (u64, Option<NodeId>);

fn key(t: &Task) -> SlotKey {
    match t.slot {
        0 => (0, t.node_id),
        s => (s, None),
    }
}

/// Not ended, and wanted by the orchestrator.
fn live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running && !t.status.state.is_terminal()
}

/// Ended by itself: the states a failing spec produces (a task the leader stopped ends
/// `Shutdown`, one lost with its node `Orphaned`).
fn ended_by_itself(t: &Task) -> bool {
    matches!(
        t.status.state,
        TaskState::Failed | TaskState::Rejected | TaskState::Complete
    )
}

/// One slot's tasks, as the updater sees them.
#[derive(Default)]
struct Slot<'a> {
    /// Tasks of another spec version that hold the slot (desired `Running`, ended or not).
    old: Vec<&'a Task>,
    /// Live tasks of the current version.
    new: Vec<&'a Task>,
}

fn set_status(service: &Service, status: UpdateStatus) -> Service {
    Service {
        update_status: Some(status),
        ..service.clone()
    }
}

/// The updater's decisions for `service`, whose tasks (every one not deleted in this pass) are
/// `tasks`, at `now`.
///
/// `node` tells a node's state and availability. A global service's slot is its node: one on a
/// node that takes no new task (not Ready, or not Active) is left as it is (the global
/// orchestrator starts nothing there either) and does not hold the update up; it is replaced
/// by a later update, or by the orchestrator when the node is Down.
pub(super) fn rollout<'a>(
    service: &Service,
    tasks: impl Iterator<Item = &'a Task>,
    node: &dyn Fn(NodeId) -> Option<(NodeState, Availability)>,
    now: u64,
) -> Rollout {
    let mut out = Rollout::default();
    let version = service.spec_version;
    let mut slots: BTreeMap<SlotKey, Slot> = BTreeMap::new();
    let mut all: Vec<&Task> = Vec::new();
    // Per slot, the longest stop grace period among its old tasks still stopping: what a
    // stop-first slot's held new task waits for (step 1).
    let mut stopping: BTreeMap<SlotKey, u64> = BTreeMap::new();
    for t in tasks {
        all.push(t);
        if t.desired_state > TaskState::Running {
            if t.spec_version != version && !t.status.state.is_terminal() && t.node_id.is_some() {
                let grace = stopping.entry(key(t)).or_default();
                *grace = (*grace).max(t.spec.stop_grace_period_ms);
            }
            continue;
        }
        // An old task that ended but still holds its slot (its restart is due later) is
        // replaced like a running one: the new spec does not wait for the old one's delay.
        if t.spec_version != version {
            slots.entry(key(t)).or_default().old.push(t);
        } else if live(t) {
            slots.entry(key(t)).or_default().new.push(t);
        }
    }

    // 1. Start-first overlap: the new task runs, so the old one goes. Stop-first: a held new
    // task starts once the old one has stopped (or after its grace period and a margin, so
    // that a node that never reports cannot hold the slot for ever).
    for (k, slot) in &slots {
        for t in slot
            .new
            .iter()
            .filter(|t| t.desired_state < TaskState::Running)
        {
            let release_at = match stopping.get(k) {
                Some(grace) => now.max(
                    t.created_ms
                        .saturating_add(*grace)
                        .saturating_add(HOLD_MARGIN_MS),
                ),
                None => now,
            };
            if release_at <= now {
                out.actions.push(Action::Release { task: t.id });
            } else {
                wake(&mut out, release_at);
            }
        }
    }
    for slot in slots.values() {
        // A held task of another version (an update rolled back, or replaced by a newer one,
        // before it started) will never be released: it goes, and its slot is refilled.
        for t in slot
            .old
            .iter()
            .filter(|t| t.desired_state < TaskState::Running)
        {
            out.actions.push(Action::Shutdown {
                task: t.id,
                reason: "replaced by a service update before it started".to_string(),
            });
        }
        if slot
            .new
            .iter()
            .any(|t| t.status.state == TaskState::Running)
        {
            for t in slot.old.iter().filter(|t| live(t)) {
                out.actions.push(Action::Shutdown {
                    task: t.id,
                    reason: "replaced by a service update".to_string(),
                });
            }
        }
    }
    let global = matches!(service.spec.mode, ServiceMode::Global);
    let on = |k: &SlotKey| k.1.and_then(node);
    let replaceable = |k: &SlotKey, s: &Slot| {
        !s.old.is_empty() && (!global || on(k) == Some((NodeState::Ready, Availability::Active)))
    };
    let outdated = slots.iter().any(|(k, s)| replaceable(k, s));

    // 2. Whether an update is under way, or starts now.
    let status = match &service.update_status {
        Some(s) if s.state.is_rolling() => s,
        Some(s) if s.state.is_paused() => return out,
        _ => {
            if outdated {
                out.service = Some(set_status(
                    service,
                    UpdateStatus {
                        state: UpdateState::Updating,
                        started_ms: now,
                        completed_ms: None,
                        message: "update in progress".to_string(),
                    },
                ));
            }
            return out;
        }
    };
    let config = service.rollout_config();
    let rolling_back = status.state.is_rollback();
    // This update's tasks: the current version, made since it started.
    let ours = |t: &&Task| t.spec_version == version && t.created_ms >= status.started_ms;

    // 3. Failures: one per slot, the earliest named.
    let mut failed: BTreeMap<SlotKey, &Task> = BTreeMap::new();
    for t in all.iter().copied().filter(ours) {
        let early = match t.running_ms {
            None => true,
            Some(ran) => t.status.since_ms < ran.saturating_add(config.monitor_ms),
        };
        if ended_by_itself(t) && early {
            let first = failed.entry(key(t)).or_insert(t);
            if (t.status.since_ms, t.id) < (first.status.since_ms, first.id) {
                *first = t;
            }
        }
    }
    let slot_count = match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => slots.len() as u64,
    }
    .max(1);
    if let Some(first) = failed.values().min_by_key(|t| (t.status.since_ms, t.id)) {
        let ratio = failed.len() as f64 / slot_count as f64;
        if ratio > f64::from(config.max_failure_ratio) {
            let action = match config.failure_action {
                FailureAction::Rollback if rolling_back => FailureAction::Pause,
                a => a,
            };
            match action {
                FailureAction::Continue => {}
                FailureAction::Pause => {
                    out.service = Some(paused(service, status, rolling_back, first.id));
                    return out;
                }
                FailureAction::Rollback => {
                    let rollback = UpdateStatus {
                        state: UpdateState::RollbackStarted,
                        started_ms: now,
                        completed_ms: None,
                        message: format!(
                            "update rolled back due to failure or early termination of task {}",
                            first.id
                        ),
                    };
                    out.service = Some(match service.rolled_back(rollback) {
                        Ok(s) => s,
                        Err(_) => paused(service, status, false, first.id),
                    });
                    return out;
                }
            }
        }
    }

    // 4. Replacements, at most `parallelism` slots in flight.
    let in_flight_until = |t: &Task| match (t.status.state, t.running_ms) {
        (s, _) if s < TaskState::Running => Some(u64::MAX),
        (TaskState::Running, Some(ran)) => Some(ran.saturating_add(config.delay_ms)),
        _ => None,
    };
    let mut in_flight = 0u64;
    for slot in slots.values() {
        let until = slot
            .new
            .iter()
            .copied()
            .filter(|t| ours(t))
            .filter_map(in_flight_until)
            .max();
        match until {
            Some(u) if u > now => {
                in_flight += 1;
                if u != u64::MAX {
                    wake(&mut out, u);
                }
            }
            _ => {}
        }
    }
    let parallelism = match config.parallelism {
        0 => u64::MAX,
        p => p,
    };
    let mut budget = parallelism.saturating_sub(in_flight);
    for (k, slot) in &slots {
        if budget == 0 {
            break;
        }
        // Slots whose new task exists are in flight or finishing (step 1).
        if !replaceable(k, slot) || !slot.new.is_empty() {
            continue;
        }
        budget -= 1;
        let node = k.1;
        // A global task replaced on a node the new spec may no longer fit is not recreated
        // here: the orchestrator's next pass creates it if the node is eligible.
        let create = !global
            || slot
                .old
                .iter()
                .all(|t| t.spec.placement == service.spec.task.placement);
        let start_first = config.order == UpdateOrder::StartFirst && create;
        if !start_first {
            for t in &slot.old {
                out.actions.push(Action::Shutdown {
                    task: t.id,
                    reason: "replaced by a service update".to_string(),
                });
            }
        }
        if create && start_first {
            out.actions.push(Action::Create {
                slot: k.0,
                node,
                spec_version: version,
            });
        } else if create {
            // Held until the old task has stopped (step 1 of a later pass releases it).
            let stopping = slot.old.iter().any(|t| live(t) && t.node_id.is_some());
            out.actions.push(if stopping {
                Action::CreateHeld {
                    slot: k.0,
                    node,
                    spec_version: version,
                }
            } else {
                Action::Create {
                    slot: k.0,
                    node,
                    spec_version: version,
                }
            });
        }
    }

    // 5. Done: nothing old, nothing in flight, and the monitor period over.
    if outdated || in_flight > 0 {
        return out;
    }
    let mut last_ran = status.started_ms;
    for t in all.iter().copied().filter(ours) {
        if !live(t) {
            continue;
        }
        match t.running_ms {
            // A new task still on its way: not done.
            None => return out,
            Some(ran) => last_ran = last_ran.max(ran),
        }
    }
    let done_at = last_ran.saturating_add(config.monitor_ms);
    if now < done_at {
        wake(&mut out, done_at);
        return out;
    }
    let (state, message) = if rolling_back {
        (UpdateState::RollbackCompleted, "rollback completed")
    } else {
        (UpdateState::Completed, "update completed")
    };
    out.service = Some(set_status(
        service,
        UpdateStatus {
            state,
            started_ms: status.started_ms,
            completed_ms: Some(now),
            message: message.to_string(),
        },
    ));
    out
}

fn wake(out: &mut Rollout, at: u64) {
    out.wake_at_ms = Some(out.wake_at_ms.map_or(at, |w| w.min(at)));
}

/// The service paused by a failure of `task`.
fn paused(service: &Service, status: &UpdateStatus, rolling_back: bool, task: TaskId) -> Service {
    let (state, what) = if rolling_back {
        (UpdateState::RollbackPaused, "rollback")
    } else {
        (UpdateState::Paused, "update")
    };
    set_status(
        service,
        UpdateStatus {
            state,
            started_ms: status.started_ms,
            completed_ms: None,
            message: format!("{what} paused due to failure or early termination of task {task}"),
        },
    )
}
