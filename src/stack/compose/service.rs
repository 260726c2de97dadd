//! One compose service → [`StackService`], with the defaults `service create` uses and its
//! parsers (ports, durations, sizes, secret and config refs).

use std::collections::BTreeMap;

use swarm_actors::model::{
    Dependency, DependencyCondition, EndpointMode, FailureAction, FileKind, HealthCheck, Mount,
    MountKind, PortConfig, RestartCondition, RestartPolicy, RuntimeKind, ServiceMode, ServiceSpec,
    UpdateConfig, UpdateOrder,
};

use super::ComposeError;
use super::convert::{Scope, boolean, check_keys, label_map, text};
use super::interpolate::parse_dotenv;
use super::node::{Node, Value};
use crate::cmd::service::create::parse_file_ref;
use crate::cmd::service::publish::parse_publish;
use crate::cmd::units::{parse_duration_ms, parse_nano_cpus, parse_size_bytes, split_words};
use crate::control::proto::NetworkArg;
use crate::control::validate::validate_spec;
use crate::stack::plan::{NAMESPACE_LABEL, StackService};

/// Keys mapped onto the service spec.
const SUPPORTED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "labels",
    "deploy",
    "healthcheck",
    "ports",
    "networks",
    "secrets",
    "configs",
    "volumes",
    "tmpfs",
    "stop_grace_period",
    "working_dir",
    "user",
    "hostname",
    "depends_on",
    "restart",
];

/// Keys swarm ignores: Docker's list (`types.UnsupportedProperties`), and the compose keys
/// that have no counterpart in a swarm-node service. Named in the warning; the deploy goes on.
const UNSUPPORTED: &[&str] = &[
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "devices",
    "domainname",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "userns_mode",
    // Not in Docker's list (Docker maps them), but nothing here carries them.
    "cap_add",
    "cap_drop",
    "credential_spec",
    "dns",
    "dns_opt",
    "dns_search",
    "extra_hosts",
    "group_add",
    "init",
    "isolation",
    "logging",
    "oom_score_adj",
    "read_only",
    "stdin_open",
    "stop_signal",
    "sysctls",
    "tty",
    "ulimits",
    // The compose specification's keys for a single engine.
    "cpus",
    "develop",
    "mem_reservation",
    "platform",
    "profiles",
    "pull_policy",
    "scale",
    "runtime",
    "storage_opt",
    "annotations",
    "attach",
    "blkio_config",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "mem_swappiness",
    "oom_kill_disable",
    "pids_limit",
    "stop_timeout",
    "volumes_from_disabled",
];

/// Docker's deprecated keys and its words for them: a warning, the deploy goes on.
const DEPRECATED: &[(&str, &str)] = &[
    (
        "container_name",
        "Setting the container name is not supported.",
    ),
    (
        "expose",
        "Exposing ports is unnecessary - services on the same network can access each other's containers on any port.",
    ),
];

/// Docker's forbidden keys and its hints: the file is refused.
const FORBIDDEN: &[(&str, &str)] = &[
    ("extends", "Support for `extends` is not implemented yet."),
    (
        "volume_driver",
        "Instead of setting the volume driver on the service, define a volume using the top-level `volumes` option and specify the driver there.",
    ),
    (
        "volumes_from",
        "To share a volume between services, define it using the top-level `volumes` option and reference it from each service that shares it using the service-level `volumes` option.",
    ),
    ("cpu_quota", "Set resource limits using deploy.resources"),
    ("cpu_shares", "Set resource limits using deploy.resources"),
    ("cpuset", "Set resource limits using deploy.resources"),
    ("mem_limit", "Set resource limits using deploy.resources"),
    (
        "memswap_limit",
        "Set resource limits using deploy.resources",
    ),
];

/// The service-level extension that picks the runtime: `docker` (the default) or `process`.
pub const RUNTIME_EXTENSION: &str = "x-swarm-runtime";

pub struct Converted {
    pub service: StackService,
    pub unsupported: Vec<String>,
    pub deprecated: BTreeMap<String, String>,
    /// The service joins `<stack>_default` (it names no network).
    pub uses_default_network: bool,
}

fn opt_text(s: &Scope, n: &Node, field: &str, key: &str) -> Result<Option<String>, ComposeError> {
    match n.get(field) {
        None => Ok(None),
        Some(v) if v.v == Value::Null => Ok(None),
        Some(v) => text(s.loaded, v, &format!("{key}.{field}")).map(Some),
    }
}

/// A field that must be one of `choices` (compose's spelling, in the order the error lists
/// them); the error names the key and the choices.
fn opt_choice<T: Copy>(
    s: &Scope,
    n: &Node,
    field: &str,
    key: &str,
    what: &str,
    choices: &[(&str, T)],
) -> Result<Option<T>, ComposeError> {
    let Some(given) = opt_text(s, n, field, key)? else {
        return Ok(None);
    };
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == given) {
        return Ok(Some(*v));
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let listed = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(s.loaded.err(
        n.get(field).unwrap_or(n),
        &format!("{key}.{field}"),
        format!("invalid {what} {given:?}: {listed}"),
    ))
}

