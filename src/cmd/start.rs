//! `swarm-node start`: bootstrap a cluster or join one, then run the node in the foreground
//! until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use swarm_actors::membership::MembershipConfig;
use swarm_actors::model::{Availability, NodeDescription, NodeId, Role, validate_label};
use swarm_actors::node::{self, Authority, NodeArgs, NodeFile, admission, host};
use swarm_actors::registry::Registry;
use swarm_actors::replica::{self, StoreArgs, StoreHandle};
use swarm_actors::store::{
    self, Bootstrap, ClusterObject, Expect, Kind, NodeObject, NodeSpec, ObjectBody, Op,
    StoreCommand, StoreConfig,
    lock::{self, UnlockKey},
};
use swarm_actors::transport::{self, Transport, TransportConfig};
use swarm_actors::trust::{self, JoinToken, NodeCredentials, NodeKey};

use swarm_actors::wire::JoinRequest;
use tracing::{info, warn};

use crate::cmd::swarm::{join_instructions, unlock_instructions};
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
    /// Validity of the node certificates this node issues, in seconds (on managers).
    /// Nodes renew at a random point between 50 % and 80 % of it.
    #[arg(long, default_value_t = node::CERT_VALIDITY.as_secs())]
    cert_validity_s: u64,
    /// Recovery after losing quorum: restart this manager's store as a one-manager cluster,
    /// keeping every object. Other managers must be removed or re-joined afterwards.
    #[arg(long)]
    force_new_cluster: bool,
    /// Managers: take a store snapshot (and compact the raft log) every this many entries.
    #[arg(long, default_value_t = StoreConfig::default().snapshot_every_entries)]
    snapshot_every_entries: u64,
    /// A new cluster with autolock on: each manager's store key is sealed under an unlock key,
    /// printed once, which a restarted manager needs (`swarm unlock`) before it runs.
    #[arg(long, conflicts_with = "seed")]
    autolock: bool,
}

/// Who this node is, and how its store (if it is a manager) starts.
struct Identity {
    creds: NodeCredentials,
    fresh: bool,
    /// For a new cluster: the authority to write into the store once it leads.
    new_cluster: Option<Authority>,
    bootstrap: Option<Bootstrap>,
}

