//! The node's side of the `secret` and `config` commands, and the resolution of the refs a
//! service spec makes to them.
//!
//! A secret or config is one [`Secret`] object, stored under its kind ([`Kind::Secret`] or
//! [`Kind::Config`]) and its NAME, so that `Expect::Absent` makes names unique in one atomic
//! write (as services are); its random [`SecretId`] is what service specs and nodes name it by.
//!
//! Data comes in with `create` and never goes out through the control API for a secret:
//! every answer is built from [`doc`], which leaves a secret's data out (asserted). A config's
//! data can be read back with `config inspect`, as Docker allows.
//!
//! Bounds: at most [`FILES_MAX`] secrets and configs together, [`FILES_BYTES_MAX`] bytes of
//! their data together, so that the store's snapshot (which holds them all, next to services,
//! tasks and nodes) stays well inside `store::SNAPSHOT_BYTES_MAX` (63 MiB); at most
//! [`SECRET_LABELS_MAX`] labels each, so that a list of all of them fits one control frame.
//!
//! A service's refs are checked at `service create` and `update`: a ref to a missing secret is
//! refused and nothing is written. `secret rm` is refused while a service's current spec refers
//! to it. The two checks read and then write without a lock spanning both, so a `service
//! create` racing a `secret rm` of the secret it names can both succeed (a rare race across two
//! requests in flight at once): the service's tasks then cannot get the file, which the leader
//! cannot send (see the leader's session answer).

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::{
    CONFIG_BYTES_MAX, FileKind, FileRef, LABELS_MAX, Secret, SecretBytes, SecretId, ServiceSpec,
    validate_label, validate_secret_data, validate_secret_name,
};
use swarm_actors::node::admission;
use swarm_actors::replica::StoreHandle;
use swarm_actors::store::{
    COMMAND_BYTES_MAX, Expect, Kind, ObjectBody, Op, SNAPSHOT_BYTES_MAX, StoreCommand, StoredObject,
};
use swarm_actors::wire::FRAME_BYTES_MAX;
use tokio::sync::Mutex;

use super::cas::{self, Failed};
use super::context::ControlContext;
use super::proto::SecretDoc;
use super::reads::{manager_store, resolve_named, services};

/// Most secrets and configs in the store, together.
pub const FILES_MAX: usize = 1_000;
/// Most bytes of data of all secrets and configs together. The snapshot holds them all; 32 MiB
/// leaves 31 MiB of `SNAPSHOT_BYTES_MAX` (63 MiB) to everything else. Creates on one node are serialized,
/// so the bound can be passed only by creates on several managers at the same instant, by at
/// most one object's data each.
pub const FILES_BYTES_MAX: usize = 32 << 20;
/// Most labels of one secret or config: `ls` answers every one of [`FILES_MAX`] with its
/// labels (each at most `LABEL_BYTES_MAX`, 256 bytes) in one control frame.
pub const SECRET_LABELS_MAX: usize = 8;
/// Most bytes of config data in one `config inspect` answer, so that it fits a control frame
/// (4 MiB); asking for more at once is refused with a hint to ask for fewer. An inspect names
/// at most [`FILES_MAX`], so that its metadata fits as `ls`'s does.
pub const INSPECT_DATA_BYTES_MAX: usize = 3 << 20;

const _: () = assert!(SECRET_LABELS_MAX <= LABELS_MAX);
// 31 MiB of the snapshot left for everything else, with room for concurrent creates.
const _: () = assert!(FILES_BYTES_MAX + (30 << 20) < SNAPSHOT_BYTES_MAX);
// The largest object is one store command; the largest inspect answer one control frame.
const _: () = assert!(CONFIG_BYTES_MAX + 4096 < COMMAND_BYTES_MAX);
const _: () = assert!(INSPECT_DATA_BYTES_MAX + CONFIG_BYTES_MAX < FRAME_BYTES_MAX);

/// Serializes this node's creates, so that the total bound is checked against a store that no
/// other create of this node is about to change.
static CREATES: Mutex<()> = Mutex::const_new(());

