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

#[test]
fn interpolation_reads_the_environment_then_dotenv() {
    let (_d, files) = dir_with(&[
        (".env", "TAG=from-dotenv\nREPLICAS=3\nPORT=9000\n"),
        (
            "stack.yml",
            "services:\n  web:\n    image: \"nginx:${TAG}\"\n    command: echo $$HOME ${MSG:-hi}\n    deploy:\n      replicas: ${REPLICAS}\n    ports: [\"${PORT}:80\"]\n",
        ),
    ]);
    let p = plan_files_with_env(&files, "st", env(&[("TAG", "from-env")])).unwrap();
    let web = &p.services[0].spec;
    assert_eq!(
        web.task.image, "nginx:from-env",
        "the environment wins over .env"
    );
    assert_eq!(web.task.args, ["echo", "$HOME", "hi"]);
    assert_eq!(web.mode, ServiceMode::Replicated { replicas: 3 });
    assert_eq!(web.ports[0].published, 9000);
    let e = plan_files_with_env(
        &files[..],
        "st",
        env(&[("TAG", "x"), ("REPLICAS", "three")]),
    )
    .unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(
        e.to_string().contains("services.web.deploy.replicas"),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: ${IMAGE:?set IMAGE first}\n");
    assert!(
        e.ends_with(
            ":3: services.web.image: required variable IMAGE is missing a value: set IMAGE first"
        ),
        "{e}"
    );
}

#[test]
fn files_merge_in_order() {
    let (_d, files) = dir_with(&[
        (
            "a.yml",
            "services:\n  web:\n    image: web:1\n    command: [a, b]\n    environment: [A=1, B=1]\n    ports: [\"80:80\"]\n    deploy: {replicas: 1}\n",
        ),
        (
            "b.yml",
            "services:\n  web:\n    image: web:2\n    command: c\n    environment: {B: 2}\n    ports: [\"81:81\"]\n  cache:\n    image: redis\n",
        ),
    ]);
    let p = plan_files_with_env(&files, "st", env(&[])).unwrap();
    let web = &p
        .services
        .iter()
        .find(|s| s.spec.name == "st_web")
        .unwrap()
        .spec;
    assert_eq!(web.task.image, "web:2");
    assert_eq!(web.task.args, ["c"]);
    assert_eq!(web.task.env, ["A=1", "B=2"]);
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.mode, ServiceMode::Replicated { replicas: 1 });
    assert_eq!(p.services.len(), 2);
    // An error in the second file names the second file.
    let (_d, files) = dir_with(&[
        ("a.yml", "services:\n  web:\n    image: web:1\n"),
        (
            "b.yml",
            "services:\n  web:\n    deploy:\n      replicas: lots\n",
        ),
    ]);
    let e = plan_files_with_env(&files, "st", env(&[])).unwrap_err();
    assert!(e.file.ends_with("b.yml") && e.line == 4, "{e}");
    let text = config_text_with_env(&files[..1], env(&[])).unwrap();
    assert_eq!(text, "services:\n  web:\n    image: web:1\n");
}

