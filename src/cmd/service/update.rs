//! `service update` and `service rollback`: the flags, and how they become a [`ServiceChange`]
//! (or a rollback request). Every flag left out keeps the stored value; the node applies the
//! change to the stored spec and checks the result, so parsing here is a convenience. Also the
//! six `--update-*` and six `--rollback-*` flags, which `service create` takes too.

use anyhow::bail;
use clap::Args;
use swarm_actors::model::{FailureAction, FileKind, RestartCondition, UpdateOrder};

use super::container::ContainerChangeArgs;
use super::create::{ConditionArg, parse_file_refs};
use super::networks::{EndpointModeArg, parse_networks};
use super::publish::{parse_all, parse_publish, parse_publish_rm};
use crate::cmd::units::{parse_duration_ms, parse_nano_cpus, parse_size_bytes, split_words};
use crate::control::client::Client;
use crate::control::proto::{
    ControlRequest, HealthChange, RestartChange, RolloutChange, ServiceChange,
};
use crate::control::validate::{validate_env, validate_failure_ratio};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailureActionArg {
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderArg {
    StopFirst,
    StartFirst,
}

/// `--update-*`: how an update replaces tasks. Left out: Docker's default on create, the
/// stored value on update.
#[derive(Args, Debug, Clone, Default)]
pub struct UpdateConfigArgs {
    /// Tasks replaced at once, 0 for all at once (default 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub update_parallelism: Option<u64>,
    /// Wait between batches, e.g. 10s (default 0s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub update_delay: Option<String>,
    /// How long a new task is watched for failure (default 5s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub update_monitor: Option<String>,
    /// What a failed update does (default pause).
    #[arg(long, value_enum)]
    pub update_failure_action: Option<FailureActionArg>,
    /// Fraction of tasks that may fail, 0 to 1 (default 0).
    #[arg(long, value_name = "RATIO", allow_hyphen_values = true)]
    pub update_max_failure_ratio: Option<String>,
    /// stop-first: the old task stops before the new one starts; start-first: they overlap
    /// (default stop-first).
    #[arg(long, value_enum)]
    pub update_order: Option<OrderArg>,
}

/// `--rollback-*`: how a rollback replaces tasks, with the same defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct RollbackConfigArgs {
    /// Tasks rolled back at once, 0 for all at once (default 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub rollback_parallelism: Option<u64>,
    /// Wait between batches (default 0s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub rollback_delay: Option<String>,
    /// How long a rolled-back task is watched for failure (default 5s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub rollback_monitor: Option<String>,
    /// What a failed rollback does: pause or continue (default pause). A rollback is never
    /// rolled back; `rollback` pauses it.
    #[arg(long, value_enum)]
    pub rollback_failure_action: Option<FailureActionArg>,
    /// Fraction of tasks that may fail, 0 to 1 (default 0).
    #[arg(long, value_name = "RATIO", allow_hyphen_values = true)]
    pub rollback_max_failure_ratio: Option<String>,
    /// stop-first or start-first (default stop-first).
    #[arg(long, value_enum)]
    pub rollback_order: Option<OrderArg>,
}

/// Parses `value` of `--<name>` with `parse`; the error names the flag.
pub fn flag<T>(name: &str, value: &str, parse: fn(&str) -> Result<T, String>) -> anyhow::Result<T> {
    parse(value).map_err(|e| anyhow::anyhow!("invalid argument for --{name}: {e}"))
}

/// [`flag`] for a flag that may be left out.
pub fn opt_flag<T>(
    name: &str,
    value: &Option<String>,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    value.as_deref().map(|v| flag(name, v, parse)).transpose()
}

fn ratio(name: &str, value: &Option<String>) -> anyhow::Result<Option<f32>> {
    let Some(text) = value else {
        return Ok(None);
    };
    let r: f32 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid argument {text:?} for --{name}: not a number"))?;
    validate_failure_ratio(name, r).map_err(anyhow::Error::msg)?;
    Ok(Some(r))
}

