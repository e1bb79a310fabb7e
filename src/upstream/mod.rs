//! Upstream providers: sending the user there, exchanging the code, learning who they are,
//! refreshing and revoking their tokens.
//!
//! Every provider is an OAuth 2.0 authorization server reached through the `oauth2` crate. The
//! kinds differ in where their endpoints come from (configured or OIDC discovery), how the
//! user is identified (a user endpoint or a verified ID token) and their quirks. Nothing here
//! knows about MCP clients or the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RefreshToken, Scope};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::UnixTime;

pub mod client;
pub mod discovery;
pub mod github;
pub mod http;
pub mod id_token;
pub mod identity;
pub mod revoke;
pub mod shape;

use self::client::{classify, tokens_from};
pub use self::discovery::{EndpointSource, StaticEndpoints};
use self::discovery::{EndpointState, Endpoints};
use self::http::UpstreamHttp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OAuth 2.0 provider, endpoints given by hand.
    Oauth2,
    /// GitHub (github.com or GitHub Enterprise Server), OAuth Apps and GitHub Apps.
    Github,
    /// Google: OpenID Connect with offline access.
    Google,
    /// Any OpenID Connect provider, by issuer.
    Oidc,
}

/// How Tether authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

/// Whether Tether sends a PKCE challenge (always S256; `plain` is never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pkce {
    /// Always; an OpenID provider whose discovery document lists challenge methods without
    /// S256 is refused.
    #[default]
    Required,
    /// Unless the provider's discovery document lists challenge methods without S256.
    Optional,
    /// Never (providers that refuse a challenge, or ignore it: Slack without the opt-in).
    Off,
}

/// How the provider revokes a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationStyle {
    /// RFC 7009: POST the token (the refresh token when there is one) with the client's
    /// credentials.
    #[default]
    Rfc7009,
    /// POST with the access token as the bearer credential and no body (Dropbox, Linear).
    Bearer,
    /// DELETE the URL with `{refresh_token}` in its path (HubSpot).
    Delete,
}

/// Multi-tenant OpenID providers (Microsoft `common`/`organizations`): the issuer names the
/// tenant, so it is checked against the ID token's tenant claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRule {
    /// The ID token claim naming the tenant (`tid`), substituted for `{tenantid}` in the
    /// discovered issuer and handed on as `upstream.extra.tenant_id`.
    pub claim: String,
    /// Only these tenants may sign in (empty: any).
    pub allowed: Vec<String>,
}

/// A call made once after the code exchange for values API callers need (Atlassian's
/// accessible resources: the cloud id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraCall {
    pub url: Url,
    /// Name and path (see `shape::pick`) of each value taken from the answer.
    pub values: Vec<(String, String)>,
}

/// Where the user's stable id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectSource {
    /// A member of the user endpoint's answer (GitHub: `id`).
    Userinfo(String),
    /// The verified ID token's `sub` (OpenID Connect), with `userinfo` as the fallback when the
    /// token response carries no ID token.
    IdToken,
    /// The token answer itself names the user (Slack `authed_user.id`): see `shape`.
    TokenResponse,
}

/// Everything needed to talk to one provider, already validated.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub display_name: String,
    pub kind: ProviderKind,
    pub client_id: String,
    /// Absent for providers that register Tether as a public client (PKCE only).
    pub client_secret: Option<SecretString>,
    pub token_auth: TokenAuth,
    pub endpoints: EndpointSource,
    pub subject: SubjectSource,
    /// Upstream scopes requested on every authorization.
    pub scopes: Vec<String>,
    pub extra_authorize_params: Vec<(String, String)>,
    pub pkce: Pkce,
    pub timeout: Duration,
    /// Tether's `/callback`, registered at the provider.
    pub callback_url: Url,
    /// Revoke the upstream grant when Tether's grant is revoked.
    pub revoke_upstream: bool,
    /// GitHub's API base, for application grant deletion.
    pub github_api_url: Option<Url>,
    /// The provider's page listing the apps a person authorized there.
    pub account_url: Option<Url>,
    /// How the provider bends OAuth (token answers, scopes, refresh requests).
    pub quirks: Quirks,
}

