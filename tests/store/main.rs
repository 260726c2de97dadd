//! End-to-end tests of the cluster store: managers on loopback agree, survive the loss of the
//! leader and of everyone, refuse stale and minority writes, and recover with
//! `--force-new-cluster`. Each test uses its own port range.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::{Node, all_ready, phase, wait_until};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Three managers: one bootstraps, two join with the manager token.
fn three_managers(root: &std::path::Path, base: u16) -> Vec<Node> {
    let m1 = Node::bootstrap(root, "m1", base);
    let token = m1.token("manager");
    let m2 = Node::join(root, "m2", base + 1, m1.addr, &token);
    let m3 = Node::join(root, "m3", base + 2, m1.addr, &token);
    let nodes = vec![m1, m2, m3];
    for n in &nodes {
        let ok = wait_until(LIMIT, || {
            let rows = n.node_ls();
            all_ready(&rows, 3) && leader(&rows).is_some() && managers(&rows) == 3
        });
        assert!(ok, "{}: {:?}\n{}", n.name, n.node_ls(), n.logs());
    }
    nodes
}

fn leader(rows: &[Value]) -> Option<String> {
    rows.iter()
        .find(|r| r["ManagerStatus"] == "Leader")
        .and_then(|r| r["Hostname"].as_str().map(str::to_string))
}

fn managers(rows: &[Value]) -> usize {
    rows.iter().filter(|r| r["ManagerStatus"] != "").count()
}

