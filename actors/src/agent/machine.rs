//! The AgentMachine: every decision of the node agent, as a sans-IO state machine.
//!
//! ```text
//!  Tick / Poke / TaskStatus ──▶ session(): one in flight, else `again`
//!                                 └▶ OpenSession { seq, hop 0, Local | Remote(leader or a manager in turn), report }
//!  SessionDone { seq, hop, .. } (an abandoned or stale one is ignored)
//!     Assignments ─▶ SessionEnded(Ok) ─▶ MeshTable (a new version) ─▶ apply: StopTask (unlisted), ShutdownTask (desired past
//!                    Running, once), HoldFiles (the answer's files a task here needs), DropFiles
//!                    (held files no task here needs), StartTask (new, desired Running, every
//!                    file held), lost statuses (the rest); a task still waiting for files asks
//!                    for the next session at once (at most FILE_SESSIONS_MAX in a row)
//!     NotLeader(l) ─▶ OpenSession { seq, hop + 1, Remote(l), report } while the redirect limit allows
//!     Failed / SessionTimedOut ─▶ SessionEnded(Err): forget the leader, next manager
//!  then, if something asked for a session meanwhile (`again`), the next one opens
//! ```
//!
//! The machine holds what the agent knows: each task's last status as its task actor reported
//! it (cut as the leader stores it), what the last answer says the store holds (`known`), the
//! statuses of tasks this run never ran (`lost`), the leader and the managers, and the session in
//! flight. It reads no clock and does no IO: `now_ms` (Unix ms) comes with every input, and the
//! effects are carried out by a shell — the [`AgentActor`](super::AgentActor) with task actors
//! and the transport, or the simulator with task machines and a simulated network. Task actors
//! (or machines) live in the shell; the machine only orders them started, shut down or stopped.
//!
//! Secrets and configs: the machine knows which files the node holds (their data is the shell's,
//! the SecretVault's) and reports them with every session (`held`). A new task starts only once
//! every file it names is held; until then it waits, like a held task. Files no task of this
//! node still needs — a task that has not ended here, or one listed that waits to start — are
//! dropped after each answer and each status that ends a task. An answer that carries no file
//! while a waiting task lacks one the report did not name means the leader has no such file
//! (`leader::machine::files`): the task is rejected ("secret x not found").
//!
//! It is generic over the address of a manager `A` (a socket address in production, an index in
//! the simulator) and over the assignment `T` that an answer carries (see [`AssignedTask`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::model::{FileKey, FileMaterial, Task, TaskId, TaskState, TaskStatus};
use crate::wire::{Assignment, MeshTable, SESSION_HELD_MAX, SESSION_STATUSES_MAX};

use super::AgentView;

/// Requests over the network one session may make: the first, and one redirect to the leader
/// that the first manager named. A session through this node's store may follow its redirect
/// and one more.
pub const SESSION_NETWORK_REQUESTS_MAX: u8 = 2;

/// Sessions in a row opened at once because an answer brought files and a task still waits
/// for more (an answer carries at most `answer::FILES_ANSWER_BYTES_MAX` of them). Past it, the
/// next tick asks again.
pub const FILE_SESSIONS_MAX: u32 = 16;

/// One task of an answer, as the machine reads it: production answers carry [`Assignment`]s,
/// the simulator shares the leader's `Rc<Task>`s.
pub trait AssignedTask {
    fn task(&self) -> &Task;
}

impl AssignedTask for Assignment {
    fn task(&self) -> &Task {
        &self.task
    }
}

impl AssignedTask for Rc<Task> {
    fn task(&self) -> &Task {
        self
    }
}

/// Where one request of a session goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<A> {
    /// This node's own store (the node is a manager): no network.
    Local,
    Remote(A),
}

/// How one request of a session ended.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionOutcome<A, T> {
    /// The leader's answer: this node's complete list, and the data of the secrets and
    /// configs its tasks need that the report said the node lacks.
    Assignments {
        tasks: Vec<T>,
        files: Vec<FileMaterial>,
        /// The routing mesh's table, when the leader's differs from the version reported.
        mesh: Option<Arc<MeshTable>>,
    },
    /// The manager asked is not the leader; it names the one it knows, if any.
    NotLeader(Option<A>),
    /// Anything else: unreachable, busy, refused, a bad answer.
    Failed(String),
}

