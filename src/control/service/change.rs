//! The pure half of `service update` and `service rollback`: a [`ServiceChange`] applied to
//! the stored spec, and the store write each command proposes. The async half (reading the
//! store, proposing, retrying a lost compare-and-set) is in the parent module.

use std::collections::BTreeMap;

use swarm_actors::model::{
    FileKind, FileRef, HealthCheck, NetworkId, NetworkRef, Service, ServiceMode, ServiceSpec,
    TaskSpec,
};
use swarm_actors::store::{Expect, Kind, ObjectBody, Op, StoreCommand};

use super::Found;
use crate::control::ports::allocate;
use crate::control::proto::{HealthChange, ServiceChange};
use crate::control::validate::{env_key, validate_env, validate_spec};

/// Applies `change` to a copy of the stored spec: the new spec, or why it cannot be applied.
/// Whatever `change` leaves empty keeps its stored value; the caller checks the result with
/// [`validate_spec`].
pub fn apply_change(service: &Service, change: &ServiceChange) -> Result<ServiceSpec, String> {
    let mut spec = service.spec.clone();
    if let Some(replicas) = change.replicas {
        match &mut spec.mode {
            ServiceMode::Replicated { replicas: r } => *r = replicas,
            ServiceMode::Global => {
                return Err(format!(
                    "{}: scale can only be used with replicated mode",
                    spec.name
                ));
            }
        }
    }
    add_rm_labels(&mut spec.labels, &change.label_add, &change.label_rm);
    let task = &mut spec.task;
    if let Some(image) = &change.image {
        task.image = image.clone();
    }
    if let Some(args) = &change.args {
        task.args = args.clone();
    }
    let placement = &mut task.placement;
    add_rm(
        &mut placement.constraints,
        &change.constraint_add,
        &change.constraint_rm,
    );
    add_rm(
        &mut placement.preferences,
        &change.placement_pref_add,
        &change.placement_pref_rm,
    );
    let env = &mut task.env;
    for k in &change.env_rm {
        env.retain(|e| env_key(e) != k);
    }
    for e in &change.env_add {
        validate_env(e)?;
        env.retain(|x| env_key(x) != env_key(e));
        env.push(e.clone());
    }
    add_rm_labels(
        &mut task.container_labels,
        &change.container_label_add,
        &change.container_label_rm,
    );
    let res = &mut task.resources;
    set(&mut res.reservations.nano_cpus, change.reserve_nano_cpus);
    set(
        &mut res.reservations.memory_bytes,
        change.reserve_memory_bytes,
    );
    set(&mut res.limits.nano_cpus, change.limit_nano_cpus);
    set(&mut res.limits.memory_bytes, change.limit_memory_bytes);
    apply_health(&mut task.health, &change.health)?;
    let restart = &mut task.restart;
    set(&mut restart.condition, change.restart.condition);
    set(&mut restart.delay_ms, change.restart.delay_ms);
    if let Some(n) = change.restart.max_attempts {
        restart.max_attempts = Some(n);
    }
    set(&mut restart.window_ms, change.restart.window_ms);
    set(&mut task.stop_grace_period_ms, change.stop_grace_period_ms);
    let name = &spec.name;
    apply_refs(
        name,
        FileKind::Secret,
        &mut task.secrets,
        &change.secret_rm,
        &change.secret_add,
    )?;
    apply_refs(
        name,
        FileKind::Config,
        &mut task.configs,
        &change.config_rm,
        &change.config_add,
    )?;
    for rm in &change.publish_rm {
        rm.apply(name, &mut spec.ports)?;
    }
    for add in &change.publish_add {
        spec.ports.retain(|p| {
            add.published == 0 || (p.published, p.protocol) != (add.published, add.protocol)
        });
        spec.ports.push(*add);
    }
    apply_networks(name, &mut spec.task.networks, change)?;
    apply_container(&mut spec.task, change)?;
    if let Some(mode) = change.endpoint_mode {
        spec.endpoint_mode = mode;
    }
    change.update.apply(&mut spec.update);
    change.rollback.apply(&mut spec.rollback);
    Ok(spec)
}

