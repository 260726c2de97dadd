//! foca's wire format in bincode 2: [`BincodeCodec`] encodes a packet's header and its member
//! updates.
//!
//! foca 2 ships only a postcard codec, and its types implement serde only behind a feature
//! this workspace does not enable, so the header and member are copied into serde twins here
//! (`WireHeader`, `WireMember`). Decoding refuses anything malformed or longer than
//! [`CODEC_BYTES_MAX`] with a [`CodecError`]; it never panics.

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};
use serde::{Deserialize, Serialize};

use super::MemberId;

/// Most bytes bincode will allocate for one decoded item: far above any packet, so only a lying
/// length field hits it.
pub const CODEC_BYTES_MAX: usize = 64 * 1024;

pub(crate) fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<CODEC_BYTES_MAX>()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("does not encode: {0}")]
    Encode(String),
    #[error("does not decode: {0}")]
    Decode(String),
    #[error("no room in the packet: {needed} bytes needed, {left} left")]
    BufferFull { needed: usize, left: usize },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

#[derive(Serialize, Deserialize)]
enum WireMessage {
    Ping(u8),
    Ack(u8),
    PingReq { target: MemberId, probe_number: u8 },
    IndirectPing { origin: MemberId, probe_number: u8 },
    IndirectAck { target: MemberId, probe_number: u8 },
    ForwardedAck { origin: MemberId, probe_number: u8 },
    Announce,
    Feed,
    Gossip,
    Broadcast,
    TurnUndead,
}

#[derive(Serialize, Deserialize)]
struct WireHeader {
    src: MemberId,
    src_incarnation: u16,
    dst: MemberId,
    message: WireMessage,
}

#[derive(Serialize, Deserialize)]
enum WireState {
    Alive,
    Suspect,
    Down,
}

#[derive(Serialize, Deserialize)]
struct WireMember {
    id: MemberId,
    incarnation: u16,
    state: WireState,
}

impl From<&Message<MemberId>> for WireMessage {
    fn from(m: &Message<MemberId>) -> Self {
        match m {
            Message::Ping(n) => WireMessage::Ping(*n),
            Message::Ack(n) => WireMessage::Ack(*n),
            Message::PingReq {
                target,
                probe_number,
            } => WireMessage::PingReq {
                target: target.clone(),
                probe_number: *probe_number,
            },
            Message::IndirectPing {
                origin,
                probe_number,
            } => WireMessage::IndirectPing {
                origin: origin.clone(),
                probe_number: *probe_number,
            },
            Message::IndirectAck {
                target,
                probe_number,
            } => WireMessage::IndirectAck {
                target: target.clone(),
                probe_number: *probe_number,
            },
            Message::ForwardedAck {
                origin,
                probe_number,
            } => WireMessage::ForwardedAck {
                origin: origin.clone(),
                probe_number: *probe_number,
            },
            Message::Announce => WireMessage::Announce,
            Message::Feed => WireMessage::Feed,
            Message::Gossip => WireMessage::Gossip,
            Message::Broadcast => WireMessage::Broadcast,
            Message::TurnUndead => WireMessage::TurnUndead,
        }
    }
}

impl From<WireMessage> for Message<MemberId> {
    fn from(m: WireMessage) -> Self {
        match m {
            WireMessage::Ping(n) => Message::Ping(n),
            WireMessage::Ack(n) => Message::Ack(n),
            WireMessage::PingReq {
                target,
                probe_number,
            } => Message::PingReq {
                target,
                probe_number,
            },
            WireMessage::IndirectPing {
                origin,
                probe_number,
            } => Message::IndirectPing {
                origin,
                probe_number,
            },
            WireMessage::IndirectAck {
                target,
                probe_number,
            } => Message::IndirectAck {
                target,
                probe_number,
            },
            WireMessage::ForwardedAck {
                origin,
                probe_number,
            } => Message::ForwardedAck {
                origin,
                probe_number,
            },
            WireMessage::Announce => Message::Announce,
            WireMessage::Feed => Message::Feed,
            WireMessage::Gossip => Message::Gossip,
            WireMessage::Broadcast => Message::Broadcast,
            WireMessage::TurnUndead => Message::TurnUndead,
        }
    }
}

