//! TaskActor tests over the process runtime: real processes, the actor's reports on a channel.

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]
use std::collections::BTreeMap;

use super::*;
use crate::model::{HealthCheck, NodeId, RuntimeKind, TaskSpec, TaskState};
use crate::runtime::ProcessRuntime;
use crate::runtime::tests_support::{context, health_check, program};

/// Upper bound on waiting for one report; far above what a loaded machine needs.
const PATIENCE: Duration = Duration::from_secs(60);

fn ctx(task: u128, image: &str, args: &[&str], health: Option<HealthCheck>) -> TaskContext {
    let spec = TaskSpec {
        health,
        stop_grace_period_ms: 5_000,
        ..program(RuntimeKind::Process, image, args)
    };
    context(TaskId(task), NodeId(2), "svc", spec)
}

/// Reads reports until one has state `want`, returning everything seen up to it.
async fn until(rx: &mut mpsc::Receiver<(TaskId, TaskStatus)>, want: TaskState) -> Vec<TaskStatus> {
    let mut seen = Vec::new();
    loop {
        let (_, s) = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {want} report; saw {seen:?}"))
            .expect("reporter open");
        let done = s.state == want;
        seen.push(s);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_then_shuts_down_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(ProcessRuntime::new(dir.path().to_path_buf()).unwrap());
    let (tx, mut rx) = mpsc::channel(64);
    let registry = Registry::new();
    let (handle, join) = spawn_task(TaskArgs {
        ctx: ctx(10, "sleep", &["1000"], None),
        runtime: runtime.clone(),
        reporter: tx,
        registry: Some(registry.clone()),
    })
    .await
    .unwrap();

    eprintln!("phase: start reports every state up to RUNNING, in order");
    handle.start().unwrap();
    let seen = until(&mut rx, TaskState::Running).await;
    let states: Vec<TaskState> = seen.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            TaskState::Accepted,
            TaskState::Preparing,
            TaskState::Starting,
            TaskState::Running
        ]
    );
    assert_eq!(
        handle.describe().await.unwrap().status.state,
        TaskState::Running
    );

    eprintln!("phase: the admin shell reaches it by name");
    let v = registry
        .send(&format!("task/{}", TaskId(10)), "Describe", Value::Null)
        .await
        .unwrap();
    assert_eq!(v["runtime"], "process");

    eprintln!("phase: Shutdown (through the shell's Stop) ends in SHUTDOWN");
    registry
        .send(&format!("task/{}", TaskId(10)), "Stop", Value::Null)
        .await
        .unwrap();
    let seen = until(&mut rx, TaskState::Shutdown).await;
    let last = seen.last().unwrap();
    assert_eq!(last.error, None);
    assert_eq!(last.exit_code, Some(128 + libc::SIGTERM));

    handle.actor().stop(None);
    join.await.unwrap();
    assert!(registry.list().is_empty(), "unregistered on stop");
    eprintln!("phase: the runtime forgets the task once its actor is gone");
    let mut gone = false;
    for _ in 0..3000 {
        if runtime.logs(TaskId(10), 1).await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "removed from the runtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_command_and_unhealthy_task_fail() {
    let dir = tempfile::tempdir().unwrap();
    let runtime: Arc<dyn TaskRuntime> =
        Arc::new(ProcessRuntime::new(dir.path().to_path_buf()).unwrap());
    let (tx, mut rx) = mpsc::channel(64);

    eprintln!("phase: exit 3 is FAILED with code 3 and the output is in the logs");
    let (h1, _) = spawn_task(TaskArgs {
        ctx: ctx(1, "sh", &["-c", "echo hi; exit 3"], None),
        runtime: runtime.clone(),
        reporter: tx.clone(),
        registry: None,
    })
    .await
    .unwrap();
    h1.start().unwrap();
    let seen = until(&mut rx, TaskState::Failed).await;
    let last = seen.last().unwrap();
    assert_eq!(last.exit_code, Some(3));
    assert_eq!(last.error.as_deref(), Some("task: non-zero exit (3)"));
    let mut logs = Vec::new();
    for _ in 0..300 {
        logs = h1.logs(10).await.unwrap();
        if !logs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(logs.first().map(|l| l.text.as_str()), Some("hi"));

    eprintln!("phase: a failing health check makes it unhealthy, then FAILED");
    let check = health_check("exit 1", 100, 5_000, 2);
    let (h2, _) = spawn_task(TaskArgs {
        ctx: ctx(2, "sleep", &["1000"], Some(check)),
        runtime: runtime.clone(),
        reporter: tx.clone(),
        registry: None,
    })
    .await
    .unwrap();
    h2.start().unwrap();
    let mut by_task: BTreeMap<TaskId, Vec<TaskStatus>> = BTreeMap::new();
    let seen = until(&mut rx, TaskState::Failed).await;
    for s in seen {
        by_task.entry(TaskId(2)).or_default().push(s);
    }
    let reports = &by_task[&TaskId(2)];
    assert!(
        reports
            .iter()
            .any(|s| s.state == TaskState::Running
                && s.health == Some(crate::model::Health::Unhealthy)),
        "unhealthy was reported while running: {reports:?}"
    );
    let last = reports.last().unwrap();
    assert_eq!(last.error.as_deref(), Some("task: unhealthy container"));
    assert_eq!(last.health, Some(crate::model::Health::Unhealthy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(ProcessRuntime::new(dir.path().to_path_buf()).unwrap());
    let (tx, mut rx) = mpsc::channel(64);
    let (h, _) = spawn_task(TaskArgs {
        ctx: ctx(1, "no-such-program-xyz", &[], None),
        runtime,
        reporter: tx,
        registry: None,
    })
    .await
    .unwrap();
    h.start().unwrap();
    let seen = until(&mut rx, TaskState::Rejected).await;
    assert_eq!(
        seen.last().unwrap().error.as_deref(),
        Some("No such image: no-such-program-xyz")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_docker_an_unhealthy_container_fails() {
    use crate::runtime::testimage::{TEST_IMAGE, docker_available};
    use crate::runtime::{DockerConfig, DockerRuntime};
    if let Err(why) = tokio::task::spawn_blocking(docker_available).await.unwrap() {
        eprintln!("skipping docker test: {why}");
        return;
    }
    let runtime = match DockerRuntime::connect(DockerConfig::default()).await {
        Ok(rt) => Arc::new(rt),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("docker: {e}"),
        Err(e) => {
            eprintln!("skipping docker test: {e}");
            return;
        }
    };
    let check = health_check("exit 1", 200, 2_000, 1);
    let node = (u128::from(std::process::id()) << 64) | 0x7a5c;
    let mut c = ctx(node << 8, TEST_IMAGE, &["sleep", "1000"], Some(check));
    c.spec.runtime = RuntimeKind::Docker;
    c.node_id = NodeId(node);
    c.spec.stop_grace_period_ms = 1_000;
    let (tx, mut rx) = mpsc::channel(64);
    let (h, _) = spawn_task(TaskArgs {
        ctx: c.clone(),
        runtime: runtime.clone(),
        reporter: tx,
        registry: None,
    })
    .await
    .unwrap();
    eprintln!("phase: the engine's unhealthy verdict stops the container and fails the task");
    h.start().unwrap();
    let seen = until(&mut rx, TaskState::Failed).await;
    let last = seen.last().unwrap();
    assert_eq!(
        last.error.as_deref(),
        Some("task: unhealthy container"),
        "{seen:?}"
    );
    h.remove().unwrap();
    // Remove runs off the actor; make sure the container goes even if the test ends first.
    runtime.remove(c.task_id).await.unwrap();
}
