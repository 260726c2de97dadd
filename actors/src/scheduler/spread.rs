//! The spread order: which eligible node gets a service's next task.
//!
//! One [`SpreadTree`] is built per group of identical pending tasks. Each placement preference
//! adds one level: the nodes are split by the value of the preference's label (nodes without the
//! label form their own group, as in SwarmKit), and each group counts the service's tasks on its
//! nodes. The leaves order nodes by (tasks of this service, tasks overall, node ID).
//!
//! ```text
//!             root
//!       zone=a (3)   zone=b (1)   <no zone> (2)      branch: ordered by (count, value)
//!        /    \         |             |
//!      n1(2) n2(1)    n3(1)         n4(2)            leaf: ordered by (svc, total, id)
//! ```
//!
//! Picking walks from the root down the least-loaded group at each level; a placement updates the
//! counts on the path. Both are O(depth × log n), so a group of k tasks over n nodes costs
//! O(n log n + k × depth × log n) instead of O(k × n).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::NodeId;

use super::NodeView;
use super::constraint::Preference;

/// Marks a node that is not (or no longer) a candidate.
const NONE: u32 = u32::MAX;

#[derive(Debug)]
enum Kind {
    /// Children that still hold a candidate, by (tasks of the service under them, child index).
    /// Child indices follow the order of the label values, so ties break by value.
    Branch(BTreeSet<(u64, u32)>),
    /// Candidate nodes by (tasks of this service, tasks overall, node ID, index in `nodes`).
    Leaf(BTreeSet<(u64, u64, NodeId, usize)>),
}

#[derive(Debug)]
struct Entry {
    parent: u32,
    /// Tasks of the service on the nodes under this entry.
    count: u64,
    kind: Kind,
}

/// The candidates of one group of pending tasks, in spread order.
#[derive(Debug)]
pub struct SpreadTree {
    arena: Vec<Entry>,
    /// Per index in `nodes`: its leaf in `arena`, or `NONE`.
    leaf_of: Vec<u32>,
    /// Per index in `nodes`: (tasks of this service, tasks overall) as the tree counts them.
    load: Vec<(u64, u64)>,
}

impl SpreadTree {
    /// Builds the tree over `eligible` (indices into `nodes`). `load(i)` gives node i's current
    /// (tasks of this service, tasks overall).
    pub fn build(
        nodes: &[NodeView],
        eligible: &[usize],
        prefs: &[Preference],
        load: impl Fn(usize) -> (u64, u64),
    ) -> SpreadTree {
        let mut tree = SpreadTree {
            arena: Vec::new(),
            leaf_of: vec![NONE; nodes.len()],
            load: vec![(0, 0); nodes.len()],
        };
        for &i in eligible {
            tree.load[i] = load(i);
        }
        tree.build_level(nodes, eligible.to_vec(), prefs, NONE);
        tree
    }

    fn build_level(
        &mut self,
        nodes: &[NodeView],
        members: Vec<usize>,
        prefs: &[Preference],
        parent: u32,
    ) -> u32 {
        let me = self.arena.len() as u32;
        let count = members.iter().map(|&i| self.load[i].0).sum();
        match prefs.split_first() {
            None => {
                // Collecting sorts once and builds the set in bulk, cheaper than inserting.
                let set: BTreeSet<_> = members
                    .iter()
                    .map(|&i| {
                        let (svc, total) = self.load[i];
                        (svc, total, nodes[i].id, i)
                    })
                    .collect();
                for &i in &members {
                    self.leaf_of[i] = me;
                }
                self.arena.push(Entry {
                    parent,
                    count,
                    kind: Kind::Leaf(set),
                });
            }
            Some((pref, rest)) => {
                self.arena.push(Entry {
                    parent,
                    count,
                    kind: Kind::Branch(BTreeSet::new()),
                });
                // `None` (label missing) sorts first; it is a group like any other.
                let mut groups: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
                for i in members {
                    let v = pref.spread.value(&nodes[i]).map(|v| v.into_owned());
                    groups.entry(v).or_default().push(i);
                }
                for (_, group) in groups {
                    let child = self.build_level(nodes, group, rest, me);
                    let c = self.arena[child as usize].count;
                    if let Kind::Branch(set) = &mut self.arena[me as usize].kind {
                        set.insert((c, child));
                    }
                }
            }
        }
        me
    }

    /// The node the next task should go to, or `None` when no candidate is left.
    pub fn best(&self) -> Option<usize> {
        let mut at = 0usize;
        loop {
            match &self.arena.get(at)?.kind {
                Kind::Branch(set) => at = set.first()?.1 as usize,
                Kind::Leaf(set) => return set.first().map(|k| k.3),
            }
        }
    }

