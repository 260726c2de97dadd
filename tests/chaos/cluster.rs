//! The cluster under test: 3 managers and 4 workers, each a real `swarm-node start` process in
//! its own namespace of the [`Lab`], and what the rounds ask of it (views, leader, task
//! processes).
//!
//! Task processes are counted in the kernel, not through the CLI: a task is a process in a
//! node's namespace running the service's command line, and every process there but the node
//! (tasks and the shims the node puts between itself and them) must descend from the live
//! node. One that does not is an orphan.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Node, all_ready, status_of, wait_until};
use crate::lab::{self, Lab, pids_in};
use crate::ledger::CLI_LIMIT;

pub const MANAGERS: [&str; 3] = ["m1", "m2", "m3"];
pub const WORKERS: [&str; 4] = ["w1", "w2", "w3", "w4"];
/// The service's task: one process per replica, found by this command line.
const TASK_COMMAND: [&str; 2] = ["sleep", "100000"];
/// Generations [`descends_from`] climbs before it gives up.
const ANCESTRY_MAX: usize = 8;
/// How long anything may take to come back before the cluster counts as broken.
pub const LIMIT: Duration = Duration::from_secs(60);
/// The service the rounds keep running, when the branch has `service` commands.
pub const SERVICE: &str = "chaos";
pub const REPLICAS: usize = 6;
/// How long one `node ls` of the detection poll may take. Right after the leader dies, a
/// follower's `node ls` waits for its read to be forwarded to the dead leader and time out (the
/// 3 s request deadline); abandoning it and asking again measures when the node is seen Down,
/// not that wait.
pub const DETECT_CALL_LIMIT: Duration = Duration::from_millis(500);

pub struct Cluster {
    // Fields drop in this order: processes first, then the namespaces, then the data dirs.
    pub nodes: Vec<Node>,
    pub lab: Lab,
    root: Option<TempDir>,
    /// Node IDs by name.
    pub ids: BTreeMap<String, String>,
    /// Whether a service runs (the branch has `service` commands).
    pub service: bool,
}

