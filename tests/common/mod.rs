//! Helpers for end-to-end tests: real `swarm-node` processes on loopback, each with its own
//! data dir and port, and the CLI run against them.
//!
//! A node may also run inside a network namespace (`Node::in_netns`, used by the chaos harness):
//! its process is then started through `ip netns exec`, and the CLI still reaches it through the
//! control socket in its data dir. As root, every other cluster a test starts gets a namespace
//! of its own too ([`ClusterNs`]), unless the test says it talks to its nodes itself
//! ([`host_netns_shared`]) or runs them on the Docker Engine ([`host_netns_alone`]).
//!
//! Waits are bounded polls with generous limits (these machines are shared and noisy); they
//! check that something happens, never how fast.

#![allow(dead_code)] // each test binary uses a different part of this

pub mod cluster_lab;
pub mod lab;
pub mod wordpress;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_swarm-node");

/// Prints a phase line, so a failing test's output says what it was checking.
pub fn phase(what: &str) {
    eprintln!("=== phase: {what}");
}

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub child: Option<Child>,
    seed: Option<(SocketAddr, String)>,
    /// More `start` arguments.
    pub extra: Vec<String>,
    /// The network namespace the process runs in; `None` for the caller's own.
    pub netns: Option<String>,
    /// Held while the process runs in the caller's namespace: see [`host_netns_alone`].
    host_share: Option<HostShare>,
    /// The namespace of this node's cluster, when the test gave it one: see [`ClusterNs`].
    cluster_ns: Option<std::sync::Arc<ClusterNs>>,
}

impl Node {
    /// Starts a node that bootstraps a new cluster.
    pub fn bootstrap(root: &Path, name: &str, port: u16) -> Node {
        let mut n = Node::new(root, name, port, None);
        n.spawn();
        n.wait_control();
        n
    }

    /// Starts a node that bootstraps a new cluster, with more `start` arguments.
    pub fn bootstrap_with(root: &Path, name: &str, port: u16, extra: &[&str]) -> Node {
        let mut n = Node::new(root, name, port, None);
        n.extra = extra.iter().map(|s| s.to_string()).collect();
        n.spawn();
        n.wait_control();
        n
    }

    /// Starts a node that joins through `seed` with `token`.
    pub fn join(root: &Path, name: &str, port: u16, seed: SocketAddr, token: &str) -> Node {
        let mut n = Node::new(root, name, port, Some((seed, token.to_string())));
        n.spawn();
        n.wait_control();
        n
    }

