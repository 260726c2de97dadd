//! Node descriptions as foca custom broadcasts.
//!
//! An item is a bincode [`DescriptionItem`]: a node's description and the bump of the identity
//! that issued it. Its key ([`DescriptionKey`]: node, bump, version) replaces older items of the
//! same node in foca's queue, and a received item is passed on only when it is newer than what
//! this node already has, so gossip about a description dies out once everyone has it.
//!
//! foca owns its broadcast handler and offers no way to reach it, so the handler
//! ([`NodeDescriptions`]) shares a small book with the [`super::Membership`] that created it:
//! the newest (bump, version) per node, and the descriptions that arrived since the machine last
//! looked. The machine drains them after every call into foca and keeps the descriptions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::codec::bincode_config;
use crate::model::{NodeDescription, NodeId};

/// Most bytes of one encoded description item. Descriptions are validated (at most 64 labels,
/// ...), but the bound holds whatever a peer sends. The packet size bounds it further.
pub const DESCRIPTION_ITEM_BYTES_MAX: usize = 4096;

/// Most descriptions kept: one per node, far above any supported cluster. New nodes beyond it
/// are ignored until forgotten ones are pruned.
pub const DESCRIPTIONS_MAX: usize = 65_536;

/// Most arrivals held between two drains; foca delivers at most one packet's worth per call.
const ARRIVED_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptionItem {
    /// The bump of the identity that issued this description: a restarted or rejoined node's
    /// description replaces its earlier ones even if its version did not grow.
    pub bump: u64,
    pub description: NodeDescription,
}

impl DescriptionItem {
    /// Newer items of a node have a higher rank.
    pub fn rank(&self) -> (u64, u64) {
        (self.bump, self.description.version)
    }

    pub fn encode(&self) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(self, bincode_config()).map_err(|e| e.to_string())
    }

    /// Decodes and checks one item: size, shape, and the description's own bounds.
    pub fn decode(data: &[u8], bytes_max: usize) -> Result<Self, DescriptionError> {
        if data.len() > bytes_max {
            return Err(DescriptionError::TooLarge {
                bytes: data.len(),
                max: bytes_max,
            });
        }
        let (item, used): (DescriptionItem, usize) =
            bincode::serde::decode_from_slice(data, bincode_config())
                .map_err(|e| DescriptionError::Decode(e.to_string()))?;
        if used != data.len() {
            return Err(DescriptionError::Decode(format!(
                "{} trailing bytes",
                data.len() - used
            )));
        }
        item.description
            .validate()
            .map_err(|e| DescriptionError::Invalid(e.to_string()))?;
        if item.description.id == NodeId::UNKNOWN {
            return Err(DescriptionError::Invalid("placeholder node ID".into()));
        }
        Ok(item)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DescriptionError {
    #[error("description item of {bytes} bytes is over the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("description item does not decode: {0}")]
    Decode(String),
    #[error("description item is not valid: {0}")]
    Invalid(String),
}

/// Identifies a queued item: a newer item of the same node replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptionKey {
    pub id: NodeId,
    pub bump: u64,
    pub version: u64,
}

impl foca::Invalidates for DescriptionKey {
    fn invalidates(&self, other: &Self) -> bool {
        // Equal ranks too: re-adding our own description restarts its transmissions instead
        // of queueing a second copy.
        self.id == other.id && (self.bump, self.version) >= (other.bump, other.version)
    }
}

#[derive(Debug)]
struct Book {
    me: NodeId,
    item_bytes_max: usize,
    /// Rank of the newest description seen per node.
    newest: BTreeMap<NodeId, (u64, u64)>,
    /// Newer descriptions not yet taken by the machine.
    arrived: Vec<DescriptionItem>,
    /// Who sent the packet foca is handling, as the transport proved it: a description is
    /// taken only from its own node, in a role its certificate carries.
    vouched: Option<super::Sender>,
    /// Items refused since the machine last asked, for its stats.
    refused: u64,
}

/// foca's broadcast handler for node descriptions; see the module docs.
#[derive(Clone, Debug)]
pub struct NodeDescriptions {
    book: Arc<Mutex<Book>>,
}

