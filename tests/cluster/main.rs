//! End-to-end tests of the cluster foundation: real `swarm-node` processes on loopback.
//! Each test uses its own port range so tests can run in parallel.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::{Node, all_ready, phase, status_of, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn five_nodes_form_a_cluster_and_all_see_five_ready() {
    let root = tempfile::tempdir().unwrap();
    phase("bootstrap one node; it prints the join commands");
    let n1 = Node::bootstrap(root.path(), "n1", 22001);
    let worker = n1.token("worker");
    let manager = n1.token("manager");
    assert!(worker.starts_with("SWMTKN-1-") && manager.starts_with("SWMTKN-1-"));
    assert_ne!(worker, manager, "worker and manager tokens differ");

    phase("four nodes join through the first, one as a manager");
    let mut nodes = vec![n1];
    for (i, port) in (22002..22006).enumerate() {
        let token = if i == 0 { &manager } else { &worker };
        nodes.push(Node::join(
            root.path(),
            &format!("n{}", i + 2),
            port,
            nodes[0].addr,
            token,
        ));
    }

    phase("every node shows all five Ready, with hostnames and roles");
    for n in &nodes {
        let ok = wait_until(LIMIT, || all_ready(&n.node_ls(), 5));
        assert!(
            ok,
            "{} does not see 5 Ready: {:?}\n{}",
            n.name,
            n.node_ls(),
            n.logs()
        );
    }
    let rows = nodes[3].node_ls();
    let mut hosts: Vec<_> = rows
        .iter()
        .map(|r| r["Hostname"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["n1", "n2", "n3", "n4", "n5"]);
    let managers = rows.iter().filter(|r| r["ManagerStatus"] != "").count();
    assert_eq!(managers, 2, "n1 and n2 are managers: {rows:?}");
    assert_eq!(rows.iter().filter(|r| r["Self"] == true).count(), 1);

    phase("the table shows Docker's columns and marks the answering node");
    let out = nodes[0].cli(&["node", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ID"), "{text}");
    for col in [
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "MANAGER STATUS",
        "ENGINE VERSION",
    ] {
        assert!(text.contains(col), "missing {col}: {text}");
    }
    assert!(text.contains(" *"), "self marker missing: {text}");
    assert!(text.contains("Leader"), "bootstrap manager leads: {text}");

    phase("node inspect by hostname gives resources and runtimes");
    let out = nodes[0].cli(&["node", "inspect", "n3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Description"]["Hostname"], "n3");
    assert!(
        v[0]["Description"]["Resources"]["NanoCPUs"]
            .as_u64()
            .unwrap()
            >= 1_000_000_000
    );
    let runtimes = v[0]["Description"]["Engine"]["Runtimes"]
        .as_array()
        .unwrap();
    assert!(runtimes.iter().any(|r| r == "process"), "{runtimes:?}");
    let out = nodes[0].cli(&["node", "inspect", "--pretty", "n3"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hostname:"));
    let out = nodes[0].cli(&["node", "inspect", "no-such-node"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such node"));
}

#[test]
fn a_killed_node_is_down_everywhere_and_comes_back_with_the_same_id() {
    let root = tempfile::tempdir().unwrap();
    phase("a four-node cluster");
    let n1 = Node::bootstrap(root.path(), "k1", 22101);
    let token = n1.token("worker");
    let mut nodes = vec![n1];
    for (i, port) in (22102..22105).enumerate() {
        nodes.push(Node::join(
            root.path(),
            &format!("k{}", i + 2),
            port,
            nodes[0].addr,
            &token,
        ));
    }
    for n in &nodes {
        assert!(
            wait_until(LIMIT, || all_ready(&n.node_ls(), 4)),
            "{}: {:?}",
            n.name,
            n.node_ls()
        );
    }
    let victim_id = nodes[2].id();

    phase("SIGKILL one worker: every other node shows it Down");
    nodes[2].kill();
    for (i, n) in nodes.iter().enumerate() {
        if i == 2 {
            continue;
        }
        let ok = wait_until(LIMIT, || {
            status_of(&n.node_ls(), &victim_id).as_deref() == Some("Down")
        });
        assert!(
            ok,
            "{} does not show {victim_id} Down: {:?}",
            n.name,
            n.node_ls()
        );
    }

    phase("restart it from the same data dir: Ready again, same ID, one row");
    nodes[2].spawn();
    nodes[2].wait_control();
    assert_eq!(nodes[2].id(), victim_id, "same data dir, same node");
    for n in &nodes {
        let ok = wait_until(LIMIT, || all_ready(&n.node_ls(), 4));
        assert!(
            ok,
            "{} does not see 4 Ready after restart: {:?}",
            n.name,
            n.node_ls()
        );
    }

    phase("restart the bootstrap node too: it rejoins by itself");
    let first_id = nodes[0].id();
    nodes[0].kill();
    nodes[0].spawn();
    nodes[0].wait_control();
    assert_eq!(nodes[0].id(), first_id);
    for n in &nodes {
        let ok = wait_until(LIMIT, || all_ready(&n.node_ls(), 4));
        assert!(
            ok,
            "{} does not see 4 Ready after the bootstrap restart: {:?}",
            n.name,
            n.node_ls()
        );
    }
}

#[test]
fn wrong_and_rotated_tokens_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "t1", 22201);
    let good = n1.token("worker");

    let try_join = |name: &str, port: u16, token: &str| {
        let n = Node::new(root.path(), name, port, Some((n1.addr, token.to_string())));
        let out = n.start_command().output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    phase("a token with the right CA digest but a wrong secret is refused");
    let (digest, _) = good.rsplit_once('-').unwrap();
    let wrong = format!("{digest}-{}", "0".repeat(25));
    let (ok, err) = try_join("t2", 22202, &wrong);
    assert!(!ok, "wrong secret joined");
    assert!(err.contains("token"), "unclear error: {err}");

    phase("a token naming another CA is refused before anything is sent");
    let other = format!(
        "SWMTKN-1-{}-{}",
        "1".repeat(50),
        good.rsplit_once('-').unwrap().1
    );
    let (ok, err) = try_join("t3", 22203, &other);
    assert!(!ok, "other CA joined");
    assert!(!err.is_empty());

    phase("a malformed token is refused");
    let (ok, err) = try_join("t4", 22204, "SWMTKN-1-garbage");
    assert!(!ok);
    assert!(err.contains("malformed") || err.contains("token"), "{err}");

    phase("rotate the worker token: the old one is refused, the new one works");
    let out = n1.cli(&["swarm", "join-token", "--rotate", "worker"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = n1.token("worker");
    assert_ne!(fresh, good);
    let (ok, err) = try_join("t5", 22205, &good);
    assert!(!ok, "rotated token joined");
    assert!(err.contains("token"), "{err}");
    let n6 = Node::join(root.path(), "t6", 22206, n1.addr, &fresh);
    assert!(
        wait_until(LIMIT, || all_ready(&n6.node_ls(), 2)),
        "{:?}",
        n6.node_ls()
    );

    phase("the refused joins changed nothing: the cluster has two nodes");
    assert!(
        wait_until(LIMIT, || all_ready(&n1.node_ls(), 2)),
        "{:?}",
        n1.node_ls()
    );
}

#[test]
fn the_admin_shell_lists_actors_and_sends_messages() {
    use std::io::Write;
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "s1", 22301);
    let id = n1.id();

    phase("actors, send Describe, send to an unknown actor and message, a CLI verb");
    let mut child = std::process::Command::new(common::BIN)
        .arg("--data-dir")
        .arg(&n1.dir)
        .arg("shell")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "actors\nsend node/{id} Describe\nsend node/nope Describe\nsend node/{id} Shout\nsend node/{id} RotateToken {{\"role\": \"Worker\"}}\nnode ls\nexit\n"
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("node/{id}")), "actors list: {text}");
    assert!(
        text.contains("\"hostname\": \"s1\""),
        "Describe reply: {text}"
    );
    assert!(text.contains("no actor named"), "unknown actor: {text}");
    assert!(text.contains("takes no message"), "unknown message: {text}");
    assert!(
        text.contains("\"worker\": \"SWMTKN-1-"),
        "RotateToken reply: {text}"
    );
    assert!(text.contains("HOSTNAME"), "node ls in the shell: {text}");
}

#[test]
fn client_errors_are_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let n = Node::new(root.path(), "nobody", 22401, None);
    let out = n.cli(&["node", "ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Error: cannot reach a swarm-node"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn certificates_renew_before_they_expire() {
    let root = tempfile::tempdir().unwrap();
    phase("a cluster whose CA issues 12-second certificates");
    let n1 = Node::bootstrap_with(root.path(), "r1", 22501, &["--cert-validity-s", "12"]);
    let token = n1.token("worker");
    let n2 = Node::join(root.path(), "r2", 22502, n1.addr, &token);
    let n3 = Node::join(root.path(), "r3", 22503, n1.addr, &token);
    let nodes = [n1, n2, n3];
    for n in &nodes {
        assert!(
            wait_until(LIMIT, || all_ready(&n.node_ls(), 3)),
            "{}: {:?}",
            n.name,
            n.node_ls()
        );
    }
    let first: Vec<Vec<u8>> = nodes
        .iter()
        .map(|n| std::fs::read(n.dir.join("node.crt")).unwrap())
        .collect();

    phase("every node renews its certificate (between 6 and 9.6 s), the CA holder included");
    for (n, cert) in nodes.iter().zip(&first) {
        let renewed = wait_until(LIMIT, || {
            std::fs::read(n.dir.join("node.crt")).unwrap() != *cert
        });
        assert!(renewed, "{} never renewed: {}", n.name, n.logs());
    }

    phase("past the first certificates' expiry, a new node joins and everyone sees four Ready");
    std::thread::sleep(Duration::from_secs(13));
    let n4 = Node::join(root.path(), "r4", 22504, nodes[0].addr, &token);
    for n in nodes.iter().chain([&n4]) {
        let ok = wait_until(LIMIT, || all_ready(&n.node_ls(), 4));
        assert!(
            ok,
            "{} after expiry: {:?}\n{}",
            n.name,
            n.node_ls(),
            n.logs()
        );
    }
}

#[test]
fn garbage_on_the_wire_does_not_disturb_the_cluster() {
    use std::sync::Arc;
    // The test talks to the nodes itself, from this process's namespace.
    let _host = common::host_netns_shared();
    let root = tempfile::tempdir().unwrap();
    phase("a three-node cluster");
    let n1 = Node::bootstrap(root.path(), "g1", 22601);
    let token = n1.token("worker");
    let n2 = Node::join(root.path(), "g2", 22602, n1.addr, &token);
    let n3 = Node::join(root.path(), "g3", 22603, n1.addr, &token);
    for n in [&n1, &n2, &n3] {
        assert!(
            wait_until(LIMIT, || all_ready(&n.node_ls(), 3)),
            "{}: {:?}",
            n.name,
            n.node_ls()
        );
    }

    phase("raw UDP junk at every node's port");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in [&n1, &n2, &n3] {
        for i in 0..200u32 {
            let junk: Vec<u8> = (0..(i % 1200 + 1))
                .map(|j| (j.wrapping_mul(31) ^ i) as u8)
                .collect();
            sock.send_to(&junk, n.addr).unwrap();
        }
    }

    phase(
        "a QUIC client pinned to the CA writes bad frames on streams: oversized, truncated, undecodable",
    );
    swarm_actors::trust::install_crypto_provider();
    let digest = token
        .parse::<swarm_actors::trust::JoinToken>()
        .unwrap()
        .ca_digest;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = swarm_actors::trust::join_client_config(&digest).unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let frames: Vec<Vec<u8>> = vec![
            u32::MAX.to_be_bytes().to_vec(),                // claims 4 GiB
            vec![0, 0, 0, 50, 0, 1, 1, 2],                  // ends early
            vec![0, 0, 0, 6, 0, 1, 0xff, 0xff, 0xff, 0xff], // does not decode
            vec![0, 0, 0, 3, 0x7f, 0x7f, 0],                // another protocol version
        ];
        // A peer without a certificate gets one request per connection: one connection each.
        for f in frames {
            let conn = endpoint
                .connect(n1.addr, swarm_actors::trust::SERVER_NAME)
                .unwrap()
                .await
                .expect("handshake with a pinned CA");
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&f).await.ok();
            send.finish().ok();
            // The node resets or closes the stream; either way it answers nothing useful.
            let _ = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16)).await;
            conn.close(0u32.into(), b"done");
        }
        endpoint.wait_idle().await;
    });

    phase("the cluster is still whole, and still admits a node");
    let n4 = Node::join(root.path(), "g4", 22604, n1.addr, &token);
    for n in [&n1, &n2, &n3, &n4] {
        assert!(
            wait_until(LIMIT, || all_ready(&n.node_ls(), 4)),
            "{}: {:?}",
            n.name,
            n.node_ls()
        );
    }
}

#[test]
fn sigterm_stops_a_node_cleanly_and_the_others_see_it_down() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "q1", 22701);
    let token = n1.token("worker");
    let mut n2 = Node::join(root.path(), "q2", 22702, n1.addr, &token);
    assert!(
        wait_until(LIMIT, || all_ready(&n1.node_ls(), 2)),
        "{:?}",
        n1.node_ls()
    );
    let id2 = n2.id();

    phase("SIGTERM: the node leaves, exits 0 and removes its control socket");
    let mut child = n2.child.take().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = wait_until(LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
    assert!(exited, "q2 did not stop on SIGTERM: {}", n2.logs());
    assert!(
        child.wait().unwrap().success(),
        "q2 exit status: {}",
        n2.logs()
    );
    assert!(!n2.dir.join("control.sock").exists());

    phase("the other node shows it Down");
    let ok = wait_until(LIMIT, || {
        status_of(&n1.node_ls(), &id2).as_deref() == Some("Down")
    });
    assert!(ok, "{:?}", n1.node_ls());
}
