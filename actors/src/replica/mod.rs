//! The StoreActor: one per manager. It hosts the raft-replicated cluster store
//! ([`crate::store::StoreMachine`] over redb), carries raft messages over the transport, and
//! answers the node's reads and writes: proposals on a follower are forwarded to the leader once,
//! linearizable reads wait for a read index, and without a leader writes fail fast with the count
//! of reachable managers.
//!
//! ```text
//!  control API / NodeActor ──Propose/Read──▶ StoreActor ──▶ StoreMachine (sans-IO raft + state)
//!  transport ──OneWay::Raft chunks──▶ Assembler ──┘   │ effects: Send / Applied / ReadReady / …
//!  transport ◀── chunks ◀── Send ─────────────────────┘
//! ```

pub mod chunks;
mod handle;
mod msg;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use handle::AppliedTokens;
pub use handle::{Progress, StoreHandle};
pub use msg::{ReadResult, StoreFailure, StoreMsg, StoreStatus};

use crate::model::NodeId;
use crate::store::{
    Bootstrap, Kind, ObjectBody, RedbStorage, StoreConfig, StoreEffect, StoreError, StoreInput,
    StoreMachine,
};
use crate::transport::Transport;
use crate::wire::{OneWay, Request, Response, StoreReply, StoreRequest};
use chunks::Assembler;

/// Operations waiting for raft at once; past it, new ones are refused `Busy`.
pub const PENDING_MAX: usize = 1_024;
/// How long an operation may wait for raft before it is answered `Timeout`.
pub const OPERATION_TIMEOUT_MS: u64 = 5_000;

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
    /// The managers the store last named, as the node learns them (see `node::authz`): raft
    /// from a manager this store does not know yet (it is catching up) is taken only from one.
    pub managers: crate::node::ManagerSet,
}

pub struct StoreActor;

enum Waiter {
    Local(RpcReplyPort<Result<u64, StoreFailure>>),
    Remote(oneshot::Sender<Response>),
}

struct Pending {
    waiter: Waiter,
    /// Kept for forwarding to the leader when this manager is not it (local operations only:
    /// a forwarded one is not forwarded again, so one hop bounds the chase).
    op: Option<StoreRequest>,
    since_ms: u64,
    /// While the operation is forwarded: the leader's node and the forward's number. A forward
    /// to a leader that membership then sees Down is abandoned (its late answer is ignored)
    /// and the operation asks raft again.
    forwarded: Option<(NodeId, u64)>,
}

/// Who waits for a read index: a local reader (answered with objects once applied), or a
/// follower that asked us as the leader (answered with the index alone).
enum ReadWaiter {
    Local {
        kind: Kind,
        reply: RpcReplyPort<Result<ReadResult, StoreFailure>>,
    },
    Remote(oneshot::Sender<Response>),
}

struct PendingRead {
    waiter: ReadWaiter,
    /// Set when the leader confirmed the read index.
    index: Option<u64>,
    since_ms: u64,
    /// While the read index is asked of the leader: its node and the forward's number (see
    /// `Pending::forwarded`).
    forwarded: Option<(NodeId, u64)>,
}

pub struct StoreActorState {
    machine: StoreMachine<RedbStorage>,
    transport: Transport,
    raft_id: u64,
    next_req: u64,
    pending: BTreeMap<u64, Pending>,
    reads: BTreeMap<u64, PendingRead>,
    assembler: Assembler,
    managers: crate::node::ManagerSet,
    /// Raft chunks refused because their sender is no voter or spoke as another.
    raft_refused: u64,
    next_message: u64,
    reachable: BTreeSet<NodeId>,
    /// Membership's last view: forwards to a leader it sees Down are abandoned.
    members: Vec<crate::membership::MemberView>,
    /// Where raft peers were last heard from. A manager that just joined does not know its
    /// peers' addresses until the log or a snapshot tells it, but must answer the leader before
    /// that; bounded by [`LEARNED_MAX`].
    learned: BTreeMap<u64, SocketAddr>,
    /// Numbers forwards, so that the late answer of an abandoned one is recognised.
    next_forward: u64,
    /// Shared with every handle: the join tokens as last applied (see [`AppliedTokens`]).
    tokens: AppliedTokens,
    /// Shared with every handle: where this replica stands (see [`Progress`]).
    progress: tokio::sync::watch::Sender<Progress>,
    /// The applied index and cluster object version `tokens` were last brought up to.
    tokens_checked_at: u64,
    tokens_version: Option<u64>,
}

