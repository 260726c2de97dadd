//! `swarm-node network ls | inspect | create | rm`, with Docker's output. `ingress` is built
//! in: every task is attached to it, and published ports are reached through it. Overlay
//! networks (`create --driver overlay`) are stored by the managers; services attach to them
//! with `service create --network`.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, NetworkCreate, NetworkDoc};
use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// List the networks.
    Ls {
        /// `json` prints one JSON object per line, with Docker's keys.
        #[arg(long)]
        format: Option<String>,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks in Docker's JSON shape, with the tasks holding addresses on them.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Create an overlay network; prints its ID.
    Create {
        /// overlay: the only driver (the default here; Docker's is bridge).
        #[arg(short, long, default_value = "overlay")]
        driver: String,
        /// ADDRESS/PREFIX, /16 to /29 (default: the next free /24 of 10.0.0.0/8).
        #[arg(long)]
        subnet: Option<String>,
        /// Let tasks of services not on the network attach (kept and shown).
        #[arg(long)]
        attachable: bool,
        /// No route out: its tasks reach each other and its VIPs, nothing else.
        #[arg(long)]
        internal: bool,
        /// Label key=value (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        name: String,
    },
    /// Remove networks; refused while a service or a live task uses one.
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

async fn networks(client: &Client, req: ControlRequest) -> anyhow::Result<Vec<NetworkDoc>> {
    match client.call(req).await? {
        ControlResponse::Networks(n) => Ok(n),
        ControlResponse::Error(e) => bail!("{e}"),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

async fn done(client: &Client, req: ControlRequest) -> anyhow::Result<String> {
    match client.call(req).await? {
        ControlResponse::Done(text) => Ok(text),
        ControlResponse::Error(e) => bail!("{e}"),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

pub async fn run(
    cmd: NetworkCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Ls { format, quiet } => {
            if let Some(f) = format.as_deref().filter(|f| *f != "json") {
                bail!("unknown --format {f:?}: only json is supported");
            }
            let docs = networks(client, ControlRequest::NetworkLs).await?;
            write!(out, "{}", ls_text(&docs, format.is_some(), quiet))?;
        }
        NetworkCmd::Inspect { networks: names } => {
            let docs = networks(client, ControlRequest::NetworkInspect { names }).await?;
            let json: Vec<Value> = docs.iter().map(inspect_json).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        NetworkCmd::Create {
            driver,
            subnet,
            attachable,
            internal,
            labels,
            name,
        } => {
            let req = NetworkCreate {
                name,
                driver,
                subnet,
                attachable,
                internal,
                labels: labels
                    .iter()
                    .map(|l| crate::cmd::service::parse_label(l))
                    .collect(),
            };
            let id = done(client, ControlRequest::NetworkCreate(Box::new(req))).await?;
            writeln!(out, "{id}")?;
        }
        NetworkCmd::Rm { networks } => {
            // Docker's way: each one tried, each failure said, the command failing at the end.
            let mut failed = Vec::new();
            for name in networks {
                match done(client, ControlRequest::NetworkRm { name: name.clone() }).await {
                    Ok(_) => writeln!(out, "{name}")?,
                    Err(e) => failed.push(format!("Error response from daemon: {e}")),
                }
            }
            if !failed.is_empty() {
                bail!("{}", failed.join("\n"));
            }
        }
    }
    Ok(())
}

/// `network ls`: Docker's table (`NETWORK ID  NAME  DRIVER  SCOPE`), its IDs (`-q`), or one
/// JSON object a line.
fn ls_text(docs: &[NetworkDoc], json: bool, quiet: bool) -> String {
    let short = |d: &NetworkDoc| d.id.chars().take(12).collect::<String>();
    if quiet {
        return docs.iter().map(|d| short(d) + "\n").collect();
    }
    if json {
        return docs
            .iter()
            .map(|d| {
                let labels: Vec<String> =
                    d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                json!({
                    "ID": short(d), "Name": d.name, "Driver": d.driver, "Scope": d.scope,
                    "IPv6": "false", "Internal": d.internal.to_string(),
                    "Labels": labels.join(","),
                    "CreatedAt": if d.created_ms == 0 { String::new() } else {
                        crate::cmd::service::inspect::rfc3339(d.created_ms)
                    },
                })
                .to_string()
                    + "\n"
            })
            .collect();
    }
    let rows: Vec<Vec<String>> = docs
        .iter()
        .map(|d| vec![short(d), d.name.clone(), d.driver.clone(), d.scope.clone()])
        .collect();
    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
}

/// `network inspect`: Docker's keys; `Containers` holds the tasks with addresses, keyed by
/// task ID as Docker keys them by container ID.
fn inspect_json(d: &NetworkDoc) -> Value {
    let containers: serde_json::Map<String, Value> = d
        .tasks
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                json!({ "Name": t.name, "IPv4Address": t.ipv4, "IPv6Address": "" }),
            )
        })
        .collect();
    let mut ipam = json!({ "Subnet": d.subnet });
    if !d.gateway.is_empty() {
        ipam["Gateway"] = json!(d.gateway);
    }
    let options = if d.vni == 0 {
        json!({})
    } else {
        json!({ "com.docker.network.driver.overlay.vxlanid_list": d.vni.to_string() })
    };
    // Docker's verbose `Services`: each service with a VIP on the network.
    let services: serde_json::Map<String, Value> = d
        .vips
        .iter()
        .map(|(name, vip)| (name.clone(), json!({ "VIP": vip })))
        .collect();
    let mut v = json!({
        "Name": d.name,
        "Id": d.id,
        "Created": if d.created_ms == 0 { String::new() } else {
            crate::cmd::service::inspect::rfc3339(d.created_ms)
        },
        "Scope": d.scope,
        "Driver": d.driver,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [ ipam ] },
        "Internal": d.internal,
        "Attachable": d.attachable,
        "Ingress": d.ingress,
        "Containers": containers,
        "Options": options,
        "Labels": d.labels,
        "Services": services,
    });
    if d.version != 0 {
        v["Version"] = json!({ "Index": d.version });
    }
    if d.tasks_left_out > 0 {
        v["ContainersLeftOut"] = json!(d.tasks_left_out);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::NetworkTask;

    fn ingress() -> NetworkDoc {
        NetworkDoc {
            id: "0123456789abcdef012345678".into(),
            name: "ingress".into(),
            driver: "overlay".into(),
            scope: "swarm".into(),
            ingress: true,
            subnet: "10.255.0.0/16".into(),
            tasks: vec![NetworkTask {
                name: "web.1.abc".into(),
                id: "abc".into(),
                ipv4: "10.255.0.2/24".into(),
            }],
            tasks_left_out: 0,
            gateway: String::new(),
            internal: false,
            attachable: false,
            labels: Default::default(),
            vni: 0,
            vips: vec![],
            version: 0,
            created_ms: 0,
        }
    }

    fn overlay() -> NetworkDoc {
        NetworkDoc {
            id: "abcdefghijklmnopqrstuvwxy".into(),
            name: "myapp_net".into(),
            ingress: false,
            subnet: "10.0.9.0/24".into(),
            gateway: "10.0.9.1".into(),
            internal: true,
            attachable: true,
            labels: [("env".to_string(), "prod".to_string())].into(),
            vni: 4097,
            vips: vec![("my_web".into(), "10.0.9.254/24".into())],
            version: 12,
            created_ms: 1_700_000_000_000,
            tasks: vec![NetworkTask {
                name: "my_web.1.t1".into(),
                id: "t1".into(),
                ipv4: "10.0.9.2/24".into(),
            }],
            ..ingress()
        }
    }

    #[test]
    fn overlay_networks_show_dockers_keys() {
        let docs = [ingress(), overlay()];
        let t = ls_text(&docs, false, false);
        let cells: Vec<&str> = t.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(cells, ["abcdefghijkl", "myapp_net", "overlay", "swarm"]);
        let line = ls_text(&docs, true, false)
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        let j: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (j["Internal"].as_str(), j["Labels"].as_str()),
            (Some("true"), Some("env=prod"))
        );
        let j = inspect_json(&overlay());
        assert_eq!(j["IPAM"]["Config"][0]["Subnet"], "10.0.9.0/24");
        assert_eq!(j["IPAM"]["Config"][0]["Gateway"], "10.0.9.1");
        assert_eq!(j["Internal"], true);
        assert_eq!(j["Attachable"], true);
        assert_eq!(j["Ingress"], false);
        assert_eq!(j["Labels"]["env"], "prod");
        assert_eq!(
            j["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
            "4097"
        );
        assert_eq!(j["Containers"]["t1"]["IPv4Address"], "10.0.9.2/24");
        assert_eq!(j["Services"]["my_web"]["VIP"], "10.0.9.254/24");
        assert_eq!(j["Version"]["Index"], 12);
        assert!(j["Created"].as_str().unwrap().starts_with("2023-11-14T"));
    }

    #[test]
    fn ls_reads_like_dockers() {
        let docs = [ingress()];
        let t = ls_text(&docs, false, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NETWORK ID     NAME "), "{t}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["0123456789ab", "ingress", "overlay", "swarm"]);
        assert_eq!(ls_text(&docs, false, true), "0123456789ab\n");
        let j: Value = serde_json::from_str(ls_text(&docs, true, false).trim()).unwrap();
        assert_eq!(
            (j["Name"].as_str(), j["Driver"].as_str()),
            (Some("ingress"), Some("overlay"))
        );
    }

    #[test]
    fn inspect_has_dockers_keys_and_the_tasks() {
        let j = inspect_json(&ingress());
        assert_eq!(j["Ingress"], true);
        assert_eq!(j["Scope"], "swarm");
        assert_eq!(j["IPAM"]["Config"][0]["Subnet"], "10.255.0.0/16");
        assert_eq!(j["Containers"]["abc"]["IPv4Address"], "10.255.0.2/24");
        assert_eq!(j["Containers"]["abc"]["Name"], "web.1.abc");
        assert!(j.get("ContainersLeftOut").is_none());
    }
}
