//! The token endpoint's grants, one file per grant type (OAuth 2.1 §4.1.3, §4.3).

use serde::Deserialize;

use crate::clock::UnixTime;
use crate::store::{
    ClientRecord, ClientSource, ClientStore, CodeStore, GrantInfo, GrantRecord, GrantStore, IndexKey, RefreshStore,
};

use super::error::{ErrorCode, OAuthError};
use super::family;
use super::registry::{Registry, Resource};
use super::tokens::{Minter, TokenResponse};
use super::vault::Vault;

pub mod authorization_code;
pub mod refresh_token;

/// The token request body as sent; every member optional so that a missing one is an
/// OAuth error, not a parse failure.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    // RFC 8693 token exchange (MCP servers; see `oauth::exchange`).
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub audience: Option<String>,
    /// RFC 7523 `jwt-bearer`: the ID-JAG.
    pub assertion: Option<String>,
}

impl TokenForm {
    /// The members of a jwt-bearer (ID-JAG) request.
    pub fn jag_request(self) -> super::enterprise::JagRequest {
        super::enterprise::JagRequest { assertion: self.assertion, scope: self.scope, resource: self.resource }
    }

    /// The members of a token exchange request.
    pub fn exchange_request(self) -> super::exchange::ExchangeRequest {
        super::exchange::ExchangeRequest {
            subject_token: self.subject_token,
            subject_token_type: self.subject_token_type,
            requested_token_type: self.requested_token_type,
            actor_token: self.actor_token,
            actor_token_type: self.actor_token_type,
            audience: self.audience,
            resource: self.resource,
            scope: self.scope,
        }
    }
}

/// A token request, by grant type.
#[derive(Debug)]
pub enum TokenRequest {
    AuthorizationCode(authorization_code::CodeRequest),
    RefreshToken(refresh_token::RefreshRequest),
}

impl TryFrom<TokenForm> for TokenRequest {
    type Error = OAuthError;

    fn try_from(form: TokenForm) -> Result<Self, OAuthError> {
        match form.grant_type.as_deref() {
            Some("authorization_code") => Ok(Self::AuthorizationCode(authorization_code::CodeRequest {
                code: required(form.code, "code")?,
                redirect_uri: form.redirect_uri,
                code_verifier: form.code_verifier,
                resource: form.resource,
            })),
            Some("refresh_token") => Ok(Self::RefreshToken(refresh_token::RefreshRequest {
                refresh_token: required(form.refresh_token, "refresh_token")?,
                scope: form.scope,
                resource: form.resource,
            })),
            None => Err(OAuthError::invalid_request("grant_type is required")),
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "supported grant types: authorization_code, refresh_token, and for MCP servers \
                 urn:ietf:params:oauth:grant-type:token-exchange",
            )),
        }
    }
}

fn required(value: Option<String>, name: &'static str) -> Result<String, OAuthError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// The stores the token endpoint uses.
#[derive(Clone, Copy)]
pub struct TokenStores<'a> {
    pub clients: &'a dyn ClientStore,
    pub codes: &'a dyn CodeStore,
    pub grants: &'a dyn GrantStore,
    pub refresh: &'a dyn RefreshStore,
    pub index: &'a dyn crate::store::GrantIndex,
    /// Connections, for grants made without a browser (ID-JAG).
    pub links: &'a dyn crate::store::LinkStore,
    /// Single-use reservations (ID-JAG `jti`).
    pub locks: &'a dyn crate::store::LockStore,
    /// Which clients' lifetimes this process renewed lately.
    pub touches: &'a crate::oauth::clients::ClientTouches,
}

/// What the token endpoint runs on.
#[derive(Clone, Copy)]
pub struct TokenContext<'a> {
    pub stores: TokenStores<'a>,
    pub minter: Minter<'a>,
    pub registry: &'a Registry,
    pub vault: &'a Vault,
    /// Ends grants on reuse and replay.
    pub revoker: super::revocation::Revoker<'a>,
    pub audit: &'a crate::audit::Auditor,
    /// The request, for audit events.
    pub origin: &'a crate::audit::Origin,
}

