//! Autolock end to end: managers whose store key is sealed under an unlock key, restarted
//! locked, refused a wrong key, unlocked with the right one, and rotated.
//!
//! Ports 28101–28999.

// Tests and benches run real processes in real time: they are shells, so clocks and sleeps
// are theirs to use (clippy.toml refuses them to the deciding code).
#![allow(clippy::disallowed_methods)]
#[path = "../common/mod.rs"]
mod common;
mod helpers;
mod one;
mod three;
