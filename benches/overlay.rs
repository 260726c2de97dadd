//! Benchmark: task → VIP → task across nodes against task → task direct on the same path (the
//! limit), and the DNS answers per second of one node's server.
//!
//! Three nodes in their own network namespaces (the tests' lab, `swob-*` on 10.76.0.0/24), an
//! overlay network `benchnet`, one `nginx` replica (the process runtime, 1 worker, keep-alive)
//! on n2 and a client task on n1. Every figure is measured from inside the client task's
//! network namespace, as a program of the task would see it, so every connection crosses from
//! n1 to n2 through VXLAN:
//!
//! - **direct**: to the nginx task's own address on `benchnet`;
//! - **VIP**: to the service's VIP, taken by n1's VIP listener and carried to n2 through the
//!   mutual-TLS QUIC connection, which connects to the task.
//!
//! For each: `wrk` keep-alive requests/s of a 49-byte page (16 connections), new connections/s
//! (`Connection: close`), and the transfer rate of a 4 MiB file (4 connections). Then
//! `dnsperf` (4 clients) against the DNS server the client's `/etc/resolv.conf` names, for
//! `web` and `tasks.web` (names the server answers itself; forwarded names depend on the
//! host's resolvers, which the lab's namespaces do not reach).
//!
//! `cargo bench --bench overlay` (as root; options `-- --secs N`). Needs `wrk`, `nginx`
//! (nginx-light) and `dnsperf`. Prints figures; asserts nothing about speed.

// Benches run real processes in real time: they are shells, so clocks and sleeps are theirs
// to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/mesh/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../tests/mesh/lab.rs"]
mod lab;

use std::process::Command;

use common::{arg, wait_until};
use fixture::{LIMIT, Mesh, task_pids};
use lab::LabNet;
use serde_json::Value;

const NET: LabNet = LabNet {
    prefix: "swob-",
    octets: [10, 76, 0],
    port: 29301,
};
const PAGE: &str = "<html><body>hello from the backend</body></html>\n";
const BIG_BYTES: usize = 4 << 20;

/// Runs `args` in task `task`'s network and mount namespaces (through one of its processes);
/// its standard output, or a panic with its error output.
fn in_task(task: &str, args: &[&str]) -> String {
    let pid = task_pids(task)[0];
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "-m"])
        .args(args)
        .output()
        .expect("nsenter runs");
    assert!(
        out.status.success(),
        "{args:?} in task {task}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wrk`'s requests/s and transfer rate (MB/s) from its summary.
fn wrk(task: &str, url: &str, secs: usize, connections: usize, close: bool) -> (f64, f64) {
    let d = format!("{secs}s");
    let c = connections.to_string();
    let mut args = vec!["wrk", "-t1", "-c", &c, "-d", &d];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let text = in_task(task, &args);
    let mut rps = 0.0;
    let mut mbs = 0.0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => rps = n.parse().unwrap_or(0.0),
            ["Transfer/sec:", n] => {
                let (num, unit) = n.split_at(n.len() - 2);
                let v: f64 = num.parse().unwrap_or(0.0);
                mbs = match unit {
                    "GB" => v * 1024.0,
                    "MB" => v,
                    "KB" => v / 1024.0,
                    _ => 0.0,
                };
            }
            _ => {}
        }
    }
    (rps, mbs)
}

/// `dnsperf`'s queries/s and how many queries were lost.
fn dnsperf(task: &str, server: &str, queries: &str, secs: usize) -> (f64, String) {
    let l = secs.to_string();
    let text = in_task(
        task,
        &[
            "dnsperf", "-s", server, "-d", queries, "-l", &l, "-c", "4", "-Q", "200000",
        ],
    );
    let mut qps = 0.0;
    let mut lost = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Queries per second:") {
            qps = rest.trim().parse().unwrap_or(0.0);
        }
        if t.starts_with("Queries lost:") {
            lost = t.to_string();
        }
    }
    (qps, lost)
}

fn main() {
    let secs = arg("--secs", 10);
    let m = Mesh::form(NET);
    let dir = m.root.path().join("nginx");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), PAGE).unwrap();
    std::fs::write(dir.join("www/big"), vec![b'x'; BIG_BYTES]).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; daemon off; pid /dev/null; error_log stderr;\n\
             events {{}}\n\
             http {{ access_log off; keepalive_requests 1000000;\n\
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
             uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen 80; root {d}/www; }} }}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    m.n1()
        .ok(&["network", "create", "--driver", "overlay", "benchnet"]);
    let conf = conf.display().to_string();
    m.create(
        "web",
        "--runtime process --network benchnet --constraint node.hostname==n2",
        &[],
        &["nginx", "-c", &conf],
    );
    m.create(
        "client",
        "--runtime process --network benchnet --constraint node.hostname==n1",
        &[],
        &["busybox", "sleep", "10000000"],
    );
    let web = m.wait_running("web", 1).into_iter().next().unwrap();
    let client = m.wait_running("client", 1).into_iter().next().unwrap();
    let net: Value = serde_json::from_str(&m.n1().ok(&["network", "inspect", "benchnet"])).unwrap();
    let web_addr = net[0]["Containers"][&web]["IPv4Address"]
        .as_str()
        .expect("the web task on benchnet")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let doc = m.n1().service_inspect("web").unwrap();
    let vip = doc["Endpoint"]["VirtualIPs"][0]["Addr"]
        .as_str()
        .expect("web's VIP")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let up = |addr: &str| {
        wait_until(LIMIT, || {
            let pid = task_pids(&client)[0].to_string();
            Command::new("nsenter")
                .args(["-t", &pid, "-n", "-m", "curl", "-sf", "-m", "2"])
                .arg(format!("http://{addr}/"))
                .output()
                .is_ok_and(|o| o.status.success())
        })
    };
    assert!(
        up(&web_addr) && up(&vip),
        "web answers on {web_addr} and {vip}"
    );

    println!("client on n1, nginx on n2, {secs} s per figure; direct {web_addr}, VIP {vip}\n");
    println!(
        "{:<8} {:>14} {:>14} {:>14}",
        "path", "req/s (k-a)", "conn/s", "MB/s (4 MiB)"
    );
    let mut rows = Vec::new();
    for (name, addr) in [("direct", &web_addr), ("VIP", &vip)] {
        let page = format!("http://{addr}/");
        let big = format!("http://{addr}/big");
        let (rps, _) = wrk(&client, &page, secs, 16, false);
        let (cps, _) = wrk(&client, &page, secs, 16, true);
        let (_, mbs) = wrk(&client, &big, secs, 4, false);
        println!("{name:<8} {rps:>14.0} {cps:>14.0} {mbs:>14.1}");
        rows.push((rps, cps, mbs));
    }
    let (d, v) = (rows[0], rows[1]);
    println!(
        "VIP/direct {:>10.2}x {:>13.2}x {:>13.2}x\n",
        v.0 / d.0,
        v.1 / d.1,
        v.2 / d.2
    );

    let resolv = in_task(&client, &["cat", "/etc/resolv.conf"]);
    let server = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .expect("a nameserver line")
        .trim()
        .to_string();
    let queries = m.root.path().join("queries");
    for (label, text) in [("web (VIP)", "web A\n"), ("tasks.web", "tasks.web A\n")] {
        std::fs::write(&queries, text).unwrap();
        let (qps, lost) = dnsperf(&client, &server, &queries.display().to_string(), secs);
        println!("DNS {label:<20} {qps:>10.0} answers/s  ({lost})");
    }
}
