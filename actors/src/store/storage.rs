//! Where a manager keeps its raft log: the [`LogStorage`] trait, its in-memory twin
//! [`MemStorage`] (simulator and tests), and the forced-recovery rewrite.
//!
//! The durable implementation, [`super::RedbStorage`], lives in `redb.rs`.
//!
//! A storage holds: the log entries after the latest snapshot, the hard state (term, vote,
//! commit), the conf state (voters), and the latest snapshot (metadata and the state's bytes).
//! Writes become durable at [`LogStorage::sync`]; the machine syncs before it sends the messages
//! of a Ready, so nothing it promised a peer is lost in a crash.

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::StoreError;
use super::codec::{Decoded, decode_entry};
use super::state::StoreState;

/// What the store machine needs of its log storage, beyond what raft-rs reads through
/// [`raft::Storage`].
pub trait LogStorage: raft::Storage {
    /// Appends entries; an entry at an index already held replaces it and everything after.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError>;
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError>;
    /// A snapshot received from the leader: it replaces the whole log.
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// A snapshot made here: it is kept (for slow followers and restarts) and the entries it
    /// covers are dropped.
    fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// The latest snapshot, with its data; `None` before the first one.
    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError>;

    /// Rewrites the storage so that `self_raft_id` is the only voter, keeping every committed
    /// object: the recovery path after a cluster lost its quorum for good. Entries past the
    /// commit index are dropped (they were never acknowledged).
    fn force_new_cluster(&mut self, self_raft_id: u64) -> Result<(), StoreError>
    where
        Self: Sized,
    {
        force_new_cluster(self, self_raft_id)
    }
}

pub(crate) fn storage_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

pub(crate) fn raft_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// The log as memory holds it: both [`MemStorage`]'s contents and the logic the two
/// implementations share.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogCore {
    pub hard: HardState,
    pub conf: ConfState,
    /// Index and term of the last entry dropped (the latest snapshot's, or 0).
    pub offset: u64,
    pub offset_term: u64,
    /// Entries `offset + 1 ..`.
    pub entries: VecDeque<Entry>,
    pub snapshot: Option<Snapshot>,
}

impl LogCore {
    pub fn first_index(&self) -> u64 {
        self.offset + 1
    }

    pub fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    pub fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.offset {
            return Ok(self.offset_term);
        }
        if idx < self.offset {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.offset - 1) as usize].term)
    }

    pub fn append(&mut self, ents: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if first.index <= self.offset || first.index > self.last_index() + 1 {
            return Err(StoreError::Storage(format!(
                "append at {} does not fit a log holding {}..={}",
                first.index,
                self.first_index(),
                self.last_index()
            )));
        }
        self.entries
            .truncate((first.index - self.offset - 1) as usize);
        self.entries.extend(ents.iter().cloned());
        Ok(())
    }

    pub fn apply_snapshot(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        self.offset = meta.index;
        self.offset_term = meta.term;
        self.entries.clear();
        self.conf = meta.get_conf_state().clone();
        self.hard.term = self.hard.term.max(meta.term);
        self.hard.commit = self.hard.commit.max(meta.index);
        self.snapshot = Some(snap.clone());
    }

    pub fn compact(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        if meta.index < self.offset || meta.index > self.last_index() {
            return Err(StoreError::Storage(format!(
                "snapshot at {} outside the log {}..={}",
                meta.index,
                self.first_index(),
                self.last_index()
            )));
        }
        let drop = (meta.index - self.offset) as usize;
        self.entries.drain(..drop);
        self.offset = meta.index;
        self.offset_term = meta.term;
        self.snapshot = Some(snap.clone());
        Ok(())
    }

    pub fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> raft::Result<Vec<Entry>> {
        if low <= self.offset {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.offset - 1) as usize;
        let hi = (high - self.offset - 1) as usize;
        let mut ents: Vec<Entry> = self.entries.range(lo..hi).cloned().collect();
        raft::util::limit_size(&mut ents, max_size);
        Ok(ents)
    }

    pub fn raft_snapshot(&self, request_index: u64) -> raft::Result<Snapshot> {
        match &self.snapshot {
            Some(s) if s.get_metadata().index >= request_index => Ok(s.clone()),
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

/// One write, kept until the next sync so that a crash can forget it.
#[derive(Clone, Debug)]
enum Write {
    Append(Vec<Entry>),
    Hard(HardState),
    Conf(ConfState),
    ApplySnapshot(Snapshot),
    Compact(Snapshot),
}

/// The in-memory twin of [`super::RedbStorage`], with an explicit notion of what is synced.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    live: LogCore,
    synced: LogCore,
    unsynced: Vec<Write>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// What survives a crash: with its disk, what was synced; without, nothing.
    pub fn crash(self, keep_disk: bool) -> MemStorage {
        if !keep_disk {
            return MemStorage::new();
        }
        MemStorage {
            live: self.synced.clone(),
            synced: self.synced,
            unsynced: Vec::new(),
        }
    }

    /// Writes not yet synced.
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.len()
    }

    fn write(&mut self, w: Write) -> Result<(), StoreError> {
        apply_write(&mut self.live, &w)?;
        self.unsynced.push(w);
        Ok(())
    }
}