    pub fn new(root: &Path, name: &str, port: u16, seed: Option<(SocketAddr, String)>) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Node {
            name: name.to_string(),
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            seed,
            extra: Vec::new(),
            netns: None,
            host_share: None,
            cluster_ns: None,
        }
    }

    /// A node (not started yet) listening on `addr` inside the network namespace `netns`.
    pub fn in_netns(
        root: &Path,
        name: &str,
        addr: SocketAddr,
        netns: &str,
        seed: Option<(SocketAddr, String)>,
    ) -> Node {
        let mut n = Node::new(root, name, addr.port(), seed);
        n.addr = addr;
        n.netns = Some(netns.to_string());
        n
    }

    pub fn start_command(&self) -> Command {
        // `ip netns exec` enters the namespace and execs the program in the same process, so
        // the child's PID is the node's own (signals reach the node, not a wrapper).
        // A node started without `spawn` (a join that must fail) runs where its seed does.
        let seed_ns = (self.netns.is_none() && self.host_share.is_none())
            .then(|| {
                self.seed
                    .as_ref()
                    .and_then(|(seed, _)| ClusterNs::of(*seed))
            })
            .flatten()
            .map(|ns| ns.name.clone());
        let mut cmd = match self.netns.as_ref().or(seed_ns.as_ref()) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("start")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--hostname")
            .arg(&self.name);
        if let Some((seed, token)) = &self.seed {
            cmd.arg("--seed")
                .arg(seed.to_string())
                .arg("--token")
                .arg(token);
        }
        cmd.args(&self.extra);
        // `SWARM_TEST_LOG` (a `RUST_LOG` filter) makes the nodes of a test say more.
        let filter = std::env::var("SWARM_TEST_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("RUST_LOG", filter);
        cmd
    }

    /// Starts (or restarts) the process, logging to `<dir>/log-N.txt`.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        if self.netns.is_none() {
            match ClusterNs::for_node(self.seed.as_ref().map(|(seed, _)| *seed)) {
                Some(ns) => {
                    ns.holds(self.addr);
                    self.netns = Some(ns.name.clone());
                    self.cluster_ns = Some(ns);
                }
                None if self.host_share.is_none() => self.host_share = HostShare::take(),
                None => {}
            }
        }
        let n = std::fs::read_dir(&self.dir).unwrap().count();
        let log = std::fs::File::create(self.dir.join(format!("log-{n}.txt"))).unwrap();
        let child = self
            .start_command()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("swarm-node starts");
        self.child = Some(child);
    }

    /// Waits until the control socket answers.
    pub fn wait_control(&mut self) {
        let ok = wait_until(Duration::from_secs(30), || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("{} exited early with {status}: {}", self.name, self.logs());
            }
            self.cli(&["node", "ls", "-q"]).status.success()
        });
        assert!(
            ok,
            "{} never answered on its control socket: {}",
            self.name,
            self.logs()
        );
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut names: Vec<_> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("log-"))
                })
                .collect();
            names.sort();
            for p in names {
                s += &format!(
                    "\n--- {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                );
            }
        }
        s
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("swarm-node CLI runs")
    }

    /// Runs the CLI with a deadline; see [`cli_within`].
    pub fn cli_within(&self, limit: Duration, args: &[&str]) -> Option<Output> {
        cli_within(&self.dir, limit, args)
    }

    /// Runs the CLI with more environment variables (e.g. `SWARM_NODE_VERIFY_MS`) and a
    /// deadline; see [`cli_within`].
    pub fn cli_env_within(
        &self,
        limit: Duration,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Option<Output> {
        cli_env_within(&self.dir, limit, env, args)
    }

    /// `service inspect SERVICE` as JSON: the one document of the array docker prints; `None`
    /// when the command fails (e.g. during an election).
    pub fn service_inspect(&self, svc: &str) -> Option<Value> {
        let out = self.cli(&["service", "inspect", svc]);
        if !out.status.success() {
            return None;
        }
        let docs: Value = serde_json::from_slice(&out.stdout).ok()?;
        docs.get(0).cloned()
    }

    /// The rows a `--format json` command prints (one object per line, as docker prints
    /// them); none when the command fails.
    pub fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let out = self.cli(args);
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `node ls --format json` as parsed rows.
    pub fn node_ls(&self) -> Vec<Value> {
        self.json_lines(&["node", "ls", "--format", "json"])
    }

    /// `service ps --format json` as parsed rows.
    pub fn service_ps(&self, svc: &str) -> Vec<Value> {
        self.json_lines(&["service", "ps", svc, "--format", "json"])
    }

    /// Runs the CLI, asserts it succeeded, and returns what it printed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn token(&self, role: &str) -> String {
        let out = self.cli(&["swarm", "join-token", "-q", role]);
        assert!(
            out.status.success(),
            "join-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs the CLI against this node with `input` on its standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("swarm-node CLI runs");
        // The CLI may refuse before reading it all; a short write then only means that.
        let _ = child.stdin.take().expect("piped").write_all(input);
        child.wait_with_output().expect("the CLI ends")
    }

    pub fn id(&self) -> String {
        let out = self.cli(&["node", "inspect", "self"]);
        assert!(
            out.status.success(),
            "inspect self failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["ID"].as_str().unwrap().to_string()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok(); // SIGKILL
            c.wait().ok();
        }
        self.host_share = None;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        self.remove_task_namespaces();
    }
}

