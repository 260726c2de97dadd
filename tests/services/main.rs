//! Services end to end: real `swarm-node` processes on loopback running process-runtime tasks
//! (and, where the Docker Engine answers, containers from an imported busybox image).
//!
//! Ports 24101–24999.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Node, all_ready, phase, running_per_node, task_state as state, three_nodes, wait_until,
};
use serde_json::Value;

/// Bound on every wait for the cluster to converge; generous, the machines are noisy.
const CONVERGE: Duration = Duration::from_secs(60);

fn running(rows: &[Value]) -> usize {
    running_per_node(rows).values().sum()
}

/// Waits until `svc` has exactly `want` running tasks (and no other task still wanted
/// anywhere), then returns them per node.
fn converge(n: &Node, svc: &str, want: usize) -> BTreeMap<String, usize> {
    converge_off(n, svc, want, None)
}

/// As [`converge`], with none of the running tasks on node `not_on` (a hostname).
fn converge_off(n: &Node, svc: &str, want: usize, not_on: Option<&str>) -> BTreeMap<String, usize> {
    let mut last = Vec::new();
    let done = wait_until(CONVERGE, || {
        last = n.service_ps(svc);
        let wanted = last
            .iter()
            .filter(|r| r["DesiredState"] == "Running")
            .count();
        let off = not_on.is_none_or(|name| !running_per_node(&last).contains_key(name));
        running(&last) == want && wanted == want && off
    });
    assert!(
        done,
        "{svc} never converged to {want} running tasks; last ps: {last:#?}\n{}",
        n.logs()
    );
    running_per_node(&last)
}

/// Processes whose environment says they are a task of node `id` (the process runtime sets
/// SWARM_NODE_ID), read from /proc.
fn task_processes_of(id: &str) -> usize {
    let needle = format!("SWARM_NODE_ID={id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn replicated_service_spreads_scales_survives_a_kill_and_a_drain() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(root.path(), 24101);
    let n1 = &nodes[0];

    phase("create 6 replicas: 2 per node");
    n1.ok(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        "6",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "100000",
    ]);
    let spread = converge(n1, "web", 6);
    assert_eq!(
        spread.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "6 replicas on 3 nodes spread 2/2/2: {spread:?}"
    );
    let ls = n1.ok(&["service", "ls"]);
    assert!(ls.contains("web") && ls.contains("6/6"), "service ls: {ls}");

    phase("scale to 2, then back to 6");
    n1.ok(&["service", "scale", "--detach", "web=2"]);
    converge(n1, "web", 2);
    n1.ok(&["service", "scale", "--detach", "web=6"]);
    converge(n1, "web", 6);

    phase("SIGKILL a worker: its tasks come back on the other two");
    let n3_id = nodes[2].id();
    nodes[2].kill();
    let after = converge_off(&nodes[0], "web", 6, Some("n3"));
    assert_eq!(after.values().sum::<usize>(), 6);
    assert!(
        wait_until(CONVERGE, || task_processes_of(&n3_id) == 0),
        "the killed node's task processes outlived it"
    );
    let rows = nodes[0].service_ps("web");
    assert!(
        rows.iter()
            .any(|r| r["Node"] == "n3" && r["DesiredState"] == "Shutdown"),
        "the dead node's tasks stay in the history, marked for shutdown: {rows:#?}"
    );

    phase("drain n2: its tasks move to n1");
    let n2_id = nodes[1].id();
    nodes[0].ok(&["node", "update", "--availability", "drain", &n2_id]);
    let drained = converge_off(&nodes[0], "web", 6, Some("n2"));
    assert_eq!(drained.get("n1"), Some(&6), "{drained:?}");
    assert!(
        wait_until(CONVERGE, || task_processes_of(&n2_id) == 0),
        "the drained node still runs task processes"
    );

    phase("node ps and service rm");
    let node_ps = nodes[0].ok(&["node", "ps", "self"]);
    assert!(node_ps.contains("web."), "node ps: {node_ps}");
    nodes[0].ok(&["service", "rm", "web"]);
    let n1_id = nodes[0].id();
    assert!(
        wait_until(CONVERGE, || task_processes_of(&n1_id) == 0),
        "service rm left task processes running"
    );
    let ls = nodes[0].ok(&["service", "ls"]);
    assert!(!ls.contains("web"), "service ls after rm: {ls}");
}

