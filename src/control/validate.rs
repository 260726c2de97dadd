//! Checks a service spec before `service create` or `service update` stores it. The node runs
//! these checks (the client's own parsing is a convenience): whatever a client sends, a bad spec
//! is refused with a clear reason and nothing is written.

use swarm_actors::model::{
    FILE_REFS_MAX, FileKind, FileRef, LABELS_MAX, RuntimeKind, ServiceMode, ServiceSpec, TaskSpec,
    UpdateConfig, validate_label, validate_secret_name,
};
use swarm_actors::orchestrator::restart::RESTART_HISTORY_KEPT_MAX;
use swarm_actors::runtime::{LABEL_PREFIX, validate_user};
use swarm_actors::scheduler::constraint::validate_placement;
use swarm_actors::store::{COMMAND_BYTES_MAX, ObjectBody};

/// Most replicas of one service: the leader writes every task of a service in one pass. A node
/// takes at most `wire::ASSIGNMENTS_MAX` live tasks and what one session answer can carry (the
/// scheduler leaves the rest pending, "node full").
pub const REPLICAS_MAX: u64 = 10_000;

/// Longest service name, as Docker allows (it becomes part of task and container names, and
/// travels with every assignment: the session answer's size bound counts on it).
pub const SERVICE_NAME_BYTES_MAX: usize = swarm_actors::wire::answer::SERVICE_NAME_BYTES_MAX;

/// Most bytes of an encoded spec. Every task carries its spec, and the leader writes many
/// tasks per store command and sends every live task of a node in one session answer, so a
/// spec stays small; a stored service holds two specs (current and previous) well inside a
/// store command. The task spec is part of the service spec checked here, so it is smaller
/// than the bound the session answer's arithmetic counts on (`wire::answer`).
pub const SPEC_BYTES_MAX: usize = swarm_actors::wire::answer::TASK_SPEC_BYTES_MAX;

/// Most `--env` entries, `--constraint`s plus `--placement-pref`s, and arguments.
pub const ENV_MAX: usize = 256;
pub const PLACEMENT_MAX: usize = 64;
pub const ARGS_MAX: usize = 1_024;

// A path from this file, so the fuzz crate, which includes this file by path, finds it too.
#[path = "validate/container.rs"]
mod container;

const _: () = assert!(2 * SPEC_BYTES_MAX < COMMAND_BYTES_MAX);

/// Whether `name` matches Docker's name pattern `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (services,
/// networks); its length is bounded by each caller.
pub fn docker_name_pattern(name: &str) -> bool {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    ok_first && ok_rest
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 63 characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if !docker_name_pattern(name) {
        return Err(format!(
            "invalid service name {name:?}: names match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        ));
    }
    if name.len() > SERVICE_NAME_BYTES_MAX {
        return Err(format!(
            "invalid service name {name:?}: at most {SERVICE_NAME_BYTES_MAX} characters"
        ));
    }
    Ok(())
}

/// `KEY=VALUE` with a non-empty key without `=`; no NUL anywhere (it ends C strings).
pub fn validate_env(entry: &str) -> Result<(), String> {
    match entry.split_once('=') {
        Some((k, _))
            if !k.is_empty() && !k.contains(char::is_whitespace) && !entry.contains('\0') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "invalid environment variable {entry:?}: expected KEY=VALUE"
        )),
    }
}

/// The environment key of an entry (`K` of `K=V`).
pub fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `--update-max-failure-ratio` (or `--rollback-…`, as `flag` names it): a fraction of the
/// tasks, 0 to 1, as Docker takes it.
pub fn validate_failure_ratio(flag: &str, ratio: f32) -> Result<(), String> {
    if ratio.is_finite() && (0.0..=1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(format!(
            "invalid argument \"{ratio}\" for --{flag}: a ratio between 0 and 1"
        ))
    }
}

fn validate_rollout(prefix: &str, config: &UpdateConfig) -> Result<(), String> {
    validate_failure_ratio(
        &format!("{prefix}-max-failure-ratio"),
        config.max_failure_ratio,
    )
}

/// A container label: a label's key and size rules, outside the runtime's own namespace (the
/// runtime finds its containers by those labels, so a user's may not imitate them).
pub fn validate_container_label(key: &str, value: &str) -> Result<(), String> {
    validate_label(key, value).map_err(|e| format!("invalid container label: {e}"))?;
    if key.starts_with(LABEL_PREFIX) {
        return Err(format!(
            "invalid container label {key:?}: keys starting with {LABEL_PREFIX:?} are the runtime's own"
        ));
    }
    Ok(())
}

