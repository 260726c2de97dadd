//! The leader actor: exists only on the manager whose store is the raft leader, and moves when
//! leadership moves. It runs the orchestrators, the scheduler and the dispatcher: nodes open
//! sessions with it to report their tasks' statuses and learn their assignments, and it keeps
//! the store's tasks at what the services want.
//!
//! ```text
//!  node actor ── follows replica Progress: leading in a new term ──▶ spawn_linked LeaderActor
//!             ── MembersChanged, SessionOpened ─────────────────────▶ (stopped when not leading;
//!  replica Progress watch ── StoreApplied ─────────────────────────▶  restarted if it panics)
//!
//!  LeaderActor (this file, a shell) ── inputs ──▶ LeaderMachine (machine.rs: every decision)
//!            ◀── effects: Read, Propose, Poke, SetTimer, Answer, ServicesChanged ──┘
//!  pass (in the machine): read ─▶ plan::plan (pure) ─▶ propose ops one command at a time
//! ```
//!
//! The shell carries the machine's effects out: store reads and proposals run off the actor
//! (the mailbox stays open; sessions that arrive during a pass wait in the machine), pokes go
//! through the registry (this node's agent) or the transport, timers are `send_after`. Each
//! service is addressable from the admin shell as `service/<name>` while this node leads.

pub mod machine;
pub mod msg;
pub mod plan;
pub mod rules;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::info;

use crate::membership::MemberView;
use crate::model::NodeId;
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::replica::StoreHandle;
use crate::store::Kind;
use crate::transport::Transport;
use crate::wire::{OneWay, Response, WireFailure};

pub use machine::{
    LeaderEffect, LeaderInput, LeaderMachine, LeaderTimer, SessionAnswer, StoreRead,
};
pub use msg::LeaderMsg;
pub use rules::*;
pub use view::{LeaderView, ServiceView};

/// The name the leader actor has in its node's registry.
pub const LEADER_NAME: &str = "leader";

/// The prefix of each service's name in the registry: `service/web`.
pub const SERVICE_PREFIX: &str = "service/";

pub struct LeaderArgs {
    pub store: StoreHandle,
    pub term: u64,
    pub me: NodeId,
    pub members: Vec<MemberView>,
    pub transport: Transport,
    pub registry: Option<Registry>,
    pub rng_seed: u64,
}

pub struct LeaderActor;

pub struct LeaderState {
    machine: LeaderMachine,
    store: StoreHandle,
    me: NodeId,
    transport: Transport,
    registry: Option<Registry>,
    /// Sessions the machine has not answered yet, by the token it knows them by. Bounded by
    /// the machine: it answers each at once or after the pass in flight.
    sessions: BTreeMap<machine::SessionToken, oneshot::Sender<Response>>,
    next_session: machine::SessionToken,
    /// The `service/<name>` entries this actor registered.
    services: BTreeSet<String>,
    /// Forwards the replica's applied index as `StoreApplied`; ended with the actor.
    watch: tokio::task::JoinHandle<()>,
}

