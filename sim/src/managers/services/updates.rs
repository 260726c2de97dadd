//! The operator's rolling updates: `service update` with a good or a failing spec, `service
//! rollback`, and `service update --force`, each drawn from the seed and written as the control
//! API writes them, through the model's own methods ([`Service::updated`],
//! [`Service::manual_rollback`]) and a compare-and-set on the stored version.
//!
//! A failing spec carries `SIM_FAIL=start` or `SIM_FAIL=after:<ms>` in its env, which the
//! simulated runtime honours (`crate::failing`). A failing spec is only ever written over a
//! good one, so that a failed update rolled back lands on a spec that runs (invariant (m)).
//!
//! Update and rollback configs are drawn here too, for new services and every update:
//! parallelism 0..=3, delay 0..=2 s, monitor 0.5..=3 s, failure action pause, continue or
//! rollback, max failure ratio 0 or 0.5, order stop-first or start-first.
//!
//! An update is written only if its rollout can end within [`TAIL_MS`] after heal at the pace
//! [`rollout_ms`] assumes, so that the liveness phase can ask every service to have converged
//! on its current spec (invariant (o)) within the convergence bound.

use rand::RngExt;
use rand::rngs::StdRng;
use swarm_actors::model::{
    FailureAction, Service, ServiceMode, ServiceSpec, UpdateConfig, UpdateOrder,
};

use crate::clock::Millis;
use crate::failing::{SIM_FAIL, SpecFail, spec_fail};

/// How long after heal an update written before heal may still be rolling out.
pub const TAIL_MS: Millis = 12_000;
/// What one batch costs at most, besides the configured delay: the pass that starts it, a
/// session, prepare and start (each up to a few hundred ms), and the pass that sees RUNNING.
pub const BATCH_MS: Millis = 3_000;

/// Which change of a service the operator makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// A new task spec that runs.
    Good,
    /// A new task spec that fails (`SIM_FAIL`), over a good one.
    Failing,
    /// `service rollback`.
    Rollback,
    /// `service update --force`.
    Force,
}

/// An update or rollback config drawn from the seed.
pub fn draw_config(rng: &mut StdRng) -> UpdateConfig {
    UpdateConfig {
        parallelism: rng.random_range(0..=3),
        delay_ms: rng.random_range(0..=4) * 500,
        failure_action: match rng.random_range(0..3) {
            0 => FailureAction::Pause,
            1 => FailureAction::Continue,
            _ => FailureAction::Rollback,
        },
        monitor_ms: rng.random_range(1..=6) * 500,
        max_failure_ratio: if rng.random_range(0..2) == 0 {
            0.0
        } else {
            0.5
        },
        order: if rng.random_range(0..2) == 0 {
            UpdateOrder::StopFirst
        } else {
            UpdateOrder::StartFirst
        },
    }
}

/// The longest a rollout of `slots` slots with `config` should take: its batches, each
/// [`BATCH_MS`] and the delay, and one monitor period at the end.
pub fn rollout_ms(config: &UpdateConfig, slots: u64) -> Millis {
    let p = match config.parallelism {
        0 => slots.max(1),
        p => p,
    };
    slots.div_ceil(p) * (BATCH_MS + config.delay_ms) + config.monitor_ms
}

/// The service after one update of `kind` at `now`, or `None` when there is none to make (no
/// previous spec to roll back to, or no time left before heal for its rollout). `slots` is an
/// upper bound of the service's slots (replicas, or the workers for a global service).
pub fn update(
    rng: &mut StdRng,
    kind: UpdateKind,
    s: &Service,
    now: Millis,
    heal_ms: Millis,
    slots: u64,
) -> Option<Service> {
    let current_fails = spec_fail(&s.spec.task).is_some();
    let kind = match kind {
        UpdateKind::Failing if current_fails => UpdateKind::Good,
        k => k,
    };
    let new = match kind {
        UpdateKind::Rollback => s.manual_rollback(now).ok()?,
        UpdateKind::Force => s.updated(s.spec.clone(), true),
        UpdateKind::Good | UpdateKind::Failing => {
            let mut spec: ServiceSpec = s.spec.clone();
            spec.update = draw_config(rng);
            spec.rollback = draw_config(rng);
            let mut spec = stop_first_if_limited(spec);
            let n: u32 = rng.random_range(0..1_000);
            spec.task.env = vec![format!("V={n}")];
            if rng.random_range(0..4) == 0 {
                spec.task.image = format!("sim:{n}");
            }
            if kind == UpdateKind::Failing {
                // At start; within the monitor period, late enough that RUNNING has been
                // reported first and a second before the period ends (the monitor is
                // lengthened if need be); or late, after most monitor periods.
                let fail = match rng.random_range(0..5) {
                    0 | 1 => SpecFail::Start,
                    2 | 3 => {
                        let ms = rng.random_range(15..=20) * 100;
                        spec.update.monitor_ms = spec.update.monitor_ms.max(ms + 1_000);
                        SpecFail::After(ms)
                    }
                    _ => SpecFail::After(rng.random_range(20..=40) * 100),
                };
                spec.task.env.push(match fail {
                    SpecFail::Start => format!("{SIM_FAIL}=start"),
                    SpecFail::After(ms) => format!("{SIM_FAIL}=after:{ms}"),
                });
                // Half the failing updates ask to be rolled back and a quarter to pause, so
                // that (m) is exercised; the rest keep the drawn action.
                match rng.random_range(0..4) {
                    0 | 1 => spec.update.failure_action = FailureAction::Rollback,
                    2 => spec.update.failure_action = FailureAction::Pause,
                    _ => {}
                }
            }
            s.updated(spec, false)
        }
    };
    // An update that fails may roll back: twice the rollout.
    let config = new.rollout_config();
    let mut need = rollout_ms(config, slots);
    if kind == UpdateKind::Failing || spec_fail(&new.spec.task).is_some() {
        need += rollout_ms(&new.spec.rollback, slots);
    }
    (now + need <= heal_ms + TAIL_MS).then_some(new)
}

/// `spec` with stop-first updates and rollbacks when its tasks have a max replicas per node:
/// a start-first update's new task needs room beside the old one, and a node at its limit has
/// none (Docker's updates wait for ever there too).
pub fn stop_first_if_limited(mut spec: ServiceSpec) -> ServiceSpec {
    if spec.task.placement.max_replicas > 0 {
        spec.update.order = UpdateOrder::StopFirst;
        spec.rollback.order = UpdateOrder::StopFirst;
    }
    spec
}

/// An upper bound of a service's slots: its replicas, or every worker for a global service.
pub fn slots_max(s: &Service, workers: usize) -> u64 {
    match s.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => workers as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_takes_its_batches_and_a_monitor_period() {
        let mut c = UpdateConfig {
            parallelism: 2,
            delay_ms: 1_000,
            monitor_ms: 500,
            ..UpdateConfig::default()
        };
        assert_eq!(rollout_ms(&c, 5), 3 * 4_000 + 500);
        c.parallelism = 0;
        assert_eq!(rollout_ms(&c, 5), 4_000 + 500);
        assert_eq!(rollout_ms(&c, 0), 500);
    }
}