#[allow(clippy::too_many_arguments)]
fn rollout(
    prefix: &str,
    parallelism: Option<u64>,
    delay: &Option<String>,
    monitor: &Option<String>,
    failure_action: Option<FailureActionArg>,
    max_failure_ratio: &Option<String>,
    order: Option<OrderArg>,
) -> anyhow::Result<RolloutChange> {
    Ok(RolloutChange {
        parallelism,
        delay_ms: opt_flag(&format!("{prefix}-delay"), delay, parse_duration_ms)?,
        monitor_ms: opt_flag(&format!("{prefix}-monitor"), monitor, parse_duration_ms)?,
        failure_action: failure_action.map(|a| match a {
            FailureActionArg::Pause => FailureAction::Pause,
            FailureActionArg::Continue => FailureAction::Continue,
            FailureActionArg::Rollback => FailureAction::Rollback,
        }),
        max_failure_ratio: ratio(&format!("{prefix}-max-failure-ratio"), max_failure_ratio)?,
        order: order.map(|o| match o {
            OrderArg::StopFirst => UpdateOrder::StopFirst,
            OrderArg::StartFirst => UpdateOrder::StartFirst,
        }),
    })
}

impl UpdateConfigArgs {
    pub fn change(&self) -> anyhow::Result<RolloutChange> {
        rollout(
            "update",
            self.update_parallelism,
            &self.update_delay,
            &self.update_monitor,
            self.update_failure_action,
            &self.update_max_failure_ratio,
            self.update_order,
        )
    }
}

impl RollbackConfigArgs {
    pub fn change(&self) -> anyhow::Result<RolloutChange> {
        rollout(
            "rollback",
            self.rollback_parallelism,
            &self.rollback_delay,
            &self.rollback_monitor,
            self.rollback_failure_action,
            &self.rollback_max_failure_ratio,
            self.rollback_order,
        )
    }
}

/// `key=value` (or `key`, an empty value), as `--label` and `--container-label` take it.
pub fn parse_label(text: &str) -> (String, String) {
    let (k, v) = text.split_once('=').unwrap_or((text, ""));
    (k.to_string(), v.to_string())
}

pub fn condition(c: ConditionArg) -> RestartCondition {
    match c {
        ConditionArg::Any => RestartCondition::Any,
        ConditionArg::OnFailure => RestartCondition::OnFailure,
        ConditionArg::None => RestartCondition::None,
    }
}

