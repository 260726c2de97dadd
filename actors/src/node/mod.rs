//! The NodeActor: one per node. It owns the node's identity and certificate, drives the
//! membership state machine, answers peers' requests (join, renew, describe), and keeps the
//! node's view of the cluster that `node ls` shows.
//!
//! ```text
//!  transport ──Inbound──▶ pump (bounded in-flight) ──NodeMsg──▶ NodeActor ──▶ Membership (sans-IO)
//!      ▲                                                           │   effects: Send / Schedule / Event
//!      └──────────────────── send_datagram ◀───────────────────────┘
//! ```
//!
//! The actor is a thin shell: membership decisions live in [`crate::membership::Membership`],
//! certificate decisions in [`Authority`]; this file only carries their effects out.

pub mod admission;
mod authority;
pub mod autolock;
mod handle;
pub mod host;
mod leadership;
mod msg;
mod renewal;
mod role;
pub mod rotation;
mod state_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::trust::{ManagerSet, authz};
pub use authority::{Authority, CERT_VALIDITY, CERT_VALIDITY_MIN};
pub use handle::{NodeError, NodeHandle};
pub use msg::{CaView, InFlight, JoinTokensView, NodeAdmin, NodeMsg, NodeStats, RotationView};
pub use state_file::{NodeFile, NodeFileError, PEERS_MAX};

use crate::membership::{
    MemberId, Membership, MembershipConfig, MembershipEffect, MembershipEvent, MembershipInput,
    Sender,
};
use crate::model::{NodeDescription, NodeId, NodeState, Role};
use crate::registry::Registry;
use crate::replica::StoreHandle;
use crate::transport::{Inbound, Transport};
use crate::trust::{NodeCredentials, PeerIdentity};
use crate::wire::{OneWay, Request, Response, StoreReply, StoreRequest, WireFailure};

/// Messages from the transport that may wait in the actor's mailbox at once. The mailbox itself
/// is unbounded, so this is where inbound work is bounded: past it, the pump stops taking from
/// the transport, whose own bounded queue then drops datagrams and answers requests `Busy`.
pub const INBOUND_IN_FLIGHT_MAX: usize = 1_024;

/// Peers handed to a joining node to announce to.
pub const JOIN_PEERS_MAX: usize = 16;

/// How long to wait before trying a failed certificate renewal again.
pub const RENEW_RETRY: Duration = Duration::from_secs(60);

/// Everything a NodeActor starts from.
pub struct NodeArgs {
    pub data_dir: PathBuf,
    pub creds: NodeCredentials,
    /// Present on managers: the replicated store, which holds the CA and the join tokens.
    pub store: Option<StoreHandle>,
    /// Validity of the certificates this node issues when it is a manager.
    pub cert_validity: Duration,
    pub description: NodeDescription,
    pub membership: MembershipConfig,
    pub transport: Transport,
    pub node_file: NodeFile,
    /// Seeds the RNG behind membership, renewal timing and new node IDs.
    pub rng_seed: u64,
    /// This node's registry of named actors (a promoted node's leader actor registers there).
    pub registry: Registry,
    /// How this node's store runs if it is, or becomes, a manager.
    pub store_config: crate::store::StoreConfig,
    /// The node's agent, which runs its tasks; told about managers and the local store.
    pub agent: Option<crate::agent::AgentHandle>,
    /// The managers the store last named, shared with the agent (which learns them from its
    /// session answers) and the store: manager-only messages are checked against it.
    pub managers: ManagerSet,
}

pub struct NodeActor;

pub struct NodeActorState {
    data_dir: PathBuf,
    creds: NodeCredentials,
    store: Option<StoreHandle>,
    cert_validity: Duration,
    membership: Membership,
    transport: Transport,
    node_file: NodeFile,
    rng: StdRng,
    stats: Counters,
    registry: Registry,
    store_config: crate::store::StoreConfig,
    agent: Option<crate::agent::AgentHandle>,
    managers: ManagerSet,
    /// The identity each peer address proved on its connection: the agent's session targets.
    certified: authz::CertifiedPeers,
    /// A renewal is in flight: the trust check does not start a second one.
    renewing: bool,
    /// The leader actor's lifecycle, following the store's progress.
    leadership: leadership::Leadership,
}

