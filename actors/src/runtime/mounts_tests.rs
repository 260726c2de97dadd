//! Tests of how a process task sees its files: the mount namespace (as root) and the
//! variables (always computable). Real processes (`sh`, `cat`, `id`).

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use super::*;
use crate::model::{
    FileKey, FileMaterial, FileRef, NodeId, RuntimeKind, SecretBytes, SecretId, TaskId, TaskSpec,
};
use crate::runtime::tests_support::{context, program, run_to_end as run};
use crate::runtime::{ProcessRuntime, TaskRuntime};
use crate::vault::Vault;

const MARKER: &str = "mounts-test-secret-91c2";

fn ctx(task: u128, args: &[&str], user: Option<&str>) -> TaskContext {
    let spec = TaskSpec {
        user: user.map(String::from),
        ..program(RuntimeKind::Process, "sh", args)
    };
    context(TaskId(task), NodeId(77), "db", spec)
}

fn fref(id: u128, name: &str, target: &str, uid: u32, mode: u32) -> FileRef {
    FileRef {
        id: SecretId(id),
        name: name.into(),
        target: target.into(),
        uid,
        gid: uid,
        mode,
    }
}

fn material(kind: FileKind, id: u128, name: &str, data: &str) -> FileMaterial {
    FileMaterial {
        key: FileKey {
            kind,
            id: SecretId(id),
        },
        name: name.into(),
        data: SecretBytes::new(data.as_bytes().to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_a_task_sees_its_files_at_their_targets_and_the_host_does_not() {
    if !running_as_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root, and CI runs as root"
        );
        eprintln!("SKIPPED: not root, so no mount namespace");
        return;
    }
    let shm = tempfile::Builder::new()
        .prefix("swarm-mounts-test")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut vault = Vault::open(shm.path(), NodeId(77));
    vault
        .hold(vec![
            material(FileKind::Secret, 1, "pw", MARKER),
            material(FileKind::Config, 2, "conf", "from the config"),
        ])
        .unwrap();
    let disk = tempfile::tempdir().unwrap();
    let existing = disk.path().join("app.conf");
    std::fs::write(&existing, "original").unwrap();
    let existing = existing.display().to_string();
    let rt = ProcessRuntime::new(disk.path().join("tasks")).unwrap();

    eprintln!(
        "phase: a secret under /run/secrets (nested too) and a config over an existing file show \
         in the task, read-only, with the ref's owner; the host sees neither"
    );
    let script = format!(
        "cat /run/secrets/mysql_root_password; echo; cat /run/secrets/deep/pw; echo; \
         cat {existing}; echo; stat -c '%a %u' /run/secrets/mysql_root_password; \
         (echo x > /run/secrets/mysql_root_password) 2>/dev/null && echo WRITABLE; echo END"
    );
    let mut c = ctx(1, &["-c", &script], None);
    c.files = vault
        .materialize(
            c.task_id,
            &[
                fref(1, "pw", "/run/secrets/mysql_root_password", 0, 0o440),
                fref(1, "pw", "/run/secrets/deep/pw", 0, 0o444),
            ],
            &[fref(2, "conf", &existing, 0, 0o444)],
        )
        .unwrap();
    let (code, lines) = run(&rt, &c).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        lines,
        [MARKER, MARKER, "from the config", "440 0", "END"],
        "what the task saw"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "original");
    assert!(!std::path::Path::new("/run/secrets/mysql_root_password").exists());
    assert!(!std::path::Path::new("/run/secrets/deep").exists());

    eprintln!(
        "phase: with --user the task runs as that user after the mounts, and reads only what \
         its ref's owner and mode let it"
    );
    let mut c = ctx(
        2,
        &[
            "-c",
            "id -u; cat /run/secrets/mine; echo; cat /run/secrets/roots 2>/dev/null || echo DENIED; echo END",
        ],
        Some("65534:65534"),
    );
    c.files = vault
        .materialize(
            c.task_id,
            &[
                fref(1, "pw", "/run/secrets/mine", 65534, 0o400),
                fref(1, "pw", "/run/secrets/roots", 0, 0o400),
            ],
            &[],
        )
        .unwrap();
    let (code, lines) = run(&rt, &c).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines, ["65534", MARKER, "DENIED", "END"]);

    eprintln!(
        "phase: a config's target that does not exist gets an empty placeholder on the host as \
         its mount point, shared by the node's tasks and removed with the last of them"
    );
    let missing = disk.path().join("site.conf");
    let target = missing.display().to_string();
    let script = format!("cat {target}; echo; echo END; sleep 100000");
    let mut tasks = Vec::new();
    for id in [3, 4] {
        let mut c = ctx(id, &["-c", &script], None);
        c.files = vault
            .materialize(c.task_id, &[], &[fref(2, "conf", &target, 0, 0o444)])
            .unwrap();
        rt.start(&c).await.unwrap();
        tasks.push(c);
    }
    for c in &tasks {
        let mut lines = Vec::new();
        for _ in 0..300 {
            lines = rt.logs(c.task_id, 10).await.unwrap();
            if lines.iter().any(|l| l.text == "END") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lines[0].text, "from the config");
    }
    assert_eq!(
        std::fs::read(&missing).unwrap(),
        b"",
        "the host sees an empty file"
    );
    rt.remove(TaskId(3)).await.unwrap();
    assert!(missing.exists(), "task 4 still uses it");
    rt.remove(TaskId(4)).await.unwrap();
    assert!(!missing.exists(), "removed with the last task");

    eprintln!("phase: a target whose directory does not exist on the host is refused");
    let mut c = ctx(5, &["-c", "echo END"], None);
    let nowhere = disk
        .path()
        .join("no-such-dir/app.conf")
        .display()
        .to_string();
    c.files = vault
        .materialize(c.task_id, &[], &[fref(2, "conf", &nowhere, 0, 0o444)])
        .unwrap();
    let e = rt.start(&c).await.unwrap_err();
    assert!(e.to_string().contains("does not exist on this host"), "{e}");
    assert!(!disk.path().join("no-such-dir").exists());
    vault.close();
}

#[test]
fn without_a_namespace_the_variables_name_the_two_directories() {
    let file = |kind, path: &str| TaskFile {
        kind,
        name: "n".into(),
        host_path: path.into(),
        target: "/x".into(),
        uid: 0,
        gid: 0,
        mode: 0o444,
    };
    let env = file_env(&[
        file(FileKind::Secret, "/dev/shm/swarm-node/n/t/secrets/a"),
        file(FileKind::Secret, "/dev/shm/swarm-node/n/t/secrets/b"),
        file(FileKind::Config, "/dev/shm/swarm-node/n/t/configs/c"),
    ]);
    assert_eq!(
        env,
        [
            (
                "SWARM_SECRETS_DIR".to_string(),
                "/dev/shm/swarm-node/n/t/secrets".to_string()
            ),
            (
                "SWARM_CONFIGS_DIR".to_string(),
                "/dev/shm/swarm-node/n/t/configs".to_string()
            ),
        ]
    );
    assert!(
        file_env(&[file(FileKind::Config, "/d/configs/c")])
            .iter()
            .all(|(k, _)| k != "SWARM_SECRETS_DIR")
    );
}