/// A field parsed by one of the command line's parsers; the error names the key.
fn parsed<T>(
    s: &Scope,
    n: &Node,
    field: &str,
    key: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ComposeError> {
    let Some(v) = n.get(field).filter(|v| v.v != Value::Null) else {
        return Ok(None);
    };
    let k = format!("{key}.{field}");
    let t = text(s.loaded, v, &k)?;
    parse(&t).map(Some).map_err(|e| s.loaded.err(v, &k, e))
}

fn number(s: &Scope, n: &Node, field: &str, key: &str) -> Result<Option<u64>, ComposeError> {
    parsed(s, n, field, key, |t| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("invalid number {t:?}: a whole number, 0 or more"))
    })
}

/// `command`/`entrypoint`/`healthcheck.test`: a list as given, or a string split as a shell
/// splits it.
fn words(s: &Scope, n: &Node, key: &str) -> Result<Vec<String>, ComposeError> {
    match &n.v {
        Value::Null | Value::Seq(_) => words_list(s, n, key),
        _ => {
            let t = text(s.loaded, n, key)?;
            split_words(&t).map_err(|e| s.loaded.err(n, key, e))
        }
    }
}

pub fn convert_service(
    s: &Scope,
    name: &str,
    key_line: u32,
    n: &Node,
) -> Result<Converted, ComposeError> {
    let l = s.loaded;
    let key = format!("services.{name}");
    let Value::Map(fields) = &n.v else {
        return Err(l.err(n, &key, format!("must be a mapping, found {}", n.kind())));
    };
    let mut unsupported = Vec::new();
    let mut deprecated = BTreeMap::new();
    for (k, _) in fields {
        let f = k.name.as_str();
        if let Some((_, hint)) = FORBIDDEN.iter().find(|(x, _)| *x == f) {
            return Err(l.err_at(
                n.file,
                k.line,
                &format!("{key}.{f}"),
                format!("forbidden option: {hint}"),
            ));
        }
        if let Some((_, why)) = DEPRECATED.iter().find(|(x, _)| *x == f) {
            deprecated.insert(f.to_string(), why.to_string());
        } else if UNSUPPORTED.contains(&f) {
            unsupported.push(f.to_string());
        } else if !SUPPORTED.contains(&f) && !f.starts_with("x-") {
            return Err(l.err_at(
                n.file,
                k.line,
                &format!("{key}.{f}"),
                format!("additional property {f} is not allowed"),
            ));
        }
    }

    let full_name = s.scoped(name);
    let mut spec = default_spec(full_name);
    spec.task.image = match opt_text(s, n, "image", &key)? {
        Some(i) if !i.is_empty() => i,
        _ => {
            return Err(l.err_at(
                n.file,
                key_line,
                &key,
                format!("invalid image reference for service {name}: no image specified"),
            ));
        }
    };
    spec.task.runtime = match opt_text(s, n, RUNTIME_EXTENSION, &key)?.as_deref() {
        None | Some("docker") => RuntimeKind::Docker,
        Some("process") => RuntimeKind::Process,
        Some(other) => {
            let at = n.get(RUNTIME_EXTENSION).unwrap_or(n);
            return Err(l.err(
                at,
                &format!("{key}.{RUNTIME_EXTENSION}"),
                format!("invalid runtime {other:?}: docker or process"),
            ));
        }
    };
    if let Some(c) = n.get("command") {
        spec.task.args = words(s, c, &format!("{key}.command"))?;
    }
    if let Some(c) = n.get("entrypoint") {
        spec.task.entrypoint = words(s, c, &format!("{key}.entrypoint"))?;
    }
    spec.task.env = environment(s, n, &key)?;
    spec.task.workdir = opt_text(s, n, "working_dir", &key)?;
    spec.task.user = opt_text(s, n, "user", &key)?;
    spec.task.hostname = opt_text(s, n, "hostname", &key)?;
    if let Some(ms) = parsed(s, n, "stop_grace_period", &key, parse_duration_ms)? {
        spec.task.stop_grace_period_ms = ms;
    }
    spec.task.container_labels = label_map(l, n.get("labels"), &format!("{key}.labels"))?;
    spec.task
        .container_labels
        .insert(NAMESPACE_LABEL.into(), s.namespace.into());
    spec.task.health = healthcheck(s, n, &key)?;
    if let Some(r) = opt_text(s, n, "restart", &key)? {
        spec.task.restart = legacy_restart(&r)
            .map_err(|e| l.err(n.get("restart").unwrap_or(n), &format!("{key}.restart"), e))?;
    }
    if let Some(d) = n.get("deploy").filter(|d| d.v != Value::Null) {
        deploy(s, d, &format!("{key}.deploy"), &mut spec)?;
    }
    spec.labels
        .insert(NAMESPACE_LABEL.into(), s.namespace.into());
    if let Some(p) = n.get("ports") {
        spec.ports = ports(s, p, &format!("{key}.ports"))?;
    }
    let (networks, uses_default) = networks(s, name, n, &key)?;
    for (kind, field) in [(FileKind::Secret, "secrets"), (FileKind::Config, "configs")] {
        if let Some(list) = n.get(field) {
            let refs = file_refs(s, kind, list, &format!("{key}.{field}"))?;
            match kind {
                FileKind::Secret => spec.task.secrets = refs,
                FileKind::Config => spec.task.configs = refs,
            }
        }
    }
    spec.task.mounts = mounts(s, n, &key)?;
    spec.depends_on = depends_on(s, n, &key)?;
    validate_spec(&spec).map_err(|e| l.err_at(n.file, key_line, &key, e))?;
    Ok(Converted {
        service: StackService { spec, networks },
        unsupported,
        deprecated,
        uses_default_network: uses_default,
    })
}

