//! `stack deploy`: the plan the compose files make, applied in Docker's order: services no
//! longer in the files pruned (`--prune`), networks made when missing, secrets and configs
//! made when missing (an existing one must hold the same data), then services created or,
//! when they exist, their spec replaced if it changed.
//!
//! ```text
//!  node state ─┐
//!  StackPlan ──┴─ actions() (checks, nothing sent) ─▶ [Action] ─ apply ─▶ control requests
//! ```
//!
//! Everything that can be checked without writing is checked in [`actions`] first (external
//! objects exist, every spec passes the node's checks), so a broken stack creates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::bail;
use clap::{ArgAction, Args};
use swarm_actors::model::{FileKind, SecretBytes};

use super::{all_services, compose, of_stack};
use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, NetworkCreate};
use crate::control::validate::{validate_name, validate_spec};
use crate::stack::{StackFile, StackPlan, StackService};

#[derive(Args, Debug, Clone)]
pub struct DeployArgs {
    /// A compose file; several merge in order (repeatable).
    #[arg(short = 'c', long = "compose-file", required = true, action = ArgAction::Append)]
    pub files: Vec<PathBuf>,
    /// Remove the stack's services that are no longer in the files.
    #[arg(long)]
    pub prune: bool,
    /// Return once everything is sent (the default, as Docker's); `--detach=false` waits for
    /// every service created or updated to converge, showing its progress.
    #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub detach: bool,
    /// Accepted for Docker's command lines and ignored: images are never resolved to digests.
    #[arg(long, value_parser = ["always", "changed", "never"])]
    pub resolve_image: Option<String>,
    /// Accepted for Docker's command lines and ignored: there is no registry authentication.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// The stack's name: the prefix of its objects' names and their namespace label.
    pub stack: String,
}

/// What the cluster holds that a deploy looks at.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    pub networks: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    pub configs: BTreeSet<String>,
    /// The stack's services (labelled with it): name → ID.
    pub services: BTreeMap<String, String>,
}

/// One step of a deploy, in the order they are taken.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `--prune`: a service of the stack the files no longer have.
    RemoveService(String),
    CreateNetwork(NetworkCreate),
    /// A secret or config: made when missing, else checked to hold the same data.
    File {
        file: StackFile,
        exists: bool,
    },
    CreateService(StackService),
    /// A service of the stack that exists: its spec replaced if it changed.
    UpdateService {
        service: StackService,
        id: String,
    },
}

/// The steps that apply `plan` over `existing`, or why the deploy cannot start (nothing is
/// changed then).
pub fn actions(plan: &StackPlan, existing: &Existing, prune: bool) -> Result<Vec<Action>, String> {
    validate_name(&plan.namespace).map_err(|_| {
        format!(
            "invalid stack name {:?}: names match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
            plan.namespace
        )
    })?;
    for n in plan.networks.iter().filter(|n| n.external) {
        if !existing.networks.contains(&n.create.name) {
            // Docker's words.
            return Err(format!(
                "network {:?} is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed",
                n.create.name
            ));
        }
    }
    for f in plan.secrets.iter().chain(&plan.configs) {
        let held = match f.kind {
            FileKind::Secret => &existing.secrets,
            FileKind::Config => &existing.configs,
        };
        if f.external && !held.contains(&f.name) {
            return Err(format!(
                "{} {:?} is declared as external, but could not be found: create it before the stack is deployed",
                f.kind.as_str(),
                f.name
            ));
        }
        if !f.external && f.data.is_none() {
            return Err(format!("{} {} has no data", f.kind.as_str(), f.name));
        }
    }
    let mut services = Vec::new();
    for s in &plan.services {
        // A ref's target as `service create --secret` resolves it (relative: under
        // /run/secrets for a secret, under / for a config), which the node expects.
        let mut s = s.clone();
        for (kind, refs) in [
            (FileKind::Secret, &mut s.spec.task.secrets),
            (FileKind::Config, &mut s.spec.task.configs),
        ] {
            for r in refs {
                r.target = kind.target_path(&r.name, &r.target);
            }
        }
        validate_spec(&s.spec).map_err(|e| format!("service {}: {e}", s.spec.name))?;
        services.push(s);
    }
    // Secrets and configs the cluster holds come first: the only step of a valid plan the
    // cluster may still refuse is one of them, when its data changed (they are immutable), and
    // then nothing else is done yet. Those to make follow the networks, as Docker orders them.
    let (held, to_make): (Vec<Action>, Vec<Action>) = plan
        .secrets
        .iter()
        .chain(&plan.configs)
        .filter(|f| !f.external)
        .map(|f| {
            let held = match f.kind {
                FileKind::Secret => &existing.secrets,
                FileKind::Config => &existing.configs,
            };
            Action::File {
                file: f.clone(),
                exists: held.contains(&f.name),
            }
        })
        .partition(|a| matches!(a, Action::File { exists: true, .. }));
    let mut out = held;
    if prune {
        let keep: BTreeSet<&str> = plan.services.iter().map(|s| s.spec.name.as_str()).collect();
        out.extend(
            (existing.services.keys())
                .filter(|name| !keep.contains(name.as_str()))
                .map(|name| Action::RemoveService(name.clone())),
        );
    }
    out.extend(
        (plan.networks.iter())
            .filter(|n| !n.external && !existing.networks.contains(&n.create.name))
            .map(|n| Action::CreateNetwork(n.create.clone())),
    );
    out.extend(to_make);
    for s in services {
        out.push(match existing.services.get(&s.spec.name) {
            Some(id) => Action::UpdateService {
                id: id.clone(),
                service: s,
            },
            None => Action::CreateService(s),
        });
    }
    Ok(out)
}

