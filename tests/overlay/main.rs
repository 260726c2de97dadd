//! End-to-end tests of overlay networks, VIPs and service discovery: three real `swarm-node`
//! processes, each in its own network namespace (the mesh tests' lab, on its own /24 and
//! namespace prefix), whose tasks reach each other across nodes only through the nodes' lab
//! addresses (VXLAN between the nodes).
//!
//! Every probe runs inside a task's own network and mount namespaces (`nsenter` with one of
//! the task's processes), as a program in the task would: it sees the task's
//! `/etc/resolv.conf`, so names resolve through the node's DNS server exactly as they do for
//! the task. Names are
//! resolved with Python's `socket` (the C library's resolver), HTTP with curl.
//!
//! Needs root, `ip netns`, iptables, curl and python3; without them each test skips with the
//! reason, or fails under `CI=true`. One test at a time (the lab's lock). Node ports 29201.

// Tests run real processes in real time: clocks and sleeps are theirs to use.
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../mesh/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../mesh/lab.rs"]
mod lab;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Instant;

use common::cluster_lab::{get, in_task, resolve, task_pids};
use common::{phase, wait_until};
use fixture::{LIMIT, Mesh, REQUESTS, httpd_script, skip};
use lab::LabNet;
use serde_json::Value;

const NET: LabNet = LabNet {
    prefix: "swov-",
    octets: [10, 78, 0],
    port: 29201,
};

/// The one running task of `svc`.
fn only_task(m: &Mesh, svc: &str) -> String {
    m.wait_running(svc, 1).into_iter().next().unwrap()
}

/// `svc`'s VIP on its first network, from `service inspect`.
fn vip(m: &Mesh, svc: &str) -> String {
    let doc = m.n1().service_inspect(svc).unwrap();
    let addr = doc["Endpoint"]["VirtualIPs"][0]["Addr"].as_str();
    let addr = addr.unwrap_or_else(|| panic!("{svc} has a VIP: {doc}"));
    addr.split('/').next().unwrap().to_string()
}

/// Waits until `name` resolves, from `task`, to exactly `want`; how long it took.
fn wait_resolves(task: &str, name: &str, want: &BTreeSet<String>) -> std::time::Duration {
    let start = Instant::now();
    let mut got = Vec::new();
    let ok = wait_until(LIMIT, || {
        got = resolve(task, name);
        got.iter().cloned().collect::<BTreeSet<_>>() == *want
    });
    assert!(ok, "{name} from task {task}: {got:?}, want {want:?}");
    start.elapsed()
}

/// Waits until [`REQUESTS`] requests in a row from `task` to `url` all succeed and the replies
/// come from exactly `want`.
fn wait_replies(task: &str, url: &str, want: &BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let mut failed = 0;
    let ok = wait_until(LIMIT, || {
        seen.clear();
        failed = 0;
        for _ in 0..REQUESTS {
            match get(task, url) {
                Some(body) => {
                    seen.insert(body);
                }
                None => failed += 1,
            }
        }
        failed == 0 && seen == *want
    });
    assert!(
        ok,
        "{url} from {task}: {failed} of {REQUESTS} failed; replies {seen:?}, want {want:?}"
    );
}

