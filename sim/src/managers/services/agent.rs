//! The node agent, simulated: one per live worker, made fresh at every start of the node. It
//! drives the real [`AgentMachine`] (`actors/src/agent/machine.rs`), which makes every decision
//! of the agent; this file only carries out its effects as simulated events:
//!
//! - inputs: a tick every [`SESSION_INTERVAL_MS`], the leader's pokes, the answers of session
//!   requests (or the session's timeout, [`SESSION_TIMEOUT_MS`] after its first request), and
//!   each status a task machine reports;
//! - `OpenSession` ─▶ a request over the simulated network to the manager it names (a worker
//!   has no store of its own, so never `Local`); the first request of a session starts its
//!   timeout;
//! - `StartTask` ─▶ a fresh [`TaskMachine`] told `Start`; `ShutdownTask` ─▶ `Shutdown`;
//!   `StopTask` ─▶ the machine dropped (its process with it, as stopping the task actor
//!   removes what the runtime keeps);
//! - `HoldFiles` / `DropFiles` ─▶ the node's simulated SecretVault: the material kept in
//!   memory, by key (the real vault also writes each task's files to tmpfs, which a task
//!   machine here does not read);
//! - `SessionEnded` ─▶ counted and traced.
//!
//! Invariant (p2) is judged after every outermost input: the vault against the machine's
//! `held()` and the tasks of the node (`invariants::secrets_held`).
//!
//! The task machines judge health themselves ([`HealthJudge::Machine`], the process runtime's
//! way); their runtime commands come back as events from `runtime.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_actors::agent::{
    AgentEffect, AgentInput, AgentMachine, SESSION_INTERVAL_MS, SESSION_TIMEOUT_MS, SessionOutcome,
    Target,
};
use swarm_actors::model::{
    FileKey, FileMaterial, NodeId, ServiceId, Task, TaskId, TaskState, TaskStatus,
};
use swarm_actors::task::{
    HealthJudge, RuntimeCmd, RuntimeEvent, TaskEffect, TaskInput, TaskMachine, TaskTimer,
};
use swarm_actors::wire::Assignment;

use super::runtime::{self, Fate};
use super::{Ev, Life, Reply};
use crate::clock::Millis;
use crate::invariants::{one_task_per_slot, secrets_held};
use crate::managers::{Ev as StoreEv, StoreWorld};
use crate::node::node_id;
use crate::trace::TraceKind;

/// The agent's machine as the simulator runs it: managers by index, answers sharing the
/// leader's tasks.
type Machine = AgentMachine<usize, Assignment>;
type Input = AgentInput<usize, Assignment>;

/// The runtime every simulated node describes (`crate::node`).
const RUNTIME: &str = "process";

/// One task on the node: its machine, and what the simulation needs of its spec.
pub struct Local {
    machine: TaskMachine,
    pub service: ServiceId,
    pub slot: u64,
    /// The service's spec version the task was made from.
    pub spec_version: u64,
    /// How its spec fails on purpose (`crate::failing`), read once when it starts.
    spec_fail: Option<crate::failing::SpecFail>,
    /// The spec has a health check (the machine does not say so before the task runs).
    has_health: bool,
    /// What the simulated process will do, drawn when it starts.
    fate: Fate,
    /// The node the task is assigned to, as its answer said, and the files it names: (p2).
    node: Option<NodeId>,
    files: Vec<FileKey>,
}

pub struct Agent {
    boot: u64,
    machine: Machine,
    /// The task machines the agent machine asked for, until it stops them.
    tasks: BTreeMap<TaskId, Local>,
    /// The node's SecretVault, simulated: the files `HoldFiles` gave and `DropFiles` has not
    /// taken back.
    vault: BTreeMap<FileKey, FileMaterial>,
    /// The list of the answer being handled, and of the last one the machine took: (p2)'s
    /// waiting tasks.
    answer: Option<Arc<[Assignment]>>,
    last_answer: Option<Arc<[Assignment]>>,
}

// The invariants read an agent through this trait (crate::observed), not this module.
impl crate::observed::RunningTasks for Agent {
    fn running_tasks(&self) -> impl Iterator<Item = crate::observed::Running> + '_ {
        Agent::running_tasks(self)
    }
}