/// The spec `service create` makes when no flag is given.
fn default_spec(name: String) -> ServiceSpec {
    ServiceSpec {
        name,
        labels: BTreeMap::new(),
        mode: ServiceMode::Replicated { replicas: 1 },
        task: swarm_actors::model::TaskSpec {
            stop_grace_period_ms: 10_000,
            ..Default::default()
        },
        update: UpdateConfig::default(),
        rollback: UpdateConfig::default(),
        ports: Vec::new(),
        endpoint_mode: EndpointMode::Vip,
        depends_on: Vec::new(),
    }
}

/// `env_file` then `environment` (which wins), sorted by name as Docker sends them. A name
/// without a value takes the variable's value, and is left out when it is unset.
fn environment(s: &Scope, n: &Node, key: &str) -> Result<Vec<String>, ComposeError> {
    let l = s.loaded;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(f) = n.get("env_file") {
        let fkey = format!("{key}.env_file");
        let paths: Vec<(String, &Node)> = match &f.v {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let x_path = match x.get("path") {
                        Some(p) => text(l, p, &format!("{fkey}[{i}].path")),
                        None => text(l, x, &format!("{fkey}[{i}]")),
                    };
                    x_path.map(|p| (p, x))
                })
                .collect::<Result<_, _>>()?,
            _ => vec![(text(l, f, &fkey)?, f)],
        };
        for (p, at) in paths {
            let path = l.resolve(&p);
            let data = std::fs::read_to_string(&path)
                .map_err(|e| l.err(at, &fkey, format!("{}: {e}", path.display())))?;
            let vars = parse_dotenv(&data).map_err(|(line, msg)| {
                l.err(at, &fkey, format!("{}:{line}: {msg}", path.display()))
            })?;
            env.extend(vars);
        }
    }
    match n.get("environment").map(|e| (e, &e.v)) {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Map(m))) => {
            for (k, v) in m {
                match v.v {
                    Value::Null => {
                        if let Some(x) = l.vars.get(&k.name) {
                            env.insert(k.name.clone(), x.to_string());
                        }
                    }
                    _ => {
                        let t = text(l, v, &format!("{key}.environment.{}", k.name))?;
                        env.insert(k.name.clone(), t);
                    }
                }
            }
        }
        Some((_, Value::Seq(items))) => {
            for (i, item) in items.iter().enumerate() {
                let t = text(l, item, &format!("{key}.environment[{i}]"))?;
                match t.split_once('=') {
                    Some((k, v)) => {
                        env.insert(k.to_string(), v.to_string());
                    }
                    None => {
                        if let Some(x) = l.vars.get(&t) {
                            env.insert(t.clone(), x.to_string());
                        }
                    }
                }
            }
        }
        Some((e, _)) => {
            return Err(l.err(
                e,
                &format!("{key}.environment"),
                format!("must be a mapping or a list, found {}", e.kind()),
            ));
        }
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// `test: [CMD, …]`, `[CMD-SHELL, "…"]`, `[NONE]` or a string (a shell command); `disable:
/// true` or `NONE` → no health check. Docker's defaults: 30s, 30s, 3 retries.
fn healthcheck(s: &Scope, n: &Node, key: &str) -> Result<Option<HealthCheck>, ComposeError> {
    let l = s.loaded;
    let Some(h) = n.get("healthcheck").filter(|h| h.v != Value::Null) else {
        return Ok(None);
    };
    let key = format!("{key}.healthcheck");
    check_keys(
        l,
        h,
        &key,
        &[
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ],
    )?;
    if let Some(d) = h.get("disable")
        && boolean(l, d, &format!("{key}.disable"))?
    {
        return Ok(None);
    }
    let Some(test) = h.get("test") else {
        return Err(l.err(h, &key, "a health check needs test (or disable: true)"));
    };
    let tkey = format!("{key}.test");
    let cmd = match &test.v {
        Value::Seq(_) => {
            let w = words(s, test, &tkey)?;
            match w.first().map(String::as_str) {
                Some("NONE") => return Ok(None),
                Some("CMD") => w[1..]
                    .iter()
                    .map(|x| shell_quote(x))
                    .collect::<Vec<_>>()
                    .join(" "),
                Some("CMD-SHELL") => w[1..].join(" "),
                _ => {
                    return Err(l.err(
                        test,
                        &tkey,
                        "a list test starts with CMD, CMD-SHELL or NONE",
                    ));
                }
            }
        }
        _ => text(l, test, &tkey)?,
    };
    if cmd.trim().is_empty() {
        return Err(l.err(test, &tkey, "empty health check command"));
    }
    Ok(Some(HealthCheck {
        cmd,
        interval_ms: parsed(s, h, "interval", &key, parse_duration_ms)?.unwrap_or(30_000),
        timeout_ms: parsed(s, h, "timeout", &key, parse_duration_ms)?.unwrap_or(30_000),
        retries: number(s, h, "retries", &key)?
            .map(|r| u32::try_from(r).unwrap_or(u32::MAX))
            .unwrap_or(3),
        start_period_ms: parsed(s, h, "start_period", &key, parse_duration_ms)?.unwrap_or(0),
    }))
}

