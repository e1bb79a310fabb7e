//! Refresh tokens that name their family: `trt.<grant>.<generation>.<secret>`.
//!
//! A grant has one refresh family, and the grant's own record holds where it stands: the
//! generation whose token is current, that token's digest, and the previous generation's
//! digest while its successor is kept for the grace window. So rotating costs no record per
//! token: the store's size depends on grants, not on how often they are refreshed.
//!
//! The secret is 256 random bits followed by a 128-bit MAC (a key of the encryption key
//! ring) over the grant, the generation and those bits. Using a token needs its digest to
//! match the current one in the store; the MAC only proves that an older generation's token
//! was issued by Tether, so that presenting it again is reuse (RFC 9700 §4.14.2) and revokes
//! the grant, while a made-up token naming someone's grant (the grant id is in every access
//! token) is simply invalid and revokes nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::seal::KeyRing;
use crate::crypto::{hash, random};

const PREFIX: &str = "trt";
const RANDOM_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Grant ids are generated (32 hex digits); anything longer is not one of ours.
const MAX_GRANT_LEN: usize = 64;

/// A presented refresh token of the family form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyToken<'a> {
    pub grant_id: &'a str,
    pub generation: u64,
    random: [u8; RANDOM_LEN],
    tag: [u8; TAG_LEN],
}

/// A new token for `generation` of `grant_id`'s family, and the digest it is known by.
pub fn issue(keys: &KeyRing, grant_id: &str, generation: u64) -> (String, String) {
    let random = random::bytes::<RANDOM_LEN>();
    let mut secret = random.to_vec();
    let (_, tag) = keys.mac(&mac_input(grant_id, generation, &random));
    secret.extend_from_slice(tag.get(..TAG_LEN).unwrap_or_default());
    let token = format!("{PREFIX}.{grant_id}.{generation}.{}", URL_SAFE_NO_PAD.encode(secret));
    let digest = hash::digest(&token);
    (token, digest)
}

/// The family form of `token`, or `None` for anything else (a token of the first form, which
/// is 43 characters of base64url, or garbage).
pub fn parse(token: &str) -> Option<FamilyToken<'_>> {
    let mut parts = token.split('.');
    let (prefix, grant_id, generation, secret) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if prefix != PREFIX || parts.next().is_some() {
        return None;
    }
    let grant_ok = !grant_id.is_empty()
        && grant_id.len() <= MAX_GRANT_LEN
        && grant_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    // Digits only and no leading zero: `u64::from_str` would also take `+7` and `07`, which
    // would give one generation several spellings.
    let generation_ok = !generation.is_empty()
        && generation.len() <= 20
        && generation.bytes().all(|b| b.is_ascii_digit())
        && (generation == "0" || !generation.starts_with('0'));
    if !grant_ok || !generation_ok {
        return None;
    }
    let secret = URL_SAFE_NO_PAD.decode(secret).ok()?;
    if secret.len() != RANDOM_LEN + TAG_LEN {
        return None;
    }
    let (random, tag) = secret.split_at(RANDOM_LEN);
    Some(FamilyToken {
        grant_id,
        generation: generation.parse().ok()?,
        random: random.try_into().ok()?,
        tag: tag.try_into().ok()?,
    })
}

impl FamilyToken<'_> {
    /// Whether Tether issued this token: its MAC verifies under a key of the ring (constant
    /// time). Says nothing about whether the token is still current.
    pub fn is_genuine(&self, keys: &KeyRing) -> bool {
        keys.verify_mac_prefix(&mac_input(self.grant_id, self.generation, &self.random), &self.tag)
    }
}

fn mac_input(grant_id: &str, generation: u64, random: &[u8]) -> Vec<u8> {
    // Length-prefixed parts after a label of their own: no other MAC of the key ring (the
    // signed cookies) covers an input of this shape.
    let mut input = b"tether/refresh-token/v2".to_vec();
    for part in [grant_id.as_bytes(), &generation.to_be_bytes(), random] {
        input.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        input.extend_from_slice(part);
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: &str) -> KeyRing {
        KeyRing::parse(&KeyRing::generate_spec(id)).unwrap()
    }

    #[test]
    fn an_issued_token_parses_back_to_its_grant_and_generation_and_is_genuine() {
        let keys = ring("k1");
        let (token, digest) = issue(&keys, "0123456789abcdef0123456789abcdef", 41);
        assert!(token.starts_with("trt.0123456789abcdef0123456789abcdef.41."), "{token}");
        assert_eq!(digest, hash::digest(&token));
        let parsed = parse(&token).unwrap();
        assert_eq!((parsed.grant_id, parsed.generation), ("0123456789abcdef0123456789abcdef", 41));
        assert!(parsed.is_genuine(&keys));
        assert!(!crate::oauth::tokens::looks_like_jwt(&token), "revocation tells the two forms apart");
        let (again, _) = issue(&keys, "0123456789abcdef0123456789abcdef", 41);
        assert_ne!(token, again, "the same generation twice is still two tokens");
    }

    #[test]
    fn a_token_altered_anywhere_or_made_under_another_key_is_not_genuine() {
        let keys = ring("k1");
        let (token, _) = issue(&keys, "g1", 3);
        let (_, rest) = token.split_once(".g1.3.").unwrap();
        for forged in [
            format!("trt.g2.3.{rest}"),
            format!("trt.g1.2.{rest}"),
            format!("trt.g1.4.{rest}"),
            format!("trt.g1.3.{}", URL_SAFE_NO_PAD.encode([7u8; RANDOM_LEN + TAG_LEN])),
        ] {
            assert!(!parse(&forged).unwrap().is_genuine(&keys), "{forged}");
        }
        assert!(!parse(&token).unwrap().is_genuine(&ring("k1")), "another ring's key of the same id");
    }

    #[test]
    fn a_token_made_under_a_key_still_in_the_ring_stays_genuine_after_the_ring_rotates() {
        let old = KeyRing::generate_spec("old");
        let (token, _) = issue(&KeyRing::parse(&old).unwrap(), "g1", 0);
        let rotated = KeyRing::parse(&format!("{},{old}", KeyRing::generate_spec("new"))).unwrap();
        assert!(parse(&token).unwrap().is_genuine(&rotated));
    }

    #[test]
    fn other_shapes_are_not_family_tokens() {
        let keys = ring("k1");
        let (token, _) = issue(&keys, "g1", 3);
        let secret = token.rsplit('.').next().unwrap();
        for other in [
            random::token(),
            String::new(),
            "trt".into(),
            format!("trt.g1.3.{secret}.x"),
            format!("xrt.g1.3.{secret}"),
            format!("trt..3.{secret}"),
            format!("trt.g{{1}}.3.{secret}"),
            format!("trt.{}.3.{secret}", "g".repeat(65)),
            format!("trt.g1.+3.{secret}"),
            format!("trt.g1.03.{secret}"),
            format!("trt.g1.00.{secret}"),
            format!("trt.g1.-3.{secret}"),
            format!("trt.g1.99999999999999999999.{secret}"),
            format!("trt.g1.3.{}", &secret[1..]),
            format!("trt.g1.3.{secret}="),
        ] {
            assert_eq!(parse(&other), None, "{other}");
        }
    }
}
