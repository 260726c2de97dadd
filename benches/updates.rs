//! Benchmark: a rolling update of 30 replicas, parallelism 5, delay 0, monitor 1 s, on three
//! nodes on loopback (a manager and two workers), against its floor and against Docker Swarm
//! doing the same update on the same machine in the same run.
//!
//! `cargo bench --bench updates` (options: `-- --replicas R --parallelism P --rounds N
//! --docker 0|1 --swarm-node 0|1 --docker-plain-rounds M`; the defaults are 30, 5, 3, 1, 1, 1).
//! - **floor**: measured on the same cluster first. *start*: `service scale` by P more replicas
//!   until all run; *stop*: `service scale` back until only R tasks run. The floor is
//!   ⌈R/P⌉ batches × (stop + start + monitor): stop-first replaces a batch by stopping its P old
//!   tasks, starting P new ones, and watching them for the monitor period. SwarmKit's rule
//!   (and ours) watches only once, after the last batch: with delay 0 the next batch starts as
//!   soon as this one's tasks run. So the floor is a bound the updater should beat;
//!   the tighter one, ⌈R/P⌉ × (stop + start) + monitor, is printed beside it.
//! - **swarm-node**: `service update --update-parallelism P --update-delay 0s
//!   --update-monitor 1s --image …` without `--detach`, from the command's start to the line
//!   `verify: Service converged` (the command then exits), N rounds alternating between two
//!   names of the same program (`sleep`, `/bin/sleep`; the process runtime's IMAGE is the
//!   program). Also UpdateStatus's CompletedAt − StartedAt, the update as the store saw it.
//! - **Docker Swarm** (with `--docker 1`, the default, when the engine answers and is not
//!   already in a swarm): `docker swarm init`, the busybox test image as a 30-replica service,
//!   `docker service update --update-parallelism 5 --update-delay 0s --update-monitor 1s
//!   --image swarm-test/busybox:2`, alternating `:2` and `:1`; then `docker swarm leave
//!   --force`, so the engine is left as it was found. Twice: as given, M rounds (busybox's
//!   `sleep` is the container's PID 1 and ignores SIGTERM, so every stop waits Docker's 10 s
//!   grace period), then created with `--init`, N rounds (the init passes SIGTERM on and the
//!   stop is immediate, as it is for the process runtime's `sleep`). Each with its floor,
//!   measured as above, counting running containers with `docker ps`.
//!
//! Prints figures; asserts nothing about speed.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Node, arg, task_state, three_nodes};
use serde_json::Value;
use swarm_actors::runtime::testimage::{
    TEST_IMAGE, TEST_IMAGE_2, docker_available, ensure_test_image,
};

const BASE_PORT: u16 = 26_951;
const POLL: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(300);
const MONITOR: Duration = Duration::from_secs(1);
/// The Docker Swarm services' names; removed with the swarm at the end.
const DOCKER_SERVICE: &str = "swarm-node-bench";
const DOCKER_SERVICE_INIT: &str = "swarm-node-bench-init";

/// Tasks wanted and running in `service ps` rows, and tasks running at all (a task being
/// stopped is still running until its process ends).
fn counts(n: &Node, svc: &str) -> (usize, usize) {
    let rows = n.service_ps(svc);
    let wanted = rows
        .iter()
        .filter(|r| r["DesiredState"] == "Running" && task_state(r) == "Running")
        .count();
    let any = rows.iter().filter(|r| task_state(r) == "Running").count();
    (wanted, any)
}

/// Polls until `ok(wanted, any)` holds; returns how long that took.
fn wait_counts(n: &Node, svc: &str, ok: impl Fn(usize, usize) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let (wanted, any) = counts(n, svc);
        if ok(wanted, any) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < LIMIT,
            "{svc}: never got there ({wanted} wanted and running, {any} running)"
        );
        std::thread::sleep(POLL);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs a command, reading its output as it comes: returns when the line containing `mark`
