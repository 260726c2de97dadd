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
//!
//! Max replicas per node N > 0: the service's running slots are distinct, within
//! `1..=replicas`, and either all of them run or every eligible node runs N of its tasks (the
//! rest wait, pending). Its update (o) and rollback (m) are judged only when its eligible
//! nodes have room for every slot: a pending slot of an update holds it up.
//!
//! `depends_on`: a service is *blocked* when a service it depends on is missing, fails on
//! purpose, wants no task (no replicas, or no eligible node), waits on
//! `service_completed_successfully` (the simulator's tasks never complete on purpose) or is
//! blocked itself. A blocked service's tasks may wait for ever, so it is not judged ((i), (o)
//! and (m)); every other dependent service converges once its dependencies do, within the
//! same bound.
//!
//! Rolling updates (`update_converges`, invariant (o), judged here with (i)): a service must
//! also run only tasks of its current spec version, its update ended; a paused one keeps its
//! mix of versions (a slot may run an old task beside a new one, one per version); one whose
//! spec fails on purpose is not judged. Invariant (m) reads the same eligibility at the end.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::{
    Availability, DependencyCondition, NodeId, Service, ServiceId, ServiceMode,
};
use swarm_actors::scheduler::NodeView;
use swarm_actors::scheduler::constraint::Constraint;
use swarm_actors::scheduler::filter::check_static;
use swarm_actors::scheduler::{Unseen, node_views};
use swarm_actors::store::{Kind, ObjectBody, StoreState};

use super::failed_update_rolls_back;
use super::update_converges::{self, Judged};
use crate::clock::Millis;
use crate::node::node_id;
use crate::observed::{Running, RunningTasks};

/// After heal, the time every service has to converge: membership heals (a few s), restarted
/// nodes report their lost tasks, restart delays (up to 3 s) end, old tasks stop (grace up to
/// 5 s plus the 5 s kill margin), replacements start.
pub const BOUND_MS: Millis = 25_000;

/// Why the services are not converged: the invariant's letter, (i) or (o), and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConverged {
    pub letter: &'static str,
    pub why: String,
}

fn not(letter: &'static str, why: String) -> Option<NotConverged> {
    Some(NotConverged { letter, why })
}

/// What keeps the services from being converged, or `None`. With `at_end`, also checks (m)
/// on every service and returns those violations in `ended`.
pub fn check(
    state: &StoreState,
    live: &BTreeSet<NodeId>,
    agents: &[Option<impl RunningTasks>],
    mut ended: Option<&mut Vec<String>>,
) -> Option<NotConverged> {
    let nodes = state.list(Kind::Node).filter_map(|o| match &o.body {
        ObjectBody::Node(n) => Some(n),
        _ => None,
    });
    let views = node_views(nodes, live, Unseen::Down);
    // Service → node → RUNNING tasks there.
    let mut running: BTreeMap<ServiceId, BTreeMap<NodeId, Vec<Running>>> = BTreeMap::new();
    for (i, a) in agents.iter().enumerate() {
        for r in a.iter().flat_map(|a| a.running_tasks()) {
            let per = running.entry(r.service).or_default();
            per.entry(node_id(i)).or_default().push(r);
        }
    }
    let eligible_of = |spec: &swarm_actors::model::TaskSpec| -> Option<BTreeSet<NodeId>> {
        let constraints = Constraint::parse_all(&spec.placement.constraints).ok()?;
        Some(
            views
                .iter()
                .filter(|v| check_static(v, spec.runtime, &constraints).is_ok())
                .map(|v| v.id)
                .collect(),
        )
    };
    let blocked = blocked(state, &eligible_of);
    let mut first: Option<NotConverged> = None;
    for o in state.list(Kind::Service) {
        let ObjectBody::Service(s) = &o.body else {
            continue;
        };
        let spec = &s.spec.task;
        let name = &s.spec.name;
        let Ok(constraints) = Constraint::parse_all(&spec.placement.constraints) else {
            return not(
                "i",
                format!("the constraints of service {name} do not parse"),
            );
        };
        let eligible = eligible_of(spec).expect("the constraints parse");
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
        let placeable = match s.spec.mode {
            ServiceMode::Replicated { .. } => !eligible.is_empty(),
            ServiceMode::Global => true,
        };
        let max = spec.placement.max_replicas;
        // Whether every slot has room on the eligible nodes (max replicas per node).
        let room = match s.spec.mode {
            ServiceMode::Replicated { replicas } if max > 0 => {
                max.saturating_mul(eligible.len() as u64) >= replicas
            }
            _ => true,
        };
        let blocked = blocked.contains(&s.id);
        if let Some(ended) = ended.as_deref_mut()
            && let Some(v) =
                failed_update_rolls_back::check(state, s, placeable && room && !blocked)
        {
            ended.push(v);
        }
        if first.is_some() || blocked {
            continue;
        }
        let judged = update_converges::judged(s);
        if judged == Judged::Failing {
            continue;
        }
        // A paused update may keep an old task beside its replacement: one per version.
        let once = |tasks: &mut Vec<(u64, u64)>| {
            tasks.sort_unstable();
            let before = tasks.len();
            if judged == Judged::Paused {
                tasks.dedup();
            } else {
                tasks.dedup_by_key(|(slot, _)| *slot);
            }
            before == tasks.len()
        };
        let wrong = match s.spec.mode {
            ServiceMode::Replicated { replicas } => {
                let mut runs: Vec<(u64, u64)> = here
                    .values()
                    .flatten()
                    .map(|r| (r.slot, r.spec_version))
                    .collect();
                let unique = once(&mut runs);
                let mut slots: Vec<u64> = runs.iter().map(|(slot, _)| *slot).collect();
                slots.dedup();
                let want: Vec<u64> = (1..=replicas).collect();
                // With max replicas, slots may wait once every eligible node runs its max.
                let at_max = max > 0
                    && slots.iter().all(|s| (1..=replicas).contains(s))
                    && eligible
                        .iter()
                        .all(|n| here.get(n).map_or(0, Vec::len) as u64 >= max);
                (placeable && ((slots != want && !at_max) || !unique)).then(|| {
                    format!(
                        "service {name} wants slots 1..={replicas}, runs {slots:?}{}{}",
                        if unique { "" } else { ", some twice" },
                        if max > 0 {
                            format!(" (max {max} per node, {} eligible)", eligible.len())
                        } else {
                            String::new()
                        }
                    )
                })
            }
            ServiceMode::Global => {
                let on: BTreeSet<NodeId> = here.keys().copied().collect();
                let twice = here.values().any(|v| {
                    let mut runs: Vec<(u64, u64)> = v.iter().map(|r| (0, r.spec_version)).collect();
                    !once(&mut runs)
                });
                let missing = !eligible.is_subset(&on);
                let extra = on
                    .iter()
                    .any(|n| !eligible.contains(n) && !paused.contains(n));
                (missing || extra || twice).then(|| {
                    format!(
                        "global service {name} runs on {} nodes ({}), {} eligible",
                        on.len(),
                        if twice { "some twice" } else { "once each" },
                        eligible.len()
                    )
                })
            }
        };
        if let Some(why) = wrong {
            first = not("i", why);
        } else if judged == Judged::Current
            && placeable
            && room
            && let Some(why) = update_converges::check(
                s,
                // A global service's update leaves a paused node's task as it is.
                here.iter()
                    .filter(|(n, _)| {
                        !(matches!(s.spec.mode, ServiceMode::Global) && paused.contains(*n))
                    })
                    .flat_map(|(_, v)| v),
            )
        {
            first = not("o", why);
        }
    }
    if first.is_some() {
        return first;
    }
    running.into_iter().next().and_then(|(service, on)| {
        not(
            "i",
            format!(
                "{} tasks of removed service {} still run",
                on.values().map(Vec::len).sum::<usize>(),
                service.0 as u16
            ),
        )
    })
}

