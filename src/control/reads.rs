//! Reads of the store the control API's commands share: the manager's store handle, and the
//! services, tasks and nodes it holds, confirmed with the leader when one answers.

use swarm_actors::model::{Service, Task};
use swarm_actors::replica::StoreHandle;
use swarm_actors::store::{Kind, NodeObject, ObjectBody, StoredObject};

use super::context::ControlContext;

/// Docker's answer when a worker is asked about cluster state.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

/// A stored service with the version its next write compares against.
#[derive(Clone)]
pub struct Found {
    pub service: Service,
    pub obj: StoredObject,
}

pub async fn manager_store(ctx: &ControlContext) -> Result<StoreHandle, String> {
    ctx.store().await.ok_or_else(|| NOT_A_MANAGER.to_string())
}

/// A linearizable read; without a leader to confirm it, the local replica's (possibly stale)
/// view, since showing something beats showing nothing.
pub(super) async fn read(store: &StoreHandle, kind: Kind) -> Result<Vec<StoredObject>, String> {
    match store.read(kind, true).await {
        Ok(r) => Ok(r.objects),
        Err(_) => store
            .read(kind, false)
            .await
            .map(|r| r.objects)
            .map_err(|e| e.to_string()),
    }
}

pub async fn services(store: &StoreHandle) -> Result<Vec<Found>, String> {
    Ok(read(store, Kind::Service)
        .await?
        .into_iter()
        .filter_map(|obj| match &obj.body {
            ObjectBody::Service(s) => Some(Found {
                service: s.clone(),
                obj,
            }),
            _ => None,
        })
        .collect())
}

pub async fn tasks(store: &StoreHandle) -> Result<Vec<Task>, String> {
    Ok(read(store, Kind::Task)
        .await?
        .into_iter()
        .filter_map(|o| match o.body {
            ObjectBody::Task(t) => Some(t),
            _ => None,
        })
        .collect())
}

pub async fn nodes(store: &StoreHandle) -> Result<Vec<NodeObject>, String> {
    Ok(read(store, Kind::Node)
        .await?
        .into_iter()
        .filter_map(|o| match o.body {
            ObjectBody::Node(n) => Some(n),
            _ => None,
        })
        .collect())
}

/// Finds one of `found` by name, full ID, or unique ID prefix (Docker's order); `what` names
/// the kind in errors and `name_id` gives an object's name and ID text.
pub fn resolve_named<T>(
    what: &str,
    found: Vec<T>,
    name: &str,
    name_id: impl Fn(&T) -> (&str, String),
) -> Result<T, String> {
    let mut by_name = None;
    let mut by_id = None;
    let mut by_prefix = Vec::new();
    for f in found {
        let (n, id) = name_id(&f);
        if n == name {
            by_name = Some(f);
        } else if id == name {
            by_id = Some(f);
        } else if !name.is_empty() && id.starts_with(name) {
            by_prefix.push(f);
        }
    }
    if let Some(f) = by_name.or(by_id) {
        return Ok(f);
    }
    match by_prefix.len() {
        0 => Err(format!("{what} {name} not found")),
        1 => Ok(by_prefix.remove(0)),
        _ => Err(format!("{what} {name} is ambiguous: give more of its ID")),
    }
}

/// A stored overlay network with the version its next write compares against.
#[derive(Clone)]
pub struct FoundNetwork {
    pub network: swarm_actors::model::Network,
    pub obj: StoredObject,
}

pub async fn networks(store: &StoreHandle) -> Result<Vec<FoundNetwork>, String> {
    Ok(read(store, Kind::Network)
        .await?
        .into_iter()
        .filter_map(|obj| match &obj.body {
            ObjectBody::Network(n) => Some(FoundNetwork {
                network: n.clone(),
                obj,
            }),
            _ => None,
        })
        .collect())
}
