//! The operator: node registration, then service and node changes drawn from the seed, each a
//! compare-and-set write proposed to the current raft leader, as `service create/scale/rm`,
//! `service update` (good and failing specs, `--force`), `service rollback` and `node update`
//! do. A refused write is counted, not retried (the operator would look again). Scales and
//! updates go through the model's `Service::updated` and rollbacks `Service::manual_rollback`,
//! as the control API does; `updates.rs` draws them.
//!
//! Managers are registered Drained (they run no tasks), workers Active. The secrets and
//! configs of [`FILES`] are created with them, and a service names some of them, chosen from
//! its ID and spec version (no draw from the seed, so the rest of the workload is what it was
//! before secrets): a good update names others (rotation), a rollback names the previous
//! ones. Overlay networks likewise (`networks.rs`): three are made at registration, and a
//! service's networks, endpoint mode and VIPs follow from its ID and spec version. The changes
//! stop at heal: the liveness phase asks the services to converge on what
//! was last written.

use std::collections::BTreeMap;

use rand::RngExt;
use rand::rngs::StdRng;
use swarm_actors::model::{
    Availability, Dependency, DependencyCondition, FileKind, FileRef, HealthCheck, Placement,
    ResourceAmounts, Resources, RestartCondition, RestartPolicy, Role, RuntimeKind, Secret,
    SecretBytes, SecretId, Service, ServiceId, ServiceMode, ServiceSpec, TaskSpec,
};
use swarm_actors::store::{Expect, Kind, NodeObject, NodeSpec, ObjectBody, Op, StoreState};

use super::networks;
use super::updates::{self, UpdateKind};
use super::{Ev, Waiter};
use crate::clock::Millis;
use crate::managers::{Ev as StoreEv, StoreWorld};
use crate::node::{addr, description, node_id};

/// Most services the operator keeps at once.
pub const SERVICES_MAX: usize = 6;
/// Most replicas the operator asks of a replicated service.
pub const REPLICAS_MAX: u64 = 6;
/// The secrets and configs the operator creates: kind, ID, name, bytes. Four secrets and two
/// configs, one of them large, so that a node's answer may carry over a megabyte.
pub const FILES: &[(FileKind, u128, &str, usize)] = &[
    (FileKind::Secret, 1, "db_password", 24),
    (FileKind::Secret, 2, "api_key", 300),
    (FileKind::Secret, 3, "tls_key", 3_000),
    (FileKind::Secret, 4, "token", 64),
    (FileKind::Config, 11, "app_conf", 2_000),
    (FileKind::Config, 12, "big_conf", 300 * 1024),
];

/// Gap between two operator changes.
const GAP_MS: (Millis, Millis) = (1_000, 3_000);

/// Constraints a service may carry; `tier` is the label the operator sets on workers, `zone`
/// an engine label every node starts with.
const CONSTRAINTS: &[&[&str]] = &[
    &[],
    &[],
    &["node.labels.tier==a"],
    &["node.labels.tier!=b"],
    &["engine.labels.zone==z1"],
    &["node.role==worker", "engine.labels.zone!=z0"],
];

impl StoreWorld {
    pub(super) fn operator(&mut self, at: Millis) {
        if self.svc().liveness {
            return;
        }
        let gap = self.svc().workload_rng.random_range(GAP_MS.0..=GAP_MS.1);
        let registered = self.svc().registered;
        // Registration is retried quickly: nothing can run before it.
        let next = if registered { gap } else { 500 };
        self.q.push(at + next, StoreEv::Svc(Ev::Workload));
        let Some(l) = self.leader() else {
            return;
        };
        let (managers, nodes) = (self.ms.len(), self.cfg.nodes);
        let heal_ms = self.cfg.duration_ms;
        let svc = self.svc.as_mut().expect("on");
        let state = self.ms[l].machine.as_ref().expect("leader").state();
        let (ops, change) = if registered {
            let shape = Shape {
                managers,
                nodes,
                now: at,
                heal_ms,
            };
            operator_change(&mut svc.workload_rng, state, &shape)
        } else {
            let raft_ids: Vec<u64> = self.ms.iter().map(|m| m.raft_id).collect();
            let ops = registrations(state, &raft_ids, nodes);
            svc.registered = ops.is_empty();
            (ops, None)
        };
        if !ops.is_empty() {
            self.svc_propose(at, l, ops, Waiter::Operator(change));
        }
    }
}

