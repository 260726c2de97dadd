//! Who holds connections to this endpoint: every authenticated connection by the node its
//! certificate names, and the budget of connections from peers without a certificate.
//!
//! The address slots ([`super::conn::PeerSlot`]) keep one connection per address for sending;
//! they miss a second connection from simultaneous dials, or an inbound one that was not
//! adopted. Removing a node (`Transport::deny`) must cut all of them, so every authenticated
//! connection is registered here, whichever way it was made, until it closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::NodeId;

/// Live connections by node ID, at most `max` in all. Generic over the connection so the
/// accounting is tested without sockets; the transport keys `quinn::Connection`s by their
/// `stable_id`.
pub(crate) struct Registry<C> {
    max: usize,
    inner: Mutex<Inner<C>>,
}

struct Inner<C> {
    by_node: HashMap<NodeId, Vec<(usize, C)>>,
    len: usize,
}

impl<C: Clone> Registry<C> {
    pub fn new(max: usize) -> Registry<C> {
        Registry {
            max,
            inner: Mutex::new(Inner {
                by_node: HashMap::new(),
                len: 0,
            }),
        }
    }

    /// Registers connection `key` of `node`. False, and nothing registered, when `max` are
    /// registered already: the caller closes the connection.
    pub fn add(&self, node: NodeId, key: usize, conn: C) -> bool {
        let mut inner = self.inner.lock().expect("registry lock");
        if inner.len >= self.max {
            return false;
        }
        let conns = inner.by_node.entry(node).or_default();
        if conns.iter().any(|(k, _)| *k == key) {
            return true;
        }
        conns.push((key, conn));
        inner.len += 1;
        assert!(inner.len <= self.max, "registry over its bound");
        true
    }

    /// Forgets connection `key` of `node`; nothing when it is not registered.
    pub fn remove(&self, node: NodeId, key: usize) {
        let mut inner = self.inner.lock().expect("registry lock");
        let Some(conns) = inner.by_node.get_mut(&node) else {
            return;
        };
        let before = conns.len();
        conns.retain(|(k, _)| *k != key);
        let removed = before - conns.len();
        if conns.is_empty() {
            inner.by_node.remove(&node);
        }
        inner.len -= removed;
    }

    /// Every registered connection of `node`.
    pub fn of(&self, node: NodeId) -> Vec<C> {
        let inner = self.inner.lock().expect("registry lock");
        inner
            .by_node
            .get(&node)
            .map(|conns| conns.iter().map(|(_, c)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// Every registered connection, of every node.
    pub fn all(&self) -> Vec<C> {
        let inner = self.inner.lock().expect("registry lock");
        inner
            .by_node
            .values()
            .flat_map(|conns| conns.iter().map(|(_, c)| c.clone()))
            .collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().expect("registry lock").len
    }
}

/// A count of things open at once with a maximum; a taken unit comes back when its
/// [`BudgetSlot`] is dropped, whichever way the holder ends.
pub(crate) struct Budget {
    max: usize,
    open: AtomicUsize,
}

/// One unit of a [`Budget`], returned on drop.
pub(crate) struct BudgetSlot(Arc<Budget>);

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            open: AtomicUsize::new(0),
        })
    }

    /// A unit, or `None` when `max` are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<BudgetSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| BudgetSlot(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for BudgetSlot {
    fn drop(&mut self) {
        let before = self.0.open.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "a budget gave back more than it lent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_holds_every_connection_of_a_node_and_no_more_than_its_bound() {
        let r: Registry<&str> = Registry::new(3);
        assert!(r.add(NodeId(1), 10, "first"));
        assert!(r.add(NodeId(1), 11, "second, from a simultaneous dial"));
        assert!(r.add(NodeId(1), 11, "the same one again"), "idempotent");
        assert!(r.add(NodeId(2), 20, "another node"));
        assert_eq!(r.len(), 3);
        assert!(
            !r.add(NodeId(3), 30, "over the bound"),
            "refused at the bound"
        );
        assert_eq!(r.of(NodeId(3)), Vec::<&str>::new());
        let mut of1 = r.of(NodeId(1));
        of1.sort();
        assert_eq!(of1, vec!["first", "second, from a simultaneous dial"]);

        r.remove(NodeId(1), 10);
        r.remove(NodeId(1), 99); // not registered: nothing happens
        r.remove(NodeId(9), 10); // unknown node: nothing happens
        assert_eq!(r.of(NodeId(1)), vec!["second, from a simultaneous dial"]);
        assert_eq!(r.len(), 2);
        assert!(r.add(NodeId(3), 30, "room again"));
        r.remove(NodeId(1), 11);
        r.remove(NodeId(2), 20);
        r.remove(NodeId(3), 30);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_budget_lends_up_to_its_maximum_and_takes_back_on_drop() {
        let b = Budget::new(2);
        let one = b.try_take().expect("first");
        let two = b.try_take().expect("second");
        assert!(b.try_take().is_none(), "a third is over the budget");
        assert_eq!(b.open(), 2);
        drop(one);
        assert_eq!(b.open(), 1);
        let three = b.try_take().expect("room after a drop");
        assert!(b.try_take().is_none());
        drop((two, three));
        assert_eq!(b.open(), 0);
    }
}
