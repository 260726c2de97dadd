//! Raft messages cut to fit transport frames, and put back together.
//!
//! Most raft messages are small; a snapshot can be tens of megabytes, far over the transport's
//! frame limit. A message is sent as numbered chunks of at most [`CHUNK_BYTES`]; the receiver
//! reassembles them, keeping at most [`ASSEMBLIES_MAX`] partial messages and at most
//! [`MESSAGE_BYTES_MAX`] bytes for one message. Chunks may arrive in any order (each one-way
//! message travels on its own stream); a partial message older than the newest few is dropped
//! and raft asks again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bytes of one chunk: well under the transport's 1 MiB frame.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Largest reassembled message (a snapshot).
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// Partial messages kept at once.
pub const ASSEMBLIES_MAX: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftChunk {
    /// The sender's raft ID.
    pub from: u64,
    /// Numbers the sender's messages, so chunks of different messages do not mix.
    pub message: u64,
    pub index: u32,
    pub total: u32,
    pub bytes: Vec<u8>,
}

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
}

struct Partial {
    total: u32,
    parts: BTreeMap<u32, Vec<u8>>,
    bytes: usize,
}

/// Reassembles messages from chunks.
#[derive(Default)]
pub struct Assembler {
    partial: BTreeMap<(u64, u64), Partial>,
}

impl Assembler {
    /// Takes one chunk; returns the whole message when this chunk completes it.
    pub fn take(&mut self, chunk: RaftChunk) -> Result<Option<Vec<u8>>, ChunkError> {
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
        let key = (chunk.from, chunk.message);
        if !self.partial.contains_key(&key) && self.partial.len() >= ASSEMBLIES_MAX {
            // Drop the oldest partial message of any sender; raft retries what matters.
            let oldest = *self.partial.keys().next().expect("not empty");
            self.partial.remove(&oldest);
        }
        let p = self.partial.entry(key).or_insert_with(|| Partial {
            total: chunk.total,
            parts: BTreeMap::new(),
            bytes: 0,
        });
        if p.total != chunk.total {
            self.partial.remove(&key);
            return Err(ChunkError::Inconsistent);
        }
        p.bytes += chunk.bytes.len();
        p.parts.insert(chunk.index, chunk.bytes);
        if p.parts.len() as u32 == p.total {
            let p = self.partial.remove(&key).expect("present");
            let mut out = Vec::with_capacity(p.bytes);
            for (_, b) in p.parts {
                out.extend_from_slice(&b);
            }
            return Ok(Some(out));
        }
        Ok(None)
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
        assert_eq!(a.take(chunks[0].clone()).unwrap(), None);
        assert_eq!(a.take(chunks[1].clone()).unwrap(), None);
        assert_eq!(a.take(chunks[2].clone()).unwrap(), Some(msg));
        let small = split(7, 2, b"hi");
        assert_eq!(a.take(small[0].clone()).unwrap(), Some(b"hi".to_vec()));
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
        assert!(a.take(bad).is_err());
        let huge = RaftChunk {
            from: 1,
            message: 1,
            index: 0,
            total: u32::MAX,
            bytes: vec![],
        };
        assert!(matches!(a.take(huge), Err(ChunkError::TooLarge(_))));
        for m in 0..(ASSEMBLIES_MAX as u64 + 5) {
            let c = RaftChunk {
                from: 1,
                message: m,
                index: 0,
                total: 2,
                bytes: vec![1],
            };
            assert_eq!(a.take(c).unwrap(), None);
        }
        assert_eq!(a.partial.len(), ASSEMBLIES_MAX);
    }
}
