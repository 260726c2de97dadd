//! Tests of a process task's entrypoint, working directory, host name and mounts (named
//! volumes, binds, tmpfs), and of removing a stack's volumes. Real processes (`sh`).

// Tests of the shells run in real time: they wait with sleeps, which clippy.toml refuses only
// to the deciding code.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use super::*;
use crate::model::{MountKind, NodeId, RuntimeKind, TaskId};
use crate::runtime::tests_support::{context, program, run_to_end};
use crate::runtime::{ProcessRuntime, RuntimeError, TaskContext, TaskRuntime, running_as_root};

const NS: &str = "com.docker.stack.namespace";

fn ctx(task: u128, script: &str) -> TaskContext {
    let spec = program(RuntimeKind::Process, "sh", &["-c", script]);
    context(TaskId(task), NodeId(78), "st_db", spec)
}

fn mount(kind: MountKind, source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        kind,
        source: source.into(),
        target: target.into(),
        read_only,
        volume_labels: BTreeMap::new(),
        tmpfs_size_bytes: 0,
    }
}

fn labelled(name: &str, target: &str, stack: &str) -> Mount {
    let mut m = mount(MountKind::Volume, name, target, false);
    m.volume_labels.insert(NS.into(), stack.into());
    m
}

/// Prepares `c`, runs it to its end and returns its exit code and output lines (`END` closes
/// them).
async fn run(rt: &ProcessRuntime, c: &TaskContext) -> (i32, Vec<String>) {
    rt.prepare(c).await.unwrap();
    run_to_end(rt, c).await
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn volume_names_are_docker_s_and_never_a_path() {
    tracing::info!("phase: Docker's volume names pass; paths, dot names and empty ones do not");
    for ok in ["db_data", "wp-stack_db.data", "a", "0x"] {
        assert!(valid_volume_name(ok), "{ok}");
    }
    let long = "a".repeat(VOLUME_NAME_BYTES_MAX + 1);
    for bad in ["", "../etc", "a/b", ".hidden", "-x", "a b", long.as_str()] {
        assert!(!valid_volume_name(bad), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entrypoint_runs_instead_of_image_in_its_workdir_with_its_hostname() {
    let data = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(data.path().join("tasks")).unwrap();
    let work = data.path().join("made/for/the/task");

    tracing::info!(
        "phase: IMAGE names no program, the entrypoint's first word is run with its other \
         words before the args; the missing workdir is made and entered"
    );
    let mut c = ctx(1, "pwd; hostname; echo \"H=$HOSTNAME\"; echo END");
    c.spec.image = "no-such-program-in-this-test".into();
    c.spec.entrypoint = vec!["sh".into(), "-e".into()];
    c.spec.workdir = Some(work.display().to_string());
    c.spec.hostname = Some("st-db-1".into());
    let (code, lines) = run(&rt, &c).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0], work.display().to_string());
    assert!(lines.contains(&"H=st-db-1".to_string()), "{lines:?}");
    if running_as_root() {
        tracing::info!("phase: as root, the task has a host name of its own; the host keeps its");
        assert_eq!(lines[1], "st-db-1");
        assert_ne!(host_name(), "st-db-1");
    } else {
        assert_eq!(
            lines[1],
            host_name(),
            "without root the hostname is not applied"
        );
    }
    rt.remove(c.task_id).await.unwrap();

    tracing::info!("phase: without an entrypoint a missing IMAGE is no such image");
    let mut missing = ctx(2, "true");
    missing.spec.image = "no-such-program-in-this-test".into();
    assert!(matches!(
        rt.prepare(&missing).await,
        Err(RuntimeError::NoSuchImage(p)) if p == "no-such-program-in-this-test"
    ));

    tracing::info!("phase: a bad hostname or a relative workdir is refused before anything runs");
    let mut bad = ctx(3, "true");
    bad.spec.hostname = Some("a/b".into());
    assert!(matches!(
        rt.start(&bad).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    let mut bad = ctx(4, "true");
    bad.spec.workdir = Some("relative/dir".into());
    assert!(matches!(
        rt.start(&bad).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_volumes_binds_and_tmpfs_show_at_their_targets_and_stack_rm_removes_volumes() {
    let data = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(data.path().join("tasks")).unwrap();
    let volumes = data.path().join("volumes");
    let host = tempfile::tempdir().unwrap();
    let shared = host.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello"), "from the host").unwrap();
    let root = host.path().join("targets");
    std::fs::create_dir(&root).unwrap();
    let (t_data, t_ro, t_tmp, t_anon) = (
        root.join("var/lib/db"),
        root.join("ro"),
        root.join("var/lib/db/cache"),
        root.join("scratch"),
    );
    let mut c = ctx(
        10,
        &format!(
            "echo kept > {data}/file; cat {ro}/hello; echo; \
             (echo x > {ro}/new) 2>/dev/null && echo RO-WRITABLE; \
             (dd if=/dev/zero of={tmp}/big bs=1024 count=2048) 2>/dev/null && echo TMPFS-UNBOUNDED; \
             rm -f {tmp}/big; echo y > {tmp}/small && echo TMPFS-OK; echo z > {anon}/f && echo ANON-OK; \
             pwd; echo END",
            data = t_data.display(),
            ro = t_ro.display(),
            tmp = t_tmp.display(),
            anon = t_anon.display(),
        ),
    );
    let mut tmpfs = mount(MountKind::Tmpfs, "", &t_tmp.display().to_string(), false);
    tmpfs.tmpfs_size_bytes = 1024 * 1024;
    c.spec.mounts = vec![
        // Given deepest first: the runtime mounts the shallowest first.
        tmpfs,
        labelled("st_db_data", &t_data.display().to_string(), "st"),
        mount(
            MountKind::Bind,
            &shared.display().to_string(),
            &t_ro.display().to_string(),
            true,
        ),
        mount(MountKind::Volume, "", &t_anon.display().to_string(), false),
    ];
    c.spec.workdir = Some(t_tmp.display().to_string());
    if !running_as_root() {
        tracing::info!("phase: without root a task with mounts is refused, with the reason");
        let e = rt.start(&c).await.unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root, and CI runs as root"
        );
        eprintln!("SKIPPED the rest: not root, so no mount namespace");
        return;
    }

    tracing::info!(
        "phase: the volume (made, labelled) is written through; the read-only bind is read, not \
         written; the tmpfs inside the volume holds 1 MiB only; the anonymous volume is \
         writable; the workdir is the tmpfs"
    );
    let other = labelled("other_data", "/unused", "other");
    let (code, lines) = run(&rt, &c).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        lines,
        [
            "from the host",
            "TMPFS-OK",
            "ANON-OK",
            &t_tmp.display().to_string(),
            "END"
        ],
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(volumes.join("st_db_data/file")).unwrap(),
        "kept\n"
    );
    let labels: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(volumes.join(".st_db_data.labels")).unwrap())
            .unwrap();
    assert_eq!(labels[NS], "st");
    assert!(
        !shared.join("new").exists(),
        "nothing written through the read-only bind"
    );
    assert!(
        std::fs::read_dir(&t_data).unwrap().next().is_none(),
        "the host's mount point stays empty: the data is in the volume"
    );

    tracing::info!("phase: another stack's volume, made by hand the way a task makes it");
    let vols = Volumes::new(volumes.clone());
    vols.take(TaskId(99), 0, &other).unwrap();
    vols.release(TaskId(99));

    tracing::info!("phase: while the task is not removed its volume is in use, and stays");
    let done = rt.remove_volumes(NS, "st").await.unwrap();
    assert_eq!(done.removed, Vec::<String>::new());
    assert_eq!(done.in_use, ["st_db_data"]);
    assert!(volumes.join("st_db_data/file").exists());

    tracing::info!(
        "phase: once it is removed, the stack's volume goes with its labels file; the other \
         stack's stays; the mount points made on the host and the anonymous volume go"
    );
    rt.remove(c.task_id).await.unwrap();
    assert!(!t_data.exists() && !t_ro.exists() && !root.join("var").exists());
    assert!(
        std::fs::read_dir(volumes.join(".anonymous"))
            .unwrap()
            .next()
            .is_none()
    );
    let done = rt.remove_volumes(NS, "st").await.unwrap();
    assert_eq!(done.removed, ["st_db_data"]);
    assert!(done.in_use.is_empty());
    assert!(!volumes.join("st_db_data").exists());
    assert!(!volumes.join(".st_db_data.labels").exists());
    assert!(volumes.join("other_data").is_dir());
    let again = rt.remove_volumes(NS, "st").await.unwrap();
    assert!(again.removed.is_empty(), "a second removal finds nothing");

    tracing::info!("phase: a volume name that is a path is refused, and nothing is made");
    let mut bad = ctx(11, "true");
    bad.spec.mounts = vec![labelled("../escape", "/mnt", "st")];
    assert!(matches!(
        rt.start(&bad).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(!data.path().join("escape").exists());
    tracing::info!("phase: a bind of a missing host path is refused");
    let mut bad = ctx(12, "true");
    bad.spec.mounts = vec![mount(MountKind::Bind, "/no/such/path/here", "/mnt", false)];
    assert!(matches!(
        rt.start(&bad).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}
