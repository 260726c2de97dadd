//! The restart policy and the task history, shared by both orchestrators.
//!
//! Both are computed from the tasks alone, so the leader keeps no memory between calls: a task
//! that ended keeps its desired state `Running` (and so its slot) until it is replaced or for
//! good when the policy says no more; replaced tasks are the restart history that
//! `max_attempts` counts.

use crate::model::{RestartCondition, RestartPolicy, Task, TaskId, TaskState};

/// Tasks kept per slot (per node for global services), the running one included, as Docker's
/// default task history retention limit.
pub const TASK_HISTORY_PER_SLOT: usize = 5;

/// Most ended tasks kept beyond [`TASK_HISTORY_PER_SLOT`] because `max_attempts` still counts
/// them. A policy with more attempts than this restarts without limit; `service create` should
/// refuse it.
pub const RESTART_HISTORY_KEPT_MAX: usize = 100;

/// What follows a task that ended while its desired state was still `Running`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AfterEnd {
    /// No restart: the ended task keeps its slot, so nothing refills it.
    Keep,
    /// Replace it now.
    RestartNow,
    /// Replace it at this time (the restart delay is not over).
    RestartAt(u64),
}

/// A task counts as one restart attempt when it ended by itself (`Complete`, `Failed`,
/// `Rejected`) and was then replaced (its desired state is past `Running`), was made from
/// `spec_version` (an update starts the count afresh) and ended within the window.
fn is_attempt(t: &Task, spec_version: u64, window_ms: u64, now_ms: u64) -> bool {
    let ended_by_itself = matches!(
        t.status.state,
        TaskState::Complete | TaskState::Failed | TaskState::Rejected
    );
    let in_window = window_ms == 0 || t.status.since_ms.saturating_add(window_ms) > now_ms;
    ended_by_itself
        && t.desired_state > TaskState::Running
        && t.spec_version == spec_version
        && in_window
}

/// Decides what follows `ended` (terminal, desired `Running`). `history` is every task of its
/// slot. `skip_delay` is set when the task's node is drained: SwarmKit replaces those at once.
pub fn after_end(
    policy: &RestartPolicy,
    ended: &Task,
    history: &[&Task],
    skip_delay: bool,
    now_ms: u64,
) -> AfterEnd {
    debug_assert!(ended.status.state.is_terminal());
    // Lost with its node rather than ended: replaced at once, whatever the policy.
    if ended.status.state == TaskState::Orphaned {
        return AfterEnd::RestartNow;
    }
    match policy.condition {
        RestartCondition::None => return AfterEnd::Keep,
        RestartCondition::OnFailure if ended.status.state == TaskState::Complete => {
            return AfterEnd::Keep;
        }
        _ => {}
    }
    if let Some(max) = policy.max_attempts {
        let attempts = history
            .iter()
            .filter(|t| is_attempt(t, ended.spec_version, policy.window_ms, now_ms))
            .count() as u64;
        if attempts >= max {
            return AfterEnd::Keep;
        }
    }
    if skip_delay {
        return AfterEnd::RestartNow;
    }
    let at = ended.status.since_ms.saturating_add(policy.delay_ms);
    if now_ms >= at {
        AfterEnd::RestartNow
    } else {
        AfterEnd::RestartAt(at)
    }
}

