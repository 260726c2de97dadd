//! SWIM membership over foca 2, as a sans-IO state machine.
//!
//! Every node runs one [`Membership`]. The NodeActor feeds it datagrams and timer expiries and
//! carries out the effects it returns (send these bytes, wake me after this long, this node went
//! down); the simulator (`sim/`) drives the very same machine over a simulated network. Nothing
//! here reads a clock, draws global randomness or touches a socket.
//!
//! ```text
//!   MembershipInput ──► Membership::handle ──► Vec<MembershipEffect>
//!                          │  foca (SWIM: probe, suspect, down, gossip)
//!                          │  NodeDescriptions (custom broadcasts: who runs where, labels)
//!                          ▼
//!                   members(): one row per NodeId, Ready or Down, with its description
//! ```
//!
//! # Datagram format
//!
//! Each datagram starts with one tag byte: [`TAG_FOCA`] then a foca packet (encoded by
//! [`BincodeCodec`]), or [`TAG_DESCRIPTION`] then a reply-to address and a description item: a
//! node pushes its description straight to a member it has just seen come up (which does the
//! same the other way), so a late joiner learns every description without waiting for gossip
//! to reach it (a receiver that does not list the sender as live takes it as a member); or
//! [`TAG_DIGEST`] then a bincode list of (node, bump, version) a member holds, so that a node
//! that missed a change asks its owner for it; or [`TAG_DOWNS`] then a bincode list of member
//! identities the sender learned were Down in the last minute, sent to a few random members
//! every rebroadcast tick, so that a node that missed a death's gossip (cut off meanwhile, or joined after it faded) learns it
//! without waiting for its own probe round to reach the dead node.
//!
//! # Layout
//!
//! | file | what |
//! |---|---|
//! | `identity.rs` | [`MemberId`]: node ID, address, and a bump that orders restarts and rejoins |
//! | `codec.rs` | [`BincodeCodec`]: foca's headers and member updates in bincode |
//! | `broadcast.rs` | [`NodeDescriptions`]: node descriptions as foca custom broadcasts |
//! | `config.rs` | [`MembershipConfig`]: timings and bounds, checked once, turned into foca's config |
//! | `interface.rs` | [`MembershipInput`], [`MembershipEffect`], [`MembershipEvent`], [`MembershipTimer`], [`MemberView`], [`MembershipStats`]: what goes in and comes out |
//! | `machine/mod.rs` | [`Membership`]: the state machine, foca and its timers, datagram dispatch |
//! | `machine/descriptions.rs` | descriptions pushed to new members, queued for gossip, checked |
//! | `machine/news.rs` | the repair channels: digests of descriptions held, news of recent deaths |
//! | `vetting.rs` | [`Sender`] and what is believed of a datagram given who really sent it |

mod broadcast;
mod codec;
mod config;
mod identity;
mod interface;
mod machine;
mod vetting;

#[cfg(test)]
mod tests;

pub use broadcast::{
    DESCRIPTION_ITEM_BYTES_MAX, DESCRIPTIONS_MAX, DescriptionError, DescriptionItem,
    DescriptionKey, NodeDescriptions,
};
pub use codec::{BincodeCodec, CODEC_BYTES_MAX, CodecError};
pub use config::{DIGEST_FANOUT_MAX, DIGEST_FANOUT_SIZED_FOR, MembershipConfig};
pub use identity::MemberId;
pub use interface::{
    MemberView, MembershipEffect, MembershipEvent, MembershipInput, MembershipStats,
    MembershipTimer,
};
pub use machine::{
    DIGEST_ENTRIES_MAX, DOWN_NEWS_FANOUT, DOWN_NEWS_KEPT, DOWN_NEWS_MAX, DOWN_NEWS_TICKS,
    Membership, SEEDS_MAX, TAG_DESCRIPTION, TAG_DIGEST, TAG_DOWNS, TAG_FOCA,
};
pub use vetting::{RELAYED_BUMP_AHEAD_MAX, Sender, role_allowed};

use crate::model::{NodeDescriptionError, NodeId};

/// Why the membership machine refused something. Each variant leaves the machine unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("membership config: {field} {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error("node description: {0}")]
    Description(#[from] NodeDescriptionError),
    #[error("node description encodes to {bytes} bytes, over the gossip limit of {max} bytes")]
    DescriptionTooLarge { bytes: usize, max: usize },
    #[error("node description is for {got:?}, but this node is {expected:?}")]
    DescriptionNotOurs { expected: NodeId, got: NodeId },
    #[error("a member's identity needs a real node ID, not the seed placeholder")]
    UnknownIdentity,
    #[error("node description does not encode: {0}")]
    Encode(String),
}
