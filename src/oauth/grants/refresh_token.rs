//! The refresh token grant with rotation (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
//!
//! Every refresh rotates the token. Clients race and retry (parallel requests, stale shared
//! stores), so a duplicate of the just-rotated token within the grace window gets the very
//! response the first request got, replayed, not a second rotation. After the window, a
//! rotated token coming back means it leaked: RFC 9700 §4.14.2 — "the authorization server
//! ... revokes the active refresh token" — Tether revokes the whole grant.
//!
//! Tokens name their family (`oauth::family`): the grant's record says which generation is
//! current, so no record is kept per rotated token. Tokens of the first form (a record each)
//! keep working, with their reuse detection, until they rotate into a family or expire.

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::{Advance, ClientRecord, FamilyStep, GrantRecord, GrantStatus, RefreshStatus, Rotation};

use super::super::error::{ErrorCode, OAuthError};
use super::super::family::{self, FamilyToken};
use super::super::registry::Registry;
use super::super::revocation::{self, Trigger};
use super::super::scope;
use super::super::tokens::{Minter, TokenResponse};
use super::super::vault::Vault;
use super::{TokenContext, TokenStores, check_resource, extend, mint};
use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};

#[derive(Debug)]
pub struct RefreshRequest {
    pub refresh_token: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// What a refresh runs on.
struct Refresh<'a> {
    ctx: TokenContext<'a>,
    stores: TokenStores<'a>,
    minter: Minter<'a>,
    registry: &'a Registry,
    vault: &'a Vault,
    client: &'a ClientRecord,
    req: &'a RefreshRequest,
    /// Digest of the presented refresh token.
    digest: String,
    now: UnixTime,
}

pub async fn refresh(
    token_ctx: TokenContext<'_>,
    client: &ClientRecord,
    req: RefreshRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let digest = hash::digest(&req.refresh_token);
    let TokenContext { stores, minter, registry, vault, .. } = token_ctx;
    let ctx = Refresh { ctx: token_ctx, stores, minter, registry, vault, client, req: &req, digest, now };
    match family::parse(&req.refresh_token) {
        Some(token) => ctx.family(&token).await,
        None => ctx.first_form().await,
    }
}

fn invalid() -> OAuthError {
    OAuthError::invalid_grant("refresh token is invalid, expired or revoked")
}

impl Refresh<'_> {
    /// A family token: current, the previous one (a duplicate or a reuse), or an older one.
    async fn family(&self, token: &FamilyToken<'_>) -> Result<TokenResponse, OAuthError> {
        let grant = self.stores.grants.grant(token.grant_id).await?.ok_or_else(invalid)?;
        // RFC 6749 §6: the refresh token is bound to the client it was issued to.
        if grant.info.client_id != self.client.client_id {
            return Err(invalid());
        }
        usable(&grant)?;
        let family = grant.family.as_ref().ok_or_else(invalid)?;
        let replay = self.replay(&grant.id);
        let current = token.generation == family.generation
            && hash::constant_time_eq(self.digest.as_bytes(), family.current.as_bytes());
        if !current {
            if token.generation.saturating_add(1) == family.generation
                && family.previous.as_deref() == Some(&self.digest)
            {
                let successor = self.stores.refresh.family_successor(&grant.id).await?;
                return replay.answer(family.rotated_at.unwrap_or(0), successor).await;
            }
            return self.older(token, family.generation, &replay).await;
        }
        let scope = self.continued_scope(&grant)?;
        let next = token.generation.saturating_add(1);
        let (response, next_digest) = mint(self.minter, self.registry, self.vault, &grant, &scope, next, self.now)?;
        let next_digest = next_digest.ok_or_else(invalid)?;
        let sealed = self.vault.seal_successor(&self.digest, &response)?;
        let step = FamilyStep {
            generation: token.generation,
            presented: &self.digest,
            next: &next_digest,
            at: self.now,
            successor: &sealed,
            grace: self.minter.lifetimes.refresh_grace,
        };
        match self.stores.refresh.advance_family(&grant.id, step).await? {
            Advance::Won => {
                extend(self.stores, self.minter, &grant.id, &grant.info).await?;
                self.issued(&grant, &scope);
                Ok(response)
            }
            // Another request rotated it first: ours is not handed out.
            Advance::AlreadyRotated { at, successor } => replay.answer(at, successor).await,
            Advance::Elsewhere { generation } => self.older(token, generation, &replay).await,
            Advance::Unknown => Err(invalid()),
        }
    }

    /// A family token that is neither current nor the previous one: reuse if Tether issued
    /// it for a generation the family has passed, otherwise just invalid (a made-up token
    /// naming someone's grant must not revoke it).
    async fn older(&self, token: &FamilyToken<'_>, at: u64, replay: &Replay<'_>) -> Result<TokenResponse, OAuthError> {
        if token.generation < at && token.is_genuine(self.vault.keys()) {
            return replay.revoke().await;
        }
        Err(invalid())
    }

    /// A token of the first form: its own record says whether it was rotated. Rotating it
    /// starts the grant's family with the token handed out now.
    async fn first_form(&self) -> Result<TokenResponse, OAuthError> {
        let token = self.stores.refresh.refresh(&self.digest).await?.ok_or_else(invalid)?;
        if token.client_id != self.client.client_id {
            return Err(invalid());
        }
        let replay = self.replay(&token.grant_id);
        if token.status == RefreshStatus::Rotated {
            let successor = self.stores.refresh.successor(&self.digest).await?;
            return replay.answer(token.rotated_at.unwrap_or(0), successor).await;
        }
        let grant = self.stores.grants.grant(&token.grant_id).await?.ok_or_else(invalid)?;
        usable(&grant)?;
        let scope = self.continued_scope(&grant)?;
        let (response, family_digest) = mint(self.minter, self.registry, self.vault, &grant, &scope, 0, self.now)?;
        let family_digest = family_digest.ok_or_else(invalid)?;
        let sealed = self.vault.seal_successor(&self.digest, &response)?;
        match self.stores.refresh.rotate(&self.digest, self.now, &sealed, self.minter.lifetimes.refresh_grace).await? {
            Rotation::Won => {
                // The first-form record and the grant live in different hash slots: the
                // family starts once this request has won the rotation.
                let (started, extended) = tokio::join!(
                    self.stores.refresh.start_family(&grant.id, &family_digest),
                    extend(self.stores, self.minter, &grant.id, &grant.info),
                );
                extended?;
                if !started? {
                    return Err(invalid());
                }
                self.issued(&grant, &scope);
                Ok(response)
            }
            Rotation::AlreadyRotated { at, successor } => replay.answer(at, successor).await,
            Rotation::Unknown => Err(invalid()),
        }
    }

    /// The scopes of the refreshed tokens, for the resource the grant is bound to.
    fn continued_scope(&self, grant: &GrantRecord) -> Result<Vec<String>, OAuthError> {
        check_resource(self.registry, self.req.resource.as_deref(), &grant.info.resource)?;
        // RFC 6749 §6: a refresh may narrow the scope, never widen it.
        let requested = scope::parse(self.req.scope.as_deref())?;
        if requested.is_empty() {
            Ok(grant.info.scope.clone())
        } else if requested.iter().all(|s| grant.info.scope.contains(s)) {
            Ok(requested)
        } else {
            Err(OAuthError::new(ErrorCode::InvalidScope, "a refresh cannot add scopes"))
        }
    }

    /// Refreshes are routine (every few minutes per client): the first of an interval is an
    /// event, the rest of it one summary with a count (see `audit::usage`).
    fn issued(&self, grant: &GrantRecord, scope: &[String]) {
        let event = || super::token_event(grant, self.client, "refresh_token", scope, self.now).origin(self.ctx.origin);
        self.ctx.audit.coalesced(&grant.id, "refresh_token", self.now, event);
    }

    fn replay<'a>(&'a self, grant_id: &'a str) -> Replay<'a> {
        Replay { ctx: self, grant_id }
    }
}

