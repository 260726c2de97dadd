//! `swarm-node swarm join-token worker|manager [--rotate] [-q]` and
//! `swarm-node swarm ca [--rotate] [--detach] [-q]`.
//!
//! `swarm ca --rotate` follows the rotation as Docker's does, one line per change (two phases:
//! nodes re-issued certificates under the new root, then nodes trusting the new root alone):
//!
//! ```text
//! rotated TLS certificates:  [=========================>                         ] 2/3 nodes
//! rotated CA certificates:   [>                                                  ] 0/3 nodes
//! Successfully rotated root CA
//! ```

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use swarm_actors::model::Role;
use swarm_actors::node::{CaView, JoinTokensView};

use crate::cmd::service::progress::{BAR_CHARS, bar};
use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse};

#[derive(Subcommand, Debug)]
pub enum SwarmCmd {
    /// Print (or rotate) the token that joins a node as a worker or a manager.
    JoinToken {
        role: RoleArg,
        /// Replace the token; the old one stops admitting nodes.
        #[arg(long)]
        rotate: bool,
        /// Only the token.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the root CA certificate (PEM), or replace the root CA with --rotate.
    Ca {
        /// Replace the root CA: every node gets a certificate under a new root, then trusts
        /// the new root alone. A node down meanwhile must join again.
        #[arg(long)]
        rotate: bool,
        /// Return once the rotation has started instead of following it.
        #[arg(short, long)]
        detach: bool,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// How often `swarm ca --rotate` asks how far the rotation has come.
pub const CA_POLL: Duration = Duration::from_millis(500);

/// How long `swarm ca --rotate` follows a rotation before it stops waiting (the rotation goes
/// on; `swarm ca` shows where it stands).
pub const CA_WAIT_MAX: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Worker,
    Manager,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Worker => Role::Worker,
            RoleArg::Manager => Role::Manager,
        }
    }
}

pub async fn run(
    cmd: SwarmCmd,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        SwarmCmd::JoinToken {
            role,
            rotate,
            quiet,
        } => {
            let role = Role::from(role);
            let tokens = match client
                .call(ControlRequest::JoinToken { role, rotate })
                .await?
            {
                ControlResponse::Tokens(t) => t,
                other => bail!("unexpected answer from the node: {other:?}"),
            };
            if rotate && !quiet {
                writeln!(out, "Successfully rotated {role} join token.\n")?;
            }
            if quiet {
                writeln!(out, "{}", token_for(&tokens, role))?;
            } else {
                write!(out, "{}", join_instructions(&tokens, role))?;
            }
            Ok(())
        }
        SwarmCmd::Ca {
            rotate,
            detach,
            quiet,
        } => ca(client, rotate, detach, quiet, out).await,
    }
}

async fn ca_call(client: &Client, rotate: bool) -> anyhow::Result<CaView> {
    match client.call(ControlRequest::Ca { rotate }).await? {
        ControlResponse::Ca(v) => Ok(v),
        ControlResponse::Error(e) => bail!("{e}"),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

async fn ca(
    client: &Client,
    rotate: bool,
    detach: bool,
    quiet: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut view = ca_call(client, rotate).await?;
    if !rotate || detach {
        if rotate && !quiet {
            writeln!(
                out,
                "Root CA rotation started; `swarm ca` shows its progress."
            )?;
        }
        write!(out, "{}", view.root_pem)?;
        return Ok(());
    }
    let started = Instant::now();
    let mut shown = String::new();
    while view.rotation.is_some() {
        let lines = ca_progress(&view);
        if !quiet && lines != shown {
            write!(out, "{lines}")?;
            out.flush()?;
            shown = lines;
        }
        if started.elapsed() > CA_WAIT_MAX {
            bail!(
                "the root rotation has not finished after {} s; it goes on: `swarm ca` shows \
                 where it stands",
                CA_WAIT_MAX.as_secs()
            );
        }
        tokio::time::sleep(CA_POLL).await;
        view = ca_call(client, false).await?;
    }
    if !quiet {
        writeln!(out, "Successfully rotated root CA")?;
    }
    write!(out, "{}", view.root_pem)?;
    Ok(())
}

/// The two progress lines of a rotation: certificates re-issued, then roots trusted. In the
/// second phase the first line is full.
pub fn ca_progress(view: &CaView) -> String {
    let Some(r) = &view.rotation else {
        return String::new();
    };
    let line = |label: &str, done: usize, total: usize| {
        let filled = (done as u64 * BAR_CHARS)
            .checked_div(total as u64)
            .unwrap_or(BAR_CHARS);
        format!("{label:<27}{} {done}/{total} nodes\n", bar(filled))
    };
    let (certs, roots) = if r.phase == "certs" {
        ((r.done, r.total), (0, r.total))
    } else {
        ((r.total, r.total), (r.done, r.total))
    };
    line("rotated TLS certificates:", certs.0, certs.1)
        + &line("rotated CA certificates:", roots.0, roots.1)
}

fn token_for(t: &JoinTokensView, role: Role) -> &str {
    match role {
        Role::Worker => &t.worker,
        Role::Manager => &t.manager,
    }
}

/// The text `swarm join-token` and `start` print: the command that joins a node.
pub fn join_instructions(t: &JoinTokensView, role: Role) -> String {
    format!(
        "To add a {role} to this swarm, run the following command:\n\n    swarm-node start --seed {} --token {} --listen <this-host>:2377 --data-dir <dir>\n\n",
        t.addr,
        token_for(t, role)
    )
}
