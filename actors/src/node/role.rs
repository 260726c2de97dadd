//! Promotion and demotion: the node actor starts a store that joins the voters, or stops it
//! and drops its data, as the store's `SetRole` asks.

use std::time::Duration;

use ractor::ActorRef;
use rand::RngExt;

use super::{NodeActorState, NodeMsg};
use crate::wire::{Response, WireFailure};

impl NodeActorState {
    /// Takes on the role the store now gives this node: start a store that joins the voters
    /// (promotion), or stop it and drop its data (demotion). Answers once that is under way.
    pub(super) fn set_role(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        raft_id: Option<u64>,
        reply: tokio::sync::oneshot::Sender<Response>,
    ) {
        let me = myself.clone();
        match (raft_id, self.store.clone()) {
            (Some(raft_id), None) => {
                self.node_file.raft_id = Some(raft_id);
                if let Err(e) = self.node_file.save(&self.data_dir) {
                    let _ = reply.send(Response::Failed(WireFailure::Invalid(e.to_string())));
                    return;
                }
                let args = crate::replica::StoreArgs {
                    data_dir: self.data_dir.clone(),
                    raft_id,
                    node_id: self.creds.node_id,
                    bootstrap: crate::store::Bootstrap::Join,
                    config: self.store_config.clone(),
                    transport: self.transport.clone(),
                    rng_seed: self.rng.random(),
                    registry: Some(self.registry.clone()),
                    managers: self.managers.clone(),
                };
                tokio::spawn(async move {
                    let resp = match crate::replica::spawn_store(args).await {
                        Ok((store, _)) => {
                            let _ = me.send_message(NodeMsg::StoreChanged(Some(store))); // node may be stopping
                            Response::Pong
                        }
                        Err(e) => Response::Failed(WireFailure::Invalid(format!(
                            "the store did not start: {e}"
                        ))),
                    };
                    let _ = reply.send(resp); // the asker may have gone
                });
            }
            (None, Some(store)) => {
                self.node_file.raft_id = None;
                if let Err(e) = self.node_file.save(&self.data_dir) {
                    let _ = reply.send(Response::Failed(WireFailure::Invalid(e.to_string())));
                    return;
                }
                let dir = self.data_dir.clone();
                tokio::spawn(async move {
                    // Wait for the store to stop before its files go.
                    let _ = store
                        .actor()
                        .stop_and_wait(None, Some(Duration::from_secs(5)))
                        .await;
                    for f in ["raft.redb", "raft.key"] {
                        // Absent files are fine: nothing to remove.
                        let _ = std::fs::remove_file(dir.join(f));
                    }
                    let _ = me.send_message(NodeMsg::StoreChanged(None)); // node may be stopping
                    let _ = reply.send(Response::Pong); // the asker may have gone
                });
            }
            // Already in that role: nothing to do.
            _ => {
                let _ = reply.send(Response::Pong);
            }
        }
    }
}
