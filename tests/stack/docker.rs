//! The tutorial's wordpress stack on the Docker runtime, with the imported busybox image: one
//! node in this namespace of the machine (where the engine's bridges are; two nodes in one
//! namespace cannot both run overlay networks), `db` and `wordpress` as containers on the
//! stack's overlay network. `db` reads its two secrets, keeps its page in the named volume
//! (an engine volume labelled with the stack) and turns healthy after a delay; `wordpress`
//! depends on it with `service_healthy`, fetches db's page by name through the VIP at its
//! first try and serves it on a published port, which the routing mesh answers on the node.
//! `stack rm` leaves no container, network or volume of the stack.

use std::process::Command;
use std::time::Duration;

use super::*;
use common::Node;
use swarm_actors::runtime::testimage::TEST_IMAGE;

/// The node's port and the published port (away from the lab's).
const PORT: u16 = 29341;
const PUBLISHED: u16 = 29390;
/// The stack's network's subnet (away from the defaults and the other tests').
const SUBNET: &str = "10.82.0.0/24";

fn compose() -> String {
    format!(
        r#"version: "3.8"
services:
  db:
    image: {TEST_IMAGE}
    entrypoint: ["sh", "-c"]
    command:
      - |
        test -s /run/secrets/db_password && test -s /run/secrets/db_root_password || exit 3
        mkdir -p /var/lib/mysql/www
        cat /run/secrets/db_password > /var/lib/mysql/www/index.html
        sleep 3
        echo yes > /var/lib/mysql/ready
        exec httpd -f -p 3306 -h /var/lib/mysql/www
    volumes:
      - db_data:/var/lib/mysql
    secrets:
      - db_root_password
      - db_password
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test -s /var/lib/mysql/ready"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 20s
  wordpress:
    depends_on:
      db:
        condition: service_healthy
    image: {TEST_IMAGE}
    entrypoint: ["sh", "-c"]
    command:
      - |
        printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 db 3306 > /tmp/raw || exit 4
        grep -q '200 OK' /tmp/raw || exit 4
        mkdir -p /www
        tail -n 1 /tmp/raw > /www/index.html
        exec httpd -f -p 80 -h /www
    ports:
      - "{PUBLISHED}:80"
    secrets:
      - db_password
    stop_grace_period: 1s
    deploy:
      restart_policy:
        condition: on-failure
        delay: 1s
networks:
  default:
    ipam:
      config:
        - subnet: {SUBNET}
secrets:
  db_password:
    file: db_password.txt
  db_root_password:
    file: db_root_password.txt
volumes:
  db_data:
"#
    )
}

/// Lines of `docker <args>` (IDs or names), for what the stack left.
fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The page the published port answers on this machine's loopback, if any (3 s limit).
fn page() -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "-m", "3", &format!("http://127.0.0.1:{PUBLISHED}/")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn the_wordpress_stack_runs_on_containers_of_the_imported_image() {
    // Alone in this namespace (a Docker cluster's slices), and one lab user at a time.
    let _alone = common::host_netns_alone();
    let _lock = common::cluster_lab::one_at_a_time();
    if skip("the_wordpress_stack_runs_on_containers…") || !common::docker_engine() {
        return;
    }
    let stack_label = "label=com.docker.stack.namespace=wpstack";
    let leftovers = || {
        let mut left = docker_lines(&["ps", "-aq", "--filter", stack_label]);
        left.extend(docker_lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            stack_label,
        ]));
        left.extend(docker_lines(&[
            "network",
            "ls",
            "-q",
            "--filter",
            stack_label,
        ]));
        left
    };
    // A killed run's containers and volumes would stand in the way.
    for c in docker_lines(&["ps", "-aq", "--filter", stack_label]) {
        let _ = Command::new("docker").args(["rm", "-f", &c]).output();
    }
    for v in docker_lines(&["volume", "ls", "-q", "--filter", stack_label]) {
        let _ = Command::new("docker").args(["volume", "rm", &v]).output();
    }
    let root = tempfile::tempdir().unwrap();
    let n = Node::bootstrap(root.path(), "d1", PORT);
    let dir = root.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("db_password.txt"), format!("{DB_PASSWORD}\n")).unwrap();
    std::fs::write(dir.join("db_root_password.txt"), "root-secret-c41d\n").unwrap();
    let file = dir.join("wordpress.yml");
    std::fs::write(&file, compose()).unwrap();

    phase("stack deploy on the Docker runtime: db, then wordpress once db is healthy");
    let f = file.display().to_string();
    let out = n
        .cli_within(
            Duration::from_secs(120),
            &["stack", "deploy", "-c", &f, "wpstack"],
        )
        .expect("stack deploy answers");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stack deploy failed: {said}");
    let ok = wait_until(LIMIT, || page().as_deref() == Some(DB_PASSWORD));
    assert!(
        ok,
        "wordpress did not serve db's page on {PUBLISHED}: {:?}, ps: {:?}",
        page(),
        n.service_ps("wpstack_wordpress")
    );
    let wp = n.service_ps("wpstack_wordpress");
    assert_eq!(
        wp.len(),
        1,
        "wordpress reached db at its first try, once db was healthy: {wp:?}"
    );
    let containers = docker_lines(&["ps", "-q", "--filter", stack_label]);
    assert_eq!(containers.len(), 2, "db's and wordpress's containers");
    let volumes = docker_lines(&["volume", "ls", "-q", "--filter", stack_label]);
    assert_eq!(volumes, ["wpstack_db_data"], "db's named volume, labelled");

    phase("stack rm: no container, network or volume of the stack is left");
    let rm = n
        .cli_within(Duration::from_secs(150), &["stack", "rm", "wpstack"])
        .expect("stack rm answers");
    assert!(
        rm.status.success(),
        "stack rm failed: {}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let ok = wait_until(LIMIT, || leftovers().is_empty());
    assert!(ok, "left behind: {:?}", leftovers());
}
