//! A node's session answer, bounded in bytes: which of its tasks the leader lists, and the size
//! bounds that make sure the list always fits one wire frame.
//!
//! ```text
//!  tasks on the node ─┬─ live (not terminal) ──────────────── always listed
//!                     └─ history (terminal), newest first ─── listed while the answer stays
//!                                                             within ANSWER_BYTES_MAX
//! ```
//!
//! The agent stops the actor of a task it runs that the answer does not list ("no longer this
//! node's"). A live task is therefore never left out. A terminal task is inert on the agent (it
//! is never started again; only its actor and its kept output remain), so leaving history out
//! costs at most the early loss of an ended task's output there; the store keeps the task for
//! `service ps`. A terminal task the orchestrator still wants Running (waiting out a restart
//! delay) is history too, listed before other history.
//!
//! Why live tasks alone always fit, the arithmetic:
//!
//! - a task's assignment encodes to at most `assignment_bytes_max(spec)`: its spec as encoded,
//!   plus [`ASSIGNMENT_REST_BYTES_MAX`] for the IDs, numbers, the service name (at most
//!   [`SERVICE_NAME_BYTES_MAX`], checked when a service is created) and the status, whose
//!   texts the leader cuts to [`STATUS_TEXT_BYTES_MAX`] ([`TaskStatus::cut`]) whatever a node
//!   reports;
//! - the scheduler places a task on a node only when the node holds fewer than
//!   `wire::ASSIGNMENTS_MAX` live tasks and the sum of their `assignment_bytes_max`, the new
//!   task's included, stays within [`NODE_LIVE_BYTES_MAX`] (the "node full" filter);
//! - a spec is at most [`TASK_SPEC_BYTES_MAX`] encoded (checked at create), so one task always
//!   fits an empty node: `TASK_SPEC_BYTES_MAX + ASSIGNMENT_REST_BYTES_MAX <= NODE_LIVE_BYTES_MAX`;
//! - `NODE_LIVE_BYTES_MAX = ANSWER_BYTES_MAX`, and `ANSWER_BYTES_MAX + ANSWER_FRAMING_BYTES <=
//!   wire::FRAME_BYTES_MAX`, the framing being the response's tag, the list's length and the
//!   frame's version.
//!
//! The constants are checked at compile time below. Tasks a node received before this bound
//! existed (or global tasks, which the orchestrator places without the scheduler) could still
//! pass it; the answer lists them all anyway and the leader logs it, since leaving a live task
//! out would stop it.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{NodeId, ServiceId, Task, TaskSpec, TaskState};
use crate::wire::{ASSIGNMENTS_MAX, Assignment, FRAME_BYTES_MAX};

/// Bytes a frame needs around the list of assignments: the protocol version (2), the response's
/// variant tag and the list's length (a few each). Far more than that, to be safe.
pub const ANSWER_FRAMING_BYTES: usize = 64 * 1024;

/// Most bytes of assignments in one session answer.
pub const ANSWER_BYTES_MAX: usize = (1 << 20) - ANSWER_FRAMING_BYTES;

/// Most bytes of secrets and configs in one session answer: the largest config always fits
/// alone; files past the bound wait for the next answer.
pub const FILES_ANSWER_BYTES_MAX: usize = 2 << 20;

/// Bytes one file takes in an answer beyond its data: its key, name and length prefixes.
pub const FILE_REST_BYTES_MAX: usize = 256;

/// Most bytes of the live tasks' assignments on one node, as the scheduler counts them
/// ([`assignment_bytes_max`] each): a node whose live tasks would pass it is full.
pub const NODE_LIVE_BYTES_MAX: usize = ANSWER_BYTES_MAX;

/// Most bytes of a task status's message, and of its error: a longer text a node reports is cut.
pub use crate::model::STATUS_TEXT_BYTES_MAX;

/// Longest service name, as Docker allows; it travels with each assignment.
pub const SERVICE_NAME_BYTES_MAX: usize = 63;

/// Most bytes of a task spec, encoded. `service create` checks the whole service spec against
/// this bound, so the task spec inside it is smaller.
pub const TASK_SPEC_BYTES_MAX: usize = 16 * 1024;

/// Most bytes of everything in an assignment but the task's spec: the task's IDs and numbers
/// (at most 17 bytes each as varints, 11 fields), the service name, and the status with both
/// texts at their bound (each with its length prefix), with room to spare.
pub const ASSIGNMENT_REST_BYTES_MAX: usize = 11 * 17
    + (SERVICE_NAME_BYTES_MAX + 9)
    + 2 * (STATUS_TEXT_BYTES_MAX + 9)
    + NETWORKS_BYTES_MAX
    + 128;

/// Most bytes of a task's network attachments: at most `NETWORKS_PER_TASK_MAX`, each a name
/// of at most `NETWORK_NAME_BYTES_MAX` bytes with its prefix, two addresses and a prefix
/// length.
pub const NETWORKS_BYTES_MAX: usize = 9 + crate::model::NETWORKS_PER_TASK_MAX
    * (crate::model::NETWORK_NAME_BYTES_MAX + 9 + 4 + 1 + 4 + 8);

