//! The `oauth2` crate client Tether uses toward a provider, with the token-response members
//! OIDC and GitHub add (`id_token`, `refresh_token_expires_in`).

use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, RedirectUrl,
    RequestTokenError, StandardErrorResponse, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use url::Url;

use super::http::HttpError;
use super::{ProviderConfig, TokenAuth, UpstreamError, UpstreamTokens};
use crate::clock::UnixTime;

/// Token-response members beyond RFC 6749 that Tether reads.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ExtraFields {
    /// OpenID Connect Core §3.1.3.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// GitHub Apps with expiring user tokens, and Keycloak (`refresh_expires_in`, where 0
    /// means an offline token without one): the refresh token's own lifetime.
    #[serde(default, alias = "refresh_expires_in", skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
    /// Values for API callers, read from the answer by `shape`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tether_extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// The user named in the answer, read by `shape`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tether_identity: Option<AnsweredIdentity>,
}

/// The identity a token answer carried (see `shape::IdentityPaths`).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct AnsweredIdentity {
    pub subject: Option<String>,
    pub account: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl AnsweredIdentity {
    /// The identity, when the answer named a subject.
    pub fn identity(self) -> Option<super::Identity> {
        let clean = |v: Option<String>| super::identity::text(v.map(serde_json::Value::String).as_ref());
        let subject = self.subject.filter(|s| !s.is_empty() && s.len() <= 255)?;
        Some(super::Identity {
            subject,
            account: clean(self.account),
            name: clean(self.name),
            email: clean(self.email),
        })
    }
}

impl std::fmt::Debug for ExtraFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraFields")
            .field("has_id_token", &self.id_token.is_some())
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish()
    }
}

impl ExtraTokenFields for ExtraFields {}

pub type UpstreamTokenResponse = StandardTokenResponse<ExtraFields, BasicTokenType>;

pub type OAuthClient = Client<
    BasicErrorResponse,
    UpstreamTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

pub fn build(config: &ProviderConfig, authorize_url: &Url, token_url: &Url) -> OAuthClient {
    let mut client = Client::new(ClientId::new(config.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(authorize_url.clone()))
        .set_token_uri(TokenUrl::from_url(token_url.clone()))
        .set_redirect_uri(RedirectUrl::from_url(config.callback_url.clone()))
        .set_auth_type(match config.token_auth {
            TokenAuth::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuth::ClientSecretPost => AuthType::RequestBody,
        });
    if let Some(secret) = &config.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
    }
    client
}

/// The token set of a response. On a refresh (`previous` given), a provider that sends no new
/// refresh token keeps the old one valid (RFC 6749 §6), so the old one and its expiry are kept.
/// Values for API callers: the provider's static hints, then what the previous answer carried,
/// then what this one carries (Salesforce sends `instance_url` again on every refresh).
pub fn tokens_from(
    response: &UpstreamTokenResponse,
    previous: Option<&UpstreamTokens>,
    hints: &std::collections::BTreeMap<String, serde_json::Value>,
    now: UnixTime,
) -> UpstreamTokens {
    let mut extra = hints.clone();
    if let Some(previous) = previous {
        extra.extend(
            previous.extra.iter().filter(|(k, _)| !hints.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    if let Some(answered) = &response.extra_fields().tether_extra {
        extra.extend(answered.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let after = |secs: u64| now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
    let (refresh_token, refresh_expires_at) = match response.refresh_token() {
        Some(new) => (
            Some(new.secret().clone()),
            response.extra_fields().refresh_token_expires_in.filter(|secs| *secs > 0).map(after),
        ),
        None => (previous.and_then(|p| p.refresh_token.clone()), previous.and_then(|p| p.refresh_expires_at)),
    };
    UpstreamTokens {
        access_token: response.access_token().secret().clone(),
        token_type: match response.token_type() {
            BasicTokenType::Bearer => "bearer".to_owned(),
            BasicTokenType::Mac => "mac".to_owned(),
            BasicTokenType::Extension(other) => other.clone(),
        },
        refresh_token,
        refresh_expires_at,
        expires_at: response.expires_in().map(|d| after(d.as_secs())),
        obtained_at: Some(now),
        scope: response.scopes().map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" ")),
        extra,
    }
}

type TokenError = RequestTokenError<HttpError, StandardErrorResponse<BasicErrorResponseType>>;

/// A refusal (an OAuth error answer: the code or grant is bad) or an outage (anything else).
pub fn classify(err: TokenError) -> UpstreamError {
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