/// Node objects not in the store yet (a node joining writes its own in a real cluster), and
/// the secrets and configs of [`FILES`] not in it yet, in one command (about 310 KiB).
fn registrations(state: &StoreState, raft_ids: &[u64], nodes: usize) -> Vec<Op> {
    let mut ops = node_registrations(state, raft_ids, nodes);
    let files = FILES.iter().filter_map(|&(kind, id, name, bytes)| {
        let store_kind = match kind {
            FileKind::Secret => Kind::Secret,
            FileKind::Config => Kind::Config,
        };
        state.get(store_kind, name).is_none().then(|| Op::Put {
            kind: store_kind,
            id: name.to_string(),
            expect: Expect::Absent,
            body: ObjectBody::Secret(Secret {
                id: SecretId(id),
                kind,
                name: name.to_string(),
                labels: BTreeMap::new(),
                data: SecretBytes::new(vec![b'a' + (id % 26) as u8; bytes]),
            }),
        })
    });
    ops.extend(files);
    ops.extend(networks::registrations(state));
    ops
}

/// The secrets and configs a service's tasks name at spec `version`: none to three secrets
/// and none or one config, from the ID and version alone.
pub fn file_refs(id: ServiceId, version: u64) -> (Vec<FileRef>, Vec<FileRef>) {
    let h = (id.0 as u64) ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let r = |kind: FileKind, (_, id, name, _): (FileKind, u128, &str, usize)| FileRef {
        id: SecretId(id),
        name: name.to_string(),
        target: kind.target_path(name, ""),
        uid: 0,
        gid: 0,
        mode: FileRef::DEFAULT_MODE,
    };
    let secrets: Vec<_> = FILES.iter().filter(|f| f.0 == FileKind::Secret).collect();
    let configs: Vec<_> = FILES.iter().filter(|f| f.0 == FileKind::Config).collect();
    let first = (h >> 8) as usize;
    let s = (0..[0, 0, 1, 3][(h % 4) as usize])
        .map(|i| r(FileKind::Secret, *secrets[(first + i) % secrets.len()]))
        .collect();
    let c = (0..((h >> 4) % 2))
        .map(|_| r(FileKind::Config, *configs[((h >> 16) % 2) as usize]))
        .collect();
    (s, c)
}

fn node_registrations(state: &StoreState, raft_ids: &[u64], nodes: usize) -> Vec<Op> {
    let managers = raft_ids.len();
    (0..nodes)
        .filter(|&i| state.get(Kind::Node, &node_id(i).to_string()).is_none())
        .map(|i| {
            let manager = i < managers;
            let node = NodeObject {
                id: node_id(i),
                spec: NodeSpec {
                    role: if manager { Role::Manager } else { Role::Worker },
                    availability: if manager {
                        Availability::Drain
                    } else {
                        Availability::Active
                    },
                    labels: BTreeMap::new(),
                },
                description: Some(description(i, managers, 1)),
                raft_id: manager.then(|| raft_ids[i]),
                addr: addr(i),
            };
            Op::Put {
                kind: Kind::Node,
                id: node_id(i).to_string(),
                expect: Expect::Absent,
                body: ObjectBody::Node(node),
            }
        })
        .collect()
}

/// What an operator change needs to know of the run.
struct Shape {
    managers: usize,
    nodes: usize,
    now: Millis,
    heal_ms: Millis,
}

