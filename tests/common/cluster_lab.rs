//! The three-node lab cluster that the mesh, overlay, stack and walkthrough tests (and the
//! overlay and stack benchmarks) share: three real `swarm-node` processes, each in its own
//! network namespace of the lab (`lab.rs`), and a client namespace that runs no node and asks
//! the published ports, so nothing leaves the lab.
//!
//! ```text
//!   <prefix>br:  br0 ── n1  .1    the manager (it bootstraps)
//!                    ── n2  .11   a worker
//!                    ── n3  .12   a worker
//!                    ── cl  .13   the client: no node, only requests
//! ```
//!
//! Each harness passes its own [`LabNet`] (prefix, /24, node port), so two harnesses never touch
//! each other's namespaces; one lab at a time per test binary ([`one_at_a_time`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::lab::{Lab, LabNet};
use super::{Node, VaultDirs, all_ready, task_state, wait_until};

pub const MANAGERS: [&str; 1] = ["n1"];
/// `cl` is the client's namespace; no node runs there.
pub const WORKERS: [&str; 3] = ["n2", "n3", "cl"];
pub const CLIENT: &str = "cl";

/// How long tasks may take to run and a change to show (generous: shared, noisy machines).
pub const LIMIT: Duration = Duration::from_secs(90);

/// Requests in which every replica must answer.
pub const REQUESTS: usize = 50;

/// One lab at a time: the tests of one binary share the lab's namespaces.
static LAB_LOCK: Mutex<()> = Mutex::new(());

/// The lab's lock, for a test that runs no lab but must not run beside one.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the lab cannot run here (root, `ip netns`, iptables, and each of `tools`): the
/// reason is printed and the caller skips; under `CI=true` it is a failure instead.
pub fn skip(test: &str, tools: &[&str]) -> bool {
    let mut why = super::lab::unavailable();
    for tool in tools {
        if why.is_none() && Command::new(tool).arg("--version").output().is_err() {
            why = Some(format!("`{tool}` is missing"));
        }
    }
    let Some(why) = why else { return false };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run under CI=true: {why}"
    );
    eprintln!("{test} skipped: {why}");
    true
}

/// The three nodes in their namespaces and the client's namespace; all removed on drop.
pub struct ClusterLab {
    pub nodes: Vec<Node>,
    // Dropped after the nodes (fields drop in order), so no node outlives its namespace.
    pub lab: Lab,
    pub root: TempDir,
    vaults: VaultDirs,
    _lock: MutexGuard<'static, ()>,
}

impl ClusterLab {
    /// `network inspect NAME`'s document.
    pub fn network(&self, name: &str) -> Value {
        let docs: Value =
            serde_json::from_str(&self.n1().ok(&["network", "inspect", name])).unwrap();
        docs[0].clone()
    }

    /// Task ID → its address on network `name`, as `network inspect` lists them.
    pub fn addresses(&self, name: &str) -> BTreeMap<String, String> {
        let net = self.network(name);
        let Some(tasks) = net["Containers"].as_object() else {
            return BTreeMap::new();
        };
        tasks
            .iter()
            .map(|(id, t)| {
                let addr = t["IPv4Address"].as_str().unwrap_or("");
                (id.clone(), addr.split('/').next().unwrap().to_string())
            })
            .collect()
    }

    /// Makes the lab and forms the cluster: n1 bootstraps, n2 and n3 join as workers; returns
    /// once n1 sees all three Ready (at most 90 s).
    pub fn form(net: LabNet) -> ClusterLab {
        let lock = one_at_a_time();
        let lab = Lab::new(net, &MANAGERS, &WORKERS);
        let root = tempfile::Builder::new()
            .prefix(&format!("swarm-{}", net.prefix))
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
        let vaults = VaultDirs(nodes.iter().map(|n| n.id()).collect());
        let cluster = ClusterLab {
            nodes,
            lab,
            root,
            vaults,
            _lock: lock,
        };
        let ready = wait_until(LIMIT, || all_ready(&cluster.n1().node_ls(), 3));
        assert!(ready, "the three nodes never all showed Ready");
        cluster
    }

