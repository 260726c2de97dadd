//! The overlay data path: the pure parts (names, MAC, what a node wants, the rules), and, as
//! root, two "nodes" (network namespaces joined by a veth pair) with VXLAN networks across
//! them and "tasks" (namespaces attached by the CNI bridge plugin, as the process runtime
//! does). Every namespace and interface these tests make is named `swdp-*` (bridges and
//! VXLAN devices live inside the node namespaces), and goes at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use super::*;
use crate::model::{EndpointMode, NetworkAttachment, ServiceId};
use crate::wire::{MeshNode, MeshService, MeshServiceNet};

fn net(k: u128, third: u8, internal: bool) -> MeshNetwork {
    MeshNetwork {
        // Spread over the ID space: names take the ID's first characters.
        id: NetworkId(u128::MAX / 7 * k),
        name: format!("swdp-net{k}"),
        subnet: Ipv4Addr::new(10, 213, third, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 213, third, 1),
        vni: 4_300 + k as u32,
        internal,
    }
}

fn node(n: u128, ip: [u8; 4]) -> MeshNode {
    MeshNode {
        id: NodeId(n),
        addr: SocketAddr::from((ip, 4_000)),
    }
}

fn table(nets: Vec<MeshNetwork>, vip: Option<Ipv4Addr>) -> MeshTable {
    MeshTable {
        version: 1,
        services: vec![MeshService {
            id: ServiceId(1),
            name: "web".into(),
            ports: Vec::new(),
            endpoint_mode: EndpointMode::Vip,
            networks: vec![MeshServiceNet {
                network: 0,
                vip,
                aliases: Vec::new(),
            }],
            backends: Vec::new(),
        }],
        networks: nets,
        nodes: vec![
            node(1, [192, 168, 213, 1]),
            node(2, [192, 168, 213, 2]),
            MeshNode {
                id: NodeId(3),
                addr: "[fd00::3]:4000".parse().unwrap(),
            },
        ],
    }
}

#[test]
fn names_and_mac_are_the_same_on_every_node_and_fit_linux() {
    let (a, b) = (net(1, 1, false), net(2, 2, false));
    assert_ne!(bridge_name(a.id), bridge_name(b.id));
    assert!(bridge_name(a.id).len() <= 15 && vxlan_name(a.id).len() <= 15);
    assert!(bridge_name(a.id).starts_with("swo-") && vxlan_name(a.id).starts_with("swv-"));
    assert_eq!(bridge_mac(a.id), bridge_mac(NetworkId(a.id.0)));
    assert_ne!(bridge_mac(a.id), bridge_mac(b.id));
    let mac = bridge_mac(a.id);
    assert!(mac.starts_with("02:") && mac.len() == 17, "{mac}");
}

#[test]
fn a_node_wants_its_tasks_networks_with_the_other_nodes_and_the_vips() {
    let a = net(1, 1, false);
    let vip = Ipv4Addr::new(10, 213, 1, 254);
    let t = table(vec![a.clone()], Some(vip));
    let mine = BTreeMap::from([(a.id, a.clone())]);
    let w = wanted(Some(&t), NodeId(1), &mine);
    let want = &w[&a.id];
    assert_eq!(
        want.peers,
        BTreeSet::from([Ipv4Addr::new(192, 168, 213, 2)]),
        "itself and IPv6 nodes left out"
    );
    assert_eq!(want.vips, BTreeSet::from([vip]));
    assert_eq!(
        local_addr(Some(&t), NodeId(1)),
        Some(Ipv4Addr::new(192, 168, 213, 1))
    );
    // Without a table (or one that does not list it yet) the network is still made.
    let w = wanted(None, NodeId(1), &mine);
    assert!(w[&a.id].peers.is_empty() && w[&a.id].vips.is_empty());
    // A VIP outside the subnet is never put on the bridge.
    let t = table(vec![a.clone()], Some(Ipv4Addr::new(10, 9, 9, 9)));
    assert!(wanted(Some(&t), NodeId(1), &mine)[&a.id].vips.is_empty());
    assert!(wanted(Some(&t), NodeId(1), &BTreeMap::new()).is_empty());
}