/// One change, chosen by the seed, as compare-and-set writes on what the leader holds, and
/// which update it is when it is one.
fn operator_change(
    rng: &mut StdRng,
    state: &StoreState,
    shape: &Shape,
) -> (Vec<Op>, Option<UpdateKind>) {
    let (managers, nodes) = (shape.managers, shape.nodes);
    // Keyed by name, as the control API keys them.
    let services: Vec<(String, u64, Service)> = state
        .list(Kind::Service)
        .filter_map(|o| match &o.body {
            ObjectBody::Service(s) => Some((o.id.clone(), o.version, s.clone())),
            _ => None,
        })
        .collect();
    let roll = rng.random_range(0..100);
    if services.len() < 2 || (roll < 25 && services.len() < SERVICES_MAX) {
        let mut s = new_service(rng);
        s.spec.depends_on = dependencies_of(s.id, &services);
        s.vips = networks::vips(state, &s, &[]);
        let op = Op::Put {
            kind: Kind::Service,
            id: s.spec.name.clone(),
            expect: Expect::Absent,
            body: ObjectBody::Service(s),
        };
        return (vec![op], None);
    }
    if roll < 70 {
        let (id, version, s) = services[rng.random_range(0..services.len())].clone();
        let put = |body: Service| Op::Put {
            kind: Kind::Service,
            id: id.clone(),
            expect: Expect::Version(version),
            body: ObjectBody::Service(body),
        };
        if roll < 35 {
            // `service scale`: an update of the replicas alone, as the control API writes it.
            let ServiceMode::Replicated { .. } = s.spec.mode else {
                return (Vec::new(), None);
            };
            let mut spec = s.spec.clone();
            spec.mode = ServiceMode::Replicated {
                replicas: rng.random_range(0..=REPLICAS_MAX),
            };
            return (vec![put(s.updated(spec, false))], None);
        }
        if roll < 40 {
            let op = Op::Delete {
                kind: Kind::Service,
                id,
                expect: Expect::Version(version),
            };
            return (vec![op], None);
        }
        let kind = match rng.random_range(0..100) {
            0..35 => UpdateKind::Good,
            35..65 => UpdateKind::Failing,
            65..80 => UpdateKind::Rollback,
            _ => UpdateKind::Force,
        };
        let slots = updates::slots_max(&s, nodes - managers);
        let Some(mut new) = updates::update(rng, kind, &s, shape.now, shape.heal_ms, slots) else {
            return (Vec::new(), None);
        };
        if kind == UpdateKind::Good {
            // Rotation: `--secret-rm` / `--secret-add` with the new spec.
            let (secrets, configs) = file_refs(new.id, new.spec_version);
            new.spec.task.secrets = secrets;
            new.spec.task.configs = configs;
            // `--network-add` / `--network-rm`, with the VIPs the control API gives then.
            new.spec.task.networks = networks::networks_of(new.id, new.spec_version);
            new.vips = networks::vips(state, &new, &s.spec.task.networks);
        }
        return (vec![put(new)], Some(kind));
    }
    // A worker's availability or labels.
    let i = rng.random_range(managers..nodes);
    let Some(o) = state.get(Kind::Node, &node_id(i).to_string()) else {
        return (Vec::new(), None);
    };
    let ObjectBody::Node(mut n) = o.body.clone() else {
        return (Vec::new(), None);
    };
    if roll < 85 {
        n.spec.availability = match rng.random_range(0..10) {
            0..5 => Availability::Active,
            5..8 => Availability::Drain,
            _ => Availability::Pause,
        };
    } else {
        match rng.random_range(0..3) {
            0 => n.spec.labels.remove("tier"),
            1 => n.spec.labels.insert("tier".into(), "a".into()),
            _ => n.spec.labels.insert("tier".into(), "b".into()),
        };
    }
    let op = Op::Put {
        kind: Kind::Node,
        id: o.id.clone(),
        expect: Expect::Version(o.version),
        body: ObjectBody::Node(n),
    };
    (vec![op], None)
}

