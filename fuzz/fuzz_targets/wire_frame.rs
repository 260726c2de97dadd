//! Transport frames: the body of a frame (protocol version, then bincode) as each message type
//! a node reads from a peer, and the same bytes as a stream of length-prefixed frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_actors::wire::{OneWay, Request, Response, decode_body};

fuzz_target!(|data: &[u8]| {
    // Every outcome is fine but a panic, an abort or a runaway allocation.
    let _ = decode_body::<Request>(data);
    let _ = decode_body::<Response>(data);
    let _ = decode_body::<OneWay>(data);
    swarm_node_fuzz::read_frames::<Request>(data);
});
