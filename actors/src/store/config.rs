//! Store timings and bounds, validated once at start.
//!
//! The aim: after the leader of three managers is killed, a write is accepted within 1.5 s.
//! Followers notice after their election timeout (a fixed draw from
//! `[election_ticks, 2 × election_ticks)` ticks, so 500-1000 ms at the defaults), pre-vote and
//! vote take a round trip or two, and the new leader commits its first entry one more round
//! trip later.

use serde::{Deserialize, Serialize};

use super::StoreError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// How often the caller sends [`super::StoreInput::Tick`].
    pub tick_ms: u64,
    /// Ticks without a leader's word before a follower stands for election (the lower bound of
    /// its timeout).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries between snapshots (after which the log is compacted).
    pub snapshot_every_entries: u64,
    /// Most bytes of entries in one append message.
    pub max_size_per_msg_bytes: u64,
    /// Most append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Most proposals and reads waiting for an answer; past it, `Refused { Busy }`.
    pub proposals_pending_max: usize,
    /// How long a proposal or read may wait before it is answered `Timeout`.
    pub request_timeout_ms: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_every_entries: 10_000,
            max_size_per_msg_bytes: 512 * 1024,
            max_inflight_msgs: 256,
            proposals_pending_max: 1_024,
            request_timeout_ms: 10_000,
            pre_vote: true,
            check_quorum: true,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |field, reason| Err(StoreError::Config { field, reason });
        if self.tick_ms == 0 {
            return bad("tick_ms", "must be above zero");
        }
        if self.heartbeat_ticks == 0 {
            return bad("heartbeat_ticks", "must be above zero");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return bad("election_ticks", "must be above heartbeat_ticks");
        }
        if self.snapshot_every_entries == 0 {
            return bad("snapshot_every_entries", "must be above zero");
        }
        if self.max_size_per_msg_bytes == 0 {
            return bad("max_size_per_msg_bytes", "must be above zero");
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs", "must be above zero");
        }
        if self.proposals_pending_max == 0 {
            return bad("proposals_pending_max", "must be above zero");
        }
        if self.request_timeout_ms < self.tick_ms * self.election_ticks as u64 {
            return bad(
                "request_timeout_ms",
                "must cover at least one election timeout",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_refused() {
        StoreConfig::default().validate().unwrap();
        let c = StoreConfig {
            election_ticks: 1,
            ..StoreConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(StoreError::Config {
                field: "election_ticks",
                ..
            })
        ));
        let c = StoreConfig {
            proposals_pending_max: 0,
            ..StoreConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
