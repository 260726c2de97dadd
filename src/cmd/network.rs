//! `swarm-node network ls | inspect | create | rm`, with Docker's output. There is one network
//! today, `ingress`, which every task is attached to and published ports are reached through;
//! user-defined networks are a later change, and `create`/`rm` say so.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, NetworkDoc};
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
    /// Not yet: user-defined networks come with a later change.
    Create {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Not yet: the ingress network cannot be removed, and there are no others.
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

const NOT_YET: &str = "user-defined networks are not supported yet: every task is attached to \
    the `ingress` network, and published ports are reached through it";

async fn networks(client: &Client, req: ControlRequest) -> anyhow::Result<Vec<NetworkDoc>> {
    match client.call(req).await? {
        ControlResponse::Networks(n) => Ok(n),
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
        NetworkCmd::Create { .. } => bail!("network create: {NOT_YET}"),
        NetworkCmd::Rm { networks } => {
            bail!("network rm {}: {NOT_YET}", networks.join(" "))
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
                json!({
                    "ID": short(d), "Name": d.name, "Driver": d.driver, "Scope": d.scope,
                    "IPv6": "false", "Internal": "false", "Labels": "",
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
    let mut v = json!({
        "Name": d.name,
        "Id": d.id,
        "Scope": d.scope,
        "Driver": d.driver,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [ { "Subnet": d.subnet } ] },
        "Internal": false,
        "Attachable": false,
        "Ingress": d.ingress,
        "Containers": containers,
        "Options": {},
        "Labels": {},
    });
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
        }
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
