//! Tether's access tokens: JWTs (RFC 9068). Refresh tokens are `oauth::family`'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::clock::UnixTime;
use crate::crypto::signing::SigningKeys;
use crate::store::GrantInfo;

use super::error::OAuthError;

/// Token lifetimes and the time windows of the authorization flow.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access_token: Duration,
    pub refresh_token: Duration,
    pub code: Duration,
    /// From `/authorize` to the upstream callback (consent plus the upstream login).
    pub authorization: Duration,
    /// How long a dynamically registered client is kept before it first obtains tokens.
    pub client_unused: Duration,
    /// How long a browser's approval of a client is remembered (zero: always ask).
    pub consent_memory: Duration,
    /// How long a just-rotated refresh token still gets the same successor (racing clients).
    pub refresh_grace: Duration,
    /// How long a dynamically registered client is kept after it last obtained tokens.
    pub client_idle: Duration,
    /// How long a revoked grant's tombstone (who, when, why) is kept.
    pub tombstone: Duration,
    /// How long a browser stays signed in to Tether (zero: not at all).
    pub session: Duration,
}

/// Claims of an access token. `gid` ties it to its grant, which introspection checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    pub gid: String,
    /// RFC 8693 §4.1: the MCP server that exchanged a token for this one (its URI), with the
    /// one before it nested; only on tokens minted by a chain exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// An `act` claim: who acts (a resource's URI), and who acted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// The actors, current first.
    pub fn chain(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }
}

/// Access tokens whose signature was verified, by SHA-256 of the whole token, so the next
/// introspection of a token skips the ECDSA check (the hot path's largest cost).
///
/// Safe to remember: a token's claims never change, and a hit needs the very same bytes (a
/// forged or altered token hashes elsewhere and is verified in full). What a token's claims do
/// not say (its grant revoked, ended upstream) is read from the store on every call. Only
/// tokens still within their life are kept; the keys a process verifies with never change
/// while it runs. Bounded: the cache evicts, it never grows past its capacity.
pub struct VerifiedTokens {
    cache: Option<quick_cache::sync::Cache<[u8; 32], std::sync::Arc<AccessClaims>>>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens").field("entries", &self.cache.as_ref().map_or(0, |c| c.len())).finish()
    }
}

impl VerifiedTokens {
    /// Remembers up to `capacity` tokens (0: verifies every time).
    pub fn new(capacity: usize) -> Self {
        Self { cache: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)) }
    }

    /// The claims of `token` if its signature, header and issuer check out (remembered or now).
    pub fn verify(
        &self,
        signer: &SigningKeys,
        token: &str,
        issuer: &str,
        now: UnixTime,
    ) -> Option<std::sync::Arc<AccessClaims>> {
        let Some(cache) = &self.cache else {
            return signer.verify::<AccessClaims>(token, issuer).ok().map(std::sync::Arc::new);
        };
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = cache.get(&key) {
            return Some(claims);
        }
        let claims = std::sync::Arc::new(signer.verify::<AccessClaims>(token, issuer).ok()?);
        if claims.exp > now {
            cache.insert(key, claims.clone());
        }
        Some(claims)
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 6749 §5.1 token response. No member is ever `null`: absent ones are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: std::borrow::Cow<'static, str>,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// What minting needs: the signer, the issuer string and the lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct Minter<'a> {
    pub signer: &'a SigningKeys,
    pub issuer: &'a str,
    pub lifetimes: &'a Lifetimes,
}

impl Minter<'_> {
    /// A signed access token for `grant`, addressed to `audience`, with `scope`.
    pub fn access_token(
        &self,
        grant_id: &str,
        grant: &GrantInfo,
        audience: &str,
        scope: &[String],
        now: UnixTime,
    ) -> Result<(String, u64), OAuthError> {
        self.token(grant_id, grant, audience, scope, None, self.lifetimes.access_token.as_secs(), now)
    }

    /// A signed access token with an `act` claim, living `ttl` seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn token(
        &self,
        grant_id: &str,
        grant: &GrantInfo,
        audience: &str,
        scope: &[String],
        act: Option<Actor>,
        ttl: u64,
        now: UnixTime,
    ) -> Result<(String, u64), OAuthError> {
        let claims = AccessClaims {
            iss: self.issuer.to_owned(),
            sub: grant.subject.clone(),
            aud: audience.to_owned(),
            client_id: grant.client_id.clone(),
            scope: scope.join(" "),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            gid: grant_id.to_owned(),
            act,
        };
        let token = self.signer.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "signing an access token failed");
            OAuthError::server_error("could not sign the access token")
        })?;
        Ok((token, ttl))
    }
}

/// Whether a presented token is shaped like one of Tether's JWTs (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const ISSUER: &str = "https://tether.example";

    fn keys(kid: &str) -> SigningKeys {
        SigningKeys::parse(&SigningKeys::generate_spec(kid).unwrap()).unwrap()
    }

    fn claims(exp: UnixTime) -> AccessClaims {
        AccessClaims {
            iss: ISSUER.into(),
            sub: "user".into(),
            aud: "https://mcp.example/mcp".into(),
            client_id: "client".into(),
            scope: "files:read".into(),
            iat: exp - 600,
            exp,
            jti: "jti".into(),
            gid: "grant".into(),
            act: None,
        }
    }

    #[test]
    fn remembers_a_verified_token_and_answers_the_same_claims() {
        let (signer, verified) = (keys("k1"), VerifiedTokens::new(10));
        let token = signer.sign(&claims(2_000)).unwrap();
        assert_eq!(*verified.verify(&signer, &token, ISSUER, 1_000).unwrap(), claims(2_000));
        assert_eq!(verified.len(), 1);
        // The second answer comes from the cache: even a signer without the key accepts it.
        assert_eq!(*verified.verify(&keys("other"), &token, ISSUER, 1_000).unwrap(), claims(2_000));
    }

    #[test]
    fn an_altered_or_foreign_token_is_verified_in_full_even_when_its_original_is_remembered() {
        let (signer, verified) = (keys("k1"), VerifiedTokens::new(10));
        let token = signer.sign(&claims(2_000)).unwrap();
        assert!(verified.verify(&signer, &token, ISSUER, 1_000).is_some());
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(9_999_999)).unwrap());
        assert!(verified.verify(&signer, &format!("{head}.{forged_payload}.{signature}"), ISSUER, 1_000).is_none());
        let foreign = keys("k1").sign(&claims(2_000)).unwrap();
        assert!(verified.verify(&signer, &foreign, ISSUER, 1_000).is_none());
        assert!(verified.verify(&signer, &keys("k1").sign(&claims(2_000)).unwrap(), "https://else", 1_000).is_none());
        assert_eq!(verified.len(), 1, "failures are never remembered");
    }

    #[test]
    fn expired_tokens_are_not_remembered_and_the_cache_stays_bounded() {
        let (signer, verified) = (keys("k1"), VerifiedTokens::new(4));
        let expired = signer.sign(&claims(900)).unwrap();
        assert!(verified.verify(&signer, &expired, ISSUER, 1_000).is_some(), "expiry is the caller's check");
        assert!(verified.is_empty());
        for i in 0..50 {
            let token = signer.sign(&AccessClaims { jti: format!("jti-{i}"), ..claims(2_000) }).unwrap();
            assert!(verified.verify(&signer, &token, ISSUER, 1_000).is_some());
        }
        assert!(verified.len() <= 4, "{} entries", verified.len());
        let off = VerifiedTokens::new(0);
        assert!(off.verify(&signer, &signer.sign(&claims(2_000)).unwrap(), ISSUER, 1_000).is_some());
        assert!(off.is_empty());
    }
}
