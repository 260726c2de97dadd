//! `swarm-node swarm join-token worker|manager [--rotate] [-q]`,
//! `swarm-node swarm ca [--rotate] [--detach] [-q]`, and autolock's
//! `swarm update --autolock=true|false`, `swarm unlock-key [-q] [--rotate]`, `swarm unlock`.
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
use swarm_actors::store::lock::UnlockKey;

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
    /// Change the cluster's settings.
    Update {
        /// Seal every manager's store key under an unlock key (printed), or stop doing so.
        /// A restarted manager with autolock on stays locked until `swarm unlock`.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        autolock: Option<bool>,
    },
    /// Print (or rotate) the key that unlocks a restarted manager when autolock is on.
    UnlockKey {
        /// Replace the key; each manager re-seals under the new one within seconds (until
        /// then, the old key still unlocks it).
        #[arg(long)]
        rotate: bool,
        /// Only the key.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Unlock a locked manager: reads the unlock key from a prompt or stdin.
    Unlock,
}

/// Most bytes read from stdin for `swarm unlock` (a key is 73 characters).
pub const UNLOCK_INPUT_BYTES_MAX: u64 = 1024;

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
        SwarmCmd::Update { autolock } => {
            let (key, changed) =
                unlock_key_call(client, ControlRequest::SwarmUpdate { autolock }).await?;
            writeln!(out, "Swarm updated.")?;
            if let (Some(key), true, Some(true)) = (key, changed, autolock) {
                write!(out, "{}", unlock_instructions(&key))?;
            }
            Ok(())
        }
        SwarmCmd::UnlockKey { rotate, quiet } => {
            let (key, _) = unlock_key_call(client, ControlRequest::UnlockKey { rotate }).await?;
            let key = key.ok_or_else(|| anyhow::anyhow!("the node answered without a key"))?;
            if quiet {
                writeln!(out, "{key}")?;
            } else {
                if rotate {
                    writeln!(out, "Successfully rotated manager unlock key.\n")?;
                }
                write!(out, "{}", unlock_instructions(&key))?;
            }
            Ok(())
        }
        SwarmCmd::Unlock => {
            let key = read_unlock_key()?;
            match client.call(ControlRequest::Unlock { key }).await? {
                ControlResponse::Done(_) => Ok(()),
                other => bail!("unexpected answer from the node: {other:?}"),
            }
        }
    }
}

async fn unlock_key_call(
    client: &Client,
    req: ControlRequest,
) -> anyhow::Result<(Option<String>, bool)> {
    match client.call(req).await? {
        ControlResponse::UnlockKey { key, changed } => Ok((key, changed)),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

/// The key from stdin (one line, at most [`UNLOCK_INPUT_BYTES_MAX`]), after a prompt when stdin
/// is a terminal. Checked for its form here, so a typo is refused before the node is asked.
fn read_unlock_key() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _, Read as _};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Please enter unlock key: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .take(UNLOCK_INPUT_BYTES_MAX)
        .read_line(&mut line)?;
    let key = line.trim();
    if key.is_empty() {
        bail!("invalid key: none given (type it, or pipe it to stdin); nothing changed");
    }
    key.parse::<UnlockKey>()?;
    Ok(key.to_string())
}

/// The text `start --autolock`, `swarm update --autolock=true` and `swarm unlock-key` print
/// (Docker's wording).
pub fn unlock_instructions(key: &str) -> String {
    format!(
        "To unlock a swarm manager after it restarts, run the `swarm-node swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nPlease remember to store this key in a password manager, since without it you\nwill not be able to restart the manager.\n"
    )
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
