//! The node's side of the overlay networks: one bridge and one VXLAN device per network the
//! node has tasks on, the flood entries that reach the other nodes, the services' VIPs, and the
//! iptables rules that keep networks apart.
//!
//! ```text
//!  node A                                               node B
//!  ┌─────────────────────────────────────┐              ┌──────────────────────────────┐
//!  │ task ─veth─┐                        │              │            ┌─veth─ task      │
//!  │            ▼                        │   UDP 4789   │            ▼                 │
//!  │ bridge swo-<net>  gateway/prefix ◀──┼──────────────┼──▶ bridge swo-<net> (same    │
//!  │   + VIPs /32, MAC 02:… (per net)    │  VNI of net  │    gateway, VIPs and MAC)    │
//!  │   └─ swv-<net> vxlan, fdb 00:… dst B│              │    └─ swv-<net>, fdb dst A   │
//!  └─────────────────────────────────────┘              └──────────────────────────────┘
//! ```
//!
//! Every node holds the network's gateway and every VIP on its bridge, with one MAC per
//! network (derived from its ID), so whichever node answers ARP for them the frame stays
//! local: a task's packets to the gateway (its DNS server) and to VIPs end on its own node.
//! Broadcast and unknown frames go to every other node of the table (head-end replication
//! through `bridge fdb append 00:00:00:00:00:00 … dst <peer>`); the VXLAN device learns where
//! each task's MAC is from then on.
//!
//! Iptables, in chains of our own: `SWARM-NODE-FWD` (jumped from the top of `FORWARD`)
//! accepts what stays inside one network, drops what is routed into a network (networks are
//! isolated from each other and from the outside) and, for an internal network, what is
//! routed out of it; `SWARM-NODE-VIP` (jumped from nat `PREROUTING`) redirects TCP to the
//! network's local addresses but the gateway (its VIPs) to the routing mesh's VIP listener.
//! Both chains are rewritten whole, atomically (`iptables-restore --noflush`), when the set of
//! networks changes. UDP to a VIP is not balanced.
//!
//! The agent keeps all of it in step ([`Overlays::sync`]): before a task on a network starts,
//! when a new routing-mesh table comes (peers, VIPs), when a task is removed (a network with
//! no task left goes). A node's start sweeps what an earlier run left ([`Overlays::sweep`]).
//! Everything goes through `ip`, `bridge` and `iptables-restore`, each call bounded by
//! [`NET_CALL_TIMEOUT_MS`](super::netns::NET_CALL_TIMEOUT_MS).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokio::process::Command;
use tracing::{debug, info, warn};

use super::netns::{failure, output_within};
use crate::model::{NetworkId, NodeId, VXLAN_PORT};
use crate::wire::{MeshNetwork, MeshTable};

/// The MTU of a task's interface on an overlay network, and of the VXLAN device: 1500 less
/// the 50 bytes of VXLAN's outer headers.
pub const OVERLAY_MTU: u32 = 1_450;
/// The filter chain of the networks' isolation rules, jumped from the top of `FORWARD`.
pub const FORWARD_CHAIN: &str = "SWARM-NODE-FWD";
/// The nat chain of the VIP redirections, jumped from the top of `PREROUTING`.
pub const VIP_CHAIN: &str = "SWARM-NODE-VIP";
/// A network's bridge: `swo-` and the first 11 characters of its ID.
const BRIDGE_PREFIX: &str = "swo-";
/// A network's VXLAN device: `swv-` and the first 11 characters of its ID.
const VXLAN_PREFIX: &str = "swv-";
/// Bytes of a command's output kept for an error message.
const OUTPUT_BYTES_MAX: usize = 2 * 1024;
/// Network interfaces one sweep looks at.
const LINKS_SCAN_MAX: usize = 4_096;

/// The bridge of `network` on every node.
pub fn bridge_name(network: NetworkId) -> String {
    let id = network.to_string();
    format!("{BRIDGE_PREFIX}{}", &id[..11.min(id.len())])
}

