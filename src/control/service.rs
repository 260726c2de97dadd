//! The node's side of the `service` commands and `node ps`: reads and compare-and-set writes of
//! Service objects in the store; Task objects are only read (the leader writes them).
//!
//! A service is stored under its NAME, so that `Expect::Absent` makes names unique in one
//! atomic write; its random [`ServiceId`] is what tasks point at.

use std::collections::{BTreeMap, BTreeSet};

use swarm_actors::model::{
    FileKind, NodeId, NodeState, PortConfig, PublishMode, Service, ServiceId, ServiceMode,
    ServiceSpec, Task, TaskState,
};
use swarm_actors::node::admission;
use swarm_actors::orchestrator::task_name;
use swarm_actors::replica::StoreHandle;
use swarm_actors::scheduler::constraint::Constraint;
use swarm_actors::scheduler::filter::check_static;
use swarm_actors::scheduler::{Unseen, node_views};
use swarm_actors::store::{Expect, Kind, NodeObject, ObjectBody, Op, StoreCommand};

mod change;
mod networks;
mod replace;

pub use replace::replace;

use change::{rollback_write, update_write};
use networks::{book, networks_if, resolve_args, resolve_change, written_service};

use super::cas::{self, Failed};
use super::context::ControlContext;
use super::network::ADDRESSES;
use super::ports::allocate;
use super::proto::{
    NetworkArg, ProgressView, ServiceChange, ServiceDoc, ServiceInfo, SlotProgress, TASK_ROWS_MAX,
    TaskRow,
};
use super::secret::FileIndex;
use super::validate::validate_spec;

use super::reads::resolve_named;
pub use super::reads::{Found, manager_store, nodes, services, tasks};

/// Finds a service by name, full ID, or unique ID prefix (Docker's order).
pub fn resolve(found: Vec<Found>, name: &str) -> Result<Found, String> {
    resolve_named("service", found, name, |f| {
        (f.obj.id.as_str(), f.service.id.to_string())
    })
}

pub async fn find(store: &StoreHandle, name: &str) -> Result<Found, String> {
    resolve(services(store).await?, name)
}

pub async fn create(
    ctx: &ControlContext,
    mut spec: ServiceSpec,
    network_args: &[NetworkArg],
) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    validate_spec(&spec)?;
    // Networks are named by the flags and stored by ID; the VIPs are allocated in this write.
    let _one_at_a_time = ADDRESSES.lock().await;
    let nets = networks_if(&store, !network_args.is_empty()).await?;
    spec.task.networks = resolve_args(network_args, &nets)?;
    validate_spec(&spec)?;
    // Refs name secrets and configs by name; the spec stores their IDs. (Reading them reads
    // their data too, so only when there are refs to resolve.)
    if !spec.task.secrets.is_empty() || !spec.task.configs.is_empty() {
        let files = FileIndex::read(&store).await?;
        files.resolve_refs(FileKind::Secret, &mut spec.task.secrets)?;
        files.resolve_refs(FileKind::Config, &mut spec.task.configs)?;
        validate_spec(&spec)?;
    }
    let exists = || format!("service {} already exists", spec.name);
    let all = services(&store).await?;
    if all.iter().any(|f| f.obj.id == spec.name) {
        return Err(exists());
    }
    // No service has the unknown ID: every other service's ports count.
    allocate(&mut spec.ports, ServiceId::UNKNOWN, &[], &all)?;
    let id = loop {
        let id = ServiceId(rand::random());
        if id != ServiceId::UNKNOWN {
            break id;
        }
    };
    let name = spec.name.clone();
    let mut service = Service::new(id, spec);
    book(&store, &service, nets).await?.assign(&mut service)?;
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Put {
            kind: Kind::Service,
            id: name.clone(),
            expect: Expect::Absent,
            body: ObjectBody::Service(service),
        }],
    };
    if let Err(e) = store.propose(cmd).await {
        // Another create of the same name may have won the race: say so plainly.
        return match find(&store, &name).await {
            Ok(f) if f.service.id != id => Err(format!("service {name} already exists")),
            _ => Err(e.to_string()),
        };
    }
    Ok(id.to_string())
}

