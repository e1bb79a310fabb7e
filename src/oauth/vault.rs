//! Sealing a grant's upstream tokens: the AAD binds the ciphertext to its grant, user and
//! client, so a sealed value copied into another grant does not open.

use crate::crypto::seal::KeyRing;
use crate::store::{GrantInfo, GrantRecord};
use crate::upstream::UpstreamTokens;

use super::error::OAuthError;
use super::tokens::TokenResponse;

#[derive(Debug)]
pub struct Vault {
    keys: KeyRing,
}

fn aad(grant_id: &str, info: &GrantInfo) -> Vec<u8> {
    labelled(b"tether/grant/v1", &[grant_id, info.subject.as_str(), info.client_id.as_str()])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::GrantStatus;

    fn info(client: &str) -> GrantInfo {
        GrantInfo {
            subject: "42".into(),
            client_id: client.into(),
            resource: "r".into(),
            provider: "p".into(),
            scope: vec![],
            offline: true,
            created_at: 0,
        }
    }

    #[test]
    fn a_sealed_token_set_only_opens_in_its_own_grant() {
        let vault = Vault::new(KeyRing::parse(&KeyRing::generate_spec("k")).unwrap());
        let tokens = UpstreamTokens {
            access_token: "gho_secret".into(),
            token_type: "bearer".into(),
            refresh_token: None,
            expires_at: None,
            obtained_at: None,
            refresh_expires_at: None,
            scope: None,
        };
        let sealed = vault.seal("g1", &info("c1"), &tokens).unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"gho_secret"));
        let grant = |id: &str, client: &str| GrantRecord {
            id: id.into(),
            info: info(client),
            status: GrantStatus::Active,
            upstream: sealed.clone(),
        };
        assert_eq!(vault.open(&grant("g1", "c1")), Some(tokens));
        assert_eq!(vault.open(&grant("g2", "c1")), None);
        assert_eq!(vault.open(&grant("g1", "c2")), None);
    }
}
