//! The container flags of `service create` and `service update`: `--entrypoint`,
//! `--workdir`, `--hostname`, `--mount` (`--mount-add`/`--mount-rm`) and
//! `--replicas-max-per-node`, with Docker's syntax. Parsing only: the node checks the result.

use clap::Args;
use swarm_actors::model::{Mount, MountKind, TaskSpec};

use super::update::{opt_flag, parse_label};
use crate::cmd::units::{parse_size_bytes, split_words};
use crate::control::proto::ServiceChange;

/// The flags `service create` and `service update` share, with one meaning in both: a value
/// sets the field, and "" sets it back to none.
#[derive(Args, Debug, Clone, Default)]
pub struct ContainerFlags {
    /// Replace the image's entrypoint, as one shell-quoted string ("": the image's own; process
    /// runtime: its first word is the program run instead of IMAGE).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// The tasks' working directory, absolute ("": none).
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The tasks' host name ("": none).
    #[arg(long)]
    pub hostname: Option<String>,
    /// At most this many tasks of the service on one node (0: no limit).
    #[arg(long)]
    pub replicas_max_per_node: Option<u64>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ContainerArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
    /// Attach a file system: type=volume|bind|tmpfs,source=…,target=…[,readonly]
    /// [,tmpfs-size=64M][,volume-label=k=v] (repeatable).
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mounts: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ContainerChangeArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
    /// Add a mount, as `create --mount`; one on the same target is replaced (repeatable).
    #[arg(long, value_name = "MOUNT")]
    pub mount_add: Vec<String>,
    /// Remove a mount by its target (repeatable). Removals go first.
    #[arg(long, value_name = "TARGET")]
    pub mount_rm: Vec<String>,
}

impl ContainerArgs {
    /// Sets the task spec's container fields from the flags.
    pub fn apply(&self, task: &mut TaskSpec) -> anyhow::Result<()> {
        let f = &self.flags;
        if let Some(e) = opt_flag("entrypoint", &f.entrypoint, split_words)? {
            task.entrypoint = e;
        }
        task.workdir = f.workdir.clone().filter(|w| !w.is_empty());
        task.hostname = f.hostname.clone().filter(|h| !h.is_empty());
        task.mounts = parse_mounts(&self.mounts)?;
        task.placement.max_replicas = f.replicas_max_per_node.unwrap_or(0);
        Ok(())
    }
}

impl ContainerChangeArgs {
    /// Sets the change's container fields from the flags.
    pub fn apply(&self, change: &mut ServiceChange) -> anyhow::Result<()> {
        let f = &self.flags;
        change.entrypoint = opt_flag("entrypoint", &f.entrypoint, split_words)?;
        change.workdir = f.workdir.clone();
        change.hostname = f.hostname.clone();
        change.mount_rm = self.mount_rm.clone();
        change.mount_add = parse_mounts(&self.mount_add)?;
        change.max_replicas = f.replicas_max_per_node;
        Ok(())
    }
}

fn parse_mounts(texts: &[String]) -> anyhow::Result<Vec<Mount>> {
    texts
        .iter()
        .map(|t| parse_mount(t).map_err(anyhow::Error::msg))
        .collect()
}

/// A `--mount` value, Docker's comma-separated fields: `type` (volume by default), `source`
/// (`src`), `target` (`destination`, `dst`), `readonly` (`ro`, bare or `=true|false|1|0`),
/// `tmpfs-size` and `volume-label=KEY=VALUE`.
pub fn parse_mount(text: &str) -> Result<Mount, String> {
    let mut m = Mount::default();
    let bad = |why: String| format!("invalid --mount {text:?}: {why}");
    for field in text.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = || bad(format!("{key} needs a value"));
        match key.as_str() {
            "type" => {
                m.kind = match value.ok_or_else(need)? {
                    "volume" => MountKind::Volume,
                    "bind" => MountKind::Bind,
                    "tmpfs" => MountKind::Tmpfs,
                    other => {
                        return Err(bad(format!(
                            "type {other:?} is not supported: volume, bind or tmpfs"
                        )));
                    }
                }
            }
            "source" | "src" => m.source = value.ok_or_else(need)?.to_string(),
            "target" | "destination" | "dst" => m.target = value.ok_or_else(need)?.to_string(),
            "readonly" | "ro" => {
                m.read_only = match value.map(|v| v.to_ascii_lowercase()).as_deref() {
                    None | Some("1") | Some("true") => true,
                    Some("0") | Some("false") => false,
                    Some(v) => return Err(bad(format!("readonly={v}: true or false"))),
                }
            }
            "tmpfs-size" => m.tmpfs_size_bytes = parse_size_bytes(value.ok_or_else(need)?)?,
            "volume-label" => {
                let (k, v) = parse_label(value.ok_or_else(need)?);
                m.volume_labels.insert(k, v);
            }
            other => {
                return Err(bad(format!(
                    "unknown field {other:?}: type, source, target, readonly, tmpfs-size or volume-label"
                )));
            }
        }
    }
    if m.target.is_empty() {
        return Err(bad("target is required".into()));
    }
    Ok(m)
}