/// How long an operation waits before asking raft again when the leader raft names is Down.
pub const LEADER_DOWN_RETRY_MS: u64 = 50;

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
            next_req: 1,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            assembler: Assembler::default(),
            managers: args.managers,
            raft_refused: 0,
            next_message: 0,
            reachable: BTreeSet::new(),
            members: Vec::new(),
            learned: BTreeMap::new(),
            next_forward: 0,
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
        let mut out = Vec::new();
        match msg {
            StoreMsg::Tick => {
                state.machine.handle(now, StoreInput::Tick, &mut out);
                state.expire(now);
            }
            StoreMsg::Raft {
                chunk,
                remote,
                from,
            } => {
                if let Err(why) = raft_sender_allowed(
                    state.machine.state().members(),
                    &state.machine.voters(),
                    &state.managers,
                    &from,
                    chunk.from,
                ) {
                    state.raft_refused += 1;
                    debug!(node = %from.node_id, raft_id = chunk.from, "raft chunk refused: {why}");
                    return Ok(());
                }
                state.learn(chunk.from, remote);
                let sender = chunk.from;
                match state.assembler.take(from.node_id, chunk) {
                    Ok(Some(bytes)) => state.machine.handle(
                        now,
                        StoreInput::Message {
                            from: sender,
                            bytes,
                        },
                        &mut out,
                    ),
                    Ok(None) => {}
                    Err(e) => debug!(error = %e, "raft chunk refused"),
                }
            }
            StoreMsg::Propose { cmd, reply } => {
                if let Some(req) = state.admit(
                    Waiter::Local(reply),
                    Some(StoreRequest::Propose(cmd.clone())),
                    now,
                ) {
                    state
                        .machine
                        .handle(now, StoreInput::Propose { req, cmd }, &mut out);
                }
            }
            StoreMsg::Forwarded { reply, from, .. } if !state.is_voter(from) => {
                let _ = reply.send(not_a_voter(from)); // the asker may have gone
            }
            StoreMsg::ForwardedRead { reply, from } if !state.is_voter(from) => {
                let _ = reply.send(not_a_voter(from)); // the asker may have gone
            }
            StoreMsg::Forwarded { op, reply, .. } => {
                if let Some(req) = state.admit(Waiter::Remote(reply), None, now) {
                    state.machine.handle(now, op_input(req, op), &mut out);
                }
            }
            StoreMsg::Read {
                kind,
                linearizable,
                reply,
            } => {
                if !linearizable {
                    let result = state.read_now(kind, state.machine.leader().is_none());
                    let _ = reply.send(Ok(result)); // the caller may have gone
                } else if state.pending.len() + state.reads.len() >= PENDING_MAX {
                    let _ = reply.send(Err(StoreFailure::Busy)); // as above
                } else {
                    let req = state.next_req();
                    state.reads.insert(
                        req,
                        PendingRead {
                            waiter: ReadWaiter::Local { kind, reply },
                            index: None,
                            since_ms: now,
                            forwarded: None,
                        },
                    );
                    state
                        .machine
                        .handle(now, StoreInput::ReadIndex { req }, &mut out);
                }
            }
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
                if let Some(req) = state.admit(Waiter::Local(reply), Some(op), now) {
                    let input = StoreInput::AddVoter {
                        req,
                        raft_id,
                        node_id,
                        addr,
                    };
                    state.machine.handle(now, input, &mut out);
                }
            }
            StoreMsg::RemoveVoter { raft_id, reply } => {
                let op = StoreRequest::RemoveVoter { raft_id };
                if let Some(req) = state.admit(Waiter::Local(reply), Some(op), now) {
                    let input = StoreInput::RemoveVoter { req, raft_id };
                    state.machine.handle(now, input, &mut out);
                }
            }
            StoreMsg::ForwardedRead { reply, .. } => {
                if state.pending.len() + state.reads.len() >= PENDING_MAX {
                    let busy = Response::Store(StoreReply::Failed(StoreFailure::Busy));
                    let _ = reply.send(busy); // the asker may have gone
                } else {
                    let req = state.next_req();
                    state.reads.insert(
                        req,
                        PendingRead {
                            waiter: ReadWaiter::Remote(reply),
                            index: None,
                            since_ms: now,
                            forwarded: None,
                        },
                    );
                    state
                        .machine
                        .handle(now, StoreInput::ReadIndex { req }, &mut out);
                }
            }
            StoreMsg::ReadIndexDone {
                req,
                forward,
                result,
            } => {
                let current = state
                    .reads
                    .get(&req)
                    .is_some_and(|r| r.forwarded.is_some_and(|(_, f)| f == forward));
                match result {
                    Ok(index) if current => {
                        if let Some(r) = state.reads.get_mut(&req) {
                            r.index = Some(index);
                            r.forwarded = None;
                        }
                    }
                    Err(f) if current => {
                        if let Some(r) = state.reads.remove(&req) {
                            r.waiter.fail(f);
                        }
                    }
                    // An abandoned forward: the read asked raft again.
                    _ => {}
                }
            }
            StoreMsg::Status(reply) => {
                let _ = reply.send(Ok(state.status())); // the caller may have gone
            }
            StoreMsg::Members(members) => {
                state.reachable = members
                    .iter()
                    .filter(|m| m.state == crate::model::NodeState::Ready)
                    .map(|m| m.id)
                    .collect();
                state.members = members;
                state.abandon_forwards_to_down(&myself);
            }
            StoreMsg::Retry { req } => {
                let read_waits = state
                    .reads
                    .get(&req)
                    .is_some_and(|r| r.forwarded.is_none() && r.index.is_none());
                if read_waits {
                    state
                        .machine
                        .handle(now, StoreInput::ReadIndex { req }, &mut out);
                } else if let Some(op) = state
                    .pending
                    .get(&req)
                    .filter(|p| p.forwarded.is_none())
                    .and_then(|p| p.op.clone())
                {
                    state.machine.handle(now, op_input(req, op), &mut out);
                }
            }
            StoreMsg::ForwardDone {
                req,
                forward,
                result,
            } => {
                let current = state
                    .pending
                    .get(&req)
                    .is_some_and(|p| p.forwarded.is_some_and(|(_, f)| f == forward));
                if current && let Some(p) = state.pending.remove(&req) {
                    p.waiter.answer(result);
                }
            }
        }
        // Before the effects answer anyone: a rotation is in force when it is reported done.
        state.publish_tokens(false);
        state.apply(&myself, out);
        state.finish_reads();
        state.publish_progress();
        Ok(())
    }
}

