//! Rolling updates end to end: real `swarm-node` processes on loopback, three nodes, services
//! on the process runtime (and, where the Docker Engine answers, on containers of the imported
//! busybox image), updated, paused, rolled back and forced through the CLI as a user would.
//!
//! What each test checks is the behaviour the user sees: which tasks `service ps` lists and on
//! which spec, `service inspect`'s UpdateStatus, and what `service update` prints and returns.
//! Timing is checked for structure only (tasks replaced in pairs, at least the delay apart),
//! never for an upper bound: the machines are shared and noisy.
//!
//! Monitors are short (500 ms, set at create so updates and rollbacks both use them) and
//! `SWARM_NODE_VERIFY_MS` is low, so that each test takes seconds, not minutes.
//!
//! Ports 26101–26999.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Node, all_ready, phase, task_state as state, three_nodes, wait_until};
use serde_json::Value;

/// Bound on every wait for the cluster or an update to finish; generous, the machines are
/// noisy.
const CONVERGE: Duration = Duration::from_secs(90);

/// The progress display's verify period, short: the tests read UpdateStatus, not the clock.
const VERIFY: (&str, &str) = ("SWARM_NODE_VERIFY_MS", "300");

/// The process runtime runs IMAGE as the program: two names of the same program make two
/// specs that behave alike, as `:1` and `:2` of the same image do on Docker.
const OLD: &str = "sleep";
const NEW: &str = "/bin/sleep";

/// A program that does not exist: its tasks fail at start.
const MISSING: &str = "swarm-test-no-such-program";

/// Short monitors for every service of these tests, for updates and rollbacks alike.
const FAST: [&str; 4] = ["--update-monitor", "500ms", "--rollback-monitor", "500ms"];

/// How far apart two polls of `service ps` may be: the first time a task is seen is up to
/// this late, so spacings measured between first sightings are this much uncertain.
const POLL_SLACK: Duration = Duration::from_millis(300);

/// Docker's words for an update that fails and rolls back, and for one that pauses.
const ROLLED_BACK: &str = "update rolled back due to failure or early termination of task";
const PAUSED: &str = "update paused due to failure or early termination of task";

// ---------------------------------------------------------------------------------------------
// Clusters and services
// ---------------------------------------------------------------------------------------------

/// Three managers, all Ready with a leader on each one's view.
fn three_managers(root: &Path, base: u16) -> Vec<Node> {
    let m1 = Node::bootstrap(root, "m1", base);
    let token = m1.token("manager");
    let m2 = Node::join(root, "m2", base + 1, m1.addr, &token);
    let m3 = Node::join(root, "m3", base + 2, m1.addr, &token);
    let nodes = vec![m1, m2, m3];
    for n in &nodes {
        let ok = wait_until(CONVERGE, || {
            let rows = n.node_ls();
            all_ready(&rows, 3) && leader(n).is_some()
        });
        assert!(ok, "{}: {:?}\n{}", n.name, n.node_ls(), n.logs());
    }
    nodes
}

/// The leader's hostname as `n` sees it.
fn leader(n: &Node) -> Option<String> {
    n.node_ls()
        .iter()
        .find(|r| r["ManagerStatus"] == "Leader")
        .and_then(|r| r["Hostname"].as_str().map(str::to_string))
}

/// `service create --name NAME --replicas R --detach` with the short monitors, then `more`
/// (runtime, image, arguments), and waits until R tasks of `image` run.
fn create(n: &Node, name: &str, replicas: usize, more: &[&str], image: &str) {
    let r = replicas.to_string();
    let mut args = vec![
        "service",
        "create",
        "--name",
        name,
        "--replicas",
        &r,
        "--detach",
    ];
    args.extend(FAST);
    args.extend(more);
    n.ok(&args);
    settled(n, name, replicas, image);
}

/// The process runtime's service: `sleep 100000` under the name [`OLD`].
fn create_process(n: &Node, name: &str, replicas: usize) {
    create(
        n,
        name,
        replicas,
        &["--runtime", "process", OLD, "100000"],
        OLD,
    );
}

/// Rows whose task is still wanted (desired Running).
fn live(rows: &[Value]) -> Vec<&Value> {
    rows.iter()
        .filter(|r| r["DesiredState"] == "Running")
        .collect()
}

/// Tasks both wanted and running.
fn running(rows: &[Value]) -> usize {
    live(rows).iter().filter(|r| state(r) == "Running").count()
}

/// Whether `rows` show exactly `replicas` wanted tasks, all running `image`.
fn all_on(rows: &[Value], replicas: usize, image: &str) -> bool {
    let l = live(rows);
    l.len() == replicas
        && l.iter()
            .all(|r| state(r) == "Running" && r["Image"] == image)
}