/// Longest target path of a secret or config file (resolved, absolute). Every task carries its
/// refs in its spec, which the spec's encoded bound keeps small as a whole.
pub const TARGET_BYTES_MAX: usize = 256;

/// Most permission bits a file a task sees may have: `rwx` for owner, group and others; no
/// setuid, setgid or sticky bit on a file the node writes for a task.
pub const FILE_MODE_MAX: u32 = 0o777;

/// A resolved target: absolute, no `.`, `..` or empty components (a target stays where it
/// says, whatever the runtime joins it with), not a directory, no NUL.
pub fn validate_target(kind: FileKind, target: &str) -> Result<(), String> {
    let what = kind.as_str();
    let bad = |why: &str| Err(format!("invalid {what} target {target:?}: {why}"));
    if target.len() > TARGET_BYTES_MAX {
        return bad(&format!("at most {TARGET_BYTES_MAX} bytes"));
    }
    let Some(rest) = target.strip_prefix('/') else {
        return bad("not an absolute path");
    };
    if target.contains('\0') {
        return bad("contains NUL");
    }
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("a file path without empty, '.' or '..' components");
    }
    Ok(())
}

/// The secret and config refs of a task spec: at most [`FILE_REFS_MAX`] in all, valid names,
/// absolute clean targets, modes within [`FILE_MODE_MAX`], and no two files at one target
/// (a secret's and a config's included). IDs are the node's to resolve, not checked here.
pub fn validate_file_refs(task: &TaskSpec) -> Result<(), String> {
    let count = task.secrets.len() + task.configs.len();
    if count > FILE_REFS_MAX {
        return Err(format!(
            "a service may use at most {FILE_REFS_MAX} secrets and configs, this one {count}"
        ));
    }
    let mut targets = std::collections::BTreeMap::new();
    let all = task
        .secrets
        .iter()
        .map(|r| (FileKind::Secret, r))
        .chain(task.configs.iter().map(|r| (FileKind::Config, r)));
    for (kind, r) in all {
        let FileRef {
            name, target, mode, ..
        } = r;
        validate_secret_name(kind, name)?;
        validate_target(kind, target)?;
        if *mode > FILE_MODE_MAX {
            return Err(format!(
                "invalid mode {mode:#o} for {} {name}: at most {FILE_MODE_MAX:#o} (no setuid, setgid or sticky bit)",
                kind.as_str()
            ));
        }
        if let Some((k, other)) = targets.insert(target.as_str(), (kind, name.as_str())) {
            return Err(format!(
                "duplicate target {target}: {} {other} and {} {name} cannot both be there",
                k.as_str(),
                kind.as_str()
            ));
        }
    }
    Ok(())
}

