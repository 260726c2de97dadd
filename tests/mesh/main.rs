//! End-to-end tests of task addresses, published ports and the routing mesh: three real
//! `swarm-node` processes, each in its own network namespace with its own address on a test
//! bridge (`lab.rs`), and a client namespace that asks them. Every request goes from the
//! client to a node's lab address, so a reply proves the node forwarded it to a replica,
//! wherever that replica runs.
//!
//! Replicas tell who they are: each serves its own task ID (`SWARM_TASK_ID`), so the tests
//! can count which replicas answered. Process-runtime tasks run `busybox httpd` (or a small
//! Python server for UDP and the PROXY header); Docker tasks the imported test image's
//! `httpd`.
//!
//! Needs root, `ip netns`, iptables, curl and python3 (the Docker test also a Docker Engine):
//! without them each test skips with the reason, or fails under `CI=true`. The tests share
//! the lab's namespaces, so they run one at a time (a lock). Node ports 29101 (one per lab
//! address), published ports 29180–29199.

// Tests run real processes in real time: clocks and sleeps are theirs to use.
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

mod fixture;
mod lab;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::{Node, phase, status_of, wait_until};
use fixture::{LIMIT, Mesh, REQUESTS, httpd_script, skip};
use lab::{CLIENT, Containers, DockerRoute, NET, http_get, udp_ask};
use serde_json::Value;

