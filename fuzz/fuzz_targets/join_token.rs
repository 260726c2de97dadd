//! Join tokens and CA digests as an operator types them or a joining node presents them: parse,
//! check against a cluster's tokens, and print back what parsed.
#![no_main]

use std::str::FromStr;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use swarm_actors::trust::{CaDigest, JoinToken, Tokens};

static TOKENS: LazyLock<Tokens> = LazyLock::new(|| {
    let digest = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcd";
    Tokens {
        worker: format!("SWMTKN-1-{digest}-0123456789abcdefghijklmno")
            .parse()
            .expect("a well-formed worker token"),
        manager: format!("SWMTKN-1-{digest}-1zyxwvutsrqponmlkjihgfedc")
            .parse()
            .expect("a well-formed manager token"),
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = JoinToken::from_str(text) {
        // What parsed prints back to text that parses to the same token.
        let again: JoinToken = token.to_string().parse().expect("a printed token parses");
        assert!(again == token, "a token changed through print and parse");
    }
    if let Ok(digest) = CaDigest::from_str(text) {
        let again: CaDigest = digest.to_string().parse().expect("a printed digest parses");
        assert_eq!(again, digest);
    }
    let _ = TOKENS.check(text);
});
