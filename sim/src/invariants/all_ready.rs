//! Invariant (a): once the cluster has healed, every live node sees every live node Ready, and
//! no node that crashed for good as Ready (Down, or forgotten: a node restarted after it died
//! may never have heard of it, since foca's join feed lists only live members).

use swarm_actors::model::NodeState;

use super::REPORT_MAX;
use crate::node::{SimNode, node_id};

pub fn check(nodes: &[SimNode]) -> Vec<String> {
    let mut found = Vec::new();
    for (o, observer) in nodes.iter().enumerate() {
        let Some(m) = observer.machine.as_ref().filter(|_| observer.is_alive()) else {
            continue;
        };
        let states = m.member_states();
        for (x, subject) in nodes.iter().enumerate() {
            let seen = states.get(&node_id(x)).copied();
            let wrong = if subject.is_alive() {
                seen != Some(NodeState::Ready)
            } else {
                seen == Some(NodeState::Ready)
            };
            if wrong && found.len() < REPORT_MAX {
                let truth = if subject.is_alive() { "live" } else { "dead" };
                found.push(format!("(a) node {o} sees {truth} node {x} as {seen:?}"));
            }
        }
    }
    found
}
