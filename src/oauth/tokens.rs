//! Tether's own tokens: JWT access tokens (RFC 9068) and opaque refresh tokens.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::crypto::signing::SigningKeys;
use crate::crypto::{hash, random};
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
        let ttl = self.lifetimes.access_token.as_secs();
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
        };
        let token = self.signer.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "signing an access token failed");
            OAuthError::server_error("could not sign the access token")
        })?;
        Ok((token, ttl))
    }
}

/// A fresh refresh token and the digest it is stored under.
pub fn new_refresh_token() -> (String, String) {
    let token = random::token();
    let digest = hash::digest(&token);
    (token, digest)
}

/// Whether a presented token is shaped like one of Tether's JWTs (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
