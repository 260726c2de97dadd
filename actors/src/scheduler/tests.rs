//! The scheduler's tests: rules one by one, then properties over random clusters (fixed seed).

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use std::collections::BTreeMap;

use super::tests_support::{node, spec};
use super::*;
use crate::model::RuntimeKind;

fn pend(id: u128, service: u128, spec: &TaskSpec) -> PendingTask<'_> {
    PendingTask {
        task: TaskId(id),
        service: ServiceId(service),
        spec,
        pin: None,
        host_ports: &[],
    }
}

fn load(task: u128, service: u128, node: u128) -> TaskLoad {
    TaskLoad {
        task: TaskId(task),
        service: ServiceId(service),
        node: NodeId(node),
        reservations: ResourceAmounts::default(),
        bytes: 0,
    }
}

fn placed_on(d: &Decision) -> Option<NodeId> {
    match d {
        Decision::Place { node, .. } => Some(*node),
        Decision::Pending { .. } => None,
    }
}

#[test]
fn only_ready_active_nodes_with_the_runtime_take_tasks() {
    let mut nodes: Vec<NodeView> = (1..=5).map(node).collect();
    nodes[0].state = NodeState::Down;
    nodes[1].availability = Availability::Pause;
    nodes[2].availability = Availability::Drain;
    nodes[3].runtimes = vec!["docker".into()].into();
    let s = spec();
    let pending: Vec<_> = (100..103).map(|t| pend(t, 1, &s)).collect();
    let d = schedule(&nodes, &[], &pending);
    assert_eq!(d.len(), 3);
    for x in &d {
        assert_eq!(placed_on(x), Some(NodeId(5)), "{x:?}");
    }
}

#[test]
fn pending_reason_counts_each_node_once() {
    let mut nodes: Vec<NodeView> = (1..=5).map(node).collect();
    nodes[0].state = NodeState::Down;
    nodes[1].labels.to_mut().insert("env".into(), "dev".into());
    nodes[2].labels.to_mut().insert("env".into(), "prod".into());
    nodes[2].resources.memory_bytes = 1 << 20;
    nodes[3].labels.to_mut().insert("env".into(), "prod".into());
    nodes[3].resources.memory_bytes = 1 << 20;
    let mut s = spec();
    s.placement.constraints = vec!["node.labels.env==prod".into()];
    s.resources.reservations.memory_bytes = 1 << 30;
    let d = schedule(&nodes, &[], &[pend(9, 1, &s)]);
    assert_eq!(
        d,
        vec![Decision::Pending {
            task: TaskId(9),
            reason: "no suitable node (1 node not available, 2 nodes not matching constraints, \
                     2 nodes with insufficient resources)"
                .into()
        }]
    );
    let d = schedule(&[], &[], &[pend(9, 1, &s)]);
    assert!(matches!(&d[0], Decision::Pending { reason, .. } if reason.contains("no nodes")));
}

#[test]
fn max_replicas_per_node_counts_live_tasks_and_placements_of_the_call() {
    let nodes: Vec<NodeView> = (1..=2).map(node).collect();
    let mut s = spec();
    s.placement.max_replicas = 2;
    // Node 1 already holds one task of service 1 (another spec version counts too) and one
    // of service 2, which does not count.
    let running = [load(50, 1, 1), load(51, 2, 1)];
    let pending: Vec<_> = (1..=5).map(|t| pend(t, 1, &s)).collect();
    let d = schedule(&nodes, &running, &pending);
    let mut per = BTreeMap::new();
    for x in &d {
        if let Some(n) = placed_on(x) {
            *per.entry(n).or_insert(0) += 1;
        }
    }
    assert_eq!(per, BTreeMap::from([(NodeId(1), 1), (NodeId(2), 2)]));
    let reasons: Vec<_> = (d.iter())
        .filter_map(|x| match x {
            Decision::Pending { reason, .. } => Some(reason.as_str()),
            Decision::Place { .. } => None,
        })
        .collect();
    assert_eq!(
        reasons, ["no suitable node (max replicas per node limit exceed)"; 2],
        "Docker's reason"
    );
}

