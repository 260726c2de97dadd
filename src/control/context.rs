//! What every control request is served with: the node's handles. A leaf of the control
//! modules (server, service and logs all take it), so that none of them imports another for it.

use swarm_actors::agent::AgentHandle;
use swarm_actors::node::NodeHandle;
use swarm_actors::registry::Registry;
use swarm_actors::replica::StoreHandle;

#[derive(Clone)]
pub struct ControlContext {
    pub node: NodeHandle,
    pub registry: Registry,
    /// This node's agent: `service logs` asks it for the node's own tasks without the network.
    pub agent: Option<AgentHandle>,
}

impl ControlContext {
    /// The store, when this node is a manager now (roles change with promote and demote).
    pub(crate) async fn store(&self) -> Option<StoreHandle> {
        self.node.store().await.ok().flatten()
    }
}
