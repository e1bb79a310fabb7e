//! Upstream providers: sending the user there, exchanging the code, learning who they are.
//!
//! Every provider is an OAuth 2.0 authorization server reached through the `oauth2` crate;
//! the kinds differ in their defaults and quirks (see `github`). Nothing here knows about
//! MCP clients or the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::UnixTime;

pub mod github;
pub mod http;
pub mod identity;

use self::http::{HttpError, UpstreamHttp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OAuth 2.0 provider, endpoints given by hand.
    Oauth2,
    /// GitHub (github.com or GitHub Enterprise Server), OAuth Apps and GitHub Apps.
    Github,
}

/// How Tether authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    ClientSecretBasic,
    ClientSecretPost,
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
    pub authorize_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
    /// Member of the userinfo response holding the user's stable id.
    pub subject_field: String,
    /// Upstream scopes requested on every authorization.
    pub scopes: Vec<String>,
    pub extra_authorize_params: Vec<(String, String)>,
    pub pkce: bool,
    pub timeout: Duration,
    /// Tether's `/callback`, registered at the provider.
    pub callback_url: Url,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
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

/// Who the user is at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The provider refused (4xx, an OAuth error): the code or grant is bad. Not transient.
    #[error("provider refused: {error}")]
    Rejected { error: String },
    /// The provider could not be reached or failed (5xx, 429, timeout). Transient.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something that is not what the protocol says.
    #[error("provider answered unexpectedly: {0}")]
    Invalid(String),
}

type OAuthClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub struct Provider {
    config: ProviderConfig,
    client: OAuthClient,
    http: UpstreamHttp,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("id", &self.config.id).finish_non_exhaustive()
    }
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Self, String> {
        let mut client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(config.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(config.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(config.callback_url.clone()))
            .set_auth_type(match config.token_auth {
                TokenAuth::ClientSecretBasic => AuthType::BasicAuth,
                TokenAuth::ClientSecretPost => AuthType::RequestBody,
            });
        if let Some(secret) = &config.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        let http = UpstreamHttp::new(config.timeout)?;
        Ok(Self { config, client, http })
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

    /// Where to send the browser: Tether's own `state`, PKCE challenge and scopes.
    pub fn authorize_url(&self, state: &str, pkce_verifier: &str, scopes: &[String]) -> Url {
        let mut request = self
            .client
            .authorize_url(|| CsrfToken::new(state.to_owned()))
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
        if self.config.pkce {
            let verifier = PkceCodeVerifier::new(pkce_verifier.to_owned());
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        }
        for (name, value) in &self.config.extra_authorize_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        request.url().0
    }

    /// Exchanges the code the provider sent to `/callback`.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        now: UnixTime,
    ) -> Result<UpstreamTokens, UpstreamError> {
        let mut request = self.client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if self.config.pkce {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        Ok(tokens_from(&response, None, now))
    }

    /// Uses a refresh token. When the provider does not rotate it, the old one is kept.
    pub async fn refresh(&self, refresh_token: &str, now: UnixTime) -> Result<UpstreamTokens, UpstreamError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = self.client.exchange_refresh_token(&token).request_async(&self.http).await.map_err(classify)?;
        Ok(tokens_from(&response, Some(refresh_token), now))
    }

    /// The user's stable id at the provider, read with the fresh access token.
    pub async fn identity(&self, tokens: &UpstreamTokens) -> Result<Identity, UpstreamError> {
        identity::fetch(&self.http, &self.config, &tokens.access_token).await
    }
}

fn tokens_from(
    response: &oauth2::basic::BasicTokenResponse,
    previous_refresh: Option<&str>,
    now: UnixTime,
) -> UpstreamTokens {
    let expires_at = response.expires_in().map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    UpstreamTokens {
        access_token: response.access_token().secret().clone(),
        token_type: match response.token_type() {
            BasicTokenType::Bearer => "bearer".to_owned(),
            BasicTokenType::Mac => "mac".to_owned(),
            BasicTokenType::Extension(other) => other.clone(),
        },
        refresh_token: response
            .refresh_token()
            .map(|t| t.secret().clone())
            .or_else(|| previous_refresh.map(str::to_owned)),
        expires_at,
        scope: response.scopes().map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" ")),
    }
}

type TokenError = RequestTokenError<HttpError, StandardErrorResponse<BasicErrorResponseType>>;

fn classify(err: TokenError) -> UpstreamError {
    match err {
        RequestTokenError::ServerResponse(e) => UpstreamError::Rejected { error: e.error().as_ref().to_owned() },
        RequestTokenError::Request(HttpError::TooLarge) => {
            UpstreamError::Invalid("token response too large".to_owned())
        }
        RequestTokenError::Request(e) => UpstreamError::Unavailable(e.to_string()),
        // Only the serde path is reported: the body may hold a token.
        RequestTokenError::Parse(e, _) => {
            UpstreamError::Invalid(format!("unreadable token response at `{}`", e.path()))
        }
        RequestTokenError::Other(e) => UpstreamError::Invalid(e),
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
}