/// A word for `sh -c`: as it is when it is plain, in single quotes otherwise.
fn shell_quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The legacy `restart:` (Docker maps it when `deploy.restart_policy` is absent): `no`,
/// `always`, `unless-stopped`, `on-failure[:N]`.
fn legacy_restart(text: &str) -> Result<RestartPolicy, String> {
    let mut p = RestartPolicy::default();
    match text.split_once(':').unwrap_or((text, "")) {
        ("no", "") => p.condition = RestartCondition::None,
        ("always" | "unless-stopped", "") => p.condition = RestartCondition::Any,
        ("on-failure", n) => {
            p.condition = RestartCondition::OnFailure;
            if !n.is_empty() {
                p.max_attempts = Some(n.parse().map_err(|_| {
                    format!("invalid restart policy {text:?}: maximum retry count must be a number, 0 or more")
                })?);
            }
        }
        _ => {
            return Err(format!(
                "invalid restart policy {text:?}: no, always, unless-stopped or on-failure[:N]"
            ));
        }
    }
    Ok(p)
}

fn deploy(s: &Scope, d: &Node, key: &str, spec: &mut ServiceSpec) -> Result<(), ComposeError> {
    let l = s.loaded;
    check_keys(
        l,
        d,
        key,
        &[
            "mode",
            "replicas",
            "labels",
            "placement",
            "resources",
            "restart_policy",
            "update_config",
            "rollback_config",
            "endpoint_mode",
        ],
    )?;
    let replicas = number(s, d, "replicas", key)?;
    spec.mode = match opt_text(s, d, "mode", key)?.as_deref() {
        None | Some("replicated") => ServiceMode::Replicated {
            replicas: replicas.unwrap_or(1),
        },
        Some("global") => {
            if replicas.is_some() {
                return Err(l.err(
                    d,
                    &format!("{key}.replicas"),
                    "replicas can only be used with replicated mode",
                ));
            }
            ServiceMode::Global
        }
        Some(other) => {
            return Err(l.err(
                d.get("mode").unwrap_or(d),
                &format!("{key}.mode"),
                format!("invalid mode {other:?}: replicated or global"),
            ));
        }
    };
    spec.labels = label_map(l, d.get("labels"), &format!("{key}.labels"))?;
    let modes = [("vip", EndpointMode::Vip), ("dnsrr", EndpointMode::Dnsrr)];
    if let Some(m) = opt_choice(s, d, "endpoint_mode", key, "endpoint mode", &modes)? {
        spec.endpoint_mode = m;
    }
    if let Some(p) = d.get("placement").filter(|p| p.v != Value::Null) {
        let pkey = format!("{key}.placement");
        check_keys(
            l,
            p,
            &pkey,
            &["constraints", "preferences", "max_replicas_per_node"],
        )?;
        if let Some(c) = p.get("constraints") {
            spec.task.placement.constraints = words_list(s, c, &format!("{pkey}.constraints"))?;
        }
        if let Some(Value::Seq(prefs)) = p.get("preferences").map(|x| &x.v) {
            for (i, pref) in prefs.iter().enumerate() {
                let k = format!("{pkey}.preferences[{i}]");
                check_keys(l, pref, &k, &["spread"])?;
                let spread = pref
                    .get("spread")
                    .ok_or_else(|| l.err(pref, &k, "a preference needs spread"))?;
                let t = text(l, spread, &format!("{k}.spread"))?;
                spec.task.placement.preferences.push(format!("spread={t}"));
            }
        }
        if let Some(m) = number(s, p, "max_replicas_per_node", &pkey)? {
            spec.task.placement.max_replicas = m;
        }
    }
    if let Some(r) = d.get("resources").filter(|r| r.v != Value::Null) {
        let rkey = format!("{key}.resources");
        check_keys(l, r, &rkey, &["limits", "reservations"])?;
        for (field, amounts) in [
            ("limits", &mut spec.task.resources.limits),
            ("reservations", &mut spec.task.resources.reservations),
        ] {
            let Some(a) = r.get(field).filter(|a| a.v != Value::Null) else {
                continue;
            };
            let akey = format!("{rkey}.{field}");
            check_keys(
                l,
                a,
                &akey,
                &["cpus", "memory", "pids", "generic_resources", "devices"],
            )?;
            if let Some(c) = parsed(s, a, "cpus", &akey, parse_nano_cpus)? {
                amounts.nano_cpus = c;
            }
            if let Some(m) = parsed(s, a, "memory", &akey, parse_size_bytes)? {
                amounts.memory_bytes = m;
            }
        }
    }
    if let Some(r) = d.get("restart_policy").filter(|r| r.v != Value::Null) {
        let rkey = format!("{key}.restart_policy");
        check_keys(
            l,
            r,
            &rkey,
            &["condition", "delay", "max_attempts", "window"],
        )?;
        let mut p = RestartPolicy::default();
        let conditions = [
            ("none", RestartCondition::None),
            ("on-failure", RestartCondition::OnFailure),
            ("any", RestartCondition::Any),
        ];
        if let Some(c) = opt_choice(s, r, "condition", &rkey, "restart condition", &conditions)? {
            p.condition = c;
        }
        if let Some(ms) = parsed(s, r, "delay", &rkey, parse_duration_ms)? {
            p.delay_ms = ms;
        }
        p.max_attempts = number(s, r, "max_attempts", &rkey)?;
        if let Some(ms) = parsed(s, r, "window", &rkey, parse_duration_ms)? {
            p.window_ms = ms;
        }
        spec.task.restart = p;
    }
    if let Some(u) = d.get("update_config").filter(|u| u.v != Value::Null) {
        spec.update = rollout(s, u, &format!("{key}.update_config"))?;
    }
    if let Some(u) = d.get("rollback_config").filter(|u| u.v != Value::Null) {
        spec.rollback = rollout(s, u, &format!("{key}.rollback_config"))?;
    }
    Ok(())
}

