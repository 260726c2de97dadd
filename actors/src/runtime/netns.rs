//! A process task's network identity (the routing mesh connects to it).
//!
//! ```text
//!  node's namespace                          task's namespace (swn-<task id>)
//!  ┌───────────────────────────────┐        ┌──────────────────────────────┐
//!  │ bridge swn-<node id prefix>   │  veth  │ eth0  10.255.N.k/24          │
//!  │   10.255.N.1 (gateway)  ◀─────┼────────┼─▶    default via 10.255.N.1  │
//!  └───────────────────────────────┘        │ lo up                        │
//!                                           └──────────────────────────────┘
//! ```
//!
//! As root, with the CNI plugins installed (Debian's `containernetworking-plugins`: `bridge`
//! and `static`), a task the leader gave an address runs in a network namespace of its own:
//! `ip netns add`, then the CNI `bridge` plugin (a veth into the node's bridge, made on first
//! need, with the slice's gateway on it and masquerading out), the task's address by the
//! `static` IPAM plugin, loopback up. The task (and its health checks) join the namespace in
//! the child, before anything else happens there (`setns`), so several tasks of one node can
//! listen on the same port. The bridge is the one the Docker runtime's network of the node
//! uses too ([`bridge_name`]): one slice, one bridge, both runtimes.
//!
//! A task on overlay networks gets one more veth per network (`eth1`, `eth2`… in its spec's
//! order) from the same plugin, into the network's bridge `swo-…` (which the agent made, see
//! [`overlay`](super::overlay)): its address there, no route (eth0 keeps the default route; a
//! task without an ingress address has none), no masquerading, MTU 1450. A task with a DNS
//! server gets its own `resolv.conf` in `/etc/netns/swn-<task>/` (what `ip netns exec` shows),
//! bound over `/etc/resolv.conf` in its mount namespace (see [`mounts`](super::mounts)).
//!
//! Each namespace is recorded in the node's tasks directory (`<task>.net`: the namespace's
//! name and one `<ifname> <configuration>` line per interface) before it is made, so that
//! removing the task, or the node's next start after a crash, runs the plugin's DEL for each
//! and deletes the namespace.
//!
//! Without root or without the plugins the task shares the host's network ([`host_ports`]):
//! the node picks a free port for each target port the service publishes and tells the task
//! through `PORT` (the first target) and `SWARM_PORT_<target>`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tracing::{debug, info, warn};

use super::mounts::{Placeholders, running_as_root, show_files};
use super::user::Credentials;
use super::volumes::Volumes;
use super::{RuntimeError, TaskContext};
use crate::model::{NetworkAttachment, NodeId, PortConfig, TaskId};

/// Deadline of one `ip` or CNI plugin call.
pub const NET_CALL_TIMEOUT_MS: u64 = 10_000;
/// Bytes of a plugin's output kept for an error message.
const PLUGIN_OUTPUT_BYTES_MAX: usize = 4 * 1024;
/// Where named network namespaces live (`ip netns`).
const NETNS_DIR: &str = "/var/run/netns";
/// Where `ip netns exec` looks for a namespace's own `/etc` files.
const NETNS_ETC_DIR: &str = "/etc/netns";
/// Where the CNI plugins are looked for, in order (Debian's package, then upstream's).
const CNI_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// The plugins a task's namespace needs.
const CNI_PLUGINS: [&str; 2] = ["bridge", "static"];
/// The task's end of its veth.
const TASK_IFNAME: &str = "eth0";
/// Record files one leftover sweep looks at.
pub const NET_FILES_MAX: usize = 100_000;
/// Tries to find a port free for both TCP and UDP before giving up.
const PORT_PICK_TRIES: usize = 32;
/// Network interfaces one stale-bridge sweep looks at.
const LINKS_SCAN_MAX: usize = 4_096;