#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// New image (docker) or program (process).
    #[arg(long)]
    pub image: Option<String>,
    /// The command's arguments, all replaced, as one shell-quoted string: --args "sleep 100".
    #[arg(long, allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Add or replace an environment variable KEY=VALUE (repeatable).
    #[arg(long)]
    pub env_add: Vec<String>,
    /// Remove an environment variable by key (repeatable).
    #[arg(long)]
    pub env_rm: Vec<String>,
    /// Add or replace a service label key=value (repeatable).
    #[arg(long)]
    pub label_add: Vec<String>,
    /// Remove a service label by key (repeatable).
    #[arg(long)]
    pub label_rm: Vec<String>,
    /// Add or replace a container label key=value (repeatable).
    #[arg(long)]
    pub container_label_add: Vec<String>,
    /// Remove a container label by key (repeatable).
    #[arg(long)]
    pub container_label_rm: Vec<String>,
    /// Number of tasks (replicated mode only).
    #[arg(long, allow_hyphen_values = true)]
    pub replicas: Option<u64>,
    /// Add a placement constraint (repeatable).
    #[arg(long)]
    pub constraint_add: Vec<String>,
    /// Remove a placement constraint (repeatable).
    #[arg(long)]
    pub constraint_rm: Vec<String>,
    /// Add a placement preference, e.g. spread=node.labels.zone (repeatable).
    #[arg(long)]
    pub placement_pref_add: Vec<String>,
    /// Remove a placement preference (repeatable).
    #[arg(long)]
    pub placement_pref_rm: Vec<String>,
    /// CPUs set aside per task, e.g. 0.5.
    #[arg(long)]
    pub reserve_cpu: Option<String>,
    /// Memory set aside per task, e.g. 64M.
    #[arg(long)]
    pub reserve_memory: Option<String>,
    /// CPU limit per task (0: none).
    #[arg(long)]
    pub limit_cpu: Option<String>,
    /// Memory limit per task (0: none).
    #[arg(long)]
    pub limit_memory: Option<String>,
    /// Command the health check runs (through `sh -c`).
    #[arg(long)]
    pub health_cmd: Option<String>,
    #[arg(long)]
    pub health_interval: Option<String>,
    #[arg(long)]
    pub health_timeout: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub health_retries: Option<u32>,
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Remove the health check.
    #[arg(long, conflicts_with_all = ["health_cmd", "health_interval", "health_timeout", "health_retries", "health_start_period"])]
    pub no_healthcheck: bool,
    /// Restart when a task ends: any, on-failure or none.
    #[arg(long, value_enum)]
    pub restart_condition: Option<ConditionArg>,
    #[arg(long, allow_hyphen_values = true)]
    pub restart_delay: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub restart_max_attempts: Option<u64>,
    #[arg(long, allow_hyphen_values = true)]
    pub restart_window: Option<String>,
    /// Time a task has to stop before it is killed.
    #[arg(long, allow_hyphen_values = true)]
    pub stop_grace_period: Option<String>,
    #[command(flatten)]
    pub container: ContainerChangeArgs,
    #[command(flatten)]
    pub update: UpdateConfigArgs,
    #[command(flatten)]
    pub rollback_config: RollbackConfigArgs,
    /// Add a secret: NAME or source=NAME,target=PATH,uid=,gid=,mode= as `create --secret`
    /// (repeatable). Removals go first, so `--secret-rm old --secret-add
    /// source=new,target=old` rotates a secret at the same target.
    #[arg(long)]
    pub secret_add: Vec<String>,
    /// Remove a secret by name or ID (repeatable).
    #[arg(long)]
    pub secret_rm: Vec<String>,
    /// Add a config, as `create --config` (repeatable).
    #[arg(long)]
    pub config_add: Vec<String>,
    /// Remove a config by name or ID (repeatable).
    #[arg(long)]
    pub config_rm: Vec<String>,
    /// Publish a port, as `create --publish`; one with the same published port and protocol
    /// is replaced (repeatable).
    #[arg(long, value_name = "PORT")]
    pub publish_add: Vec<String>,
    /// Stop publishing a port: PUBLISHED[/PROTOCOL] (or the target, when nothing is published
    /// on that number), or PUBLISHED:TARGET[/PROTOCOL] (repeatable). Removals go first.
    #[arg(long, value_name = "PORT")]
    pub publish_rm: Vec<String>,
    /// Attach the tasks to another network, as `create --network` (repeatable); one the
    /// service is on gets the new aliases.
    #[arg(long, value_name = "NETWORK")]
    pub network_add: Vec<String>,
    /// Detach the tasks from a network, by name or ID (repeatable). Removals go first.
    #[arg(long, value_name = "NETWORK")]
    pub network_rm: Vec<String>,
    /// vip or dnsrr, as `create --endpoint-mode`.
    #[arg(long, value_enum)]
    pub endpoint_mode: Option<EndpointModeArg>,
    /// Go back to the previous spec instead of updating; no other change may come with it.
    #[arg(long)]
    pub rollback: bool,
    /// Replace every task even if nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Do not wait for the tasks.
    #[arg(short, long)]
    pub detach: bool,
    pub service: String,
}

/// What `service update` sends: the change, or (with `--rollback`) a rollback.
#[derive(Debug, PartialEq)]
pub enum Request {
    Update(Box<ServiceChange>),
    Rollback,
}

