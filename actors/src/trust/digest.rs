//! The CA digest: the SHA-256 of the cluster CA certificate, as join tokens carry it.

use std::fmt;
use std::str::FromStr;

use super::TrustError;

/// Characters in a rendered [`CaDigest`]: 36^50 > 2^256, so every digest fits.
pub const DIGEST_CHARS: usize = 50;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// SHA-256 of the CA certificate's DER. A joining node pins the CA with it before it trusts
/// anything the seed says, as Docker's `SWMTKN-1-<digest>-<secret>` does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaDigest(pub [u8; 32]);

impl CaDigest {
    /// The digest of a CA certificate given as DER.
    pub fn of_cert(cert_der: &[u8]) -> CaDigest {
        let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        CaDigest(out)
    }
}

impl fmt::Display for CaDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_base36(&self.0, DIGEST_CHARS))
    }
}

impl fmt::Debug for CaDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaDigest({self})")
    }
}

impl FromStr for CaDigest {
    type Err = TrustError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        if s.len() != DIGEST_CHARS || !decode_base36(s, &mut out) {
            return Err(TrustError::BadDigest(s.to_string()));
        }
        Ok(CaDigest(out))
    }
}

/// Renders a big-endian number as exactly `width` lowercase base-36 digits, zero-padded.
/// Panics if the number needs more digits: callers choose `width` so that it never does.
pub(crate) fn encode_base36(bytes: &[u8], width: usize) -> String {
    let mut num = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        // Long division of the whole number by 36, most significant byte first.
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        *slot = ALPHABET[rem as usize];
    }
    assert!(
        num.iter().all(|&b| b == 0),
        "{width} base-36 digits cannot hold {} bytes",
        bytes.len()
    );
    // The alphabet is ASCII.
    String::from_utf8(digits).expect("ascii")
}

/// Parses lowercase base-36 text into a big-endian number of `out.len()` bytes. False when a
/// character is outside 0-9a-z or the value does not fit.
pub(crate) fn decode_base36(s: &str, out: &mut [u8]) -> bool {
    out.fill(0);
    for c in s.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return false,
        };
        // out = out * 36 + d, least significant byte last.
        let mut carry = u32::from(d);
        for b in out.iter_mut().rev() {
            let cur = u32::from(*b) * 36 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_text() {
        for d in [
            [0u8; 32],
            [0xff; 32],
            CaDigest::of_cert(b"some certificate").0,
        ] {
            let digest = CaDigest(d);
            let s = digest.to_string();
            assert_eq!(s.len(), DIGEST_CHARS);
            assert!(
                s.bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            );
            assert_eq!(s.parse::<CaDigest>().unwrap(), digest);
        }
    }

    #[test]
    fn digest_refuses_bad_text() {
        assert!("abc".parse::<CaDigest>().is_err());
        assert!("A".repeat(DIGEST_CHARS).parse::<CaDigest>().is_err());
        // 36^50 - 1 is larger than 2^256 - 1.
        assert!("z".repeat(DIGEST_CHARS).parse::<CaDigest>().is_err());
    }

    #[test]
    fn base36_matches_small_numbers() {
        assert_eq!(encode_base36(&[0, 36], 3), "010");
        let mut out = [0u8; 2];
        assert!(decode_base36("010", &mut out));
        assert_eq!(out, [0, 36]);
    }
}
