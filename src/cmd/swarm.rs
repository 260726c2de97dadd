//! `swarm-node swarm join-token worker|manager [--rotate] [-q]`.

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use swarm_actors::model::Role;
use swarm_actors::node::JoinTokensView;

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
}

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
    }
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
