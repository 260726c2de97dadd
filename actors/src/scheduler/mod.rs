//! The scheduler: which node each pending task goes to, as a pure function.
//!
//! The leader calls [`schedule`] with the nodes, the tasks already placed and the tasks waiting,
//! and records the [`Decision`]s it returns. Nothing here reads a clock or draws a random number,
//! so the same input gives the same placements, in the simulator as on a real cluster.
//!
//! ```text
//! pending tasks ──group by (service, spec)──▶ for each group:
//!     filter.rs   Ready+Active → runtime → constraints → max replicas   (once per group)
//!     spread.rs   preferences → fewest of service → fewest overall → node ID
//!     filter.rs   node full?  reservations fit?  no → drop the node for this group, pick again
//!                 placed: at the service's max replicas now? → drop the node for this group
//! ```
//!
//! `Placement::max_replicas` (`--replicas-max-per-node`): a replicated task never goes to a
//! node that already holds that many live tasks of its service (any spec version, tasks being
//! stopped included, as they still run there); Docker's reason `max replicas per node limit
//! exceed`. A global task (`pin`) is one per node anyway and ignores it.
//!
//! A node is full when it holds `wire::ASSIGNMENTS_MAX` live tasks, or when the task would take
//! its live tasks past the bytes one session answer may carry (`wire::answer`): its answer
//! lists every live task, so a task that does not fit waits here, pending, rather than go
//! missing from the node's list.
//!
//! Submodules: [`constraint`] parses `--constraint` and `--placement-pref`, [`filter`] holds the
//! node filters and the "no suitable node" wording, `spread` the spread order.

pub mod constraint;
pub mod filter;
mod spread;
mod views;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{
    Availability, NodeId, NodeResources, NodeState, PortProtocol, ResourceAmounts, Role, ServiceId,
    TaskId, TaskSpec,
};

use constraint::{Constraint, Preference};
use filter::{Rejection, RejectionCounts};
use spread::SpreadTree;
pub use views::{Unseen, node_views};

/// A node as the scheduler and the orchestrators see it; the leader builds it from the store's
/// node object and the membership view. Its strings and maps borrow from the node object: the
/// leader builds every node's view on every pass, and copying them cost more than the
/// scheduling (tests own theirs).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeView<'a> {
    pub id: NodeId,
    pub hostname: Cow<'a, str>,
    pub role: Role,
    pub availability: Availability,
    /// Ready or Down as membership says; anything but Ready takes no new tasks.
    pub state: NodeState,
    /// Labels set on the node object (`node update --label-add`): `node.labels.<k>`.
    pub labels: Cow<'a, BTreeMap<String, String>>,
    /// Labels the node's daemon was started with (`--label`): `engine.labels.<k>`.
    pub engine_labels: Cow<'a, BTreeMap<String, String>>,
    /// Runtimes the node can run (`process`, `docker`).
    pub runtimes: Cow<'a, [String]>,
    /// What the node has in total; reservations of its tasks are subtracted from it.
    pub resources: NodeResources,
}

/// A task already placed and not terminal: it holds its reservations, counts for spread, and
/// takes one of its node's `wire::ASSIGNMENTS_MAX` places and `bytes` of its answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TaskLoad {
    pub task: TaskId,
    pub service: ServiceId,
    pub node: NodeId,
    pub reservations: ResourceAmounts,
    /// `wire::answer::assignment_bytes_max` of its spec.
    pub bytes: usize,
}

/// A task waiting for a node.
#[derive(Clone, Copy, Debug)]
pub struct PendingTask<'a> {
    pub task: TaskId,
    pub service: ServiceId,
    pub spec: &'a TaskSpec,
    /// The node a global service's task was made for: only that node is considered (and
    /// counted in the pending reason). `None` for replicated tasks.
    pub pin: Option<NodeId>,
    /// The host-mode ports its service publishes: a node where a live task already publishes
    /// one of them in host mode cannot take it.
    pub host_ports: &'a [HostPort],
}

/// A published port bound on the task's own node (`mode=host`): its number and protocol.
pub type HostPort = (u16, PortProtocol);

