//! The leader actor, simulated: one per manager whose store machine is the raft leader, gone
//! when leadership moves or the manager crashes. It mirrors `actors/src/leader/mod.rs`:
//!
//! - a pass reads the manager's local store (not linearizable, as the real one), builds the
//!   node views from that manager's membership view (`Unknown` for nodes it does not see
//!   during [`DOWN_GRACE_MS`] after leadership began unless membership declared them Down,
//!   `Down` after), calls the real
//!   [`plan::plan`], and proposes the ops in chunks of [`OPS_PER_COMMAND_MAX`], one after the
//!   other; a failed chunk ends the pass, which is retried after [`RETRY_MS`];
//! - passes run every [`PASS_INTERVAL_MS`], [`pass_debounce_ms`] of the last pass's nodes and
//!   tasks after an applied entry or a fresh status (one debounce timer at a time, which a pass
//!   for another reason leaves running), at once when the Ready set changes unless that timer
//!   is set, and at a restart delay's end (one wake timer per end);
//! - sessions are answered from the assignments of the last pass, each node's list chosen by
//!   the real [`answer::session_answer`] (every live task, then history newest first within
//!   the answer's byte bound); only the node a task is on speaks for it; no answer (Busy)
//!   before the first pass. While a pass waits for its writes
//!   the real actor handles no message: sessions wait in a mailbox until it ends.
//!
//! A paused manager's actor does nothing until it resumes (its timers fire into nothing; the
//! interval brings it back).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use swarm_actors::leader::answer;
use swarm_actors::leader::plan::{self, PlanInput, VersionedTask};
use swarm_actors::leader::{
    DOWN_GRACE_MS, PASS_INTERVAL_MS, REPORTS_MAX, RETRY_MS, pass_debounce_ms, wake_fire_ms,
    wake_to_set,
};
use swarm_actors::model::{Service, ServiceId, Task, TaskId, TaskState, TaskStatus};
use swarm_actors::scheduler::{Unseen, node_views};
use swarm_actors::store::{Kind, OPS_PER_COMMAND_MAX, ObjectBody, Op};

use super::{Ev, MAILBOX_MAX, Reply, Waiter, index};
use crate::clock::Millis;
use crate::invariants::placement;
use crate::managers::{Ev as StoreEv, Status as MgrStatus, StoreWorld};
use crate::node::node_id;
use crate::trace::TraceKind;

/// A session waiting for the leader to finish its pass.
struct Queued {
    from: usize,
    boot: u64,
    seq: u64,
    hop: u8,
    statuses: Vec<(TaskId, TaskStatus)>,
}

/// A pass whose writes are in flight.
struct InPass {
    now: Millis,
    chunks: Vec<Vec<Op>>,
    next: usize,
    /// The tasks as they will be once the writes land.
    current: BTreeMap<TaskId, Rc<Task>>,
    /// Each service's name, which the answer's size counts.
    names: BTreeMap<ServiceId, String>,
    /// Nodes the pass saw.
    nodes: usize,
    poke: Vec<usize>,
    wake_at: Option<u64>,
    /// Placements of this pass that the views it used did not allow (invariant h), reported
    /// when their write commits.
    bad: BTreeMap<TaskId, String>,
}

pub struct LeaderSim {
    term: u64,
    since_ms: Millis,
    rng: StdRng,
    reports: BTreeMap<TaskId, TaskStatus>,
    /// From the last pass: each node's assignments, shared with the replies that carry them.
    assignments: BTreeMap<usize, Rc<[Rc<Task>]>>,
    /// The tasks the last pass read, with their store versions: the next pass copies only
    /// those whose version changed (copying every task on every pass cost more than the plan
    /// at 1,000 nodes).
    read: BTreeMap<TaskId, (u64, Rc<Task>)>,
    task_node: BTreeMap<TaskId, usize>,
    /// The debounce timer is set (only its firing clears it).
    scheduled: bool,
    /// Something asked for a pass since the last one began.
    dirty: bool,
    /// When the wake timer for a restart delay's end fires (see [`wake_to_set`]).
    wake_at: Option<Millis>,
    passes: u64,
    /// Nodes and tasks as of the last pass, for [`pass_debounce_ms`].
    objects: usize,
    in_pass: Option<InPass>,
    again: bool,
    mailbox: Vec<Queued>,
}