/// The node's bridge: `swn-` and the first 11 characters of its ID (15, the most a Linux
/// interface name may have). The process runtime's CNI plugin and the Docker runtime's network
/// both use it, so a node's tasks of both runtimes share one bridge for the node's slice.
pub fn bridge_name(node: NodeId) -> String {
    let id = node.to_string();
    format!("swn-{}", &id[..11.min(id.len())])
}

/// The directory holding the CNI plugins a task's namespace needs, when this node can give
/// its process tasks namespaces of their own: running as root, with `ip` and the plugins.
pub fn cni_plugins() -> Option<PathBuf> {
    if !running_as_root() || super::process::find_program("ip").is_none() {
        return None;
    }
    CNI_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| CNI_PLUGINS.iter().all(|p| d.join(p).is_file()))
}

/// A task's namespace as it was made (and is to be unmade).
#[derive(Clone, Debug)]
pub(super) struct TaskNet {
    /// `swn-<task id>`, under [`NETNS_DIR`].
    pub name: String,
    task: TaskId,
    /// The CNI calls that made its interfaces, as (interface name, network configuration):
    /// given to ADD in order, to DEL in reverse. `eth0` on the node's ingress bridge when the
    /// task has an ingress address, `eth1`, `eth2`… on its overlay networks' bridges.
    links: Vec<(String, String)>,
    /// `<tasks-dir>/<task>.net`.
    record: PathBuf,
}

impl TaskNet {
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }
}

/// The CNI configuration of a task's veth: the node's bridge, the slice's gateway on it, the
/// task's address from the static IPAM plugin, a default route through the gateway.
fn cni_config(node: NodeId, net: &NetworkAttachment) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("swarm-node-{}", net.network),
        "type": "bridge",
        "bridge": bridge_name(node),
        "isGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "static",
            "addresses": [{
                "address": format!("{}/{}", net.addr, net.prefix),
                "gateway": net.gateway.to_string(),
            }],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })
    .to_string()
}

/// The CNI configuration of a task's veth on an overlay network: the network's bridge (made
/// by [`Overlays`](super::overlay::Overlays) first, its gateway on it), the task's address,
/// no route (the ingress interface keeps the default route; a task without one has none),
/// no masquerading, the overlay's MTU.
pub(super) fn overlay_cni_config(net: &NetworkAttachment, bridge: &str) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("swarm-node-{}", net.network),
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": false,
        "ipMasq": false,
        "mtu": super::overlay::OVERLAY_MTU,
        "ipam": {
            "type": "static",
            "addresses": [{
                "address": format!("{}/{}", net.addr, net.prefix),
                "gateway": net.gateway.to_string(),
            }],
        },
    })
    .to_string()
}

/// The interfaces `ctx`'s namespace gets, as (interface name, CNI configuration).
fn links_of(ctx: &TaskContext) -> Vec<(String, String)> {
    let mut links = Vec::new();
    if let Some(att) = &ctx.network {
        links.push((TASK_IFNAME.to_string(), cni_config(ctx.node_id, att)));
    }
    for (i, o) in ctx.overlays.iter().enumerate() {
        let bridge = super::overlay::bridge_name(o.network.id);
        links.push((
            format!("eth{}", i + 1),
            overlay_cni_config(&o.attachment, &bridge),
        ));
    }
    links
}

/// The `resolv.conf` a task with a DNS server sees: that server, the host's search domains,
/// `ndots:0` (a name with no dot is a service name, asked as it is).
pub(super) fn resolv_conf(dns: std::net::Ipv4Addr) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut text = format!("nameserver {dns}\n");
    for line in host.lines().filter(|l| l.starts_with("search ")).take(1) {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("options ndots:0\n");
    text
}

/// Where `ip netns exec` finds a namespace's own `resolv.conf`; the process runtime binds it
/// over `/etc/resolv.conf` in the task's mount namespace too.
pub(super) fn resolv_path(task: TaskId) -> PathBuf {
    Path::new(NETNS_ETC_DIR)
        .join(format!("swn-{task}"))
        .join("resolv.conf")
}