/// The store kind a file kind lives under.
pub fn store_kind(kind: FileKind) -> Kind {
    match kind {
        FileKind::Secret => Kind::Secret,
        FileKind::Config => Kind::Config,
    }
}

/// A stored secret or config with the version its next write compares against.
pub struct Found {
    pub secret: Secret,
    pub obj: StoredObject,
}

/// A linearizable read; without a leader to confirm it, the local replica's view.
async fn files(store: &StoreHandle, kind: FileKind) -> Result<Vec<Found>, String> {
    let k = store_kind(kind);
    let objects = match store.read(k, true).await {
        Ok(r) => r.objects,
        Err(_) => store
            .read(k, false)
            .await
            .map(|r| r.objects)
            .map_err(|e| e.to_string())?,
    };
    Ok(objects
        .into_iter()
        .filter_map(|obj| match &obj.body {
            ObjectBody::Secret(s) if s.kind == kind => Some(Found {
                secret: s.clone(),
                obj,
            }),
            _ => None,
        })
        .collect())
}

/// Finds a secret or config by name, full ID, or unique ID prefix (Docker's order).
pub fn resolve(kind: FileKind, found: Vec<Found>, name: &str) -> Result<Found, String> {
    resolve_named(kind.as_str(), found, name, |f| {
        (f.secret.name.as_str(), f.secret.id.to_string())
    })
}

/// What the control API shows of a stored secret or config. The data only for a config and
/// only when `with_data`: never a secret's.
pub fn doc(f: &Found, with_data: bool) -> SecretDoc {
    let s = &f.secret;
    let data = (with_data && s.kind == FileKind::Config).then(|| s.data.expose().to_vec());
    assert!(
        s.kind == FileKind::Config || data.is_none(),
        "a secret's data never leaves through the control API"
    );
    SecretDoc {
        id: s.id.to_string(),
        kind: s.kind,
        name: s.name.clone(),
        labels: s.labels.clone(),
        version: f.obj.version,
        created_ms: f.obj.created_ms,
        updated_ms: f.obj.updated_ms,
        data,
    }
}

/// The checks of a create, before anything is read: name, labels, data.
pub fn validate_create(
    kind: FileKind,
    name: &str,
    labels: &[(String, String)],
    data: &[u8],
) -> Result<BTreeMap<String, String>, String> {
    validate_secret_name(kind, name)?;
    let labels: BTreeMap<String, String> = labels.iter().cloned().collect();
    if labels.len() > SECRET_LABELS_MAX {
        return Err(format!(
            "a {} may carry at most {SECRET_LABELS_MAX} labels",
            kind.as_str()
        ));
    }
    for (k, v) in &labels {
        validate_label(k, v).map_err(|e| e.to_string())?;
    }
    validate_secret_data(kind, data)?;
    Ok(labels)
}

/// `secret create` / `config create`: the new object's ID.
pub async fn create(
    ctx: &ControlContext,
    kind: FileKind,
    name: &str,
    labels: &[(String, String)],
    data: SecretBytes,
) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    let labels = validate_create(kind, name, labels, data.expose())?;
    let what = kind.as_str();
    let _one_at_a_time = CREATES.lock().await;
    let mut all = files(&store, FileKind::Secret).await?;
    all.extend(files(&store, FileKind::Config).await?);
    if all
        .iter()
        .any(|f| f.secret.kind == kind && f.secret.name == name)
    {
        return Err(format!("{what} {name} already exists"));
    }
    if all.len() >= FILES_MAX {
        return Err(format!(
            "the cluster holds {} secrets and configs, the most it keeps: remove some first",
            all.len()
        ));
    }
    let held: usize = all.iter().map(|f| f.secret.data.len()).sum();
    if held + data.len() > FILES_BYTES_MAX {
        return Err(format!(
            "the cluster holds {held} bytes of secrets and configs; {} more would pass the limit of {FILES_BYTES_MAX} bytes: remove some first",
            data.len()
        ));
    }
    let id = loop {
        let id = SecretId(rand::random());
        if id != SecretId::UNKNOWN {
            break id;
        }
    };
    let secret = Secret {
        id,
        kind,
        name: name.to_string(),
        labels,
        data,
    };
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Put {
            kind: store_kind(kind),
            id: name.to_string(),
            expect: Expect::Absent,
            body: ObjectBody::Secret(secret),
        }],
    };
    if let Err(e) = store.propose(cmd).await {
        // A create of the same name on another manager may have won the race.
        return match files(&store, kind).await.map(|f| resolve(kind, f, name)) {
            Ok(Ok(f)) if f.secret.id != id && f.secret.name == name => {
                Err(format!("{what} {name} already exists"))
            }
            _ => Err(e.to_string()),
        };
    }
    Ok(id.to_string())
}