/// The VXLAN device of `network` on every node.
pub fn vxlan_name(network: NetworkId) -> String {
    let id = network.to_string();
    format!("{VXLAN_PREFIX}{}", &id[..11.min(id.len())])
}

/// The MAC address of `network`'s bridge, the same on every node: `02:` (locally
/// administered, unicast) and five bytes folded from the ID.
pub fn bridge_mac(network: NetworkId) -> String {
    let folded = (network.0 as u64) ^ ((network.0 >> 64) as u64);
    let b = folded.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[3] ^ b[0],
        b[4] ^ b[1],
        b[5] ^ b[2],
        b[6],
        b[7]
    )
}

/// What one network needs on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkWant {
    pub net: MeshNetwork,
    /// The other nodes' IPv4 addresses: the VXLAN device's flood entries.
    pub peers: BTreeSet<Ipv4Addr>,
    /// Every VIP of every service on the network, held on the bridge as /32.
    pub vips: BTreeSet<Ipv4Addr>,
}

/// This node's IPv4 address as the table lists it (the VXLAN device's source), when it lists
/// the node with a usable IPv4 address.
pub fn local_addr(table: Option<&MeshTable>, me: NodeId) -> Option<Ipv4Addr> {
    let node = table?.nodes.iter().find(|n| n.id == me)?;
    match node.addr.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// What this node needs for the networks its tasks are on (`mine`, as the tasks' contexts
/// carry them): each network as the table has it when it lists it, its peers (the table's
/// other nodes, IPv4 only: the VXLAN devices are IPv4) and the VIPs of the services on it.
pub fn wanted(
    table: Option<&MeshTable>,
    me: NodeId,
    mine: &BTreeMap<NetworkId, MeshNetwork>,
) -> BTreeMap<NetworkId, NetworkWant> {
    let local = local_addr(table, me);
    let mut out = BTreeMap::new();
    for (id, net) in mine {
        let mut want = NetworkWant {
            net: net.clone(),
            peers: BTreeSet::new(),
            vips: BTreeSet::new(),
        };
        if let Some(t) = table
            && let Some(at) = t.networks.iter().position(|n| n.id == *id)
        {
            want.net = t.networks[at].clone();
            for n in t.nodes.iter().filter(|n| n.id != me) {
                if let IpAddr::V4(ip) = n.addr.ip()
                    && !ip.is_unspecified()
                    && Some(ip) != local
                {
                    want.peers.insert(ip);
                }
            }
            for s in &t.services {
                for sn in s.networks.iter().filter(|sn| usize::from(sn.network) == at) {
                    if let Some(vip) = sn.vip.filter(|v| contains(&want.net, *v)) {
                        want.vips.insert(vip);
                    }
                }
            }
        }
        out.insert(*id, want);
    }
    out
}

/// Whether `addr` is inside `net`'s subnet.
pub fn contains(net: &MeshNetwork, addr: Ipv4Addr) -> bool {
    let mask = crate::model::prefix_mask(net.prefix);
    u32::from(addr) & mask == u32::from(net.subnet)
}

/// The iptables-restore input of both chains for `nets` (`--noflush`: the chains named are
/// flushed and refilled in one transaction, nothing else is touched).
pub fn rules(nets: &[&MeshNetwork], vip_port: Option<u16>) -> String {
    let mut text = format!("*filter\n:{FORWARD_CHAIN} - [0:0]\n");
    for n in nets {
        let br = bridge_name(n.id);
        text.push_str(&format!("-A {FORWARD_CHAIN} -i {br} -o {br} -j ACCEPT\n"));
        text.push_str(&format!("-A {FORWARD_CHAIN} -o {br} -j DROP\n"));
        if n.internal {
            text.push_str(&format!("-A {FORWARD_CHAIN} -i {br} -j DROP\n"));
        }
    }
    text.push_str(&format!("COMMIT\n*nat\n:{VIP_CHAIN} - [0:0]\n"));
    if let Some(port) = vip_port {
        for n in nets {
            text.push_str(&format!(
                "-A {VIP_CHAIN} -i {} -p tcp -m addrtype --dst-type LOCAL ! -d {}/32 -j REDIRECT --to-ports {port}\n",
                bridge_name(n.id),
                n.gateway
            ));
        }
    }
    text.push_str("COMMIT\n");
    text
}

/// Where the commands run: this process's network namespace, or a named one (`ip netns exec`;
/// tests make "nodes" that way).
#[derive(Clone, Debug, Default)]
pub struct Host {
    netns: Option<String>,
}

impl Host {
    /// Commands run in the named network namespace.
    pub fn in_namespace(name: &str) -> Host {
        Host {
            netns: Some(name.to_string()),
        }
    }

    /// Runs `program args` (in the namespace), with `stdin`, within the deadline; its
    /// standard output, or what it said on failure.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, String)],
        stdin: Option<&str>,
    ) -> Result<String, String> {
        let cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        let what = format!("{program} {}", args.join(" "));
        let out = output_within(cmd, &what, args, env, stdin).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(failure(&what, out.status, &text, OUTPUT_BYTES_MAX))
    }

    async fn ip(&self, args: &[&str]) -> Result<(), String> {
        self.run("ip", args, &[], None).await.map(|_| ())
    }
}