pub async fn update(
    ctx: &ControlContext,
    name: &str,
    change: &ServiceChange,
) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    cas::retrying(|| update_once(&store, name, change)).await
}

async fn update_once(
    store: &StoreHandle,
    name: &str,
    change: &ServiceChange,
) -> Result<String, Failed> {
    let all = services(store).await?;
    let found = resolve(all.clone(), name)?;
    // The refs added get their IDs and targets here; a missing one refuses the update.
    let mut change = change.clone();
    if !change.secret_add.is_empty() || !change.config_add.is_empty() {
        let files = FileIndex::read(store).await?;
        files.resolve_refs(FileKind::Secret, &mut change.secret_add)?;
        files.resolve_refs(FileKind::Config, &mut change.config_add)?;
    }
    let _one_at_a_time = ADDRESSES.lock().await;
    let nets = networks_if(
        store,
        !change.network_add.is_empty() || !change.network_rm.is_empty(),
    )
    .await?;
    resolve_change(&mut change, &nets)?;
    let (id, mut cmd) = update_write(&found, &change, &all, admission::now_ms())?;
    let service = written_service(&mut cmd);
    let nets = networks_if(store, networks::needs_networks(service)).await?;
    book(store, service, nets).await?.assign(service)?;
    cas::proposed(store.propose(cmd).await)?;
    Ok(id)
}

/// `service rollback`: the previous spec back, rolled out by the leader with the rollback
/// config; a second rollback goes forward again (the two specs swap).
pub async fn rollback(ctx: &ControlContext, name: &str) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    cas::retrying(|| rollback_once(&store, name)).await
}

async fn rollback_once(store: &StoreHandle, name: &str) -> Result<String, Failed> {
    let all = services(store).await?;
    let found = resolve(all.clone(), name)?;
    // A port the previous spec published may have gone to another service since.
    if let Some(prev) = &found.service.previous_spec {
        let mut ports = prev.ports.clone();
        allocate(&mut ports, found.service.id, &[], &all)
            .map_err(|e| format!("cannot roll back {name}: the previous spec's {e}"))?;
    }
    // The previous spec is not checked again, but a secret or config it names may have been
    // removed since (only the current spec keeps one from removal).
    if let Some(prev) = &found.service.previous_spec
        && !(prev.task.secrets.is_empty() && prev.task.configs.is_empty())
    {
        FileIndex::read(store)
            .await?
            .check_exist(prev)
            .map_err(|e| format!("cannot roll back {name}: the previous spec's {e}"))?;
    }
    let _one_at_a_time = ADDRESSES.lock().await;
    let (id, mut cmd) = rollback_write(&found, admission::now_ms())?;
    let service = written_service(&mut cmd);
    let nets = networks_if(store, networks::needs_networks(service)).await?;
    // The spec rolled back to may name a network removed since (`network rm` checks only
    // current specs): refused, naming it.
    for r in &service.spec.task.networks {
        if !nets.iter().any(|n| n.network.id == r.network) {
            return Err(format!(
                "cannot roll back {name}: the previous spec's network {} is gone",
                r.network
            )
            .into());
        }
    }
    book(store, service, nets)
        .await?
        .assign(service)
        .map_err(|e| format!("cannot roll back {name}: {e}"))?;
    cas::proposed(store.propose(cmd).await)?;
    Ok(id)
}

pub async fn remove(ctx: &ControlContext, name: &str) -> Result<String, String> {
    let store = manager_store(ctx).await?;
    cas::retrying(|| remove_once(&store, name)).await
}

async fn remove_once(store: &StoreHandle, name: &str) -> Result<String, Failed> {
    let found = find(store, name).await?;
    let cmd = StoreCommand {
        now_ms: admission::now_ms(),
        ops: vec![Op::Delete {
            kind: Kind::Service,
            id: found.obj.id.clone(),
            expect: Expect::Version(found.obj.version),
        }],
    };
    cas::proposed(store.propose(cmd).await)?;
    Ok(name.to_string())
}

