//! The checks of what a task's container is given besides its command: entrypoint, working
//! directory, host name and mounts; and of the service's `depends_on` and replicas per node.
//! Part of [`super::validate_spec`].

use std::collections::BTreeSet;

use swarm_actors::model::{
    DEPENDENCIES_MAX, MOUNTS_MAX, Mount, MountKind, ServiceMode, ServiceSpec, TaskSpec,
};

use super::{ARGS_MAX, REPLICAS_MAX, validate_name};

/// Longest path a mount, bind source or working directory may name (Linux's `PATH_MAX`).
pub const PATH_BYTES_MAX: usize = 4_096;

/// Longest host name (RFC 1123), and longest label of one.
pub const HOSTNAME_BYTES_MAX: usize = 253;
const HOSTNAME_LABEL_BYTES_MAX: usize = 63;

/// Most labels on one mount's volume.
pub const VOLUME_LABELS_MAX: usize = 64;

pub fn validate_container(spec: &ServiceSpec) -> Result<(), String> {
    let task = &spec.task;
    validate_entrypoint(task)?;
    if let Some(dir) = &task.workdir {
        validate_path("--workdir", dir)?;
    }
    if let Some(h) = &task.hostname {
        validate_hostname(h)?;
    }
    validate_mounts(&task.mounts)?;
    validate_max_replicas(spec)?;
    validate_depends_on(spec)
}

fn validate_entrypoint(task: &TaskSpec) -> Result<(), String> {
    if task.entrypoint.len() > ARGS_MAX || task.entrypoint.iter().any(|a| a.contains('\0')) {
        return Err(format!(
            "invalid --entrypoint: at most {ARGS_MAX} words, without NUL characters"
        ));
    }
    if task.entrypoint.first().is_some_and(|w| w.is_empty()) {
        return Err("invalid --entrypoint: its first word, the program, is empty".into());
    }
    Ok(())
}

/// An absolute path without NUL, at most [`PATH_BYTES_MAX`] bytes.
fn validate_path(what: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains('\0') || path.len() > PATH_BYTES_MAX {
        return Err(format!(
            "invalid {what} {path:?}: an absolute path (starting with /), at most {PATH_BYTES_MAX} bytes"
        ));
    }
    Ok(())
}

/// RFC 1123: labels of letters, digits and `-`, not starting or ending with `-`, joined by
/// dots.
pub fn validate_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= HOSTNAME_BYTES_MAX
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= HOSTNAME_LABEL_BYTES_MAX
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(format!(
            "invalid --hostname {name:?}: labels of letters, digits and - (not first or last), joined by dots, at most {HOSTNAME_BYTES_MAX} characters"
        ));
    }
    Ok(())
}

/// Docker's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn validate_volume_name(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "invalid volume name {name:?}: names match [a-zA-Z0-9][a-zA-Z0-9_.-]+"
        ));
    }
    Ok(())
}