/// The tutorial's step 8: an overlay network, `my_web` (3 replicas, spread) and `util` on it;
/// from inside `util`, `my_web` is the VIP and answers from every replica, `tasks.my_web` the
/// three task addresses, `my_web.<slot>.<task id>` one task.
#[test]
fn the_tutorials_overlay_step() {
    if skip("the_tutorials_overlay_step", false) {
        return;
    }
    let m = Mesh::form(NET);
    phase("network create --driver overlay --subnet 10.0.9.0/24 myapp_net");
    m.n1().ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.0.9.0/24",
        "myapp_net",
    ]);
    let ls = m.n1().ok(&["network", "ls"]);
    assert!(ls.contains("myapp_net") && ls.contains("ingress"), "{ls}");
    assert_eq!(
        m.network("myapp_net")["IPAM"]["Config"][0]["Subnet"],
        "10.0.9.0/24"
    );

    phase("my_web: 3 replicas on myapp_net; util on n3");
    let script = httpd_script(&m.www());
    m.create(
        "my_web",
        "--runtime process --replicas 3 --network myapp_net",
        &[],
        &["sh", "-c", &script],
    );
    m.create(
        "util",
        "--runtime process --network myapp_net --constraint node.hostname==n3",
        &[],
        &["busybox", "sleep", "10000000"],
    );
    let web = m.wait_running("my_web", 3);
    let util = only_task(&m, "util");
    let rows = m.running("my_web");
    let nodes: BTreeSet<&str> = rows.values().filter_map(|r| r["Node"].as_str()).collect();
    assert!(nodes.len() >= 2, "the replicas are spread: {rows:?}");

    phase("my_web resolves to its VIP; ping and HTTP through it reach every replica");
    let vip = vip(&m, "my_web");
    assert!(vip.starts_with("10.0.9."), "VIP {vip} is on myapp_net");
    wait_resolves(&util, "my_web", &BTreeSet::from([vip.clone()]));
    let ping = in_task(&util, &["busybox", "ping", "-c", "1", "-W", "2", &vip]);
    assert!(ping.status.success(), "ping {vip}: {ping:?}");
    wait_replies(&util, "http://my_web/", &web);

    phase("tasks.my_web: the three task addresses; my_web.<slot>.<id>: one task");
    let addrs = m.addresses("myapp_net");
    let web_addrs: BTreeSet<String> = web.iter().map(|id| addrs[id].clone()).collect();
    assert_eq!(web_addrs.len(), 3, "{addrs:?}");
    assert!(!web_addrs.contains(&vip), "no task holds the VIP");
    wait_resolves(&util, "tasks.my_web", &web_addrs);
    let (id, row) = rows.iter().next().unwrap();
    let name = format!("{}.{id}", row["Name"].as_str().unwrap());
    wait_resolves(&util, &name, &BTreeSet::from([addrs[id].clone()]));
    let direct = format!("http://{}/", addrs[id]);
    assert_eq!(get(&util, &direct).as_deref(), Some(id.as_str()));

    phase("network rm is refused while my_web uses it; allowed once nothing does");
    let out = m.n1().cli(&["network", "rm", "myapp_net"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "network rm of a used network");
    assert!(err.contains("my_web") || err.contains("util"), "{err}");
    m.n1().ok(&["service", "rm", "my_web", "util"]);
    let removed = wait_until(LIMIT, || {
        m.n1().cli(&["network", "rm", "myapp_net"]).status.success()
    });
    assert!(removed, "network rm once no service uses it");
    assert!(!m.n1().ok(&["network", "ls"]).contains("myapp_net"));
}

