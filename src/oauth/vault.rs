//! Sealing a grant's upstream tokens: the AAD binds the ciphertext to its grant, user and
//! client, so a sealed value copied into another grant does not open.

use crate::crypto::seal::KeyRing;
use crate::store::{GrantInfo, GrantRecord, GrantStore, LinkInfo, StoreError, connection_of};
use crate::upstream::UpstreamTokens;

use super::error::OAuthError;
use super::tokens::TokenResponse;

#[derive(Debug)]
pub struct Vault {
    keys: KeyRing,
}

/// A grant's tokens are bound to the grant, its user and client; a grant on a connection
/// uses the connection's tokens, bound to the connection and the upstream identity (or, for a
/// connection made before its account was known, the connection and its user).
fn aad(grant_id: &str, info: &GrantInfo) -> Vec<u8> {
    match connection_of(grant_id) {
        Some(link) if info.bound_to_user => user_link_aad(link, &info.provider, &info.user()),
        Some(link) => link_aad(link, &info.provider, &info.subject),
        None => labelled(b"tether/grant/v1", &[grant_id, info.subject.as_str(), info.client_id.as_str()]),
    }
}

fn link_aad(link_id: &str, provider: &str, subject: &str) -> Vec<u8> {
    labelled(b"tether/link/v1", &[link_id, provider, subject])
}

/// A connection's binding when its upstream account was not known as it was made: the account
/// may come later, the user and the connection never change.
fn user_link_aad(link_id: &str, provider: &str, user: &str) -> Vec<u8> {
    labelled(b"tether/link-user/v1", &[link_id, provider, user])
}

fn link_info_aad(link_id: &str, info: &LinkInfo) -> Vec<u8> {
    if info.bound_to_user {
        user_link_aad(link_id, &info.provider, &info.user)
    } else {
        link_aad(link_id, &info.provider, &info.subject)
    }
}