pub async fn inspect(ctx: &ControlContext, names: &[String]) -> Result<Vec<ServiceDoc>, String> {
    let store = manager_store(ctx).await?;
    let mut out = Vec::new();
    let mut nets = None;
    for name in names {
        let f = find(&store, name).await?;
        let networks = if networks::needs_networks(&f.service) {
            if nets.is_none() {
                nets = Some(super::reads::networks(&store).await?);
            }
            let nets = nets.as_deref().unwrap_or_default();
            networks::briefs(&f.service, nets)
        } else {
            Vec::new()
        };
        out.push(ServiceDoc {
            version: f.obj.version,
            created_ms: f.obj.created_ms,
            updated_ms: f.obj.updated_ms,
            service: f.service,
            networks,
        });
    }
    Ok(out)
}

/// The Ready nodes as membership sees them (the scheduler's notion of Ready).
async fn ready_nodes(ctx: &ControlContext) -> Result<BTreeSet<NodeId>, String> {
    Ok(ctx
        .node
        .members()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|m| m.state == NodeState::Ready)
        .map(|m| m.id)
        .collect())
}

/// Nodes a global service may run on: available, with its runtime, matching its constraints.
fn eligible(service: &Service, nodes: &[NodeObject], ready: &BTreeSet<NodeId>) -> Vec<NodeId> {
    let constraints =
        Constraint::parse_all(&service.spec.task.placement.constraints).unwrap_or_default();
    node_views(nodes, ready, Unseen::Down)
        .iter()
        .filter(|n| check_static(n, service.spec.task.runtime, &constraints).is_ok())
        .map(|n| n.id)
        .collect()
}

pub async fn list(ctx: &ControlContext) -> Result<Vec<ServiceInfo>, String> {
    let store = manager_store(ctx).await?;
    let found = services(&store).await?;
    let tasks = tasks(&store).await?;
    let nodes = nodes(&store).await?;
    let ready = ready_nodes(ctx).await?;
    let mut rows = Vec::new();
    for f in found {
        let s = &f.service;
        let running = tasks
            .iter()
            .filter(|t| {
                t.service_id == s.id
                    && t.status.state == TaskState::Running
                    && t.desired_state == TaskState::Running
            })
            .count() as u64;
        let (mode, desired) = match s.spec.mode {
            ServiceMode::Replicated { replicas } => ("replicated", replicas),
            ServiceMode::Global => ("global", eligible(s, &nodes, &ready).len() as u64),
        };
        rows.push(ServiceInfo {
            id: s.id.to_string(),
            name: f.obj.id.clone(),
            mode: mode.into(),
            running,
            desired,
            image: s.spec.task.image.clone(),
            ports: ingress_ports(&s.spec.ports),
            labels: s.spec.labels.clone(),
        });
    }
    Ok(rows)
}

/// A node's hostname, or its ID where it never described itself.
pub fn hostname(n: &NodeObject) -> String {
    n.description
        .as_ref()
        .map(|d| d.hostname.clone())
        .unwrap_or_else(|| n.id.to_string())
}

/// The hostname of every node the store knows (see [`hostname`]).
fn hostnames(nodes: &[NodeObject]) -> BTreeMap<NodeId, String> {
    nodes.iter().map(|n| (n.id, hostname(n))).collect()
}

/// Task rows, newest first when there are more than [`TASK_ROWS_MAX`].
fn rows(
    tasks: Vec<&Task>,
    names: &BTreeMap<ServiceId, (String, String)>,
    nodes: &[NodeObject],
) -> Vec<TaskRow> {
    let hosts = hostnames(nodes);
    let mut tasks = tasks;
    tasks.sort_by_key(|t| std::cmp::Reverse((t.created_ms, t.id)));
    tasks.truncate(TASK_ROWS_MAX);
    tasks
        .into_iter()
        .map(|t| {
            let (service, ports) = names.get(&t.service_id).cloned().unwrap_or_default();
            let error = match (&t.status.error, t.status.state) {
                (Some(e), _) => e.clone(),
                (None, TaskState::Pending) => t.status.message.clone(),
                (None, _) => String::new(),
            };
            TaskRow {
                id: t.id.to_string(),
                name: task_name(&service, t.slot, t.node_id),
                service,
                slot: t.slot,
                image: t.spec.image.clone(),
                node: t
                    .node_id
                    .map(|n| hosts.get(&n).cloned().unwrap_or_else(|| n.to_string()))
                    .unwrap_or_default(),
                desired: t.desired_state,
                state: t.status.state,
                since_ms: t.status.since_ms,
                error,
                created_ms: t.created_ms,
                addresses: t
                    .networks
                    .iter()
                    .map(|a| format!("{}={}/{}", a.network, a.addr, a.prefix))
                    .collect(),
                ports: if t.status.state.is_terminal() {
                    String::new()
                } else {
                    ports
                },
            }
        })
        .collect()
}

