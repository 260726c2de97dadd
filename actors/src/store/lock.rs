//! The store's data key at rest, and autolock: `<data-dir>/raft.key`, plain or sealed under
//! the cluster's unlock key.
//!
//! Every record of [`super::RedbStorage`] is sealed under a per-manager data key (32 random
//! bytes). Without autolock the key file holds that key as it is (mode 0600): whoever reads the
//! data dir reads the store. With autolock the file holds the data key sealed with
//! ChaCha20-Poly1305 under the cluster's [`UnlockKey`], which is never written to this node's
//! disk in the clear (it lives only in the replicated store, itself sealed under the data key):
//!
//! ```text
//!  plain:  data key (32 bytes)
//!  sealed: "SWMLOCK1" | nonce (12) | sealed data key (32 + 16-byte tag)
//! ```
//!
//! A manager restarted with a sealed file is *locked*: it cannot open its store until the
//! operator gives the unlock key (`swarm-node swarm unlock`), which opens the file and puts the
//! data key in this process's memory ([`unlock`]). The store opens its storage itself (the
//! replica actor calls [`super::RedbStorage::open`] with the data dir alone), so the opened key
//! is kept here, by data dir, for the life of the process: the one place the plain data key
//! lives once it is sealed on disk.
//!
//! When the cluster object's unlock key changes (autolock turned on or off, `unlock-key
//! --rotate`), each manager re-seals its file from the key in memory ([`reseal`]): a new file
//! is written beside the old and renamed over it, so a crash leaves either the old sealing (the
//! old unlock key still opens it) or the new one, never a file neither opens.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The data key's length, and the unlock key's (ChaCha20-Poly1305 keys).
pub const KEY_BYTES: usize = 32;
/// What every unlock key's text starts with: the format and its version.
pub const UNLOCK_KEY_PREFIX: &str = "SWMKEY-1-";
/// The key file's name in the data dir.
pub const KEY_FILE: &str = "raft.key";
/// What a sealed key file starts with.
const SEALED_MAGIC: &[u8; 8] = b"SWMLOCK1";
const TAG_BYTES: usize = 16;
/// A sealed key file's exact length.
const SEALED_BYTES: usize = SEALED_MAGIC.len() + NONCE_LEN + KEY_BYTES + TAG_BYTES;
/// Binds a sealing to its purpose: the same unlock key sealing anything else does not open here.
const SEALED_AAD: &[u8] = b"swarm-node raft.key v1";

/// The key that seals every manager's data key when autolock is on: 32 random bytes, shown to
/// the operator as `SWMKEY-1-<64 hex digits>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockKey([u8; KEY_BYTES]);

impl UnlockKey {
    /// A fresh key from the system's secure RNG.
    pub fn generate() -> Result<UnlockKey, LockError> {
        let mut k = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| LockError::Io("the system RNG failed".into()))?;
        Ok(UnlockKey(k))
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32 bytes is a ChaCha20 key"),
        )
    }
}

impl fmt::Display for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(UNLOCK_KEY_PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for UnlockKey {
    // The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(…)")
    }
}

impl FromStr for UnlockKey {
    type Err = LockError;

    fn from_str(s: &str) -> Result<Self, LockError> {
        let bad = |why: &str| LockError::Malformed(why.to_string());
        let hex = s
            .trim()
            .strip_prefix(UNLOCK_KEY_PREFIX)
            .ok_or_else(|| bad("it does not start with SWMKEY-1-"))?;
        if hex.len() != KEY_BYTES * 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("expected SWMKEY-1- and 64 hexadecimal digits"));
        }
        let mut k = [0u8; KEY_BYTES];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("not hex"))?;
        }
        Ok(UnlockKey(k))
    }
}

