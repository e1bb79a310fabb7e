//! Sealing upstream tokens at rest: AES-256-GCM with a key ring.
//!
//! Blob layout: `version (1) | key id length (1) | key id | nonce (12) | ciphertext + tag`.
//! The first key of the ring seals; every key opens, so keys rotate without re-encrypting
//! everything at once. The associated data binds a blob to the record it belongs to: a
//! ciphertext copied into another record does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::{KeySpecError, random, spec_items};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key `{0}`, which is not in the key ring")]
    UnknownKey(String),
    #[error("sealed value does not authenticate (wrong key, wrong record or tampered)")]
    Inauthentic,
    #[error("value too large to seal")]
    TooLarge,
}

/// The encryption keys: the first seals, all open. Each key also yields a separate MAC key
/// (for signed cookies), derived so that the two uses never share key material.
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
    macs: Vec<(String, aws_lc_rs::hmac::Key)>,
    /// Keys marked `+`: they open, nothing is sealed under them yet.
    published: Vec<String>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    /// Parses `id:base64key[,id:base64key...]` (standard or URL-safe base64, 32 bytes each).
    pub fn parse(spec: &str) -> Result<Self, KeySpecError> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        let mut macs = Vec::new();
        let mut published = Vec::new();
        for item in spec_items(spec)? {
            let id = item.id;
            let bytes = decode_key(&item.material).ok_or_else(|| bad_key(&id))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| bad_key(&id))?;
            // MAC key = HMAC-SHA256(key, label): a PRF output, independent of the AES key use.
            let root = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes);
            let derived = aws_lc_rs::hmac::sign(&root, b"tether/mac-key/v1");
            macs.push((id.clone(), aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref())));
            if item.published {
                published.push(id.clone());
            }
            keys.push((id, cipher));
        }
        Ok(Self { keys, macs, published })
    }

    /// Whether a blob sealed under `key_id` should move to the active key when read: it is
    /// sealed under another key that is not merely published (a replica that has not yet
    /// activated a key must not undo the work of one that has).
    pub fn is_retiring(&self, key_id: &str) -> bool {
        key_id != self.active_key_id() && !self.published.iter().any(|p| p == key_id)
    }

    /// A fresh key in the form [`KeyRing::parse`] reads.
    pub fn generate_spec(id: &str) -> String {
        format!("{id}:{}", STANDARD.encode(random::bytes::<32>()))
    }

    pub fn active_key_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        // `parse` refuses an empty ring, so there is always an active key.
        let (id, cipher) = self.keys.first().ok_or(SealError::UnknownKey(String::new()))?;
        // A random 96-bit nonce per message: with at most billions of seals per key the
        // collision probability stays far below NIST SP 800-38D's 2^-32 bound.
        let nonce_bytes = random::bytes::<NONCE_LEN>();
        let ciphertext = cipher
            .encrypt(&Nonce::from(nonce_bytes), Payload { msg: plaintext, aad })
            .map_err(|_| SealError::TooLarge)?;
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = blob.split_first().ok_or(SealError::Malformed)?;
        let (&id_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        if version != VERSION || rest.len() < usize::from(id_len) + NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (id, rest) = rest.split_at(usize::from(id_len));
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let id = std::str::from_utf8(id).map_err(|_| SealError::Malformed)?;
        let (_, cipher) =
            self.keys.iter().find(|(known, _)| known == id).ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        cipher.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad }).map_err(|_| SealError::Inauthentic)
    }

    /// A MAC over `data` with the active key: `(key id, tag)`.
    pub fn mac(&self, data: &[u8]) -> (&str, Vec<u8>) {
        match self.macs.first() {
            Some((id, key)) => (id.as_str(), aws_lc_rs::hmac::sign(key, data).as_ref().to_vec()),
            None => ("", Vec::new()),
        }
    }

    /// Whether `tag` is the MAC of `data` under key `key_id` (constant time).
    pub fn verify_mac(&self, key_id: &str, data: &[u8], tag: &[u8]) -> bool {
        self.macs
            .iter()
            .find(|(id, _)| id == key_id)
            .is_some_and(|(_, key)| aws_lc_rs::hmac::verify(key, data, tag).is_ok())
    }

    /// Whether `tag` (at least 128 bits) is the start of the MAC of `data` under any key of
    /// the ring, for values that carry a truncated MAC and no key id (constant time per key).
    pub fn verify_mac_prefix(&self, data: &[u8], tag: &[u8]) -> bool {
        if tag.len() < 16 {
            return false;
        }
        self.macs.iter().any(|(_, key)| {
            let full = aws_lc_rs::hmac::sign(key, data);
            full.as_ref().get(..tag.len()).is_some_and(|prefix| super::hash::constant_time_eq(prefix, tag))
        })
    }

    /// The key id a blob was sealed with, to decide whether it needs re-sealing.
    pub fn sealed_with(blob: &[u8]) -> Option<&str> {
        let id_len = usize::from(*blob.get(1)?);
        std::str::from_utf8(blob.get(2..2 + id_len)?).ok()
    }
}

const EXPECTED: &str = "base64 of exactly 32 bytes";

