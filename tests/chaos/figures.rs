//! Timings gathered over the rounds, printed as p50/max per figure and fault. Printed only,
//! never asserted: the machines these run on are shared and noisy.

use std::collections::BTreeMap;
use std::time::Duration;

/// What was timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Figure {
    /// Fault → every observing manager shows the node Down.
    Detection,
    /// Leader lost → a write succeeds on the others.
    Failover,
    /// Heal or restart → every node Ready on every manager, services back.
    Converge,
}

#[derive(Default)]
pub struct Figures {
    samples: BTreeMap<(Figure, &'static str), Vec<Duration>>,
}

impl Figures {
    pub fn add(&mut self, figure: Figure, fault: &'static str, took: Duration) {
        self.samples.entry((figure, fault)).or_default().push(took);
    }

    /// The summary table: one row per figure and fault.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<10} {:<12} {:>3} {:>9} {:>9}\n",
            "figure", "fault", "n", "p50 ms", "max ms"
        );
        for ((figure, fault), v) in &self.samples {
            let mut v = v.clone();
            v.sort();
            let p50 = v[(v.len() - 1) / 2];
            let max = v[v.len() - 1];
            s += &format!(
                "{:<10} {:<12} {:>3} {:>9} {:>9}\n",
                format!("{figure:?}").to_lowercase(),
                fault,
                v.len(),
                p50.as_millis(),
                max.as_millis()
            );
        }
        s
    }
}

/// A small seeded generator (splitmix64): the rounds' faults and targets follow from
/// `CHAOS_SEED` alone.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
