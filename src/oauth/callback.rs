//! The upstream provider's redirect back to Tether: exchange the upstream code, learn the
//! user, seal the upstream tokens into a grant, and hand the client its own code.

use serde::Deserialize;

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::clock::UnixTime;
use crate::crypto::{hash, random};
use crate::store::{BrowserStore, CodeRecord, CodeStore, GrantInfo, GrantRecord, GrantStore, PendingStore};
use crate::upstream::UpstreamError;

use super::authorize::FlowContext;
use super::error::{ErrorCode, OAuthError};
use super::flow::{FlowError, ReturnTo};
use super::vault::Vault;

#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the provider's issuer, from providers that send it.
    pub iss: Option<String>,
}

/// The stores the callback writes to.
#[derive(Clone, Copy)]
pub struct CallbackStores<'a> {
    pub pending: &'a dyn PendingStore,
    pub grants: &'a dyn GrantStore,
    pub codes: &'a dyn CodeStore,
    pub browsers: &'a dyn BrowserStore,
    pub index: &'a dyn crate::store::GrantIndex,
}

/// Completes the upstream leg and returns the client's redirect with Tether's code.
pub async fn complete(
    ctx: FlowContext<'_>,
    stores: CallbackStores<'_>,
    vault: &Vault,
    params: CallbackParams,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<url::Url, FlowError> {
    let state = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FlowError::page("The provider's answer has no state. Start again from your application."))?;
    let pending = stores.pending.take_pending(&hash::digest(state)).await?.ok_or_else(|| {
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
    let provider = ctx
        .providers
        .get(&pending.provider)
        .ok_or_else(|| back.error(&OAuthError::server_error("the provider is no longer configured")))?;
    // Before anything in the response is believed, success or error (RFC 9207 §2.4).
    provider
        .check_response_issuer(params.iss.as_deref())
        .await
        .map_err(|e| back.error(&upstream_failure("issuer check (mix-up defence)", provider.id(), e)))?;

    if let Some(error) = params.error.as_deref() {
        // The upstream error text is not forwarded: it is attacker-controllable input.
        let mapped = if error == "access_denied" {
            OAuthError::new(ErrorCode::AccessDenied, "the user denied access at the upstream provider")
        } else {
            tracing::warn!(upstream_error = %truncate(error), "upstream authorization failed");
            OAuthError::server_error("the upstream provider refused the authorization")
        };
        return Err(back.error(&mapped));
    }
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| back.error(&OAuthError::server_error("the upstream provider sent no code")))?;
    let exchanged = provider
        .exchange_code(code, &pending.upstream_verifier, now)
        .await
        .map_err(|e| back.error(&upstream_failure("code exchange", provider.id(), e)))?;
    let identity = provider
        .identity(&exchanged, pending.upstream_nonce.as_deref(), now)
        .await
        .map_err(|e| back.error(&upstream_failure("identity", provider.id(), e)))?;
    let tokens = exchanged.tokens;
    let scope = widened_scope(stores.grants, request, &identity.subject).await.map_err(|e| back.error(&e))?;

    let grant_id = uuid::Uuid::new_v4().simple().to_string();
    let info = GrantInfo {
        subject: identity.subject,
        client_id: request.client_id.clone(),
        resource: request.resource.clone(),
        provider: provider.id().to_owned(),
        scope: scope.clone(),
        offline: request.offline,
        created_at: now,
        account: identity.account,
        display_name: identity.name,
        email: identity.email,
        client_name: request.client_name.clone(),
        client_source: request.client_source,
        redirect_host: url::Url::parse(&request.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)),
        upstream_scope: pending.upstream_scopes.clone(),
    };
    let upstream = vault.seal(&grant_id, &info, &tokens).map_err(|e| back.error(&e))?;
    let grant = GrantRecord::new(grant_id.clone(), info, upstream);

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
    // The three writes go out together (one round trip on a pipelining connection): nothing
    // reads the code before the client is sent it, which happens only once both the grant and
    // the code are stored. Until the code is exchanged the grant only needs to outlive the
    // code; the token endpoint then gives it its real lifetime.
    let code_digest = hash::digest(&client_code);
    // Listed before it is stored (see `GrantIndex`): an operator can always find it.
    let listed = ctx.lifetimes.refresh_token + ctx.lifetimes.tombstone;
    stores
        .index
        .index_grant(&grant_id, now, &crate::store::IndexKey::of(&grant.info), listed)
        .await
        .map_err(|e| back.error(&OAuthError::store(e)))?;
    let (grant_stored, code_stored, remembered) = tokio::join!(
        stores.grants.put_grant(&grant, ctx.lifetimes.authorization),
        stores.codes.put_code(&code_digest, &code_record, ctx.lifetimes.code),
        stores.browsers.remember_grant(
            &pending.binding_digest,
            &request.client_id,
            &request.resource,
            &grant_id,
            ctx.lifetimes.refresh_token,
        ),
    );
    grant_stored.and(code_stored).map_err(|e| back.error(&OAuthError::store(e)))?;
    if let Err(e) = remembered {
        tracing::warn!(error = %e, "cannot remember the grant for this browser; a later step-up will not widen it");
    }
    tracing::info!(client_id = %request.client_id, resource = %request.resource, provider = %provider.id(), "authorization completed");
    let user = grant.info.user();
    let event = |kind| {
        Event::new(kind, Actor::new(ActorKind::User, &user), Outcome::Success, now)
            .user(&user)
            .provider(provider.id())
            .origin(ctx.origin)
    };
    ctx.audit.emit(event(EventType::UserSignedIn));
    ctx.audit.emit(event(EventType::ConnectionMade).grant(&grant_id).scope(&pending.upstream_scopes));
    ctx.audit.emit(
        event(EventType::GrantIssued)
            .grant(&grant_id)
            .client(&request.client_id)
            .resource(&request.resource)
            .scope(&grant.info.scope),
    );
    back.success(&client_code)
}

/// The scopes of the new grant: the widened set when the user who signed in upstream holds
/// the grant being widened, otherwise only what this request asked for.
async fn widened_scope(
    grants: &dyn GrantStore,
    request: &crate::store::AuthorizationRecord,
    subject: &str,
) -> Result<Vec<String>, OAuthError> {
    let Some(earlier) = &request.widens else { return Ok(request.scope.clone()) };
    let same_user = grants.grant(earlier).await?.is_some_and(|g| g.info.subject == subject);
    Ok(if same_user { request.scope.clone() } else { request.requested_scope.clone() })
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
        UpstreamError::Invalid(_) => OAuthError::server_error("the upstream provider answered unexpectedly"),
    }
}

fn truncate(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}
