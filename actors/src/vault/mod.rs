//! The SecretVault: one per node, registered as `vault/<node-id>`. It keeps the secrets and
//! configs this node's tasks need in memory, writes each task's files to tmpfs just before the
//! task starts, and removes them when the task ends.
//!
//! ```text
//!  leader ── answer { tasks, files } ──▶ AgentActor ── HoldFiles ──▶ Hold ──▶ SecretVault
//!                                           │          DropFiles ──▶ Forget     (memory)
//!                       start a task:       ├── Materialize(task, refs) ──▶ <root>/<task>/… (tmpfs)
//!                                           │◀─ [TaskFile { host path, target, uid, gid, mode }]
//!                                           │   into the TaskContext ──▶ runtime mounts them
//!                 task terminal / stopped:  └── Release(task) ──▶ rm -r <root>/<task>
//! ```
//!
//! The data never reaches a disk: it arrives in a session answer, stays in this actor's memory
//! (a [`SecretBytes`](crate::model::SecretBytes) shared with the answer), and is written only
//! under [`VAULT_BASE_DIR`] (`/dev/shm`), which the vault checks is a tmpfs; anywhere else it
//! refuses the task. The node's directory is emptied when the vault starts (before the agent
//! starts anything) and when it stops. `List` answers names, kinds, sizes and the tasks each
//! file is for, never data.
//!
//! Bounds: [`HELD_FILES_MAX`] files and [`HELD_BYTES_MAX`] bytes held, [`TASKS_MAX`] tasks with
//! files, [`WRITTEN_BYTES_MAX`] bytes on tmpfs; past one, the material or the task is refused
//! (the task is then rejected with the reason).

mod files;
mod msg;

use std::path::PathBuf;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tracing::{info, warn};

pub use files::{
    HELD_BYTES_MAX, HELD_FILES_MAX, HeldFile, TASKS_MAX, VAULT_BASE_DIR, Vault, VaultError,
    WRITTEN_BYTES_MAX, is_tmpfs,
};
pub use msg::VaultMsg;

use crate::model::{FileKey, FileMaterial, FileRef, NodeId, TaskId};
use crate::registry::{AdminError, AdminReply, AdminTarget, Registry};
use crate::runtime::TaskFile;

/// How long the agent waits for the vault to write a task's files.
pub const MATERIALIZE_TIMEOUT_MS: u64 = 10_000;

/// How long the admin shell waits for `List`.
pub const LIST_TIMEOUT_MS: u64 = 5_000;

/// The name a node's vault has in its registry.
pub fn vault_name(node: NodeId) -> String {
    format!("vault/{node}")
}

pub struct VaultArgs {
    pub node_id: NodeId,
    /// Where the node's directory goes ([`VAULT_BASE_DIR`] outside tests).
    pub base: PathBuf,
    pub registry: Option<Registry>,
}

pub struct VaultActor;

pub struct VaultState {
    vault: Vault,
    registry: Option<(Registry, String)>,
}

impl Actor for VaultActor {
    type Msg = VaultMsg;
    type State = VaultState;
    type Arguments = VaultArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<VaultMsg>,
        args: VaultArgs,
    ) -> Result<VaultState, ActorProcessingErr> {
        let vault = Vault::open(&args.base, args.node_id);
        info!(dir = %vault.root().display(), "secret vault ready; files of a previous run removed");
        let name = vault_name(args.node_id);
        Ok(VaultState {
            vault,
            registry: args.registry.map(|r| (r, name)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<VaultMsg>,
        msg: VaultMsg,
        state: &mut VaultState,
    ) -> Result<(), ActorProcessingErr> {
        let v = &mut state.vault;
        match msg {
            VaultMsg::Hold(files) => {
                if let Err(e) = v.hold(files) {
                    // The tasks that need the refused file are rejected when they start.
                    warn!(error = %e, "material refused");
                }
            }
            VaultMsg::Forget(keys) => v.forget(&keys),
            VaultMsg::Materialize {
                task,
                secrets,
                configs,
                reply,
            } => {
                let r = v.materialize(task, &secrets, &configs);
                if let Err(e) = &r {
                    warn!(%task, error = %e, "the task's files could not be written");
                }
                if reply.send(r).is_err() {
                    // The agent gave up waiting: it will not start the task, so nothing uses
                    // the files.
                    v.release(task);
                }
            }
            VaultMsg::Release(task) => {
                v.release(task);
            }
            VaultMsg::List(reply) => {
                let _ = reply.send(v.list()); // the asker may have timed out
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<VaultMsg>,
        state: &mut VaultState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((r, name)) = &state.registry {
            r.unregister(name);
        }
        state.vault.close();
        Ok(())
    }
}

/// The typed handle the agent holds.
#[derive(Clone)]
pub struct VaultHandle {
    actor: ActorRef<VaultMsg>,
    name: String,
}

impl VaultHandle {
    pub fn actor(&self) -> &ActorRef<VaultMsg> {
        &self.actor
    }

    /// A vault that stopped has nothing to hold or forget any more: sends may be dropped.
    pub fn hold(&self, files: Vec<FileMaterial>) {
        let _ = self.actor.send_message(VaultMsg::Hold(files));
    }

    pub fn forget(&self, keys: Vec<FileKey>) {
        let _ = self.actor.send_message(VaultMsg::Forget(keys));
    }

    pub fn release(&self, task: TaskId) {
        let _ = self.actor.send_message(VaultMsg::Release(task));
    }

    /// Writes the task's files; the error says why a task cannot get them.
    pub async fn materialize(
        &self,
        task: TaskId,
        secrets: Vec<FileRef>,
        configs: Vec<FileRef>,
    ) -> Result<Vec<TaskFile>, String> {
        crate::ask::ask(
            &self.actor,
            |reply| VaultMsg::Materialize {
                task,
                secrets,
                configs,
                reply,
            },
            MATERIALIZE_TIMEOUT_MS,
        )
        .await
        .map_err(|e| format!("the secret vault did not answer: {e}"))?
        .map_err(|e| e.to_string())
    }

    pub async fn list(&self) -> Result<Vec<HeldFile>, String> {
        crate::ask::ask(&self.actor, VaultMsg::List, LIST_TIMEOUT_MS)
            .await
            .map_err(|e| e.to_string())
    }
}

impl AdminTarget for VaultHandle {
    fn messages(&self) -> &'static [&'static str] {
        &["List"]
    }

    fn call(&self, _msg: &str, _args: Value) -> AdminReply<'_> {
        Box::pin(async move {
            let list = self
                .list()
                .await
                .map_err(|e| AdminError::NoAnswer(self.name.clone(), e))?;
            serde_json::to_value(list)
                .map_err(|e| AdminError::NoAnswer(self.name.clone(), e.to_string()))
        })
    }
}

/// Starts a node's vault (emptying its directory first) and registers it as `vault/<node-id>`.
pub async fn spawn_vault(
    args: VaultArgs,
) -> Result<(VaultHandle, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let registry = args.registry.clone();
    let name = vault_name(args.node_id);
    let (actor, join) = Actor::spawn(None, VaultActor, args).await?;
    let handle = VaultHandle { actor, name };
    if let Some(r) = registry
        && let Err(e) = r.register(handle.name.clone(), Arc::new(handle.clone()))
    {
        handle.actor.stop(None);
        return Err(e.into());
    }
    Ok((handle, join))
}

#[cfg(test)]
mod tests;
