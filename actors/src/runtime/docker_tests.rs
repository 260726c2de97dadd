//! Tests of the docker runtime against the real engine, with the locally made busybox image.
//! Skipped (with the reason printed) when the engine is unreachable, unless `CI=true`.

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]
use super::*;
use crate::model::{RuntimeKind, ServiceId, TaskSpec};
use crate::runtime::process::net_tests::{http_get, namespaces_possible};
use crate::runtime::testimage::{TEST_IMAGE, docker_available};
use crate::runtime::tests_support::{context, health_check, program};

/// Upper bound on any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// A node ID of this test process and test, so that parallel runs on one engine never touch
/// each other's containers.
fn node(n: u128) -> NodeId {
    NodeId((u128::from(std::process::id()) << 64) | (0xd0c << 16) | n)
}

fn ctx(node: NodeId, task: u128, image: &str, args: &[&str]) -> TaskContext {
    let spec = TaskSpec {
        env: vec!["GREETING=hello".into()],
        ..program(RuntimeKind::Docker, image, args)
    };
    TaskContext {
        service_id: ServiceId(42),
        slot: task as u64,
        ..context(TaskId((node.0 << 8) | task), node, "dockertest", spec)
    }
}

async fn engine() -> Option<DockerRuntime> {
    if let Err(why) = tokio::task::spawn_blocking(docker_available).await.unwrap() {
        eprintln!("skipping docker test: {why}");
        return None;
    }
    let cfg = DockerConfig {
        pull_timeout_ms: 20_000,
        ..Default::default()
    };
    match DockerRuntime::connect(cfg).await {
        Ok(rt) => Some(rt),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the docker engine is unreachable: {e}")
        }
        Err(e) => {
            eprintln!("skipping docker test: {e}");
            None
        }
    }
}

async fn run(rt: &DockerRuntime, c: &TaskContext) {
    rt.prepare(c).await.unwrap();
    rt.start(c).await.unwrap();
}

