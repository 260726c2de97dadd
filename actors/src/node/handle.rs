//! The typed handle callers hold instead of the NodeActor's raw mailbox.

use ractor::{ActorRef, RpcReplyPort};
use serde_json::Value;

use super::msg::{CaView, JoinTokensView, NodeAdmin, NodeMsg, NodeStats};
use crate::membership::MemberView;
use crate::model::{NodeDescription, NodeId, Role};
use crate::registry::{AdminError, AdminReply, AdminTarget};

/// How long a caller waits for the NodeActor to answer.
pub const CALL_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the node actor did not answer: {0}")]
    NoAnswer(String),
    #[error("{0}")]
    Refused(String),
}

#[derive(Clone)]
pub struct NodeHandle {
    actor: ActorRef<NodeMsg>,
    id: NodeId,
}

impl NodeHandle {
    pub(crate) fn new(actor: ActorRef<NodeMsg>, id: NodeId) -> Self {
        Self { actor, id }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn actor(&self) -> &ActorRef<NodeMsg> {
        &self.actor
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> NodeMsg,
    ) -> Result<T, NodeError> {
        crate::ask::ask(&self.actor, msg, CALL_TIMEOUT_MS)
            .await
            .map_err(|e| NodeError::NoAnswer(e.to_string()))
    }

    pub async fn describe(&self) -> Result<NodeDescription, NodeError> {
        self.call(NodeMsg::Describe).await
    }

    pub async fn members(&self) -> Result<Vec<MemberView>, NodeError> {
        self.call(NodeMsg::Members).await
    }

    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        self.call(NodeMsg::Stats).await
    }

    pub async fn join_tokens(&self) -> Result<JoinTokensView, NodeError> {
        self.call(NodeMsg::JoinTokens)
            .await?
            .map_err(NodeError::Refused)
    }

    pub async fn rotate_token(&self, role: Role) -> Result<JoinTokensView, NodeError> {
        self.call(|port| NodeMsg::RotateToken(role, port))
            .await?
            .map_err(NodeError::Refused)
    }

    /// The root CA and the progress of its rotation; `rotate` starts a rotation first.
    pub async fn ca(&self, rotate: bool) -> Result<CaView, NodeError> {
        self.call(|port| NodeMsg::Ca { rotate, port })
            .await?
            .map_err(NodeError::Refused)
    }

    /// The store, when this node is a manager.
    pub async fn store(&self) -> Result<Option<crate::replica::StoreHandle>, NodeError> {
        self.call(NodeMsg::Store).await
    }

    /// Sends `req` to the node at `addr` and returns its answer.
    pub async fn ask(
        &self,
        addr: std::net::SocketAddr,
        req: crate::wire::Request,
    ) -> Result<crate::wire::Response, NodeError> {
        self.call(|reply| NodeMsg::Ask { addr, req, reply })
            .await?
            .map_err(NodeError::Refused)
    }

    /// Refuses a removed node from now on, on this node and every member.
    pub async fn deny(&self, node: NodeId) -> Result<(), NodeError> {
        self.call(|port| NodeMsg::Deny(node, port)).await
    }

    /// Tells the cluster this node is leaving, so others mark it down at once.
    pub async fn leave(&self) -> Result<(), NodeError> {
        self.call(NodeMsg::Leave).await
    }

    async fn admin(&self, msg: NodeAdmin) -> Result<Value, NodeError> {
        fn json<T: serde::Serialize>(v: T) -> Result<Value, NodeError> {
            serde_json::to_value(v)
                .map_err(|e| NodeError::Refused(format!("answer does not encode: {e}")))
        }
        match msg {
            NodeAdmin::Describe => json(self.describe().await?),
            NodeAdmin::Members => json(self.members().await?),
            NodeAdmin::Stats => json(self.stats().await?),
            NodeAdmin::JoinTokens => json(self.join_tokens().await?),
            NodeAdmin::RotateToken { role } => json(self.rotate_token(role).await?),
        }
    }
}

impl AdminTarget for NodeHandle {
    fn messages(&self) -> &'static [&'static str] {
        NodeAdmin::NAMES
    }

    fn call(&self, msg: &str, args: Value) -> AdminReply<'_> {
        let name = msg.to_string();
        Box::pin(async move {
            let typed: NodeAdmin = crate::registry::decode(&name, args)?;
            self.admin(typed)
                .await
                .map_err(|e| AdminError::NoAnswer(format!("node/{}", self.id), e.to_string()))
        })
    }
}
