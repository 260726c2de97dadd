//! The control API: how `swarm-node` client commands talk to a running node.
//!
//! A Unix socket (`<data-dir>/control.sock` by default), one request frame and one response
//! frame per connection, framed like the node-to-node protocol (`swarm_actors::wire`). Only the
//! local user who can open the socket can use it; the socket is made mode 0600.

mod cas;
pub mod client;
mod context;
mod logs;
mod network;
mod nodes;
pub mod ports;
pub mod proto;
mod reads;
mod secret;
pub mod server;
mod service;
pub mod validate;
mod vips;
pub mod volumes;
