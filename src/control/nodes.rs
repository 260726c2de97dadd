//! The node list as the control API shows it (`node ls`, `node ps`, and the node commands'
//! lookups): the store's view merged with membership's.

use swarm_actors::membership::MemberView;
use swarm_actors::model::{Availability, NodeState, Role};
use swarm_actors::node::admission;
use swarm_actors::store::{NodeObject, StoredObject};

use super::context::ControlContext;
use super::proto::NodeInfo;

/// Every node: the store's view (spec, role, leader) where this node is a manager, merged with
/// membership's (status, description). Whether the list may be stale.
pub(crate) async fn node_list(
    ctx: &ControlContext,
    linearizable: bool,
) -> Result<(Vec<NodeInfo>, bool), String> {
    let members = ctx.node.members().await.map_err(|e| e.to_string())?;
    let Some(store) = &ctx.store().await else {
        let rows = members
            .into_iter()
            .map(|m| from_member(m, ctx.node.id(), None))
            .collect();
        return Ok((with_mesh(ctx, rows).await, false));
    };
    let (objects, stale) = match admission::nodes(store, linearizable).await {
        Ok(r) => r,
        // No leader to confirm a read: answer from the local replica, marked stale.
        Err(_) => admission::nodes(store, false)
            .await
            .map_err(|e| e.to_string())?,
    };
    let status = store.status().await.map_err(|e| e.to_string())?;
    let leader = status.leader_node;
    let mut rows = Vec::new();
    for (node, obj) in &objects {
        // Status from membership; the description from membership, or else the one the leader
        // wrote into the store (a manager that just restarted has not heard every node yet).
        let mut member = members
            .iter()
            .find(|m| m.id == node.id)
            .cloned()
            .unwrap_or(MemberView {
                id: node.id,
                addr: node.addr,
                state: NodeState::Unknown,
                description: None,
            });
        if member.description.is_none() {
            member.description = node.description.clone();
        }
        let mut row = from_member(member, ctx.node.id(), leader);
        apply_spec(&mut row, node, obj, leader);
        rows.push(row);
    }
    // Members the store does not list yet (a join in flight) still show, from membership.
    for m in members {
        if !objects.iter().any(|(n, _)| n.id == m.id) {
            rows.push(from_member(m, ctx.node.id(), leader));
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((with_mesh(ctx, rows).await, stale))
}

/// The answering node's routing-mesh status on its own row (`node inspect`'s `Mesh`); other
/// nodes' rows carry none, as each node's mesh is known only to that node.
async fn with_mesh(ctx: &ControlContext, mut rows: Vec<NodeInfo>) -> Vec<NodeInfo> {
    let name = format!("mesh/{}", ctx.node.id());
    if let Ok(v) = ctx
        .registry
        .send(&name, "Status", serde_json::Value::Null)
        .await
        && let Some(row) = rows.iter_mut().find(|r| r.is_self)
    {
        row.mesh = serde_json::from_value(v).ok();
    }
    rows
}

fn apply_spec(
    row: &mut NodeInfo,
    node: &NodeObject,
    obj: &StoredObject,
    leader: Option<swarm_actors::model::NodeId>,
) {
    row.availability = node.spec.availability.to_string();
    row.role = node.spec.role.to_string();
    row.node_labels = node.spec.labels.clone();
    row.version = obj.version;
    row.created_ms = obj.created_ms;
    row.updated_ms = obj.updated_ms;
    row.manager_status = match (node.spec.role, node.raft_id) {
        (Role::Manager, _) if leader == Some(node.id) => "Leader".into(),
        (Role::Manager, _) if row.status == "Ready" => "Reachable".into(),
        (Role::Manager, _) => "Unreachable".into(),
        _ => String::new(),
    };
}

fn from_member(
    m: MemberView,
    me: swarm_actors::model::NodeId,
    leader: Option<swarm_actors::model::NodeId>,
) -> NodeInfo {
    let is_self = m.id == me;
    let status = m.state.to_string();
    let d = m.description;
    let role = d.as_ref().map(|d| d.role);
    let manager_status = match role {
        Some(Role::Manager) if leader == Some(m.id) => "Leader",
        Some(Role::Manager) if m.state == NodeState::Ready => "Reachable",
        Some(Role::Manager) => "Unreachable",
        _ => "",
    };
    NodeInfo {
        id: m.id.to_string(),
        hostname: d.as_ref().map(|d| d.hostname.clone()).unwrap_or_default(),
        status,
        availability: Availability::Active.to_string(),
        role: role.map(|r| r.to_string()).unwrap_or_default(),
        manager_status: manager_status.to_string(),
        engine_version: d
            .as_ref()
            .map(|d| d.engine_version.clone())
            .unwrap_or_default(),
        addr: m.addr.to_string(),
        labels: d.as_ref().map(|d| d.labels.clone()).unwrap_or_default(),
        nano_cpus: d.as_ref().map(|d| d.resources.nano_cpus).unwrap_or(0),
        memory_bytes: d.as_ref().map(|d| d.resources.memory_bytes).unwrap_or(0),
        runtimes: d.as_ref().map(|d| d.runtimes.clone()).unwrap_or_default(),
        description_version: d.as_ref().map(|d| d.version).unwrap_or(0),
        version: 0,
        created_ms: 0,
        updated_ms: 0,
        is_self,
        node_labels: Default::default(),
        mesh: None,
    }
}
