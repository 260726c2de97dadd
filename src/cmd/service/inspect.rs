//! `service inspect`: Docker's JSON shape (an array of services), or `--pretty` text. Both
//! carry the update status the leader keeps with the service, and the update and rollback
//! configs with Docker's keys and layout.

use serde_json::{Value, json};
use swarm_actors::model::{
    FailureAction, FileRef, PortConfig, RestartCondition, RuntimeKind, ServiceMode, ServiceSpec,
    UpdateConfig, UpdateOrder, UpdateStatus,
};

use crate::cmd::units::{format_duration_ms, human_duration};
use crate::control::proto::ServiceDoc;

/// Docker gives durations in nanoseconds.
fn ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

fn update_json(u: &UpdateConfig) -> Value {
    json!({
        "Parallelism": u.parallelism,
        "Delay": ns(u.delay_ms),
        "FailureAction": failure_action(u.failure_action),
        "Monitor": ns(u.monitor_ms),
        "MaxFailureRatio": ratio(u.max_failure_ratio),
        "Order": order(u.order),
    })
}

/// The ratio as Docker prints it: its shortest decimal (0.2, not the f32's
/// 0.20000000298023224 widened to f64), and a whole number without a fraction (0, not 0.0).
fn ratio(r: f32) -> Value {
    if r.fract() == 0.0 && r >= 0.0 {
        return json!(r as u64);
    }
    json!(r.to_string().parse::<f64>().unwrap_or(f64::from(r)))
}

/// Docker's `UpdateStatus`; `CompletedAt` only once the update or rollback completed.
fn update_status_json(u: &UpdateStatus) -> Value {
    let mut status = json!({
        "State": u.state.as_str(),
        "StartedAt": rfc3339(u.started_ms),
    });
    if let Some(done) = u.completed_ms {
        status["CompletedAt"] = json!(rfc3339(done));
    }
    status["Message"] = json!(u.message);
    status
}

fn failure_action(a: FailureAction) -> &'static str {
    match a {
        FailureAction::Pause => "pause",
        FailureAction::Continue => "continue",
        FailureAction::Rollback => "rollback",
    }
}

fn order(o: UpdateOrder) -> &'static str {
    match o {
        UpdateOrder::StopFirst => "stop-first",
        UpdateOrder::StartFirst => "start-first",
    }
}

fn condition(c: RestartCondition) -> &'static str {
    match c {
        RestartCondition::Any => "any",
        RestartCondition::OnFailure => "on-failure",
        RestartCondition::None => "none",
    }
}

