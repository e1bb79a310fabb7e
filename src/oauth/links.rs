//! Connections: a user's upstream tokens for one provider, made by one upstream sign-in and
//! shared by every grant of that user on that provider.
//!
//! The first authorization of a client for a resource sends the user upstream; the callback
//! stores the tokens as the user's connection to that provider and the grant on it. A second
//! client, or a second resource on the same provider, asks the user's consent and then, while
//! the browser's Tether session says who they are and the connection's tokens are good and
//! cover the scopes, makes its grant on the same connection without an upstream sign-in.
//! Refreshing through any grant refreshes the connection for all (one lock per connection);
//! a refusal marks it `needs_reauth` for all; revoking the last live grant deletes its tokens.

use sha2::{Digest, Sha256};

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::clock::UnixTime;
use crate::crypto::{hash, random};
use crate::store::{
    AuthorizationRecord, CodeRecord, GrantInfo, GrantRecord, IndexKey, LinkInfo, LinkRecord, LinkStatus, PendingRecord,
    SessionRecord, Store,
};
use crate::upstream::{Identity, UpstreamTokens};

use super::authorize::FlowContext;
use super::error::OAuthError;
use super::flow::{FlowError, ReturnTo};

/// The id of `user`'s connection to `provider`: the same on every replica, so that finding
/// it is a lookup. 24 hex digits (96 bits of SHA-256).
pub fn link_id(user: &str, provider: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tether/link-id/v1");
    for part in [user, provider] {
        h.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// A new grant's id on the connection `link`.
pub fn grant_id(link: &str) -> String {
    format!("{link}-{}", uuid::Uuid::new_v4().simple())
}

/// The user an upstream identity is, without a login provider.
pub fn upstream_user(provider: &str, subject: &str) -> String {
    format!("{provider}:{subject}")
}

/// The session a browser presents, when it is live (by the record's age as well as its
/// time to live in the store) and was issued to this very browser.
pub async fn session(
    ctx: FlowContext<'_>,
    cookie: Option<&str>,
    binding_digest: &str,
    now: UnixTime,
) -> Result<Option<SessionRecord>, OAuthError> {
    let Some(cookie) = cookie.filter(|c| super::authorize::is_binding(c)) else { return Ok(None) };
    let session = ctx.store.browser_session(&hash::digest(cookie)).await?;
    let lifetime = i64::try_from(ctx.lifetimes.session.as_secs()).unwrap_or(i64::MAX);
    Ok(session.filter(|s| {
        s.created_at.saturating_add(lifetime) > now
            && hash::constant_time_eq(s.binding_digest.as_bytes(), binding_digest.as_bytes())
    }))
}

/// Sends the browser to sign in at the login provider, parking the request to resume after.
pub async fn send_to_login(
    ctx: FlowContext<'_>,
    login: &crate::upstream::Provider,
    request: AuthorizationRecord,
    resume: String,
    binding_digest: String,
    now: UnixTime,
) -> Result<url::Url, FlowError> {
    let back = ReturnTo { redirect_uri: &request.redirect_uri, state: request.state.as_deref(), issuer: ctx.issuer };
    let (state, verifier) = (random::token(), random::token());
    let nonce = login.uses_nonce().then(random::token);
    let scopes = login.base_scopes().to_vec();
    let url = login.authorize_url(&state, &verifier, nonce.as_deref(), &scopes).await.map_err(|e| {
        tracing::warn!(provider = %login.id(), error = %e, "cannot start the sign-in at the login provider");
        back.error(&OAuthError::new(
            super::error::ErrorCode::TemporarilyUnavailable,
            "the login provider is unavailable; try again shortly",
        ))
    })?;
    let record = PendingRecord {
        request,
        binding_digest,
        provider: login.id().to_owned(),
        upstream_verifier: verifier,
        upstream_nonce: nonce,
        upstream_scopes: scopes,
        created_at: now,
        user: None,
        resume: Some(resume),
        account: false,
        reconnect: None,
    };
    ctx.store.put_pending(&hash::digest(&state), &record, ctx.lifetimes.authorization).await?;
    Ok(url)
}

/// Starts a session for `user` in this browser; the cookie value to set.
pub async fn sign_in(
    ctx: FlowContext<'_>,
    binding_digest: &str,
    user: &str,
    identity: &Identity,
    now: UnixTime,
) -> Option<String> {
    if ctx.lifetimes.session.is_zero() {
        return None;
    }
    let cookie = random::token();
    let record = SessionRecord {
        user: user.to_owned(),
        binding_digest: binding_digest.to_owned(),
        display_name: identity.name.clone(),
        email: identity.email.clone(),
        created_at: now,
    };
    match ctx.store.put_browser_session(&hash::digest(&cookie), &record, ctx.lifetimes.session).await {
        Ok(()) => Some(cookie),
        Err(e) => {
            // The flow goes on; the next authorization signs in upstream again.
            tracing::warn!(error = %e, "cannot store the sign-in session");
            None
        }
    }
}

/// The user's connection to `provider` when it can serve a grant asking `scopes` upstream
/// without a new sign-in: active, tokens readable and not dead (a refresh token, or an
/// access token that has not expired), scopes covered.
pub async fn reusable(
    ctx: FlowContext<'_>,
    user: &str,
    provider: &str,
    scopes: &[String],
    now: UnixTime,
) -> Result<Option<(LinkRecord, UpstreamTokens)>, OAuthError> {
    let Some(link) = ctx.store.link(&link_id(user, provider)).await? else { return Ok(None) };
    if link.status != LinkStatus::Active || !scopes.iter().all(|s| link.info.scope.contains(s)) {
        return Ok(None);
    }
    let Some(tokens) = ctx.vault.open_link(&link) else { return Ok(None) };
    let usable = tokens.refresh_token.is_some() || !tokens.expires_within(0, now);
    Ok(usable.then_some((link, tokens)))
}

/// Stores the tokens of an upstream sign-in as `user`'s connection to the provider (made, or
/// replaced and widened), and says so in the audit trail.
pub async fn connect(
    ctx: FlowContext<'_>,
    user: &str,
    provider: &str,
    identity: &Identity,
    tokens: &UpstreamTokens,
    scopes: &[String],
    now: UnixTime,
) -> Result<LinkRecord, OAuthError> {
    let id = link_id(user, provider);
    let mut earlier = ctx.store.link(&id).await?.filter(|l| l.status != LinkStatus::Ended);
    // Under a login provider a user may connect another account at the same provider: the
    // grants made on the old one end (and it is revoked upstream where configured) instead
    // of going on as the new account.
    // A connection waiting for its first account (see `LinkRecord::awaits_account`) takes this
    // one, and its grants go on with it.
    if let Some(e) = &earlier
        && e.info.subject != identity.subject
        && !e.awaits_account()
    {
        let grants = ctx.store.link_grants(&id).await?;
        let trigger = super::revocation::Trigger::ConnectionReplaced;
        super::revocation::end(ctx.revoker, &grants, &trigger, true, ctx.origin, now).await?;
        earlier = None;
    }
    let info = LinkInfo {
        user: user.to_owned(),
        provider: provider.to_owned(),
        subject: identity.subject.clone(),
        account: identity.account.clone(),
        display_name: identity.name.clone(),
        email: identity.email.clone(),
        scope: scopes.to_vec(),
        created_at: earlier.as_ref().map_or(now, |l| l.info.created_at),
        connected_at: now,
        bound_to_user: earlier.as_ref().is_some_and(|l| l.info.bound_to_user),
    };
    let upstream = ctx.vault.seal_link(&id, &info, tokens)?;
    let link = LinkRecord { id, info, status: LinkStatus::Active, upstream };
    // As long as any grant on it can live.
    ctx.store.put_link(&link, ctx.lifetimes.refresh_token + ctx.lifetimes.tombstone).await?;
    let kind = match &earlier {
        Some(e) if e.awaits_account() => Some(EventType::ConnectionMade),
        Some(e) if scopes.iter().any(|s| !e.info.scope.contains(s)) => Some(EventType::ConnectionWidened),
        Some(_) => None,
        None => Some(EventType::ConnectionMade),
    };
    if let Some(kind) = kind {
        ctx.audit.emit(
            Event::new(kind, Actor::new(ActorKind::User, user), Outcome::Success, now)
                .user(user)
                .provider(provider)
                .scope(scopes)
                .detail("connection", serde_json::Value::String(link.id.clone()))
                .origin(ctx.origin),
        );
    }
    Ok(link)
}

/// Makes the grant of an approved `request` on `link` and returns the client's redirect with
/// Tether's authorization code.
pub async fn issue(
    ctx: FlowContext<'_>,
    request: &AuthorizationRecord,
    binding_digest: &str,
    link: &LinkRecord,
    upstream_scopes: &[String],
    now: UnixTime,
) -> Result<url::Url, FlowError> {
    let back = ReturnTo { redirect_uri: &request.redirect_uri, state: request.state.as_deref(), issuer: ctx.issuer };
    let store = ctx.store;
    let scope = widened_scope(store, request, &link.info.user).await.map_err(|e| back.error(&e))?;
    let grant_id = grant_id(&link.id);
    let in_default_mode = link.info.user == upstream_user(&link.info.provider, &link.info.subject);
    let info = GrantInfo {
        subject: link.info.subject.clone(),
        client_id: request.client_id.clone(),
        resource: request.resource.clone(),
        provider: link.info.provider.clone(),
        scope: scope.clone(),
        offline: request.offline,
        created_at: now,
        account: link.info.account.clone(),
        display_name: link.info.display_name.clone(),
        email: link.info.email.clone(),
        client_name: request.client_name.clone(),
        client_source: request.client_source,
        redirect_host: url::Url::parse(&request.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)),
        upstream_scope: upstream_scopes.to_vec(),
        owner: (!in_default_mode).then(|| link.info.user.clone()),
        bound_to_user: link.info.bound_to_user,
    };
    // The tokens are the connection's: the grant holds none of its own.
    let grant = GrantRecord::new(grant_id.clone(), info, Vec::new());
    let client_code = random::token();
    let code_record = CodeRecord {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        redirect_uri_sent: request.redirect_uri_sent,
        code_challenge: request.code_challenge.clone(),
        resource: request.resource.clone(),
        scope,
        grant_id: grant_id.clone(),
        issued_at: now,
    };
    // Listed before it is stored (see `GrantIndex`): an operator can always find it.
    let listed = ctx.lifetimes.refresh_token + ctx.lifetimes.tombstone;
    store
        .index_grant(&grant_id, now, &IndexKey::of(&grant.info), listed)
        .await
        .map_err(|e| back.error(&OAuthError::store(e)))?;
    // Nothing reads the code before the client is sent it, which happens only once both the
    // grant and the code are stored. Until the code is exchanged the grant only needs to
    // outlive the code; the token endpoint then gives it its real lifetime.
    let code_digest = hash::digest(&client_code);
    let (grant_stored, code_stored, remembered) = tokio::join!(
        store.put_grant(&grant, ctx.lifetimes.authorization),
        store.put_code(&code_digest, &code_record, ctx.lifetimes.code),
        store.remember_grant(
            binding_digest,
            &request.client_id,
            &request.resource,
            &grant_id,
            ctx.lifetimes.refresh_token
        ),
    );
    grant_stored.and(code_stored).map_err(|e| back.error(&OAuthError::store(e)))?;
    if let Err(e) = remembered {
        tracing::warn!(error = %e, "cannot remember the grant for this browser; a later step-up will not widen it");
    }
    tracing::info!(client_id = %request.client_id, resource = %request.resource, provider = %link.info.provider, "authorization completed");
    let user = grant.info.user();
    ctx.audit.emit(
        Event::new(EventType::GrantIssued, Actor::new(ActorKind::User, &user), Outcome::Success, now)
            .user(&user)
            .provider(&link.info.provider)
            .grant(&grant_id)
            .client(&request.client_id)
            .resource(&request.resource)
            .scope(&grant.info.scope)
            .origin(ctx.origin),
    );
    back.success(&client_code)
}

/// The scopes of the new grant: the widened set when the user of this sign-in holds the
/// grant being widened, otherwise only what this request asked for.
async fn widened_scope(
    store: &dyn Store,
    request: &AuthorizationRecord,
    user: &str,
) -> Result<Vec<String>, OAuthError> {
    let Some(earlier) = &request.widens else { return Ok(request.scope.clone()) };
    let same_user = store.grant(earlier).await?.is_some_and(|g| g.info.user() == user);
    Ok(if same_user { request.scope.clone() } else { request.requested_scope.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_id_is_stable_per_user_and_provider_and_names_the_grants_on_it() {
        let id = link_id("github:42", "github");
        assert_eq!(id, link_id("github:42", "github"));
        assert_eq!(id.len(), 24);
        assert_ne!(id, link_id("github:42", "google"));
        assert_ne!(link_id("a:b", "c"), link_id("a", "b:c"), "length-prefixed parts");
        let grant = grant_id(&id);
        assert_eq!(crate::store::connection_of(&grant), Some(id.as_str()));
        assert!(grant.len() <= 64, "fits a refresh token's grant part");
        assert_eq!(crate::store::connection_of("0123456789abcdef0123456789abcdef"), None, "grants before connections");
    }
}
