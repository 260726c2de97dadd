//! Raft messages cut to fit transport frames, and put back together.
//!
//! Most raft messages are small; a snapshot can be tens of megabytes, far over the transport's
//! frame limit. A message is sent as numbered chunks of at most [`CHUNK_BYTES`]; the receiver
//! reassembles them per sender (the node the transport proved sent them), keeping at most
//! [`ASSEMBLIES_PER_SENDER`] partial messages for each of at most [`SENDERS_MAX`] senders and at
//! most [`MESSAGE_BYTES_MAX`] bytes for one message, so one peer's chunks can never push out
//! another's snapshot. Chunks may arrive in any order (each one-way message travels on its own
//! stream); a sender's partial message older than its newest few is dropped and raft asks again.

use std::collections::BTreeMap;

use crate::model::NodeId;

/// Bytes of one chunk: well under the transport's 1 MiB frame.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Largest reassembled message (a snapshot).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// Partial messages kept at once for one sender.
pub const ASSEMBLIES_PER_SENDER: usize = 4;
/// Senders with partial messages at once: the voters (at most 7) and managers catching up. Only
/// current voters' certificates get this far (see `StoreActor`), so this is never reached in a
/// healthy cluster; a chunk from one more sender is refused rather than evicting anyone.
pub const SENDERS_MAX: usize = 16;

pub use crate::wire::RaftChunk;

/// Cuts one encoded message into chunks.
pub fn split(from: u64, message: u64, bytes: &[u8]) -> Vec<RaftChunk> {
    let parts: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(CHUNK_BYTES).collect()
    };
    let total = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, b)| RaftChunk {
            from,
            message,
            index: i as u32,
            total,
            bytes: b.to_vec(),
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk {index} of {total} is out of range")]
    OutOfRange { index: u32, total: u32 },
    #[error("message of {0} chunks is over the {MESSAGE_BYTES_MAX}-byte limit")]
    TooLarge(u32),
    #[error("chunk disagrees with earlier chunks of the same message")]
    Inconsistent,
    #[error("partial messages of {SENDERS_MAX} senders are held already")]
    TooManySenders,
}

struct Partial {
    total: u32,
    parts: BTreeMap<u32, Vec<u8>>,
    bytes: usize,
}

/// Reassembles messages from chunks.
#[derive(Default)]
pub struct Assembler {
    /// Partial messages by sender, then by the sender's message number.
    partial: BTreeMap<NodeId, BTreeMap<u64, Partial>>,
}

impl Assembler {
    /// Takes one chunk that `sender` (as the transport proved it) sent; returns the whole
    /// message when this chunk completes it.
    pub fn take(
        &mut self,
        sender: NodeId,
        chunk: RaftChunk,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if chunk.total == 0 || chunk.index >= chunk.total {
            return Err(ChunkError::OutOfRange {
                index: chunk.index,
                total: chunk.total,
            });
        }
        if chunk.total as usize > MESSAGE_BYTES_MAX.div_ceil(CHUNK_BYTES)
            || chunk.bytes.len() > CHUNK_BYTES
        {
            return Err(ChunkError::TooLarge(chunk.total));
        }
        if chunk.total == 1 {
            return Ok(Some(chunk.bytes));
        }
        if !self.partial.contains_key(&sender) && self.partial.len() >= SENDERS_MAX {
            return Err(ChunkError::TooManySenders);
        }
        let mine = self.partial.entry(sender).or_default();
        let key = chunk.message;
        if !mine.contains_key(&key) && mine.len() >= ASSEMBLIES_PER_SENDER {
            // Drop this sender's oldest partial message; raft retries what matters.
            mine.pop_first();
        }
        let p = mine.entry(key).or_insert_with(|| Partial {
            total: chunk.total,
            parts: BTreeMap::new(),
            bytes: 0,
        });
        if p.total != chunk.total {
            mine.remove(&key);
            self.forget_if_idle(sender);
            return Err(ChunkError::Inconsistent);
        }
        p.bytes += chunk.bytes.len();
        p.parts.insert(chunk.index, chunk.bytes);
        if p.parts.len() as u32 == p.total {
            let p = mine.remove(&key).expect("present");
            self.forget_if_idle(sender);
            let mut out = Vec::with_capacity(p.bytes);
            for (_, b) in p.parts {
                out.extend_from_slice(&b);
            }
            return Ok(Some(out));
        }
        Ok(None)
    }

    /// Drops a sender that has no partial message left, so the map holds active senders only.
    fn forget_if_idle(&mut self, sender: NodeId) {
        if self.partial.get(&sender).is_some_and(BTreeMap::is_empty) {
            self.partial.remove(&sender);
        }
    }

    /// Partial messages held, all senders together.
    pub fn partials(&self) -> usize {
        self.partial.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble_in_any_order() {
        let msg: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut chunks = split(7, 1, &msg);
        assert_eq!(chunks.len(), 3);
        chunks.reverse();
        let mut a = Assembler::default();
        let n = NodeId(7);
        assert_eq!(a.take(n, chunks[0].clone()).unwrap(), None);
        assert_eq!(a.take(n, chunks[1].clone()).unwrap(), None);
        assert_eq!(a.take(n, chunks[2].clone()).unwrap(), Some(msg));
        let small = split(7, 2, b"hi");
        assert_eq!(a.take(n, small[0].clone()).unwrap(), Some(b"hi".to_vec()));
        assert_eq!(a.partials(), 0);
    }

    #[test]
    fn refuses_bad_chunks_and_bounds_partials() {
        let mut a = Assembler::default();
        let bad = RaftChunk {
            from: 1,
            message: 1,
            index: 3,
            total: 2,
            bytes: vec![],
        };
        assert!(a.take(NodeId(1), bad).is_err());
        let huge = RaftChunk {
            from: 1,
            message: 1,
            index: 0,
            total: u32::MAX,
            bytes: vec![],
        };
        assert!(matches!(
            a.take(NodeId(1), huge),
            Err(ChunkError::TooLarge(_))
        ));
        for m in 0..(ASSEMBLIES_PER_SENDER as u64 + 5) {
            assert_eq!(a.take(NodeId(1), half(m)).unwrap(), None);
        }
        assert_eq!(a.partials(), ASSEMBLIES_PER_SENDER);
    }

    fn half(message: u64) -> RaftChunk {
        RaftChunk {
            from: 1,
            message,
            index: 0,
            total: 2,
            bytes: vec![1],
        }
    }

    /// One peer sending chunks of many messages cannot push out another's partial snapshot,
    /// and senders beyond the bound are refused instead of evicting anyone.
    #[test]
    fn one_sender_cannot_starve_another() {
        let mut a = Assembler::default();
        let (victim, flooder) = (NodeId(1), NodeId(2));
        assert_eq!(a.take(victim, half(0)).unwrap(), None);
        for m in 0..1_000 {
            assert_eq!(a.take(flooder, half(m)).unwrap(), None);
        }
        let mut rest = half(0);
        rest.index = 1;
        assert_eq!(
            a.take(victim, rest).unwrap(),
            Some(vec![1, 1]),
            "the victim's message completes"
        );
        for n in 10..(10 + SENDERS_MAX as u128 - 1) {
            assert_eq!(a.take(NodeId(n), half(0)).unwrap(), None);
        }
        assert_eq!(a.take(NodeId(99), half(0)), Err(ChunkError::TooManySenders));
    }
}
