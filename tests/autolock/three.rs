//! Three managers: autolock turned on by `swarm update` seals every manager's key; a
//! restarted one is locked while the other two keep the cluster running; unlocked, it rejoins.

use crate::common::{Node, all_ready, phase, status_of, wait_until};
use crate::helpers::*;

#[test]
fn a_locked_manager_of_three_rejoins_once_unlocked() {
    let root = tempfile::tempdir().unwrap();
    phase("three managers; autolock turned on from one of them");
    let m1 = Node::bootstrap(root.path(), "m1", 28201);
    let token = m1.token("manager");
    let mut m2 = Node::join(root.path(), "m2", 28202, m1.addr, &token);
    let m3 = Node::join(root.path(), "m3", 28203, m1.addr, &token);
    let ok = wait_until(LIMIT, || all_ready(&m1.node_ls(), 3));
    assert!(ok, "{:?}", m1.node_ls());
    for m in [&m1, &m2, &m3] {
        assert!(plain(&m.dir), "{} starts plain", m.name);
    }
    let out = m1.ok(&["swarm", "update", "--autolock=true"]);
    assert!(
        out.contains("Swarm updated.") && out.contains("SWMKEY-1-"),
        "{out}"
    );
    let key = unlock_key(&m1);
    assert!(out.contains(&key));

    phase("every manager re-seals its own store key under the cluster's key");
    for m in [&m1, &m2, &m3] {
        let ok = wait_until(LIMIT, || sealed(&m.dir));
        assert!(ok, "{} did not seal its key: {}", m.name, m.logs());
        assert_eq!(unlock_key(m), key, "{} sees another key", m.name);
        key_not_on_disk(m, &key);
    }

    phase("m2 restarted: locked, while m1 and m3 keep a quorum and see it down");
    let m2_id = m2.id();
    m2.kill();
    restart_locked(&mut m2);
    let ok = wait_until(LIMIT, || {
        status_of(&m1.node_ls(), &m2_id).as_deref() == Some("Down")
    });
    assert!(ok, "m1 does not see m2 down: {:?}", m1.node_ls());
    m1.ok(&["swarm", "join-token", "--rotate", "worker"]);
    assert!(text(&m2.cli(&["node", "ls"])).contains(LOCKED));

    phase("a wrong key is refused; the right one unlocks and m2 is a manager again");
    let wrong = format!("SWMKEY-1-{}", "0f".repeat(32));
    let out = unlock(&m2, &wrong);
    assert!(
        !out.status.success() && text(&out).contains("invalid key"),
        "{}",
        text(&out)
    );
    let out = unlock(&m2, &key);
    assert!(out.status.success(), "{}", text(&out));
    m2.wait_control();
    let ok = wait_until(LIMIT, || {
        all_ready(&m2.node_ls(), 3) && all_ready(&m1.node_ls(), 3)
    });
    assert!(ok, "{:?}", m2.node_ls());
    // The worker token rotated while m2 was locked reached it through raft.
    let ok = wait_until(LIMIT, || m2.token("worker") == m1.token("worker"));
    assert!(ok, "m2's store did not catch up");
}