impl Actor for LeaderActor {
    type Msg = LeaderMsg;
    type State = LeaderState;
    type Arguments = LeaderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LeaderMsg>,
        args: LeaderArgs,
    ) -> Result<LeaderState, ActorProcessingErr> {
        let mut progress = args.store.progress();
        let me = myself.clone();
        let watch = tokio::spawn(async move {
            let mut applied = progress.borrow_and_update().applied_index;
            while progress.changed().await.is_ok() {
                let now = progress.borrow_and_update().applied_index;
                if now > applied {
                    applied = now;
                    if me.send_message(LeaderMsg::StoreApplied).is_err() {
                        break; // the actor stopped
                    }
                }
            }
        });
        let now = crate::clock::unix_ms();
        let mut state = LeaderState {
            machine: LeaderMachine::new(args.me, args.term, now, args.rng_seed),
            store: args.store,
            me: args.me,
            transport: args.transport,
            registry: args.registry,
            sessions: BTreeMap::new(),
            next_session: 0,
            services: BTreeSet::new(),
            watch,
        };
        state.feed(&myself, LeaderInput::Members(&args.members));
        state.feed(&myself, LeaderInput::Start);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<LeaderMsg>,
        msg: LeaderMsg,
        state: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LeaderMsg::RebuildNow => state.feed(&myself, LeaderInput::Rebuild),
            LeaderMsg::Describe(port) => {
                let _ = port.send(state.machine.view().clone()); // the caller may have timed out
            }
            LeaderMsg::DescribeService { name, reply } => {
                let _ = reply.send(state.machine.service(&name)); // as above
            }
            LeaderMsg::StoreApplied => state.feed(&myself, LeaderInput::StoreApplied),
            LeaderMsg::MembersChanged(members) => {
                state.feed(&myself, LeaderInput::Members(&members));
            }
            LeaderMsg::SessionOpened {
                from,
                report,
                reply,
            } => {
                let session = state.next_session;
                state.next_session += 1;
                state.sessions.insert(session, reply);
                let input = LeaderInput::Session {
                    session,
                    from,
                    statuses: report.statuses,
                    held: report.held,
                    mesh_version: report.mesh_version,
                };
                state.feed(&myself, input);
            }
            LeaderMsg::TimerFired(timer) => state.feed(&myself, LeaderInput::Timer(timer)),
            LeaderMsg::StoreRead(Ok(read)) => {
                let [nodes, services, tasks, secrets, configs, networks] = &*read;
                let input = LeaderInput::ReadDone(StoreRead {
                    applied_index: nodes.applied_index,
                    nodes: nodes.objects.iter().collect(),
                    services: services.objects.iter().collect(),
                    tasks: tasks.objects.iter().collect(),
                    secrets: secrets.objects.iter().chain(&configs.objects).collect(),
                    networks: networks.objects.iter().collect(),
                });
                state.feed(&myself, input);
            }
            LeaderMsg::StoreRead(Err(e)) => {
                state.feed(&myself, LeaderInput::ReadFailed(e.to_string()));
            }
            LeaderMsg::ProposalDone(result) => {
                let result = result.map(|_| ()).map_err(|e| e.to_string());
                state.feed(&myself, LeaderInput::ProposeDone(result));
            }
            #[cfg(test)]
            LeaderMsg::PanicForTest => panic!("a leader pass panicked (test)"),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LeaderMsg>,
        state: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        // Its registry entries are the node actor's to remove (see [`stop`]): a panic skips
        // this, and a leader of the next term may have registered the same names by now.
        state.watch.abort();
        Ok(())
    }
}

impl LeaderState {
    /// Hands one input to the machine and carries out what it asks.
    fn feed(&mut self, myself: &ActorRef<LeaderMsg>, input: LeaderInput<'_>) {
        let mut out = Vec::new();
        let now = crate::clock::unix_ms();
        self.machine.handle(now, input, &mut out);
        for effect in out {
            self.carry_out(myself, effect);
        }
    }

    fn carry_out(&mut self, myself: &ActorRef<LeaderMsg>, effect: LeaderEffect) {
        match effect {
            LeaderEffect::Read { linearizable } => {
                let (store, me) = (self.store.clone(), myself.clone());
                tokio::spawn(async move {
                    let read = async {
                        let nodes = store.read(Kind::Node, linearizable).await?;
                        let services = store.read(Kind::Service, false).await?;
                        let tasks = store.read(Kind::Task, false).await?;
                        let secrets = store.read(Kind::Secret, false).await?;
                        let configs = store.read(Kind::Config, false).await?;
                        let networks = store.read(Kind::Network, false).await?;
                        Ok(Box::new([
                            nodes, services, tasks, secrets, configs, networks,
                        ]))
                    };
                    // A stopped actor needs no answer.
                    let _ = me.send_message(LeaderMsg::StoreRead(read.await));
                });
            }
            LeaderEffect::Propose(cmd) => {
                let (store, me) = (self.store.clone(), myself.clone());
                tokio::spawn(async move {
                    let result = store.propose(cmd).await;
                    let _ = me.send_message(LeaderMsg::ProposalDone(result)); // as above
                });
            }
            LeaderEffect::Poke { node, addr } => {
                // Best effort: the agent asks every second anyway. The local agent is woken
                // through the registry, since a node sends itself no network messages.
                if node == self.me {
                    if let Some(r) = &self.registry {
                        r.agent_poke().notify_one();
                    }
                } else if let Some(addr) = addr {
                    let _ = self.transport.send_oneway(addr, OneWay::Poke);
                }
            }
            LeaderEffect::SetTimer { after_ms, timer } => {
                myself.send_after(Duration::from_millis(after_ms), move || {
                    LeaderMsg::TimerFired(timer)
                });
            }
            LeaderEffect::Answer { session, answer } => {
                let Some(reply) = self.sessions.remove(&session) else {
                    return;
                };
                let response = match answer {
                    SessionAnswer::Busy => Response::Failed(WireFailure::Busy),
                    SessionAnswer::Assignments {
                        tasks,
                        managers,
                        files,
                        mesh,
                    } => Response::Assignments {
                        tasks: tasks.to_vec(),
                        managers: managers.to_vec(),
                        files,
                        mesh: mesh.map(|m| (*m).clone()),
                    },
                };
                let _ = reply.send(response); // the node may have gone
            }
            LeaderEffect::Passed(_) => {}
            LeaderEffect::ServicesChanged(names) => self.register_services(myself, names),
        }
    }

