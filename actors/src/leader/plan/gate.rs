//! `depends_on` gating: which services may not start tasks yet, and why.
//!
//! A service's tasks start only once every service it depends on meets its condition,
//! cluster-wide, in the pass's view: the tasks it read with the statuses nodes reported since
//! the last pass (step 1 of [`plan`](super::plan)). Swarm ignores `depends_on`; compose waits
//! for it, and so do we. A task *starts* when the leader hands it to a node with desired state
//! `Running`; a gated service's tasks wait before that:
//!
//! ```text
//!  replicated task, unplaced ──▶ Pending "waiting for service db: service_healthy" (not scheduled)
//!  global task, made for its node ──▶ held (desired HELD), the same message
//!  held task (either, or a stop-first update's) ──▶ not released
//! ```
//!
//! Tasks already started are left alone when a dependency later stops meeting its condition
//! (compose does not stop them either); their replacements wait again.
//!
//! The conditions, over the dependency's tasks (any spec version):
//! - `service_started`: at least one is RUNNING, and every one placed on a node and meant to
//!   run (desired `Running`, not ended) is RUNNING;
//! - `service_healthy`: the same, each of them healthy too (RUNNING is enough for a task
//!   whose spec has no health check);
//! - `service_completed_successfully`: it has tasks holding slots (desired `Running` or
//!   before), and each of them ended `Complete` with exit code 0: none is still meant to run.
//!
//! A dependency that is not a service of the store counts as not met. Nothing here reads a
//! clock.

use std::collections::BTreeMap;

use crate::model::{Dependency, DependencyCondition, Health, Service, ServiceId, Task, TaskState};

/// The gated services of one pass: each with the reason its tasks wait (its first dependency,
/// in the order the spec names them, that is not met).
#[derive(Debug, Default)]
pub struct Gates {
    waiting: BTreeMap<ServiceId, String>,
}

impl Gates {
    /// Judges every service's dependencies against `tasks` (every task of the pass's view).
    /// Costs one look at every task when some service has dependencies, nothing otherwise.
    pub fn new<'t>(services: &[Service], tasks: impl Iterator<Item = &'t Task>) -> Gates {
        let mut gates = Gates::default();
        if services.iter().all(|s| s.spec.depends_on.is_empty()) {
            return gates;
        }
        let by_name: BTreeMap<&str, ServiceId> = services
            .iter()
            .map(|s| (s.spec.name.as_str(), s.id))
            .collect();
        // The tasks of every service some service depends on.
        let mut named: BTreeMap<ServiceId, Vec<&Task>> = services
            .iter()
            .flat_map(|s| &s.spec.depends_on)
            .filter_map(|d| by_name.get(d.service.as_str()))
            .map(|id| (*id, Vec::new()))
            .collect();
        for t in tasks {
            if let Some(v) = named.get_mut(&t.service_id) {
                v.push(t);
            }
        }
        for s in services {
            let unmet = s.spec.depends_on.iter().find(|d| {
                let tasks = by_name.get(d.service.as_str()).and_then(|id| named.get(id));
                !tasks.is_some_and(|t| met(d.condition, t.iter().copied()))
            });
            if let Some(d) = unmet {
                gates.waiting.insert(s.id, reason(d));
            }
        }
        gates
    }

    /// Why the tasks of `service` may not start yet, or `None` when they may.
    pub fn waiting(&self, service: ServiceId) -> Option<&str> {
        self.waiting.get(&service).map(String::as_str)
    }
}

/// The status message of a task that waits for `dependency`, compose's condition in Docker's
/// lowercase: `waiting for service wpstack_db: service_healthy`.
pub fn reason(dependency: &Dependency) -> String {
    format!(
        "waiting for service {}: {}",
        dependency.service,
        dependency.condition.as_str()
    )
}

/// Whether a service whose tasks are `tasks` meets `condition` (see the module's doc).
pub fn met<'t>(condition: DependencyCondition, tasks: impl IntoIterator<Item = &'t Task>) -> bool {
    let mut any = false;
    match condition {
        DependencyCondition::Started | DependencyCondition::Healthy => {
            let healthy_too = condition == DependencyCondition::Healthy;
            for t in tasks {
                let meant_to_run =
                    t.desired_state == TaskState::Running && !t.status.state.is_terminal();
                if !meant_to_run {
                    continue;
                }
                if t.status.state == TaskState::Running && (!healthy_too || healthy(t)) {
                    any = true;
                } else if t.node_id.is_some() {
                    return false;
                }
            }
        }
        DependencyCondition::CompletedSuccessfully => {
            for t in tasks
                .into_iter()
                .filter(|t| t.desired_state <= TaskState::Running)
            {
                let ok = t.status.state == TaskState::Complete
                    && matches!(t.status.exit_code, None | Some(0));
                if !ok {
                    return false;
                }
                any = true;
            }
        }
    }
    any
}

/// Healthy by its last report, or RUNNING without a health check to judge it by.
fn healthy(t: &Task) -> bool {
    t.spec.health.is_none() || t.status.health == Some(Health::Healthy)
}