/// Waits until the service runs exactly `replicas` tasks, all of `image`; returns the rows.
fn settled(n: &Node, svc: &str, replicas: usize, image: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let ok = wait_until(CONVERGE, || {
        rows = n.service_ps(svc);
        all_on(&rows, replicas, image)
    });
    assert!(
        ok,
        "{svc} never ran {replicas} tasks of {image}; last ps: {rows:#?}\n{}",
        n.logs()
    );
    rows
}

/// `UpdateStatus.State` of an inspect document ("" when there is none).
fn update_state(doc: &Value) -> &str {
    doc["UpdateStatus"]["State"].as_str().unwrap_or("")
}

/// The image (process runtime: the program) of a spec in an inspect document.
fn image_of(spec: &Value) -> &str {
    spec["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or("")
}

/// Waits until the service's UpdateStatus is `want`; returns the inspect document.
fn wait_status(n: &Node, svc: &str, want: &str) -> Value {
    let mut doc = Value::Null;
    let ok = wait_until(CONVERGE, || {
        if let Some(d) = n.service_inspect(svc) {
            doc = d;
        }
        update_state(&doc) == want
    });
    assert!(
        ok,
        "{svc}'s UpdateStatus never became {want}; last inspect: {doc:#}\nps: {:#?}\n{}",
        n.service_ps(svc),
        n.logs()
    );
    doc
}

/// What a command printed, stdout then stderr.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `service update ARGS` without `--detach` (the progress display) on another thread,
/// as a user would at a terminal, so that the test can watch the cluster meanwhile.
fn update_in_background(n: &Node, args: &[&str]) -> JoinHandle<Option<Output>> {
    let dir = n.dir.clone();
    let args: Vec<String> = ["service", "update"]
        .iter()
        .copied()
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::cli_env_within(&dir, CONVERGE, &[VERIFY], &args)
    })
}

/// Runs `service update ARGS` without `--detach` and returns its output; fails the test if it
/// does not end within [`CONVERGE`].
fn update_waiting(n: &Node, args: &[&str]) -> Output {
    let mut all = vec!["service", "update"];
    all.extend(args);
    n.cli_env_within(CONVERGE, &[VERIFY], &all)
        .unwrap_or_else(|| panic!("`{}` did not end: {}", all.join(" "), n.logs()))
}

/// Slots (task names, `web.3`) that ever had a task of `image`.
fn slots_with(rows: &[Value], image: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r["Image"] == image)
        .filter_map(|r| r["Name"].as_str().map(str::to_string))
        .collect()
}

/// The task ID at the end of an UpdateStatus message ("… of task <id>").
fn task_in(message: &str) -> &str {
    message.rsplit(' ').next().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Watching an update
// ---------------------------------------------------------------------------------------------

/// What polling `service ps` saw during an update.
struct Watch {
    t0: Instant,
    /// When each task ID was first listed, and its image.
    first_seen: BTreeMap<String, (Duration, String)>,
    /// The fewest tasks wanted and running in any poll.
    min_running: usize,
    /// The most tasks running in any poll, wanted or being stopped.
    max_running_any: usize,
    polls: usize,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            t0: Instant::now(),
            first_seen: BTreeMap::new(),
            min_running: usize::MAX,
            max_running_any: 0,
            polls: 0,
        }
    }

    /// One poll of `service ps`; returns the rows (none when the call failed).
    fn poll(&mut self, n: &Node, svc: &str) -> Vec<Value> {
        let rows = n.service_ps(svc);
        if rows.is_empty() {
            return rows;
        }
        let at = self.t0.elapsed();
        for r in &rows {
            if let (Some(id), Some(image)) = (r["ID"].as_str(), r["Image"].as_str()) {
                self.first_seen
                    .entry(id.to_string())
                    .or_insert((at, image.to_string()));
            }
        }
        self.min_running = self.min_running.min(running(&rows));
        let any = rows.iter().filter(|r| state(r) == "Running").count();
        self.max_running_any = self.max_running_any.max(any);
        self.polls += 1;
        rows
    }

    /// When each task of `image` was first seen, earliest first.
    fn created(&self, image: &str) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .first_seen
            .values()
            .filter(|(_, i)| i == image)
            .map(|(at, _)| *at)
            .collect();
        v.sort();
        v
    }
}

