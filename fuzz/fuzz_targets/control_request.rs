//! The control socket's request decoder: a frame body as a `ControlRequest` (what
//! `serve_one` reads), the same bytes as a stream of frames, and what the node decodes further
//! from a request before acting (a `Send`'s JSON arguments, a created service's spec).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_actors::wire::decode_body;
use swarm_node_fuzz::proto::ControlRequest;
use swarm_node_fuzz::validate::validate_spec;

fuzz_target!(|data: &[u8]| {
    match decode_body::<ControlRequest>(data) {
        Ok(ControlRequest::Send { args, .. }) => {
            let _ = serde_json::from_str::<serde_json::Value>(&args);
        }
        Ok(ControlRequest::ServiceCreate { spec, .. }) => {
            let _ = validate_spec(&spec);
        }
        _ => {}
    }
    swarm_node_fuzz::read_frames::<ControlRequest>(data);
    // A `Send`'s arguments are whatever text the user typed.
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
