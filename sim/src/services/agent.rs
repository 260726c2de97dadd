//! The node agent, simulated: one per live worker, made fresh at every start of the node. It
//! mirrors `actors/src/agent/mod.rs`:
//!
//! - a session opens every [`SESSION_INTERVAL_MS`], on a poke, and on a status change, one at a
//!   time (a change during one asks for another after it); it goes to the last leader, or to
//!   the managers in turn, follows one redirect, and fails after [`SESSION_TIMEOUT_MS`]; a poke
//!   from a manager other than the one the session in flight went to abandons that session;
//! - it reports every status that the last answer's store view would accept ([`TaskStatus::accepts`]),
//!   plus the statuses of tasks it lost (a restarted node's tasks: FAILED);
//! - on an answer: a new task with desired Running gets a [`TaskMachine`] and `Start`; a known
//!   task whose desired state is past Running gets `Shutdown` once; a task no longer listed is
//!   dropped (its process with it).
//!
//! The task machines judge health themselves ([`HealthJudge::Machine`], the process runtime's
//! way); their runtime commands come back as events from `runtime.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use swarm_actors::agent::{SESSION_INTERVAL_MS, SESSION_TIMEOUT_MS, lost_status};

use swarm_actors::model::{ServiceId, TaskId, TaskState, TaskStatus};
use swarm_actors::task::{
    HealthJudge, RuntimeCmd, RuntimeEvent, TaskEffect, TaskInput, TaskMachine, TaskTimer,
};
use swarm_actors::wire::{Assignment, SESSION_STATUSES_MAX};

use super::runtime::{self, Fate};
use super::{Ev, Life, Reply};
use crate::clock::Millis;
use crate::invariants::one_task_per_slot;
use crate::managers::{Ev as StoreEv, StoreWorld};
use crate::trace::TraceKind;

/// One task on the node.
pub struct Local {
    machine: TaskMachine,
    shutdown_sent: bool,
    pub service: ServiceId,
    pub slot: u64,
    /// The spec has a health check (the machine does not say so before the task runs).
    has_health: bool,
    /// What the simulated process will do, drawn when it starts.
    fate: Fate,
}

pub struct Agent {
    boot: u64,
    tasks: BTreeMap<TaskId, Local>,
    /// What the last answer said the store holds, per task.
    known: BTreeMap<TaskId, TaskStatus>,
    /// Tasks listed here that this life of the node never ran: reported failed or shut down.
    lost: BTreeMap<TaskId, TaskStatus>,
    leader: Option<usize>,
    next_manager: usize,
    in_flight: Option<u64>,
    /// The manager the session in flight went to first.
    in_flight_to: usize,
    seq: u64,
    again: bool,
}

// The invariants read an agent through this trait (crate::observed), not this module.
impl crate::observed::RunningTasks for Agent {
    fn running_tasks(&self) -> impl Iterator<Item = (TaskId, ServiceId, u64)> + '_ {
        Agent::running_tasks(self)
    }
}