fn bad_key(id: &str) -> KeySpecError {
    KeySpecError::BadKey { id: id.to_owned(), expected: EXPECTED }
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(text).or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(spec).unwrap()
    }

    #[test]
    fn seals_and_opens_with_the_same_associated_data() {
        let keys = ring(&KeyRing::generate_spec("a"));
        let blob = keys.seal(b"upstream-token", b"grant/1|user|client").unwrap();
        assert_eq!(keys.open(&blob, b"grant/1|user|client").unwrap(), b"upstream-token");
        assert_eq!(KeyRing::sealed_with(&blob), Some("a"));
    }

    #[test]
    fn refuses_a_blob_moved_to_another_record() {
        let keys = ring(&KeyRing::generate_spec("a"));
        let blob = keys.seal(b"upstream-token", b"grant/1|user|client").unwrap();
        assert_eq!(keys.open(&blob, b"grant/2|user|client"), Err(SealError::Inauthentic));
    }

    #[test]
    fn refuses_tampered_bytes_anywhere_in_the_ciphertext() {
        let keys = ring(&KeyRing::generate_spec("a"));
        let blob = keys.seal(b"upstream-token", b"aad").unwrap();
        for i in 3..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(keys.open(&bad, b"aad").is_err(), "flipping byte {i} went unnoticed");
        }
        assert_eq!(keys.open(&blob[..10], b"aad"), Err(SealError::Malformed));
        assert_eq!(keys.open(&[], b"aad"), Err(SealError::Malformed));
    }

    #[test]
    fn refuses_a_key_id_not_in_the_ring_and_a_key_with_the_wrong_bytes() {
        let old = ring(&KeyRing::generate_spec("old"));
        let blob = old.seal(b"x", b"aad").unwrap();
        let other = ring(&KeyRing::generate_spec("new"));
        assert_eq!(other.open(&blob, b"aad"), Err(SealError::UnknownKey("old".into())));
        let impostor = ring(&KeyRing::generate_spec("old"));
        assert_eq!(impostor.open(&blob, b"aad"), Err(SealError::Inauthentic));
    }

    #[test]
    fn the_first_key_seals_and_older_keys_still_open() {
        let old_spec = KeyRing::generate_spec("old");
        let old = ring(&old_spec);
        let blob = old.seal(b"x", b"aad").unwrap();
        let rotated = ring(&format!("{},{old_spec}", KeyRing::generate_spec("new")));
        assert_eq!(rotated.open(&blob, b"aad").unwrap(), b"x");
        assert_eq!(KeyRing::sealed_with(&rotated.seal(b"x", b"aad").unwrap()), Some("new"));
    }

    #[test]
    fn a_published_key_opens_but_neither_seals_nor_is_resealed_from() {
        let (a, b) = (KeyRing::generate_spec("a"), KeyRing::generate_spec("b"));
        let activated = ring(&format!("{b},{a}"));
        let blob = activated.seal(b"x", b"aad").unwrap();
        let publishing = ring(&format!("{a},+{b}"));
        assert_eq!(publishing.open(&blob, b"aad").unwrap(), b"x", "a published key opens");
        assert_eq!(KeyRing::sealed_with(&publishing.seal(b"x", b"aad").unwrap()), Some("a"));
        assert!(!publishing.is_retiring("b"), "not moved back to the old key during a rollout");
        assert!(!publishing.is_retiring("a"));
        assert!(activated.is_retiring("a"));
        assert!(!activated.is_retiring("b"));
        assert_eq!(KeyRing::parse(&format!("+{b},{a}")).unwrap_err(), KeySpecError::PublishedFirst("b".into()));
    }

    #[test]
    fn macs_verify_under_any_ring_key_and_nothing_else() {
        let old_spec = KeyRing::generate_spec("old");
        let old = ring(&old_spec);
        let (id, tag) = old.mac(b"data");
        assert_eq!(id, "old");
        let rotated = ring(&format!("{},{old_spec}", KeyRing::generate_spec("new")));
        assert!(rotated.verify_mac("old", b"data", &tag), "old MACs verify after rotation");
        assert!(!rotated.verify_mac("old", b"datA", &tag));
        assert!(!rotated.verify_mac("new", b"data", &tag));
        assert!(!ring(&KeyRing::generate_spec("old")).verify_mac("old", b"data", &tag), "another key with the same id");
        assert_eq!(rotated.mac(b"data").0, "new");
    }

    #[test]
    fn key_specs_are_checked() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeySpecError::Empty);
        assert_eq!(KeyRing::parse("nokey").unwrap_err(), KeySpecError::Shape);
        assert_eq!(
            KeyRing::parse("a:c2hvcnQ=").unwrap_err(),
            KeySpecError::BadKey { id: "a".into(), expected: EXPECTED }
        );
        assert_eq!(KeyRing::parse("a b:xx").unwrap_err(), KeySpecError::BadId("a b".into()));
        let spec = KeyRing::generate_spec("a");
        assert_eq!(KeyRing::parse(&format!("{spec},{spec}")).unwrap_err(), KeySpecError::Duplicate("a".into()));
    }
}
