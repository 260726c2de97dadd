//! The simulated container runtime: how long each runtime command takes and what comes of it,
//! drawn from the run's seed.
//!
//! Prepare and start take tens to hundreds of ms and sometimes fail; a started process may
//! exit by itself or start failing its health checks later; a stop ends the process soon, or,
//! when it ignores SIGTERM, at the end of its grace period. Faults of the tasks themselves
//! (failures, exits, unhealthy) happen only before heal, so that the liveness phase can ask the
//! services to converge and stay so.
//!
//! A spec can also fail on purpose, by the convention of the simulator's updates
//! (`crate::failing`): `SIM_FAIL=start` in its env fails every start (the task never reaches
//! RUNNING), `SIM_FAIL=after:<ms>` makes the process exit with code 1 that long after it started.
//! These belong to the spec, so they hold after heal too.

use rand::RngExt;
use rand::rngs::StdRng;
use swarm_actors::task::{RuntimeCmd, RuntimeEvent};

use crate::clock::Millis;
use crate::failing::SpecFail;

/// Percent of prepares and of starts that fail (before heal).
pub const FAIL_PCT: u32 = 2;
/// Percent of processes that exit by themselves at some point (before heal).
pub const EXIT_PCT: u32 = 10;
/// Percent of processes with a health check that turn unhealthy (before heal).
pub const UNHEALTHY_PCT: u32 = 15;
/// Percent of stops that the process ignores until it is killed at the end of its grace.
pub const IGNORE_TERM_PCT: u32 = 10;

/// What one process will do, drawn when it is started.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fate {
    /// Its spec fails on purpose (set from the spec, not drawn).
    pub spec_fail: Option<SpecFail>,
    /// It exits by itself this long after it started, with this code.
    pub exit_after: Option<(Millis, i32)>,
    /// From this time on its health checks fail.
    pub unhealthy_at: Option<Millis>,
}

/// Draws the fate of a process started at `now`; nothing happens to it at or after `heal_ms`.
pub fn fate(rng: &mut StdRng, now: Millis, heal_ms: Millis, has_health: bool) -> Fate {
    let mut f = Fate::default();
    if rng.random_range(0..100) < EXIT_PCT {
        let after = rng.random_range(2_000..=30_000);
        let code = if rng.random_range(0..2) == 0 { 0 } else { 1 };
        f.exit_after = (now + after < heal_ms).then_some((after, code));
    }
    if has_health && rng.random_range(0..100) < UNHEALTHY_PCT {
        let at = now + rng.random_range(3_000..=30_000);
        f.unhealthy_at = (at < heal_ms).then_some(at);
    }
    f
}

/// What the runtime does for `cmd` issued at `now`: events to deliver, each after a delay.
pub fn respond(
    cmd: &RuntimeCmd,
    rng: &mut StdRng,
    now: Millis,
    heal_ms: Millis,
    fate: &Fate,
) -> Vec<(Millis, RuntimeEvent)> {
    let faulty = now < heal_ms;
    let mut fails = || faulty && rng.random_range(0..100) < FAIL_PCT;
    match cmd {
        RuntimeCmd::Prepare => {
            let ev = if fails() {
                RuntimeEvent::PrepareFailed("simulated: image pull failed".into())
            } else {
                RuntimeEvent::Prepared
            };
            vec![(rng.random_range(20..=400), ev)]
        }
        RuntimeCmd::Start => {
            if fate.spec_fail == Some(SpecFail::Start) {
                let ev = RuntimeEvent::StartFailed("simulated: SIM_FAIL=start".into());
                return vec![(rng.random_range(20..=300), ev)];
            }
            if fails() {
                let ev = RuntimeEvent::StartFailed("simulated: start failed".into());
                return vec![(rng.random_range(20..=300), ev)];
            }
            let d = rng.random_range(20..=300);
            let mut out = vec![(d, RuntimeEvent::Started)];
            let on_purpose = match fate.spec_fail {
                Some(SpecFail::After(ms)) => Some((ms, 1)),
                _ => None,
            };
            // The earlier of the spec's own failure and the drawn exit ends the process.
            let exit = match (on_purpose, fate.exit_after) {
                (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                (a, b) => a.or(b),
            };
            if let Some((after, code)) = exit {
                out.push((d + after, RuntimeEvent::Exited { code }));
            }
            out
        }
        RuntimeCmd::Stop { grace_ms } => {
            if rng.random_range(0..100) < IGNORE_TERM_PCT {
                vec![(*grace_ms, RuntimeEvent::Exited { code: 137 })]
            } else {
                vec![(
                    rng.random_range(10..=300),
                    RuntimeEvent::Exited { code: 143 },
                )]
            }
        }
        RuntimeCmd::Kill => vec![(5, RuntimeEvent::Exited { code: 137 })],
        RuntimeCmd::RunHealthCheck => {
            let ok = fate.unhealthy_at.is_none_or(|u| now < u);
            vec![(rng.random_range(5..=50), RuntimeEvent::HealthResult { ok })]
        }
        RuntimeCmd::Remove => Vec::new(),
    }
}