#[derive(Default)]
struct Counters {
    requests_served: u64,
    joins_admitted: u64,
    joins_refused: u64,
    /// Manager-only messages refused: the sender is no manager by its certificate or the store.
    refused_not_manager: u64,
}

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeActorState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeActorState, ActorProcessingErr> {
        let mut rng = StdRng::seed_from_u64(args.rng_seed);
        // Boots beyond u32 would take a restart a second for 136 years; saturate rather than wrap.
        let boots = u32::try_from(args.node_file.boots).unwrap_or(u32::MAX);
        let me = MemberId::new(args.creds.node_id, args.description.addr, boots);
        let membership =
            Membership::new(me, args.description, args.membership, rng.random::<u64>())?;
        let mut state = NodeActorState {
            data_dir: args.data_dir,
            creds: args.creds,
            store: args.store,
            cert_validity: args.cert_validity,
            membership,
            transport: args.transport,
            node_file: args.node_file,
            rng,
            stats: Counters::default(),
            registry: args.registry,
            store_config: args.store_config,
            agent: args.agent,
            managers: args.managers,
            certified: authz::CertifiedPeers::default(),
            renewing: false,
            leadership: leadership::Leadership::default(),
        };
        state.leadership.watch(state.store.as_ref(), &myself);
        state.tell_agent_store();
        // The leader learns this node's own description from here even when no other node
        // ever changes state (a one-node cluster).
        state.tell_store_reachable();
        let mut out = Vec::new();
        state.membership.handle(MembershipInput::Start, &mut out);
        for peer in state.node_file.peers.clone() {
            if peer != state.membership.me().addr {
                state
                    .membership
                    .handle(MembershipInput::Announce(peer), &mut out);
            }
        }
        for id in state.node_file.denied.clone() {
            state.transport.deny(id);
        }
        state.apply(&myself, out);
        state.schedule_renewal(&myself);
        myself.send_after(rotation::TRUST_CHECK_INTERVAL, || NodeMsg::TrustCheck);
        info!(node = %state.creds.node_id, role = %state.creds.role, "node started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeActorState,
    ) -> Result<(), ActorProcessingErr> {
        let mut out = Vec::new();
        match msg {
            NodeMsg::Datagram {
                from,
                remote,
                data,
                slot: _slot,
            } => {
                state.saw(from, remote);
                let from = Sender {
                    id: from.node_id,
                    role: from.role,
                };
                state
                    .membership
                    .handle(MembershipInput::Datagram { from, data }, &mut out);
            }
            NodeMsg::Timer(timer) => {
                state
                    .membership
                    .handle(MembershipInput::Timer(timer), &mut out);
            }
            NodeMsg::Request {
                from,
                remote,
                req,
                reply,
                slot: _slot,
            } => {
                state.stats.requests_served += 1;
                if let Some(p) = from {
                    state.saw(p, remote);
                }
                state.answer(&myself, from, remote, req, reply);
            }
            NodeMsg::RenewCertificate => state.renew(&myself),
            NodeMsg::TrustCheck => state.trust_check(&myself),
            NodeMsg::TrustSeen(view) => state.trust_seen(&myself, view),
            NodeMsg::Ca { rotate, port } => state.ca(&myself, rotate, port),
            NodeMsg::Renewed(result) => {
                state.renewing = false;
                match result {
                    Ok(creds) => state.install_credentials(&myself, *creds),
                    Err(e) => {
                        warn!(error = %e, retry_in_s = RENEW_RETRY.as_secs(), "certificate renewal failed");
                        myself.send_after(RENEW_RETRY, || NodeMsg::RenewCertificate);
                    }
                }
            }
            NodeMsg::Describe(port) => {
                let me = state.creds.node_id;
                let desc = state
                    .membership
                    .description(me)
                    .cloned()
                    .expect("a node always knows its own description");
                let _ = port.send(desc); // the caller may have timed out
            }
            NodeMsg::Members(port) => {
                let denied = &state.node_file.denied;
                let members = state
                    .membership
                    .members()
                    .into_iter()
                    .filter(|m| !denied.contains(&m.id))
                    .collect();
                let _ = port.send(members); // the caller may have timed out
            }
            NodeMsg::Store(port) => {
                let _ = port.send(state.store.clone()); // the caller may have timed out
            }
            NodeMsg::Ask { addr, req, reply } => {
                let transport = state.transport.clone();
                tokio::spawn(async move {
                    let r = transport
                        .request(addr, req)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = reply.send(r); // the caller may have timed out
                });
            }
            NodeMsg::StoreChanged(store) => {
                let role = if store.is_some() {
                    Role::Manager
                } else {
                    Role::Worker
                };
                info!(%role, "this node's role changed");
                state.store = store;
                state.leadership.watch(state.store.as_ref(), &myself);
                if state.store.is_none() {
                    state.follow(&myself, Default::default()).await;
                }
                state.tell_agent_store();
                // Our description carries the role; gossip the change.
                if let Some(mut d) = state.membership.description(state.creds.node_id).cloned() {
                    d.role = role;
                    d.version += 1;
                    state
                        .membership
                        .handle(MembershipInput::Describe(d), &mut out);
                }
                state.tell_store_reachable();
                // A certificate naming the new role.
                myself.send_message(NodeMsg::RenewCertificate)?;
            }
            NodeMsg::Deny(id, port) => {
                state.deny(id);
                let me = state.membership.me().addr;
                for m in state.membership.members() {
                    if m.addr != me && m.state == NodeState::Ready && m.id != id {
                        // Best effort: a node that misses it still refuses nothing it did
                        // not know; see docs/operations.md.
                        let _ = state.transport.send_oneway(m.addr, OneWay::Removed(id));
                    }
                }
                let _ = port.send(()); // the caller may have timed out
            }
            NodeMsg::OneWay {
                from,
                remote,
                msg,
                slot: _slot,
            } => {
                state.saw(from, remote);
                match (msg, state.store.as_ref()) {
                    // The store checks the sender against its voters.
                    (OneWay::Raft(chunk), Some(store)) => store.raft(chunk, remote, from),
                    (OneWay::Raft(_), None) => {
                        debug!("raft message for a node that is no manager")
                    }
                    (OneWay::Removed(id), _) => {
                        if state.may_command(&from, "remove a node") {
                            state.deny(id);
                        }
                    }
                    (OneWay::Poke, _) => {
                        if state.may_command(&from, "poke the agent")
                            && let Some(agent) = &state.agent
                        {
                            agent.tell(crate::agent::AgentMsg::Poke(Some(remote)));
                        }
                    }
                    (OneWay::Nop, _) => {}
                }
            }
            NodeMsg::StoreProgress(progress) => state.follow(&myself, progress).await,
            NodeMsg::JoinTokens(port) => state.tokens_view(None, port),
            NodeMsg::RotateToken(role, port) => state.tokens_view(Some(role), port),
            NodeMsg::Stats(port) => {
                let stats = NodeStats {
                    membership: state.membership.stats(),
                    requests_served: state.stats.requests_served,
                    joins_admitted: state.stats.joins_admitted,
                    joins_refused: state.stats.joins_refused,
                    certificate_not_after_unix: unix_secs(state.creds.not_after),
                };
                let _ = port.send(stats); // the caller may have timed out
            }
            NodeMsg::Leave(port) => {
                state.membership.handle(MembershipInput::Leave, &mut out);
                state.apply(&myself, std::mem::take(&mut out));
                let _ = port.send(()); // the caller may have timed out
            }
        }
        state.apply(&myself, out);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        event: ractor::SupervisionEvent,
        state: &mut NodeActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.leadership.supervise(&event, &state.registry, &myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NodeMsg>,
        state: &mut NodeActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.leadership.stop(&state.registry);
        Ok(())
    }
}

fn not_a_manager() -> String {
    "this node is not a manager: run the command on a manager".to_string()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl NodeActorState {
    /// Carries out membership effects.
    fn apply(&mut self, myself: &ActorRef<NodeMsg>, effects: Vec<MembershipEffect>) {
        for effect in effects {
            match effect {
                MembershipEffect::Send { to, data } => {
                    // Gossip is lossy by design: SWIM tolerates a dropped datagram, and the
                    // transport counts drops.
                    let _ = self.transport.send_datagram(to, data);
                }
                MembershipEffect::Schedule { after, timer } => {
                    myself.send_after(after, move || NodeMsg::Timer(timer));
                }
                MembershipEffect::Event(event) => self.on_event(event),
            }
        }
    }

    fn on_event(&mut self, event: MembershipEvent) {
        match event {
            MembershipEvent::Up(id) => {
                info!(node = %id, "node is up");
                self.remember_peers();
                self.tell_store_reachable();
                self.tell_agent_managers();
            }
            MembershipEvent::Down(id) => {
                warn!(node = %id, "node is down");
                self.tell_store_reachable();
                self.tell_agent_managers();
            }
            MembershipEvent::Described(desc) => {
                debug!(node = %desc.id, version = desc.version, "node description");
                self.tell_agent_managers();
                self.tell_store_reachable();
            }
            MembershipEvent::Rejoined => warn!("this node was declared down; rejoined"),
        }
    }

    /// Keeps the addresses of live peers on disk so a restart finds the cluster again.
    fn remember_peers(&mut self) {
        let listed: std::collections::BTreeSet<SocketAddr> =
            self.membership.members().iter().map(|m| m.addr).collect();
        self.certified.retain(|a| listed.contains(&a));
        let me = self.membership.me().addr;
        let live: Vec<SocketAddr> = self
            .membership
            .members()
            .into_iter()
            .filter(|m| m.state == NodeState::Ready && m.addr != me)
            .map(|m| m.addr)
            .collect();
        if self.node_file.remember(live)
            && let Err(e) = self.node_file.save(&self.data_dir)
        {
            warn!(error = %e, "cannot save the peer list");
        }
    }

    fn deny(&mut self, id: NodeId) {
        self.transport.deny(id);
        if !self.node_file.denied.contains(&id) {
            self.node_file.denied.push(id);
            if let Err(e) = self.node_file.save(&self.data_dir) {
                warn!(error = %e, "cannot save the list of removed nodes");
            }
            info!(node = %id, "node removed from the cluster: refused from now on");
        }
    }

    fn tell_agent_managers(&self) {
        if let Some(agent) = &self.agent {
            agent.tell(crate::agent::AgentMsg::ManagersReady(self.manager_addrs()));
        }
    }

    fn tell_agent_store(&self) {
        if let Some(agent) = &self.agent {
            agent.tell(crate::agent::AgentMsg::LocalStore(self.store.clone()));
        }
    }

    /// Hands membership's view to the store (who is reachable) and the leader actor.
    fn tell_store_reachable(&self) {
        if let Some(store) = &self.store {
            store.set_members(self.membership.members());
        }
        self.leadership.members(self.membership.members());
    }

    /// Starts or stops the leader actor as the store's progress says.
    async fn follow(&mut self, myself: &ActorRef<NodeMsg>, progress: crate::replica::Progress) {
        let ctx = self.store.as_ref().map(|store| leadership::LeaderContext {
            store,
            me: self.creds.node_id,
            members: self.membership.members(),
            transport: &self.transport,
            registry: &self.registry,
            rng_seed: self.rng.random(),
        });
        self.leadership
            .follow(progress, ctx, myself.get_cell())
            .await;
    }

    /// Answers with the join tokens, rotating one role's first when asked; off the actor,
    /// since both go through the store.
    fn tokens_view(
        &self,
        rotate: Option<Role>,
        port: ractor::RpcReplyPort<Result<JoinTokensView, String>>,
    ) {
        let Some(store) = self.store.clone() else {
            let _ = port.send(Err(not_a_manager())); // the caller may have timed out
            return;
        };
        let addr = self.membership.me().addr;
        let validity = self.cert_validity;
        tokio::spawn(async move {
            let result = async {
                if let Some(role) = rotate {
                    admission::rotate(&store, role, validity)
                        .await
                        .map_err(|e| e.to_string())?;
                    info!(%role, "join token rotated");
                }
                let (obj, _) = admission::cluster(&store)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(JoinTokensView {
                    worker: obj.worker_token,
                    manager: obj.manager_token,
                    addr,
                })
            }
            .await;
            let _ = port.send(result); // the caller may have timed out
        });
    }

    /// Ready members whose connection proved a manager certificate the store still backs:
    /// where the agent opens its session. Never the role a description claims.
    fn manager_addrs(&self) -> Vec<SocketAddr> {
        self.membership
            .members()
            .into_iter()
            .filter(|m| {
                m.state == NodeState::Ready
                    && authz::is_certified_manager(&self.certified, &self.managers, m.id, m.addr)
            })
            .map(|m| m.addr)
            .collect()
    }

    /// Records the identity `remote` proved; a peer newly proven (or proven in a new role)
    /// may change where the agent opens its session.
    fn saw(&mut self, who: PeerIdentity, remote: SocketAddr) {
        if self.certified.saw(remote, who) {
            self.tell_agent_managers();
        }
    }

    /// Whether `from` may send a manager-only message (`what`, for the log).
    fn may_command(&mut self, from: &PeerIdentity, what: &str) -> bool {
        let ok = self.managers.may_command(from);
        if !ok {
            self.stats.refused_not_manager += 1;
            warn!(from = %from.node_id, role = %from.role, "refused: only a manager may {what}");
        }
        ok
    }

    /// Answers a peer's request, at once or from a task when the store is involved.
    fn answer(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        from: Option<PeerIdentity>,
        remote: SocketAddr,
        req: Request,
        reply: tokio::sync::oneshot::Sender<Response>,
    ) {
        // In every arm, the asker may have given up (deadline passed); nothing to do then.
        match req {
            Request::Join(join) => {
                let Some(store) = self.store.clone() else {
                    self.stats.joins_refused += 1;
                    let _ = reply.send(Response::Failed(WireFailure::NotAManager(
                        self.manager_addrs(),
                    )));
                    return;
                };
                let me = self.membership.me().addr;
                let mut peers = vec![me];
                peers.extend(
                    self.membership
                        .members()
                        .into_iter()
                        .filter(|m| m.state == NodeState::Ready && m.addr != me)
                        .map(|m| m.addr)
                        .take(JOIN_PEERS_MAX - 1),
                );
                let validity = self.cert_validity;
                tokio::spawn(async move {
                    let hostname = join.hostname.clone();
                    let resp = admission::admit(store, join, peers, validity).await;
                    match &resp {
                        Response::Joined(j) => {
                            info!(node = %j.node_id, role = %j.role, %hostname, %remote, "node admitted")
                        }
                        Response::Failed(f) => warn!(%remote, reason = %f, "join refused"),
                        _ => {}
                    }
                    let _ = reply.send(resp);
                });
            }
            Request::Renew(renew) => {
                let Some(peer) = from else {
                    let _ = reply.send(Response::Failed(WireFailure::Unauthenticated));
                    return;
                };
                let Some(store) = self.store.clone() else {
                    let _ = reply.send(Response::Failed(WireFailure::NotAManager(
                        self.manager_addrs(),
                    )));
                    return;
                };
                let validity = self.cert_validity;
                tokio::spawn(async move {
                    let resp = admission::renew(store, peer, renew.csr_der, validity).await;
                    let _ = reply.send(resp);
                });
            }
            // The store checks that the sender is a voter: a node just promoted still holds
            // a worker certificate on its open connections.
            Request::Store(req) => match (&from, &self.store) {
                (Some(p), Some(store)) => match req {
                    StoreRequest::ReadIndex => store.forwarded_read(p.node_id, reply),
                    op => store.forwarded(op, p.node_id, reply),
                },
                _ => {
                    let _ = reply.send(Response::Store(StoreReply::Failed(
                        crate::replica::StoreFailure::Refused(
                            "only managers forward store writes, and only to managers".into(),
                        ),
                    )));
                }
            },
            Request::Describe => {
                let resp = match self.membership.description(self.creds.node_id) {
                    Some(d) => Response::Description(d.clone()),
                    None => Response::Failed(WireFailure::Invalid("no description yet".into())),
                };
                let _ = reply.send(resp);
            }
            Request::Trust => self.answer_trust(from, reply),
            // Tunnels are served by the routing mesh in the transport, never handed here.
            Request::Tunnel(_) => {
                let _ = reply.send(Response::Failed(WireFailure::Unreachable(
                    "this node serves no routing mesh".into(),
                )));
            }
            Request::Ping => {
                let _ = reply.send(Response::Pong);
            }
            Request::Session(report) => {
                let Some(peer) = from else {
                    let _ = reply.send(Response::Failed(WireFailure::Unauthenticated));
                    return;
                };
                self.leadership.session(peer.node_id, report, reply);
            }
            Request::Logs { tasks, tail } => match (&from, &self.agent) {
                (Some(p), Some(agent)) if self.managers.may_command(p) => {
                    let agent = agent.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(agent.logs(tasks, tail).await);
                    });
                }
                _ => {
                    let _ = reply.send(Response::Failed(WireFailure::Invalid(
                        "logs are given to managers only".into(),
                    )));
                }
            },
            Request::RemoveVolumes { label, value } => match (&from, &self.agent) {
                (Some(p), Some(agent)) if self.managers.may_command(p) => {
                    let agent = agent.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(agent.remove_volumes(label, value).await);
                    });
                }
                _ => {
                    let _ = reply.send(Response::Failed(WireFailure::Invalid(
                        "volumes are removed for managers only".into(),
                    )));
                }
            },
            Request::SetRole { raft_id } => {
                if !from.is_some_and(|p| self.may_command(&p, "change this node's role")) {
                    let _ = reply.send(Response::Failed(WireFailure::Unauthenticated));
                    return;
                }
                self.set_role(myself, raft_id, reply);
            }
        }
    }
}

