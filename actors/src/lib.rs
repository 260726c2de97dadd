//! The swarm-node runtime: everything a node does, without the command line.
//!
//! # Layout
//!
//! | module | responsibility |
//! |---|---|
//! | [`agent`] | the node agent: its decisions (sessions with the leader's dispatcher, what to report, which tasks start or stop) in the sans-IO `AgentMachine`, the AgentActor that carries them out with one TaskActor per assigned task |
//! | [`model`] | identifiers, roles, node descriptions: plain data |
//! | [`wire`] | frames and the node-to-node messages |
//! | [`trust`] | the cluster CA, node certificates, join tokens, TLS configurations |
//! | [`transport`] | QUIC endpoint: one mutual-TLS connection per peer, requests, one-way messages, datagrams |
//! | [`mesh`] | the routing mesh: published ports on every node, forwarding to a task locally or through a QUIC tunnel |
//! | [`dns`] | the node's embedded DNS server (hickory-server): service names, VIPs and `tasks.<name>` from the mesh table for the networks the asking task is on, every other name forwarded to the host's resolvers |
//! | [`membership`] | SWIM membership (foca) as a sans-IO state machine, node descriptions on gossip |
//! | [`node`] | the NodeActor that owns identity, membership and the node's view of the cluster; starts, stops and supervises the leader actor as the store's progress says (`node/leadership.rs`) |
//! | [`task`] | the TaskMachine (one task's life, sans-IO) and the TaskActor that drives a runtime |
//! | [`runtime`] | how a task runs: an OS process, or a container on the Docker Engine |
//! | [`store`] | the raft-replicated cluster store (raft-rs over redb) as a sans-IO machine, and its state machine of objects |
//! | [`replica`] | the StoreActor that hosts this manager's replica of the store and carries raft traffic; its sans-IO `Router` decides where each request goes (raft here, one forward to the leader, retry while an election runs, quorum answers, expiry) |
//! | [`leader`] | the leader: lives only on the store's raft leader; `machine.rs` decides everything (sans-IO `LeaderMachine`, driven by the actor and the simulator), `plan.rs` is one pure pass (orchestrators, scheduler), `answer.rs` the session answers, `rules.rs` timings and batching, `view.rs` what `leader` and `service/<name>` show; `mod.rs` the actor shell, `msg.rs` its messages |
//! | [`registry`] | the per-node registry of named actors that the admin shell talks to |
//! | [`scheduler`] | placement as a pure function: filters (availability, runtime, constraints, resources) and spread |
//! | [`orchestrator`] | reconciliation as a pure function: replicated and global services, restart policy, task history |
//! | [`vault`] | the SecretVault: one per node (`vault/<node-id>`), the secrets and configs its tasks need in memory, each task's files on tmpfs while it runs |
//!
//! Deciding code (membership, later the store, scheduler and orchestrators) takes time and
//! randomness as arguments and returns effects, so the simulator (`sim/`) drives it unchanged.

// `deny`, not `forbid`: the process runtime needs two small, commented `unsafe` calls (a
// parent-death signal set between fork and exec, and kill(2) on a process group), each allowed
// on its own function. Everything else stays safe.
#![deny(unsafe_code)]

pub mod agent;
pub mod ask;
pub mod clock;
pub mod dns;
pub mod leader;
pub mod membership;
pub mod mesh;
pub mod model;
pub mod node;
pub mod orchestrator;
pub mod registry;
pub mod replica;
pub mod runtime;
pub mod scheduler;
pub mod store;
pub mod task;
pub mod transport;
pub mod trust;
pub mod vault;
pub mod wire;