/// A provider's departures from plain OAuth 2.0, and what API callers need beside the token.
#[derive(Debug, Clone, Default)]
pub struct Quirks {
    pub shape: shape::TokenShape,
    /// Between scopes in the authorization request (`,` for Slack and Linear).
    pub scope_separator: Option<String>,
    /// The authorization parameter that carries the scopes (`user_scope` for Slack).
    pub scope_param: Option<String>,
    /// Refresh requests go here rather than to the token endpoint (Figma).
    pub refresh_url: Option<Url>,
    /// Added to every refresh request.
    pub refresh_params: Vec<(String, String)>,
    /// Static values for API callers (`api_base_url`, `api_headers`), merged into `extra`.
    pub api_hints: std::collections::BTreeMap<String, serde_json::Value>,
    /// Headers the user endpoint needs (`Notion-Version`).
    pub userinfo_headers: Vec<(String, String)>,
    /// Call the user endpoint with POST (and this JSON body, if any) rather than GET.
    pub userinfo_post: bool,
    pub userinfo_body: Option<String>,
    /// Paths in the user endpoint's answer for what people know the account by (default:
    /// `login`, `preferred_username`, `username` or `email`; `name`; `email`).
    pub account_field: Option<String>,
    pub name_field: Option<String>,
    pub email_field: Option<String>,
    /// Values for API callers from the user endpoint's answer (HubSpot `hub_id`).
    pub userinfo_values: Vec<(String, String)>,
    /// Values for API callers from one call after the exchange (Atlassian cloud ids).
    pub extra_call: Option<ExtraCall>,
    pub revocation_style: RevocationStyle,
    /// Send the granted scopes with every refresh request (Okta).
    pub refresh_scope: bool,
    /// Claims of the ID token naming the user, `+`-joined (Microsoft `tid+oid`); `sub` if unset.
    pub id_token_subject: Option<String>,
    pub tenant: Option<TenantRule>,
}

/// The upstream token set, as sealed into a grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTokens {
    pub access_token: String,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixTime>,
    /// When Tether obtained the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<UnixTime>,
    /// When the refresh token itself stops working (GitHub Apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What an API caller needs beside the token (Salesforce `instance_url`, Slack `team_id`,
    /// the API base and headers the provider wants): handed to the MCP server as
    /// `upstream.extra`. Never a secret the provider gave for Tether alone.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("token_type", &self.token_type)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl UpstreamTokens {
    /// Whether the access token expires within `skew` seconds of `now`. The skew never exceeds
    /// half the token's life: a provider issuing tokens shorter-lived than the skew would
    /// otherwise be asked for a new one on every use.
    pub fn expires_within(&self, skew: i64, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| {
            let half_life = self.obtained_at.map_or(skew, |obtained| (at - obtained) / 2);
            at.saturating_sub(skew.min(half_life).max(0)) <= now
        })
    }
}

/// The result of exchanging an authorization code.
pub struct Exchanged {
    pub tokens: UpstreamTokens,
    pub id_token: Option<String>,
    /// The identity the token answer carried, for providers that name the user there.
    pub identity: Option<Identity>,
}

/// Who the user is at the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    /// What people know the account by: the login (`octocat`), preferred username or email.
    pub account: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The provider refused (4xx, an OAuth error): the code or grant is bad. Not transient.
    #[error("provider refused: {error}")]
    Rejected { error: String },
    /// The provider could not be reached or failed (5xx, 429, timeout). Transient.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider signed the user in, but Tether's configuration does not admit them (a
    /// tenant outside the allow-list). Said to the user as it is.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The provider answered something that is not what the protocol says.
    #[error("provider answered unexpectedly: {0}")]
    Invalid(String),
}