    /// Keeps one `service/<name>` entry per service in the registry.
    fn register_services(&mut self, myself: &ActorRef<LeaderMsg>, names: Vec<String>) {
        let Some(r) = &self.registry else {
            return;
        };
        let names: BTreeSet<String> = names.into_iter().collect();
        for gone in self.services.difference(&names) {
            r.unregister(&format!("{SERVICE_PREFIX}{gone}"));
        }
        for new in names.difference(&self.services) {
            let target = Arc::new(ServiceAdmin {
                leader: myself.clone(),
                name: new.clone(),
            });
            let key = format!("{SERVICE_PREFIX}{new}");
            // Left by a leader of an earlier term on this node that stopped uncleanly.
            r.unregister(&key);
            if let Err(e) = r.register(key, target) {
                info!(error = %e, service = %new, "service not addressable from the admin shell");
            }
        }
        self.services = names;
    }
}

/// The leader actor as the admin shell sees it.
struct LeaderAdmin(ActorRef<LeaderMsg>);

impl AdminTarget for LeaderAdmin {
    fn messages(&self) -> &'static [&'static str] {
        &["Describe", "Rebuild"]
    }

    fn call(&self, msg: &str, _args: Value) -> AdminReply<'_> {
        let msg = msg.to_string();
        Box::pin(async move {
            let no_answer = |e: String| AdminError::NoAnswer(LEADER_NAME.into(), e);
            if msg == "Rebuild" {
                self.0
                    .send_message(LeaderMsg::RebuildNow)
                    .map_err(|e| no_answer(e.to_string()))?;
            }
            let view = ractor::call_t!(self.0, LeaderMsg::Describe, 5_000)
                .map_err(|e| no_answer(e.to_string()))?;
            serde_json::to_value(view).map_err(|e| no_answer(e.to_string()))
        })
    }
}

/// One service as the admin shell sees it (`send service/web Describe`): the design's
/// ServiceActor, answered by the leader from its last pass.
struct ServiceAdmin {
    leader: ActorRef<LeaderMsg>,
    name: String,
}

impl AdminTarget for ServiceAdmin {
    fn messages(&self) -> &'static [&'static str] {
        &["Describe"]
    }

    fn call(&self, _msg: &str, _args: Value) -> AdminReply<'_> {
        Box::pin(async move {
            let who = format!("{SERVICE_PREFIX}{}", self.name);
            let no_answer = |e: String| AdminError::NoAnswer(who.clone(), e);
            let name = self.name.clone();
            let view = ractor::call_t!(
                self.leader,
                |reply| LeaderMsg::DescribeService { name, reply },
                5_000
            )
            .map_err(|e| no_answer(e.to_string()))?;
            let view = view.ok_or_else(|| no_answer("the service is gone".into()))?;
            serde_json::to_value(view).map_err(|e| no_answer(e.to_string()))
        })
    }
}

/// Starts the leader actor for `term`, linked to `supervisor` (the node actor, which restarts
/// it if it fails), and registers it as `leader`.
pub async fn start(
    args: LeaderArgs,
    supervisor: ActorCell,
) -> Result<ActorRef<LeaderMsg>, ActorProcessingErr> {
    let registry = args.registry.clone();
    let term = args.term;
    let (actor, _) = Actor::spawn_linked(None, LeaderActor, args, supervisor).await?;
    if let Some(r) = &registry {
        r.unregister(LEADER_NAME);
        r.register(LEADER_NAME.into(), Arc::new(LeaderAdmin(actor.clone())))?;
        let sessions = actor.clone();
        r.set_leader_sessions(Some(Arc::new(move |from, report, reply| {
            let msg = LeaderMsg::SessionOpened {
                from,
                report,
                reply,
            };
            // A stopping leader drops the reply: the agent sees no answer and asks again.
            let _ = sessions.send_message(msg);
        })));
    }
    info!(term, "leader actor started");
    Ok(actor)
}

/// Stops the leader actor (leadership moved) and unregisters it and its services.
pub fn stop(actor: &ActorRef<LeaderMsg>, registry: Option<&Registry>) {
    forget(registry);
    actor.stop(Some("leadership moved".into()));
    info!("leader actor stopped");
}

/// Removes a stopped or failed leader's registry entries and session path.
pub fn forget(registry: Option<&Registry>) {
    if let Some(r) = registry {
        r.unregister(LEADER_NAME);
        r.unregister_prefix(SERVICE_PREFIX);
        r.set_leader_sessions(None);
    }
}