#[test]
fn max_replicas_names_the_other_filters_too_and_zero_is_no_limit() {
    let mut nodes: Vec<NodeView> = (1..=3).map(node).collect();
    nodes[2].availability = Availability::Drain;
    let mut s = spec();
    s.placement.max_replicas = 1;
    let running = [load(50, 1, 1)];
    let pending: Vec<_> = (1..=2).map(|t| pend(t, 1, &s)).collect();
    let d = schedule(&nodes, &running, &pending);
    assert_eq!(placed_on(&d[0]), Some(NodeId(2)));
    assert_eq!(
        d[1],
        Decision::Pending {
            task: TaskId(2),
            reason: "no suitable node (1 node not available, max replicas per node limit exceed)"
                .into()
        }
    );
    s.placement.max_replicas = 0;
    let pending: Vec<_> = (1..=4).map(|t| pend(t, 1, &s)).collect();
    let d = schedule(&nodes, &running, &pending);
    assert!(d.iter().all(|x| placed_on(x).is_some()), "{d:?}");
}

#[test]
fn a_global_task_ignores_max_replicas() {
    let nodes = [node(1)];
    let mut s = spec();
    s.placement.max_replicas = 1;
    let running = [load(50, 1, 1)];
    let p = PendingTask {
        pin: Some(NodeId(1)),
        ..pend(1, 1, &s)
    };
    let d = schedule(&nodes, &running, &[p]);
    assert_eq!(placed_on(&d[0]), Some(NodeId(1)));
}

#[test]
fn reservations_count_decisions_made_earlier_in_the_call() {
    let mut nodes: Vec<NodeView> = (1..=2).map(node).collect();
    nodes[0].resources.nano_cpus = 2_000_000_000;
    nodes[1].resources.nano_cpus = 1_000_000_000;
    let mut s = spec();
    s.resources.reservations.nano_cpus = 1_000_000_000;
    // One CPU is already held on node 1 by a running task.
    let mut running = load(50, 7, 1);
    running.reservations.nano_cpus = 1_000_000_000;
    let pending: Vec<_> = (1..=3).map(|t| pend(t, 1, &s)).collect();
    let d = schedule(&nodes, &[running], &pending);
    let on: Vec<_> = d.iter().map(placed_on).collect();
    assert_eq!(on[0], Some(NodeId(2)), "node 2 has fewer tasks overall");
    assert_eq!(on[1], Some(NodeId(1)), "node 2 is full now");
    assert_eq!(on[2], None, "both nodes are full now");
    assert!(matches!(&d[2], Decision::Pending { reason, .. }
        if reason == "no suitable node (2 nodes with insufficient resources)"));
}

#[test]
fn spread_prefers_fewest_of_the_service_then_fewest_overall() {
    let nodes: Vec<NodeView> = (1..=3).map(node).collect();
    // Node 1 has one task of service 1; node 2 has three of service 2; node 3 has one of 2.
    let running = [
        load(10, 1, 1),
        load(11, 2, 2),
        load(12, 2, 2),
        load(13, 2, 2),
        load(14, 2, 3),
    ];
    let s = spec();
    let d = schedule(&nodes, &running, &[pend(1, 1, &s), pend(2, 1, &s)]);
    assert_eq!(
        placed_on(&d[0]),
        Some(NodeId(3)),
        "none of service 1, fewer overall"
    );
    assert_eq!(
        placed_on(&d[1]),
        Some(NodeId(2)),
        "none of service 1 left but node 2"
    );
    let d = schedule(&nodes, &running, &[pend(3, 1, &s); 3]);
    let mut on: Vec<_> = d.iter().filter_map(placed_on).collect();
    on.sort();
    assert_eq!(on, vec![NodeId(1), NodeId(2), NodeId(3)]);
}