/// A list of strings (a single string is a list of one).
fn words_list(s: &Scope, n: &Node, key: &str) -> Result<Vec<String>, ComposeError> {
    match &n.v {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| text(s.loaded, x, &format!("{key}[{i}]")))
            .collect(),
        _ => Ok(vec![text(s.loaded, n, key)?]),
    }
}

fn rollout(s: &Scope, u: &Node, key: &str) -> Result<UpdateConfig, ComposeError> {
    let l = s.loaded;
    check_keys(
        l,
        u,
        key,
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    )?;
    let mut c = UpdateConfig::default();
    if let Some(p) = number(s, u, "parallelism", key)? {
        c.parallelism = p;
    }
    if let Some(ms) = parsed(s, u, "delay", key, parse_duration_ms)? {
        c.delay_ms = ms;
    }
    if let Some(ms) = parsed(s, u, "monitor", key, parse_duration_ms)? {
        c.monitor_ms = ms;
    }
    let actions = [
        ("pause", FailureAction::Pause),
        ("continue", FailureAction::Continue),
        ("rollback", FailureAction::Rollback),
    ];
    if let Some(a) = opt_choice(s, u, "failure_action", key, "failure action", &actions)? {
        c.failure_action = a;
    }
    let orders = [
        ("stop-first", UpdateOrder::StopFirst),
        ("start-first", UpdateOrder::StartFirst),
    ];
    if let Some(o) = opt_choice(s, u, "order", key, "order", &orders)? {
        c.order = o;
    }
    if let Some(r) = parsed(s, u, "max_failure_ratio", key, |t| {
        t.trim()
            .parse::<f32>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("invalid ratio {t:?}: a number from 0 to 1"))
    })? {
        c.max_failure_ratio = r;
    }
    Ok(c)
}

