//! Each mapping, merge and error of the compose reader, on files written to a temporary
//! folder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use swarm_actors::model::{
    DependencyCondition, EndpointMode, FailureAction, MountKind, PortProtocol, PublishMode,
    RestartCondition, RuntimeKind, ServiceMode, UpdateOrder,
};

use super::*;
use crate::stack::plan::NAMESPACE_LABEL;

/// A fresh folder with `files` written in it; the paths of the files named `*.yml`.
fn dir_with(files: &[(&str, &str)]) -> (PathBuf, Vec<PathBuf>) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("compose-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // A leftover of an earlier run, if any.
    std::fs::create_dir_all(&dir).unwrap();
    let mut yml = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        if name.ends_with(".yml") {
            yml.push(p);
        }
    }
    (dir, yml)
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plan(text: &str) -> Result<StackPlan, ComposeError> {
    let (_d, files) = dir_with(&[("stack.yml", text)]);
    plan_files_with_env(&files, "st", env(&[]))
}

fn err(text: &str) -> String {
    plan(text).expect_err(text).to_string()
}

#[test]
fn wordpress_maps_every_part() {
    let (_d, files) = dir_with(&[
        ("db_password.txt", "secret-pw"),
        (
            "stack.yml",
            r#"version: "3.8"
services:
  db:
    image: mysql:5.7
    volumes:
      - db_data:/var/lib/mysql
    environment:
      MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_password]
    healthcheck:
      test: ["CMD", "mysqladmin", "ping", "-h", "localhost"]
      interval: 2s
    deploy:
      placement:
        constraints: [node.role == manager]
        max_replicas_per_node: 1
  wordpress:
    image: wordpress:latest
    depends_on:
      db:
        condition: service_healthy
    ports:
      - "8000:80"
    restart: always
    environment:
      - WORDPRESS_DB_HOST=db:3306
    secrets:
      - source: db_password
        target: wp_pw
        uid: "33"
        mode: 0400
    deploy:
      replicas: 2
      labels: [tier=front]
      resources:
        limits: {cpus: "0.5", memory: 64M}
      update_config:
        parallelism: 2
        max_failure_ratio: 0.25
        order: start-first
secrets:
  db_password:
    file: ./db_password.txt
volumes:
  db_data: {}
"#,
        ),
    ]);
    let p = plan_files_with_env(&files, "wp", env(&[])).unwrap();
    assert_eq!(p.warnings, ["Ignoring unsupported options: restart"]);
    assert_eq!(p.networks.len(), 1);
    assert_eq!(p.networks[0].create.name, "wp_default");
    assert_eq!(p.secrets[0].name, "wp_db_password");
    assert_eq!(p.secrets[0].data.as_deref(), Some(&b"secret-pw"[..]));
    assert_eq!(p.secrets[0].labels[NAMESPACE_LABEL], "wp");
    assert_eq!(p.volumes[0].name, "wp_db_data");
    let names: Vec<_> = p.services.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!(names, ["wp_db", "wp_wordpress"]);
    let db = &p.services[0].spec;
    assert_eq!(db.task.mounts[0].kind, MountKind::Volume);
    assert_eq!(db.task.mounts[0].source, "wp_db_data");
    assert_eq!(db.task.mounts[0].volume_labels[NAMESPACE_LABEL], "wp");
    assert_eq!(db.task.secrets[0].name, "wp_db_password");
    assert_eq!(db.task.secrets[0].target, "/run/secrets/db_password");
    assert_eq!(
        db.task.health.as_ref().unwrap().cmd,
        "mysqladmin ping -h localhost"
    );
    assert_eq!(db.task.health.as_ref().unwrap().interval_ms, 2_000);
    assert_eq!(db.task.placement.constraints, ["node.role == manager"]);
    assert_eq!(db.task.placement.max_replicas, 1);
    assert_eq!(db.labels[NAMESPACE_LABEL], "wp");
    assert_eq!(db.task.container_labels[NAMESPACE_LABEL], "wp");
    let wp = &p.services[1].spec;
    assert_eq!(wp.mode, ServiceMode::Replicated { replicas: 2 });
    assert_eq!(wp.depends_on[0].service, "wp_db");
    assert_eq!(wp.depends_on[0].condition, DependencyCondition::Healthy);
    assert_eq!(wp.ports[0].published, 8000);
    assert_eq!(wp.ports[0].target, 80);
    assert_eq!(wp.task.restart.condition, RestartCondition::Any);
    assert_eq!(wp.task.env, ["WORDPRESS_DB_HOST=db:3306"]);
    let s = &wp.task.secrets[0];
    assert_eq!(
        (s.target.as_str(), s.uid, s.mode),
        ("/run/secrets/wp_pw", 33, 0o400)
    );
    assert_eq!(wp.labels["tier"], "front");
    assert_eq!(wp.task.resources.limits.nano_cpus, 500_000_000);
    assert_eq!(wp.task.resources.limits.memory_bytes, 64 << 20);
    assert_eq!(wp.update.parallelism, 2);
    assert_eq!(wp.update.max_failure_ratio, 0.25);
    assert_eq!(wp.update.order, UpdateOrder::StartFirst);
    assert_eq!(p.services[1].networks[0].target, "wp_default");
    assert_eq!(p.services[1].networks[0].aliases, ["wordpress"]);
}
