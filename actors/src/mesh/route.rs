//! One published port's route: its backends as the latest table gave them, and how a
//! connection picks one (round-robin, or the client's address on a consistent-hash ring).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hashring::HashRing;

use crate::model::{NodeId, PortConfig, PublishMode, ServiceId, TaskId};
use crate::wire::{MeshBackend, MeshService};

/// Points each backend has on the affinity ring: enough that clients spread evenly, few
/// enough that a table change rebuilds the ring in microseconds.
pub const RING_POINTS_PER_BACKEND: u16 = 64;

/// A point on the ring: the task and which of its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Point {
    task: TaskId,
    index: u16,
}

/// What a route holds for the table it was last given.
pub(crate) struct RouteState {
    pub service: ServiceId,
    pub service_name: String,
    pub port: PortConfig,
    pub backends: Vec<MeshBackend>,
    ring: Option<HashRing<Point>>,
}

/// The route of one published port (a protocol and a port number) on this node.
pub(crate) struct Route {
    state: RwLock<Arc<RouteState>>,
    next: AtomicUsize,
    /// Connections (TCP) or flows (UDP) open through this port now.
    pub open: AtomicUsize,
    pub refused: AtomicU64,
}

impl RouteState {
    /// The state for `port` of `service`, as seen by `me`: host-mode ports only reach this
    /// node's own tasks.
    pub fn new(service: &MeshService, port: &PortConfig, me: NodeId) -> RouteState {
        let backends: Vec<MeshBackend> = service
            .backends
            .iter()
            .filter(|b| port.mode == PublishMode::Ingress || b.node == me)
            .cloned()
            .collect();
        let ring = port.affinity.then(|| {
            let mut ring = HashRing::new();
            for b in &backends {
                for index in 0..RING_POINTS_PER_BACKEND {
                    ring.add(Point {
                        task: b.task,
                        index,
                    });
                }
            }
            ring
        });
        RouteState {
            service: service.id,
            service_name: service.name.clone(),
            port: *port,
            backends,
            ring,
        }
    }
}