fn spec_json(s: &ServiceSpec) -> Value {
    let t = &s.task;
    let mut container = json!({
        "Image": t.image,
        "Args": t.args,
        "Env": t.env,
        "StopGracePeriod": ns(t.stop_grace_period_ms),
    });
    // Docker's fields, present when set; `--pretty` also says who runs the task when unset.
    if !t.container_labels.is_empty() {
        container["Labels"] = json!(t.container_labels);
    }
    if let Some(user) = &t.user {
        container["User"] = json!(user);
    }
    if !t.entrypoint.is_empty() {
        container["Command"] = json!(t.entrypoint);
    }
    if let Some(dir) = &t.workdir {
        container["Dir"] = json!(dir);
    }
    if let Some(host) = &t.hostname {
        container["Hostname"] = json!(host);
    }
    if !t.mounts.is_empty() {
        container["Mounts"] = super::container::mounts_json(&t.mounts);
    }
    // Docker's shape: File {Name, UID, GID, Mode}, and the secret's (config's) ID and name.
    let refs = |refs: &[FileRef], kind: &str| -> Vec<Value> {
        refs.iter()
            .map(|r| {
                let mut v = json!({
                    "File": {
                        "Name": r.target,
                        "UID": r.uid.to_string(),
                        "GID": r.gid.to_string(),
                        "Mode": r.mode,
                    },
                });
                v[format!("{kind}ID")] = json!(r.id.to_string());
                v[format!("{kind}Name")] = json!(r.name);
                v
            })
            .collect()
    };
    if !t.secrets.is_empty() {
        container["Secrets"] = json!(refs(&t.secrets, "Secret"));
    }
    if !t.configs.is_empty() {
        container["Configs"] = json!(refs(&t.configs, "Config"));
    }
    if let Some(h) = &t.health {
        container["Healthcheck"] = json!({
            "Test": ["CMD-SHELL", h.cmd],
            "Interval": ns(h.interval_ms),
            "Timeout": ns(h.timeout_ms),
            "Retries": h.retries,
            "StartPeriod": ns(h.start_period_ms),
        });
    }
    let mode = match s.mode {
        ServiceMode::Replicated { replicas } => json!({ "Replicated": { "Replicas": replicas } }),
        ServiceMode::Global => json!({ "Global": {} }),
    };
    let prefs: Vec<Value> = t
        .placement
        .preferences
        .iter()
        .map(|p| {
            let key = p.split_once('=').map_or(p.as_str(), |(_, k)| k);
            json!({ "Spread": { "SpreadDescriptor": key } })
        })
        .collect();
    let mut placement = json!({ "Constraints": t.placement.constraints, "Preferences": prefs });
    if t.placement.max_replicas != 0 {
        placement["MaxReplicas"] = json!(t.placement.max_replicas);
    }
    let mut spec = json!({
        "Name": s.name,
        "Labels": s.labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {
                "Limits": {
                    "NanoCPUs": t.resources.limits.nano_cpus,
                    "MemoryBytes": t.resources.limits.memory_bytes,
                },
                "Reservations": {
                    "NanoCPUs": t.resources.reservations.nano_cpus,
                    "MemoryBytes": t.resources.reservations.memory_bytes,
                },
            },
            "RestartPolicy": {
                "Condition": condition(t.restart.condition),
                "Delay": ns(t.restart.delay_ms),
                "MaxAttempts": t.restart.max_attempts.unwrap_or(0),
                "Window": ns(t.restart.window_ms),
            },
            "Placement": placement,
            "ForceUpdate": t.force_update,
            "Runtime": t.runtime.as_str(),
            "Networks": super::networks::networks_json(t),
        },
        "Mode": mode,
        "UpdateConfig": update_json(&s.update),
        "RollbackConfig": update_json(&s.rollback),
        "EndpointSpec": endpoint_spec(s),
    });
    // Not Docker's (swarm ignores `depends_on`): shown only when the service has some.
    if !s.depends_on.is_empty() {
        spec["DependsOn"] = s
            .depends_on
            .iter()
            .map(|d| json!({ "Service": d.service, "Condition": d.condition.as_str() }))
            .collect();
    }
    spec
}

/// Docker's `EndpointSpec` (and `Endpoint.Spec`): the VIP mode and the published ports, with
/// the two opt-ins Docker lacks only where they are set.
fn endpoint_spec(s: &ServiceSpec) -> Value {
    json!({ "Mode": s.endpoint_mode.as_str(), "Ports": ports_json(&s.ports) })
}

fn ports_json(ports: &[PortConfig]) -> Vec<Value> {
    ports
        .iter()
        .map(|p| {
            let mut v = json!({
                "Protocol": p.protocol.as_str(),
                "TargetPort": p.target,
                "PublishedPort": p.published,
                "PublishMode": p.mode.as_str(),
            });
            if p.proxy_protocol {
                v["ProxyProtocol"] = json!("v2");
            }
            if p.affinity {
                v["Affinity"] = json!("client-ip");
            }
            v
        })
        .collect()
}

/// How a process task is networked: stated, because the fallback changes what the program
/// must listen on.
pub const PROCESS_NETWORKING: &str = "own network namespace with its ingress address when the \
    node runs as root with the CNI plugins; otherwise the host network, each target port \
    remapped to a free port the node picks and given to the task as PORT (the first target) and \
    SWARM_PORT_<target>";

