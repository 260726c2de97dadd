//! The three-node lab cluster the mesh and overlay tests share: three real `swarm-node`
//! processes in their own network namespaces (`lab.rs`) and a client namespace, formed once
//! per test, with helpers to make services and wait for their tasks and replies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{self, Node, task_state, wait_until};
use crate::lab::{self, CLIENT, Containers, Lab, LabNet, MANAGERS, WORKERS, http_get};

/// How long tasks may take to run, and the mesh to follow a change (generous: shared,
/// noisy machines; the goal is a second).
pub const LIMIT: Duration = Duration::from_secs(60);
/// Requests in which every replica must answer.
pub const REQUESTS: usize = 50;

/// One test at a time: they share the lab's namespaces.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// The lab's lock, for a test that runs no lab but must not run beside one (the overlay
/// tests' Docker test).
#[allow(dead_code)]
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The three nodes in their namespaces and the client; all removed on drop.
pub struct Mesh {
    pub nodes: Vec<Node>,
    /// The Docker test's containers, removed once the nodes are gone (fields drop in order).
    pub containers: Option<Containers>,
    // Dropped after the nodes (fields drop in order), so no node outlives its namespace.
    pub lab: Lab,
    pub root: TempDir,
    _lock: MutexGuard<'static, ()>,
}

/// Why the lab cannot run here, if it cannot; a failure under `CI=true`.
pub fn skip(test: &str, docker: bool) -> bool {
    let mut why = lab::unavailable();
    for tool in ["curl", "python3"] {
        if why.is_none()
            && std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_err()
        {
            why = Some(format!("`{tool}` is missing"));
        }
    }
    if let Some(why) = why {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} cannot run under CI=true: {why}"
        );
        eprintln!("{test} skipped: {why}");
        return true;
    }
    // `docker_engine` prints its own reason and fails under CI.
    docker && !common::docker_engine()
}

impl Mesh {
    /// Makes the lab and forms the cluster: n1 bootstraps, n2 and n3 join as workers; returns
    /// once n1 sees all three Ready.
    pub fn form(net: LabNet) -> Mesh {
        let lock = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let lab = Lab::new(net, &MANAGERS, &WORKERS);
        let root = tempfile::Builder::new()
            .prefix("swarm-mesh")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(root.path().join("www")).unwrap();
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
        let mesh = Mesh {
            nodes,
            containers: None,
            lab,
            root,
            _lock: lock,
        };
        let ready = wait_until(Duration::from_secs(90), || {
            common::all_ready(&mesh.n1().node_ls(), 3)
        });
        assert!(ready, "the three nodes never all showed Ready");
        mesh
    }

    pub fn n1(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    /// Where process tasks keep their pages (`www/<task id>/`).
    pub fn www(&self) -> std::path::PathBuf {
        self.root.path().join("www")
    }

    /// `service create -d --name NAME FLAGS… EXTRA… COMMAND…` on n1: `flags` split at
    /// whitespace, `extra` for values that hold spaces.
    pub fn create(&self, name: &str, flags: &str, extra: &[&str], command: &[&str]) {
        let mut a = vec!["service", "create", "-d", "--name", name];
        a.extend(flags.split_whitespace());
        a.extend_from_slice(extra);
        a.extend_from_slice(command);
        self.n1().ok(&a);
    }

    /// The IDs of the service's tasks that are running (and meant to), with their rows.
    pub fn running(&self, svc: &str) -> BTreeMap<String, Value> {
        self.n1()
            .service_ps(svc)
            .into_iter()
            .filter(|r| r["DesiredState"] == "Running" && task_state(r) == "Running")
            .map(|r| (r["ID"].as_str().unwrap_or("").to_string(), r))
            .collect()
    }

    /// Waits until `n` tasks of `svc` run; their IDs.
    pub fn wait_running(&self, svc: &str, n: usize) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let ok = wait_until(LIMIT, || {
            ids = self.running(svc).into_keys().collect();
            ids.len() == n
        });
        assert!(
            ok,
            "{svc}: {} of {n} tasks running: {:?}",
            ids.len(),
            self.n1().service_ps(svc)
        );
        ids
    }

    /// Waits until [`REQUESTS`] requests in a row to `node:port` all succeed and the replies
    /// come from exactly `want` (task IDs, or other replica names); the replies counted.
    pub fn wait_answers(
        &self,
        node: &str,
        port: u16,
        want: &BTreeSet<String>,
    ) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        let mut failed = 0;
        let ok = wait_until(LIMIT, || {
            seen.clear();
            failed = 0;
            for _ in 0..REQUESTS {
                match http_get(&self.lab, node, port) {
                    Some(body) => *seen.entry(body).or_insert(0) += 1,
                    None => failed += 1,
                }
            }
            failed == 0 && seen.keys().cloned().collect::<BTreeSet<_>>() == *want
        });
        assert!(
            ok,
            "{node}:{port}: {failed} of {REQUESTS} requests failed; replies {seen:?}, want {want:?}"
        );
        seen
    }
}

/// A process task serving its task ID with `busybox httpd` on port 80 (or `$PORT` where the
/// node has no namespaces to give it), and a `health` page a test can take away.
pub fn httpd_script(www: &Path) -> String {
    format!(
        "d={}/$SWARM_TASK_ID; mkdir -p $d; echo $SWARM_TASK_ID > $d/index.html; \
         echo ok > $d/health; exec busybox httpd -f -p ${{PORT:-80}} -h $d",
        www.display()
    )
}

/// The processes of task `task` (found by the `SWARM_TASK_ID` every task's environment
/// holds), lowest PID first. The nodes make their tasks' namespaces from inside their own
/// mount namespaces, so the test reaches a task through its processes, not by name.
// The overlay tests and benchmark use it; the mesh tests do not.
#[allow(dead_code)]
pub fn task_pids(task: &str) -> Vec<u32> {
    let want = format!("SWARM_TASK_ID={task}");
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
        })
        .collect();
    pids.sort();
    pids
}
