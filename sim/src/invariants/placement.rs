//! Invariant (h): no task is placed on a node that, in the view the leader's pass computed
//! from, was drained or paused, not Ready (Down, or Unknown during the grace after leadership
//! began), without the task's runtime, or not matching the task's constraints.
//!
//! "At the time of placement" is the pass's own view: the node objects it read from its
//! manager's store and the Ready set of that manager's membership. A drain that commits
//! between that read and the placement's write is not a violation (SwarmKit has the same
//! window; the orchestrator then shuts the task down and replaces it). A placement is judged
//! when the pass computes it and reported only if its write commits. Global tasks, which the
//! orchestrator creates already assigned, are judged the same way.

use swarm_actors::model::{Availability, NodeId, NodeState, Task, TaskSpec};
use swarm_actors::scheduler::NodeView;
use swarm_actors::scheduler::constraint::{Constraint, all_match};
use swarm_actors::scheduler::filter::has_runtime;

use crate::clock::Millis;

/// Why placing a task of `spec` on `node` was wrong in `views`, or `None` if it was allowed.
pub fn judge(views: &[NodeView], node: NodeId, spec: &TaskSpec) -> Option<String> {
    let Some(v) = views.iter().find(|v| v.id == node) else {
        return Some("the node is not in the leader's view".into());
    };
    if v.state != NodeState::Ready {
        return Some(format!("the leader saw the node {}", v.state));
    }
    if v.availability != Availability::Active {
        return Some(format!("the node was {}", v.availability));
    }
    if !has_runtime(v, spec.runtime) {
        return Some(format!(
            "the node lacks the {} runtime",
            spec.runtime.as_str()
        ));
    }
    match Constraint::parse_all(&spec.placement.constraints) {
        Ok(c) if all_match(&c, v) => None,
        Ok(_) => Some(format!(
            "the node did not match {:?}",
            spec.placement.constraints
        )),
        Err(e) => Some(format!("the constraints do not parse: {e}")),
    }
}

pub fn violation(at: Millis, task: &Task, why: String) -> String {
    let node = task.node_id.map_or(u128::MAX, |n| n.0);
    format!(
        "(h) at {at} ms task {} (slot {}) was placed on node {} although {why}",
        task.id.0 as u32,
        task.slot,
        node.saturating_sub(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_actors::model::{
        NodeResources, Placement, Resources, RestartPolicy, Role, RuntimeKind,
    };

    fn spec(constraint: &str) -> TaskSpec {
        TaskSpec {
            networks: Vec::new(),
            runtime: RuntimeKind::Process,
            image: "sim".into(),
            args: Vec::new(),
            env: Vec::new(),
            health: None,
            resources: Resources::default(),
            restart: RestartPolicy::default(),
            placement: Placement {
                constraints: vec![constraint.into()],
                preferences: Vec::new(),
                max_replicas: 0,
            },
            stop_grace_period_ms: 0,
            user: None,
            container_labels: Default::default(),
            force_update: 0,
            secrets: Vec::new(),
            configs: Vec::new(),
            entrypoint: Vec::new(),
            workdir: None,
            hostname: None,
            mounts: Vec::new(),
        }
    }

    fn view(id: u128) -> NodeView<'static> {
        NodeView {
            id: NodeId(id),
            hostname: format!("n{id}").into(),
            role: Role::Worker,
            availability: Availability::Active,
            state: NodeState::Ready,
            labels: std::borrow::Cow::Owned([("tier".to_string(), "a".to_string())].into()),
            engine_labels: Default::default(),
            runtimes: vec!["process".into()].into(),
            resources: NodeResources {
                nano_cpus: 1,
                memory_bytes: 1,
            },
        }
    }

    #[test]
    fn drained_down_and_unmatched_nodes_are_refused() {
        let task = spec("node.labels.tier==a");
        let mut views = vec![view(1)];
        assert_eq!(judge(&views, NodeId(1), &task), None);
        assert!(judge(&views, NodeId(2), &task).is_some(), "unknown node");
        views[0].availability = Availability::Drain;
        assert!(judge(&views, NodeId(1), &task).unwrap().contains("Drain"));
        views[0].availability = Availability::Active;
        views[0].state = NodeState::Unknown;
        assert!(judge(&views, NodeId(1), &task).unwrap().contains("Unknown"));
        views[0].state = NodeState::Ready;
        views[0].labels.to_mut().clear();
        assert!(judge(&views, NodeId(1), &task).unwrap().contains("match"));
    }
}
