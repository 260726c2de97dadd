//! One reconciliation pass of the leader, as a pure function.
//!
//! The leader actor reads nodes, services and tasks from the store, adds the task statuses
//! nodes reported since the last pass, and calls [`plan`]. The answer is the store operations
//! to write (compare-and-set on every object's version, so a pass computed from an old read is
//! refused rather than applied), the nodes whose assignments changed (poked so they ask at
//! once), and when to run again for a restart delay. Nothing here reads a clock or draws a
//! random number of its own, so the simulator drives the same code.
//!
//! ```text
//!  reports ──▶ 1. accept status (forward only; a terminal status is final; texts cut)
//!  services ─▶ 2. tasks of removed services: shut down, then delete
//!           2b. depends_on (see `gate`): services whose dependencies do not meet their
//!               condition in this view start no task: not placed, not released, held
//!            3. orchestrator::reconcile per service ──▶ create / shutdown / orphan / trim
//!           3b. update::rollout per service ──▶ replace outdated slots / update status
//!            4. scheduler::schedule over unplaced tasks ──▶ assigned / pending with reason
//!               (a gated service's: pending "waiting for service …", not scheduled)
//!           4b. addresses: each task placed now gets the lowest free address of each overlay
//!               network of its spec (cluster wide) and of its node's ingress slice
//!            5. postconditions asserted (one live task per slot, no move, no going back)
//!            6. changed tasks ──▶ Put(expect version) / Delete(expect version)
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    Network, NodeId, NodeState, PublishMode, Service, ServiceId, Task, TaskId, TaskState,
    TaskStatus,
};
use crate::orchestrator::{self, Action};
use crate::scheduler::{self, Decision, NodeView, PendingTask, TaskLoad};
use crate::store::{Expect, Kind, ObjectBody, Op};

/// A task as read from the store: its version is what a write compares with. Borrowed when
/// the caller keeps the store's objects (the simulator reads its store in place), owned when
/// it has its own copy.
#[derive(Clone, Debug)]
pub struct VersionedTask<'a> {
    pub version: u64,
    pub task: Cow<'a, Task>,
}

/// Everything one pass starts from.
pub struct PlanInput<'a> {
    pub now_ms: u64,
    /// Every node of the cluster, state included (see [`scheduler::node_views`]).
    pub nodes: &'a [NodeView<'a>],
    pub services: &'a [Service],
    /// Every overlay network of the store: where tasks get their addresses on the networks
    /// their spec names.
    pub networks: &'a [Network],
    /// Each service's key and version in the store: where the updater's status writes go and
    /// what they compare with.
    pub service_keys: &'a BTreeMap<ServiceId, (&'a str, u64)>,
    pub tasks: &'a [VersionedTask<'a>],
    /// The latest status each node reported per task since the last pass.
    pub reports: &'a BTreeMap<TaskId, TaskStatus>,
}

/// What one pass decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// Store operations, compare-and-set each; the caller splits them into commands.
    pub ops: Vec<Op>,
    /// Nodes whose set of assignments changed.
    pub poke: BTreeSet<NodeId>,
    /// The earliest time a restart delay ends: run again then.
    pub wake_at_ms: Option<u64>,
    /// Tasks created, placed, and left pending in this pass (for logs and the simulator).
    pub created: usize,
    pub placed: usize,
    pub pending: usize,
    /// Services whose update status (or spec, for a rollback) this pass writes.
    pub services_changed: usize,
    /// Global tasks placed without an ingress address (their node's slice is full).
    pub unaddressed: usize,
    /// Global tasks not made in this pass because an overlay network of theirs is missing or
    /// full, with the reason (the orchestrator makes them again on the next pass).
    pub unattached: Vec<(ServiceId, String)>,
    /// Tasks a dependency held back in this pass (`depends_on`): left pending, made held, or
    /// not released.
    pub gated: usize,
}

/// A task being worked on: its stored version (`None` for a new one) and whether it changed.
/// It borrows the task read until the pass changes it: most tasks stay as they are, and
/// copying every one of them on every pass was most of a pass's cost.
struct Work<'a> {
    version: Option<u64>,
    task: Cow<'a, Task>,
    /// The task as read, for the postconditions (see [`check`]); `None` for a new one.
    read: Option<&'a Task>,
    changed: bool,
    delete: bool,
}

impl Work<'_> {
    /// The task, to change: it will be written.
    fn edit(&mut self) -> &mut Task {
        self.changed = true;
        self.task.to_mut()
    }
}

