//! Framing: a length prefix, a protocol version, a bincode body, and a hard size limit.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version every frame carries. A peer speaking another is refused. Version 2:
/// sessions carry secrets and configs.
pub const PROTOCOL_VERSION: u16 = 5;

/// The largest frame, version and body included: a session answer (its tasks, and the secrets
/// and configs they need, each part bounded in `wire::answer`) or a `config create` of the
/// largest config. Anything larger is refused before it is read; a frame's buffer grows as
/// bytes arrive, never from the length prefix alone.
pub const FRAME_BYTES_MAX: usize = 4 << 20;

const VERSION_BYTES: usize = 2;

/// What a frame's body buffer starts at before bytes arrive: a frame's length prefix alone
/// never reserves more than this.
pub const READ_STEP_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame too short to hold a protocol version ({len} bytes)")]
    TooShort { len: usize },
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("peer speaks protocol version {got}, this node speaks {PROTOCOL_VERSION}")]
    Version { got: u16 },
    #[error("frame body does not decode: {0}")]
    Decode(String),
    #[error("message does not encode: {0}")]
    Encode(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn config() -> impl bincode::config::Config {
    // Fixed-size integers would waste bytes on gossip; varint is the default. The limit makes
    // bincode refuse length fields that claim more than a frame can hold.
    bincode::config::standard().with_limit::<FRAME_BYTES_MAX>()
}

/// Encodes `msg` as one whole frame, prefix included.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let len = out.len() - 4;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes the part of a frame after the length prefix: version and body.
pub fn decode_body<T: DeserializeOwned>(buf: &[u8]) -> Result<T, WireError> {
    if buf.len() < VERSION_BYTES {
        return Err(WireError::TooShort { len: buf.len() });
    }
    let got = u16::from_be_bytes([buf[0], buf[1]]);
    if got != PROTOCOL_VERSION {
        return Err(WireError::Version { got });
    }
    let (msg, used) = bincode::serde::decode_from_slice(&buf[VERSION_BYTES..], config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if used != buf.len() - VERSION_BYTES {
        return Err(WireError::Decode(format!(
            "{} bytes left over after the message",
            buf.len() - VERSION_BYTES - used
        )));
    }
    Ok(msg)
}

/// Reads one frame. `Ok(None)` when the stream ended cleanly before a new frame began.
pub async fn read_frame<T, R>(r: &mut R) -> Result<Option<T>, WireError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len_buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    let mut buf = Vec::new();
    read_body(r, len, &mut buf).await?;
    decode_body(&buf).map(Some)
}

/// Reads the `len` bytes of a frame's body into `buf`, growing it as bytes arrive rather than
/// allocating `len` up front: a peer that sends a length prefix of [`FRAME_BYTES_MAX`] and then
/// nothing costs [`READ_STEP_BYTES`], not a megabyte, per stream. Vec growth at most doubles,
/// so the buffer never holds more than twice what actually arrived (or one step).
async fn read_body<R>(r: &mut R, len: usize, buf: &mut Vec<u8>) -> Result<(), WireError>
where
    R: AsyncRead + Unpin,
{
    buf.reserve(len.min(READ_STEP_BYTES));
    let got = r.take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(WireError::Truncated);
    }
    Ok(())
}

/// Writes one frame.
pub async fn write_frame<T, W>(w: &mut W, msg: &T) -> Result<(), WireError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let buf = encode_frame(msg)?;
    w.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let msg = (7u32, "hello".to_string(), vec![1u8, 2, 3]);
        let buf = encode_frame(&msg).unwrap();
        let mut r = &buf[..];
        let back: (u32, String, Vec<u8>) = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(back, msg);
        let end: Option<(u32, String, Vec<u8>)> = read_frame(&mut r).await.unwrap();
        assert!(end.is_none(), "a clean end of stream reads as None");
    }

    #[tokio::test]
    async fn refuses_oversized_length_before_reading() {
        let mut buf = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(&[0u8; 16]);
        let err = read_frame::<u32, _>(&mut &buf[..]).await.unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_large_prefix_with_a_short_body_does_not_reserve_the_maximum() {
        let mut buf = (FRAME_BYTES_MAX as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(&[7u8; 100]);
        let err = read_frame::<Vec<u8>, _>(&mut &buf[..]).await.unwrap_err();
        assert!(matches!(err, WireError::Truncated), "{err}");

        // The body buffer itself, after the same 100 bytes and the end of the stream.
        let mut body = Vec::new();
        let err = read_body(&mut &[7u8; 100][..], FRAME_BYTES_MAX, &mut body)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Truncated), "{err}");
        assert_eq!(body.len(), 100);
        assert!(
            body.capacity() <= READ_STEP_BYTES,
            "a 1 MiB prefix reserved {} bytes for 100 that came",
            body.capacity()
        );
    }

    #[tokio::test]
    async fn a_body_larger_than_a_step_grows_with_what_arrives() {
        let len = READ_STEP_BYTES * 5 + 3;
        let data = vec![1u8; len];
        let mut body = Vec::new();
        read_body(&mut &data[..], len, &mut body).await.unwrap();
        assert_eq!(body, data);
        assert!(body.capacity() <= 2 * len, "{}", body.capacity());

        // Half of a large body, then the end: the buffer follows the half, not the whole.
        let mut body = Vec::new();
        let half = &data[..len / 2];
        let err = read_body(&mut &half[..], FRAME_BYTES_MAX, &mut body)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Truncated), "{err}");
        assert!(body.capacity() <= 2 * half.len(), "{}", body.capacity());
    }

    #[tokio::test]
    async fn refuses_truncated_and_garbage() {
        let good = encode_frame(&"abcdef".to_string()).unwrap();
        let cut = &good[..good.len() - 2];
        let err = read_frame::<String, _>(&mut &cut[..]).await.unwrap_err();
        assert!(matches!(err, WireError::Truncated), "{err}");

        let mut garbage = 6u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        garbage.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let err = read_frame::<String, _>(&mut &garbage[..])
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Decode(_)), "{err}");
    }

    #[tokio::test]
    async fn refuses_other_versions() {
        let mut buf = encode_frame(&1u8).unwrap();
        buf[4] = 0x7f;
        let err = read_frame::<u8, _>(&mut &buf[..]).await.unwrap_err();
        assert!(matches!(err, WireError::Version { .. }), "{err}");
    }

    #[test]
    fn refuses_to_encode_oversized() {
        let big = vec![0u8; FRAME_BYTES_MAX + 10];
        assert!(matches!(
            encode_frame(&big),
            Err(WireError::TooLarge { .. } | WireError::Encode(_))
        ));
    }
}
