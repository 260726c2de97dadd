//! [`StoreState`]: the replicated state machine, every cluster object keyed by (kind, id).
//!
//! Deterministic and free of I/O: the same commands applied at the same raft indexes give the
//! same state on every manager. A [`StoreCommand`] is a batch of operations applied all or
//! nothing; each operation states what it expects of the object (absent, at a version, or
//! anything), so concurrent writers get compare-and-set semantics and a stale writer is refused
//! with "update out of sequence", as Docker says it.
//!
//! Besides the objects the state keeps the raft members (raft ID → node ID and address), so
//! that a snapshot teaches a new manager where every voter listens.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::codec::MESSAGE_BYTES_MAX;
use crate::model::{
    Availability, FileKind, Network, NodeDescription, NodeId, Role, Secret, Service, Task,
};

/// Most operations in one command.
pub const OPS_PER_COMMAND_MAX: usize = 1_000;
/// Most bytes of an object ID.
pub const OBJECT_ID_BYTES_MAX: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Kind {
    Node,
    Service,
    Task,
    Secret,
    Config,
    Network,
    Cluster,
}

/// What an operation expects of the object before it runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Expect {
    /// The object does not exist (create).
    Absent,
    /// The object exists at exactly this version (compare-and-set update or delete).
    Version(u64),
    /// No expectation (last writer wins).
    Any,
}

/// What the cluster says about a node (`node update`), plus what the node said about itself.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeSpec {
    pub role: Role,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeObject {
    pub id: NodeId,
    pub spec: NodeSpec,
    pub description: Option<NodeDescription>,
    /// The node's raft ID while it is a manager.
    pub raft_id: Option<u64>,
    pub addr: SocketAddr,
}

/// The one cluster object's ID.
pub const CLUSTER_ID: &str = "cluster";

/// Cluster-wide secrets, replicated so that every manager can admit joins.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterObject {
    pub ca_cert_der: Vec<u8>,
    pub ca_key_pem: String,
    pub worker_token: String,
    pub manager_token: String,
    /// A root rotation under way (`swarm ca --rotate`), or none.
    pub rotation: Option<RootRotation>,
    /// Autolock: while set, every manager keeps its store's data key sealed under this key
    /// (`store::lock`), and `swarm unlock-key` prints it. Replicated so that every manager
    /// seals with the same key, and sealed at rest like the CA key.
    pub unlock_key: Option<super::lock::UnlockKey>,
}

/// Where a root rotation stands. The cluster moves from the old root to a new one in two
/// phases, each done when every live node in the store is in `done`:
///
/// 1. [`RotationPhase::Certs`]: `ca_cert_der` is still the old root. Managers issue every
///    certificate under the new root, sent with `cross_der` (the new root cross-signed by the
///    old), so nodes still trusting the old root accept it. Every node renews at once.
/// 2. [`RotationPhase::Roots`]: `ca_cert_der` is the new root and the join tokens carry its
///    digest. Every node switches its trust to the new root (refusing certificates of the old
///    one from then on) and renews once more to say so. When all have, the rotation is over
///    and certificates are issued without the cross-signed intermediate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotation {
    pub phase: RotationPhase,
    /// The new root's certificate and key (the key sealed at rest like the CA's).
    pub new_ca_cert_der: Vec<u8>,
    pub new_ca_key_pem: String,
    /// The new root's key and subject, signed by the old root.
    pub cross_der: Vec<u8>,
    /// Nodes that renewed under the new root in this phase.
    pub done: std::collections::BTreeSet<NodeId>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RotationPhase {
    Certs,
    Roots,
}

