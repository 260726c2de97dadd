//! The scheduler's node filters, in the order it applies them, and the "no suitable node" reason
//! a task gets when every node fails one.
//!
//! A node is counted once, under the first filter it fails: not available (not Ready, or not
//! Active), without the task's runtime, not matching the constraints, full (see [`full`]),
//! insufficient resources, already holding `--replicas-max-per-node` live tasks of the service.

use crate::model::{Availability, NodeResources, NodeState, ResourceAmounts, RuntimeKind};
use crate::wire::ASSIGNMENTS_MAX;
use crate::wire::answer::NODE_LIVE_BYTES_MAX;

use super::NodeView;
use super::constraint::{Constraint, all_match};

/// Why a node cannot take a task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rejection {
    NotAvailable,
    NoRuntime,
    Constraints,
    Full,
    Resources,
    /// The node holds as many live tasks of the service as `Placement::max_replicas` allows.
    MaxReplicas,
}

/// New tasks go only to nodes that are Ready and Active (Pause and Drain take none).
pub fn available(node: &NodeView) -> bool {
    node.state == NodeState::Ready && node.availability == Availability::Active
}

pub fn has_runtime(node: &NodeView, runtime: RuntimeKind) -> bool {
    node.runtimes.iter().any(|r| r == runtime.as_str())
}

/// The filters that do not change while a schedule call places tasks: availability, runtime,
/// constraints. Resources are checked apart, since each placement uses some up.
pub fn check_static(
    node: &NodeView,
    runtime: RuntimeKind,
    constraints: &[Constraint],
) -> Result<(), Rejection> {
    if !available(node) {
        return Err(Rejection::NotAvailable);
    }
    if !has_runtime(node, runtime) {
        return Err(Rejection::NoRuntime);
    }
    if !all_match(constraints, node) {
        return Err(Rejection::Constraints);
    }
    Ok(())
}

/// Whether a node that holds `tasks` live tasks weighing `bytes` (as
/// `wire::answer::assignment_bytes_max` counts them) is full for a task weighing `want_bytes`:
/// it holds [`ASSIGNMENTS_MAX`] tasks already, or the task would take its session answer past
/// [`NODE_LIVE_BYTES_MAX`]. Its answer lists every live task, so a node is never given more
/// than one answer can carry.
pub fn full(tasks: u64, bytes: usize, want_bytes: usize) -> bool {
    tasks >= ASSIGNMENTS_MAX as u64 || bytes.saturating_add(want_bytes) > NODE_LIVE_BYTES_MAX
}

/// Whether `want` fits on a node of `total` that already has `used` reserved. A dimension the
/// task reserves nothing of always fits, even on a node that is over-committed in it.
pub fn fits(total: &NodeResources, used: &ResourceAmounts, want: &ResourceAmounts) -> bool {
    let dim = |total: u64, used: u64, want: u64| {
        want == 0 || used.checked_add(want).is_some_and(|sum| sum <= total)
    };
    dim(total.nano_cpus, used.nano_cpus, want.nano_cpus)
        && dim(total.memory_bytes, used.memory_bytes, want.memory_bytes)
}

/// Adds `b` to `a`, saturating: reservations are user input and may be absurd.
pub fn add(a: &mut ResourceAmounts, b: &ResourceAmounts) {
    a.nano_cpus = a.nano_cpus.saturating_add(b.nano_cpus);
    a.memory_bytes = a.memory_bytes.saturating_add(b.memory_bytes);
}

/// How many nodes each filter turned away, for the pending reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectionCounts {
    pub not_available: usize,
    pub no_runtime: usize,
    pub constraints: usize,
    pub full: usize,
    pub resources: usize,
    pub max_replicas: usize,
}

impl RejectionCounts {
    pub fn count(&mut self, r: Rejection) {
        match r {
            Rejection::NotAvailable => self.not_available += 1,
            Rejection::NoRuntime => self.no_runtime += 1,
            Rejection::Constraints => self.constraints += 1,
            Rejection::Full => self.full += 1,
            Rejection::Resources => self.resources += 1,
            Rejection::MaxReplicas => self.max_replicas += 1,
        }
    }

    /// Both counts added up.
    pub fn plus(&self, other: &RejectionCounts) -> RejectionCounts {
        RejectionCounts {
            not_available: self.not_available + other.not_available,
            no_runtime: self.no_runtime + other.no_runtime,
            constraints: self.constraints + other.constraints,
            full: self.full + other.full,
            resources: self.resources + other.resources,
            max_replicas: self.max_replicas + other.max_replicas,
        }
    }

