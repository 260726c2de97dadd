//! Membership timings and bounds, validated once at start and turned into foca's config.
//!
//! [`MembershipConfig::lan`] aims at a LAN cluster of up to about 50 nodes: a killed node is
//! marked Down everywhere in about 1.5 s, and a live one is never marked Down under normal load.
//! The budget, from the moment a node dies:
//!
//! ```text
//!   wait to be probed   ~0-300 ms  every member probes one other per probe period (300 ms)
//!   probe fails             300 ms  direct ping (150 ms rtt), then 3 indirect pings
//!   suspicion               600 ms  time for a live node to hear of it and refute
//!   dissemination     ~200-400 ms  Down gossiped every 100 ms to 3 members, epidemic
//! ```
//!
//! Down members stay listed (so `node ls` shows them Down) for a day, and are announced to
//! every announce period so that both sides of a healed partition merge again.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MembershipError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipConfig {
    /// How often this node probes one member.
    pub probe_period_ms: u64,
    /// How long a direct probe waits for its ack before asking others to probe indirectly.
    pub probe_rtt_ms: u64,
    /// How long a suspected member has to refute before it is declared Down.
    pub suspect_to_down_after_ms: u64,
    /// Members asked to probe on our behalf when a direct probe goes unanswered.
    pub num_indirect_probes: usize,
    /// Times each update and broadcast is piggybacked; raised with the cluster size hint.
    pub max_transmissions: u8,
    /// How often pending updates are gossiped (to `gossip_fanout` random members), by the
    /// machine's own timer, which is set only while there are some.
    pub gossip_period_ms: u64,
    pub gossip_fanout: usize,
    /// How long a Down member stays listed before it is forgotten.
    pub remove_down_after_ms: u64,
    /// How often we announce to one live member (to learn members we missed), to a few Down
    /// members (to heal partitions), and, while we know no live member, to our seeds.
    pub announce_period_ms: u64,
    /// How often we re-broadcast our own description and ask members whose description we lack.
    pub rebroadcast_period_ms: u64,
    /// The largest datagram we send or accept, tag byte included. 1150 fits a QUIC datagram at
    /// quinn's initial 1200-byte path MTU.
    pub max_packet_bytes: usize,
}

/// Smallest accepted `max_packet_bytes`: room for a header and a few updates.
pub const PACKET_BYTES_MIN: usize = 512;
/// Largest accepted `max_packet_bytes`: foca counts items with a u16 and a UDP datagram ends
/// near 64 KiB.
pub const PACKET_BYTES_MAX: usize = 65_000;

/// The cluster size a node queues its own description again every rebroadcast tick for. In a
/// larger cluster it does so less often, up to [`OWN_REQUEUE_TICKS_MAX`] ticks apart: each
/// re-queue is gossiped to members picked among all of them and decoded by each. Probing,
/// suspicion and announces keep their timings: detection does not slow down with size, and
/// the announces' feeds are how a late joiner learns members whose news it missed.
pub const OWN_REQUEUE_SIZED_FOR: usize = 50;
/// Most rebroadcast ticks between two re-queues of a node's own description.
pub const OWN_REQUEUE_TICKS_MAX: u64 = 6;
/// The cluster size the periodic announce keeps its configured period for. Each announce is
/// answered with a feed of as many members as fill a datagram (about 80), and every member in
/// it is looked up by the receiver: at 1,000 members the feeds were most of foca's work in a
/// quiet cluster. A larger cluster stretches the period by one step per this many members.
pub const ANNOUNCE_SIZED_FOR: usize = 250;
/// Most steps the announce period is stretched by (2 s becomes at most 8 s). Feeds are how a
/// member learns one whose news it missed; a member also learns any member that probes it,
/// which every member does within one probe round.
pub const ANNOUNCE_STRETCH_MAX: usize = 4;

/// Most members a digest goes to each rebroadcast tick. With one, a node at 200 members waited
/// about 50 s on average for a digest naming a description it missed (the simulator's 200-node
/// runs failed invariant (c) even after a 30 s heal).
pub const DIGEST_FANOUT_MAX: usize = 3;
/// The cluster size up to which digests go to [`DIGEST_FANOUT_MAX`] members.
pub const DIGEST_FANOUT_SIZED_FOR: usize = 250;

