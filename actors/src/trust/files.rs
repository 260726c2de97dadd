//! Small file helpers for credentials: atomic writes with the mode set at creation, PEM
//! encoding, and reads that tell "absent" from "broken".

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::TrustError;

/// Mode of files holding private keys or token secrets.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Mode of files holding certificates, which are public.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

fn io_err(path: &Path, source: std::io::Error) -> TrustError {
    TrustError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `dir/name` so that a reader sees the old file or the new one, never a part:
/// the data goes to a temporary file created with `mode` (so a secret is never readable by
/// others, not even for an instant), is synced, then renamed over the target.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), TrustError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A leftover from a crash would make create_new fail; it holds nothing we need.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        // Best effort: the temporary file is garbage either way.
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&target, e));
    }
    Ok(())
}

/// Reads `dir/name`; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, TrustError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

pub(crate) fn bad_file(dir: &Path, name: &str, reason: impl ToString) -> TrustError {
    TrustError::BadFile {
        path: dir.join(name),
        reason: reason.to_string(),
    }
}

/// Encodes DER as one PEM block with the given label.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Parses the first certificate of a PEM file's contents.
pub(crate) fn cert_from_pem(dir: &Path, name: &str, pem: &[u8]) -> Result<Vec<u8>, TrustError> {
    CertificateDer::from_pem_slice(pem)
        .map(|c| c.to_vec())
        .map_err(|e| bad_file(dir, name, format!("no PEM certificate: {e}")))
}

/// Every certificate of a PEM file's contents, in order; an error when there is none.
pub(crate) fn certs_from_pem(
    dir: &Path,
    name: &str,
    pem: &[u8],
) -> Result<Vec<Vec<u8>>, TrustError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file(dir, name, format!("no PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad_file(dir, name, "no PEM certificate"));
    }
    Ok(certs)
}

fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "k", b"one", SECRET_MODE).unwrap();
        write_atomic(dir.path(), "k", b"two", SECRET_MODE).unwrap();
        let meta = fs::metadata(dir.path().join("k")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(dir.path().join("k")).unwrap(), b"two");
        assert_eq!(read_optional(dir.path(), "absent").unwrap(), None);
    }
}
