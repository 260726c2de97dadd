//! Wall-clock time for the actor shells. Deciding code never calls this: it takes time as an
//! argument, so the simulator can drive it with virtual time.

use std::time::SystemTime;

/// Milliseconds since the Unix epoch (0 for a clock set before it).
#[allow(clippy::disallowed_methods)] // the runtime shells' one read of the wall clock
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