#[test]
fn process_replicas_answer_on_every_node_even_one_without_a_replica() {
    if skip("process_replicas_answer…", false) {
        return;
    }
    let m = Mesh::form(NET);
    phase("4 process replicas on n1 and n2 publish 29180:80; n3 runs none");
    let script = httpd_script(&m.www());
    m.create(
        "web2",
        "--runtime process --replicas 4 --constraint node.hostname!=n3 --publish 29180:80",
        &[],
        &["sh", "-c", &script],
    );
    let ids = m.wait_running("web2", 4);

    phase("service ls shows the port; service ps an address per task, distinct");
    let ls = m.n1().ok(&["service", "ls"]);
    assert!(ls.contains("*:29180->80/tcp"), "{ls}");
    let rows = m.running("web2");
    let addrs: BTreeSet<String> = rows
        .values()
        .map(|r| r["Address"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(addrs.len(), 4, "each task its own address: {rows:?}");
    assert!(!addrs.contains("-"), "every running task has an address");
    let per_node = common::running_per_node(&rows.values().cloned().collect::<Vec<_>>());
    assert!(
        per_node.values().any(|n| *n >= 2),
        "two replicas share a node (both on port 80): {per_node:?}"
    );

    phase("network ls and inspect show ingress with the tasks' addresses");
    let ls = m.n1().ok(&["network", "ls"]);
    assert!(ls.contains("ingress") && ls.contains("overlay") && ls.contains("swarm"));
    let net: Value = serde_json::from_str(&m.n1().ok(&["network", "inspect", "ingress"])).unwrap();
    assert_eq!(net[0]["IPAM"]["Config"][0]["Subnet"], "10.255.0.0/16");
    for id in &ids {
        assert!(
            net[0]["Containers"].get(id).is_some(),
            "task {id} in network inspect"
        );
    }

    phase("every node answers on 29180, n3 too; all four replicas answer over 50 requests");
    for node in ["n1", "n2", "n3"] {
        m.wait_answers(node, 29180, &ids);
    }

    phase("--publish-add 29181:80, then --publish-rm 29181");
    m.n1().ok(&[
        "service",
        "update",
        "-d",
        "--publish-add",
        "29181:80",
        "web2",
    ]);
    let ids = m.wait_running("web2", 4);
    m.wait_answers("n3", 29181, &ids);
    m.n1()
        .ok(&["service", "update", "-d", "--publish-rm", "29181", "web2"]);
    let gone = wait_until(LIMIT, || http_get(&m.lab, "n3", 29181).is_none());
    assert!(gone, "29181 is no longer published");
}

#[test]
fn docker_replicas_answer_on_every_node() {
    // The engine's bridges for these nodes' slices are in this namespace: no other test's
    // node may run here meanwhile (it would take the same slices).
    let _alone = common::host_netns_alone();
    if skip("docker_replicas_answer_on_every_node", true) {
        return;
    }
    let mut m = Mesh::form(NET);
    m.containers = Some(Containers(m.nodes.iter().map(Node::id).collect()));
    let _route = DockerRoute::new(&m.lab);
    phase("2 Docker replicas of the test image's httpd publish 29182:80, not on n3");
    m.create(
        "web",
        "--replicas 2 --constraint node.hostname!=n3 --publish 29182:80",
        &[],
        &[
            "swarm-test/busybox:1",
            "sh",
            "-c",
            "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 80 -h /w",
        ],
    );
    m.wait_running("web", 2);
    phase("every node answers, n3 too, and both containers answer over 50 requests");
    let first = m.wait_answers_any("n3", 29182, 2);
    for node in ["n1", "n2"] {
        m.wait_answers(node, 29182, &first);
    }
    m.n1().ok(&["service", "rm", "web"]);
}

impl Mesh {
    /// As [`Mesh::wait_answers`] when the replicas' names are not known beforehand (container
    /// hostnames): waits for `n` distinct replies; their set.
    fn wait_answers_any(&self, node: &str, port: u16, n: usize) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let ok = wait_until(LIMIT, || {
            seen.clear();
            let all = (0..REQUESTS).all(|_| {
                http_get(&self.lab, node, port)
                    .map(|b| seen.insert(b))
                    .is_some()
            });
            all && seen.len() == n
        });
        assert!(
            ok,
            "{node}:{port}: replies from {seen:?}, want {n} replicas"
        );
        seen
    }
}

#[test]
fn udp_host_mode_and_the_proxy_header() {
    if skip("udp_host_mode_and_the_proxy_header", false) {
        return;
    }
    let m = Mesh::form(NET);
    phase("UDP: 2 replicas answer datagrams on 29183/udp, asked through n3");
    let echo = "import os,socket\nport=int(os.environ.get('PORT','53'))\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',port))\nwhile True:\n \
        d,a=s.recvfrom(2048)\n s.sendto(os.environ['SWARM_TASK_ID'].encode(),a)\n";
    m.create(
        "dns",
        "--runtime process --replicas 2 --constraint node.hostname!=n3 --publish published=29183,target=53,protocol=udp",
        &[],
        &["python3", "-c", echo],
    );
    let ids = m.wait_running("dns", 2);
    let ls = m.n1().ok(&["service", "ls"]);
    assert!(ls.contains("*:29183->53/udp"), "{ls}");
    let mut seen = BTreeSet::new();
    let ok = wait_until(LIMIT, || {
        // A new client port each time, so each datagram is a new flow.
        if let Some(id) = udp_ask(&m.lab, "n3", 29183, "ping") {
            seen.insert(id);
        }
        seen == ids
    });
    assert!(ok, "UDP replies from {seen:?}, want {ids:?}");

    phase("host mode: 29184 answers on n2, the node running the task, and not on n1");
    let script = httpd_script(&m.www());
    m.create(
        "hosted",
        "--runtime process --constraint node.hostname==n2 --publish published=29184,target=80,mode=host",
        &[],
        &["sh", "-c", &script],
    );
    let ids = m.wait_running("hosted", 1);
    m.wait_answers("n2", 29184, &ids);
    assert_eq!(http_get(&m.lab, "n1", 29184), None, "n1 runs no task of it");
    let ps = m.n1().ok(&["service", "ps", "hosted"]);
    assert!(
        ps.contains("*:29184->80/tcp"),
        "ps shows the host port: {ps}"
    );

    phase("PROXY v2: the task sees the client's address before the request");
    let seen_dir = m.root.path().join("proxy");
    std::fs::create_dir_all(&seen_dir).unwrap();
    let server = format!(
        "import os,socket\nport=int(os.environ.get('PORT','80'))\n\
         s=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('',port))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n d=b''\n \
         while len(d)<28 or b'\\r\\n\\r\\n' not in d[28:]:\n  x=c.recv(4096)\n  \
         if not x: break\n  d+=x\n \
         open('{}/'+os.environ['SWARM_TASK_ID'],'wb').write(d)\n \
         c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n'+os.environ['SWARM_TASK_ID'].encode())\n c.close()\n",
        seen_dir.display()
    );
    m.create(
        "proxied",
        "--runtime process --publish published=29185,target=80,proxy-protocol=v2",
        &[],
        &["python3", "-c", &server],
    );
    let ids = m.wait_running("proxied", 1);
    m.wait_answers("n3", 29185, &ids);
    let id = ids.iter().next().unwrap();
    let got = std::fs::read(seen_dir.join(id)).unwrap();
    const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    assert!(
        got.starts_with(SIGNATURE),
        "a PROXY v2 header first: {got:?}"
    );
    let client = match m.lab.slot(CLIENT).addr.ip() {
        std::net::IpAddr::V4(a) => a.octets(),
        other => panic!("{other}"),
    };
    // v2, PROXY command, TCP over IPv4, then the source address.
    assert_eq!(&got[12..14], &[0x21, 0x11], "{got:?}");
    assert_eq!(&got[16..20], &client, "the client's address: {got:?}");
    assert!(
        got[28..].starts_with(b"GET / HTTP/1.1"),
        "the request follows: {got:?}"
    );
}

#[test]
fn scale_down_and_a_failing_health_check_leave_the_rotation() {
    if skip("scale_down_and_a_failing_health_check…", false) {
        return;
    }
    let m = Mesh::form(NET);
    phase("3 replicas with a health check on their health page publish 29186:80");
    let script = httpd_script(&m.www());
    m.create(
        "hc",
        "--runtime process --replicas 3 --health-interval 1s --health-retries 1 --publish 29186:80",
        &[
            "--health-cmd",
            "wget -q -O /dev/null http://127.0.0.1:${PORT:-80}/health",
        ],
        &["sh", "-c", &script],
    );
    let ids = m.wait_running("hc", 3);
    m.wait_answers("n1", 29186, &ids);

    phase("scale to 2: the removed replica leaves the rotation");
    m.n1().ok(&["service", "scale", "-d", "hc=2"]);
    let ids = m.wait_running("hc", 2);
    m.wait_answers("n1", 29186, &ids);

    phase("one replica's health page goes: it leaves the rotation");
    let sick = ids.iter().next().unwrap().clone();
    std::fs::remove_file(m.www().join(&sick).join("health")).unwrap();
    let mut seen = BTreeMap::new();
    let ok = wait_until(LIMIT, || {
        seen.clear();
        for _ in 0..REQUESTS {
            if let Some(b) = http_get(&m.lab, "n3", 29186) {
                *seen.entry(b).or_insert(0) += 1;
            }
        }
        !seen.is_empty() && !seen.contains_key(&sick)
    });
    assert!(ok, "the unhealthy {sick} still answers: {seen:?}");
}

#[test]
fn a_stopping_replica_finishes_its_connections_within_the_grace_period() {
    if skip("a_stopping_replica_finishes_its_connections…", false) {
        return;
    }
    let m = Mesh::form(NET);
    phase("one replica with a 30 s stop grace period publishes 29188:80");
    let script = httpd_script(&m.www());
    m.create(
        "drain",
        "--runtime process --replicas 1 --stop-grace-period 30s --publish 29188:80",
        &[],
        &["sh", "-c", &script],
    );
    let ids = m.wait_running("drain", 1);
    m.wait_answers("n2", 29188, &ids);
    let id = ids.into_iter().next().unwrap();
    // Far more than the sockets and tunnels between them buffer: the replica is still writing
    // it when the scale comes.
    const BIG: usize = 64 << 20;
    std::fs::write(m.www().join(&id).join("big"), vec![b'x'; BIG]).unwrap();

    phase(
        "a 64 MiB download at 8 MB/s (about 8 s) through n2 is in flight when the service scales to 0",
    );
    let ns = m.lab.slot(CLIENT).ns.clone();
    let url = format!("http://{}:29188/big", m.lab.slot("n2").addr.ip());
    let download = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-sf", "-m", "60"])
            .args([
                "--limit-rate",
                "8M",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
            ])
            .arg(&url)
            .output()
            .expect("curl runs")
    });
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    let scaled = Instant::now();
    m.n1().ok(&["service", "scale", "-d", "drain=0"]);

    phase("the download completes, then the task ends (SIGTERM after it, not at the scale)");
    let out = download.join().unwrap();
    let finished = scaled.elapsed();
    assert!(
        out.status.success(),
        "the download was cut: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), BIG.to_string());
    let ended = wait_until(LIMIT, || m.running("drain").is_empty());
    assert!(
        ended,
        "the replica never stopped: {:?}",
        m.n1().service_ps("drain")
    );
    eprintln!(
        "figure: scale to 0 -> the in-flight download finished after {} ms, then the task stopped",
        finished.as_millis()
    );
}

