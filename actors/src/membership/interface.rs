//! What goes into the membership machine and what comes out: inputs, timers, effects, events,
//! and the views and figures it answers with.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::MemberId;
use super::vetting::Sender;
use crate::model::{NodeDescription, NodeId, NodeState};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipTimer {
    Foca(foca::Timer<MemberId>),
    Rebroadcast,
    Reannounce,
    /// Gossip pending updates and broadcasts: set only while there are some (see
    /// [`Membership::keep_gossiping`]).
    Gossip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipInput {
    /// Begin: set up our own periodic timers and queue our description.
    Start,
    /// A datagram, and who sent it as the transport proved it (see [`Sender`]).
    Datagram {
        from: Sender,
        data: Bytes,
    },
    Timer(MembershipTimer),
    /// Join through the node at this address (a seed, or any member we know of).
    Announce(SocketAddr),
    /// Our own description changed (labels, resources): its version grows and it is gossiped.
    Describe(NodeDescription),
    /// Leave the cluster: tell a few members we are going; the machine then ignores all input.
    Leave,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEffect {
    Send {
        to: SocketAddr,
        data: Bytes,
    },
    Schedule {
        after: Duration,
        timer: MembershipTimer,
    },
    Event(MembershipEvent),
}

/// What changed. Events are edges for reacting quickly; [`Membership::members`] is the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    Up(NodeId),
    Down(NodeId),
    /// A newer description of another node arrived.
    Described(NodeDescription),
    /// The cluster declared us down; we took a new identity (bump + 1) and rejoined.
    Rejoined,
}

/// One row of `node ls`, as this node sees the cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// Ready (foca: alive or suspect) or Down.
    pub state: NodeState,
    pub description: Option<NodeDescription>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipStats {
    pub members_active: usize,
    pub members_listed: usize,
    pub descriptions: usize,
    pub updates_backlog: usize,
    pub broadcast_backlog: usize,
    pub datagrams_in: u64,
    /// Datagrams that did not decode or that foca refused; each changed nothing.
    pub datagrams_refused: u64,
    /// Errors from foca on timers and sends (foca's own bugs or our codec's).
    pub foca_errors: u64,
    pub descriptions_refused: u64,
    /// Packets, updates and descriptions refused because their sender spoke for another node
    /// (see `vetting.rs`); each changed nothing.
    pub lies_refused: u64,
    pub rejoins: u64,
}