fn new_service(rng: &mut StdRng) -> Service {
    let id = ServiceId(rng.random::<u128>());
    let mode = if rng.random_range(0..100) < 70 {
        ServiceMode::Replicated {
            replicas: rng.random_range(1..=REPLICAS_MAX),
        }
    } else {
        ServiceMode::Global
    };
    let health = (rng.random_range(0..100) < 30).then(|| HealthCheck {
        cmd: "check".into(),
        interval_ms: 1_000,
        timeout_ms: 500,
        retries: 2,
        start_period_ms: 1_000,
    });
    let constraints = CONSTRAINTS[rng.random_range(0..CONSTRAINTS.len())]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let task = TaskSpec {
        networks: Vec::new(),
        runtime: RuntimeKind::Process,
        image: "sim".into(),
        args: Vec::new(),
        env: Vec::new(),
        health,
        resources: Resources {
            reservations: ResourceAmounts::default(),
            limits: ResourceAmounts::default(),
        },
        restart: RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: rng.random_range(0..=3_000),
            max_attempts: None,
            window_ms: 0,
        },
        placement: Placement {
            constraints,
            preferences: Vec::new(),
            max_replicas: max_replicas_of(id),
        },
        stop_grace_period_ms: rng.random_range(1_000..=5_000),
        user: None,
        container_labels: Default::default(),
        force_update: 0,
        secrets: Vec::new(),
        configs: Vec::new(),
        entrypoint: Vec::new(),
        workdir: None,
        hostname: None,
        mounts: Vec::new(),
    };
    let (secrets, configs) = file_refs(id, 1);
    let task = TaskSpec {
        secrets,
        configs,
        networks: networks::networks_of(id, 1),
        ..task
    };
    let ports = ports_of(id);
    let spec = ServiceSpec {
        endpoint_mode: networks::endpoint_mode(id, !ports.is_empty()),
        name: format!("s{:x}", id.0 as u16),
        labels: BTreeMap::new(),
        mode,
        task,
        update: updates::draw_config(rng),
        rollback: updates::draw_config(rng),
        ports,
        depends_on: Vec::new(),
    };
    Service::new(id, updates::stop_first_if_limited(spec))
}

/// A new service's `--replicas-max-per-node`, from its ID (no draw from the stream): a
/// quarter of the services get 1 or 2, global ones too (which ignore it).
pub fn max_replicas_of(id: ServiceId) -> u64 {
    let h = (id.0 >> 96) as u64;
    match h % 4 {
        0 => 1 + (h >> 8) % 2,
        _ => 0,
    }
}

/// A new service's `depends_on`, from its ID and the services already in the store (no draw
/// from the stream): two in five depend on one of them, a fifth of those on a second one,
/// each `service_healthy` or `service_started` (half each). Only services without
/// dependencies of their own are chosen, so chains are one deep and the graph has no cycle
/// (a dependency is older than its dependent). The names are the store's: a dependency
/// removed later is missing, and its dependent waits for good.
fn dependencies_of(id: ServiceId, services: &[(String, u64, Service)]) -> Vec<Dependency> {
    let h = u64::from((id.0 >> 64) as u32);
    let mut candidates: Vec<&str> = services
        .iter()
        .filter(|(_, _, s)| s.spec.depends_on.is_empty())
        .map(|(_, _, s)| s.spec.name.as_str())
        .collect();
    if candidates.is_empty() || h % 5 >= 2 {
        return Vec::new();
    }
    let count = if (h >> 4) % 5 == 0 { 2 } else { 1 };
    let mut deps = Vec::new();
    for i in 0..count.min(candidates.len()) {
        let at = ((h >> 8) as usize).wrapping_add(i * 7) % candidates.len();
        let name = candidates.remove(at);
        let condition = if (h >> (16 + i)) % 2 == 0 {
            DependencyCondition::Healthy
        } else {
            DependencyCondition::Started
        };
        deps.push(Dependency {
            service: name.to_string(),
            condition,
        });
    }
    deps
}

/// The ports a new service publishes, from its ID (no draw from the stream, so the runs'
/// other choices stay as they were): a third publish one TCP port through the routing mesh,
/// half of those a UDP port too. Ports of two services may collide: the simulator writes
/// services as the store takes them, and the control API's conflict check is not the leader's.
fn ports_of(id: ServiceId) -> Vec<swarm_actors::model::PortConfig> {
    use swarm_actors::model::{PortConfig, PortProtocol};
    if !id.0.is_multiple_of(3) {
        return Vec::new();
    }
    let port = 8_000 + (id.0 % 1_000) as u16;
    let mut ports = vec![PortConfig::tcp(port, 80)];
    if id.0.is_multiple_of(2) {
        let mut udp = PortConfig::tcp(port, 53);
        udp.protocol = PortProtocol::Udp;
        ports.push(udp);
    }
    ports
}