/// Every check `service create` and `service update` make, in the order a user fixes them.
pub fn validate_spec(spec: &ServiceSpec) -> Result<(), String> {
    validate_name(&spec.name)?;
    if let ServiceMode::Replicated { replicas } = spec.mode
        && replicas > REPLICAS_MAX
    {
        return Err(format!(
            "invalid replicas {replicas}: at most {REPLICAS_MAX} per service"
        ));
    }
    let task = &spec.task;
    let image = task.image.as_str();
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid image {image:?}: give an image reference (docker) or a program (process)"
        ));
    }
    if task.runtime == RuntimeKind::Process && image.contains("://") {
        return Err(format!(
            "invalid program {image:?}: the process runtime runs a program found on PATH or by path"
        ));
    }
    if task.args.len() > ARGS_MAX || task.args.iter().any(|a| a.contains('\0')) {
        return Err(format!(
            "invalid command: at most {ARGS_MAX} arguments, without NUL characters"
        ));
    }
    if task.env.len() > ENV_MAX {
        return Err(format!("at most {ENV_MAX} environment variables"));
    }
    for e in &task.env {
        validate_env(e)?;
    }
    if spec.labels.len() > LABELS_MAX {
        return Err(format!("a service may carry at most {LABELS_MAX} labels"));
    }
    for (k, v) in &spec.labels {
        validate_label(k, v).map_err(|e| e.to_string())?;
    }
    if task.container_labels.len() > LABELS_MAX {
        return Err(format!(
            "a service may carry at most {LABELS_MAX} container labels"
        ));
    }
    for (k, v) in &task.container_labels {
        validate_container_label(k, v)?;
    }
    let placement = &task.placement;
    if placement.constraints.len() + placement.preferences.len() > PLACEMENT_MAX {
        return Err(format!(
            "at most {PLACEMENT_MAX} constraints and placement preferences"
        ));
    }
    validate_placement(placement).map_err(|e| e.to_string())?;
    if let Some(max) = task.restart.max_attempts
        && max > RESTART_HISTORY_KEPT_MAX as u64
    {
        return Err(format!(
            "invalid --restart-max-attempts {max}: at most {RESTART_HISTORY_KEPT_MAX}"
        ));
    }
    if let Some(user) = &task.user {
        validate_user(user).map_err(|e| e.to_string())?;
    }
    if let Some(h) = &task.health {
        if h.cmd.trim().is_empty() {
            return Err("invalid --health-cmd: empty".into());
        }
        if h.interval_ms == 0 || h.timeout_ms == 0 {
            return Err("--health-interval and --health-timeout must be at least 1ms".into());
        }
    }
    validate_file_refs(task)?;
    validate_ports(&spec.ports)?;
    validate_networks(spec)?;
    container::validate_container(spec)?;
    validate_rollout("update", &spec.update)?;
    validate_rollout("rollback", &spec.rollback)?;
    let encoded = bincode::serde::encode_to_vec(
        ObjectBody::Service(swarm_actors::model::Service {
            vips: Vec::new(),
            id: swarm_actors::model::ServiceId::UNKNOWN,
            spec: spec.clone(),
            previous_spec: None,
            previous_spec_version: None,
            update_status: None,
            spec_version: 0,
        }),
        bincode::config::standard(),
    )
    .map_err(|e| format!("the spec cannot be encoded: {e}"))?;
    if encoded.len() > SPEC_BYTES_MAX {
        return Err(format!(
            "the service spec is too large: {} bytes encoded, at most {SPEC_BYTES_MAX} (fewer or shorter arguments, variables or labels)",
            encoded.len()
        ));
    }
    Ok(())
}

/// A service's networks and endpoint mode: at most [`NETWORKS_PER_TASK_MAX`] networks with
/// ingress, each once, at most [`ALIASES_PER_NETWORK_MAX`] aliases on each, every alias a
/// name DNS can carry; `dnsrr` with no ingress-mode port (as Docker refuses: the routing mesh
/// balances over a VIP).
pub fn validate_networks(spec: &ServiceSpec) -> Result<(), String> {
    use swarm_actors::model::{
        ALIASES_PER_NETWORK_MAX, EndpointMode, NETWORKS_PER_TASK_MAX, PublishMode,
    };
    let nets = &spec.task.networks;
    if nets.len() >= NETWORKS_PER_TASK_MAX {
        return Err(format!(
            "too many networks ({}): at most {} per service besides ingress",
            nets.len(),
            NETWORKS_PER_TASK_MAX - 1
        ));
    }
    for (i, r) in nets.iter().enumerate() {
        if nets[..i].iter().any(|o| o.network == r.network) {
            return Err(format!(
                "network {} is given twice: a service attaches to a network once",
                r.network
            ));
        }
        if r.aliases.len() > ALIASES_PER_NETWORK_MAX {
            return Err(format!(
                "at most {ALIASES_PER_NETWORK_MAX} aliases on one network"
            ));
        }
        for a in &r.aliases {
            validate_alias(a)?;
        }
    }
    if spec.endpoint_mode == EndpointMode::Dnsrr
        && spec.ports.iter().any(|p| p.mode == PublishMode::Ingress)
    {
        // Docker's words.
        return Err(
            "port published with ingress mode can't be used with dnsrr mode: publish with mode=host, or use --endpoint-mode vip".into(),
        );
    }
    Ok(())
}

/// A network alias: DNS labels of letters, digits and `-` (`_` allowed, as Docker's names
/// do), joined by dots, at most 63 characters in all.
pub fn validate_alias(alias: &str) -> Result<(), String> {
    let ok = !alias.is_empty()
        && alias.len() <= 63
        && alias.split('.').all(|l| {
            !l.is_empty()
                && l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        });
    if !ok {
        return Err(format!(
            "invalid network alias {alias:?}: DNS labels of letters, digits, - and _, joined by dots, at most 63 characters"
        ));
    }
    Ok(())
}