/// Runs a program with a deadline and an optional standard input; its output on failure.
async fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, String)],
    stdin: Option<&str>,
) -> Result<(), String> {
    let what = format!("{} {}", program.display(), args.join(" "));
    let out = output_within(Command::new(program), &what, args, env, stdin).await?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(failure(&what, out.status, &text, PLUGIN_OUTPUT_BYTES_MAX))
}

/// Runs `cmd` with `args` and `env` added and `stdin` (if any) written to it, and waits for
/// its end within [`NET_CALL_TIMEOUT_MS`]; its output, whatever its status. `what` names the
/// call in the errors. The child is killed if the wait gives up.
pub(super) async fn output_within(
    mut cmd: Command,
    what: &str,
    args: &[&str],
    env: &[(&str, String)],
    stdin: Option<&str>,
) -> Result<std::process::Output, String> {
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| format!("{what}: writing its input: {e}"))?;
        // Dropping the pipe closes it: the program reads to its end.
    }
    tokio::time::timeout(
        Duration::from_millis(NET_CALL_TIMEOUT_MS),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| format!("{what}: no answer within {NET_CALL_TIMEOUT_MS} ms"))?
    .map_err(|e| format!("{what}: {e}"))
}

/// The error of a failed call `what`: its exit status and what it said, trimmed and cut to at
/// most `bytes_max` bytes (on a character boundary).
pub(super) fn failure(
    what: &str,
    status: std::process::ExitStatus,
    said: &str,
    bytes_max: usize,
) -> String {
    let mut cut = said.trim().to_string();
    if cut.len() > bytes_max {
        let mut at = bytes_max;
        while !cut.is_char_boundary(at) {
            at -= 1;
        }
        cut.truncate(at);
    }
    format!("{what}: {status}: {cut}")
}

pub(super) async fn ip(args: &[&str]) -> Result<(), String> {
    run(Path::new("ip"), args, &[], None).await
}

/// Readies the host for `own`, the node's bridge, to carry `att`'s slice:
/// - The node's own bridge, when it still holds another slice's gateway (the node was given
///   a new slice: it was restarted, or it was between tasks while another node took its old
///   one) and nothing is attached to it, is removed, to be made again with the new gateway
///   (the bridge plugin refuses a bridge that has another address).
/// - The other `swn-*` bridges of this host that hold `att`'s gateway and have nothing
///   attached are removed: bridges that earlier nodes left (an earlier cluster on this host, a
///   node started again with a new data dir), whose route to the same slice would take the
///   connections the routing mesh makes to this node's tasks. A bridge with interfaces still
///   attached belongs to a live node (two clusters on one host, in one network namespace): it
///   is left, with a warning, since the host then has two routes to one subnet.
pub(super) async fn clear_stale_bridges(own: &str, att: &NetworkAttachment) {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    let gateway = format!("inet {}/{} ", att.gateway, att.prefix);
    for entry in entries.take(LINKS_SCAN_MAX).flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("swn-") || !entry.path().join("bridge").exists() {
            continue;
        }
        let Some(shown) = ipv4_of(&name).await else {
            continue;
        };
        let holds_gateway = shown.contains(&gateway);
        // The own bridge matters only when it holds another slice; another node's, only when
        // it holds this one.
        let stale = if name == own {
            shown.contains("inet ") && !holds_gateway
        } else {
            holds_gateway
        };
        if !stale {
            continue;
        }
        let attached = std::fs::read_dir(entry.path().join("brif"))
            .map(|d| d.count())
            .unwrap_or(0);
        if attached > 0 {
            if name == own {
                warn!(bridge = %name, %gateway, "this node's bridge holds another slice and interfaces are still attached to it: the task cannot get its address here until they go");
            } else {
                warn!(bridge = %name, %gateway, "another node's bridge on this host holds the same slice: the host has two routes to it, and the routing mesh may not reach this node's tasks (run one node per host or per network namespace)");
            }
            continue;
        }
        match ip(&["link", "delete", &name]).await {
            Ok(()) if name == own => {
                info!(bridge = %name, %gateway, "this node's bridge held another slice: removed, to be made again with the new one")
            }
            Ok(()) => {
                info!(bridge = %name, "removed a bridge an earlier node left with this node's slice")
            }
            // Another task of this node may have removed it meanwhile.
            Err(why) => debug!(bridge = %name, %why, "a stale bridge was not removed"),
        }
    }
}

