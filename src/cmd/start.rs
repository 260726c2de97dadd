//! `swarm-node start`: bootstrap a cluster or join one, then run the node in the foreground
//! until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use swarm_actors::membership::MembershipConfig;
use swarm_actors::model::{NodeDescription, NodeId, Role, validate_label};
use swarm_actors::node::{self, Authority, NodeArgs, NodeFile, host};
use swarm_actors::registry::Registry;
use swarm_actors::transport::{self, Transport, TransportConfig};
use swarm_actors::trust::{self, JoinToken, NodeCredentials, NodeKey};
use swarm_actors::wire::JoinRequest;
use tracing::{info, warn};

use crate::cmd::swarm::join_instructions;
use crate::control::server::{self, ControlContext};

/// How long a join may take, handshake and admission included.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Address of this node's QUIC endpoint.
    #[arg(long, default_value = "127.0.0.1:2377")]
    listen: SocketAddr,
    /// Address other nodes use to reach this one, when it differs from --listen.
    #[arg(long)]
    advertise_addr: Option<SocketAddr>,
    /// A member of the cluster to join (host:port). Without it, a new cluster is made.
    #[arg(long, requires = "token")]
    seed: Option<String>,
    /// The join token (`swarm-node swarm join-token worker|manager` prints it).
    #[arg(long, requires = "seed")]
    token: Option<String>,
    /// The name `node ls` shows. Default: the machine's hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// A label k=v for this node (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Validity of the node certificates this node issues, in seconds (when it holds the CA).
    /// Nodes renew at a random point between 50 % and 80 % of it.
    #[arg(long, default_value_t = node::CERT_VALIDITY.as_secs())]
    cert_validity_s: u64,
}

pub async fn run(args: StartArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    init_logging();
    trust::install_crypto_provider();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot make the data dir {}", data_dir.display()))?;
    let advertise = args.advertise_addr.unwrap_or(args.listen);
    if advertise.ip().is_unspecified() {
        bail!(
            "--listen {} is a wildcard address: give --advertise-addr",
            args.listen
        );
    }
    let labels = parse_labels(&args.labels)?;
    if args.cert_validity_s < node::CERT_VALIDITY_MIN.as_secs() {
        bail!(
            "--cert-validity-s must be at least {} seconds",
            node::CERT_VALIDITY_MIN.as_secs()
        );
    }
    let hostname = args.hostname.clone().unwrap_or_else(host::hostname);

    let mut node_file = NodeFile::load(&data_dir)?;
    let (creds, authority, fresh) =
        identity(&args, &data_dir, &hostname, advertise, &mut node_file).await?;
    node_file.boots += 1;
    node_file.save(&data_dir)?;

    let (runtimes, engine_version) = host::runtimes().await;
    let description = NodeDescription {
        id: creds.node_id,
        hostname,
        addr: advertise,
        role: creds.role,
        resources: host::resources(),
        labels,
        runtimes,
        engine_version,
        // Newer than any description this node gossiped in an earlier run.
        version: node_file.boots,
    };
    description.validate()?;

    let (transport, inbound) = Transport::bind(TransportConfig::new(args.listen), &creds)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut membership = MembershipConfig::lan();
    // Gossip rides QUIC datagrams, which have a smaller payload than raw UDP.
    membership.max_packet_bytes = membership
        .max_packet_bytes
        .min(transport::DATAGRAM_BYTES_MAX);
    membership.validate()?;
    let registry = Registry::new();
    let leads = authority.is_some();
    let node_id = creds.node_id;
    let role = creds.role;
    let node_args = NodeArgs {
        data_dir: data_dir.clone(),
        creds,
        authority,
        description,
        membership,
        transport: transport.clone(),
        node_file,
        rng_seed: rand::random(),
    };
    let (handle, actor_done) = node::spawn_node(node_args, inbound, &registry)
        .await
        .map_err(|e| anyhow::anyhow!("the node actor did not start: {e}"))?;

    let sock = data_dir.join("control.sock");
    let listener = server::bind(&sock)
        .with_context(|| format!("cannot open the control socket {}", sock.display()))?;
    let ctx = ControlContext {
        node: handle.clone(),
        registry: registry.clone(),
        leads,
    };
    tokio::spawn(server::serve(listener, ctx));

    if fresh && leads {
        let tokens = handle.join_tokens().await?;
        println!("Swarm initialized: current node ({node_id}) is now a manager.\n");
        print!("{}", join_instructions(&tokens, Role::Worker));
        print!("{}", join_instructions(&tokens, Role::Manager));
    } else if fresh {
        println!("This node joined a swarm as a {role}: node ID {node_id}.");
    } else {
        println!(
            "Node {node_id} ({role}) restarted from {}.",
            data_dir.display()
        );
    }
    info!(node = %node_id, listen = %args.listen, control = %sock.display(), "ready");

    wait_for_signal().await?;
    info!("stopping: leaving the cluster");
    if let Err(e) = handle.leave().await {
        warn!(error = %e, "could not announce leaving");
    }
    // Give the leave announcement a moment on the wire before the endpoint closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.actor().stop(None);
    // The actor's task ends when it stops; an error here means it panicked, already logged.
    let _ = actor_done.await;
    transport.shutdown().await;
    let _ = std::fs::remove_file(&sock); // a stale socket is replaced at the next start anyway
    info!("stopped");
    Ok(())
}