fn labels(n: &Node, node: &str) -> Value {
    let out = n.cli(&["node", "inspect", node]);
    if !out.status.success() {
        return Value::Null;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["Spec"]["Labels"].clone()
}

fn update(n: &Node, args: &[&str]) -> std::process::Output {
    let mut a = vec!["node", "update"];
    a.extend_from_slice(args);
    n.cli(&a)
}

#[test]
fn the_leader_dies_a_new_one_takes_over_and_nothing_is_lost() {
    let root = tempfile::tempdir().unwrap();
    phase("three managers agree on one leader");
    let mut nodes = three_managers(root.path(), 23101);
    let out = update(&nodes[1], &["--label-add", "before=kill", "m3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("SIGKILL the leader: the other two elect a new one");
    let old = leader(&nodes[0].node_ls()).unwrap();
    let i = nodes.iter().position(|n| n.name == old).unwrap();
    nodes[i].kill();
    let survivor = &nodes[(i + 1) % 3];
    let ok = wait_until(LIMIT, || {
        leader(&survivor.node_ls()).is_some_and(|l| l != old)
    });
    assert!(ok, "no new leader: {:?}", survivor.node_ls());

    phase("the write made before the kill is still there, and writes work again");
    assert_eq!(labels(survivor, "m3")["before"], "kill");
    let ok = wait_until(LIMIT, || {
        update(survivor, &["--label-add", "after=kill", "m3"])
            .status
            .success()
    });
    assert!(
        ok,
        "writes do not work after the failover: {}",
        survivor.logs()
    );
    assert_eq!(labels(survivor, "m3")["after"], "kill");

    phase("the old leader comes back as a follower and catches up");
    nodes[i].spawn();
    nodes[i].wait_control();
    let ok = wait_until(LIMIT, || labels(&nodes[i], "m3")["after"] == "kill");
    assert!(
        ok,
        "{} did not catch up: {}",
        nodes[i].name,
        nodes[i].logs()
    );
}

#[test]
fn every_manager_killed_and_restarted_keeps_every_committed_object() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_managers(root.path(), 23201);
    phase("write, then SIGKILL all three managers");
    for (i, n) in ["m1", "m2", "m3"].iter().enumerate() {
        let out = update(&nodes[i], &["--label-add", &format!("k{i}=v{i}"), n]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for n in nodes.iter_mut() {
        n.kill();
    }
    phase("restart all three: a leader again, every label still there");
    for n in nodes.iter_mut() {
        n.spawn();
    }
    for n in nodes.iter_mut() {
        n.wait_control();
    }
    let ok = wait_until(LIMIT, || leader(&nodes[0].node_ls()).is_some());
    assert!(ok, "no leader after the restart: {:?}", nodes[0].node_ls());
    for (i, name) in ["m1", "m2", "m3"].iter().enumerate() {
        let ok = wait_until(LIMIT, || {
            labels(&nodes[2], name)[format!("k{i}")] == format!("v{i}")
        });
        assert!(
            ok,
            "label k{i} on {name} lost: {:?}",
            labels(&nodes[2], name)
        );
    }
}

#[test]
fn a_minority_refuses_writes_fast_and_never_applies_them() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_managers(root.path(), 23301);
    let lone = &nodes[0];
    phase("freeze two managers (SIGSTOP): the third has no quorum");
    let stop = |n: &Node, sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &n.pid().unwrap().to_string()])
            .status()
            .unwrap()
    };
    stop(&nodes[1], "-STOP");
    stop(&nodes[2], "-STOP");
    let refused = wait_until(LIMIT, || {
        let out = update(lone, &["--label-add", "minority=yes", "m1"]);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no quorum")
    });
    let out = update(lone, &["--label-add", "minority=yes", "m1"]);
    assert!(
        refused,
        "the minority write was not refused with 'no quorum': {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 3 managers reachable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("reads still answer, marked stale");
    let out = lone.cli(&["node", "ls"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stale"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("heal: the refused write never shows up");
    stop(&nodes[1], "-CONT");
    stop(&nodes[2], "-CONT");
    let ok = wait_until(LIMIT, || leader(&lone.node_ls()).is_some());
    assert!(ok, "{:?}", lone.node_ls());
    let ok = wait_until(LIMIT, || {
        update(lone, &["--label-add", "healed=yes", "m1"])
            .status
            .success()
    });
    assert!(ok);
    let l = labels(lone, "m1");
    assert_eq!(l["healed"], "yes");
    assert!(
        l.get("minority").is_none(),
        "a refused write was applied: {l:?}"
    );
}

#[test]
fn node_update_and_rm_go_through_the_store() {
    let root = tempfile::tempdir().unwrap();
    let m1 = Node::bootstrap(root.path(), "u1", 23401);
    let token = m1.token("worker");
    let mut w1 = Node::join(root.path(), "u2", 23402, m1.addr, &token);
    assert!(
        wait_until(LIMIT, || all_ready(&m1.node_ls(), 2)),
        "{:?}",
        m1.node_ls()
    );

    phase("availability and labels change, and show in ls and inspect");
    let out = update(
        &m1,
        &["--availability", "drain", "--label-add", "env=prod", "u2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = m1.node_ls();
    let row = rows.iter().find(|r| r["Hostname"] == "u2").unwrap();
    assert_eq!(row["Availability"], "Drain");
    assert_eq!(labels(&m1, "u2")["env"], "prod");
    let out = update(&m1, &["--label-rm", "env", "u2"]);
    assert!(out.status.success());
    assert!(labels(&m1, "u2").get("env").is_none());

    phase("updates of one node at the same time all land: a lost compare-and-set is read again");
    let outs: Vec<_> = std::thread::scope(|s| {
        let m1 = &m1;
        let writers: Vec<_> = (0..4)
            .map(|i| s.spawn(move || update(m1, &["--label-add", &format!("c{i}=v{i}"), "u2"])))
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for out in &outs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let l = labels(&m1, "u2");
    for i in 0..4 {
        assert_eq!(l[format!("c{i}")], format!("v{i}"), "{l}");
    }

    phase("bad updates are refused and change nothing");
    let out = update(&m1, &["--label-rm", "nope", "u2"]);
    assert!(!out.status.success());
    let out = update(&m1, &["--label-add", "bad key=x", "u2"]);
    assert!(!out.status.success());
    let out = update(&m1, &["--availability", "active", "no-such-node"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such node"));
    let out = w1.cli(&["node", "update", "--availability", "active", "u2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a manager"));

    phase("rm refuses a live node without --force, and the last manager");
    let out = m1.cli(&["node", "rm", "u2"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not down"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = m1.cli(&["node", "rm", "u1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("demote"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("a removed node is gone and refused when it comes back");
    let id = w1.id();
    w1.kill();
    let ok = wait_until(LIMIT, || {
        m1.node_ls()
            .iter()
            .any(|r| r["ID"] == id && r["Status"] == "Down")
    });
    assert!(ok);
    let out = m1.cli(&["node", "rm", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!m1.node_ls().iter().any(|r| r["ID"] == id));
    w1.spawn();
    w1.wait_control();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !m1.node_ls().iter().any(|r| r["ID"] == id),
        "the removed node is back: {:?}",
        m1.node_ls()
    );
    let theirs = w1.node_ls();
    assert!(
        !theirs
            .iter()
            .any(|r| r["Hostname"] == "u1" && r["Status"] == "Ready"),
        "{theirs:?}"
    );
}

#[test]
fn force_new_cluster_recovers_a_lone_manager_with_its_objects() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_managers(root.path(), 23501);
    let out = update(&nodes[0], &["--label-add", "keep=me", "m1"]);
    assert!(out.status.success());

    phase("two managers are lost for good; the third restarts with --force-new-cluster");
    nodes[1].kill();
    nodes[2].kill();
    nodes[0].kill();
    nodes[0].extra = vec!["--force-new-cluster".into()];
    nodes[0].spawn();
    nodes[0].wait_control();
    let ok = wait_until(LIMIT, || {
        leader(&nodes[0].node_ls()).as_deref() == Some("m1")
    });
    assert!(ok, "{:?}\n{}", nodes[0].node_ls(), nodes[0].logs());
    assert_eq!(labels(&nodes[0], "m1")["keep"], "me");
    let ok = wait_until(LIMIT, || {
        update(&nodes[0], &["--label-add", "after=recovery", "m1"])
            .status
            .success()
    });
    assert!(ok, "{}", nodes[0].logs());
}

#[test]
fn promote_and_demote_change_the_voters() {
    let root = tempfile::tempdir().unwrap();
    phase("one manager and two workers");
    let mut m1 = Node::bootstrap(root.path(), "p1", 23601);
    let token = m1.token("worker");
    let w2 = Node::join(root.path(), "p2", 23602, m1.addr, &token);
    let w3 = Node::join(root.path(), "p3", 23603, m1.addr, &token);
    assert!(
        wait_until(LIMIT, || all_ready(&m1.node_ls(), 3)),
        "{:?}",
        m1.node_ls()
    );
    assert_eq!(managers(&m1.node_ls()), 1);

    phase("the last manager cannot be demoted");
    let out = m1.cli(&["node", "demote", "p1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last manager"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("promote both workers: three managers, and the promoted ones answer as managers");
    for w in ["p2", "p3"] {
        let out = m1.cli(&["node", "promote", w]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ok = wait_until(LIMIT, || {
        managers(&m1.node_ls()) == 3 && managers(&w3.node_ls()) == 3
    });
    assert!(ok, "{:?}\n{:?}\n{}", m1.node_ls(), w3.node_ls(), w3.logs());
    let out = update(&w2, &["--label-add", "via=p2", "p3"]);
    assert!(
        out.status.success(),
        "a promoted node cannot write: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("demote one again: two voters, and it is a worker");
    let out = m1.cli(&["node", "demote", "p3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = wait_until(LIMIT, || managers(&m1.node_ls()) == 2);
    assert!(ok, "{:?}", m1.node_ls());
    let out = w3.cli(&["node", "update", "--label-add", "x=y", "p3"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a manager"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    phase("with p1 and p2 as voters, kill p1: p2 alone has no quorum, writes are refused");
    m1.kill();
    let mut last = String::new();
    let ok = wait_until(LIMIT, || {
        let out = update(&w2, &["--label-add", "lone=yes", "p2"]);
        last = String::from_utf8_lossy(&out.stderr).to_string();
        last.contains("no quorum")
    });
    assert!(ok, "last answer: {last}\n{}", w2.logs());
}

#[test]
fn the_leader_actor_lives_on_the_leader_and_moves_with_it() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_managers(root.path(), 23801);
    let actors = |n: &Node| String::from_utf8_lossy(&n.cli(&["actors"]).stdout).to_string();
    let holders = |nodes: &[Node]| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| n.child.is_some() && actors(n).lines().any(|l| l.starts_with("leader")))
            .map(|n| n.name.clone())
            .collect()
    };

    phase("exactly one node hosts the leader actor: the store's leader");
    let name = leader(&nodes[0].node_ls()).unwrap();
    let ok = wait_until(LIMIT, || holders(&nodes) == vec![name.clone()]);
    assert!(
        ok,
        "leader actor on {:?}, store leader {name}",
        holders(&nodes)
    );
    let i = nodes.iter().position(|n| n.name == name).unwrap();
    let view = || -> Value {
        let out = nodes[i].cli(&["send", "leader", "Describe"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let ok = wait_until(LIMIT, || {
        let v = view();
        v["nodes"].as_array().is_some_and(|a| a.len() == 3)
            && v["managers"].as_array().is_some_and(|a| a.len() == 3)
    });
    assert!(ok, "the leader's view follows the store: {}", view());

    phase("kill the leader: the leader actor starts on the new leader");
    nodes[i].kill();
    let survivor = (i + 1) % 3;
    let ok = wait_until(LIMIT, || {
        let l = leader(&nodes[survivor].node_ls());
        l.is_some_and(|l| l != name && holders(&nodes) == vec![l])
    });
    assert!(ok, "leader actor on {:?}", holders(&nodes));

    phase("the old leader comes back as a follower without a leader actor");
    nodes[i].spawn();
    nodes[i].wait_control();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(holders(&nodes).len(), 1, "{:?}", holders(&nodes));
}