#[test]
fn placement_preference_spreads_over_label_values() {
    let mut nodes: Vec<NodeView> = (1..=4).map(node).collect();
    for (n, zone) in nodes.iter_mut().zip(["a", "a", "a", "b"]) {
        n.labels.to_mut().insert("zone".into(), zone.into());
    }
    let mut s = spec();
    s.placement.preferences = vec!["spread=node.labels.zone".into()];
    let pending: Vec<_> = (1..=6).map(|t| pend(t, 1, &s)).collect();
    let d = schedule(&nodes, &[], &pending);
    let in_b = d.iter().filter(|x| placed_on(x) == Some(NodeId(4))).count();
    assert_eq!(in_b, 3, "half the tasks go to zone b's single node");
}

#[test]
fn pinned_tasks_go_to_their_node_or_wait() {
    let mut nodes: Vec<NodeView> = (1..=3).map(node).collect();
    nodes[1].resources.memory_bytes = 1 << 20;
    let mut s = spec();
    s.resources.reservations.memory_bytes = 1 << 30;
    let on = |id| PendingTask {
        pin: Some(NodeId(id)),
        host_ports: &[],
        ..pend(id, 1, &s)
    };
    let d = schedule(&nodes, &[], &[on(3), on(2), on(9)]);
    assert_eq!(placed_on(&d[0]), Some(NodeId(3)), "not the emptier node 1");
    assert_eq!(
        d[1],
        Decision::Pending {
            task: TaskId(2),
            reason: "no suitable node (1 node with insufficient resources)".into()
        }
    );
    assert!(
        matches!(&d[2], Decision::Pending { reason, .. } if reason.contains("is not in the cluster"))
    );
}

#[test]
fn a_node_holding_assignments_max_tasks_is_full() {
    tracing::info!("phase: node 1 holds ASSIGNMENTS_MAX live tasks; a new task waits, saying why");
    let max = crate::wire::ASSIGNMENTS_MAX as u128;
    let nodes = vec![node(1)];
    let running: Vec<TaskLoad> = (1..=max).map(|t| load(t, 2, 1)).collect();
    let d = schedule(&nodes, &running, &[pend(100_000, 1, &spec())]);
    assert_eq!(
        d[0],
        Decision::Pending {
            task: TaskId(100_000),
            reason: "no suitable node (1 node full)".into()
        }
    );

    tracing::info!("phase: two nodes with room for one task each: two placed, the third waits");
    let d = schedule(&nodes, &running[1..], &[pend(100_000, 1, &spec())]);
    assert_eq!(placed_on(&d[0]), Some(NodeId(1)));
    let nodes = vec![node(1), node(2)];
    let mut running: Vec<TaskLoad> = running[1..].to_vec();
    running.extend((1..max).map(|t| load(max + t, 2, 2)));
    let s = spec();
    let pending: Vec<_> = (0..3).map(|t| pend(100_000 + t, 1, &s)).collect();
    let d = schedule(&nodes, &running, &pending);
    let mut on: Vec<_> = d.iter().filter_map(placed_on).collect();
    on.sort();
    assert_eq!(on, [NodeId(1), NodeId(2)]);
    assert_eq!(
        d[2],
        Decision::Pending {
            task: TaskId(100_002),
            reason: "no suitable node (2 nodes full)".into()
        }
    );
}

