//! Secrets and configs: named data a service's tasks read as files.
//!
//! Both are one [`Secret`] object in the store, told apart by [`FileKind`]; the rules that
//! differ (size, default target, whether the data can be read back) hang off the kind. A
//! service names them in its task spec with [`FileRef`]s; a node receives the data of a ref
//! ([`FileMaterial`]) only with the assignment of a task of its own that names it.
//!
//! ```text
//!  store: Secret { id, kind, name, labels, data }   (sealed at rest with the store)
//!  TaskSpec.secrets / .configs: [FileRef { id, name, target, uid, gid, mode }]
//!  session answer ──▶ FileMaterial { key: FileKey { kind, id }, name, data } ──▶ SecretVault
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::SecretId;

/// Most bytes of a secret's data: under 500 KiB, as Docker allows.
pub const SECRET_BYTES_MAX: usize = 500 * 1024 - 1;
/// Most bytes of a config's data: under 1000 KiB, as Docker allows.
pub const CONFIG_BYTES_MAX: usize = 1000 * 1024 - 1;
/// Longest secret or config name.
pub const SECRET_NAME_CHARS_MAX: usize = 64;
/// Most secrets plus configs one service refers to.
pub const FILE_REFS_MAX: usize = 64;
/// Where a secret's relative target goes (and its default: `/run/secrets/<name>`).
pub const SECRETS_DIR: &str = "/run/secrets";

/// Secret or config.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum FileKind {
    Secret,
    Config,
}

impl FileKind {
    /// `"secret"` or `"config"`, as messages and commands name them.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Secret => "secret",
            FileKind::Config => "config",
        }
    }

    /// Most bytes of the data.
    pub fn bytes_max(self) -> usize {
        match self {
            FileKind::Secret => SECRET_BYTES_MAX,
            FileKind::Config => CONFIG_BYTES_MAX,
        }
    }

    /// Where a file of this kind shows in the task when the ref names `target` (empty: the
    /// default). Secrets: `/run/secrets/<name>`, a relative target under `/run/secrets`.
    /// Configs: `/<name>`, a relative target under `/`.
    pub fn target_path(self, name: &str, target: &str) -> String {
        let t = if target.is_empty() { name } else { target };
        if t.starts_with('/') {
            return t.to_string();
        }
        match self {
            FileKind::Secret => format!("{SECRETS_DIR}/{t}"),
            FileKind::Config => format!("/{t}"),
        }
    }
}

/// Names a secret or config everywhere data travels: the ID changes when a name is reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct FileKey {
    pub kind: FileKind,
    pub id: SecretId,
}

/// Bytes that never show in logs or debug output. Shared: a node's answer and its vault hold
/// the same allocation.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Arc<[u8]>);

impl Serialize for SecretBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<u8>::deserialize(d).map(SecretBytes::new)
    }
}

impl SecretBytes {
    pub fn new(data: impl Into<Arc<[u8]>>) -> Self {
        SecretBytes(data.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// A secret or config as the store keeps it (under its name, like services).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Secret {
    pub id: SecretId,
    pub kind: FileKind,
    pub name: String,
    /// The only thing that can change after creation.
    pub labels: BTreeMap<String, String>,
    pub data: SecretBytes,
}

impl Secret {
    pub fn key(&self) -> FileKey {
        FileKey {
            kind: self.kind,
            id: self.id,
        }
    }

    /// What a node receives of it.
    pub fn material(&self) -> FileMaterial {
        FileMaterial {
            key: self.key(),
            name: self.name.clone(),
            data: self.data.clone(),
        }
    }
}

/// A service's use of a secret or config: which one, and the file the task sees.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FileRef {
    pub id: SecretId,
    /// The name it had when the service was made to use it (`source=`).
    pub name: String,
    /// The path the task sees, absolute (resolved at create with [`FileKind::target_path`]).
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl FileRef {
    /// Docker's file defaults: uid 0, gid 0, mode 0444.
    pub const DEFAULT_MODE: u32 = 0o444;
}

/// The data of one secret or config on its way to a node, with the answer of a session.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FileMaterial {
    pub key: FileKey,
    pub name: String,
    pub data: SecretBytes,
}

/// Checks a secret or config name: Docker's pattern
/// `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`, at most [`SECRET_NAME_CHARS_MAX`].
pub fn validate_secret_name(kind: FileKind, name: &str) -> Result<(), String> {
    let what = kind.as_str();
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = !name.is_empty()
        && name.len() <= SECRET_NAME_CHARS_MAX
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    if name.len() > SECRET_NAME_CHARS_MAX {
        return Err(format!(
            "invalid {what} name {name:?}: at most {SECRET_NAME_CHARS_MAX} characters"
        ));
    }
    Err(format!(
        "invalid {what} name {name:?}: only [a-zA-Z0-9-_.] are allowed, and it must start and end with [a-zA-Z0-9]"
    ))
}

/// Checks a secret's or config's data: 1 byte up to the kind's bound.
pub fn validate_secret_data(kind: FileKind, data: &[u8]) -> Result<(), String> {
    let what = kind.as_str();
    if data.is_empty() {
        return Err(format!("{what} data must not be empty"));
    }
    let max = kind.bytes_max();
    if data.len() > max {
        return Err(format!(
            "{what} data is {} bytes, over the limit of {max} bytes (under {} KiB)",
            data.len(),
            (max + 1) / 1024
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_pattern() {
        for ok in ["a", "my_secret_data", "db.password-2", "A9"] {
            assert!(validate_secret_name(FileKind::Secret, ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-a", "a-", "_a", "a b", "a/b", "é", long.as_str()] {
            assert!(
                validate_secret_name(FileKind::Secret, bad).is_err(),
                "{bad}"
            );
        }
        assert!(validate_secret_name(FileKind::Config, &"a".repeat(64)).is_ok());
    }

    #[test]
    fn sizes_are_bounded_by_kind() {
        assert!(validate_secret_data(FileKind::Secret, b"").is_err());
        assert!(validate_secret_data(FileKind::Secret, &[0; SECRET_BYTES_MAX]).is_ok());
        assert!(validate_secret_data(FileKind::Secret, &[0; SECRET_BYTES_MAX + 1]).is_err());
        assert!(validate_secret_data(FileKind::Config, &[0; SECRET_BYTES_MAX + 1]).is_ok());
        assert!(validate_secret_data(FileKind::Config, &[0; CONFIG_BYTES_MAX + 1]).is_err());
    }

    #[test]
    fn targets_default_as_dockers_do() {
        let s = FileKind::Secret;
        assert_eq!(s.target_path("pw", ""), "/run/secrets/pw");
        assert_eq!(
            s.target_path("pw", "db_password"),
            "/run/secrets/db_password"
        );
        assert_eq!(s.target_path("pw", "/etc/pw"), "/etc/pw");
        let c = FileKind::Config;
        assert_eq!(c.target_path("conf", ""), "/conf");
        assert_eq!(c.target_path("conf", "/etc/app.conf"), "/etc/app.conf");
    }

    #[test]
    fn data_never_shows_in_debug_output() {
        let b = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{b:?}"), "<7 bytes>");
    }
}
