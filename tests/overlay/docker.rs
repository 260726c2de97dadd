//! The Docker runtime on an overlay network: one node in this namespace of the machine (where
//! the engine's bridges are; the lab's nodes live in namespaces of their own, which the
//! engine's containers are not in), the test image's `httpd` as `dweb` (2 replicas) and
//! `dutil` on the network. From inside `dutil`'s container, through the container's resolver
//! (the engine's, which forwards to the node's DNS server): `dweb` is the VIP, HTTP through
//! it reaches both replicas, `tasks.dweb` gives both task addresses, and a task that stops
//! leaves `tasks.dweb`.

use super::*;
use swarm_actors::runtime::testimage::TEST_IMAGE;

/// The node's port; the overlay network's subnet (away from the lab's and the defaults).
const PORT: u16 = 29251;
const SUBNET: &str = "10.81.0.0/24";

/// Runs `args` in `container` through the image's busybox (10 s limit).
fn exec(container: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["10", "docker", "exec", container, "busybox"])
        .args(args)
        .output()
        .expect("docker CLI runs")
}

/// The container of task `task` (named `<service>.<slot>.<task id>`).
fn container_of(task: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!(
            "label={}={task}",
            swarm_actors::runtime::LABEL_TASK
        ))
        .output()
        .expect("docker CLI runs");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!id.is_empty(), "task {task} has a running container");
    id
}