pub async fn run(args: StartArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    init_logging();
    trust::install_crypto_provider();
    secure_data_dir(&data_dir)?;
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

    // Probe the host before joining: a manager's store must start right after the join, since
    // the cluster counts it as a voter from then on.
    let (runtimes, engine_version) = host::runtimes().await;
    let mut node_file = NodeFile::load(&data_dir)?;
    let validity = Duration::from_secs(args.cert_validity_s);
    let ident = identity(
        &args,
        &data_dir,
        &hostname,
        advertise,
        &mut node_file,
        validity,
    )
    .await?;
    // A manager whose store key is sealed waits here for `swarm unlock`, before it joins
    // membership or runs anything: only its control socket answers, and says it is locked.
    let early_control = if ident.bootstrap.is_some() && lock::is_locked(&data_dir)? {
        if args.autolock {
            warn!(
                "--autolock is for a new cluster: this one's setting is `swarm update --autolock`"
            );
        }
        match wait_unlocked(&data_dir).await? {
            Some(socket) => Some(socket),
            None => return Ok(()),
        }
    } else {
        if args.autolock && !fresh_cluster(&ident) {
            warn!(
                "--autolock is for a new cluster: this one's setting is `swarm update --autolock`"
            );
        }
        None
    };
    node_file.boots += 1;
    node_file.save(&data_dir)?;
    let creds = ident.creds;
    let fresh = ident.fresh;

    let description = NodeDescription {
        id: creds.node_id,
        hostname,
        addr: advertise,
        role: creds.role,
        resources: host::resources(),
        labels,
        runtimes: runtimes.clone(),
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
    let node_id = creds.node_id;
    let role = creds.role;
    // Who the store names as managers, as this node last learned it: shared by the store, the
    // agent and the node actor, which check manager-only messages against it.
    let managers = trust::ManagerSet::default();

    let store = match (ident.bootstrap, node_file.raft_id) {
        (Some(bootstrap), Some(raft_id)) => {
            if args.force_new_cluster {
                let mut storage = store::RedbStorage::open(&data_dir)?;
                store::force_new_cluster(&mut storage, raft_id)?;
                warn!(
                    "--force-new-cluster: this manager is now the only voter; its objects are kept"
                );
            }
            let store_args = StoreArgs {
                data_dir: data_dir.clone(),
                raft_id,
                node_id,
                bootstrap,
                config: store_config(&args)?,
                transport: transport.clone(),
                rng_seed: rand::random(),
                registry: Some(registry.clone()),
                managers: managers.clone(),
            };
            let (handle, _done) = replica::spawn_store(store_args)
                .await
                .map_err(|e| anyhow::anyhow!("the store did not start: {e}"))?;
            Some(handle)
        }
        (None, _) => None,
        (Some(_), None) => bail!("this node is a manager but its data dir holds no raft ID"),
    };
    // A new cluster with --autolock: the key goes into the first cluster object, and this
    // manager seals its store key at once rather than at the watcher's first look.
    let unlock_key = match (args.autolock, &ident.new_cluster) {
        (true, Some(_)) => Some(UnlockKey::generate()?),
        _ => None,
    };
    if let (Some(store), Some(auth)) = (&store, &ident.new_cluster) {
        let mut cluster = auth.to_cluster();
        cluster.unlock_key = unlock_key.clone();
        seed_new_cluster(store, cluster, node_id, advertise, node_file.raft_id).await?;
        if let Some(key) = &unlock_key {
            lock::reseal(&data_dir, Some(key))?;
        }
    }
    if let Some(store) = &store {
        registry.register(
            format!("store/{node_id}"),
            std::sync::Arc::new(StoreAdmin(store.clone())),
        )?;
    }

    // The routing mesh: the runtimes record where each task listens, the agent publishes
    // each table the leader sends, and the mesh serves the published ports from both.
    let endpoints = swarm_actors::runtime::Endpoints::default();
    let (mesh_feed, mesh_tables) = tokio::sync::watch::channel(None);
    let mesh = swarm_actors::mesh::Mesh::start(
        node_id,
        swarm_actors::mesh::MeshConfig::default(),
        transport.clone(),
        endpoints.clone(),
        mesh_tables,
    );
    registry.register(format!("mesh/{node_id}"), std::sync::Arc::new(mesh.clone()))?;
    // The embedded DNS server, the resolver of the tasks on overlay networks: it follows the
    // same tables and endpoints. Port 53 needs root, as the overlay data path does; a node
    // without both gives its tasks the host's resolvers.
    let _dns = if swarm_actors::runtime::running_as_root() {
        match swarm_actors::dns::Dns::start(
            node_id,
            swarm_actors::dns::DnsConfig::default(),
            endpoints.clone(),
            mesh_feed.subscribe(),
            rand::random(),
        ) {
            Ok(dns) => {
                registry.register(format!("dns/{node_id}"), std::sync::Arc::new(dns.clone()))?;
                Some(dns)
            }
            Err(e) => {
                warn!("no DNS server on this node, its tasks use the host's resolvers: {e}");
                None
            }
        }
    } else {
        info!("not root: no DNS server on this node (port 53), its tasks use the host's resolvers");
        None
    };
    let agent = start_agent(
        AgentParts {
            node_id,
            data_dir: &data_dir,
            advertised: &runtimes,
            transport: &transport,
            registry: &registry,
            managers: &managers,
            vip_port: mesh.vip_addr().map(|a| a.port()),
        },
        endpoints,
        mesh_feed,
    )
    .await?;
    let node_args = NodeArgs {
        data_dir: data_dir.clone(),
        creds,
        store: store.clone(),
        cert_validity: validity,
        description,
        membership,
        transport: transport.clone(),
        node_file,
        rng_seed: rand::random(),
        registry: registry.clone(),
        store_config: store_config(&args)?,
        agent: Some(agent.clone()),
        managers,
    };
    let (handle, actor_done) = node::spawn_node(node_args, inbound, &registry)
        .await
        .map_err(|e| anyhow::anyhow!("the node actor did not start: {e}"))?;

    tokio::spawn(node::autolock::watch(handle.clone(), data_dir.clone()));

    let sock = data_dir.join("control.sock");
    let control = match early_control {
        Some(c) => c,
        None => server::bind(&sock)
            .with_context(|| format!("cannot open the control socket {}", sock.display()))?,
    };
    let ctx = ControlContext {
        node: handle.clone(),
        registry: registry.clone(),
        agent: Some(agent),
    };
    tokio::spawn(server::serve(control, ctx));

    if fresh && ident.new_cluster.is_some() {
        let tokens = handle.join_tokens().await?;
        println!("Swarm initialized: current node ({node_id}) is now a manager.\n");
        print!("{}", join_instructions(&tokens, Role::Worker));
        print!("{}", join_instructions(&tokens, Role::Manager));
        if let Some(key) = &unlock_key {
            print!("{}", unlock_instructions(&key.to_string()));
        }
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

fn fresh_cluster(ident: &Identity) -> bool {
    ident.fresh && ident.new_cluster.is_some()
}

/// Serves the control socket of a locked manager until `swarm unlock` opens its store key;
/// `None` when a signal stopped the node first. The socket stays bound for the node's run.
async fn wait_unlocked(
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<server::ControlSocket>> {
    let sock = data_dir.join("control.sock");
    let control = server::bind(&sock)
        .with_context(|| format!("cannot open the control socket {}", sock.display()))?;
    println!(
        "This node is locked: its store is sealed under the cluster's unlock key. Run `swarm-node swarm unlock` to unlock it."
    );
    warn!(control = %sock.display(), "locked: waiting for `swarm-node swarm unlock`");
    tokio::select! {
        () = server::serve_locked(&control, data_dir) => {
            info!("unlocked: starting");
            Ok(Some(control))
        }
        r = wait_for_signal() => {
            r?;
            info!("stopped while locked");
            let _ = std::fs::remove_file(&sock); // a stale socket is replaced at the next start anyway
            Ok(None)
        }
    }
}

/// Mode of the data dir: only the node's user may list it or reach into it.
const DATA_DIR_MODE: u32 = 0o700;
/// Mode of the files that hold keys or secrets.
const SECRET_FILE_MODE: u32 = 0o600;
/// The data dir's files that hold keys or secrets: the node's key and, on managers, the CA key,
/// the join tokens and the store's data key. Their writers create them 0600; a looser mode
/// found at start (a copy, a restore from backup) is tightened.
const SECRET_FILES: [&str; 4] = ["node.key", "ca.key", "tokens.json", "raft.key"];

/// Makes the data dir (mode 0700), or tightens an existing one and its secret files, saying so
/// in the log. With the directory 0700 no other user reaches anything in it (keys, the sealed
/// store, the control socket), whatever the files' own modes; the files' 0600 is a second wall.
fn secure_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let cannot = || format!("cannot make the data dir {}", dir.display());
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(cannot)?;
    }
    // Created with its mode (the umask can only take bits away), so never readable by others.
    match std::fs::DirBuilder::new().mode(DATA_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(cannot),
    }
    let tighten = |path: &std::path::Path, want: u32, what: &str| -> anyhow::Result<()> {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read the mode of {}", path.display()))?
            .permissions()
            .mode()
            & 0o7777;
        if mode != want {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))
                .with_context(|| format!("cannot set the mode of {}", path.display()))?;
            warn!(
                path = %path.display(),
                was = format!("{mode:04o}"),
                now = format!("{want:04o}"),
                "{what} had a looser mode than it needs: tightened"
            );
        }
        Ok(())
    };
    if !dir.is_dir() {
        bail!("the data dir {} is not a directory", dir.display());
    }
    tighten(dir, DATA_DIR_MODE, "the data dir")?;
    for name in SECRET_FILES {
        let path = dir.join(name);
        // Only regular files: a symlink here is not the node's own, and chmod would follow it.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            tighten(&path, SECRET_FILE_MODE, "a file holding a key")?;
        }
    }
    Ok(())
}

