//! `swarm-node service create | ls | ps | inspect | scale | update | rollback | rm | logs`, with Docker's
//! verbs, flags and output. Every command asks the node's control socket; the node refuses
//! them on a worker, as Docker does.

mod container;
pub(crate) mod create;
pub(crate) mod inspect;
mod logs;
mod networks;
pub(crate) mod progress;
pub(crate) mod publish;
mod update;

pub(crate) use update::parse_label;

use anyhow::bail;
use clap::Subcommand;

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, ServiceChange, TaskRow};
use crate::output::{service_table, task_table};

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Create a service.
    Create(Box<create::CreateArgs>),
    /// List services.
    Ls {
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the tasks of a service, history included.
    Ps {
        service: String,
        /// Full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        /// `json`: one object per line, Docker's keys.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show services in detail.
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
        /// Human-readable text instead of JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Set the number of replicas: SERVICE=REPLICAS...
    Scale {
        #[arg(required = true)]
        scales: Vec<String>,
        /// Do not wait for the tasks.
        #[arg(short, long)]
        detach: bool,
    },
    /// Change a service; every flag left out keeps the stored value.
    Update(Box<update::UpdateArgs>),
    /// Go back to the service's previous spec (a second rollback goes forward again).
    Rollback {
        service: String,
        /// Do not wait for the tasks.
        #[arg(short, long)]
        detach: bool,
    },
    /// Remove services.
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show the output of a service's tasks.
    Logs {
        /// Keep printing new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// Lines per task from the end: a number, or all.
        #[arg(long, default_value = "all")]
        tail: String,
        service: String,
    },
}

async fn done(client: &Client, req: ControlRequest) -> anyhow::Result<String> {
    match client.call(req).await? {
        ControlResponse::Done(text) => Ok(text),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

/// `web=5` → (`web`, 5).
pub fn parse_scale(arg: &str) -> anyhow::Result<(String, u64)> {
    let bad = || anyhow::anyhow!("invalid scale specifier {arg:?}: expected SERVICE=REPLICAS");
    let (name, n) = arg.split_once('=').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), n.parse().map_err(|_| bad())?))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prints tasks as `service ps` and `node ps` do.
pub async fn print_tasks(
    client: &Client,
    req: ControlRequest,
    no_trunc: bool,
    format: Option<&str>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if let Some(f) = format.filter(|f| *f != "json") {
        bail!("unknown --format {f:?}: only json is supported");
    }
    let rows: Vec<TaskRow> = match client.call(req).await? {
        ControlResponse::Tasks(rows) => rows,
        other => bail!("unexpected answer from the node: {other:?}"),
    };
    match format {
        Some(_) => write!(out, "{}", crate::output::task_json(&rows, now_ms()))?,
        None => write!(out, "{}", task_table(&rows, now_ms(), no_trunc))?,
    }
    Ok(())
}

pub async fn run(
    cmd: ServiceCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Create(args) => {
            let spec = create::build_spec(&args)?;
            let name = spec.name.clone();
            let req = ControlRequest::ServiceCreate {
                spec: Box::new(spec),
                networks: networks::parse_networks(&args.networks)?,
            };
            let id = done(client, req).await?;
            writeln!(out, "{id}")?;
            if !args.detach {
                progress::wait(client, &name, out).await?;
            }
        }
        ServiceCmd::Ls { quiet } => {
            let rows = match client.call(ControlRequest::ServiceLs).await? {
                ControlResponse::Services(rows) => rows,
                other => bail!("unexpected answer from the node: {other:?}"),
            };
            if quiet {
                for r in rows {
                    writeln!(out, "{}", r.id)?;
                }
                return Ok(());
            }
            write!(out, "{}", service_table(&rows))?;
        }
        ServiceCmd::Ps {
            service,
            no_trunc,
            format,
        } => {
            let req = ControlRequest::ServicePs { service };
            print_tasks(client, req, no_trunc, format.as_deref(), out).await?;
        }
        ServiceCmd::Inspect { services, pretty } => {
            let docs = match client
                .call(ControlRequest::ServiceInspect { services })
                .await?
            {
                ControlResponse::ServiceDocs(d) => d,
                other => bail!("unexpected answer from the node: {other:?}"),
            };
            if pretty {
                for (i, d) in docs.iter().enumerate() {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    write!(out, "{}", inspect::pretty(d))?;
                }
            } else {
                let json: Vec<_> = docs.iter().map(inspect::json_doc).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
            }
        }
        ServiceCmd::Scale { scales, detach } => {
            let parsed = scales
                .iter()
                .map(|s| parse_scale(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut failed = Vec::new();
            for (service, replicas) in parsed {
                let change = Box::new(ServiceChange {
                    replicas: Some(replicas),
                    ..Default::default()
                });
                let req = ControlRequest::ServiceUpdate {
                    service: service.clone(),
                    change,
                };
                match done(client, req).await {
                    Ok(_) => {
                        writeln!(out, "{service} scaled to {replicas}")?;
                        if !detach {
                            progress::wait(client, &service, out).await?;
                        }
                    }
                    Err(e) => failed.push(format!("{e:#}")),
                }
            }
            if !failed.is_empty() {
                bail!("{}", failed.join("\n"));
            }
        }
        ServiceCmd::Update(args) => update::run(&args, client, out).await?,
        ServiceCmd::Rollback { service, detach } => {
            update::rollback(&service, detach, client, out).await?
        }
        ServiceCmd::Rm { services } => {
            let mut failed = Vec::new();
            for service in services {
                match done(client, ControlRequest::ServiceRm { service }).await {
                    Ok(name) => writeln!(out, "{name}")?,
                    Err(e) => failed.push(format!("{e:#}")),
                }
            }
            if !failed.is_empty() {
                bail!("{}", failed.join("\n"));
            }
        }
        ServiceCmd::Logs {
            follow,
            tail,
            service,
        } => {
            let tail = logs::parse_tail(&tail).map_err(anyhow::Error::msg)?;
            logs::run(client, &service, tail, follow, out).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_specifiers() {
        assert_eq!(parse_scale("web=5").unwrap(), ("web".to_string(), 5));
        for bad in ["web", "=5", "web=", "web=-1", "web=five"] {
            assert!(parse_scale(bad).is_err(), "{bad:?} accepted");
        }
    }
}