/// One reconciliation pass. `new_id` makes the IDs of new tasks.
pub fn plan(input: &PlanInput<'_>, new_id: &mut dyn FnMut() -> TaskId) -> Plan {
    let now = input.now_ms;
    let mut out = Plan::default();
    let node_state: BTreeMap<NodeId, &NodeView> = input.nodes.iter().map(|n| (n.id, n)).collect();
    let mut work: BTreeMap<TaskId, Work> = input
        .tasks
        .iter()
        .map(|t| {
            let w = Work {
                version: Some(t.version),
                task: Cow::Borrowed(&*t.task),
                read: Some(&*t.task),
                changed: false,
                delete: false,
            };
            (t.task.id, w)
        })
        .collect();

    // 1. What the nodes reported. Only the node a task is on reports it, and only forward.
    // Its texts are cut first: a status travels in every answer to its node (see `answer`).
    for (id, reported) in input.reports {
        let reported = reported.cut();
        if let Some(w) = work.get_mut(id)
            && w.task.status.accepts(&reported)
        {
            let t = w.edit();
            // When it first ran: the rolling updater watches a new task for `monitor` from then.
            if reported.state == TaskState::Running && t.running_ms.is_none() {
                t.running_ms = Some(reported.since_ms);
            }
            t.status = reported.into_owned();
        }
    }

    // 2. Tasks whose service is gone: stop them, then forget them.
    let services: BTreeMap<ServiceId, &Service> =
        input.services.iter().map(|s| (s.id, s)).collect();
    for w in work.values_mut() {
        if services.contains_key(&w.task.service_id) {
            continue;
        }
        let on_live_node = w
            .task
            .node_id
            .and_then(|n| node_state.get(&n))
            .is_some_and(|n| n.state != NodeState::Down);
        let started = w.task.status.state >= TaskState::Assigned;
        if w.task.status.state.is_terminal() || !started || !on_live_node {
            w.delete = true;
        } else if w.task.desired_state <= TaskState::Running {
            w.edit().desired_state = TaskState::Shutdown;
            if let Some(n) = w.task.node_id {
                out.poke.insert(n);
            }
        }
    }

    // 2b. `depends_on`, judged on the tasks as read with the reports accepted (see `gate`).
    let gates = gate::Gates::new(
        input.services,
        work.values().filter(|w| !w.delete).map(|w| &*w.task),
    );

    // 3. The orchestrators, service by service.
    for service in input.services {
        let tasks = work
            .values()
            .filter(|w| w.task.service_id == service.id && !w.delete)
            .map(|w| &*w.task);
        let gate = gates.waiting(service.id);
        for action in orchestrator::reconcile(service, tasks, input.nodes, now) {
            apply(action, service, gate, &mut work, &mut out, now, new_id);
        }
    }

    // 3b. Rolling updates (see `update`): tasks made from another spec version are replaced,
    // a few slots at a time; the service's update status is written when it changes.
    let mut service_ops = Vec::new();
    for service in input.services {
        let tasks = work
            .values()
            .filter(|w| w.task.service_id == service.id && !w.delete)
            .map(|w| &*w.task);
        let node = |n: NodeId| node_state.get(&n).map(|n| (n.state, n.availability));
        let rollout = update::rollout(service, tasks, &node, now);
        if let Some(at) = rollout.wake_at_ms {
            out.wake_at_ms = Some(out.wake_at_ms.map_or(at, |w| w.min(at)));
        }
        let gate = gates.waiting(service.id);
        for action in rollout.actions {
            apply(action, service, gate, &mut work, &mut out, now, new_id);
        }
        if let (Some(changed), Some(&(key, version))) =
            (rollout.service, input.service_keys.get(&service.id))
        {
            out.services_changed += 1;
            service_ops.push(Op::Put {
                kind: Kind::Service,
                id: key.to_string(),
                expect: Expect::Version(version),
                body: ObjectBody::Service(changed),
            });
        }
    }

    // 4. The scheduler, over every task that waits for a node.
    schedule(input.nodes, &services, &gates, &mut work, &mut out, now);

    // 4b. Overlay and ingress addresses for the tasks placed in this pass (see `overlay`
    // and `addresses`).
    allocate(input, &services, &mut work, &mut out, now);

    // 5. What must hold of any plan, checked on what it changed (panics: see `check`).
    check(&work);

    // 6. The writes: services first (a status change is written alone per service, and a
    // write refused because the user changed the service meanwhile is simply redone).
    out.ops = service_ops;
    for (id, w) in work {
        let key = id.to_string();
        if w.delete {
            if let Some(v) = w.version {
                out.ops.push(Op::Delete {
                    kind: Kind::Task,
                    id: key,
                    expect: Expect::Version(v),
                });
            }
        } else if w.changed {
            let expect = match w.version {
                Some(v) => Expect::Version(v),
                None => Expect::Absent,
            };
            out.ops.push(Op::Put {
                kind: Kind::Task,
                id: key,
                expect,
                body: ObjectBody::Task(w.task.into_owned()),
            });
        }
    }
    out
}