/// Groups sorted times into batches: a time less than `apart` after the one before it joins
/// that one's batch.
fn batches(times: &[Duration], apart: Duration) -> Vec<Vec<Duration>> {
    let mut out: Vec<Vec<Duration>> = Vec::new();
    for t in times {
        match out.last_mut() {
            Some(b) if *t - *b.last().expect("batches are never empty") < apart => b.push(*t),
            _ => out.push(vec![*t]),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Scenarios shared by both runtimes
// ---------------------------------------------------------------------------------------------

/// The tutorial's update: 6 replicas of `old` to `new`, `--update-parallelism 2
/// --update-delay 2s`, watched through `service ps` from the command to its end.
fn tutorial_update(n: &Node, old: &str, new: &str) {
    const REPLICAS: usize = 6;
    const DELAY: Duration = Duration::from_secs(2);

    phase("update :1 → :2, two at a time, 2 s apart, watching service ps meanwhile");
    let mut watch = Watch::new();
    watch.poll(n, "web");
    let cmd = update_in_background(
        n,
        &[
            "--update-parallelism",
            "2",
            "--update-delay",
            "2s",
            "--image",
            new,
            "web",
        ],
    );
    while !cmd.is_finished() {
        watch.poll(n, "web");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = cmd
        .join()
        .expect("the update thread")
        .unwrap_or_else(|| panic!("the update command never ended: {}", n.logs()));
    let rows = watch.poll(n, "web");
    assert!(
        out.status.success(),
        "the update must succeed: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("verify: Service converged"),
        "the command ends with Docker's last line: {}",
        text(&out)
    );
    eprintln!("{} polls of service ps during the update", watch.polls);

    phase("every slot runs :2, the :1 tasks are history, UpdateStatus completed");
    let rows = if all_on(&rows, REPLICAS, new) {
        rows
    } else {
        settled(n, "web", REPLICAS, new)
    };
    let old_rows: Vec<&Value> = rows.iter().filter(|r| r["Image"] == old).collect();
    assert_eq!(old_rows.len(), REPLICAS, "one :1 task per slot: {rows:#?}");
    assert!(
        old_rows.iter().all(|r| r["DesiredState"] == "Shutdown"),
        "the old tasks are shut down: {rows:#?}"
    );
    let doc = wait_status(n, "web", "completed");
    assert_eq!(image_of(&doc["Spec"]), new);
    assert_eq!(image_of(&doc["PreviousSpec"]), old);

    phase("the new tasks were created in pairs, each pair at least the delay after the last");
    let created = watch.created(new);
    assert_eq!(
        created.len(),
        REPLICAS,
        "one new task per slot, none failed: {:?}",
        watch.first_seen
    );
    let groups = batches(&created, DELAY - POLL_SLACK);
    eprintln!("new tasks first seen at {created:?}: batches {groups:?}");
    assert_eq!(
        groups.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 2],
        "tasks replaced two per batch: {groups:?}"
    );
    for pair in groups.windows(2) {
        let gap = pair[1][0] - pair[0][0];
        assert!(
            gap >= DELAY - POLL_SLACK,
            "batches start at least the delay apart: {gap:?} in {groups:?}"
        );
    }
}

/// A failing update with `--update-failure-action rollback`: the first batch fails, the
/// updater puts the previous spec back on its own, and `service ps` keeps the failed tasks.
fn failing_update_rolls_back(n: &Node, replicas: usize, old: &str, bad: &str) {
    phase("update to a spec that fails at start, failure action rollback");
    let out = update_waiting(
        n,
        &[
            "--update-failure-action",
            "rollback",
            "--update-parallelism",
            "2",
            "--image",
            bad,
            "web",
        ],
    );
    let said = text(&out);
    eprintln!("the update printed ({}):\n{said}", out.status);
    assert!(
        !out.status.success() || said.contains(ROLLED_BACK),
        "the command says the update was rolled back, or fails: {said}"
    );

    phase("UpdateStatus rollback_completed, every live task on the old spec");
    let doc = wait_status(n, "web", "rollback_completed");
    assert_eq!(image_of(&doc["Spec"]), old, "the old spec is back: {doc:#}");
    let rows = settled(n, "web", replicas, old);

    phase("service ps keeps the failed tasks, from no more slots than one batch");
    let bad_rows: Vec<&Value> = rows.iter().filter(|r| r["Image"] == bad).collect();
    assert!(
        bad_rows
            .iter()
            .any(|r| matches!(state(r), "Failed" | "Rejected")),
        "the failed tasks stay listed: {rows:#?}"
    );
    for r in &bad_rows {
        assert_eq!(
            r["DesiredState"], "Shutdown",
            "no task of the bad spec is wanted: {r:#}"
        );
    }
    let touched = slots_with(&rows, bad);
    assert!(
        touched.len() <= 2,
        "the rollback fired after the first batch of 2: {touched:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Process runtime
// ---------------------------------------------------------------------------------------------

#[test]
fn the_tutorials_update_replaces_two_tasks_per_batch_with_the_delay_between() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26101);
    phase("6 replicas of the old program");
    create_process(&nodes[0], "web", 6);
    tutorial_update(&nodes[0], OLD, NEW);
}

#[test]
fn a_failing_update_with_failure_action_rollback_rolls_back_on_its_own() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26201);
    create_process(&nodes[0], "web", 4);
    failing_update_rolls_back(&nodes[0], 4, OLD, MISSING);
}

#[test]
fn a_failing_update_with_failure_action_pause_stays_paused_until_a_new_update() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26301);
    let n1 = &nodes[0];
    create_process(n1, "web", 4);

    phase("update to a spec that fails at start, failure action pause");
    let out = update_waiting(
        n1,
        &[
            "--update-failure-action",
            "pause",
            "--image",
            MISSING,
            "web",
        ],
    );
    let said = text(&out);
    assert!(
        !out.status.success(),
        "a paused update exits non-zero: {said}"
    );
    assert!(
        said.contains(&format!("service update paused: {PAUSED} ")),
        "the command ends with Docker's line: {said}"
    );

    phase("inspect: paused, with the failed task's ID");
    let doc = wait_status(n1, "web", "paused");
    let message = doc["UpdateStatus"]["Message"].as_str().unwrap_or("");
    assert!(message.starts_with(PAUSED), "{doc:#}");
    let rows = n1.service_ps("web");
    let failed_ids: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["Image"] == MISSING && matches!(state(r), "Failed" | "Rejected"))
        .filter_map(|r| r["ID"].as_str())
        .collect();
    assert!(
        failed_ids.contains(task_in(message)),
        "the message names a failed task of the new spec: {message:?} vs {failed_ids:?}"
    );

    phase("it stays paused: no other slot is touched, the other three keep the old program");
    std::thread::sleep(Duration::from_secs(3)); // several monitor periods
    let doc = n1.service_inspect("web").expect("inspect");
    assert_eq!(update_state(&doc), "paused", "{doc:#}");
    let rows = n1.service_ps("web");
    assert_eq!(
        slots_with(&rows, MISSING).len(),
        1,
        "parallelism 1: one slot was being updated when the update paused: {rows:#?}"
    );
    let old_running = live(&rows)
        .iter()
        .filter(|r| r["Image"] == OLD && state(r) == "Running")
        .count();
    assert_eq!(old_running, 3, "{rows:#?}");

    phase("a new update while paused starts afresh and completes");
    n1.ok(&["service", "update", "--detach", "--image", NEW, "web"]);
    settled(n1, "web", 4, NEW);
    wait_status(n1, "web", "completed");
}