impl ReadWaiter {
    fn fail(self, f: StoreFailure) {
        // Whoever asked may have given up; nothing to do then.
        match self {
            ReadWaiter::Local { reply, .. } => {
                let _ = reply.send(Err(f));
            }
            ReadWaiter::Remote(tx) => {
                let _ = tx.send(Response::Store(StoreReply::Failed(f)));
            }
        }
    }
}

impl Waiter {
    fn answer(self, result: Result<u64, StoreFailure>) {
        match self {
            // The asker may have given up; nothing to do then.
            Waiter::Local(port) => {
                let _ = port.send(result);
            }
            Waiter::Remote(tx) => {
                let reply = match result {
                    Ok(index) => StoreReply::Applied { index },
                    Err(f) => StoreReply::Failed(f),
                };
                let _ = tx.send(Response::Store(reply));
            }
        }
    }
}

impl StoreActorState {
    fn next_req(&mut self) -> u64 {
        let r = self.next_req;
        self.next_req += 1;
        r
    }

    /// Registers a waiting operation, or answers `Busy` when too many wait already.
    fn admit(&mut self, waiter: Waiter, op: Option<StoreRequest>, now: u64) -> Option<u64> {
        if self.pending.len() + self.reads.len() >= PENDING_MAX {
            waiter.answer(Err(StoreFailure::Busy));
            return None;
        }
        let req = self.next_req();
        self.pending.insert(
            req,
            Pending {
                waiter,
                op,
                since_ms: now,
                forwarded: None,
            },
        );
        Some(req)
    }

