//! What the autolock tests share: `swarm unlock` with a key on stdin, waiting for a node to
//! come up locked, and reading how its store key file is sealed.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{BIN, Node, wait_until};

/// Generous bound on every wait: the machines are shared.
pub const LIMIT: Duration = Duration::from_secs(60);

/// What Docker's locked daemon says, as this node says it.
pub const LOCKED: &str = "This node is locked";

/// Runs `swarm unlock` against `node`, with `input` on its stdin.
pub fn unlock(node: &Node, input: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&node.dir)
        .args(["swarm", "unlock"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarm-node CLI runs");
    let mut stdin = child.stdin.take().expect("piped");
    // The CLI may refuse before it reads everything; that is its answer, seen below.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    child.wait_with_output().expect("the CLI ends")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Restarts `node` (killed before) and waits until its control socket answers that it is
/// locked.
pub fn restart_locked(node: &mut Node) {
    node.spawn();
    let ok = wait_until(LIMIT, || {
        let out = node.cli(&["node", "ls"]);
        !out.status.success() && text(&out).contains(LOCKED)
    });
    assert!(ok, "{} did not come up locked: {}", node.name, node.logs());
}

/// The unlock key, `-q`.
pub fn unlock_key(node: &Node) -> String {
    node.ok(&["swarm", "unlock-key", "-q"]).trim().to_string()
}

/// Whether `<dir>/raft.key` is sealed (and how long it is, to tell plain from sealed).
pub fn sealed(dir: &Path) -> bool {
    std::fs::read(dir.join("raft.key")).is_ok_and(|b| b.len() == 68 && b.starts_with(b"SWMLOCK1"))
}

pub fn plain(dir: &Path) -> bool {
    std::fs::read(dir.join("raft.key")).is_ok_and(|b| b.len() == 32)
}

/// The key's 32 bytes, from its text (`SWMKEY-1-` and 64 hex digits).
pub fn key_bytes(key: &str) -> Vec<u8> {
    let hex = key.strip_prefix("SWMKEY-1-").expect("a key");
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Asserts no file of the node's data dir but the test's own logs of its output holds the key,
/// as text or as bytes: the unlock key is never written to disk.
pub fn key_not_on_disk(node: &Node, key: &str) {
    let raw = key_bytes(key);
    for entry in walk(&node.dir) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        // The harness captures the node's stdout (where `start --autolock` prints the key
        // once, for the operator) into log-N.txt; the node itself writes none of these.
        if name.starts_with("log-") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&entry) else {
            continue; // a socket, or gone meanwhile
        };
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes())
                && !bytes.windows(raw.len()).any(|w| w == raw),
            "{} holds the unlock key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
