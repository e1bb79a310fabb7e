//! The authorization code grant (OAuth 2.1 §4.1.3).

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::{ClientRecord, CodeTake, GrantStatus};

use super::token_event;

use super::super::error::OAuthError;
use super::super::pkce;
use super::super::revocation::{self, Trigger};
use super::super::tokens::TokenResponse;
use super::{TokenContext, check_resource, extend, mint};
use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};

#[derive(Debug)]
pub struct CodeRequest {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub resource: Option<String>,
}

pub async fn exchange(
    ctx: TokenContext<'_>,
    client: &ClientRecord,
    req: CodeRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let TokenContext { stores, minter, registry, vault, .. } = ctx;
    let code = match stores.codes.take_code(&hash::digest(&req.code), minter.lifetimes.authorization).await? {
        CodeTake::Fresh(code) => code,
        CodeTake::Reused { grant_id } => {
            // OAuth 2.1 §4.1.3: "If an authorization code is used more than once, the
            // authorization server MUST deny the request and SHOULD revoke (when possible) all
            // tokens previously issued based on that authorization code."
            tracing::warn!(client_id = %client.client_id, grant = %grant_id, "authorization code replayed; grant revoked");
            ctx.audit.emit(
                Event::new(
                    EventType::CodeReplayed,
                    Actor::new(ActorKind::Client, &client.client_id),
                    Outcome::Denied,
                    now,
                )
                .grant(&grant_id)
                .client(&client.client_id)
                .origin(ctx.origin),
            );
            revocation::end(ctx.revoker, &[grant_id], &Trigger::CodeReplay, true, ctx.origin, now).await?;
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
    ctx.audit.emit(token_event(&grant, client, "authorization_code", &code.scope, now).origin(ctx.origin));
    Ok(response)
}
