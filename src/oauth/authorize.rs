//! The authorization endpoint and the consent decision (OAuth 2.1 §4.1.1, MCP "Confused
//! Deputy Problem").
//!
//! Tether reaches every upstream provider with one static client id, so without its own
//! consent step any registered client could obtain a user's upstream authorization silently.
//! MCP: "MCP proxy servers using static client IDs MUST obtain user consent for each
//! dynamically registered client before forwarding to third-party authorization servers."

use serde::Deserialize;

use crate::clock::UnixTime;
use crate::crypto::{hash, random};
use crate::store::{
    AuthorizationRecord, BrowserStore, ClientRecord, ClientSource, ConsentRecord, GrantStatus, GrantStore, PendingStore,
};
use crate::upstream::{Provider, Providers};

use super::clients::{Clients, LookupError};
use super::consent::{ConsentJar, client_digest};
use super::decide::send_upstream;
use super::error::{ErrorCode, OAuthError};
use super::flow::{ConsentView, FlowError, ReturnTo};
use super::registry::{Registry, Resource};
use super::tokens::Lifetimes;
use super::{pkce, redirect, scope};

/// The authorization request as sent (query for GET, form for POST).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    /// OpenID Connect `prompt`; `consent` (sent with `offline_access`) and `login` are
    /// satisfied by the consent page Tether always shows, `none` cannot be.
    pub prompt: Option<String>,
}

/// The cookies a browser step reads: the binding (CSRF and callback) and remembered consent.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserCookies<'a> {
    pub binding: Option<&'a str>,
    pub consent: Option<&'a str>,
    /// The sign-in session (see `links`).
    pub session: Option<&'a str>,
}

/// What the browser-facing steps share.
#[derive(Debug, Clone, Copy)]
pub struct FlowContext<'a> {
    pub issuer: &'a str,
    /// Signs and checks the remembered-consent cookie.
    pub keys: &'a crate::crypto::seal::KeyRing,
    pub clients: Clients<'a>,
    pub registry: &'a Registry,
    pub providers: &'a Providers,
    pub lifetimes: &'a Lifetimes,
    /// Ends the grants a flow replaces.
    pub revoker: super::revocation::Revoker<'a>,
    pub audit: &'a crate::audit::Auditor,
    /// The request, for audit events.
    pub origin: &'a crate::audit::Origin,
    pub store: &'a dyn crate::store::Store,
    pub vault: &'a super::vault::Vault,
    /// The login provider (`[login]`): people sign in there before anything else.
    pub login: Option<&'a Provider>,
}

/// A binding cookie value is a token from `random::token`.
pub(crate) fn is_binding(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The stores `/authorize` reads and writes.
#[derive(Clone, Copy)]
pub struct AuthorizeStores<'a> {
    pub pending: &'a dyn PendingStore,
    pub grants: &'a dyn GrantStore,
    pub browsers: &'a dyn BrowserStore,
}

/// Where `/authorize` sends the browser next.
#[derive(Debug)]
pub enum Started {
    /// The consent page.
    Consent(Box<ConsentView>),
    /// Straight upstream: this browser already approved this client for this much.
    Upstream { url: url::Url, binding: String },
}