pub struct Provider {
    config: ProviderConfig,
    http: UpstreamHttp,
    endpoints: EndpointState,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("id", &self.config.id).finish_non_exhaustive()
    }
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Self, String> {
        let http = UpstreamHttp::new(config.timeout)?;
        let endpoints = EndpointState::new(&config);
        Ok(Self { config, http, endpoints, metrics: None })
    }

    /// Counts every call to this provider by outcome.
    #[must_use]
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn record<T>(&self, call: &'static str, result: &Result<T, UpstreamError>) {
        if let Some(metrics) = &self.metrics {
            let outcome = match result {
                Ok(_) => "ok",
                Err(UpstreamError::Rejected { .. }) => "refused",
                Err(UpstreamError::Unavailable(_)) => "transient",
                Err(UpstreamError::Invalid(_)) => "invalid",
                Err(UpstreamError::NotAllowed(_)) => "not_allowed",
            };
            metrics.upstream_call(&self.config.id, call, outcome);
        }
    }

    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        now: UnixTime,
    ) -> Result<Exchanged, UpstreamError> {
        let result = self.exchange_code_once(code, pkce_verifier, now).await;
        self.record("code_exchange", &result);
        result
    }

    pub async fn refresh(&self, tokens: &UpstreamTokens, now: UnixTime) -> Result<UpstreamTokens, UpstreamError> {
        let result = self.refresh_once(tokens, now).await;
        self.record("refresh", &result);
        result
    }

    pub async fn revoke(&self, tokens: &UpstreamTokens) -> Result<(), UpstreamError> {
        let result = self.revoke_once(tokens).await;
        self.record("revoke", &result);
        result
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn display_name(&self) -> &str {
        &self.config.display_name
    }

    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    /// Scopes requested on every authorization, before the resource's mapping is added.
    pub fn base_scopes(&self) -> &[String] {
        &self.config.scopes
    }

    /// OpenID providers get a `nonce` in the authorization request, checked in the ID token.
    pub fn uses_nonce(&self) -> bool {
        self.config.subject == SubjectSource::IdToken
    }

    /// The provider's own page where people see and remove authorized apps.
    pub fn account_url(&self) -> Option<&Url> {
        self.config.account_url.as_ref()
    }

    pub fn revokes_upstream(&self) -> bool {
        self.config.revoke_upstream
    }

    async fn endpoints(&self) -> Result<Arc<Endpoints>, UpstreamError> {
        self.endpoints.get(&self.config, &self.http).await
    }

    /// Resolves the endpoints now (OIDC discovery), so that start-up logs a provider that is
    /// down; the provider keeps answering "unavailable" until discovery succeeds.
    pub async fn warm_up(&self) {
        let _ = self.endpoints().await;
    }

    /// Where to send the browser: Tether's own `state`, PKCE challenge, nonce and scopes.
    pub async fn authorize_url(
        &self,
        state: &str,
        pkce_verifier: &str,
        nonce: Option<&str>,
        scopes: &[String],
    ) -> Result<Url, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let quirks = &self.config.quirks;
        let plain_scopes = quirks.scope_separator.is_none() && quirks.scope_param.is_none();
        let mut request = endpoints.client.authorize_url(|| CsrfToken::new(state.to_owned()));
        if plain_scopes {
            request = request.add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
        } else if !scopes.is_empty() {
            let joined = scopes.join(quirks.scope_separator.as_deref().unwrap_or(" "));
            request = request.add_extra_param(quirks.scope_param.clone().unwrap_or_else(|| "scope".to_owned()), joined);
        }
        if endpoints.pkce {
            let verifier = PkceCodeVerifier::new(pkce_verifier.to_owned());
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        }
        if let Some(nonce) = nonce {
            request = request.add_extra_param("nonce", nonce.to_owned());
        }
        for (name, value) in &self.config.extra_authorize_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        Ok(request.url().0)
    }

    /// RFC 9700 §4.4 (mix-up), RFC 9207: an authorization response naming an issuer must
    /// name this provider's; one that advertises `iss` must send it. Providers known only by
    /// their endpoints (no issuer) are told apart by the flow's state, which names them.
    pub async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), UpstreamError> {
        let endpoints = self.endpoints().await?;
        match (endpoints.issuer.as_deref(), iss) {
            (Some(expected), Some(got)) if !id_token::issuer_matches(expected, got) => Err(UpstreamError::Invalid(
                format!("the authorization response names another issuer than `{expected}`"),
            )),
            (Some(_), None) if endpoints.response_iss => {
                Err(UpstreamError::Invalid("the authorization response lacks the `iss` the provider advertises".into()))
            }
            _ => Ok(()),
        }
    }

    /// Exchanges the code the provider sent to `/callback`.
    async fn exchange_code_once(
        &self,
        code: &str,
        pkce_verifier: &str,
        now: UnixTime,
    ) -> Result<Exchanged, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let mut request = endpoints.client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if endpoints.pkce {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        }
        let http = http::Shaped { http: &self.http, shape: &self.config.quirks.shape };
        let response = request.request_async(&http).await.map_err(classify)?;
        let id_token = response.extra_fields().id_token.clone();
        let identity = response.extra_fields().tether_identity.clone().and_then(|i| i.identity());
        let tokens = tokens_from(&response, None, &self.config.quirks.api_hints, now);
        Ok(Exchanged { tokens, id_token, identity })
    }

    /// Uses the refresh token of `tokens`; a refusal means the upstream grant is gone.
    async fn refresh_once(&self, tokens: &UpstreamTokens, now: UnixTime) -> Result<UpstreamTokens, UpstreamError> {
        let Some(refresh_token) = &tokens.refresh_token else {
            return Err(UpstreamError::Rejected { error: "no refresh token".to_owned() });
        };
        if tokens.refresh_expires_at.is_some_and(|at| at <= now) {
            return Err(UpstreamError::Rejected { error: "the refresh token has expired".to_owned() });
        }
        let endpoints = self.endpoints().await?;
        let token = RefreshToken::new(refresh_token.clone());
        let quirks = &self.config.quirks;
        let client = endpoints.refresh_client.as_ref().unwrap_or(&endpoints.client);
        let mut request = client.exchange_refresh_token(&token);
        for (name, value) in &quirks.refresh_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        if quirks.refresh_scope
            && let Some(scope) = &tokens.scope
        {
            request = request.add_extra_param("scope", scope.clone());
        }
        let http = http::Shaped { http: &self.http, shape: &quirks.shape };
        let response = request.request_async(&http).await.map_err(classify)?;
        Ok(tokens_from(&response, Some(tokens), &quirks.api_hints, now))
    }

    /// The user's stable id: from the verified ID token, the token answer or the user
    /// endpoint. Values API callers need that only these answers carry (a tenant id, the
    /// user endpoint's `userinfo_values`, the `extra_call`'s) are added to the token set.
    pub async fn identity(
        &self,
        exchanged: &mut Exchanged,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<Identity, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let quirks = &self.config.quirks;
        let access_token = exchanged.tokens.access_token.clone();
        let userinfo = |field: String| {
            let url = endpoints.userinfo_url.clone();
            let access_token = access_token.clone();
            async move {
                let url = url.ok_or_else(|| UpstreamError::Invalid("the provider has no user endpoint".to_owned()))?;
                identity::fetch(&self.http, &url, &field, quirks, &access_token).await
            }
        };
        let mut found = serde_json::Map::new();
        let identity = match &self.config.subject {
            SubjectSource::Userinfo(field) => {
                let (identity, doc) = userinfo(field.clone()).await?;
                found.extend(shape::values(&doc, &quirks.userinfo_values));
                identity
            }
            SubjectSource::TokenResponse => exchanged
                .identity
                .clone()
                .ok_or_else(|| UpstreamError::Invalid("the token answer does not name the user".to_owned()))?,
            SubjectSource::IdToken => match (&exchanged.id_token, &endpoints.jwks, &endpoints.issuer) {
                (Some(id_token), Some(jwks), Some(issuer)) => {
                    let tenant_claim = quirks.tenant.as_ref().map(|t| t.claim.as_str());
                    let claims = jwks
                        .verify(id_token, issuer, tenant_claim, &self.config.client_id, nonce, now)
                        .await
                        .map_err(|e| match e {
                            id_token::IdTokenError::Jwks(_) => UpstreamError::Unavailable(e.to_string()),
                            other => UpstreamError::Invalid(other.to_string()),
                        })?;
                    if let Some(rule) = &quirks.tenant {
                        let tenant = claims.other.get(&rule.claim).and_then(|v| v.as_str()).unwrap_or_default();
                        if !rule.allowed.is_empty() && !rule.allowed.iter().any(|t| t.eq_ignore_ascii_case(tenant)) {
                            let named = if id_token::is_tenant_id(tenant) { tenant } else { "unnamed" };
                            return Err(UpstreamError::NotAllowed(format!(
                                "the account's organisation (tenant {named}) is not one this service admits"
                            )));
                        }
                        found.insert("tenant_id".to_owned(), serde_json::Value::from(tenant));
                    }
                    let subject = match &quirks.id_token_subject {
                        None => claims.sub.clone(),
                        Some(paths) => {
                            let mut doc = serde_json::Value::Object(claims.other.clone());
                            doc["sub"] = serde_json::Value::from(claims.sub.clone());
                            identity::subject(&doc, paths)?
                        }
                    };
                    Identity {
                        account: claims.preferred_username.clone().or_else(|| claims.email.clone()),
                        name: claims.name,
                        email: claims.email,
                        subject,
                    }
                }
                // OIDC Core §5.3: without an ID token, the userinfo `sub` names the user.
                _ => {
                    let field = quirks.id_token_subject.clone().unwrap_or_else(|| "sub".to_owned());
                    let (identity, doc) = userinfo(field).await?;
                    found.extend(shape::values(&doc, &quirks.userinfo_values));
                    identity
                }
            },
        };
        if let Some(call) = &quirks.extra_call {
            found.extend(identity::extra_call(&self.http, call, &access_token).await?);
        }
        exchanged.tokens.extra.extend(found);
        Ok(identity)
    }

    /// Whether the provider still accepts `tokens`' access token, asked at its user endpoint:
    /// `None` when it has none, or its answer proves nothing (only a 401 says "no").
    pub async fn still_accepts(&self, tokens: &UpstreamTokens) -> Result<Option<bool>, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let Some(url) = &endpoints.userinfo_url else { return Ok(None) };
        let result = identity::accepted(&self.http, url, &self.config.quirks, &tokens.access_token).await;
        self.record("token_check", &result);
        result
    }

    /// Revokes the upstream grant behind `tokens`, where the provider supports it.
    async fn revoke_once(&self, tokens: &UpstreamTokens) -> Result<(), UpstreamError> {
        if let (ProviderKind::Github, Some(api)) = (self.config.kind, &self.config.github_api_url) {
            return revoke::github(&self.http, &self.config, api, tokens).await;
        }
        let endpoints = self.endpoints().await?;
        let Some(url) = &endpoints.revocation_url else {
            return Err(UpstreamError::Invalid("the provider offers no revocation endpoint".to_owned()));
        };
        match self.config.quirks.revocation_style {
            RevocationStyle::Rfc7009 => revoke::rfc7009(&self.http, &self.config, url, tokens).await,
            RevocationStyle::Bearer => revoke::bearer(&self.http, url, tokens).await,
            RevocationStyle::Delete => revoke::delete(&self.http, url, tokens).await,
        }
    }
}