/// Loads this node's credentials, or makes them: by joining through a seed, or by
/// bootstrapping a new cluster.
async fn identity(
    args: &StartArgs,
    data_dir: &std::path::Path,
    hostname: &str,
    advertise: SocketAddr,
    node_file: &mut NodeFile,
    validity: Duration,
) -> anyhow::Result<Identity> {
    if let Some(creds) = NodeCredentials::load(data_dir)? {
        if args.seed.is_some() {
            warn!(
                "this data dir already belongs to node {}: --seed and --token are ignored",
                creds.node_id
            );
        }
        let bootstrap = node_file.raft_id.map(|_| Bootstrap::Restart);
        return Ok(Identity {
            creds,
            fresh: false,
            new_cluster: None,
            bootstrap,
        });
    }
    if args.force_new_cluster {
        bail!("--force-new-cluster needs the data dir of an existing manager");
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
            let resp = join_with_retries(seed_addr, &token, req).await?;
            let creds = NodeCredentials::from_parts(key, resp.cert_der, resp.ca_cert_der)?;
            creds.save(data_dir)?;
            node_file.remember(resp.peers);
            node_file.remember([seed_addr]);
            node_file.raft_id = resp.raft_id;
            let bootstrap = resp.raft_id.map(|_| Bootstrap::Join);
            Ok(Identity {
                creds,
                fresh: true,
                new_cluster: None,
                bootstrap,
            })
        }
        (None, None) => {
            let mut rng = rand::rng();
            let node_id = loop {
                let id = NodeId(rand::RngExt::random(&mut rng));
                if id != NodeId::UNKNOWN {
                    break id;
                }
            };
            let authority = Authority::generate(SystemTime::now(), validity, &mut rng)?;
            let creds = authority.issue_local(node_id, Role::Manager, SystemTime::now())?;
            creds.save(data_dir)?;
            node_file.raft_id = Some(rand::RngExt::random::<u64>(&mut rng).max(1));
            let bootstrap = Some(Bootstrap::NewCluster {
                node_id,
                addr: advertise,
            });
            Ok(Identity {
                creds,
                fresh: true,
                new_cluster: Some(authority),
                bootstrap,
            })
        }
        _ => bail!("--seed and --token go together"),
    }
}