impl NodeDescriptions {
    pub fn new(me: NodeId, item_bytes_max: usize) -> Self {
        NodeDescriptions {
            book: Arc::new(Mutex::new(Book {
                me,
                item_bytes_max: item_bytes_max.min(DESCRIPTION_ITEM_BYTES_MAX),
                newest: BTreeMap::new(),
                arrived: Vec::new(),
                vouched: None,
                refused: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // Nothing panics while holding the lock, so a poisoned lock still holds a sound book.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn item_bytes_max(&self) -> usize {
        self.lock().item_bytes_max
    }

    /// Records `item` if it is newer than what we have for its node; returns whether it was.
    /// Our own node's descriptions from others are never taken: we know better.
    pub fn offer(&self, item: &DescriptionItem) -> bool {
        let mut book = self.lock();
        let id = item.description.id;
        if id == book.me || book.arrived.len() >= ARRIVED_MAX {
            return false;
        }
        let newer = match book.newest.get(&id) {
            Some(rank) => item.rank() > *rank,
            None => book.newest.len() < DESCRIPTIONS_MAX,
        };
        if newer {
            book.newest.insert(id, item.rank());
            book.arrived.push(item.clone());
        }
        newer
    }

    /// Names the sender of the packet about to be handled (`None` once it is done).
    pub fn vouch(&self, sender: Option<super::Sender>) {
        self.lock().vouched = sender;
    }

    /// Items refused since the last call because their sender was not their node.
    pub fn take_refused(&self) -> u64 {
        std::mem::take(&mut self.lock().refused)
    }

    /// Whether an item relayed in a packet from `sender` may be taken: only from the node it
    /// describes, vouched for by the transport, in a role its certificate carries.
    fn is_from_its_node(&self, item: &DescriptionItem, sender: &super::MemberId) -> bool {
        let mut book = self.lock();
        let ok = book.vouched.is_some_and(|v| {
            v.id == sender.id
                && sender.id == item.description.id
                && super::role_allowed(v.role, item.description.role)
        });
        if !ok {
            book.refused += 1;
        }
        ok
    }

    /// Takes the descriptions that arrived since the last call, oldest first.
    pub fn take_arrived(&self) -> Vec<DescriptionItem> {
        std::mem::take(&mut self.lock().arrived)
    }

    /// Forgets nodes not in `listed` (sorted, no duplicates), so the book stays as large as
    /// the membership.
    pub fn retain_listed(&self, listed: &[NodeId]) {
        retain_listed(&mut self.lock().newest, listed);
    }
}

impl foca::BroadcastHandler<super::MemberId> for NodeDescriptions {
    type Key = DescriptionKey;
    type Error = DescriptionError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&super::MemberId>,
    ) -> Result<Option<DescriptionKey>, DescriptionError> {
        let item = DescriptionItem::decode(data, self.item_bytes_max())?;
        let key = DescriptionKey {
            id: item.description.id,
            bump: item.bump,
            version: item.description.version,
        };
        // `sender` is None when the machine queues its own description: always send it.
        // Another's is taken only from its own node, and never passed on: nobody would take
        // it from us (see `vetting.rs`).
        match sender {
            None => Ok(Some(key)),
            Some(s) => {
                if self.is_from_its_node(&item, s) {
                    self.offer(&item);
                }
                Ok(None)
            }
        }
    }
}

/// Removes the keys of `map` that are not in `listed` (sorted, no duplicates). It runs on every
/// rebroadcast tick and usually removes nothing, so it first checks in one ordered walk
/// whether there is anything to remove.
pub(super) fn retain_listed<V>(map: &mut BTreeMap<NodeId, V>, listed: &[NodeId]) {
    debug_assert!(listed.windows(2).all(|w| w[0] < w[1]), "listed is sorted");
    let mut rest = listed;
    let all_listed = map.keys().all(|id| {
        // Both are in ascending order: skip the listed IDs below this key.
        let skip = rest.partition_point(|l| l < id);
        rest = &rest[skip..];
        rest.first() == Some(id)
    });
    if !all_listed {
        map.retain(|id, _| listed.binary_search(id).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeResources, Role};
    use foca::{BroadcastHandler, Invalidates};

    fn desc(id: u128, version: u64) -> NodeDescription {
        NodeDescription {
            id: NodeId(id),
            hostname: format!("host-{id}"),
            addr: "10.0.0.1:2377".parse().unwrap(),
            role: Role::Worker,
            resources: NodeResources::default(),
            labels: Default::default(),
            runtimes: vec!["process".into()],
            engine_version: "0.1.0".into(),
            version,
        }
    }

    fn item(id: u128, bump: u64, version: u64) -> Vec<u8> {
        DescriptionItem {
            bump,
            description: desc(id, version),
        }
        .encode()
        .unwrap()
    }

    fn peer() -> super::super::MemberId {
        super::super::MemberId::new(NodeId(9), "10.0.0.9:1".parse().unwrap(), 0)
    }

    #[test]
    fn retain_listed_keeps_exactly_the_listed() {
        let mut map: BTreeMap<NodeId, ()> = [1, 3, 5, 7].map(|i| (NodeId(i), ())).into();
        retain_listed(
            &mut map,
            &[NodeId(1), NodeId(2), NodeId(3), NodeId(5), NodeId(7)],
        );
        assert_eq!(map.len(), 4, "all listed: nothing removed");
        retain_listed(&mut map, &[NodeId(3), NodeId(4), NodeId(7), NodeId(9)]);
        assert_eq!(
            map.keys().copied().collect::<Vec<_>>(),
            [NodeId(3), NodeId(7)]
        );
        retain_listed(&mut map, &[]);
        assert!(map.is_empty());
    }

    /// A description is taken only from its own node (as the transport vouched for the
    /// packet's sender), only when newer, and never passed on.
    #[test]
    fn only_a_nodes_own_newer_items_are_taken() {
        let h = NodeDescriptions::new(NodeId(1), 4096);
        let mut h2 = h.clone();
        let relayer = peer();
        let owner = super::super::MemberId::new(NodeId(2), "10.0.0.2:1".parse().unwrap(), 0);
        let vouch = |id: u128, role: Role| {
            h.vouch(Some(super::super::Sender {
                id: NodeId(id),
                role,
            }))
        };

        vouch(9, Role::Manager);
        assert!(
            h2.receive_item(&item(2, 0, 1), Some(&relayer))
                .unwrap()
                .is_none()
        );
        assert!(h.take_arrived().is_empty(), "node 9 speaking for node 2");
        assert_eq!(h.take_refused(), 1);

        vouch(2, Role::Worker);
        for (bump, version) in [(0, 1), (0, 1), (0, 0), (0, 2), (1 << 32, 1)] {
            let relayed = h2
                .receive_item(&item(2, bump, version), Some(&owner))
                .unwrap();
            assert!(relayed.is_none(), "never passed on");
        }
        let arrived = h.take_arrived();
        assert_eq!(arrived.len(), 3, "only newer ones, a restart winning");
        assert_eq!(arrived[2].rank(), (1 << 32, 1));

        let mut manager = desc(2, 9);
        manager.role = Role::Manager;
        let claim = DescriptionItem {
            bump: 1 << 32,
            description: manager,
        }
        .encode()
        .unwrap();
        assert!(h2.receive_item(&claim, Some(&owner)).unwrap().is_none());
        assert!(
            h.take_arrived().is_empty(),
            "a worker certificate claiming manager"
        );
        assert_eq!(h.take_refused(), 1);

        // Our own description is always sent.
        h.vouch(None);
        assert!(h2.receive_item(&item(1, 0, 5), None).unwrap().is_some());
    }

    #[test]
    fn bad_items_are_refused() {
        let mut h = NodeDescriptions::new(NodeId(1), 200);
        let p = peer();
        assert!(h.receive_item(&[1, 2, 3], Some(&p)).is_err());
        assert!(h.receive_item(&[], Some(&p)).is_err());
        let mut big = desc(2, 1);
        for i in 0..20 {
            big.labels.insert(format!("k{i}"), "v".repeat(20));
        }
        let data = DescriptionItem {
            bump: 0,
            description: big,
        }
        .encode()
        .unwrap();
        assert!(matches!(
            h.receive_item(&data, Some(&p)),
            Err(DescriptionError::TooLarge { .. })
        ));
        let mut bad = desc(3, 1);
        bad.hostname.clear();
        let data = DescriptionItem {
            bump: 0,
            description: bad,
        }
        .encode()
        .unwrap();
        assert!(matches!(
            h.receive_item(&data, Some(&p)),
            Err(DescriptionError::Invalid(_))
        ));
        let mut trailing = item(2, 0, 1);
        trailing.push(0);
        assert!(h.receive_item(&trailing, Some(&p)).is_err());
        assert!(h.take_arrived().is_empty());
    }

    #[test]
    fn keys_invalidate_older_items_of_the_same_node() {
        let k = |id, bump, version| DescriptionKey {
            id: NodeId(id),
            bump,
            version,
        };
        assert!(k(1, 0, 2).invalidates(&k(1, 0, 1)));
        assert!(k(1, 0, 2).invalidates(&k(1, 0, 2)));
        assert!(!k(1, 0, 1).invalidates(&k(1, 0, 2)));
        assert!(k(1, 1, 0).invalidates(&k(1, 0, 9)));
        assert!(!k(2, 5, 5).invalidates(&k(1, 0, 0)));
    }
}
