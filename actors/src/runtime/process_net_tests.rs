//! Tests of a process task's network: its own namespace and address (as root, with the CNI
//! plugins), and the host network with remapped ports otherwise.
//!
//! The namespace tests are skipped (with the reason printed) without root or the plugins,
//! unless `CI=true`, where they fail instead.

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use super::tests::ctx;
use super::*;
use crate::model::{NetworkAttachment, PortConfig};
use crate::runtime::tests_support::health_check;

/// Upper bound on any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(30);
/// One node of these tests: each test has its own, with its own bridge (named from its ID)
/// and its own slice, since tests run in parallel and one subnet on two bridges would give the
/// host two routes to it. The slices are ones no test cluster uses. Dropping it removes the
/// bridge, which a real node keeps for its next tasks.
struct TestNode {
    id: NodeId,
    slice: u8,
}

impl TestNode {
    fn new(slice: u8) -> TestNode {
        TestNode {
            id: NodeId(0x5eed_0000_0000_0000_0000_0000_0000_0000 | (u128::from(slice) << 100)),
            slice,
        }
    }

    fn attachment(&self, host: u8) -> NetworkAttachment {
        NetworkAttachment {
            network: "ingress".into(),
            addr: Ipv4Addr::new(10, 255, self.slice, host),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 255, self.slice, 1),
        }
    }

    fn ctx(&self, task: u128, host: u8, image: &str, args: &[&str]) -> TaskContext {
        let mut c = ctx(task, image, args);
        c.node_id = self.id;
        c.network = Some(self.attachment(host));
        c
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let bridge = crate::runtime::bridge_name(self.id);
        // Absent (a test that made none) is fine; a failure leaves an empty bridge behind.
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether this machine can give tasks namespaces; says why not, or fails under CI.
pub(crate) fn namespaces_possible(test: &str) -> bool {
    if crate::runtime::cni_plugins().is_some() && Path::new("/bin/busybox").is_file() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {test} needs root, iproute2, containernetworking-plugins and busybox-static"
    );
    eprintln!(
        "skipped {test}: needs root, iproute2, containernetworking-plugins and busybox-static"
    );
    false
}

/// GET / from `addr`, bounded; the body, or why not.
pub(crate) fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Retries `http_get` until the server is up (bounded by [`PATIENCE`]).
async fn get_when_up(addr: SocketAddr) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match http_get(addr) {
            Ok(body) if !body.is_empty() => return body,
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("{addr} does not answer: {other:?}"),
        }
    }
}