fn store_config(args: &StartArgs) -> anyhow::Result<StoreConfig> {
    let config = StoreConfig {
        snapshot_every_entries: args.snapshot_every_entries,
        ..StoreConfig::default()
    };
    config.validate()?;
    Ok(config)
}

/// Join attempts when the cluster answers that it cannot take the join right now (no quorum
/// for a moment, busy); a refused token is final at once.
const JOIN_ATTEMPTS: u32 = 5;
const JOIN_RETRY_DELAY: Duration = Duration::from_secs(1);

async fn join_with_retries(
    seed: SocketAddr,
    token: &JoinToken,
    req: JoinRequest,
) -> anyhow::Result<swarm_actors::wire::JoinResponse> {
    use swarm_actors::transport::TransportError;
    use swarm_actors::wire::WireFailure;
    let mut attempt = 1;
    loop {
        match transport::join(seed, &token.ca_digest, req.clone(), JOIN_TIMEOUT).await {
            Ok(resp) => return Ok(resp),
            Err(TransportError::Refused(f @ (WireFailure::Invalid(_) | WireFailure::Busy)))
                if attempt < JOIN_ATTEMPTS =>
            {
                warn!(attempt, reason = %f, "join not taken yet; trying again");
            }
            Err(TransportError::Timeout) if attempt < JOIN_ATTEMPTS => {
                warn!(attempt, "join timed out; trying again");
            }
            // Final: asking the same seed again gets the same certificate.
            Err(e @ TransportError::SeedNotAManager { .. }) => {
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!(
                        "cannot join the cluster through {seed}: give a manager's address as \
                         --seed (`swarm-node node ls` on a manager lists them)"
                    )
                });
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot join the cluster through {seed}"));
            }
        }
        attempt += 1;
        tokio::time::sleep(JOIN_RETRY_DELAY).await;
    }
}

/// How long a new cluster's store may take to elect itself and take its first write.
const FIRST_WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Writes a new cluster's first objects: the cluster object (CA, tokens, autolock), and this
/// node.
async fn seed_new_cluster(
    store: &StoreHandle,
    cluster: ClusterObject,
    node_id: NodeId,
    addr: SocketAddr,
    raft_id: Option<u64>,
) -> anyhow::Result<()> {
    let node = NodeObject {
        id: node_id,
        spec: NodeSpec {
            role: Role::Manager,
            availability: Availability::Active,
            labels: Default::default(),
        },
        description: None,
        raft_id,
        addr,
    };
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![
            Op::Put {
                kind: Kind::Cluster,
                id: admission::CLUSTER_ID.to_string(),
                expect: Expect::Absent,
                body: ObjectBody::Cluster(cluster),
            },
            Op::Put {
                kind: Kind::Node,
                id: node_id.to_string(),
                expect: Expect::Absent,
                body: ObjectBody::Node(node),
            },
        ],
    };
    let started = std::time::Instant::now();
    loop {
        // Until this manager has elected itself, the store refuses writes; try again shortly.
        match store.propose(cmd.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() < FIRST_WRITE_TIMEOUT => {
                tracing::debug!(error = %e, "first write not taken yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                bail!("the new cluster's store took no write within {FIRST_WRITE_TIMEOUT:?}: {e}")
            }
        }
    }
}

