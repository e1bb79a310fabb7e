//! The refresh token grant with rotation (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::{ClientRecord, GrantStatus, RefreshStatus};

use super::super::error::{ErrorCode, OAuthError};
use super::super::registry::Registry;
use super::super::scope;
use super::super::tokens::{Minter, TokenResponse};
use super::{TokenStores, check_resource, respond};

#[derive(Debug)]
pub struct RefreshRequest {
    pub refresh_token: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

pub async fn refresh(
    stores: TokenStores<'_>,
    minter: Minter<'_>,
    registry: &Registry,
    client: &ClientRecord,
    req: RefreshRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let digest = hash::digest(&req.refresh_token);
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
    let token = stores.refresh.refresh(&digest).await?.ok_or_else(invalid)?;
    // RFC 6749 §6: the refresh token is bound to the client it was issued to.
    if token.client_id != client.client_id {
        return Err(invalid());
    }
    if token.status == RefreshStatus::Rotated {
        return Err(OAuthError::invalid_grant("refresh token was already used"));
    }
    let grant = stores.grants.grant(&token.grant_id).await?.ok_or_else(invalid)?;
    match grant.status {
        GrantStatus::Active => {}
        // The upstream provider refused to refresh: the client must send the user through
        // /authorize again, which `invalid_grant` makes MCP clients do.
        GrantStatus::Dead => {
            return Err(OAuthError::invalid_grant("the upstream provider ended this authorization; authorize again"));
        }
        GrantStatus::Revoked => return Err(invalid()),
    }
    check_resource(registry, req.resource.as_deref(), &grant.info.resource)?;
    // RFC 6749 §6: a refresh may narrow the scope, never widen it.
    let requested = scope::parse(req.scope.as_deref())?;
    let scope = if requested.is_empty() {
        grant.info.scope.clone()
    } else if requested.iter().all(|s| grant.info.scope.contains(s)) {
        requested
    } else {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "a refresh cannot add scopes"));
    };
    // Rotation: exactly one request wins the compare-and-set on the old token.
    if !stores.refresh.mark_rotated(&digest, now).await? {
        return Err(OAuthError::invalid_grant("refresh token was already used"));
    }
    respond(stores, minter, registry, &grant.id, &grant.info, &scope, now).await
}