/// The IPv4 addresses of interface `name`, as `ip -4 -o addr show` prints them; `None` when
/// the call fails or does not end within [`NET_CALL_TIMEOUT_MS`].
async fn ipv4_of(name: &str) -> Option<String> {
    let shown = tokio::time::timeout(
        Duration::from_millis(NET_CALL_TIMEOUT_MS),
        Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", name])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let Ok(Ok(out)) = shown else { return None };
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Calls the bridge plugin with `command` (ADD or DEL) for `net`'s interface `ifname`.
async fn cni(
    plugins: &Path,
    command: &str,
    net: &TaskNet,
    ifname: &str,
    config: &str,
) -> Result<(), String> {
    let env = [
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", net.task.to_string()),
        ("CNI_NETNS", net.path().display().to_string()),
        ("CNI_IFNAME", ifname.to_string()),
        ("CNI_PATH", plugins.display().to_string()),
    ];
    run(&plugins.join("bridge"), &[], &env, Some(config)).await
}

/// The record of `net`: its name, then one `<ifname> <config>` line per interface.
fn record_text(net: &TaskNet) -> String {
    let mut text = format!("{}\n", net.name);
    for (ifname, config) in &net.links {
        text.push_str(&format!("{ifname} {config}\n"));
    }
    text
}

/// The interfaces a record lists; a line that is a bare configuration (records of earlier
/// versions) is `eth0`'s.
fn record_links(lines: &str) -> Vec<(String, String)> {
    lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(' ') {
            Some((ifname, config)) if !l.starts_with('{') => {
                (ifname.to_string(), config.to_string())
            }
            _ => (TASK_IFNAME.to_string(), l.to_string()),
        })
        .collect()
}

/// Makes `ctx`'s namespace with its ingress address on the node's bridge and its address on
/// each overlay network's bridge, and its `resolv.conf` when it has a DNS server. On failure
/// nothing is left.
pub(super) async fn attach(
    plugins: &Path,
    tasks_dir: &Path,
    ctx: &TaskContext,
) -> Result<TaskNet, RuntimeError> {
    let net = TaskNet {
        name: format!("swn-{}", ctx.task_id),
        task: ctx.task_id,
        links: links_of(ctx),
        record: tasks_dir.join(format!("{}.net", ctx.task_id)),
    };
    // Recorded first: a node that dies half-way still finds what to undo at its next start.
    std::fs::write(&net.record, record_text(&net))
        .map_err(|e| RuntimeError::Failed(format!("writing {}: {e}", net.record.display())))?;
    if let Some(att) = &ctx.network {
        clear_stale_bridges(&bridge_name(ctx.node_id), att).await;
    }
    let made = async {
        ip(&["netns", "add", &net.name]).await?;
        ip(&["-n", &net.name, "link", "set", "lo", "up"]).await?;
        for (ifname, config) in &net.links {
            cni(plugins, "ADD", &net, ifname, config).await?;
        }
        if let Some(dns) = ctx.dns {
            let path = resolv_path(ctx.task_id);
            let dir = path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, resolv_conf(dns)))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(why) = made {
        detach(plugins, &net).await;
        let addrs: Vec<String> = ctx
            .network
            .iter()
            .chain(ctx.overlays.iter().map(|o| &o.attachment))
            .map(|a| format!("{}/{} on {}", a.addr, a.prefix, a.network))
            .collect();
        return Err(RuntimeError::Failed(format!(
            "giving the task its addresses ({}): {why}",
            addrs.join(", ")
        )));
    }
    debug!(task = %ctx.task_id, netns = %net.name, links = net.links.len(), "task network made");
    Ok(net)
}

/// Undoes [`attach`]: the plugin's DEL (veth and masquerading rules), then the namespace and
/// its record. Failures are logged: what is left is retried at the node's next start only if
/// the record could not be removed.
pub(super) async fn detach(plugins: &Path, net: &TaskNet) {
    if net.path().exists() {
        for (ifname, config) in net.links.iter().rev() {
            if let Err(why) = cni(plugins, "DEL", net, ifname, config).await {
                warn!(netns = %net.name, %ifname, %why, "removing a task's veth failed");
            }
        }
        if let Err(why) = ip(&["netns", "delete", &net.name]).await {
            warn!(netns = %net.name, %why, "deleting a task's network namespace failed");
            return; // the record stays, so the next start tries again
        }
    }
    let etc = resolv_path(net.task);
    if let Some(dir) = etc.parent()
        && let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "removing a task's resolv.conf failed");
    }
    if let Err(e) = std::fs::remove_file(&net.record)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(file = %net.record.display(), error = %e, "removing a network record failed");
    }
}