/// Whether the orchestrator wants `t` live: not on its way out, not ended.
fn wanted_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running && !t.status.state.is_terminal()
}

/// The plan's postconditions, always on (a broken plan must stop the pass, not reach the
/// store): no task moved from one node to another, no status moved backwards, and every task
/// made in this pass is the only live one of its slot (replicated) or of its node (global)
/// made from its spec version: a start-first update keeps the slot's old task, of an older
/// version, until the new one runs. Costs O(changed tasks), plus one look at every task when
/// the pass made any.
fn check(work: &BTreeMap<TaskId, Work<'_>>) {
    let mut made = BTreeSet::new();
    for w in work.values().filter(|w| w.changed && !w.delete) {
        let t = &*w.task;
        match w.read {
            Some(old) => {
                assert!(
                    old.node_id.is_none() || old.node_id == t.node_id,
                    "plan moved task {} from node {:?} to {:?}",
                    t.id,
                    old.node_id,
                    t.node_id
                );
                assert!(
                    t.status.state >= old.status.state,
                    "plan moved task {}'s status back from {} to {}",
                    t.id,
                    old.status.state,
                    t.status.state
                );
            }
            None if wanted_live(t) => {
                made.insert((slot_of(t), t.spec_version));
            }
            None => {}
        }
    }
    if made.is_empty() {
        return;
    }
    let mut live: BTreeMap<_, usize> = BTreeMap::new();
    for w in work.values().filter(|w| !w.delete && wanted_live(&w.task)) {
        let key = (slot_of(&w.task), w.task.spec_version);
        if made.contains(&key) {
            let n = live.entry(key).or_default();
            *n += 1;
            assert!(
                *n == 1,
                "plan left two live tasks in slot {:?} of version {}, task {} among them",
                key.0,
                key.1,
                w.task.id
            );
        }
    }
}

/// A task's slot: its number for a replicated service, its node for a global one (slot 0).
fn slot_of(t: &Task) -> (ServiceId, u64, Option<NodeId>) {
    match t.slot {
        0 => (t.service_id, 0, t.node_id),
        s => (t.service_id, s, None),
    }
}

/// Applies one orchestrator or updater action. `gate`: why the service's tasks may not start
/// yet (`depends_on`), if they may not: a held task is not released, and a task made for its
/// node (global) is made held, saying why.
#[allow(clippy::too_many_arguments)]
fn apply<'a>(
    action: Action,
    service: &Service,
    gate: Option<&str>,
    work: &mut BTreeMap<TaskId, Work<'a>>,
    out: &mut Plan,
    now: u64,
    new_id: &mut dyn FnMut() -> TaskId,
) {
    let (action, desired) = match action {
        Action::CreateHeld {
            slot,
            node,
            spec_version,
        } => (
            Action::Create {
                slot,
                node,
                spec_version,
            },
            orchestrator::HELD,
        ),
        a => (a, TaskState::Running),
    };
    match action {
        Action::CreateHeld { .. } => unreachable!("made a Create above"),
        Action::Release { task } => {
            if let Some(w) = work.get_mut(&task)
                && w.task.desired_state < TaskState::Running
            {
                if gate.is_some() {
                    // Counted once: a task made held in this pass was counted then.
                    if w.read.is_some() {
                        out.gated += 1;
                    }
                    return;
                }
                w.edit().desired_state = TaskState::Running;
                if let Some(n) = w.task.node_id {
                    out.poke.insert(n);
                }
            }
        }
        Action::Create {
            slot,
            node,
            spec_version,
        } => {
            let id = new_id();
            // A global task is made for its node (the orchestrator checked that the node is
            // eligible): it is assigned at once. A replicated one waits for the scheduler.
            let mut desired = desired;
            let (node_id, st) = match node {
                Some(n) => {
                    out.poke.insert(n);
                    out.placed += 1;
                    // Its node gets it, held, until its dependencies meet their conditions.
                    let message = match gate {
                        Some(reason) => {
                            out.gated += 1;
                            desired = desired.min(orchestrator::HELD);
                            reason
                        }
                        None => "assigned",
                    };
                    (Some(n), TaskStatus::new(TaskState::Assigned, now, message))
                }
                None => (None, TaskStatus::new(TaskState::New, now, "created")),
            };
            let task = Task {
                id,
                service_id: service.id,
                slot,
                node_id,
                spec: service.spec.task.clone(),
                spec_version,
                desired_state: desired,
                status: st,
                created_ms: now,
                running_ms: None,
                networks: Vec::new(),
            };
            out.created += 1;
            work.insert(
                id,
                Work {
                    version: None,
                    task: Cow::Owned(task),
                    read: None,
                    changed: true,
                    delete: false,
                },
            );
        }
        Action::Shutdown { task, reason } => {
            if let Some(w) = work.get_mut(&task)
                && w.task.desired_state <= TaskState::Running
            {
                w.edit().desired_state = TaskState::Shutdown;
                match w.task.node_id {
                    Some(n) if !w.task.status.state.is_terminal() => {
                        out.poke.insert(n);
                    }
                    Some(_) => {}
                    // Never placed: nobody else will end it.
                    None => w.edit().status = TaskStatus::new(TaskState::Shutdown, now, reason),
                }
            }
        }
        Action::MarkOrphaned { task } => {
            if let Some(w) = work.get_mut(&task) {
                let t = w.edit();
                t.desired_state = TaskState::Shutdown;
                t.status = TaskStatus::new(TaskState::Orphaned, now, "node is down");
            }
        }
        Action::Remove { task } => {
            if let Some(w) = work.get_mut(&task) {
                w.delete = true;
                if let Some(n) = w.task.node_id {
                    out.poke.insert(n);
                }
            }
        }
        Action::RestartLater { at_ms, .. } => {
            out.wake_at_ms = Some(out.wake_at_ms.map_or(at_ms, |w| w.min(at_ms)));
        }
    }
}

