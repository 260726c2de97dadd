//! [`RedbStorage`]: the durable raft log, in `<data-dir>/raft.redb`, sealed at rest.
//!
//! Log entries and snapshots can hold secret material (the cluster CA key, join tokens, user
//! secrets), so each is sealed with ChaCha20-Poly1305 under a per-manager data key kept in
//! `<data-dir>/raft.key` (mode 0600; sealed under the cluster's unlock key when autolock is on,
//! see [`super::lock`]), with a random nonce per record and the record's slot as associated
//! data (an entry moved to another index does not open). The hard state and the conf state
//! hold only numbers and are stored plain.
//!
//! ```text
//! table entries: u64 index → nonce | sealed protobuf Entry
//! table meta:    "hard" → protobuf HardState, "conf" → protobuf ConfState,
//!                "snapshot" → nonce | sealed protobuf Snapshot
//! ```
//!
//! Writes commit without fsync; [`LogStorage::sync`] commits with immediate durability, which
//! makes every earlier commit durable too. An in-memory index of terms answers raft-rs's
//! frequent `term()` calls without touching the file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::StoreError;
use super::lock;
use super::storage::{LogStorage, raft_err, storage_err};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub struct RedbStorage {
    db: Database,
    key: LessSafeKey,
    rng: SystemRandom,
    hard: HardState,
    conf: ConfState,
    offset: u64,
    offset_term: u64,
    /// Terms of the entries `offset + 1 ..`.
    terms: VecDeque<u64>,
    path: PathBuf,
}

impl RedbStorage {
    /// Opens (or creates) `<data_dir>/raft.redb` and its key `<data_dir>/raft.key`. A sealed
    /// key must have been unlocked first ([`lock::unlock`]); otherwise this is refused and
    /// opens nothing.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(storage_err)?;
        let bytes = lock::data_key(data_dir).map_err(|e| StoreError::Storage(e.to_string()))?;
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(storage_err)?;
        let key = LessSafeKey::new(unbound);
        let path = data_dir.join("raft.redb");
        let db = Database::create(&path).map_err(storage_err)?;
        let txn = db.begin_write().map_err(storage_err)?;
        {
            // Creates the tables, so read transactions can open them.
            txn.open_table(ENTRIES).map_err(storage_err)?;
            txn.open_table(META).map_err(storage_err)?;
        }
        txn.commit().map_err(storage_err)?;
        let mut s = RedbStorage {
            db,
            key,
            rng: SystemRandom::new(),
            hard: HardState::default(),
            conf: ConfState::default(),
            offset: 0,
            offset_term: 0,
            terms: VecDeque::new(),
            path,
        };
        s.load()?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let r = self.db.begin_read().map_err(storage_err)?;
        let meta = r.open_table(META).map_err(storage_err)?;
        if let Some(v) = meta.get("hard").map_err(storage_err)? {
            self.hard = HardState::parse_from_bytes(v.value()).map_err(storage_err)?;
        }
        if let Some(v) = meta.get("conf").map_err(storage_err)? {
            self.conf = ConfState::parse_from_bytes(v.value()).map_err(storage_err)?;
        }
        if let Some(v) = meta.get("snapshot").map_err(storage_err)? {
            let plain = self.open_record(b"snapshot", v.value())?;
            let snap = Snapshot::parse_from_bytes(&plain).map_err(storage_err)?;
            self.offset = snap.get_metadata().index;
            self.offset_term = snap.get_metadata().term;
        }
        let entries = r.open_table(ENTRIES).map_err(storage_err)?;
        for item in entries.range(self.offset + 1..).map_err(storage_err)? {
            let (k, v) = item.map_err(storage_err)?;
            let e = self.open_entry(k.value(), v.value())?;
            if e.index != self.offset + self.terms.len() as u64 + 1 {
                return Err(StoreError::Storage(format!(
                    "raft log has a gap before entry {}",
                    e.index
                )));
            }
            self.terms.push_back(e.term);
        }
        Ok(())
    }

    fn seal(&self, slot: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(storage_err)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(slot),
                &mut buf,
            )
            .map_err(storage_err)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open_record(&self, slot: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE_LEN {
            return Err(StoreError::Storage("sealed record too short".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(storage_err)?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(slot), &mut buf)
            .map_err(|_| {
                StoreError::Storage("a sealed record does not open (wrong key, or damaged)".into())
            })?;
        Ok(plain.to_vec())
    }

    fn open_entry(&self, index: u64, sealed: &[u8]) -> Result<Entry, StoreError> {
        let plain = self.open_record(&entry_slot(index), sealed)?;
        Entry::parse_from_bytes(&plain).map_err(storage_err)
    }

    fn last_index(&self) -> u64 {
        self.offset + self.terms.len() as u64
    }

    fn write_txn(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(storage_err)?;
        txn.set_durability(Durability::None).map_err(storage_err)?;
        Ok(txn)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.write_txn()?;
        {
            let mut t = txn.open_table(META).map_err(storage_err)?;
            t.insert(key, value).map_err(storage_err)?;
        }
        txn.commit().map_err(storage_err)
    }

    /// Stores `snap` and drops every entry up to `through` (inclusive); with `clear`, every
    /// entry.
    fn store_snapshot(&mut self, snap: &Snapshot, clear: bool) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        let bytes = snap.write_to_bytes().map_err(storage_err)?;
        let sealed = self.seal(b"snapshot", &bytes)?;
        let last = self.last_index();
        let drop_to = if clear { last } else { meta.index.min(last) };
        let txn = self.write_txn()?;
        {
            let mut t = txn.open_table(ENTRIES).map_err(storage_err)?;
            for i in self.offset + 1..=drop_to {
                t.remove(i).map_err(storage_err)?;
            }
            let mut m = txn.open_table(META).map_err(storage_err)?;
            m.insert("snapshot", sealed.as_slice())
                .map_err(storage_err)?;
        }
        txn.commit().map_err(storage_err)?;
        if clear {
            self.terms.clear();
        } else {
            let n = (meta.index.saturating_sub(self.offset) as usize).min(self.terms.len());
            self.terms.drain(..n);
        }
        self.offset = meta.index;
        self.offset_term = meta.term;
        Ok(())
    }
}

