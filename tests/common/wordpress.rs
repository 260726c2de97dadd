//! The tutorial's `wordpress.yml` (its last step), adapted to process tasks, for the stack and
//! walkthrough tests: `db` reads its two password files from `/run/secrets`, keeps its data in
//! the named volume `db_data`, takes [`DB_DELAY_S`] to get ready, then serves its password on
//! port 3306; `wordpress` depends on `db` being healthy, asks it by name over the stack's
//! network with `nc` (it fails without an answer), then serves `wordpress` on the published
//! port. Both write the times they reached each step into the test's folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster_lab::{ClusterLab, LIMIT};
use super::wait_until;

/// The password `db` serves and `wordpress` reads from it.
pub const DB_PASSWORD: &str = "wp-secret-7f3a";

/// How long db waits before it is ready: long enough that a wordpress started without
/// waiting for it would have started well before.
pub const DB_DELAY_S: u64 = 4;

/// The compose file, with the published port and the test's folder filled in.
pub fn wordpress_yml(port: u16, out: &Path) -> String {
    let out = out.display();
    format!(
        r#"version: "3.8"
services:
  db:
    image: busybox
    x-swarm-runtime: process
    entrypoint: ["sh", "-c"]
    command:
      - |
        date +%s%N > {out}/db-start
        test -s /run/secrets/db_password && test -s /run/secrets/db_root_password || exit 3
        mkdir -p /var/lib/mysql/www
        cat /run/secrets/db_password > /var/lib/mysql/www/index.html
        sleep {DB_DELAY_S}
        date +%s%N > {out}/db-ready
        echo yes > /var/lib/mysql/ready
        exec busybox httpd -f -p 3306 -h /var/lib/mysql/www
    volumes:
      - db_data:/var/lib/mysql
    environment:
      MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db_root_password
      MYSQL_DATABASE: wordpress
      MYSQL_USER: wordpress
      MYSQL_PASSWORD_FILE: /run/secrets/db_password
    secrets:
      - db_root_password
      - db_password
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
    image: busybox
    x-swarm-runtime: process
    entrypoint: ["sh", "-c"]
    command:
      - |
        date +%s%N > {out}/wp-start-$$SWARM_TASK_ID
        printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 3 db 3306 > {out}/raw-$$SWARM_TASK_ID || exit 4
        busybox grep -q '200 OK' {out}/raw-$$SWARM_TASK_ID || exit 4
        busybox tail -n 1 {out}/raw-$$SWARM_TASK_ID > {out}/wp-db-$$SWARM_TASK_ID
        mkdir -p {out}/www-$$SWARM_TASK_ID
        echo wordpress > {out}/www-$$SWARM_TASK_ID/index.html
        exec busybox httpd -f -p 80 -h {out}/www-$$SWARM_TASK_ID
    ports:
      - "{port}:80"
    environment:
      WORDPRESS_DB_HOST: db:3306
      WORDPRESS_DB_USER: wordpress
      WORDPRESS_DB_PASSWORD_FILE: /run/secrets/db_password
      WORDPRESS_DB_NAME: wordpress
    secrets:
      - db_password
    deploy:
      restart_policy:
        condition: on-failure
        delay: 1s
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

/// Writes the compose file (published on `port`, the tasks' times and pages in `out`) and its
/// two secret files into `dir`; the compose file's path.
pub fn write_files(dir: &Path, port: u16, out: &Path) -> PathBuf {
    std::fs::write(dir.join("db_password.txt"), format!("{DB_PASSWORD}\n")).unwrap();
    std::fs::write(dir.join("db_root_password.txt"), "root-secret-c41d\n").unwrap();
    let file = dir.join("wordpress.yml");
    std::fs::write(&file, wordpress_yml(port, out)).unwrap();
    file
}

/// What the first `stack deploy` of the file prints, in this order: the network and the
/// secrets first, then db before wordpress (it depends on db).
pub const DEPLOY_LINES: [&str; 5] = [
    "Creating network wpstack_default",
    "Creating secret wpstack_db_password",
    "Creating secret wpstack_db_root_password",
    "Creating service wpstack_db",
    "Creating service wpstack_wordpress",
];

/// `stack ls` output `ls` has the row `wpstack 2`: the stack, with its two services.
pub fn assert_wpstack_listed(ls: &str) {
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["wpstack", "2"]),
        "{ls}"
    );
}

/// `stack deploy -c FILE wpstack` on the cluster's manager (at most 120 s); what it printed.
pub fn deploy(c: &ClusterLab, file: &Path) -> String {
    let f = file.display().to_string();
    let out = c
        .n1()
        .cli_within(
            Duration::from_secs(120),
            &["stack", "deploy", "-c", &f, "wpstack"],
        )
        .expect("stack deploy answers");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "stack deploy failed: {text}");
    text
}

/// What each wordpress task read from db (the files `wp-db-<task>` in `out`): db's page, its
/// password, once wordpress reached it by name.
pub fn pages_read_from_db(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wp-db-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

/// `stack rm wpstack`, its lines checked (services, then secrets, then the network), then a
/// wait (at most [`LIMIT`]) until no service, secret, network, volume or stack of it is left.
pub fn remove_and_check_nothing_left(c: &ClusterLab) {
    let rm = c
        .n1()
        .cli_within(Duration::from_secs(150), &["stack", "rm", "wpstack"])
        .expect("stack rm answers");
    let said =
        String::from_utf8_lossy(&rm.stdout).into_owned() + &String::from_utf8_lossy(&rm.stderr);
    assert!(rm.status.success(), "stack rm failed: {said}");
    for line in [
        "Removing service wpstack_db",
        "Removing service wpstack_wordpress",
        "Removing secret wpstack_db_password",
        "Removing network wpstack_default",
    ] {
        assert!(said.contains(line), "{line:?} not in: {said}");
    }
    let ok = wait_until(LIMIT, || {
        !c.n1().ok(&["service", "ls"]).contains("wpstack")
            && !c.n1().ok(&["secret", "ls"]).contains("wpstack")
            && !c.n1().ok(&["network", "ls"]).contains("wpstack")
            && c.volumes().is_empty()
            && !c.n1().ok(&["stack", "ls"]).contains("wpstack")
    });
    assert!(
        ok,
        "left behind: services {}, secrets {}, networks {}, volumes {:?}",
        c.n1().ok(&["service", "ls"]),
        c.n1().ok(&["secret", "ls"]),
        c.n1().ok(&["network", "ls"]),
        c.volumes()
    );
}
