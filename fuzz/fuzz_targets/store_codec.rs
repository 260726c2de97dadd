//! What the store decodes from a peer: a raft message (protobuf), the log entries it carries
//! (commands in bincode, voter changes with their member), a snapshot's state, and a command
//! as a follower forwards it to the leader, checked as the leader checks it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raft::eraftpb::{Entry, EntryType};
use swarm_actors::store::{StoreCommand, StoreState, check_command, decode_entry, decode_message};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_message(data) {
        for entry in msg.get_entries() {
            let _ = decode_entry(entry);
        }
        if msg.has_snapshot() {
            let _ = StoreState::restore(&msg.get_snapshot().data);
        }
    }
    let _ = StoreState::restore(data);
    for kind in [EntryType::EntryNormal, EntryType::EntryConfChange] {
        let mut entry = Entry::default();
        entry.set_entry_type(kind);
        entry.data = data.to_vec().into();
        let _ = decode_entry(&entry);
    }
    let config =
        bincode::config::standard().with_limit::<{ swarm_actors::wire::FRAME_BYTES_MAX }>();
    if let Ok((cmd, _)) = bincode::serde::decode_from_slice::<StoreCommand, _>(data, config) {
        let _ = check_command(&cmd);
    }
});