fn entry_slot(index: u64) -> Vec<u8> {
    let mut s = b"entry:".to_vec();
    s.extend_from_slice(&index.to_be_bytes());
    s
}

impl raft::Storage for RedbStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.offset {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let r = self.db.begin_read().map_err(raft_err)?;
        let t = r.open_table(ENTRIES).map_err(raft_err)?;
        let mut out = Vec::with_capacity((high - low) as usize);
        for item in t.range(low..high).map_err(raft_err)? {
            let (k, v) = item.map_err(raft_err)?;
            out.push(self.open_entry(k.value(), v.value()).map_err(raft_err)?);
        }
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.offset {
            return Ok(self.offset_term);
        }
        if idx < self.offset {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.terms[(idx - self.offset - 1) as usize])
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.offset + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RedbStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.latest_snapshot().map_err(raft_err)? {
            Some(s) if s.get_metadata().index >= request_index => Ok(s),
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

impl LogStorage for RedbStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last = self.last_index();
        if first.index <= self.offset || first.index > last + 1 {
            return Err(StoreError::Storage(format!(
                "append at {} does not fit a log holding {}..={last}",
                first.index,
                self.offset + 1
            )));
        }
        let txn = self.write_txn()?;
        {
            let mut t = txn.open_table(ENTRIES).map_err(storage_err)?;
            for i in first.index..=last {
                t.remove(i).map_err(storage_err)?;
            }
            for e in entries {
                let bytes = e.write_to_bytes().map_err(storage_err)?;
                let sealed = self.seal(&entry_slot(e.index), &bytes)?;
                t.insert(e.index, sealed.as_slice()).map_err(storage_err)?;
            }
        }
        txn.commit().map_err(storage_err)?;
        self.terms
            .truncate((first.index - self.offset - 1) as usize);
        self.terms.extend(entries.iter().map(|e| e.term));
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        self.put_meta("hard", &hs.write_to_bytes().map_err(storage_err)?)?;
        self.hard = hs.clone();
        Ok(())
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), StoreError> {
        self.put_meta("conf", &cs.write_to_bytes().map_err(storage_err)?)?;
        self.conf = cs.clone();
        Ok(())
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.store_snapshot(snapshot, true)?;
        let meta = snapshot.get_metadata();
        let mut hs = self.hard.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.set_hard_state(&hs)?;
        self.set_conf_state(meta.get_conf_state())
    }