impl Route {
    pub fn new(state: RouteState) -> Route {
        Route {
            state: RwLock::new(Arc::new(state)),
            next: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> Arc<RouteState> {
        self.state.read().expect("route lock").clone()
    }

    pub fn update(&self, state: RouteState) {
        *self.state.write().expect("route lock") = Arc::new(state);
    }

    /// The backends to try for a connection from `client`, best first: the choice and, for
    /// the one retry, another backend. Backends `full` says are at their bound are passed
    /// over. Round-robin moves on by one per connection; with affinity, the client's address
    /// picks a point on the ring (the same on every node: the ring's hash is keyed alike).
    pub fn pick(
        &self,
        client: IpAddr,
        full: impl Fn(TaskId) -> bool,
    ) -> (Arc<RouteState>, Vec<MeshBackend>) {
        let state = self.state();
        let usable: Vec<&MeshBackend> = state.backends.iter().filter(|b| !full(b.task)).collect();
        let mut picked: Vec<MeshBackend> = Vec::with_capacity(2);
        if usable.is_empty() {
            return (state, picked);
        }
        match &state.ring {
            Some(ring) => {
                // The client's point on the ring names its task; when that task is at its
                // bound, or for the retry, the next usable task in table order.
                let owner = ring.get(&client).map(|p| p.task);
                let at = owner
                    .and_then(|t| usable.iter().position(|b| b.task == t))
                    .unwrap_or(0);
                picked.push(usable[at].clone());
                if usable.len() > 1 {
                    picked.push(usable[(at + 1) % usable.len()].clone());
                }
            }
            None => {
                let n = usable.len();
                let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
                picked.push(usable[i].clone());
                if n > 1 {
                    picked.push(usable[(i + 1) % n].clone());
                }
            }
        }
        (state, picked)
    }
}

/// Connections open to each backend, each below a bound.
#[derive(Default)]
pub(crate) struct BackendLoad {
    open: Mutex<HashMap<TaskId, usize>>,
}

/// One connection's place in its backend's count, given back when dropped.
pub(crate) struct BackendSlot {
    load: Arc<BackendLoad>,
    task: TaskId,
}

impl BackendLoad {
    pub fn is_full(&self, task: TaskId, max: usize) -> bool {
        let open = self.open.lock().expect("backend load lock");
        open.get(&task).copied().unwrap_or(0) >= max
    }

    pub fn try_take(self: &Arc<Self>, task: TaskId, max: usize) -> Option<BackendSlot> {
        let mut open = self.open.lock().expect("backend load lock");
        let n = open.entry(task).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(BackendSlot {
            load: self.clone(),
            task,
        })
    }

    pub fn open(&self, task: TaskId) -> usize {
        let open = self.open.lock().expect("backend load lock");
        open.get(&task).copied().unwrap_or(0)
    }
}

impl Drop for BackendSlot {
    fn drop(&mut self) {
        let mut open = self.load.open.lock().expect("backend load lock");
        if let Some(n) = open.get_mut(&self.task) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.task);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PortConfig;

    fn service(tasks: &[u128], affinity: bool) -> (MeshService, PortConfig) {
        let mut port = PortConfig::tcp(8080, 80);
        port.affinity = affinity;
        let backends = tasks
            .iter()
            .map(|t| MeshBackend {
                overlay: Default::default(),
                slot: 0,
                task: TaskId(*t),
                node: NodeId(*t % 2),
                node_addr: "127.0.0.1:1".parse().unwrap(),
                addr: None,
            })
            .collect();
        let s = MeshService {
            endpoint_mode: Default::default(),
            networks: Vec::new(),
            id: ServiceId(1),
            name: "web".into(),
            ports: vec![port],
            backends,
        };
        (s, port)
    }

    fn first(route: &Route, client: &str) -> TaskId {
        route.pick(client.parse().unwrap(), |_| false).1[0].task
    }

    #[test]
    fn round_robin_visits_every_backend_in_turn_and_offers_another_for_the_retry() {
        let (s, port) = service(&[1, 2, 3], false);
        let route = Route::new(RouteState::new(&s, &port, NodeId(0)));
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (_, picked) = route.pick("10.0.0.1".parse().unwrap(), |_| false);
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0].task, picked[1].task);
            seen.push(picked[0].task.0);
        }
        assert_eq!(seen, vec![1, 2, 3, 1, 2, 3]);
        eprintln!("phase: a backend at its bound is passed over");
        let (_, picked) = route.pick("10.0.0.1".parse().unwrap(), |t| t == TaskId(1));
        assert!(picked.iter().all(|b| b.task != TaskId(1)));
    }

    #[test]
    fn host_mode_reaches_only_this_nodes_tasks() {
        let (s, mut port) = service(&[1, 2, 3, 4], false);
        port.mode = PublishMode::Host;
        let state = RouteState::new(&s, &port, NodeId(1));
        let tasks: Vec<u128> = state.backends.iter().map(|b| b.task.0).collect();
        assert_eq!(tasks, vec![1, 3]);
    }

    #[test]
    fn affinity_keeps_a_client_on_one_task_and_a_scale_up_moves_few_clients() {
        let (s, port) = service(&[1, 2, 3, 4], true);
        let route = Route::new(RouteState::new(&s, &port, NodeId(0)));
        let clients: Vec<String> = (0..200)
            .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
            .collect();
        let before: Vec<TaskId> = clients.iter().map(|c| first(&route, c)).collect();
        for (c, t) in clients.iter().zip(&before) {
            assert_eq!(
                first(&route, c),
                *t,
                "the same client goes to the same task"
            );
        }
        let used: std::collections::BTreeSet<_> = before.iter().collect();
        assert_eq!(used.len(), 4, "clients spread over every task");
        let (s5, port5) = service(&[1, 2, 3, 4, 5], true);
        route.update(RouteState::new(&s5, &port5, NodeId(0)));
        let moved = clients
            .iter()
            .zip(&before)
            .filter(|(c, t)| first(&route, c) != **t)
            .count();
        // One task in five takes its share: about 40 of 200; modulo hashing would move 160.
        assert!(
            moved < 80,
            "{moved} of 200 clients moved on a scale from 4 to 5"
        );
        let (_, picked) = route.pick("10.9.9.9".parse().unwrap(), |_| false);
        assert_eq!(picked.len(), 2);
        assert_ne!(
            picked[0].task, picked[1].task,
            "the retry goes to another task"
        );
    }

    #[test]
    fn backend_slots_count_and_give_back() {
        let load = Arc::new(BackendLoad::default());
        let a = load.try_take(TaskId(1), 2).unwrap();
        let _b = load.try_take(TaskId(1), 2).unwrap();
        assert!(load.try_take(TaskId(1), 2).is_none());
        assert!(load.is_full(TaskId(1), 2));
        drop(a);
        assert_eq!(load.open(TaskId(1)), 1);
        assert!(load.try_take(TaskId(1), 2).is_some());
    }
}
