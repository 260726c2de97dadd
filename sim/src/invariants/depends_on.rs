//! Invariant (t): no task of a service with `depends_on` is started before every service it
//! depends on met its condition, in the view of the pass that started it.
//!
//! *Started*: the pass's write is the first to give the task both a node and desired state
//! `Running` (placed so, or a held task released); from then on its node may start it. A
//! task placed held, or left pending, has not started.
//!
//! *The view*: the tasks the pass read from its manager's store, each with the status its
//! node reported since the last pass when the stored status accepts it (forward only), which
//! is what the pass starts from. Judged when the pass computes, reported when its write
//! commits, as (h) is.
//!
//! The conditions, as compose states them, read here on their own (not through the leader's
//! code), over the dependency's tasks of any spec version:
//! - `service_started`: some task is RUNNING with desired `Running`, and every task placed on
//!   a node, desired `Running` and not ended, is RUNNING;
//! - `service_healthy`: the same, and each of those RUNNING tasks whose spec has a health
//!   check last reported healthy;
//! - `service_completed_successfully`: the tasks holding slots (desired `Running` or before)
//!   are some, and all ended `Complete` with exit code 0 (or none reported).
//!
//! A dependency that is not a service of the store is not met.

use std::collections::BTreeMap;

use swarm_actors::model::{
    DependencyCondition, Health, Service, ServiceId, Task, TaskId, TaskState, TaskStatus,
};
use swarm_actors::store::{Kind, ObjectBody, Op, StoreState};

use crate::clock::Millis;

/// Every task the pass of `ops` starts although a dependency of its service was not met, with
/// the reason.
pub fn judge(
    state: &StoreState,
    reports: &BTreeMap<TaskId, TaskStatus>,
    ops: &[Op],
) -> Vec<(Task, String)> {
    let services: BTreeMap<ServiceId, &Service> = state
        .list(Kind::Service)
        .filter_map(|o| match &o.body {
            ObjectBody::Service(s) => Some((s.id, s)),
            _ => None,
        })
        .collect();
    if services.values().all(|s| s.spec.depends_on.is_empty()) {
        return Vec::new();
    }
    let mut found = Vec::new();
    // The pass's view of the tasks, by service: built at the first started task that needs it.
    let mut view: Option<BTreeMap<ServiceId, Vec<Task>>> = None;
    for op in ops {
        let Op::Put {
            body: ObjectBody::Task(t),
            ..
        } = op
        else {
            continue;
        };
        let Some(s) = services.get(&t.service_id) else {
            continue;
        };
        if s.spec.depends_on.is_empty() || !starts(state, t) {
            continue;
        }
        let view = view.get_or_insert_with(|| pass_view(state, reports));
        for d in &s.spec.depends_on {
            let dep = services.values().find(|x| x.spec.name == d.service);
            let why = match dep {
                None => Some("it is not a service".to_string()),
                Some(dep) => not_met(d.condition, view.get(&dep.id).map_or(&[], Vec::as_slice)),
            };
            if let Some(why) = why {
                found.push((
                    t.clone(),
                    format!(
                        "service {} depends on {} ({}), but {why}",
                        s.spec.name,
                        d.service,
                        d.condition.as_str()
                    ),
                ));
            }
        }
    }
    found
}

/// Whether the write of `t` starts it: it has a node and desired `Running` now, and had not
/// both before.
fn starts(state: &StoreState, t: &Task) -> bool {
    let now = t.node_id.is_some()
        && t.desired_state == TaskState::Running
        && !t.status.state.is_terminal();
    let old = match state.get(Kind::Task, &t.id.to_string()).map(|o| &o.body) {
        Some(ObjectBody::Task(old)) => Some(old),
        _ => None,
    };
    now && old.is_none_or(|o| o.node_id.is_none() || o.desired_state != TaskState::Running)
}

/// The store's tasks with the reports the pass accepted, by service.
fn pass_view(
    state: &StoreState,
    reports: &BTreeMap<TaskId, TaskStatus>,
) -> BTreeMap<ServiceId, Vec<Task>> {
    let mut by: BTreeMap<ServiceId, Vec<Task>> = BTreeMap::new();
    for o in state.list(Kind::Task) {
        let ObjectBody::Task(t) = &o.body else {
            continue;
        };
        let mut t = t.clone();
        if let Some(r) = reports.get(&t.id)
            && t.status.accepts(r)
        {
            t.status = r.clone();
        }
        by.entry(t.service_id).or_default().push(t);
    }
    by
}

/// Why a service whose tasks are `tasks` does not meet `condition`, or `None` if it does.
fn not_met(condition: DependencyCondition, tasks: &[Task]) -> Option<String> {
    let name = |t: &Task| format!("task {} (slot {})", t.id.0 as u32, t.slot);
    match condition {
        DependencyCondition::Started | DependencyCondition::Healthy => {
            let meant = || {
                tasks.iter().filter(|t| {
                    t.desired_state == TaskState::Running && !t.status.state.is_terminal()
                })
            };
            if let Some(t) =
                meant().find(|t| t.node_id.is_some() && t.status.state != TaskState::Running)
            {
                return Some(format!("{} is placed and {}", name(t), t.status.state));
            }
            if condition == DependencyCondition::Healthy
                && let Some(t) = meant().find(|t| {
                    t.status.state == TaskState::Running
                        && t.spec.health.is_some()
                        && t.status.health != Some(Health::Healthy)
                })
            {
                return Some(format!(
                    "{} runs with health {:?}",
                    name(t),
                    t.status.health
                ));
            }
            if !meant().any(|t| t.status.state == TaskState::Running) {
                return Some("none of its tasks runs".to_string());
            }
            None
        }
        DependencyCondition::CompletedSuccessfully => {
            let holding = || {
                tasks
                    .iter()
                    .filter(|t| t.desired_state <= TaskState::Running)
            };
            if let Some(t) = holding().find(|t| {
                t.status.state != TaskState::Complete
                    || !matches!(t.status.exit_code, None | Some(0))
            }) {
                return Some(format!("{} is {}", name(t), t.status.state));
            }
            if holding().next().is_none() {
                return Some("no task of it holds a slot".to_string());
            }
            None
        }
    }
}

pub fn violation(at: Millis, task: &Task, why: String) -> String {
    let node = task.node_id.map_or(u128::MAX, |n| n.0);
    format!(
        "(t) at {at} ms task {} (slot {}) was started on node {} although {why}",
        task.id.0 as u32,
        task.slot,
        node.saturating_sub(1)
    )
}
