//! Invariant (i): after heal, every service converges within [`BOUND_MS`] of virtual time and
//! is still converged at the end of the run.
//!
//! Converged, against the leader's committed store and the task machines of live nodes:
//! - a replicated service with `replicas` R has exactly R tasks RUNNING, one per slot, when
//!   some live node is eligible for it (otherwise its tasks wait, pending, and none is asked);
//! - a global service has exactly one task RUNNING on each eligible node, at most one on a
//!   paused node that would otherwise be eligible (a paused node keeps what it runs), and none
//!   elsewhere;
//! - no task of a removed service runs.
//!
//! Eligible: the node object is Active, the node is live (not crashed for good), and it has
//! the runtime and matches the constraints.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::{Availability, NodeId, ServiceId, ServiceMode};
use swarm_actors::scheduler::NodeView;
use swarm_actors::scheduler::constraint::Constraint;
use swarm_actors::scheduler::filter::check_static;
use swarm_actors::scheduler::{Unseen, node_views};
use swarm_actors::store::{Kind, ObjectBody, StoreState};

use crate::clock::Millis;
use crate::node::node_id;
use crate::observed::RunningTasks;

/// After heal, the time every service has to converge: membership heals (a few s), restarted
/// nodes report their lost tasks, restart delays (up to 3 s) end, old tasks stop (grace up to
/// 5 s plus the 5 s kill margin), replacements start.
pub const BOUND_MS: Millis = 25_000;

/// What keeps the services from being converged, or `None`.
pub fn check(
    state: &StoreState,
    live: &BTreeSet<NodeId>,
    agents: &[Option<impl RunningTasks>],
) -> Option<String> {
    let nodes = state.list(Kind::Node).filter_map(|o| match &o.body {
        ObjectBody::Node(n) => Some(n),
        _ => None,
    });
    let views = node_views(nodes, live, Unseen::Down);
    // Service → node → RUNNING tasks there (slots).
    let mut running: BTreeMap<ServiceId, BTreeMap<NodeId, Vec<u64>>> = BTreeMap::new();
    for (i, a) in agents.iter().enumerate() {
        for (_, service, slot) in a.iter().flat_map(|a| a.running_tasks()) {
            let per = running.entry(service).or_default();
            per.entry(node_id(i)).or_default().push(slot);
        }
    }
    for o in state.list(Kind::Service) {
        let ObjectBody::Service(s) = &o.body else {
            continue;
        };
        let spec = &s.spec.task;
        let name = &s.spec.name;
        let Ok(constraints) = Constraint::parse_all(&spec.placement.constraints) else {
            return Some(format!("the constraints of service {name} do not parse"));
        };
        let eligible: BTreeSet<NodeId> = views
            .iter()
            .filter(|v| check_static(v, spec.runtime, &constraints).is_ok())
            .map(|v| v.id)
            .collect();
        // A paused node keeps what it runs and gets nothing new.
        let paused: BTreeSet<NodeId> = views
            .iter()
            .filter(|v| v.availability == Availability::Pause)
            .filter(|v| {
                let active = NodeView {
                    availability: Availability::Active,
                    ..(*v).clone()
                };
                check_static(&active, spec.runtime, &constraints).is_ok()
            })
            .map(|v| v.id)
            .collect();
        let here = running.remove(&s.id).unwrap_or_default();
        match s.spec.mode {
            ServiceMode::Replicated { replicas } => {
                let mut slots: Vec<u64> = here.values().flatten().copied().collect();
                slots.sort_unstable();
                let want: Vec<u64> = (1..=replicas).collect();
                if !eligible.is_empty() && slots != want {
                    return Some(format!(
                        "service {name} wants slots 1..={replicas}, runs {slots:?}"
                    ));
                }
            }
            ServiceMode::Global => {
                let on: BTreeSet<NodeId> = here.keys().copied().collect();
                let twice = here.values().any(|v| v.len() > 1);
                let missing = !eligible.is_subset(&on);
                let extra = on
                    .iter()
                    .any(|n| !eligible.contains(n) && !paused.contains(n));
                if missing || extra || twice {
                    return Some(format!(
                        "global service {name} runs on {} nodes ({}), {} eligible",
                        on.len(),
                        if twice { "some twice" } else { "once each" },
                        eligible.len()
                    ));
                }
            }
        }
    }
    running.into_iter().next().map(|(service, on)| {
        format!(
            "{} tasks of removed service {} still run",
            on.values().map(Vec::len).sum::<usize>(),
            service.0 as u16
        )
    })
}

/// The verdict at the end of the run.
pub fn verdict(
    heal: Millis,
    end: Millis,
    bound: Millis,
    converged_ms: Option<Millis>,
    now_wrong: Option<String>,
) -> Option<String> {
    if let Some(w) = now_wrong {
        return Some(format!(
            "(i) at the end ({end} ms) the services are not converged: {w}"
        ));
    }
    let took = converged_ms.unwrap_or(end - heal);
    (took > bound).then(|| {
        format!("(i) the services converged {took} ms after heal, over the {bound} ms bound")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(0, 30_000, 25_000, Some(3_000), None), None);
        assert!(verdict(0, 30_000, 25_000, Some(26_000), None).is_some());
        assert!(verdict(0, 30_000, 25_000, Some(1), Some("x".into())).is_some());
    }
}
