//! Invariant (l): a stop-first rolling update with parallelism p > 0 has no more than p slots
//! being replaced at once, failures aside.
//!
//! Judged on every pass that starts replacing a slot stop-first (see `rollout`) of a service
//! whose update status, after the pass, is `updating` or `rollback_started`, with the config
//! that rollout uses (`Service::rollout_config`: the rollback config during a rollback).
//! After that pass, a slot is being replaced when it has an old task (another spec version;
//! told to stop, or ended) and its new task — current spec version, created since the update
//! started, wanted — has not reached RUNNING. Slots where a task of the current version created
//! since the update started ended on its own (failed, rejected or complete: a failure of this
//! update) are left out, as are new slots after a scale up (no old task). Reported when the
//! pass's write commits.

use std::collections::BTreeMap;

use swarm_actors::model::{TaskState, UpdateOrder};

use super::rollout::{Change, Slot, live, slot_name, slot_of};

/// Why the pass `c` broke (l), or `None`.
pub fn judge(c: &Change) -> Option<String> {
    let s = c.after;
    let status = s.update_status.as_ref()?;
    let config = s.rollout_config();
    if c.stop_first.is_empty()
        || !status.state.is_rolling()
        || config.order != UpdateOrder::StopFirst
        || config.parallelism == 0
    {
        return None;
    }
    let current = s.spec_version;
    let since = status.started_ms;
    // Per slot: it has an old task; a new one on its way; a new one that failed.
    let mut slots: BTreeMap<Slot, (bool, bool, bool)> = BTreeMap::new();
    for t in &c.tasks {
        let f = slots.entry(slot_of(t)).or_default();
        if t.spec_version != current {
            f.0 = true;
        } else if t.created_ms >= since {
            f.1 |= live(t) && t.status.state < TaskState::Running;
            f.2 |= matches!(
                t.status.state,
                TaskState::Failed | TaskState::Rejected | TaskState::Complete
            );
        }
    }
    let replacing: Vec<&Slot> = slots
        .iter()
        .filter(|(_, (old, starting, failed))| *old && *starting && !*failed)
        .map(|(slot, _)| slot)
        .collect();
    (replacing.len() as u64 > config.parallelism).then(|| {
        let names: Vec<String> = replacing.iter().map(|s| slot_name(s)).collect();
        format!(
            "service {} ({}, stop-first, parallelism {}) has {} slots being replaced at once: {}",
            s.spec.name,
            status.state.as_str(),
            config.parallelism,
            replacing.len(),
            names.join(", ")
        )
    })
}