async fn log_text(rt: &ProcessRuntime, task: u128) -> String {
    tokio::time::timeout(PATIENCE, rt.wait(TaskId(task)))
        .await
        .expect("the task exits")
        .expect("wait works");
    let mut text = String::new();
    for _ in 0..300 {
        text = rt
            .logs(TaskId(task), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect::<Vec<_>>()
            .join("\n");
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_of_one_node_both_listen_on_port_80_each_on_its_own_address() {
    if !namespaces_possible("two_tasks_of_one_node_both_listen_on_port_80") {
        return;
    }
    let node = TestNode::new(241);
    let dir = tempfile::tempdir().unwrap();
    let endpoints = crate::runtime::Endpoints::default();
    let rt = ProcessRuntime::new(dir.path().join("tasks"))
        .unwrap()
        .with_endpoints(endpoints.clone());
    assert!(rt.isolates_networks());

    eprintln!("phase: two httpd tasks, both on port 80, each in its namespace");
    let mut tasks = Vec::new();
    for (task, host) in [(0x16_01u128, 2u8), (0x16_02, 3)] {
        let www = dir.path().join(format!("www{task}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("task {task}\n")).unwrap();
        let c = node.ctx(
            task,
            host,
            "busybox",
            &["httpd", "-f", "-p", "80", "-h", www.to_str().unwrap()],
        );
        rt.prepare(&c).await.unwrap();
        rt.start(&c).await.unwrap();
        tasks.push((task, host, c));
    }

    eprintln!("phase: each answers on its own address, from the node, and the mesh knows where");
    for (task, host, _) in &tasks {
        let ep = endpoints
            .get(TaskId(*task))
            .expect("an endpoint is recorded");
        assert_eq!(ep.ip, std::net::IpAddr::from(node.attachment(*host).addr));
        assert!(!ep.host_network);
        assert!(ep.ports.is_empty());
        let body = get_when_up(ep.socket(80)).await;
        assert!(body.contains(&format!("task {task}")), "{body}");
    }

    eprintln!("phase: health checks run in the task's namespace");
    let cmd = format!(
        "busybox ip -4 addr show eth0 | grep -q {}/24",
        node.attachment(2).addr
    );
    let check = health_check(cmd, 1_000, 10_000, 1);
    assert_eq!(rt.health(&tasks[0].2, &check).await, Ok(Some(true)));
    assert_eq!(rt.health(&tasks[1].2, &check).await, Ok(Some(false)));

    eprintln!("phase: removing a task removes its namespace and its endpoint; the other serves on");
    rt.remove(TaskId(0x16_01)).await.unwrap();
    assert!(endpoints.get(TaskId(0x16_01)).is_none());
    assert!(!Path::new(&format!("/var/run/netns/swn-{}", TaskId(0x16_01))).exists());
    assert!(
        !dir.path()
            .join("tasks")
            .join(format!("{}.net", TaskId(0x16_01)))
            .exists()
    );
    let body = get_when_up(SocketAddr::new(node.attachment(3).addr.into(), 80)).await;
    assert!(body.contains("task 5634"), "{body}");
    rt.remove(TaskId(0x16_02)).await.unwrap();
    assert!(endpoints.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_a_user_joins_its_namespace_then_drops_root() {
    if !namespaces_possible("a_task_with_a_user_joins_its_namespace_then_drops_root") {
        return;
    }
    let node = TestNode::new(242);
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path().join("tasks")).unwrap();
    let mut c = node.ctx(
        0x16_03,
        4,
        "sh",
        &["-c", "id -u; busybox ip -4 addr show eth0"],
    );
    c.spec.user = Some("65534:65534".into());
    rt.start(&c).await.unwrap();
    let text = log_text(&rt, 0x16_03).await;
    assert!(text.starts_with("65534"), "{text}");
    assert!(
        text.contains(&format!("{}/24", node.attachment(4).addr)),
        "{text}"
    );
    eprintln!("phase: the task's exit released its namespace (and address) before it was told");
    assert!(!Path::new(&format!("/var/run/netns/swn-{}", TaskId(0x16_03))).exists());
    rt.remove(TaskId(0x16_03)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_removes_the_namespaces_it_left() {
    if !namespaces_possible("a_restarted_node_removes_the_namespaces_it_left") {
        return;
    }
    let node = TestNode::new(243);
    let dir = tempfile::tempdir().unwrap();
    let netns = format!("/var/run/netns/swn-{}", TaskId(0x16_04));
    let tasks = dir.path().join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    let plugins = crate::runtime::cni_plugins().unwrap();
    // What a node that died after making a task's namespace leaves: the namespace, its veth
    // and its record (a node that lives releases them when the process exits).
    let c = node.ctx(0x16_04, 5, "sleep", &["30"]);
    super::netns::attach(&plugins, &tasks, &c).await.unwrap();
    assert!(Path::new(&netns).exists());
    let rt = ProcessRuntime::new(tasks).unwrap();
    rt.adopt_or_clean(node.id, &BTreeSet::new()).await.unwrap();
    assert!(!Path::new(&netns).exists());
    assert!(
        !dir.path()
            .join("tasks")
            .join(format!("{}.net", TaskId(0x16_04)))
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_host_network_a_task_is_told_its_remapped_ports() {
    let node = TestNode::new(244);
    let dir = tempfile::tempdir().unwrap();
    let endpoints = crate::runtime::Endpoints::default();
    let rt = ProcessRuntime::new(dir.path().join("tasks"))
        .unwrap()
        .share_host_network()
        .with_endpoints(endpoints.clone());
    let mut c = node.ctx(
        0x16_05,
        6,
        "sh",
        &["-c", "echo \"$PORT $SWARM_PORT_80 $SWARM_PORT_443\""],
    );
    c.ports = vec![PortConfig::tcp(8080, 80), PortConfig::tcp(8443, 443)];
    rt.start(&c).await.unwrap();
    let ep = endpoints
        .get(TaskId(0x16_05))
        .expect("an endpoint is recorded");
    assert!(ep.host_network);
    assert_eq!(ep.ip, std::net::IpAddr::from(Ipv4Addr::LOCALHOST));
    let (p80, p443) = (ep.ports[&80], ep.ports[&443]);
    assert_ne!(p80, p443);
    assert_eq!(ep.socket(80), SocketAddr::new(ep.ip, p80));
    assert_eq!(log_text(&rt, 0x16_05).await, format!("{p80} {p80} {p443}"));
    assert!(!Path::new(&format!("/var/run/netns/swn-{}", TaskId(0x16_05))).exists());
    rt.remove(TaskId(0x16_05)).await.unwrap();
    assert!(endpoints.is_empty());

    eprintln!("phase: a task with neither an address nor ports is left as it always was");
    rt.start(&ctx(0x16_06, "sh", &["-c", "echo \"[$PORT]\""]))
        .await
        .unwrap();
    assert!(endpoints.get(TaskId(0x16_06)).is_none());
    assert_eq!(log_text(&rt, 0x16_06).await, "[]");
}
