//! Where a provider's endpoints come from: configured by hand, or discovered from its OpenID
//! Connect issuer (OIDC Discovery 1.0), lazily and retried, so that one provider being down
//! at start-up does not keep Tether from starting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use super::client::{OAuthClient, build};
use super::http::UpstreamHttp;
use super::id_token::{Jwks, issuer_matches};
use super::{Pkce, ProviderConfig, UpstreamError};

/// After a failed discovery, requests fail fast for this long before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A provider's resolved endpoints.
#[derive(Debug)]
pub struct Endpoints {
    pub client: OAuthClient,
    /// For providers with a separate refresh endpoint.
    pub refresh_client: Option<OAuthClient>,
    pub userinfo_url: Option<Url>,
    pub revocation_url: Option<Url>,
    /// For OpenID providers: the issuer ID tokens must name, and its keys.
    pub issuer: Option<String>,
    pub jwks: Option<Arc<Jwks>>,
    /// RFC 9207: the provider names itself (`iss`) in every authorization response.
    pub response_iss: bool,
    /// Whether authorization requests carry a PKCE challenge (S256).
    pub pkce: bool,
}

/// Endpoints given in the configuration.
#[derive(Debug, Clone)]
pub struct StaticEndpoints {
    pub authorize_url: Url,
    pub token_url: Url,
    pub userinfo_url: Option<Url>,
    pub revocation_url: Option<Url>,
}

#[derive(Debug, Clone)]
pub enum EndpointSource {
    Static(Box<StaticEndpoints>),
    /// OIDC discovery from this issuer (`{issuer}/.well-known/openid-configuration`).
    Discover {
        issuer: String,
    },
}

#[derive(Debug)]
pub enum EndpointState {
    Ready(Arc<Endpoints>),
    Discover { issuer: String, resolved: RwLock<Option<Arc<Endpoints>>>, last_attempt: Mutex<Option<Instant>> },
}

/// The discovery document members Tether uses.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    #[serde(default)]
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
    #[serde(default)]
    revocation_endpoint: Option<Url>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

impl EndpointState {
    pub fn new(config: &ProviderConfig) -> Self {
        match &config.endpoints {
            EndpointSource::Static(s) => Self::Ready(Arc::new(Endpoints {
                client: build(config, &s.authorize_url, &s.token_url),
                refresh_client: config.quirks.refresh_url.as_ref().map(|r| build(config, &s.authorize_url, r)),
                userinfo_url: s.userinfo_url.clone(),
                revocation_url: s.revocation_url.clone(),
                issuer: None,
                jwks: None,
                response_iss: false,
                pkce: config.pkce != Pkce::Off,
            })),
            EndpointSource::Discover { issuer } => {
                Self::Discover { issuer: issuer.clone(), resolved: RwLock::new(None), last_attempt: Mutex::new(None) }
            }
        }
    }

    pub async fn get(&self, config: &ProviderConfig, http: &UpstreamHttp) -> Result<Arc<Endpoints>, UpstreamError> {
        let (issuer, resolved, last_attempt) = match self {
            Self::Ready(endpoints) => return Ok(endpoints.clone()),
            Self::Discover { issuer, resolved, last_attempt } => (issuer, resolved, last_attempt),
        };
        if let Some(endpoints) = resolved.read().await.as_ref() {
            return Ok(endpoints.clone());
        }
        let mut last = last_attempt.lock().await;
        if let Some(endpoints) = resolved.read().await.as_ref() {
            return Ok(endpoints.clone());
        }
        if last.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(UpstreamError::Unavailable(format!("discovery of {issuer} failed recently")));
        }
        *last = Some(Instant::now());
        let endpoints = Arc::new(discover(config, http, issuer).await.inspect_err(|e| {
            tracing::warn!(provider = %config.id, url = %discovery_url(issuer), error = %e, "OIDC discovery failed; the provider is unavailable until it succeeds");
        })?);
        tracing::info!(provider = %config.id, %issuer, "OIDC discovery succeeded");
        *resolved.write().await = Some(endpoints.clone());
        Ok(endpoints)
    }
}

/// Whether to send a PKCE challenge, given the methods the provider lists (RFC 8414
/// `code_challenge_methods_supported`; absent: not said, and S256 is sent).
fn sends_pkce(mode: Pkce, listed: Option<&[String]>) -> Result<bool, UpstreamError> {
    let s256 = listed.is_none_or(|methods| methods.iter().any(|m| m == "S256"));
    match mode {
        Pkce::Required if !s256 => Err(UpstreamError::Invalid(
            "the provider does not list PKCE S256, which this provider's `pkce = \"required\"` needs".to_owned(),
        )),
        Pkce::Required => Ok(true),
        Pkce::Optional => Ok(s256),
        Pkce::Off => Ok(false),
    }
}

pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

async fn discover(config: &ProviderConfig, http: &UpstreamHttp, issuer: &str) -> Result<Endpoints, UpstreamError> {
    let request = http.client().get(discovery_url(issuer)).header(reqwest::header::ACCEPT, "application/json");
    let (status, body) = http.send(request).await.map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    if status != 200 {
        return Err(UpstreamError::Unavailable(format!("discovery answered {status}")));
    }
    let doc: DiscoveryDocument =
        serde_json::from_slice(&body).map_err(|e| UpstreamError::Invalid(format!("discovery document: {e}")))?;
    // OIDC Discovery §4.3: the issuer in the document MUST be identical to the one used.
    // Multi-tenant endpoints (Microsoft `common`) publish `.../{tenantid}/...` instead: taken
    // only when configured so, and then every ID token must name the tenant it comes from.
    let templated = config.quirks.tenant.is_some() && issuer_matches(&doc.issuer, issuer);
    if doc.issuer != issuer && !templated {
        return Err(UpstreamError::Invalid(format!("discovery names issuer `{}`, not `{issuer}`", doc.issuer)));
    }
    let pkce = sends_pkce(config.pkce, doc.code_challenge_methods_supported.as_deref())?;
    Ok(Endpoints {
        client: build(config, &doc.authorization_endpoint, &doc.token_endpoint),
        refresh_client: config.quirks.refresh_url.as_ref().map(|r| build(config, &doc.authorization_endpoint, r)),
        userinfo_url: doc.userinfo_endpoint,
        revocation_url: doc.revocation_endpoint,
        issuer: Some(doc.issuer),
        jwks: Some(Arc::new(Jwks::new(doc.jwks_uri, http.clone()))),
        response_iss: doc.authorization_response_iss_parameter_supported,
        pkce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_is_s256_or_nothing_as_the_mode_and_the_provider_say() {
        let s256 = vec!["plain".to_owned(), "S256".to_owned()];
        let plain_only = vec!["plain".to_owned()];
        assert!(sends_pkce(Pkce::Required, None).unwrap());
        assert!(sends_pkce(Pkce::Required, Some(&s256)).unwrap());
        assert!(sends_pkce(Pkce::Required, Some(&plain_only)).is_err(), "never downgraded to plain or nothing");
        assert!(sends_pkce(Pkce::Optional, Some(&s256)).unwrap());
        assert!(!sends_pkce(Pkce::Optional, Some(&plain_only)).unwrap());
        assert!(sends_pkce(Pkce::Optional, None).unwrap());
        assert!(!sends_pkce(Pkce::Off, Some(&s256)).unwrap());
    }
}
