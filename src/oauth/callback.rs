//! The upstream provider's redirect back to Tether: exchange the upstream code, learn the
//! user, store the upstream tokens as the user's connection, make the grant on it, and hand
//! the client its own code.

use serde::Deserialize;

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::upstream::UpstreamError;

use super::authorize::FlowContext;
use super::error::{ErrorCode, OAuthError};
use super::flow::{FlowError, ReturnTo};
use super::links;

#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the provider's issuer, from providers that send it.
    pub iss: Option<String>,
}

/// Completes the upstream leg and returns the client's redirect with Tether's code.
pub async fn complete(
    ctx: FlowContext<'_>,
    params: CallbackParams,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<Completed, FlowError> {
    let state = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FlowError::page("The provider's answer has no state. Start again from your application."))?;
    let pending = ctx.store.take_pending(&hash::digest(state)).await?.ok_or_else(|| {
        FlowError::page("This sign-in has expired or was already completed. Start again from your application.")
    })?;
    // Only the browser that gave consent may complete the flow; otherwise an attacker could
    // feed a victim's browser a callback carrying the attacker's upstream code.
    if !binding.is_some_and(|b| hash::matches_digest(b, &pending.binding_digest)) {
        return Err(FlowError::forbidden(
            "This sign-in was started in another browser. Start again from your application.",
        ));
    }
    let request = &pending.request;
    let back = ReturnTo { redirect_uri: &request.redirect_uri, state: request.state.as_deref(), issuer: ctx.issuer };
    // A sign-in to the account page has no client to return to: its failures are pages.
    let fail = |e: &OAuthError| if pending.account { account_failure(e) } else { back.error(e) };
    let provider = ctx
        .providers
        .get(&pending.provider)
        .ok_or_else(|| fail(&OAuthError::server_error("the provider is no longer configured")))?;
    // Before anything in the response is believed, success or error (RFC 9207 §2.4).
    provider
        .check_response_issuer(params.iss.as_deref())
        .await
        .map_err(|e| fail(&upstream_failure("issuer check (mix-up defence)", provider.id(), e)))?;

    if let Some(error) = params.error.as_deref() {
        // The upstream error text is not forwarded: it is attacker-controllable input.
        let mapped = if error == "access_denied" {
            OAuthError::new(ErrorCode::AccessDenied, "the user denied access at the upstream provider")
        } else {
            tracing::warn!(upstream_error = %truncate(error), "upstream authorization failed");
            OAuthError::server_error("the upstream provider refused the authorization")
        };
        return Err(fail(&mapped));
    }
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| fail(&OAuthError::server_error("the upstream provider sent no code")))?;
    let mut exchanged = provider
        .exchange_code(code, &pending.upstream_verifier, now)
        .await
        .map_err(|e| fail(&upstream_failure("code exchange", provider.id(), e)))?;
    let identity = provider
        .identity(&mut exchanged, pending.upstream_nonce.as_deref(), now)
        .await
        .map_err(|e| fail(&upstream_failure("identity", provider.id(), e)))?;
    let signed_in = |user: &str| {
        ctx.audit.emit(
            Event::new(EventType::UserSignedIn, Actor::new(ActorKind::User, user), Outcome::Success, now)
                .user(user)
                .provider(provider.id())
                .origin(ctx.origin),
        );
    };
    // A "connect first" link: the connection takes the tokens if this is its account; the
    // person then sees their connected apps, working again.
    if let Some(reconnect) = &pending.reconnect {
        let link = super::reconnect::finish(ctx, reconnect, &identity, &exchanged.tokens, now).await?;
        let session = links::sign_in(ctx, &pending.binding_digest, &link.info.user, &identity, now).await;
        let redirect = url::Url::parse(&format!("{}/account", ctx.issuer))
            .map_err(|_| FlowError::page("The account page's address cannot be built."))?;
        return Ok(Completed { redirect, session });
    }
    // A sign-in to the account page: the user is who signed in; the browser goes to the page.
    if pending.account {
        let user = links::upstream_user(provider.id(), &identity.subject);
        signed_in(&user);
        let session = links::sign_in(ctx, &pending.binding_digest, &user, &identity, now)
            .await
            .ok_or_else(|| FlowError::page("The sign-in could not be kept. Try again in a moment."))?;
        let redirect = url::Url::parse(&format!("{}/account", ctx.issuer))
            .map_err(|_| FlowError::page("The account page's address cannot be built."))?;
        return Ok(Completed { redirect, session: Some(session) });
    }
    // A sign-in at the login provider: the user is who signed in; the request resumes.
    if let Some(resume) = &pending.resume {
        let user = links::upstream_user(provider.id(), &identity.subject);
        signed_in(&user);
        let session = links::sign_in(ctx, &pending.binding_digest, &user, &identity, now)
            .await
            .ok_or_else(|| fail(&OAuthError::server_error("the sign-in could not be kept")))?;
        let redirect = url::Url::parse(&format!("{}/authorize?{resume}", ctx.issuer))
            .map_err(|_| fail(&OAuthError::server_error("the authorization request cannot be resumed")))?;
        return Ok(Completed { redirect, session: Some(session) });
    }
    // Under a login provider the connection is the signed-in user's; otherwise the user is
    // the upstream identity, signed in by this very sign-in.
    let user = match &pending.user {
        Some(user) => user.clone(),
        None => {
            let user = links::upstream_user(provider.id(), &identity.subject);
            signed_in(&user);
            user
        }
    };
    let link = links::connect(ctx, &user, provider.id(), &identity, &exchanged.tokens, &pending.upstream_scopes, now)
        .await
        .map_err(|e| fail(&e))?;
    // The session and the grant go out together.
    let session = async {
        match pending.user {
            Some(_) => None,
            None => links::sign_in(ctx, &pending.binding_digest, &user, &identity, now).await,
        }
    };
    let issued = links::issue(ctx, request, &pending.binding_digest, &link, &pending.upstream_scopes, now);
    let (session, redirect) = tokio::join!(session, issued);
    let redirect = redirect?;
    Ok(Completed { redirect, session })
}

/// Where the browser goes after the callback, and the sign-in session cookie to set.
#[derive(Debug)]
pub struct Completed {
    pub redirect: url::Url,
    pub session: Option<String>,
}

/// Maps an upstream failure to what the client is told; the cause goes to the log.
fn upstream_failure(step: &str, provider: &str, err: UpstreamError) -> OAuthError {
    tracing::warn!(%provider, %step, error = %err, "upstream call failed");
    match err {
        UpstreamError::Unavailable(_) => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the upstream provider is unavailable; try again shortly",
        ),
        UpstreamError::Rejected { .. } => OAuthError::server_error("the upstream provider refused the sign-in"),
        UpstreamError::NotAllowed(why) => OAuthError::new(ErrorCode::AccessDenied, why),
        UpstreamError::Invalid(_) => OAuthError::server_error("the upstream provider answered unexpectedly"),
    }
}

/// A failed account-page sign-in, as a page (there is no client to send the error to).
fn account_failure(error: &OAuthError) -> FlowError {
    match error.code {
        ErrorCode::AccessDenied if error.description.starts_with("the user denied") => {
            FlowError::page("You cancelled the sign-in at the provider.")
        }
        ErrorCode::TemporarilyUnavailable => FlowError::Page {
            status: super::flow::PageStatus::Unavailable,
            message: "The provider is unavailable. Try again in a moment.".into(),
        },
        _ => FlowError::page(format!("The sign-in failed: {}.", error.description)),
    }
}

fn truncate(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}