impl StoreWorld {
    /// Starts or stops manager `i`'s leader actor after its store machine handled an input.
    pub(crate) fn leader_changed(&mut self, at: Millis, i: usize) {
        let leading = match (&self.ms[i].machine, self.ms[i].status) {
            (Some(m), s) if s != MgrStatus::Crashed && m.is_leader() => Some(m.term()),
            _ => None,
        };
        let seed = self.cfg.seed;
        let svc = self.svc();
        let current = svc.leaders.get(&i).map(|l| l.term);
        if current == leading {
            return;
        }
        svc.leaders.remove(&i);
        let Some(term) = leading else {
            return;
        };
        svc.leaders.insert(
            i,
            LeaderSim {
                term,
                since_ms: at,
                rng: StdRng::seed_from_u64(seed ^ ((i as u64) << 40) ^ term ^ 0x1ead),
                reports: BTreeMap::new(),
                assignments: BTreeMap::new(),
                read: BTreeMap::new(),
                task_node: BTreeMap::new(),
                scheduled: false,
                dirty: false,
                wake_at: None,
                passes: 0,
                objects: 0,
                in_pass: None,
                again: false,
                mailbox: Vec::new(),
            },
        );
        self.q.push(at, StoreEv::Svc(Ev::Pass { m: i, term }));
        self.q.push(
            at + PASS_INTERVAL_MS,
            StoreEv::Svc(Ev::LeaderTick { m: i, term }),
        );
    }

    /// An entry was applied on manager `i`: its leader actor (if any) runs a pass soon.
    pub(crate) fn leader_applied(&mut self, at: Millis, i: usize) {
        self.leader_soon_debounced(at, i);
    }

    /// Asks for a pass after the debounce the leader's last pass size calls for.
    fn leader_soon_debounced(&mut self, at: Millis, m: usize) {
        let Some(l) = self.svc().leaders.get(&m) else {
            return;
        };
        let after = pass_debounce_ms(l.objects);
        self.leader_soon(at, m, after);
    }

    pub(super) fn leader_ready_changed(&mut self, at: Millis, m: usize) {
        self.leader_soon(at, m, 0);
    }

    fn leader_soon(&mut self, at: Millis, m: usize, after: Millis) {
        let Some(l) = self.svc().leaders.get_mut(&m) else {
            return;
        };
        l.dirty = true;
        if !l.scheduled {
            l.scheduled = true;
            let term = l.term;
            self.q.push(at + after, StoreEv::Svc(Ev::Due { m, term }));
        }
    }

    /// The debounce timer fired: a pass if something asked for one since the last.
    pub(super) fn leader_due(&mut self, at: Millis, m: usize, term: u64) {
        if !self.leader_is(m, term) {
            return;
        }
        let l = self.svc().leaders.get_mut(&m).expect("checked");
        l.scheduled = false;
        if l.dirty {
            self.leader_pass(at, m, term);
        }
    }

    fn leader_is(&mut self, m: usize, term: u64) -> bool {
        self.svc().leaders.get(&m).is_some_and(|l| l.term == term)
    }

    pub(super) fn leader_tick(&mut self, at: Millis, m: usize, term: u64) {
        if !self.leader_is(m, term) {
            return;
        }
        self.q.push(
            at + PASS_INTERVAL_MS,
            StoreEv::Svc(Ev::LeaderTick { m, term }),
        );
        self.leader_pass(at, m, term);
    }