/// Undoes the namespaces a previous run of this node recorded in `tasks_dir`, except those of
/// `keep` (this run's own). Returns the tasks whose namespace was removed.
pub(super) async fn clean_leftovers(
    plugins: Option<&Path>,
    tasks_dir: &Path,
    keep: &std::collections::BTreeSet<TaskId>,
) -> Vec<TaskId> {
    let Ok(entries) = std::fs::read_dir(tasks_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.take(NET_FILES_MAX).flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("net") {
            continue;
        }
        let Some(task) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<TaskId>().ok())
        else {
            continue;
        };
        if keep.contains(&task) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (name, lines) = text.split_once('\n').unwrap_or((text.trim(), ""));
        if name != format!("swn-{task}") {
            warn!(file = %path.display(), "unreadable network record; removing it");
            let _ = std::fs::remove_file(&path); // it names nothing we could undo
            continue;
        }
        let net = TaskNet {
            name: name.to_string(),
            task,
            links: record_links(lines),
            record: path,
        };
        match plugins {
            Some(p) => detach(p, &net).await,
            // Plugins removed since: the namespace still goes (its veth with it).
            None => {
                let _ = ip(&["netns", "delete", &net.name]).await; // best effort, logged below
                let _ = std::fs::remove_file(&net.record); // same
                warn!(netns = %net.name, "removed a leftover task namespace without the CNI plugins");
            }
        }
        removed.push(task);
    }
    removed.sort();
    removed
}

/// Makes `cmd`'s child join the network namespace `netns` (an open `/var/run/netns/<name>`),
/// then take `user`'s ids (joining needs root, so std must not have dropped it before: the
/// caller passes `None` to the spawn). Registered before the mount namespace's set-up, which
/// sets the ids itself when the task has files.
///
/// `unsafe` because the closure runs in the forked child of a threaded process: it calls only
/// `setns`, which is async-signal-safe, and allocates nothing.
#[allow(unsafe_code)]
pub(super) fn join(cmd: &mut std::process::Command, netns: std::fs::File) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // SAFETY: see above.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes `user`'s ids in the child, after every namespace was joined (see [`join`]).
///
/// `unsafe` as [`join`]: it calls only [`take_ids`](super::mounts::take_ids).
#[allow(unsafe_code)]
pub(super) fn become_user(cmd: &mut std::process::Command, user: Credentials) {
    use std::os::unix::process::CommandExt;
    // SAFETY: see above.
    unsafe {
        cmd.pre_exec(move || super::mounts::take_ids(user));
    }
}

/// Opens a task's namespace to join it.
pub(super) fn open(net: &TaskNet) -> Result<std::fs::File, RuntimeError> {
    std::fs::File::open(net.path())
        .map_err(|e| RuntimeError::Failed(format!("opening {}: {e}", net.path().display())))
}