/// A host-mode port a live task holds on its node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostPortLoad {
    pub node: NodeId,
    pub port: HostPort,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Decision {
    Place {
        task: TaskId,
        node: NodeId,
    },
    /// No node can take the task now; `reason` goes to the task's status message.
    Pending {
        task: TaskId,
        reason: String,
    },
}

impl Decision {
    pub fn task(&self) -> TaskId {
        match self {
            Decision::Place { task, .. } | Decision::Pending { task, .. } => *task,
        }
    }
}

/// Pending tasks of one service with one spec: they pass the same filters, so the filters run
/// once for all of them.
struct Group<'a> {
    service: ServiceId,
    pin: Option<NodeId>,
    spec: &'a TaskSpec,
    host_ports: &'a [HostPort],
    /// Indices into `pending`, in order.
    members: Vec<usize>,
}

/// Decides a node for each pending task, in one pass. Returns one decision per entry of
/// `pending`, in the same order. Placements made earlier in the call count (for resources and
/// spread) when later tasks are placed. Running tasks on nodes not in `nodes` are ignored.
pub fn schedule(
    nodes: &[NodeView],
    running: &[TaskLoad],
    pending: &[PendingTask<'_>],
) -> Vec<Decision> {
    schedule_with_ports(nodes, running, &[], pending)
}

/// [`schedule`], with the host-mode ports live tasks hold: no node gets two live tasks
/// publishing the same host-mode port and protocol (placements made in the call count).
pub fn schedule_with_ports(
    nodes: &[NodeView],
    running: &[TaskLoad],
    host_used: &[HostPortLoad],
    pending: &[PendingTask<'_>],
) -> Vec<Decision> {
    // HashMaps here are only looked up, never iterated, so their order reaches no output.
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut used = vec![ResourceAmounts::default(); nodes.len()];
    let mut total = vec![0u64; nodes.len()];
    let mut bytes = vec![0usize; nodes.len()];
    let mut per_service: HashMap<(ServiceId, usize), u64> = HashMap::new();
    for load in running {
        if let Some(&i) = index.get(&load.node) {
            filter::add(&mut used[i], &load.reservations);
            total[i] += 1;
            bytes[i] = bytes[i].saturating_add(load.bytes);
            *per_service.entry((load.service, i)).or_default() += 1;
        }
    }
    let mut ports_used: HashSet<(usize, HostPort)> = host_used
        .iter()
        .filter_map(|h| index.get(&h.node).map(|&i| (i, h.port)))
        .collect();

    let groups = group(pending);
    let mut decisions: Vec<Option<Decision>> = vec![None; pending.len()];
    for g in &groups {
        let pend = |reason: &str, decisions: &mut Vec<Option<Decision>>| {
            for &m in &g.members {
                decisions[m] = Some(Decision::Pending {
                    task: pending[m].task,
                    reason: reason.to_string(),
                });
            }
        };
        // Specs are validated when a service is created; a bad one here is refused anyway.
        let constraints = match Constraint::parse_all(&g.spec.placement.constraints) {
            Ok(c) => c,
            Err(e) => {
                pend(&e.to_string(), &mut decisions);
                continue;
            }
        };
        let prefs = match Preference::parse_all(&g.spec.placement.preferences) {
            Ok(p) => p,
            Err(e) => {
                pend(&e.to_string(), &mut decisions);
                continue;
            }
        };
        // 0: no limit. Global tasks are one per node by construction.
        let max = match g.pin {
            None => g.spec.placement.max_replicas,
            Some(_) => 0,
        };
        let at_max = |i: usize, per_service: &HashMap<(ServiceId, usize), u64>| {
            max > 0 && per_service.get(&(g.service, i)).copied().unwrap_or(0) >= max
        };
        let mut counts = RejectionCounts::default();
        let mut eligible = Vec::new();
        // The first host-mode port of the group found taken on a suitable node, for the reason.
        let mut port_taken: Option<HostPort> = None;
        for (i, n) in nodes.iter().enumerate() {
            if g.pin.is_some_and(|pin| pin != n.id) {
                continue;
            }
            match filter::check_static(n, g.spec.runtime, &constraints) {
                Ok(()) if at_max(i, &per_service) => counts.count(Rejection::MaxReplicas),
                Ok(()) => match g.host_ports.iter().find(|p| ports_used.contains(&(i, **p))) {
                    Some(p) => {
                        port_taken.get_or_insert(*p);
                    }
                    None => eligible.push(i),
                },
                Err(r) => counts.count(r),
            }
        }
        let mut tree = SpreadTree::build(nodes, &eligible, &prefs, |i| {
            let svc = per_service.get(&(g.service, i)).copied().unwrap_or(0);
            (svc, total[i])
        });
        let want = g.spec.resources.reservations;
        let want_bytes = crate::wire::answer::assignment_bytes_max(g.spec);
        // Nodes dropped for the group by the filters that change as tasks are placed.
        let mut dropped = RejectionCounts::default();
        for &m in &g.members {
            let placed = loop {
                let Some(i) = tree.best() else { break None };
                let refused = if filter::full(total[i], bytes[i], want_bytes) {
                    Some(Rejection::Full)
                } else if !filter::fits(&nodes[i].resources, &used[i], &want) {
                    Some(Rejection::Resources)
                } else {
                    None
                };
                let Some(r) = refused else { break Some(i) };
                // Every task of the group reserves and weighs the same, and a node's tasks
                // and reservations only grow within a call, so this node can take none of the
                // group's remaining tasks.
                dropped.count(r);
                tree.remove(nodes, i);
            };
            decisions[m] = Some(match placed {
                Some(i) => {
                    tree.placed(nodes, i);
                    filter::add(&mut used[i], &want);
                    total[i] += 1;
                    bytes[i] = bytes[i].saturating_add(want_bytes);
                    *per_service.entry((g.service, i)).or_default() += 1;
                    if at_max(i, &per_service) {
                        // The node holds as many of the service as it may: no more of it.
                        dropped.count(Rejection::MaxReplicas);
                        tree.remove(nodes, i);
                    }
                    if let Some(p) = g.host_ports.first() {
                        // The node now holds the group's host ports: no other task of the
                        // group may go there.
                        ports_used.extend(g.host_ports.iter().map(|p| (i, *p)));
                        port_taken.get_or_insert(*p);
                        tree.remove(nodes, i);
                    }
                    Decision::Place {
                        task: pending[m].task,
                        node: nodes[i].id,
                    }
                }
                None => {
                    // The tree is empty only once every eligible node was dropped, for being
                    // full or for resources.
                    let c = counts.plus(&dropped);
                    let none = c == RejectionCounts::default();
                    let reason = match (g.pin, port_taken) {
                        (_, Some((port, proto))) => {
                            let mut r = format!(
                                "host-mode port {port}/{} already in use on every suitable node",
                                proto.as_str()
                            );
                            if !none {
                                r = format!("{r}; {}", c.reason(g.spec.runtime));
                            }
                            r
                        }
                        (Some(pin), None) if none => {
                            format!("no suitable node (node {pin} is not in the cluster)")
                        }
                        _ => c.reason(g.spec.runtime),
                    };
                    Decision::Pending {
                        task: pending[m].task,
                        reason,
                    }
                }
            });
        }
    }
    decisions
        .into_iter()
        .map(|d| d.expect("every pending task belongs to one group"))
        .collect()
}

/// Groups pending tasks by service, pin and identical spec, groups in order of first
/// appearance.
fn group<'a>(pending: &[PendingTask<'a>]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut by_service: HashMap<ServiceId, Vec<usize>> = HashMap::new();
    for (m, p) in pending.iter().enumerate() {
        let candidates = by_service.entry(p.service).or_default();
        // Tasks of one service share a spec allocation or equal specs; comparing the pointer
        // first keeps the common case cheap.
        let found = candidates.iter().copied().find(|&gi| {
            let (s, pin) = (groups[gi].spec, groups[gi].pin);
            pin == p.pin
                && groups[gi].host_ports == p.host_ports
                && (std::ptr::eq(s, p.spec) || s == p.spec)
        });
        match found {
            Some(gi) => groups[gi].members.push(m),
            None => {
                candidates.push(groups.len());
                groups.push(Group {
                    service: p.service,
                    pin: p.pin,
                    spec: p.spec,
                    host_ports: p.host_ports,
                    members: vec![m],
                });
            }
        }
    }
    groups
}

#[cfg(test)]
pub(crate) mod tests_support;

#[cfg(test)]
mod tests;