#[test]
fn a_killed_node_leaves_the_rotation_without_failed_requests() {
    if skip("a_killed_node_leaves_the_rotation…", false) {
        return;
    }
    let mut m = Mesh::form(NET);
    phase("6 replicas over the three nodes publish 29187:80");
    let script = httpd_script(&m.www());
    m.create(
        "spread",
        "--runtime process --replicas 6 --publish 29187:80",
        &[],
        &["sh", "-c", &script],
    );
    let ids = m.wait_running("spread", 6);
    m.wait_answers("n1", 29187, &ids);
    let on_n2 = common::running_per_node(&m.running("spread").into_values().collect::<Vec<_>>());
    assert!(on_n2.get("n2").is_some_and(|n| *n > 0), "{on_n2:?}");

    phase("SIGKILL n2; once n1 sees it Down, 100 requests to n1 and n3 all succeed");
    let n2_id = m.nodes[1].id();
    let before = mesh_version(m.n1());
    let killed = Instant::now();
    m.node_mut("n2").kill();
    // A figure, not a check (docs/benchmarks.md): how long n1's mesh routes by a table that
    // still lists n2's tasks, from the SIGKILL to the first new table n1 routes by.
    let mut dropped = None;
    let down = wait_until(LIMIT, || {
        if dropped.is_none() && mesh_version(m.n1()) != before {
            dropped = Some(killed.elapsed());
        }
        status_of(&m.n1().node_ls(), &n2_id).as_deref() == Some("Down")
    });
    assert!(down, "n2 never showed Down");
    let down_after = killed.elapsed();
    wait_until(LIMIT, || {
        if dropped.is_none() && mesh_version(m.n1()) != before {
            dropped = Some(killed.elapsed());
        }
        dropped.is_some()
    });
    eprintln!(
        "figure: SIGKILL of n2 -> n2 Down in n1's node ls within {} ms; -> n1's mesh routes by a table without n2's tasks within {} ms",
        down_after.as_millis(),
        dropped.map_or("(never)".to_string(), |d| d.as_millis().to_string())
    );
    let started = Instant::now();
    let mut failed = Vec::new();
    for i in 0..100 {
        let node = if i % 2 == 0 { "n1" } else { "n3" };
        if http_get(&m.lab, node, 29187).is_none() {
            failed.push((i, node, started.elapsed()));
        }
    }
    assert!(failed.is_empty(), "failed requests after Down: {failed:?}");
}