/// Why the key file could not be read, unlocked or re-sealed. Each says whether anything
/// changed: only [`reseal`] writes, and it replaces the file in one rename.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("invalid key: {0}; nothing changed")]
    Malformed(String),
    #[error(
        "invalid key: it does not open this node's sealed store key (a key rotated away, or another cluster's); nothing changed"
    )]
    WrongKey,
    #[error("this node is not locked: nothing to unlock; nothing changed")]
    NotLocked,
    #[error(
        "this node is locked: its store key is sealed under the cluster's unlock key; run `swarm-node swarm unlock`"
    )]
    Locked,
    #[error("the store key file {path} is damaged: {why}; nothing changed")]
    Damaged { path: String, why: String },
    #[error("the store key file: {0}")]
    Io(String),
}

/// What the key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// No file yet: the store has never opened here (or this node is no manager).
    Missing,
    Plain,
    Sealed,
}

/// The data key once this process has it, and the unlock key its file is sealed under now.
struct Opened {
    data_key: [u8; KEY_BYTES],
    sealed_with: Option<UnlockKey>,
}

/// The data keys this process has opened, by data dir (see the module's doc).
static OPENED: Mutex<BTreeMap<PathBuf, Opened>> = Mutex::new(BTreeMap::new());

fn opened() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Opened>> {
    // A panic while holding the lock leaves the map whole (every write is one insert).
    OPENED.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

fn read_file(data_dir: &Path) -> Result<Option<Vec<u8>>, LockError> {
    match fs::read(key_path(data_dir)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LockError::Io(format!(
            "cannot read {}: {e}",
            key_path(data_dir).display()
        ))),
    }
}

fn classify(data_dir: &Path, bytes: &[u8]) -> Result<KeyState, LockError> {
    if bytes.len() == KEY_BYTES {
        Ok(KeyState::Plain)
    } else if bytes.len() == SEALED_BYTES && bytes.starts_with(SEALED_MAGIC) {
        Ok(KeyState::Sealed)
    } else {
        Err(LockError::Damaged {
            path: key_path(data_dir).display().to_string(),
            why: format!(
                "{} bytes, neither a plain key ({KEY_BYTES}) nor a sealed one ({SEALED_BYTES}, starting SWMLOCK1)",
                bytes.len()
            ),
        })
    }
}

/// What `<data_dir>/raft.key` holds.
pub fn key_state(data_dir: &Path) -> Result<KeyState, LockError> {
    match read_file(data_dir)? {
        None => Ok(KeyState::Missing),
        Some(b) => classify(data_dir, &b),
    }
}

/// Whether the store here cannot open until the operator gives the unlock key: the key file is
/// sealed and this process has not opened it.
pub fn is_locked(data_dir: &Path) -> Result<bool, LockError> {
    Ok(key_state(data_dir)? == KeyState::Sealed && !opened().contains_key(data_dir))
}

fn unseal(data_dir: &Path, bytes: &[u8], key: &UnlockKey) -> Result<[u8; KEY_BYTES], LockError> {
    let rest = &bytes[SEALED_MAGIC.len()..];
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| LockError::Damaged {
        path: key_path(data_dir).display().to_string(),
        why: "bad nonce".into(),
    })?;
    let mut buf = body.to_vec();
    // A wrong key and a damaged file look alike to an AEAD; the length and magic were checked,
    // so a wrong key is by far the likelier, and either way nothing changed.
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::from(SEALED_AAD), &mut buf)
        .map_err(|_| LockError::WrongKey)?;
    let mut k = [0u8; KEY_BYTES];
    k.copy_from_slice(plain);
    Ok(k)
}

/// Opens the sealed key file with `key` and keeps the data key in memory, so the store can
/// open. A wrong key is refused and changes nothing.
pub fn unlock(data_dir: &Path, key: &UnlockKey) -> Result<(), LockError> {
    let bytes = read_file(data_dir)?.ok_or(LockError::NotLocked)?;
    if classify(data_dir, &bytes)? != KeyState::Sealed || opened().contains_key(data_dir) {
        return Err(LockError::NotLocked);
    }
    let data_key = unseal(data_dir, &bytes, key)?;
    opened().insert(
        data_dir.to_path_buf(),
        Opened {
            data_key,
            sealed_with: Some(key.clone()),
        },
    );
    Ok(())
}