#[test]
fn a_global_service_runs_on_every_node_including_one_that_joins_later() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 24201);
    let token = n1.token("worker");
    let _n2 = Node::join(root.path(), "n2", 24202, n1.addr, &token);
    assert!(wait_until(CONVERGE, || all_ready(&n1.node_ls(), 2)));

    phase("global service on two nodes");
    n1.ok(&[
        "service",
        "create",
        "--name",
        "agent",
        "--mode",
        "global",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "100000",
    ]);
    let two = converge(&n1, "agent", 2);
    assert_eq!(two.len(), 2, "one task per node: {two:?}");

    phase("a third node joins and gets its task");
    let _n3 = Node::join(root.path(), "n3", 24203, n1.addr, &token);
    let three = converge(&n1, "agent", 3);
    assert_eq!(
        three.values().copied().collect::<Vec<_>>(),
        [1, 1, 1],
        "{three:?}"
    );
}

#[test]
fn a_constraint_nobody_matches_waits_pending_until_a_label_appears() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 24301);
    let token = n1.token("worker");
    let n2 = Node::join(root.path(), "n2", 24302, n1.addr, &token);
    assert!(wait_until(CONVERGE, || all_ready(&n1.node_ls(), 2)));

    phase("refused at create: a malformed constraint");
    let bad = n1.cli(&[
        "service",
        "create",
        "--name",
        "bad",
        "--runtime",
        "process",
        "--detach",
        "--constraint",
        "node.labels.env=prod",
        "sleep",
        "100000",
    ]);
    assert!(
        !bad.status.success(),
        "a malformed constraint must be refused"
    );
    assert!(
        !n1.ok(&["service", "ls"]).contains("bad"),
        "a refused service must not exist"
    );

    phase("no node matches: pending with the reason");
    n1.ok(&[
        "service",
        "create",
        "--name",
        "prod",
        "--replicas",
        "2",
        "--runtime",
        "process",
        "--constraint",
        "node.labels.env==prod",
        "--detach",
        "sleep",
        "100000",
    ]);
    let mut rows = Vec::new();
    let pending = wait_until(CONVERGE, || {
        rows = n1.service_ps("prod");
        rows.len() == 2 && rows.iter().all(|r| state(r) == "Pending")
    });
    assert!(pending, "tasks should wait Pending: {rows:#?}");
    let text = n1.ok(&["service", "ps", "prod", "--no-trunc"]);
    assert!(
        text.contains("no suitable node"),
        "ps shows why the tasks wait: {text}"
    );

    phase("label n2: both tasks go there");
    let n2_id = n2.id();
    n1.ok(&["node", "update", "--label-add", "env=prod", &n2_id]);
    let placed = converge(&n1, "prod", 2);
    assert_eq!(placed.get("n2"), Some(&2), "{placed:?}");
}

#[test]
fn service_logs_gather_output_from_every_node() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 24401);
    let token = n1.token("worker");
    let _n2 = Node::join(root.path(), "n2", 24402, n1.addr, &token);
    assert!(wait_until(CONVERGE, || all_ready(&n1.node_ls(), 2)));
    n1.ok(&[
        "service",
        "create",
        "--name",
        "talk",
        "--replicas",
        "2",
        "--runtime",
        "process",
        "--detach",
        "sh",
        "-c",
        "echo ${GREETING:-hello} from $SWARM_TASK_SLOT; sleep 100000",
    ]);
    converge(&n1, "talk", 2);
    let mut text = String::new();
    let both = wait_until(CONVERGE, || {
        text = n1.ok(&["service", "logs", "talk"]);
        text.contains("hello from 1") && text.contains("hello from 2")
    });
    assert!(both, "logs from both tasks on both nodes: {text}");

    phase("update the environment: every task is replaced, one at a time");
    n1.ok(&[
        "service",
        "update",
        "--env-add",
        "GREETING=bye",
        "--detach",
        "talk",
    ]);
    let replaced = wait_until(CONVERGE, || {
        text = n1.ok(&["service", "logs", "talk"]);
        text.contains("bye from 1") && text.contains("bye from 2")
    });
    assert!(replaced, "both slots run the new spec: {text}");
    converge(&n1, "talk", 2);
    let rows = n1.service_ps("talk");
    assert_eq!(
        rows.iter()
            .filter(|r| r["DesiredState"] == "Shutdown")
            .count(),
        2,
        "the old tasks stay in the history: {rows:#?}"
    );
}

