//! The StoreActor: one per manager. It hosts the raft-replicated cluster store
//! ([`crate::store::StoreMachine`] over redb), carries raft messages over the transport, and
//! answers the node's reads and writes. Where each request goes (to raft here, forwarded to
//! the leader once, retried while an election runs, answered with quorum information) is
//! decided by the sans-IO [`router::Router`]; this actor is the shell that carries out its
//! effects: forwards over the transport, timers, answers.
//!
//! ```text
//!  control API / NodeActor ──Propose/Read──▶ StoreActor ──▶ Router ──▶ StoreMachine (sans-IO)
//!  transport ──OneWay::Raft chunks──▶ Assembler ──┘   │ effects: Send / Forward / Answer / …
//!  transport ◀── chunks / forwards ◀──────────────────┘
//! ```

pub mod chunks;
mod handle;
mod msg;
pub mod router;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use handle::AppliedTokens;
pub use handle::{Progress, StoreHandle};
pub use msg::{ReadResult, StoreFailure, StoreMsg, StoreStatus};
pub use router::{LEADER_DOWN_RETRY_MS, OPERATION_TIMEOUT_MS, PENDING_MAX};

use crate::model::NodeId;
use crate::store::{
    Bootstrap, Kind, ObjectBody, RedbStorage, StoreConfig, StoreEffect, StoreMachine,
};
use crate::transport::{Transport, TransportError};
use crate::wire::{OneWay, Request, Response, StoreReply, StoreRequest};
use chunks::Assembler;
use router::{Answer, Router, RouterEffect, RouterInput};

pub struct StoreArgs {
    pub data_dir: PathBuf,
    pub raft_id: u64,
    pub node_id: NodeId,
    pub bootstrap: Bootstrap,
    pub config: StoreConfig,
    pub transport: Transport,
    pub rng_seed: u64,
    /// Where a session through the store handle finds this node's leader actor (which the
    /// node actor runs while this replica leads).
    pub registry: Option<crate::registry::Registry>,
    /// The managers the store last named, as the node learns them (see `trust::authz`): raft
    /// from a manager this store does not know yet (it is catching up) is taken only from one.
    pub managers: crate::trust::ManagerSet,
}

pub struct StoreActor;

/// Who waits for a request's answer (the router holds it, opaque).
enum Waiter {
    /// A write or voter change of this node: answered with the raft index.
    Write(RpcReplyPort<Result<u64, StoreFailure>>),
    /// A linearizable read of this node: answered with the objects once the read index is
    /// applied here.
    Read {
        kind: Kind,
        reply: RpcReplyPort<Result<ReadResult, StoreFailure>>,
    },
    /// Another manager that forwarded a request to us as the leader.
    Peer(oneshot::Sender<Response>),
}

pub struct StoreActorState {
    machine: StoreMachine<RedbStorage>,
    transport: Transport,
    raft_id: u64,
    /// Every request waiting for an answer, and where each goes (see [`router`]).
    router: Router<Waiter>,
    assembler: Assembler,
    managers: crate::trust::ManagerSet,
    /// Raft chunks refused because their sender is no voter or spoke as another.
    raft_refused: u64,
    next_message: u64,
    /// Membership's last view.
    members: Vec<crate::membership::MemberView>,
    /// Where raft peers were last heard from. A manager that just joined does not know its
    /// peers' addresses until the log or a snapshot tells it, but must answer the leader before
    /// that; bounded by [`LEARNED_MAX`].
    learned: BTreeMap<u64, SocketAddr>,
    /// Shared with every handle: the join tokens as last applied (see [`AppliedTokens`]).
    tokens: AppliedTokens,
    /// Shared with every handle: where this replica stands (see [`Progress`]).
    progress: tokio::sync::watch::Sender<Progress>,
    /// The applied index and cluster object version `tokens` were last brought up to.
    tokens_checked_at: u64,
    tokens_version: Option<u64>,
}