impl std::fmt::Debug for RootRotation {
    // Keeps the new CA key out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootRotation")
            .field("phase", &self.phase)
            .field("done", &self.done.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClusterObject {
    // Keeps the CA key and the tokens out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterObject")
            .field(
                "ca_cert_der",
                &format_args!("{} bytes", self.ca_cert_der.len()),
            )
            .field("rotation", &self.rotation)
            .field("autolock", &self.unlock_key.is_some())
            .finish_non_exhaustive()
    }
}

// Bodies are built once per write and moved, not copied around; boxing them would make every
// caller box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum ObjectBody {
    Node(NodeObject),
    Service(Service),
    Task(Task),
    /// A secret (under [`Kind::Secret`]) or a config (under [`Kind::Config`]), by its kind.
    Secret(Secret),
    /// An overlay network (under [`Kind::Network`]).
    Network(Network),
    Cluster(ClusterObject),
}

impl ObjectBody {
    /// The kind this body may be stored under.
    pub fn kind(&self) -> Kind {
        match self {
            ObjectBody::Node(_) => Kind::Node,
            ObjectBody::Service(_) => Kind::Service,
            ObjectBody::Task(_) => Kind::Task,
            ObjectBody::Secret(s) => match s.kind {
                FileKind::Secret => Kind::Secret,
                FileKind::Config => Kind::Config,
            },
            ObjectBody::Network(_) => Kind::Network,
            ObjectBody::Cluster(_) => Kind::Cluster,
        }
    }
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StoredObject {
    pub kind: Kind,
    pub id: String,
    /// The raft index of the object's last change: what [`Expect::Version`] compares with.
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub body: ObjectBody,
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Op {
    Put {
        kind: Kind,
        id: String,
        expect: Expect,
        body: ObjectBody,
    },
    Delete {
        kind: Kind,
        id: String,
        expect: Expect,
    },
}

/// A batch of operations applied atomically at one raft index.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StoreCommand {
    /// Set by the proposer, so that replaying the log gives the same timestamps.
    pub now_ms: u64,
    pub ops: Vec<Op>,
}

/// A raft voter as every manager knows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Member {
    pub node_id: NodeId,
    pub addr: SocketAddr,
}

/// The local replica of the cluster's objects.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct StoreState {
    objects: BTreeMap<(Kind, String), StoredObject>,
    members: BTreeMap<u64, Member>,
    /// The last raft index applied to this state.
    applied_index: u64,
    /// A running hash of every entry applied (index, term, data): two replicas at the same
    /// applied index hold the same log prefix exactly when their digests agree. The simulator
    /// checks that a committed entry is never lost or changed with it.
    digest: u64,
}

/// Most bytes of an encoded store state: a raft snapshot's data. A snapshot reaches a new
/// manager inside one raft message, so it fits in [`MESSAGE_BYTES_MAX`] with a mebibyte left
/// for the message around it (metadata, voters). Decoding is bounded by the same figure: a
/// length prefix claiming more is refused before anything is allocated for it.
pub const SNAPSHOT_BYTES_MAX: usize = MESSAGE_BYTES_MAX - (1 << 20);

/// Bounded: bincode counts every byte it claims (a string's claimed length before allocating
/// it) against the limit.
fn codec() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<SNAPSHOT_BYTES_MAX>()
}

fn too_large(detail: String) -> StoreError {
    StoreError::SnapshotTooLarge {
        detail,
        max: SNAPSHOT_BYTES_MAX,
    }
}