/// was printed (if it was), when the command ended, whether it succeeded, and what it printed.
fn timed(cmd: &mut Command, mark: &str) -> (Option<Duration>, Duration, bool, String) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let err = child.stderr.take().expect("piped stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            s += &line;
            s.push('\n');
        }
        s
    });
    let mut seen = None;
    let mut text = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout"))
        .lines()
        .map_while(Result::ok)
    {
        if seen.is_none() && line.contains(mark) {
            seen = Some(t0.elapsed());
        }
        text += &line;
        text.push('\n');
    }
    let status = child.wait().expect("the command ends");
    let ended = t0.elapsed();
    text += &err.join().unwrap_or_default();
    (seen, ended, status.success(), text)
}

/// Seconds of the day of an RFC 3339 UTC time (`2026-12-04T19:33:20.123456789Z`).
fn day_seconds(t: &str) -> Option<f64> {
    let clock = t.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// CompletedAt − StartedAt of an inspect document's UpdateStatus, in milliseconds.
fn status_span_ms(doc: &Value) -> Option<f64> {
    let s = day_seconds(doc["UpdateStatus"]["StartedAt"].as_str()?)?;
    let c = day_seconds(doc["UpdateStatus"]["CompletedAt"].as_str()?)?;
    // An update across midnight: CompletedAt is on the next day.
    let d = if c >= s { c - s } else { c + 86_400.0 - s };
    Some(d * 1000.0)
}

/// The swarm-node side: floor, then `rounds` updates. Returns the figures to print.
fn swarm_node(root: &Path, replicas: usize, parallelism: usize, rounds: usize) -> Vec<String> {
    let nodes = three_nodes(root, BASE_PORT);
    let m = &nodes[0];
    let r = replicas.to_string();
    m.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        &r,
        "--runtime",
        "process",
        "--update-monitor",
        "1s",
        "--detach",
        "sleep",
        "100000",
    ]);
    wait_counts(m, "web", |w, a| w == replicas && a == replicas);

    // The floor's parts, three times each; the median is used.
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..3 {
        let up = format!("web={}", replicas + parallelism);
        m.ok(&["service", "scale", "--detach", &up]);
        let t = wait_counts(m, "web", |w, _| w == replicas + parallelism);
        starts.push(ms(t));
        m.ok(&["service", "scale", "--detach", &format!("web={replicas}")]);
        let t = wait_counts(m, "web", |w, a| w == replicas && a == replicas);
        stops.push(ms(t));
    }
    let (start, stop) = (median(starts.clone()), median(stops.clone()));
    let batches = replicas.div_ceil(parallelism);
    let floor = batches as f64 * (stop + start + ms(MONITOR));
    let mut lines = vec![format!(
        "swarm-node floor: {batches} batches × (stop {stop:.0} + start {start:.0} + monitor {:.0}) = {floor:.0} ms; \
         with one monitor period at the end only: {:.0} ms \
         (stop {stops:.0?}, start {starts:.0?} ms: scale by {parallelism} and back, 3 times, median)",
        ms(MONITOR),
        batches as f64 * (stop + start) + ms(MONITOR),
    )];

    let p = parallelism.to_string();
    let mut walls = Vec::new();
    for round in 0..rounds {
        let image = if round % 2 == 0 {
            "/bin/sleep"
        } else {
            "sleep"
        };
        let (converged, ended, ok, text) = timed(
            Command::new(BIN).arg("--data-dir").arg(&m.dir).args([
                "service",
                "update",
                "--update-parallelism",
                &p,
                "--update-delay",
                "0s",
                "--update-monitor",
                "1s",
                "--image",
                image,
                "web",
            ]),
            "Service converged",
        );
        assert!(ok, "the update failed: {text}");
        wait_counts(m, "web", |w, a| w == replicas && a == replicas);
        let span = m.service_inspect("web").and_then(|d| status_span_ms(&d));
        let wall = converged.unwrap_or(ended);
        walls.push(ms(wall));
        lines.push(format!(
            "swarm-node round {}: → {image}: command → \"Service converged\" {} ms, command ended {:.0} ms, \
             UpdateStatus CompletedAt − StartedAt {}",
            round + 1,
            converged.map_or("(line not printed)".into(), |d| format!("{:.0}", ms(d))),
            ms(ended),
            span.map_or("(not shown)".into(), |s| format!(
                "{s:.0} ms, (span − monitor) / {batches} batches = {:.0} ms per batch",
                (s - ms(MONITOR)) / batches as f64
            )),
        ));
    }
    let med = median(walls);
    lines.push(format!(
        "swarm-node: {replicas} replicas, parallelism {parallelism}, delay 0, monitor 1 s, process runtime: \
         median {med:.0} ms over {rounds} rounds, floor {floor:.0} ms ({:.2} × floor)",
        med / floor
    ));
    lines
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Leaves the swarm this run created, even when the run panics.
struct SwarmGuard;

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        for name in [DOCKER_SERVICE, DOCKER_SERVICE_INIT] {
            let (_, _) = docker(&["service", "rm", name]); // gone with the swarm anyway
        }
        let (ok, text) = docker(&["swarm", "leave", "--force"]);
        eprintln!(
            "docker swarm leave --force: {}",
            if ok { "done" } else { text.trim() }
        );
    }
}

