//! Raft chunks: one-way frame bodies decoded as `OneWay`, the `Raft` ones fed in order to one
//! `Assembler`, and every message they complete decoded as a raft message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_actors::replica::chunks::{Assembler, ChunkError, RaftChunk};
use swarm_actors::store::decode_message;
use swarm_actors::wire::{OneWay, decode_body};
use swarm_node_fuzz::pieces;

/// Hands one chunk to the assembler, as the StoreActor does, from one of a few senders (the
/// chunk's claimed raft ID picks which), so the per-sender bounds are reached.
fn take(a: &mut Assembler, chunk: RaftChunk) -> Result<Option<Vec<u8>>, ChunkError> {
    let sender = swarm_actors::model::NodeId(u128::from(chunk.from % 24));
    a.take(sender, chunk)
}

fuzz_target!(|data: &[u8]| {
    let mut a = Assembler::default();
    for body in pieces(data) {
        let Ok(OneWay::Raft(chunk)) = decode_body::<OneWay>(body) else {
            continue;
        };
        if let Ok(Some(message)) = take(&mut a, chunk) {
            let _ = decode_message(&message);
        }
    }
});