/// Validates an authorization request and parks it until the user decides, or, when the
/// browser's remembered consent covers it, sends it straight upstream.
pub async fn start(
    ctx: FlowContext<'_>,
    stores: AuthorizeStores<'_>,
    params: AuthorizeParams,
    cookies: BrowserCookies<'_>,
    now: UnixTime,
) -> Result<Started, FlowError> {
    let binding = cookies.binding;
    // OAuth 2.1 §4.1.2.1: if the client or redirect URI is invalid, the user is informed
    // and the user agent MUST NOT be redirected.
    let client_id = params
        .client_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FlowError::page("The request has no client_id. Start again from your application."))?;
    let client = match ctx.clients.find(client_id, now).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(FlowError::page(
                "This application is not registered with Tether (or its registration expired).",
            ));
        }
        Err(LookupError::Store(e)) => return Err(e.into()),
        Err(LookupError::Document(e)) => {
            tracing::info!(%client_id, error = %e, "client metadata document refused");
            return Err(FlowError::page(format!("This application's client_id cannot be used: {e}.")));
        }
    };
    let (redirect_uri, redirect_uri_sent) = match params.redirect_uri.as_deref() {
        Some(uri) if client.redirect_uris.iter().any(|r| redirect::matches(r, uri)) => (uri.to_owned(), true),
        Some(_) => {
            return Err(FlowError::page("The redirect_uri is not registered for this application."));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => {
                return Err(FlowError::page("The request has no redirect_uri and the application has several."));
            }
        },
    };
    let back = ReturnTo { redirect_uri: &redirect_uri, state: params.state.as_deref(), issuer: ctx.issuer };
    let Validated { mut request, resource, provider, mut upstream_scopes } =
        validate(ctx, &client, &params, redirect_uri.clone(), redirect_uri_sent).map_err(|e| back.error(&e))?;

    // One binding per browser, reused across authorizations (and tabs).
    let presented = binding.filter(|b| is_binding(b));
    let binding = presented.map_or_else(random::token, str::to_owned);
    // Step-up: a new authorization for the same client and resource in this browser widens
    // the earlier grant (asking upstream for the union) instead of replacing it with a
    // narrower one. The callback keeps the union only if the same user signs in upstream.
    // A browser that just got its binding has no earlier grant to look up.
    let earlier = match presented {
        Some(_) => earlier_grant(stores, &hash::digest(&binding), &request).await?,
        None => None,
    };
    if let Some(earlier) = earlier {
        let union: Vec<String> = resource
            .scopes
            .iter()
            .map(|s| &s.name)
            .filter(|n| request.scope.contains(n) || earlier.info.scope.contains(n))
            .cloned()
            .collect();
        if union != request.scope {
            upstream_scopes = scope::upstream_scopes(&union, resource, provider.base_scopes());
            request.scope = union;
        }
        request.offline |= earlier.info.offline;
        request.widens = Some(earlier.id);
    }
    // OIDC `prompt=consent` (and `login`) ask for the page whatever was approved before.
    let forced = params.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "consent" || v == "login"));
    let binding_digest = hash::digest(&binding);
    let session =
        super::links::session(ctx, cookies.session, &binding_digest, now).await.map_err(|e| back.error(&e))?;
    // `[login]`: who the user is comes first; the request resumes after the sign-in.
    if let Some(login) = ctx.login
        && session.is_none()
    {
        let resume = serde_urlencoded::to_string(&params)
            .map_err(|_| FlowError::page("The authorization request cannot be resumed after sign-in."))?;
        let url = super::links::send_to_login(ctx, login, request, resume, binding_digest, now).await?;
        return Ok(Started::Upstream { url, binding });
    }
    if !forced && ConsentJar::read(cookies.consent, ctx.keys, now).covers(&client, &request, now) {
        tracing::info!(client_id = %client.client_id, "consent remembered for this browser");
        let url = send_upstream(ctx, stores.pending, request, binding_digest, cookies.session, now).await?;
        return Ok(Started::Upstream { url, binding });
    }
    let consent_id = random::token();
    let record = ConsentRecord {
        request: request.clone(),
        binding_digest,
        client_digest: client_digest(&client),
        created_at: now,
    };
    stores.pending.put_consent(&hash::digest(&consent_id), &record, ctx.lifetimes.authorization).await?;
    // Who is signed in, and whether their connection serves this without an upstream sign-in:
    // the page says so, so that a person at someone else's browser notices.
    let connected_as = match &session {
        Some(s) => super::links::reusable(ctx, &s.user, provider.id(), &upstream_scopes, now)
            .await
            .map_err(|e| back.error(&e))?
            .map(|(link, _)| link.info.account.unwrap_or(link.info.subject)),
        None => None,
    };

    Ok(Started::Consent(Box::new(ConsentView {
        signed_in_as: session.map(|s| s.display_name.or(s.email).unwrap_or(s.user)),
        connected_as,
        consent_id,
        binding,
        client_id: client.client_id.clone(),
        client_name: client.client_name.clone(),
        redirect_host: redirect::display_host(&redirect_uri),
        widening: request.widens.is_some(),
        // MCP security considerations: warn when the code goes to this computer only.
        local_only: client.redirect_uris.iter().all(|u| redirect::is_loopback_uri(u)),
        document_host: (client.source == ClientSource::Document).then(|| redirect::display_host(&client.client_id)),
        connect: false,
        resource_name: resource.name.clone(),
        resource_uri: resource.uri.clone(),
        provider_name: provider.display_name().to_owned(),
        scopes: scope::described(resource, &request.scope),
        upstream_scopes,
    })))
}

/// A request that passed every check, with what it resolved to.
struct Validated<'a> {
    request: AuthorizationRecord,
    resource: &'a Resource,
    provider: &'a Provider,
    upstream_scopes: Vec<String>,
}

/// The active grant this browser last obtained for the request's client and resource.
async fn earlier_grant(
    stores: AuthorizeStores<'_>,
    browser: &str,
    request: &AuthorizationRecord,
) -> Result<Option<crate::store::GrantRecord>, FlowError> {
    let Some(grant_id) = stores.browsers.remembered_grant(browser, &request.client_id, &request.resource).await? else {
        return Ok(None);
    };
    Ok(stores.grants.grant(&grant_id).await?.filter(|g| {
        g.status == GrantStatus::Active && g.info.client_id == request.client_id && g.info.resource == request.resource
    }))
}

/// The checks that, once the redirect URI is trusted, are reported to the client.
fn validate<'a>(
    ctx: FlowContext<'a>,
    client: &ClientRecord,
    params: &AuthorizeParams,
    redirect_uri: String,
    redirect_uri_sent: bool,
) -> Result<Validated<'a>, OAuthError> {
    match params.response_type.as_deref() {
        Some("code") => {}
        None => return Err(OAuthError::invalid_request("response_type is required")),
        Some(_) => {
            return Err(OAuthError::new(ErrorCode::UnsupportedResponseType, "only response_type=code is supported"));
        }
    }
    // OIDC Core §3.1.2.1: with prompt=none no page may be shown, and Tether always shows one.
    if params.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "none")) {
        return Err(OAuthError::new(ErrorCode::InteractionRequired, "Tether always asks the user for consent"));
    }
    let code_challenge =
        pkce::validate_challenge(params.code_challenge.as_deref(), params.code_challenge_method.as_deref())?;
    let resource = ctx.registry.resource_for(params.resource.as_deref())?;
    let provider = ctx
        .providers
        .get(&resource.provider)
        .ok_or_else(|| OAuthError::server_error("the resource's provider is not configured"))?;
    let scopes = scope::negotiate(params.scope.as_deref(), resource, provider.base_scopes())?;
    let request = AuthorizationRecord {
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_sent,
        state: params.state.clone(),
        code_challenge,
        resource: resource.id.clone(),
        requested_scope: scopes.granted.clone(),
        scope: scopes.granted,
        widens: None,
        offline: scopes.offline || client.grant_types.iter().any(|g| g == "refresh_token"),
        client_name: client.client_name.clone(),
        client_source: Some(client.source),
    };
    Ok(Validated { request, resource, provider, upstream_scopes: scopes.upstream })
}