/// The configured providers, by id.
#[derive(Debug, Default, Clone)]
pub struct Providers(HashMap<String, Arc<Provider>>);

impl Providers {
    pub fn new(providers: Vec<Provider>) -> Self {
        Self(providers.into_iter().map(|p| (p.id().to_owned(), Arc::new(p))).collect())
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.0.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.0.values()
    }
}

#[cfg(test)]
mod tests {
    use super::UpstreamTokens;

    fn tokens(obtained_at: Option<i64>, expires_at: Option<i64>) -> UpstreamTokens {
        UpstreamTokens {
            access_token: "a".into(),
            token_type: "bearer".into(),
            refresh_token: Some("r".into()),
            expires_at,
            obtained_at,
            refresh_expires_at: None,
            scope: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn token_sets_sealed_by_the_previous_version_open_without_extra_values() {
        let old = r#"{"access_token":"a","token_type":"bearer","refresh_token":"r","expires_at":10,"scope":"s"}"#;
        let read: UpstreamTokens = serde_json::from_str(old).unwrap();
        assert_eq!(read.access_token, "a");
        assert!(read.extra.is_empty());
        let written = serde_json::to_string(&read).unwrap();
        assert!(!written.contains("extra"), "nothing new is written for providers without extra values: {written}");
    }

    #[test]
    fn tokens_are_refreshed_within_the_skew_but_never_before_half_their_life() {
        let hour = tokens(Some(0), Some(3600));
        assert!(!hour.expires_within(60, 3539));
        assert!(hour.expires_within(60, 3540));
        // A 30-second token with a 60-second skew: refreshed after 15 s, not at once.
        let short = tokens(Some(1000), Some(1030));
        assert!(!short.expires_within(60, 1000));
        assert!(!short.expires_within(60, 1014));
        assert!(short.expires_within(60, 1015));
        assert!(!tokens(Some(0), None).expires_within(60, i64::MAX - 1), "tokens without expiry never expire");
        assert!(tokens(None, Some(100)).expires_within(60, 40), "records without obtained_at use the skew");
    }
}