/// Task network namespaces one node's drop removes at the most.
const TASK_NAMESPACES_MAX: usize = 1_000;

impl Node {
    /// After the test: the network namespaces the node's process tasks still hold (the node
    /// was killed, so nothing removed them), with the processes in them. A namespace left
    /// would keep its veth on the node's bridge, and the bridge's route to the slice, which
    /// the next test's node of the same slice would then share: its tasks' answers would go
    /// out the wrong bridge. The node's records (`<data dir>/tasks/<task>.net`, first line the
    /// namespace's name) say which namespaces are its.
    fn remove_task_namespaces(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("tasks")) else {
            return;
        };
        for entry in entries.flatten().take(TASK_NAMESPACES_MAX) {
            if entry.path().extension().is_none_or(|e| e != "net") {
                continue;
            }
            let Ok(record) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Some(ns) = record.lines().next().filter(|n| n.starts_with("swn-")) else {
                continue;
            };
            kill_processes_in(ns);
            // Best effort: the test is over either way.
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
    }
}

/// Nodes of one test binary that run in the caller's network namespace share it: their
/// tasks' bridges and the Docker Engine's networks all take slices of one ingress subnet, and
/// every cluster's first node takes the first slice. A Docker node's network loses its bridge
/// for good when another cluster's node clears it as stale between two containers. So a
/// Docker test runs its nodes alone in the namespace: [`host_netns_alone`] waits until no
/// other test's node runs there, and keeps new ones out until it is dropped. Nodes in their
/// own namespaces (labs, [`ClusterNs`]) are not counted.
#[derive(Default)]
struct HostNs {
    /// Nodes running in the namespace, of tests that share it.
    shared: usize,
    /// A test holds the namespace alone.
    alone: bool,
}

static HOST_NS: std::sync::Mutex<HostNs> = std::sync::Mutex::new(HostNs {
    shared: 0,
    alone: false,
});
static HOST_NS_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

