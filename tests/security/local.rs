//! The local surface: what a user of the node's machine who is not the node's user, and a task
//! the node runs as a process, can reach. Ports 25501-25599.
//!
//! These tests change users, so they need root: outside CI a non-root run skips them with a
//! line saying why; under `CI=true` (which runs as root) a non-root run fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{BIN, Node, phase, wait_until};

/// The unprivileged user the attacks run as (Debian's `nobody` and `nogroup`).
const NOBODY: u32 = 65534;
/// What a manager's data dir holds that a task must not read: its key, the store's data key,
/// the sealed store (the cluster CA's key and the join tokens are in it), the node file.
const FILES: &str = "node.key raft.key raft.redb node.json";
/// Long enough for a loaded machine to start a task and collect its output.
const PATIENCE: Duration = Duration::from_secs(60);

/// Whether this test runs as root; see the module doc for what happens when not.
fn root_or_skip(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} must run as root (it plays another local user); CI runs as root"
        );
        eprintln!("SKIPPED {test}: not root, so it cannot play another local user");
    }
    root
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("the path exists")
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The CLI run as uid and gid `id` (groups cleared), against the node whose data dir is `dir`.
fn cli_as(id: u32, dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .uid(id)
        .gid(id)
        .output()
        .expect("swarm-node CLI runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A test root that others may traverse (tempfile makes it 0700), so that the only wall
/// between another user and a node's files is what the node itself sets up.
fn open_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    chmod(root.path(), 0o755);
    root
}

#[test]
fn another_local_user_cannot_use_the_control_socket() {
    if !root_or_skip("another_local_user_cannot_use_the_control_socket") {
        return;
    }
    phase(
        "attack: a local user who is not the node's user drives the node through its control socket",
    );
    let root = open_root();
    let n = Node::bootstrap(root.path(), "n1", 25501);
    let sock = n.dir.join("control.sock");

    phase("the data dir the test made 0755 was tightened to 0700, and the log says so");
    assert_eq!(mode(&n.dir), 0o700, "data dir mode");
    assert!(
        n.logs()
            .contains("the data dir had a looser mode than it needs: tightened"),
        "{}",
        n.logs()
    );
    assert_eq!(mode(&n.dir.join("node.key")), 0o600);
    assert_eq!(mode(&sock), 0o600, "control socket mode");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().uid(),
        0,
        "the socket is root's"
    );

    phase("nobody cannot even reach the socket: the data dir is closed to it");
    let out = cli_as(NOBODY, &n.dir, &["node", "ls"]);
    assert!(!out.status.success(), "nobody ran node ls: {}", text(&out));
    assert!(text(&out).contains("cannot reach"), "{}", text(&out));

    phase(
        "with the walls loosened by mistake (dir 0711, socket 0666), peer credentials still refuse nobody",
    );
    chmod(&n.dir, 0o711);
    chmod(&sock, 0o666);
    for args in [
        &["node", "ls"][..],
        &["swarm", "join-token", "manager"],
        &[
            "service",
            "create",
            "--runtime",
            "process",
            "--name",
            "planted",
            "--detach",
            "sleep",
            "1000",
        ],
    ] {
        let out = cli_as(NOBODY, &n.dir, args);
        let said = text(&out);
        assert!(!out.status.success(), "nobody ran {args:?}: {said}");
        assert!(
            said.contains("permission denied")
                && said.contains(&format!("not uid {NOBODY}"))
                && !said.contains("SWMTKN"),
            "{args:?}: {said}"
        );
    }
    chmod(&sock, 0o600);
    chmod(&n.dir, 0o700);

    phase("nothing nobody asked for happened; root is still served");
    let services = n.ok(&["service", "ls", "-q"]);
    assert!(
        services.trim().is_empty(),
        "a service was planted: {services}"
    );
    assert!(
        n.logs().contains("control caller refused"),
        "the node logs each refusal"
    );
}

#[test]
fn a_process_task_run_as_another_user_cannot_read_the_nodes_keys() {
    if !root_or_skip("a_process_task_run_as_another_user_cannot_read_the_nodes_keys") {
        return;
    }
    phase("attack: a process task reads the node's key, the store's key and the sealed store");
    let root = open_root();
    let n = Node::bootstrap(root.path(), "n1", 25502);
    let dir = n.dir.display().to_string();
    let script = format!(
        "for f in {FILES}; do \
           if cat {dir}/$f >/dev/null 2>&1; then echo \"$f: read\"; else echo \"$f: denied\"; fi; \
         done; \
         if ls {dir} >/dev/null 2>&1; then echo 'list: read'; else echo 'list: denied'; fi; \
         echo \"uid: $(id -u)\"; sleep 100000"
    );
    let create = |name: &str, user: Option<&str>| {
        let mut args = vec!["service", "create", "--name", name, "--runtime", "process"];
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        args.extend(["--detach", "sh", "-c", &script]);
        n.ok(&args);
    };
    create("as-nobody", Some("nobody"));
    create("as-root", None);
    let logs_of = |svc: &str| {
        let mut found = String::new();
        let complete = wait_until(PATIENCE, || {
            found = n.ok(&["service", "logs", svc]);
            found.contains("uid: ")
        });
        assert!(complete, "{svc} wrote its findings: {found}\n{}", n.logs());
        found
    };

    phase("the task run as nobody reads none of it: the data dir is 0700, the keys 0600");
    let found = logs_of("as-nobody");
    for f in FILES.split(' ').chain(["list"]) {
        assert!(found.contains(&format!("{f}: denied")), "{f}: {found}");
    }
    assert!(found.contains(&format!("uid: {NOBODY}")), "{found}");

    phase("the same task without --user runs as the node's user, root, and reads everything");
    let found = logs_of("as-root");
    for f in FILES.split(' ').chain(["list"]) {
        assert!(found.contains(&format!("{f}: read")), "{f}: {found}");
    }
    assert!(found.contains("uid: 0"), "{found}");

    phase("service inspect says who each task runs as");
    let pretty = n.ok(&["service", "inspect", "--pretty", "as-nobody"]);
    assert!(pretty.contains(" User:\t\tnobody\n"), "{pretty}");
    let pretty = n.ok(&["service", "inspect", "--pretty", "as-root"]);
    assert!(
        pretty.contains("the node's own user, root when the node runs as root"),
        "{pretty}"
    );
    let json = n.ok(&["service", "inspect", "as-nobody"]);
    assert!(json.contains("\"User\": \"nobody\""), "{json}");

    phase("a malformed --user is refused before anything is stored");
    let out = n.cli(&[
        "service",
        "create",
        "--name",
        "bad",
        "--runtime",
        "process",
        "--user",
        "a:b:c",
        "sleep",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid --user"), "{}", text(&out));
}
