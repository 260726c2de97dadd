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

/// A running `sleep` task `id` with this stop grace period, over a process runtime whose
/// endpoints the test holds (as the routing mesh does); the runtime's directory lives as long
/// as the first value.
struct Sleeper {
    _dir: tempfile::TempDir,
    endpoints: crate::runtime::Endpoints,
    handle: TaskHandle,
    rx: mpsc::Receiver<(TaskId, TaskStatus)>,
}

async fn running_sleeper(id: u128, grace_ms: u64) -> Sleeper {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = crate::runtime::Endpoints::default();
    let runtime = Arc::new(
        ProcessRuntime::new(dir.path().to_path_buf())
            .unwrap()
            .with_endpoints(endpoints.clone()),
    );
    let (tx, mut rx) = mpsc::channel(64);
    let mut c = ctx(id, "sleep", &["1000"], None);
    c.spec.stop_grace_period_ms = grace_ms;
    let (handle, _) = spawn_task(TaskArgs {
        ctx: c,
        runtime,
        reporter: tx,
        registry: None,
    })
    .await
    .unwrap();
    handle.start().unwrap();
    until(&mut rx, TaskState::Running).await;
    Sleeper {
        _dir: dir,
        endpoints,
        handle,
        rx,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_task_is_signalled_only_once_its_mesh_connections_end() {
    let mut t = running_sleeper(14, 60_000).await;

    eprintln!("phase: a connection is in flight: the shutdown waits for it");
    let connection = t.endpoints.connection(TaskId(14));
    t.handle.shutdown().unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        t.handle.describe().await.unwrap().status.state,
        TaskState::Running,
        "signalled with a connection still open"
    );

    eprintln!("phase: the connection ends: SIGTERM at once, well inside the 60 s grace");
    drop(connection);
    let seen = until(&mut t.rx, TaskState::Shutdown).await;
    assert_eq!(
        seen.last().unwrap().exit_code,
        Some(128 + libc::SIGTERM),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_ends_delays_the_stop_by_the_grace_period_at_most() {
    let mut t = running_sleeper(15, 2_000).await;
    let _held = t.endpoints.connection(TaskId(15));
    t.handle.shutdown().unwrap();
    // The drain gives up at the end of the grace period; the task still gets SIGTERM (and
    // `sleep` ends on it), not a kill.
    let seen = until(&mut t.rx, TaskState::Shutdown).await;
    assert_eq!(
        seen.last().unwrap().exit_code,
        Some(128 + libc::SIGTERM),
        "{seen:?}"
    );
    assert_eq!(t.endpoints.connections(TaskId(15)), 1);
}

#[tokio::test]
async fn drained_wakes_when_the_last_connection_ends() {
    let endpoints = crate::runtime::Endpoints::default();
    let task = TaskId(16);
    assert!(
        endpoints.drained(task, Duration::ZERO).await,
        "none to begin with"
    );
    let a = endpoints.connection(task);
    let b = endpoints.connection(task);
    assert_eq!(endpoints.connections(task), 2);
    assert!(!endpoints.drained(task, Duration::from_millis(20)).await);
    drop(a);
    assert!(!endpoints.drained(task, Duration::from_millis(20)).await);
    let waiter = tokio::spawn({
        let endpoints = endpoints.clone();
        async move { endpoints.drained(task, PATIENCE).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(b);
    assert!(waiter.await.unwrap(), "woken by the last drop");
    assert_eq!(endpoints.connections(task), 0);
}

#[tokio::test]
async fn a_connection_learns_that_its_task_is_gone() {
    let endpoints = crate::runtime::Endpoints::default();
    let task = TaskId(17);
    endpoints.set(
        task,
        crate::runtime::TaskEndpoint {
            ip: "10.255.0.2".parse().unwrap(),
            ports: BTreeMap::new(),
            host_network: false,
            overlay: BTreeMap::new(),
        },
    );
    let conn = endpoints.connection(task);
    let waiter = tokio::spawn(async move {
        conn.task_gone().await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished(), "the task is still there");
    endpoints.clear(task);
    tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("woken by the clear")
        .unwrap();
}
