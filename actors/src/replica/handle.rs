//! The typed handle to a manager's StoreActor.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::{oneshot, watch};

use super::OPERATION_TIMEOUT_MS;
use super::msg::{ReadResult, StoreFailure, StoreMsg, StoreStatus};
use crate::ask::AskError;
use crate::model::NodeId;
use crate::store::{Kind, StoreCommand};
use crate::trust::Tokens;
use crate::wire::Response;

/// The join tokens of the cluster object as this replica last applied it. The StoreActor
/// replaces them whenever an applied entry or snapshot changes that object, before it answers
/// the proposal that changed it, so a rotation is in force here once it is reported done.
/// Joins check their token against this copy first: a peer without a certificate costs no
/// message to the store actor and no parse of the CA key until it shows a valid token.
#[derive(Clone, Default)]
pub struct AppliedTokens(Arc<RwLock<Option<Tokens>>>);

impl AppliedTokens {
    pub(crate) fn get(&self) -> Option<Tokens> {
        self.0.read().expect("tokens lock").clone()
    }

    pub(crate) fn set(&self, tokens: Option<Tokens>) {
        *self.0.write().expect("tokens lock") = tokens;
    }
}

/// Where this replica stands, as of the last message the StoreActor handled: what the node
/// actor follows to start and stop the leader actor, and the leader actor to know the store
/// applied something new. Published on a watch channel, so a reader sees the newest only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The raft term this replica knows.
    pub term: u64,
    /// This replica is the raft leader in `term`.
    pub leading: bool,
    /// The leader's address, when another manager leads and its address is known: where a
    /// session that reached this manager is sent.
    pub leader_addr: Option<SocketAddr>,
    /// The last applied raft index.
    pub applied_index: u64,
}

#[derive(Clone)]
pub struct StoreHandle {
    actor: ActorRef<StoreMsg>,
    tokens: AppliedTokens,
    progress: watch::Receiver<Progress>,
    /// Where a session reaches this node's leader actor (see [`Self::session`]).
    registry: Option<crate::registry::Registry>,
}

impl StoreHandle {
    pub(crate) fn new(
        actor: ActorRef<StoreMsg>,
        tokens: AppliedTokens,
        progress: watch::Receiver<Progress>,
        registry: Option<crate::registry::Registry>,
    ) -> Self {
        Self {
            actor,
            tokens,
            progress,
            registry,
        }
    }

    /// Where this replica stands now, and a receiver that learns of every change.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// The join tokens this replica holds now (see [`AppliedTokens`]); `None` before the
    /// cluster object exists.
    pub fn join_tokens(&self) -> Option<Tokens> {
        self.tokens.get()
    }

    pub fn actor(&self) -> &ActorRef<StoreMsg> {
        &self.actor
    }

    /// Asks the actor; `writes` says whether the request may write (then an answer that never
    /// comes means the write may have committed).
    async fn call<T: Send + 'static>(
        &self,
        writes: bool,
        msg: impl FnOnce(RpcReplyPort<Result<T, StoreFailure>>) -> StoreMsg,
    ) -> Result<T, StoreFailure> {
        // A little longer than the actor's own timeout, so its answer wins when it has one.
        match crate::ask::ask(&self.actor, msg, OPERATION_TIMEOUT_MS + 1_000).await {
            Ok(result) => result,
            Err(AskError::Timeout | AskError::Dropped) if writes => {
                Err(StoreFailure::MayHaveCommitted(
                    "the store did not answer in time; the write may have committed: read \
                     before retrying"
                        .into(),
                ))
            }
            Err(AskError::Timeout | AskError::Dropped) => Err(StoreFailure::Timeout),
            Err(AskError::Gone(e)) => Err(StoreFailure::Refused(format!(
                "the store is not running: {e}"
            ))),
        }
    }

    /// Commits a command through raft; the raft index it was applied at.
    pub async fn propose(&self, cmd: StoreCommand) -> Result<u64, StoreFailure> {
        self.call(true, |reply| StoreMsg::Propose { cmd, reply })
            .await
    }

    /// Objects of one kind, confirmed with the leader first when `linearizable`.
    pub async fn read(&self, kind: Kind, linearizable: bool) -> Result<ReadResult, StoreFailure> {
        self.call(false, |reply| StoreMsg::Read {
            kind,
            linearizable,
            reply,
        })
        .await
    }

    pub async fn add_voter(
        &self,
        raft_id: u64,
        node_id: NodeId,
        addr: SocketAddr,
    ) -> Result<u64, StoreFailure> {
        self.call(true, |reply| StoreMsg::AddVoter {
            raft_id,
            node_id,
            addr,
            reply,
        })
        .await
    }

    pub async fn remove_voter(&self, raft_id: u64) -> Result<u64, StoreFailure> {
        self.call(true, |reply| StoreMsg::RemoveVoter { raft_id, reply })
            .await
    }

    pub async fn status(&self) -> Result<StoreStatus, StoreFailure> {
        self.call(false, StoreMsg::Status).await
    }

    /// Hands an operation another manager forwarded to the actor; the answer goes to `reply`.
    pub fn forwarded(
        &self,
        op: crate::wire::StoreRequest,
        from: NodeId,
        reply: oneshot::Sender<Response>,
    ) {
        // If the actor is gone, `reply` is dropped and the asker sees the stream end.
        let _ = self
            .actor
            .send_message(StoreMsg::Forwarded { op, from, reply });
    }

    /// A raft chunk that arrived from `remote`.
    /// Hands a follower's read-index request to the actor; the answer goes to `reply`.
    pub fn forwarded_read(&self, from: NodeId, reply: oneshot::Sender<Response>) {
        // If the actor is gone, `reply` is dropped and the asker sees the stream end.
        let _ = self
            .actor
            .send_message(StoreMsg::ForwardedRead { from, reply });
    }

    /// A node's session with the dispatcher (see [`crate::agent`]): its assignments from this
    /// node's leader actor (which the node actor runs while this replica leads), or where the
    /// leader is.
    pub async fn session(&self, from: NodeId, report: crate::wire::SessionReport) -> Response {
        let rx = self
            .registry
            .as_ref()
            .and_then(|r| r.leader_session(from, report));
        match rx {
            // A leader that stopped dropped the reply: no leader here then.
            Some(rx) => rx.await.unwrap_or(Response::NotLeader { leader: None }),
            None => Response::NotLeader {
                leader: self.progress.borrow().leader_addr,
            },
        }
    }

    pub fn raft(
        &self,
        chunk: super::chunks::RaftChunk,
        remote: SocketAddr,
        from: crate::trust::PeerIdentity,
    ) {
        // Raft retries what is lost, including while the actor stops.
        let _ = self.actor.send_message(StoreMsg::Raft {
            chunk,
            remote,
            from,
        });
    }

    /// Membership's view: which nodes are Ready (for "no quorum" messages) and what each says
    /// about itself (for the leader's scheduler).
    pub fn set_members(&self, members: Vec<crate::membership::MemberView>) {
        // A hint, repeated at every membership change; harmless to lose.
        let _ = self.actor.send_message(StoreMsg::Members(members));
    }
}