/// The network namespaces of a runtime's tasks that have one, until their process exits.
pub(super) type Nets = std::sync::Arc<std::sync::Mutex<BTreeMap<TaskId, TaskNet>>>;

/// The CNI plugins' directory when this node can give its tasks network namespaces; says once,
/// when it cannot, how tasks are networked instead.
pub(super) fn network_isolation() -> Option<PathBuf> {
    let found = cni_plugins();
    match (&found, running_as_root()) {
        (Some(dir), _) => {
            info!(plugins = %dir.display(), "process tasks get network namespaces of their own")
        }
        (None, true) => warn!(
            "the CNI plugins (bridge, static) or `ip` are missing: process tasks share the \
             host's network, their target ports remapped (PORT, SWARM_PORT_<target>); install \
             containernetworking-plugins and iproute2 to give each task its own address"
        ),
        (None, false) => info!(
            "not running as root: process tasks share the host's network, their target ports \
             remapped (PORT, SWARM_PORT_<target>)"
        ),
    }
    found
}

/// Arranges the child's namespaces: the task's network namespace when it has one, then its
/// files' mount namespace (as root). Returns the ids std is still to set; when a namespace is
/// joined, they are set in the child after it (joining needs root) and `None` is returned.
pub(super) fn enter_namespaces(
    cmd: &mut Command,
    ctx: &TaskContext,
    user: Option<Credentials>,
    net: Option<&TaskNet>,
    placeholders: Option<&Placeholders>,
    volumes: &Volumes,
) -> Result<Option<Credentials>, RuntimeError> {
    let Some(net) = net else {
        return show_files(cmd.as_std_mut(), ctx, user, placeholders, volumes);
    };
    join(cmd.as_std_mut(), open(net)?);
    if let Some(user) = show_files(cmd.as_std_mut(), ctx, user, placeholders, volumes)? {
        become_user(cmd.as_std_mut(), user);
    }
    Ok(None)
}

/// A task's network goes when its process has: the mesh stops choosing it, and its namespace
/// (which holds nothing but the veth by then) is removed, freeing the address.
pub(super) async fn release_network(
    nets: &Nets,
    cni: Option<&Path>,
    endpoints: &super::Endpoints,
    task: TaskId,
) {
    endpoints.clear(task);
    let net = nets.lock().expect("nets lock").remove(&task);
    if let (Some(net), Some(plugins)) = (net, cni) {
        detach(plugins, &net).await;
    }
}

/// For a task sharing the host's network: a free port for each target port of `ports` (free
/// for TCP and UDP alike, so a target published with both protocols gets one), target →
/// picked. The ports are free when picked; the task is expected to bind them at once.
pub fn host_ports(ports: &[PortConfig]) -> Result<BTreeMap<u16, u16>, RuntimeError> {
    let mut picked = BTreeMap::new();
    for p in ports {
        if picked.contains_key(&p.target) {
            continue;
        }
        let port = free_port().ok_or_else(|| {
            RuntimeError::Failed(format!("no free port for target port {}", p.target))
        })?;
        picked.insert(p.target, port);
    }
    Ok(picked)
}

/// A port the kernel hands out that is free for TCP and for UDP on every address.
fn free_port() -> Option<u16> {
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};
    for _ in 0..PORT_PICK_TRIES {
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return Some(port);
        }
    }
    None
}

/// The variables that tell a task sharing the host's network which ports to listen on:
/// `PORT` (the first target's) and `SWARM_PORT_<target>` for each.
pub fn port_env(ports: &[PortConfig], picked: &BTreeMap<u16, u16>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(first) = ports.first().and_then(|p| picked.get(&p.target)) {
        env.push(("PORT".to_string(), first.to_string()));
    }
    for (target, port) in picked {
        env.push((format!("SWARM_PORT_{target}"), port.to_string()));
    }
    env
}

#[cfg(test)]
#[path = "netns_tests.rs"]
mod tests;