impl Agent {
    /// Tasks whose machine is RUNNING.
    pub fn running_tasks(&self) -> impl Iterator<Item = crate::observed::Running> + '_ {
        self.tasks
            .iter()
            .filter(|(_, l)| l.machine.state() == TaskState::Running)
            .map(|(id, l)| crate::observed::Running {
                task: *id,
                service: l.service,
                slot: l.slot,
                spec_version: l.spec_version,
            })
    }

    pub fn running(&self) -> usize {
        self.running_tasks().count()
    }
}

impl StoreWorld {
    fn agent(&mut self, node: usize, boot: u64) -> Option<&mut Agent> {
        let svc = self.svc();
        if svc.boots[node] != boot {
            return None;
        }
        svc.agents[node].as_mut()
    }

    pub(super) fn agent_boot(&mut self, at: Millis, i: usize) {
        let managers = self.ms.len();
        let svc = self.svc();
        svc.boots[i] += 1;
        let boot = svc.boots[i];
        svc.life[i] = Life::Alive;
        svc.held[i].clear();
        // Agents start at different managers, so that the first sessions spread.
        let machine = Machine::new([RUNTIME.to_string()], i);
        svc.agents[i] = Some(Agent {
            boot,
            machine,
            tasks: BTreeMap::new(),
            vault: BTreeMap::new(),
            answer: None,
            last_answer: None,
        });
        self.agent_input(at, i, Input::ManagersChanged((0..managers).collect()));
        self.svc_trace(at, i, TraceKind::AgentStarted, boot);
        self.q.push(
            at + SESSION_INTERVAL_MS,
            StoreEv::Svc(Ev::AgentTick { node: i, boot }),
        );
    }

    pub(super) fn agent_tick(&mut self, at: Millis, node: usize, boot: u64) {
        if self.agent(node, boot).is_none() {
            return;
        }
        self.q.push(
            at + SESSION_INTERVAL_MS,
            StoreEv::Svc(Ev::AgentTick { node, boot }),
        );
        self.agent_input(at, node, Input::Tick);
    }

    pub(super) fn agent_poke(&mut self, at: Millis, node: usize, boot: u64, leader: usize) {
        if self.agent(node, boot).is_some() {
            self.agent_input(at, node, Input::Poke { from: Some(leader) });
        }
    }