/// What this node made, as it made it.
#[derive(Default)]
struct Made {
    nets: BTreeMap<NetworkId, NetworkWant>,
    /// The rules last applied (rewritten only when they change).
    rules: Option<String>,
    /// The jumps into our chains are in place.
    jumps: bool,
}

/// The node's overlay devices and rules. Cheap to clone; the clones share what was made, and
/// calls are serialized.
#[derive(Clone)]
pub struct Overlays {
    host: Host,
    /// The routing mesh's VIP listener port (None: VIPs answer ARP and ping but nothing is
    /// redirected).
    vip_port: Option<u16>,
    made: Arc<tokio::sync::Mutex<Made>>,
}

impl Overlays {
    pub fn new(host: Host, vip_port: Option<u16>) -> Overlays {
        Overlays {
            host,
            vip_port,
            made: Arc::default(),
        }
    }

    /// Removes the overlay bridges and VXLAN devices of this host that earlier runs left and
    /// empties our chains (this run has made nothing yet). A bridge with a task's veth still
    /// on it belongs to a live node (several nodes in one network namespace): it is left, with
    /// its VXLAN device and the chains, with a warning. Best effort.
    pub async fn sweep(&self) {
        let made = self.made.lock().await;
        assert!(made.nets.is_empty(), "a sweep after networks were made");
        let Ok(links) = self
            .host
            .run("ip", &["-o", "link", "show"], &[], None)
            .await
        else {
            return; // no `ip`: nothing of ours can be there either
        };
        // (name, its master bridge) of every link.
        let links: Vec<(String, Option<String>)> = links
            .lines()
            .take(LINKS_SCAN_MAX)
            .filter_map(|line| {
                let name = line.split(": ").nth(1)?.split('@').next()?.to_string();
                let words: Vec<&str> = line.split_whitespace().collect();
                let master = words
                    .windows(2)
                    .find(|w| w[0] == "master")
                    .map(|w| w[1].to_string());
                Some((name, master))
            })
            .collect();
        let mut live = false;
        for (bridge, _) in links.iter().filter(|(n, _)| n.starts_with(BRIDGE_PREFIX)) {
            let ports = links
                .iter()
                .filter(|(n, m)| {
                    m.as_deref() == Some(bridge.as_str()) && !n.starts_with(VXLAN_PREFIX)
                })
                .count();
            if ports > 0 {
                warn!(%bridge, "an overlay bridge with tasks on it is on this host: another node runs here, its network is left alone (run one node per host or per network namespace)");
                live = true;
                continue;
            }
            self.delete_leftover(bridge).await;
            for (vx, _) in links.iter().filter(|(n, m)| {
                n.starts_with(VXLAN_PREFIX) && m.as_deref() == Some(bridge.as_str())
            }) {
                self.delete_leftover(vx).await;
            }
        }
        for (vx, _) in links
            .iter()
            .filter(|(n, m)| n.starts_with(VXLAN_PREFIX) && m.is_none())
        {
            self.delete_leftover(vx).await;
        }
        let ours = self
            .host
            .run("iptables", &["-S", FORWARD_CHAIN], &[], None)
            .await;
        if ours.is_ok()
            && !live
            && let Err(why) = self.restore(&rules(&[], None)).await
        {
            warn!(%why, "emptying the overlay networks' iptables chains failed");
        }
    }