    /// Records one more task of the service on node `i` (a candidate).
    pub fn placed(&mut self, nodes: &[NodeView], i: usize) {
        let leaf = self.leaf_of[i];
        assert_ne!(leaf, NONE, "placed on a node that is not a candidate");
        let (svc, total) = self.load[i];
        if let Kind::Leaf(set) = &mut self.arena[leaf as usize].kind {
            let removed = set.remove(&(svc, total, nodes[i].id, i));
            assert!(removed, "a candidate is in its leaf");
            set.insert((svc + 1, total + 1, nodes[i].id, i));
        }
        self.load[i] = (svc + 1, total + 1);
        // Walk up: each entry's count grows by one, and its parent re-sorts it.
        let mut child = leaf;
        while child != NONE {
            let entry = &mut self.arena[child as usize];
            let (old, parent) = (entry.count, entry.parent);
            entry.count += 1;
            if parent != NONE
                && let Kind::Branch(set) = &mut self.arena[parent as usize].kind
            {
                let removed = set.remove(&(old, child));
                assert!(removed, "a non-empty child is in its parent");
                set.insert((old + 1, child));
            }
            child = parent;
        }
    }

    /// Drops node `i` from the candidates (it cannot take any more of this group's tasks);
    /// groups left empty drop out of their parents.
    pub fn remove(&mut self, nodes: &[NodeView], i: usize) {
        let leaf = self.leaf_of[i];
        if leaf == NONE {
            return;
        }
        self.leaf_of[i] = NONE;
        let (svc, total) = self.load[i];
        let mut empty = match &mut self.arena[leaf as usize].kind {
            Kind::Leaf(set) => {
                set.remove(&(svc, total, nodes[i].id, i));
                set.is_empty()
            }
            Kind::Branch(_) => unreachable!("leaf_of points at leaves"),
        };
        let mut child = leaf;
        while empty {
            let (count, parent) = {
                let e = &self.arena[child as usize];
                (e.count, e.parent)
            };
            if parent == NONE {
                break;
            }
            empty = match &mut self.arena[parent as usize].kind {
                Kind::Branch(set) => {
                    set.remove(&(count, child));
                    set.is_empty()
                }
                Kind::Leaf(_) => unreachable!("parents are branches"),
            };
            child = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests_support::node;

    fn zoned(zones: &[Option<&str>]) -> Vec<NodeView<'static>> {
        zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let mut n = node(i as u128 + 1);
                if let Some(z) = z {
                    n.labels.to_mut().insert("zone".into(), z.to_string());
                }
                n
            })
            .collect()
    }

    #[test]
    fn leaf_orders_by_service_then_total_then_id() {
        let nodes = zoned(&[None, None, None]);
        let loads = [(1, 0), (0, 5), (0, 5)];
        let tree = SpreadTree::build(&nodes, &[0, 1, 2], &[], |i| loads[i]);
        assert_eq!(
            tree.best(),
            Some(1),
            "fewest of the service, then lowest ID"
        );
        let loads = [(0, 9), (0, 5), (0, 7)];
        let tree = SpreadTree::build(&nodes, &[0, 1, 2], &[], |i| loads[i]);
        assert_eq!(tree.best(), Some(1), "then fewest overall");
    }

    #[test]
    fn spreads_over_label_values_with_missing_as_a_group() {
        // Zone a has three nodes, zone b one, and one node has no zone: each of the three
        // groups should get a third of the tasks, whatever its size.
        let nodes = zoned(&[Some("a"), Some("a"), Some("a"), Some("b"), None]);
        let prefs = [Preference::parse("spread=node.labels.zone").unwrap()];
        let mut tree = SpreadTree::build(&nodes, &[0, 1, 2, 3, 4], &prefs, |_| (0, 0));
        let mut per_node = [0u32; 5];
        for _ in 0..9 {
            let i = tree.best().unwrap();
            per_node[i] += 1;
            tree.placed(&nodes, i);
        }
        assert_eq!(per_node[0] + per_node[1] + per_node[2], 3);
        assert_eq!(per_node[3], 3);
        assert_eq!(per_node[4], 3);
        assert_eq!(&per_node[..3], &[1, 1, 1]);
    }

    #[test]
    fn removing_the_last_node_of_a_group_skips_the_group() {
        let nodes = zoned(&[Some("a"), Some("b"), Some("b")]);
        let prefs = [Preference::parse("spread=node.labels.zone").unwrap()];
        let mut tree = SpreadTree::build(&nodes, &[0, 1, 2], &prefs, |_| (0, 0));
        assert_eq!(tree.best(), Some(0));
        tree.remove(&nodes, 0);
        assert_eq!(tree.best(), Some(1));
        tree.remove(&nodes, 1);
        tree.remove(&nodes, 2);
        assert_eq!(tree.best(), None);
        tree.remove(&nodes, 2);
    }

    #[test]
    fn empty_tree_has_no_best() {
        let nodes = zoned(&[None]);
        let tree = SpreadTree::build(&nodes, &[], &[], |_| (0, 0));
        assert_eq!(tree.best(), None);
        let prefs = [Preference::parse("spread=node.labels.zone").unwrap()];
        let tree = SpreadTree::build(&nodes, &[], &prefs, |_| (0, 0));
        assert_eq!(tree.best(), None);
    }
}
