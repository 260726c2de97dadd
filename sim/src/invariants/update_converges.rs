//! Invariant (o): after heal, every service converges to its current spec — every task that
//! runs for it is of its current spec version, and its update, if one ran, has ended
//! (`completed` or `rollback_completed`) — within the convergence bound of (i)
//! (`convergence::BOUND_MS`), and stays so to the end.
//!
//! It extends (i), which asks for the right number of RUNNING tasks per slot or node: (i) and
//! (o) are judged together, by `convergence::check`, and this file holds what (o) adds.
//! Exceptions, each a service's own choice:
//! - a paused update (`paused`, `rollback_paused`) keeps its mix of versions: its slots must
//!   run (i), each at most once per version (start-first keeps an old task beside its
//!   replacement when it pauses between the two), and its versions may differ;
//! - a global service's task on a paused node keeps its version: the updater starts nothing
//!   on a node that takes no new task (as the global orchestrator);
//! - a service whose current spec fails on purpose (`crate::failing`) never converges: it is
//!   left out of (i) and (o) both.
//!
//! The bound holds because the operator writes an update only if its rollout, at the pace
//! `updates::rollout_ms` assumes, ends within `updates::TAIL_MS` after heal.

use swarm_actors::model::Service;

use crate::failing::spec_fail;
use crate::observed::Running;

/// How a service is judged after heal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    /// Its current spec fails on purpose: not judged.
    Failing,
    /// Paused: its slots must run, its versions may differ.
    Paused,
    /// Every running task of the current version, the update ended.
    Current,
}

pub fn judged(s: &Service) -> Judged {
    if spec_fail(&s.spec.task).is_some() {
        Judged::Failing
    } else if s
        .update_status
        .as_ref()
        .is_some_and(|u| u.state.is_paused())
    {
        Judged::Paused
    } else {
        Judged::Current
    }
}

/// What keeps `s` (judged [`Judged::Current`]) from being on its current spec, given the tasks
/// that run for it, or `None`.
pub fn check<'r>(s: &Service, running: impl IntoIterator<Item = &'r Running>) -> Option<String> {
    let name = &s.spec.name;
    if let Some(u) = &s.update_status
        && u.state.is_rolling()
    {
        return Some(format!(
            "service {name}'s update has not ended: {} since {} ms",
            u.state.as_str(),
            u.started_ms
        ));
    }
    let stale = running
        .into_iter()
        .filter(|r| r.spec_version != s.spec_version)
        .count();
    (stale > 0).then(|| {
        format!(
            "service {name} at spec version {} runs {stale} tasks of an older version",
            s.spec_version
        )
    })
}
