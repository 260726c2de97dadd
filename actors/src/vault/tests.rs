//! Tests of the vault on the real tmpfs (`/dev/shm`), each under a directory of its own.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::model::{FileKind, SecretBytes, SecretId};

const MARKER: &str = "vault-test-marker-7f3a";

/// A base directory under /dev/shm for one test, removed when dropped.
struct Base(PathBuf);

impl Base {
    fn new(test: &str) -> Base {
        let p = PathBuf::from(format!(
            "/dev/shm/swarm-node-test-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p); // a previous run's, if any
        Base(p)
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0); // best effort: the test is over
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

fn fref(id: u128, name: &str, target: &str, mode: u32) -> FileRef {
    FileRef {
        id: SecretId(id),
        name: name.into(),
        target: target.into(),
        uid: 1234,
        gid: 4321,
        mode,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn files_are_written_per_task_on_tmpfs_and_removed_when_it_ends() {
    let base = Base::new("write");
    let node = NodeId(7);
    // What a previous run left is gone once the vault opens.
    let stale = base.0.join(node.to_string()).join("old-task");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("pw"), MARKER).unwrap();
    let mut v = Vault::open(&base.0, node);
    assert!(!stale.exists(), "the previous run's files are removed");
    assert!(!v.root().exists(), "made only for a task with files");

    v.hold(vec![
        material(FileKind::Secret, 1, "pw", MARKER),
        material(FileKind::Config, 2, "conf", "listen 80\n"),
    ])
    .unwrap();
    let task = TaskId(42);
    let files = v
        .materialize(
            task,
            &[fref(1, "pw", "/run/secrets/mysql_root_password", 0o440)],
            &[fref(2, "conf", "/etc/app.conf", 0o444)],
        )
        .unwrap();
    assert_eq!(files.len(), 2);
    assert!(is_tmpfs(v.root()));
    assert_eq!(mode(v.root()), 0o700);
    let dir = v.root().join(task.to_string());
    assert_eq!(mode(&dir), 0o700);
    let pw = &files[0];
    assert_eq!(pw.host_path, dir.join("secrets/mysql_root_password"));
    assert_eq!(pw.target, "/run/secrets/mysql_root_password");
    assert_eq!(std::fs::read_to_string(&pw.host_path).unwrap(), MARKER);
    assert_eq!(mode(&pw.host_path), 0o440);
    if crate::runtime::running_as_root() {
        let md = std::fs::metadata(&pw.host_path).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 4321), "chowned as root");
    }
    assert_eq!(files[1].host_path, dir.join("configs/app.conf"));
    assert_eq!(
        std::fs::read_to_string(&files[1].host_path).unwrap(),
        "listen 80\n"
    );
    // Asking again gives the same files, written once.
    assert_eq!(
        v.materialize(task, &[fref(1, "pw", "/run/secrets/x", 0o444)], &[])
            .unwrap(),
        files
    );

    // List: names, kinds and tasks; never the data.
    let list = v.list();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|h| h.tasks == vec![task]));
    let shown = serde_json::to_string(&list).unwrap();
    assert!(shown.contains("\"pw\"") && shown.contains("\"conf\""));
    assert!(!shown.contains(MARKER), "List never shows data: {shown}");

    assert!(v.release(task));
    assert!(!dir.exists(), "the task's files go when it ends");
    assert!(!v.release(task), "a second release finds nothing");
    assert!(v.list().iter().all(|h| h.tasks.is_empty()));

    // Forgotten material can no longer be written for a new task.
    v.forget(&[FileKey {
        kind: FileKind::Secret,
        id: SecretId(1),
    }]);
    let e = v
        .materialize(TaskId(43), &[fref(1, "pw", "/run/secrets/pw", 0o444)], &[])
        .unwrap_err();
    assert!(matches!(e, VaultError::NotHeld { .. }), "{e}");
    v.close();
    assert!(!v.root().exists(), "closing removes the node's directory");
}

#[test]
fn a_refused_task_leaves_nothing_behind() {
    let base = Base::new("refuse");
    let mut v = Vault::open(&base.0, NodeId(8));
    v.hold(vec![material(FileKind::Secret, 1, "a", "x")])
        .unwrap();
    let task = TaskId(1);
    // The second ref is not held: nothing of the first stays either.
    let e = v
        .materialize(
            task,
            &[
                fref(1, "a", "/run/secrets/a", 0o444),
                fref(9, "missing", "/run/secrets/b", 0o444),
            ],
            &[],
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "secret missing is not on this node (its data did not come with the assignment)"
    );
    // Two targets with one file name cannot both be named in one directory.
    let e = v
        .materialize(
            task,
            &[
                fref(1, "a", "/run/secrets/a", 0o444),
                fref(1, "a", "/etc/a", 0o444),
            ],
            &[],
        )
        .unwrap_err();
    assert!(matches!(e, VaultError::BadTarget { .. }), "{e}");
    for bad in ["relative", "/run/secrets/../x", "/run//x", "/"] {
        let e = v
            .materialize(task, &[fref(1, "a", bad, 0o444)], &[])
            .unwrap_err();
        assert!(matches!(e, VaultError::BadTarget { .. }), "{bad}: {e}");
    }
    let left = std::fs::read_dir(v.root()).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no task directory was left");
    assert!(v.tasks().next().is_none());
}

