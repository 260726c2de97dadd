//! The mesh tests' part of the lab (`tests/common/lab.rs`): namespaces `swms-*` on
//! 10.79.0.0/24, three nodes (`n1` the manager at .1, `n2` and `n3` at .11 and .12) and a
//! client namespace `cl` (.13) that runs no node: every request of the tests comes from it,
//! so nothing leaves the lab.
//!
//! Docker's containers live in the machine's own namespace, on the bridges the nodes make
//! (their slices of 10.255.0.0/16). [`DockerRoute`] joins the lab to them: a veth from the
//! lab's bridge to the root namespace (`swms-rt`, 10.79.0.254), a route to 10.255.0.0/16
//! through it in each node's namespace, and `iptables -I DOCKER-USER` accept rules for the
//! veth (Docker's FORWARD chain drops traffic between its bridges and other interfaces). All
//! of it goes again on drop.

use std::process::{Command, Output};

pub use crate::common::Containers;
pub use crate::common::cluster_lab::CLIENT;
pub use crate::common::lab::{Lab, LabNet, ip, run};

pub const NET: LabNet = LabNet {
    prefix: "swms-",
    octets: [10, 79, 0],
    port: 29101,
};

/// Runs `args` inside the client's namespace.
pub fn in_client(lab: &Lab, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &lab.slot(CLIENT).ns])
        .args(args)
        .output()
        .expect("ip netns exec runs")
}

/// One HTTP GET from the client: the body, or `None` when the request failed (3 s limit).
pub fn http_get(lab: &Lab, node: &str, port: u16) -> Option<String> {
    let url = format!("http://{}:{port}/", lab.slot(node).addr.ip());
    let out = in_client(lab, &["curl", "-sf", "-m", "3", &url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One UDP datagram from the client and the answer (3 s limit).
pub fn udp_ask(lab: &Lab, node: &str, port: u16, text: &str) -> Option<String> {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         s.sendto(b'{text}',('{}',{port}))\nprint(s.recv(2048).decode())",
        lab.slot(node).addr.ip()
    );
    let out = in_client(lab, &["python3", "-c", &script]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

const ROUTE_VETH: &str = "swms-rt";
const ROUTE_ADDR: &str = "10.79.0.254";
const DOCKER_SUBNET: &str = "10.255.0.0/16";

/// The route from the lab's nodes to Docker's containers; removed on drop.
pub struct DockerRoute;

/// Removes what nodes of earlier tests left in this namespace of the machine, where the Docker
/// engine's bridges are too: process tasks' network namespaces that no process uses any more
/// (a node killed with SIGKILL leaves them until it starts again with its data dir), then the
/// node bridges (`swn-*`) left with nothing attached. Such a bridge holds a slice of
/// 10.255.0.0/16 and would take the route the lab gives to the containers.
fn clear_task_bridges() {
    // The name is the first word of `ip netns list` and the second of `ip -o link show`.
    let names = |args: &[&str], word: usize| -> Vec<String> {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(word))
            .map(|n| {
                n.trim_end_matches(':')
                    .split('@')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .filter(|n| n.starts_with("swn-"))
            .collect()
    };
    for ns in names(&["netns", "list"], 0) {
        let pids = Command::new("ip").args(["netns", "pids", &ns]).output();
        if pids.is_ok_and(|o| o.stdout.trim_ascii().is_empty()) {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
        }
    }
    for link in names(&["-o", "link", "show", "type", "bridge"], 1) {
        let idle = std::fs::read_dir(format!("/sys/class/net/{link}/brif"))
            .is_ok_and(|mut d| d.next().is_none());
        if idle {
            let _ = Command::new("ip").args(["link", "delete", &link]).status();
        }
    }
}

impl DockerRoute {
    pub fn new(lab: &Lab) -> DockerRoute {
        // A leftover of a crashed run goes first (the veth's deletion takes its peer along).
        DockerRoute::remove();
        clear_task_bridges();
        let guard = DockerRoute;
        let br = lab.net.bridge_ns();
        ip(&[
            "link", "add", ROUTE_VETH, "type", "veth", "peer", "name", "rt", "netns", &br,
        ]);
        ip(&["-n", &br, "link", "set", "rt", "master", "br0"]);
        ip(&["-n", &br, "link", "set", "rt", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{ROUTE_ADDR}/24"),
            "dev",
            ROUTE_VETH,
        ]);
        ip(&["link", "set", ROUTE_VETH, "up"]);
        for s in lab.slots.iter().filter(|s| s.name != CLIENT) {
            ip(&[
                "-n",
                &s.ns,
                "route",
                "add",
                DOCKER_SUBNET,
                "via",
                ROUTE_ADDR,
            ]);
        }
        for dir in ["-i", "-o"] {
            run(
                "iptables",
                &["-w", "-I", "DOCKER-USER", dir, ROUTE_VETH, "-j", "ACCEPT"],
            );
        }
        guard
    }

    /// Removes the rules and the veth; errors ignored (this runs in `Drop` and on leftovers).
    fn remove() {
        for dir in ["-i", "-o"] {
            while Command::new("iptables")
                .args(["-w", "-D", "DOCKER-USER", dir, ROUTE_VETH, "-j", "ACCEPT"])
                .output()
                .is_ok_and(|o| o.status.success())
            {}
        }
        let _ = Command::new("ip")
            .args(["link", "del", ROUTE_VETH])
            .output();
    }
}

impl Drop for DockerRoute {
    fn drop(&mut self) {
        DockerRoute::remove();
    }
}
