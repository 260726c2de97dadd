//! The leader's lifecycle under supervision: a panic in the leader actor is logged and the
//! leader starts again for the same term. Drives [`Leadership`] from a small supervisor actor
//! (the node actor does the same in `handle_supervisor_evt`) over a real one-node store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::*;
use crate::model::Role;
use crate::registry::Registry;
use crate::transport::TransportConfig;
use crate::trust::{ClusterCa, NodeCredentials, NodeKey, install_crypto_provider};

/// What the test sees of the supervisor: the leader actor it holds, and the restarts.
type Seen = Arc<Mutex<(Option<ActorRef<LeaderMsg>>, u64)>>;

struct Supervisor;

struct SupervisorState {
    leadership: Leadership,
    store: StoreHandle,
    transport: Transport,
    registry: Registry,
    seen: Seen,
}

impl Actor for Supervisor {
    type Msg = NodeMsg;
    type State = SupervisorState;
    type Arguments = (StoreHandle, Transport, Registry, Seen);

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        (store, transport, registry, seen): Self::Arguments,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut leadership = Leadership::default();
        leadership.watch(Some(&store), &myself);
        Ok(SupervisorState {
            leadership,
            store,
            transport,
            registry,
            seen,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let NodeMsg::StoreProgress(p) = msg {
            let ctx = LeaderContext {
                store: &state.store,
                me: NodeId(1),
                members: Vec::new(),
                transport: &state.transport,
                registry: &state.registry,
                rng_seed: 7,
            };
            state
                .leadership
                .follow(p, Some(ctx), myself.get_cell())
                .await;
            state.seen.lock().unwrap().0 = state.leadership.actor().cloned();
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state.leadership.supervise(&event, &state.registry, &myself);
        *state.seen.lock().unwrap() =
            (state.leadership.actor().cloned(), state.leadership.restarts);
        Ok(())
    }
}

#[allow(clippy::disallowed_methods)] // certificates are issued at wall-clock time
fn credentials() -> NodeCredentials {
    install_crypto_provider();
    let ca = ClusterCa::generate(SystemTime::now()).unwrap();
    let key = NodeKey::generate().unwrap();
    let day = Duration::from_secs(24 * 3600);
    let cert = ca
        .issue(
            &key.csr_der().unwrap(),
            NodeId(1),
            Role::Manager,
            SystemTime::now(),
            day,
        )
        .unwrap();
    NodeCredentials::from_parts(key, cert, ca.cert_der().to_vec()).unwrap()
}

/// Waits up to 20 s for `f` to hold.
#[allow(clippy::disallowed_methods)] // a test waits in real time for real actors
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // a test waits in real time for real actors
async fn a_panicking_leader_is_restarted_for_the_same_term() {
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials();
    let listen = "127.0.0.1:0".parse().unwrap();
    let (transport, _inbound) = Transport::bind(TransportConfig::new(listen), &creds)
        .await
        .unwrap();
    let registry = Registry::new();
    let (store, _join) = crate::replica::spawn_store(crate::replica::StoreArgs {
        data_dir: dir.path().to_path_buf(),
        raft_id: 1,
        node_id: NodeId(1),
        bootstrap: crate::store::Bootstrap::NewCluster {
            node_id: NodeId(1),
            addr: transport.local_addr(),
        },
        config: crate::store::StoreConfig::default(),
        transport: transport.clone(),
        rng_seed: 7,
        registry: Some(registry.clone()),
        managers: crate::trust::ManagerSet::default(),
    })
    .await
    .unwrap();
    let seen: Seen = Arc::default();
    let args = (store.clone(), transport, registry.clone(), seen.clone());
    let (_sup, _) = Actor::spawn(None, Supervisor, args).await.unwrap();

    tracing::info!("phase 1: the one-node store leads, so a leader actor starts");
    until("a leader actor", || seen.lock().unwrap().0.is_some()).await;
    let first = seen.lock().unwrap().0.clone().unwrap();
    let term = store.progress().borrow().term;
    until("the leader registered", || {
        registry.get(LEADER_NAME_FOR_TEST).is_ok()
    })
    .await;

    tracing::info!("phase 2: a panic in the leader is logged and a new one starts, same term");
    first.send_message(LeaderMsg::PanicForTest).unwrap();
    until("a second leader actor", || {
        let s = seen.lock().unwrap();
        s.1 == 1 && s.0.as_ref().is_some_and(|a| a.get_id() != first.get_id())
    })
    .await;
    let second = seen.lock().unwrap().0.clone().unwrap();
    let view = ractor::call_t!(second, LeaderMsg::Describe, 5_000).unwrap();
    assert_eq!(view.term, term, "restarted for the same term");
    until("the new leader registered", || {
        registry.get(LEADER_NAME_FOR_TEST).is_ok()
    })
    .await;
}

const LEADER_NAME_FOR_TEST: &str = crate::leader::LEADER_NAME;
