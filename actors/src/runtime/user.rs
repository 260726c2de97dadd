//! A task's `--user`: Docker's `uid[:gid]` or `name[:group]`, parsed once (the control API
//! checks it before storing a spec) and resolved on the node that runs the task.
//!
//! Resolution reads the host's `/etc/passwd` and `/etc/group` as text ([`resolve`] takes the
//! text, so its rules are tested with fixed inputs): users known only to NSS (LDAP, sssd) are
//! not found by name; give their numbers. The rules, and where they differ from Docker's:
//! - `name` is the passwd entry's uid, and its primary group unless a group is given.
//! - `uid` (a number) takes its primary group from passwd when passwd has that uid; otherwise
//!   the group is the same number. Docker would use group 0 (root's) there; a task is not handed
//!   root's group by default.
//! - `:group` (a name from `/etc/group`, or a number) replaces the primary group.
//! - Supplementary groups are dropped (the std library clears them when it changes the uid), so
//!   a task never keeps the node's groups.
//!
//! The numbers 4294967295 (`(uid_t)-1`, which `setresuid` reads as "unchanged") are refused.

use std::fmt;
use std::str::FromStr;

/// Longest `--user` text: a user and a group name of 32 characters each (useradd's limit) and
/// the colon between them.
pub const USER_BYTES_MAX: usize = 65;
/// Longest user or group name.
pub const USER_NAME_BYTES_MAX: usize = 32;
/// Most bytes read of `/etc/passwd` or `/etc/group`; a longer file is refused, not truncated.
pub const ACCOUNT_FILE_BYTES_MAX: u64 = 4 << 20;

/// A user or a group, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Account {
    Id(u32),
    Name(String),
}

/// A parsed `--user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: Account,
    pub group: Option<Account>,
}

/// The numbers a task runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

/// Why a `--user` cannot be used; nothing was started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "invalid --user {0:?}: expected uid[:gid] or name[:group] (names of letters, digits, '_', '.', '-', at most {USER_NAME_BYTES_MAX} characters; numbers below 4294967295)"
    )]
    Invalid(String),
    #[error("--user {0:?}: no such user in /etc/passwd on this node")]
    UnknownUser(String),
    #[error("--user: no such group {0:?} in /etc/group on this node")]
    UnknownGroup(String),
    #[error("cannot read {path} to resolve --user: {reason}")]
    Unreadable { path: String, reason: String },
}

fn account(text: &str) -> Option<Account> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // `(uid_t)-1` means "unchanged" to the set*id calls: never a task's identity.
        return match text.parse::<u32>() {
            Ok(n) if n != u32::MAX => Some(Account::Id(n)),
            _ => None,
        };
    }
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (first_ok && rest_ok && text.len() <= USER_NAME_BYTES_MAX)
        .then(|| Account::Name(text.to_string()))
}

impl FromStr for UserSpec {
    type Err = UserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UserError::Invalid(s.chars().take(USER_BYTES_MAX).collect());
        if s.len() > USER_BYTES_MAX {
            return Err(bad());
        }
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let user = account(user).ok_or_else(bad)?;
        let group = match group {
            Some(g) => Some(account(g).ok_or_else(bad)?),
            None => None,
        };
        Ok(UserSpec { user, group })
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Id(n) => write!(f, "{n}"),
            Account::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => write!(f, "{}", self.user),
        }
    }
}

/// Checks a spec's `--user` text; the control API calls it before storing a spec.
pub fn validate_user(text: &str) -> Result<(), UserError> {
    text.parse::<UserSpec>().map(|_| ())
}

/// The `(name, third field, fourth field)` of each well-formed line of a colon-separated
/// account file: for passwd `(name, uid, gid)`, for group `(name, gid, members)`.
fn entries(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    text.lines().filter_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        Some((name, f.next()?, f.next()?))
    })
}

/// Resolves `spec` against the text of `/etc/passwd` and `/etc/group`.
pub fn resolve(spec: &UserSpec, passwd: &str, group: &str) -> Result<Credentials, UserError> {
    // (uid, primary gid) of the passwd entry matching by name or by number.
    let entry = |want: &Account| {
        entries(passwd).find_map(|(name, uid, gid)| {
            let uid: u32 = uid.parse().ok()?;
            let gid: u32 = gid.parse().ok()?;
            let hit = match want {
                Account::Id(n) => *n == uid,
                Account::Name(n) => n == name,
            };
            hit.then_some((uid, gid))
        })
    };
    let (uid, primary) = match &spec.user {
        Account::Name(n) => entry(&spec.user).ok_or_else(|| UserError::UnknownUser(n.clone()))?,
        Account::Id(n) => entry(&spec.user).unwrap_or((*n, *n)),
    };
    let gid = match &spec.group {
        None => primary,
        Some(Account::Id(g)) => *g,
        Some(Account::Name(want)) => entries(group)
            .find_map(|(name, gid, _)| (name == want).then(|| gid.parse::<u32>().ok())?)
            .ok_or_else(|| UserError::UnknownGroup(want.clone()))?,
    };
    if uid == u32::MAX || gid == u32::MAX {
        return Err(UserError::Invalid(spec.to_string()));
    }
    Ok(Credentials { uid, gid })
}