/// dnsrr answers the task addresses; another network's tasks see neither the name nor the
/// addresses; an internal network has no route out.
#[test]
fn dnsrr_isolation_and_internal_networks() {
    if skip("dnsrr_isolation_and_internal_networks", false) {
        return;
    }
    let m = Mesh::form(NET);
    phase("networks front, other and back (internal)");
    for args in [&["front"][..], &["other"][..], &["--internal", "back"][..]] {
        let mut a = vec!["network", "create", "--driver", "overlay"];
        a.extend_from_slice(args);
        m.n1().ok(&a);
    }
    let script = httpd_script(&m.www());
    m.create(
        "rr",
        "--runtime process --replicas 2 --endpoint-mode dnsrr --network front \
         --constraint node.hostname!=n1",
        &[],
        &["sh", "-c", &script],
    );
    let sleeper = ["busybox", "sleep", "10000000"];
    m.create(
        "probe",
        "--runtime process --network front --constraint node.hostname==n1",
        &[],
        &sleeper,
    );
    m.create(
        "stranger",
        "--runtime process --network other --constraint node.hostname==n1",
        &[],
        &sleeper,
    );
    m.create(
        "locked",
        "--runtime process --network back --constraint node.hostname==n2",
        &[],
        &sleeper,
    );
    let rr = m.wait_running("rr", 2);
    let (probe, stranger, locked) = (
        only_task(&m, "probe"),
        only_task(&m, "stranger"),
        only_task(&m, "locked"),
    );

    phase("dnsrr: rr answers the two task addresses, no VIP; both replicas reply");
    let addrs = m.addresses("front");
    let rr_addrs: BTreeSet<String> = rr.iter().map(|id| addrs[id].clone()).collect();
    wait_resolves(&probe, "rr", &rr_addrs);
    let doc = m.n1().service_inspect("rr").unwrap();
    let vips = doc["Endpoint"]["VirtualIPs"].as_array().map_or(0, Vec::len);
    assert_eq!(vips, 0, "dnsrr has no VIP: {doc}");
    for a in &rr_addrs {
        assert!(
            get(&probe, &format!("http://{a}/")).is_some(),
            "{a} from probe"
        );
    }

    phase("another network's task resolves nothing of front and reaches none of it");
    assert!(resolve(&stranger, "rr").is_empty());
    assert!(resolve(&stranger, "tasks.rr").is_empty());
    for a in &rr_addrs {
        assert!(
            get(&stranger, &format!("http://{a}/")).is_none(),
            "{a} reached from another network"
        );
    }

    phase("internal: no route out; the non-internal task reaches a node's lab address");
    let outside = m.lab.slot("n3").addr.ip().to_string();
    let ping = |task: &str| {
        in_task(task, &["busybox", "ping", "-c", "1", "-W", "2", &outside])
            .status
            .success()
    };
    assert!(ping(&probe), "probe reaches {outside}");
    assert!(
        !ping(&locked),
        "an internal network's task reached {outside}"
    );
}

/// A scale-down and a task's death leave `tasks.<name>` and the VIP's rotation; prints how
/// long each took.
#[test]
fn scale_and_task_death_show_in_dns_and_the_vip() {
    if skip("scale_and_task_death_show_in_dns_and_the_vip", false) {
        return;
    }
    let m = Mesh::form(NET);
    m.n1()
        .ok(&["network", "create", "--driver", "overlay", "appnet"]);
    let script = httpd_script(&m.www());
    m.create(
        "app",
        "--runtime process --replicas 3 --network appnet",
        &[],
        &["sh", "-c", &script],
    );
    m.create(
        "client",
        "--runtime process --network appnet --constraint node.hostname==n1",
        &[],
        &["busybox", "sleep", "10000000"],
    );
    let app = m.wait_running("app", 3);
    let client = only_task(&m, "client");
    let addrs = m.addresses("appnet");
    let all: BTreeSet<String> = app.iter().map(|id| addrs[id].clone()).collect();
    wait_resolves(&client, "tasks.app", &all);
    wait_replies(&client, "http://app/", &app);

    phase("scale app to 2: tasks.app and the VIP follow");
    m.n1().ok(&["service", "scale", "-d", "app=2"]);
    let start = Instant::now();
    let kept = m.wait_running("app", 2);
    let kept_addrs: BTreeSet<String> = kept.iter().map(|id| addrs[id].clone()).collect();
    let took = wait_resolves(&client, "tasks.app", &kept_addrs);
    println!(
        "scale-down: {} ms from `service scale` to tasks.app without the removed task \
         ({} ms after its task stopped running)",
        start.elapsed().as_millis(),
        took.as_millis()
    );
    wait_replies(&client, "http://app/", &kept);

    phase("a task's process is killed: it leaves tasks.app");
    let victim = kept.iter().next().unwrap().clone();
    let pids = task_pids(&victim);
    assert!(!pids.is_empty(), "task {victim} has processes");
    let start = Instant::now();
    for pid in pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let gone = wait_until(LIMIT, || {
        !resolve(&client, "tasks.app").contains(&addrs[&victim])
    });
    assert!(gone, "the killed task left tasks.app");
    println!(
        "task death: {} ms from SIGKILL to tasks.app without it",
        start.elapsed().as_millis()
    );
}

mod docker;
