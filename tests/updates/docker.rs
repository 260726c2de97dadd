//! The tutorial's update and the automatic rollback on the Docker runtime, with the busybox
//! image imported as `swarm-test/busybox:1` and re-tagged `:2`.

use super::*;
use swarm_actors::runtime::testimage::{TEST_IMAGE, TEST_IMAGE_2};

/// busybox's `sleep` runs as the container's PID 1, which ignores SIGTERM: each stop would
/// wait the default 10 s grace period.
const GRACE: [&str; 2] = ["--stop-grace-period", "1s"];

/// An image no registry has: its pull fails, so the task is rejected.
const MISSING_IMAGE: &str = "swarm-test/no-such-image:1";

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

/// `service rm`, then a wait until no node has a container left, so that none outlives
/// the test.
fn remove(nodes: &[Node], svc: &str) {
    let ids: Vec<String> = nodes.iter().map(Node::id).collect();
    nodes[0].ok(&["service", "rm", svc]);
    assert!(
        wait_until(CONVERGE, || ids.iter().all(|id| containers_of(id) == 0)),
        "service rm left containers"
    );
}

#[test]
fn the_tutorials_update_from_1_to_2_on_docker() {
    // Alone in the namespace: each node's task network takes its slice of 10.255.0.0/16,
    // and every other cluster's first node would ask for the same first slice.
    let _alone = common::host_netns_alone();
    if !common::docker_engine() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26801);
    phase("6 busybox:1 containers");
    create(
        &nodes[0],
        "web",
        6,
        &[GRACE[0], GRACE[1], TEST_IMAGE, "sleep", "100000"],
        TEST_IMAGE,
    );
    tutorial_update(&nodes[0], TEST_IMAGE, TEST_IMAGE_2);
    remove(&nodes, "web");
}

#[test]
fn a_missing_image_rolls_back_to_1_on_docker() {
    // Alone in the namespace: each node's task network takes its slice of 10.255.0.0/16,
    // and every other cluster's first node would ask for the same first slice.
    let _alone = common::host_netns_alone();
    if !common::docker_engine() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 26901);
    create(
        &nodes[0],
        "web",
        4,
        &[GRACE[0], GRACE[1], TEST_IMAGE, "sleep", "100000"],
        TEST_IMAGE,
    );
    failing_update_rolls_back(&nodes[0], 4, TEST_IMAGE, MISSING_IMAGE);
    remove(&nodes, "web");
}
