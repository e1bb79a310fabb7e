//! Key material and the primitives built on it: random tokens, hashes, sealing, signing.
//!
//! Nothing here knows about HTTP or storage; callers hand in bytes and get bytes back.

pub mod hash;
pub mod random;
pub mod rotation;
pub mod seal;
pub mod signing;

/// Why a configured key list could not be read; the caller names the config key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeySpecError {
    #[error("expected `id:base64key`")]
    Shape,
    #[error("key id `{0}` must be 1-64 characters of A-Z a-z 0-9 - _ .")]
    BadId(String),
    #[error("key `{id}` is not {expected}")]
    BadKey { id: String, expected: &'static str },
    #[error("key id `{0}` appears twice")]
    Duplicate(String),
    #[error("no keys given")]
    Empty,
    #[error("the first key, `{0}`, is marked `+` (published, not yet active): activate it by removing the mark")]
    PublishedFirst(String),
}

/// One `[+]id:material` item of a key list. `+` marks a published key: accepted (opens,
/// verifies, is listed in the JWKS) but not used yet, and never re-sealed away from.
#[derive(Clone, PartialEq, Eq)]
pub struct SpecItem {
    pub id: String,
    pub material: String,
    pub published: bool,
}

impl std::fmt::Debug for SpecItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecItem").field("id", &self.id).field("published", &self.published).finish_non_exhaustive()
    }
}

impl SpecItem {
    /// Back in the list's form.
    pub fn to_spec(&self) -> String {
        format!("{}{}:{}", if self.published { "+" } else { "" }, self.id, self.material)
    }
}

/// Splits a comma-separated key list, checking its shape: ids valid and distinct, at least
/// one key, and an active (unmarked) first key. The material is the caller's to check.
pub fn spec_items(spec: &str) -> Result<Vec<SpecItem>, KeySpecError> {
    let mut items: Vec<SpecItem> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (published, item) = match item.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let (id, material) = item.split_once(':').ok_or(KeySpecError::Shape)?;
        if !valid_key_id(id) {
            return Err(KeySpecError::BadId(id.to_owned()));
        }
        if items.iter().any(|known| known.id == id) {
            return Err(KeySpecError::Duplicate(id.to_owned()));
        }
        items.push(SpecItem { id: id.to_owned(), material: material.to_owned(), published });
    }
    match items.first() {
        None => Err(KeySpecError::Empty),
        Some(first) if first.published => Err(KeySpecError::PublishedFirst(first.id.clone())),
        Some(_) => Ok(items),
    }
}

/// Key identifiers appear in ciphertext headers and JWT headers: short and unambiguous.
pub(crate) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A key id for freshly generated keys: the date it was made plus a random suffix, so that
/// keys generated on the same day by different operators do not collide.
pub fn fresh_key_id(now: crate::clock::UnixTime) -> String {
    let days = now.div_euclid(86_400);
    let (y, m, d) = crate::clock::civil_from_days(days);
    format!("k{y:04}{m:02}{d:02}-{}", &random::token()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_dated_and_valid() {
        let id = fresh_key_id(1_795_000_000); // 2026-11-18
        assert!(id.starts_with("k20261118-"), "{id}");
        assert!(valid_key_id(&id));
        assert!(!valid_key_id("has:colon"));
        assert!(!valid_key_id(""));
    }
}
