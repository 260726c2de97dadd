//! Tests of the process runtime with real processes (`sh`, `sleep`).
//!
//! No timing assertions: waits are bounded only so that a broken runtime fails instead of
//! hanging, with bounds far above what a loaded machine needs.

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]
use super::*;
use crate::model::{RuntimeKind, ServiceId, TaskSpec};
use crate::runtime::tests_support::{context, health_check, program};

/// Upper bound on any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) fn ctx(task: u128, image: &str, args: &[&str]) -> TaskContext {
    let spec = TaskSpec {
        env: vec!["GREETING=hello there".into()],
        ..program(RuntimeKind::Process, image, args)
    };
    TaskContext {
        service_id: ServiceId(99),
        slot: 2,
        ..context(TaskId(task), NodeId(5), "web", spec)
    }
}

async fn wait(rt: &ProcessRuntime, task: u128) -> i32 {
    tokio::time::timeout(PATIENCE, rt.wait(TaskId(task)))
        .await
        .expect("the task exits")
        .expect("wait works")
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_logs_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path().join("tasks")).unwrap();

    eprintln!("phase: a failing command's exit code and output are kept");
    let c = ctx(1, "sh", &["-c", "echo hi; echo oops >&2; exit 3"]);
    rt.prepare(&c).await.unwrap();
    rt.start(&c).await.unwrap();
    assert_eq!(
        rt.start(&c).await,
        Err(RuntimeError::AlreadyStarted(TaskId(1)))
    );
    assert_eq!(wait(&rt, 1).await, 3);
    // The pipes may close a moment after the exit; poll boundedly.
    let mut lines = Vec::new();
    for _ in 0..300 {
        lines = rt.logs(TaskId(1), 100).await.unwrap();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        lines
            .iter()
            .any(|l| l.text == "hi" && l.stream == LogStream::Stdout)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.text == "oops" && l.stream == LogStream::Stderr)
    );
    assert!(lines.iter().all(|l| l.ts_ms > 0));
    assert!(
        !dir.path()
            .join("tasks")
            .join(format!("{}.pid", TaskId(1)))
            .exists()
    );

    eprintln!("phase: the task sees the spec's env and its SWARM_* place");
    let c = ctx(
        2,
        "sh",
        &[
            "-c",
            "echo \"$GREETING|$SWARM_SERVICE_NAME|$SWARM_TASK_SLOT|$SWARM_TASK_ID|$SWARM_NODE_ID\"",
        ],
    );
    rt.start(&c).await.unwrap();
    assert_eq!(wait(&rt, 2).await, 0);
    let want = format!("hello there|web|2|{}|{}", TaskId(2), NodeId(5));
    let mut got = Vec::new();
    for _ in 0..300 {
        got = rt.logs(TaskId(2), 10).await.unwrap();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got.first().map(|l| l.text.as_str()), Some(want.as_str()));

    eprintln!("phase: a program that is not there is refused at prepare");
    let c = ctx(3, "no-such-program-xyz", &[]);
    assert_eq!(
        rt.prepare(&c).await,
        Err(RuntimeError::NoSuchImage("no-such-program-xyz".into()))
    );
    assert!(rt.start(&c).await.is_err());

    rt.remove(TaskId(1)).await.unwrap();
    assert_eq!(
        rt.logs(TaskId(1), 1).await,
        Err(RuntimeError::NoSuchTask(TaskId(1)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path().to_path_buf()).unwrap();

    eprintln!("phase: a plain sleep ends on SIGTERM");
    rt.start(&ctx(1, "sleep", &["1000"])).await.unwrap();
    rt.stop(TaskId(1), 20_000).await.unwrap();
    assert_eq!(wait(&rt, 1).await, 128 + libc::SIGTERM);

    eprintln!("phase: a task that traps SIGTERM is killed after the grace period");
    // The shell ignores TERM and waits on a child in the same group that ignores it too.
    let c = ctx(
        2,
        "sh",
        &["-c", "trap '' TERM; echo ready; sleep 1000 & wait"],
    );
    rt.start(&c).await.unwrap();
    for _ in 0..3000 {
        if !rt.logs(TaskId(2), 1).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rt.stop(TaskId(2), 300).await.unwrap();
    assert_eq!(wait(&rt, 2).await, 128 + libc::SIGKILL);

    eprintln!("phase: stopping a task that is over, or unknown, is fine");
    rt.stop(TaskId(2), 10).await.unwrap();
    rt.stop(TaskId(77), 10).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_pass_fail_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path().to_path_buf()).unwrap();
    let c = ctx(1, "sleep", &["1000"]);
    let check = |cmd: &str, timeout_ms| health_check(cmd, 1_000, timeout_ms, 1);
    assert_eq!(rt.health(&c, &check("true", 20_000)).await, Ok(Some(true)));
    assert_eq!(
        rt.health(&c, &check("exit 1", 20_000)).await,
        Ok(Some(false))
    );
    assert_eq!(
        rt.health(&c, &check("test \"$SWARM_SERVICE_NAME\" = web", 20_000))
            .await,
        Ok(Some(true)),
        "the check sees the task's env"
    );
    assert_eq!(
        rt.health(&c, &check("sleep 1000", 200)).await,
        Ok(Some(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_or_clean_kills_what_a_previous_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");

    eprintln!("phase: a first runtime starts a task and is forgotten (its pid file stays)");
    let first = ProcessRuntime::new(tasks.clone()).unwrap();
    // A grandchild in the same group, as a shell script would leave.
    first
        .start(&ctx(1, "sh", &["-c", "sleep 1000 & sleep 1000"]))
        .await
        .unwrap();
    let pid = first.get(TaskId(1)).unwrap().pid;
    assert!(alive(pid));
    // Forget it without stopping it: the process lives on, as after a node crash that the
    // parent-death signal did not cover (the spawner thread stays up while `first` lives).
    first.inner.tasks.lock().unwrap().clear();

    eprintln!("phase: a second runtime of the same node finds and kills it");
    let second = ProcessRuntime::new(tasks.clone()).unwrap();
    // Another node's file and a garbage file are left alone / removed.
    std::fs::write(tasks.join("junk.pid"), "not a record").unwrap();
    let other = format!("{pid} 1 {} {}\n", NodeId(6), TaskId(9));
    std::fs::write(tasks.join("other.pid"), &other).unwrap();
    let found = second
        .adopt_or_clean(NodeId(5), &BTreeSet::from([TaskId(1)]))
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![Orphan {
            task_id: Some(TaskId(1)),
            what: format!("pid {pid}"),
            action: OrphanAction::Removed
        }]
    );
    for _ in 0..3000 {
        if !alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!alive(pid), "the leftover was killed");
    assert!(!tasks.join(format!("{}.pid", TaskId(1))).exists());
    assert!(!tasks.join("junk.pid").exists());
    assert!(tasks.join("other.pid").exists());

    eprintln!("phase: a record whose PID now names another process is not acted on");
    let me = std::process::id() as i32;
    let stale = format!("{me} 1 {} {}\n", NodeId(5), TaskId(3));
    std::fs::write(tasks.join("stale.pid"), stale).unwrap();
    let found = second
        .adopt_or_clean(NodeId(5), &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].action, OrphanAction::AlreadyGone);
}

#[test]
fn pid_records_parse_strictly() {
    let ok = format!("123 456 {} {}\n", NodeId(1), TaskId(2));
    let r = PidRecord::parse(&ok).unwrap();
    assert_eq!(
        (r.pid, r.start_time, r.node, r.task),
        (123, 456, NodeId(1), TaskId(2))
    );
    assert!(PidRecord::parse("1 2 x y").is_none());
    assert!(PidRecord::parse(&format!("1 0 {} {}", NodeId(1), TaskId(2))).is_none());
    assert!(PidRecord::parse("").is_none());
    assert!(start_time(std::process::id() as i32).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_die_with_their_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path().to_path_buf()).unwrap();
    rt.start(&ctx(1, "sleep", &["1000"])).await.unwrap();
    // A task that forks, as `sh -c "...; sleep"` does: its child is not the runtime's child.
    rt.start(&ctx(2, "sh", &["-c", "sleep 1000 & echo $!; wait"]))
        .await
        .unwrap();
    let mut forked = None;
    for _ in 0..3000 {
        let lines = rt.logs(TaskId(2), 1).await.unwrap();
        if let Some(line) = lines.first() {
            forked = Some(line.text.trim().parse::<i32>().expect("a PID"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let forked = forked.expect("the task printed its child's PID");
    let pids = [
        rt.get(TaskId(1)).unwrap().pid,
        rt.get(TaskId(2)).unwrap().pid,
        forked,
    ];
    assert!(pids.iter().all(|p| alive(*p)));
    eprintln!(
        "phase: dropping the runtime ends its spawner thread; the shims' parent-death signal \
         takes each task's whole group down"
    );
    drop(rt);
    for _ in 0..3000 {
        if pids.iter().all(|p| !alive(*p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for p in pids {
        assert!(!alive(p), "pid {p} outlived its runtime");
    }
}

/// Whether this test process may change a child's user; outside CI a non-root run skips the
/// tests that need it (with a line saying so), under CI=true it fails.
fn can_switch_users(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs root to run a task as another user, and CI runs as root"
        );
        eprintln!("SKIPPED {test}: not root, so no task can run as another user");
    }
    root
}

/// The `Uid:` and `Gid:` lines' real ids of a live process.
fn ids_of(pid: i32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let id = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (id("Uid:"), id("Gid:"))
}

async fn log_lines(rt: &ProcessRuntime, task: u128, want: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..3_000 {
        lines = rt.logs(TaskId(task), 100).await.unwrap();
        if lines.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lines.into_iter().map(|l| l.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_a_user_cannot_read_what_the_node_keeps_to_itself() {
    if !can_switch_users("a_task_with_a_user_cannot_read_what_the_node_keeps_to_itself") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // Laid out as the node lays out its data dir: the directory 0700, a key in it 0600.
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = data.path().join("node.key");
    std::fs::write(&key, "secret").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rt = ProcessRuntime::new(data.path().join("tasks")).unwrap();
    let script = format!(
        "id -u; id -g; id -G; if cat {} >/dev/null 2>&1; then echo read; else echo denied; fi; sleep 1000",
        key.display()
    );

    eprintln!(
        "phase: --user 65534:65534 runs the task (and its shim) as that user, no groups kept"
    );
    let mut c = ctx(1, "sh", &["-c", &script]);
    c.spec.user = Some("65534:65534".into());
    rt.prepare(&c).await.unwrap();
    rt.start(&c).await.unwrap();
    assert_eq!(
        log_lines(&rt, 1, 4).await,
        ["65534", "65534", "65534", "denied"]
    );
    let shim = rt.get(TaskId(1)).unwrap().pid;
    assert_eq!(ids_of(shim), (65534, 65534), "the shim changed its ids too");

    eprintln!(
        "phase: the same task without --user runs as the node's user (root) and reads the key"
    );
    let c = ctx(2, "sh", &["-c", &script]);
    rt.start(&c).await.unwrap();
    assert_eq!(log_lines(&rt, 2, 4).await[..2], ["0", "0"]);
    assert_eq!(log_lines(&rt, 2, 4).await[3], "read");

    eprintln!("phase: the health check runs as the task's user too");
    let check = health_check(format!("cat {}", key.display()), 1_000, 20_000, 1);
    let mut c = ctx(3, "sleep", &["1000"]);
    assert_eq!(rt.health(&c, &check).await, Ok(Some(true)));
    c.spec.user = Some("65534:65534".into());
    assert_eq!(rt.health(&c, &check).await, Ok(Some(false)));

    eprintln!("phase: a user this host does not know is refused before anything starts");
    let mut c = ctx(4, "sleep", &["1000"]);
    c.spec.user = Some("no-such-user-xyz".into());
    assert!(matches!(
        rt.prepare(&c).await,
        Err(RuntimeError::InvalidSpec(m)) if m.contains("no such user")
    ));
    assert!(matches!(
        rt.start(&c).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(rt.get(TaskId(4)).is_none());

    eprintln!("phase: a task run as another user still dies with its runtime");
    let members = group_members(shim);
    assert!(members.len() >= 3, "shim, sh and sleep: {members:?}");
    drop(rt);
    for _ in 0..3000 {
        if group_members(shim).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        group_members(shim),
        Vec::<i32>::new(),
        "the group outlived its runtime"
    );
}

/// The live (not zombie) processes of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp.
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        if rest[2].parse::<i32>() == Ok(pgid) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}