/// Milliseconds since the epoch as RFC 3339 UTC, the way Docker shows CreatedAt.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60,
        ms % 1_000
    )
}

pub fn json_doc(d: &ServiceDoc) -> Value {
    let mut doc = json!({
        "ID": d.service.id.to_string(),
        "Version": { "Index": d.version },
        "CreatedAt": rfc3339(d.created_ms),
        "UpdatedAt": rfc3339(d.updated_ms),
        "Spec": spec_json(&d.service.spec),
        "SpecVersion": d.service.spec_version,
        "Endpoint": {
            "Spec": endpoint_spec(&d.service.spec),
            "Ports": ports_json(&d.service.spec.ports),
            "VirtualIPs": super::networks::virtual_ips_json(d),
        },
    });
    if d.service.spec.task.runtime == RuntimeKind::Process {
        doc["Spec"]["TaskTemplate"]["Networking"] = json!(PROCESS_NETWORKING);
    }
    if let Some(prev) = &d.service.previous_spec {
        doc["PreviousSpec"] = spec_json(prev);
    }
    if let Some(u) = &d.service.update_status {
        doc["UpdateStatus"] = update_status_json(u);
    }
    doc
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 => {
            format!("{:.4}MiB", b as f64 / f64::from(1 << 20)).replace(".0000", "")
        }
        b if b >= 1 << 10 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

fn cpus(nano: u64) -> String {
    let s = format!("{:.9}", nano as f64 / 1e9);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Who a task of the spec runs as, in words.
fn runs_as(t: &swarm_actors::model::TaskSpec) -> String {
    match (&t.user, t.runtime) {
        (Some(user), _) => user.clone(),
        (None, RuntimeKind::Process) => {
            "(not set: the node's own user, root when the node runs as root)".into()
        }
        (None, RuntimeKind::Docker) => "(not set: the image's user)".into(),
    }
}

/// `--pretty`, after Docker's layout, with times ("Started: 5 seconds ago") against now.
pub fn pretty(d: &ServiceDoc) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    pretty_at(d, now_ms)
}

/// Docker's "UpdateStatus:" block.
fn update_status_text(u: &UpdateStatus, now_ms: u64) -> String {
    let ago = |ms: u64| format!("{} ago", human_duration(now_ms.saturating_sub(ms)));
    let mut o = format!("UpdateStatus:\n State:\t\t{}\n", u.state.as_str());
    o += &format!(" Started:\t{}\n", ago(u.started_ms));
    if let Some(done) = u.completed_ms {
        o += &format!(" Completed:\t{}\n", ago(done));
    }
    o += &format!(" Message:\t{}\n", u.message);
    o
}

/// Docker's "UpdateConfig:" and "RollbackConfig:" blocks: delay and monitoring period only
/// when non-zero.
fn rollout_config_text(title: &str, order_title: &str, u: &UpdateConfig) -> String {
    let mut o = format!("{title}:\n Parallelism:\t{}\n", u.parallelism);
    if u.delay_ms > 0 {
        o += &format!(" Delay:\t\t{}\n", format_duration_ms(u.delay_ms));
    }
    o += &format!(" On failure:\t{}\n", failure_action(u.failure_action));
    if u.monitor_ms > 0 {
        o += &format!(" Monitoring Period: {}\n", format_duration_ms(u.monitor_ms));
    }
    o += &format!(" Max failure ratio: {}\n", u.max_failure_ratio);
    o += &format!(" {order_title}{}\n", order(u.order));
    o
}

pub fn pretty_at(d: &ServiceDoc, now_ms: u64) -> String {
    let s = &d.service.spec;
    let t = &s.task;
    let mut o = String::new();
    o += &format!("ID:\t\t{}\n", d.service.id);
    o += &format!("Name:\t\t{}\n", s.name);
    if !s.labels.is_empty() {
        o += "Labels:\n";
        for (k, v) in &s.labels {
            o += &format!(" {k}={v}\n");
        }
    }
    match s.mode {
        ServiceMode::Replicated { replicas } => {
            o += &format!("Service Mode:\tReplicated\n Replicas:\t{replicas}\n")
        }
        ServiceMode::Global => o += "Service Mode:\tGlobal\n",
    }
    if let Some(u) = &d.service.update_status {
        o += &update_status_text(u, now_ms);
    }
    if !t.placement.constraints.is_empty() || !t.placement.preferences.is_empty() {
        o += "Placement:\n";
        if !t.placement.constraints.is_empty() {
            o += &format!(" Constraints:\t[{}]\n", t.placement.constraints.join(" "));
        }
        if !t.placement.preferences.is_empty() {
            o += &format!(" Preferences:\t[{}]\n", t.placement.preferences.join(" "));
        }
    }
    o += &rollout_config_text("UpdateConfig", "Update order:      ", &s.update);
    o += &rollout_config_text("RollbackConfig", "Rollback order:    ", &s.rollback);
    o += &format!(
        "RestartPolicy:\n Condition:\t{}\n Delay:\t\t{}\n",
        condition(t.restart.condition),
        format_duration_ms(t.restart.delay_ms)
    );
    if let Some(max) = t.restart.max_attempts {
        o += &format!(" Max attempts:\t{max}\n");
    }
    if t.restart.window_ms > 0 {
        o += &format!(" Window:\t{}\n", format_duration_ms(t.restart.window_ms));
    }
    let spec_title = match t.runtime {
        RuntimeKind::Docker => "ContainerSpec",
        RuntimeKind::Process => "ProcessSpec",
    };
    o += &format!("{spec_title}:\n Image:\t\t{}\n", t.image);
    if !t.args.is_empty() {
        o += &format!(" Args:\t\t{}\n", t.args.join(" "));
    }
    if !t.env.is_empty() {
        o += &format!(" Env:\t\t{}\n", t.env.join(" "));
    }
    o += &format!(" User:\t\t{}\n", runs_as(t));
    if let Some(h) = &t.health {
        o += &format!(
            " Healthcheck:\t{} (interval {}, timeout {}, retries {})\n",
            h.cmd,
            format_duration_ms(h.interval_ms),
            format_duration_ms(h.timeout_ms),
            h.retries
        );
    }
    o += &format!(
        " StopGracePeriod: {}\n",
        format_duration_ms(t.stop_grace_period_ms)
    );
    for (title, refs) in [("Secrets", &t.secrets), ("Configs", &t.configs)] {
        if refs.is_empty() {
            continue;
        }
        o += &format!("{title}:\n");
        for r in refs {
            o += &format!(" Target:\t{}\n  Source:\t{}\n", r.target, r.name);
            if (r.uid, r.gid, r.mode) != (0, 0, FileRef::DEFAULT_MODE) {
                o += &format!(
                    "  UID:GID:\t{}:{}\n  Mode:\t\t{:04o}\n",
                    r.uid, r.gid, r.mode
                );
            }
        }
    }
    let (r, l) = (&t.resources.reservations, &t.resources.limits);
    if r.nano_cpus + r.memory_bytes + l.nano_cpus + l.memory_bytes > 0 {
        o += "Resources:\n";
        for (title, a) in [("Reservations", r), ("Limits", l)] {
            if a.nano_cpus + a.memory_bytes == 0 {
                continue;
            }
            o += &format!(" {title}:\n");
            if a.nano_cpus > 0 {
                o += &format!("  CPU:\t\t{}\n", cpus(a.nano_cpus));
            }
            if a.memory_bytes > 0 {
                o += &format!("  Memory:\t{}\n", size(a.memory_bytes));
            }
        }
    }
    if t.runtime == RuntimeKind::Process {
        o += &format!(" Networking:\t{PROCESS_NETWORKING}\n");
    }
    o += &super::networks::networks_pretty(d);
    o += &format!("Endpoint Mode:\t{}\n", s.endpoint_mode.as_str());
    if !s.ports.is_empty() {
        o += "Ports:\n";
        for p in &s.ports {
            o += &format!(
                " PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}\n",
                p.published,
                p.protocol.as_str(),
                p.target,
                p.mode.as_str()
            );
            if p.proxy_protocol {
                o += "  ProxyProtocol = v2\n";
            }
            if p.affinity {
                o += "  Affinity = client-ip\n";
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::validate::tests::spec;
    use swarm_actors::model::{Service, ServiceId, UpdateState};

    fn doc() -> ServiceDoc {
        let mut s = spec("web");
        s.task.resources.reservations.nano_cpus = 500_000_000;
        s.task.resources.reservations.memory_bytes = 64 << 20;
        s.task.placement.constraints = vec!["node.labels.env==prod".into()];
        ServiceDoc {
            version: 9,
            created_ms: 1_700_000_000_123,
            updated_ms: 1_700_000_000_123,
            service: Service {
                vips: Vec::new(),
                id: ServiceId(42),
                spec: s,
                previous_spec: None,
                previous_spec_version: None,
                update_status: None,
                spec_version: 1,
            },
            networks: Vec::new(),
        }
    }

    #[test]
    fn json_has_dockers_keys() {
        let j = json_doc(&doc());
        assert_eq!(j["ID"], ServiceId(42).to_string());
        assert_eq!(j["Version"]["Index"], 9);
        assert_eq!(j["CreatedAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(j["Spec"]["Name"], "web");
        assert_eq!(j["Spec"]["Mode"]["Replicated"]["Replicas"], 1);
        let task = &j["Spec"]["TaskTemplate"];
        assert_eq!(task["ContainerSpec"]["Image"], "sleep");
        assert_eq!(task["ContainerSpec"]["StopGracePeriod"], 10_000_000_000u64);
        assert_eq!(task["RestartPolicy"]["Condition"], "any");
        assert_eq!(task["Resources"]["Reservations"]["NanoCPUs"], 500_000_000);
        assert_eq!(task["Placement"]["Constraints"][0], "node.labels.env==prod");
        assert!(j.get("PreviousSpec").is_none());
    }

    #[test]
    fn pretty_text_reads_like_dockers() {
        let p = pretty(&doc());
        assert!(p.contains("Name:\t\tweb\n"), "{p}");
        assert!(
            p.contains("Service Mode:\tReplicated\n Replicas:\t1\n"),
            "{p}"
        );
        assert!(
            p.contains(" Constraints:\t[node.labels.env==prod]\n"),
            "{p}"
        );
        assert!(p.contains("  CPU:\t\t0.5\n  Memory:\t64MiB\n"), "{p}");
        assert!(
            p.contains("ProcessSpec:\n Image:\t\tsleep\n Args:\t\t1000\n"),
            "{p}"
        );
    }

    #[test]
    fn inspect_shows_secrets_and_configs_in_dockers_shape() {
        use swarm_actors::model::SecretId;
        let mut d = doc();
        let r = |id, name: &str, target: &str, mode| FileRef {
            id: SecretId(id),
            name: name.into(),
            target: target.into(),
            uid: 0,
            gid: 0,
            mode,
        };
        d.service.spec.task.secrets = vec![r(5, "pw", "/run/secrets/db_password", 0o444)];
        d.service.spec.task.configs = vec![r(6, "site", "/etc/site.conf", 0o640)];
        let j = json_doc(&d);
        let c = &j["Spec"]["TaskTemplate"]["ContainerSpec"];
        assert_eq!(
            c["Secrets"],
            json!([{
                "File": { "Name": "/run/secrets/db_password", "UID": "0", "GID": "0", "Mode": 292 },
                "SecretID": SecretId(5).to_string(),
                "SecretName": "pw",
            }])
        );
        assert_eq!(c["Configs"][0]["ConfigName"], "site");
        assert_eq!(c["Configs"][0]["ConfigID"], SecretId(6).to_string());
        assert_eq!(c["Configs"][0]["File"]["Mode"], 0o640);
        let p = pretty(&d);
        assert!(
            p.contains("Secrets:\n Target:\t/run/secrets/db_password\n  Source:\tpw\nConfigs:\n"),
            "{p}"
        );
        assert!(p.contains("  Mode:\t\t0640\n"), "{p}");
        assert!(
            json_doc(&doc())["Spec"]["TaskTemplate"]["ContainerSpec"]
                .get("Secrets")
                .is_none()
        );
    }

    #[test]
    fn inspect_says_who_a_task_runs_as() {
        let mut d = doc();
        let p = pretty(&d);
        assert!(
            p.contains(
                " User:\t\t(not set: the node's own user, root when the node runs as root)\n"
            ),
            "{p}"
        );
        assert!(
            json_doc(&d)["Spec"]["TaskTemplate"]["ContainerSpec"]
                .get("User")
                .is_none()
        );
        d.service.spec.task.user = Some("nobody:nogroup".into());
        assert!(pretty(&d).contains(" User:\t\tnobody:nogroup\n"));
        assert_eq!(
            json_doc(&d)["Spec"]["TaskTemplate"]["ContainerSpec"]["User"],
            "nobody:nogroup"
        );
        d.service.spec.task.runtime = RuntimeKind::Docker;
        d.service.spec.task.user = None;
        assert!(pretty(&d).contains(" User:\t\t(not set: the image's user)\n"));
    }

    /// The service after an update to `sleep 2000` that failed and rolled back.
    fn rolled_back() -> ServiceDoc {
        let mut d = doc();
        let mut next = d.service.spec.clone();
        next.task.args = vec!["2000".into()];
        next.task.container_labels = [("tier".to_string(), "web".to_string())].into();
        next.task.force_update = 2;
        next.update.parallelism = 2;
        next.update.delay_ms = 90_000;
        next.update.failure_action = FailureAction::Rollback;
        next.update.monitor_ms = 1_500;
        next.update.max_failure_ratio = 0.2;
        next.update.order = UpdateOrder::StartFirst;
        next.rollback.monitor_ms = 0;
        d.service.previous_spec = Some(d.service.spec.clone());
        d.service.spec = next;
        d.service.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            started_ms: 1_700_000_000_000,
            completed_ms: Some(1_700_000_010_000),
            message: "rollback completed".into(),
        });
        d
    }

    #[test]
    fn json_shows_the_update_status_and_configs_with_dockers_keys() {
        let j = json_doc(&rolled_back());
        assert_eq!(
            j["UpdateStatus"],
            json!({
                "State": "rollback_completed",
                "StartedAt": "2023-11-14T22:13:20.000Z",
                "CompletedAt": "2023-11-14T22:13:30.000Z",
                "Message": "rollback completed",
            })
        );
        assert_eq!(
            j["Spec"]["UpdateConfig"],
            json!({
                "Parallelism": 2,
                "Delay": 90_000_000_000u64,
                "FailureAction": "rollback",
                "Monitor": 1_500_000_000u64,
                "MaxFailureRatio": 0.2,
                "Order": "start-first",
            })
        );
        assert_eq!(j["Spec"]["RollbackConfig"]["Order"], "stop-first");
        assert_eq!(j["Spec"]["RollbackConfig"]["FailureAction"], "pause");
        assert_eq!(j["Spec"]["RollbackConfig"]["Monitor"], 0);
        let text = serde_json::to_string(&j["Spec"]["RollbackConfig"]).unwrap();
        assert!(text.contains("\"MaxFailureRatio\":0,"), "{text}");
        let task = &j["Spec"]["TaskTemplate"];
        assert_eq!(task["ContainerSpec"]["Labels"], json!({ "tier": "web" }));
        assert_eq!(task["ForceUpdate"], 2);
        let prev = &j["PreviousSpec"]["TaskTemplate"];
        assert_eq!(prev["ContainerSpec"]["Args"], json!(["1000"]));
        assert!(prev["ContainerSpec"].get("Labels").is_none());
        assert_eq!(prev["ForceUpdate"], 0);
        // A status without a completion time has no CompletedAt; none at all, no UpdateStatus.
        let mut d = rolled_back();
        if let Some(u) = d.service.update_status.as_mut() {
            u.state = UpdateState::Updating;
            u.completed_ms = None;
        }
        assert!(json_doc(&d)["UpdateStatus"].get("CompletedAt").is_none());
        assert!(json_doc(&doc()).get("UpdateStatus").is_none());
    }

    #[test]
    fn pretty_shows_update_status_and_config_blocks_as_docker_does() {
        let d = rolled_back();
        let p = pretty_at(&d, 1_700_000_015_000);
        assert!(
            p.contains(
                "Replicas:\t1\nUpdateStatus:\n State:\t\trollback_completed\n \
                 Started:\t15 seconds ago\n Completed:\t5 seconds ago\n \
                 Message:\trollback completed\n"
            ),
            "{p}"
        );
        assert!(
            p.contains(
                "UpdateConfig:\n Parallelism:\t2\n Delay:\t\t1m30s\n On failure:\trollback\n \
                 Monitoring Period: 1.5s\n Max failure ratio: 0.2\n \
                 Update order:      start-first\n"
            ),
            "{p}"
        );
        assert!(
            p.contains(
                "RollbackConfig:\n Parallelism:\t1\n On failure:\tpause\n \
                 Max failure ratio: 0\n Rollback order:    stop-first\n"
            ),
            "{p}"
        );
        let p = pretty_at(&doc(), 1_700_000_015_000);
        assert!(!p.contains("UpdateStatus:"), "{p}");
        assert!(p.contains(" Monitoring Period: 5s\n"), "{p}");
    }

    #[test]
    fn ports_have_dockers_endpoint_shape_and_pretty_block() {
        use swarm_actors::model::{PortProtocol, PublishMode};
        let mut d = doc();
        d.service.spec.ports = vec![
            PortConfig::tcp(8080, 80),
            PortConfig {
                protocol: PortProtocol::Udp,
                mode: PublishMode::Host,
                proxy_protocol: true,
                ..PortConfig::tcp(5353, 53)
            },
        ];
        let j = json_doc(&d);
        for ports in [
            &j["Endpoint"]["Ports"],
            &j["Endpoint"]["Spec"]["Ports"],
            &j["Spec"]["EndpointSpec"]["Ports"],
        ] {
            assert_eq!(
                ports[0],
                json!({"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                       "PublishMode": "ingress"})
            );
            assert_eq!(ports[1]["Protocol"], "udp");
            assert_eq!(ports[1]["PublishMode"], "host");
            assert_eq!(ports[1]["ProxyProtocol"], "v2");
            assert!(ports[1].get("Affinity").is_none());
        }
        assert_eq!(j["Endpoint"]["Spec"]["Mode"], "vip");
        // The test spec runs a process: how its tasks are networked is said.
        let net = j["Spec"]["TaskTemplate"]["Networking"].as_str().unwrap();
        assert!(net.contains("SWARM_PORT_<target>"), "{net}");
        let p = pretty(&d);
        assert!(
            p.contains(
                "Ports:\n PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 80\n  PublishMode = ingress\n"
            ),
            "{p}"
        );
        assert!(p.contains(" Networking:\town network namespace"), "{p}");
    }
}