/// Short syntax `[IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]` (the host IP is not used:
/// the routing mesh listens on every address) and the long syntax.
fn ports(s: &Scope, p: &Node, key: &str) -> Result<Vec<PortConfig>, ComposeError> {
    let l = s.loaded;
    let Value::Seq(items) = &p.v else {
        if p.v == Value::Null {
            return Ok(Vec::new());
        }
        return Err(l.err(p, key, format!("must be a list, found {}", p.kind())));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let bad = |e: String| l.err(item, &k, e);
        if let Value::Map(_) = item.v {
            check_keys(
                l,
                item,
                &k,
                &[
                    "target",
                    "published",
                    "protocol",
                    "mode",
                    "host_ip",
                    "name",
                    "app_protocol",
                ],
            )?;
            let mut fields = Vec::new();
            let target = item
                .get("target")
                .ok_or_else(|| bad("a port needs target".into()))?;
            fields.push(format!(
                "target={}",
                text(l, target, &format!("{k}.target"))?
            ));
            if let Some(t) = opt_text(s, item, "protocol", &k)? {
                fields.push(format!("protocol={t}"));
            }
            if let Some(t) = opt_text(s, item, "mode", &k)? {
                fields.push(format!("mode={t}"));
            }
            match opt_text(s, item, "published", &k)? {
                Some(p) if p.contains('-') => {
                    let (a, b) = range(&p).map_err(bad)?;
                    if a != b {
                        return Err(bad(format!(
                            "published range {p:?} needs a target range of the same length"
                        )));
                    }
                    fields.push(format!("published={a}"));
                }
                Some(p) => fields.push(format!("published={p}")),
                None => {}
            }
            out.push(parse_publish(&fields.join(",")).map_err(bad)?);
            continue;
        }
        let t = text(l, item, &k)?;
        let (spec_text, proto) = match t.rsplit_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t.as_str(), None),
        };
        let parts: Vec<&str> = spec_text.rsplitn(3, ':').collect();
        let (target, published) = match parts.as_slice() {
            [t] => (*t, None),
            [t, p] => (*t, Some(*p)),
            [t, p, _ip] => (*t, if p.is_empty() { None } else { Some(*p) }),
            _ => return Err(bad(format!("invalid port {t:?}"))),
        };
        let (t0, t1) = range(target).map_err(bad)?;
        let published = published.map(range).transpose().map_err(bad)?;
        if let Some((p0, p1)) = published
            && p1 - p0 != t1 - t0
            && p0 != p1
        {
            return Err(bad(format!(
                "invalid port {t:?}: the published and target ranges differ in length"
            )));
        }
        for (j, target) in (t0..=t1).enumerate() {
            let mut text = match published {
                Some((p0, p1)) if p0 == p1 && t0 != t1 => format!("{p0}:{target}"),
                Some((p0, _)) => format!("{}:{target}", p0 + j as u32),
                None => format!("{target}"),
            };
            if let Some(proto) = proto {
                text = format!("{text}/{proto}");
            }
            let mut port = parse_publish(&text).map_err(|e| bad(e.replace("--publish", "port")))?;
            if published.is_none() {
                port.published = 0;
            }
            out.push(port);
        }
    }
    Ok(out)
}

/// `8000` or `8000-8002`.
fn range(t: &str) -> Result<(u32, u32), String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| format!("invalid port {t:?}: a port is 1-65535"))
    };
    match t.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(format!("invalid port range {t:?}"));
            }
            Ok((a, b))
        }
        None => {
            let n = num(t)?;
            Ok((n, n))
        }
    }
}

/// The service's networks by full name, each with the service's own name as an alias (as
/// Docker adds it); `<stack>_default` when it names none.
fn networks(
    s: &Scope,
    name: &str,
    n: &Node,
    key: &str,
) -> Result<(Vec<NetworkArg>, bool), ComposeError> {
    let l = s.loaded;
    let nkey = format!("{key}.networks");
    let mut wanted: Vec<(String, &Node, Vec<String>)> = Vec::new();
    match n.get("networks").map(|x| (x, &x.v)) {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Seq(items))) => {
            for (i, item) in items.iter().enumerate() {
                wanted.push((text(l, item, &format!("{nkey}[{i}]"))?, item, Vec::new()));
            }
        }
        Some((_, Value::Map(m))) => {
            for (k, v) in m {
                let vkey = format!("{nkey}.{}", k.name);
                let mut aliases = Vec::new();
                if v.v != Value::Null {
                    check_keys(
                        l,
                        v,
                        &vkey,
                        &[
                            "aliases",
                            "ipv4_address",
                            "ipv6_address",
                            "priority",
                            "link_local_ips",
                            "mac_address",
                            "driver_opts",
                        ],
                    )?;
                    if let Some(a) = v.get("aliases") {
                        aliases = words_list(s, a, &format!("{vkey}.aliases"))?;
                    }
                }
                wanted.push((k.name.clone(), v, aliases));
            }
        }
        Some((x, _)) => {
            return Err(l.err(
                x,
                &nkey,
                format!("must be a list or a mapping, found {}", x.kind()),
            ));
        }
    }
    let mut uses_default = false;
    if wanted.is_empty() {
        let at = n;
        wanted.push(("default".into(), at, Vec::new()));
    }
    let mut out = Vec::new();
    for (net, at, mut aliases) in wanted {
        let full =
            match s.networks.get(&net) {
                Some(named) => named.full.clone(),
                None if net == "default" => {
                    uses_default = true;
                    s.scoped("default")
                }
                None => {
                    return Err(l.err(at, &nkey, format!(
                    "service {name} refers to undefined network {net}: invalid compose project"
                )));
                }
            };
        if !aliases.iter().any(|a| a == name) {
            aliases.push(name.to_string());
        }
        out.push(NetworkArg {
            target: full,
            aliases,
        });
    }
    Ok((out, uses_default))
}

