//! The stack test's and benchmark's part of the lab (`tests/common/lab.rs`): the test's
//! namespaces `swst-*` on 10.79.0.0/24 with node port 29301, the benchmark's `swsb-*` on
//! 10.79.2.0/24 with 29311 (each lab's bridge is in a namespace of its own, so its addresses
//! meet no other harness's); three nodes (`n1` the manager at .1, `n2` and `n3` at .11 and
//! .12) and a client namespace `cl` (.13) that runs no node and asks the published ports.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::lab::{Lab, LabNet};
use crate::common::{self, Node, task_state, wait_until};

pub const NET: LabNet = LabNet {
    prefix: "swst-",
    octets: [10, 79, 0],
    port: 29301,
};
/// The benchmark's lab.
#[allow(dead_code)] // the test uses NET
pub const BENCH_NET: LabNet = LabNet {
    prefix: "swsb-",
    octets: [10, 79, 2],
    port: 29311,
};
pub const MANAGERS: [&str; 1] = ["n1"];
/// `cl` is the client's namespace; no node runs there.
pub const WORKERS: [&str; 3] = ["n2", "n3", "cl"];
pub const CLIENT: &str = "cl";

/// How long a stack may take to converge (shared, noisy machines).
pub const LIMIT: Duration = Duration::from_secs(90);

/// One test at a time: they share the lab's namespaces.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// The three nodes in their namespaces and the client; all removed on drop.
pub struct Cluster {
    pub nodes: Vec<Node>,
    // Dropped after the nodes (fields drop in order), so no node outlives its namespace.
    pub lab: Lab,
    pub root: TempDir,
    _vaults: common::VaultDirs,
    _lock: MutexGuard<'static, ()>,
}

/// Why the lab cannot run here, if it cannot; a failure under `CI=true`.
pub fn skip(test: &str) -> bool {
    let mut why = crate::common::lab::unavailable();
    if why.is_none() && Command::new("curl").arg("--version").output().is_err() {
        why = Some("`curl` is missing".into());
    }
    if let Some(why) = why {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} cannot run under CI=true: {why}"
        );
        eprintln!("{test} skipped: {why}");
        return true;
    }
    false
}

impl Cluster {
    /// Makes the lab and forms the cluster: n1 bootstraps, n2 and n3 join as workers; returns
    /// once n1 sees all three Ready.
    pub fn form(net: LabNet) -> Cluster {
        let lock = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let lab = Lab::new(net, &MANAGERS, &WORKERS);
        let root = tempfile::Builder::new()
            .prefix("swarm-stack")
            .tempdir()
            .unwrap();
        let slot = lab.slot("n1").clone();
        let mut n1 = Node::in_netns(root.path(), "n1", slot.addr, &slot.ns, None);
        n1.spawn();
        n1.wait_control();
        let token = n1.token("worker");
        let mut nodes = vec![n1];
        for name in WORKERS.iter().filter(|n| **n != CLIENT) {
            let slot = lab.slot(name).clone();
            let seed = Some((nodes[0].addr, token.clone()));
            let mut n = Node::in_netns(root.path(), name, slot.addr, &slot.ns, seed);
            n.spawn();
            n.wait_control();
            nodes.push(n);
        }
        let vaults = common::VaultDirs(nodes.iter().map(|n| n.id()).collect());
        let cluster = Cluster {
            nodes,
            lab,
            root,
            _vaults: vaults,
            _lock: lock,
        };
        let ready = wait_until(Duration::from_secs(90), || {
            common::all_ready(&cluster.n1().node_ls(), 3)
        });
        assert!(ready, "the three nodes never all showed Ready");
        cluster
    }

    pub fn n1(&self) -> &Node {
        &self.nodes[0]
    }

    /// A folder of the test's own, for compose files and what tasks leave for it.
    pub fn dir(&self, name: &str) -> std::path::PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The service's tasks meant to run and running, by ID, with their rows.
    pub fn running(&self, svc: &str) -> BTreeMap<String, Value> {
        self.n1()
            .service_ps(svc)
            .into_iter()
            .filter(|r| r["DesiredState"] == "Running" && task_state(r) == "Running")
            .map(|r| (r["ID"].as_str().unwrap_or("").to_string(), r))
            .collect()
    }

    /// Waits until exactly `n` tasks of `svc` run (and no other is meant to); their rows.
    pub fn wait_running(&self, svc: &str, n: usize) -> BTreeMap<String, Value> {
        let mut rows = BTreeMap::new();
        let ok = wait_until(LIMIT, || {
            rows = self.running(svc);
            let meant = self
                .n1()
                .service_ps(svc)
                .iter()
                .filter(|r| r["DesiredState"] == "Running")
                .count();
            rows.len() == n && meant == n
        });
        assert!(
            ok,
            "{svc}: {} of {n} tasks running: {:?}",
            rows.len(),
            self.n1().service_ps(svc)
        );
        rows
    }

    /// One HTTP GET from the client to `node:port`: the body, or `None` (3 s limit).
    pub fn http_get(&self, node: &str, port: u16, path: &str) -> Option<String> {
        let url = format!("http://{}:{port}{path}", self.lab.slot(node).addr.ip());
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lab.slot(CLIENT).ns])
            .args(["curl", "-sf", "-m", "3", &url])
            .output()
            .expect("ip netns exec runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The named volume directories of the process runtime on every node: `(node, name)`.
    pub fn volumes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let Ok(entries) = std::fs::read_dir(n.dir.join("volumes")) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    out.push((n.name.clone(), name));
                }
            }
        }
        out.sort();
        out
    }
}

/// Reads a number a task wrote to `path` (a time in ns), once it is there.
pub fn read_ns(path: &Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