/// What the machine is told.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentInput<A, T> {
    /// The session interval's timer.
    Tick,
    /// A poke from the leader at `from` (none: the leader on this node, without the network).
    Poke { from: Option<A> },
    /// The managers membership sees Ready, asked in turn while no leader is known.
    ManagersChanged(Vec<A>),
    /// Whether this node has a store of its own (it is a manager): sessions go through it.
    LocalStore { available: bool },
    /// A task actor reported a status.
    TaskStatus { task: TaskId, status: TaskStatus },
    /// The shell could not start the task a [`AgentEffect::StartTask`] asked for.
    TaskStartFailed { task: TaskId, error: String },
    /// Request `hop` of session `seq` ended.
    SessionDone {
        seq: u64,
        hop: u8,
        outcome: SessionOutcome<A, T>,
    },
    /// Session `seq` ran out of time (the shell's [`SESSION_TIMEOUT_MS`](super::SESSION_TIMEOUT_MS)).
    SessionTimedOut { seq: u64 },
}

/// What the machine wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEffect<A, T> {
    /// Send request `hop` of session `seq`. Hop 0 starts the session's timeout; a later hop (a
    /// redirect) runs within what is left of it.
    OpenSession {
        seq: u64,
        hop: u8,
        to: Target<A>,
        /// The statuses to report (a [`SessionReport`](crate::wire::SessionReport)'s).
        report: Vec<(TaskId, TaskStatus)>,
        /// The secrets and configs this node holds (the report's `held`).
        held: Vec<FileKey>,
        /// The version of the routing mesh's table this node holds (0: none).
        mesh_version: u64,
    },
    /// A new routing-mesh table: publish it to the mesh, and give its ports to the tasks
    /// started from now on. Comes before the answer's `StartTask`s.
    MeshTable(Arc<MeshTable>),
    /// Keep the data of these secrets and configs (the node's SecretVault holds it) for the
    /// tasks that need them.
    HoldFiles(Vec<FileMaterial>),
    /// No task of this node needs these any more: forget them.
    DropFiles(Vec<FileKey>),
    /// Start a task actor for this assignment and tell it Start.
    StartTask(T),
    /// The task's desired state moved past Running: tell its actor Shutdown.
    ShutdownTask(TaskId),
    /// The task is no longer listed: stop its actor, which removes what the runtime keeps of it.
    StopTask(TaskId),
    /// Session `seq` ended: the number of tasks in its answer, or why it failed. For logs and
    /// counts; the machine already acted on it.
    SessionEnded {
        seq: u64,
        result: Result<usize, String>,
    },
    /// Session `seq`, gone to `asked`, was abandoned for the leader that poked.
    SessionAbandoned { seq: u64, asked: A, leader: A },
}

/// One task this run started.
#[derive(Clone, Debug, PartialEq)]
struct Local {
    /// As the task actor last reported it, cut as the leader stores it.
    status: TaskStatus,
    desired: TaskState,
    shutdown_sent: bool,
    /// The secrets and configs it names: held while its status has not ended.
    files: Vec<FileKey>,
}

/// The session in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight<A> {
    seq: u64,
    /// The request of the session waited for: answers to an earlier one are stale.
    hop: u8,
    to: Target<A>,
    /// The manager this agent meant to ask when the session opened (the leader it knew, or a
    /// manager in turn): a poke from another leader abandons the session.
    asked: Option<A>,
    network_requests: u8,
}

