//! The session answer's bounds, with fixed inputs: every live task listed whatever the history,
//! the whole answer inside a frame, the oldest history left out first.

use std::collections::BTreeSet;

use super::*;
use std::borrow::Cow;

use crate::model::{NodeId, TaskId, TaskStatus};
use crate::orchestrator::tests_support::task;
use crate::wire::{Response, encode_frame};

/// A spec that encodes to a little under [`TASK_SPEC_BYTES_MAX`], as `service create` allows.
fn large_spec() -> TaskSpec {
    let mut spec = crate::scheduler::tests_support::spec();
    spec.env = (0..16)
        .map(|i| format!("VAR{i}={}", "v".repeat(1_000)))
        .collect();
    let bytes = encoded_len(&spec);
    assert!(
        (TASK_SPEC_BYTES_MAX - 1_024..=TASK_SPEC_BYTES_MAX).contains(&bytes),
        "{bytes}"
    );
    spec
}

/// Task `id` on node 1 with `spec`, live or ended (`since_ms` = id, so higher IDs are newer).
fn on_node(id: u128, spec: &TaskSpec, state: TaskState) -> Task {
    let mut t = task(id, id as u64, Some(1));
    t.spec = spec.clone();
    t.status.state = state;
    if state.is_terminal() {
        t.desired_state = TaskState::Shutdown;
    }
    t
}

fn names() -> BTreeMap<ServiceId, String> {
    // The longest name a service may have.
    BTreeMap::from([(ServiceId(1), "w".repeat(SERVICE_NAME_BYTES_MAX))])
}

fn listed(list: &[Assignment]) -> BTreeSet<TaskId> {
    list.iter().map(|a| a.task.id).collect()
}

#[test]
fn a_node_with_large_specs_and_long_history_gets_every_live_task_in_one_frame() {
    tracing::info!("phase: a node filled to its live bound with near-limit specs, plus history");
    let spec = large_spec();
    // Nearly full: room for a few ended tasks besides.
    let live_n = NODE_LIVE_BYTES_MAX / assignment_bytes_max(&spec) - 3;
    assert!(live_n >= 45, "{live_n}");
    let mut tasks: Vec<Task> = (1..=live_n as u128)
        .map(|id| {
            let mut t = on_node(id, &spec, TaskState::Running);
            // Status texts at their bound: what a node may make them after placement.
            t.status.message = "m".repeat(STATUS_TEXT_BYTES_MAX);
            t.status.error = Some("e".repeat(STATUS_TEXT_BYTES_MAX));
            t
        })
        .collect();
    let history = 200u128;
    tasks.extend((1_000..1_000 + history).map(|id| on_node(id, &spec, TaskState::Failed)));

    let mut all = answers(&tasks, &names());
    let (list, cut) = all.remove(&NodeId(1)).expect("node 1 has tasks");
    assert!(all.is_empty());

    tracing::info!("phase: every live task is listed, and the answer fits a frame");
    let ids = listed(&list);
    for t in tasks.iter().filter(|t| !t.status.state.is_terminal()) {
        assert!(ids.contains(&t.id), "live task {} left out", t.id);
    }
    assert!(!cut.live_over);
    let frame = encode_frame(&Response::Assignments {
        tasks: list.clone(),
        managers: Vec::new(),
        files: Vec::new(),
        mesh: None,
    })
    .expect("the answer fits a frame");
    assert!(frame.len() <= FRAME_BYTES_MAX + 4, "{}", frame.len());

    tracing::info!("phase: history was left out, the oldest first");
    assert!(cut.history_left_out > 0);
    let kept: Vec<u128> = list
        .iter()
        .filter(|a| a.task.status.state.is_terminal())
        .map(|a| a.task.id.0)
        .collect();
    assert!(!kept.is_empty(), "the room left takes some history");
    assert_eq!(kept.len() + cut.history_left_out, history as usize);
    let newest: Vec<u128> = (1_000 + history - kept.len() as u128..1_000 + history).collect();
    assert_eq!(kept, newest, "the newest history is what stays");
}

#[test]
fn live_tasks_beyond_the_count_bound_are_never_cut() {
    tracing::info!(
        "phase: more live tasks than ASSIGNMENTS_MAX (placed before the bound), and history"
    );
    let spec = crate::scheduler::tests_support::spec();
    let mut tasks: Vec<Task> = (1..=ASSIGNMENTS_MAX as u128 + 5)
        .map(|id| on_node(id, &spec, TaskState::Running))
        .collect();
    tasks.extend((10_000..10_010).map(|id| on_node(id, &spec, TaskState::Complete)));
    let (list, cut) = answers(&tasks, &names()).remove(&NodeId(1)).unwrap();
    let ids = listed(&list);
    assert!((1..=ASSIGNMENTS_MAX as u128 + 5).all(|id| ids.contains(&TaskId(id))));
    assert_eq!(
        cut,
        AnswerCut::default(),
        "small tasks: the history fits too"
    );
    assert_eq!(list.len(), tasks.len());
    encode_frame(&Response::Assignments {
        tasks: list,
        managers: Vec::new(),
        files: Vec::new(),
        mesh: None,
    })
    .expect("fits a frame");
}

