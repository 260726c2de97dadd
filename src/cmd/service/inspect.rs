//! `service inspect`: Docker's JSON shape (an array of services), or `--pretty` text.

use serde_json::{Value, json};
use swarm_actors::model::{
    FailureAction, RestartCondition, RuntimeKind, ServiceMode, ServiceSpec, UpdateConfig,
    UpdateOrder,
};

use crate::cmd::units::format_duration_ms;
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
        "MaxFailureRatio": u.max_failure_ratio,
        "Order": order(u.order),
    })
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
    // Docker's field, present when set; `--pretty` also says who runs the task when unset.
    if let Some(user) = &t.user {
        container["User"] = json!(user);
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
    json!({
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
            "Placement": { "Constraints": t.placement.constraints, "Preferences": prefs },
            "Runtime": t.runtime.as_str(),
        },
        "Mode": mode,
        "UpdateConfig": update_json(&s.update),
        "RollbackConfig": update_json(&s.rollback),
        "EndpointSpec": {
            "Mode": "vip",
            "Ports": s.ports.iter().map(|p| json!({
                "Protocol": "tcp", "TargetPort": p.target, "PublishedPort": p.published,
            })).collect::<Vec<_>>(),
        },
    })
}

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
        "Endpoint": { "Spec": { "Mode": "vip" } },
    });
    if let Some(prev) = &d.service.previous_spec {
        doc["PreviousSpec"] = spec_json(prev);
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

/// `--pretty`, after Docker's layout.
pub fn pretty(d: &ServiceDoc) -> String {
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
    if !t.placement.constraints.is_empty() || !t.placement.preferences.is_empty() {
        o += "Placement:\n";
        if !t.placement.constraints.is_empty() {
            o += &format!(" Constraints:\t[{}]\n", t.placement.constraints.join(" "));
        }
        if !t.placement.preferences.is_empty() {
            o += &format!(" Preferences:\t[{}]\n", t.placement.preferences.join(" "));
        }
    }
    for (title, u) in [("UpdateConfig", &s.update), ("RollbackConfig", &s.rollback)] {
        o += &format!("{title}:\n");
        o += &format!(" Parallelism:\t{}\n", u.parallelism);
        if u.delay_ms > 0 {
            o += &format!(" Delay:\t\t{}\n", format_duration_ms(u.delay_ms));
        }
        o += &format!(" On failure:\t{}\n", failure_action(u.failure_action));
        o += &format!(" Monitoring Period: {}\n", format_duration_ms(u.monitor_ms));
        o += &format!(" Max failure ratio: {}\n", u.max_failure_ratio);
        o += &format!(" Update order:      {}\n", order(u.order));
    }
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
    o += "Endpoint Mode:\tvip\n";
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::validate::tests::spec;
    use swarm_actors::model::{Service, ServiceId};

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
                id: ServiceId(42),
                spec: s,
                previous_spec: None,
                previous_spec_version: None,
                update_status: None,
                spec_version: 1,
            },
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
}
