//! The consent decision and the upstream leg it starts (MCP "Confused Deputy Problem").

use crate::clock::UnixTime;
use crate::crypto::{hash, random};
use crate::store::{AuthorizationRecord, PendingRecord, PendingStore};

use super::authorize::{BrowserCookies, FlowContext};
use super::consent::ConsentJar;
use super::error::{ErrorCode, OAuthError};
use super::flow::{FlowError, ReturnTo};
use super::{links, scope};
use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};

/// Where the consent form sends the browser, and the consent cookie to set.
#[derive(Debug)]
pub struct Decision {
    pub upstream: url::Url,
    /// The remembered-consent cookie with this approval added (`None` when not remembered).
    pub consent_cookie: Option<String>,
}

/// The user approved or denied on the consent page.
pub async fn decide(
    ctx: FlowContext<'_>,
    pending: &dyn PendingStore,
    consent_id: &str,
    cookies: BrowserCookies<'_>,
    approve: bool,
    now: UnixTime,
) -> Result<Decision, FlowError> {
    let record = pending.take_consent(&hash::digest(consent_id)).await?.ok_or_else(|| {
        FlowError::page(
            "This authorization request has expired or was already answered. Start again from your application.",
        )
    })?;
    // The decision must come from the browser that was shown the page (CSRF).
    if !cookies.binding.is_some_and(|b| hash::matches_digest(b, &record.binding_digest)) {
        return Err(FlowError::forbidden(
            "This consent form was not opened in this browser. Start again from your application.",
        ));
    }
    let request = record.request;
    let kind = if approve { EventType::ConsentApproved } else { EventType::ConsentDenied };
    let outcome = if approve { Outcome::Success } else { Outcome::Denied };
    ctx.audit.emit(
        Event::new(kind, Actor { kind: ActorKind::User, id: None }, outcome, now)
            .client(&request.client_id)
            .resource(&request.resource)
            .scope(&request.scope)
            .origin(ctx.origin),
    );
    if !approve {
        let back =
            ReturnTo { redirect_uri: &request.redirect_uri, state: request.state.as_deref(), issuer: ctx.issuer };
        return Err(back.error(&OAuthError::new(ErrorCode::AccessDenied, "the user denied the request")));
    }
    let remember = ctx.lifetimes.consent_memory.as_secs();
    let consent_cookie = (remember > 0).then(|| {
        let mut jar = ConsentJar::read(cookies.consent, ctx.keys, now);
        jar.approve(&record.client_digest, &request, now.saturating_add(i64::try_from(remember).unwrap_or(i64::MAX)));
        jar.encode(ctx.keys)
    });
    let upstream = send_upstream(ctx, pending, request, record.binding_digest, cookies.session, now).await?;
    Ok(Decision { upstream, consent_cookie })
}

/// Where an approved request goes next: when the browser's session names a user whose
/// connection to the provider can serve it, straight back to the client with a code (no
/// second upstream sign-in); otherwise it is parked under a fresh upstream `state` and the
/// browser goes to the provider.
pub async fn send_upstream(
    ctx: FlowContext<'_>,
    pending: &dyn PendingStore,
    request: AuthorizationRecord,
    binding_digest: String,
    session: Option<&str>,
    now: UnixTime,
) -> Result<url::Url, FlowError> {
    let back = ReturnTo { redirect_uri: &request.redirect_uri, state: request.state.as_deref(), issuer: ctx.issuer };
    let resource = ctx.registry.resource(&request.resource);
    let provider = resource.and_then(|r| ctx.providers.get(&r.provider));
    let (Some(resource), Some(provider)) = (resource, provider) else {
        return Err(back.error(&OAuthError::server_error("the resource is no longer configured")));
    };
    let mut upstream_scopes = scope::upstream_scopes(&request.scope, resource, provider.base_scopes());
    let session = links::session(ctx, session, &binding_digest, now).await.map_err(|e| back.error(&e))?;
    // Under a login provider the connection is the signed-in user's: no session, no flow.
    if ctx.login.is_some() && session.is_none() {
        return Err(FlowError::page("Your sign-in to Tether has expired. Start again from your application."));
    }
    if let Some(session) = &session {
        let reusable = links::reusable(ctx, &session.user, provider.id(), &upstream_scopes, now)
            .await
            .map_err(|e| back.error(&e))?;
        if let Some((link, _)) = reusable {
            tracing::info!(provider = %provider.id(), "connection reused: no upstream sign-in");
            return links::issue(ctx, &request, &binding_digest, &link, &upstream_scopes, now).await;
        }
        // Signing in again for more: ask for what the connection has too, so that the new
        // tokens still serve the user's other grants on it.
        if let Some(link) =
            ctx.store.link(&links::link_id(&session.user, provider.id())).await.map_err(|e| back.error(&e.into()))?
        {
            for s in link.info.scope {
                if !upstream_scopes.contains(&s) {
                    upstream_scopes.push(s);
                }
            }
        }
    }
    // MCP security best practices: the upstream `state` is random, single-use, short-lived,
    // and stored only after consent.
    let state = random::token();
    let verifier = random::token();
    let nonce = provider.uses_nonce().then(random::token);
    let url = match provider.authorize_url(&state, &verifier, nonce.as_deref(), &upstream_scopes).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(provider = %provider.id(), error = %e, "cannot start the upstream authorization");
            let unavailable = OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the upstream provider is unavailable; try again shortly",
            );
            return Err(back.error(&unavailable));
        }
    };
    let record = PendingRecord {
        request,
        binding_digest,
        provider: provider.id().to_owned(),
        upstream_verifier: verifier,
        upstream_nonce: nonce,
        upstream_scopes,
        created_at: now,
        user: session.filter(|_| ctx.login.is_some()).map(|s| s.user),
        resume: None,
        account: false,
        reconnect: None,
    };
    pending.put_pending(&hash::digest(&state), &record, ctx.lifetimes.authorization).await?;
    Ok(url)
}