impl MembershipConfig {
    pub fn lan() -> Self {
        MembershipConfig {
            probe_period_ms: 250,
            probe_rtt_ms: 125,
            suspect_to_down_after_ms: 500,
            num_indirect_probes: 3,
            max_transmissions: 8,
            gossip_period_ms: 100,
            gossip_fanout: 3,
            remove_down_after_ms: 24 * 60 * 60 * 1000,
            announce_period_ms: 2_000,
            rebroadcast_period_ms: 5_000,
            max_packet_bytes: 1150,
        }
    }

    pub fn validate(&self) -> Result<(), MembershipError> {
        let bad = |field, reason| Err(MembershipError::InvalidConfig { field, reason });
        let positive = [
            ("probe_period_ms", self.probe_period_ms),
            ("probe_rtt_ms", self.probe_rtt_ms),
            ("suspect_to_down_after_ms", self.suspect_to_down_after_ms),
            ("gossip_period_ms", self.gossip_period_ms),
            ("remove_down_after_ms", self.remove_down_after_ms),
            ("announce_period_ms", self.announce_period_ms),
            ("rebroadcast_period_ms", self.rebroadcast_period_ms),
        ];
        for (field, v) in positive {
            if v == 0 {
                return bad(field, "must be above zero");
            }
        }
        if self.probe_rtt_ms >= self.probe_period_ms {
            return bad("probe_rtt_ms", "must be below probe_period_ms");
        }
        if self.num_indirect_probes == 0 {
            return bad("num_indirect_probes", "must be above zero");
        }
        if self.gossip_fanout == 0 {
            return bad("gossip_fanout", "must be above zero");
        }
        if self.max_transmissions == 0 {
            return bad("max_transmissions", "must be above zero");
        }
        if !(PACKET_BYTES_MIN..=PACKET_BYTES_MAX).contains(&self.max_packet_bytes) {
            return bad("max_packet_bytes", "must be between 512 and 65000");
        }
        Ok(())
    }

    /// The largest foca packet: the datagram without our tag byte.
    pub fn foca_packet_bytes(&self) -> usize {
        self.max_packet_bytes - 1
    }