/// Runs a token request for an authenticated client.
pub async fn issue(
    ctx: TokenContext<'_>,
    client: &ClientRecord,
    request: TokenRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let TokenContext { stores, minter, .. } = ctx;
    let response = match request {
        TokenRequest::AuthorizationCode(req) => authorization_code::exchange(ctx, client, req, now).await,
        TokenRequest::RefreshToken(req) => refresh_token::refresh(ctx, client, req, now).await,
    }?;
    // A registered client in use stays registered; one never used is collected.
    if client.source == ClientSource::Dynamic {
        stores.touches.keep(stores.clients, &client.client_id, minter.lifetimes.client_idle, now).await?;
    }
    Ok(response)
}

/// Mints the token response for a grant: an access token for `scope` and, when the grant
/// allows it, the refresh token of `generation` of its family. Nothing is stored: the caller
/// starts or advances the family. Returns the response and the digest of the refresh token.
fn mint(
    minter: Minter<'_>,
    registry: &Registry,
    vault: &Vault,
    grant: &GrantRecord,
    scope: &[String],
    generation: u64,
    now: UnixTime,
) -> Result<(TokenResponse, Option<String>), OAuthError> {
    let resource = served(registry, &grant.info)?;
    let (access_token, expires_in) = minter.access_token(&grant.id, &grant.info, &resource.uri, scope, now)?;
    let (refresh_token, refresh_digest) = if grant.info.offline {
        let (token, digest) = family::issue(vault.keys(), &grant.id, generation);
        (Some(token), Some(digest))
    } else {
        (None, None)
    };
    let response = TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
        refresh_token,
        scope: (!scope.is_empty()).then(|| scope.join(" ")),
    };
    Ok((response, refresh_digest))
}

/// The audit event of tokens handed to a client.
fn token_event(
    grant: &GrantRecord,
    client: &ClientRecord,
    grant_type: &'static str,
    scope: &[String],
    now: UnixTime,
) -> crate::audit::Event {
    use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
    Event::new(EventType::TokenIssued, Actor::new(ActorKind::Client, &client.client_id), Outcome::Success, now)
        .grant(&grant.id)
        .user(grant.info.user())
        .client(&client.client_id)
        .resource(&grant.info.resource)
        .provider(&grant.info.provider)
        .scope(scope)
        .detail("grant_type", grant_type)
        .detail("refresh_token", grant.info.offline)
}

/// The grant lives as long as its newest refresh token (or, without one, its access token).
async fn extend(
    stores: TokenStores<'_>,
    minter: Minter<'_>,
    grant_id: &str,
    grant: &GrantInfo,
) -> Result<(), OAuthError> {
    let lifetimes = minter.lifetimes;
    let ttl = if grant.offline { lifetimes.refresh_token } else { lifetimes.access_token };
    // The grant's listings outlive it by a tombstone's life (a revoked grant stays listed).
    let listings = IndexKey::of(grant);
    let (extended, kept) = tokio::join!(
        stores.grants.set_grant_ttl(grant_id, ttl),
        stores.index.keep_indexes(&listings, ttl + lifetimes.tombstone),
    );
    extended?;
    kept?;
    Ok(())
}

/// The resource a grant is for, while it is still configured.
fn served<'r>(registry: &'r Registry, grant: &GrantInfo) -> Result<&'r Resource, OAuthError> {
    registry
        .resource(&grant.resource)
        .ok_or_else(|| OAuthError::invalid_grant("the grant's resource is no longer served"))
}

/// RFC 8707 §2.2: a `resource` on the token request must be the one the grant is for.
fn check_resource(registry: &Registry, requested: Option<&str>, bound: &str) -> Result<(), OAuthError> {
    match requested {
        None => Ok(()),
        Some(uri) => match registry.resource_for(Some(uri)) {
            Ok(resource) if resource.id == bound => Ok(()),
            _ => Err(OAuthError::new(ErrorCode::InvalidTarget, "resource differs from the one authorized")),
        },
    }
}