#[test]
fn live_tasks_over_the_bytes_are_listed_anyway_and_said() {
    let spec = large_spec();
    let n = NODE_LIVE_BYTES_MAX / encoded_len(&spec) + 5;
    let mut tasks: Vec<Task> = (1..=n as u128)
        .map(|id| on_node(id, &spec, TaskState::Running))
        .collect();
    tasks.push(on_node(5_000, &spec, TaskState::Failed));
    let (list, cut) = answers(&tasks, &names()).remove(&NodeId(1)).unwrap();
    assert!(cut.live_over);
    assert_eq!(cut.history_left_out, 1);
    assert_eq!(list.len(), n, "no live task is left out, even then");
}

#[test]
fn a_task_wanted_running_after_it_ended_goes_before_other_history() {
    let spec = large_spec();
    let live_n = NODE_LIVE_BYTES_MAX / assignment_bytes_max(&spec);
    let mut tasks: Vec<Task> = (1..=live_n as u128)
        .map(|id| on_node(id, &spec, TaskState::Running))
        .collect();
    // Waiting out a restart delay: ended, still wanted Running; older than the other history.
    let mut waiting = on_node(500, &spec, TaskState::Failed);
    waiting.desired_state = TaskState::Running;
    tasks.push(waiting);
    tasks.extend((1_000..1_100).map(|id| on_node(id, &spec, TaskState::Failed)));
    let (list, cut) = answers(&tasks, &names()).remove(&NodeId(1)).unwrap();
    assert!(cut.history_left_out > 0);
    assert!(listed(&list).contains(&TaskId(500)));
}

#[test]
fn without_history_nothing_is_measured_or_cut() {
    let spec = crate::scheduler::tests_support::spec();
    let tasks: Vec<Task> = (1..=3)
        .map(|id| on_node(id, &spec, TaskState::Running))
        .collect();
    let (list, cut) = session_answer(tasks.iter().collect(), |_| "web");
    assert_eq!(list.len(), 3);
    assert_eq!(cut, AnswerCut::default());
    assert!(answers(&[], &names()).is_empty());
}

#[test]
fn an_assignment_stays_within_its_bound() {
    let spec = large_spec();
    let mut t = on_node(u128::MAX, &spec, TaskState::Running);
    t.service_id = ServiceId(u128::MAX);
    t.node_id = Some(NodeId(u128::MAX));
    t.slot = u64::MAX;
    t.spec_version = u64::MAX;
    t.created_ms = u64::MAX;
    t.status.since_ms = u64::MAX;
    t.status.exit_code = Some(i32::MIN);
    t.status.health = Some(crate::model::Health::Unhealthy);
    t.status.message = "é".repeat(STATUS_TEXT_BYTES_MAX);
    t.status.error = Some("x".repeat(STATUS_TEXT_BYTES_MAX * 4));
    t.status = t.status.cut().into_owned();
    t.running_ms = Some(u64::MAX);
    t.networks = vec![
        crate::model::NetworkAttachment {
            network: "n".repeat(crate::model::NETWORK_NAME_BYTES_MAX),
            addr: std::net::Ipv4Addr::BROADCAST,
            prefix: 32,
            gateway: std::net::Ipv4Addr::BROADCAST,
        };
        crate::model::NETWORKS_PER_TASK_MAX
    ];
    let name = "w".repeat(SERVICE_NAME_BYTES_MAX);
    let a = Assignment {
        task: t,
        service_name: name.clone(),
    };
    assert_eq!(encoded_len(&a), assignment_bytes(&a.task, &name));
    assert!(encoded_len(&a) <= assignment_bytes_max(&spec));
}

#[test]
fn status_texts_are_cut_at_a_character_boundary() {
    let mut s = TaskStatus::new(TaskState::Failed, 1, "é".repeat(STATUS_TEXT_BYTES_MAX));
    s.error = Some("x".repeat(STATUS_TEXT_BYTES_MAX + 1));
    let cut = s.cut();
    assert!(cut.message.len() <= STATUS_TEXT_BYTES_MAX);
    assert!(cut.message.len() > STATUS_TEXT_BYTES_MAX - 2);
    assert!(cut.message.chars().all(|c| c == 'é'));
    assert_eq!(
        cut.error.as_deref().map(str::len),
        Some(STATUS_TEXT_BYTES_MAX)
    );
    let short = TaskStatus::new(TaskState::Running, 1, "running");
    assert!(matches!(short.cut(), Cow::Borrowed(_)));
}