impl StoreState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, kind: Kind, id: &str) -> Option<&StoredObject> {
        self.objects.get(&(kind, id.to_string()))
    }

    /// Every object of one kind, in ID order.
    pub fn list(&self, kind: Kind) -> impl Iterator<Item = &StoredObject> {
        self.objects
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|(_, o)| o)
    }

    /// Every object, in (kind, ID) order.
    pub fn objects(&self) -> impl Iterator<Item = &StoredObject> {
        self.objects.values()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn members(&self) -> &BTreeMap<u64, Member> {
        &self.members
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The running hash of the applied log prefix (see the field).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Folds an applied entry into the digest; called once per entry, in index order.
    pub fn record_entry(&mut self, index: u64, term: u64, data: &[u8]) {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = if self.digest == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.digest
        };
        for b in index
            .to_le_bytes()
            .iter()
            .chain(term.to_le_bytes().iter())
            .chain(data.iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        self.digest = h;
    }

    /// Records that `index` was applied without changing objects (an empty or refused entry).
    pub fn mark_applied(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// Applies a voter change committed at `index`.
    pub fn set_member(&mut self, index: u64, raft_id: u64, member: Option<Member>) {
        match member {
            Some(m) => {
                self.members.insert(raft_id, m);
            }
            None => {
                self.members.remove(&raft_id);
            }
        }
        self.mark_applied(index);
    }

    /// Keeps only `raft_id` among the members (forced recovery after losing quorum).
    pub fn retain_member(&mut self, raft_id: u64) {
        self.members.retain(|id, _| *id == raft_id);
    }

    /// Applies `cmd`, committed at raft `index`, all or nothing. On error nothing changed but
    /// the applied index (the entry was consumed either way).
    pub fn apply(&mut self, index: u64, cmd: &StoreCommand) -> Result<(), StoreError> {
        let result = self.try_apply(index, cmd);
        self.mark_applied(index);
        result
    }

    fn try_apply(&mut self, index: u64, cmd: &StoreCommand) -> Result<(), StoreError> {
        check_command(cmd)?;
        // Changes of this batch; later operations see earlier ones.
        let mut overlay: BTreeMap<(Kind, String), Option<StoredObject>> = BTreeMap::new();
        for op in &cmd.ops {
            let (kind, id, expect) = match op {
                Op::Put {
                    kind, id, expect, ..
                }
                | Op::Delete { kind, id, expect } => (*kind, id, *expect),
            };
            let key = (kind, id.clone());
            let current = match overlay.get(&key) {
                Some(o) => o.as_ref(),
                None => self.objects.get(&key),
            };
            check_expect(kind, id, expect, current, matches!(op, Op::Delete { .. }))?;
            let next = match op {
                Op::Put { body, .. } => Some(StoredObject {
                    kind,
                    id: id.clone(),
                    version: index,
                    created_ms: current.map_or(cmd.now_ms, |c| c.created_ms),
                    updated_ms: cmd.now_ms,
                    body: body.clone(),
                }),
                Op::Delete { .. } => None,
            };
            overlay.insert(key, next);
        }
        for (key, next) in overlay {
            match next {
                Some(o) => {
                    self.objects.insert(key, o);
                }
                None => {
                    self.objects.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// The whole state as bytes, for a raft snapshot. A state over [`SNAPSHOT_BYTES_MAX`] is
    /// refused here, so no manager makes a snapshot that the others would refuse.
    pub fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let bytes = bincode::serde::encode_to_vec(self, codec())
            .map_err(|e| StoreError::Codec(e.to_string()))?;
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(too_large(format!(
                "the state encodes to {} bytes",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The state a snapshot's bytes hold. Garbage is an error, never a panic or an allocation
    /// beyond [`SNAPSHOT_BYTES_MAX`]: the length is checked first, then every length prefix
    /// inside as it is read.
    pub fn restore(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(too_large(format!("{} bytes given", bytes.len())));
        }
        let (state, used): (StoreState, usize) = bincode::serde::decode_from_slice(bytes, codec())
            .map_err(|e| match e {
                bincode::error::DecodeError::LimitExceeded => {
                    too_large("a length inside claims more".into())
                }
                e => StoreError::Codec(e.to_string()),
            })?;
        if used != bytes.len() {
            return Err(StoreError::Codec(format!(
                "{} bytes left over after the snapshot",
                bytes.len() - used
            )));
        }
        Ok(state)
    }
}

/// Checks the shape of a command: bounds, and that each body fits its kind.
pub fn check_command(cmd: &StoreCommand) -> Result<(), StoreError> {
    if cmd.ops.is_empty() || cmd.ops.len() > OPS_PER_COMMAND_MAX {
        return Err(StoreError::Invalid(format!(
            "a command holds 1..={OPS_PER_COMMAND_MAX} operations, this one {}",
            cmd.ops.len()
        )));
    }
    for op in &cmd.ops {
        let (kind, id) = match op {
            Op::Put { kind, id, .. } | Op::Delete { kind, id, .. } => (*kind, id),
        };
        if id.is_empty() || id.len() > OBJECT_ID_BYTES_MAX {
            return Err(StoreError::Invalid(format!(
                "an object ID has 1..={OBJECT_ID_BYTES_MAX} bytes, {id:?} does not"
            )));
        }
        if let Op::Put { body, .. } = op
            && body.kind() != kind
        {
            return Err(StoreError::Invalid(format!(
                "a {:?} body cannot be stored as a {kind:?}",
                body.kind()
            )));
        }
    }
    Ok(())
}

fn check_expect(
    kind: Kind,
    id: &str,
    expect: Expect,
    current: Option<&StoredObject>,
    delete: bool,
) -> Result<(), StoreError> {
    let id = id.to_string();
    match (expect, current) {
        (_, None) if delete => Err(StoreError::NotFound { kind, id }),
        (Expect::Absent, Some(_)) => Err(StoreError::Exists { kind, id }),
        (Expect::Version(_), None) => Err(StoreError::NotFound { kind, id }),
        (Expect::Version(v), Some(o)) if o.version != v => Err(StoreError::OutOfSequence {
            kind,
            id,
            expected: v,
            actual: o.version,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cluster_body(tag: &str) -> ObjectBody {
        ObjectBody::Cluster(ClusterObject {
            ca_cert_der: vec![1, 2, 3],
            ca_key_pem: format!("key-{tag}"),
            worker_token: format!("w-{tag}"),
            manager_token: format!("m-{tag}"),
            rotation: None,
            unlock_key: None,
        })
    }

    fn put(id: &str, expect: Expect, tag: &str) -> Op {
        Op::Put {
            kind: Kind::Cluster,
            id: id.into(),
            expect,
            body: cluster_body(tag),
        }
    }

    fn cmd(ops: Vec<Op>) -> StoreCommand {
        StoreCommand { now_ms: 77, ops }
    }

    #[test]
    fn create_update_delete_with_versions() {
        let mut s = StoreState::new();
        s.apply(5, &cmd(vec![put("a", Expect::Absent, "1")]))
            .unwrap();
        let a = s.get(Kind::Cluster, "a").unwrap();
        assert_eq!((a.version, a.created_ms), (5, 77));
        assert_eq!(
            s.apply(6, &cmd(vec![put("a", Expect::Absent, "2")])),
            Err(StoreError::Exists {
                kind: Kind::Cluster,
                id: "a".into()
            })
        );
        s.apply(7, &cmd(vec![put("a", Expect::Version(5), "2")]))
            .unwrap();
        assert_eq!(s.get(Kind::Cluster, "a").unwrap().version, 7);
        let stale = s.apply(8, &cmd(vec![put("a", Expect::Version(5), "3")]));
        assert!(
            matches!(
                stale,
                Err(StoreError::OutOfSequence {
                    expected: 5,
                    actual: 7,
                    ..
                })
            ),
            "{stale:?}"
        );
        assert_eq!(s.get(Kind::Cluster, "a").unwrap().body, cluster_body("2"));
        let del = Op::Delete {
            kind: Kind::Cluster,
            id: "a".into(),
            expect: Expect::Version(7),
        };
        s.apply(9, &cmd(vec![del.clone()])).unwrap();
        assert!(s.get(Kind::Cluster, "a").is_none());
        assert!(matches!(
            s.apply(10, &cmd(vec![del])),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.applied_index(), 10);
    }

    #[test]
    fn a_bad_op_refuses_the_whole_batch() {
        let mut s = StoreState::new();
        s.apply(1, &cmd(vec![put("a", Expect::Absent, "1")]))
            .unwrap();
        let before = s.clone();
        let r = s.apply(
            2,
            &cmd(vec![
                put("b", Expect::Absent, "1"),
                put("a", Expect::Version(99), "x"),
            ]),
        );
        assert!(matches!(r, Err(StoreError::OutOfSequence { .. })));
        assert!(s.get(Kind::Cluster, "b").is_none());
        assert_eq!(s.get(Kind::Cluster, "a"), before.get(Kind::Cluster, "a"));
        // Later operations see earlier ones of the same batch.
        s.apply(
            3,
            &cmd(vec![
                put("c", Expect::Absent, "1"),
                put("c", Expect::Version(3), "2"),
            ]),
        )
        .unwrap();
        assert_eq!(s.get(Kind::Cluster, "c").unwrap().body, cluster_body("2"));
    }

    #[test]
    fn refuses_malformed_commands() {
        let mut s = StoreState::new();
        assert!(matches!(
            s.apply(1, &cmd(vec![])),
            Err(StoreError::Invalid(_))
        ));
        let wrong_kind = Op::Put {
            kind: Kind::Secret,
            id: "s".into(),
            expect: Expect::Any,
            body: cluster_body("1"),
        };
        assert!(matches!(
            s.apply(2, &cmd(vec![wrong_kind])),
            Err(StoreError::Invalid(_))
        ));
        let long = "x".repeat(OBJECT_ID_BYTES_MAX + 1);
        assert!(matches!(
            s.apply(3, &cmd(vec![put(&long, Expect::Any, "1")])),
            Err(StoreError::Invalid(_))
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn snapshot_round_trips_and_refuses_garbage() {
        let mut s = StoreState::new();
        s.apply(1, &cmd(vec![put("a", Expect::Absent, "1")]))
            .unwrap();
        s.set_member(
            2,
            7,
            Some(Member {
                node_id: NodeId(9),
                addr: "10.0.0.1:2377".parse().unwrap(),
            }),
        );
        let bytes = s.snapshot().unwrap();
        assert_eq!(StoreState::restore(&bytes).unwrap(), s);
        assert!(StoreState::restore(&[0xff; 7]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(StoreState::restore(&extra).is_err());
        assert_eq!(s.list(Kind::Cluster).count(), 1);
        assert_eq!(s.list(Kind::Node).count(), 0);
    }

    #[test]
    fn a_snapshot_over_the_limit_is_refused_before_anything_is_allocated() {
        let too_large = |r: Result<StoreState, StoreError>| matches!(r, Err(StoreError::SnapshotTooLarge { max, .. }) if max == SNAPSHOT_BYTES_MAX);
        // One object whose ID claims 1 TiB: [objects: 1][kind: variant 0][u64 varint length].
        let mut claim = vec![1u8, 0, 253];
        claim.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(too_large(StoreState::restore(&claim)));
        // A claim just over the limit is refused as well; one under it that the bytes do not
        // hold is plain garbage.
        let mut over = vec![1u8, 0, 253];
        over.extend_from_slice(&(SNAPSHOT_BYTES_MAX as u64 + 1).to_le_bytes());
        assert!(too_large(StoreState::restore(&over)));
        let mut short = vec![1u8, 0, 253];
        short.extend_from_slice(&1_000u64.to_le_bytes());
        assert!(matches!(
            StoreState::restore(&short),
            Err(StoreError::Codec(_))
        ));
        // More bytes than the limit are refused before decoding starts.
        assert!(too_large(StoreState::restore(&vec![
            0u8;
            SNAPSHOT_BYTES_MAX + 1
        ])));
        // A snapshot must fit in a raft message.
        const _: () = assert!(SNAPSHOT_BYTES_MAX < MESSAGE_BYTES_MAX);
    }
}