    /// foca's config for a cluster of about `cluster_size_hint` members. The number of
    /// transmissions grows with the cluster (as memberlist does: 4 × ⌈log10(n + 1)⌉), so that an
    /// update still reaches everyone, and the announce period stretches past
    /// [`ANNOUNCE_SIZED_FOR`] members; probing, suspicion and gossip keep their timings.
    ///
    /// Call [`MembershipConfig::validate`] first; this asserts what it checks.
    pub fn to_foca(&self, cluster_size_hint: usize) -> foca::Config {
        assert!(self.validate().is_ok(), "to_foca on an invalid config");
        let digits = (cluster_size_hint.saturating_add(1) as f64).log10().ceil() as u32;
        let scaled = u8::try_from(4 * digits.max(1)).unwrap_or(u8::MAX);
        let max_tx = self.max_transmissions.max(scaled);
        let nz = |v: usize| NonZeroUsize::new(v).expect("validated above zero");
        let ms = Duration::from_millis;
        foca::Config {
            probe_period: ms(self.probe_period_ms),
            probe_rtt: ms(self.probe_rtt_ms),
            num_indirect_probes: nz(self.num_indirect_probes),
            max_transmissions: NonZeroU8::new(max_tx).expect("at least one"),
            suspect_to_down_after: ms(self.suspect_to_down_after_ms),
            remove_down_after: Some(ms(self.remove_down_after_ms)),
            max_packet_size: nz(self.foca_packet_bytes()),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: ms(self.announce_period_ms * Self::announce_stretch(cluster_size_hint)),
                num_members: nz(1),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: ms(self.announce_period_ms),
                num_members: nz(2),
            }),
            // The machine gossips on its own timer, set only while there is something to send.
            periodic_gossip: None,
        }
    }

    /// By how many times the announce period is stretched in a cluster of about `n` members.
    pub fn announce_stretch(n: usize) -> u64 {
        n.div_ceil(ANNOUNCE_SIZED_FOR)
            .clamp(1, ANNOUNCE_STRETCH_MAX) as u64
    }

    /// How many random members a node sends its digest to each rebroadcast tick in a cluster of
    /// about `n` members: [`DIGEST_FANOUT_MAX`] up to [`DIGEST_FANOUT_SIZED_FOR`] members, one
    /// above. Each digest received costs its receiver a lookup per entry in its book, and in a
    /// converged cluster every one of them finds nothing: at 1,000 members three digests a tick
    /// were about a tenth of the membership loop's time.
    pub fn digest_fanout(n: usize) -> usize {
        if n <= DIGEST_FANOUT_SIZED_FOR {
            DIGEST_FANOUT_MAX
        } else {
            1
        }
    }

    /// Every how many rebroadcast ticks a node queues its own description for gossip again in a
    /// cluster of about `n` members (each re-queue is gossiped to members picked among `n`);
    /// digests and direct pulls repair what gossip misses in between.
    pub fn own_requeue_ticks(n: usize) -> u64 {
        (n.div_ceil(OWN_REQUEUE_SIZED_FOR).max(1) as u64).min(OWN_REQUEUE_TICKS_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_is_valid_and_meets_its_budget() {
        let c = MembershipConfig::lan();
        c.validate().unwrap();
        // probe wait + probe + suspicion + a few gossip rounds stays near 1.5 s.
        let budget = c.probe_period_ms * 2 + c.suspect_to_down_after_ms + 4 * c.gossip_period_ms;
        assert!(budget <= 1_600, "budget {budget} ms");
        assert!(c.remove_down_after_ms >= 60 * 60 * 1000);
    }

    #[test]
    fn refuses_bad_values() {
        let mut c = MembershipConfig::lan();
        c.probe_rtt_ms = c.probe_period_ms;
        assert!(matches!(
            c.validate(),
            Err(MembershipError::InvalidConfig {
                field: "probe_rtt_ms",
                ..
            })
        ));
        let mut c = MembershipConfig::lan();
        c.suspect_to_down_after_ms = 0;
        assert!(c.validate().is_err());
        let mut c = MembershipConfig::lan();
        c.max_packet_bytes = 100;
        assert!(c.validate().is_err());
        let mut c = MembershipConfig::lan();
        c.num_indirect_probes = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn transmissions_grow_with_the_cluster() {
        let c = MembershipConfig::lan();
        assert_eq!(c.to_foca(5).max_transmissions.get(), 8);
        assert_eq!(c.to_foca(1000).max_transmissions.get(), 16);
        let f = c.to_foca(50);
        assert_eq!(f.probe_period, Duration::from_millis(250));
        assert_eq!(f.max_packet_size.get(), 1149);
        assert!(f.notify_down_members);
    }

    #[test]
    fn announces_are_spaced_out_in_large_clusters_only() {
        let c = MembershipConfig::lan();
        let every = |n| c.to_foca(n).periodic_announce.unwrap().frequency;
        assert_eq!(every(5), Duration::from_millis(c.announce_period_ms));
        assert_eq!(every(250), Duration::from_millis(c.announce_period_ms));
        assert_eq!(every(251), Duration::from_millis(2 * c.announce_period_ms));
        assert_eq!(every(1000), Duration::from_millis(4 * c.announce_period_ms));
        assert_eq!(
            every(100_000),
            Duration::from_millis(4 * c.announce_period_ms)
        );
        // Announces to Down members (which heal partitions) keep their period.
        let down = c.to_foca(1000).periodic_announce_to_down_members.unwrap();
        assert_eq!(down.frequency, Duration::from_millis(c.announce_period_ms));
    }

    #[test]
    fn digests_go_to_more_members_in_clusters_up_to_250() {
        assert_eq!(MembershipConfig::digest_fanout(3), DIGEST_FANOUT_MAX);
        assert_eq!(MembershipConfig::digest_fanout(250), DIGEST_FANOUT_MAX);
        assert_eq!(MembershipConfig::digest_fanout(251), 1);
        assert_eq!(MembershipConfig::digest_fanout(1000), 1);
    }

    #[test]
    fn own_description_is_requeued_less_often_in_large_clusters() {
        assert_eq!(MembershipConfig::own_requeue_ticks(16), 1);
        assert_eq!(MembershipConfig::own_requeue_ticks(120), 3);
        assert_eq!(
            MembershipConfig::own_requeue_ticks(1000),
            OWN_REQUEUE_TICKS_MAX
        );
    }
}