/// The services that are blocked (see the module's doc), given each spec's eligible nodes.
fn blocked(
    state: &StoreState,
    eligible_of: &dyn Fn(&swarm_actors::model::TaskSpec) -> Option<BTreeSet<NodeId>>,
) -> BTreeSet<ServiceId> {
    let services: Vec<&Service> = state
        .list(Kind::Service)
        .filter_map(|o| match &o.body {
            ObjectBody::Service(s) => Some(s),
            _ => None,
        })
        .collect();
    if services.iter().all(|s| s.spec.depends_on.is_empty()) {
        return BTreeSet::new();
    }
    let by_name: BTreeMap<&str, &Service> = services
        .iter()
        .map(|s| (s.spec.name.as_str(), *s))
        .collect();
    // Whether `s` can never meet a condition: fails on purpose or wants no task.
    let barren = |s: &Service| {
        let none = eligible_of(&s.spec.task).is_none_or(|e| e.is_empty());
        update_converges::judged(s) == Judged::Failing
            || none
            || matches!(s.spec.mode, ServiceMode::Replicated { replicas: 0 })
    };
    // Blocked through a chain at most as long as the services are many (a cycle blocks).
    fn walk<'a>(
        s: &'a Service,
        by_name: &BTreeMap<&str, &'a Service>,
        barren: &dyn Fn(&Service) -> bool,
        depth: usize,
    ) -> bool {
        s.spec
            .depends_on
            .iter()
            .any(|d| match by_name.get(d.service.as_str()) {
                None => true,
                Some(_) if d.condition == DependencyCondition::CompletedSuccessfully => true,
                Some(_) if depth == 0 => true,
                Some(dep) => barren(dep) || walk(dep, by_name, barren, depth - 1),
            })
    }
    services
        .iter()
        .filter(|s| walk(s, &by_name, &barren, services.len()))
        .map(|s| s.id)
        .collect()
}

/// The verdict at the end of the run.
pub fn verdict(
    heal: Millis,
    end: Millis,
    bound: Millis,
    converged_ms: Option<Millis>,
    now_wrong: Option<NotConverged>,
) -> Option<String> {
    if let Some(w) = now_wrong {
        return Some(format!(
            "({}) at the end ({end} ms) the services are not converged: {}",
            w.letter, w.why
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
        let wrong = not("o", "x".into());
        assert!(
            verdict(0, 30_000, 25_000, Some(1), wrong)
                .unwrap()
                .starts_with("(o)")
        );
    }
}