/// The data key for the store in `data_dir`: from the plain file (made with a fresh key when
/// absent), or from memory when the file is sealed and was unlocked.
pub(super) fn data_key(data_dir: &Path) -> Result<[u8; KEY_BYTES], LockError> {
    let bytes = match read_file(data_dir)? {
        Some(b) => b,
        None => {
            let mut k = [0u8; KEY_BYTES];
            SystemRandom::new()
                .fill(&mut k)
                .map_err(|_| LockError::Io("the system RNG failed".into()))?;
            write_atomically(data_dir, &k)?;
            k.to_vec()
        }
    };
    let mut map = opened();
    match classify(data_dir, &bytes)? {
        KeyState::Plain => {
            let mut k = [0u8; KEY_BYTES];
            k.copy_from_slice(&bytes);
            // A plain file is the truth (a demoted and promoted manager made a new one).
            map.insert(
                data_dir.to_path_buf(),
                Opened {
                    data_key: k,
                    sealed_with: None,
                },
            );
            Ok(k)
        }
        _ => map
            .get(data_dir)
            .map(|o| o.data_key)
            .ok_or(LockError::Locked),
    }
}

/// The unlock key this node's file is sealed under now (`None`: plain), when this process has
/// opened it; `None` when it has not (no store opened here).
pub fn sealed_with(data_dir: &Path) -> Option<Option<UnlockKey>> {
    opened().get(data_dir).map(|o| o.sealed_with.clone())
}

/// Re-seals the key file under `key` (or writes it plain for `None`) from the data key in
/// memory. `Ok(false)` when it already is sealed that way; refused when this process has not
/// opened the store here (there is no data key to seal).
pub fn reseal(data_dir: &Path, key: Option<&UnlockKey>) -> Result<bool, LockError> {
    let mut map = opened();
    let o = map.get_mut(data_dir).ok_or(LockError::Locked)?;
    if o.sealed_with.as_ref() == key {
        return Ok(false);
    }
    let bytes = match key {
        None => o.data_key.to_vec(),
        Some(k) => seal(&o.data_key, k)?,
    };
    write_atomically(data_dir, &bytes)?;
    o.sealed_with = key.cloned();
    Ok(true)
}

fn seal(data_key: &[u8; KEY_BYTES], key: &UnlockKey) -> Result<Vec<u8>, LockError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| LockError::Io("the system RNG failed".into()))?;
    let mut buf = data_key.to_vec();
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(SEALED_AAD),
            &mut buf,
        )
        .map_err(|_| LockError::Io("sealing failed".into()))?;
    let mut out = SEALED_MAGIC.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    debug_assert_eq!(out.len(), SEALED_BYTES);
    Ok(out)
}