fn schedule(
    nodes: &[NodeView],
    services: &BTreeMap<ServiceId, &Service>,
    gates: &gate::Gates,
    work: &mut BTreeMap<TaskId, Work<'_>>,
    out: &mut Plan,
    now: u64,
) {
    let is_live = |w: &&Work<'_>| !w.delete && !w.task.status.state.is_terminal();
    let mut waiting: Vec<TaskId> = work
        .values()
        .filter(is_live)
        .filter(|w| {
            let t = &w.task;
            t.node_id.is_none()
                && t.desired_state <= TaskState::Running
                && services.contains_key(&t.service_id)
        })
        .map(|w| w.task.id)
        .collect();
    // A gated service's tasks wait for its dependencies, not for a node: they are not
    // scheduled (nor counted against any node).
    waiting.retain(|id| {
        let w = work.get_mut(id).expect("waiting tasks are in the work set");
        let Some(reason) = gates.waiting(w.task.service_id) else {
            return true;
        };
        out.gated += 1;
        pend(w, out, now, reason);
        false
    });
    if waiting.is_empty() {
        return;
    }
    let live = work.values().filter(is_live);
    // A task's size counts against its node's answer (the "node full" filter). Tasks of one
    // service and spec version share their spec, so each spec is measured once.
    let mut sizes: BTreeMap<(ServiceId, u64), (&crate::model::TaskSpec, usize)> = BTreeMap::new();
    // Host-mode ports are the service's (its current spec: a task of an older version is
    // counted as publishing them too, which only errs on the safe side).
    let host: BTreeMap<ServiceId, Vec<scheduler::HostPort>> = services
        .iter()
        .map(|(id, s)| {
            let ports = s.spec.ports.iter().filter(|p| p.mode == PublishMode::Host);
            (
                *id,
                ports.map(|p| (p.published, p.protocol)).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let mut host_used = Vec::new();
    let mut running = Vec::new();
    for w in live {
        let t = &*w.task;
        let Some(node) = t.node_id else { continue };
        for port in host.get(&t.service_id).into_iter().flatten() {
            host_used.push(scheduler::HostPortLoad { node, port: *port });
        }
        let key = (t.service_id, t.spec_version);
        let bytes = match sizes.get(&key) {
            Some((spec, bytes)) if *spec == &t.spec => *bytes,
            _ => {
                let bytes = crate::wire::answer::assignment_bytes_max(&t.spec);
                sizes.insert(key, (&t.spec, bytes));
                bytes
            }
        };
        running.push(TaskLoad {
            task: t.id,
            service: t.service_id,
            node,
            reservations: t.spec.resources.reservations,
            bytes,
        });
    }
    let decisions = {
        let pending: Vec<PendingTask<'_>> = waiting
            .iter()
            .map(|id| {
                let t = &work[id].task;
                PendingTask {
                    task: t.id,
                    service: t.service_id,
                    spec: &t.spec,
                    pin: None,
                    host_ports: host.get(&t.service_id).map_or(&[], |p| p.as_slice()),
                }
            })
            .collect();
        scheduler::schedule_with_ports(nodes, &running, &host_used, &pending)
    };
    for d in decisions {
        let w = work
            .get_mut(&d.task())
            .expect("decided tasks are in the work set");
        match d {
            Decision::Place { node, .. } => {
                let t = w.edit();
                t.node_id = Some(node);
                t.status = TaskStatus::new(TaskState::Assigned, now, "assigned");
                out.placed += 1;
                out.poke.insert(node);
            }
            Decision::Pending { reason, .. } => pend(w, out, now, &reason),
        }
    }
}

/// Leaves an unplaced task pending with `reason`, written only when that changes it (the time
/// it has been pending since is kept).
fn pend(w: &mut Work<'_>, out: &mut Plan, now: u64, reason: &str) {
    out.pending += 1;
    if w.task.status.state != TaskState::Pending || w.task.status.message != reason {
        let since = if w.task.status.state == TaskState::Pending {
            w.task.status.since_ms
        } else {
            now
        };
        w.edit().status = TaskStatus::new(TaskState::Pending, since, reason);
    }
}

/// Gives every task placed in this pass its addresses, in the write that places it: one on
/// each overlay network of its spec, then its ingress address (unless every network of its
/// spec is internal and its service publishes nothing). A replicated task that cannot have
/// them all goes back to pending, saying why, holding none. A global task is made for its
/// node: without an ingress address it stays there (counted in `unaddressed`); without its
/// overlay addresses it is not made in this pass (it would run cut off from its networks).
fn allocate(
    input: &PlanInput<'_>,
    services: &BTreeMap<ServiceId, &Service>,
    work: &mut BTreeMap<TaskId, Work<'_>>,
    out: &mut Plan,
    now: u64,
) {
    let placed_now = |w: &Work<'_>| {
        !w.delete
            && !w.task.status.state.is_terminal()
            && w.task.node_id.is_some()
            && w.read.is_none_or(|r| r.node_id.is_none())
            && w.task.networks.is_empty()
    };
    if !work.values().any(placed_now) {
        return;
    }
    let live = || work.values().filter(|w| !w.delete).map(|w| w.task.as_ref());
    let mut alloc = addresses::Allocator::new(live());
    let mut overlay =
        overlay::OverlayAllocator::new(input.networks, services.values().copied(), live());
    for w in work.values_mut() {
        if !placed_now(w) {
            continue;
        }
        let node = w.task.node_id.expect("placed tasks have a node");
        let ports = services
            .get(&w.task.service_id)
            .map_or(0, |s| s.spec.ports.len());
        let no_ingress = overlay::without_ingress(&overlay, &w.task.spec.networks, ports);
        let attached = match overlay.attach(&w.task.spec.networks) {
            Ok(a) => a,
            Err(e) if w.task.slot == 0 => {
                w.delete = true;
                out.created = out.created.saturating_sub(1);
                out.placed = out.placed.saturating_sub(1);
                out.unattached.push((w.task.service_id, e.to_string()));
                continue;
            }
            Err(e) => {
                unplace(w, out, now, e.to_string());
                continue;
            }
        };
        let ingress = if no_ingress {
            None
        } else {
            match alloc.allocate(node) {
                Ok(att) => Some(att),
                // A global task is made for its node: it stays there, without an address.
                Err(_) if w.task.slot == 0 => {
                    out.unaddressed += 1;
                    None
                }
                Err(e) => {
                    overlay.release_all(&w.task.spec.networks, &attached);
                    unplace(w, out, now, e.to_string());
                    continue;
                }
            }
        };
        if ingress.is_none() && attached.is_empty() {
            continue;
        }
        let t = w.edit();
        t.networks.extend(ingress);
        t.networks.extend(attached);
    }
}

/// Sends a task placed in this pass back to pending, with `reason`.
fn unplace(w: &mut Work<'_>, out: &mut Plan, now: u64, reason: String) {
    let t = w.edit();
    t.node_id = None;
    t.status = TaskStatus::new(TaskState::Pending, now, reason);
    out.placed = out.placed.saturating_sub(1);
    out.pending += 1;
}

mod addresses;
pub mod gate;
mod overlay;
mod update;

pub use addresses::{SLICE_ADDRESSES, SLICES, holds_no_address, ingress, slice_of};
pub use overlay::{NoOverlay, OverlayAllocator};

#[cfg(test)]
mod addresses_tests;
#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;