impl Cluster {
    /// Makes the lab and forms the cluster: m1 bootstraps, m2 and m3 join as managers, the
    /// workers as workers; returns once every manager sees all seven Ready and a leader.
    pub fn form() -> Cluster {
        let lab = Lab::new(lab::NET, &MANAGERS, &WORKERS);
        let root = tempfile::Builder::new()
            .prefix("swarm-chaos")
            .tempdir()
            .unwrap();
        let mut c = Cluster {
            nodes: Vec::new(),
            lab,
            root: None,
            ids: BTreeMap::new(),
            service: false,
        };
        let slot = c.lab.slot("m1").clone();
        let mut m1 = Node::in_netns(root.path(), "m1", slot.addr, &slot.ns, None);
        c.root = Some(root);
        m1.spawn();
        m1.wait_control();
        let seed = m1.addr;
        let manager_token = m1.token("manager");
        let worker_token = m1.token("worker");
        c.nodes.push(m1);
        for name in MANAGERS[1..].iter().chain(WORKERS.iter()) {
            let token = if name.starts_with('m') {
                &manager_token
            } else {
                &worker_token
            };
            let slot = c.lab.slot(name).clone();
            let root = c.root.as_ref().unwrap().path();
            let mut n =
                Node::in_netns(root, name, slot.addr, &slot.ns, Some((seed, token.clone())));
            n.spawn();
            n.wait_control();
            c.nodes.push(n);
        }
        let formed = c.wait_converged(LIMIT, Instant::now()).is_some();
        assert!(formed, "the cluster did not form: {}", c.views());
        for n in &c.nodes {
            c.ids.insert(n.name.clone(), n.id());
        }
        c
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    /// Names and data dirs of the managers.
    pub fn manager_dirs(&self) -> Vec<(String, PathBuf)> {
        MANAGERS
            .iter()
            .map(|m| (m.to_string(), self.node(m).dir.clone()))
            .collect()
    }

    /// `node ls --format json` on `name`, with a deadline; empty when it fails.
    pub fn ls(&self, name: &str) -> Vec<Value> {
        self.ls_within(name, CLI_LIMIT)
    }

    /// `node ls --format json` on `name`, given up after `limit`; empty when it fails.
    pub fn ls_within(&self, name: &str, limit: Duration) -> Vec<Value> {
        match self
            .node(name)
            .cli_within(limit, &["node", "ls", "--format", "json"])
        {
            Some(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The leader's name as `via` sees it.
    pub fn leader(&self, via: &str) -> Option<String> {
        self.ls(via)
            .iter()
            .find(|r| r["ManagerStatus"] == "Leader")
            .and_then(|r| r["Hostname"].as_str().map(str::to_string))
    }

    /// Whether every manager in `observers` shows `target` Down. A call slower than
    /// [`DETECT_CALL_LIMIT`] counts as not yet.
    pub fn seen_down(&self, observers: &[&str], target: &str) -> bool {
        let id = &self.ids[target];
        observers.iter().all(|o| {
            status_of(&self.ls_within(o, DETECT_CALL_LIMIT), id).as_deref() == Some("Down")
        })
    }

    /// Every manager sees all seven nodes Ready, by name, and a leader, and (with a service)
    /// exactly [`REPLICAS`] task processes run. Returns the time from `since` until that held.
    pub fn wait_converged(&self, limit: Duration, since: Instant) -> Option<Duration> {
        let total = MANAGERS.len() + WORKERS.len();
        let mut names: Vec<&str> = MANAGERS.iter().chain(WORKERS.iter()).copied().collect();
        names.sort();
        let ok = wait_until(limit, || {
            MANAGERS.iter().all(|m| {
                let rows = self.ls(m);
                // A row without its hostname is a node whose description this manager lacks;
                // `node inspect <name>` fails there until it arrives.
                let mut seen: Vec<&str> =
                    rows.iter().filter_map(|r| r["Hostname"].as_str()).collect();
                seen.sort();
                all_ready(&rows, total)
                    && seen == names
                    && rows.iter().any(|r| r["ManagerStatus"] == "Leader")
            }) && (!self.service || self.task_pids().len() == REPLICAS)
        });
        ok.then(|| since.elapsed())
    }

    /// What each manager sees, for failure messages.
    pub fn views(&self) -> String {
        let mut s = String::new();
        for m in MANAGERS {
            s += &format!("\n{m}:");
            for r in self.ls(m) {
                s += &format!(
                    " {}={}/{}",
                    r["Hostname"].as_str().unwrap_or("?"),
                    r["Status"].as_str().unwrap_or("?"),
                    r["ManagerStatus"].as_str().unwrap_or("")
                );
            }
        }
        s
    }

    /// Task processes: those running the service's command line that descend from a live node
    /// (as root, each process task runs in a network namespace of its own, not the node's).
    pub fn task_pids(&self) -> Vec<u32> {
        let nodes: Vec<Option<u32>> = self.nodes.iter().map(|n| n.pid()).collect();
        all_task_pids()
            .into_iter()
            .filter(|p| nodes.iter().any(|n| n.is_some() && descends_from(*p, *n)))
            .collect()
    }

    /// Processes in a node's namespace that do not descend from that node's live process, and
    /// task processes that descend from no live node (tasks or shims that outlived their
    /// node). Each is described for the failure message.
    pub fn orphans(&self) -> Vec<String> {
        let mut found = Vec::new();
        for n in &self.nodes {
            let me = n.pid();
            let ns = n.netns.as_deref().expect("chaos nodes run in namespaces");
            for pid in pids_in(ns) {
                if Some(pid) == me {
                    continue;
                }
                let parent = ppid(pid);
                if parent.is_some() && !descends_from(pid, me) {
                    found.push(format!(
                        "pid {pid} ({}) in {ns}: parent {parent:?}, node {me:?}",
                        cmdline(pid)
                    ));
                }
            }
        }
        let nodes: Vec<Option<u32>> = self.nodes.iter().map(|n| n.pid()).collect();
        for pid in all_task_pids() {
            if ppid(pid).is_some() && !nodes.iter().any(|n| n.is_some() && descends_from(pid, *n)) {
                found.push(format!(
                    "task pid {pid} ({}) descends from no live node: parent {:?}",
                    cmdline(pid),
                    ppid(pid)
                ));
            }
        }
        found
    }

    /// Creates the service if the binary has `service` commands; returns whether it does.
    pub fn start_service(&mut self) -> bool {
        let m1 = self.node("m1");
        let has = m1
            .cli_within(CLI_LIMIT, &["service", "--help"])
            .is_some_and(|o| o.status.success());
        if !has {
            return false;
        }
        let replicas = REPLICAS.to_string();
        let out = m1.cli(&[
            "service",
            "create",
            "--name",
            SERVICE,
            "--replicas",
            &replicas,
            "--runtime",
            "process",
            TASK_COMMAND[0],
            TASK_COMMAND[1],
        ]);
        assert!(
            out.status.success(),
            "service create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.service = true;
        true
    }
}

/// Every process on the machine running the service's command line.
fn all_task_pids() -> Vec<u32> {
    let task = TASK_COMMAND.join(" ");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|p| cmdline(*p) == task)
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill the nodes before the namespaces go, and keep the logs of a failed run.
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            eprintln!("node logs kept in {}", root.keep().display());
        }
    }
}

/// Whether `pid` is `node` or has it among its ancestors (within a few generations: a task is
/// the node's grandchild, behind its shim). A process that is gone descends from nothing.
fn descends_from(pid: u32, node: Option<u32>) -> bool {
    let mut p = pid;
    for _ in 0..ANCESTRY_MAX {
        if Some(p) == node {
            return true;
        }
        match ppid(p) {
            Some(parent) if parent > 1 => p = parent,
            _ => return false,
        }
    }
    false
}

/// The parent PID of `pid`, if it still exists.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
