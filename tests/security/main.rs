//! Security tests: a peer that holds a real certificate but lies, a peer with no certificate,
//! a removed node and a local user, each playing one attack against real `swarm-node`
//! processes on loopback. Every test says in its first log line which attack it plays, and
//! checks that the attack changes nothing. Ports 25001-25999 are this binary's.
//!
//! The threat model these tests prove is written up in docs/security.md.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;

mod ca;
mod lies;
mod local;
mod peer;
mod transport;