impl Agent {
    /// Tasks whose machine is RUNNING: (task, service, slot).
    pub fn running_tasks(&self) -> impl Iterator<Item = (TaskId, ServiceId, u64)> + '_ {
        self.tasks
            .iter()
            .filter(|(_, l)| l.machine.state() == TaskState::Running)
            .map(|(id, l)| (*id, l.service, l.slot))
    }

    pub fn running(&self) -> usize {
        self.running_tasks().count()
    }

    fn report(&self) -> Vec<(TaskId, TaskStatus)> {
        let mut statuses: Vec<(TaskId, TaskStatus)> = self
            .tasks
            .iter()
            .filter(|(id, l)| {
                self.known
                    .get(id)
                    .is_none_or(|k| k.accepts(l.machine.status()))
            })
            .map(|(id, l)| (*id, l.machine.status().clone()))
            .chain(self.lost.iter().map(|(id, s)| (*id, s.clone())))
            .collect();
        statuses.truncate(SESSION_STATUSES_MAX);
        statuses
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
        let svc = self.svc();
        svc.boots[i] += 1;
        let boot = svc.boots[i];
        svc.life[i] = Life::Alive;
        svc.held[i].clear();
        svc.agents[i] = Some(Agent {
            boot,
            tasks: BTreeMap::new(),
            known: BTreeMap::new(),
            lost: BTreeMap::new(),
            leader: None,
            next_manager: i,
            in_flight: None,
            in_flight_to: 0,
            seq: 0,
            again: false,
        });
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
        self.agent_session(at, node);
    }

    pub(super) fn agent_poke(&mut self, at: Millis, node: usize, boot: u64, leader: usize) {
        let Some(a) = self.agent(node, boot) else {
            return;
        };
        a.leader = Some(leader);
        // As the real agent: a session waiting on another manager is abandoned.
        if a.in_flight.is_some() && a.in_flight_to != leader {
            a.in_flight = None;
            a.again = false;
        }
        self.agent_session(at, node);
    }

    /// Opens a session unless one is in flight (then another follows it).
    fn agent_session(&mut self, at: Millis, node: usize) {
        let managers = self.ms.len();
        let svc = self.svc.as_mut().expect("on");
        let Some(a) = svc.agents[node].as_mut() else {
            return;
        };
        if a.in_flight.is_some() {
            a.again = true;
            return;
        }
        let to = a.leader.unwrap_or(a.next_manager % managers);
        a.seq += 1;
        let (seq, boot) = (a.seq, a.boot);
        a.in_flight = Some(seq);
        a.in_flight_to = to;
        let statuses = a.report();
        let n = statuses.len() as u64;
        self.svc_send_session(at, node, boot, seq, 0, to, statuses);
        self.q.push(
            at + SESSION_TIMEOUT_MS,
            StoreEv::Svc(Ev::SessionTimeout { node, boot, seq }),
        );
        self.svc_trace(at, node, TraceKind::SessionSent, n);
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
        statuses: Vec<(TaskId, TaskStatus)>,
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
            };
            self.q.push(at + d, StoreEv::Svc(ev));
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent_reply(
        &mut self,
        at: Millis,
        node: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        from: usize,
        reply: Reply,
    ) {
        let Some(a) = self.agent(node, boot) else {
            return;
        };
        if a.in_flight != Some(seq) {
            return; // an answer to a session that timed out, or a duplicate
        }
        match reply {
            Reply::Assignments(list) => {
                a.leader = Some(from);
                self.agent_done(at, node, Some(list));
            }
            Reply::NotLeader(Some(l)) if l != from && hop == 0 => {
                let statuses = a.report();
                self.svc_send_session(at, node, boot, seq, 1, l, statuses);
            }
            Reply::NotLeader(_) | Reply::Busy => self.agent_done(at, node, None),
        }
    }

    pub(super) fn agent_timeout(&mut self, at: Millis, node: usize, boot: u64, seq: u64) {
        if self
            .agent(node, boot)
            .is_some_and(|a| a.in_flight == Some(seq))
        {
            self.agent_done(at, node, None);
        }
    }

    fn agent_done(&mut self, at: Millis, node: usize, answer: Option<Arc<[Assignment]>>) {
        let svc = self.svc.as_mut().expect("on");
        let a = svc.agents[node].as_mut().expect("a live agent");
        a.in_flight = None;
        match answer {
            Some(list) => {
                svc.report.sessions_ok += 1;
                self.svc_trace(at, node, TraceKind::SessionAnswered, list.len() as u64);
                self.agent_apply(at, node, &list);
            }
            None => {
                svc.report.sessions_failed += 1;
                a.leader = None;
                a.next_manager = a.next_manager.wrapping_add(1);
                self.svc_trace(at, node, TraceKind::SessionFailed, 0);
            }
        }
        let a = self.svc().agents[node].as_mut().expect("a live agent");
        if std::mem::take(&mut a.again) {
            self.agent_session(at, node);
        }
    }

    fn agent_apply(&mut self, at: Millis, node: usize, list: &[Assignment]) {
        let a = self.svc().agents[node].as_mut().expect("a live agent");
        a.known = list
            .iter()
            .map(|a| (a.task.id, a.task.status.clone()))
            .collect();
        let known = &a.known;
        a.lost
            .retain(|id, s| known.get(id).is_some_and(|k| k.accepts(s)));
        let listed: BTreeSet<TaskId> = list.iter().map(|a| a.task.id).collect();
        // Dropping the machine ends its process: the real agent stops the task actor, which
        // removes what the runtime keeps of the task.
        a.tasks.retain(|id, _| listed.contains(id));
        for t in list.iter().map(|a| &a.task) {
            let wanted = t.desired_state <= TaskState::Running;
            let a = self.svc().agents[node].as_mut().expect("a live agent");
            if let Some(l) = a.tasks.get_mut(&t.id) {
                if !wanted && !l.shutdown_sent {
                    l.shutdown_sent = true;
                    self.task_input(at, node, t.id, TaskInput::Shutdown);
                }
                continue;
            }
            if t.status.state.is_terminal() {
                continue; // history from before this life
            }
            if !wanted {
                let s = lost_status(TaskState::Shutdown, at, "shut down before it started here");
                a.lost.insert(t.id, s);
            } else if t.status.state > TaskState::Assigned {
                let s = lost_status(TaskState::Failed, at, "task lost when the node restarted");
                a.lost.insert(t.id, s);
            } else {
                let machine = TaskMachine::new(
                    t.id,
                    t.spec.health.clone(),
                    t.spec.stop_grace_period_ms,
                    HealthJudge::Machine,
                    at,
                );
                a.tasks.insert(
                    t.id,
                    Local {
                        machine,
                        shutdown_sent: false,
                        service: t.service_id,
                        slot: t.slot,
                        has_health: t.spec.health.is_some(),
                        fate: Fate::default(),
                    },
                );
                self.task_input(at, node, t.id, TaskInput::Start);
            }
        }
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

    /// Feeds one input to a task's machine and carries out its effects.
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
        let mut reported = false;
        for e in out {
            match e {
                TaskEffect::Runtime(cmd) => {
                    if cmd == RuntimeCmd::Start {
                        l.fate = runtime::fate(&mut svc.runtime_rng, at, heal_ms, l.has_health);
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
                    reported = true;
                    if matches!(status.state, TaskState::Failed | TaskState::Rejected) {
                        svc.report.tasks_failed += 1;
                    }
                    self.trace.event(at, node, TraceKind::TaskReported);
                    self.trace.u64(task.0 as u64 ^ status.state as u64);
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
        if reported {
            self.agent_session(at, node);
        }
    }
}