#[test]
fn the_rules_isolate_networks_and_redirect_vips() {
    let (a, c) = (net(1, 1, false), net(3, 3, true));
    let text = rules(&[&a, &c], Some(7_000));
    let (ba, bc) = (bridge_name(a.id), bridge_name(c.id));
    for line in [
        format!("-A SWARM-NODE-FWD -i {ba} -o {ba} -j ACCEPT"),
        format!("-A SWARM-NODE-FWD -o {ba} -j DROP"),
        format!("-A SWARM-NODE-FWD -i {bc} -j DROP"),
        format!(
            "-A SWARM-NODE-VIP -i {ba} -p tcp -m addrtype --dst-type LOCAL ! -d 10.213.1.1/32 -j REDIRECT --to-ports 7000"
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert!(!text.contains(&format!("-i {ba} -j DROP")), "not internal");
    assert!(!rules(&[&a], None).contains("REDIRECT"));
    assert_eq!(text.matches("COMMIT").count(), 2);
}

// ---- as root: two nodes -------------------------------------------------------------------

const N1: &str = "swdp-n1";
const N2: &str = "swdp-n2";
const TASKS: [&str; 4] = ["swdp-t1", "swdp-t2", "swdp-t3", "swdp-t4"];

async fn sh(args: &[&str]) -> Result<String, String> {
    Host::default().run(args[0], &args[1..], &[], None).await
}

/// Deletes the test's namespaces (their devices go with them), also when a check fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in TASKS.iter().chain([N1, N2].iter()) {
            // Absent is fine.
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn cni_dir() -> Option<std::path::PathBuf> {
    ["/usr/lib/cni", "/opt/cni/bin"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|d| d.join("bridge").is_file() && d.join("static").is_file())
}

/// Attaches task namespace `task` to `n`'s bridge on node `host` with the subnet's address
/// `last`, as the process runtime does (its CNI configuration for an overlay network).
async fn task(host: &Host, plugins: &std::path::Path, task: &str, n: &MeshNetwork, last: u8) {
    sh(&["ip", "netns", "add", task]).await.unwrap();
    sh(&["ip", "-n", task, "link", "set", "lo", "up"])
        .await
        .unwrap();
    let o = n.subnet.octets();
    let att = NetworkAttachment {
        network: n.name.clone(),
        addr: Ipv4Addr::new(o[0], o[1], o[2], last),
        prefix: n.prefix,
        gateway: n.gateway,
    };
    let config = super::super::netns::overlay_cni_config(&att, &bridge_name(n.id));
    let env = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", task.to_string()),
        ("CNI_NETNS", format!("/var/run/netns/{task}")),
        ("CNI_IFNAME", "eth1".to_string()),
        ("CNI_PATH", plugins.display().to_string()),
    ];
    let plugin = plugins.join("bridge").display().to_string();
    host.run(&plugin, &[], &env, Some(&config))
        .await
        .unwrap_or_else(|e| panic!("attaching {task}: {e}"));
    let mtu = sh(&["ip", "-n", task, "link", "show", "eth1"])
        .await
        .unwrap();
    assert!(mtu.contains("mtu 1450"), "{mtu}");
}

async fn reaches(task: &str, addr: &str) -> bool {
    sh(&[
        "ip", "netns", "exec", task, "ping", "-c", "1", "-W", "2", addr,
    ])
    .await
    .is_ok()
}

#[tokio::test]
async fn tasks_on_two_nodes_reach_each_other_over_vxlan_and_nothing_else() {
    let plugins = cni_dir();
    if !crate::runtime::running_as_root()
        || plugins.is_none()
        || sh(&["ping", "-V"]).await.is_err()
        || sh(&["iptables-restore", "--version"]).await.is_err()
    {
        eprintln!("skipped: needs root, the CNI plugins, ping and iptables");
        return;
    }
    let plugins = plugins.unwrap();
    drop(Cleanup);
    let _cleanup = Cleanup;
    let (a, b, c) = (net(1, 1, false), net(2, 2, false), net(3, 3, true));
    let vip = Ipv4Addr::new(10, 213, 1, 254);
    // The underlay: two nodes on one link.
    for ns in [N1, N2] {
        sh(&["ip", "netns", "add", ns]).await.unwrap();
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])
            .await
            .unwrap();
    }
    sh(&[
        "ip", "link", "add", "swdp-u1", "netns", N1, "type", "veth", "peer", "name", "swdp-u2",
        "netns", N2,
    ])
    .await
    .unwrap();
    for (ns, dev, addr) in [
        (N1, "swdp-u1", "192.168.213.1/24"),
        (N2, "swdp-u2", "192.168.213.2/24"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            .await
            .unwrap();
        sh(&["ip", "-n", ns, "link", "set", dev, "up"])
            .await
            .unwrap();
    }
    let t = table(vec![a.clone(), b.clone(), c.clone()], Some(vip));
    let (h1, h2) = (Host::in_namespace(N1), Host::in_namespace(N2));
    let (o1, o2) = (
        Overlays::new(h1.clone(), Some(7_000)),
        Overlays::new(h2.clone(), Some(7_000)),
    );
    o1.sweep().await;
    o2.sweep().await;
    let mine1 = BTreeMap::from([(a.id, a.clone())]);
    let mine2 = BTreeMap::from([(a.id, a.clone()), (b.id, b.clone()), (c.id, c.clone())]);
    let failed = o1
        .sync(
            &wanted(Some(&t), NodeId(1), &mine1),
            local_addr(Some(&t), NodeId(1)),
        )
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let failed = o2
        .sync(
            &wanted(Some(&t), NodeId(2), &mine2),
            local_addr(Some(&t), NodeId(2)),
        )
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    // A second sync with nothing new changes nothing (and fails nothing).
    assert!(
        o2.sync(&wanted(Some(&t), NodeId(2), &mine2), None)
            .await
            .is_empty()
    );

    task(&h1, &plugins, "swdp-t1", &a, 2).await;
    task(&h2, &plugins, "swdp-t2", &a, 3).await;
    task(&h2, &plugins, "swdp-t3", &b, 2).await;
    task(&h2, &plugins, "swdp-t4", &c, 2).await;
    // Default routes through the overlay gateways, and routes back on node 1, so that only
    // the rules stand between these tasks and what they must not reach.
    sh(&[
        "ip",
        "-n",
        "swdp-t3",
        "route",
        "add",
        "default",
        "via",
        "10.213.2.1",
    ])
    .await
    .unwrap();
    sh(&[
        "ip",
        "-n",
        "swdp-t4",
        "route",
        "add",
        "default",
        "via",
        "10.213.3.1",
    ])
    .await
    .unwrap();
    for sub in ["10.213.2.0/24", "10.213.3.0/24"] {
        sh(&["ip", "-n", N1, "route", "add", sub, "via", "192.168.213.2"])
            .await
            .unwrap();
    }
    sh(&[
        "ip",
        "netns",
        "exec",
        N2,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ])
    .await
    .unwrap();

    let checks = async {
        assert!(
            reaches("swdp-t1", "10.213.1.3").await,
            "t1 → t2 across the nodes"
        );
        assert!(
            reaches("swdp-t2", "10.213.1.2").await,
            "t2 → t1 across the nodes"
        );
        assert!(
            reaches("swdp-t1", "10.213.1.254").await,
            "the VIP answers on node 1"
        );
        assert!(
            reaches("swdp-t2", "10.213.1.1").await,
            "the gateway answers on node 2"
        );
        assert!(
            !reaches("swdp-t3", "10.213.1.3").await,
            "another network's task is isolated"
        );

        assert!(
            !reaches("swdp-t4", "192.168.213.1").await,
            "an internal network has no way out"
        );
        // Its own rule stopped it, on the way out (node 1 would have answered).
        let saved = sh(&[
            "ip",
            "netns",
            "exec",
            N2,
            "iptables-save",
            "-c",
            "-t",
            "filter",
        ])
        .await
        .unwrap();
        let rule = format!("-A {FORWARD_CHAIN} -i {} -j DROP", bridge_name(c.id));
        let dropped = saved
            .lines()
            .find(|l| l.ends_with(&rule))
            .and_then(|l| l.strip_prefix('[')?.split(':').next()?.parse::<u64>().ok());
        assert!(dropped.is_some_and(|n| n > 0), "{saved}");
        // The MAC of the gateway is the same on both nodes.
        let show = |ns: &'static str| {
            let br = bridge_name(a.id);
            async move { sh(&["ip", "-n", ns, "link", "show", &br]).await.unwrap() }
        };
        let mac = bridge_mac(a.id);
        assert!(show(N1).await.contains(&mac) && show(N2).await.contains(&mac));
        // A peer that leaves the table leaves the flood list.
        let flood = |fdb: &str| {
            fdb.lines()
                .any(|l| l.starts_with("00:00:00:00:00:00 dst 192.168.213.1 "))
        };
        let fdb = sh(&["bridge", "-n", N2, "fdb", "show", "dev", &vxlan_name(a.id)])
            .await
            .unwrap();
        assert!(flood(&fdb), "{fdb}");
        let mut t2 = t.clone();
        t2.nodes.retain(|n| n.id != NodeId(1));
        assert!(
            o2.sync(&wanted(Some(&t2), NodeId(2), &mine2), None)
                .await
                .is_empty()
        );
        let fdb = sh(&["bridge", "-n", N2, "fdb", "show", "dev", &vxlan_name(a.id)])
            .await
            .unwrap();
        assert!(!flood(&fdb), "{fdb}");
        // No task left on node 2: its devices go.
        assert!(o2.sync(&BTreeMap::new(), None).await.is_empty());
        assert!(o2.networks().await.is_empty());
        let links = sh(&["ip", "-n", N2, "-o", "link", "show"]).await.unwrap();
        assert!(
            !links.contains("swo-") && !links.contains("swv-"),
            "{links}"
        );
        // A new run on node 1 leaves a bridge a task is still on (another live node's), and
        // sweeps what an earlier run left.
        Overlays::new(h1.clone(), None).sweep().await;
        let links = sh(&["ip", "-n", N1, "-o", "link", "show"]).await.unwrap();
        assert!(links.contains(&bridge_name(a.id)), "{links}");
        sh(&["ip", "netns", "delete", "swdp-t1"]).await.unwrap();
        Overlays::new(h1.clone(), None).sweep().await;
        let links = sh(&["ip", "-n", N1, "-o", "link", "show"]).await.unwrap();
        assert!(
            !links.contains("swo-") && !links.contains("swv-"),
            "{links}"
        );
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), checks)
        .await
        .expect("the checks took more than a minute");
}