pub async fn list(ctx: &ControlContext, kind: FileKind) -> Result<Vec<SecretDoc>, String> {
    let store = manager_store(ctx).await?;
    let mut docs: Vec<SecretDoc> = files(&store, kind)
        .await?
        .iter()
        .map(|f| doc(f, false))
        .collect();
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(docs)
}

pub async fn inspect(
    ctx: &ControlContext,
    kind: FileKind,
    names: &[String],
) -> Result<Vec<SecretDoc>, String> {
    if names.len() > FILES_MAX {
        return Err(format!(
            "at most {FILES_MAX} {}s in one inspect (there are never more)",
            kind.as_str()
        ));
    }
    let store = manager_store(ctx).await?;
    let all = files(&store, kind).await?;
    let mut out = Vec::new();
    let mut data_bytes = 0;
    for name in names {
        // Resolved against a fresh copy each time: `resolve` takes its list.
        let found: Vec<Found> = all
            .iter()
            .map(|f| Found {
                secret: f.secret.clone(),
                obj: f.obj.clone(),
            })
            .collect();
        let d = doc(&resolve(kind, found, name)?, true);
        data_bytes += d.data.as_ref().map_or(0, Vec::len);
        if data_bytes > INSPECT_DATA_BYTES_MAX {
            return Err(format!(
                "these {}s hold more than {INSPECT_DATA_BYTES_MAX} bytes together: inspect fewer at once",
                kind.as_str()
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// The services whose current spec refers to the secret or config `id`, by name, sorted.
fn users(kind: FileKind, id: SecretId, specs: &[(String, &ServiceSpec)]) -> Vec<String> {
    let users: BTreeSet<&str> = specs
        .iter()
        .filter(|(_, spec)| {
            let refs = match kind {
                FileKind::Secret => &spec.task.secrets,
                FileKind::Config => &spec.task.configs,
            };
            refs.iter().any(|r| r.id == id)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    users.into_iter().map(str::to_string).collect()
}

/// `secret rm` / `config rm`: refused while a service's current spec uses it (Docker checks
/// only the current spec, so that `--secret-rm` then `secret rm` rotates a secret out; a
/// rollback to a spec naming a removed one is refused by `service rollback`).
pub async fn remove(ctx: &ControlContext, kind: FileKind, name: &str) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    cas::retrying(|| remove_once(&store, kind, name)).await
}

async fn remove_once(store: &StoreHandle, kind: FileKind, name: &str) -> Result<String, Failed> {
    let found = resolve(kind, files(store, kind).await?, name)?;
    let services = services(store).await?;
    let specs: Vec<(String, &ServiceSpec)> = services
        .iter()
        .map(|f| (f.obj.id.clone(), &f.service.spec))
        .collect();
    let users = users(kind, found.secret.id, &specs);
    if !users.is_empty() {
        return Err(format!(
            "{} '{}' is in use by the following service(s): {}",
            kind.as_str(),
            found.secret.name,
            users.join(", ")
        )
        .into());
    }
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Delete {
            kind: store_kind(kind),
            id: found.obj.id.clone(),
            expect: Expect::Version(found.obj.version),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    Ok(name.to_string())
}

/// `secret update` / `config update`: the additions, then the removals (a removed key that
/// is not there is an error); the data never changes (Docker's rule: a new value is a new
/// secret, rolled in with `--secret-rm` and `--secret-add`).
pub async fn update_labels(
    ctx: &ControlContext,
    kind: FileKind,
    name: &str,
    label_add: &[(String, String)],
    label_rm: &[String],
) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    cas::retrying(|| update_labels_once(&store, kind, name, label_add, label_rm)).await
}

/// `stack deploy` of a secret or config: made when missing, else left as it is when its data
/// is the same (its labels set to `labels` when they differ). Different data is refused:
/// secrets and configs are immutable. The object's ID, and whether anything was written.
pub async fn deploy(
    ctx: &ControlContext,
    kind: FileKind,
    name: &str,
    labels: &[(String, String)],
    data: SecretBytes,
) -> Result<(String, bool), String> {
    let store = manager_store(ctx).await?;
    let wanted = validate_create(kind, name, labels, data.expose())?;
    let existing = files(&store, kind)
        .await?
        .into_iter()
        .find(|f| f.secret.name == name);
    let Some(found) = existing else {
        return create(ctx, kind, name, labels, data)
            .await
            .map(|id| (id, true));
    };
    let id = found.secret.id.to_string();
    match redeploy(&found.secret, &wanted, data.expose())? {
        None => Ok((id, false)),
        Some((add, rm)) => update_labels(ctx, kind, name, &add, &rm)
            .await
            .map(|id| (id, true)),
    }
}

/// Labels to set, and label keys to remove.
pub type LabelChange = (Vec<(String, String)>, Vec<String>);

/// What a deploy over the stored `secret` changes: nothing (`None`), or its labels (the ones
/// to set and the keys to remove); an error when the data differs, in Docker's words.
pub fn redeploy(
    secret: &Secret,
    wanted: &BTreeMap<String, String>,
    data: &[u8],
) -> Result<Option<LabelChange>, String> {
    if secret.data.expose() != data {
        return Err(format!(
            "failed to update {what} {name}: only updates to Labels are allowed ({what}s are immutable: give the new data a new name)",
            what = secret.kind.as_str(),
            name = secret.name
        ));
    }
    if secret.labels == *wanted {
        return Ok(None);
    }
    let add = wanted
        .iter()
        .filter(|(k, v)| secret.labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let rm = (secret.labels.keys())
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    Ok(Some((add, rm)))
}

/// The labels `labels` become with `add` then `rm`, checked as a create checks them.
pub fn changed_labels(
    kind: FileKind,
    labels: &BTreeMap<String, String>,
    add: &[(String, String)],
    rm: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let mut labels = labels.clone();
    for (k, v) in add {
        validate_label(k, v).map_err(|e| e.to_string())?;
        labels.insert(k.clone(), v.clone());
    }
    for k in rm {
        if labels.remove(k).is_none() {
            return Err(format!("label {k} does not exist on the {}", kind.as_str()));
        }
    }
    if labels.len() > SECRET_LABELS_MAX {
        return Err(format!(
            "a {} may carry at most {SECRET_LABELS_MAX} labels",
            kind.as_str()
        ));
    }
    Ok(labels)
}

async fn update_labels_once(
    store: &StoreHandle,
    kind: FileKind,
    name: &str,
    add: &[(String, String)],
    rm: &[String],
) -> Result<String, Failed> {
    let found = resolve(kind, files(store, kind).await?, name)?;
    let mut secret = found.secret;
    secret.labels = changed_labels(kind, &secret.labels, add, rm)?;
    let id = secret.id.to_string();
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Put {
            kind: store_kind(kind),
            id: found.obj.id.clone(),
            expect: Expect::Version(found.obj.version),
            body: ObjectBody::Secret(secret),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    Ok(id)
}

/// The names and IDs of every secret and config: what refs are resolved against.
#[derive(Clone, Debug, Default)]
pub struct FileIndex {
    by_name: BTreeMap<(FileKind, String), SecretId>,
}

impl FileIndex {
    pub fn new(entries: impl IntoIterator<Item = (FileKind, String, SecretId)>) -> FileIndex {
        FileIndex {
            by_name: entries
                .into_iter()
                .map(|(k, name, id)| ((k, name), id))
                .collect(),
        }
    }

    pub async fn read(store: &StoreHandle) -> Result<FileIndex, String> {
        let mut all = files(store, FileKind::Secret).await?;
        all.extend(files(store, FileKind::Config).await?);
        Ok(FileIndex::new(all.into_iter().map(|f| {
            let s = f.secret;
            (s.kind, s.name, s.id)
        })))
    }

    /// The ID of the secret or config named `name`.
    fn id(&self, kind: FileKind, name: &str) -> Result<SecretId, String> {
        self.by_name
            .get(&(kind, name.to_string()))
            .copied()
            .ok_or_else(|| {
                format!(
                    "{0} {name} not found: create it first with `swarm-node {0} create`",
                    kind.as_str()
                )
            })
    }

    /// Refs as a client sent them (`source` name, target as given): each gets the ID of the
    /// secret or config of its name and its target resolved to an absolute path. A missing
    /// one is an error.
    pub fn resolve_refs(&self, kind: FileKind, refs: &mut [FileRef]) -> Result<(), String> {
        for r in refs {
            r.id = self.id(kind, &r.name)?;
            r.target = kind.target_path(&r.name, &r.target);
        }
        Ok(())
    }

    /// Whether every ref of `spec` still names an existing secret or config (by ID): the
    /// first one that does not, as an error.
    pub fn check_exist(&self, spec: &ServiceSpec) -> Result<(), String> {
        let ids: BTreeSet<(FileKind, SecretId)> =
            self.by_name.iter().map(|((k, _), id)| (*k, *id)).collect();
        let all = spec
            .task
            .secrets
            .iter()
            .map(|r| (FileKind::Secret, r))
            .chain(spec.task.configs.iter().map(|r| (FileKind::Config, r)));
        for (kind, r) in all {
            if !ids.contains(&(kind, r.id)) {
                return Err(format!(
                    "{} {} (ID {}) no longer exists",
                    kind.as_str(),
                    r.name,
                    r.id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{
        ControlResponse, LogEntry, NodeInfo, ProgressView, ServiceDoc, ServiceInfo, TaskRow,
    };
    use crate::control::service::tests::stored as stored_service;

    const MARKER: &[u8] = b"MARKER-5ec4e7-do-not-leak";

    fn stored(kind: FileKind, name: &str, id: u128, data: &[u8]) -> Found {
        let secret = Secret {
            id: SecretId(id),
            kind,
            name: name.into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
            data: SecretBytes::new(data.to_vec()),
        };
        Found {
            obj: StoredObject {
                kind: store_kind(kind),
                id: name.into(),
                version: 4,
                created_ms: 10,
                updated_ms: 20,
                body: ObjectBody::Secret(secret.clone()),
            },
            secret,
        }
    }

    fn file_ref(id: u128, name: &str, target: &str) -> FileRef {
        FileRef {
            id: SecretId(id),
            name: name.into(),
            target: target.into(),
            uid: 0,
            gid: 0,
            mode: FileRef::DEFAULT_MODE,
        }
    }

    /// Every answer the control API has, built around one secret whose data is `data`, and
    /// encoded as the control socket sends them (bincode) and as JSON.
    fn encoded_answers(kind: FileKind, data: &[u8]) -> Vec<Vec<u8>> {
        let f = stored(kind, "pw", 9, data);
        let mut service = stored_service("db", 7).service;
        service.spec.task.secrets = vec![file_ref(9, "pw", "/run/secrets/pw")];
        service.spec.task.configs = vec![file_ref(9, "pw", "/pw")];
        let answers = vec![
            ControlResponse::Secrets(vec![doc(&f, false), doc(&f, true)]),
            ControlResponse::ServiceDocs(vec![ServiceDoc {
                version: 1,
                created_ms: 0,
                updated_ms: 0,
                service,
                networks: Vec::new(),
            }]),
            ControlResponse::Done(f.secret.id.to_string()),
            ControlResponse::Applied {
                id: f.secret.id.to_string(),
                changed: false,
            },
            ControlResponse::Error(format!(
                "{} '{}' is in use by the following service(s): db",
                kind.as_str(),
                f.secret.name
            )),
            ControlResponse::Nodes {
                nodes: Vec::<NodeInfo>::new(),
                stale: false,
            },
            ControlResponse::Services(Vec::<ServiceInfo>::new()),
            ControlResponse::Tasks(Vec::<TaskRow>::new()),
            ControlResponse::Progress(ProgressView {
                id: String::new(),
                global: false,
                spec_version: 1,
                monitor_ms: 0,
                slots: Vec::new(),
                update_status: None,
                old_live: 0,
            }),
            ControlResponse::Logs {
                lines: Vec::<LogEntry>::new(),
                unreachable: Vec::new(),
            },
            ControlResponse::Actors(Vec::new()),
            ControlResponse::Reply(String::new()),
        ];
        let mut out = Vec::new();
        for a in answers {
            out.push(bincode::serde::encode_to_vec(&a, bincode::config::standard()).unwrap());
            out.push(serde_json::to_vec(&a).unwrap());
            out.push(format!("{a:?}").into_bytes());
        }
        out
    }

    fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn no_answer_carries_a_secrets_data() {
        for bytes in encoded_answers(FileKind::Secret, MARKER) {
            assert!(
                !holds(&bytes, MARKER),
                "a control answer carries a secret's data: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // The check can fail: a config's data is in `config inspect`'s answer.
        let config = encoded_answers(FileKind::Config, MARKER);
        assert!(config.iter().any(|b| holds(b, MARKER)));
    }

    #[test]
    fn resolves_by_name_id_and_unique_prefix() {
        let k = FileKind::Secret;
        let all = || {
            vec![
                stored(k, "a", 1 << 100, b"x"),
                stored(k, "b", (1 << 100) + 1, b"y"),
            ]
        };
        let id = SecretId(1 << 100).to_string();
        assert_eq!(resolve(k, all(), "a").unwrap().secret.name, "a");
        assert_eq!(resolve(k, all(), &id).unwrap().secret.name, "a");
        let e = resolve(k, all(), &id[..id.len() - 1]).err().unwrap();
        assert!(e.contains("ambiguous"), "{e}");
        let e = resolve(k, all(), "c").err().unwrap();
        assert_eq!(e, "secret c not found");
        let e = resolve(FileKind::Config, Vec::new(), "c").err().unwrap();
        assert_eq!(e, "config c not found");
    }

    #[test]
    fn users_are_the_services_whose_current_spec_names_it() {
        let mut a = stored_service("web", 1).service.spec;
        let mut b = stored_service("api", 2).service.spec;
        let c = stored_service("idle", 3).service.spec;
        a.task.secrets = vec![file_ref(9, "pw", "/run/secrets/pw")];
        b.task.secrets = vec![file_ref(9, "pw", "/run/secrets/other")];
        b.task.configs = vec![file_ref(8, "conf", "/conf")];
        let specs = vec![
            ("web".to_string(), &a),
            ("api".to_string(), &b),
            ("idle".to_string(), &c),
        ];
        assert_eq!(users(FileKind::Secret, SecretId(9), &specs), ["api", "web"]);
        assert_eq!(users(FileKind::Config, SecretId(8), &specs), ["api"]);
        assert!(users(FileKind::Config, SecretId(9), &specs).is_empty());
        assert!(users(FileKind::Secret, SecretId(7), &specs).is_empty());
    }

    #[test]
    fn refs_resolve_to_ids_and_targets_or_are_refused() {
        let index = FileIndex::new([
            (FileKind::Secret, "pw".to_string(), SecretId(9)),
            (FileKind::Config, "conf".to_string(), SecretId(8)),
        ]);
        let mut refs = vec![file_ref(0, "pw", ""), file_ref(0, "pw", "db_password")];
        index.resolve_refs(FileKind::Secret, &mut refs).unwrap();
        assert!(refs.iter().all(|r| r.id == SecretId(9)));
        assert_eq!(refs[0].target, "/run/secrets/pw");
        assert_eq!(refs[1].target, "/run/secrets/db_password");
        let mut refs = vec![file_ref(0, "conf", "")];
        index.resolve_refs(FileKind::Config, &mut refs).unwrap();
        assert_eq!(
            (refs[0].id, refs[0].target.as_str()),
            (SecretId(8), "/conf")
        );
        // A config's name is not a secret's.
        let mut refs = vec![file_ref(0, "conf", "")];
        let e = index.resolve_refs(FileKind::Secret, &mut refs).unwrap_err();
        assert!(e.starts_with("secret conf not found"), "{e}");

        let mut spec = stored_service("db", 1).service.spec;
        spec.task.secrets = vec![file_ref(9, "pw", "/run/secrets/pw")];
        assert_eq!(index.check_exist(&spec), Ok(()));
        spec.task.configs = vec![file_ref(9, "pw", "/pw")];
        let e = index.check_exist(&spec).unwrap_err();
        assert!(e.starts_with("config pw (ID"), "{e}");
    }

    #[test]
    fn updates_change_labels_only_within_the_rules() {
        let k = FileKind::Secret;
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let new = changed_labels(k, &labels, &[kv("b", "2"), kv("a", "9")], &[]).unwrap();
        assert_eq!(new, [kv("a", "9"), kv("b", "2")].into());
        let new = changed_labels(k, &labels, &[], &["a".into()]).unwrap();
        assert!(new.is_empty());
        let e = changed_labels(k, &labels, &[], &["zz".into()]).unwrap_err();
        assert_eq!(e, "label zz does not exist on the secret");
        let e = changed_labels(k, &labels, &[kv("a b", "")], &[]).unwrap_err();
        assert!(e.contains("label key"), "{e}");
        let many: Vec<_> = (0..SECRET_LABELS_MAX)
            .map(|i| kv(&format!("k{i}"), ""))
            .collect();
        let e = changed_labels(k, &labels, &many, &[]).unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn creates_check_name_labels_and_size() {
        let k = FileKind::Secret;
        let label = |i: usize| (format!("k{i}"), "v".to_string());
        assert!(validate_create(k, "pw", &[label(1)], b"x").is_ok());
        let e = validate_create(k, "-pw", &[], b"x").unwrap_err();
        assert!(e.contains("invalid secret name"), "{e}");
        let many: Vec<_> = (0..=SECRET_LABELS_MAX).map(label).collect();
        let e = validate_create(k, "pw", &many, b"x").unwrap_err();
        assert!(e.contains("at most"), "{e}");
        let e = validate_create(k, "pw", &[("a b".into(), "v".into())], b"x").unwrap_err();
        assert!(e.contains("label key"), "{e}");
        let e = validate_create(k, "pw", &[], b"").unwrap_err();
        assert!(e.contains("must not be empty"), "{e}");
        let big = vec![0; k.bytes_max() + 1];
        assert!(validate_create(k, "pw", &[], &big).is_err());
        assert!(validate_create(FileKind::Config, "pw", &[], &big).is_ok());
    }

    #[test]
    fn a_list_of_every_secret_fits_an_ls_answer() {
        use swarm_actors::model::LABEL_BYTES_MAX;
        use swarm_actors::wire::FRAME_BYTES_MAX;
        // An `ls` row: ID, kind, name, labels, three numbers, no data.
        let row = 25 + 1 + 64 + SECRET_LABELS_MAX * (LABEL_BYTES_MAX + 4) + 3 * 10 + 1;
        assert!(FILES_MAX * row < FRAME_BYTES_MAX, "{}", FILES_MAX * row);
    }

    #[test]
    fn a_redeploy_keeps_the_data_and_may_change_only_labels() {
        let f = stored(FileKind::Secret, "wp_pw", 9, b"hunter2");
        let same: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        assert_eq!(redeploy(&f.secret, &same, b"hunter2"), Ok(None));
        let err = redeploy(&f.secret, &same, b"hunter3").unwrap_err();
        assert!(
            err.contains("failed to update secret wp_pw: only updates to Labels are allowed"),
            "{err}"
        );
        assert!(!err.contains("hunter"), "the error carries no data: {err}");
        let wanted: BTreeMap<String, String> =
            [("com.docker.stack.namespace".to_string(), "wp".to_string())].into();
        let (add, rm) = redeploy(&f.secret, &wanted, b"hunter2").unwrap().unwrap();
        assert_eq!(
            add,
            [("com.docker.stack.namespace".to_string(), "wp".to_string())]
        );
        assert_eq!(rm, ["env".to_string()]);
        let after = changed_labels(FileKind::Secret, &f.secret.labels, &add, &rm).unwrap();
        assert_eq!(after, wanted);
    }
}
