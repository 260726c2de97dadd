//! `service create`'s flags, and how they become a [`ServiceSpec`]. Parsing only: the node
//! validates the spec again before storing it.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use swarm_actors::model::{
    FileKind, FileRef, HealthCheck, Placement, ResourceAmounts, Resources, RestartPolicy,
    RuntimeKind, SecretId, ServiceMode, ServiceSpec, TaskSpec, UpdateConfig,
};

use super::container::ContainerArgs;
use super::networks::EndpointModeArg;
use super::publish::{parse_all, parse_publish};
use super::update::{RollbackConfigArgs, UpdateConfigArgs, condition, flag, parse_label};
use crate::cmd::units::{parse_duration_ms, parse_nano_cpus, parse_size_bytes};
use crate::control::validate::{validate_env, validate_spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Replicated,
    Global,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    Docker,
    Process,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConditionArg {
    Any,
    OnFailure,
    None,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    pub name: String,
    /// Number of tasks (replicated mode).
    #[arg(long, conflicts_with = "mode")]
    pub replicas: Option<u64>,
    /// replicated or global (one task on every eligible node).
    #[arg(long, value_enum, default_value = "replicated")]
    pub mode: ModeArg,
    /// What runs the tasks: a Docker container, or an OS process (IMAGE is the program).
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: RuntimeArg,
    /// Placement constraint, e.g. node.labels.env==prod (repeatable).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Placement preference, e.g. spread=node.labels.zone (repeatable).
    #[arg(long = "placement-pref")]
    pub preferences: Vec<String>,
    /// CPUs set aside per task, e.g. 0.5.
    #[arg(long)]
    pub reserve_cpu: Option<String>,
    /// Memory set aside per task, e.g. 64M.
    #[arg(long)]
    pub reserve_memory: Option<String>,
    /// CPU limit per task.
    #[arg(long)]
    pub limit_cpu: Option<String>,
    /// Memory limit per task.
    #[arg(long)]
    pub limit_memory: Option<String>,
    /// Restart when a task ends: any, on-failure or none.
    #[arg(long, value_enum, default_value = "any")]
    pub restart_condition: ConditionArg,
    /// Delay between restarts.
    #[arg(long, default_value = "5s")]
    pub restart_delay: String,
    /// Most restarts (within --restart-window, when given); unlimited by default.
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// The window --restart-max-attempts counts in (0s: ever).
    #[arg(long, default_value = "0s")]
    pub restart_window: String,
    /// Command the health check runs (through `sh -c`).
    #[arg(long)]
    pub health_cmd: Option<String>,
    #[arg(long, requires = "health_cmd")]
    pub health_interval: Option<String>,
    #[arg(long, requires = "health_cmd")]
    pub health_timeout: Option<String>,
    #[arg(long, requires = "health_cmd")]
    pub health_retries: Option<u32>,
    #[arg(long, requires = "health_cmd")]
    pub health_start_period: Option<String>,
    /// Time a task has to stop before it is killed.
    #[arg(long, default_value = "10s")]
    pub stop_grace_period: String,
    /// Who the tasks run as: uid[:gid] or name[:group] (Docker's form). Without it a process
    /// task runs as the node's user (root when the node runs as root), a container as its
    /// image's user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Service label key=value (repeatable).
    #[arg(short, long = "label")]
    pub labels: Vec<String>,
    /// Label key=value put on each task's container (repeatable).
    #[arg(long = "container-label")]
    pub container_labels: Vec<String>,
    /// A secret the tasks read as a file: NAME, or
    /// source=NAME[,target=PATH][,uid=0][,gid=0][,mode=0444] (repeatable). The target defaults
    /// to /run/secrets/NAME; a relative one goes under /run/secrets.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// A config the tasks read as a file, as --secret; the target defaults to /NAME
    /// (repeatable).
    #[arg(long = "config")]
    pub configs: Vec<String>,
    /// Publish a port through the routing mesh: PUBLISHED:TARGET[/PROTOCOL], TARGET (a free
    /// port of 30000-32767 is picked), or
    /// published=N,target=N[,protocol=tcp|udp][,mode=ingress|host][,proxy-protocol=v2]
    /// [,affinity=client-ip] (repeatable).
    #[arg(short, long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Attach the tasks to an overlay network: NAME|ID or name=NAME|ID[,alias=A]
    /// (repeatable).
    #[arg(long = "network", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// How the service's name resolves on its networks: vip (one virtual address, balanced
    /// over the tasks) or dnsrr (the tasks' addresses).
    #[arg(long, value_enum, default_value = "vip")]
    pub endpoint_mode: EndpointModeArg,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub update: UpdateConfigArgs,
    #[command(flatten)]
    pub rollback: RollbackConfigArgs,
    /// Return after printing the ID, without waiting for the tasks.
    #[arg(short, long)]
    pub detach: bool,
    /// The image (docker) or program (process).
    pub image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn opt<T: Default>(
    name: &str,
    value: &Option<String>,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<T> {
    match value {
        Some(v) => flag(name, v, parse),
        None => Ok(T::default()),
    }
}

/// A `--secret` or `--config` value: `NAME`, or Docker's comma-separated
/// `source=NAME,target=PATH,uid=N,gid=N,mode=OCTAL` (`src` for `source`). The target is
/// resolved with [`FileKind::target_path`]; the ID is the node's to fill in from the name.
pub fn parse_file_ref(kind: FileKind, text: &str) -> Result<FileRef, String> {
    let what = kind.as_str();
    let mut r = FileRef {
        id: SecretId::UNKNOWN,
        name: String::new(),
        target: String::new(),
        uid: 0,
        gid: 0,
        mode: FileRef::DEFAULT_MODE,
    };
    if !text.contains('=') {
        r.name = text.to_string();
    } else {
        for field in text.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                format!("invalid field {field:?} in --{what} {text:?}: expected key=value")
            })?;
            let number = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("invalid {key} {v:?} in --{what} {text:?}: a number"))
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "source" | "src" => r.name = value.to_string(),
                "target" => r.target = value.to_string(),
                "uid" => r.uid = number(value)?,
                "gid" => r.gid = number(value)?,
                "mode" => {
                    let digits = value.strip_prefix("0o").unwrap_or(value);
                    r.mode = u32::from_str_radix(digits, 8).map_err(|_| {
                        format!("invalid mode {value:?} in --{what} {text:?}: octal, e.g. 0440")
                    })?;
                }
                other => {
                    return Err(format!(
                        "invalid field {other:?} in --{what} {text:?}: source, target, uid, gid or mode"
                    ));
                }
            }
        }
    }
    if r.name.is_empty() {
        return Err(format!("--{what} {text:?} needs a source"));
    }
    r.target = kind.target_path(&r.name, &r.target);
    Ok(r)
}