/// Encodes `value` and appends it only if it fits whole: foca requires that a failed encode
/// leaves the buffer as it was.
fn put<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if buf.remaining_mut() < bytes.len() {
        return Err(CodecError::BufferFull {
            needed: bytes.len(),
            left: buf.remaining_mut(),
        });
    }
    buf.put_slice(&bytes);
    Ok(())
}

/// Decodes one item from the front of `buf` and advances past it. foca hands codecs a
/// contiguous buffer, so its first chunk is all of it.
fn take<T: for<'de> Deserialize<'de>>(mut buf: impl Buf) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(buf.chunk(), bincode_config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    buf.advance(used);
    Ok(value)
}

impl foca::Codec<MemberId> for BincodeCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let wire = WireHeader {
            src: header.src.clone(),
            src_incarnation: header.src_incarnation,
            dst: header.dst.clone(),
            message: WireMessage::from(&header.message),
        };
        put(&wire, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, CodecError> {
        let wire: WireHeader = take(buf)?;
        Ok(Header {
            src: wire.src,
            src_incarnation: wire.src_incarnation,
            dst: wire.dst,
            message: wire.message.into(),
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        let wire = WireMember {
            id: member.id().clone(),
            incarnation: member.incarnation(),
            state: match member.state() {
                State::Alive => WireState::Alive,
                State::Suspect => WireState::Suspect,
                State::Down => WireState::Down,
            },
        };
        put(&wire, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, CodecError> {
        let wire: WireMember = take(buf)?;
        let state = match wire.state {
            WireState::Alive => State::Alive,
            WireState::Suspect => State::Suspect,
            WireState::Down => State::Down,
        };
        Ok(Member::new(wire.id, wire.incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeId;
    use foca::Codec;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn id(n: u128) -> MemberId {
        MemberId::new(NodeId(n), format!("10.0.0.{n}:2377").parse().unwrap(), 2)
    }

    fn all_messages() -> Vec<Message<MemberId>> {
        vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: id(3),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: id(4),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: id(5),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: id(6),
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    #[test]
    fn headers_and_members_round_trip() {
        let mut codec = BincodeCodec;
        for message in all_messages() {
            let header = Header {
                src: id(1),
                src_incarnation: 9,
                dst: MemberId::seed("10.0.0.2:2377".parse().unwrap()),
                message,
            };
            let mut buf = Vec::new();
            codec.encode_header(&header, &mut buf).unwrap();
            let member = Member::new(id(7), 3, State::Suspect);
            codec.encode_member(&member, &mut buf).unwrap();
            let mut slice = &buf[..];
            assert_eq!(codec.decode_header(&mut slice).unwrap(), header);
            assert_eq!(codec.decode_member(&mut slice).unwrap(), member);
            assert!(slice.is_empty(), "decoding consumed everything");
        }
    }

    #[test]
    fn encode_into_a_full_buffer_leaves_it_clean() {
        let mut codec = BincodeCodec;
        let mut backing = Vec::new();
        let mut limited = (&mut backing).limit(5);
        let err = codec
            .encode_member(&Member::alive(id(1)), &mut limited)
            .unwrap_err();
        assert!(matches!(err, CodecError::BufferFull { .. }));
        assert!(backing.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut codec = BincodeCodec;
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for len in 0..200usize {
            let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Either outcome is fine; what matters is that neither panics.
            let _ = codec.decode_header(&mut &junk[..]);
            let _ = codec.decode_member(&mut &junk[..]);
        }
        assert!(codec.decode_header(&mut &[][..]).is_err());
        // A length field claiming a huge string is refused by the limit.
        assert!(codec.decode_member(&mut &[0xff; 12][..]).is_err());
        // A truncated valid header is refused.
        let mut buf = Vec::new();
        let header = Header {
            src: id(1),
            src_incarnation: 0,
            dst: id(2),
            message: Message::Ping(0),
        };
        codec.encode_header(&header, &mut buf).unwrap();
        buf.truncate(buf.len() - 1);
        assert!(codec.decode_header(&mut &buf[..]).is_err());
    }
}
