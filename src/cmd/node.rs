//! `swarm-node node ls | inspect`.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, NodeInfo};
use crate::output::table;

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List the nodes in the cluster.
    Ls {
        /// `json` prints one JSON object per line, with Docker's keys.
        #[arg(long)]
        format: Option<String>,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show one or more nodes in detail.
    Inspect {
        /// Node ID, unique ID prefix, or hostname; `self` for the node answering.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Human-readable text instead of JSON.
        #[arg(long)]
        pretty: bool,
    },
}

pub async fn run(
    cmd: NodeCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let nodes = match client.call(ControlRequest::NodeLs).await? {
        ControlResponse::Nodes(n) => n,
        other => bail!("unexpected answer from the node: {other:?}"),
    };
    match cmd {
        NodeCmd::Ls { format, quiet } => ls(&nodes, format.as_deref(), quiet, out),
        NodeCmd::Inspect {
            nodes: names,
            pretty,
        } => {
            let mut found = Vec::new();
            for name in &names {
                found.push(resolve(&nodes, name)?);
            }
            if pretty {
                for n in found {
                    write!(out, "{}", pretty_text(n))?;
                }
            } else {
                let docs: Vec<_> = found.into_iter().map(inspect_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
            }
            Ok(())
        }
    }
}

fn ls(
    nodes: &[NodeInfo],
    format: Option<&str>,
    quiet: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if quiet {
        for n in nodes {
            writeln!(out, "{}", n.id)?;
        }
        return Ok(());
    }
    match format {
        Some("json") | Some("{{json .}}") => {
            for n in nodes {
                let row = json!({
                    "Availability": n.availability,
                    "EngineVersion": n.engine_version,
                    "Hostname": n.hostname,
                    "ID": n.id,
                    "ManagerStatus": n.manager_status,
                    "Self": n.is_self,
                    "Status": n.status,
                    "TLSStatus": "Ready",
                });
                writeln!(out, "{row}")?;
            }
        }
        Some(other) => bail!("unknown --format {other:?}: only json is supported"),
        None => {
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| {
                    vec![
                        if n.is_self {
                            format!("{} *", n.id)
                        } else {
                            n.id.clone()
                        },
                        n.hostname.clone(),
                        n.status.clone(),
                        n.availability.clone(),
                        n.manager_status.clone(),
                        n.engine_version.clone(),
                    ]
                })
                .collect();
            let headers = [
                "ID",
                "HOSTNAME",
                "STATUS",
                "AVAILABILITY",
                "MANAGER STATUS",
                "ENGINE VERSION",
            ];
            write!(out, "{}", table(&headers, &rows))?;
        }
    }
    Ok(())
}

/// Finds a node by full ID, unique ID prefix, hostname, or `self`.
fn resolve<'a>(nodes: &'a [NodeInfo], name: &str) -> anyhow::Result<&'a NodeInfo> {
    if name == "self" {
        return nodes
            .iter()
            .find(|n| n.is_self)
            .context("the answering node is not in its own list");
    }
    if let Some(n) = nodes.iter().find(|n| n.id == name) {
        return Ok(n);
    }
    let by_host: Vec<_> = nodes.iter().filter(|n| n.hostname == name).collect();
    if by_host.len() == 1 {
        return Ok(by_host[0]);
    }
    let by_prefix: Vec<_> = nodes.iter().filter(|n| n.id.starts_with(name)).collect();
    match (by_prefix.len(), by_host.len()) {
        (1, _) => Ok(by_prefix[0]),
        (0, 0) => bail!("no such node: {name}"),
        _ => bail!("node {name} is ambiguous: give more of its ID"),
    }
}

fn inspect_json(n: &NodeInfo) -> serde_json::Value {
    let mut doc = json!({
        "ID": n.id,
        "Version": { "Index": n.description_version },
        "Spec": {
            "Labels": {},
            "Role": n.role,
            "Availability": n.availability.to_lowercase(),
        },
        "Description": {
            "Hostname": n.hostname,
            "Platform": { "Architecture": std::env::consts::ARCH, "OS": std::env::consts::OS },
            "Resources": { "NanoCPUs": n.nano_cpus, "MemoryBytes": n.memory_bytes },
            "Engine": {
                "EngineVersion": n.engine_version,
                "Labels": n.labels,
                "Runtimes": n.runtimes,
            },
        },
        "Status": { "State": n.status.to_lowercase(), "Addr": n.addr },
    });
    if n.role == "manager" {
        doc["ManagerStatus"] = json!({
            "Leader": n.manager_status == "Leader",
            "Reachability": if n.status == "Ready" { "reachable" } else { "unreachable" },
            "Addr": n.addr,
        });
    }
    doc
}

fn pretty_text(n: &NodeInfo) -> String {
    let mut s = String::new();
    s += &format!("ID:\t\t\t{}\n", n.id);
    s += &format!("Hostname:\t\t{}\n", n.hostname);
    s += &format!("Joined at:\t\t(version {})\n", n.description_version);
    s += "Status:\n";
    s += &format!(" State:\t\t\t{}\n", n.status);
    s += &format!(" Availability:\t\t{}\n", n.availability);
    s += &format!(" Address:\t\t{}\n", n.addr);
    if n.role == "manager" {
        s += "Manager Status:\n";
        s += &format!(" Address:\t\t{}\n", n.addr);
        s += &format!(
            " Raft Status:\t\t{}\n",
            if n.status == "Ready" {
                "Reachable"
            } else {
                "Unreachable"
            }
        );
        s += &format!(
            " Leader:\t\t{}\n",
            if n.manager_status == "Leader" {
                "Yes"
            } else {
                "No"
            }
        );
    }
    s += "Platform:\n";
    s += &format!(" Operating System:\t{}\n", std::env::consts::OS);
    s += &format!(" Architecture:\t\t{}\n", std::env::consts::ARCH);
    s += "Resources:\n";
    s += &format!(" CPUs:\t\t\t{}\n", n.nano_cpus / 1_000_000_000);
    s += &format!(
        " Memory:\t\t{:.1}GiB\n",
        n.memory_bytes as f64 / (1u64 << 30) as f64
    );
    s += &format!("Runtimes:\t\t{}\n", n.runtimes.join(", "));
    if !n.labels.is_empty() {
        s += "Engine Labels:\n";
        for (k, v) in &n.labels {
            s += &format!(" - {k}={v}\n");
        }
    }
    s += &format!("Engine Version:\t\t{}\n", n.engine_version);
    s
}
