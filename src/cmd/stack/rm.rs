//! `stack rm`: the stack's services, then its secrets, configs and networks (Docker's
//! order), and its volumes on every node. A network is refused while a task still holds an
//! address on it, and tasks stop a little after their service is removed: each network's
//! removal is tried again until [`NETWORK_RM_WAIT_MS`] has passed.

use std::time::{Duration, Instant};

use anyhow::bail;
use swarm_actors::model::FileKind;

use super::{all_services, nothing_found, of_stack, stack_of};
use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, NetworkDoc, SecretDoc};

/// How long `stack rm` waits for the tasks of the removed services to let go of the stack's
/// networks.
pub const NETWORK_RM_WAIT_MS: u64 = 60_000;
/// Between two tries of a network's removal.
const NETWORK_RM_RETRY_MS: u64 = 500;

/// What one stack holds, each list by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackObjects {
    pub services: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
    pub networks: Vec<String>,
}

impl StackObjects {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.secrets.is_empty()
            && self.configs.is_empty()
            && self.networks.is_empty()
    }
}

/// The objects labelled with `stack`, by name.
pub fn objects_of(
    stack: &str,
    services: Vec<String>,
    secrets: &[SecretDoc],
    configs: &[SecretDoc],
    networks: &[NetworkDoc],
) -> StackObjects {
    let files = |docs: &[SecretDoc]| {
        let mut names: Vec<String> = (docs.iter())
            .filter(|d| stack_of(&d.labels) == Some(stack))
            .map(|d| d.name.clone())
            .collect();
        names.sort();
        names
    };
    let mut nets: Vec<String> = (networks.iter())
        .filter(|n| !n.ingress && stack_of(&n.labels) == Some(stack))
        .map(|n| n.name.clone())
        .collect();
    nets.sort();
    StackObjects {
        services,
        secrets: files(secrets),
        configs: files(configs),
        networks: nets,
    }
}

async fn files(client: &Client, kind: FileKind) -> anyhow::Result<Vec<SecretDoc>> {
    match client.call(ControlRequest::SecretLs { kind }).await? {
        ControlResponse::Secrets(d) => Ok(d),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

async fn read(client: &Client, stack: &str) -> anyhow::Result<StackObjects> {
    let services = of_stack(all_services(client).await?, stack)
        .into_iter()
        .map(|s| s.name)
        .collect();
    let networks = match client.call(ControlRequest::NetworkLs).await? {
        ControlResponse::Networks(n) => n,
        other => bail!("unexpected answer from the node: {other:?}"),
    };
    Ok(objects_of(
        stack,
        services,
        &files(client, FileKind::Secret).await?,
        &files(client, FileKind::Config).await?,
        &networks,
    ))
}

pub async fn run(
    client: &Client,
    stacks: &[String],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for stack in stacks {
        let objects = read(client, stack).await?;
        if objects.is_empty() {
            // Docker says so and goes on.
            writeln!(out, "{}", nothing_found(stack))?;
            continue;
        }
        remove(client, stack, &objects, out, &mut failed).await?;
    }
    if !failed.is_empty() {
        bail!(
            "Failed to remove some resources from stack: {}",
            failed.join("; ")
        );
    }
    Ok(())
}

async fn remove(
    client: &Client,
    stack: &str,
    objects: &StackObjects,
    out: &mut dyn std::io::Write,
    failed: &mut Vec<String>,
) -> anyhow::Result<()> {
    for name in &objects.services {
        writeln!(out, "Removing service {name}")?;
        let req = ControlRequest::ServiceRm {
            service: name.clone(),
        };
        if let Err(e) = client.call(req).await {
            failed.push(format!("service {name}: {e:#}"));
        }
    }
    for (kind, names) in [
        (FileKind::Secret, &objects.secrets),
        (FileKind::Config, &objects.configs),
    ] {
        for name in names {
            writeln!(out, "Removing {} {name}", kind.as_str())?;
            let req = ControlRequest::SecretRm {
                kind,
                name: name.clone(),
            };
            if let Err(e) = client.call(req).await {
                failed.push(format!("{} {name}: {e:#}", kind.as_str()));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_millis(NETWORK_RM_WAIT_MS);
    for name in &objects.networks {
        writeln!(out, "Removing network {name}")?;
        if let Err(e) = remove_network(client, name, deadline).await {
            failed.push(format!("network {name}: {e:#}"));
        }
    }
    if let Err(e) = remove_stack_volumes(client, stack).await {
        failed.push(format!("volumes: {e:#}"));
    }
    Ok(())
}

/// Removes a network, trying again while a task of a removed service still holds an address
/// on it, until `deadline`.
async fn remove_network(client: &Client, name: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let req = ControlRequest::NetworkRm {
            name: name.to_string(),
        };
        match client.call(req).await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(NETWORK_RM_RETRY_MS)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// STACK VOLUMES CALL SITE: removes the volumes labelled with `stack` on every node (named
/// volumes are made by each node's runtime on first use). The runtimes' removal, and the
/// control request that asks every node for it, fill this in.
pub async fn remove_stack_volumes(client: &Client, stack: &str) -> anyhow::Result<()> {
    let _ = (client, stack);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::NAMESPACE_LABEL;
    use std::collections::BTreeMap;

    fn labelled(stack: Option<&str>) -> BTreeMap<String, String> {
        stack
            .map(|s| BTreeMap::from([(NAMESPACE_LABEL.to_string(), s.to_string())]))
            .unwrap_or_default()
    }

    fn file(kind: FileKind, name: &str, stack: Option<&str>) -> SecretDoc {
        SecretDoc {
            id: name.into(),
            kind,
            name: name.into(),
            labels: labelled(stack),
            version: 1,
            created_ms: 0,
            updated_ms: 0,
            data: None,
        }
    }

    fn network(name: &str, stack: Option<&str>) -> NetworkDoc {
        NetworkDoc {
            id: name.into(),
            name: name.into(),
            driver: "overlay".into(),
            scope: "swarm".into(),
            ingress: false,
            subnet: "10.0.1.0/24".into(),
            tasks: Vec::new(),
            tasks_left_out: 0,
            gateway: String::new(),
            internal: false,
            attachable: false,
            labels: labelled(stack),
            vni: 0,
            vips: Vec::new(),
            version: 1,
            created_ms: 0,
        }
    }

    #[test]
    fn a_stack_is_what_carries_its_label() {
        let secrets = [
            file(FileKind::Secret, "wp_db_password", Some("wp")),
            file(FileKind::Secret, "other", None),
            file(FileKind::Secret, "wp2_x", Some("wp2")),
        ];
        let configs = [file(FileKind::Config, "wp_conf", Some("wp"))];
        let networks = [
            network("wp_default", Some("wp")),
            network("wp_back", Some("wp")),
            network("shared", None),
        ];
        let o = objects_of("wp", vec!["wp_db".into()], &secrets, &configs, &networks);
        assert_eq!(
            o,
            StackObjects {
                services: vec!["wp_db".into()],
                secrets: vec!["wp_db_password".into()],
                configs: vec!["wp_conf".into()],
                networks: vec!["wp_back".into(), "wp_default".into()],
            }
        );
        let none = objects_of("nope", Vec::new(), &secrets, &configs, &networks);
        assert!(none.is_empty());
        assert_eq!(nothing_found("nope"), "Nothing found in stack: nope");
    }
}