/// `service ls`'s PORTS: the ingress-mode ports (host-mode ones are the tasks', shown by
/// `service ps`), as Docker joins them.
pub fn ingress_ports(ports: &[PortConfig]) -> String {
    joined(ports, PublishMode::Ingress)
}

/// `service ps`'s PORTS: the host-mode ports a task publishes on its node.
pub fn host_ports(ports: &[PortConfig]) -> String {
    joined(ports, PublishMode::Host)
}

fn joined(ports: &[PortConfig], mode: PublishMode) -> String {
    ports
        .iter()
        .filter(|p| p.mode == mode)
        .map(PortConfig::display)
        .collect::<Vec<_>>()
        .join(",")
}

/// Each service's name and the host-mode ports its tasks publish (from its current spec).
fn service_names(found: &[Found]) -> BTreeMap<ServiceId, (String, String)> {
    found
        .iter()
        .map(|f| {
            let ports = host_ports(&f.service.spec.ports);
            (f.service.id, (f.obj.id.clone(), ports))
        })
        .collect()
}

pub async fn ps(ctx: &ControlContext, name: &str) -> Result<Vec<TaskRow>, String> {
    let store = manager_store(ctx).await?;
    let found = services(&store).await?;
    let names = service_names(&found);
    let id = resolve(found, name)?.service.id;
    let tasks = tasks(&store).await?;
    let nodes = nodes(&store).await?;
    Ok(rows(
        tasks.iter().filter(|t| t.service_id == id).collect(),
        &names,
        &nodes,
    ))
}

pub async fn node_ps(ctx: &ControlContext, node: &str) -> Result<Vec<TaskRow>, String> {
    let store = manager_store(ctx).await?;
    let (list, _) = super::nodes::node_list(ctx, true).await?;
    let node_id = super::proto::resolve(&list, node)?.id.clone();
    let found = services(&store).await?;
    let names = service_names(&found);
    let tasks = tasks(&store).await?;
    let nodes = nodes(&store).await?;
    Ok(rows(
        tasks
            .iter()
            .filter(|t| t.node_id.is_some_and(|n| n.to_string() == node_id))
            .collect(),
        &names,
        &nodes,
    ))
}

pub async fn progress(ctx: &ControlContext, name: &str) -> Result<ProgressView, String> {
    let store = manager_store(ctx).await?;
    let found = find(&store, name).await?;
    let tasks = tasks(&store).await?;
    let s = &found.service;
    // The live task of each slot made from the current spec (the newest, if several).
    let current: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.service_id == s.id
                && t.spec_version == s.spec_version
                && t.desired_state <= TaskState::Running
        })
        .collect();
    let newest = |pick: &dyn Fn(&Task) -> bool| {
        current
            .iter()
            .copied()
            .filter(|t| pick(t))
            .max_by_key(|t| (t.created_ms, t.id))
    };
    let slot = |label: String, t: Option<&Task>| SlotProgress {
        label,
        state: t.map(|t| t.status.state),
        message: t
            .map(|t| {
                t.status
                    .error
                    .clone()
                    .unwrap_or_else(|| t.status.message.clone())
            })
            .unwrap_or_default(),
    };
    let ready = ready_nodes(ctx).await?;
    let (global, slots) = match s.spec.mode {
        ServiceMode::Replicated { replicas } => (
            false,
            (1..=replicas)
                .map(|n| slot(n.to_string(), newest(&|t| t.slot == n)))
                .collect(),
        ),
        ServiceMode::Global => {
            let nodes = nodes(&store).await?;
            (
                true,
                eligible(s, &nodes, &ready)
                    .into_iter()
                    .map(|n| slot(n.short(), newest(&|t| t.node_id == Some(n))))
                    .collect(),
            )
        }
    };
    Ok(ProgressView {
        id: s.id.to_string(),
        global,
        spec_version: s.spec_version,
        monitor_ms: s.spec.update.monitor_ms,
        slots,
        update_status: s.update_status.clone(),
        old_live: old_live(s, &tasks, &ready),
    })
}

