//! The write workload and its ledger: a background writer sets the label `chaos=<seq>` on the
//! nodes in turn (`node update`, a raft-committed compare-and-set write), through whichever
//! managers are up, all through the faults; the failover measurement writes `failover=<seq>`
//! the same way. The ledger remembers, per node and key, the last value a write acknowledged and
//! every value tried after it.
//!
//! The check after each round: the value a manager shows is the last acknowledged one or one
//! tried after it. A write that failed may still have committed (a timeout says so), which is
//! why later tries are allowed; an older value, or none, means an acknowledged write was lost.
//! This needs the writes to one key to be sequential (a later write reads the version an
//! earlier one made), which holds because each key has one writing thread.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::cli_within;

/// The label key the background writer writes.
pub const KEY: &str = "chaos";
/// The label key the failover measurement writes.
pub const FAILOVER_KEY: &str = "failover";
/// How long one CLI call may take before the harness gives up on it.
pub const CLI_LIMIT: Duration = Duration::from_secs(10);
/// Pause between two writes of the background writer.
const WRITE_EVERY: Duration = Duration::from_millis(150);

#[derive(Clone, Default)]
struct Entry {
    acked: Option<u64>,
    /// Values tried since the last acknowledged one (their outcome is unknown).
    tried: Vec<u64>,
}

#[derive(Default)]
struct State {
    seq: u64,
    /// By (node, key).
    entries: BTreeMap<(String, String), Entry>,
    /// Managers (by name) the writer may use now; the fault code takes out the one it stops.
    usable: Vec<String>,
    acks: u64,
    failures: u64,
}

/// Shared between the writer thread and the rounds.
#[derive(Clone)]
pub struct Ledger {
    state: Arc<Mutex<State>>,
    /// Where each manager's control socket is, by name.
    dirs: Arc<BTreeMap<String, PathBuf>>,
}

impl Ledger {
    /// A ledger writing through `managers` (name, data dir).
    pub fn new(managers: &[(String, PathBuf)]) -> Ledger {
        let dirs: BTreeMap<String, PathBuf> = managers.iter().cloned().collect();
        let state = State {
            usable: dirs.keys().cloned().collect(),
            ..State::default()
        };
        Ledger {
            state: Arc::new(Mutex::new(state)),
            dirs: Arc::new(dirs),
        }
    }

    /// Managers the writer may use: all but `out`.
    pub fn set_usable_except(&self, out: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.usable = self
            .dirs
            .keys()
            .filter(|n| !out.contains(&n.as_str()))
            .cloned()
            .collect();
    }

    /// Writes the next value of `key` on `target` through manager `via`; records the outcome.
    /// Returns the CLI's error when the write was not acknowledged.
    pub fn write(&self, via: &str, target: &str, key: &str) -> Result<(), String> {
        let id = (target.to_string(), key.to_string());
        let seq = {
            let mut s = self.state.lock().unwrap();
            s.seq += 1;
            let seq = s.seq;
            s.entries.entry(id.clone()).or_default().tried.push(seq);
            seq
        };
        let label = format!("{key}={seq}");
        let out = cli_within(
            &self.dirs[via],
            CLI_LIMIT,
            &["node", "update", "--label-add", &label, target],
        );
        let result = match out {
            Some(o) if o.status.success() => Ok(()),
            Some(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            None => Err(format!("no answer within {CLI_LIMIT:?}")),
        };
        let mut s = self.state.lock().unwrap();
        if result.is_ok() {
            s.acks += 1;
            let e = s.entries.get_mut(&id).expect("entry made above");
            // Only values tried after this one can still show up.
            e.tried.retain(|t| *t > seq);
            if e.acked.is_none_or(|a| a < seq) {
                e.acked = Some(seq);
            }
        } else {
            s.failures += 1;
        }
        result
    }

    /// (acknowledged, failed) writes so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.acks, s.failures)
    }

    /// Checks what manager `via` shows for every (node, key) written so far. Returns the
    /// problems.
    pub fn check(&self, via: &str) -> Vec<String> {
        // The writer keeps going while this reads: a value newer than this snapshot is one it
        // tried since, and fine.
        let (expected, newest) = {
            let s = self.state.lock().unwrap();
            (s.entries.clone(), s.seq)
        };
        let mut problems = Vec::new();
        let mut inspected: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for ((node, key), Entry { acked, tried }) in expected {
            if !inspected.contains_key(&node) {
                let out = cli_within(&self.dirs[via], CLI_LIMIT, &["node", "inspect", &node]);
                match out {
                    None => {
                        problems.push(format!("{via}: inspect {node} timed out"));
                        continue;
                    }
                    Some(o) if !o.status.success() => {
                        problems.push(format!(
                            "{via}: inspect {node} failed: {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        ));
                        continue;
                    }
                    Some(o) => {
                        let v = serde_json::from_slice(&o.stdout).unwrap_or_default();
                        inspected.insert(node.clone(), v);
                    }
                }
            }
            let shown = inspected[&node][0]["Spec"]["Labels"][&key]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok());
            let fine = match (acked, shown) {
                (_, Some(x)) if Some(x) == acked || tried.contains(&x) || x > newest => true,
                (None, None) => true,
                _ => false,
            };
            if !fine {
                problems.push(format!(
                    "{via}: {node} shows {key}={shown:?}, but the last acknowledged write was \
                     {acked:?} (tried since: {tried:?})"
                ));
            }
        }
        problems
    }

    /// Starts the background writer: round-robin over `targets`, through the usable managers.
    pub fn spawn_writer(&self, targets: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = self.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut i = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let usable = ledger.state.lock().unwrap().usable.clone();
                if !usable.is_empty() {
                    let via = &usable[i % usable.len()];
                    // Failures are counted in the ledger; during a fault they are expected.
                    let _ = ledger.write(via, &targets[i % targets.len()], KEY);
                }
                i += 1;
                std::thread::sleep(WRITE_EVERY);
            }
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }
}

/// The running background writer; stopped and joined on drop.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the writer is a harness bug; it shows in the thread's own output.
            let _ = t.join();
        }
    }
}