#[test]
fn bad_specs_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 24501);
    let cases: &[&[&str]] = &[
        &[
            "service",
            "create",
            "--name",
            "x",
            "--replicas",
            "-1",
            "sleep",
        ],
        &["service", "create", "--name", "bad name", "sleep"],
        &[
            "service",
            "create",
            "--name",
            "x",
            "--restart-max-attempts",
            "1000000",
            "sleep",
        ],
        &[
            "service",
            "create",
            "--name",
            "x",
            "--reserve-memory",
            "lots",
            "sleep",
        ],
        &["service", "scale", "nosuch=3"],
    ];
    for args in cases {
        let out = n1.cli(args);
        assert!(!out.status.success(), "`{}` must fail", args.join(" "));
        assert!(
            !out.stderr.is_empty(),
            "`{}` must say why it failed",
            args.join(" ")
        );
    }
    n1.ok(&[
        "service",
        "create",
        "--name",
        "one",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "100000",
    ]);
    let dup = n1.cli(&[
        "service",
        "create",
        "--name",
        "one",
        "--runtime",
        "process",
        "--detach",
        "sleep",
        "1",
    ]);
    assert!(!dup.status.success(), "a second service named one");
    let ls = n1.ok(&["service", "ls"]);
    assert_eq!(ls.lines().count(), 2, "header and one service: {ls}");
}

mod docker {
    //! The same lifecycle on the Docker runtime, with an image made by `docker import`.

    use super::*;
    use swarm_actors::runtime::testimage::TEST_IMAGE;

    /// Containers labelled as tasks of node `id`.
    fn containers_of(id: &str) -> usize {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label={}={id}", swarm_actors::runtime::LABEL_NODE),
            ])
            .output()
            .expect("docker CLI runs");
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    #[test]
    fn containers_run_get_replaced_when_unhealthy_and_are_cleaned_after_a_restart() {
        let _alone = common::host_netns_alone();
        if !common::docker_engine() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let mut n1 = Node::bootstrap(root.path(), "n1", 24601);
        let id = n1.id();

        phase("two busybox containers");
        n1.ok(&[
            "service",
            "create",
            "--name",
            "box",
            "--replicas",
            "2",
            "--detach",
            TEST_IMAGE,
            "sleep",
            "100000",
        ]);
        converge(&n1, "box", 2);
        assert_eq!(containers_of(&id), 2);

        phase("a failing health check gets tasks replaced");
        n1.ok(&[
            "service",
            "create",
            "--name",
            "sick",
            "--replicas",
            "1",
            "--detach",
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--restart-delay",
            "1s",
            TEST_IMAGE,
            "sleep",
            "100000",
        ]);
        let mut rows = Vec::new();
        let replaced = wait_until(CONVERGE, || {
            rows = n1.service_ps("sick");
            rows.iter().any(|r| state(r) == "Failed") && rows.len() >= 2
        });
        assert!(
            replaced,
            "an unhealthy task must fail and be replaced: {rows:#?}"
        );
        n1.ok(&["service", "rm", "sick"]);

        phase("SIGKILL the node, restart it: it cleans its containers and runs box again");
        n1.kill();
        assert!(containers_of(&id) >= 2, "containers outlive a killed node");
        n1.spawn();
        n1.wait_control();
        converge(&n1, "box", 2);
        assert!(
            wait_until(CONVERGE, || containers_of(&id) == 2),
            "the old containers must be removed, not left beside the new ones"
        );
        n1.ok(&["service", "rm", "box"]);
        assert!(
            wait_until(CONVERGE, || containers_of(&id) == 0),
            "service rm removes the containers"
        );
    }

    #[test]
    fn a_missing_image_is_a_task_error() {
        let _alone = common::host_netns_alone();
        if !common::docker_engine() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let n1 = Node::bootstrap(root.path(), "n1", 24701);
        n1.ok(&[
            "service",
            "create",
            "--name",
            "ghost",
            "--detach",
            "--restart-condition",
            "none",
            "swarm-test/no-such-image:1",
        ]);
        let mut rows = Vec::new();
        let failed = wait_until(CONVERGE, || {
            rows = n1.service_ps("ghost");
            rows.iter()
                .any(|r| r["Error"].as_str().unwrap_or("").contains("No such image"))
        });
        assert!(failed, "the task must say the image is missing: {rows:#?}");
    }
}
