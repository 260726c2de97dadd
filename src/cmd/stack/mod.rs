//! `swarm-node stack deploy | ls | services | ps | rm | config`: whole applications from
//! compose files, with Docker's verbs, flags and output. A stack is the objects labelled
//! `com.docker.stack.namespace=<stack>`; every command works through the same control
//! requests as `service`, `network`, `secret` and `config` (plus `ServiceReplace` and
//! `SecretDeploy`, which a redeploy needs), so the node checks everything as it always does.

mod compose;
mod deploy;
mod list;
mod rm;

use std::path::PathBuf;

use anyhow::bail;
use clap::{ArgAction, Subcommand};

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, ServiceInfo};
use crate::stack::NAMESPACE_LABEL;

#[derive(Subcommand, Debug)]
pub enum StackCmd {
    /// Deploy a new stack or update an existing one.
    Deploy(deploy::DeployArgs),
    /// List stacks.
    Ls {
        /// `json`: one object per line, Docker's keys.
        #[arg(long)]
        format: Option<String>,
    },
    /// List the services in the stack.
    Services {
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// `json`: one object per line, Docker's keys.
        #[arg(long)]
        format: Option<String>,
        stack: String,
    },
    /// List the tasks in the stack.
    Ps {
        /// Full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// `json`: one object per line, Docker's keys.
        #[arg(long)]
        format: Option<String>,
        stack: String,
    },
    /// Remove one or more stacks.
    #[command(visible_alias = "remove", visible_alias = "down")]
    Rm {
        #[arg(required = true)]
        stacks: Vec<String>,
    },
    /// Print the merged, interpolated compose file, as it will be deployed.
    Config {
        /// A compose file; several merge in order (repeatable).
        #[arg(short = 'c', long = "compose-file", required = true, action = ArgAction::Append)]
        files: Vec<PathBuf>,
    },
}

pub async fn run(
    cmd: StackCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        StackCmd::Deploy(args) => deploy::run(&args, client, out).await,
        StackCmd::Ls { format } => list::ls(client, format.as_deref(), out).await,
        StackCmd::Services {
            quiet,
            format,
            stack,
        } => list::services(client, &stack, quiet, format.as_deref(), out).await,
        StackCmd::Ps {
            no_trunc,
            quiet,
            format,
            stack,
        } => list::ps(client, &stack, no_trunc, quiet, format.as_deref(), out).await,
        StackCmd::Rm { stacks } => rm::run(client, &stacks, out).await,
        StackCmd::Config { files } => {
            write!(out, "{}", compose::config_text(&files)?)?;
            Ok(())
        }
    }
}

/// Docker's words when a stack has nothing.
pub fn nothing_found(stack: &str) -> String {
    format!("Nothing found in stack: {stack}")
}

/// The stack a labelled object belongs to.
pub fn stack_of(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    labels.get(NAMESPACE_LABEL).map(String::as_str)
}

/// Every service, as `service ls` lists them.
async fn all_services(client: &Client) -> anyhow::Result<Vec<ServiceInfo>> {
    match client.call(ControlRequest::ServiceLs).await? {
        ControlResponse::Services(rows) => Ok(rows),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

/// The services of `stack`, by name.
pub fn of_stack(rows: Vec<ServiceInfo>, stack: &str) -> Vec<ServiceInfo> {
    let mut rows: Vec<ServiceInfo> = rows
        .into_iter()
        .filter(|r| stack_of(&r.labels) == Some(stack))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// A format flag: none (the table) or `json`.
fn json_format(format: Option<&str>) -> anyhow::Result<bool> {
    match format {
        None => Ok(false),
        Some("json") => Ok(true),
        Some(f) => bail!("unknown --format {f:?}: only json is supported"),
    }
}
