//! The node-to-node protocol: length-prefixed bincode frames and the messages they carry.
//!
//! ```text
//! frame = u32 big-endian length of the rest | u16 big-endian protocol version | bincode body
//! ```
//!
//! A frame longer than [`FRAME_BYTES_MAX`], one that ends early, one with another protocol
//! version, or one whose body does not decode is refused with a [`WireError`]; the caller closes
//! that stream and nothing else.

pub mod answer;
mod frame;
mod mesh;
mod msg;
mod store;

pub use frame::{
    FRAME_BYTES_MAX, PROTOCOL_VERSION, WireError, decode_body, encode_frame, read_frame,
    write_frame,
};
pub use mesh::{
    MESH_ALIAS_BYTES_MAX, MESH_ALIASES_MAX, MESH_BACKENDS_MAX, MESH_NETWORKS_MAX, MESH_NODES_MAX,
    MESH_OVERLAY_ADDRS_MAX, MESH_SERVICES_MAX, MeshBackend, MeshFeed, MeshNetwork, MeshNode,
    MeshService, MeshServiceNet, MeshTable, TunnelRequest,
};
pub use msg::{
    ASSIGNMENTS_MAX, Assignment, JoinRequest, JoinResponse, LOG_REPLY_BYTES_MAX, LOG_TASKS_MAX,
    OneWay, RenewRequest, Request, Response, SESSION_HELD_MAX, SESSION_STATUSES_MAX, SessionReport,
    StoreReply, StoreRequest, TrustView, WireFailure,
};
pub use store::{RaftChunk, StoreFailure};