    /// An answer to request `hop` of session `seq`, from the manager it went to.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent_reply(
        &mut self,
        at: Millis,
        node: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        _from: usize,
        reply: Reply,
    ) {
        let Some(a) = self.agent(node, boot) else {
            return;
        };
        let outcome = match reply {
            Reply::Assignments(list, files, mesh) => {
                a.answer = Some(Arc::clone(&list));
                SessionOutcome::Assignments {
                    tasks: list.to_vec(),
                    files: files.to_vec(),
                    mesh,
                }
            }
            Reply::NotLeader(l) => SessionOutcome::NotLeader(l),
            Reply::Busy => SessionOutcome::Failed("the leader is not ready yet".into()),
        };
        self.agent_input(at, node, Input::SessionDone { seq, hop, outcome });
        if let Some(a) = self.agent(node, boot) {
            a.answer = None;
        }
    }

    pub(super) fn agent_timeout(&mut self, at: Millis, node: usize, boot: u64, seq: u64) {
        if self.agent(node, boot).is_some() {
            self.agent_input(at, node, Input::SessionTimedOut { seq });
        }
    }

    /// Feeds one input to the node's agent machine and carries out its effects.
    fn agent_input(&mut self, at: Millis, node: usize, input: Input) {
        let Some(a) = self.svc().agents[node].as_mut() else {
            return;
        };
        let boot = a.boot;
        let mut out = Vec::new();
        a.machine.handle(at, input, &mut out);
        self.svc().agent_depth += 1;
        for effect in out {
            match effect {
                AgentEffect::OpenSession {
                    seq,
                    hop,
                    to,
                    report,
                    held,
                    mesh_version,
                } => {
                    let Target::Remote(to) = to else {
                        unreachable!("a worker has no store of its own");
                    };
                    if hop == 0 {
                        self.svc_trace(at, node, TraceKind::SessionSent, report.len() as u64);
                        let ev = Ev::SessionTimeout { node, boot, seq };
                        self.q.push(at + SESSION_TIMEOUT_MS, StoreEv::Svc(ev));
                    }
                    self.svc_send_session(
                        at,
                        node,
                        boot,
                        seq,
                        hop,
                        to,
                        (report, held, mesh_version),
                    );
                }
                AgentEffect::StartTask(a) => self.agent_start(at, node, &a.task),
                AgentEffect::HoldFiles(files) => {
                    self.svc_trace(at, node, TraceKind::FilesHeld, files.len() as u64);
                    let svc = self.svc();
                    svc.report.secrets.held += files.len() as u64;
                    let a = svc.agents[node].as_mut().expect("the agent handling this");
                    for f in files {
                        a.vault.insert(f.key, f);
                    }
                    let n = a.vault.len();
                    let max = &mut svc.report.secrets.node_held_max;
                    *max = (*max).max(n);
                }
                AgentEffect::DropFiles(keys) => {
                    self.svc_trace(at, node, TraceKind::FilesDropped, keys.len() as u64);
                    let svc = self.svc();
                    svc.report.secrets.dropped += keys.len() as u64;
                    let a = svc.agents[node].as_mut().expect("the agent handling this");
                    for k in keys {
                        a.vault.remove(&k);
                    }
                }
                AgentEffect::ShutdownTask(id) => self.task_input(at, node, id, TaskInput::Shutdown),
                AgentEffect::StopTask(id) => {
                    if let Some(a) = self.svc().agents[node].as_mut() {
                        a.tasks.remove(&id);
                    }
                }
                AgentEffect::SessionEnded { result, .. } => {
                    let r = &mut self.svc().report;
                    match result {
                        Ok(n) => {
                            if let Some(a) = self.svc.as_mut().and_then(|s| s.agents[node].as_mut())
                            {
                                a.last_answer = a.answer.clone();
                            }
                            let r = &mut self.svc().report;
                            r.sessions_ok += 1;
                            self.svc_trace(at, node, TraceKind::SessionAnswered, n as u64);
                        }
                        Err(_) => {
                            r.sessions_failed += 1;
                            self.svc_trace(at, node, TraceKind::SessionFailed, 0);
                        }
                    }
                }
                AgentEffect::SessionAbandoned { .. } => {}
                AgentEffect::MeshTable(table) => {
                    self.svc_trace(at, node, TraceKind::MeshTable, table.version);
                    self.svc().report.mesh.tables_received += 1;
                }
            }
        }
        let svc = self.svc();
        svc.agent_depth -= 1;
        if svc.agent_depth == 0 {
            self.judge_held(at, node);
        }
    }

    /// Invariant (p2) on node `node`: its vault is what its agent machine holds, and each file
    /// is one a task of its own that has not ended names.
    fn judge_held(&mut self, at: Millis, node: usize) {
        let svc = self.svc.as_mut().expect("on");
        let Some(a) = svc.agents[node].as_ref() else {
            return;
        };
        if a.vault.is_empty() && a.machine.held().is_empty() {
            return;
        }
        let running = a.tasks.values().map(|l| secrets_held::Holder {
            node: l.node,
            ended: l.machine.state().is_terminal(),
            files: l.files.clone(),
        });
        let waiting = (a.last_answer.iter().flat_map(|l| l.iter()))
            .filter(|w| !a.tasks.contains_key(&w.task.id))
            .map(|w| secrets_held::Holder {
                node: w.task.node_id,
                ended: !secrets_held::may_start(w.task.status.state, w.task.desired_state),
                files: w.task.spec.files().map(|(k, _)| k).collect(),
            });
        let v = secrets_held::check_node(
            at,
            node_id(node),
            a.vault.keys(),
            a.machine.held().iter(),
            running.chain(waiting),
        );
        svc.violation(v);
    }

    #[allow(clippy::too_many_arguments)]
    fn svc_send_session(
        &mut self,
        at: Millis,
        node: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        to: usize,
        (statuses, held, mesh_version): (Vec<(TaskId, TaskStatus)>, Vec<FileKey>, u64),
    ) {
        let route = self.svc().net.route(node, to);
        for d in [route.first, route.dup].into_iter().flatten() {
            let ev = Ev::SessionArrive {
                to,
                from: node,
                boot,
                seq,
                hop,
                statuses: statuses.clone(),
                held: held.clone(),
                mesh_version,
            };
            self.q.push(at + d, StoreEv::Svc(ev));
        }
    }

    /// A task the agent machine starts: a fresh task machine, told `Start`.
    fn agent_start(&mut self, at: Millis, node: usize, t: &Task) {
        let Some(a) = self.svc().agents[node].as_mut() else {
            return;
        };
        let machine = TaskMachine::new(
            t.id,
            t.spec.health.clone(),
            t.spec.stop_grace_period_ms,
            HealthJudge::Machine,
            at,
        );
        let local = Local {
            machine,
            service: t.service_id,
            slot: t.slot,
            spec_version: t.spec_version,
            spec_fail: crate::failing::spec_fail(&t.spec),
            has_health: t.spec.health.is_some(),
            fate: Fate::default(),
            node: t.node_id,
            files: t.spec.files().map(|(k, _)| k).collect(),
        };
        let named = !local.files.is_empty();
        a.tasks.insert(t.id, local);
        if named {
            self.svc().report.secrets.tasks_with_files += 1;
        }
        self.task_input(at, node, t.id, TaskInput::Start);
    }

    pub(super) fn agent_runtime(
        &mut self,
        at: Millis,
        node: usize,
        boot: u64,
        task: TaskId,
        event: RuntimeEvent,
    ) {
        if self.agent(node, boot).is_some() {
            self.task_input(at, node, task, TaskInput::RuntimeEvent(event));
        }
    }

    pub(super) fn agent_timer(
        &mut self,
        at: Millis,
        node: usize,
        boot: u64,
        task: TaskId,
        timer: TaskTimer,
    ) {
        if self.agent(node, boot).is_some() {
            self.task_input(at, node, task, TaskInput::Timer(timer));
        }
    }

    /// Feeds one input to a task's machine and carries out its effects; the statuses it
    /// reports go to the agent machine, in order, as the task actor's would.
    fn task_input(&mut self, at: Millis, node: usize, task: TaskId, input: TaskInput) {
        let heal_ms = self.cfg.duration_ms;
        let svc = self.svc.as_mut().expect("on");
        let Some(a) = svc.agents[node].as_mut() else {
            return;
        };
        let boot = a.boot;
        let Some(l) = a.tasks.get_mut(&task) else {
            return; // dropped while its event was on the way
        };
        let mut out = Vec::new();
        let before = l.machine.state();
        l.machine.handle(at, input, &mut out);
        let entered_running =
            before != TaskState::Running && l.machine.state() == TaskState::Running;
        let mut reports = Vec::new();
        for e in out {
            match e {
                TaskEffect::Runtime(cmd) => {
                    if cmd == RuntimeCmd::Start {
                        l.fate = runtime::fate(&mut svc.runtime_rng, at, heal_ms, l.has_health);
                        l.fate.spec_fail = l.spec_fail;
                    }
                    for (after, event) in
                        runtime::respond(&cmd, &mut svc.runtime_rng, at, heal_ms, &l.fate)
                    {
                        let ev = Ev::Runtime {
                            node,
                            boot,
                            task,
                            event,
                        };
                        self.q.push(at + after, StoreEv::Svc(ev));
                    }
                }
                TaskEffect::Schedule { after_ms, timer } => {
                    let ev = Ev::TaskTimer {
                        node,
                        boot,
                        task,
                        timer,
                    };
                    self.q.push(at + after_ms, StoreEv::Svc(ev));
                }
                TaskEffect::Report(status) => {
                    if matches!(status.state, TaskState::Failed | TaskState::Rejected) {
                        svc.report.tasks_failed += 1;
                    }
                    self.trace.event(at, node, TraceKind::TaskReported);
                    self.trace.u64(task.0 as u64 ^ status.state as u64);
                    reports.push(status);
                }
            }
        }
        if entered_running {
            svc.report.tasks_started += 1;
            // Invariant (g), on the machines: checked whenever a task starts running.
            if at >= self.cfg.duration_ms + one_task_per_slot::SETTLE_MS {
                let v = one_task_per_slot::check_machines(at, &svc.agents);
                svc.violation(v);
            }
        }
        for status in reports {
            self.agent_input(at, node, Input::TaskStatus { task, status });
        }
    }
}