/// Length-prefixed parts after a label: no choice of values makes two different lists collide.
fn labelled(label: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut out = label.to_vec();
    for part in parts {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

impl Vault {
    pub fn new(keys: KeyRing) -> Self {
        Self { keys }
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn seal(&self, grant_id: &str, info: &GrantInfo, tokens: &UpstreamTokens) -> Result<Vec<u8>, OAuthError> {
        let plaintext =
            serde_json::to_vec(tokens).map_err(|_| OAuthError::server_error("could not encode upstream tokens"))?;
        self.keys.seal(&plaintext, &aad(grant_id, info)).map_err(|e| {
            tracing::error!(error = %e, "sealing upstream tokens failed");
            OAuthError::server_error("could not store the upstream tokens")
        })
    }

    /// Seals a connection's upstream tokens.
    pub fn seal_link(&self, link_id: &str, info: &LinkInfo, tokens: &UpstreamTokens) -> Result<Vec<u8>, OAuthError> {
        let plaintext =
            serde_json::to_vec(tokens).map_err(|_| OAuthError::server_error("could not encode upstream tokens"))?;
        self.keys.seal(&plaintext, &link_info_aad(link_id, info)).map_err(|e| {
            tracing::error!(error = %e, "sealing upstream tokens failed");
            OAuthError::server_error("could not store the upstream tokens")
        })
    }

    /// Opens a connection's upstream tokens (`None` when ended or unreadable).
    pub fn open_link(&self, link: &crate::store::LinkRecord) -> Option<UpstreamTokens> {
        if link.upstream.is_empty() {
            return None;
        }
        let bytes = self.keys.open(&link.upstream, &link_info_aad(&link.id, &link.info)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Seals the response that replaced a rotated refresh token, bound to that token.
    pub fn seal_successor(&self, rotated_digest: &str, response: &TokenResponse) -> Result<Vec<u8>, OAuthError> {
        let plaintext = serde_json::to_vec(response)
            .map_err(|_| OAuthError::server_error("could not encode the token response"))?;
        self.keys
            .seal(&plaintext, &labelled(b"tether/refresh-successor/v1", &[rotated_digest]))
            .map_err(|_| OAuthError::server_error("could not store the token response"))
    }

    pub fn open_successor(&self, rotated_digest: &str, blob: &[u8]) -> Option<TokenResponse> {
        let plaintext = self.keys.open(blob, &labelled(b"tether/refresh-successor/v1", &[rotated_digest])).ok()?;
        serde_json::from_slice(&plaintext).ok()
    }

    /// Whether a grant's tokens are sealed under a key other than the active one (a key
    /// being rotated out): they are re-sealed when next read.
    pub fn is_stale(&self, grant: &GrantRecord) -> bool {
        KeyRing::sealed_with(&grant.upstream).is_some_and(|id| self.keys.is_retiring(id))
    }

    /// Opens a grant's upstream tokens; `None` (logged) when they cannot be opened, which
    /// makes the grant unusable rather than failing every request that touches it.
    pub fn open(&self, grant: &GrantRecord) -> Option<UpstreamTokens> {
        let opened = self
            .keys
            .open(&grant.upstream, &aad(&grant.id, &grant.info))
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
        match opened {
            Ok(tokens) => Some(tokens),
            Err(error) => {
                tracing::error!(grant = %grant.id, %error, "cannot open upstream tokens");
                None
            }
        }
    }
}

/// What a walk over every grant found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    pub grants: u64,
    /// Re-sealed under the active key.
    pub resealed: u64,
    /// Already under the active key.
    pub current: u64,
    /// Sealed under a key not in the ring, or tampered with: left as they are.
    pub unreadable: u64,
    /// Changed by a concurrent refresh while being re-sealed (it sealed them under the
    /// active key itself).
    pub raced: u64,
}

/// Re-seals a grant read under an old key (`tokens` are its opened upstream tokens), unless
/// a concurrent writer replaced them first (`Ok(false)`).
pub async fn reseal(
    grants: &dyn GrantStore,
    vault: &Vault,
    grant: &GrantRecord,
    tokens: &UpstreamTokens,
) -> Result<bool, StoreError> {
    let Ok(sealed) = vault.seal(&grant.id, &grant.info, tokens) else { return Ok(false) };
    let replaced = grants.reseal_grant_upstream(&grant.id, &grant.upstream, &sealed).await?;
    if replaced {
        tracing::debug!(grant = %grant.id, key = vault.keys.active_key_id(), "re-sealed under the active key");
    }
    Ok(replaced)
}

/// Re-seals every stored grant under the active key (`tether keys reseal`), so that an old
/// encryption key can be retired without waiting for every grant to be read.
/// With `dry_run`, only counts (`resealed` is then how many would be).
pub async fn reseal_all(grants: &dyn GrantStore, vault: &Vault, dry_run: bool) -> Result<ResealReport, StoreError> {
    let mut report = ResealReport::default();
    let mut cursor = 0;
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, ids) = grants.scan_grants(cursor).await?;
        for id in ids {
            // SCAN may return a key twice.
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(grant) = grants.grant(&id).await? else { continue };
            report.grants += 1;
            if !vault.is_stale(&grant) {
                report.current += 1;
                continue;
            }
            let Some(tokens) = vault.open(&grant) else {
                report.unreadable += 1;
                continue;
            };
            let resealed = dry_run || reseal(grants, vault, &grant, &tokens).await?;
            if resealed {
                report.resealed += 1;
            } else {
                report.raced += 1;
            }
        }
        if next == 0 {
            return Ok(report);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(client: &str) -> GrantInfo {
        GrantInfo {
            subject: "42".into(),
            client_id: client.into(),
            resource: "r".into(),
            provider: "p".into(),
            scope: vec![],
            offline: true,
            created_at: 0,
            ..GrantInfo::default()
        }
    }

    #[test]
    fn a_sealed_token_set_only_opens_in_its_own_grant() {
        let vault = Vault::new(KeyRing::parse(&KeyRing::generate_spec("k")).unwrap());
        let tokens = UpstreamTokens { access_token: "gho_secret".into(), ..tokens() };
        let sealed = vault.seal("g1", &info("c1"), &tokens).unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"gho_secret"));
        let grant = |id: &str, client: &str| GrantRecord::new(id.into(), info(client), sealed.clone());
        assert_eq!(vault.open(&grant("g1", "c1")), Some(tokens));
        assert_eq!(vault.open(&grant("g2", "c1")), None);
        assert_eq!(vault.open(&grant("g1", "c2")), None);
    }

    fn tokens() -> UpstreamTokens {
        UpstreamTokens {
            access_token: "gho_later".into(),
            token_type: "bearer".into(),
            refresh_token: None,
            expires_at: None,
            obtained_at: None,
            refresh_expires_at: None,
            scope: None,
            extra: Default::default(),
        }
    }

    /// A connection made before its account was known is sealed to its user: a grant made
    /// then (no upstream subject) opens the tokens the account brings later, another user's
    /// grant does not, and neither does one sealed the upstream-account way.
    #[test]
    fn a_connection_bound_to_its_user_opens_for_its_grants_whatever_their_subject() {
        use crate::store::{LinkRecord, LinkStatus};
        let vault = Vault::new(KeyRing::parse(&KeyRing::generate_spec("k")).unwrap());
        let link_id = "0123456789abcdef01234567";
        let info = LinkInfo {
            user: "login:corp:7".into(),
            provider: "p".into(),
            subject: "upstream-42".into(),
            bound_to_user: true,
            ..LinkInfo::default()
        };
        let sealed = vault.seal_link(link_id, &info, &tokens()).unwrap();
        let link =
            LinkRecord { id: link_id.into(), info: info.clone(), status: LinkStatus::Active, upstream: sealed.clone() };
        assert_eq!(vault.open_link(&link), Some(tokens()));
        let grant = |owner: &str, bound: bool| {
            let info = GrantInfo {
                subject: "login:corp:7".into(),
                provider: "p".into(),
                owner: Some(owner.into()),
                bound_to_user: bound,
                ..GrantInfo::default()
            };
            GrantRecord::new(format!("{link_id}-abc"), info, sealed.clone())
        };
        assert_eq!(vault.open(&grant("login:corp:7", true)), Some(tokens()));
        assert_eq!(vault.open(&grant("login:corp:8", true)), None);
        assert_eq!(vault.open(&grant("login:corp:7", false)), None);
        let unbound = LinkRecord { info: LinkInfo { bound_to_user: false, ..info }, ..link };
        assert_eq!(vault.open_link(&unbound), None);
    }
}
