//! Messages the leader actor takes: from the node actor (membership, sessions), from its own
//! store watch and store calls, from its timers, and from the admin shell.

use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use super::machine::LeaderTimer;
use super::view::{LeaderView, ServiceView};
use crate::membership::MemberView;
use crate::model::NodeId;
use crate::replica::{ReadResult, StoreFailure};
use crate::wire::{Response, SessionReport};

pub enum LeaderMsg {
    /// The admin shell's `Rebuild`: a pass now.
    RebuildNow,
    /// The admin shell's `Describe` of `leader`.
    Describe(RpcReplyPort<LeaderView>),
    /// The admin shell's `Describe` of `service/<name>`; `None` once the service is gone.
    DescribeService {
        name: String,
        reply: RpcReplyPort<Option<ServiceView>>,
    },
    /// The store applied new entries (from the replica's progress watch).
    StoreApplied,
    /// Membership's view changed: who is Ready, and what each node says about itself.
    MembersChanged(Vec<MemberView>),
    /// A node's session: its statuses in, its assignments out on `reply`.
    SessionOpened {
        from: NodeId,
        report: SessionReport,
        reply: oneshot::Sender<Response>,
    },
    /// A timer the machine set came due.
    TimerFired(LeaderTimer),
    /// The pass's read came back: nodes, services and tasks.
    StoreRead(Result<Box<[ReadResult; 6]>, StoreFailure>),
    /// The pass's last proposal came back.
    ProposalDone(Result<u64, StoreFailure>),
    /// Makes the handler panic, to test that the node actor restarts the leader.
    #[cfg(test)]
    PanicForTest,
}
