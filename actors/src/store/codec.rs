//! Bytes in and out of the store: raft messages (raft-rs's protobuf), commands and voter
//! changes inside log entries (bincode), and what a committed entry means.
//!
//! Decoding never panics: garbage from a peer or a damaged record is a [`StoreError`].

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message, MessageType};

use super::StoreError;
use super::state::{Member, StoreCommand, StoreState};

/// Most bytes of one encoded command (one log entry): room for a config at its bound
/// (`model::CONFIG_BYTES_MAX`, under 1000 KiB) and the object around it. Raft messages travel
/// in chunks (`replica::chunks`), so an entry need not fit one transport frame.
pub const COMMAND_BYTES_MAX: usize = 1536 * 1024;
/// Most bytes of one raft message accepted from a peer (a snapshot travels as one message).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<COMMAND_BYTES_MAX>()
}

pub fn encode_message(msg: &Message) -> Result<Vec<u8>, StoreError> {
    msg.write_to_bytes()
        .map_err(|e| StoreError::Codec(e.to_string()))
}

pub fn decode_message(bytes: &[u8]) -> Result<Message, StoreError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(StoreError::Codec(format!(
            "raft message of {} bytes is over {MESSAGE_BYTES_MAX}",
            bytes.len()
        )));
    }
    Message::parse_from_bytes(bytes).map_err(|e| StoreError::Codec(e.to_string()))
}

/// Whether a peer's raft message may go to raft as far as a snapshot goes: one carrying a
/// snapshot (`MsgSnapshot`) must hold data that restores into a store state (bounded by
/// `SNAPSHOT_BYTES_MAX`), so garbage or an oversized state is dropped before raft, the log or
/// the state sees it. The state is decoded again when raft hands the snapshot back; snapshots
/// are rare, and this keeps raft from ever holding one that cannot be installed.
pub fn snapshot_restores(msg: &Message) -> bool {
    msg.get_msg_type() != MessageType::MsgSnapshot
        || StoreState::restore(&msg.get_snapshot().data).is_ok()
}

pub fn encode_command(cmd: &StoreCommand) -> Result<Vec<u8>, StoreError> {
    let bytes =
        bincode::serde::encode_to_vec(cmd, config()).map_err(|e| StoreError::CommandTooLarge {
            detail: e.to_string(),
            max: COMMAND_BYTES_MAX,
        })?;
    Ok(bytes)
}

pub fn decode_command(bytes: &[u8]) -> Result<StoreCommand, StoreError> {
    let (cmd, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    if used != bytes.len() {
        return Err(StoreError::Codec("bytes left over after a command".into()));
    }
    Ok(cmd)
}

pub fn encode_member(m: &Member) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(m, config()).map_err(|e| StoreError::Codec(e.to_string()))
}

pub fn decode_member(bytes: &[u8]) -> Result<Member, StoreError> {
    let (m, _): (Member, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(m)
}

/// What a committed log entry means to the store.
#[derive(Debug)]
pub enum Decoded {
    /// A new leader's empty entry (or a dropped proposal raft replaced with one).
    Empty,
    Command(StoreCommand),
    /// A voter change; `member` is set for additions (from the change's context).
    Voters {
        change: ConfChange,
        member: Option<Member>,
    },
}

pub fn decode_entry(entry: &Entry) -> Result<Decoded, StoreError> {
    match entry.get_entry_type() {
        EntryType::EntryNormal if entry.data.is_empty() => Ok(Decoded::Empty),
        EntryType::EntryNormal => decode_command(&entry.data).map(Decoded::Command),
        EntryType::EntryConfChange => {
            let change = ConfChange::parse_from_bytes(&entry.data)
                .map_err(|e| StoreError::Codec(e.to_string()))?;
            let member = match change.get_change_type() {
                ConfChangeType::AddNode if !change.context.is_empty() => {
                    Some(decode_member(&change.context)?)
                }
                _ => None,
            };
            Ok(Decoded::Voters { change, member })
        }
        EntryType::EntryConfChangeV2 => Err(StoreError::Codec(
            "joint-consensus changes are not used by this store".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &[0xffu8; 9][..],
            &[0x0a, 0xff, 0xff, 0xff, 0x0f][..],
            &[8, 200],
        ] {
            // Whatever protobuf makes of it, it must not panic; most of these are errors.
            let _ = decode_message(junk);
            assert!(decode_command(junk).is_err());
        }
        assert!(decode_message(&[0x0a, 0xff, 0xff, 0xff, 0x0f]).is_err());
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.data = vec![0xff, 0xff].into();
        assert!(decode_entry(&e).is_err());
    }

    #[test]
    fn only_a_snapshot_that_restores_goes_to_raft() {
        use raft::eraftpb::Snapshot;
        let with_data = |data: Vec<u8>| {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgSnapshot);
            let mut snap = Snapshot::default();
            snap.data = data.into();
            m.set_snapshot(snap);
            m
        };
        let state = StoreState::new().snapshot().unwrap();
        assert!(snapshot_restores(&with_data(state)));
        assert!(!snapshot_restores(&with_data(vec![0xff; 9])));
        let mut claim = vec![1u8, 0, 253];
        claim.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(!snapshot_restores(&with_data(claim)));
        // Other messages carry no snapshot to check.
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        assert!(snapshot_restores(&append));
    }
}