thread_local! {
    /// This thread's test holds the namespace alone, so its own nodes take no share.
    static ALONE_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn host_ns() -> std::sync::MutexGuard<'static, HostNs> {
    HOST_NS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One running node's share of the caller's namespace.
struct HostShare;

impl HostShare {
    /// A share, once no test holds the namespace alone; `None` for the test that does.
    fn take() -> Option<HostShare> {
        if ALONE_HERE.with(|a| a.get()) {
            return None;
        }
        let mut ns = host_ns();
        while ns.alone {
            ns = HOST_NS_CHANGED.wait(ns).unwrap_or_else(|e| e.into_inner());
        }
        ns.shared += 1;
        Some(HostShare)
    }
}

impl Drop for HostShare {
    fn drop(&mut self) {
        host_ns().shared -= 1;
        HOST_NS_CHANGED.notify_all();
    }
}

/// The caller's network namespace for this test alone, while the value lives.
pub struct HostNsAlone;

/// Waits until no other test's node runs in the caller's namespace, then keeps others out
/// until the value is dropped. Docker tests call it first.
pub fn host_netns_alone() -> HostNsAlone {
    let mut ns = host_ns();
    while ns.alone || ns.shared > 0 {
        ns = HOST_NS_CHANGED.wait(ns).unwrap_or_else(|e| e.into_inner());
    }
    ns.alone = true;
    ALONE_HERE.with(|a| a.set(true));
    HostNsAlone
}

impl Drop for HostNsAlone {
    fn drop(&mut self) {
        ALONE_HERE.with(|a| a.set(false));
        host_ns().alone = false;
        HOST_NS_CHANGED.notify_all();
    }
}

/// As root, a cluster that a test starts in its own namespace: its first node (one with no
/// seed) makes it, with only loopback up, and the nodes that join through one of its nodes
/// run in it too. Clusters of one test binary then never trade ingress slices, bridges, DNS
/// listeners or iptables rules: every cluster's first node takes the same slice, and two
/// nodes of one slice in one namespace remove each other's bridge as stale between two tasks.
/// The CLI reaches the nodes through their control sockets, which are files. The namespace
/// goes with the last node of the cluster, the processes still in it killed.
pub struct ClusterNs {
    name: String,
}

/// Clusters' namespaces by the addresses of their nodes, for joiners to find their seed's.
static CLUSTER_NAMESPACES: std::sync::Mutex<Vec<(SocketAddr, std::sync::Weak<ClusterNs>)>> =
    std::sync::Mutex::new(Vec::new());
static CLUSTER_NS_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's test talks to its nodes from the test process: they run in its namespace.
    static HOST_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl ClusterNs {
    /// The namespace a node with this seed runs in: its seed's, or a new one for a node that
    /// bootstraps. `None` (the caller's namespace) for a test that keeps its nodes there, a
    /// seed outside every cluster namespace, or a caller that is not root (outside CI).
    fn for_node(seed: Option<SocketAddr>) -> Option<std::sync::Arc<ClusterNs>> {
        if ALONE_HERE.with(|a| a.get()) || HOST_HERE.with(|h| h.get()) {
            return None;
        }
        if let Some(seed) = seed {
            return ClusterNs::of(seed);
        }
        let n = CLUSTER_NS_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("swt-{}-{n}", std::process::id());
        let made = Command::new("ip").args(["netns", "add", &name]).output();
        let made = made.is_ok_and(|o| o.status.success())
            && Command::new("ip")
                .args(["-n", &name, "link", "set", "lo", "up"])
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI runs the tests as root with `ip`: a cluster's namespace {name} could not be made"
            );
            let _ = Command::new("ip").args(["netns", "delete", &name]).output();
            return None;
        }
        Some(std::sync::Arc::new(ClusterNs { name }))
    }

    /// The namespace of the cluster whose node listens on `addr`, if it has one.
    fn of(addr: SocketAddr) -> Option<std::sync::Arc<ClusterNs>> {
        let known = CLUSTER_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .find(|(a, _)| *a == addr)
            .and_then(|(_, ns)| ns.upgrade())
    }

    /// Records that the node listening on `addr` runs here.
    fn holds(self: &std::sync::Arc<Self>, addr: SocketAddr) {
        let mut known = CLUSTER_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|(a, ns)| *a != addr && ns.strong_count() > 0);
        known.push((addr, std::sync::Arc::downgrade(self)));
    }
}

impl Drop for ClusterNs {
    fn drop(&mut self) {
        kill_processes_in(&self.name);
        // Best effort: the test is over either way.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Kills every process in the named network namespace.
fn kill_processes_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status(); // gone meanwhile is fine
    }
}

/// The nodes this test starts run in the caller's namespace, sharing it with other tests'
/// (see [`HostNs`]), while the value lives: for a test that talks to its nodes from the test
/// process itself (a fake peer, raw datagrams).
pub struct HostNsShared;

pub fn host_netns_shared() -> HostNsShared {
    HOST_HERE.with(|h| h.set(true));
    HostNsShared
}

impl Drop for HostNsShared {
    fn drop(&mut self) {
        HOST_HERE.with(|h| h.set(false));
    }
}

/// Removes the vault directories (per-task secret files on tmpfs) of these nodes when dropped:
/// the harness ends nodes with SIGKILL, which leaves their vaults no time to clean up, and
/// nothing restarts them.
pub struct VaultDirs(pub Vec<String>);

impl Drop for VaultDirs {
    fn drop(&mut self) {
        for id in &self.0 {
            // Best effort: the test is over either way.
            let _ =
                std::fs::remove_dir_all(Path::new(swarm_actors::vault::VAULT_BASE_DIR).join(id));
        }
    }
}