/// `--network-rm`, then `--network-add` (one the service is on already gets the new aliases),
/// with the networks named by full ID (the caller resolved them).
fn apply_networks(
    service: &str,
    refs: &mut Vec<NetworkRef>,
    change: &ServiceChange,
) -> Result<(), String> {
    for id in &change.network_rm {
        let before = refs.len();
        refs.retain(|r| r.network.to_string() != *id);
        if refs.len() == before {
            return Err(format!("service {service} is not on network {id}"));
        }
    }
    for add in &change.network_add {
        let network: NetworkId = add
            .target
            .parse()
            .map_err(|_| format!("network {} not found", add.target))?;
        refs.retain(|r| r.network != network);
        refs.push(NetworkRef {
            network,
            aliases: add.aliases.clone(),
        });
    }
    Ok(())
}

/// `--secret-rm` (a name or ID the service uses, else an error), then `--secret-add` (refs
/// the caller resolved); duplicate targets are [`validate_spec`]'s to refuse.
fn apply_refs(
    service: &str,
    kind: FileKind,
    refs: &mut Vec<FileRef>,
    rm: &[String],
    add: &[FileRef],
) -> Result<(), String> {
    for name in rm {
        let before = refs.len();
        refs.retain(|r| r.name != *name && r.id.to_string() != *name);
        if refs.len() == before {
            return Err(format!(
                "service {service} does not use {} {name}",
                kind.as_str()
            ));
        }
    }
    refs.extend(add.iter().cloned());
    Ok(())
}

