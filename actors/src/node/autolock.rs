//! Autolock on a manager: the cluster object's unlock key written (`swarm update --autolock`,
//! `swarm unlock-key --rotate`), and each manager's key file kept sealed the way the cluster
//! object says.
//!
//! ```text
//!  swarm update --autolock=true ──▶ cluster object: unlock_key = K (compare-and-set, raft)
//!                                          │ replicated to every manager
//!  every LOCK_CHECK_INTERVAL, each manager ▼
//!  watch: local replica's unlock_key ≠ what raft.key is sealed under ──▶ lock::reseal(K)
//! ```
//!
//! Until a manager has re-sealed, its file stays sealed under the previous key (or plain), and
//! that key still unlocks it after a restart: a rotation is complete on a manager once its log
//! says "re-sealed". The decision is one comparison ([`crate::store::lock::reseal`] returns at
//! once when the file is sealed as wanted); this file only reads and writes.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use super::NodeHandle;
use super::admission;
use super::rotation::update_cluster;
use crate::replica::{StoreFailure, StoreHandle};
use crate::store::lock::{self, UnlockKey};

/// How often a manager compares its key file's sealing with the cluster object.
pub const LOCK_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps `data_dir`'s key file sealed as the cluster object says, while the node runs. Reads
/// the cluster object confirmed with the leader, so a manager cut off from the quorum keeps
/// its sealing until it is back; a node that is no manager (now) does nothing. Ends when the
/// node actor is gone.
pub async fn watch(node: NodeHandle, data_dir: PathBuf) {
    let mut tick = tokio::time::interval(LOCK_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if node.actor().get_status() == ractor::ActorStatus::Stopped {
            return;
        }
        let Ok(Some(store)) = node.store().await else {
            continue;
        };
        // Current, not what a replica that just restarted has applied so far: sealing under a
        // key the cluster has already replaced would make a restart need the wrong key.
        if catch_up(&store).await.is_err() {
            continue; // no quorum or no leader now: the sealing stays as it is
        }
        let Ok((obj, _)) = admission::cluster(&store).await else {
            continue; // no cluster object in this replica yet
        };
        match lock::reseal(&data_dir, obj.unlock_key.as_ref()) {
            Ok(false) => {}
            Ok(true) if obj.unlock_key.is_some() => {
                info!("the store key is re-sealed under the cluster's current unlock key")
            }
            Ok(true) => info!("autolock is off: the store key is re-sealed plain"),
            // The store has not opened here yet (a promotion under way): next time.
            Err(lock::LockError::Locked) => {}
            Err(e) => warn!(error = %e, "cannot re-seal the store key; the old sealing stays"),
        }
    }
}

/// What `swarm update --autolock` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutolockChange {
    /// The unlock key in force after the change (`None`: autolock is off).
    pub key: Option<UnlockKey>,
    /// Whether the setting changed (turning on what is on changes nothing).
    pub changed: bool,
}

/// Makes the local replica current: a linearizable read waits until it has applied every
/// write committed before it. The decisions below read the local replica (through
/// [`update_cluster`]); right after a restart it may not have applied the last change of the
/// setting yet, and "already on" read from it would be wrong.
/// An election under way (a manager just restarted) is waited out, up to
/// [`CATCH_UP_ATTEMPTS_MAX`] reads [`CATCH_UP_PAUSE`] apart, well within a control request's
/// deadline.
async fn catch_up(store: &StoreHandle) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.read(crate::store::Kind::Cluster, true).await {
            Ok(_) => return Ok(()),
            Err(StoreFailure::ElectionUnderWay) if attempt < CATCH_UP_ATTEMPTS_MAX => {
                #[allow(clippy::disallowed_methods)]
                // a bounded pause between reads of an admin request, not a decision's timer
                tokio::time::sleep(CATCH_UP_PAUSE).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads tried while an election is under way.
pub const CATCH_UP_ATTEMPTS_MAX: u32 = 10;
const CATCH_UP_PAUSE: Duration = Duration::from_millis(300);

/// Turns autolock on (a new unlock key, when it is off) or off, through raft.
pub async fn set_autolock(store: &StoreHandle, on: bool) -> Result<AutolockChange, String> {
    let fresh = UnlockKey::generate().map_err(|e| e.to_string())?;
    catch_up(store).await?;
    let changed = update_cluster(store, |obj| {
        Ok(match (on, &obj.unlock_key) {
            (true, Some(_)) | (false, None) => None,
            (true, None) => Some(crate::store::ClusterObject {
                unlock_key: Some(fresh.clone()),
                ..obj.clone()
            }),
            (false, Some(_)) => Some(crate::store::ClusterObject {
                unlock_key: None,
                ..obj.clone()
            }),
        })
    })
    .await
    .map_err(|e| e.to_string())?;
    let key = if changed {
        on.then_some(fresh)
    } else {
        unlock_key(store).await?
    };
    Ok(AutolockChange { key, changed })
}

/// The cluster's unlock key, `None` when autolock is off.
pub async fn unlock_key(store: &StoreHandle) -> Result<Option<UnlockKey>, String> {
    catch_up(store).await?;
    let (obj, _) = admission::cluster(store).await.map_err(|e| e.to_string())?;
    Ok(obj.unlock_key)
}

/// Replaces the unlock key; refused when autolock is off. Each manager re-seals under the new
/// key within [`LOCK_CHECK_INTERVAL`] or so; until then the old key still unlocks it.
pub async fn rotate_unlock_key(store: &StoreHandle) -> Result<UnlockKey, String> {
    let fresh = UnlockKey::generate().map_err(|e| e.to_string())?;
    catch_up(store).await?;
    let wrote = update_cluster(store, |obj| {
        Ok(obj
            .unlock_key
            .as_ref()
            .map(|_| crate::store::ClusterObject {
                unlock_key: Some(fresh.clone()),
                ..obj.clone()
            }))
    })
    .await
    .map_err(|e| e.to_string())?;
    if !wrote {
        return Err(NO_KEY.to_string());
    }
    Ok(fresh)
}

/// The refusal of `unlock-key` while autolock is off (Docker: "no unlock key is set").
pub const NO_KEY: &str = "no unlock key is set: autolock is off (turn it on with `swarm-node swarm update --autolock=true`); nothing changed";