/// The version of the routing mesh's table `n` routes by, from its own `node inspect` row.
fn mesh_version(n: &Node) -> u64 {
    let out = n.cli(&["node", "inspect", "self"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let row = if doc.is_array() { &doc[0] } else { &doc };
    row["Mesh"]["TableVersion"].as_u64().unwrap_or(0)
}

/// `service create -d --name NAME --runtime process FLAGS… sleep 100000` on `n1`.
fn sleeper(n1: &Node, name: &str, flags: &str) -> std::process::Output {
    let mut a = vec![
        "service",
        "create",
        "-d",
        "--name",
        name,
        "--runtime",
        "process",
    ];
    a.extend(flags.split_whitespace());
    a.extend(["sleep", "100000"]);
    n1.cli(&a)
}

/// The control API's half, which needs no lab: conflicts, picks, and what the commands show.
/// Runs on loopback (ports 29110–29112), without root.
#[test]
fn published_ports_are_checked_picked_and_shown() {
    let root = tempfile::tempdir().unwrap();
    let nodes = common::three_nodes(root.path(), 29110);
    let n1 = &nodes[0];
    phase("a service publishes 29190:80 and a target-only port");
    assert!(
        sleeper(n1, "a", "-p 29190:80 -p target=81")
            .status
            .success()
    );
    let doc = n1.service_inspect("a").unwrap();
    let ports = &doc["Endpoint"]["Ports"];
    assert_eq!(ports[0]["PublishedPort"], 29190);
    assert_eq!(
        ports[1]["PublishedPort"], 30000,
        "the lowest free port: {ports}"
    );
    assert_eq!(ports[1]["PublishMode"], "ingress");
    let ls = n1.ok(&["service", "ls"]);
    assert!(ls.contains("*:29190->80/tcp,*:30000->81/tcp"), "{ls}");

    phase("another service may not publish 29190/tcp; the next pick is 30001");
    let out = sleeper(n1, "b", "-p 29190:80");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("port 29190/tcp is already in use by service 'a' as an ingress port"),
        "{err}"
    );
    assert!(n1.service_inspect("b").is_none(), "nothing written");
    assert!(sleeper(n1, "b", "-p 29190:80/udp -p 82").status.success());
    let doc = n1.service_inspect("b").unwrap();
    assert_eq!(doc["Endpoint"]["Ports"][1]["PublishedPort"], 30001);

    phase("update: --publish-rm by published port, --publish-add a host-mode port; bad input");
    n1.ok(&[
        "service",
        "update",
        "-d",
        "--publish-rm",
        "30000",
        "--publish-add",
        "published=29191,target=80,mode=host",
        "a",
    ]);
    let doc = n1.service_inspect("a").unwrap();
    let modes: Vec<_> = doc["Endpoint"]["Ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["PublishedPort"].as_u64().unwrap(),
                p["PublishMode"].clone(),
            )
        })
        .collect();
    assert_eq!(modes, [(29190, "ingress".into()), (29191, "host".into())]);
    let out = n1.cli(&["service", "update", "-d", "--publish-rm", "7", "a"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("service a does not publish port 7"),
        "{out:?}"
    );
    let out = n1.cli(&["service", "update", "-d", "--publish-add", "8080:0", "a"]);
    assert!(!out.status.success());

    phase(
        "network ls lists ingress, then a created overlay network; a second one of that name is refused",
    );
    let ls = n1.ok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    assert!(ls.contains(" ingress ") && ls.contains("overlay"), "{ls}");
    n1.ok(&["network", "create", "--driver", "overlay", "backend"]);
    assert!(n1.ok(&["network", "ls"]).contains(" backend "));
    let out = n1.cli(&["network", "create", "--driver", "overlay", "backend"]);
    assert!(!out.status.success(), "a second network named backend");
    n1.ok(&["service", "rm", "a", "b"]);
    n1.ok(&["network", "rm", "backend"]);
}