// The arithmetic of the module doc: one task of the largest spec fits an empty node, and a
// node's live tasks at their bound fit one frame with its framing.
const _: () = assert!(TASK_SPEC_BYTES_MAX + ASSIGNMENT_REST_BYTES_MAX <= NODE_LIVE_BYTES_MAX);
const _: () = assert!(NODE_LIVE_BYTES_MAX <= ANSWER_BYTES_MAX);
const _: () =
    assert!(ANSWER_BYTES_MAX + FILES_ANSWER_BYTES_MAX + ANSWER_FRAMING_BYTES <= FRAME_BYTES_MAX);
const _: () =
    assert!(crate::model::CONFIG_BYTES_MAX + FILE_REST_BYTES_MAX <= FILES_ANSWER_BYTES_MAX);

/// Bytes `value` takes encoded as the wire encodes it (bincode, variable-length integers).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    match bincode::serde::encode_into_writer(value, &mut size, bincode::config::standard()) {
        Ok(()) => size.bytes_written,
        // Our own types always encode; should one not, count it as too large to place.
        Err(_) => NODE_LIVE_BYTES_MAX,
    }
}

/// The most bytes an assignment of a task with this spec can take, whatever its status becomes
/// while it lives: what the scheduler counts against [`NODE_LIVE_BYTES_MAX`].
pub fn assignment_bytes_max(spec: &TaskSpec) -> usize {
    encoded_len(spec) + ASSIGNMENT_REST_BYTES_MAX
}

/// The bytes of one assignment as it would be sent now.
pub fn assignment_bytes(task: &Task, service_name: &str) -> usize {
    // bincode writes a struct as its fields one after the other: an `Assignment` is its task
    // then its service name.
    encoded_len(task) + encoded_len(service_name)
}

/// What [`session_answer`] left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerCut {
    /// Terminal tasks not listed: the answer had no room left for them.
    pub history_left_out: usize,
    /// The live tasks alone pass [`ANSWER_BYTES_MAX`] (see the module doc): listed anyway.
    pub live_over: bool,
}

/// The tasks of one node to list in its session answer, in the order given: every live one,
/// then terminal ones (the orchestrator's Running-wanted ones first, then newest first) while the
/// answer's encoded size stays within [`ANSWER_BYTES_MAX`] and at most `ASSIGNMENTS_MAX` of
/// them. `name` gives a task's service name. Sizes are measured only when there is history to
/// choose from.
pub fn session_answer<'n, T: Borrow<Task>>(
    tasks: Vec<T>,
    name: impl Fn(&Task) -> &'n str,
) -> (Vec<T>, AnswerCut) {
    let is_history = |t: &Task| t.status.state.is_terminal();
    if !tasks.iter().any(|t| is_history(t.borrow())) {
        return (tasks, AnswerCut::default());
    }
    let sizes: Vec<usize> = tasks
        .iter()
        .map(|t| assignment_bytes(t.borrow(), name(t.borrow())))
        .collect();
    let mut keep: Vec<bool> = tasks.iter().map(|t| !is_history(t.borrow())).collect();
    let live_bytes: usize = sizes
        .iter()
        .zip(&keep)
        .filter(|(_, live)| **live)
        .map(|(s, _)| s)
        .sum();
    let mut history: Vec<usize> = (0..tasks.len()).filter(|&i| !keep[i]).collect();
    history.sort_by_key(|&i| {
        let t: &Task = tasks[i].borrow();
        (
            t.desired_state > TaskState::Running,
            std::cmp::Reverse(t.status.since_ms),
            std::cmp::Reverse(t.id),
        )
    });
    let mut cut = AnswerCut {
        history_left_out: 0,
        live_over: live_bytes > ANSWER_BYTES_MAX,
    };
    let mut room = ANSWER_BYTES_MAX.saturating_sub(live_bytes);
    // Newest first, and the first that does not fit ends the list: what is left out is always
    // the oldest history.
    let mut full = false;
    for (n, i) in history.into_iter().enumerate() {
        if full || n >= ASSIGNMENTS_MAX || sizes[i] > room {
            full = true;
            cut.history_left_out += 1;
            continue;
        }
        room -= sizes[i];
        keep[i] = true;
    }
    let listed = tasks
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect();
    (listed, cut)
}

/// Every node's session answer from the tasks as they are (in task order), with what was left
/// out of each. `names` gives each service's name.
pub fn answers<'a>(
    tasks: impl IntoIterator<Item = &'a Task>,
    names: &BTreeMap<ServiceId, String>,
) -> BTreeMap<NodeId, (Vec<Assignment>, AnswerCut)> {
    let mut by_node: BTreeMap<NodeId, Vec<&Task>> = BTreeMap::new();
    for t in tasks {
        if let Some(node) = t.node_id {
            by_node.entry(node).or_default().push(t);
        }
    }
    let name = |t: &Task| names.get(&t.service_id).map_or("", String::as_str);
    by_node
        .into_iter()
        .map(|(node, list)| {
            let (listed, cut) = session_answer(list, name);
            let listed = listed
                .into_iter()
                .map(|t| Assignment {
                    task: t.clone(),
                    service_name: name(t).to_string(),
                })
                .collect();
            (node, (listed, cut))
        })
        .collect()
}

#[cfg(test)]
mod tests;
