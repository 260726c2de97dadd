//! End-to-end test of stacks: the tutorial's `wordpress.yml`, adapted to process tasks, on
//! three real `swarm-node` processes, each in its own network namespace (`lab.rs`).
//!
//! - `db` reads its two password files from `/run/secrets`, keeps its data in the named volume
//!   `db_data` (mounted at `/var/lib/mysql` in the task's mount namespace), takes a few seconds
//!   to get ready (it writes `ready` into its volume), then serves; its health check looks for
//!   `ready` in the volume, as the task sees it.
//! - `wordpress` depends on `db` with `condition: service_healthy` and needs it: at start it
//!   asks `db` by name over the stack's network and fails without an answer; then it serves
//!   on a published port.
//!
//! Both write the times they reached each step into the test's folder (all nodes share the
//! machine's clock), so the test compares them: wordpress started only after db was ready.
//! Needs root, `ip netns`, iptables and curl: without them it skips with the reason, or fails
//! under `CI=true`. Node port 29301, published ports 29380 and 29381.

// Tests run real processes in real time: clocks and sleeps are theirs to use.
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

mod docker;
mod lab;

use std::path::Path;

use common::cluster_lab::LIMIT;
use common::wordpress::{
    DB_DELAY_S, DB_PASSWORD, DEPLOY_LINES, assert_wpstack_listed, deploy, pages_read_from_db,
    remove_and_check_nothing_left, write_files,
};
use common::{phase, wait_until};
use lab::{Cluster, read_ns, skip};

/// The first file whose name starts with `prefix` in `dir`, with its number.
fn first_time(dir: &Path, prefix: &str) -> Option<u128> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| read_ns(&e.path()))
        .min()
}