/// Removes, on drop, the containers of the given nodes (by node ID), then their task
/// networks: a node killed by the test (or by its end) leaves its containers running, and
/// none may outlive the test, nor a network that holds an ingress slice in the engine. Made
/// before the nodes (locals drop in reverse order), so that it acts once they are gone.
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for node in &self.0 {
            let filter = format!("label={}={node}", swarm_actors::runtime::LABEL_NODE);
            let Ok(out) = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            else {
                return;
            };
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                // A container gone meanwhile is what this wants anyway.
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
            let Ok(out) = Command::new("docker")
                .args(["network", "ls", "-q", "--filter", &filter])
                .output()
            else {
                return;
            };
            for net in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                // One still in use (it should not be) stays; the engine says why.
                let _ = Command::new("docker").args(["network", "rm", net]).output();
            }
        }
    }
}

/// Runs the CLI against the node whose data dir is `dir`, killing it after `limit` (a node
/// stopped with SIGSTOP accepts the connection but never answers). `None` when it ran out of
/// time.
pub fn cli_within(dir: &Path, limit: Duration, args: &[&str]) -> Option<Output> {
    cli_env_within(dir, limit, &[], args)
}

/// As [`cli_within`], with more environment variables for the CLI.
pub fn cli_env_within(
    dir: &Path,
    limit: Duration,
    env: &[(&str, &str)],
    args: &[&str],
) -> Option<Output> {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarm-node CLI runs");
    // Readers drain the pipes while the CLI runs: a command that waits (progress lines) may
    // print more than a pipe holds.
    use std::io::Read as _;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                p.read_to_end(&mut buf).ok(); // a short read only shortens the output shown
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the CLI") {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().ok(); // it may have exited just now
            child.wait().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Some(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// A benchmark's numeric option `name VALUE` from the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `f` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The first word of a `service ps` row's CURRENT STATE (`Running`, `Pending`, …).
pub fn task_state(row: &Value) -> &str {
    row["CurrentState"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
}

/// Tasks wanted and running, per node hostname, in `service ps` rows.
pub fn running_per_node(rows: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in rows {
        if r["DesiredState"] == "Running" && task_state(r) == "Running" {
            *m.entry(r["Node"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
    }
    m
}

/// Status of node `id` in `rows` (`node ls --format json`).
pub fn status_of(rows: &[Value], id: &str) -> Option<String> {
    rows.iter()
        .find(|r| r["ID"] == id)
        .and_then(|r| r["Status"].as_str().map(str::to_string))
}

/// Whether `rows` show exactly `n` nodes, all Ready.
pub fn all_ready(rows: &[Value], n: usize) -> bool {
    rows.len() == n && rows.iter().all(|r| r["Status"] == "Ready")
}

/// A manager `n1` and two workers `n2`, `n3` on ports `base..base + 3`, once all three show
/// Ready on the manager (waited for at most 90 s; the machines are noisy).
pub fn three_nodes(root: &Path, base: u16) -> [Node; 3] {
    let n1 = Node::bootstrap(root, "n1", base);
    let token = n1.token("worker");
    let n2 = Node::join(root, "n2", base + 1, n1.addr, &token);
    let n3 = Node::join(root, "n3", base + 2, n1.addr, &token);
    let nodes = [n1, n2, n3];
    assert!(
        wait_until(Duration::from_secs(90), || all_ready(
            &nodes[0].node_ls(),
            3
        )),
        "the three nodes never all showed Ready"
    );
    nodes
}

/// Whether the Docker Engine answers, with the test image imported: `false` (the reason
/// printed, the test skipped) when it does not, and a failure under `CI=true`, where it must.
pub fn docker_engine() -> bool {
    use swarm_actors::runtime::testimage::{docker_available, ensure_test_image};
    if let Err(why) = docker_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have a reachable Docker Engine: {why}"
        );
        eprintln!("skipped: {why}");
        return false;
    }
    ensure_test_image().expect("the test image");
    true
}