#[test]
fn a_node_whose_answer_would_pass_its_bytes_is_full() {
    use crate::wire::answer::{NODE_LIVE_BYTES_MAX, assignment_bytes_max};
    tracing::info!("phase: node 1's live tasks weigh nearly a whole answer; a large task waits");
    let mut big = spec();
    big.env = vec![format!("A={}", "x".repeat(15_000))];
    let want = assignment_bytes_max(&big);
    let mut nodes = vec![node(1)];
    let heavy = TaskLoad {
        bytes: NODE_LIVE_BYTES_MAX - want + 1,
        ..load(1, 2, 1)
    };
    let d = schedule(&nodes, &[heavy], &[pend(10, 1, &big), pend(11, 1, &big)]);
    assert!(
        d.iter()
            .all(|d| matches!(d, Decision::Pending { reason, .. }
            if reason == "no suitable node (1 node full)")),
        "{d:?}"
    );

    tracing::info!("phase: with room for exactly one, one is placed and the next waits");
    let room_for_one = TaskLoad {
        bytes: NODE_LIVE_BYTES_MAX - want,
        ..heavy
    };
    let d = schedule(
        &nodes,
        &[room_for_one],
        &[pend(10, 1, &big), pend(11, 1, &big)],
    );
    assert_eq!(placed_on(&d[0]), Some(NodeId(1)));
    assert!(placed_on(&d[1]).is_none());

    tracing::info!("phase: the count of full nodes joins the other reasons");
    nodes.push(node(2));
    nodes[1].availability = Availability::Drain;
    let d = schedule(&nodes, &[heavy], &[pend(10, 1, &big)]);
    assert!(
        matches!(&d[0], Decision::Pending { reason, .. }
            if reason == "no suitable node (1 node not available, 1 node full)"),
        "{d:?}"
    );
}

#[test]
fn invalid_constraint_leaves_the_task_pending_with_the_error() {
    let nodes: Vec<NodeView> = (1..=2).map(node).collect();
    let mut s = spec();
    s.placement.constraints = vec!["node.labels.env=prod".into()];
    let d = schedule(&nodes, &[], &[pend(1, 1, &s)]);
    assert!(
        matches!(&d[0], Decision::Pending { reason, .. } if reason.contains("expected == or !="))
    );
}

#[test]
fn decisions_follow_input_order_across_groups() {
    let nodes: Vec<NodeView> = (1..=3).map(node).collect();
    let a = spec();
    let mut b = spec();
    b.runtime = RuntimeKind::Docker;
    let pending = [
        pend(1, 1, &a),
        pend(2, 2, &b),
        pend(3, 1, &a),
        pend(4, 1, &b),
    ];
    let d = schedule(&nodes, &[], &pending);
    let ids: Vec<_> = d.iter().map(Decision::task).collect();
    assert_eq!(ids, vec![TaskId(1), TaskId(2), TaskId(3), TaskId(4)]);
    assert!(placed_on(&d[0]).is_some());
    assert!(placed_on(&d[1]).is_none(), "no node has docker");
    assert!(
        placed_on(&d[3]).is_none(),
        "same service, other spec: its own group"
    );
}

// ---- properties ----

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        rng_seed: RngSeed::Fixed(0x5eed_5c4e_d01e),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_node(id: u128) -> impl Strategy<Value = NodeView<'static>> {
    (
        prop_oneof![
            6 => Just(NodeState::Ready),
            1 => Just(NodeState::Down),
            1 => Just(NodeState::Unknown)
        ],
        prop_oneof![
            6 => Just(Availability::Active),
            1 => Just(Availability::Pause),
            1 => Just(Availability::Drain)
        ],
        prop::option::of(prop_oneof![Just("prod"), Just("dev")]),
        prop::option::of(prop_oneof![Just("a"), Just("b"), Just("c")]),
        any::<bool>(),
        0u64..8,
        0u64..8,
    )
        .prop_map(move |(state, avail, env, zone, docker, cpus, gib)| {
            let mut n = node(id);
            n.state = state;
            n.availability = avail;
            if let Some(e) = env {
                n.labels.to_mut().insert("env".into(), e.into());
            }
            if let Some(z) = zone {
                n.engine_labels.to_mut().insert("zone".into(), z.into());
            }
            if docker {
                n.runtimes.to_mut().push("docker".into());
            }
            n.resources.nano_cpus = cpus * 1_000_000_000;
            n.resources.memory_bytes = gib << 30;
            n
        })
}