/// Tasks of `s` made from an older spec that are still up (start-first keeps the old task of
/// a slot running until its replacement runs). A task on a node that is not Ready is left
/// out: nobody can stop it until the node comes back, and the progress display would wait
/// for it forever.
fn old_live(s: &Service, tasks: &[Task], ready: &BTreeSet<NodeId>) -> u64 {
    let live = |t: &&Task| {
        t.service_id == s.id
            && t.spec_version != s.spec_version
            && t.desired_state <= TaskState::Running
            && !t.status.state.is_terminal()
            && t.node_id.is_none_or(|n| ready.contains(&n))
    };
    tasks.iter().filter(live).count() as u64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::change::apply_change;
    use super::*;
    use crate::control::validate::tests::spec;
    use swarm_actors::store::StoredObject;

    /// Service `name` with ID `id`, as the store holds it (version 3).
    pub(crate) fn stored(name: &str, id: u128) -> Found {
        let service = Service {
            vips: Vec::new(),
            id: ServiceId(id),
            spec: spec(name),
            previous_spec: None,
            previous_spec_version: None,
            update_status: None,
            spec_version: 1,
        };
        Found {
            obj: StoredObject {
                kind: Kind::Service,
                id: name.into(),
                version: 3,
                created_ms: 0,
                updated_ms: 0,
                body: ObjectBody::Service(service.clone()),
            },
            service,
        }
    }

    #[test]
    fn old_live_counts_up_tasks_of_an_older_spec_on_ready_nodes() {
        use swarm_actors::model::{TaskId, TaskStatus};
        let mut s = stored("web", 7).service;
        s.spec_version = 2;
        let (up, down) = (NodeId(1), NodeId(2));
        let task = |id: u128, version: u64, desired, state, node| Task {
            id: TaskId(id),
            service_id: s.id,
            slot: 1,
            node_id: node,
            spec: s.spec.task.clone(),
            spec_version: version,
            desired_state: desired,
            status: TaskStatus::new(state, 0, ""),
            created_ms: 0,
            running_ms: None,
            networks: Vec::new(),
        };
        use TaskState::{Failed, Pending, Running, Shutdown};
        let tasks = vec![
            task(1, 1, Running, Running, Some(up)),
            task(2, 1, Running, Pending, None),
            task(3, 2, Running, Running, Some(up)),
            task(4, 1, Shutdown, Running, Some(up)),
            task(5, 1, Running, Failed, Some(up)),
            task(6, 1, Running, Running, Some(down)),
        ];
        let ready = BTreeSet::from([up]);
        assert_eq!(old_live(&s, &tasks, &ready), 2);
        assert_eq!(old_live(&s, &tasks[2..], &ready), 0);
    }

    #[test]
    fn resolves_by_name_id_and_unique_prefix() {
        let all = || vec![stored("web", 1 << 100), stored("db", (1 << 100) + 1)];
        let web_id = ServiceId(1 << 100).to_string();
        assert_eq!(resolve(all(), "web").unwrap().obj.id, "web");
        assert_eq!(resolve(all(), &web_id).unwrap().obj.id, "web");
        let prefix = &web_id[..web_id.len() - 1];
        let err = resolve(all(), prefix).err().unwrap();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(resolve(all(), "nope").err().unwrap().contains("not found"));
    }

    /// The service a `put` writes.
    #[test]
    fn scale_refuses_global_services() {
        let mut s = stored("agent", 7).service;
        s.spec.mode = ServiceMode::Global;
        let err = apply_change(
            &s,
            &ServiceChange {
                replicas: Some(2),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            err.contains("scale can only be used with replicated mode"),
            "{err}"
        );
    }
}
