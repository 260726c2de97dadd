//! A simulated node: its membership machine, whether it runs, and what survives a restart.
//!
//! A crashed node loses its machine and everything queued for it; what it keeps is what a real
//! node keeps in its data dir: its node ID, its boot counter and its description's version. A
//! paused node (SIGSTOP) keeps everything, but its inputs wait, up to [`HELD_DATAGRAMS_MAX`]
//! datagrams like a socket buffer, until it resumes.

use std::net::{Ipv4Addr, SocketAddr};

use swarm_actors::membership::{MembershipInput, MembershipTimer};
use swarm_actors::model::{NodeDescription, NodeId, NodeResources, Role};

use crate::clock::Millis;
use crate::trace::TraceKind;

/// Datagrams a paused node's socket buffer holds; later ones are lost.
pub const HELD_DATAGRAMS_MAX: usize = 512;
/// The port every simulated node listens on.
pub const PORT: u16 = 2377;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Alive,
    Paused,
    Crashed,
}

pub struct SimNode {
    pub machine: Option<swarm_actors::membership::Membership>,
    pub status: Status,
    /// Persisted across restarts, like the data dir's boot counter.
    pub boot: u32,
    /// Grows at every crash, so that timers set before it are dropped.
    pub epoch: u64,
    /// Persisted description version: a restarted node describes itself with a higher one.
    pub description_version: u64,
    /// Timer rate: 1.0 normally, off by up to a quarter under the skew fault.
    pub timer_rate: f64,
    /// Crashed and not coming back (the liveness phase does not restart it).
    pub gone_for_good: bool,
    pub held: Vec<(Millis, MembershipInput)>,
    pub held_datagrams: usize,
}

impl SimNode {
    pub fn new() -> Self {
        SimNode {
            machine: None,
            status: Status::Crashed,
            boot: 0,
            epoch: 0,
            description_version: 0,
            timer_rate: 1.0,
            gone_for_good: false,
            held: Vec::new(),
            held_datagrams: 0,
        }
    }

    /// Holds an input while paused; returns false when the buffer is full and it is lost.
    pub fn hold(&mut self, at: Millis, input: MembershipInput) -> bool {
        let is_datagram = matches!(input, MembershipInput::Datagram { .. });
        if is_datagram {
            if self.held_datagrams >= HELD_DATAGRAMS_MAX {
                return false;
            }
            self.held_datagrams += 1;
        }
        self.held.push((at, input));
        true
    }

    pub fn take_held(&mut self) -> Vec<(Millis, MembershipInput)> {
        self.held_datagrams = 0;
        std::mem::take(&mut self.held)
    }

    /// How long a timer asked for `after_ms` really takes on this node's skewed clock.
    pub fn skewed(&self, after_ms: Millis) -> Millis {
        (after_ms as f64 * self.timer_rate).round() as Millis
    }

    pub fn is_alive(&self) -> bool {
        self.status != Status::Crashed
    }
}

impl Default for SimNode {
    fn default() -> Self {
        Self::new()
    }
}

/// Node `i`'s ID: never zero, which is the placeholder.
pub fn node_id(i: usize) -> NodeId {
    NodeId(i as u128 + 1)
}

pub fn index_of(id: NodeId) -> Option<usize> {
    usize::try_from(id.0).ok()?.checked_sub(1)
}

/// Node `i`'s address: 10.a.b.c, so that the index comes back without a lookup table.
pub fn addr(i: usize) -> SocketAddr {
    let i = u32::try_from(i).expect("node index fits in 24 bits");
    assert!(i < 1 << 24, "node index fits in 24 bits");
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, a, b, c), PORT))
}

pub fn index_of_addr(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let [ten, a, b, c] = v4.ip().octets();
            (ten == 10).then(|| u32::from_be_bytes([0, a, b, c]) as usize)
        }
        _ => None,
    }
}

/// Node `i`'s role: managers are the first `managers` nodes.
pub fn role(i: usize, managers: usize) -> Role {
    if i < managers {
        Role::Manager
    } else {
        Role::Worker
    }
}

/// Node `i`'s description at `version`: managers are the first `managers` nodes; every node
/// has the process runtime and an engine label `zone` (`z0`, `z1`, `z2` in turn).
pub fn description(i: usize, managers: usize, version: u64) -> NodeDescription {
    NodeDescription {
        id: node_id(i),
        hostname: format!("sim-{i}"),
        addr: addr(i),
        role: role(i, managers),
        resources: NodeResources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        labels: [("zone".to_string(), format!("z{}", i % 3))].into(),
        runtimes: vec!["process".into()],
        engine_version: "sim".into(),
        version,
    }
}

/// The kind byte of an input in the trace.
pub fn trace_kind(input: &MembershipInput) -> TraceKind {
    match input {
        MembershipInput::Start => TraceKind::Start,
        MembershipInput::Datagram { .. } => TraceKind::Datagram,
        MembershipInput::Timer(MembershipTimer::Foca(_)) => TraceKind::FocaTimer,
        MembershipInput::Timer(MembershipTimer::Rebroadcast) => TraceKind::RebroadcastTimer,
        MembershipInput::Timer(MembershipTimer::Reannounce) => TraceKind::ReannounceTimer,
        MembershipInput::Timer(MembershipTimer::Gossip) => TraceKind::GossipTimer,
        MembershipInput::Announce(_) => TraceKind::Announce,
        MembershipInput::Describe(_) => TraceKind::Describe,
        MembershipInput::Leave => TraceKind::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ids_map_back() {
        for i in [0, 1, 255, 256, 999, 70_000] {
            assert_eq!(index_of_addr(addr(i)), Some(i));
            assert_eq!(index_of(node_id(i)), Some(i));
        }
        assert_eq!(index_of(NodeId::UNKNOWN), None);
    }
}
