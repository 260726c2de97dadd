//! `swarm-node node ls | inspect | update | rm`.

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;

use crate::control::client::Client;
use swarm_actors::model::Availability;

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
    /// Change a node's availability or labels.
    Update {
        /// active, pause or drain.
        #[arg(long)]
        availability: Option<AvailabilityArg>,
        /// Add or change a label, key=value (repeatable).
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a label by key (repeatable).
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        node: String,
    },
    /// Remove nodes from the cluster; their certificates are refused from then on.
    Rm {
        /// Remove a node that is not down.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make workers managers: they join the store's voters.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers; refused for the last manager or when it would break quorum.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// List the tasks on a node (default: the node answering), history included.
    Ps {
        /// Node ID, unique ID prefix, or hostname; `self` for the node answering.
        #[arg(default_value = "self")]
        node: String,
        /// Full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        /// `json`: one object per line, Docker's keys.
        #[arg(long)]
        format: Option<String>,
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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

impl From<AvailabilityArg> for Availability {
    fn from(a: AvailabilityArg) -> Availability {
        match a {
            AvailabilityArg::Active => Availability::Active,
            AvailabilityArg::Pause => Availability::Pause,
            AvailabilityArg::Drain => Availability::Drain,
        }
    }
}

fn parse_label(l: &str) -> (String, String) {
    let (k, v) = l.split_once('=').unwrap_or((l, ""));
    (k.to_string(), v.to_string())
}

async fn done(
    client: &Client,
    req: ControlRequest,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match client.call(req).await? {
        ControlResponse::Done(id) => writeln!(out, "{id}")?,
        other => bail!("unexpected answer from the node: {other:?}"),
    }
    Ok(())
}

pub async fn run(
    cmd: NodeCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let (format, quiet, names, pretty) = match cmd {
        NodeCmd::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let req = ControlRequest::NodeUpdate {
                node,
                availability: availability.map(Availability::from),
                label_add: label_add.iter().map(|l| parse_label(l)).collect(),
                label_rm,
            };
            return done(client, req, out).await;
        }
        NodeCmd::Rm { force, nodes } => {
            for node in nodes {
                done(client, ControlRequest::NodeRm { node, force }, out).await?;
            }
            return Ok(());
        }
        NodeCmd::Promote { nodes } => {
            for node in nodes {
                done(
                    client,
                    ControlRequest::NodeRole {
                        node,
                        manager: true,
                    },
                    out,
                )
                .await?;
            }
            return Ok(());
        }
        NodeCmd::Demote { nodes } => {
            for node in nodes {
                done(
                    client,
                    ControlRequest::NodeRole {
                        node,
                        manager: false,
                    },
                    out,
                )
                .await?;
            }
            return Ok(());
        }
        NodeCmd::Ps {
            node,
            no_trunc,
            format,
        } => {
            let req = ControlRequest::NodePs { node };
            let format = format.as_deref();
            return crate::cmd::service::print_tasks(client, req, no_trunc, format, out).await;
        }
        NodeCmd::Ls { format, quiet } => (format, quiet, None, false),
        NodeCmd::Inspect { nodes, pretty } => (None, false, Some(nodes), pretty),
    };
    let (nodes, stale) = match client.call(ControlRequest::NodeLs).await? {
        ControlResponse::Nodes { nodes, stale } => (nodes, stale),
        other => bail!("unexpected answer from the node: {other:?}"),
    };
    if stale {
        eprintln!("Warning: no manager quorum; this is the local replica's view and may be stale");
    }
    let Some(names) = names else {
        return ls(&nodes, format.as_deref(), quiet, out);
    };
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

fn resolve<'a>(nodes: &'a [NodeInfo], name: &str) -> anyhow::Result<&'a NodeInfo> {
    crate::control::proto::resolve(nodes, name).map_err(|e| anyhow::anyhow!(e))
}

fn inspect_json(n: &NodeInfo) -> serde_json::Value {
    let mut doc = json!({
        "ID": n.id,
        "Version": { "Index": n.version },
        "CreatedAt": n.created_ms,
        "UpdatedAt": n.updated_ms,
        "Spec": {
            "Labels": n.node_labels,
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
    if let Some(m) = &n.mesh {
        doc["Mesh"] = json!({
            "TableVersion": m.table_version,
            "Listening": m.listening,
            "BindErrors": m.bind_errors,
        });
    }
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
    s += &format!("Version:\t\t{}\n", n.version);
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
    if let Some(m) = &n.mesh {
        s += "Routing Mesh:\n";
        s += &format!(" Listening:\t\t{}\n", m.listening.join(", "));
        for e in &m.bind_errors {
            s += &format!(" Bind Error:\t\t{e}\n");
        }
    }
    if !n.node_labels.is_empty() {
        s += "Labels:\n";
        for (k, v) in &n.node_labels {
            s += &format!(" - {k}={v}\n");
        }
    }
    if !n.labels.is_empty() {
        s += "Engine Labels:\n";
        for (k, v) in &n.labels {
            s += &format!(" - {k}={v}\n");
        }
    }
    s += &format!("Engine Version:\t\t{}\n", n.engine_version);
    s
}