pub struct AgentMachine<A = SocketAddr, T = Assignment> {
    /// The runtimes this node has, by name: a task for another is rejected.
    runtimes: BTreeSet<String>,
    tasks: BTreeMap<TaskId, Local>,
    /// What the last answer said the store holds, per task.
    known: BTreeMap<TaskId, TaskStatus>,
    /// Tasks listed here that this run never ran: reported failed, rejected or shut down until
    /// the store holds that.
    lost: BTreeMap<TaskId, TaskStatus>,
    leader: Option<A>,
    managers: Vec<A>,
    /// Which manager to ask while no leader is known; moves on after each failure.
    next_manager: usize,
    local: bool,
    in_flight: Option<InFlight<A>>,
    /// Numbers sessions: the answer of an abandoned one is ignored.
    seq: u64,
    /// Something asked for a session while one was in flight: another follows it.
    again: bool,
    /// The secrets and configs this node holds (their data is the shell's), with their names.
    held: BTreeMap<FileKey, String>,
    /// Listed tasks not started yet that keep their files: held ones, and new ones waiting
    /// for files (as of the last answer).
    waiting: BTreeMap<TaskId, Vec<FileKey>>,
    /// What the session in flight reported holding: a file missing from an empty answer that
    /// is not among them is one the leader does not have.
    reported: BTreeSet<FileKey>,
    /// Sessions opened in a row for files (see [`FILE_SESSIONS_MAX`]).
    file_sessions: u32,
    sessions_ok: u64,
    sessions_failed: u64,
    last_error: Option<String>,
    /// The version of the last routing-mesh table an answer brought (0: none).
    mesh_version: u64,
    _assignment: std::marker::PhantomData<fn(T)>,
}

