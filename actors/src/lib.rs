//! The swarm-node runtime: everything a node does, without the command line.
//!
//! # Layout
//!
//! | module | responsibility |
//! |---|---|
//! | [`model`] | identifiers, roles, node descriptions: plain data |
//! | [`wire`] | frames and the node-to-node messages |
//! | [`trust`] | the cluster CA, node certificates, join tokens, TLS configurations |
//! | [`transport`] | QUIC endpoint: one mutual-TLS connection per peer, requests, one-way messages, datagrams |
//! | [`membership`] | SWIM membership (foca) as a sans-IO state machine, node descriptions on gossip |
//! | [`store`] | the managers' Raft-replicated cluster store (raft-rs) and its state machine, sans-IO |
//! | [`node`] | the NodeActor that owns identity, membership and the node's view of the cluster |
//! | [`registry`] | the per-node registry of named actors that the admin shell talks to |
//!
//! Deciding code (membership, later the store, scheduler and orchestrators) takes time and
//! randomness as arguments and returns effects, so the simulator (`sim/`) drives it unchanged.

#![forbid(unsafe_code)]

pub mod membership;
pub mod model;
pub mod node;
pub mod registry;
pub mod store;
pub mod transport;
pub mod trust;
pub mod wire;
