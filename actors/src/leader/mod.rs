//! The leader actor: exists only on the manager whose store is the raft leader, and moves when
//! leadership moves. It is where the scheduler, the orchestrators and the dispatcher run once
//! services are wired; today it keeps the leader's view of the cluster, rebuilt from the store
//! every time it starts, and answers the admin shell (`send leader Describe`).
//!
//! ```text
//!  StoreActor ── LeaderChanged(me) ──▶ spawn LeaderActor ── Rebuild ──▶ reads the store
//!  StoreActor ── LeaderChanged(other/none) ──▶ stop LeaderActor (and unregister "leader")
//! ```

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::manager::StoreHandle;
use crate::model::NodeId;
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::store::{Kind, ObjectBody};

/// The name the leader actor has in its node's registry.
pub const LEADER_NAME: &str = "leader";

pub enum LeaderMsg {
    /// Reads the store and replaces the view.
    Rebuild,
    Describe(RpcReplyPort<LeaderView>),
}

/// What the leader knows, as of its last rebuild.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub term: u64,
    /// When this manager became leader (ms since the epoch).
    pub since_ms: u64,
    pub rebuilt_at_index: u64,
    pub nodes: Vec<NodeId>,
    pub managers: Vec<NodeId>,
    pub services: usize,
    pub tasks: usize,
}

pub struct LeaderArgs {
    pub store: StoreHandle,
    pub term: u64,
}

pub struct LeaderActor;

pub struct LeaderState {
    store: StoreHandle,
    view: LeaderView,
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
        // The view is read after start, from the mailbox: the store actor that spawned us must
        // not be waited on while it is busy spawning.
        myself.send_message(LeaderMsg::Rebuild)?;
        Ok(LeaderState {
            store: args.store,
            view: LeaderView {
                term: args.term,
                since_ms: crate::clock::unix_ms(),
                ..LeaderView::default()
            },
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<LeaderMsg>,
        msg: LeaderMsg,
        state: &mut LeaderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LeaderMsg::Rebuild => match rebuild(&state.store, &state.view).await {
                Ok(view) => {
                    info!(
                        term = view.term,
                        nodes = view.nodes.len(),
                        services = view.services,
                        tasks = view.tasks,
                        "leader view rebuilt from the store"
                    );
                    state.view = view;
                }
                Err(e) => warn!(error = %e, "leader could not read the store"),
            },
            LeaderMsg::Describe(port) => {
                let _ = port.send(state.view.clone()); // the caller may have timed out
            }
        }
        Ok(())
    }
}

async fn rebuild(
    store: &StoreHandle,
    old: &LeaderView,
) -> Result<LeaderView, crate::manager::StoreFailure> {
    let nodes = store.read(Kind::Node, false).await?;
    let services = store.read(Kind::Service, false).await?;
    let tasks = store.read(Kind::Task, false).await?;
    let mut view = LeaderView {
        term: old.term,
        since_ms: old.since_ms,
        rebuilt_at_index: nodes.applied_index,
        services: services.objects.len(),
        tasks: tasks.objects.len(),
        ..LeaderView::default()
    };
    for o in nodes.objects {
        if let ObjectBody::Node(n) = o.body {
            view.nodes.push(n.id);
            if n.raft_id.is_some() {
                view.managers.push(n.id);
            }
        }
    }
    Ok(view)
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
                    .send_message(LeaderMsg::Rebuild)
                    .map_err(|e| no_answer(e.to_string()))?;
            }
            let view = ractor::call_t!(self.0, LeaderMsg::Describe, 5_000)
                .map_err(|e| no_answer(e.to_string()))?;
            serde_json::to_value(view).map_err(|e| no_answer(e.to_string()))
        })
    }
}

/// Starts the leader actor for `term` and registers it as `leader`.
pub async fn start(
    store: StoreHandle,
    term: u64,
    registry: Option<&Registry>,
) -> Result<ActorRef<LeaderMsg>, ActorProcessingErr> {
    let (actor, _) = Actor::spawn(None, LeaderActor, LeaderArgs { store, term }).await?;
    if let Some(r) = registry {
        r.unregister(LEADER_NAME);
        r.register(LEADER_NAME.into(), Arc::new(LeaderAdmin(actor.clone())))?;
    }
    info!(term, "leader actor started");
    Ok(actor)
}

/// Stops the leader actor (leadership moved) and unregisters it.
pub fn stop(actor: ActorRef<LeaderMsg>, registry: Option<&Registry>) {
    if let Some(r) = registry {
        r.unregister(LEADER_NAME);
    }
    actor.stop(Some("leadership moved".into()));
    info!("leader actor stopped");
}
