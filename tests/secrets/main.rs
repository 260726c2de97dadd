//! Secrets and configs end to end: real `swarm-node` processes on loopback, created, used,
//! rotated and removed through the CLI as a user would, and looked for everywhere they must
//! not be (data dirs, logs, container filesystems).
//!
//! Ports 27101–27999.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod delivery;