/// Builds the request the flags describe; bad values are refused with the flag named.
pub fn build(a: &UpdateArgs) -> anyhow::Result<Request> {
    for e in &a.env_add {
        validate_env(e).map_err(anyhow::Error::msg)?;
    }
    let mut change = ServiceChange {
        replicas: a.replicas,
        image: a.image.clone(),
        args: opt_flag("args", &a.args, split_words)?,
        constraint_add: a.constraint_add.clone(),
        constraint_rm: a.constraint_rm.clone(),
        placement_pref_add: a.placement_pref_add.clone(),
        placement_pref_rm: a.placement_pref_rm.clone(),
        env_add: a.env_add.clone(),
        env_rm: a.env_rm.clone(),
        label_add: a.label_add.iter().map(|l| parse_label(l)).collect(),
        label_rm: a.label_rm.clone(),
        container_label_add: a
            .container_label_add
            .iter()
            .map(|l| parse_label(l))
            .collect(),
        container_label_rm: a.container_label_rm.clone(),
        reserve_nano_cpus: opt_flag("reserve-cpu", &a.reserve_cpu, parse_nano_cpus)?,
        reserve_memory_bytes: opt_flag("reserve-memory", &a.reserve_memory, parse_size_bytes)?,
        limit_nano_cpus: opt_flag("limit-cpu", &a.limit_cpu, parse_nano_cpus)?,
        limit_memory_bytes: opt_flag("limit-memory", &a.limit_memory, parse_size_bytes)?,
        health: HealthChange {
            cmd: a.health_cmd.clone(),
            interval_ms: opt_flag("health-interval", &a.health_interval, parse_duration_ms)?,
            timeout_ms: opt_flag("health-timeout", &a.health_timeout, parse_duration_ms)?,
            retries: a.health_retries,
            start_period_ms: opt_flag(
                "health-start-period",
                &a.health_start_period,
                parse_duration_ms,
            )?,
            none: a.no_healthcheck,
        },
        restart: RestartChange {
            condition: a.restart_condition.map(condition),
            delay_ms: opt_flag("restart-delay", &a.restart_delay, parse_duration_ms)?,
            max_attempts: a.restart_max_attempts,
            window_ms: opt_flag("restart-window", &a.restart_window, parse_duration_ms)?,
        },
        stop_grace_period_ms: opt_flag(
            "stop-grace-period",
            &a.stop_grace_period,
            parse_duration_ms,
        )?,
        update: a.update.change()?,
        rollback: a.rollback_config.change()?,
        force: a.force,
        secret_rm: a.secret_rm.clone(),
        secret_add: parse_file_refs(FileKind::Secret, &a.secret_add)?,
        config_rm: a.config_rm.clone(),
        config_add: parse_file_refs(FileKind::Config, &a.config_add)?,
        publish_rm: parse_all(&a.publish_rm, parse_publish_rm)?,
        publish_add: parse_all(&a.publish_add, parse_publish)?,
        network_rm: a.network_rm.clone(),
        network_add: parse_networks(&a.network_add)?,
        endpoint_mode: a.endpoint_mode.map(Into::into),
        ..Default::default()
    };
    a.container.apply(&mut change)?;
    if a.rollback {
        if change != ServiceChange::default() {
            // Docker's words.
            bail!("other flags may not be combined with --rollback");
        }
        return Ok(Request::Rollback);
    }
    Ok(Request::Update(Box::new(change)))
}

/// `service update`: the change (or rollback) is stored, then, unless `--detach`, the
/// progress is shown until the update ends.
pub async fn run(
    a: &UpdateArgs,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let req = match build(a)? {
        Request::Update(change) => ControlRequest::ServiceUpdate {
            service: a.service.clone(),
            change,
        },
        Request::Rollback => ControlRequest::ServiceRollback {
            service: a.service.clone(),
        },
    };
    super::done(client, req).await?;
    writeln!(out, "{}", a.service)?;
    if !a.detach {
        super::progress::wait(client, &a.service, out).await?;
    }
    Ok(())
}