#[test]
fn the_tutorials_wordpress_stack_deploys_in_order_redeploys_and_goes_away() {
    if skip("the_tutorials_wordpress_stack…") {
        return;
    }
    let c = Cluster::form(lab::NET);
    let files = c.dir("files");
    let out = c.dir("out");

    phase("deploy: networks, secrets and services are created, db first");
    let file = write_files(&files, 29380, &out);
    let text = deploy(&c, &file);
    for line in DEPLOY_LINES {
        assert!(text.contains(line), "{line:?} not in: {text}");
    }
    let db_at = text.find("Creating service wpstack_db").unwrap();
    let wp_at = text.find("Creating service wpstack_wordpress").unwrap();
    assert!(db_at < wp_at, "dependencies first: {text}");

    phase("both services converge; wordpress serves on the published port from every node");
    let db = c.wait_running("wpstack_db", 1);
    let wp = c.wait_running("wpstack_wordpress", 1);
    for node in ["n1", "n2", "n3"] {
        let ok = wait_until(LIMIT, || {
            c.http_get(node, 29380, "/").as_deref() == Some("wordpress")
        });
        assert!(ok, "wordpress did not answer on {node}:29380");
    }

    phase("wordpress started only after db was ready (and db took its delay to get there)");
    let db_start = read_ns(&out.join("db-start")).expect("db wrote its start");
    let db_ready = read_ns(&out.join("db-ready")).expect("db wrote when it was ready");
    let wp_start = first_time(&out, "wp-start-").expect("wordpress wrote its start");
    assert!(
        db_ready >= db_start + u128::from(DB_DELAY_S - 1) * 1_000_000_000,
        "db's delay: start {db_start}, ready {db_ready}"
    );
    assert!(
        wp_start > db_ready,
        "wordpress started at {wp_start}, before db was ready at {db_ready}"
    );
    // The gate opens when the leader sees db healthy; the answer that starts wordpress
    // brings the routing table that routes db, and the node's DNS server listens before the
    // task runs: its first try reaches db.
    let wp_tasks = c.n1().service_ps("wpstack_wordpress");
    assert_eq!(
        wp_tasks.len(),
        1,
        "wordpress failed to reach db at least once: {wp_tasks:?}"
    );
    let from_db = first_time(&out, "wp-db-");
    assert!(
        from_db.is_none(),
        "the page wordpress read is text, not a time"
    );
    let read = pages_read_from_db(&out);
    assert_eq!(
        read,
        [format!("{DB_PASSWORD}\n")],
        "wordpress reached db by name; db read its secret"
    );

    phase("db's volume is a directory of the node that runs db, with db's data in it");
    let db_node = db.values().next().unwrap()["Node"]
        .as_str()
        .unwrap()
        .to_string();
    let vols = c.volumes();
    assert_eq!(
        vols,
        [(db_node.clone(), "wpstack_db_data".to_string())],
        "{vols:?}"
    );
    let node_dir = &c.nodes.iter().find(|n| n.name == db_node).unwrap().dir;
    assert_eq!(
        std::fs::read_to_string(node_dir.join("volumes/wpstack_db_data/ready")).unwrap(),
        "yes\n"
    );

    phase("stack ls, stack services and stack ps show the stack and only it");
    let ls = c.n1().ok(&["stack", "ls"]);
    assert!(ls.contains("NAME") && ls.contains("SERVICES"), "{ls}");
    assert_wpstack_listed(&ls);
    let services = c.n1().ok(&["stack", "services", "wpstack"]);
    assert!(
        services.contains("wpstack_db") && services.contains("wpstack_wordpress"),
        "{services}"
    );
    assert!(services.contains("*:29380->80/tcp"), "{services}");
    let ps = c.n1().ok(&["stack", "ps", "wpstack"]);
    assert!(
        ps.contains("wpstack_db.1") && ps.contains("wpstack_wordpress.1"),
        "{ps}"
    );
    assert!(ps.contains("Running"), "{ps}");

    phase("edit the published port and deploy again: only wordpress is updated");
    let index = |svc: &str| c.n1().service_inspect(svc).unwrap()["Version"]["Index"].as_u64();
    let (wp_index, db_index) = (index("wpstack_wordpress"), index("wpstack_db"));
    let file = write_files(&files, 29381, &out);
    deploy(&c, &file);
    let wp_spec = c.n1().service_inspect("wpstack_wordpress").unwrap();
    assert!(
        index("wpstack_wordpress") > wp_index,
        "wordpress's spec was not written again: {wp_spec}"
    );
    assert_eq!(
        wp_spec["Spec"]["EndpointSpec"]["Ports"][0]["PublishedPort"].as_u64(),
        Some(29381),
        "{wp_spec}"
    );
    assert_eq!(index("wpstack_db"), db_index, "db's spec was written again");
    // Only the endpoint changed: the routing mesh moves the port, the task stays (Swarm would
    // replace it to re-attach it to the ingress network; here every task has its address).
    assert_eq!(
        c.running("wpstack_wordpress").keys().collect::<Vec<_>>(),
        wp.keys().collect::<Vec<_>>(),
        "wordpress's task was replaced for a change of its published port"
    );
    let ok = wait_until(LIMIT, || {
        c.http_get("n2", 29381, "/").as_deref() == Some("wordpress")
    });
    assert!(ok, "wordpress did not answer on the new port 29381");
    assert!(
        c.http_get("n2", 29380, "/").is_none(),
        "the old port is closed"
    );
    let db_now = c.running("wpstack_db");
    assert_eq!(
        db_now.keys().collect::<Vec<_>>(),
        db.keys().collect::<Vec<_>>(),
        "db was left alone"
    );
    assert_eq!(
        c.n1().service_ps("wpstack_db").len(),
        1,
        "db has no other task"
    );

    phase("a redeploy whose secret data changed is refused before it makes anything");
    std::fs::write(files.join("db_password.txt"), "changed\n").unwrap();
    let extra = files.join("extra.yml");
    std::fs::write(
        &extra,
        "services:\n  extra:\n    image: busybox\n    x-swarm-runtime: process\n    \
         command: [\"sleep\", \"1000\"]\n    networks: [extra_net]\nnetworks:\n  extra_net:\n",
    )
    .unwrap();
    let (f, x) = (file.display().to_string(), extra.display().to_string());
    let refused = c
        .n1()
        .cli_within(LIMIT, &["stack", "deploy", "-c", &f, "-c", &x, "wpstack"])
        .expect("stack deploy answers");
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "deployed: {text}");
    assert!(
        text.contains("wpstack_db_password") && text.contains("only updates to Labels are allowed"),
        "{text}"
    );
    let services = c.n1().ok(&["service", "ls"]);
    assert!(!services.contains("wpstack_extra"), "{services}");
    let networks = c.n1().ok(&["network", "ls"]);
    assert!(!networks.contains("wpstack_extra_net"), "{networks}");
    write_files(&files, 29381, &out);

    phase("stack rm leaves nothing: services, secrets, network, volumes");
    remove_and_check_nothing_left(&c);
    let ls = c.n1().ok(&["stack", "ls"]);
    assert!(!ls.contains("wpstack"), "{ls}");
}
