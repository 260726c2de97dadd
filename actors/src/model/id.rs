//! Identifiers: 128 random bits shown as 25 lowercase base-36 characters, like Docker's.
//!
//! Binary formats carry the 128 bits; human-readable ones (JSON) the 25-character text, since JSON
//! numbers cannot hold 128 bits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Characters in a rendered identifier: 36^25 > 2^128, so every ID fits.
pub const NODE_ID_CHARS: usize = 25;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdParseError {
    #[error("an ID has {NODE_ID_CHARS} characters from 0-9 and a-z, got {0:?}")]
    Malformed(String),
}

/// Text form, serde and parsing shared by every 128-bit identifier.
macro_rules! impl_id {
    ($name:ident) => {
        impl $name {
            /// The placeholder for something whose ID is not known yet (a seed address before
            /// the first handshake). Never assigned.
            pub const UNKNOWN: $name = $name(0);

            /// The first 12 characters, as list commands show IDs.
            pub fn short(&self) -> String {
                let mut s = self.to_string();
                s.truncate(12);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&render(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_u128(self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    u128::deserialize(d).map($name)
                }
            }
        }
    };
}

/// A node's identity in the cluster. Assigned by the certificate authority when the node joins and
/// carried in the subject of its certificate, so a peer's ID is proven by its TLS handshake.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u128);
impl_id!(NodeId);

/// A service's identity, assigned by the manager that creates it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId(pub u128);
impl_id!(ServiceId);

/// A task's identity, assigned by the orchestrator that creates it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u128);
impl_id!(TaskId);

/// A secret's or config's identity, assigned by the manager that creates it. A secret removed
/// and created again under the same name gets a new one, so a node never mistakes the new data
/// for what it holds of the old.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretId(pub u128);
impl_id!(SecretId);

/// An overlay network's identity, assigned by the manager that creates it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkId(pub u128);
impl_id!(NetworkId);

fn render(mut v: u128) -> String {
    let mut buf = [b'0'; NODE_ID_CHARS];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET[(v % 36) as usize];
        v /= 36;
    }
    // The alphabet is ASCII.
    String::from_utf8(buf.to_vec()).expect("ascii")
}

fn parse(s: &str) -> Result<u128, IdParseError> {
    if s.len() != NODE_ID_CHARS {
        return Err(IdParseError::Malformed(s.to_string()));
    }
    let mut v: u128 = 0;
    for c in s.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return Err(IdParseError::Malformed(s.to_string())),
        };
        v = v
            .checked_mul(36)
            .and_then(|v| v.checked_add(u128::from(d)))
            .ok_or_else(|| IdParseError::Malformed(s.to_string()))?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for v in [1u128, 36, u128::MAX, 0xdead_beef_u128 << 64] {
            let id = NodeId(v);
            let s = id.to_string();
            assert_eq!(s.len(), NODE_ID_CHARS);
            assert_eq!(s.parse::<NodeId>().unwrap(), id);
        }
    }

    #[test]
    fn serializes_as_text_in_json_and_bits_in_bincode() {
        let id = NodeId(u128::MAX - 7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        let cfg = bincode::config::standard();
        let bin = bincode::serde::encode_to_vec(id, cfg).unwrap();
        let (back, _): (NodeId, usize) = bincode::serde::decode_from_slice(&bin, cfg).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<NodeId>("\"nope\"").is_err());
    }

    #[test]
    fn refuses_bad_text() {
        assert!("short".parse::<NodeId>().is_err());
        assert!("ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<NodeId>().is_err());
        // 36^25 - 1 does not fit in 128 bits.
        assert!("zzzzzzzzzzzzzzzzzzzzzzzzz".parse::<NodeId>().is_err());
    }
}
