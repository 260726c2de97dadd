//! Builders shared by the runtimes' tests and the task actor's tests: a task spec that runs
//! one program, the context a runtime is given for it, and a run of a process task to the
//! end of its output.

// The output is polled in real time, with sleeps, which clippy.toml refuses only to the
// deciding code.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use super::{LogLine, ProcessRuntime, TaskContext, TaskRuntime};
use crate::model::{HealthCheck, NodeId, RuntimeKind, ServiceId, TaskId, TaskSpec};

/// Upper bound on the wait for a task's exit in [`run_to_end`]; far above what a loaded
/// machine needs.
const EXIT_PATIENCE: Duration = Duration::from_secs(30);

/// How many times [`run_to_end`] reads the output for its closing line, 10 ms apart.
const END_POLLS_MAX: usize = 300;

/// A spec that runs `image` with `args` on `runtime` and sets nothing else: no environment,
/// limits, constraints, mounts or stop grace period.
pub(crate) fn program(runtime: RuntimeKind, image: &str, args: &[&str]) -> TaskSpec {
    TaskSpec {
        runtime,
        image: image.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..TaskSpec::default()
    }
}

/// A health check that runs `cmd` every `interval_ms`, each run bounded by `timeout_ms`, and
/// calls the task unhealthy after `retries` failures in a row; no start period.
pub(crate) fn health_check(
    cmd: impl Into<String>,
    interval_ms: u64,
    timeout_ms: u64,
    retries: u32,
) -> HealthCheck {
    HealthCheck {
        cmd: cmd.into(),
        interval_ms,
        timeout_ms,
        retries,
        start_period_ms: 0,
    }
}

/// The context of task `task`, slot 1 of service 1 named `service_name`, on `node`: `spec`
/// and nothing else (no files, networks, ports or resolver).
pub(crate) fn context(
    task: TaskId,
    node: NodeId,
    service_name: &str,
    spec: TaskSpec,
) -> TaskContext {
    TaskContext {
        dns: None,
        overlays: Vec::new(),
        task_id: task,
        service_id: ServiceId(1),
        service_name: service_name.into(),
        slot: 1,
        node_id: node,
        spec,
        files: Vec::new(),
        network: None,
        ports: Vec::new(),
    }
}

/// Starts `c` (prepared already where it needs to be), waits for its exit and returns its exit
/// code and output lines, up to a line `END` if the task prints one: the pipes may close a
/// moment after the exit, so the output is read again until that line shows, boundedly.
pub(crate) async fn run_to_end(rt: &ProcessRuntime, c: &TaskContext) -> (i32, Vec<String>) {
    rt.start(c).await.unwrap();
    let code = tokio::time::timeout(EXIT_PATIENCE, rt.wait(c.task_id))
        .await
        .expect("the task exits")
        .unwrap();
    let mut lines: Vec<LogLine> = Vec::new();
    for _ in 0..END_POLLS_MAX {
        lines = rt.logs(c.task_id, 100).await.unwrap();
        if lines.iter().any(|l| l.text == "END") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (code, lines.into_iter().map(|l| l.text).collect())
}
