//! The command line: one file per command, dispatched by [`Command`].

mod network;
mod node;
mod secret;
pub(crate) mod service;
mod shell;
mod stack;
mod start;
mod swarm;
pub mod units;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use swarm_actors::model::FileKind;

use crate::control::client::Client;

#[derive(Parser, Debug)]
#[command(
    name = "swarm-node",
    version,
    about = "A container orchestrator in the spirit of Docker Swarm mode"
)]
pub struct Cli {
    /// The node to talk to: unix:///path/to/control.sock. Default: <data-dir>/control.sock.
    #[arg(short = 'H', long, env = "SWARM_NODE_HOST", global = true)]
    pub host: Option<String>,
    /// Where the node keeps its identity, certificates and state.
    #[arg(long, env = "SWARM_NODE_DATA_DIR", global = true, default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".swarm-node"),
        None => PathBuf::from("/var/lib/swarm-node"),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node in the foreground: bootstrap a cluster, or join one with --seed and --token.
    Start(start::StartArgs),
    /// Manage nodes.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Manage the cluster.
    #[command(subcommand)]
    Swarm(swarm::SwarmCmd),
    /// Networks: `ingress`, which every task is attached to and published ports are reached
    /// through, and overlay networks services attach to (`create`, `ls`, `inspect`, `rm`).
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage services. `create`, `update` and `scale` wait until the tasks run, then watch
    /// them for the service's monitor period (5 s by default; the SWARM_NODE_VERIFY_MS
    /// environment variable overrides it, in milliseconds).
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Manage secrets: data services' tasks read as files, never shown again once created.
    #[command(subcommand)]
    Secret(secret::FileCmd),
    /// Manage configs: like secrets, but their data can be read back with `config inspect`.
    #[command(subcommand)]
    Config(secret::FileCmd),
    /// Deploy and manage whole applications from compose files (`deploy`, `ls`, `services`,
    /// `ps`, `rm`, `config`).
    #[command(subcommand)]
    Stack(stack::StackCmd),
    /// The admin shell: every command, plus `actors` and `send`.
    Shell,
    /// List the named actors on the node.
    Actors,
    /// Send a typed message to a named actor and print the reply.
    Send {
        /// The actor's name, as `actors` lists it (e.g. node/<id>).
        actor: String,
        /// The message name (e.g. Describe).
        msg: String,
        /// Arguments as JSON, when the message takes any.
        args: Vec<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Start(args) = cli.command {
        return start::run(args, cli.data_dir).await;
    }
    let client = Client::new(cli.host.as_deref(), &cli.data_dir)?;
    let mut out = std::io::stdout();
    run_client(cli.command, &client, &mut out).await
}

/// Runs a client command, writing what it prints to `out` (the shell reuses this).
pub async fn run_client(
    command: Command,
    client: &Client,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match command {
        Command::Start(_) => anyhow::bail!("`start` runs a node; it is not a client command"),
        Command::Node(cmd) => node::run(cmd, client, out).await,
        Command::Swarm(cmd) => swarm::run(cmd, client, out).await,
        Command::Network(cmd) => network::run(cmd, client, out).await,
        Command::Service(cmd) => service::run(cmd, client, out).await,
        Command::Secret(cmd) => secret::run(FileKind::Secret, cmd, client, out).await,
        Command::Config(cmd) => secret::run(FileKind::Config, cmd, client, out).await,
        Command::Stack(cmd) => stack::run(cmd, client, out).await,
        Command::Shell => shell::run(client).await,
        Command::Actors => shell::actors(client, out).await,
        Command::Send { actor, msg, args } => {
            shell::send(client, &actor, &msg, &args.join(" "), out).await
        }
    }
}
