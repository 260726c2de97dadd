//! The fault schedule: which faults strike when, drawn from the seed before the run starts.
//!
//! Each kind of fault has its own timeline in the safety phase: a gap, a fault, its duration,
//! the next gap. Faults of one kind never overlap; faults of different kinds do. Whether a
//! fault still applies (a node to crash may already be down) is decided when it strikes.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::clock::Millis;
use crate::net::{LOSS_PCT_MAX, Partition};

/// Which kinds of fault a run injects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultKinds {
    pub crash: bool,
    pub pause: bool,
    pub partition: bool,
    pub loss: bool,
    pub skew: bool,
}

impl FaultKinds {
    pub const ALL: FaultKinds = FaultKinds {
        crash: true,
        pause: true,
        partition: true,
        loss: true,
        skew: true,
    };
    pub const NONE: FaultKinds = FaultKinds {
        crash: false,
        pause: false,
        partition: false,
        loss: false,
        skew: false,
    };
}

impl FromStr for FaultKinds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => return Ok(FaultKinds::ALL),
            "none" | "" => return Ok(FaultKinds::NONE),
            _ => {}
        }
        let mut k = FaultKinds::NONE;
        for word in s.split(',') {
            match word.trim() {
                "crash" => k.crash = true,
                "pause" => k.pause = true,
                "partition" => k.partition = true,
                "loss" => k.loss = true,
                "skew" => k.skew = true,
                other => {
                    return Err(format!(
                        "unknown fault {other:?}: use crash,pause,partition,loss,skew, all or none"
                    ));
                }
            }
        }
        Ok(k)
    }
}

impl fmt::Display for FaultKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == FaultKinds::ALL {
            return f.write_str("all");
        }
        let names: Vec<&str> = [
            (self.crash, "crash"),
            (self.pause, "pause"),
            (self.partition, "partition"),
            (self.loss, "loss"),
            (self.skew, "skew"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Kill the node; restart it from its data dir after `restart_after_ms`, or never.
    Crash {
        node: usize,
        restart_after_ms: Option<Millis>,
    },
    Pause {
        node: usize,
        for_ms: Millis,
    },
    Partition {
        partition: Partition,
        for_ms: Millis,
    },
    Loss {
        pct: u32,
        for_ms: Millis,
    },
    /// The node's timers run at `rate` times their asked length.
    Skew {
        node: usize,
        rate: f64,
        for_ms: Millis,
    },
}

/// No fault strikes before this: the cluster forms first.
pub const FAULTS_FROM_MS: Millis = 3_000;
/// Duplication rate while the loss fault is enabled, in percent.
pub const DUPLICATION_PCT: u32 = 2;

/// Draws the schedule for a safety phase ending at `safety_ms`.
pub fn plan(seed: u64, nodes: usize, kinds: FaultKinds, safety_ms: Millis) -> Vec<(Millis, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17_5eed);
    let mut out = Vec::new();
    // Nodes that may be crashed for good: a fifth, and never the whole cluster.
    let mut gone_budget = nodes.saturating_sub(1) / 5;
    let timeline = |rng: &mut StdRng,
                    gap: (Millis, Millis),
                    make: &mut dyn FnMut(&mut StdRng) -> (Fault, Millis)| {
        let mut t = FAULTS_FROM_MS;
        let mut faults = Vec::new();
        loop {
            t += rng.random_range(gap.0..=gap.1);
            if t >= safety_ms {
                break;
            }
            let (fault, lasts) = make(rng);
            faults.push((t, fault));
            t += lasts;
        }
        faults
    };
    if nodes < 2 {
        return out;
    }
    if kinds.crash {
        out.extend(timeline(&mut rng, (1_000, 6_000), &mut |rng| {
            let node = rng.random_range(0..nodes);
            let forever = gone_budget > 0 && rng.random_range(0..100) < 20;
            let restart_after_ms = if forever {
                gone_budget -= 1;
                None
            } else {
                Some(rng.random_range(500..=15_000))
            };
            let fault = Fault::Crash {
                node,
                restart_after_ms,
            };
            (fault, rng.random_range(0..=2_000))
        }));
    }
    if kinds.pause {
        out.extend(timeline(&mut rng, (2_000, 8_000), &mut |rng| {
            let for_ms = rng.random_range(300..=4_000);
            let node = rng.random_range(0..nodes);
            (Fault::Pause { node, for_ms }, for_ms)
        }));
    }
    if kinds.partition {
        out.extend(timeline(&mut rng, (3_000, 10_000), &mut |rng| {
            let for_ms = rng.random_range(1_000..=12_000);
            let minority = rng.random_range(1..=nodes / 2);
            let mut order: Vec<usize> = (0..nodes).collect();
            order.shuffle(rng);
            let mut side = vec![false; nodes];
            for &i in &order[..minority] {
                side[i] = true;
            }
            let partition = if rng.random_range(0..100) < 30 {
                Partition::OneWay { side }
            } else {
                Partition::TwoWay { side }
            };
            (Fault::Partition { partition, for_ms }, for_ms)
        }));
    }
    if kinds.loss {
        out.extend(timeline(&mut rng, (1_000, 6_000), &mut |rng| {
            let for_ms = rng.random_range(1_000..=5_000);
            let pct = rng.random_range(5..=LOSS_PCT_MAX);
            (Fault::Loss { pct, for_ms }, for_ms)
        }));
    }
    if kinds.skew {
        out.extend(timeline(&mut rng, (2_000, 8_000), &mut |rng| {
            let for_ms = rng.random_range(5_000..=20_000);
            let node = rng.random_range(0..nodes);
            let rate = rng.random_range(0.8..1.25);
            (Fault::Skew { node, rate, for_ms }, 0)
        }));
    }
    // Stable: faults at the same time keep the order of the kinds above.
    out.sort_by_key(|(t, _)| *t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kinds() {
        assert_eq!("all".parse::<FaultKinds>().unwrap(), FaultKinds::ALL);
        assert_eq!("none".parse::<FaultKinds>().unwrap(), FaultKinds::NONE);
        let k: FaultKinds = "crash,loss".parse().unwrap();
        assert!(k.crash && k.loss && !k.pause);
        assert_eq!(k.to_string(), "crash,loss");
        assert!("crash,fire".parse::<FaultKinds>().is_err());
    }

    #[test]
    fn plans_are_seeded_and_bounded() {
        let a = plan(7, 10, FaultKinds::ALL, 60_000);
        assert_eq!(a, plan(7, 10, FaultKinds::ALL, 60_000));
        assert_ne!(a, plan(8, 10, FaultKinds::ALL, 60_000));
        assert!(!a.is_empty());
        assert!(a.iter().all(|(t, _)| (FAULTS_FROM_MS..60_000).contains(t)));
        let gone = a
            .iter()
            .filter(|(_, f)| {
                matches!(
                    f,
                    Fault::Crash {
                        restart_after_ms: None,
                        ..
                    }
                )
            })
            .count();
        assert!(
            gone <= 1,
            "at most a fifth of the other nodes gone for good"
        );
        assert!(plan(7, 10, FaultKinds::NONE, 60_000).is_empty());
    }
}