/// The addresses busybox `nslookup` gives for `name` from inside `container`, sorted.
fn lookup(container: &str, name: &str) -> BTreeSet<String> {
    let out = exec(container, &["nslookup", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    // busybox prints the server first ("Server: …", "Address: …#53"), then the answers.
    text.split("Name:")
        .skip(1)
        .flat_map(|answer| {
            answer
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `svc`'s running tasks: task ID → its address on the overlay network.
fn task_addresses(n: &common::Node, svc: &str) -> BTreeMap<String, String> {
    let rows = n.service_ps(svc);
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| common::task_state(r) == "Running") {
        let id = r["ID"].as_str().unwrap_or_default().to_string();
        let doc = n.ok(&["network", "inspect", "dnet"]);
        let docs: Value = serde_json::from_str(&doc).unwrap();
        let full = docs[0]["Containers"]
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.starts_with(&id)))
            .map(|(_, v)| v["IPv4Address"].as_str().unwrap_or("").to_string());
        if let Some(addr) = full {
            out.insert(id, addr.split('/').next().unwrap().to_string());
        }
    }
    out
}

/// Removes what a node of an earlier run, killed, left in this namespace: its containers
/// (the engine keeps them), their engine networks and the overlay devices they hold.
fn clear_leftovers() {
    let sh = |script: &str| {
        let _ = Command::new("sh").args(["-c", script]).status();
    };
    sh(&format!(
        "docker ps -aq --filter label={} | xargs -r docker rm -f >/dev/null",
        swarm_actors::runtime::LABEL_NODE
    ));
    sh("docker network ls -q --filter name=swarm-ovl- | xargs -r docker network rm >/dev/null");
    sh(
        "for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^sw[vo]-'); do ip link delete $l; done",
    );
}

#[test]
fn docker_tasks_find_and_reach_a_service_by_name_on_an_overlay_network() {
    let _alone = common::host_netns_alone();
    let _lock = fixture::one_at_a_time();
    if skip(
        "docker_tasks_find_and_reach_a_service_by_name_on_an_overlay_network",
        true,
    ) {
        return;
    }
    clear_leftovers();
    let root = tempfile::tempdir().unwrap();
    let n = common::Node::bootstrap(root.path(), "d1", PORT);
    phase(
        "network create --driver overlay dnet; dweb (2 replicas) and dutil on it, Docker runtime",
    );
    n.ok(&[
        "network", "create", "--driver", "overlay", "--subnet", SUBNET, "dnet",
    ]);
    let httpd = "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 80 -h /w";
    n.ok(&[
        "service",
        "create",
        "--name",
        "dweb",
        "--replicas",
        "2",
        "--network",
        "dnet",
        "--stop-grace-period",
        "1s",
        TEST_IMAGE,
        "sh",
        "-c",
        httpd,
    ]);
    n.ok(&[
        "service",
        "create",
        "--name",
        "dutil",
        "--network",
        "dnet",
        "--stop-grace-period",
        "1s",
        TEST_IMAGE,
        "sleep",
        "100000",
    ]);
    let mut web = BTreeMap::new();
    let ok = wait_until(LIMIT, || {
        web = task_addresses(&n, "dweb");
        web.len() == 2 && task_addresses(&n, "dutil").len() == 1
    });
    assert!(
        ok,
        "dweb's 2 tasks and dutil's run with addresses: {web:?}\n{}",
        n.logs()
    );
    let util_task = task_addresses(&n, "dutil").into_keys().next().unwrap();
    let util = container_of(&util_task);
    for addr in web.values() {
        assert!(addr.starts_with("10.81.0."), "{addr} is on dnet");
    }

    phase("dweb resolves to its VIP; HTTP through it reaches both replicas");
    let doc = n.service_inspect("dweb").unwrap();
    let vip = doc["Endpoint"]["VirtualIPs"][0]["Addr"].as_str().unwrap();
    let vip = vip.split('/').next().unwrap().to_string();
    let mut got = BTreeSet::new();
    let ok = wait_until(LIMIT, || {
        got = lookup(&util, "dweb");
        got == BTreeSet::from([vip.clone()])
    });
    assert!(ok, "dweb from dutil: {got:?}, want the VIP {vip}");
    let hostnames: BTreeSet<String> = web
        .keys()
        .map(|t| container_of(t)[..12].to_string())
        .collect();
    let mut seen = BTreeSet::new();
    let ok = wait_until(LIMIT, || {
        for _ in 0..20 {
            // busybox-static's wget crashes in this image; nc speaks HTTP/1.0 as well.
            let get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 dweb 80";
            let out = exec(&util, &["sh", "-c", get]);
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(body) = text.split("\r\n\r\n").nth(1) {
                seen.insert(body.trim().to_string());
            }
        }
        seen == hostnames
    });
    assert!(ok, "replies through the VIP {seen:?}, want {hostnames:?}");

    phase("tasks.dweb gives both task addresses; a stopped task leaves it");
    let want: BTreeSet<String> = web.values().cloned().collect();
    let ok = wait_until(LIMIT, || {
        got = lookup(&util, "tasks.dweb");
        got == want
    });
    assert!(ok, "tasks.dweb: {got:?}, want {want:?}");
    n.ok(&["service", "scale", "dweb=1"]);
    let ok = wait_until(LIMIT, || {
        got = lookup(&util, "tasks.dweb");
        got.len() == 1 && got.is_subset(&want)
    });
    assert!(ok, "tasks.dweb after scaling to 1: {got:?}");

    for svc in ["dutil", "dweb"] {
        n.ok(&["service", "rm", svc]);
    }
    let id = n.id();
    let gone = wait_until(LIMIT, || {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label={}={id}", swarm_actors::runtime::LABEL_NODE))
            .output()
            .expect("docker CLI runs");
        out.stdout.trim_ascii().is_empty()
    });
    assert!(gone, "service rm left containers");
    n.ok(&["network", "rm", "dnet"]);

    phase("network rm: the node removes the network's engine network and overlay devices");
    let mut left = String::new();
    let cleared = wait_until(LIMIT, || {
        let sh = |script: &str| {
            let out = Command::new("sh").args(["-c", script]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        left = sh("docker network ls --format '{{.Name}}' --filter name=swarm-ovl-")
            + &sh("ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^sw[vo]-'");
        left.trim().is_empty()
    });
    assert!(cleared, "left after network rm: {left}");
}