/// Raft peers whose address is remembered from their traffic.
pub const LEARNED_MAX: usize = 64;

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = StoreActorState;
    type Arguments = (
        StoreArgs,
        AppliedTokens,
        tokio::sync::watch::Sender<Progress>,
    );

    async fn pre_start(
        &self,
        myself: ActorRef<StoreMsg>,
        (args, tokens, progress): (
            StoreArgs,
            AppliedTokens,
            tokio::sync::watch::Sender<Progress>,
        ),
    ) -> Result<StoreActorState, ActorProcessingErr> {
        let storage = RedbStorage::open(&args.data_dir)?;
        let tick = Duration::from_millis(args.config.tick_ms);
        let machine = StoreMachine::new(
            args.raft_id,
            storage,
            args.config.clone(),
            args.rng_seed,
            args.bootstrap,
        )?;
        myself.send_interval(tick, || StoreMsg::Tick);
        info!(raft_id = args.raft_id, "store started");
        let mut state = StoreActorState {
            machine,
            transport: args.transport,
            raft_id: args.raft_id,
            router: Router::default(),
            assembler: Assembler::default(),
            managers: args.managers,
            raft_refused: 0,
            next_message: 0,
            members: Vec::new(),
            learned: BTreeMap::new(),
            tokens,
            progress,
            tokens_checked_at: 0,
            tokens_version: None,
        };
        // A restarted manager holds its cluster object already.
        state.publish_tokens(true);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<StoreMsg>,
        msg: StoreMsg,
        state: &mut StoreActorState,
    ) -> Result<(), ActorProcessingErr> {
        let now = crate::clock::unix_ms();
        let request = |op, waiter| RouterInput::Request {
            op,
            from_peer: false,
            waiter,
        };
        let input = match msg {
            StoreMsg::Tick => Some(RouterInput::Tick),
            StoreMsg::Raft {
                chunk,
                remote,
                from,
            } => state.raft_chunk(chunk, remote, from),
            StoreMsg::Propose { cmd, reply } => {
                Some(request(StoreRequest::Propose(cmd), Waiter::Write(reply)))
            }
            StoreMsg::Forwarded { reply, from, .. } | StoreMsg::ForwardedRead { reply, from }
                if !state.is_voter(from) =>
            {
                let _ = reply.send(not_a_voter(from)); // the asker may have gone
                None
            }
            StoreMsg::Forwarded { op, reply, .. } => Some(RouterInput::Request {
                op,
                from_peer: true,
                waiter: Waiter::Peer(reply),
            }),
            StoreMsg::ForwardedRead { reply, .. } => Some(RouterInput::Request {
                op: StoreRequest::ReadIndex,
                from_peer: true,
                waiter: Waiter::Peer(reply),
            }),
            StoreMsg::Read {
                kind,
                linearizable: false,
                reply,
            } => {
                let result = state.read_now(kind, state.machine.leader().is_none());
                let _ = reply.send(Ok(result)); // the caller may have gone
                None
            }
            StoreMsg::Read { kind, reply, .. } => Some(request(
                StoreRequest::ReadIndex,
                Waiter::Read { kind, reply },
            )),
            StoreMsg::AddVoter {
                raft_id,
                node_id,
                addr,
                reply,
            } => {
                let op = StoreRequest::AddVoter {
                    raft_id,
                    node_id,
                    addr,
                };
                Some(request(op, Waiter::Write(reply)))
            }
            StoreMsg::RemoveVoter { raft_id, reply } => Some(request(
                StoreRequest::RemoveVoter { raft_id },
                Waiter::Write(reply),
            )),
            StoreMsg::Status(reply) => {
                let _ = reply.send(Ok(state.status())); // the caller may have gone
                None
            }
            StoreMsg::Members(members) => {
                let ids = |s| {
                    members
                        .iter()
                        .filter(|m| m.state == s)
                        .map(|m| m.id)
                        .collect()
                };
                let input = RouterInput::Members {
                    ready: ids(crate::model::NodeState::Ready),
                    down: ids(crate::model::NodeState::Down),
                };
                state.members = members;
                Some(input)
            }
            StoreMsg::Retry { req } => Some(RouterInput::Retry { req }),
            StoreMsg::ForwardDone {
                req,
                forward,
                result,
            } => Some(RouterInput::ForwardDone {
                req,
                forward,
                result,
            }),
        };
        let (mut raft, mut routed) = (Vec::new(), Vec::new());
        if let Some(input) = input {
            router::step(
                &mut state.machine,
                &mut state.router,
                now,
                input,
                &mut raft,
                &mut routed,
            );
        }
        // Before anyone is answered: a rotation is in force when it is reported done.
        state.publish_tokens(false);
        state.apply(raft);
        state.carry_out(&myself, routed);
        state.publish_progress();
        Ok(())
    }
}