#[test]
fn held_material_is_bounded() {
    let base = Base::new("bounds");
    let mut v = Vault::open(&base.0, NodeId(9));
    let many: Vec<FileMaterial> = (0..HELD_FILES_MAX as u128 + 1)
        .map(|i| material(FileKind::Config, i, "c", "x"))
        .collect();
    assert_eq!(v.hold(many), Err(VaultError::TooManyFiles));
    assert!(v.holds(&FileKey {
        kind: FileKind::Config,
        id: SecretId(0)
    }));
    assert!(!v.holds(&FileKey {
        kind: FileKind::Config,
        id: SecretId(HELD_FILES_MAX as u128)
    }));
    // Replacing one that is held takes no new room.
    v.hold(vec![material(FileKind::Config, 0, "c", "y")])
        .unwrap();

    let mut v = Vault::open(&base.0, NodeId(10));
    let big = "x".repeat(HELD_BYTES_MAX / 2 + 1);
    v.hold(vec![material(FileKind::Secret, 1, "a", &big)])
        .unwrap();
    assert_eq!(
        v.hold(vec![material(FileKind::Secret, 2, "b", &big)]),
        Err(VaultError::TooManyBytes)
    );
}

#[test]
fn a_vault_off_tmpfs_refuses_every_task_with_files() {
    // The build directory is on disk.
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(format!("vault-not-tmpfs-{}", std::process::id()));
    if is_tmpfs(base.parent().unwrap()) {
        eprintln!("the build directory is on tmpfs: nothing to check here");
        return;
    }
    let mut v = Vault::open(&base, NodeId(11));
    v.hold(vec![material(FileKind::Secret, 1, "a", MARKER)])
        .unwrap();
    let e = v
        .materialize(TaskId(1), &[fref(1, "a", "/run/secrets/a", 0o444)], &[])
        .unwrap_err();
    assert!(matches!(e, VaultError::NotTmpfs(_)), "{e}");
    assert!(e.to_string().contains("is not on a tmpfs"));
    // A task without files does not need the vault.
    assert_eq!(v.materialize(TaskId(2), &[], &[]), Ok(Vec::new()));
    let _ = std::fs::remove_dir_all(&base); // nothing was written in it
}

#[tokio::test]
async fn the_actor_answers_list_without_data_and_cleans_up_when_it_stops() {
    let base = Base::new("actor");
    let registry = Registry::new();
    let node = NodeId(12);
    let (vault, join) = spawn_vault(VaultArgs {
        node_id: node,
        base: base.0.clone(),
        registry: Some(registry.clone()),
    })
    .await
    .unwrap();
    vault.hold(vec![material(FileKind::Secret, 1, "pw", MARKER)]);
    let files = vault
        .materialize(
            TaskId(5),
            vec![fref(1, "pw", "/run/secrets/pw", 0o444)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&files[0].host_path).unwrap(),
        MARKER
    );
    let e = vault
        .materialize(
            TaskId(6),
            vec![fref(2, "other", "/run/secrets/o", 0o444)],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(e.contains("secret other is not on this node"), "{e}");

    let answer = registry
        .get(&vault_name(node))
        .unwrap()
        .call("List", Value::Null)
        .await
        .unwrap();
    let text = answer.to_string();
    assert!(text.contains("\"pw\"") && text.contains(&TaskId(5).to_string()));
    assert!(!text.contains(MARKER), "{text}");

    vault.release(TaskId(5));
    let list = vault.list().await.unwrap();
    assert!(list[0].tasks.is_empty());
    assert!(!files[0].host_path.exists());

    vault
        .materialize(
            TaskId(7),
            vec![fref(1, "pw", "/run/secrets/pw", 0o444)],
            vec![],
        )
        .await
        .unwrap();
    vault.actor().stop(None);
    join.await.unwrap();
    assert!(
        !base.0.join(node.to_string()).exists(),
        "stopping removes every file"
    );
    assert!(
        registry.get(&vault_name(node)).is_err(),
        "it leaves the registry"
    );
}
