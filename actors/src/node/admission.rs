//! Store-backed duties a manager carries out off the NodeActor's thread: admitting a joining
//! node, renewing a certificate, reading and rotating the join tokens. Each reads the cluster's
//! CA and tokens from the local store replica and writes through raft.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::authority::Authority;
use crate::model::{Availability, NodeId, Role};
use crate::replica::{StoreFailure, StoreHandle};
use crate::store::{
    ClusterObject, Expect, Kind, NodeObject, NodeSpec, ObjectBody, Op, StoreCommand, StoredObject,
};
use crate::trust::{PeerIdentity, Tokens, TrustError};
use crate::wire::{JoinRequest, JoinResponse, Response, WireFailure};

pub use crate::store::CLUSTER_ID;

pub use crate::clock::unix_ms as now_ms;

fn store_err(f: StoreFailure) -> WireFailure {
    WireFailure::Invalid(f.to_string())
}

/// The cluster object and its version, from the local replica.
pub async fn cluster(store: &StoreHandle) -> Result<(ClusterObject, u64), StoreFailure> {
    let read = store.read(Kind::Cluster, false).await?;
    read.objects
        .into_iter()
        .find_map(|o| match o.body {
            ObjectBody::Cluster(c) if o.id == CLUSTER_ID => Some((c, o.version)),
            _ => None,
        })
        .ok_or_else(|| StoreFailure::Refused("the store holds no cluster object yet".into()))
}

/// Every node object, from the local replica or confirmed with the leader.
pub async fn nodes(
    store: &StoreHandle,
    linearizable: bool,
) -> Result<(Vec<(NodeObject, StoredObject)>, bool), StoreFailure> {
    let read = store.read(Kind::Node, linearizable).await?;
    let stale = read.stale;
    let nodes = read
        .objects
        .into_iter()
        .filter_map(|o| match &o.body {
            ObjectBody::Node(n) => Some((n.clone(), o)),
            _ => None,
        })
        .collect();
    Ok((nodes, stale))
}

/// The join tokens a cluster object holds.
pub fn tokens_of(obj: &ClusterObject) -> Result<Tokens, TrustError> {
    Tokens::parse(&obj.worker_token, &obj.manager_token)
}

/// The first check of a join, before anything costs more than a comparison: the token
/// against this replica's tokens in memory (see [`StoreHandle::join_tokens`]). A refusal here
/// is final, and the peer made the node read nothing and parse no key.
pub fn check_token(tokens: Option<&Tokens>, presented: &str) -> Result<Role, WireFailure> {
    let tokens = tokens.ok_or_else(|| {
        WireFailure::Invalid("the store holds no cluster object yet: try again".into())
    })?;
    tokens.check(presented).map_err(WireFailure::from)
}

pub async fn authority(store: &StoreHandle, validity: Duration) -> Result<Authority, WireFailure> {
    let (obj, _) = cluster(store).await.map_err(store_err)?;
    Authority::from_cluster(&obj, validity).map_err(|e| WireFailure::Invalid(e.to_string()))
}

/// Admits a joining node: checks the token, names the node, records it in the store (and makes
/// a manager a voter), and answers with its certificate.
pub async fn admit(
    store: StoreHandle,
    req: JoinRequest,
    peers: Vec<SocketAddr>,
    validity: Duration,
) -> Response {
    match try_admit(&store, &req, peers, validity).await {
        Ok(joined) => Response::Joined(joined),
        Err(f) => Response::Failed(f),
    }
}

async fn try_admit(
    store: &StoreHandle,
    req: &JoinRequest,
    peers: Vec<SocketAddr>,
    validity: Duration,
) -> Result<JoinResponse, WireFailure> {
    check_token(store.join_tokens().as_ref(), &req.token)?;
    // The token is good: now the CA key is worth reading. `auth.admit` checks the token again
    // against the object it read, which is the same or newer.
    let auth = authority(store, validity).await?;
    let node_id = loop {
        let id = NodeId(rand::random());
        if id != NodeId::UNKNOWN {
            break id;
        }
    };
    #[allow(clippy::disallowed_methods)] // a certificate is issued at the real time
    let (role, cert_der) = auth.admit(req, node_id, SystemTime::now())?;
    let raft_id = (role == Role::Manager).then(|| rand::random::<u64>().max(1));
    let node = NodeObject {
        id: node_id,
        spec: NodeSpec {
            role,
            availability: Availability::Active,
            labels: Default::default(),
        },
        description: None,
        raft_id,
        addr: req.addr,
    };
    let cmd = StoreCommand {
        now_ms: now_ms(),
        ops: vec![Op::Put {
            kind: Kind::Node,
            id: node_id.to_string(),
            expect: Expect::Absent,
            body: ObjectBody::Node(node),
        }],
    };
    store.propose(cmd).await.map_err(store_err)?;
    if let Some(raft_id) = raft_id {
        store
            .add_voter(raft_id, node_id, req.addr)
            .await
            .map_err(store_err)?;
    }
    Ok(JoinResponse {
        node_id,
        role,
        cert_der,
        ca_cert_der: auth.ca_cert_der().to_vec(),
        peers,
        raft_id,
    })
}

