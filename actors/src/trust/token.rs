//! Join tokens: `SWMTKN-1-<CA digest>-<secret>`, one for workers and one for managers.
//!
//! The digest lets a joining node pin the CA before it trusts the seed; the secret proves to
//! the CA that the operator meant this node to join, and in which role. Rotating a token
//! replaces its secret, so the old text stops working while nodes already joined are untouched.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};

use super::TrustError;
use super::digest::{CaDigest, DIGEST_CHARS, decode_base36, encode_base36};
use super::files::{self, SECRET_MODE};
use crate::model::Role;
use crate::wire::WireFailure;

/// What every token starts with: the format and its version.
pub const TOKEN_PREFIX: &str = "SWMTKN-1-";
/// Characters of a token's secret: 25 base-36 characters hold 128 random bits.
pub const TOKEN_SECRET_CHARS: usize = 25;

const TOKENS_FILE: &str = "tokens.json";

/// One join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_digest: CaDigest,
    /// [`TOKEN_SECRET_CHARS`] lowercase base-36 characters.
    pub secret: String,
}

impl JoinToken {
    /// A token with 128 fresh random bits from `rng`.
    pub fn generate(ca_digest: CaDigest, rng: &mut impl rand::Rng) -> JoinToken {
        let hi = rng.next_u64();
        let lo = rng.next_u64();
        let v = (u128::from(hi) << 64) | u128::from(lo);
        JoinToken {
            ca_digest,
            secret: encode_base36(&v.to_be_bytes(), TOKEN_SECRET_CHARS),
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}{}-{}", self.ca_digest, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out of logs.
        write!(f, "JoinToken({TOKEN_PREFIX}{}-…)", self.ca_digest)
    }
}

impl FromStr for JoinToken {
    type Err = TrustError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| TrustError::BadToken(why.to_string());
        let rest = s
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| bad("it does not start with SWMTKN-1-"))?;
        let (digest, secret) = rest
            .split_once('-')
            .ok_or_else(|| bad("expected SWMTKN-1-<digest>-<secret>"))?;
        if digest.len() != DIGEST_CHARS {
            return Err(bad("the CA digest must have 50 characters"));
        }
        let ca_digest: CaDigest = digest
            .parse()
            .map_err(|_| bad("the CA digest has characters other than 0-9 and a-z"))?;
        let mut scratch = [0u8; 16];
        if secret.len() != TOKEN_SECRET_CHARS || !decode_base36(secret, &mut scratch) {
            return Err(bad("the secret must have 25 characters from 0-9 and a-z"));
        }
        Ok(JoinToken {
            ca_digest,
            secret: secret.to_string(),
        })
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("{0}")]
    Malformed(String),
    #[error("the token's CA digest does not match this cluster's CA")]
    WrongCa,
    #[error("the token is not valid for this cluster (wrong, or rotated)")]
    BadToken,
}

impl From<TokenRefusal> for WireFailure {
    fn from(r: TokenRefusal) -> WireFailure {
        match r {
            TokenRefusal::Malformed(why) => WireFailure::Invalid(format!("malformed token: {why}")),
            TokenRefusal::WrongCa => WireFailure::WrongCa,
            TokenRefusal::BadToken => WireFailure::BadToken,
        }
    }
}

/// The cluster's two join tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub worker: JoinToken,
    pub manager: JoinToken,
}

#[derive(Serialize, Deserialize)]
struct TokensFile {
    worker: String,
    manager: String,
}

impl Tokens {
    /// The tokens as the cluster object stores them (their text forms).
    pub fn parse(worker: &str, manager: &str) -> Result<Tokens, TrustError> {
        Ok(Tokens {
            worker: worker.parse()?,
            manager: manager.parse()?,
        })
    }

    pub fn generate(ca_digest: CaDigest, rng: &mut impl rand::Rng) -> Tokens {
        Tokens {
            worker: JoinToken::generate(ca_digest, rng),
            manager: JoinToken::generate(ca_digest, rng),
        }
    }