/// Docker's `ContainerSpec.Mounts[]` in `service inspect`'s JSON.
pub fn mounts_json(mounts: &[Mount]) -> serde_json::Value {
    mounts
        .iter()
        .map(|m| {
            let mut o = serde_json::json!({
                "Type": m.kind.as_str(),
                "Source": m.source,
                "Target": m.target,
            });
            if m.read_only {
                o["ReadOnly"] = true.into();
            }
            if m.kind == MountKind::Volume && !m.volume_labels.is_empty() {
                o["VolumeOptions"] = serde_json::json!({ "Labels": m.volume_labels });
            }
            if m.kind == MountKind::Tmpfs && m.tmpfs_size_bytes != 0 {
                o["TmpfsOptions"] = serde_json::json!({ "SizeBytes": m.tmpfs_size_bytes });
            }
            o
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_with_dockers_fields() {
        let m = parse_mount("type=bind,source=/srv/www,target=/usr/share/www,readonly").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str(), m.read_only),
            (MountKind::Bind, "/srv/www", "/usr/share/www", true)
        );
        let m = parse_mount("src=data,dst=/data,ro=false,volume-label=a=b").unwrap();
        assert_eq!(m.kind, MountKind::Volume);
        assert!(!m.read_only);
        assert_eq!(m.volume_labels.get("a").map(String::as_str), Some("b"));
        let m = parse_mount("type=tmpfs,target=/tmp,tmpfs-size=64M").unwrap();
        assert_eq!((m.kind, m.tmpfs_size_bytes), (MountKind::Tmpfs, 64 << 20));
        for (bad, words) in [
            ("type=npipe,target=/x", "not supported"),
            ("source=data", "target is required"),
            ("target=/x,colour=red", "unknown field"),
            ("target=/x,readonly=maybe", "true or false"),
            ("type=tmpfs,target=/t,tmpfs-size=lots", "invalid size"),
            ("type,target=/x", "needs a value"),
        ] {
            let err = parse_mount(bad).expect_err(bad);
            assert!(err.contains(words), "{bad}: {err}");
        }
    }

    #[test]
    fn inspect_shows_mounts_as_docker_does() {
        let mut m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1k,ro").unwrap();
        let json = mounts_json(std::slice::from_ref(&m));
        assert_eq!(
            json,
            serde_json::json!([{"Type": "tmpfs", "Source": "", "Target": "/t",
                "ReadOnly": true, "TmpfsOptions": {"SizeBytes": 1024}}])
        );
        m = parse_mount("source=v,target=/d,volume-label=k=v").unwrap();
        let json = mounts_json(&[m]);
        assert_eq!(json[0]["VolumeOptions"]["Labels"]["k"], "v");
        assert!(json[0].get("ReadOnly").is_none());
    }

    #[test]
    fn create_and_update_flags_set_the_container_fields() {
        use clap::Parser;
        #[derive(Parser)]
        struct Create {
            #[command(flatten)]
            a: ContainerArgs,
        }
        #[derive(Parser)]
        struct Update {
            #[command(flatten)]
            a: ContainerChangeArgs,
        }
        let c = Create::try_parse_from([
            "create",
            "--entrypoint",
            "/bin/sh -c 'echo hi'",
            "-w",
            "/srv",
            "--hostname",
            "web1",
            "--mount",
            "type=tmpfs,target=/tmp",
            "--mount",
            "source=data,target=/data",
            "--replicas-max-per-node",
            "2",
        ])
        .unwrap();
        let mut task = TaskSpec::default();
        c.a.apply(&mut task).unwrap();
        assert_eq!(task.entrypoint, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(task.workdir.as_deref(), Some("/srv"));
        assert_eq!(task.hostname.as_deref(), Some("web1"));
        assert_eq!(task.mounts.len(), 2);
        assert_eq!(task.placement.max_replicas, 2);
        let bad = Create::try_parse_from(["create", "--mount", "target=/x,bogus=1"]).unwrap();
        assert!(bad.a.apply(&mut TaskSpec::default()).is_err());

        let u = Update::try_parse_from([
            "update",
            "--entrypoint",
            "",
            "--mount-rm",
            "/data",
            "--mount-add",
            "type=bind,source=/etc,target=/etc,ro",
            "--replicas-max-per-node",
            "0",
        ])
        .unwrap();
        let mut change = ServiceChange::default();
        u.a.apply(&mut change).unwrap();
        assert_eq!(change.entrypoint, Some(Vec::new()), "\"\" clears it");
        assert_eq!(change.mount_rm, ["/data"]);
        assert!(change.mount_add[0].read_only);
        assert_eq!(change.max_replicas, Some(0));
        assert_eq!((change.workdir, change.hostname), (None, None));
    }
}