impl<A, T> AgentMachine<A, T>
where
    A: Copy + Eq + Display,
    T: AssignedTask,
{
    /// `runtimes`: the names of the runtimes this node has. `first_manager`: which of the
    /// managers to ask first (the simulator spreads its agents; a node starts at 0).
    pub fn new(runtimes: impl IntoIterator<Item = String>, first_manager: usize) -> Self {
        AgentMachine {
            runtimes: runtimes.into_iter().collect(),
            tasks: BTreeMap::new(),
            known: BTreeMap::new(),
            lost: BTreeMap::new(),
            leader: None,
            managers: Vec::new(),
            next_manager: first_manager,
            local: false,
            in_flight: None,
            seq: 0,
            again: false,
            held: BTreeMap::new(),
            waiting: BTreeMap::new(),
            reported: BTreeSet::new(),
            file_sessions: 0,
            sessions_ok: 0,
            sessions_failed: 0,
            last_error: None,
            mesh_version: 0,
            _assignment: std::marker::PhantomData,
        }
    }

    pub fn handle(
        &mut self,
        now_ms: u64,
        input: AgentInput<A, T>,
        out: &mut Vec<AgentEffect<A, T>>,
    ) {
        match input {
            AgentInput::Tick => {
                self.file_sessions = 0;
                self.session(out);
            }
            AgentInput::Poke { from: None } => self.session(out),
            AgentInput::Poke { from: Some(from) } => {
                self.leader = Some(from);
                // The leader that poked is alive. A session still waiting on another manager
                // (most often the old leader, dead, until the request deadline) is abandoned:
                // its answer will be ignored, and it ends by its own timeout.
                if let Some(f) = self.in_flight
                    && let Some(asked) = f.asked.filter(|a| *a != from)
                {
                    self.in_flight = None;
                    self.again = false;
                    out.push(AgentEffect::SessionAbandoned {
                        seq: f.seq,
                        asked,
                        leader: from,
                    });
                }
                self.session(out);
            }
            AgentInput::ManagersChanged(m) => self.managers = m,
            AgentInput::LocalStore { available } => self.local = available,
            AgentInput::TaskStatus { task, status } => {
                if let Some(l) = self.tasks.get_mut(&task) {
                    // Cut as the leader stores it, or a long text would differ from the
                    // stored one for ever and be reported again at every session.
                    l.status = status.cut().into_owned();
                    if l.status.state.is_terminal() {
                        self.drop_unneeded(out);
                    }
                    self.session(out);
                }
            }
            AgentInput::TaskStartFailed { task, error } => {
                self.tasks.remove(&task);
                self.drop_unneeded(out);
                let msg = format!("the task actor did not start: {error}");
                self.lost
                    .insert(task, lost_status(TaskState::Rejected, now_ms, &msg));
            }
            AgentInput::SessionDone { seq, hop, outcome } => {
                let Some(f) = self.in_flight.filter(|f| f.seq == seq && f.hop == hop) else {
                    return; // abandoned, timed out, or an earlier request's (duplicate) answer
                };
                match outcome {
                    SessionOutcome::Assignments {
                        tasks: list,
                        files,
                        mesh,
                    } => {
                        if let Target::Remote(a) = f.to {
                            self.leader = Some(a);
                        }
                        self.in_flight = None;
                        self.sessions_ok += 1;
                        self.last_error = None;
                        out.push(AgentEffect::SessionEnded {
                            seq,
                            result: Ok(list.len()),
                        });
                        if let Some(table) = mesh.filter(|m| m.version != self.mesh_version) {
                            self.mesh_version = table.version;
                            out.push(AgentEffect::MeshTable(table));
                        }
                        self.apply(now_ms, list, files, out);
                        self.then(out);
                    }
                    SessionOutcome::NotLeader(Some(l))
                        if f.to != Target::Remote(l)
                            && f.network_requests < SESSION_NETWORK_REQUESTS_MAX =>
                    {
                        let next = InFlight {
                            hop: f.hop + 1,
                            to: Target::Remote(l),
                            network_requests: f.network_requests + 1,
                            ..f
                        };
                        self.in_flight = Some(next);
                        let held = self.held_report();
                        out.push(AgentEffect::OpenSession {
                            seq,
                            hop: next.hop,
                            to: next.to,
                            report: self.report(),
                            held,
                            mesh_version: self.mesh_version,
                        });
                    }
                    SessionOutcome::NotLeader(l) => {
                        let why = match (f.to, l) {
                            (Target::Local, _) => "no leader".to_string(),
                            (Target::Remote(to), Some(l)) if l != to => "redirected twice".into(),
                            (Target::Remote(to), _) => format!("{to} knows no leader"),
                        };
                        self.failed(seq, why, out);
                    }
                    SessionOutcome::Failed(why) => self.failed(seq, why, out),
                }
            }
            AgentInput::SessionTimedOut { seq } => {
                if self.in_flight.is_some_and(|f| f.seq == seq) {
                    self.failed(seq, "the session timed out".into(), out);
                }
            }
        }
    }

    /// What the admin shell shows.
    pub fn view(&self) -> AgentView<A> {
        AgentView {
            leader: self.leader,
            managers: self.managers.clone(),
            sessions_ok: self.sessions_ok,
            sessions_failed: self.sessions_failed,
            last_error: self.last_error.clone(),
            tasks: self
                .tasks
                .iter()
                .map(|(id, l)| (*id, l.status.state, l.desired))
                .collect(),
        }
    }

    /// The tasks this run started and has not stopped.
    pub fn tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks.keys().copied()
    }

    /// The secrets and configs this node holds, with their names (the shell holds the data).
    pub fn held(&self) -> &BTreeMap<FileKey, String> {
        &self.held
    }

    /// The number of the session in flight.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.map(|f| f.seq)
    }

    /// The statuses the store does not have yet: every task status the last answer's store
    /// view accepts, then the lost ones, at most [`SESSION_STATUSES_MAX`] (the rest wait).
    pub fn report(&self) -> Vec<(TaskId, TaskStatus)> {
        let mut statuses: Vec<(TaskId, TaskStatus)> = self
            .tasks
            .iter()
            .filter(|(id, l)| self.known.get(id).is_none_or(|k| k.accepts(&l.status)))
            .map(|(id, l)| (*id, l.status.clone()))
            .chain(self.lost.iter().map(|(id, s)| (*id, s.clone())))
            .collect();
        statuses.truncate(SESSION_STATUSES_MAX);
        statuses
    }

    /// Opens a session unless one is in flight (then another follows it).
    fn session(&mut self, out: &mut Vec<AgentEffect<A, T>>) {
        if self.in_flight.is_some() {
            self.again = true;
            return;
        }
        let asked = self.leader.or_else(|| {
            (!self.managers.is_empty())
                .then(|| self.managers[self.next_manager % self.managers.len()])
        });
        // Through this node's store when there is one: it answers, or names the leader.
        let to = match (self.local, asked) {
            (true, _) => Target::Local,
            (false, Some(a)) => Target::Remote(a),
            (false, None) => return, // nobody to ask yet; the next tick tries again
        };
        self.seq += 1;
        self.in_flight = Some(InFlight {
            seq: self.seq,
            hop: 0,
            to,
            asked,
            network_requests: u8::from(!self.local),
        });
        let held = self.held_report();
        out.push(AgentEffect::OpenSession {
            seq: self.seq,
            hop: 0,
            to,
            report: self.report(),
            held,
            mesh_version: self.mesh_version,
        });
    }

    /// The version of the routing mesh's table this node holds (0: none).
    pub fn mesh_version(&self) -> u64 {
        self.mesh_version
    }

    fn failed(&mut self, seq: u64, why: String, out: &mut Vec<AgentEffect<A, T>>) {
        self.in_flight = None;
        self.sessions_failed += 1;
        self.last_error = Some(why.clone());
        self.leader = None;
        self.next_manager = self.next_manager.wrapping_add(1);
        out.push(AgentEffect::SessionEnded {
            seq,
            result: Err(why),
        });
        self.then(out);
    }

    /// After a session: the one asked for meanwhile.
    fn then(&mut self, out: &mut Vec<AgentEffect<A, T>>) {
        if std::mem::take(&mut self.again) {
            self.session(out);
        }
    }

    /// An answer: the complete list of this node's tasks as the store holds them, and the
    /// files the leader sent for them.
    fn apply(
        &mut self,
        now_ms: u64,
        list: Vec<T>,
        files: Vec<FileMaterial>,
        out: &mut Vec<AgentEffect<A, T>>,
    ) {
        self.known = list
            .iter()
            .map(|a| (a.task().id, a.task().status.clone()))
            .collect();
        let known = &self.known;
        self.lost
            .retain(|id, s| known.get(id).is_some_and(|k| k.accepts(s)));
        let gone: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| !known.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.tasks.remove(&id);
            out.push(AgentEffect::StopTask(id));
        }
        self.waiting.clear();
        let mut new = Vec::new();
        for a in list {
            let t = a.task();
            let wanted = t.desired_state <= TaskState::Running;
            if let Some(l) = self.tasks.get_mut(&t.id) {
                l.desired = t.desired_state;
                if !wanted && !l.shutdown_sent {
                    l.shutdown_sent = true;
                    out.push(AgentEffect::ShutdownTask(t.id));
                }
                continue;
            }
            if t.status.state.is_terminal() {
                continue; // history from before this run
            }
            if t.desired_state < TaskState::Running {
                // Held (a stop-first update's new task): started once the leader releases it.
                // Its files come ahead and are kept.
                self.waiting.insert(t.id, file_keys(t));
                continue;
            }
            let runtime = t.spec.runtime.as_str();
            let lost = if !wanted {
                lost_status(
                    TaskState::Shutdown,
                    now_ms,
                    "shut down before it started here",
                )
            } else if t.status.state > TaskState::Assigned {
                lost_status(
                    TaskState::Failed,
                    now_ms,
                    "task lost when the node restarted",
                )
            } else if !self.runtimes.contains(runtime) {
                let msg = format!("runtime {runtime} is not available on this node");
                lost_status(TaskState::Rejected, now_ms, &msg)
            } else {
                self.waiting.insert(t.id, file_keys(t));
                new.push(a);
                continue;
            };
            self.lost.insert(t.id, lost);
        }
        let brought = self.hold(files, out);
        // A new task starts once it holds every file it names.
        let mut starts = Vec::new();
        let mut ask_again = false;
        for a in new {
            let t = a.task();
            let missing = t.spec.files().find(|(k, _)| !self.held.contains_key(k));
            let Some((key, _)) = missing else {
                self.waiting.remove(&t.id);
                let local = Local {
                    status: TaskStatus::new(TaskState::Assigned, now_ms, "assigned"),
                    desired: t.desired_state,
                    shutdown_sent: false,
                    files: file_keys(t),
                };
                self.tasks.insert(t.id, local);
                starts.push(a);
                continue;
            };
            // An answer with no file sent every needed file it had that the report did not
            // name (one always fits): one named neither way is not in the store.
            let not_found = match brought {
                Some(_) => None,
                None => (t.spec.files())
                    .find(|(k, _)| !self.held.contains_key(k) && !self.reported.contains(k)),
            };
            if let Some((key, r)) = not_found {
                self.waiting.remove(&t.id);
                let msg = format!("{} {} not found", key.kind.as_str(), r.name);
                self.lost
                    .insert(t.id, lost_status(TaskState::Rejected, now_ms, &msg));
                continue;
            }
            // It waits: ask again now if this answer brought files (more may come) or the
            // file was dropped while the session was on its way.
            ask_again |= brought.is_some() || self.reported.contains(&key);
        }
        self.drop_unneeded(out);
        for a in starts {
            out.push(AgentEffect::StartTask(a));
        }
        if ask_again && self.file_sessions < FILE_SESSIONS_MAX {
            self.file_sessions += 1;
            self.again = true;
        }
    }

    /// Keeps the answer's files that a task here needs (any other is ignored: the leader sends
    /// none); `Some(count)` when it kept any.
    fn hold(
        &mut self,
        files: Vec<FileMaterial>,
        out: &mut Vec<AgentEffect<A, T>>,
    ) -> Option<usize> {
        if files.is_empty() {
            return None;
        }
        let needed = self.needed();
        let kept: Vec<FileMaterial> = files
            .into_iter()
            .filter(|m| needed.contains(&m.key) && !self.held.contains_key(&m.key))
            .collect();
        for m in &kept {
            self.held.insert(m.key, m.name.clone());
        }
        // Files that all were held already still count as an answer with files.
        let n = kept.len();
        if n > 0 {
            out.push(AgentEffect::HoldFiles(kept));
        }
        Some(n)
    }

    /// The files a task of this node still needs: one that has not ended here, or one listed
    /// that waits to start. At most [`FILE_REFS_MAX`](crate::model::FILE_REFS_MAX) per task.
    fn needed(&self) -> BTreeSet<FileKey> {
        let running = self
            .tasks
            .values()
            .filter(|l| !l.status.state.is_terminal());
        running
            .flat_map(|l| l.files.iter())
            .chain(self.waiting.values().flatten())
            .copied()
            .collect()
    }

    /// Forgets the held files no task of this node needs any more.
    fn drop_unneeded(&mut self, out: &mut Vec<AgentEffect<A, T>>) {
        if self.held.is_empty() {
            return;
        }
        let needed = self.needed();
        let gone: Vec<FileKey> = (self.held.keys())
            .filter(|k| !needed.contains(k))
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        for k in &gone {
            self.held.remove(k);
        }
        out.push(AgentEffect::DropFiles(gone));
    }

    /// The held files a session reports (at most [`SESSION_HELD_MAX`]; the leader sends again
    /// one not named, which the machine ignores), remembered for the answer.
    fn held_report(&mut self) -> Vec<FileKey> {
        let held: Vec<FileKey> = self.held.keys().take(SESSION_HELD_MAX).copied().collect();
        self.reported = held.iter().copied().collect();
        held
    }
}

/// The secrets and configs a task names.
fn file_keys(t: &Task) -> Vec<FileKey> {
    t.spec.files().map(|(k, _)| k).collect()
}

/// The status an agent reports for a task it never ran (or lost): `msg` is also the error,
/// unless the task was merely shut down.
pub fn lost_status(state: TaskState, now: u64, msg: &str) -> TaskStatus {
    TaskStatus {
        error: (state != TaskState::Shutdown).then(|| msg.to_string()),
        ..TaskStatus::new(state, now, msg)
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