#[test]
fn unsupported_deprecated_and_forbidden_keys() {
    let p = plan(
        "services:\n  web:\n    image: a\n    build: .\n    restart: on-failure:3\n    privileged: true\n    container_name: x\n",
    )
    .unwrap();
    assert_eq!(
        p.warnings[0],
        "Ignoring unsupported options: build, privileged, restart"
    );
    assert!(p.warnings[1].starts_with("Ignoring deprecated options:\n\ncontainer_name: "));
    let r = p.services[0].spec.task.restart;
    assert_eq!(
        (r.condition, r.max_attempts),
        (RestartCondition::OnFailure, Some(3))
    );
    // deploy.restart_policy wins over restart:.
    let p = plan("services:\n  web:\n    image: a\n    restart: always\n    deploy:\n      restart_policy: {condition: none}\n").unwrap();
    assert_eq!(
        p.services[0].spec.task.restart.condition,
        RestartCondition::None
    );
    let e = err("services:\n  web:\n    image: a\n    extends: base\n");
    assert!(e.ends_with(":4: services.web.extends: forbidden option: Support for `extends` is not implemented yet."), "{e}");
    let e = err("services:\n  web:\n    image: a\n    mem_limit: 1g\n");
    assert!(
        e.contains("services.web.mem_limit") && e.contains("deploy.resources"),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: a\n    colour: red\n");
    assert!(
        e.ends_with(":4: services.web.colour: additional property colour is not allowed"),
        "{e}"
    );
    let e = err("version: '3'\nservices: {}\nfrobs: {}\n");
    assert!(
        e.ends_with(":3: frobs: additional property frobs is not allowed"),
        "{e}"
    );
    assert!(
        plan("x-common: &c {image: a}\nservices:\n  web:\n    <<: *c\n    x-note: hi\n").is_ok()
    );
}

#[test]
fn ports_short_and_long() {
    let p = plan(
        "services:\n  web:\n    image: a\n    ports:\n      - 8080:80\n      - \"8000-8002:90-92\"\n      - 53:53/udp\n      - 127.0.0.1:5000:5000\n      - \"7000\"\n      - {target: 81, published: 8081, mode: host, protocol: udp}\n",
    )
    .unwrap();
    let ports: Vec<_> = p.services[0]
        .spec
        .ports
        .iter()
        .map(|p| (p.published, p.target, p.protocol, p.mode))
        .collect();
    use PortProtocol::*;
    use PublishMode::*;
    assert_eq!(
        ports,
        [
            (8080, 80, Tcp, Ingress),
            (8000, 90, Tcp, Ingress),
            (8001, 91, Tcp, Ingress),
            (8002, 92, Tcp, Ingress),
            (53, 53, Udp, Ingress),
            (5000, 5000, Tcp, Ingress),
            (0, 7000, Tcp, Ingress),
            (8081, 81, Udp, Host),
        ]
    );
    let e = err("services:\n  web:\n    image: a\n    ports:\n      - \"8000-8001:90-95\"\n");
    assert!(e.contains(":5: services.web.ports[0]"), "{e}");
    let e = err("services:\n  web:\n    image: a\n    ports:\n      - 99999:80\n");
    assert!(e.contains("1-65535"), "{e}");
}

#[test]
fn volumes_binds_and_tmpfs() {
    let (dir, files) = dir_with(&[(
        "stack.yml",
        "services:\n  web:\n    image: a\n    volumes:\n      - data:/data:ro\n      - ./site:/srv\n      - /etc/hosts:/h\n      - /anon\n      - {type: tmpfs, target: /cache, tmpfs: {size: 1M}}\n      - {type: volume, source: ext, target: /e}\n    tmpfs: /run\nvolumes:\n  data:\n  ext:\n    external: true\n",
    )]);
    let p = plan_files_with_env(&files, "st", env(&[])).unwrap();
    let m = &p.services[0].spec.task.mounts;
    let view: Vec<_> = m
        .iter()
        .map(|m| (m.kind, m.source.clone(), m.target.as_str(), m.read_only))
        .collect();
    let site = std::path::absolute(dir.join("site"))
        .unwrap()
        .display()
        .to_string();
    assert_eq!(
        view,
        [
            (MountKind::Volume, "st_data".to_string(), "/data", true),
            (MountKind::Bind, site, "/srv", false),
            (MountKind::Bind, "/etc/hosts".into(), "/h", false),
            (MountKind::Volume, String::new(), "/anon", false),
            (MountKind::Tmpfs, String::new(), "/cache", false),
            (MountKind::Volume, "ext".into(), "/e", false),
            (MountKind::Tmpfs, String::new(), "/run", false),
        ]
    );
    assert_eq!(m[4].tmpfs_size_bytes, 1 << 20);
    assert_eq!(m[0].volume_labels[NAMESPACE_LABEL], "st");
    assert!(
        m[5].volume_labels.is_empty(),
        "an external volume is not the stack's"
    );
    assert!(p.volumes[1].external);
    let e = err("services:\n  web:\n    image: a\n    volumes:\n      - nope:/data\n");
    assert!(
        e.contains(":5: services.web.volumes[0]: service refers to undefined volume nope"),
        "{e}"
    );
}

#[test]
fn networks_secrets_configs_and_names() {
    let (_d, files) = dir_with(&[
        ("site.conf", "server {}"),
        (
            "stack.yml",
            "services:\n  web:\n    image: a\n    networks:\n      front:\n        aliases: [www]\n      back:\n    configs:\n      - site\n      - {source: site, target: /etc/nginx/site.conf, mode: 0440}\n    secrets: [pw]\n  db:\n    image: b\n    networks: [back]\nnetworks:\n  front:\n    external: true\n  back:\n    name: shared_back\n    internal: true\n    ipam:\n      config: [{subnet: 10.9.0.0/24}]\nconfigs:\n  site:\n    file: ./site.conf\nsecrets:\n  pw:\n    environment: DB_PW\n",
        ),
    ]);
    let p = plan_files_with_env(&files, "st", env(&[("DB_PW", "hunter2")])).unwrap();
    assert_eq!(
        p.networks.len(),
        2,
        "no default network: every service names one"
    );
    assert!(p.networks[0].external && p.networks[0].create.name == "front");
    let back = &p.networks[1].create;
    assert_eq!((back.name.as_str(), back.internal), ("shared_back", true));
    assert_eq!(back.subnet.as_deref(), Some("10.9.0.0/24"));
    assert!(
        back.labels
            .contains(&(NAMESPACE_LABEL.to_string(), "st".to_string()))
    );
    let web = &p.services[0];
    assert_eq!(web.networks[0].target, "front");
    assert_eq!(web.networks[0].aliases, ["www", "web"]);
    assert_eq!(web.networks[1].target, "shared_back");
    let c = &web.spec.task.configs;
    assert_eq!(
        (c[0].name.as_str(), c[0].target.as_str()),
        ("st_site", "/site")
    );
    assert_eq!(
        (c[1].target.as_str(), c[1].mode),
        ("/etc/nginx/site.conf", 0o440)
    );
    assert_eq!(p.configs[0].data.as_deref(), Some(&b"server {}"[..]));
    assert_eq!(p.secrets[0].data.as_deref(), Some(&b"hunter2"[..]));
    let e = err("services:\n  web:\n    image: a\n    networks: [nope]\n");
    assert!(
        e.contains(":4: services.web.networks: service web refers to undefined network nope"),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: a\n    secrets:\n      - nope\n");
    assert!(
        e.contains(":5: services.web.secrets[0]: undefined secret \"nope\""),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: a\n    configs: [{source: nope}]\n");
    assert!(e.contains("undefined config \"nope\""), "{e}");
    let e = err("secrets:\n  s:\n    file: ./missing.txt\nservices: {}\n");
    assert!(
        e.contains(":3: secrets.s.file: ") && e.contains("missing.txt"),
        "{e}"
    );
}

#[test]
fn deploy_healthcheck_and_the_rest() {
    let p = plan(
        r#"services:
  web:
    image: a
    x-swarm-runtime: process
    entrypoint: /bin/sh -c
    command: ["echo 'a b'"]
    working_dir: /srv
    user: "1000:1000"
    hostname: web1
    stop_grace_period: 1m30s
    labels: {c: "1"}
    healthcheck:
      test: curl -f http://localhost/
      timeout: 5s
      retries: 5
      start_period: 10s
    deploy:
      mode: global
      endpoint_mode: dnsrr
      placement:
        preferences: [{spread: node.labels.zone}]
      resources:
        reservations: {cpus: 0.25, memory: 1G}
      restart_policy: {condition: on-failure, delay: 1s, max_attempts: 4, window: 1m}
      rollback_config: {parallelism: 0, failure_action: continue, monitor: 3s, order: start-first}
      update_config: {failure_action: rollback, delay: 10s}
  off:
    image: b
    healthcheck: {disable: true}
  none:
    image: b
    healthcheck: {test: [NONE]}
  shell:
    image: b
    healthcheck: {test: [CMD-SHELL, "pg_isready || exit 1"]}
"#,
    )
    .unwrap();
    let s = &p.services[0].spec;
    assert_eq!(s.task.runtime, RuntimeKind::Process);
    assert_eq!(s.task.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(s.task.args, ["echo 'a b'"]);
    assert_eq!(s.task.workdir.as_deref(), Some("/srv"));
    assert_eq!(s.task.user.as_deref(), Some("1000:1000"));
    assert_eq!(s.task.hostname.as_deref(), Some("web1"));
    assert_eq!(s.task.stop_grace_period_ms, 90_000);
    assert_eq!(s.task.container_labels["c"], "1");
    let h = s.task.health.as_ref().unwrap();
    assert_eq!(h.cmd, "curl -f http://localhost/");
    assert_eq!(
        (h.interval_ms, h.timeout_ms, h.retries, h.start_period_ms),
        (30_000, 5_000, 5, 10_000)
    );
    assert_eq!(s.mode, ServiceMode::Global);
    assert_eq!(s.endpoint_mode, EndpointMode::Dnsrr);
    assert_eq!(s.task.placement.preferences, ["spread=node.labels.zone"]);
    assert_eq!(s.task.resources.reservations.nano_cpus, 250_000_000);
    assert_eq!(s.task.resources.reservations.memory_bytes, 1 << 30);
    let r = s.task.restart;
    assert_eq!(
        (r.condition, r.delay_ms, r.max_attempts, r.window_ms),
        (RestartCondition::OnFailure, 1_000, Some(4), 60_000)
    );
    assert_eq!(s.rollback.parallelism, 0);
    assert_eq!(s.rollback.failure_action, FailureAction::Continue);
    assert_eq!(
        (s.rollback.monitor_ms, s.rollback.order),
        (3_000, UpdateOrder::StartFirst)
    );
    assert_eq!(
        (
            s.update.failure_action,
            s.update.delay_ms,
            s.update.parallelism
        ),
        (FailureAction::Rollback, 10_000, 1)
    );
    assert_eq!(p.services[1].spec.task.health, None);
    assert_eq!(p.services[2].spec.task.health, None);
    assert_eq!(
        p.services[3].spec.task.health.as_ref().unwrap().cmd,
        "pg_isready || exit 1"
    );
    // Defaults are service create's.
    let d = &plan("services:\n  web:\n    image: a\n").unwrap().services[0].spec;
    assert_eq!(d.mode, ServiceMode::Replicated { replicas: 1 });
    assert_eq!(d.task.stop_grace_period_ms, 10_000);
    assert_eq!(d.task.restart.delay_ms, 5_000);
    assert_eq!(d.update.monitor_ms, 5_000);
    assert_eq!(d.task.runtime, RuntimeKind::Docker);
    for (bad, want) in [
        (
            "deploy: {mode: global, replicas: 2}",
            "replicas can only be used with replicated mode",
        ),
        (
            "deploy: {update_config: {max_failure_ratio: 2}}",
            "services.web.deploy.update_config.max_failure_ratio: invalid ratio",
        ),
        (
            "deploy: {resources: {limits: {memory: lots}}}",
            "services.web.deploy.resources.limits.memory: invalid size",
        ),
        (
            "stop_grace_period: 10",
            "services.web.stop_grace_period: invalid duration",
        ),
        ("x-swarm-runtime: vm", "invalid runtime \"vm\""),
        ("healthcheck: {test: [RUN, x]}", "CMD, CMD-SHELL or NONE"),
        (
            "deploy: {restart_policy: {condition: sometimes}}",
            "invalid restart condition",
        ),
        (
            "environment: 5",
            "services.web.environment: must be a mapping or a list",
        ),
        (
            "deploy: {replicas: [1]}",
            "services.web.deploy.replicas: must be a string, found a list",
        ),
    ] {
        let e = err(&format!("services:\n  web:\n    image: a\n    {bad}\n"));
        assert!(e.contains(":4: ") && e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn depends_on_orders_services_and_refuses_cycles() {
    let p = plan(
        "services:\n  web:\n    image: a\n    depends_on: [api]\n  api:\n    image: a\n    depends_on:\n      db: {condition: service_healthy}\n      init: {condition: service_completed_successfully}\n  db:\n    image: a\n  init:\n    image: a\n",
    )
    .unwrap();
    let names: Vec<_> = p.services.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!(names, ["st_db", "st_init", "st_api", "st_web"]);
    let api = &p.services[2].spec;
    assert_eq!(
        api.depends_on[1].condition,
        DependencyCondition::CompletedSuccessfully
    );
    let e = err(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n",
    );
    assert!(e.contains("dependency cycle: a -> b -> c -> a"), "{e}");
    let e = err("services:\n  a:\n    image: x\n    depends_on: [ghost]\n");
    assert!(
        e.contains(":4: services.a.depends_on: depends on undefined service \"ghost\""),
        "{e}"
    );
    let e = err(
        "services:\n  a:\n    image: x\n    depends_on: {b: {condition: service_done}}\n  b:\n    image: x\n",
    );
    assert!(e.contains("invalid condition"), "{e}");
}

#[test]
fn names_bounds_and_broken_files() {
    let (_d, files) = dir_with(&[("stack.yml", "services:\n  web:\n    image: a\n")]);
    for bad in ["", "Web", "_web", "web stack", "wéb"] {
        let e = plan_files_with_env(&files, bad, env(&[])).unwrap_err();
        assert!(e.message.contains("invalid stack name"), "{bad}: {e}");
    }
    assert!(plan_files_with_env(&files, "web-2_a", env(&[])).is_ok());
    let e = err("services:\n  web:\n    image: [\n");
    assert!(e.contains("stack.yml:3: "), "{e}");
    let e = err("services:\n  web:\n    image: a\n  web:\n    image: b\n");
    assert!(
        e.contains("stack.yml:4: ") && e.contains("duplicate"),
        "{e}"
    );
    let e = err("- a\n- b\n");
    assert!(e.contains("top-level object must be a mapping"), "{e}");
    let e = err("services:\n  web:\n    command: x\n");
    assert!(e.contains("no image specified"), "{e}");
    let many: String = (0..=SERVICES_MAX)
        .map(|i| format!("  s{i}:\n    image: a\n"))
        .collect();
    let e = err(&format!("services:\n{many}"));
    assert!(
        e.contains(&format!("a stack has at most {SERVICES_MAX}")),
        "{e}"
    );
    let (_d, files) = dir_with(&[("big.yml", &"#".repeat(FILE_BYTES_MAX as usize + 1))]);
    let e = plan_files_with_env(&files, "st", env(&[])).unwrap_err();
    assert!(e.message.contains("at most"), "{e}");
    let e =
        plan_files_with_env(&[PathBuf::from("/nonexistent/x.yml")], "st", env(&[])).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/x.yml: "), "{e}");
}

#[test]
fn config_prints_the_merged_interpolated_file_sorted() {
    let (_d, files) = dir_with(&[
        (
            "a.yml",
            "version: \"3.8\"\nservices:\n  web:\n    image: web:${TAG}\n    ports: [\"80:80\"]\n    environment: [B=2, A=1]\nnetworks:\n  net: {}\n",
        ),
        ("b.yml", "services:\n  web:\n    deploy: {replicas: 2}\n"),
    ]);
    let text = config_text_with_env(&files, env(&[("TAG", "1")])).unwrap();
    assert_eq!(
        text,
        "version: \"3.8\"\nservices:\n  web:\n    deploy:\n      replicas: 2\n    environment:\n      - B=2\n      - A=1\n    image: web:1\n    ports:\n      - \"80:80\"\nnetworks:\n  net: {}\n"
    );
    let e = config_text_with_env(&files, env(&[])).err();
    assert!(e.is_none(), "an unset variable is empty: {e:?}");
}