impl Waiter {
    /// Sends `answer`; `state` serves a read of this node once its index is applied.
    fn answer(self, answer: Answer, state: &StoreActorState) {
        // Whoever asked may have given up; nothing to do then.
        match (self, answer) {
            (Waiter::Write(port), Answer::Applied(index)) => {
                let _ = port.send(Ok(index));
            }
            (Waiter::Write(port), Answer::Failed(f)) => {
                let _ = port.send(Err(f));
            }
            (Waiter::Read { kind, reply }, Answer::ReadReady) => {
                let _ = reply.send(Ok(state.read_now(kind, false)));
            }
            (Waiter::Read { reply, .. }, Answer::Failed(f)) => {
                let _ = reply.send(Err(f));
            }
            (Waiter::Peer(tx), answer) => {
                let reply = match answer {
                    Answer::Applied(index) => StoreReply::Applied { index },
                    Answer::ReadIndex(index) => StoreReply::ReadIndex { index },
                    Answer::Failed(f) => StoreReply::Failed(f),
                    Answer::ReadReady => unreachable!("a peer's read is answered with its index"),
                };
                let _ = tx.send(Response::Store(reply));
            }
            (Waiter::Write(_) | Waiter::Read { .. }, answer) => {
                unreachable!("the router answered a local request with {answer:?}")
            }
        }
    }
}

impl StoreActorState {
    /// A raft chunk from a peer: refused unless the sender may speak raft here; the whole
    /// message once its last chunk arrived.
    fn raft_chunk(
        &mut self,
        chunk: chunks::RaftChunk,
        remote: SocketAddr,
        from: crate::trust::PeerIdentity,
    ) -> Option<RouterInput<Waiter>> {
        if let Err(why) = raft_sender_allowed(
            self.machine.state().members(),
            &self.machine.voters(),
            &self.managers,
            &from,
            chunk.from,
        ) {
            self.raft_refused += 1;
            debug!(node = %from.node_id, raft_id = chunk.from, "raft chunk refused: {why}");
            return None;
        }
        self.learn(chunk.from, remote);
        let sender = chunk.from;
        match self.assembler.take(from.node_id, chunk) {
            Ok(Some(bytes)) => Some(RouterInput::Raft {
                from: sender,
                bytes,
            }),
            Ok(None) => None,
            Err(e) => {
                debug!(error = %e, "raft chunk refused");
                None
            }
        }
    }

    fn read_now(&self, kind: Kind, stale: bool) -> ReadResult {
        let st = self.machine.state();
        ReadResult {
            objects: st.list(kind).cloned().collect(),
            stale,
            applied_index: st.applied_index(),
        }
    }

    fn is_voter(&self, node: NodeId) -> bool {
        self.voters().iter().any(|v| v.1 == node)
    }

    fn voters(&self) -> Vec<(u64, NodeId, SocketAddr)> {
        let members = self.machine.state().members();
        self.machine
            .voters()
            .into_iter()
            .filter_map(|id| members.get(&id).map(|m| (id, m.node_id, m.addr)))
            .collect()
    }

    fn status(&self) -> StoreStatus {
        let voters = self.voters();
        let leader = self.machine.leader();
        StoreStatus {
            raft_id: self.raft_id,
            leader,
            leader_node: leader.and_then(|l| voters.iter().find(|v| v.0 == l).map(|v| v.1)),
            term: self.machine.term(),
            voters,
            applied_index: self.machine.state().applied_index(),
        }
    }

