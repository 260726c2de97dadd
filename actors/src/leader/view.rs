//! What the leader shows the admin shell: [`LeaderView`] for `send leader Describe`, and one
//! [`ServiceView`] per service for `send service/<name> Describe` (the design's ServiceActor,
//! addressable while reconciliation stays one pass over every service).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{NodeId, Service, ServiceMode, Task, TaskId, TaskState};

/// What the leader knows, as of its last pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    pub term: u64,
    /// When this manager became leader (ms since the epoch).
    pub since_ms: u64,
    pub rebuilt_at_index: u64,
    pub nodes: Vec<NodeId>,
    pub managers: Vec<NodeId>,
    pub ready: Vec<NodeId>,
    pub services: usize,
    pub tasks: usize,
    pub passes: u64,
    /// Tasks waiting for a node after the last pass.
    pub pending: usize,
    pub last_error: Option<String>,
    /// The routing mesh's table: its version (0: none yet) and how many backends it lists.
    #[serde(default)]
    pub mesh_version: u64,
    #[serde(default)]
    pub mesh_backends: usize,
}

/// One service as the leader's last pass left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub id: String,
    /// "replicated 3" or "global".
    pub mode: String,
    pub spec_version: u64,
    /// Tasks the orchestrator wants running (desired state Running or before).
    pub desired: Vec<TaskLine>,
    /// Tasks on their way out or ended, kept as history.
    pub observed: Vec<TaskLine>,
    /// Why tasks wait for a node, each reason with the count of tasks it holds back.
    pub pending: BTreeMap<String, usize>,
}

/// One task in a [`ServiceView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLine {
    pub id: TaskId,
    pub slot: u64,
    pub node: Option<NodeId>,
    pub desired_state: TaskState,
    pub state: TaskState,
    pub message: String,
}

impl ServiceView {
    /// The view of `service` from `tasks` (every task; those of other services are skipped).
    pub fn of<'t>(service: &Service, tasks: impl IntoIterator<Item = &'t Task>) -> Self {
        let mut view = ServiceView {
            name: service.spec.name.clone(),
            id: service.id.to_string(),
            mode: match service.spec.mode {
                ServiceMode::Replicated { replicas } => format!("replicated {replicas}"),
                ServiceMode::Global => "global".into(),
            },
            spec_version: service.spec_version,
            desired: Vec::new(),
            observed: Vec::new(),
            pending: BTreeMap::new(),
        };
        for t in tasks.into_iter().filter(|t| t.service_id == service.id) {
            let line = TaskLine {
                id: t.id,
                slot: t.slot,
                node: t.node_id,
                desired_state: t.desired_state,
                state: t.status.state,
                message: t.status.message.clone(),
            };
            if t.status.state == TaskState::Pending {
                *view.pending.entry(t.status.message.clone()).or_default() += 1;
            }
            if t.desired_state <= TaskState::Running && !t.status.state.is_terminal() {
                view.desired.push(line);
            } else {
                view.observed.push(line);
            }
        }
        view
    }
}
