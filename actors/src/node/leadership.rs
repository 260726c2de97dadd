//! The leader actor's lifecycle, owned by the node actor: it follows the replica's
//! [`Progress`] watch, starts the leader actor (linked, so the node actor supervises it) when
//! this node's store leads in a new term, stops it when the store no longer leads, restarts it
//! for the same term after a panic, and routes sessions and membership's view to it.
//!
//! ```text
//!  StoreActor ── Progress{term, leading, leader_addr} (watch) ──▶ NodeMsg::StoreProgress
//!  NodeActor ── follow(): leading in a new term ─▶ spawn_linked LeaderActor (registered)
//!            ── not leading ─▶ stop it           ActorFailed ─▶ log, restart after a pause
//! ```

use std::time::Duration;

use ractor::{ActorCell, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::NodeMsg;
use crate::leader::{LeaderArgs, LeaderMsg};
use crate::membership::MemberView;
use crate::model::NodeId;
use crate::registry::Registry;
use crate::replica::{Progress, StoreHandle};
use crate::transport::Transport;
use crate::wire::{Response, SessionReport};

/// How long after a leader actor's failure its replacement starts: a pass that panics every
/// time then costs one pass a second, not a tight loop of restarts.
pub const LEADER_RESTART_DELAY: Duration = Duration::from_secs(1);

/// What a new leader actor needs from the node actor.
pub struct LeaderContext<'a> {
    pub store: &'a StoreHandle,
    pub me: NodeId,
    pub members: Vec<MemberView>,
    pub transport: &'a Transport,
    pub registry: &'a Registry,
    pub rng_seed: u64,
}

#[derive(Default)]
pub struct Leadership {
    /// The leader actor and its term, while this node's store leads.
    actor: Option<(ActorRef<LeaderMsg>, u64)>,
    /// Where the store stands, as last seen on the watch.
    progress: Progress,
    /// Forwards the store's progress to the node actor; replaced with the store.
    watch: Option<tokio::task::JoinHandle<()>>,
    /// Leader actors restarted after a failure (for logs and tests).
    pub restarts: u64,
}

impl Leadership {
    /// Follows `store`'s progress from now on (none: this node is no manager any more).
    pub fn watch(&mut self, store: Option<&StoreHandle>, myself: &ActorRef<NodeMsg>) {
        if let Some(w) = self.watch.take() {
            w.abort();
        }
        let Some(store) = store else {
            self.progress = Progress::default();
            return;
        };
        let mut rx = store.progress();
        let me = myself.clone();
        self.watch = Some(tokio::spawn(async move {
            // Only what the lifecycle looks at: the applied index moves with every entry, and
            // the leader actor follows that itself.
            let mut last = None;
            loop {
                let p = rx.borrow_and_update().clone();
                let key = (p.term, p.leading, p.leader_addr);
                if last != Some(key) {
                    last = Some(key);
                    if me.send_message(NodeMsg::StoreProgress(p)).is_err() {
                        return; // the node actor stopped
                    }
                }
                if rx.changed().await.is_err() {
                    return; // the store stopped
                }
            }
        }));
    }

    /// The leader actor, if this node leads.
    #[cfg(test)]
    pub fn actor(&self) -> Option<&ActorRef<LeaderMsg>> {
        self.actor.as_ref().map(|(a, _)| a)
    }

    /// Starts or stops the leader actor as `progress` says.
    pub async fn follow(
        &mut self,
        progress: Progress,
        ctx: Option<LeaderContext<'_>>,
        supervisor: ActorCell,
    ) {
        self.progress = progress.clone();
        let wanted = progress.leading.then_some(progress.term);
        let current = self.actor.as_ref().map(|(_, t)| *t);
        if wanted == current {
            return;
        }
        if let Some((actor, _)) = self.actor.take() {
            crate::leader::stop(&actor, ctx.as_ref().map(|c| c.registry));
        }
        let (Some(term), Some(ctx)) = (wanted, ctx) else {
            return;
        };
        let args = LeaderArgs {
            store: ctx.store.clone(),
            term,
            me: ctx.me,
            members: ctx.members,
            transport: ctx.transport.clone(),
            registry: Some(ctx.registry.clone()),
            rng_seed: ctx.rng_seed ^ term,
        };
        match crate::leader::start(args, supervisor).await {
            Ok(actor) => self.actor = Some((actor, term)),
            Err(e) => warn!(error = %e, term, "the leader actor did not start"),
        }
    }

    /// A supervision event from a linked actor. A failed leader actor is logged and forgotten,
    /// and `StoreProgress` is sent again after [`LEADER_RESTART_DELAY`]: if the store still
    /// leads in that term, [`Self::follow`] starts a new one.
    pub fn supervise(
        &mut self,
        event: &SupervisionEvent,
        registry: &Registry,
        myself: &ActorRef<NodeMsg>,
    ) {
        let SupervisionEvent::ActorFailed(cell, why) = event else {
            return;
        };
        let ours = self
            .actor
            .as_ref()
            .is_some_and(|(a, _)| a.get_id() == cell.get_id());
        if !ours {
            return;
        }
        let (_, term) = self.actor.take().expect("checked");
        error!(term, error = %why, "the leader actor failed; starting it again");
        crate::leader::forget(Some(registry));
        self.restarts += 1;
        let progress = self.progress.clone();
        myself.send_after(LEADER_RESTART_DELAY, move || {
            NodeMsg::StoreProgress(progress)
        });
    }

    /// Hands membership's view to the leader actor.
    pub fn members(&self, members: Vec<MemberView>) {
        if let Some((actor, _)) = &self.actor {
            // A stopping leader actor needs no news.
            let _ = actor.send_message(LeaderMsg::MembersChanged(members));
        }
    }

    /// A node's session: to the leader actor when this node leads, else answered with where
    /// the leader is.
    pub fn session(&self, from: NodeId, report: SessionReport, reply: oneshot::Sender<Response>) {
        let not_leader = Response::NotLeader {
            leader: self.progress.leader_addr,
        };
        let Some((actor, _)) = &self.actor else {
            let _ = reply.send(not_leader); // the node may have gone
            return;
        };
        let msg = LeaderMsg::SessionOpened {
            from,
            report,
            reply,
        };
        if let Err(ractor::MessagingErr::SendErr(LeaderMsg::SessionOpened { reply, .. })) =
            actor.send_message(msg)
        {
            let _ = reply.send(not_leader); // as above
        }
    }

    /// Stops the leader actor and the watch (the node actor stops).
    pub fn stop(&mut self, registry: &Registry) {
        if let Some(w) = self.watch.take() {
            w.abort();
        }
        if let Some((actor, _)) = self.actor.take() {
            crate::leader::stop(&actor, Some(registry));
        }
        info!("leadership no longer followed");
    }
}

#[cfg(test)]
mod tests;
