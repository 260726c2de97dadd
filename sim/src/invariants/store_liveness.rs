//! Invariant (f): after heal, a leader exists and a write commits within a bounded virtual
//! time ([`crate::managers::HEAL_WRITE_BOUND_MS`]).
//!
//! Checked at the first write committed in the liveness phase, and at the end of the run if
//! none committed at all.

use crate::clock::Millis;

pub fn check(after_heal_ms: Millis, bound_ms: Millis) -> Option<String> {
    (after_heal_ms > bound_ms).then(|| {
        format!("(f) the first write after heal committed {after_heal_ms} ms after it, over {bound_ms} ms")
    })
}

pub fn no_write(heal_at: Millis, end: Millis) -> Option<String> {
    Some(format!(
        "(f) no write committed between heal at {heal_at} ms and the end at {end} ms"
    ))
}