pub fn validate_mounts(mounts: &[Mount]) -> Result<(), String> {
    if mounts.len() > MOUNTS_MAX {
        return Err(format!(
            "too many mounts ({}): at most {MOUNTS_MAX}",
            mounts.len()
        ));
    }
    let mut targets = BTreeSet::new();
    for m in mounts {
        validate_path("mount target", &m.target)?;
        if m.target == "/" {
            return Err("invalid mount target \"/\": a mount cannot replace the root".into());
        }
        let target = m.target.trim_end_matches('/');
        if !targets.insert(target) {
            // Docker's words.
            return Err(format!("Duplicate mount point: {target}"));
        }
        let kind = m.kind.as_str();
        match m.kind {
            MountKind::Volume if !m.source.is_empty() => validate_volume_name(&m.source)?,
            MountKind::Volume => {}
            MountKind::Bind => validate_path("bind source", &m.source)?,
            MountKind::Tmpfs if !m.source.is_empty() => {
                return Err(format!(
                    "invalid mount on {}: a tmpfs mount has no source",
                    m.target
                ));
            }
            MountKind::Tmpfs => {}
        }
        if m.kind != MountKind::Tmpfs && m.tmpfs_size_bytes != 0 {
            return Err(format!(
                "invalid {kind} mount on {}: tmpfs-size is for tmpfs mounts",
                m.target
            ));
        }
        if m.kind != MountKind::Volume && !m.volume_labels.is_empty() {
            return Err(format!(
                "invalid {kind} mount on {}: volume labels are for volume mounts",
                m.target
            ));
        }
        if m.volume_labels.len() > VOLUME_LABELS_MAX {
            return Err(format!(
                "invalid volume mount on {}: at most {VOLUME_LABELS_MAX} volume labels",
                m.target
            ));
        }
        for (k, v) in &m.volume_labels {
            swarm_actors::model::validate_label(k, v).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn validate_max_replicas(spec: &ServiceSpec) -> Result<(), String> {
    let max = spec.task.placement.max_replicas;
    if max == 0 {
        return Ok(());
    }
    if spec.mode == ServiceMode::Global {
        // Docker's words.
        return Err("replicas-max-per-node can only be used with replicated mode".into());
    }
    if max > REPLICAS_MAX {
        return Err(format!(
            "invalid --replicas-max-per-node {max}: at most {REPLICAS_MAX}"
        ));
    }
    Ok(())
}

/// Valid names, not the service itself, each once, at most [`DEPENDENCIES_MAX`]. A service
/// that does not exist (yet) is allowed: the leader waits for it.
pub fn validate_depends_on(spec: &ServiceSpec) -> Result<(), String> {
    let deps = &spec.depends_on;
    if deps.len() > DEPENDENCIES_MAX {
        return Err(format!(
            "service {} depends on {} services: at most {DEPENDENCIES_MAX}",
            spec.name,
            deps.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for d in deps {
        validate_name(&d.service).map_err(|e| format!("invalid depends_on: {e}"))?;
        if d.service == spec.name {
            return Err(format!("service {} cannot depend on itself", spec.name));
        }
        if !seen.insert(d.service.as_str()) {
            return Err(format!(
                "service {} depends on {} twice",
                spec.name, d.service
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::validate::tests::spec;
    use swarm_actors::model::{Dependency, DependencyCondition};

    fn mount(kind: MountKind, source: &str, target: &str) -> Mount {
        Mount {
            kind,
            source: source.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    fn refused(s: &ServiceSpec, words: &str) {
        let err = validate_container(s).expect_err("accepted");
        assert!(err.contains(words), "{err:?} does not say {words:?}");
        // The whole spec check refuses it too.
        assert!(super::super::validate_spec(s).is_err());
    }

    #[test]
    fn good_container_fields_pass() {
        let mut s = spec("web");
        s.task.entrypoint = vec!["/bin/sh".into(), "-c".into()];
        s.task.workdir = Some("/srv".into());
        s.task.hostname = Some("web-1.example".into());
        s.task.mounts = vec![
            mount(MountKind::Volume, "wp_data", "/var/lib/data"),
            mount(MountKind::Volume, "", "/anon"),
            mount(MountKind::Bind, "/etc/hosts", "/etc/hosts"),
            Mount {
                tmpfs_size_bytes: 1 << 20,
                ..mount(MountKind::Tmpfs, "", "/tmp")
            },
        ];
        s.task.mounts[0]
            .volume_labels
            .insert("com.docker.stack.namespace".into(), "wp".into());
        s.task.placement.max_replicas = 2;
        s.depends_on = vec![Dependency {
            service: "db".into(),
            condition: DependencyCondition::Healthy,
        }];
        assert_eq!(validate_container(&s), Ok(()));
        assert_eq!(super::super::validate_spec(&s), Ok(()));
    }

    #[test]
    fn bad_mounts_are_refused_with_a_reason() {
        let cases: Vec<(Vec<Mount>, &str)> = vec![
            (vec![mount(MountKind::Volume, "v1", "data")], "absolute"),
            (
                vec![mount(MountKind::Bind, "rel/dir", "/data")],
                "bind source",
            ),
            (vec![mount(MountKind::Tmpfs, "x", "/t")], "no source"),
            (
                vec![
                    mount(MountKind::Volume, "v1", "/data"),
                    mount(MountKind::Tmpfs, "", "/data/"),
                ],
                "Duplicate mount point: /data",
            ),
            (vec![mount(MountKind::Volume, "-bad", "/d")], "volume name"),
            (vec![mount(MountKind::Volume, "v1", "/")], "root"),
            (
                vec![Mount {
                    tmpfs_size_bytes: 1,
                    ..mount(MountKind::Volume, "v1", "/d")
                }],
                "tmpfs-size",
            ),
            (
                (0..=MOUNTS_MAX)
                    .map(|i| mount(MountKind::Tmpfs, "", &format!("/t{i}")))
                    .collect(),
                "at most",
            ),
        ];
        for (mounts, words) in cases {
            let mut s = spec("web");
            s.task.mounts = mounts;
            refused(&s, words);
        }
        let mut s = spec("web");
        s.task.mounts = (0..MOUNTS_MAX)
            .map(|i| mount(MountKind::Tmpfs, "", &format!("/t{i}")))
            .collect();
        assert_eq!(validate_mounts(&s.task.mounts), Ok(()));
    }

    #[test]
    fn bad_workdir_hostname_entrypoint_and_max_replicas_are_refused() {
        let mut s = spec("web");
        s.task.workdir = Some("srv".into());
        refused(&s, "--workdir");
        for bad in ["", "-web", "web-", "a..b", "we b", "web_1", &"a".repeat(64)] {
            let mut s = spec("web");
            s.task.hostname = Some(bad.into());
            refused(&s, "--hostname");
        }
        let mut s = spec("web");
        s.task.entrypoint = vec!["".into()];
        refused(&s, "--entrypoint");
        let mut s = spec("web");
        s.mode = ServiceMode::Global;
        s.task.placement.max_replicas = 1;
        refused(&s, "replicated mode");
        let mut s = spec("web");
        s.task.placement.max_replicas = REPLICAS_MAX + 1;
        refused(&s, "--replicas-max-per-node");
    }

    #[test]
    fn depends_on_names_others_once_within_the_bound() {
        let dep = |name: &str| Dependency {
            service: name.into(),
            condition: DependencyCondition::Started,
        };
        let mut s = spec("web");
        s.depends_on = vec![dep("web")];
        refused(&s, "itself");
        s.depends_on = vec![dep("db"), dep("db")];
        refused(&s, "twice");
        s.depends_on = vec![dep("bad name")];
        refused(&s, "invalid depends_on");
        s.depends_on = (0..=DEPENDENCIES_MAX)
            .map(|i| dep(&format!("s{i}")))
            .collect();
        refused(&s, "at most");
        // A dependency on a service that does not exist is the leader's to wait for.
        s.depends_on = vec![dep("not-yet-created")];
        assert_eq!(validate_container(&s), Ok(()));
    }
}