/// Running containers of a Docker Swarm service.
fn docker_running(svc: &str) -> usize {
    let (_, text) = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={svc}"),
    ]);
    text.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Polls until `svc` has exactly `want` running containers; returns how long that took.
fn docker_wait(svc: &str, want: usize) -> Duration {
    let t0 = Instant::now();
    loop {
        let n = docker_running(svc);
        if n == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < LIMIT,
            "{svc}: never {want} running containers ({n})"
        );
        std::thread::sleep(POLL);
    }
}

/// One Docker Swarm service: created with `create_extra`, its floor measured `floor_samples`
/// times, then `rounds` updates; removed at the end.
fn docker_variant(
    svc: &str,
    create_extra: &[&str],
    (replicas, parallelism, rounds, floor_samples): (usize, usize, usize, usize),
) -> Vec<String> {
    let r = replicas.to_string();
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        svc,
        "--replicas",
        &r,
        "--update-monitor",
        "1s",
    ];
    args.extend(create_extra);
    args.extend([TEST_IMAGE, "sleep", "100000"]);
    let (ok, text) = docker(&args);
    assert!(ok, "docker service create: {text}");
    docker_wait(svc, replicas);

    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..floor_samples {
        let (ok, text) = docker(&[
            "service",
            "scale",
            "--detach",
            &format!("{svc}={}", replicas + parallelism),
        ]);
        assert!(ok, "{text}");
        starts.push(ms(docker_wait(svc, replicas + parallelism)));
        let (ok, text) = docker(&["service", "scale", "--detach", &format!("{svc}={replicas}")]);
        assert!(ok, "{text}");
        stops.push(ms(docker_wait(svc, replicas)));
    }
    let (start, stop) = (median(starts.clone()), median(stops.clone()));
    let batches = replicas.div_ceil(parallelism);
    let floor = batches as f64 * (stop + start + ms(MONITOR));
    let mut lines = vec![format!(
        "Docker Swarm {svc} floor: {batches} batches × (stop {stop:.0} + start {start:.0} + monitor {:.0}) = {floor:.0} ms; \
         with one monitor period at the end only: {:.0} ms \
         (stop {stops:.0?}, start {starts:.0?} ms: scale by {parallelism} and back, running containers counted)",
        ms(MONITOR),
        batches as f64 * (stop + start) + ms(MONITOR),
    )];

    let p = parallelism.to_string();
    let mut walls = Vec::new();
    for round in 0..rounds {
        let image = if round % 2 == 0 {
            TEST_IMAGE_2
        } else {
            TEST_IMAGE
        };
        let (converged, ended, ok, text) = timed(
            Command::new("docker").args([
                "service",
                "update",
                "--update-parallelism",
                &p,
                "--update-delay",
                "0s",
                "--update-monitor",
                "1s",
                "--image",
                image,
                svc,
            ]),
            "Service converged",
        );
        assert!(ok, "docker service update failed: {text}");
        if round == 0 {
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            eprintln!("docker service update printed, last lines reversed: {tail:?}");
        }
        let (_, doc) = docker(&["service", "inspect", svc]);
        let span = serde_json::from_str::<Value>(&doc)
            .ok()
            .and_then(|d| status_span_ms(&d[0]));
        let wall = converged.unwrap_or(ended);
        walls.push(ms(wall));
        lines.push(format!(
            "Docker Swarm {svc} round {}: → {image}: command → \"Service converged\" {} ms, command ended {:.0} ms, \
             UpdateStatus CompletedAt − StartedAt {}",
            round + 1,
            converged.map_or("(line not printed)".into(), |d| format!("{:.0}", ms(d))),
            ms(ended),
            span.map_or("(not shown)".into(), |s| format!(
                "{s:.0} ms, (span − monitor) / {batches} batches = {:.0} ms per batch",
                (s - ms(MONITOR)) / batches as f64
            )),
        ));
    }
    let (_, version) = docker(&["version", "--format", "{{.Server.Version}}"]);
    let med = median(walls);
    lines.push(format!(
        "Docker Swarm {} ({svc}{}): {replicas} replicas, parallelism {parallelism}, delay 0, monitor 1 s, one node: \
         median {med:.0} ms over {rounds} rounds, floor {floor:.0} ms ({:.2} × floor)",
        version.trim(),
        if create_extra.is_empty() {
            String::new()
        } else {
            format!(", created with {}", create_extra.join(" "))
        },
        med / floor
    ));
    let (ok, text) = docker(&["service", "rm", svc]);
    assert!(ok, "{text}");
    docker_wait(svc, 0);
    lines
}