    /// Starts one more worker, `name`, in the lab slot `slot` (the client's, say, which runs
    /// no node), joined through n1; its vault directory goes on drop as the others' do.
    pub fn join_worker(&mut self, name: &str, slot: &str) {
        let slot = self.lab.slot(slot).clone();
        let seed = Some((self.n1().addr, self.n1().token("worker")));
        let mut n = Node::in_netns(self.root.path(), name, slot.addr, &slot.ns, seed);
        n.spawn();
        n.wait_control();
        self.vaults.0.push(n.id());
        self.nodes.push(n);
    }

    pub fn n1(&self) -> &Node {
        &self.nodes[0]
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// A folder of the test's own (made if missing), for files and what tasks leave for it.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The service's tasks meant to run and running, by ID, with their `service ps` rows.
    pub fn running(&self, svc: &str) -> BTreeMap<String, Value> {
        self.n1()
            .service_ps(svc)
            .into_iter()
            .filter(|r| r["DesiredState"] == "Running" && task_state(r) == "Running")
            .map(|r| (r["ID"].as_str().unwrap_or("").to_string(), r))
            .collect()
    }

    /// Waits (at most [`LIMIT`]) until exactly `n` tasks of `svc` run and no other is meant
    /// to; their rows by ID.
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

    /// Runs `args` inside the client's namespace.
    pub fn in_client(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.lab.slot(CLIENT).ns])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// One HTTP GET from the client to `node:port` (a lab address): the body, trimmed, or
    /// `None` when the request failed (3 s limit).
    pub fn http_get(&self, node: &str, port: u16, path: &str) -> Option<String> {
        let url = format!("http://{}:{port}{path}", self.lab.slot(node).addr.ip());
        let out = self.in_client(&["curl", "-sf", "-m", "3", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits (at most [`LIMIT`]) until [`REQUESTS`] requests in a row from the client to
    /// `node:port` all succeed and the replies come from exactly `want` (task IDs, or other
    /// replica names); the replies counted.
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
                match self.http_get(node, port, "/") {
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

/// A process task serving its task ID with `busybox httpd` on port 80 (or `$PORT` where the
/// node has no namespaces to give it), and a `health` page a test can take away; its pages
/// are in `www/<task id>/`.
pub fn httpd_script(www: &Path) -> String {
    format!(
        "d={}/$SWARM_TASK_ID; mkdir -p $d; echo $SWARM_TASK_ID > $d/index.html; \
         echo ok > $d/health; exec busybox httpd -f -p ${{PORT:-80}} -h $d",
        www.display()
    )
}

/// The processes of task `task` (found by the `SWARM_TASK_ID` every task's environment
/// holds), lowest PID first. The nodes make their tasks' namespaces from inside their own
/// mount namespaces, so a test reaches a task through its processes, not by name.
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

/// Runs `args` inside task `task`'s network and mount namespaces (its resolver included), as
/// a program of the task would, with a 5 s limit (`timeout`).
pub fn in_task(task: &str, args: &[&str]) -> Output {
    let pid = *task_pids(task)
        .first()
        .unwrap_or_else(|| panic!("task {task} has a process"));
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "-m", "timeout", "5"])
        .args(args)
        .output()
        .expect("nsenter runs")
}

/// The addresses `name` resolves to from inside `task` (the C library's resolver, through
/// Python), sorted; empty when it does not resolve.
pub fn resolve(task: &str, name: &str) -> Vec<String> {
    let script = format!(
        "import socket\ntry:\n print('\\n'.join(socket.gethostbyname_ex('{name}')[2]))\n\
         except OSError:\n pass\n"
    );
    let out = in_task(task, &["python3", "-c", &script]);
    let mut addrs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    addrs.sort();
    addrs
}

/// One HTTP GET from inside `task`: the body, trimmed, or `None` when it failed (3 s limit).
pub fn get(task: &str, url: &str) -> Option<String> {
    let out = in_task(task, &["curl", "-sf", "-m", "3", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