    pub(super) fn leader_pass(&mut self, at: Millis, m: usize, term: u64) {
        if !self.leader_is(m, term) || !self.manager_up(m) {
            return;
        }
        let nodes_n = self.cfg.nodes;
        let svc = self.svc.as_mut().expect("on");
        let l = svc.leaders.get_mut(&m).expect("checked");
        if l.in_pass.is_some() {
            l.again = true;
            return;
        }
        l.dirty = false;
        let state = self.ms[m].machine.as_ref().expect("up").state();
        let services: Vec<Service> = state
            .list(Kind::Service)
            .filter_map(|o| match &o.body {
                ObjectBody::Service(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        // Tasks, as nodes below, are read in place: the plan copies only those it changes.
        let tasks: Vec<VersionedTask> = state
            .list(Kind::Task)
            .filter_map(|o| match &o.body {
                ObjectBody::Task(t) => Some(VersionedTask {
                    version: o.version,
                    task: Cow::Borrowed(t),
                }),
                _ => None,
            })
            .collect();
        let mut ready: BTreeSet<_> = svc.views[m].iter().map(|&i| node_id(i)).collect();
        ready.insert(node_id(m));
        let down: BTreeSet<_>;
        let unseen = if at.saturating_sub(l.since_ms) >= DOWN_GRACE_MS {
            Unseen::Down
        } else {
            down = svc.downs[m].iter().map(|&i| node_id(i)).collect();
            Unseen::DownOnly(&down)
        };
        // The views are built from the store's objects in place: cloning 1,000 node objects
        // on every pass cost more than the plan itself.
        let node_objects = state.list(Kind::Node).filter_map(|o| match &o.body {
            ObjectBody::Node(n) => Some(n),
            _ => None,
        });
        let views = node_views(node_objects, &ready, unseen);
        let rng = &mut l.rng;
        let mut new_id = || TaskId(rng.random::<u128>());
        let p = plan::plan(
            &PlanInput {
                now_ms: at,
                nodes: &views,
                services: &services,
                tasks: &tasks,
                reports: &l.reports,
            },
            &mut new_id,
        );
        let mut before = std::mem::take(&mut l.read);
        let mut current: BTreeMap<TaskId, Rc<Task>> = BTreeMap::new();
        for t in &tasks {
            let unchanged = before
                .remove(&t.task.id)
                .filter(|(version, _)| *version == t.version);
            let task = match unchanged {
                Some((_, task)) => task,
                None => Rc::new(t.task.as_ref().clone()),
            };
            current.insert(t.task.id, Rc::clone(&task));
            l.read.insert(t.task.id, (t.version, task));
        }
        // Invariant (h): judge every placement against the views this pass used.
        let mut bad = BTreeMap::new();
        for op in &p.ops {
            if let Op::Put {
                body: ObjectBody::Task(t),
                ..
            } = op
                && let Some(n) = t.node_id
                && t.status.state == TaskState::Assigned
                && current.get(&t.id).is_none_or(|old| old.node_id.is_none())
                && let Some(why) = placement::judge(&views, n, &t.spec)
            {
                bad.insert(t.id, why);
            }
        }
        svc.report.pass_ops += p.ops.len() as u64;
        svc.report.tasks_created += p.created as u64;
        svc.report.tasks_placed += p.placed as u64;
        let poke = p.poke.iter().filter_map(|&id| index(id, nodes_n)).collect();
        let chunks: Vec<Vec<Op>> = p
            .ops
            .chunks(OPS_PER_COMMAND_MAX)
            .map(<[Op]>::to_vec)
            .collect();
        let first = chunks.first().cloned();
        l.in_pass = Some(InPass {
            now: at,
            chunks,
            next: 0,
            current,
            names: services
                .iter()
                .map(|s| (s.id, s.spec.name.clone()))
                .collect(),
            nodes: views.len(),
            poke,
            wake_at: p.wake_at_ms,
            bad,
        });
        let ops_n = p.ops.len() as u64;
        self.svc_trace(at, m, TraceKind::Pass, ops_n);
        match first {
            Some(ops) => self.svc_propose(at, m, ops, Waiter::Pass { m, term }),
            None => self.leader_finish(at, m, true),
        }
    }

    pub(super) fn leader_pass_result(&mut self, at: Millis, m: usize, term: u64, ok: bool) {
        if !self.leader_is(m, term) {
            return;
        }
        let svc = self.svc.as_mut().expect("on");
        let l = svc.leaders.get_mut(&m).expect("checked");
        let Some(p) = l.in_pass.as_mut() else {
            return;
        };
        if !ok {
            self.leader_finish(at, m, false);
            return;
        }
        let mut found = Vec::new();
        for op in &p.chunks[p.next] {
            match op {
                Op::Put {
                    body: ObjectBody::Task(t),
                    ..
                } => {
                    if let Some(why) = p.bad.remove(&t.id) {
                        found.push(placement::violation(at, t, why));
                    }
                    p.current.insert(t.id, Rc::new(t.clone()));
                }
                Op::Delete { id, .. } => {
                    if let Ok(id) = id.parse() {
                        p.current.remove(&id);
                    }
                }
                Op::Put { .. } => {}
            }
        }
        p.next += 1;
        let next = p.chunks.get(p.next).cloned();
        for v in found {
            svc.violation(Some(v));
        }
        match next {
            Some(ops) => self.svc_propose(at, m, ops, Waiter::Pass { m, term }),
            None => self.leader_finish(at, m, true),
        }
    }

    fn leader_finish(&mut self, at: Millis, m: usize, ok: bool) {
        let svc = self.svc.as_mut().expect("on");
        let l = svc
            .leaders
            .get_mut(&m)
            .expect("finishing a pass of a live actor");
        let p = l.in_pass.take().expect("a pass in flight");
        let wake = p.wake_at.map(|end| wake_fire_ms(end, p.now));
        if ok {
            // The statuses are in the store now, or refused for good.
            l.reports.clear();
        }
        l.task_node.clear();
        let nodes_n = svc.life.len();
        l.objects = p.nodes + p.current.len();
        let mut lists: BTreeMap<usize, Vec<Rc<Task>>> = BTreeMap::new();
        for t in p.current.into_values() {
            let Some(node) = t.node_id.and_then(|n| index(n, nodes_n)) else {
                continue;
            };
            l.task_node.insert(t.id, node);
            lists.entry(node).or_default().push(t);
        }
        let name = |t: &Task| p.names.get(&t.service_id).map_or("", String::as_str);
        l.assignments = lists
            .into_iter()
            .map(|(n, v)| (n, answer::session_answer(v, name).0.into()))
            .collect();
        l.passes += 1;
        let term = l.term;
        let again = std::mem::take(&mut l.again);
        let mailbox = std::mem::take(&mut l.mailbox);
        svc.report.passes += 1;
        if !ok {
            svc.report.passes_failed += 1;
        }
        if ok {
            for &node in &p.poke {
                let route = svc.net.route(m, node);
                let boot = svc.boots[node];
                for d in [route.first, route.dup].into_iter().flatten() {
                    let ev = Ev::Poke {
                        node,
                        boot,
                        leader: m,
                    };
                    self.q.push(at + d, StoreEv::Svc(ev));
                }
            }
        } else {
            self.leader_soon(at, m, RETRY_MS);
        }
        let l = self.svc().leaders.get_mut(&m).expect("still leading");
        if let Some(wake) = wake_to_set(&mut l.wake_at, wake, at) {
            self.q.push(wake, StoreEv::Svc(Ev::Pass { m, term }));
        }
        for s in mailbox {
            self.manager_session(at, m, s.from, s.boot, s.seq, s.hop, s.statuses);
        }
        if again {
            self.q.push(at, StoreEv::Svc(Ev::Pass { m, term }));
        }
    }

    /// A session request reaches manager `to`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn manager_session(
        &mut self,
        at: Millis,
        to: usize,
        from: usize,
        boot: u64,
        seq: u64,
        hop: u8,
        statuses: Vec<(TaskId, TaskStatus)>,
    ) {
        if !self.manager_up(to) {
            return; // lost with the manager; the agent's session times out
        }
        let leader_of = self.ms[to]
            .machine
            .as_ref()
            .and_then(|m| m.leader())
            .and_then(|rid| self.ms.iter().position(|mg| mg.raft_id == rid));
        let leading = self.ms[to].machine.as_ref().is_some_and(|m| m.is_leader());
        let svc = self.svc.as_mut().expect("on");
        let reply = match svc.leaders.get_mut(&to) {
            Some(l) if l.passes == 0 => Reply::Busy,
            Some(l) if l.in_pass.is_some() => {
                if l.mailbox.len() < MAILBOX_MAX {
                    l.mailbox.push(Queued {
                        from,
                        boot,
                        seq,
                        hop,
                        statuses,
                    });
                    return;
                }
                Reply::Busy
            }
            Some(l) => {
                let mut fresh = false;
                for (task, status) in statuses {
                    if l.task_node.get(&task) != Some(&from) {
                        continue; // only the node a task is on speaks for it
                    }
                    if l.reports.len() >= REPORTS_MAX && !l.reports.contains_key(&task) {
                        break;
                    }
                    l.reports.insert(task, status);
                    fresh = true;
                }
                let mine = l.assignments.get(&from).cloned().unwrap_or_default();
                if fresh {
                    self.leader_soon_debounced(at, to);
                }
                Reply::Assignments(mine)
            }
            None if leading => Reply::Busy,
            None => Reply::NotLeader(leader_of),
        };
        let svc = self.svc();
        let route = svc.net.route(to, from);
        for d in [route.first, route.dup].into_iter().flatten() {
            let ev = Ev::SessionReply {
                node: from,
                boot,
                seq,
                hop,
                from: to,
                reply: reply.clone(),
            };
            self.q.push(at + d, StoreEv::Svc(ev));
        }
    }
}