    /// Docker's wording: `no suitable node (1 node not available, 2 nodes not matching
    /// constraints, 1 node full, 1 node with insufficient resources)`; zero counts are left out.
    /// "full" is ours: Docker has no per-node task limit. Nodes at the service's
    /// `--replicas-max-per-node` add Docker's `max replicas per node limit exceed`, uncounted
    /// as Docker writes it.
    pub fn reason(&self, runtime: RuntimeKind) -> String {
        let nodes = |n: usize| {
            if n == 1 {
                "1 node".to_string()
            } else {
                format!("{n} nodes")
            }
        };
        let mut parts = Vec::new();
        if self.not_available > 0 {
            parts.push(format!("{} not available", nodes(self.not_available)));
        }
        if self.no_runtime > 0 {
            parts.push(format!(
                "{} without the {} runtime",
                nodes(self.no_runtime),
                runtime.as_str()
            ));
        }
        if self.constraints > 0 {
            parts.push(format!(
                "{} not matching constraints",
                nodes(self.constraints)
            ));
        }
        if self.full > 0 {
            parts.push(format!("{} full", nodes(self.full)));
        }
        if self.resources > 0 {
            parts.push(format!(
                "{} with insufficient resources",
                nodes(self.resources)
            ));
        }
        if self.max_replicas > 0 {
            parts.push("max replicas per node limit exceed".to_string());
        }
        if parts.is_empty() {
            return "no suitable node (no nodes in the cluster)".to_string();
        }
        format!("no suitable node ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests_support::node;

    #[test]
    fn reason_counts_and_plurals() {
        let c = RejectionCounts {
            not_available: 1,
            no_runtime: 0,
            constraints: 2,
            full: 0,
            resources: 1,
            max_replicas: 0,
        };
        assert_eq!(
            c.reason(RuntimeKind::Docker),
            "no suitable node (1 node not available, 2 nodes not matching constraints, \
             1 node with insufficient resources)"
        );
        let c = RejectionCounts {
            no_runtime: 3,
            ..Default::default()
        };
        assert_eq!(
            c.reason(RuntimeKind::Docker),
            "no suitable node (3 nodes without the docker runtime)"
        );
        let c = RejectionCounts {
            max_replicas: 2,
            ..Default::default()
        };
        assert_eq!(
            c.reason(RuntimeKind::Docker),
            "no suitable node (max replicas per node limit exceed)",
            "Docker's wording, without a count"
        );
        assert_eq!(
            RejectionCounts::default().reason(RuntimeKind::Process),
            "no suitable node (no nodes in the cluster)"
        );
    }

    #[test]
    fn filters_in_order() {
        let mut n = node(1);
        assert_eq!(check_static(&n, RuntimeKind::Process, &[]), Ok(()));
        assert_eq!(
            check_static(&n, RuntimeKind::Docker, &[]),
            Err(Rejection::NoRuntime)
        );
        let c = [Constraint::parse("node.labels.env==prod").unwrap()];
        assert_eq!(
            check_static(&n, RuntimeKind::Process, &c),
            Err(Rejection::Constraints)
        );
        n.availability = Availability::Pause;
        assert_eq!(
            check_static(&n, RuntimeKind::Docker, &c),
            Err(Rejection::NotAvailable),
            "the first failing filter is the one counted"
        );
        n.availability = Availability::Active;
        n.state = NodeState::Down;
        assert!(!available(&n));
    }

    #[test]
    fn fits_checks_each_dimension() {
        let total = NodeResources {
            nano_cpus: 2_000_000_000,
            memory_bytes: 1 << 30,
        };
        let used = ResourceAmounts {
            nano_cpus: 1_500_000_000,
            memory_bytes: 0,
        };
        let half = ResourceAmounts {
            nano_cpus: 500_000_000,
            memory_bytes: 0,
        };
        assert!(fits(&total, &used, &half));
        let more = ResourceAmounts {
            nano_cpus: 500_000_001,
            memory_bytes: 0,
        };
        assert!(!fits(&total, &used, &more));
        let over = ResourceAmounts {
            nano_cpus: 3_000_000_000,
            memory_bytes: 0,
        };
        assert!(
            fits(&total, &over, &ResourceAmounts::default()),
            "reserving nothing fits even on an over-committed node"
        );
        let huge = ResourceAmounts {
            nano_cpus: u64::MAX,
            memory_bytes: 0,
        };
        assert!(!fits(&total, &used, &huge), "no overflow");
    }
}