fn file_refs(
    s: &Scope,
    kind: FileKind,
    list: &Node,
    key: &str,
) -> Result<Vec<swarm_actors::model::FileRef>, ComposeError> {
    let l = s.loaded;
    let Value::Seq(items) = &list.v else {
        if list.v == Value::Null {
            return Ok(Vec::new());
        }
        return Err(l.err(list, key, format!("must be a list, found {}", list.kind())));
    };
    let defined = match kind {
        FileKind::Secret => &s.secrets,
        FileKind::Config => &s.configs,
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let (source, fields) = match &item.v {
            Value::Map(_) => {
                check_keys(l, item, &k, &["source", "target", "uid", "gid", "mode"])?;
                let source = item
                    .get("source")
                    .ok_or_else(|| l.err(item, &k, "needs source"))?;
                let source = text(l, source, &format!("{k}.source"))?;
                let mut fields = vec![format!("source={source}")];
                for f in ["target", "uid", "gid"] {
                    if let Some(v) = opt_text(s, item, f, &k)? {
                        fields.push(format!("{f}={v}"));
                    }
                }
                if let Some(m) = item.get("mode") {
                    let mode = match m.v {
                        // A YAML integer: the number itself (0440 in the file reads as octal).
                        Value::Int(i) => format!("{i:o}"),
                        _ => text(l, m, &format!("{k}.mode"))?,
                    };
                    fields.push(format!("mode={mode}"));
                }
                (source, fields.join(","))
            }
            _ => {
                let t = text(l, item, &k)?;
                (t.clone(), t)
            }
        };
        let Some(named) = defined.get(&source) else {
            return Err(l.err(
                item,
                &k,
                format!(
                    "undefined {} {source:?}: define it under the top-level {}",
                    kind.as_str(),
                    match kind {
                        FileKind::Secret => "secrets",
                        FileKind::Config => "configs",
                    }
                ),
            ));
        };
        let mut r = parse_file_ref(kind, &fields).map_err(|e| {
            l.err(
                item,
                &k,
                e.replace(&format!("--{}", kind.as_str()), kind.as_str()),
            )
        })?;
        // The target comes from the file's name for it; the ref names the object itself.
        r.name = named.full.clone();
        out.push(r);
    }
    Ok(out)
}

