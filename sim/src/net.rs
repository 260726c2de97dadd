//! The simulated network between nodes.
//!
//! Every datagram gets a delay drawn from the network's RNG: a base plus jitter, with a rare long
//! tail, so datagrams overtake each other (reordering). On top of that the fault schedule sets a
//! loss rate (0-30 %), a duplication rate, and at most one partition at a time, either two-way
//! (the sides cannot talk) or one-way (one side's datagrams to the other are lost, replies pass).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::clock::Millis;

/// Shortest one-way delay.
pub const DELAY_BASE_MS: Millis = 1;
/// Uniform jitter on top of the base: enough to reorder datagrams sent close together.
pub const DELAY_JITTER_MS: Millis = 4;
/// Per mille of datagrams that take the long tail...
pub const TAIL_PER_MILLE: u32 = 5;
/// ...of up to this many extra milliseconds (a GC pause, a busy queue).
pub const TAIL_MS: Millis = 80;
/// Most loss the fault schedule may set.
pub const LOSS_PCT_MAX: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Nodes on different sides cannot reach each other.
    TwoWay { side: Vec<bool> },
    /// Datagrams from side `true` to side `false` are lost; the other direction passes.
    OneWay { side: Vec<bool> },
}

impl Partition {
    pub fn blocks(&self, from: usize, to: usize) -> bool {
        match self {
            Partition::TwoWay { side } => side[from] != side[to],
            Partition::OneWay { side } => side[from] && !side[to],
        }
    }
}

/// Where a datagram goes: delivered after `first` (unless lost), and once more after `dup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub first: Option<Millis>,
    pub dup: Option<Millis>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub partitioned: u64,
    pub duplicated: u64,
}

pub struct Network {
    rng: StdRng,
    loss_pct: u32,
    dup_pct: u32,
    partition: Option<Partition>,
    pub stats: NetStats,
}

impl Network {
    pub fn new(seed: u64) -> Self {
        Network {
            rng: StdRng::seed_from_u64(seed),
            loss_pct: 0,
            dup_pct: 0,
            partition: None,
            stats: NetStats::default(),
        }
    }

    pub fn set_loss(&mut self, pct: u32) {
        assert!(pct <= LOSS_PCT_MAX, "loss over {LOSS_PCT_MAX} %");
        self.loss_pct = pct;
    }

    pub fn set_duplication(&mut self, pct: u32) {
        assert!(pct <= 10, "duplication over 10 %");
        self.dup_pct = pct;
    }

    pub fn set_partition(&mut self, p: Option<Partition>) {
        self.partition = p;
    }

    pub fn partition(&self) -> Option<&Partition> {
        self.partition.as_ref()
    }

    fn delay(&mut self) -> Millis {
        let mut d = DELAY_BASE_MS + self.rng.random_range(0..=DELAY_JITTER_MS);
        if self.rng.random_range(0..1000) < TAIL_PER_MILLE {
            d += self.rng.random_range(0..=TAIL_MS);
        }
        d
    }

    pub fn route(&mut self, from: usize, to: usize) -> Route {
        self.stats.sent += 1;
        if self.partition.as_ref().is_some_and(|p| p.blocks(from, to)) {
            self.stats.partitioned += 1;
            return Route {
                first: None,
                dup: None,
            };
        }
        if self.loss_pct > 0 && self.rng.random_range(0..100) < self.loss_pct {
            self.stats.lost += 1;
            return Route {
                first: None,
                dup: None,
            };
        }
        let first = Some(self.delay());
        let dup = if self.dup_pct > 0 && self.rng.random_range(0..100) < self.dup_pct {
            self.stats.duplicated += 1;
            Some(self.delay())
        } else {
            None
        };
        Route { first, dup }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_block_the_right_directions() {
        let side = vec![true, true, false];
        let two = Partition::TwoWay { side: side.clone() };
        assert!(two.blocks(0, 2) && two.blocks(2, 0) && !two.blocks(0, 1));
        let one = Partition::OneWay { side };
        assert!(one.blocks(0, 2) && !one.blocks(2, 0));
    }

    #[test]
    fn loss_and_delay_stay_in_bounds() {
        let mut net = Network::new(3);
        net.set_loss(30);
        let mut delivered = 0;
        for _ in 0..10_000 {
            if let Some(d) = net.route(0, 1).first {
                assert!((DELAY_BASE_MS..=DELAY_BASE_MS + DELAY_JITTER_MS + TAIL_MS).contains(&d));
                delivered += 1;
            }
        }
        assert!((6_000..8_000).contains(&delivered), "{delivered}");
        net.set_partition(Some(Partition::TwoWay {
            side: vec![true, false],
        }));
        assert_eq!(net.route(0, 1).first, None);
    }
}