#[test]
fn start_first_never_drops_below_the_replica_count() {
    const REPLICAS: usize = 4;
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26401);
    let n1 = &nodes[0];
    create_process(n1, "web", REPLICAS);

    phase("start-first update, probing the running count until it completes");
    let mut watch = Watch::new();
    watch.poll(n1, "web");
    n1.ok(&[
        "service",
        "update",
        "--detach",
        "--update-order",
        "start-first",
        "--image",
        NEW,
        "web",
    ]);
    let t0 = Instant::now();
    let mut done = false;
    while !done && t0.elapsed() < CONVERGE {
        let rows = watch.poll(n1, "web");
        // Inspect less often than ps: the probe is what must be dense.
        if watch.polls.is_multiple_of(5) {
            done = all_on(&rows, REPLICAS, NEW)
                && n1
                    .service_inspect("web")
                    .is_some_and(|d| update_state(&d) == "completed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        done,
        "the update never completed: {:#?}\n{}",
        n1.service_ps("web"),
        n1.logs()
    );
    eprintln!(
        "{} polls: running (wanted) never below {}, at most {} running",
        watch.polls, watch.min_running, watch.max_running_any
    );
    assert_eq!(watch.created(NEW).len(), REPLICAS);
    assert!(
        watch.min_running >= REPLICAS,
        "start-first: a new task runs before its old one stops; saw {} running",
        watch.min_running
    );
}

#[test]
fn service_rollback_goes_back_then_forward_again() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26501);
    let n1 = &nodes[0];
    create_process(n1, "web", 3);

    phase("no previous spec: refused, nothing changes");
    let out = n1.cli(&["service", "rollback", "web"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("service web does not have a previous spec"),
        "{}",
        text(&out)
    );
    settled(n1, "web", 3, OLD);

    phase("update, then roll back: the old program again");
    n1.ok(&["service", "update", "--detach", "--image", NEW, "web"]);
    settled(n1, "web", 3, NEW);
    wait_status(n1, "web", "completed");
    n1.ok(&["service", "rollback", "--detach", "web"]);
    settled(n1, "web", 3, OLD);
    let doc = wait_status(n1, "web", "rollback_completed");
    assert_eq!(image_of(&doc["Spec"]), OLD, "{doc:#}");
    assert_eq!(image_of(&doc["PreviousSpec"]), NEW, "{doc:#}");

    phase("roll back again: forward to the new program");
    n1.ok(&["service", "rollback", "--detach", "web"]);
    settled(n1, "web", 3, NEW);
    let doc = wait_status(n1, "web", "rollback_completed");
    assert_eq!(image_of(&doc["Spec"]), NEW, "{doc:#}");
    assert_eq!(image_of(&doc["PreviousSpec"]), OLD, "{doc:#}");

    phase("service update --rollback does the same");
    n1.ok(&["service", "update", "--rollback", "--detach", "web"]);
    settled(n1, "web", 3, OLD);
    let doc = wait_status(n1, "web", "rollback_completed");
    assert_eq!(image_of(&doc["Spec"]), OLD, "{doc:#}");
}