fn arb_spec() -> impl Strategy<Value = TaskSpec> {
    (
        any::<bool>(),
        prop_oneof![
            Just(vec![]),
            Just(vec!["node.labels.env==prod".to_string()]),
            Just(vec!["node.labels.env!=prod".to_string()]),
            Just(vec![
                "engine.labels.zone==a".to_string(),
                "node.role==worker".to_string()
            ]),
        ],
        prop_oneof![
            Just(vec![]),
            Just(vec!["spread=engine.labels.zone".to_string()]),
            Just(vec![
                "spread=node.labels.env".to_string(),
                "spread=engine.labels.zone".to_string()
            ]),
        ],
        0u64..3,
        0u64..3,
        0u64..3,
    )
        .prop_map(|(docker, constraints, preferences, cpus, gib, max)| {
            let mut s = spec();
            if docker {
                s.runtime = RuntimeKind::Docker;
            }
            s.placement.constraints = constraints;
            s.placement.preferences = preferences;
            s.resources.reservations.nano_cpus = cpus * 500_000_000;
            s.resources.reservations.memory_bytes = gib << 29;
            s.placement.max_replicas = max;
            s
        })
}

/// Nodes, running tasks, pending tasks as (service, index into the specs), specs.
type Cluster = (
    Vec<NodeView<'static>>,
    Vec<TaskLoad>,
    Vec<(u128, usize, Option<u128>)>,
    Vec<TaskSpec>,
);

/// A cluster's pending tasks, numbered from 1, each with its spec and pin. A spec is not
/// tied to one service: one service may run two specs, as during an update.
fn pending_tasks<'a>(
    pending: &[(u128, usize, Option<u128>)],
    specs: &'a [TaskSpec],
) -> Vec<PendingTask<'a>> {
    pending
        .iter()
        .enumerate()
        .map(|(i, &(svc, s, pin))| PendingTask {
            pin: pin.map(NodeId),
            host_ports: &[],
            ..pend(i as u128 + 1, svc, &specs[s])
        })
        .collect()
}

fn arb_cluster() -> impl Strategy<Value = Cluster> {
    (1usize..12).prop_flat_map(|n| {
        let nodes: Vec<_> = (0..n).map(|i| arb_node(i as u128 + 1)).collect();
        (
            nodes,
            prop::collection::vec((1u128..4, 1..=n as u128, 0u64..2), 0..20),
            prop::collection::vec(
                (1u128..4, 0usize..3, prop::option::weighted(0.2, 1u128..14)),
                0..40,
            ),
            prop::collection::vec(arb_spec(), 3),
        )
            .prop_map(|(nodes, running, pending, specs)| {
                let running = running
                    .into_iter()
                    .enumerate()
                    .map(|(i, (svc, node, cpus))| {
                        let mut l = load(1000 + i as u128, svc, node);
                        l.reservations.nano_cpus = cpus * 1_000_000_000;
                        l
                    })
                    .collect();
                (nodes, running, pending, specs)
            })
    })
}

