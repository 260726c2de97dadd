//! A member's identity on the gossip layer: which node, where, and which incarnation of it.
//!
//! foca keys members by [`foca::Identity::addr`] and, when two identities share an address,
//! keeps the one that wins [`foca::Identity::win_addr_conflict`]. The `bump` decides that: a node
//! declared down renews itself with `bump + 1` and rejoins at once; a node restarted from its data
//! dir starts at `boot_counter << 32`, above every bump its earlier boots could have reached.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::NodeId;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MemberId {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// Orders identities of the same node: higher wins. Restarts move it by 2^32, rejoins by 1.
    pub bump: u64,
}

impl MemberId {
    /// How far a restart moves the bump: one boot may rejoin this many times before its bumps
    /// could reach the next boot's.
    pub const BUMPS_PER_BOOT: u64 = 1 << 32;

    /// The identity of a node on its `boot_counter`-th start. The caller persists the counter
    /// and adds one on every start, so a restarted node always wins over its former selves.
    pub fn new(id: NodeId, addr: SocketAddr, boot_counter: u32) -> Self {
        MemberId {
            id,
            addr,
            bump: u64::from(boot_counter) * Self::BUMPS_PER_BOOT,
        }
    }

    /// A placeholder for a seed whose node ID we do not know yet: we announce to its address,
    /// and foca accepts an announce addressed to any identity with the receiver's address.
    pub fn seed(addr: SocketAddr) -> Self {
        MemberId {
            id: NodeId::UNKNOWN,
            addr,
            bump: 0,
        }
    }

    /// Whether this is a [`MemberId::seed`] placeholder rather than a real member.
    pub fn is_seed(&self) -> bool {
        self.id == NodeId::UNKNOWN
    }

    /// The total order that decides address conflicts: bump first, then node ID so that two
    /// different nodes that end up on one address (a replaced machine) still get a winner.
    fn rank(&self) -> (u64, NodeId) {
        (self.bump, self.id)
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // A node that ran out of bumps in one boot cannot rejoin; it must restart.
        self.bump.checked_add(1).map(|bump| MemberId {
            id: self.id,
            addr: self.addr,
            bump,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.rank() > adversary.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn addr() -> SocketAddr {
        "10.0.0.1:2377".parse().unwrap()
    }

    #[test]
    fn renew_bumps_and_wins() {
        let a = MemberId::new(NodeId(7), addr(), 3);
        let b = a.renew().unwrap();
        assert_eq!(b.bump, a.bump + 1);
        assert_eq!((b.id, b.addr), (a.id, a.addr));
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }

    #[test]
    fn restart_beats_every_rejoin_of_the_boot_before() {
        let boot1 = MemberId::new(NodeId(7), addr(), 1);
        let mut rejoined = boot1.clone();
        for _ in 0..1000 {
            rejoined = rejoined.renew().unwrap();
        }
        let boot2 = MemberId::new(NodeId(7), addr(), 2);
        assert!(boot2.win_addr_conflict(&rejoined));
    }

    #[test]
    fn seed_placeholder_is_marked_and_loses() {
        let seed = MemberId::seed(addr());
        assert!(seed.is_seed());
        assert_eq!(seed.addr(), addr());
        let real = MemberId::new(NodeId(1), addr(), 0);
        assert!(!real.is_seed());
        assert!(real.win_addr_conflict(&seed));
    }

    #[test]
    fn exhausted_bump_cannot_renew() {
        let mut id = MemberId::new(NodeId(1), addr(), 0);
        id.bump = u64::MAX;
        assert_eq!(id.renew(), None);
    }
}