#[test]
fn an_update_survives_a_leader_kill_and_completes() {
    const REPLICAS: usize = 6;
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_managers(root.path(), 26601);
    create_process(&nodes[0], "web", REPLICAS);

    phase("a slow update: one at a time, 1 s apart");
    nodes[0].ok(&[
        "service",
        "update",
        "--detach",
        "--update-parallelism",
        "1",
        "--update-delay",
        "1s",
        "--image",
        NEW,
        "web",
    ]);
    let mut rows = Vec::new();
    let midway = wait_until(CONVERGE, || {
        rows = nodes[0].service_ps("web");
        let new_running = live(&rows)
            .iter()
            .filter(|r| r["Image"] == NEW && state(r) == "Running")
            .count();
        (2..REPLICAS).contains(&new_running)
    });
    assert!(midway, "the update never got midway: {rows:#?}");

    phase("SIGKILL the leader mid-update");
    let name = leader(&nodes[0]).expect("a leader");
    let victim = nodes.iter().position(|n| n.name == name).unwrap();
    let new_before = live(&nodes[(victim + 1) % 3].service_ps("web"))
        .iter()
        .filter(|r| r["Image"] == NEW)
        .count();
    nodes[victim].kill();
    eprintln!("killed {name} with {new_before} of {REPLICAS} slots on the new program");
    let survivor = &nodes[(victim + 1) % 3];

    phase("a new leader finishes the update: completed, every task on the new program");
    let doc = wait_status(survivor, "web", "completed");
    assert_eq!(image_of(&doc["Spec"]), NEW, "{doc:#}");
    let rows = settled(survivor, "web", REPLICAS, NEW);
    assert!(
        live(&rows).iter().all(|r| r["Node"] != name.as_str()),
        "no live task on the dead node: {rows:#?}"
    );
}

#[test]
fn force_replaces_every_task_of_an_unchanged_spec() {
    const REPLICAS: usize = 4;
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26701);
    let n1 = &nodes[0];
    create_process(n1, "web", REPLICAS);
    let before: BTreeSet<String> = live(&n1.service_ps("web"))
        .iter()
        .filter_map(|r| r["ID"].as_str().map(str::to_string))
        .collect();
    assert_eq!(before.len(), REPLICAS);

    phase("update --force with nothing else changed");
    n1.ok(&[
        "service",
        "update",
        "--detach",
        "--force",
        "--update-parallelism",
        "2",
        "web",
    ]);
    let mut rows = Vec::new();
    let replaced = wait_until(CONVERGE, || {
        rows = n1.service_ps("web");
        all_on(&rows, REPLICAS, OLD)
            && live(&rows)
                .iter()
                .all(|r| !before.contains(r["ID"].as_str().unwrap_or("")))
    });
    assert!(replaced, "every task replaced: {before:?} vs {rows:#?}");
    let doc = wait_status(n1, "web", "completed");
    assert_eq!(
        image_of(&doc["Spec"]),
        OLD,
        "the spec is unchanged: {doc:#}"
    );
    let history: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["DesiredState"] == "Shutdown")
        .filter_map(|r| r["ID"].as_str())
        .collect();
    assert!(
        before.iter().all(|id| history.contains(id.as_str())),
        "the replaced tasks stay in the history: {rows:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Docker runtime
// ---------------------------------------------------------------------------------------------

mod docker;