    /// The token for `role`.
    pub fn for_role(&self, role: Role) -> &JoinToken {
        match role {
            Role::Worker => &self.worker,
            Role::Manager => &self.manager,
        }
    }

    /// Replaces the secret of `role`'s token; the old text is refused from now on.
    pub fn rotate(&mut self, role: Role, rng: &mut impl rand::Rng) {
        let slot = match role {
            Role::Worker => &mut self.worker,
            Role::Manager => &mut self.manager,
        };
        *slot = JoinToken::generate(slot.ca_digest, rng);
    }

    /// The role a presented token grants. Secrets are compared in constant time, so timing
    /// tells an attacker nothing about how much of a guess was right.
    pub fn check(&self, presented: &str) -> Result<Role, TokenRefusal> {
        let token: JoinToken = presented.parse().map_err(|e| match e {
            TrustError::BadToken(why) => TokenRefusal::Malformed(why),
            other => TokenRefusal::Malformed(other.to_string()),
        })?;
        if token.ca_digest != self.worker.ca_digest {
            return Err(TokenRefusal::WrongCa);
        }
        // Both comparisons always run, so the time does not say which role matched.
        let is_worker = secrets_equal(&token.secret, &self.worker.secret);
        let is_manager = secrets_equal(&token.secret, &self.manager.secret);
        match (bool::from(is_worker), bool::from(is_manager)) {
            (_, true) => Ok(Role::Manager),
            (true, false) => Ok(Role::Worker),
            (false, false) => Err(TokenRefusal::BadToken),
        }
    }

    /// Writes `tokens.json` (mode 0600) atomically.
    pub fn save(&self, dir: &Path) -> Result<(), TrustError> {
        let file = TokensFile {
            worker: self.worker.to_string(),
            manager: self.manager.to_string(),
        };
        // Serializing two strings cannot fail.
        let json = serde_json::to_vec_pretty(&file).expect("tokens serialize");
        files::write_atomic(dir, TOKENS_FILE, &json, SECRET_MODE)
    }

    /// Reads `tokens.json`; `Ok(None)` when absent.
    pub fn load(dir: &Path) -> Result<Option<Tokens>, TrustError> {
        let Some(data) = files::read_optional(dir, TOKENS_FILE)? else {
            return Ok(None);
        };
        let file: TokensFile =
            serde_json::from_slice(&data).map_err(|e| files::bad_file(dir, TOKENS_FILE, e))?;
        let worker: JoinToken = file
            .worker
            .parse()
            .map_err(|e| files::bad_file(dir, TOKENS_FILE, e))?;
        let manager: JoinToken = file
            .manager
            .parse()
            .map_err(|e| files::bad_file(dir, TOKENS_FILE, e))?;
        if worker.ca_digest != manager.ca_digest {
            return Err(files::bad_file(
                dir,
                TOKENS_FILE,
                "the worker and manager tokens name different CAs",
            ));
        }
        Ok(Some(Tokens { worker, manager }))
    }
}

/// Compares two secrets in constant time with `subtle`, whose comparison the optimizer is kept
/// from turning into an early exit (a hand-rolled fold carries no such guarantee). Lengths are
/// public (always [`TOKEN_SECRET_CHARS`] for a parsed token); only the contents are secret.
fn secrets_equal(a: &str, b: &str) -> Choice {
    a.as_bytes().ct_eq(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_equal_only_when_every_byte_is() {
        let secret = "0123456789abcdefghijklmno";
        assert!(bool::from(secrets_equal(secret, secret)));
        // A difference at either end, or in the middle, is caught.
        for wrong in [
            "x123456789abcdefghijklmno",
            "0123456789abcxefghijklmno",
            "0123456789abcdefghijklmnx",
        ] {
            assert!(!bool::from(secrets_equal(secret, wrong)), "{wrong}");
        }
        // A prefix, a longer text and the empty text are not equal.
        assert!(!bool::from(secrets_equal(secret, &secret[..24])));
        assert!(!bool::from(secrets_equal(secret, &format!("{secret}p"))));
        assert!(!bool::from(secrets_equal(secret, "")));
        assert!(bool::from(secrets_equal("", "")));
    }
}