    /// What to tell a writer when there is no leader to take the write: with a majority of
    /// Brings the shared copy of the join tokens up to the applied cluster object, when an
    /// entry or snapshot applied since the last look changed it. A map lookup per message that
    /// applied something; the tokens are parsed only when the object's version moved.
    fn publish_tokens(&mut self, force: bool) {
        let state = self.machine.state();
        let applied = state.applied_index();
        if applied == self.tokens_checked_at && !force {
            return;
        }
        self.tokens_checked_at = applied;
        let obj = state.get(Kind::Cluster, crate::store::CLUSTER_ID);
        let version = obj.map(|o| o.version);
        if version == self.tokens_version && !force {
            return;
        }
        self.tokens_version = version;
        let tokens = obj.and_then(|o| match &o.body {
            ObjectBody::Cluster(c) => match crate::trust::Tokens::parse(&c.worker_token, &c.manager_token) {
                Ok(t) => Some(t),
                Err(e) => {
                    warn!(error = %e, "the cluster object's join tokens do not parse: joins refused");
                    None
                }
            },
            _ => None,
        });
        self.tokens.set(tokens);
    }

    /// Carries out the machine's effects: raft messages out, leadership followed. The router
    /// took those about requests already.
    fn apply(&mut self, effects: Vec<StoreEffect>) {
        for effect in effects {
            match effect {
                StoreEffect::Send { to, msg } => self.send_raft(to, &msg),
                StoreEffect::LeaderChanged { leader, term } => {
                    // The node actor follows it on the progress watch (the leader actor).
                    info!(?leader, term, me = self.raft_id, "store leader changed");
                }
                StoreEffect::VotersChanged(voters) => info!(?voters, "store voters changed"),
                StoreEffect::Applied { .. }
                | StoreEffect::ReadReady { .. }
                | StoreEffect::Refused { .. } => {}
            }
        }
    }

    /// Carries out the router's effects: forwards, retry timers, answers.
    fn carry_out(&mut self, myself: &ActorRef<StoreMsg>, effects: Vec<RouterEffect<Waiter>>) {
        for effect in effects {
            match effect {
                RouterEffect::Answer { waiter, answer } => waiter.answer(answer, self),
                RouterEffect::RetryAfter { req, after_ms } => {
                    debug!(
                        req,
                        after_ms, "no leader to take the request yet; asking again"
                    );
                    myself.send_after(Duration::from_millis(after_ms), move || StoreMsg::Retry {
                        req,
                    });
                }
                RouterEffect::Forward {
                    req,
                    forward,
                    to,
                    addr,
                    op,
                } => {
                    debug!(req, forward, leader = %to, "forwarding to the leader");
                    self.forward(myself, req, forward, addr, op);
                }
                // `router::step` hands these to the machine itself.
                RouterEffect::ToMachine(_) => unreachable!("step feeds the machine"),
            }
        }
    }