    async fn delete_leftover(&self, link: &str) {
        match self.host.ip(&["link", "delete", link]).await {
            Ok(()) => info!(%link, "removed an overlay device an earlier run left"),
            Err(why) => debug!(%link, %why, "a leftover overlay device was not removed"),
        }
    }

    /// Brings this node's bridges, VXLAN devices, flood entries, VIPs and rules in step with
    /// `wants` (see [`wanted`]), `local` being the node's IPv4 address (the VXLAN source).
    /// Returns the networks that could not be made or updated, with why; what could be done is
    /// done.
    pub async fn sync(
        &self,
        wants: &BTreeMap<NetworkId, NetworkWant>,
        local: Option<Ipv4Addr>,
    ) -> BTreeMap<NetworkId, String> {
        let mut made = self.made.lock().await;
        let mut failed = BTreeMap::new();
        if wants.is_empty() && made.nets.is_empty() {
            return failed;
        }
        let gone: Vec<NetworkId> = made
            .nets
            .keys()
            .filter(|id| !wants.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.remove(id).await;
            made.nets.remove(&id);
        }
        for (id, want) in wants {
            let result = match made.nets.get(id) {
                Some(had) if had.net == want.net => self.update(had, want).await,
                Some(_) => {
                    // The network itself changed (never in practice: networks are immutable),
                    // so it is made again.
                    self.remove(*id).await;
                    made.nets.remove(id);
                    self.create(want, local).await
                }
                None => self.create(want, local).await,
            };
            match result {
                Ok(()) => {
                    made.nets.insert(*id, want.clone());
                }
                Err(why) => {
                    warn!(network = %want.net.name, %why, "overlay network not made");
                    if made.nets.remove(id).is_some() {
                        self.remove(*id).await;
                    }
                    failed.insert(*id, why);
                }
            }
        }
        let nets: Vec<&MeshNetwork> = made.nets.values().map(|w| &w.net).collect();
        let text = rules(&nets, self.vip_port);
        if made.rules.as_deref() != Some(text.as_str()) {
            let applied = async {
                self.restore(&text).await?;
                if !made.jumps {
                    self.jump("filter", "FORWARD", FORWARD_CHAIN).await?;
                    self.jump("nat", "PREROUTING", VIP_CHAIN).await?;
                }
                Ok::<(), String>(())
            }
            .await;
            match applied {
                Ok(()) => {
                    made.jumps = true;
                    made.rules = Some(text);
                }
                Err(why) => {
                    // Without its isolation rules no network is safe to use.
                    warn!(%why, "the overlay networks' iptables rules were not applied");
                    for id in made.nets.keys() {
                        failed.insert(*id, why.clone());
                    }
                }
            }
        }
        failed
    }

    /// The networks made on this node, by ID.
    pub async fn networks(&self) -> Vec<NetworkId> {
        self.made.lock().await.nets.keys().copied().collect()
    }

    async fn restore(&self, text: &str) -> Result<(), String> {
        self.host
            .run("iptables-restore", &["--noflush"], &[], Some(text))
            .await
            .map(|_| ())
    }

    /// Puts a jump to `chain` at the top of `table`'s `from`, unless one is there.
    async fn jump(&self, table: &str, from: &str, chain: &str) -> Result<(), String> {
        let check = ["-t", table, "-C", from, "-j", chain];
        if self.host.run("iptables", &check, &[], None).await.is_ok() {
            return Ok(());
        }
        let insert = ["-t", table, "-I", from, "1", "-j", chain];
        self.host
            .run("iptables", &insert, &[], None)
            .await
            .map(|_| ())
    }

