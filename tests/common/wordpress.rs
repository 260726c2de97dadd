//! The tutorial's `wordpress.yml` (its last step), adapted to process tasks, for the stack and
//! walkthrough tests: `db` reads its two password files from `/run/secrets`, keeps its data in
//! the named volume `db_data`, takes [`DB_DELAY_S`] to get ready, then serves its password on
//! port 3306; `wordpress` depends on `db` being healthy, asks it by name over the stack's
//! network with `nc` (it fails without an answer), then serves `wordpress` on the published
//! port. Both write the times they reached each step into the test's folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster_lab::ClusterLab;

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
