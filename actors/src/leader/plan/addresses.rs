//! Ingress addresses, allocated by the plan in the write that places a task (as SwarmKit's
//! allocator does, from what the store holds).
//!
//! The ingress subnet ([`INGRESS_SUBNET`]/16) is cut into 256 node slices of /24, index
//! 0..=255 (all usable: a slice is a node's local bridge subnet, so neither the /16's network
//! address nor its broadcast address is ever used as a task address). In a slice, `.1` is the
//! node's gateway, `.0` and `.255` the bridge's network and broadcast addresses, and `.2` to
//! `.254` go to tasks: [`SLICE_ADDRESSES`] of them.
//!
//! Where a node's slice is kept: in its tasks. A node holds the slice its live (non-terminal)
//! tasks' addresses are in, so the slice is written in the same compare-and-set write that
//! places a task, and no second object can disagree with the tasks. A node whose tasks have all
//! ended holds no slice; it gets back the slice its newest ended task had, when no other node
//! took it meanwhile (so its bridge keeps its subnet), else the lowest free one. A node new to
//! slices takes the lowest slice that is neither held nor another node's last, while there is
//! one: two nodes sharing a host (or a network namespace) would otherwise trade a slice while
//! one of them is between tasks, and its bridge would vanish under it. A node removed
//! from the store frees its slice as soon as its tasks are terminal or deleted.
//!
//! An address is held while its task is not terminal, and free again after: the ended task
//! keeps its attachment in the store (for `service ps`), but it no longer counts. One
//! exception: an orphaned task (its node was Down) may still run there, cut off, and will be
//! stopped only when its node hears from the leader again, within its stop grace period; a new
//! task of that node must not take its address meanwhile, so an orphaned task holds its
//! address for as long as the store keeps it (the orchestrator's history bound).
//!
//! A task placed when its node's slice is full, or on a node with no slice when all 256 are
//! taken, is not placed: it stays pending with the reason (the next pass tries again, likely
//! elsewhere, as the spread prefers nodes with fewer tasks). A global task, made for its node,
//! stays on it without an address, counted in [`Plan::unaddressed`](super::Plan).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::{
    INGRESS_NETWORK, INGRESS_SUBNET, NODE_SLICE_PREFIX, NetworkAttachment, NodeId, Task, TaskState,
};

/// Node slices of the ingress subnet.
pub const SLICES: u16 = 256;
/// Task addresses in one slice: `.2` to `.254`.
pub const SLICE_ADDRESSES: usize = 253;
const HOST_FIRST: u8 = 2;
const HOST_LAST: u8 = 254;

/// The slice index of an ingress address (its third octet), when it is inside the subnet.
pub fn slice_of(addr: Ipv4Addr) -> Option<u8> {
    let [a, b, c, _] = addr.octets();
    let [sa, sb, _, _] = INGRESS_SUBNET.octets();
    (a == sa && b == sb).then_some(c)
}

/// The address `host` of slice `slice`.
pub fn address(slice: u8, host: u8) -> Ipv4Addr {
    let [a, b, _, _] = INGRESS_SUBNET.octets();
    Ipv4Addr::new(a, b, slice, host)
}

/// A task's ingress attachment, if it has one.
pub fn ingress(t: &Task) -> Option<&NetworkAttachment> {
    t.networks.iter().find(|n| n.network == INGRESS_NETWORK)
}

/// Whether `t` no longer holds its address: it ended, and not as an orphan (see the module).
pub fn holds_no_address(t: &Task) -> bool {
    t.status.state.is_terminal() && t.status.state != TaskState::Orphaned
}

/// Why a task could not get an address.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NoAddress {
    SliceFull { node: NodeId, slice: u8 },
    NoSlice { node: NodeId },
}

impl std::fmt::Display for NoAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAddress::SliceFull { node, slice } => write!(
                f,
                "no free ingress address on node {node} (its slice {}/{NODE_SLICE_PREFIX} is full)",
                address(*slice, 0)
            ),
            NoAddress::NoSlice { node } => write!(
                f,
                "no free ingress address for node {node} (all {SLICES} slices of \
                 {INGRESS_SUBNET}/16 are taken)"
            ),
        }
    }
}

/// The addresses held, and each node's slice, as the tasks say.
#[derive(Default, Debug)]
pub struct Allocator {
    /// Node → its slice (held by its live tasks).
    slices: BTreeMap<NodeId, u8>,
    /// Slice → the node holding it.
    owners: BTreeMap<u8, NodeId>,
    /// Addresses held by live tasks.
    held: BTreeSet<Ipv4Addr>,
    /// Node → the slice of its newest ended task: what it gets back if still free.
    hints: BTreeMap<NodeId, (u64, u8)>,
}

impl Allocator {
    /// Learns from every task of the store (as the pass leaves them): live tasks hold their
    /// address and their node's slice; ended ones leave a hint.
    pub fn new<'t>(tasks: impl IntoIterator<Item = &'t Task>) -> Allocator {
        let mut a = Allocator::default();
        for t in tasks {
            let (Some(node), Some(att)) = (t.node_id, ingress(t)) else {
                continue;
            };
            let Some(slice) = slice_of(att.addr) else {
                continue;
            };
            if holds_no_address(t) {
                let newer = a.hints.get(&node).is_none_or(|(at, _)| *at <= t.created_ms);
                if newer {
                    a.hints.insert(node, (t.created_ms, slice));
                }
                continue;
            }
            a.held.insert(att.addr);
            // A node's live tasks agree on its slice; should they not (a store written by
            // something else), the first one read names the slice and the others keep theirs.
            if !a.slices.contains_key(&node) && !a.owners.contains_key(&slice) {
                a.slices.insert(node, slice);
                a.owners.insert(slice, node);
            }
        }
        a
    }

    /// The slice `node` holds, if any.
    #[cfg(test)]
    pub fn slice(&self, node: NodeId) -> Option<u8> {
        self.slices.get(&node).copied()
    }

    /// Allocates the lowest free address of `node`'s slice, giving the node a slice first
    /// when it has none.
    pub fn allocate(&mut self, node: NodeId) -> Result<NetworkAttachment, NoAddress> {
        let slice = match self.slices.get(&node) {
            Some(s) => *s,
            None => {
                let hint = self
                    .hints
                    .get(&node)
                    .map(|(_, s)| *s)
                    .filter(|s| !self.owners.contains_key(s));
                // A fresh slice is one no node holds and, while any is left, none last held:
                // a node between tasks (all ended, the next not yet placed) gets its own back,
                // and its bridge keeps its subnet rather than turning up on another node's.
                let free = |s: &u8| !self.owners.contains_key(s);
                let nobodys = |s: &u8| free(s) && !self.hints.values().any(|(_, h)| h == s);
                let s = hint
                    .or_else(|| (0..SLICES).map(|s| s as u8).find(nobodys))
                    .or_else(|| (0..SLICES).map(|s| s as u8).find(free))
                    .ok_or(NoAddress::NoSlice { node })?;
                self.slices.insert(node, s);
                self.owners.insert(s, node);
                s
            }
        };
        let addr = (HOST_FIRST..=HOST_LAST)
            .map(|h| address(slice, h))
            .find(|a| !self.held.contains(a))
            .ok_or(NoAddress::SliceFull { node, slice })?;
        self.held.insert(addr);
        Ok(NetworkAttachment {
            network: INGRESS_NETWORK.to_string(),
            addr,
            prefix: NODE_SLICE_PREFIX,
            gateway: address(slice, 1),
        })
    }
}