/// Loads this node's credentials, or makes them: by joining through a seed, or by
/// bootstrapping a new cluster. Returns whether they are new.
async fn identity(
    args: &StartArgs,
    data_dir: &std::path::Path,
    hostname: &str,
    advertise: SocketAddr,
    node_file: &mut NodeFile,
) -> anyhow::Result<(NodeCredentials, Option<Authority>, bool)> {
    if let Some(creds) = NodeCredentials::load(data_dir)? {
        if args.seed.is_some() {
            warn!(
                "this data dir already belongs to node {}: --seed and --token are ignored",
                creds.node_id
            );
        }
        let authority = Authority::load(data_dir, Duration::from_secs(args.cert_validity_s))?;
        return Ok((creds, authority, false));
    }
    match (&args.seed, &args.token) {
        (Some(seed), Some(token)) => {
            let seed_addr = resolve(seed).await?;
            let token: JoinToken = token.parse().context("the --token is malformed")?;
            let key = NodeKey::generate()?;
            let req = JoinRequest {
                token: token.to_string(),
                csr_der: key.csr_der()?,
                hostname: hostname.to_string(),
                addr: advertise,
            };
            let resp = transport::join(seed_addr, &token.ca_digest, req, JOIN_TIMEOUT)
                .await
                .with_context(|| format!("cannot join the cluster through {seed_addr}"))?;
            let creds = NodeCredentials::from_parts(key, resp.cert_der, resp.ca_cert_der)?;
            creds.save(data_dir)?;
            node_file.remember(resp.peers);
            node_file.remember([seed_addr]);
            Ok((creds, None, true))
        }
        (None, None) => {
            let mut rng = rand::rng();
            let node_id = loop {
                let id = NodeId(rand::RngExt::random(&mut rng));
                if id != NodeId::UNKNOWN {
                    break id;
                }
            };
            let (authority, creds) = Authority::bootstrap(
                data_dir,
                node_id,
                SystemTime::now(),
                Duration::from_secs(args.cert_validity_s),
                &mut rng,
            )?;
            Ok((creds, Some(authority), true))
        }
        _ => bail!("--seed and --token go together"),
    }
}

async fn resolve(seed: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(seed)
        .await
        .with_context(|| format!("cannot resolve --seed {seed}"))?
        .next()
        .with_context(|| format!("--seed {seed} resolves to no address"))
}

fn parse_labels(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for l in raw {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        validate_label(k, v)?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only when a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
