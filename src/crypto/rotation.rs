//! Key rotation as three staged edits of a key list (`tether keys rotate`), the same for the
//! signing and the encryption keys. The first key of a list is the active one; all keys
//! verify (or open).
//!
//! 1. `publish`: a new key is appended, marked `+`. Every replica learns it (the JWKS
//!    publishes it, every replica can open what it seals) before any replica uses it.
//! 2. `activate`: the published key moves to the front, unmarked, and starts signing (or
//!    sealing); records sealed under the others are re-sealed when read. A replica still on
//!    the previous list leaves records sealed under its published key alone.
//! 3. `retire`: the old keys are dropped, once nothing needs them: access tokens they signed
//!    have expired, records they sealed have been re-sealed (`tether keys reseal`).
//!
//! Each step is rolled out to every replica before the next one starts; none of them makes a
//! user sign in again.

use secrecy::{ExposeSecret, SecretString};

use super::seal::KeyRing;
use super::signing::SigningKeys;
use super::{KeySpecError, SpecItem, fresh_key_id, spec_items};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Signing,
    Encryption,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Publish,
    Activate,
    Retire,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotateError {
    #[error("the configured keys are invalid: {0}")]
    Invalid(#[from] KeySpecError),
    #[error("that key is already active: publish a new one first")]
    NothingToActivate,
    #[error("no key is retiring (only the active key and published ones)")]
    NothingToRetire,
    #[error("no key `{0}` in the list")]
    NoSuchKey(String),
    #[error("`{0}` is the active key: activate another one before retiring it")]
    RetireActive(String),
}

/// The key list after a step, and what changed.
#[derive(Debug)]
pub struct Rotated {
    /// The new list, in the configuration's form (secret).
    pub spec: SecretString,
    /// Key ids in order, published ones marked `+`; the first is active.
    pub ids: Vec<String>,
    /// The key the step added, activated or retired.
    pub changed: Vec<String>,
}

/// Applies `step` to the list `spec`. `key` picks the key to activate (default: the newest,
/// last one) or to retire (default: every key but the active one).
pub fn rotate(
    kind: KeyKind,
    spec: &SecretString,
    step: Step,
    key: Option<&str>,
    now: crate::clock::UnixTime,
) -> Result<Rotated, RotateError> {
    validate(kind, spec.expose_secret())?;
    let mut items = spec_items(spec.expose_secret())?;
    let find = |items: &[SpecItem], id: &str| {
        items.iter().position(|item| item.id == id).ok_or_else(|| RotateError::NoSuchKey(id.to_owned()))
    };
    let changed = match step {
        Step::Publish => {
            let id = fresh_key_id(now);
            let fresh = match kind {
                KeyKind::Signing => SigningKeys::generate_spec(&id)?,
                KeyKind::Encryption => KeyRing::generate_spec(&id),
            };
            let mut item = spec_items(&fresh)?.remove(0);
            item.published = true;
            items.push(item);
            vec![id]
        }
        Step::Activate => {
            let at = match key {
                Some(id) => find(&items, id)?,
                // The published key; failing that, the newest.
                None => items.iter().rposition(|item| item.published).unwrap_or(items.len() - 1),
            };
            if at == 0 {
                return Err(RotateError::NothingToActivate);
            }
            let mut item = items.remove(at);
            item.published = false;
            let id = item.id.clone();
            items.insert(0, item);
            vec![id]
        }
        Step::Retire => {
            let retired: Vec<usize> = match key {
                Some(id) if items[0].id == id => return Err(RotateError::RetireActive(id.to_owned())),
                Some(id) => vec![find(&items, id)?],
                // Every key that is neither active nor published.
                None => (1..items.len()).filter(|&i| !items[i].published).collect(),
            };
            if retired.is_empty() {
                return Err(RotateError::NothingToRetire);
            }
            let ids = retired.iter().map(|&i| items[i].id.clone()).collect();
            let mut index = 0;
            items.retain(|_| {
                index += 1;
                !retired.contains(&(index - 1))
            });
            ids
        }
    };
    let spec = items.iter().map(SpecItem::to_spec).collect::<Vec<_>>().join(",");
    validate(kind, &spec)?;
    let ids = items.iter().map(|item| format!("{}{}", if item.published { "+" } else { "" }, item.id)).collect();
    Ok(Rotated { spec: SecretString::from(spec), ids, changed })
}

fn validate(kind: KeyKind, spec: &str) -> Result<(), KeySpecError> {
    match kind {
        KeyKind::Signing => SigningKeys::parse(spec).map(drop),
        KeyKind::Encryption => KeyRing::parse(spec).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: KeyKind, ids: &[&str]) -> SecretString {
        let items: Vec<String> = ids
            .iter()
            .map(|id| match kind {
                KeyKind::Signing => SigningKeys::generate_spec(id).unwrap(),
                KeyKind::Encryption => KeyRing::generate_spec(id),
            })
            .collect();
        SecretString::from(items.join(","))
    }

    #[test]
    fn publish_appends_activate_moves_to_front_and_retire_keeps_the_active_key() {
        for kind in [KeyKind::Signing, KeyKind::Encryption] {
            let start = spec(kind, &["old"]);
            let published = rotate(kind, &start, Step::Publish, None, 1_800_000_000).unwrap();
            let new = published.changed[0].clone();
            assert_eq!(published.ids, vec!["old".to_owned(), format!("+{new}")], "published, not active");
            assert!(new.starts_with("k2027"), "{new}");
            assert!(published.spec.expose_secret().starts_with(start.expose_secret()), "old material kept as is");

            let active = rotate(kind, &published.spec, Step::Activate, None, 0).unwrap();
            assert_eq!(active.ids, vec![new.clone(), "old".to_owned()]);
            let retired = rotate(kind, &active.spec, Step::Retire, None, 0).unwrap();
            assert_eq!(retired.ids, vec![new.clone()]);
            assert_eq!(retired.changed, vec!["old".to_owned()]);
            assert!(active.spec.expose_secret().starts_with(retired.spec.expose_secret()));
        }
    }

    #[test]
    fn steps_that_would_lose_the_active_key_or_do_nothing_are_refused() {
        let kind = KeyKind::Encryption;
        let one = spec(kind, &["a"]);
        assert_eq!(rotate(kind, &one, Step::Activate, None, 0).unwrap_err(), RotateError::NothingToActivate);
        assert_eq!(rotate(kind, &one, Step::Retire, None, 0).unwrap_err(), RotateError::NothingToRetire);
        let three = spec(kind, &["a", "b", "c"]);
        assert_eq!(
            rotate(kind, &three, Step::Retire, Some("a"), 0).unwrap_err(),
            RotateError::RetireActive("a".into())
        );
        assert_eq!(rotate(kind, &three, Step::Retire, Some("b"), 0).unwrap().ids, vec!["a", "c"]);
        assert_eq!(rotate(kind, &three, Step::Activate, Some("b"), 0).unwrap().ids, vec!["b", "a", "c"]);
        assert_eq!(rotate(kind, &three, Step::Activate, Some("x"), 0).unwrap_err(), RotateError::NoSuchKey("x".into()));
        assert_eq!(rotate(kind, &three, Step::Activate, Some("a"), 0).unwrap_err(), RotateError::NothingToActivate);
        // A published key is neither retired by default nor activated by accident.
        let published = rotate(kind, &one, Step::Publish, None, 0).unwrap();
        assert_eq!(rotate(kind, &published.spec, Step::Retire, None, 0).unwrap_err(), RotateError::NothingToRetire);
        let marked_first = SecretString::from(format!("+{}", KeyRing::generate_spec("p")));
        assert!(matches!(
            rotate(kind, &marked_first, Step::Retire, None, 0),
            Err(RotateError::Invalid(KeySpecError::PublishedFirst(_)))
        ));
        let broken = SecretString::from("a:not-a-key".to_owned());
        assert!(matches!(rotate(kind, &broken, Step::Publish, None, 0), Err(RotateError::Invalid(_))));
    }

    #[test]
    fn errors_never_echo_key_material() {
        let broken = SecretString::from("a:c2VjcmV0LW1hdGVyaWFs".to_owned());
        let message = rotate(KeyKind::Encryption, &broken, Step::Publish, None, 0).unwrap_err().to_string();
        assert!(!message.contains("c2VjcmV0LW1hdGVyaWFs"), "{message}");
    }
}