/// Refuses a grant that no longer issues tokens.
fn usable(grant: &GrantRecord) -> Result<(), OAuthError> {
    match grant.status {
        GrantStatus::Active => Ok(()),
        // The upstream provider refused to refresh: the client must send the user through
        // /authorize again, which `invalid_grant` makes MCP clients do.
        GrantStatus::Dead => {
            Err(OAuthError::invalid_grant("the upstream provider ended this authorization; authorize again"))
        }
        GrantStatus::Expired => Err(OAuthError::invalid_grant("the upstream authorization expired; authorize again")),
        GrantStatus::Revoked => Err(invalid()),
    }
}

/// Answers a rotated refresh token: the same successor within the grace window, otherwise
/// reuse, which revokes the grant.
struct Replay<'a> {
    ctx: &'a Refresh<'a>,
    grant_id: &'a str,
}

impl Replay<'_> {
    async fn answer(&self, rotated_at: UnixTime, successor: Option<Vec<u8>>) -> Result<TokenResponse, OAuthError> {
        let ctx = self.ctx;
        let grace = i64::try_from(ctx.minter.lifetimes.refresh_grace.as_secs()).unwrap_or(i64::MAX);
        let within = ctx.now.saturating_sub(rotated_at) <= grace;
        if within && let Some(response) = successor.and_then(|blob| ctx.vault.open_successor(&ctx.digest, &blob)) {
            return Ok(response);
        }
        self.revoke().await
    }

    async fn revoke(&self) -> Result<TokenResponse, OAuthError> {
        let ctx = self.ctx;
        tracing::warn!(grant = %self.grant_id, "rotated refresh token reused after the grace window; grant revoked");
        let client = &ctx.client.client_id;
        ctx.ctx.audit.emit(
            Event::new(
                EventType::RefreshReuseDetected,
                Actor::new(ActorKind::Client, client),
                Outcome::Denied,
                ctx.now,
            )
            .grant(self.grant_id)
            .client(client)
            .origin(ctx.ctx.origin),
        );
        let ids = [self.grant_id.to_owned()];
        revocation::end(ctx.ctx.revoker, &ids, &Trigger::RefreshReuse, true, ctx.ctx.origin, ctx.now).await?;
        Err(OAuthError::invalid_grant("refresh token was already used; the authorization is revoked"))
    }
}