/// `volumes` (short `[SOURCE:]TARGET[:MODE]` and long) and `tmpfs`.
fn mounts(s: &Scope, n: &Node, key: &str) -> Result<Vec<Mount>, ComposeError> {
    let l = s.loaded;
    let mut out = Vec::new();
    let vkey = format!("{key}.volumes");
    if let Some(v) = n.get("volumes") {
        let items = match &v.v {
            Value::Seq(items) => items.as_slice(),
            Value::Null => &[],
            _ => return Err(l.err(v, &vkey, format!("must be a list, found {}", v.kind()))),
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{vkey}[{i}]");
            let (kind, source, target, read_only, size) = match &item.v {
                Value::Map(_) => {
                    check_keys(
                        l,
                        item,
                        &k,
                        &[
                            "type",
                            "source",
                            "target",
                            "read_only",
                            "volume",
                            "bind",
                            "tmpfs",
                            "consistency",
                        ],
                    )?;
                    let kind = match opt_text(s, item, "type", &k)?.as_deref() {
                        None | Some("volume") => MountKind::Volume,
                        Some("bind") => MountKind::Bind,
                        Some("tmpfs") => MountKind::Tmpfs,
                        Some(other) => {
                            return Err(l.err(
                                item,
                                &format!("{k}.type"),
                                format!("invalid mount type {other:?}: volume, bind or tmpfs"),
                            ));
                        }
                    };
                    let target = opt_text(s, item, "target", &k)?
                        .ok_or_else(|| l.err(item, &k, "a mount needs target"))?;
                    let ro = item
                        .get("read_only")
                        .map(|r| boolean(l, r, &format!("{k}.read_only")))
                        .transpose()?
                        .unwrap_or(false);
                    let size = match item.get("tmpfs") {
                        Some(t) => parsed(s, t, "size", &format!("{k}.tmpfs"), parse_size_bytes)?
                            .unwrap_or(0),
                        None => 0,
                    };
                    (
                        kind,
                        opt_text(s, item, "source", &k)?.unwrap_or_default(),
                        target,
                        ro,
                        size,
                    )
                }
                _ => {
                    let t = text(l, item, &k)?;
                    let parts: Vec<&str> = t.split(':').collect();
                    let (source, target, mode) = match parts.as_slice() {
                        [t] => ("", *t, ""),
                        [s, t] => (*s, *t, ""),
                        [s, t, m] => (*s, *t, *m),
                        _ => {
                            return Err(l.err(
                                item,
                                &k,
                                format!("invalid volume {t:?}: [SOURCE:]TARGET[:MODE]"),
                            ));
                        }
                    };
                    let ro = mode.split(',').any(|m| m == "ro");
                    let kind = if source.starts_with(['.', '/', '~']) {
                        MountKind::Bind
                    } else {
                        MountKind::Volume
                    };
                    (kind, source.to_string(), target.to_string(), ro, 0)
                }
            };
            if !target.starts_with('/') {
                return Err(l.err(
                    item,
                    &k,
                    format!("invalid mount target {target:?}: an absolute path"),
                ));
            }
            let mut m = Mount {
                kind,
                source: String::new(),
                target,
                read_only,
                volume_labels: BTreeMap::new(),
                tmpfs_size_bytes: size,
            };
            match kind {
                MountKind::Bind => {
                    if source.is_empty() {
                        return Err(l.err(item, &k, "a bind mount needs source"));
                    }
                    m.source = l.resolve(&source).display().to_string();
                }
                MountKind::Volume if !source.is_empty() => {
                    let Some(named) = s.volumes.get(&source) else {
                        return Err(l.err(item, &k, format!(
                            "service refers to undefined volume {source}: invalid compose project"
                        )));
                    };
                    m.source = named.full.clone();
                    if !named.external {
                        m.volume_labels
                            .insert(NAMESPACE_LABEL.into(), s.namespace.into());
                    }
                }
                _ => {}
            }
            out.push(m);
        }
    }
    if let Some(t) = n.get("tmpfs") {
        for target in words_list(s, t, &format!("{key}.tmpfs"))? {
            let target = target.split(':').next().unwrap_or("").to_string();
            out.push(Mount {
                kind: MountKind::Tmpfs,
                target,
                ..Mount::default()
            });
        }
    }
    if out.len() > swarm_actors::model::MOUNTS_MAX {
        return Err(l.err(
            n,
            &vkey,
            format!(
                "{} mounts: at most {}",
                out.len(),
                swarm_actors::model::MOUNTS_MAX
            ),
        ));
    }
    Ok(out)
}

/// `depends_on` as a list (`service_started`) or a map with `condition`.
fn depends_on(s: &Scope, n: &Node, key: &str) -> Result<Vec<Dependency>, ComposeError> {
    let l = s.loaded;
    let dkey = format!("{key}.depends_on");
    let mut out: Vec<(String, &Node, DependencyCondition)> = Vec::new();
    match n.get("depends_on").map(|d| (d, &d.v)) {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Seq(items))) => {
            for (i, item) in items.iter().enumerate() {
                out.push((
                    text(l, item, &format!("{dkey}[{i}]"))?,
                    item,
                    DependencyCondition::Started,
                ));
            }
        }
        Some((_, Value::Map(m))) => {
            for (k, v) in m {
                let vkey = format!("{dkey}.{}", k.name);
                let mut cond = DependencyCondition::Started;
                if v.v != Value::Null {
                    check_keys(l, v, &vkey, &["condition", "restart", "required"])?;
                    if let Some(c) = opt_text(s, v, "condition", &vkey)? {
                        cond = match c.as_str() {
                            "service_started" => DependencyCondition::Started,
                            "service_healthy" => DependencyCondition::Healthy,
                            "service_completed_successfully" => {
                                DependencyCondition::CompletedSuccessfully
                            }
                            other => {
                                return Err(l.err(v, &format!("{vkey}.condition"), format!(
                                    "invalid condition {other:?}: service_started, service_healthy or service_completed_successfully"
                                )));
                            }
                        };
                    }
                }
                out.push((k.name.clone(), v, cond));
            }
        }
        Some((d, _)) => {
            return Err(l.err(
                d,
                &dkey,
                format!("must be a list or a mapping, found {}", d.kind()),
            ));
        }
    }
    if out.len() > swarm_actors::model::DEPENDENCIES_MAX {
        return Err(l.err(
            n,
            &dkey,
            format!(
                "{} dependencies: at most {}",
                out.len(),
                swarm_actors::model::DEPENDENCIES_MAX
            ),
        ));
    }
    out.into_iter()
        .map(|(name, at, condition)| {
            if !s.services.contains(&name) {
                return Err(l.err(at, &dkey, format!("depends on undefined service {name:?}")));
            }
            Ok(Dependency {
                service: s.scoped(&name),
                condition,
            })
        })
        .collect()
}