/// Reads what the cluster holds that the plan names.
async fn existing(client: &Client, namespace: &str) -> anyhow::Result<Existing> {
    let networks = match client.call(ControlRequest::NetworkLs).await? {
        ControlResponse::Networks(n) => n.into_iter().map(|n| n.name).collect(),
        other => bail!("unexpected answer from the node: {other:?}"),
    };
    let names = |kind| async move {
        match client.call(ControlRequest::SecretLs { kind }).await? {
            ControlResponse::Secrets(d) => Ok(d.into_iter().map(|d| d.name).collect()),
            other => bail!("unexpected answer from the node: {other:?}"),
        }
    };
    let secrets = names(FileKind::Secret).await?;
    let configs = names(FileKind::Config).await?;
    let services = of_stack(all_services(client).await?, namespace)
        .into_iter()
        .map(|s| (s.name, s.id))
        .collect();
    Ok(Existing {
        networks,
        secrets,
        configs,
        services,
    })
}

fn unexpected(other: ControlResponse) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from the node: {other:?}")
}

/// Takes one step, printing Docker's line for it; the name of a service that now has a spec
/// to roll out (created or changed), for `--detach=false` to wait on.
async fn apply(
    client: &Client,
    action: Action,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Option<String>> {
    match action {
        Action::RemoveService(name) => {
            writeln!(out, "Removing service {name}")?;
            client
                .call(ControlRequest::ServiceRm { service: name })
                .await?;
            Ok(None)
        }
        Action::CreateNetwork(create) => {
            writeln!(out, "Creating network {}", create.name)?;
            client
                .call(ControlRequest::NetworkCreate(Box::new(create)))
                .await?;
            Ok(None)
        }
        Action::File { file, exists } => {
            let what = file.kind.as_str();
            if !exists {
                writeln!(out, "Creating {what} {}", file.name)?;
            }
            let req = ControlRequest::SecretDeploy {
                kind: file.kind,
                name: file.name.clone(),
                labels: file.labels.into_iter().collect(),
                data: SecretBytes::new(file.data.unwrap_or_default()),
            };
            match client.call(req).await {
                Ok(ControlResponse::Applied { .. }) => Ok(None),
                Ok(other) => Err(unexpected(other)),
                Err(e) if exists => Err(e),
                Err(e) => Err(e.context(format!("failed to create {what} {}", file.name))),
            }
        }
        Action::CreateService(s) => {
            let name = s.spec.name.clone();
            writeln!(out, "Creating service {name}")?;
            let req = ControlRequest::ServiceCreate {
                spec: Box::new(s.spec),
                networks: s.networks,
            };
            match client.call(req).await {
                Ok(ControlResponse::Done(_)) => Ok(Some(name)),
                Ok(other) => Err(unexpected(other)),
                Err(e) => Err(e.context(format!("failed to create service {name}"))),
            }
        }
        Action::UpdateService { service: s, id } => {
            let name = s.spec.name.clone();
            let req = ControlRequest::ServiceReplace {
                spec: Box::new(s.spec),
                networks: s.networks,
            };
            match client.call(req).await {
                Ok(ControlResponse::Applied { changed: true, id }) => {
                    writeln!(out, "Updating service {name} (id: {id})")?;
                    Ok(Some(name))
                }
                // The same spec: nothing written, nothing rolled out.
                Ok(ControlResponse::Applied { changed: false, .. }) => Ok(None),
                Ok(other) => Err(unexpected(other)),
                Err(e) => Err(e.context(format!("failed to update service {name} (id: {id})"))),
            }
        }
    }
}

pub async fn run(
    a: &DeployArgs,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let plan = compose::plan_files(&a.files, &a.stack)?;
    deploy(client, &plan, a.prune, a.detach, out).await
}

/// Applies `plan`: Docker's warnings, then every action; with `detach` false, waits for the
/// services given a new spec, in the plan's order (dependencies first).
pub async fn deploy(
    client: &Client,
    plan: &StackPlan,
    prune: bool,
    detach: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    for w in &plan.warnings {
        writeln!(out, "{w}")?;
    }
    let existing = existing(client, &plan.namespace).await?;
    let steps = actions(plan, &existing, prune).map_err(anyhow::Error::msg)?;
    let mut rolled = Vec::new();
    for step in steps {
        if let Some(name) = apply(client, step, out).await? {
            rolled.push(name);
        }
    }
    if !detach {
        for name in rolled {
            super::super::service::progress::wait(client, &name, out).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::NetworkArg;
    use crate::control::validate::tests::spec;
    use crate::stack::{NAMESPACE_LABEL, StackNetwork};

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([(NAMESPACE_LABEL.to_string(), "wp".to_string())])
    }

    /// The tutorial's stack: a default network, a secret, a database and the web app that
    /// needs it.
    pub(crate) fn plan() -> StackPlan {
        let service = |name: &str| {
            let mut s = spec(name);
            s.labels = labels();
            StackService {
                spec: s,
                networks: vec![NetworkArg {
                    target: "wp_default".into(),
                    aliases: vec![name.trim_start_matches("wp_").into()],
                }],
            }
        };
        StackPlan {
            namespace: "wp".into(),
            networks: vec![StackNetwork {
                external: false,
                create: NetworkCreate {
                    name: "wp_default".into(),
                    driver: "overlay".into(),
                    labels: labels().into_iter().collect(),
                    ..Default::default()
                },
            }],
            secrets: vec![StackFile {
                kind: FileKind::Secret,
                name: "wp_db_password".into(),
                external: false,
                data: Some(b"hunter2".to_vec()),
                labels: labels(),
            }],
            configs: Vec::new(),
            volumes: Vec::new(),
            services: vec![service("wp_db"), service("wp_wordpress")],
            warnings: vec!["Ignoring unsupported options: build".into()],
        }
    }

    fn names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::RemoveService(n) => format!("rm {n}"),
                Action::CreateNetwork(n) => format!("network {}", n.name),
                Action::File { file, exists } => format!("secret {} {exists}", file.name),
                Action::CreateService(s) => format!("create {}", s.spec.name),
                Action::UpdateService { service, .. } => format!("update {}", service.spec.name),
            })
            .collect()
    }

    #[test]
    fn a_first_deploy_creates_everything_in_order() {
        let mut p = plan();
        p.services[0].spec.task.secrets = vec![swarm_actors::model::FileRef {
            id: swarm_actors::model::SecretId::UNKNOWN,
            name: "wp_db_password".into(),
            target: "db_password".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
        }];
        let steps = actions(&p, &Existing::default(), false).unwrap();
        let Action::CreateService(db) = &steps[2] else {
            panic!("{steps:?}")
        };
        assert_eq!(
            db.spec.task.secrets[0].target, "/run/secrets/db_password",
            "a relative target is resolved as `service create --secret` resolves it"
        );
        assert_eq!(
            names(&steps),
            [
                "network wp_default",
                "secret wp_db_password false",
                "create wp_db",
                "create wp_wordpress"
            ]
        );
    }

    #[test]
    fn a_redeploy_updates_in_place_and_prunes_only_when_asked() {
        let existing = Existing {
            networks: BTreeSet::from(["wp_default".to_string(), "ingress".to_string()]),
            secrets: BTreeSet::from(["wp_db_password".to_string()]),
            configs: BTreeSet::new(),
            services: BTreeMap::from([
                ("wp_db".to_string(), "id1".to_string()),
                ("wp_old".to_string(), "id2".to_string()),
            ]),
        };
        let steps = actions(&plan(), &existing, false).unwrap();
        assert_eq!(
            names(&steps),
            [
                "secret wp_db_password true",
                "update wp_db",
                "create wp_wordpress"
            ]
        );
        let steps = actions(&plan(), &existing, true).unwrap();
        assert_eq!(
            names(&steps)[..2],
            ["secret wp_db_password true", "rm wp_old"]
        );
        assert_eq!(steps.len(), 4);
    }

    #[test]
    fn a_held_secret_whose_data_may_have_changed_is_checked_before_anything_is_made() {
        let mut p = plan();
        p.secrets.push(StackFile {
            name: "wp_new".into(),
            ..p.secrets[0].clone()
        });
        let existing = Existing {
            secrets: BTreeSet::from(["wp_db_password".to_string()]),
            ..Default::default()
        };
        assert_eq!(
            names(&actions(&p, &existing, true).unwrap()),
            [
                "secret wp_db_password true",
                "network wp_default",
                "secret wp_new false",
                "create wp_db",
                "create wp_wordpress"
            ]
        );
    }

    #[test]
    fn missing_external_objects_and_bad_specs_stop_the_deploy_before_anything() {
        let mut p = plan();
        p.networks[0].external = true;
        let err = actions(&p, &Existing::default(), false).unwrap_err();
        assert!(
            err.contains("\"wp_default\" is declared as external"),
            "{err}"
        );
        let mut p = plan();
        p.secrets[0].external = true;
        p.secrets[0].data = None;
        let err = actions(&p, &Existing::default(), false).unwrap_err();
        assert!(
            err.contains("secret \"wp_db_password\" is declared as external"),
            "{err}"
        );
        let present = Existing {
            secrets: BTreeSet::from(["wp_db_password".to_string()]),
            ..Default::default()
        };
        let steps = actions(&p, &present, false).unwrap();
        assert!(
            !names(&steps).iter().any(|n| n.starts_with("secret")),
            "an external secret is never made or changed"
        );
        let mut p = plan();
        p.services[1].spec.task.workdir = Some("relative".into());
        let err = actions(&p, &Existing::default(), false).unwrap_err();
        assert!(
            err.contains("service wp_wordpress") && err.contains("--workdir"),
            "{err}"
        );
        let mut p = plan();
        p.namespace = "-bad".into();
        assert!(
            actions(&p, &Existing::default(), false)
                .unwrap_err()
                .contains("invalid stack name")
        );
    }

    #[test]
    fn deploy_flags_parse_as_dockers() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: DeployArgs,
        }
        let parse = |args: &[&str]| {
            T::try_parse_from(std::iter::once("deploy").chain(args.iter().copied()))
        };
        let t = parse(&["-c", "a.yml", "-c", "b.yml", "--prune", "wp"]).unwrap();
        assert_eq!(t.a.files, [PathBuf::from("a.yml"), PathBuf::from("b.yml")]);
        assert!(t.a.prune && t.a.detach);
        let t = parse(&[
            "-c",
            "a.yml",
            "--detach=false",
            "--resolve-image",
            "never",
            "wp",
        ])
        .unwrap();
        assert!(!t.a.detach);
        let t = parse(&["--compose-file", "a.yml", "-d", "wp"]).unwrap();
        assert!(t.a.detach);
        assert!(parse(&["wp"]).is_err(), "a compose file is required");
        assert!(parse(&["-c", "a.yml", "--resolve-image", "sometimes", "wp"]).is_err());
    }
}
