//! One manager with autolock: restarted locked, a wrong key refused, the right one unlocks;
//! a rotated key replaces the old one; autolock off needs no key after a restart.

use crate::common::{Node, phase, wait_until};
use crate::helpers::*;

#[test]
fn a_restarted_manager_is_locked_until_the_right_key_and_rotation_and_off_work() {
    let root = tempfile::tempdir().unwrap();
    phase("a new cluster with --autolock prints the key once and seals the store key at once");
    let mut m = Node::bootstrap_with(root.path(), "m1", 28101, &["--autolock"]);
    let key = unlock_key(&m);
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    let ok = wait_until(LIMIT, || m.logs().contains(&key));
    assert!(ok, "start did not print the key: {}", m.logs());
    assert!(m.logs().contains("run the `swarm-node swarm unlock`"));
    assert!(sealed(&m.dir), "raft.key is not sealed");
    key_not_on_disk(&m, &key);
    let full = m.ok(&["swarm", "unlock-key"]);
    assert!(
        full.contains("provide the following key:") && full.contains(&key),
        "{full}"
    );

    phase("unlock on a node that is not locked is refused and changes nothing");
    let out = unlock(&m, &key);
    assert!(
        !out.status.success() && text(&out).contains("not locked"),
        "{}",
        text(&out)
    );

    phase("restarted, it is locked: node ls (and every other request) says so and how to unlock");
    m.kill();
    restart_locked(&mut m);
    let out = m.cli(&["node", "ls"]);
    assert!(
        text(&out).contains("swarm-node swarm unlock"),
        "{}",
        text(&out)
    );
    let out = m.cli(&["swarm", "join-token", "worker"]);
    assert!(
        !out.status.success() && text(&out).contains(LOCKED),
        "{}",
        text(&out)
    );

    phase("a wrong key and a malformed one are refused; the node stays locked");
    let wrong = format!("SWMKEY-1-{}", "ab".repeat(32));
    let out = unlock(&m, &wrong);
    assert!(
        !out.status.success() && text(&out).contains("invalid key"),
        "{}",
        text(&out)
    );
    let out = unlock(&m, "SWMKEY-1-nonsense\n");
    assert!(
        !out.status.success() && text(&out).contains("invalid key"),
        "{}",
        text(&out)
    );
    let out = unlock(&m, "");
    assert!(
        !out.status.success() && text(&out).contains("invalid key"),
        "{}",
        text(&out)
    );
    assert!(text(&m.cli(&["node", "ls"])).contains(LOCKED));
    assert!(sealed(&m.dir));

    phase("a locked node stops cleanly on SIGTERM, and is locked again at its next start");
    let pid = m.pid().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = m.child.as_mut().unwrap().wait().unwrap();
    assert!(exited.success(), "{exited}: {}", m.logs());
    m.child = None;
    restart_locked(&mut m);

    phase("the right key unlocks: the node runs and its store answers");
    let out = unlock(&m, &format!("{key}\n"));
    assert!(out.status.success(), "{}", text(&out));
    m.wait_control();
    let ok = wait_until(LIMIT, || crate::common::all_ready(&m.node_ls(), 1));
    assert!(ok, "{:?}", m.node_ls());
    assert_eq!(unlock_key(&m), key, "the cluster keeps its key");

    phase("rotation: a new key; once re-sealed the old key no longer unlocks, the new one does");
    let before = std::fs::read(m.dir.join("raft.key")).unwrap();
    let out = m.ok(&["swarm", "unlock-key", "--rotate"]);
    assert!(
        out.contains("Successfully rotated manager unlock key."),
        "{out}"
    );
    let new = unlock_key(&m);
    assert_ne!(new, key);
    assert!(out.contains(&new), "{out}");
    let ok = wait_until(LIMIT, || {
        std::fs::read(m.dir.join("raft.key")).is_ok_and(|b| b != before)
    });
    assert!(ok, "the key file was not re-sealed: {}", m.logs());
    assert!(sealed(&m.dir));
    key_not_on_disk(&m, &new);
    m.kill();
    restart_locked(&mut m);
    let out = unlock(&m, &key);
    assert!(
        !out.status.success() && text(&out).contains("invalid key"),
        "{}",
        text(&out)
    );
    let out = unlock(&m, &new);
    assert!(out.status.success(), "{}", text(&out));
    m.wait_control();

    phase("autolock off: re-sealed plain, unlock-key refused, a restart needs no key");
    let out = m.ok(&["swarm", "update", "--autolock=false"]);
    assert!(out.contains("Swarm updated."), "{out}");
    let ok = wait_until(LIMIT, || plain(&m.dir));
    assert!(ok, "the key file was not re-sealed plain: {}", m.logs());
    let out = m.cli(&["swarm", "unlock-key"]);
    assert!(
        !out.status.success() && text(&out).contains("no unlock key is set"),
        "{}",
        text(&out)
    );
    m.kill();
    m.spawn();
    m.wait_control();
    let ok = wait_until(LIMIT, || crate::common::all_ready(&m.node_ls(), 1));
    assert!(ok, "{:?}", m.node_ls());

    phase("autolock on again with swarm update: a new key printed, sealed again");
    let out = m.ok(&["swarm", "update", "--autolock=true"]);
    let again = unlock_key(&m);
    assert!(out.contains(&again) && again != new, "{out}");
    let ok = wait_until(LIMIT, || sealed(&m.dir));
    assert!(ok, "the key file was not sealed: {}", m.logs());
    let out = m.ok(&["swarm", "update", "--autolock"]);
    assert!(
        !out.contains("SWMKEY"),
        "turning on what is on prints no new key: {out}"
    );
    assert_eq!(unlock_key(&m), again);
}