    fn compact(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let index = snapshot.get_metadata().index;
        if index < self.offset || index > self.last_index() {
            return Err(StoreError::Storage(format!(
                "snapshot at {index} outside the log {}..={}",
                self.offset + 1,
                self.last_index()
            )));
        }
        self.store_snapshot(snapshot, false)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(storage_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(storage_err)?;
        txn.commit().map_err(storage_err)
    }

    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let r = self.db.begin_read().map_err(storage_err)?;
        let meta = r.open_table(META).map_err(storage_err)?;
        let Some(v) = meta.get("snapshot").map_err(storage_err)? else {
            return Ok(None);
        };
        let plain = self.open_record(b"snapshot", v.value())?;
        Snapshot::parse_from_bytes(&plain)
            .map(Some)
            .map_err(storage_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;
    use std::fs;

    const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = data.to_vec().into();
        e
    }

    #[test]
    fn round_trips_across_reopen_and_seals_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RedbStorage::open(dir.path()).unwrap();
            s.append(&[entry(1, 1, MARKER), entry(2, 1, b"b"), entry(3, 2, b"c")])
                .unwrap();
            let mut hs = HardState::default();
            hs.term = 2;
            hs.commit = 3;
            hs.vote = 1;
            s.set_hard_state(&hs).unwrap();
            let mut cs = ConfState::default();
            cs.voters = vec![1, 2, 3];
            s.set_conf_state(&cs).unwrap();
            let mut snap = Snapshot::default();
            snap.data = [MARKER, b"-in-snapshot"].concat().into();
            snap.mut_metadata().index = 1;
            snap.mut_metadata().term = 1;
            s.compact(&snap).unwrap();
            s.sync().unwrap();
        }
        let s = RedbStorage::open(dir.path()).unwrap();
        let st = s.initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 3);
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(
            (
                s.first_index().unwrap(),
                raft::Storage::last_index(&s).unwrap()
            ),
            (2, 3)
        );
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(s.term(3).unwrap(), 2);
        let got = s
            .entries(2, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got[1].data.as_ref(), b"c");
        let snap = s.latest_snapshot().unwrap().unwrap();
        assert!(snap.data.starts_with(MARKER));
        drop(s);

        let raw = fs::read(dir.path().join("raft.redb")).unwrap();
        assert!(
            !raw.windows(MARKER.len()).any(|w| w == MARKER),
            "the marker is stored in the clear"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("raft.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_wrong_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RedbStorage::open(dir.path()).unwrap();
            s.append(&[entry(1, 1, b"x")]).unwrap();
            s.sync().unwrap();
        }
        fs::write(dir.path().join("raft.key"), [7u8; lock::KEY_BYTES]).unwrap();
        assert!(matches!(
            RedbStorage::open(dir.path()),
            Err(StoreError::Storage(_))
        ));
    }

    #[test]
    fn a_sealed_key_opens_the_store_only_once_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let k = lock::UnlockKey::generate().unwrap();
        {
            let mut s = RedbStorage::open(dir.path()).unwrap();
            s.append(&[entry(1, 1, MARKER)]).unwrap();
            s.sync().unwrap();
            assert!(lock::reseal(dir.path(), Some(&k)).unwrap());
        }
        eprintln!("phase: after a restart the store does not open while locked");
        lock::forget(dir.path());
        let locked = RedbStorage::open(dir.path()).err().expect("locked");
        assert!(locked.to_string().contains("locked"), "{locked}");
        eprintln!("phase: unlocked, it opens and reads what was written");
        lock::unlock(dir.path(), &k).unwrap();
        let s = RedbStorage::open(dir.path()).unwrap();
        let got = s
            .entries(1, 2, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got[0].data.as_ref(), MARKER);
    }
}
