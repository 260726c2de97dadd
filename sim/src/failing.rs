//! The simulator's convention for specs that fail on purpose: `SIM_FAIL=start` in a task
//! spec's env fails every start (the task never reaches RUNNING), `SIM_FAIL=after:<ms>` makes
//! the process exit with code 1 that long after it started. The simulated runtime
//! (`managers::services::runtime`) carries it out; the workload writes such specs and the
//! update invariants read them. A leaf module.

use swarm_actors::model::TaskSpec;

use crate::clock::Millis;

/// How a spec marked to fail fails (the `SIM_FAIL` env entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFail {
    /// Every start fails: the task never reaches RUNNING.
    Start,
    /// The process exits with code 1 this long after it started.
    After(Millis),
}

/// The env key that marks a failing spec.
pub const SIM_FAIL: &str = "SIM_FAIL";

/// How `spec` fails on purpose, if it does.
pub fn spec_fail(spec: &TaskSpec) -> Option<SpecFail> {
    let v = spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix(SIM_FAIL)?.strip_prefix('='))?;
    match v.strip_prefix("after:") {
        None if v == "start" => Some(SpecFail::Start),
        None => None,
        Some(ms) => ms.parse().ok().map(SpecFail::After),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &[&str]) -> TaskSpec {
        TaskSpec {
            env: env.iter().map(|e| e.to_string()).collect(),
            ..TaskSpec::default()
        }
    }

    #[test]
    fn a_spec_fails_as_its_env_says() {
        assert_eq!(spec_fail(&spec(&[])), None);
        assert_eq!(
            spec_fail(&spec(&["V=1", "SIM_FAIL=start"])),
            Some(SpecFail::Start)
        );
        assert_eq!(
            spec_fail(&spec(&["SIM_FAIL=after:1500"])),
            Some(SpecFail::After(1_500))
        );
        assert_eq!(
            spec_fail(&spec(&["SIM_FAILX=start", "SIM_FAIL=later"])),
            None
        );
    }
}