    /// Sends a request to the leader at `addr`; its outcome comes back as `ForwardDone`. The
    /// transport's request deadline bounds it; the router may abandon it sooner.
    fn forward(
        &self,
        myself: &ActorRef<StoreMsg>,
        req: u64,
        forward: u64,
        addr: SocketAddr,
        op: StoreRequest,
    ) {
        let read = matches!(op, StoreRequest::ReadIndex);
        let transport = self.transport.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let result = match transport.request(addr, Request::Store(op)).await {
                Ok(Response::Store(StoreReply::Applied { index })) if !read => Ok(index),
                Ok(Response::Store(StoreReply::ReadIndex { index })) if read => Ok(index),
                Ok(Response::Store(StoreReply::Failed(f))) => Err(f),
                Ok(other) => Err(StoreFailure::Refused(format!(
                    "the leader answered {other:?}"
                ))),
                Err(e) => Err(forward_failure(addr, &e, read)),
            };
            // The actor may be stopping; then nobody waits.
            let _ = me.send_message(StoreMsg::ForwardDone {
                req,
                forward,
                result,
            });
        });
    }

    /// Publishes where this replica stands, when that changed (see [`Progress`]).
    fn publish_progress(&self) {
        let leader = self.machine.leader();
        let now = Progress {
            term: self.machine.term(),
            leading: self.machine.is_leader(),
            leader_addr: leader
                .filter(|l| *l != self.raft_id)
                .and_then(|l| self.addr_of(l)),
            applied_index: self.machine.state().applied_index(),
        };
        self.progress.send_if_modified(|p| {
            let changed = *p != now;
            *p = now;
            changed
        });
    }

    /// A raft peer's address: as the store lists it, or as learned from its traffic.
    fn addr_of(&self, raft_id: u64) -> Option<SocketAddr> {
        let known = self.machine.state().members().get(&raft_id).map(|m| m.addr);
        known.or_else(|| self.learned.get(&raft_id).copied())
    }

    fn learn(&mut self, from: u64, remote: SocketAddr) {
        if self.learned.len() >= LEARNED_MAX && !self.learned.contains_key(&from) {
            // Forget the smallest ID; it is heard from again if it is still a peer.
            self.learned.pop_first();
        }
        self.learned.insert(from, remote);
    }

    fn send_raft(&mut self, to: u64, msg: &[u8]) {
        let known = self.machine.state().members().get(&to).map(|m| m.addr);
        let Some(addr) = known.or_else(|| self.learned.get(&to).copied()) else {
            warn!(to, "no address for raft peer");
            return;
        };
        self.next_message += 1;
        for chunk in chunks::split(self.raft_id, self.next_message, msg) {
            // Raft retries lost messages; a full queue or a dead peer only delays it.
            let _ = self.transport.send_oneway(addr, OneWay::Raft(chunk));
        }
    }
}

fn not_a_voter(node: NodeId) -> Response {
    Response::Store(StoreReply::Failed(StoreFailure::Refused(format!(
        "node {node} is not a manager of this cluster's store"
    ))))
}

/// What a forward that the transport could not complete is answered with. A request that
/// never left (no connection, no queue) wrote nothing; one whose answer was lost (a deadline, a
/// broken connection) may have reached the leader.
fn forward_failure(addr: SocketAddr, e: &TransportError, read: bool) -> StoreFailure {
    match e {
        TransportError::Connect { .. }
        | TransportError::QueueFull
        | TransportError::TooManyPeers(_)
        | TransportError::Refused(_)
        | TransportError::ShutDown => StoreFailure::Refused(format!(
            "cannot reach the leader at {addr}: {e}; nothing was written"
        )),
        _ if read => StoreFailure::Refused(format!("the leader at {addr} did not answer: {e}")),
        _ => StoreFailure::MayHaveCommitted(format!(
            "the leader at {addr} did not answer ({e}); the write may have committed: read \
             before retrying"
        )),
    }
}

/// Starts a manager's store actor. Unnamed: ractor's registry is global to the process.
pub async fn spawn_store(
    args: StoreArgs,
) -> Result<(StoreHandle, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let tokens = AppliedTokens::default();
    let (progress, watching) = tokio::sync::watch::channel(Progress::default());
    let registry = args.registry.clone();
    let (actor, join) = Actor::spawn(None, StoreActor, (args, tokens.clone(), progress)).await?;
    Ok((StoreHandle::new(actor, tokens, watching, registry), join))
}

/// Whether a raft chunk that `from` sent under raft ID `raft_id` is taken.
///
/// A voter this store lists must send under its own raft ID and be a voter still. A raft ID the
/// store does not list is a manager added while this replica was behind (or new): taken only if
/// no listed member is that node under another ID, and the node is a manager by its certificate
/// and by the store's last word to this node.
pub(crate) fn raft_sender_allowed(
    members: &BTreeMap<u64, crate::store::Member>,
    voters: &[u64],
    managers: &crate::trust::ManagerSet,
    from: &crate::trust::PeerIdentity,
    raft_id: u64,
) -> Result<(), &'static str> {
    match members.get(&raft_id) {
        Some(m) if m.node_id != from.node_id => Err("the raft ID is another node's"),
        Some(_) if !voters.contains(&raft_id) => Err("the node is no voter"),
        Some(_) => Ok(()),
        None if members.values().any(|m| m.node_id == from.node_id) => {
            Err("the node is a member under another raft ID")
        }
        None if managers.may_command(from) => Ok(()),
        None => Err("not a manager"),
    }
}
