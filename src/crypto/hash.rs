//! Hashes under which codes, tokens and secrets are stored, and constant-time comparison.
//!
//! Every value hashed here is either 256 random bits or a secret an operator chose; a plain
//! SHA-256 is enough for the former and the store never sees the latter raw.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of `value`, base64url: the key under which a code or token is stored.
pub fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Whether `presented` hashes to `expected_digest`, compared in constant time.
pub fn matches_digest(presented: &str, expected_digest: &str) -> bool {
    constant_time_eq(digest(presented).as_bytes(), expected_digest.as_bytes())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// S256 code challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    digest(verifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_the_rfc_7636_appendix_b_example() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn digests_compare_only_when_equal() {
        let d = digest("secret");
        assert!(matches_digest("secret", &d));
        assert!(!matches_digest("secreT", &d));
        assert!(!constant_time_eq(b"a", b"ab"));
    }
}
