//! The introspection call (RFC 7662) with a short positive cache.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::crypto::hash;

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// Tether's introspection endpoint, `{issuer}/introspect`.
    pub endpoint: String,
    /// Tether's token endpoint, for token exchange: `{issuer}/token` (derived from `endpoint`).
    pub token_endpoint: String,
    /// The resource id this MCP server is registered under in Tether.
    pub resource_id: String,
    pub secret: SecretString,
    /// Upper bound on how long an active answer is reused. A revoked token can keep working
    /// this long; 0 disables the cache.
    pub max_cache: Duration,
    /// Upstream tokens this close to expiry are not served from the cache.
    pub upstream_skew: Duration,
    pub timeout: Duration,
}

impl IntrospectionConfig {
    pub fn new(endpoint: impl Into<String>, resource_id: impl Into<String>, secret: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        let issuer = endpoint.strip_suffix("/introspect").unwrap_or(&endpoint);
        Self {
            token_endpoint: format!("{issuer}/token"),
            endpoint,
            resource_id: resource_id.into(),
            secret: SecretString::from(secret.into()),
            max_cache: Duration::from_secs(30),
            upstream_skew: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The upstream credential Tether returns for a token addressed to this server.
#[derive(Clone, Deserialize)]
pub struct UpstreamCredential {
    pub provider: String,
    pub access_token: SecretString,
    pub token_type: String,
    #[serde(default)]
    pub expires_at: Option<UnixTime>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Values the provider's API needs beside the token: `api_base_url`, `api_headers` (an
    /// object of headers to send), and values from the provider's token answer such as
    /// Salesforce's `instance_url`. Empty for providers that need nothing.
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An active token: who, which client, which scopes, until when, and the upstream credential.
#[derive(Debug, Clone, Deserialize)]
pub struct ActiveToken {
    pub sub: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    pub aud: String,
    pub iss: String,
    pub exp: UnixTime,
    /// For a token another MCP server exchanged for this one (RFC 8693 §4.1): `{"sub": <that
    /// server's URI>, "act": <the one before, if any>}`. Decide on the top-level claims and
    /// this outermost actor only.
    #[serde(default)]
    pub act: Option<serde_json::Value>,
    pub upstream: UpstreamCredential,
}

impl ActiveToken {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// A good token whose upstream connection needs the person again ("connect first"): send
/// them to `interaction_uri` (MCP URL elicitation, or a tool result with the link), then retry.
#[derive(Debug, Clone, Deserialize)]
pub struct NeedsConnection {
    pub sub: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    pub aud: String,
    pub exp: UnixTime,
    /// A Tether link, good for about ten minutes, that connects the provider again for this
    /// user only.
    pub interaction_uri: String,
}

#[derive(Debug, Clone)]
pub enum TokenStatus {
    Active(Arc<ActiveToken>),
    /// Valid, but without an upstream credential until the person connects again. Never
    /// cached.
    ConnectFirst(Arc<NeedsConnection>),
    /// Unknown, expired, revoked, for another server, or its upstream grant is dead: answer
    /// the MCP client 401 so that it refreshes or authorizes again.
    Inactive,
}

#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    /// Tether or its store is down: answer 503 (with `Retry-After`), not 401, so that the
    /// client does not throw its tokens away.
    #[error("Tether is unavailable")]
    Unavailable { retry_after: Option<u64> },
    /// Tether refused this server's credentials: a configuration error.
    #[error("Tether refused the resource credentials")]
    Unauthorized,
    #[error("unexpected introspection answer: {0}")]
    Protocol(String),
}

#[derive(Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    interaction_uri: Option<String>,
}

struct Cached {
    token: Arc<ActiveToken>,
    until: UnixTime,
}

/// What RFC 8693 token exchange gives for a Tether token: the upstream access token.
#[derive(Clone, Deserialize)]
pub struct ExchangedToken {
    pub access_token: SecretString,
    pub token_type: String,
    /// When the upstream token expires (from `expires_in`).
    #[serde(skip)]
    pub expires_at: Option<UnixTime>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
    pub provider: String,
    /// As [`UpstreamCredential::extra`].
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangedToken")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum ExchangeStatus {
    Exchanged(Arc<ExchangedToken>),
    /// `interaction_required`: the person must connect the provider again at this link.
    ConnectFirst {
        interaction_uri: String,
    },
    /// The Tether token is not active for this server (RFC 8693 `invalid_request`): answer
    /// the MCP client 401, as for an inactive introspection.
    Inactive,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    interaction_uri: Option<String>,
}

pub struct IntrospectionClient {
    http: reqwest::Client,
    config: IntrospectionConfig,
    clock: Arc<dyn Clock>,
    cache: moka::sync::Cache<String, Arc<Cached>>,
    exchanged: moka::sync::Cache<String, (Arc<ExchangedToken>, UnixTime)>,
}

impl std::fmt::Debug for IntrospectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionClient").field("endpoint", &self.config.endpoint).finish_non_exhaustive()
    }
}

impl IntrospectionClient {
    pub fn new(config: IntrospectionConfig) -> Result<Self, reqwest::Error> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: IntrospectionConfig, clock: Arc<dyn Clock>) -> Result<Self, reqwest::Error> {
        // One client: connections to Tether are kept alive and reused across calls.
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            config,
            clock,
            cache: moka::sync::Cache::new(100_000),
            exchanged: moka::sync::Cache::new(100_000),
        })
    }

    /// RFC 8693 token exchange: the upstream access token behind `token` (a Tether access
    /// token addressed to this server), cached by the same rules as introspection: no longer
    /// than `max_cache`, nor past the upstream token's expiry less `upstream_skew`.
    pub async fn exchange(&self, token: &str) -> Result<ExchangeStatus, IntrospectionError> {
        let now = self.clock.now();
        let key = hash::digest(token);
        if let Some((hit, until)) = self.exchanged.get(&key) {
            if until > now {
                return Ok(ExchangeStatus::Exchanged(hit));
            }
            self.exchanged.invalidate(&key);
        }
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ];
        let response = self
            .http
            .post(&self.config.token_endpoint)
            .basic_auth(&self.config.resource_id, Some(self.config.secret.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|_| IntrospectionError::Unavailable { retry_after: None })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(IntrospectionError::Unavailable { retry_after: retry_after(&response) });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(IntrospectionError::Unauthorized);
        }
        let body = response.bytes().await.map_err(|_| IntrospectionError::Unavailable { retry_after: None })?;
        if status == reqwest::StatusCode::BAD_REQUEST {
            let answer: ErrorAnswer =
                serde_json::from_slice(&body).map_err(|e| IntrospectionError::Protocol(e.to_string()))?;
            return match (answer.error.as_str(), answer.interaction_uri) {
                ("interaction_required", Some(interaction_uri)) => Ok(ExchangeStatus::ConnectFirst { interaction_uri }),
                ("invalid_request", _) => Ok(ExchangeStatus::Inactive),
                (other, _) => Err(IntrospectionError::Protocol(format!("token exchange refused: {other}"))),
            };
        }
        if status != reqwest::StatusCode::OK {
            return Err(IntrospectionError::Protocol(format!("HTTP {status}")));
        }
        let mut exchanged: ExchangedToken =
            serde_json::from_slice(&body).map_err(|e| IntrospectionError::Protocol(e.to_string()))?;
        exchanged.expires_at = exchanged.expires_in.map(|secs| now.saturating_add(secs));
        let exchanged = Arc::new(exchanged);
        let max = now.saturating_add(i64::try_from(self.config.max_cache.as_secs()).unwrap_or(i64::MAX));
        let skew = i64::try_from(self.config.upstream_skew.as_secs()).unwrap_or(i64::MAX);
        let until = max.min(exchanged.expires_at.map_or(i64::MAX, |e| e.saturating_sub(skew)));
        if until > now {
            self.exchanged.insert(key, (exchanged.clone(), until));
        }
        Ok(ExchangeStatus::Exchanged(exchanged))
    }

    pub async fn introspect(&self, token: &str) -> Result<TokenStatus, IntrospectionError> {
        let now = self.clock.now();
        let key = hash::digest(token);
        if let Some(hit) = self.cache.get(&key) {
            if hit.until > now {
                return Ok(TokenStatus::Active(hit.token.clone()));
            }
            self.cache.invalidate(&key);
        }
        let status = self.call(&self.config.endpoint, token).await?;
        if let TokenStatus::Active(active) = &status {
            let until = self.cache_until(active, now);
            if until > now {
                self.cache.insert(key, Arc::new(Cached { token: active.clone(), until }));
            }
        }
        Ok(status)
    }

    /// Tells Tether that the provider refused the upstream credential this server was given
    /// for `token` (a 401 from the provider's API). Tether refreshes it, or checks it with the
    /// provider and, if the provider confirms, answers `ConnectFirst` from now on. The answer
    /// is a fresh introspection; the cached ones for `token` are dropped.
    pub async fn report_rejected(&self, token: &str) -> Result<TokenStatus, IntrospectionError> {
        let key = hash::digest(token);
        self.cache.invalidate(&key);
        self.exchanged.invalidate(&key);
        let endpoint = format!("{}/upstream-rejected", self.config.endpoint.trim_end_matches('/'));
        self.call(&endpoint, token).await
    }

    /// One introspection-shaped call to Tether.
    async fn call(&self, endpoint: &str, token: &str) -> Result<TokenStatus, IntrospectionError> {
        let response = self
            .http
            .post(endpoint)
            .basic_auth(&self.config.resource_id, Some(self.config.secret.expose_secret()))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|_| IntrospectionError::Unavailable { retry_after: None })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(IntrospectionError::Unavailable { retry_after: retry_after(&response) });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(IntrospectionError::Unauthorized);
        }
        if status != reqwest::StatusCode::OK {
            return Err(IntrospectionError::Protocol(format!("HTTP {status}")));
        }
        let body = response.bytes().await.map_err(|_| IntrospectionError::Unavailable { retry_after: None })?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| IntrospectionError::Protocol(e.to_string()))?;
        if !answer.active {
            return Ok(TokenStatus::Inactive);
        }
        if answer.interaction_uri.is_some() {
            let needs: NeedsConnection =
                serde_json::from_slice(&body).map_err(|e| IntrospectionError::Protocol(e.to_string()))?;
            return Ok(TokenStatus::ConnectFirst(Arc::new(needs)));
        }
        let active: ActiveToken =
            serde_json::from_slice(&body).map_err(|e| IntrospectionError::Protocol(e.to_string()))?;
        Ok(TokenStatus::Active(Arc::new(active)))
    }

    /// Cached no longer than `max_cache`, the token's `exp`, or the upstream expiry (less
    /// `upstream_skew`, so that Tether refreshes the upstream token in time).
    fn cache_until(&self, token: &ActiveToken, now: UnixTime) -> UnixTime {
        let max = now.saturating_add(i64::try_from(self.config.max_cache.as_secs()).unwrap_or(i64::MAX));
        let skew = i64::try_from(self.config.upstream_skew.as_secs()).unwrap_or(i64::MAX);
        let upstream = token.upstream.expires_at.map_or(i64::MAX, |e| e.saturating_sub(skew));
        max.min(token.exp).min(upstream)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn token(exp: UnixTime, upstream_expires_at: Option<UnixTime>) -> ActiveToken {
        serde_json::from_value(serde_json::json!({
            "sub": "1", "client_id": "c", "scope": "a b", "aud": "https://r", "iss": "https://as", "exp": exp,
            "upstream": {"provider": "p", "access_token": "t", "token_type": "bearer", "expires_at": upstream_expires_at}
        }))
        .unwrap()
    }

    #[test]
    fn the_cache_never_outlives_the_token_the_upstream_credential_or_its_bound() {
        let client = IntrospectionClient::with_clock(
            IntrospectionConfig::new("http://127.0.0.1:1/introspect", "r", "s"),
            Arc::new(ManualClock::starting_at(1000)),
        )
        .unwrap();
        assert_eq!(client.cache_until(&token(5000, None), 1000), 1030, "max_cache");
        assert_eq!(client.cache_until(&token(1010, None), 1000), 1010, "token exp");
        assert_eq!(client.cache_until(&token(5000, Some(1040)), 1000), 1010, "upstream expiry less skew");
        assert!(client.cache_until(&token(5000, Some(1020)), 1000) <= 1000, "upstream about to expire: no caching");
        assert!(token(1, None).has_scope("b") && !token(1, None).has_scope("c"));
    }
}