/// The tasks of one slot to remove so that at most [`TASK_HISTORY_PER_SLOT`] remain: oldest
/// first, only those that ended and are no longer wanted, never one that `max_attempts` still
/// counts (up to [`RESTART_HISTORY_KEPT_MAX`] of those are kept).
pub fn trim_history(slot: &[&Task], policy: &RestartPolicy, now_ms: u64) -> Vec<TaskId> {
    if slot.len() <= TASK_HISTORY_PER_SLOT {
        return Vec::new();
    }
    let mut by_age: Vec<&Task> = slot.to_vec();
    by_age.sort_by_key(|t| (t.created_ms, t.id));
    // The newest counted attempts of each spec version stay while the policy limits attempts.
    let mut protected: Vec<TaskId> = Vec::new();
    if let Some(max) = policy.max_attempts {
        let keep = (max as usize).min(RESTART_HISTORY_KEPT_MAX);
        let mut per_version: std::collections::BTreeMap<u64, usize> = Default::default();
        for t in by_age.iter().rev() {
            if is_attempt(t, t.spec_version, policy.window_ms, now_ms) {
                let n = per_version.entry(t.spec_version).or_default();
                if *n < keep {
                    *n += 1;
                    protected.push(t.id);
                }
            }
        }
    }
    let mut excess = slot.len() - TASK_HISTORY_PER_SLOT;
    let mut out = Vec::new();
    for t in by_age {
        if excess == 0 {
            break;
        }
        let removable = t.status.state.is_terminal()
            && t.desired_state > TaskState::Running
            && !protected.contains(&t.id);
        if removable {
            out.push(t.id);
            excess -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::tests_support::task;

    fn ended(id: u128, state: TaskState, at: u64) -> Task {
        let mut t = task(id, 1, None);
        t.status.state = state;
        t.status.since_ms = at;
        t
    }

    fn replaced(mut t: Task) -> Task {
        t.desired_state = TaskState::Shutdown;
        t
    }

    #[test]
    fn conditions() {
        let p = |condition| RestartPolicy {
            condition,
            delay_ms: 0,
            max_attempts: None,
            window_ms: 0,
        };
        let ok = ended(1, TaskState::Complete, 0);
        let bad = ended(2, TaskState::Failed, 0);
        let lost = ended(3, TaskState::Orphaned, 0);
        use AfterEnd::*;
        assert_eq!(
            after_end(&p(RestartCondition::Any), &ok, &[], false, 0),
            RestartNow
        );
        assert_eq!(
            after_end(&p(RestartCondition::OnFailure), &ok, &[], false, 0),
            Keep
        );
        assert_eq!(
            after_end(&p(RestartCondition::OnFailure), &bad, &[], false, 0),
            RestartNow
        );
        assert_eq!(
            after_end(&p(RestartCondition::None), &bad, &[], false, 0),
            Keep
        );
        assert_eq!(
            after_end(&p(RestartCondition::None), &lost, &[], false, 0),
            RestartNow
        );
    }

    #[test]
    fn delay_counts_from_the_end_and_drain_skips_it() {
        let p = RestartPolicy {
            delay_ms: 5_000,
            ..RestartPolicy::default()
        };
        let t = ended(1, TaskState::Failed, 10_000);
        assert_eq!(
            after_end(&p, &t, &[], false, 12_000),
            AfterEnd::RestartAt(15_000)
        );
        assert_eq!(after_end(&p, &t, &[], false, 15_000), AfterEnd::RestartNow);
        assert_eq!(after_end(&p, &t, &[], true, 12_000), AfterEnd::RestartNow);
    }

    #[test]
    fn max_attempts_within_window() {
        let p = RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 0,
            max_attempts: Some(2),
            window_ms: 10_000,
        };
        let old1 = replaced(ended(1, TaskState::Failed, 1_000));
        let old2 = replaced(ended(2, TaskState::Failed, 8_000));
        let scaled = replaced(ended(3, TaskState::Shutdown, 8_500));
        let now = ended(4, TaskState::Failed, 9_000);
        let h = [&old1, &old2, &scaled, &now];
        assert_eq!(
            after_end(&p, &now, &h, false, 9_000),
            AfterEnd::Keep,
            "two attempts made"
        );
        assert_eq!(
            after_end(&p, &now, &h, false, 11_500),
            AfterEnd::RestartNow,
            "the first attempt left the window"
        );
        let forever = RestartPolicy { window_ms: 0, ..p };
        assert_eq!(after_end(&forever, &now, &h, false, 99_000), AfterEnd::Keep);
        let mut other_version = now.clone();
        other_version.spec_version = 2;
        assert_eq!(
            after_end(&forever, &other_version, &h, false, 99_000),
            AfterEnd::RestartNow,
            "an update starts the count afresh"
        );
    }

    #[test]
    fn trims_oldest_ended_tasks_beyond_five() {
        let p = RestartPolicy::default();
        let mut ts: Vec<Task> = (1..=8)
            .map(|i| {
                let mut t = replaced(ended(i, TaskState::Shutdown, i as u64));
                t.created_ms = i as u64;
                t
            })
            .collect();
        // The oldest is still stopping: it cannot go yet.
        ts[0].status.state = TaskState::Running;
        let refs: Vec<&Task> = ts.iter().collect();
        assert_eq!(
            trim_history(&refs, &p, 100),
            vec![TaskId(2), TaskId(3), TaskId(4)]
        );
        assert!(trim_history(&refs[..5], &p, 100).is_empty());
    }

    #[test]
    fn trimming_keeps_what_max_attempts_counts() {
        let p = RestartPolicy {
            max_attempts: Some(7),
            ..RestartPolicy::default()
        };
        let ts: Vec<Task> = (1..=8)
            .map(|i| {
                let mut t = replaced(ended(i, TaskState::Failed, i as u64));
                t.created_ms = i as u64;
                t
            })
            .collect();
        let refs: Vec<&Task> = ts.iter().collect();
        assert_eq!(trim_history(&refs, &p, 100), vec![TaskId(1)]);
    }
}