async fn wait(rt: &DockerRuntime, c: &TaskContext) -> i32 {
    tokio::time::timeout(PATIENCE, rt.wait(c.task_id))
        .await
        .expect("exits")
        .expect("wait works")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_stops_and_reports_exit_codes_and_logs() {
    let Some(rt) = engine().await else { return };
    let n = node(1);

    eprintln!("phase: a long sleep runs, named and labelled, and stops within its grace");
    let sleeper = ctx(n, 1, TEST_IMAGE, &["sleep", "1000"]);
    run(&rt, &sleeper).await;
    let info = rt
        .docker
        .inspect_container(&DockerRuntime::container_name(&sleeper), None)
        .await
        .unwrap();
    assert_eq!(info.state.as_ref().and_then(|s| s.running), Some(true));
    let labels = info.config.as_ref().and_then(|c| c.labels.clone()).unwrap();
    assert_eq!(labels[LABEL_TASK], sleeper.task_id.to_string());
    assert_eq!(labels[LABEL_NODE], n.to_string());
    assert_eq!(labels[LABEL_SERVICE_NAME], "dockertest");
    let env = info.config.and_then(|c| c.env).unwrap();
    assert!(env.contains(&format!("SWARM_TASK_ID={}", sleeper.task_id)));
    assert!(env.contains(&"GREETING=hello".to_string()));
    rt.stop(sleeper.task_id, 1_000).await.unwrap();
    // PID 1 in a container ignores SIGTERM it has no handler for: killed after the grace.
    let code = wait(&rt, &sleeper).await;
    assert!(
        code == 137 || code == 143,
        "stopped by a signal, got {code}"
    );

    eprintln!("phase: exit codes and output come back");
    let failing = ctx(
        n,
        2,
        TEST_IMAGE,
        &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
    );
    run(&rt, &failing).await;
    assert_eq!(wait(&rt, &failing).await, 3);
    let logs = rt.logs(failing.task_id, 10).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.text == "hi" && l.stream == LogStream::Stdout),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.text == "oops" && l.stream == LogStream::Stderr),
        "{logs:?}"
    );
    assert!(
        logs.iter().all(|l| l.ts_ms > 1_600_000_000_000),
        "engine timestamps parsed"
    );
    let ok = ctx(n, 3, TEST_IMAGE, &["true"]);
    run(&rt, &ok).await;
    assert_eq!(wait(&rt, &ok).await, 0);

    eprintln!("phase: remove forgets the containers");
    for c in [&sleeper, &failing, &ok] {
        rt.remove(c.task_id).await.unwrap();
    }
    assert_eq!(
        rt.logs(failing.task_id, 1).await,
        Err(RuntimeError::NoSuchTask(failing.task_id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_no_such_image() {
    let Some(rt) = engine().await else { return };
    let c = ctx(node(2), 1, "swarm-test/nosuch:1", &["true"]);
    assert_eq!(
        rt.prepare(&c).await,
        Err(RuntimeError::NoSuchImage("swarm-test/nosuch:1".into()))
    );
    assert_eq!(
        RuntimeError::NoSuchImage("swarm-test/nosuch:1".into()).to_string(),
        "No such image: swarm-test/nosuch:1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_health_verdict_is_read() {
    let Some(rt) = engine().await else { return };
    let mut c = ctx(node(3), 1, TEST_IMAGE, &["sleep", "1000"]);
    let check = health_check("exit 1", 200, 2_000, 1);
    c.spec.health = Some(check.clone());
    run(&rt, &c).await;
    let mut verdict = None;
    for _ in 0..600 {
        verdict = rt.health(&c, &check).await.unwrap();
        if verdict.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.remove(c.task_id).await.unwrap();
    assert_eq!(verdict, Some(false), "the engine judged it unhealthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_or_clean_removes_unknown_containers_and_keeps_known_ones() {
    let Some(rt) = engine().await else { return };
    let n = node(4);
    let known = ctx(n, 1, TEST_IMAGE, &["sleep", "1000"]);
    let unknown = ctx(n, 2, TEST_IMAGE, &["sleep", "1000"]);
    run(&rt, &known).await;
    run(&rt, &unknown).await;

    eprintln!("phase: a fresh runtime (a restarted node) sweeps the node's containers");
    let fresh = engine().await.expect("the engine answered a moment ago");
    let found = fresh
        .adopt_or_clean(n, &BTreeSet::from([known.task_id]))
        .await
        .unwrap();
    let mut actions: Vec<(Option<TaskId>, OrphanAction)> =
        found.iter().map(|o| (o.task_id, o.action)).collect();
    actions.sort_by_key(|a| a.0);
    assert_eq!(
        actions,
        [
            (Some(known.task_id), OrphanAction::Kept),
            (Some(unknown.task_id), OrphanAction::Removed)
        ]
    );
    let gone = fresh
        .docker
        .inspect_container(&DockerRuntime::container_name(&unknown), None)
        .await;
    assert!(matches!(gone, Err(e) if status(&e) == Some(404)));

    eprintln!("phase: the kept one is reachable by task ID from the fresh runtime");
    fresh.kill(known.task_id).await.unwrap();
    assert_eq!(wait(&fresh, &known).await, 137);
    fresh.remove(known.task_id).await.unwrap();
}

#[test]
fn parses_engine_timestamps_and_image_tags() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
    assert_eq!(
        rfc3339_ms("2024-05-07T21:09:36.123456789Z"),
        Some(1_715_116_176_123)
    );
    assert_eq!(rfc3339_ms("2024-05-07T21:09:36Z"), Some(1_715_116_176_000));
    assert_eq!(rfc3339_ms("2024-13-07T21:09:36Z"), None);
    assert_eq!(rfc3339_ms("yesterday"), None);
    assert_eq!(split_tag("busybox"), ("busybox", "latest"));
    assert_eq!(
        split_tag("swarm-test/busybox:1"),
        ("swarm-test/busybox", "1")
    );
    assert_eq!(split_tag("reg:5000/a/b"), ("reg:5000/a/b", "latest"));
    assert_eq!(split_tag("reg:5000/a/b:2"), ("reg:5000/a/b", "2"));
}

#[test]
fn the_user_reaches_the_container_config() {
    eprintln!("phase: --user goes to the engine as Docker's own User field, unset when not given");
    let mut c = ctx(node(1), 1, "alpine", &[]);
    assert_eq!(DockerRuntime::create_body(&c).user, None);
    c.spec.user = Some("1000:50".into());
    assert_eq!(
        DockerRuntime::create_body(&c).user.as_deref(),
        Some("1000:50")
    );
}

#[test]
fn container_labels_reach_the_container_under_the_runtimes_own() {
    eprintln!("phase: the service's container labels go on the container; the runtime's own win");
    let mut c = ctx(node(1), 1, "alpine", &[]);
    c.spec.container_labels = [
        ("tier".to_string(), "front".to_string()),
        (LABEL_TASK.to_string(), "forged".to_string()),
    ]
    .into();
    let labels = DockerRuntime::create_body(&c).labels.unwrap();
    assert_eq!(labels["tier"], "front");
    assert_eq!(labels[LABEL_TASK], c.task_id.to_string());
    assert_eq!(labels[LABEL_SERVICE_NAME], "dockertest");
    for key in [LABEL_SERVICE, LABEL_TASK, LABEL_NODE, LABEL_SERVICE_NAME] {
        assert!(key.starts_with(LABEL_PREFIX), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_sees_its_files_read_only_at_their_targets() {
    use crate::model::{FileKey, FileKind, FileMaterial, FileRef, SecretBytes, SecretId};
    let Some(rt) = engine().await else { return };
    let n = node(9);
    let shm = tempfile::Builder::new()
        .prefix("swarm-docker-files-test")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut vault = crate::vault::Vault::open(shm.path(), n);
    let marker = "docker-files-test-5b1e";
    vault
        .hold(vec![FileMaterial {
            key: FileKey {
                kind: FileKind::Secret,
                id: SecretId(1),
            },
            name: "pw".into(),
            data: SecretBytes::new(marker.as_bytes().to_vec()),
        }])
        .unwrap();
    let fref = |target: &str, mode| FileRef {
        id: SecretId(1),
        name: "pw".into(),
        target: target.into(),
        uid: 0,
        gid: 0,
        mode,
    };

    eprintln!("phase: the secret shows at both targets, read-only, with its mode");
    let mut c = ctx(
        n,
        1,
        TEST_IMAGE,
        &[
            "sh",
            "-c",
            "cat /run/secrets/mysql_root_password; echo; cat /etc/pw; echo; \
             stat -c %a /run/secrets/mysql_root_password; \
             (echo x > /etc/pw) 2>/dev/null && echo WRITABLE; echo END",
        ],
    );
    c.files = vault
        .materialize(
            c.task_id,
            &[
                fref("/run/secrets/mysql_root_password", 0o440),
                fref("/etc/pw", 0o444),
            ],
            &[],
        )
        .unwrap();
    run(&rt, &c).await;
    assert_eq!(wait(&rt, &c).await, 0);
    let mut text = Vec::new();
    for _ in 0..300 {
        text = rt
            .logs(c.task_id, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        if text.iter().any(|l| l == "END") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(text, [marker, marker, "440", "END"]);
    rt.remove(c.task_id).await.unwrap();
    vault.close();
}

fn attachment(host: u8) -> crate::model::NetworkAttachment {
    crate::model::NetworkAttachment {
        network: "ingress".into(),
        addr: std::net::Ipv4Addr::new(10, 255, 252, host),
        prefix: 24,
        gateway: std::net::Ipv4Addr::new(10, 255, 252, 1),
    }
}

#[test]
fn a_task_with_an_address_is_attached_to_its_nodes_network_with_it() {
    eprintln!("phase: no address, no network settings (the engine's default bridge)");
    let mut c = ctx(node(1), 1, "alpine", &[]);
    let body = DockerRuntime::create_body(&c);
    assert!(body.networking_config.is_none());
    assert!(body.host_config.unwrap().network_mode.is_none());

    eprintln!("phase: the node's network, the task's address");
    c.network = Some(attachment(7));
    let body = DockerRuntime::create_body(&c);
    let name = network_name(node(1));
    assert_eq!(
        body.host_config.unwrap().network_mode.as_deref(),
        Some(name.as_str())
    );
    let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
    let ipam = endpoints[&name].ipam_config.as_ref().unwrap();
    assert_eq!(ipam.ipv4_address.as_deref(), Some("10.255.252.7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_of_one_node_both_serve_port_80_on_their_addresses() {
    let Some(rt) = engine().await else { return };
    let endpoints = crate::runtime::Endpoints::default();
    let rt = rt.with_endpoints(endpoints.clone());
    let n = node(20);
    let name = network_name(n);

    eprintln!("phase: two httpd containers on port 80, each with its address");
    let mut tasks = Vec::new();
    for (t, host) in [(1u128, 2u8), (2, 3)] {
        let script = format!("echo task-{t} > /index.html; exec httpd -f -p 80 -h /");
        let mut c = ctx(n, t, TEST_IMAGE, &["sh", "-c", &script]);
        c.network = Some(attachment(host));
        run(&rt, &c).await;
        tasks.push((t, host, c));
    }
    let net = rt.docker.inspect_network(&name, None).await.unwrap();
    assert_eq!(
        net.labels.unwrap_or_default().get(LABEL_NODE),
        Some(&n.to_string())
    );

    eprintln!("phase: each answers at its own address, which the mesh reads from the endpoints");
    for (t, host, c) in &tasks {
        let ep = endpoints.get(c.task_id).expect("an endpoint is recorded");
        assert_eq!(ep.ip, std::net::IpAddr::from(attachment(*host).addr));
        assert!(!ep.host_network);
        let deadline = std::time::Instant::now() + PATIENCE;
        let body = loop {
            match http_get(ep.socket(80)) {
                Ok(b) if b.contains("task-") => break b,
                other if std::time::Instant::now() > deadline => {
                    panic!("{} does not answer: {other:?}", ep.socket(80))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(body.contains(&format!("task-{t}")), "{body}");
    }

    eprintln!("phase: the network stays while a task uses it and goes with the last");
    rt.remove(tasks[0].2.task_id).await.unwrap();
    assert!(endpoints.get(tasks[0].2.task_id).is_none());
    assert!(rt.docker.inspect_network(&name, None).await.is_ok());
    rt.remove(tasks[1].2.task_id).await.unwrap();
    let gone = rt.docker.inspect_network(&name, None).await;
    assert_eq!(gone.err().as_ref().and_then(status), Some(404));
    assert!(endpoints.is_empty());
    if crate::runtime::running_as_root() {
        // The bridge the runtime made stays for the node's process tasks; the test's goes.
        let _ = tokio::process::Command::new("ip")
            .args(["link", "del", &crate::runtime::bridge_name(n)])
            .status()
            .await; // a failure leaves an empty bridge behind, nothing more
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_and_a_process_task_of_one_node_share_its_bridge() {
    let Some(rt) = engine().await else { return };
    if !namespaces_possible("a_container_and_a_process_task_of_one_node_share_its_bridge") {
        return;
    }
    let n = node(21);
    let at = |host| crate::model::NetworkAttachment {
        network: "ingress".into(),
        addr: std::net::Ipv4Addr::new(10, 255, 245, host),
        prefix: 24,
        gateway: std::net::Ipv4Addr::new(10, 255, 245, 1),
    };
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "process-task\n").unwrap();
    let processes = crate::runtime::ProcessRuntime::new(dir.path().join("tasks")).unwrap();

    eprintln!("phase: a container and a process task of one node, one slice, one bridge");
    let mut container = ctx(
        n,
        1,
        TEST_IMAGE,
        &[
            "sh",
            "-c",
            "echo container-task > /index.html; exec httpd -f -p 80 -h /",
        ],
    );
    container.network = Some(at(2));
    run(&rt, &container).await;
    let mut process = ctx(
        n,
        2,
        "busybox",
        &["httpd", "-f", "-p", "80", "-h", www.to_str().unwrap()],
    );
    process.spec.runtime = RuntimeKind::Process;
    process.network = Some(at(3));
    processes.start(&process).await.unwrap();
    let get_when_up = |addr: std::net::SocketAddr, want: &'static str| async move {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            match http_get(addr) {
                Ok(b) if b.contains(want) => return,
                other if std::time::Instant::now() > deadline => {
                    panic!("{addr} does not answer {want}: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    get_when_up((at(2).addr, 80).into(), "container-task").await;
    get_when_up((at(3).addr, 80).into(), "process-task").await;

    eprintln!(
        "phase: the engine's network goes with the container; the bridge stays for the process task"
    );
    rt.remove(container.task_id).await.unwrap();
    let gone = rt.docker.inspect_network(&network_name(n), None).await;
    assert_eq!(gone.err().as_ref().and_then(status), Some(404));
    get_when_up((at(3).addr, 80).into(), "process-task").await;
    processes.remove(process.task_id).await.unwrap();
    let _ = tokio::process::Command::new("ip")
        .args(["link", "del", &crate::runtime::bridge_name(n)])
        .status()
        .await; // a failure leaves an empty bridge behind, nothing more
}

fn volume(name: &str, target: &str, stack: &str) -> crate::model::Mount {
    crate::model::Mount {
        kind: crate::model::MountKind::Volume,
        source: name.into(),
        target: target.into(),
        read_only: false,
        volume_labels: [("com.docker.stack.namespace".to_string(), stack.to_string())].into(),
        tmpfs_size_bytes: 0,
    }
}

#[test]
fn entrypoint_workdir_hostname_and_mounts_reach_the_container_config() {
    use crate::model::{Mount as SpecMount, MountKind};
    eprintln!("phase: unset, the image's own entrypoint, workdir and hostname are kept");
    let mut c = ctx(node(1), 1, "alpine", &["-c", "true"]);
    let body = DockerRuntime::create_body(&c);
    assert_eq!(
        (body.entrypoint, body.working_dir, body.hostname),
        (None, None, None)
    );
    assert_eq!(body.host_config.unwrap().mounts, None);

    eprintln!("phase: set, they go to the engine as Docker's fields; mounts with their options");
    c.spec.entrypoint = vec!["sh".into()];
    c.spec.workdir = Some("/srv".into());
    c.spec.hostname = Some("db-1".into());
    c.spec.mounts = vec![
        volume("st_data", "/var/lib/db", "st"),
        SpecMount {
            kind: MountKind::Bind,
            source: "/etc/hosts".into(),
            target: "/etc/h".into(),
            read_only: true,
            ..Default::default()
        },
        SpecMount {
            kind: MountKind::Tmpfs,
            target: "/cache".into(),
            tmpfs_size_bytes: 65_536,
            ..Default::default()
        },
    ];
    let body = DockerRuntime::create_body(&c);
    assert_eq!(body.entrypoint, Some(vec!["sh".to_string()]));
    assert_eq!(body.cmd, Some(vec!["-c".to_string(), "true".to_string()]));
    assert_eq!(body.working_dir.as_deref(), Some("/srv"));
    assert_eq!(body.hostname.as_deref(), Some("db-1"));
    let mounts = body.host_config.unwrap().mounts.unwrap();
    assert_eq!(mounts.len(), 3);
    assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
    assert_eq!(mounts[0].source.as_deref(), Some("st_data"));
    let labels = mounts[0].volume_options.as_ref().unwrap().labels.clone();
    assert_eq!(labels.unwrap()["com.docker.stack.namespace"], "st");
    assert_eq!(
        (mounts[1].typ, mounts[1].read_only),
        (Some(MountType::BIND), Some(true))
    );
    assert_eq!(mounts[2].typ, Some(MountType::TMPFS));
    assert_eq!(mounts[2].source, None);
    assert_eq!(
        mounts[2].tmpfs_options.as_ref().unwrap().size_bytes,
        Some(65_536)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacks_volume_is_made_labelled_and_removed_once_no_container_uses_it() {
    let Some(rt) = engine().await else { return };
    let n = node(30);
    // Unique per run, so that parallel runs on one engine never meet.
    let stack = format!("swvt{}", std::process::id());
    let name = format!("{stack}_data");

    eprintln!("phase: a task writes into its stack's volume, made by the engine with the label");
    let mut c = ctx(
        n,
        1,
        TEST_IMAGE,
        &["sh", "-c", "echo kept > /data/f; hostname; pwd; sleep 1000"],
    );
    c.spec.mounts = vec![volume(&name, "/data", &stack)];
    c.spec.hostname = Some("vol-test".into());
    c.spec.workdir = Some("/data".into());
    run(&rt, &c).await;
    let info = rt.docker.inspect_volume(&name).await.unwrap();
    assert_eq!(info.labels["com.docker.stack.namespace"], stack);
    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = rt.logs(c.task_id, 10).await.unwrap();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["vol-test", "/data"]);

    eprintln!("phase: while its container exists the volume is in use, and stays");
    let done = rt
        .remove_volumes("com.docker.stack.namespace", &stack)
        .await
        .unwrap();
    assert_eq!(
        (done.removed.len(), done.in_use.clone()),
        (0, vec![name.clone()])
    );

    eprintln!("phase: once the task is removed, the volume goes; another stack's is not asked");
    rt.remove(c.task_id).await.unwrap();
    let other = rt
        .remove_volumes("com.docker.stack.namespace", &format!("{stack}x"))
        .await
        .unwrap();
    assert!(other.removed.is_empty());
    let done = rt
        .remove_volumes("com.docker.stack.namespace", &stack)
        .await
        .unwrap();
    assert_eq!(done.removed, std::slice::from_ref(&name));
    assert!(rt.docker.inspect_volume(&name).await.is_err());
}
