//! Messages the SecretVault takes: material from the agent (held, forgotten), a task's files
//! written or removed, and `List` from the admin shell.

use ractor::RpcReplyPort;

use super::files::{HeldFile, VaultError};
use crate::model::{FileKey, FileMaterial, FileRef, TaskId};
use crate::runtime::TaskFile;

pub enum VaultMsg {
    /// Keep this material: it came with an answer, for tasks of this node.
    Hold(Vec<FileMaterial>),
    /// No task of this node needs these any more.
    Forget(Vec<FileKey>),
    /// Write the task's files (secrets, then configs) to tmpfs and say where they are.
    Materialize {
        task: TaskId,
        secrets: Vec<FileRef>,
        configs: Vec<FileRef>,
        reply: RpcReplyPort<Result<Vec<TaskFile>, VaultError>>,
    },
    /// The task ended or its actor stopped: remove its files.
    Release(TaskId),
    /// What the node holds, for the admin shell: names, kinds, tasks; never data.
    List(RpcReplyPort<Vec<HeldFile>>),
}