/// Every `--secret` (or `--config`) value parsed; the first bad one names itself.
pub fn parse_file_refs(kind: FileKind, texts: &[String]) -> anyhow::Result<Vec<FileRef>> {
    texts
        .iter()
        .map(|t| parse_file_ref(kind, t).map_err(anyhow::Error::msg))
        .collect()
}

/// Builds the spec the flags describe, with Docker's defaults, and checks it.
pub fn build_spec(a: &CreateArgs) -> anyhow::Result<ServiceSpec> {
    let mode = match (a.mode, a.replicas) {
        (ModeArg::Global, _) => ServiceMode::Global,
        (ModeArg::Replicated, r) => ServiceMode::Replicated {
            replicas: r.unwrap_or(1),
        },
    };
    for e in &a.env {
        validate_env(e).map_err(anyhow::Error::msg)?;
    }
    let labels: BTreeMap<String, String> = a.labels.iter().map(|l| parse_label(l)).collect();
    // Docker's defaults, then what the flags say.
    let mut update = UpdateConfig::default();
    a.update.change()?.apply(&mut update);
    let mut rollback = UpdateConfig::default();
    a.rollback.change()?.apply(&mut rollback);
    let health = match &a.health_cmd {
        None => None,
        Some(cmd) => Some(HealthCheck {
            cmd: cmd.clone(),
            interval_ms: flag(
                "health-interval",
                a.health_interval.as_deref().unwrap_or("30s"),
                parse_duration_ms,
            )?,
            timeout_ms: flag(
                "health-timeout",
                a.health_timeout.as_deref().unwrap_or("30s"),
                parse_duration_ms,
            )?,
            retries: a.health_retries.unwrap_or(3),
            start_period_ms: flag(
                "health-start-period",
                a.health_start_period.as_deref().unwrap_or("0s"),
                parse_duration_ms,
            )?,
        }),
    };
    let mut task = TaskSpec {
        networks: Vec::new(),
        runtime: match a.runtime {
            RuntimeArg::Docker => RuntimeKind::Docker,
            RuntimeArg::Process => RuntimeKind::Process,
        },
        image: a.image.clone(),
        args: a.args.clone(),
        env: a.env.clone(),
        health,
        resources: Resources {
            reservations: ResourceAmounts {
                nano_cpus: opt("reserve-cpu", &a.reserve_cpu, parse_nano_cpus)?,
                memory_bytes: opt("reserve-memory", &a.reserve_memory, parse_size_bytes)?,
            },
            limits: ResourceAmounts {
                nano_cpus: opt("limit-cpu", &a.limit_cpu, parse_nano_cpus)?,
                memory_bytes: opt("limit-memory", &a.limit_memory, parse_size_bytes)?,
            },
        },
        restart: RestartPolicy {
            condition: condition(a.restart_condition),
            delay_ms: flag("restart-delay", &a.restart_delay, parse_duration_ms)?,
            max_attempts: a.restart_max_attempts,
            window_ms: flag("restart-window", &a.restart_window, parse_duration_ms)?,
        },
        placement: Placement {
            constraints: a.constraints.clone(),
            preferences: a.preferences.clone(),
            max_replicas: 0,
        },
        stop_grace_period_ms: flag("stop-grace-period", &a.stop_grace_period, parse_duration_ms)?,
        user: a.user.clone(),
        container_labels: a.container_labels.iter().map(|l| parse_label(l)).collect(),
        force_update: 0,
        secrets: parse_file_refs(FileKind::Secret, &a.secrets)?,
        configs: parse_file_refs(FileKind::Config, &a.configs)?,
        entrypoint: Vec::new(),
        workdir: None,
        hostname: None,
        mounts: Vec::new(),
    };
    a.container.apply(&mut task)?;
    let spec = ServiceSpec {
        endpoint_mode: a.endpoint_mode.into(),
        name: a.name.clone(),
        labels,
        mode,
        task,
        update,
        rollback,
        ports: parse_all(&a.publish, parse_publish)?,
        depends_on: Vec::new(),
    };
    if let Err(e) = validate_spec(&spec) {
        bail!("{e}");
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use swarm_actors::model::{FailureAction, RestartCondition, UpdateOrder};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    fn parse(args: &str) -> anyhow::Result<ServiceSpec> {
        let argv = std::iter::once("create").chain(args.split_whitespace());
        let t = T::try_parse_from(argv)?;
        build_spec(&t.a)
    }

    #[test]
    fn publish_is_repeatable_and_bad_ports_refused() {
        use swarm_actors::model::{PortConfig, PortProtocol};
        let s =
            parse("--name web -p 8080:80 --publish published=5353,target=53,protocol=udp nginx")
                .unwrap();
        assert_eq!(s.ports[0], PortConfig::tcp(8080, 80));
        assert_eq!(
            (s.ports[1].published, s.ports[1].protocol),
            (5353, PortProtocol::Udp)
        );
        let err = parse("--name web -p 8080:80 -p 8080:81 nginx").unwrap_err();
        assert!(
            err.to_string()
                .contains("duplicate published port 8080/tcp"),
            "{err}"
        );
        let err = parse("--name web -p 99999:80 nginx").unwrap_err();
        assert!(err.to_string().contains("1-65535"), "{err}");
    }

    #[test]
    fn defaults_are_dockers() {
        let s = parse("--name web nginx").unwrap();
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 1 });
        assert_eq!(s.task.runtime, RuntimeKind::Docker);
        assert_eq!(s.task.restart, RestartPolicy::default());
        assert_eq!(s.task.restart.delay_ms, 5_000);
        assert_eq!(s.task.stop_grace_period_ms, 10_000);
        assert_eq!(s.task.health, None);
        assert!(s.task.args.is_empty());
        assert_eq!(s.task.user, None);
        assert!(s.task.container_labels.is_empty());
        for c in [s.update, s.rollback] {
            assert_eq!(c.parallelism, 1);
            assert_eq!(c.delay_ms, 0);
            assert_eq!(c.failure_action, FailureAction::Pause);
            assert_eq!(c.monitor_ms, 5_000);
            assert_eq!(c.max_failure_ratio, 0.0);
            assert_eq!(c.order, UpdateOrder::StopFirst);
        }
    }

    #[test]
    fn every_flag_reaches_the_spec() {
        let s = parse(
            "--name web --replicas 3 --runtime process \
             --constraint node.labels.env==prod --placement-pref spread=node.labels.zone \
             --reserve-cpu 0.5 --reserve-memory 64M --limit-cpu 2 --limit-memory 1G \
             --restart-condition on-failure --restart-delay 500ms --restart-max-attempts 4 \
             --restart-window 1m --health-cmd true --health-interval 2s --health-retries 5 \
             --stop-grace-period 1s --env A=1 -e B=2 --label tier=front -d --user nobody:nogroup \
             --container-label com.example.a=1 --container-label flag \
             --update-parallelism 2 --update-delay 1m30s --update-monitor 10s \
             --update-failure-action rollback --update-max-failure-ratio 0.5 \
             --update-order start-first --rollback-parallelism 0 --rollback-delay 1s \
             --rollback-monitor 2s --rollback-failure-action continue \
             --rollback-max-failure-ratio 1 --rollback-order start-first \
             sleep 1000 -x",
        )
        .unwrap();
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(s.task.runtime, RuntimeKind::Process);
        assert_eq!(s.task.image, "sleep");
        assert_eq!(s.task.args, ["1000", "-x"]);
        assert_eq!(s.task.placement.constraints, ["node.labels.env==prod"]);
        assert_eq!(s.task.placement.preferences, ["spread=node.labels.zone"]);
        assert_eq!(s.task.resources.reservations.nano_cpus, 500_000_000);
        assert_eq!(s.task.resources.reservations.memory_bytes, 64 << 20);
        assert_eq!(s.task.resources.limits.nano_cpus, 2_000_000_000);
        assert_eq!(s.task.resources.limits.memory_bytes, 1 << 30);
        let r = s.task.restart;
        assert_eq!(r.condition, RestartCondition::OnFailure);
        assert_eq!(
            (r.delay_ms, r.max_attempts, r.window_ms),
            (500, Some(4), 60_000)
        );
        let h = s.task.health.unwrap();
        assert_eq!(
            (h.cmd.as_str(), h.interval_ms, h.timeout_ms),
            ("true", 2_000, 30_000)
        );
        assert_eq!((h.retries, h.start_period_ms), (5, 0));
        assert_eq!(s.task.stop_grace_period_ms, 1_000);
        assert_eq!(s.task.env, ["A=1", "B=2"]);
        assert_eq!(s.labels.get("tier").map(String::as_str), Some("front"));
        assert_eq!(s.task.user.as_deref(), Some("nobody:nogroup"));
        let labels: Vec<_> = s.task.container_labels.iter().collect();
        assert_eq!(
            labels,
            [
                (&"com.example.a".to_string(), &"1".to_string()),
                (&"flag".to_string(), &String::new())
            ]
        );
        assert_eq!(
            s.update,
            UpdateConfig {
                parallelism: 2,
                delay_ms: 90_000,
                failure_action: FailureAction::Rollback,
                monitor_ms: 10_000,
                max_failure_ratio: 0.5,
                order: UpdateOrder::StartFirst,
            }
        );
        assert_eq!(
            s.rollback,
            UpdateConfig {
                parallelism: 0,
                delay_ms: 1_000,
                failure_action: FailureAction::Continue,
                monitor_ms: 2_000,
                max_failure_ratio: 1.0,
                order: UpdateOrder::StartFirst,
            }
        );
        assert_eq!(
            parse("--name w -u 1000 nginx")
                .unwrap()
                .task
                .user
                .as_deref(),
            Some("1000")
        );
    }

    #[test]
    fn secrets_and_configs_take_dockers_forms() {
        let s = parse(
            "--name db --secret pw --secret source=pw,target=mysql_root_password,uid=999,gid=998,mode=0400 \
             --secret src=tls,target=/etc/tls/key --config site.conf \
             --config source=app,target=etc/app.conf,mode=644 nginx",
        )
        .unwrap();
        let t = &s.task;
        let view = |r: &FileRef| (r.name.clone(), r.target.clone(), r.uid, r.gid, r.mode);
        let secrets: Vec<_> = t.secrets.iter().map(view).collect();
        assert_eq!(
            secrets,
            [
                ("pw".into(), "/run/secrets/pw".into(), 0, 0, 0o444),
                (
                    "pw".into(),
                    "/run/secrets/mysql_root_password".into(),
                    999,
                    998,
                    0o400
                ),
                ("tls".into(), "/etc/tls/key".into(), 0, 0, 0o444),
            ]
        );
        let configs: Vec<_> = t.configs.iter().map(view).collect();
        assert_eq!(
            configs,
            [
                ("site.conf".into(), "/site.conf".into(), 0, 0, 0o444),
                ("app".into(), "/etc/app.conf".into(), 0, 0, 0o644),
            ]
        );
        assert!(t.secrets.iter().all(|r| r.id == SecretId::UNKNOWN));
    }

    #[test]
    fn bad_secret_and_config_flags_are_refused() {
        let err = |args: &str| format!("{:#}", parse(args).expect_err(args));
        for (args, want) in [
            ("--secret target=x", "needs a source"),
            ("--secret source=pw,mode=999", "invalid mode"),
            ("--secret source=pw,mode=04755", "at most 0o777"),
            ("--secret source=pw,uid=-1", "invalid uid"),
            ("--secret source=pw,colour=red", "invalid field"),
            ("--secret source=pw,target", "invalid field"),
            ("--secret source=-pw", "invalid secret name"),
            (
                "--config source=c,target=../etc/passwd",
                "invalid config target",
            ),
            (
                "--secret source=pw,target=/run/secrets/",
                "invalid secret target",
            ),
            (
                "--secret a --secret source=b,target=a",
                "duplicate target /run/secrets/a",
            ),
            (
                "--secret source=a,target=/x --config source=b,target=/x",
                "duplicate target /x",
            ),
        ] {
            let e = err(&format!("--name web {args} nginx"));
            assert!(e.contains(want), "{args}: {e:?} does not say {want}");
        }
        let many: String = (0..=swarm_actors::model::FILE_REFS_MAX)
            .map(|i| format!("--secret s{i} "))
            .collect();
        assert!(err(&format!("--name web {many} nginx")).contains("at most"));
    }

    #[test]
    fn global_mode_and_replicas_conflict() {
        assert_eq!(
            parse("--name g --mode global nginx").unwrap().mode,
            ServiceMode::Global
        );
        assert!(parse("--name g --mode global --replicas 2 nginx").is_err());
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        let err = |args: &str| format!("{:#}", parse(args).expect_err(args));
        assert!(err("--name web --restart-delay 5 nginx").contains("--restart-delay"));
        assert!(err("--name web --reserve-memory 64X nginx").contains("--reserve-memory"));
        assert!(err("--name web --limit-cpu lots nginx").contains("--limit-cpu"));
        assert!(err("--name web --env NOVALUE nginx").contains("KEY=VALUE"));
        assert!(err("--name _web nginx").contains("invalid service name"));
        assert!(err("--name web --constraint node.labels.env nginx").contains("constraint"));
        assert!(err("--name web --restart-max-attempts 1000 nginx").contains("at most"));
        assert!(err("--name web --health-retries 2 nginx").contains("health-cmd"));
        assert!(err("--name web --replicas 20000 nginx").contains("replicas"));
        assert!(err("--name web --user a:b:c nginx").contains("--user"));
        for (args, flag) in [
            ("--update-failure-action explode", "--update-failure-action"),
            ("--update-order sideways", "--update-order"),
            ("--update-delay -1s", "--update-delay"),
            ("--rollback-monitor 5", "--rollback-monitor"),
            (
                "--update-max-failure-ratio 1.01",
                "--update-max-failure-ratio",
            ),
            (
                "--rollback-max-failure-ratio -1",
                "--rollback-max-failure-ratio",
            ),
            ("--update-parallelism -2", "--update-parallelism"),
            (
                "--container-label com.swarm-node.task.id=x",
                "the runtime's own",
            ),
        ] {
            let e = err(&format!("--name web {args} nginx"));
            assert!(e.contains(flag), "{args}: {e:?} does not name {flag}");
        }
    }
}