/// `service rollback`: as Docker, the service's name, then the progress unless `--detach`.
pub async fn rollback(
    service: &str,
    detach: bool,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let req = ControlRequest::ServiceRollback {
        service: service.to_string(),
    };
    super::done(client, req).await?;
    writeln!(out, "{service}")?;
    if !detach {
        super::progress::wait(client, service, out).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: UpdateArgs,
    }

    fn parse_argv(argv: &[&str]) -> anyhow::Result<Request> {
        let t = T::try_parse_from(std::iter::once("update").chain(argv.iter().copied()))?;
        build(&t.a)
    }

    fn parse(args: &str) -> anyhow::Result<Request> {
        let argv: Vec<&str> = args.split_whitespace().collect();
        parse_argv(&argv)
    }

    fn change(args: &str) -> ServiceChange {
        match parse(args).unwrap() {
            Request::Update(c) => *c,
            Request::Rollback => panic!("{args}: a rollback"),
        }
    }

    #[test]
    fn publish_add_and_rm() {
        use swarm_actors::model::PortConfig;
        let c = change("--publish-add 8082:80 --publish-rm 8081/udp --publish-rm 90:9 web");
        assert_eq!(c.publish_add, vec![PortConfig::tcp(8082, 80)]);
        let rm: Vec<String> = c.publish_rm.iter().map(|r| r.to_string()).collect();
        assert_eq!(rm, ["8081/udp", "90:9"]);
        assert!(parse("--publish-rm 0 web").is_err());
        assert!(parse("--publish-add target=0 web").is_err());
    }

    #[test]
    fn no_flag_changes_nothing() {
        assert_eq!(change("web"), ServiceChange::default());
    }

    #[test]
    fn every_flag_reaches_the_change() {
        let argv = [
            "--image",
            "busybox:2",
            "--args",
            "sh -c 'sleep 2; exit 1'",
            "--env-add",
            "A=1",
            "--env-rm",
            "B",
            "--label-add",
            "tier=front",
            "--label-rm",
            "old",
            "--container-label-add",
            "com.example.x=y",
            "--container-label-rm",
            "gone",
            "--replicas",
            "4",
            "--constraint-add",
            "node.role==worker",
            "--constraint-rm",
            "node.labels.a==b",
            "--placement-pref-add",
            "spread=node.labels.zone",
            "--placement-pref-rm",
            "spread=node.labels.rack",
            "--reserve-cpu",
            "0.5",
            "--reserve-memory",
            "64M",
            "--limit-cpu",
            "2",
            "--limit-memory",
            "1G",
            "--health-cmd",
            "true",
            "--health-interval",
            "2s",
            "--health-timeout",
            "3s",
            "--health-retries",
            "4",
            "--health-start-period",
            "1s",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "500ms",
            "--restart-max-attempts",
            "7",
            "--restart-window",
            "1m",
            "--stop-grace-period",
            "2s",
            "--update-parallelism",
            "2",
            "--update-delay",
            "1m30s",
            "--update-monitor",
            "10s",
            "--update-failure-action",
            "rollback",
            "--update-max-failure-ratio",
            "0.25",
            "--update-order",
            "start-first",
            "--rollback-parallelism",
            "0",
            "--rollback-delay",
            "1s",
            "--rollback-monitor",
            "2s",
            "--rollback-failure-action",
            "continue",
            "--rollback-max-failure-ratio",
            "1",
            "--rollback-order",
            "stop-first",
            "--force",
            "-d",
            "web",
        ];
        let Request::Update(c) = parse_argv(&argv).unwrap() else {
            panic!("not an update")
        };
        let c = *c;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let kv = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(c.image.as_deref(), Some("busybox:2"));
        assert_eq!(c.args, Some(s(&["sh", "-c", "sleep 2; exit 1"])));
        assert_eq!((c.env_add, c.env_rm), (s(&["A=1"]), s(&["B"])));
        assert_eq!(
            (c.label_add, c.label_rm),
            (kv("tier", "front"), s(&["old"]))
        );
        assert_eq!(c.container_label_add, kv("com.example.x", "y"));
        assert_eq!(c.container_label_rm, s(&["gone"]));
        assert_eq!(c.replicas, Some(4));
        assert_eq!(c.constraint_add, s(&["node.role==worker"]));
        assert_eq!(c.constraint_rm, s(&["node.labels.a==b"]));
        assert_eq!(c.placement_pref_add, s(&["spread=node.labels.zone"]));
        assert_eq!(c.placement_pref_rm, s(&["spread=node.labels.rack"]));
        assert_eq!(
            (c.reserve_nano_cpus, c.reserve_memory_bytes),
            (Some(500_000_000), Some(64 << 20))
        );
        assert_eq!(
            (c.limit_nano_cpus, c.limit_memory_bytes),
            (Some(2_000_000_000), Some(1 << 30))
        );
        assert_eq!(
            c.health,
            HealthChange {
                cmd: Some("true".into()),
                interval_ms: Some(2_000),
                timeout_ms: Some(3_000),
                retries: Some(4),
                start_period_ms: Some(1_000),
                none: false,
            }
        );
        assert_eq!(
            c.restart,
            RestartChange {
                condition: Some(RestartCondition::OnFailure),
                delay_ms: Some(500),
                max_attempts: Some(7),
                window_ms: Some(60_000),
            }
        );
        assert_eq!(c.stop_grace_period_ms, Some(2_000));
        assert_eq!(
            c.update,
            RolloutChange {
                parallelism: Some(2),
                delay_ms: Some(90_000),
                monitor_ms: Some(10_000),
                failure_action: Some(FailureAction::Rollback),
                max_failure_ratio: Some(0.25),
                order: Some(UpdateOrder::StartFirst),
            }
        );
        assert_eq!(
            c.rollback,
            RolloutChange {
                parallelism: Some(0),
                delay_ms: Some(1_000),
                monitor_ms: Some(2_000),
                failure_action: Some(FailureAction::Continue),
                max_failure_ratio: Some(1.0),
                order: Some(UpdateOrder::StopFirst),
            }
        );
        assert!(c.force);
        assert!(change("--no-healthcheck web").health.none);
        let c = change(
            "--secret-rm old --secret-add source=new,target=pw --config-rm c1 --config-add c2 web",
        );
        assert_eq!((c.secret_rm, c.config_rm), (s(&["old"]), s(&["c1"])));
        let targets = |refs: &[swarm_actors::model::FileRef]| {
            refs.iter()
                .map(|r| (r.name.clone(), r.target.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            targets(&c.secret_add),
            [("new".to_string(), "/run/secrets/pw".to_string())]
        );
        assert_eq!(
            targets(&c.config_add),
            [("c2".to_string(), "/c2".to_string())]
        );
        let e = format!("{:#}", parse("--secret-add mode=1 web").unwrap_err());
        assert!(e.contains("needs a source"), "{e}");
    }

    #[test]
    fn rollback_stands_alone() {
        assert_eq!(parse("--rollback web").unwrap(), Request::Rollback);
        assert_eq!(parse("--rollback -d web").unwrap(), Request::Rollback);
        for other in [
            "--rollback --image x web",
            "--rollback --force web",
            "--rollback --update-parallelism 2 web",
            "--rollback --env-rm A web",
        ] {
            let err = format!("{:#}", parse(other).expect_err(other));
            assert!(
                err.contains("other flags may not be combined with --rollback"),
                "{other}: {err}"
            );
        }
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        let err = |args: &str| format!("{:#}", parse(args).expect_err(args));
        for (args, want) in [
            (
                "--update-failure-action explode web",
                "--update-failure-action",
            ),
            (
                "--rollback-failure-action explode web",
                "--rollback-failure-action",
            ),
            ("--update-order sideways web", "--update-order"),
            ("--rollback-order sideways web", "--rollback-order"),
            ("--update-delay -1s web", "--update-delay"),
            ("--update-delay=-1s web", "--update-delay"),
            ("--update-delay 5 web", "--update-delay"),
            ("--update-monitor soon web", "--update-monitor"),
            ("--rollback-delay -2s web", "--rollback-delay"),
            ("--rollback-monitor 1x web", "--rollback-monitor"),
            (
                "--update-max-failure-ratio 1.5 web",
                "--update-max-failure-ratio",
            ),
            (
                "--update-max-failure-ratio -0.1 web",
                "--update-max-failure-ratio",
            ),
            (
                "--update-max-failure-ratio NaN web",
                "--update-max-failure-ratio",
            ),
            (
                "--update-max-failure-ratio half web",
                "--update-max-failure-ratio",
            ),
            (
                "--rollback-max-failure-ratio 2 web",
                "--rollback-max-failure-ratio",
            ),
            ("--update-parallelism -1 web", "--update-parallelism"),
            ("--update-parallelism 1.5 web", "--update-parallelism"),
            ("--replicas -1 web", "--replicas"),
            ("--mode global web", "--mode"),
            ("--restart-delay 5 web", "--restart-delay"),
            ("--stop-grace-period forever web", "--stop-grace-period"),
            ("--reserve-memory 64X web", "--reserve-memory"),
            ("--limit-cpu lots web", "--limit-cpu"),
            ("--health-interval 1 web", "--health-interval"),
            ("--env-add NOVALUE web", "KEY=VALUE"),
            ("--args 'open web", "--args"),
            ("--no-healthcheck --health-cmd true web", "--no-healthcheck"),
        ] {
            let e = err(args);
            assert!(e.contains(want), "{args}: {e:?} does not name {want}");
        }
        assert!(
            err("--update-max-failure-ratio 1.5 web").contains("invalid argument \"1.5\""),
            "Docker's words"
        );
    }
}