/// `--entrypoint`, `--workdir`, `--hostname`, `--mount-rm` then `--mount-add`, and
/// `--replicas-max-per-node`.
fn apply_container(task: &mut TaskSpec, change: &ServiceChange) -> Result<(), String> {
    if let Some(e) = &change.entrypoint {
        task.entrypoint = e.clone();
    }
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    if let Some(w) = &change.workdir {
        task.workdir = some(w);
    }
    if let Some(h) = &change.hostname {
        task.hostname = some(h);
    }
    for target in &change.mount_rm {
        let before = task.mounts.len();
        task.mounts.retain(|m| m.target != *target);
        if task.mounts.len() == before {
            return Err(format!("the service has no mount on {target}"));
        }
    }
    for add in &change.mount_add {
        task.mounts.retain(|m| m.target != add.target);
        task.mounts.push(add.clone());
    }
    set(&mut task.placement.max_replicas, change.max_replicas);
    Ok(())
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// Removes `rm`, then appends what `add` holds that is not there yet (order kept).
fn add_rm(list: &mut Vec<String>, add: &[String], rm: &[String]) {
    list.retain(|x| !rm.contains(x));
    for a in add {
        if !list.contains(a) {
            list.push(a.clone());
        }
    }
}

/// Docker's order for labels: the additions, then the removals.
fn add_rm_labels(labels: &mut BTreeMap<String, String>, add: &[(String, String)], rm: &[String]) {
    for (k, v) in add {
        labels.insert(k.clone(), v.clone());
    }
    for k in rm {
        labels.remove(k);
    }
}

/// `--health-*` on top of the stored check. A check needs a command: the other flags change an
/// existing check, or come with `--health-cmd`.
fn apply_health(health: &mut Option<HealthCheck>, change: &HealthChange) -> Result<(), String> {
    let fields = change.cmd.is_some()
        || change.interval_ms.is_some()
        || change.timeout_ms.is_some()
        || change.retries.is_some()
        || change.start_period_ms.is_some();
    if change.none {
        if fields {
            // Docker's words.
            return Err("--no-healthcheck conflicts with --health-* options".into());
        }
        *health = None;
        return Ok(());
    }
    if !fields {
        return Ok(());
    }
    let mut h = match (health.take(), &change.cmd) {
        (Some(h), _) => h,
        (None, Some(cmd)) => HealthChange::check(cmd.clone()),
        (None, None) => {
            return Err(
                "the service has no health check: give --health-cmd with the other --health-* flags"
                    .into(),
            );
        }
    };
    set(&mut h.cmd, change.cmd.clone());
    set(&mut h.interval_ms, change.interval_ms);
    set(&mut h.timeout_ms, change.timeout_ms);
    set(&mut h.retries, change.retries);
    set(&mut h.start_period_ms, change.start_period_ms);
    *health = Some(h);
    Ok(())
}

/// The store write of `service update`: `change` applied to the stored spec and checked, the
/// old spec kept as the previous one (`Service::updated`), compared against the version read.
pub fn update_write(
    found: &Found,
    change: &ServiceChange,
    services: &[Found],
    now_ms: u64,
) -> Result<(String, StoreCommand), String> {
    let mut spec = apply_change(&found.service, change)?;
    validate_spec(&spec)?;
    let s = &found.service;
    allocate(&mut spec.ports, s.id, &s.spec.ports, services)?;
    validate_spec(&spec)?;
    Ok(put(
        found,
        found.service.updated(spec, change.force),
        now_ms,
    ))
}

/// The store write of `stack deploy` for a service that exists: its spec replaced by `spec`
/// (refs and networks already resolved), checked as `service update` checks it. The stored
/// `force_update` is kept (a file has no such key), and a published port the node picked
/// stays the service's. `None` when the result equals the stored spec: nothing to write.
pub fn replace_write(
    found: &Found,
    mut spec: ServiceSpec,
    services: &[Found],
    now_ms: u64,
) -> Result<(String, Option<StoreCommand>), String> {
    let s = &found.service;
    if spec.name != s.spec.name {
        return Err(format!(
            "the spec is named {}, not {}: a replace keeps the service's name",
            spec.name, s.spec.name
        ));
    }
    validate_spec(&spec)?;
    spec.task.force_update = s.spec.task.force_update;
    allocate(&mut spec.ports, s.id, &s.spec.ports, services)?;
    validate_spec(&spec)?;
    if spec == s.spec {
        return Ok((s.id.to_string(), None));
    }
    let (id, cmd) = put(found, s.updated(spec, false), now_ms);
    Ok((id, Some(cmd)))
}

/// The store write of `service rollback`: spec and previous spec swapped, the rollout left to
/// the leader with the rollback config. The previous spec passed the checks when it was
/// stored; it is not checked again, so that a rollback always works.
pub fn rollback_write(found: &Found, now_ms: u64) -> Result<(String, StoreCommand), String> {
    Ok(put(found, found.service.manual_rollback(now_ms)?, now_ms))
}

/// A write of `service` over the stored one, if the store still holds the version `found`
/// read; with the service's ID, what the command answers.
fn put(found: &Found, service: Service, now_ms: u64) -> (String, StoreCommand) {
    let id = service.id.to_string();
    let cmd = StoreCommand {
        now_ms,
        ops: vec![Op::Put {
            kind: Kind::Service,
            id: found.obj.id.clone(),
            expect: Expect::Version(found.obj.version),
            body: ObjectBody::Service(service),
        }],
    };
    (id, cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{RestartChange, RolloutChange};
    use crate::control::service::tests::stored;
    use crate::control::validate::REPLICAS_MAX;
    use swarm_actors::model::{
        FailureAction, Mount, MountKind, PortConfig, RestartCondition, ServiceId, UpdateConfig,
        UpdateOrder, UpdateState,
    };
    use swarm_actors::runtime::LABEL_TASK;

    fn written(cmd: &StoreCommand) -> (&str, Expect, &Service) {
        match &cmd.ops[..] {
            [
                Op::Put {
                    kind: Kind::Service,
                    id,
                    expect,
                    body: ObjectBody::Service(s),
                },
            ] => (id.as_str(), *expect, s),
            other => panic!("not one service put: {other:?}"),
        }
    }

    #[test]
    fn an_empty_change_keeps_the_spec() {
        let mut s = stored("web", 7).service;
        s.spec.task.health = Some(HealthChange::check("true".into()));
        s.spec.task.container_labels.insert("a".into(), "1".into());
        s.spec.update.parallelism = 3;
        assert_eq!(apply_change(&s, &ServiceChange::default()).unwrap(), s.spec);
    }

    #[test]
    fn update_changes_only_what_was_asked() {
        let mut s = stored("web", 7).service;
        s.spec.task.env = vec!["A=1".into(), "B=2".into()];
        s.spec.task.placement.constraints = vec!["node.role==worker".into()];
        s.spec.task.placement.preferences = vec!["spread=node.labels.rack".into()];
        s.spec.labels = [("keep", "1"), ("old", "x")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        s.spec.task.container_labels = [("c.keep", "1"), ("c.old", "x")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        s.spec.task.user = Some("nobody".into());
        s.spec.task.resources.limits.memory_bytes = 99;
        s.spec.rollback.delay_ms = 123;
        let change = ServiceChange {
            replicas: Some(5),
            image: Some("true".into()),
            args: Some(vec!["-c".into(), "exit 1".into()]),
            constraint_add: vec!["node.labels.env==prod".into()],
            constraint_rm: vec!["node.role==worker".into()],
            placement_pref_add: vec!["spread=node.labels.zone".into()],
            placement_pref_rm: vec!["spread=node.labels.rack".into()],
            env_add: vec!["A=9".into()],
            env_rm: vec!["B".into()],
            label_add: vec![("new".into(), "y".into())],
            label_rm: vec!["old".into()],
            container_label_add: vec![("c.new".into(), "y".into())],
            container_label_rm: vec!["c.old".into()],
            reserve_nano_cpus: Some(5),
            reserve_memory_bytes: Some(6),
            limit_nano_cpus: Some(7),
            limit_memory_bytes: None,
            health: HealthChange {
                cmd: Some("check".into()),
                interval_ms: Some(1_000),
                ..Default::default()
            },
            restart: RestartChange {
                condition: Some(RestartCondition::None),
                delay_ms: Some(1),
                max_attempts: Some(2),
                window_ms: None,
            },
            stop_grace_period_ms: Some(3),
            update: RolloutChange {
                parallelism: Some(2),
                delay_ms: Some(90_000),
                failure_action: Some(FailureAction::Rollback),
                order: Some(UpdateOrder::StartFirst),
                ..Default::default()
            },
            rollback: RolloutChange {
                max_failure_ratio: Some(0.5),
                monitor_ms: Some(1),
                ..Default::default()
            },
            force: false,
            ..Default::default()
        };
        let new = apply_change(&s, &change).unwrap();
        let strings = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let map = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(new.mode, ServiceMode::Replicated { replicas: 5 });
        let t = &new.task;
        assert_eq!(t.image, "true");
        assert_eq!(t.args, strings(&["-c", "exit 1"]));
        assert_eq!(t.env, strings(&["A=9"]));
        assert_eq!(t.placement.constraints, strings(&["node.labels.env==prod"]));
        assert_eq!(
            t.placement.preferences,
            strings(&["spread=node.labels.zone"])
        );
        assert_eq!(new.labels, map(&[("keep", "1"), ("new", "y")]));
        assert_eq!(t.container_labels, map(&[("c.keep", "1"), ("c.new", "y")]));
        let r = t.resources;
        assert_eq!(
            (r.reservations.nano_cpus, r.reservations.memory_bytes),
            (5, 6)
        );
        assert_eq!((r.limits.nano_cpus, r.limits.memory_bytes), (7, 99));
        let h = t.health.clone().unwrap();
        assert_eq!((h.cmd.as_str(), h.interval_ms), ("check", 1_000));
        assert_eq!((h.timeout_ms, h.retries), (30_000, 3), "Docker's defaults");
        assert_eq!(t.restart.condition, RestartCondition::None);
        assert_eq!(
            (
                t.restart.delay_ms,
                t.restart.max_attempts,
                t.restart.window_ms
            ),
            (1, Some(2), s.spec.task.restart.window_ms)
        );
        assert_eq!(t.stop_grace_period_ms, 3);
        assert_eq!(
            new.update,
            UpdateConfig {
                parallelism: 2,
                delay_ms: 90_000,
                failure_action: FailureAction::Rollback,
                order: UpdateOrder::StartFirst,
                ..s.spec.update
            }
        );
        assert_eq!(
            new.rollback,
            UpdateConfig {
                max_failure_ratio: 0.5,
                monitor_ms: 1,
                ..s.spec.rollback
            }
        );
        assert_eq!(
            new.rollback.delay_ms, 123,
            "a rollback setting not asked for stays"
        );
        // What no flag touches stays.
        assert_eq!(t.user, s.spec.task.user);
        assert_eq!(t.runtime, s.spec.task.runtime);
        assert_eq!(t.force_update, s.spec.task.force_update);
        assert_eq!((&new.name, &new.ports), (&s.spec.name, &s.spec.ports));
        assert!(
            apply_change(
                &s,
                &ServiceChange {
                    env_add: vec!["bad".into()],
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn secret_refs_are_removed_then_added() {
        use swarm_actors::model::{FileRef, SecretId};
        let r = |id, name: &str, target: &str| FileRef {
            id: SecretId(id),
            name: name.into(),
            target: target.into(),
            uid: 0,
            gid: 0,
            mode: FileRef::DEFAULT_MODE,
        };
        let mut found = stored("web", 7);
        found.service.spec.task.secrets = vec![
            r(1, "old_pw", "/run/secrets/db_password"),
            r(2, "tls", "/run/secrets/tls"),
        ];
        found.service.spec.task.configs = vec![r(3, "conf", "/conf")];
        // Rotation: the old secret out, the new one in at the same target.
        let rotate = ServiceChange {
            secret_rm: vec!["old_pw".into()],
            secret_add: vec![r(4, "new_pw", "/run/secrets/db_password")],
            config_rm: vec![SecretId(3).to_string()],
            ..Default::default()
        };
        let (_, cmd) = update_write(&found, &rotate, &[], 5).unwrap();
        let (_, _, s) = written(&cmd);
        let names: Vec<_> = s
            .spec
            .task
            .secrets
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["tls", "new_pw"]);
        assert!(s.spec.task.configs.is_empty(), "removed by ID");
        assert_eq!(
            s.spec_version, 2,
            "new refs are a new task spec: tasks roll"
        );
        // Adding at a target already used is refused; so is removing one not used.
        let clash = ServiceChange {
            secret_add: vec![r(4, "new_pw", "/run/secrets/db_password")],
            ..Default::default()
        };
        let e = update_write(&found, &clash, &[], 5).unwrap_err();
        assert!(
            e.contains("duplicate target /run/secrets/db_password"),
            "{e}"
        );
        let e = update_write(
            &found,
            &ServiceChange {
                config_rm: vec!["tls".into()],
                ..Default::default()
            },
            &[],
            5,
        )
        .unwrap_err();
        assert_eq!(e, "service web does not use config tls");
    }

    #[test]
    fn health_flags_change_a_check_or_need_a_command() {
        let s = stored("web", 7).service;
        let only_interval = ServiceChange {
            health: HealthChange {
                interval_ms: Some(1_000),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = apply_change(&s, &only_interval).unwrap_err();
        assert!(err.contains("--health-cmd"), "{err}");
        let mut checked = s.clone();
        checked.spec.task.health = Some(HealthChange::check("probe".into()));
        let h = apply_change(&checked, &only_interval)
            .unwrap()
            .task
            .health
            .unwrap();
        assert_eq!((h.cmd.as_str(), h.interval_ms), ("probe", 1_000));
        let none = ServiceChange {
            health: HealthChange {
                none: true,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(apply_change(&checked, &none).unwrap().task.health, None);
        let both = ServiceChange {
            health: HealthChange {
                none: true,
                cmd: Some("x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(
            apply_change(&checked, &both)
                .unwrap_err()
                .contains("--no-healthcheck")
        );
    }

    #[test]
    fn an_update_write_keeps_the_old_spec_and_compares_the_version_read() {
        let found = stored("web", 7);
        let change = ServiceChange {
            image: Some("true".into()),
            ..Default::default()
        };
        let (id, cmd) = update_write(&found, &change, &[], 5).unwrap();
        assert_eq!(id, ServiceId(7).to_string());
        let (key, expect, s) = written(&cmd);
        assert_eq!((key, expect), ("web", Expect::Version(3)));
        assert_eq!(s.spec.task.image, "true");
        assert_eq!(s.previous_spec.as_ref(), Some(&found.service.spec));
        assert_eq!((s.spec_version, s.previous_spec_version), (2, Some(1)));
        assert_eq!(s.update_status, None);
    }

    #[test]
    fn force_replaces_every_task_of_an_unchanged_spec() {
        let found = stored("web", 7);
        let (_, cmd) = update_write(&found, &ServiceChange::default(), &[], 5).unwrap();
        let (_, _, plain) = written(&cmd);
        assert_eq!(
            plain.spec_version, 1,
            "nothing changed: no task is replaced"
        );
        let force = ServiceChange {
            force: true,
            ..Default::default()
        };
        let (_, cmd) = update_write(&found, &force, &[], 5).unwrap();
        let (_, _, forced) = written(&cmd);
        assert_eq!(forced.spec.task.force_update, 1);
        assert_eq!(forced.spec_version, 2);
        assert_eq!(forced.previous_spec_version, Some(1));
    }

    #[test]
    fn bad_updates_write_nothing() {
        let found = stored("web", 7);
        for (change, want) in [
            (
                ServiceChange {
                    update: RolloutChange {
                        max_failure_ratio: Some(1.5),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--update-max-failure-ratio",
            ),
            (
                ServiceChange {
                    rollback: RolloutChange {
                        max_failure_ratio: Some(f32::NAN),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "--rollback-max-failure-ratio",
            ),
            (
                ServiceChange {
                    container_label_add: vec![(LABEL_TASK.into(), "x".into())],
                    ..Default::default()
                },
                "the runtime's own",
            ),
            (
                ServiceChange {
                    replicas: Some(REPLICAS_MAX + 1),
                    ..Default::default()
                },
                "invalid replicas",
            ),
            (
                ServiceChange {
                    constraint_add: vec!["node.labels.x".into()],
                    ..Default::default()
                },
                "",
            ),
        ] {
            let err = update_write(&found, &change, &[], 5).expect_err(want);
            assert!(err.contains(want), "{err:?} does not say {want:?}");
        }
    }

    #[test]
    fn rollback_swaps_back_and_forth_and_needs_a_previous_spec() {
        let found = stored("web", 7);
        assert_eq!(
            rollback_write(&found, 5).unwrap_err(),
            "service web does not have a previous spec"
        );
        let change = ServiceChange {
            image: Some("v2".into()),
            ..Default::default()
        };
        let (_, cmd) = update_write(&found, &change, &[], 5).unwrap();
        let (_, _, updated) = written(&cmd);
        let mut found = stored("web", 7);
        found.service = updated.clone();
        let (_, cmd) = rollback_write(&found, 9).unwrap();
        let (_, expect, back) = written(&cmd);
        assert_eq!(expect, Expect::Version(3));
        assert_eq!(back.spec.task.image, "sleep");
        assert_eq!(
            (back.spec_version, back.previous_spec_version),
            (1, Some(2))
        );
        let status = back.update_status.clone().unwrap();
        assert_eq!(status.state, UpdateState::RollbackStarted);
        assert_eq!(
            (status.started_ms, status.message.as_str()),
            (9, "manually requested rollback")
        );
        found.service = back.clone();
        let (_, cmd) = rollback_write(&found, 10).unwrap();
        let (_, _, forward) = written(&cmd);
        assert_eq!(forward.spec.task.image, "v2");
        assert_eq!(forward.spec_version, 2);
    }

    #[test]
    fn publish_rm_then_add_and_the_node_picks_and_checks_ports() {
        use crate::control::proto::PortRm;
        use swarm_actors::model::PortConfig;
        let mut found = stored("web", 1);
        found.service.spec.ports = vec![PortConfig::tcp(8080, 80), PortConfig::tcp(8082, 80)];
        let other = {
            let mut f = stored("api", 2);
            f.service.spec.ports = vec![PortConfig::tcp(9000, 80)];
            f
        };
        let all = [found.clone(), other];
        let change = ServiceChange {
            publish_rm: vec![PortRm {
                published: None,
                port: 8082,
                protocol: None,
            }],
            // Replaces 8080's target; a target-only port gets a pick.
            publish_add: vec![PortConfig::tcp(8080, 81), PortConfig::tcp(0, 443)],
            ..Default::default()
        };
        let (_, cmd) = update_write(&found, &change, &all, 5).unwrap();
        let (_, _, s) = written(&cmd);
        assert_eq!(
            s.spec.ports,
            vec![PortConfig::tcp(8080, 81), PortConfig::tcp(30000, 443)]
        );
        let clash = ServiceChange {
            publish_add: vec![PortConfig::tcp(9000, 80)],
            ..Default::default()
        };
        let err = update_write(&found, &clash, &all, 5).unwrap_err();
        assert_eq!(
            err,
            "port 9000/tcp is already in use by service 'api' as an ingress port"
        );
        let missing = ServiceChange {
            publish_rm: vec![PortRm {
                published: None,
                port: 7000,
                protocol: None,
            }],
            ..Default::default()
        };
        let err = update_write(&found, &missing, &all, 5).unwrap_err();
        assert_eq!(err, "service web does not publish port 7000");
    }

    #[test]
    fn a_replace_writes_only_a_changed_spec() {
        let mut found = stored("wp_web", 7);
        found.service.spec.task.force_update = 3;
        found.service.spec.ports = vec![PortConfig::tcp(30_001, 80)];
        found.obj.body = ObjectBody::Service(found.service.clone());
        let all = vec![found.clone()];
        // The same spec as a file gives it: no force_update, the node's port not named.
        let mut same = found.service.spec.clone();
        same.task.force_update = 0;
        same.ports[0].published = 0;
        let (id, cmd) = replace_write(&found, same.clone(), &all, 5).unwrap();
        assert_eq!(id, found.service.id.to_string());
        assert!(cmd.is_none(), "an unchanged spec writes nothing");
        // A label changes the spec, not the tasks.
        let mut labelled = same.clone();
        labelled.labels.insert("tier".into(), "web".into());
        let (_, cmd) = replace_write(&found, labelled, &all, 5).unwrap();
        let cmd = cmd.expect("a changed spec is written");
        let (_, expect, s) = written(&cmd);
        assert_eq!(expect, Expect::Version(3));
        assert_eq!(s.spec_version, found.service.spec_version);
        assert_eq!(s.spec.task.force_update, 3);
        assert_eq!(s.previous_spec.as_ref(), Some(&found.service.spec));
        // A new published port is a change; a new image replaces the tasks too.
        let mut moved = same.clone();
        moved.ports[0].published = 8080;
        let (_, cmd) = replace_write(&found, moved, &all, 5).unwrap();
        let cmd = cmd.unwrap();
        assert_eq!(written(&cmd).2.spec.ports[0].published, 8080);
        let mut image = same.clone();
        image.task.image = "busybox".into();
        let (_, cmd) = replace_write(&found, image, &all, 5).unwrap();
        let cmd = cmd.unwrap();
        assert_eq!(written(&cmd).2.spec_version, found.service.spec_version + 1);
        // A bad spec or another name is refused.
        let mut bad = same.clone();
        bad.task.workdir = Some("srv".into());
        assert!(replace_write(&found, bad, &all, 5).is_err());
        let mut other = same;
        other.name = "wp_db".into();
        let err = replace_write(&found, other, &all, 5).unwrap_err();
        assert!(err.contains("keeps the service's name"), "{err}");
    }

    #[test]
    fn container_flags_change_the_task() {
        let mut s = stored("web", 7).service;
        s.spec.task.mounts = vec![Mount {
            kind: MountKind::Volume,
            source: "data".into(),
            target: "/data".into(),
            ..Default::default()
        }];
        let change = ServiceChange {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            workdir: Some("/srv".into()),
            hostname: Some("web1".into()),
            mount_rm: vec!["/data".into()],
            mount_add: vec![Mount {
                kind: MountKind::Tmpfs,
                target: "/tmp".into(),
                ..Default::default()
            }],
            max_replicas: Some(2),
            ..Default::default()
        };
        let spec = apply_change(&s, &change).unwrap();
        assert_eq!(spec.task.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(spec.task.workdir.as_deref(), Some("/srv"));
        assert_eq!(spec.task.hostname.as_deref(), Some("web1"));
        assert_eq!(spec.task.mounts.len(), 1);
        assert_eq!(spec.task.mounts[0].target, "/tmp");
        assert_eq!(spec.task.placement.max_replicas, 2);
        s.spec = spec;
        let clear = ServiceChange {
            entrypoint: Some(Vec::new()),
            workdir: Some(String::new()),
            hostname: Some(String::new()),
            ..Default::default()
        };
        let spec = apply_change(&s, &clear).unwrap();
        assert!(spec.task.entrypoint.is_empty());
        assert_eq!((spec.task.workdir, spec.task.hostname), (None, None));
        let err = apply_change(
            &s,
            &ServiceChange {
                mount_rm: vec!["/nope".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("no mount on /nope"), "{err}");
    }
}
