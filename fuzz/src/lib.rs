//! What the fuzz targets share: the control API's pure modules (the binary crate has no
//! library, so they are compiled here from their own files), the setup of a membership machine,
//! and the way one input is cut into several messages.
//!
//! Each target in `fuzz_targets/` feeds one decoder of bytes that come from the network or a
//! user; `scripts/fuzz` builds and runs them, docs/decisions.md says why it runs this way.

/// The control socket's requests, as the node compiles them (`src/control/proto.rs`).
#[allow(dead_code)]
#[path = "../../src/control/proto.rs"]
pub mod proto;
/// The service spec checks the control API runs (`src/control/validate.rs`).
#[allow(dead_code)]
#[path = "../../src/control/validate.rs"]
pub mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use swarm_actors::membership::{
    MemberId, Membership, MembershipConfig, MembershipEffect, MembershipInput,
};
use swarm_actors::model::{NodeDescription, NodeId, NodeResources, Role};

/// Cuts `data` into pieces, each a little-endian u16 length then that many bytes (the last one
/// takes what is left), so that one input can be a sequence of messages.
pub fn pieces(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        if data.len() < 2 {
            let piece = data;
            data = &[];
            return Some(piece);
        }
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        data = tail;
        Some(piece)
    })
}

/// The inverse of [`pieces`], for the seed generator.
pub fn join_pieces(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let len = u16::try_from(p.len()).expect("a seed piece fits a u16 length");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

pub fn member_addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 2377))
}

pub fn member_id(i: u8, bump: u32) -> MemberId {
    MemberId::new(NodeId(1000 + u128::from(i)), member_addr(i), bump)
}

pub fn description(i: u8) -> NodeDescription {
    NodeDescription {
        id: NodeId(1000 + u128::from(i)),
        hostname: format!("node-{i}"),
        addr: member_addr(i),
        role: if i == 1 { Role::Manager } else { Role::Worker },
        resources: NodeResources {
            nano_cpus: 2_000_000_000,
            memory_bytes: 1 << 30,
        },
        labels: BTreeMap::new(),
        runtimes: vec!["process".into()],
        engine_version: "0.1.0".into(),
        version: 1,
    }
}

/// A started machine for node 1 with the LAN config, announced to node 2, fixed seed.
pub fn membership() -> Membership {
    let mut m = Membership::new(member_id(1, 0), description(1), MembershipConfig::lan(), 7)
        .expect("the fuzz machine's config and description are valid");
    let mut out = Vec::new();
    m.handle(MembershipInput::Start, &mut out);
    m.handle(MembershipInput::Announce(member_addr(2)), &mut out);
    m
}

/// Hands one datagram to the machine, as the NodeActor does when one arrives. The one place
/// that builds the input, so that a change to it (the sender's identity) is one line here.
/// The sender, as the transport proved it, varies with the datagram's length: one of three
/// nodes, as a worker or a manager, so the vetting of every path is reached.
pub fn deliver(m: &mut Membership, data: &[u8], out: &mut Vec<MembershipEffect>) {
    let from = swarm_actors::membership::Sender {
        id: NodeId(1000 + (data.len() % 3) as u128),
        role: if data.len().is_multiple_of(2) {
            Role::Manager
        } else {
            Role::Worker
        },
    };
    let data = Bytes::copy_from_slice(data);
    m.handle(MembershipInput::Datagram { from, data }, out);
}

/// Reads frames of `T` one after another from `data` as an in-memory stream, the way a
/// connection's reader does, until the end, an error, or `FRAMES_MAX` frames.
pub fn read_frames<T: serde::de::DeserializeOwned>(mut data: &[u8]) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    const FRAMES_MAX: usize = 64;
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..FRAMES_MAX {
        let mut read = std::pin::pin!(swarm_actors::wire::read_frame::<T, _>(&mut data));
        match read.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(Some(_))) => {}
            Poll::Ready(Ok(None) | Err(_)) => return,
            Poll::Pending => panic!("an in-memory reader never waits"),
        }
    }
}

/// A valid spec, as `service create web sleep 1000` makes it.
pub fn spec_template() -> swarm_actors::model::ServiceSpec {
    use swarm_actors::model::{
        Placement, Resources, RestartPolicy, RuntimeKind, ServiceMode, ServiceSpec, TaskSpec,
        UpdateConfig,
    };
    ServiceSpec {
        name: "web".into(),
        labels: BTreeMap::new(),
        mode: ServiceMode::Replicated { replicas: 1 },
        task: TaskSpec {
            runtime: RuntimeKind::Process,
            image: "sleep".into(),
            args: vec!["1000".into()],
            env: vec![],
            health: None,
            resources: Resources::default(),
            restart: RestartPolicy::default(),
            placement: Placement::default(),
            stop_grace_period_ms: 10_000,
            ..TaskSpec::default()
        },
        update: UpdateConfig::default(),
        rollback: UpdateConfig::default(),
        ports: vec![],
        endpoint_mode: Default::default(),
        depends_on: Vec::new(),
    }
}