/// The store actor as the admin shell sees it.
struct StoreAdmin(StoreHandle);

impl swarm_actors::registry::AdminTarget for StoreAdmin {
    fn messages(&self) -> &'static [&'static str] {
        &["Status"]
    }

    fn call(&self, _msg: &str, _args: serde_json::Value) -> swarm_actors::registry::AdminReply<'_> {
        Box::pin(async move {
            let status = self.0.status().await.map_err(|e| {
                swarm_actors::registry::AdminError::NoAnswer("store".into(), e.to_string())
            })?;
            serde_json::to_value(status).map_err(|e| {
                swarm_actors::registry::AdminError::NoAnswer("store".into(), e.to_string())
            })
        })
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

/// What the agent is made of, besides the routing mesh's parts.
struct AgentParts<'a> {
    node_id: NodeId,
    data_dir: &'a std::path::Path,
    advertised: &'a [String],
    transport: &'a Transport,
    registry: &'a Registry,
    managers: &'a trust::ManagerSet,
    /// The port of the mesh's VIP listener, where the data path redirects connections to VIPs.
    vip_port: Option<u16>,
}

/// Starts the node agent with the runtimes this node advertises: the process runtime always,
/// docker when the engine answered the probe. Both record their tasks' endpoints in
/// `endpoints`; the agent publishes mesh tables on `mesh`.
async fn start_agent(
    parts: AgentParts<'_>,
    endpoints: swarm_actors::runtime::Endpoints,
    mesh: swarm_actors::wire::MeshFeed,
) -> anyhow::Result<swarm_actors::agent::AgentHandle> {
    use std::sync::Arc;
    use swarm_actors::runtime::{DockerConfig, DockerRuntime, ProcessRuntime, TaskRuntime};
    let AgentParts {
        node_id,
        data_dir,
        advertised,
        transport,
        registry,
        managers,
        vip_port,
    } = parts;
    let process = ProcessRuntime::new(data_dir.join("tasks"))
        .with_context(|| format!("cannot use {}", data_dir.join("tasks").display()))?
        .with_endpoints(endpoints.clone());
    let mut runtimes: Vec<Arc<dyn TaskRuntime>> = vec![Arc::new(process)];
    if advertised.iter().any(|r| r == host::RUNTIME_DOCKER) {
        match DockerRuntime::connect(DockerConfig::default()).await {
            Ok(d) => runtimes.push(Arc::new(d.with_endpoints(endpoints.clone()))),
            Err(e) => warn!(error = %e, "the Docker Engine answered the probe but not the runtime"),
        }
    }
    let args = swarm_actors::agent::AgentArgs {
        node_id,
        transport: transport.clone(),
        runtimes,
        registry: Some(registry.clone()),
        register_tasks: true,
        managers: managers.clone(),
        mesh: Some(mesh),
        vip_port,
    };
    let (agent, _done) = swarm_actors::agent::spawn_agent(args)
        .await
        .map_err(|e| anyhow::anyhow!("the node agent did not start: {e}"))?;
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_data_dir_is_made_0700_and_a_loose_one_is_tightened() {
        let root = tempfile::tempdir().unwrap();

        eprintln!("phase: a new data dir (and its missing parent) is made; the dir itself 0700");
        let fresh = root.path().join("a/b");
        secure_data_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        eprintln!("phase: an existing 0755 dir is tightened, and so is a key file left 0644");
        let loose = root.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, m) in [
            ("node.key", 0o644),
            ("tokens.json", 0o640),
            ("node.crt", 0o644),
        ] {
            std::fs::write(loose.join(name), "x").unwrap();
            std::fs::set_permissions(loose.join(name), std::fs::Permissions::from_mode(m)).unwrap();
        }
        secure_data_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700);
        assert_eq!(mode(&loose.join("node.key")), 0o600);
        assert_eq!(mode(&loose.join("tokens.json")), 0o600);
        // A certificate is public: left as it is.
        assert_eq!(mode(&loose.join("node.crt")), 0o644);

        eprintln!("phase: a file where the data dir should be is refused");
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(secure_data_dir(&file).is_err());
    }
}