fn apply_write(core: &mut LogCore, w: &Write) -> Result<(), StoreError> {
    match w {
        Write::Append(e) => core.append(e)?,
        Write::Hard(h) => core.hard = h.clone(),
        Write::Conf(c) => core.conf = c.clone(),
        Write::ApplySnapshot(s) => core.apply_snapshot(s),
        Write::Compact(s) => core.compact(s)?,
    }
    Ok(())
}

impl raft::Storage for MemStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.live.hard.clone(),
            self.live.conf.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.live.entries(low, high, max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.live.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.live.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.live.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        self.live.raft_snapshot(request_index)
    }
}

impl LogStorage for MemStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(Write::Append(entries.to_vec()))
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.write(Write::Hard(hs.clone()))
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError> {
        self.write(Write::Conf(cs.clone()))
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.write(Write::ApplySnapshot(snapshot.clone()))
    }

    fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.write(Write::Compact(snapshot.clone()))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        for w in self.unsynced.drain(..) {
            apply_write(&mut self.synced, &w)?;
        }
        Ok(())
    }

    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.live.snapshot.clone())
    }
}

/// Replays the committed log into a state, then replaces the log with one snapshot at the
/// commit index whose only voter is `self_raft_id`.
pub fn force_new_cluster<S: LogStorage>(
    storage: &mut S,
    self_raft_id: u64,
) -> Result<(), StoreError> {
    let initial = storage.initial_state().map_err(storage_err)?;
    let commit = initial.hard_state.commit;
    let (mut state, from) = match storage.latest_snapshot()? {
        Some(s) => (StoreState::restore(&s.data)?, s.get_metadata().index + 1),
        None => (
            StoreState::new(),
            storage.first_index().map_err(storage_err)?,
        ),
    };
    if commit >= from {
        let entries = storage
            .entries(
                commit_range_low(from),
                commit + 1,
                None,
                GetEntriesContext::empty(false),
            )
            .map_err(storage_err)?;
        for e in &entries {
            state.record_entry(e.index, e.term, &e.data);
            match decode_entry(e)? {
                Decoded::Empty => state.mark_applied(e.index),
                // A refused command changed nothing, as it did when it was first applied.
                Decoded::Command(cmd) => drop(state.apply(e.index, &cmd)),
                Decoded::Voters { change, member } => {
                    let member = member.filter(|_| {
                        change.get_change_type() == raft::eraftpb::ConfChangeType::AddNode
                    });
                    state.set_member(e.index, change.node_id, member);
                }
            }
        }
    }
    state.retain_member(self_raft_id);
    let term = storage.term(commit).map_err(storage_err)?;
    let mut snap = Snapshot::default();
    snap.data = state.snapshot()?.into();
    let meta = snap.mut_metadata();
    meta.index = commit;
    meta.term = term;
    meta.mut_conf_state().voters = vec![self_raft_id];
    storage.apply_snapshot(&snap)?;
    let mut hs = initial.hard_state;
    hs.commit = commit;
    hs.term = hs.term.max(term);
    hs.vote = 0;
    storage.set_hard_state(&hs)?;
    storage.set_conf_state(snap.get_metadata().get_conf_state())?;
    storage.sync()
}

fn commit_range_low(from: u64) -> u64 {
    from.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e
    }

    #[test]
    fn a_crash_keeps_only_what_was_synced() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        s.sync().unwrap();
        s.append(&[entry(3, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.unsynced_writes(), 1);
        let kept = s.clone().crash(true);
        assert_eq!(kept.last_index().unwrap(), 2);
        let lost = s.crash(false);
        assert_eq!(lost.last_index().unwrap(), 0);
    }

    #[test]
    fn append_overwrites_the_tail_and_compact_drops_the_head() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        s.append(&[entry(2, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(s.append(&[entry(9, 2)]).is_err(), "a gap is refused");
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 1;
        snap.mut_metadata().term = 1;
        s.compact(&snap).unwrap();
        assert_eq!(s.first_index().unwrap(), 2);
        assert_eq!(s.term(1).unwrap(), 1);
        assert!(s.term(0).is_err());
        assert!(
            s.entries(1, 3, None, GetEntriesContext::empty(false))
                .is_err()
        );
        assert_eq!(
            s.entries(2, 3, None, GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(s.snapshot(0, 2).unwrap().get_metadata().index, 1);
        assert!(s.snapshot(5, 2).is_err());
    }
}