    fn read_now(&self, kind: Kind, stale: bool) -> ReadResult {
        let st = self.machine.state();
        ReadResult {
            objects: st.list(kind).cloned().collect(),
            stale,
            applied_index: st.applied_index(),
        }
    }

    fn finish_reads(&mut self) {
        let applied = self.machine.state().applied_index();
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| {
                r.index
                    .is_some_and(|i| i <= applied || matches!(r.waiter, ReadWaiter::Remote(_)))
            })
            .map(|(k, _)| *k)
            .collect();
        for req in ready {
            let r = self.reads.remove(&req).expect("listed");
            // Whoever asked may have given up; nothing to do then.
            match r.waiter {
                ReadWaiter::Local { kind, reply } => {
                    let _ = reply.send(Ok(self.read_now(kind, false)));
                }
                ReadWaiter::Remote(tx) => {
                    let index = r.index.expect("ready reads have an index");
                    let _ = tx.send(Response::Store(StoreReply::ReadIndex { index }));
                }
            }
        }
    }

    /// Answers `Timeout` to whatever waited longer than [`OPERATION_TIMEOUT_MS`].
    fn expire(&mut self, now: u64) {
        let old = |since: u64| now.saturating_sub(since) > OPERATION_TIMEOUT_MS;
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| old(p.since_ms))
            .map(|(k, _)| *k)
            .collect();
        for req in stale {
            let p = self.pending.remove(&req).expect("listed");
            p.waiter.answer(Err(self.failure_without_leader()));
        }
        let stale: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| old(r.since_ms))
            .map(|(k, _)| *k)
            .collect();
        for req in stale {
            let r = self.reads.remove(&req).expect("listed");
            r.waiter.fail(StoreFailure::Timeout);
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
    /// voters reachable an election is under way (try again); without, there is no quorum.
    fn failure_without_leader(&self) -> StoreFailure {
        let members = self.machine.state().members();
        let voters = self.machine.voters();
        let reachable = voters
            .iter()
            .filter(|id| {
                **id == self.raft_id
                    || members
                        .get(id)
                        .is_some_and(|m| self.reachable.contains(&m.node_id))
            })
            .count();
        debug!(?voters, reachable, known = ?self.reachable, "no leader");
        if voters.is_empty() {
            StoreFailure::Refused("this manager is not a voter of the store".into())
        } else if reachable * 2 > voters.len() {
            StoreFailure::Timeout
        } else {
            StoreFailure::NoQuorum {
                reachable,
                voters: voters.len(),
            }
        }
    }

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
        let obj = state.get(Kind::Cluster, crate::node::admission::CLUSTER_ID);
        let version = obj.map(|o| o.version);
        if version == self.tokens_version && !force {
            return;
        }
        self.tokens_version = version;
        let tokens = obj.and_then(|o| match &o.body {
            ObjectBody::Cluster(c) => match crate::node::admission::tokens_of(c) {
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

    fn apply(&mut self, myself: &ActorRef<StoreMsg>, effects: Vec<StoreEffect>) {
        for effect in effects {
            match effect {
                StoreEffect::Send { to, msg } => self.send_raft(to, &msg),
                StoreEffect::Applied { req, index, result } => {
                    let Some(req) = req else { continue };
                    if let Some(p) = self.pending.remove(&req) {
                        p.waiter
                            .answer(result.map(|()| index).map_err(|e| refusal(&e)));
                    }
                }
                StoreEffect::ReadReady { req, index } => {
                    if let Some(r) = self.reads.get_mut(&req) {
                        r.index = Some(index);
                    }
                }
                StoreEffect::Refused { req, error } => self.refused(myself, req, error),
                StoreEffect::LeaderChanged { leader, term } => {
                    // The node actor follows it on the progress watch (the leader actor).
                    info!(?leader, term, me = self.raft_id, "store leader changed");
                }
                StoreEffect::VotersChanged(voters) => info!(?voters, "store voters changed"),
            }
        }
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

    /// Operations forwarded to a leader that membership now sees Down ask raft again at once
    /// instead of waiting out the forward's deadline.
    fn abandon_forwards_to_down(&mut self, myself: &ActorRef<StoreMsg>) {
        let down: BTreeSet<NodeId> = self
            .members
            .iter()
            .filter(|m| m.state == crate::model::NodeState::Down)
            .map(|m| m.id)
            .collect();
        let forwards = self
            .pending
            .iter_mut()
            .map(|(req, p)| (*req, &mut p.forwarded))
            .chain(
                self.reads
                    .iter_mut()
                    .map(|(req, r)| (*req, &mut r.forwarded)),
            );
        for (req, forwarded) in forwards {
            if forwarded.is_some_and(|(node, _)| down.contains(&node)) {
                *forwarded = None;
                debug!(
                    req,
                    "the leader an operation was forwarded to is down; asking again"
                );
                let _ = myself.send_message(StoreMsg::Retry { req });
            }
        }
    }

    /// Whether membership says the raft leader `l`'s node is Down: raft still names it until
    /// the next election, and a request forwarded to it would wait out the whole deadline.
    fn leader_is_down(&self, error: &StoreError) -> bool {
        let StoreError::NotLeader { leader: Some(l) } = error else {
            return false;
        };
        let Some(node) = self.machine.state().members().get(l).map(|m| m.node_id) else {
            return false;
        };
        self.members
            .iter()
            .any(|m| m.id == node && m.state == crate::model::NodeState::Down)
    }

    fn refused(&mut self, myself: &ActorRef<StoreMsg>, req: u64, error: StoreError) {
        if self.leader_is_down(&error)
            && (self.reads.contains_key(&req)
                || self.pending.get(&req).is_some_and(|p| p.op.is_some()))
        {
            // Ask raft again shortly: the election that replaces the dead leader is under
            // way. `expire` still bounds the wait by the operation timeout.
            debug!(req, "the leader is down; waiting for the next one");
            myself.send_after(Duration::from_millis(LEADER_DOWN_RETRY_MS), move || {
                StoreMsg::Retry { req }
            });
            return;
        }
        if let Some(r) = self.reads.remove(&req) {
            let leader = match (&error, &r.waiter) {
                (StoreError::NotLeader { leader: Some(l) }, ReadWaiter::Local { .. }) => {
                    self.machine.state().members().get(l).copied()
                }
                _ => None,
            };
            let Some(leader) = leader else {
                let f = match error {
                    StoreError::NotLeader { leader: None } => self.failure_without_leader(),
                    other => refusal(&other),
                };
                r.waiter.fail(f);
                return;
            };
            // A follower asks the leader for the read index, then waits for its own replica
            // to apply that far (raft's read-index read, served locally).
            let addr = leader.addr;
            self.next_forward += 1;
            let forward = self.next_forward;
            let mut r = r;
            r.forwarded = Some((leader.node_id, forward));
            self.reads.insert(req, r);
            let transport = self.transport.clone();
            let me = myself.clone();
            tokio::spawn(async move {
                let result = match transport
                    .request(addr, Request::Store(StoreRequest::ReadIndex))
                    .await
                {
                    Ok(Response::Store(StoreReply::ReadIndex { index })) => Ok(index),
                    Ok(Response::Store(StoreReply::Failed(f))) => Err(f),
                    Ok(other) => Err(StoreFailure::Refused(format!(
                        "the leader answered {other:?}"
                    ))),
                    Err(e) => Err(StoreFailure::Refused(format!(
                        "cannot reach the leader at {addr}: {e}"
                    ))),
                };
                // The actor may be stopping; then nobody waits.
                let _ = me.send_message(StoreMsg::ReadIndexDone {
                    req,
                    forward,
                    result,
                });
            });
            return;
        }
        let Some(mut p) = self.pending.remove(&req) else {
            return;
        };
        match (&error, p.op.clone()) {
            (StoreError::NotLeader { leader: Some(l) }, Some(op)) => {
                let member = self.machine.state().members().get(l).copied();
                let Some(member) = member else {
                    p.waiter.answer(Err(self.failure_without_leader()));
                    return;
                };
                let addr = member.addr;
                // Keep the waiter; the forwarded outcome comes back as ForwardDone.
                self.next_forward += 1;
                let forward = self.next_forward;
                p.forwarded = Some((member.node_id, forward));
                self.pending.insert(req, p);
                let transport = self.transport.clone();
                let me = myself.clone();
                tokio::spawn(async move {
                    let result = match transport.request(addr, Request::Store(op)).await {
                        Ok(Response::Store(StoreReply::Applied { index })) => Ok(index),
                        Ok(Response::Store(StoreReply::Failed(f))) => Err(f),
                        Ok(other) => Err(StoreFailure::Refused(format!(
                            "the leader answered {other:?}"
                        ))),
                        Err(e) => Err(StoreFailure::Refused(format!(
                            "cannot reach the leader at {addr}: {e}"
                        ))),
                    };
                    // The actor may be stopping; then nobody waits.
                    let _ = me.send_message(StoreMsg::ForwardDone {
                        req,
                        forward,
                        result,
                    });
                });
            }
            (StoreError::NotLeader { leader: None }, Some(_))
                if self.failure_without_leader() == StoreFailure::Timeout =>
            {
                // A majority is reachable: an election is under way. Ask again shortly;
                // `expire` bounds the wait.
                self.pending.insert(req, p);
                myself.send_after(Duration::from_millis(LEADER_DOWN_RETRY_MS), move || {
                    StoreMsg::Retry { req }
                });
            }
            (StoreError::NotLeader { .. }, _) => {
                let f = self.failure_without_leader();
                p.waiter.answer(Err(f));
            }
            (other, _) => p.waiter.answer(Err(refusal(other))),
        }
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

/// The machine's input for an operation with request number `req`.
fn op_input(req: u64, op: StoreRequest) -> StoreInput {
    match op {
        StoreRequest::Propose(cmd) => StoreInput::Propose { req, cmd },
        StoreRequest::AddVoter {
            raft_id,
            node_id,
            addr,
        } => StoreInput::AddVoter {
            req,
            raft_id,
            node_id,
            addr,
        },
        StoreRequest::RemoveVoter { raft_id } => StoreInput::RemoveVoter { req, raft_id },
        StoreRequest::ReadIndex => StoreInput::ReadIndex { req },
    }
}

fn not_a_voter(node: NodeId) -> Response {
    Response::Store(StoreReply::Failed(StoreFailure::Refused(format!(
        "node {node} is not a manager of this cluster's store"
    ))))
}

fn refusal(e: &StoreError) -> StoreFailure {
    match e {
        StoreError::Busy => StoreFailure::Busy,
        e @ StoreError::OutOfSequence { .. } => StoreFailure::OutOfSequence(e.to_string()),
        other => StoreFailure::Refused(other.to_string()),
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
    managers: &crate::node::ManagerSet,
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