/// Reads an account file, bounded by [`ACCOUNT_FILE_BYTES_MAX`].
fn read_account_file(path: &str) -> Result<String, UserError> {
    use std::io::Read;
    let unreadable = |reason: String| UserError::Unreadable {
        path: path.to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut text = String::new();
    file.take(ACCOUNT_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    if text.len() as u64 > ACCOUNT_FILE_BYTES_MAX {
        return Err(unreadable(format!(
            "longer than {ACCOUNT_FILE_BYTES_MAX} bytes"
        )));
    }
    Ok(text)
}

/// Resolves `--user` text on this host: parses it, then reads `/etc/passwd` (and `/etc/group`
/// when a group is named). A number needs no file when it names its group too.
pub fn resolve_on_host(text: &str) -> Result<Credentials, UserError> {
    let spec: UserSpec = text.parse()?;
    if let (Account::Id(uid), Some(Account::Id(gid))) = (&spec.user, &spec.group) {
        return Ok(Credentials {
            uid: *uid,
            gid: *gid,
        });
    }
    let passwd = read_account_file("/etc/passwd")?;
    let group = match spec.group {
        Some(Account::Name(_)) => read_account_file("/etc/group")?,
        _ => String::new(),
    };
    resolve(&spec, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        web:x:1000:1001::/home/web:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nweb:x:1001:\nstaff:x:50:web\nnogroup:x:65534:\n";

    fn creds(text: &str) -> Result<Credentials, UserError> {
        resolve(&text.parse()?, PASSWD, GROUP)
    }

    #[test]
    fn parses_dockers_forms() {
        let spec = |u: Account, g: Option<Account>| UserSpec { user: u, group: g };
        let name = |n: &str| Account::Name(n.into());
        assert_eq!("1000".parse(), Ok(spec(Account::Id(1000), None)));
        assert_eq!(
            "1000:50".parse(),
            Ok(spec(Account::Id(1000), Some(Account::Id(50))))
        );
        assert_eq!("web".parse(), Ok(spec(name("web"), None)));
        assert_eq!(
            "web:staff".parse(),
            Ok(spec(name("web"), Some(name("staff"))))
        );
        assert_eq!(
            "_svc.a-b:0".parse(),
            Ok(spec(name("_svc.a-b"), Some(Account::Id(0))))
        );
        for text in ["web", "1000:50", "web:staff"] {
            assert_eq!(text.parse::<UserSpec>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_user_text() {
        for bad in [
            "",
            ":",
            "web:",
            ":staff",
            "a:b:c",
            "-web",
            "we b",
            "web/1",
            "wéb",
            "4294967295",
            "0:4294967295",
            "99999999999",
            "web\0",
            &"a".repeat(USER_NAME_BYTES_MAX + 1),
            &"1".repeat(USER_BYTES_MAX + 1),
        ] {
            assert!(
                matches!(bad.parse::<UserSpec>(), Err(UserError::Invalid(_))),
                "{bad:?} accepted"
            );
            assert!(validate_user(bad).is_err());
        }
        assert_eq!(validate_user(&"a".repeat(USER_NAME_BYTES_MAX)), Ok(()));
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let c = |uid, gid| Ok(Credentials { uid, gid });
        assert_eq!(creds("root"), c(0, 0));
        assert_eq!(creds("web"), c(1000, 1001));
        assert_eq!(creds("nobody"), c(65534, 65534));
        // A known number takes its primary group; an unknown one its own number, not root's.
        assert_eq!(creds("1000"), c(1000, 1001));
        assert_eq!(creds("4242"), c(4242, 4242));
        assert_eq!(creds("web:staff"), c(1000, 50));
        assert_eq!(creds("web:7"), c(1000, 7));
        assert_eq!(creds("4242:nogroup"), c(4242, 65534));
        assert_eq!(creds("ghost"), Err(UserError::UnknownUser("ghost".into())));
        assert_eq!(
            creds("web:ghosts"),
            Err(UserError::UnknownGroup("ghosts".into()))
        );
        // A name that only a member list mentions is not a group.
        assert!(creds("root:web2").is_err());
    }

    #[test]
    fn numbers_need_no_account_files() {
        assert_eq!(
            resolve_on_host("4242:4343"),
            Ok(Credentials {
                uid: 4242,
                gid: 4343
            })
        );
        assert_eq!(
            resolve_on_host("root"),
            Ok(Credentials { uid: 0, gid: 0 }),
            "every host has root in /etc/passwd"
        );
    }
}