    /// Makes the network's bridge (gateway, MAC, VIPs) and VXLAN device (flood entries).
    async fn create(&self, want: &NetworkWant, local: Option<Ipv4Addr>) -> Result<(), String> {
        let n = &want.net;
        let (br, vx) = (bridge_name(n.id), vxlan_name(n.id));
        // A device of the same name from before (a task's CNI call, an earlier run) goes first.
        let _ = self.host.ip(&["link", "delete", &vx]).await; // absent is the usual case
        let _ = self.host.ip(&["link", "delete", &br]).await; // same
        let (vni, port, mtu) = (
            n.vni.to_string(),
            VXLAN_PORT.to_string(),
            OVERLAY_MTU.to_string(),
        );
        let gateway = format!("{}/{}", n.gateway, n.prefix);
        let mac = bridge_mac(n.id);
        let local = local.map(|l| l.to_string());
        let made = async {
            self.host
                .ip(&["link", "add", &br, "type", "bridge"])
                .await?;
            self.host.ip(&["link", "set", &br, "address", &mac]).await?;
            self.host.ip(&["addr", "add", &gateway, "dev", &br]).await?;
            let mut vxlan = vec![
                "link", "add", &vx, "type", "vxlan", "id", &vni, "dstport", &port,
            ];
            if let Some(l) = &local {
                vxlan.extend(["local", l.as_str()]);
            }
            vxlan.push("learning");
            self.host.ip(&vxlan).await?;
            self.host
                .ip(&["link", "set", &vx, "mtu", &mtu, "master", &br, "up"])
                .await?;
            self.host.ip(&["link", "set", &br, "up"]).await?;
            let empty = NetworkWant {
                net: n.clone(),
                peers: BTreeSet::new(),
                vips: BTreeSet::new(),
            };
            self.update(&empty, want).await
        }
        .await;
        if let Err(why) = made {
            self.remove(n.id).await;
            return Err(why);
        }
        info!(network = %n.name, bridge = %br, vni = n.vni, peers = want.peers.len(), "overlay network made on this node");
        Ok(())
    }

    /// Brings flood entries and VIPs from `had` to `want`.
    async fn update(&self, had: &NetworkWant, want: &NetworkWant) -> Result<(), String> {
        let (br, vx) = (bridge_name(want.net.id), vxlan_name(want.net.id));
        let zero = "00:00:00:00:00:00";
        for p in had.peers.difference(&want.peers) {
            let ip = p.to_string();
            let args = ["fdb", "del", zero, "dev", &vx, "dst", &ip];
            if let Err(why) = self.host.run("bridge", &args, &[], None).await {
                debug!(%why, "a flood entry was not removed");
            }
        }
        for p in want.peers.difference(&had.peers) {
            let ip = p.to_string();
            let args = ["fdb", "append", zero, "dev", &vx, "dst", &ip];
            if let Err(why) = self.host.run("bridge", &args, &[], None).await
                && !why.contains("exists")
            {
                return Err(why);
            }
        }
        for v in had.vips.difference(&want.vips) {
            let a = format!("{v}/32");
            if let Err(why) = self.host.ip(&["addr", "del", &a, "dev", &br]).await {
                debug!(%why, "a VIP was not removed");
            }
        }
        for v in want.vips.difference(&had.vips) {
            let a = format!("{v}/32");
            self.host.ip(&["addr", "replace", &a, "dev", &br]).await?;
        }
        Ok(())
    }

    /// Deletes the network's devices (the flood entries, VIPs and gateway go with them).
    async fn remove(&self, id: NetworkId) {
        for link in [vxlan_name(id), bridge_name(id)] {
            match self.host.ip(&["link", "delete", &link]).await {
                Ok(()) => debug!(%link, "overlay device removed"),
                Err(why) => debug!(%link, %why, "an overlay device was not removed"),
            }
        }
    }
}

#[cfg(test)]
#[path = "overlay_tests.rs"]
mod tests;
