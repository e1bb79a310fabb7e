//! The refresh token grant with rotation (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
//!
//! Every refresh rotates the token. Clients race and retry (parallel requests, stale shared
//! stores), so a duplicate of the just-rotated token within the grace window gets the very
//! response the first request got, replayed, not a second rotation. After the window, a
//! rotated token coming back means it leaked: RFC 9700 §4.14.2 — "the authorization server
//! ... revokes the active refresh token" — Tether revokes the whole grant.

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::{ClientRecord, GrantStatus, RefreshStatus, Rotation};

use super::super::error::{ErrorCode, OAuthError};
use super::super::registry::Registry;
use super::super::scope;
use super::super::tokens::{Minter, TokenResponse};
use super::super::vault::Vault;
use super::{TokenStores, check_resource, extend, mint};

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
    vault: &Vault,
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
    let replay = Replay {
        stores,
        vault,
        grace: minter.lifetimes.refresh_grace,
        digest: &digest,
        grant_id: &token.grant_id,
        now,
    };
    if token.status == RefreshStatus::Rotated {
        let successor = stores.refresh.successor(&digest).await?;
        return replay.answer(token.rotated_at.unwrap_or(0), successor).await;
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
    // The successor exists (and is stored) before the old token is marked rotated, so a
    // replayed successor always names a refresh token that works.
    let (response, new_digest) = mint(stores, minter, registry, &grant.id, &grant.info, &scope, now).await?;
    let sealed = vault.seal_successor(&digest, &response)?;
    match stores.refresh.rotate(&digest, now, &sealed, replay.grace).await? {
        Rotation::Won => {
            extend(stores, minter, &grant.id, &grant.info).await?;
            Ok(response)
        }
        Rotation::AlreadyRotated { at, successor } => {
            // Another request rotated it first: ours is not handed out.
            if let Some(orphan) = new_digest {
                stores.refresh.delete_refresh(&orphan).await?;
            }
            replay.answer(at, successor).await
        }
        Rotation::Unknown => Err(invalid()),
    }
}

/// Answers a rotated refresh token: the same successor within the grace window, otherwise
/// reuse, which revokes the grant.
struct Replay<'a> {
    stores: TokenStores<'a>,
    vault: &'a Vault,
    grace: std::time::Duration,
    digest: &'a str,
    grant_id: &'a str,
    now: UnixTime,
}

impl Replay<'_> {
    async fn answer(&self, rotated_at: UnixTime, successor: Option<Vec<u8>>) -> Result<TokenResponse, OAuthError> {
        let grace = i64::try_from(self.grace.as_secs()).unwrap_or(i64::MAX);
        let within = self.now.saturating_sub(rotated_at) <= grace;
        if within && let Some(response) = successor.and_then(|blob| self.vault.open_successor(self.digest, &blob)) {
            return Ok(response);
        }
        self.stores.grants.set_grant_status(self.grant_id, GrantStatus::Revoked).await?;
        tracing::warn!(grant = %self.grant_id, "rotated refresh token reused after the grace window; grant revoked");
        Err(OAuthError::invalid_grant("refresh token was already used; the authorization is revoked"))
    }
}