proptest! {
    #![proptest_config(config())]

    /// Every placement passes every filter; every pending task gets exactly one decision; a task
    /// is left pending only when no node could take it.
    #[test]
    fn placements_respect_every_filter((nodes, running, pending, specs) in arb_cluster()) {
        let pending = pending_tasks(&pending, &specs);
        let d = schedule(&nodes, &running, &pending);
        prop_assert_eq!(d.len(), pending.len());
        let mut used = vec![ResourceAmounts::default(); nodes.len()];
        for l in &running {
            let i = nodes.iter().position(|n| n.id == l.node).unwrap();
            filter::add(&mut used[i], &l.reservations);
        }
        let mut reserved_here = vec![(false, false); nodes.len()];
        // Live tasks per (service, node) at the end, and the largest max replicas of the
        // tasks placed there (`None` once one without a limit, or pinned, went there): the
        // last placement there was allowed by its own limit, so the count is at most that.
        let mut per: BTreeMap<(ServiceId, NodeId), u64> = BTreeMap::new();
        for l in &running {
            *per.entry((l.service, l.node)).or_default() += 1;
        }
        let mut limit: BTreeMap<(ServiceId, NodeId), Option<u64>> = BTreeMap::new();
        let max_of = |p: &PendingTask<'_>| match p.pin {
            None if p.spec.placement.max_replicas > 0 => Some(p.spec.placement.max_replicas),
            _ => None,
        };
        for (p, x) in pending.iter().zip(&d) {
            prop_assert_eq!(x.task(), p.task);
            if let Some(id) = placed_on(x) {
                prop_assert!(p.pin.is_none_or(|pin| pin == id), "placed off its pin");
                *per.entry((p.service, id)).or_default() += 1;
                let l = limit.entry((p.service, id)).or_insert(Some(0));
                *l = l.zip(max_of(p)).map(|(a, b)| a.max(b));
                let i = nodes.iter().position(|n| n.id == id).unwrap();
                let c = Constraint::parse_all(&p.spec.placement.constraints).unwrap();
                prop_assert_eq!(filter::check_static(&nodes[i], p.spec.runtime, &c), Ok(()));
                let want = p.spec.resources.reservations;
                filter::add(&mut used[i], &want);
                reserved_here[i].0 |= want.nano_cpus > 0;
                reserved_here[i].1 |= want.memory_bytes > 0;
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            if reserved_here[i].0 {
                prop_assert!(used[i].nano_cpus <= n.resources.nano_cpus, "cpu over on {}", i);
            }
            if reserved_here[i].1 {
                prop_assert!(used[i].memory_bytes <= n.resources.memory_bytes, "memory over on {}", i);
            }
        }
        for (key, l) in &limit {
            if let Some(max) = l {
                prop_assert!(per[key] <= *max, "{:?} holds {} tasks, max {}", key, per[key], max);
            }
        }
        for (p, x) in pending.iter().zip(&d) {
            if placed_on(x).is_none() {
                let c = Constraint::parse_all(&p.spec.placement.constraints).unwrap();
                for (i, n) in nodes.iter().enumerate() {
                    if p.pin.is_some_and(|pin| pin != n.id) {
                        continue;
                    }
                    let here = per.get(&(p.service, n.id)).copied().unwrap_or(0);
                    let ok = filter::check_static(n, p.spec.runtime, &c).is_ok()
                        && max_of(p).is_none_or(|max| here < max)
                        && filter::fits(&n.resources, &used[i], &p.spec.resources.reservations);
                    prop_assert!(!ok, "task {:?} pending though node {} could take it", p.task, i);
                }
            }
        }
    }

    /// With no preferences and no constraints, N equal nodes end up within one task of each
    /// other for the service, whatever other services already run there.
    #[test]
    fn spread_is_even_within_one_call(
        n in 1usize..30,
        k in 0usize..200,
        others in prop::collection::vec((2u128..5, 0usize..30), 0..60),
    ) {
        let nodes: Vec<NodeView> = (1..=n as u128).map(node).collect();
        let running: Vec<TaskLoad> = others
            .iter()
            .enumerate()
            .map(|(i, &(svc, at))| load(10_000 + i as u128, svc, (at % n) as u128 + 1))
            .collect();
        let s = spec();
        let pending: Vec<_> = (0..k).map(|t| pend(t as u128, 1, &s)).collect();
        let d = schedule(&nodes, &running, &pending);
        let mut per = vec![0usize; n];
        for x in &d {
            let id = placed_on(x).expect("equal empty nodes take everything");
            per[(id.0 - 1) as usize] += 1;
        }
        let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
        prop_assert!(hi - lo <= 1, "{:?}", per);
    }

    /// The same input gives the same decisions.
    #[test]
    fn schedule_is_deterministic((nodes, running, pending, specs) in arb_cluster()) {
        let pending = pending_tasks(&pending, &specs);
        prop_assert_eq!(schedule(&nodes, &running, &pending), schedule(&nodes, &running, &pending));
    }
}
