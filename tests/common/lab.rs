//! The lab: one network namespace per node, joined by a bridge that lives in a namespace of its
//! own, so nothing of the machine's own network is touched. Each harness has its own
//! [`LabNet`] (namespace prefix, /24, port), so two harnesses never touch each other's
//! namespaces. The chaos harness's, for example:
//!
//! ```text
//!   swch-br:  br0 ── v-m1 ─┐      ┌─ eth0 10.77.0.1   swch-m1   (managers .1 .. .3)
//!                 ── v-w1 ─┼ veth ┼─ eth0 10.77.0.11  swch-w1   (workers .11 .. .14)
//!                 ── ...  ─┘      └─ ...
//! ```
//!
//! Faults act on this wiring: a cut sets the node's bridge-side veth down; a split drops the
//! traffic between one manager and the others with iptables inside that manager's namespace.
//! Every namespace is named `<prefix>*`; [`Lab::new`] first removes the ones a crashed run
//! left (killing the processes still in them), and dropping the [`Lab`] removes them again,
//! also when the test panics.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

/// One harness's part of the lab.
#[derive(Clone, Copy, Debug)]
pub struct LabNet {
    /// Prefix of every namespace the harness makes; nothing else may use it.
    pub prefix: &'static str,
    /// The bridge's /24: nodes get `.1..` (managers) and `.11..` (workers).
    pub octets: [u8; 3],
    /// The port every node listens on, each on its own address.
    pub port: u16,
}

impl LabNet {
    /// The namespace holding the bridge.
    pub fn bridge_ns(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// The address `.host` of the bridge's /24.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.octets;
        Ipv4Addr::new(a, b, c, host)
    }
}

/// Runs `ip` with `args`; panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `iptables` inside `ns`.
pub fn iptables(ns: &str, args: &[&str]) {
    let mut a = vec!["netns", "exec", ns, "iptables", "-w"];
    a.extend_from_slice(args);
    run("ip", &a);
}

/// Runs `prog` with `args`; panics with its stderr when it fails.
pub fn run(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{prog} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why the harness cannot run here, if it cannot: it needs root and `ip netns`.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("not root (effective uid {euid})"));
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "`ip netns list` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return Some(format!("`ip` cannot run ({e}); install iproute2")),
    }
    match Command::new("iptables").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`iptables` is missing; install iptables".into()),
    }
}

/// One node's place in the lab.
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    pub ns: String,
    /// The bridge-side end of the node's veth pair, in [`LabNet::bridge_ns`].
    pub veth: String,
    pub addr: SocketAddr,
}

/// The namespaces and the bridge; removed on drop.
pub struct Lab {
    pub net: LabNet,
    pub slots: Vec<Slot>,
}

impl Lab {
    /// Makes the bridge and one namespace per name, where `managers` come first (`.1..`) and
    /// `workers` after (`.11..`).
    pub fn new(net: LabNet, managers: &[&str], workers: &[&str]) -> Lab {
        sweep(net.prefix);
        let mut slots = Vec::new();
        for (i, name) in managers.iter().enumerate() {
            slots.push(slot(&net, name, 1 + i as u8));
        }
        for (i, name) in workers.iter().enumerate() {
            slots.push(slot(&net, name, 11 + i as u8));
        }
        // The guard exists before the first namespace, so a failure half-way still cleans up.
        let lab = Lab { net, slots };
        let br = &net.bridge_ns();
        ip(&["netns", "add", br]);
        ip(&["-n", br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", br, "link", "set", "br0", "up"]);
        for s in &lab.slots {
            ip(&["netns", "add", &s.ns]);
            ip(&[
                "-n", br, "link", "add", &s.veth, "type", "veth", "peer", "name", "eth0", "netns",
                &s.ns,
            ]);
            ip(&["-n", br, "link", "set", &s.veth, "master", "br0"]);
            ip(&["-n", br, "link", "set", &s.veth, "up"]);
            let cidr = format!("{}/24", s.addr.ip());
            ip(&["-n", &s.ns, "addr", "add", &cidr, "dev", "eth0"]);
            ip(&["-n", &s.ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &s.ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    pub fn slot(&self, name: &str) -> &Slot {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no slot {name}"))
    }

    /// Cuts `name` off the bridge (both directions), or heals the cut.
    pub fn set_link(&self, name: &str, up: bool) {
        let veth = &self.slot(name).veth;
        ip(&[
            "-n",
            &self.net.bridge_ns(),
            "link",
            "set",
            veth,
            if up { "up" } else { "down" },
        ]);
    }

    /// Drops every packet between `name` and each of `others`, inside `name`'s namespace.
    pub fn isolate_from(&self, name: &str, others: &[&str]) {
        let ns = &self.slot(name).ns;
        for o in others {
            let ip = self.slot(o).addr.ip().to_string();
            iptables(ns, &["-A", "INPUT", "-s", &ip, "-j", "DROP"]);
            iptables(ns, &["-A", "OUTPUT", "-d", &ip, "-j", "DROP"]);
        }
    }

    /// Removes what [`Lab::isolate_from`] added.
    pub fn heal_isolation(&self, name: &str) {
        let ns = &self.slot(name).ns;
        iptables(ns, &["-F", "INPUT"]);
        iptables(ns, &["-F", "OUTPUT"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        sweep(self.net.prefix);
    }
}

fn slot(net: &LabNet, name: &str, host: u8) -> Slot {
    Slot {
        name: name.to_string(),
        ns: format!("{}{name}", net.prefix),
        veth: format!("v-{name}"),
        addr: SocketAddr::from((net.addr(host), net.port)),
    }
}

/// PIDs of the processes inside namespace `ns`.
pub fn pids_in(ns: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills every process in a `<prefix>*` namespace and deletes those namespaces (veths go with
/// them). Errors are ignored: this runs in `Drop` and on leftovers that may be half gone.
fn sweep(prefix: &str) {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return };
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    for ns in &names {
        for pid in pids_in(ns) {
            // SIGKILL reaches stopped processes too; a process gone meanwhile is fine.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    for ns in &names {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}