/// Renews a peer's certificate in the role the store gives it now. During a root rotation the
/// certificate comes from the new root, and the store counts the peer as renewed in the
/// rotation's phase before the answer goes out (so a node told it is done is done).
pub async fn renew(
    store: StoreHandle,
    peer: PeerIdentity,
    csr_der: Vec<u8>,
    validity: Duration,
) -> Response {
    let result = async {
        let auth = authority(&store, validity).await?;
        let (nodes, _) = nodes(&store, false).await.map_err(store_err)?;
        let role = nodes
            .iter()
            .find(|(n, _)| n.id == peer.node_id)
            .map(|(n, _)| n.spec.role)
            .ok_or_else(|| {
                WireFailure::Invalid(format!("node {} is not in the cluster", peer.node_id))
            })?;
        #[allow(clippy::disallowed_methods)] // a certificate is issued at the real time
        let issued = auth.renew(peer.node_id, role, &csr_der, SystemTime::now())?;
        if auth.rotation().is_some() {
            super::rotation::record_renewal(&store, peer.node_id)
                .await
                .map_err(store_err)?;
        }
        Ok(issued)
    }
    .await;
    match result {
        Ok((cert_der, intermediates)) => Response::Renewed {
            cert_der,
            intermediates,
        },
        Err(f) => Response::Failed(f),
    }
}

/// Replaces one role's join token through raft (compare-and-set on the cluster object).
pub async fn rotate(
    store: &StoreHandle,
    role: Role,
    validity: Duration,
) -> Result<(), StoreFailure> {
    let (obj, version) = cluster(store).await?;
    let auth = Authority::from_cluster(&obj, validity)
        .map_err(|e| StoreFailure::Refused(e.to_string()))?;
    #[allow(clippy::disallowed_methods)] // a join token's secret must be unpredictable
    let rotated = auth.rotated(role, &mut rand::rng());
    store
        .propose(put_cluster(rotated, version))
        .await
        .map(|_| ())
}

/// The write that replaces the cluster object, if it is still at `version`.
pub fn put_cluster(obj: ClusterObject, version: u64) -> StoreCommand {
    StoreCommand {
        now_ms: now_ms(),
        ops: vec![Op::Put {
            kind: Kind::Cluster,
            id: CLUSTER_ID.to_string(),
            expect: Expect::Version(version),
            body: ObjectBody::Cluster(obj),
        }],
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::trust::CaDigest;

    #[test]
    fn the_token_is_checked_from_memory_before_anything_else() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut tokens = Tokens::generate(CaDigest([3; 32]), &mut rng);
        let worker = tokens.worker.to_string();
        let manager = tokens.manager.to_string();
        assert_eq!(check_token(Some(&tokens), &worker), Ok(Role::Worker));
        assert_eq!(check_token(Some(&tokens), &manager), Ok(Role::Manager));
        assert!(matches!(
            check_token(Some(&tokens), "SWMTKN-1-garbage"),
            Err(WireFailure::Invalid(_))
        ));
        let other_ca = Tokens::generate(CaDigest([4; 32]), &mut rng);
        assert_eq!(
            check_token(Some(&tokens), &other_ca.worker.to_string()),
            Err(WireFailure::WrongCa)
        );
        assert!(
            matches!(check_token(None, &worker), Err(WireFailure::Invalid(_))),
            "no cluster object yet: the joiner may try again"
        );

        // A rotation replaces the copy: the old text is refused at once.
        tokens.rotate(Role::Worker, &mut rng);
        assert_eq!(
            check_token(Some(&tokens), &worker),
            Err(WireFailure::BadToken)
        );
        assert_eq!(
            check_token(Some(&tokens), &tokens.worker.to_string()),
            Ok(Role::Worker)
        );
    }

    #[test]
    fn a_cluster_objects_tokens_parse_or_say_why() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let tokens = Tokens::generate(CaDigest([5; 32]), &mut rng);
        let mut obj = ClusterObject {
            ca_cert_der: vec![],
            ca_key_pem: String::new(),
            worker_token: tokens.worker.to_string(),
            manager_token: tokens.manager.to_string(),
            rotation: None,
            unlock_key: None,
        };
        assert_eq!(tokens_of(&obj).unwrap(), tokens);
        obj.manager_token = "nonsense".into();
        assert!(tokens_of(&obj).is_err());
    }
}