/// Starts a node's actor and the pump that feeds it from the transport, and registers it as
/// `node/<id>` in the node's registry.
pub async fn spawn_node(
    args: NodeArgs,
    inbound: mpsc::Receiver<Inbound>,
    registry: &Registry,
) -> Result<(NodeHandle, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let id = args.creds.node_id;
    // No name: ractor's registry is global to the process (see `registry`).
    let (actor, join) = Actor::spawn(None, NodeActor, args).await?;
    tokio::spawn(pump(inbound, actor.clone()));
    let handle = NodeHandle::new(actor, id);
    registry.register(format!("node/{id}"), Arc::new(handle.clone()))?;
    Ok((handle, join))
}

/// Moves inbound traffic into the actor, holding at most [`INBOUND_IN_FLIGHT_MAX`] messages in
/// its mailbox at once.
async fn pump(mut inbound: mpsc::Receiver<Inbound>, actor: ActorRef<NodeMsg>) {
    let slots = Arc::new(Semaphore::new(INBOUND_IN_FLIGHT_MAX));
    while let Some(msg) = inbound.recv().await {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return, // the semaphore is never closed
        };
        let node_msg = match msg {
            Inbound::Datagram { from, remote, data } => NodeMsg::Datagram {
                from,
                remote,
                data,
                slot: InFlight(Some(permit)),
            },
            Inbound::Request {
                from,
                remote,
                req,
                reply,
            } => NodeMsg::Request {
                from,
                remote,
                req,
                reply,
                slot: InFlight(Some(permit)),
            },
            Inbound::OneWay { from, remote, msg } => NodeMsg::OneWay {
                from,
                remote,
                msg,
                slot: InFlight(Some(permit)),
            },
        };
        // The permit travels inside the message and is released when the actor has handled it.
        if actor.send_message(node_msg).is_err() {
            return; // the actor stopped: nothing left to feed
        }
    }
}
