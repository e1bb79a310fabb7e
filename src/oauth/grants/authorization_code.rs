//! The authorization code grant (OAuth 2.1 §4.1.3).

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::{ClientRecord, CodeTake, GrantStatus};

use super::super::error::OAuthError;
use super::super::pkce;
use super::super::registry::Registry;
use super::super::tokens::{Minter, TokenResponse};
use super::super::vault::Vault;
use super::{TokenStores, check_resource, extend, mint};

#[derive(Debug)]
pub struct CodeRequest {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub resource: Option<String>,
}

pub async fn exchange(
    stores: TokenStores<'_>,
    minter: Minter<'_>,
    registry: &Registry,
    vault: &Vault,
    client: &ClientRecord,
    req: CodeRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let code = match stores.codes.take_code(&hash::digest(&req.code), minter.lifetimes.authorization).await? {
        CodeTake::Fresh(code) => code,
        CodeTake::Reused { grant_id } => {
            // OAuth 2.1 §4.1.3: "If an authorization code is used more than once, the
            // authorization server MUST deny the request and SHOULD revoke (when possible) all
            // tokens previously issued based on that authorization code."
            stores.grants.set_grant_status(&grant_id, GrantStatus::Revoked).await?;
            tracing::warn!(client_id = %client.client_id, grant = %grant_id, "authorization code replayed; grant revoked");
            return Err(OAuthError::invalid_grant("authorization code was already used"));
        }
        CodeTake::Unknown => return Err(OAuthError::invalid_grant("authorization code is invalid or expired")),
    };
    if code.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("authorization code was issued to another client"));
    }
    // OAuth 2.1 §4.1.3: redirect_uri is required when the authorization request had one, and
    // must be identical (RFC 6749 §4.1.3).
    match req.redirect_uri.as_deref() {
        Some(uri) if uri == code.redirect_uri => {}
        Some(_) => {
            return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request"));
        }
        None if code.redirect_uri_sent => return Err(OAuthError::invalid_request("redirect_uri is required")),
        None => {}
    }
    pkce::verify(req.code_verifier.as_deref(), &code.code_challenge)?;
    check_resource(registry, req.resource.as_deref(), &code.resource)?;

    let grant = stores
        .grants
        .grant(&code.grant_id)
        .await?
        .filter(|g| g.status == GrantStatus::Active)
        .ok_or_else(|| OAuthError::invalid_grant("the authorization is no longer valid"))?;
    // Starting the refresh family and giving the grant its lifetime go out together (one
    // round trip on a pipelining connection), once nothing but a store failure can stop the
    // exchange.
    let (response, refresh_digest) = mint(minter, registry, vault, &grant, &code.scope, 0, now)?;
    let start = async {
        match &refresh_digest {
            Some(digest) => stores.refresh.start_family(&grant.id, digest).await,
            None => Ok(true),
        }
    };
    let (started, extended) = tokio::join!(start, extend(stores, minter, &grant.id, &grant.info));
    extended?;
    if !started? {
        return Err(OAuthError::invalid_grant("the authorization is no longer valid"));
    }
    Ok(response)
}