/// Writes the key file (mode 0600) beside it, syncs it, and renames it into place.
fn write_atomically(data_dir: &Path, bytes: &[u8]) -> Result<(), LockError> {
    let io = |what: &str, e: std::io::Error| LockError::Io(format!("{what}: {e}"));
    let path = key_path(data_dir);
    let tmp = data_dir.join(format!("{KEY_FILE}.new"));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .map_err(|e| io(&format!("cannot write {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&format!("cannot write {}", tmp.display()), e))?;
    fs::rename(&tmp, &path).map_err(|e| io(&format!("cannot replace {}", path.display()), e))?;
    // The rename is durable once the directory is synced; without it a crash could bring back
    // the old file, which the old key still opens: nothing is lost either way.
    if let Ok(d) = fs::File::open(data_dir) {
        let _ = d.sync_all(); // best effort, see above
    }
    Ok(())
}

/// Forgets the data key of `data_dir`, as a restart does.
#[cfg(test)]
pub(super) fn forget(data_dir: &Path) {
    opened().remove(data_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlock_key_prints_and_parses_back_and_bad_text_is_refused() {
        let k = UnlockKey::generate().unwrap();
        let text = k.to_string();
        assert!(text.starts_with(UNLOCK_KEY_PREFIX));
        assert_eq!(text.len(), UNLOCK_KEY_PREFIX.len() + 64);
        assert_eq!(text.parse::<UnlockKey>().unwrap(), k);
        assert_eq!(format!(" {text}\n").parse::<UnlockKey>().unwrap(), k);
        assert_eq!(format!("{k:?}"), "UnlockKey(…)");
        for bad in [
            "",
            "SWMKEY-1-",
            &text[..text.len() - 1],
            &text.replace("SWMKEY-1-", "SWMTKN-1-"),
            &format!("{}zz", &text[..text.len() - 2]),
        ] {
            assert!(
                matches!(bad.parse::<UnlockKey>(), Err(LockError::Malformed(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn a_sealed_key_opens_with_its_unlock_key_only_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(key_state(d).unwrap(), KeyState::Missing);
        assert_eq!(
            reseal(d, None),
            Err(LockError::Locked),
            "nothing opened yet"
        );
        let data = data_key(d).unwrap();
        assert_eq!(key_state(d).unwrap(), KeyState::Plain);
        assert_eq!(sealed_with(d), Some(None));

        eprintln!("phase: sealed, the file no longer holds the data key");
        let k = UnlockKey::generate().unwrap();
        assert!(reseal(d, Some(&k)).unwrap());
        assert!(!reseal(d, Some(&k)).unwrap(), "already sealed so");
        let sealed = fs::read(key_path(d)).unwrap();
        assert_eq!(key_state(d).unwrap(), KeyState::Sealed);
        assert!(!sealed.windows(KEY_BYTES).any(|w| w == data));
        assert!(!sealed.windows(KEY_BYTES).any(|w| w == k.0));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(key_path(d)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!is_locked(d).unwrap(), "this process has the key");

        eprintln!("phase: restarted: locked; a wrong key is refused and changes nothing");
        forget(d);
        assert!(is_locked(d).unwrap());
        assert_eq!(data_key(d), Err(LockError::Locked));
        let other = UnlockKey::generate().unwrap();
        assert_eq!(unlock(d, &other), Err(LockError::WrongKey));
        assert!(is_locked(d).unwrap());
        assert_eq!(fs::read(key_path(d)).unwrap(), sealed);

        eprintln!("phase: the right key unlocks; a second unlock has nothing to do");
        unlock(d, &k).unwrap();
        assert!(!is_locked(d).unwrap());
        assert_eq!(data_key(d).unwrap(), data);
        assert_eq!(sealed_with(d), Some(Some(k.clone())));
        assert_eq!(unlock(d, &k), Err(LockError::NotLocked));

        eprintln!("phase: rotated to a new key: the old one no longer opens the file");
        assert!(reseal(d, Some(&other)).unwrap());
        forget(d);
        assert_eq!(unlock(d, &k), Err(LockError::WrongKey));
        unlock(d, &other).unwrap();
        assert_eq!(data_key(d).unwrap(), data);

        eprintln!("phase: autolock off: plain again, no unlock needed after a restart");
        assert!(reseal(d, None).unwrap());
        forget(d);
        assert!(!is_locked(d).unwrap());
        assert_eq!(data_key(d).unwrap(), data);
        assert_eq!(unlock(d, &other), Err(LockError::NotLocked));

        eprintln!("phase: a damaged sealed file (one bit) is refused, a truncated one too");
        assert!(reseal(d, Some(&k)).unwrap());
        forget(d);
        let mut bad = fs::read(key_path(d)).unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(key_path(d), &bad).unwrap();
        assert_eq!(unlock(d, &k), Err(LockError::WrongKey));
        fs::write(key_path(d), &bad[..40]).unwrap();
        assert!(matches!(unlock(d, &k), Err(LockError::Damaged { .. })));
        assert!(matches!(key_state(d), Err(LockError::Damaged { .. })));
    }
}
