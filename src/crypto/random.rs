//! Unguessable values: codes, tokens, ids, states.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

/// 256 random bits as base64url without padding (43 characters, all RFC 3986 unreserved).
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<32>())
}

/// 128 random bits as base64url, for identifiers that are not secrets (client ids).
pub fn id() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<16>())
}

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_distinct_and_url_safe() {
        let (a, b) = (super::token(), super::token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
