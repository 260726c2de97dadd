//! Invariant (c): once the cluster has healed, every live node holds every live node's current
//! description (the one that node holds of itself).

use super::REPORT_MAX;
use crate::node::{SimNode, node_id};

pub fn check(nodes: &[SimNode]) -> Vec<String> {
    let mut found = Vec::new();
    for (x, subject) in nodes.iter().enumerate() {
        let Some(own) = subject
            .machine
            .as_ref()
            .filter(|_| subject.is_alive())
            .and_then(|m| m.description(node_id(x)))
        else {
            continue;
        };
        for (o, observer) in nodes.iter().enumerate() {
            if o == x || !observer.is_alive() {
                continue;
            }
            let Some(m) = observer.machine.as_ref() else {
                continue;
            };
            let held = m.description(node_id(x));
            if held != Some(own) && found.len() < REPORT_MAX {
                let what = match held {
                    None => "no description".to_string(),
                    Some(d) => format!("version {}", d.version),
                };
                found.push(format!(
                    "(c) node {o} holds {what} of node {x}, whose current is version {}",
                    own.version
                ));
            }
        }
    }
    found
}