/// The checks every service's ports pass, on the client and on the node. A published port 0
/// (the node picks one) passes here; the store never holds one.
pub fn validate_ports(ports: &[swarm_actors::model::PortConfig]) -> Result<(), String> {
    use swarm_actors::model::PORTS_PER_SERVICE_MAX;
    if ports.len() > PORTS_PER_SERVICE_MAX {
        return Err(format!(
            "too many published ports ({}): at most {PORTS_PER_SERVICE_MAX} per service",
            ports.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in ports {
        if p.target == 0 {
            // Docker's words for a port without a target.
            return Err("missing mandatory field \"target\" in a published port".into());
        }
        if p.published != 0 && !seen.insert((p.published, p.protocol)) {
            return Err(format!(
                "duplicate published port {}/{}: a published port and protocol appear once per service",
                p.published,
                p.protocol.as_str()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use swarm_actors::model::{TaskSpec, UpdateConfig};

    pub(crate) fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            endpoint_mode: Default::default(),
            name: name.into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 1 },
            task: TaskSpec {
                runtime: RuntimeKind::Process,
                image: "sleep".into(),
                args: vec!["1000".into()],
                stop_grace_period_ms: 10_000,
                ..TaskSpec::default()
            },
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            ports: vec![],
            depends_on: Vec::new(),
        }
    }

    #[test]
    fn names_follow_docker() {
        for ok in ["web", "w", "Web_1.a-b", &"a".repeat(63)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-web", ".web", "we b", "web/1", "wéb", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_entries_need_a_key() {
        assert!(validate_env("A=1").is_ok());
        assert!(validate_env("A=").is_ok());
        assert!(validate_env("A=b=c").is_ok());
        for bad in ["A", "=1", "A B=1", "A=\0"] {
            assert!(validate_env(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(env_key("A=b=c"), "A");
    }

    #[test]
    fn refuses_bad_specs_with_a_reason() {
        assert_eq!(validate_spec(&spec("web")), Ok(()));
        let check = |f: &dyn Fn(&mut ServiceSpec), want: &str| {
            let mut s = spec("web");
            f(&mut s);
            let err = validate_spec(&s).expect_err(want);
            assert!(err.contains(want), "{err:?} does not say {want:?}");
        };
        check(&|s| s.name = "-x".into(), "invalid service name");
        check(
            &|s| {
                s.mode = ServiceMode::Replicated {
                    replicas: REPLICAS_MAX + 1,
                }
            },
            "invalid replicas",
        );
        check(&|s| s.task.image = String::new(), "invalid image");
        check(&|s| s.task.image = "my prog".into(), "invalid image");
        check(&|s| s.task.env = vec!["NOKEY".into()], "KEY=VALUE");
        check(
            &|s| s.task.placement.constraints = vec!["node.labels.env=prod".into()],
            "",
        );
        check(
            &|s| s.task.placement.preferences = vec!["pack=node.labels.zone".into()],
            "",
        );
        check(
            &|s| s.task.restart.max_attempts = Some(RESTART_HISTORY_KEPT_MAX as u64 + 1),
            "--restart-max-attempts",
        );
        check(
            &|s| s.task.args = vec!["x".repeat(SPEC_BYTES_MAX)],
            "too large",
        );
        check(
            &|s| {
                s.labels.insert(String::new(), "v".into());
            },
            "",
        );
        check(&|s| s.task.user = Some("we b".into()), "invalid --user");
        check(
            &|s| s.task.user = Some("4294967295".into()),
            "invalid --user",
        );
        check(&|s| s.task.user = Some(String::new()), "invalid --user");
        check(
            &|s| s.update.max_failure_ratio = 1.5,
            "for --update-max-failure-ratio",
        );
        check(
            &|s| s.update.max_failure_ratio = -0.1,
            "for --update-max-failure-ratio",
        );
        check(
            &|s| s.rollback.max_failure_ratio = f32::NAN,
            "for --rollback-max-failure-ratio",
        );
        check(
            &|s| s.update.max_failure_ratio = f32::INFINITY,
            "for --update-max-failure-ratio",
        );
        check(
            &|s| {
                s.task
                    .container_labels
                    .insert("com.swarm-node.task.id".into(), "x".into());
            },
            "the runtime's own",
        );
        check(
            &|s| {
                s.task.container_labels.insert("a b".into(), "x".into());
            },
            "invalid container label",
        );
        check(
            &|s| {
                s.task.container_labels = (0..=LABELS_MAX)
                    .map(|i| (format!("k{i}"), String::new()))
                    .collect();
            },
            "container labels",
        );
    }

    #[test]
    fn a_spec_at_the_limit_carries_a_task_spec_within_the_answer_bound() {
        // The session answer counts every task's spec at most TASK_SPEC_BYTES_MAX encoded.
        let mut s = spec("w".repeat(SERVICE_NAME_BYTES_MAX).as_str());
        let mut n = 0;
        while validate_spec(&s).is_ok() {
            s.task.env.push(format!("V{n}={}", "v".repeat(100)));
            n += 1;
        }
        s.task.env.pop();
        assert_eq!(validate_spec(&s), Ok(()));
        let task = bincode::serde::encode_to_vec(&s.task, bincode::config::standard()).unwrap();
        assert!(task.len() <= swarm_actors::wire::answer::TASK_SPEC_BYTES_MAX);
        assert!(task.len() > SPEC_BYTES_MAX - 256, "{}", task.len());
    }

    #[test]
    fn targets_stay_where_they_say() {
        let k = FileKind::Secret;
        for ok in ["/run/secrets/pw", "/etc/app.conf", "/a", "/a/b.c/..d"] {
            assert_eq!(validate_target(k, ok), Ok(()), "{ok}");
        }
        let long = format!("/{}", "a".repeat(TARGET_BYTES_MAX));
        for bad in [
            "",
            "pw",
            "/",
            "/run/secrets/",
            "/run//pw",
            "/run/./pw",
            "/run/../etc/passwd",
            "/a\0b",
            long.as_str(),
        ] {
            assert!(validate_target(k, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn accepts_the_largest_allowed_values() {
        let mut s = spec("web");
        s.mode = ServiceMode::Replicated {
            replicas: REPLICAS_MAX,
        };
        s.task.restart.max_attempts = Some(RESTART_HISTORY_KEPT_MAX as u64);
        s.task.placement.constraints = vec!["node.labels.env==prod".into()];
        s.task.placement.preferences = vec!["spread=node.labels.zone".into()];
        s.task.user = Some(format!("{}:{}", "u".repeat(32), "g".repeat(32)));
        s.update.max_failure_ratio = 1.0;
        s.update.parallelism = u64::MAX;
        s.rollback.max_failure_ratio = 0.0;
        s.task
            .container_labels
            .insert("com.example.tier".into(), "front".into());
        assert_eq!(validate_spec(&s), Ok(()));
    }
    #[test]
    fn networks_aliases_and_dnsrr_are_checked() {
        use swarm_actors::model::{
            ALIASES_PER_NETWORK_MAX, EndpointMode, NETWORKS_PER_TASK_MAX, NetworkId, NetworkRef,
            PortConfig, PortProtocol, PublishMode,
        };
        let r = |id: u128, aliases: &[&str]| NetworkRef {
            network: NetworkId(id),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        };
        let with = |nets: Vec<NetworkRef>| {
            let mut s = spec("web");
            s.task.networks = nets;
            validate_spec(&s)
        };
        assert_eq!(with(vec![r(1, &["www", "web.front"]), r(2, &[])]), Ok(()));
        assert!(
            with(vec![r(1, &[]), r(1, &[])])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            with(vec![r(1, &["bad alias"])])
                .unwrap_err()
                .contains("alias")
        );
        assert!(with(vec![r(1, &["-x"])]).unwrap_err().contains("alias"));
        let many = vec!["a"; ALIASES_PER_NETWORK_MAX + 1];
        assert!(with(vec![r(1, &many)]).unwrap_err().contains("aliases"));
        let all: Vec<_> = (1..=NETWORKS_PER_TASK_MAX as u128 - 1)
            .map(|i| r(i, &[]))
            .collect();
        assert_eq!(with(all.clone()), Ok(()));
        let mut too_many = all;
        too_many.push(r(99, &[]));
        assert!(with(too_many).unwrap_err().contains("too many networks"));
        // dnsrr refuses an ingress-mode port, not a host-mode one.
        let mut s = spec("web");
        s.endpoint_mode = EndpointMode::Dnsrr;
        let mut port = PortConfig {
            protocol: PortProtocol::Tcp,
            target: 80,
            published: 8080,
            mode: PublishMode::Ingress,
            proxy_protocol: false,
            affinity: false,
        };
        s.ports = vec![port];
        assert!(validate_spec(&s).unwrap_err().contains("dnsrr"));
        port.mode = PublishMode::Host;
        s.ports = vec![port];
        assert_eq!(validate_spec(&s), Ok(()));
    }
}
