//! The `secret` and `config` commands and the service flags that use them, end to end through
//! the CLI: create, list, inspect, remove; the name, size and in-use rules; refusals that
//! change nothing; a service referring to a missing secret refused; `--secret-rm` and
//! `--secret-add` changing the spec and rolling the tasks.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Node, VaultDirs, all_ready, phase, task_state, wait_until};

/// Bound on every wait for the cluster to converge; generous, the machines are noisy.
const CONVERGE: Duration = Duration::from_secs(60);

/// What no command may ever print: the data of the secret created with it.
const MARKER: &str = "MARKER-cli-4f1d9c-never-printed";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must fail; returns its error text.
fn refused(node: &Node, args: &[&str]) -> String {
    let out = node.cli(args);
    assert!(
        !out.status.success(),
        "`{}` was not refused: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(&out)
}

/// `KIND ls --format json` rows, sorted by name, as a comparable snapshot: without the
/// relative times ("5 seconds ago"), which change as the test runs.
fn listed(node: &Node, kind: &str) -> Vec<Value> {
    let out = node.ok(&[kind, "ls", "--format", "json"]);
    out.lines()
        .map(|l| {
            let mut row: Value =
                serde_json::from_str(l).expect("ls --format json prints JSON lines");
            for time in ["CreatedAt", "UpdatedAt"] {
                assert!(
                    row[time].as_str().is_some_and(|t| t.ends_with(" ago")),
                    "{row}"
                );
                row.as_object_mut().map(|o| o.remove(time));
            }
            row
        })
        .collect()
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["Name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The IDs of `svc`'s tasks that are wanted and running.
fn running_tasks(node: &Node, svc: &str) -> Vec<String> {
    node.service_ps(svc)
        .iter()
        .filter(|r| r["DesiredState"] == "Running" && task_state(r) == "Running")
        .map(|r| r["ID"].as_str().unwrap_or("").to_string())
        .collect()
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn secrets_and_configs_are_created_listed_used_rotated_and_removed() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 27101);
    let _vaults = VaultDirs(vec![n1.id()]);
    let files = root.path().join("files");
    std::fs::create_dir_all(&files).unwrap();

    phase("secret create from stdin and from a file; ls, -q and inspect show metadata only");
    let out = n1.cli_stdin(&["secret", "create", "db_pw", "-"], MARKER.as_bytes());
    assert!(out.status.success(), "create from stdin: {}", stderr(&out));
    let pw_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(pw_id.len(), 25, "an ID like a service's: {pw_id:?}");
    let new_pw = write_file(&files, "new_pw.txt", b"the-new-password\n");
    let new_id = n1
        .ok(&["secret", "create", "--label", "tier=db", "new_pw", &new_pw])
        .trim()
        .to_string();
    let rows = listed(&n1, "secret");
    assert_eq!(names(&rows), ["db_pw", "new_pw"]);
    assert_eq!(rows[1]["Labels"], "tier=db");
    let quiet = n1.ok(&["secret", "ls", "-q"]);
    assert_eq!(quiet.lines().count(), 2, "{quiet}");
    assert!(quiet.contains(&pw_id) && quiet.contains(&new_id), "{quiet}");
    let table = n1.ok(&["secret", "ls"]);
    assert!(
        table.starts_with("ID ") && table.lines().next().unwrap().ends_with("UPDATED"),
        "{table}"
    );
    let inspect = n1.ok(&["secret", "inspect", "db_pw", &new_id[..10]]);
    let docs: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(docs[0]["ID"], pw_id.as_str());
    assert_eq!(docs[1]["Spec"]["Name"], "new_pw", "found by an ID prefix");
    assert!(docs[0]["Spec"].get("Data").is_none(), "{inspect}");
    let pretty = n1.ok(&["secret", "inspect", "--pretty", "new_pw"]);
    assert!(pretty.contains("Name:\t\tnew_pw\n") && pretty.contains(" - tier=db\n"));
    for printed in [&inspect, &pretty, &table] {
        assert!(!printed.contains(MARKER), "secret data printed: {printed}");
    }

    phase("refusals change nothing: a taken name, bad names, empty and oversized data");
    let before = listed(&n1, "secret");
    let e = stderr(&n1.cli_stdin(&["secret", "create", "db_pw", "-"], b"other"));
    assert!(e.contains("secret db_pw already exists"), "{e}");
    for bad in ["-pw", "pw-", "a b", &"a".repeat(65)] {
        let e = stderr(&n1.cli_stdin(&["secret", "create", bad, "-"], b"x"));
        assert!(e.contains("invalid secret name"), "{bad}: {e}");
    }
    let e = stderr(&n1.cli_stdin(&["secret", "create", "empty", "-"], b""));
    assert!(e.contains("must not be empty"), "{e}");
    let big = write_file(&files, "big", &vec![b'x'; 500 * 1024]);
    let e = refused(&n1, &["secret", "create", "big", &big]);
    assert!(e.contains("over the limit"), "{e}");
    let e = refused(&n1, &["secret", "create", "gone", "/nonexistent/file"]);
    assert!(e.contains("cannot read /nonexistent/file"), "{e}");
    assert_eq!(
        listed(&n1, "secret"),
        before,
        "a refusal changed the secrets"
    );

    phase("update changes labels only; a bad label change changes nothing");
    n1.ok(&[
        "secret",
        "update",
        "--label-add",
        "env=prod",
        "--label-rm",
        "tier",
        "new_pw",
    ]);
    let rows = listed(&n1, "secret");
    assert_eq!(rows[1]["Labels"], "env=prod");
    let e = refused(&n1, &["secret", "update", "--label-rm", "nope", "new_pw"]);
    assert!(e.contains("label nope does not exist"), "{e}");
    let e = refused(&n1, &["secret", "update", "--label-add", "a b=c", "new_pw"]);
    assert!(e.contains("label key"), "{e}");
    assert_eq!(
        listed(&n1, "secret"),
        rows,
        "a refused update changed the secrets"
    );

    phase("configs: the larger bound, and their data can be read back");
    let conf = write_file(&files, "site.conf", b"listen 8080\n");
    n1.ok(&["config", "create", "site.conf", &conf]);
    n1.ok(&["config", "create", "big.conf", &big]);
    assert_eq!(names(&listed(&n1, "config")), ["big.conf", "site.conf"]);
    assert_eq!(
        names(&listed(&n1, "secret")),
        ["db_pw", "new_pw"],
        "kinds apart"
    );
    let docs: Value = serde_json::from_str(&n1.ok(&["config", "inspect", "site.conf"])).unwrap();
    assert_eq!(docs[0]["Spec"]["Data"], "bGlzdGVuIDgwODAK");
    let pretty = n1.ok(&["config", "inspect", "--pretty", "site.conf"]);
    assert!(pretty.ends_with("Data:\nlisten 8080\n"), "{pretty}");
    n1.ok(&["config", "rm", "big.conf"]);
    assert_eq!(names(&listed(&n1, "config")), ["site.conf"]);

    phase("a service naming a missing secret or config is refused, and nothing is written");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "service",
            "create",
            "--name",
            "db",
            "--runtime",
            "process",
            "--detach",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["sleep", "100000"]);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        n1.cli(&refs)
    };
    for (extra, want) in [
        (vec!["--secret", "nope"], "secret nope not found"),
        (vec!["--config", "db_pw"], "config db_pw not found"),
        (
            vec![
                "--secret",
                "db_pw",
                "--secret",
                "source=new_pw,target=db_pw",
            ],
            "duplicate target /run/secrets/db_pw",
        ),
    ] {
        let out = run(create(&extra));
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(stderr(&out).contains(want), "{extra:?}: {}", stderr(&out));
    }
    assert_eq!(
        n1.ok(&["service", "ls", "-q"]),
        "",
        "a refused create wrote"
    );

    phase("service create with a secret and a config: inspect shows Docker's shape");
    let out = run(create(&[
        "--secret",
        "source=db_pw,target=db_password,mode=0400",
        "--config",
        "source=site.conf,target=/etc/site.conf",
    ]));
    assert!(out.status.success(), "create: {}", stderr(&out));
    let doc = n1.service_inspect("db").expect("db inspected");
    let c = &doc["Spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(c["Secrets"][0]["SecretID"], pw_id.as_str());
    assert_eq!(c["Secrets"][0]["SecretName"], "db_pw");
    assert_eq!(c["Secrets"][0]["File"]["Name"], "/run/secrets/db_password");
    assert_eq!(c["Secrets"][0]["File"]["Mode"], 0o400);
    assert_eq!(c["Configs"][0]["File"]["Name"], "/etc/site.conf");
    let pretty = n1.ok(&["service", "inspect", "--pretty", "db"]);
    assert!(
        pretty.contains("Secrets:\n Target:\t/run/secrets/db_password\n  Source:\tdb_pw\n"),
        "{pretty}"
    );
    let mut first = Vec::new();
    assert!(
        wait_until(CONVERGE, || {
            first = running_tasks(&n1, "db");
            first.len() == 1
        }),
        "db never ran: {:#?}\n{}",
        n1.service_ps("db"),
        n1.logs()
    );

    phase("a secret or config in use cannot be removed; the refusal names the service");
    let e = refused(&n1, &["secret", "rm", "db_pw"]);
    assert!(
        e.contains("secret 'db_pw' is in use by the following service(s): db"),
        "{e}"
    );
    let e = refused(&n1, &["config", "rm", "site.conf"]);
    assert!(e.contains("config 'site.conf' is in use"), "{e}");
    let e = refused(&n1, &["secret", "rm", "missing"]);
    assert!(e.contains("secret missing not found"), "{e}");
    assert_eq!(names(&listed(&n1, "secret")), ["db_pw", "new_pw"]);

    phase("a refused update (missing secret, unused removal) leaves the spec as it was");
    let version = doc["Version"]["Index"].clone();
    let e = refused(
        &n1,
        &["service", "update", "-d", "--secret-add", "nope", "db"],
    );
    assert!(e.contains("secret nope not found"), "{e}");
    let e = refused(
        &n1,
        &["service", "update", "-d", "--secret-rm", "new_pw", "db"],
    );
    assert!(e.contains("service db does not use secret new_pw"), "{e}");
    let unchanged = n1.service_inspect("db").unwrap();
    assert_eq!(unchanged["Version"]["Index"], version);

    phase("rotation: --secret-rm the old, --secret-add the new at the same target rolls the task");
    n1.ok(&[
        "service",
        "update",
        "-d",
        "--secret-rm",
        "db_pw",
        "--secret-add",
        "source=new_pw,target=db_password,mode=0400",
        "db",
    ]);
    let doc = n1.service_inspect("db").unwrap();
    let secrets = &doc["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"];
    assert_eq!(secrets.as_array().map(Vec::len), Some(1), "{secrets}");
    assert_eq!(secrets[0]["SecretID"], new_id.as_str());
    assert_eq!(secrets[0]["File"]["Name"], "/run/secrets/db_password");
    let mut now = Vec::new();
    assert!(
        wait_until(CONVERGE, || {
            now = running_tasks(&n1, "db");
            now.len() == 1 && now != first
        }),
        "the task never rolled: before {first:?}, now {now:?}: {:#?}",
        n1.service_ps("db")
    );
    let history = n1.service_ps("db");
    assert!(
        history
            .iter()
            .any(|r| r["ID"] == first[0].as_str() && r["DesiredState"] == "Shutdown"),
        "the old task was not shut down: {history:#?}"
    );

    phase("the rotated-out secret can go; a rollback to the spec naming it is then refused");
    n1.ok(&["secret", "rm", "db_pw"]);
    assert_eq!(names(&listed(&n1, "secret")), ["new_pw"]);
    let e = refused(&n1, &["service", "rollback", "-d", "db"]);
    assert!(
        e.contains("cannot roll back db") && e.contains("secret db_pw"),
        "{e}"
    );

    phase("once the service is gone, so can its secret and config be");
    n1.ok(&["service", "rm", "db"]);
    n1.ok(&["secret", "rm", "new_pw"]);
    n1.ok(&["config", "rm", "site.conf"]);
    assert!(listed(&n1, "secret").is_empty() && listed(&n1, "config").is_empty());
    assert!(!n1.logs().contains(MARKER), "secret data in the node's log");
}

#[test]
fn a_worker_refuses_secret_commands_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let n1 = Node::bootstrap(root.path(), "n1", 27111);
    let n2 = Node::join(root.path(), "n2", 27112, n1.addr, &n1.token("worker"));
    assert!(
        wait_until(CONVERGE, || all_ready(&n1.node_ls(), 2)),
        "the two nodes never both showed Ready"
    );

    phase("a worker has no store: every secret and config command is refused there");
    let out = n2.cli_stdin(&["secret", "create", "pw", "-"], MARKER.as_bytes());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a swarm manager"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["secret", "ls"][..],
        &["config", "ls"],
        &["secret", "inspect", "pw"],
        &["config", "rm", "pw"],
    ] {
        let e = refused(&n2, args);
        assert!(e.contains("not a swarm manager"), "{args:?}: {e}");
    }
    assert!(
        listed(&n1, "secret").is_empty(),
        "the worker's create wrote"
    );

    phase("created on the manager, listed there with the same ID it printed");
    let out = n1.cli_stdin(&["secret", "create", "pw", "-"], MARKER.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(n1.ok(&["secret", "ls", "-q"]).trim(), id);
    for node in [&n1, &n2] {
        assert!(
            !node.logs().contains(MARKER),
            "secret data in {}'s log",
            node.name
        );
    }
}