/// The Docker Swarm side, or why it did not run: the service as given (busybox's `sleep` is
/// the container's PID 1, which ignores SIGTERM, so each stop waits the 10 s grace period),
/// `plain_rounds` times; then the same with `--init` (an init forwards SIGTERM and `sleep`
/// ends at once), `rounds` times.
fn docker_swarm(
    replicas: usize,
    parallelism: usize,
    rounds: usize,
    plain_rounds: usize,
) -> Vec<String> {
    if let Err(why) = docker_available().and_then(|()| ensure_test_image()) {
        return vec![format!("Docker Swarm: not run ({why})")];
    }
    let (_, state) = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if state.trim() != "inactive" {
        return vec![format!(
            "Docker Swarm: not run (the engine's swarm state is {:?}; it is left alone)",
            state.trim()
        )];
    }
    let (ok, text) = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    assert!(ok, "docker swarm init: {text}");
    let _leave = SwarmGuard;
    let mut lines = Vec::new();
    if plain_rounds > 0 {
        lines.extend(docker_variant(
            DOCKER_SERVICE,
            &[],
            (replicas, parallelism, plain_rounds, 1),
        ));
    }
    lines.extend(docker_variant(
        DOCKER_SERVICE_INIT,
        &["--init"],
        (replicas, parallelism, rounds, 3),
    ));
    lines
}

fn main() {
    let replicas = arg("--replicas", 30);
    let parallelism = arg("--parallelism", 5);
    let rounds = arg("--rounds", 3);
    let with_docker = arg("--docker", 1) == 1;
    let root = tempfile::tempdir().unwrap();
    let mut lines = if arg("--swarm-node", 1) == 1 {
        swarm_node(root.path(), replicas, parallelism, rounds)
    } else {
        Vec::new()
    };
    for l in &lines {
        println!("{l}");
    }
    if with_docker {
        // The cluster above is gone (its nodes were dropped) before Docker Swarm runs, so the
        // two do not share the cores.
        let more = docker_swarm(
            replicas,
            parallelism,
            rounds,
            arg("--docker-plain-rounds", 1),
        );
        for l in &more {
            println!("{l}");
        }
        lines.extend(more);
    }
    println!("--- summary");
    for l in lines.iter().filter(|l| l.contains("median")) {
        println!("{l}");
    }
}
