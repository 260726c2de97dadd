//! Read-modify-write through the store's compare-and-set, read again when another write wins.
//!
//! A control request that changes an object is a delta (labels to add, a role to take, a
//! replica count) applied to the object as read. The leader writes node objects too (each
//! node's newest description), so a compare-and-set can lose to a write the user never saw;
//! nothing changed then, and the delta is applied again to a fresh read, at most
//! [`CAS_TRIES`] times in all.

use std::future::Future;
use std::time::Duration;

use swarm_actors::replica::StoreFailure;
use tracing::debug;

/// Reads and compare-and-sets for one request before the conflict is the user's answer.
pub const CAS_TRIES: u32 = 5;
/// Pause before the next read, times the tries so far: 25, 50, 75, 100 ms.
const CAS_PAUSE_MS: u64 = 25;

/// Why one read-modify-write did not happen.
pub enum Failed {
    /// Another write of the object came first; nothing changed.
    Conflict(String),
    Other(String),
}

impl From<String> for Failed {
    fn from(e: String) -> Self {
        Failed::Other(e)
    }
}

/// The result of a proposal, with a lost compare-and-set told apart.
pub fn proposed(r: Result<u64, StoreFailure>) -> Result<u64, Failed> {
    r.map_err(|e| match e {
        StoreFailure::OutOfSequence(e) => Failed::Conflict(e),
        other => Failed::Other(other.to_string()),
    })
}

/// Runs `once` until it does not lose a compare-and-set, at most [`CAS_TRIES`] times.
pub async fn retrying<T, F, Fut>(mut once: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match once().await {
            Ok(v) => return Ok(v),
            Err(Failed::Conflict(e)) if tries < CAS_TRIES => {
                debug!(tries, error = %e, "compare-and-set lost to another write; reading again");
                tokio::time::sleep(Duration::from_millis(CAS_PAUSE_MS * u64::from(tries))).await;
            }
            Err(Failed::Conflict(e) | Failed::Other(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn a_lost_compare_and_set_is_tried_again_up_to_the_bound() {
        let calls = Cell::new(0);
        let r: Result<u32, String> = retrying(|| async {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(Failed::Conflict("out of sequence".into()))
            } else {
                Ok(calls.get())
            }
        })
        .await;
        assert_eq!(r, Ok(3));

        calls.set(0);
        let r: Result<(), String> = retrying(|| async {
            calls.set(calls.get() + 1);
            Err(Failed::Conflict("out of sequence".into()))
        })
        .await;
        assert_eq!(r, Err("out of sequence".to_string()));
        assert_eq!(calls.get(), CAS_TRIES);
    }

    #[tokio::test]
    async fn other_failures_are_not_tried_again() {
        let calls = Cell::new(0);
        let r: Result<(), String> = retrying(|| async {
            calls.set(calls.get() + 1);
            proposed(Err(StoreFailure::NoQuorum {
                reachable: 1,
                voters: 3,
            }))
            .map(|_| ())
        })
        .await;
        assert!(r.unwrap_err().contains("no quorum"));
        assert_eq!(calls.get(), 1);
    }
}
