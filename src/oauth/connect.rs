//! The connect flow: an MCP server that keeps its own sessions asks Tether to connect one of
//! them to the user's upstream account, mid-conversation.
//!
//! The server asks for a link (`start`); the user opens it, sees Tether's consent page naming
//! the server, signs in upstream; the upstream token is sealed into a grant and the session
//! is pointed at it. The browser leg is Tether's ordinary authorization flow with Tether as
//! its own client (`tether-connect:<resource>`, redirect URI `/connect/finish`, PKCE with a
//! verifier kept in the connection record), so consent, CSRF, browser binding and the
//! upstream callback are the ones every MCP client goes through.
//!
//! A link opens in one browser only (the first to open it claims it), finishes once, and
//! dies with its connection (`lifetimes.authorization`). Sessions belong to the server that
//! asked: another resource can neither read, resolve nor complete them.

use serde::Serialize;

use crate::clock::UnixTime;
use crate::crypto::{hash, random};
use crate::store::{
    AuthorizationRecord, CodeStore, CodeTake, ConnectStore, ConnectionOutcome, ConnectionRecord, ConnectionStatus,
    ConsentRecord, GrantStatus, GrantStore, PendingStore,
};

use super::authorize::FlowContext;
use super::error::OAuthError;
use super::flow::{ConsentView, FlowError};
use super::introspection::UpstreamCredential;
use super::pkce;
use super::refresh::{Freshness, Refresher};
use super::registry::Resource;
use super::revocation::{self, Report, Revoker, Trigger};
use super::scope;
use crate::audit::Origin;

/// Session ids are the server's; Tether only bounds them.
const MAX_SESSION_LEN: usize = 256;

/// The client id Tether uses for itself in a resource's connect flows.
pub fn client_id(resource: &str) -> String {
    format!("tether-connect:{resource}")
}

/// Where the browser comes back after the upstream leg.
pub fn finish_uri(issuer: &str) -> String {
    format!("{issuer}/connect/finish")
}

/// The stores the connect flow uses.
#[derive(Clone, Copy)]
pub struct ConnectStores<'a> {
    pub connect: &'a dyn ConnectStore,
    pub pending: &'a dyn PendingStore,
    pub codes: &'a dyn CodeStore,
    pub grants: &'a dyn GrantStore,
}

/// A connection as its server sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub id: String,
    pub session: String,
    /// `pending`, `connected`, `denied`, `failed` or `expired`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub expires_at: UnixTime,
}

/// What `start` hands the server.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub id: String,
    pub session: String,
    pub connect_url: String,
    pub expires_at: UnixTime,
    pub expires_in: i64,
}

/// The digest a session is stored under: the server's id and the session, never the raw id.
fn session_key(resource: &str, session: &str) -> String {
    hash::digest(&format!("{resource}\n{session}"))
}

fn check_session(session: &str) -> Result<(), OAuthError> {
    if session.is_empty() || session.len() > MAX_SESSION_LEN || session.chars().any(char::is_control) {
        return Err(OAuthError::invalid_request(format!(
            "session must be 1 to {MAX_SESSION_LEN} characters without control characters"
        )));
    }
    Ok(())
}

/// `POST /connect`: a single-use link connecting `session` of `caller` to its provider.
pub async fn start(
    ctx: FlowContext<'_>,
    stores: ConnectStores<'_>,
    caller: &Resource,
    session: &str,
    requested_scope: Option<&str>,
    now: UnixTime,
) -> Result<Started, OAuthError> {
    check_session(session)?;
    let provider = ctx
        .providers
        .get(&caller.provider)
        .ok_or_else(|| OAuthError::server_error("the resource's provider is not configured"))?;
    let scopes = scope::negotiate(requested_scope, caller, provider.base_scopes())?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let link = random::token();
    let ttl = ctx.lifetimes.authorization;
    let expires_in = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let record = ConnectionRecord {
        resource: caller.id.clone(),
        session: session.to_owned(),
        scope: scopes.granted,
        verifier: random::token(),
        created_at: now,
        expires_at: now.saturating_add(expires_in),
    };
    stores.connect.put_connection(&id, &hash::digest(&link), &record, ttl).await?;
    tracing::info!(resource = %caller.id, connection = %id, "connect link issued");
    Ok(Started {
        id,
        session: record.session,
        connect_url: format!("{}/connect/link/{link}", ctx.issuer),
        expires_at: record.expires_at,
        expires_in,
    })
}

/// The browser opened a link: claim the connection for this browser and show the consent
/// page. `binding` is the browser-binding cookie the browser sent, if any; the page sets the
/// one in the view.
pub async fn open(
    ctx: FlowContext<'_>,
    stores: ConnectStores<'_>,
    link: &str,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<ConsentView, FlowError> {
    let binding = binding.filter(|b| super::authorize::is_binding(b)).map_or_else(random::token, str::to_owned);
    let binding = binding.as_str();
    let dead = || FlowError::page("This link has expired or was already used. Ask the assistant for a new one.");
    let id = stores.connect.connection_for_link(&hash::digest(link)).await?.ok_or_else(dead)?;
    let record = stores.connect.connection(&id).await?.filter(|r| r.expires_at > now).ok_or_else(dead)?;
    if stores.connect.connection_outcome(&id).await?.is_some() {
        return Err(dead());
    }
    let binding_digest = hash::digest(binding);
    let ttl = ctx.lifetimes.authorization;
    let holder = stores.connect.claim_connection(&id, &binding_digest, ttl).await?;
    if holder != binding_digest {
        return Err(other_browser());
    }
    let unavailable = || FlowError::page("This MCP server is no longer configured.");
    let resource = ctx.registry.resource(&record.resource).ok_or_else(unavailable)?;
    let provider = ctx.providers.get(&resource.provider).ok_or_else(unavailable)?;
    let request = AuthorizationRecord {
        client_id: client_id(&resource.id),
        redirect_uri: finish_uri(ctx.issuer),
        redirect_uri_sent: true,
        state: Some(id),
        code_challenge: crate::crypto::hash::s256_challenge(&record.verifier),
        resource: resource.id.clone(),
        scope: record.scope.clone(),
        requested_scope: record.scope.clone(),
        widens: None,
        offline: true,
        client_name: Some(format!("{} (connected by the MCP server)", resource.name)),
        client_source: Some(crate::store::ClientSource::Configured),
    };
    let consent_id = random::token();
    let consent = ConsentRecord { request, binding_digest, client_digest: String::new(), created_at: now };
    stores.pending.put_consent(&hash::digest(&consent_id), &consent, ttl).await?;
    Ok(ConsentView {
        signed_in_as: None,
        connected_as: None,
        consent_id,
        binding: binding.to_owned(),
        client_id: client_id(&resource.id),
        client_name: Some(resource.name.clone()),
        redirect_host: super::redirect::display_host(ctx.issuer),
        widening: false,
        local_only: false,
        document_host: None,
        connect: true,
        resource_name: resource.name.clone(),
        resource_uri: resource.uri.clone(),
        provider_name: provider.display_name().to_owned(),
        scopes: scope::described(resource, &record.scope),
        upstream_scopes: scope::upstream_scopes(&record.scope, resource, provider.base_scopes()),
    })
}

fn other_browser() -> FlowError {
    FlowError::forbidden("This link was opened in another browser. Ask the assistant for a new one.")
}

/// What the finish step tells the browser (and the server, through `settled`).
#[derive(Debug, Clone)]
pub struct Finished {
    pub resource_name: String,
    pub outcome: ConnectionOutcome,
    /// Announced to the server: `{"type": "connection.<status>", ...}`.
    pub event: String,
    pub resource: String,
}

/// The browser came back from the authorization with a code (or an error) for connection
/// `state`: redeem the code as Tether's own client, point the session at the grant, and
/// settle the connection.
pub async fn finish(
    ctx: FlowContext<'_>,
    stores: ConnectStores<'_>,
    params: &FinishParams,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<Finished, FlowError> {
    let gone = || FlowError::page("This connection has expired. Ask the assistant for a new link.");
    let id = params.state.as_deref().filter(|s| !s.is_empty()).ok_or_else(gone)?;
    let record = stores.connect.connection(id).await?.ok_or_else(gone)?;
    let ttl = ctx.lifetimes.authorization;
    // The code is only worth something in the browser that claimed the link.
    let browser = hash::digest(binding.ok_or_else(other_browser)?);
    if stores.connect.claim_connection(id, &browser, ttl).await? != browser {
        return Err(other_browser());
    }
    let settle = |status: ConnectionStatus, reason: Option<&str>| ConnectionOutcome {
        status,
        at: now,
        reason: reason.map(str::to_owned),
    };
    let outcome = match (&params.code, params.error.as_deref()) {
        (_, Some("access_denied")) => settle(ConnectionStatus::Denied, Some("the user declined")),
        (_, Some(_)) => settle(ConnectionStatus::Failed, Some("the sign-in did not complete")),
        (Some(code), None) => match redeem(ctx, stores, &record, id, code, now).await {
            Ok(()) => settle(ConnectionStatus::Connected, None),
            Err(e @ FlowError::Page { .. }) => return Err(e),
            Err(FlowError::Redirect(_)) => settle(ConnectionStatus::Failed, Some("the sign-in did not complete")),
        },
        (None, None) => return Err(FlowError::page("The answer is incomplete.")),
    };
    let outcome = stores.connect.settle_connection(id, &outcome, ttl).await?;
    let event = serde_json::json!({
        "type": format!("connection.{}", outcome.status.as_str()),
        "id": id,
        "session": record.session,
        "resource": record.resource,
        "at": outcome.at,
    })
    .to_string();
    if let Err(e) = stores.connect.publish_connection(&record.resource, &event).await {
        tracing::warn!(error = %e, "cannot publish the connection event; the server can still poll");
    }
    tracing::info!(resource = %record.resource, connection = %id, status = outcome.status.as_str(), "connection settled");
    let resource_name =
        ctx.registry.resource(&record.resource).map_or_else(|| record.resource.clone(), |r| r.name.clone());
    Ok(Finished { resource_name, outcome, event, resource: record.resource })
}

/// What the authorization flow hands `/connect/finish`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct FinishParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Takes the code as the token endpoint would for Tether's own client, then points the
/// session at the grant (ending the grant it pointed at before).
async fn redeem(
    ctx: FlowContext<'_>,
    stores: ConnectStores<'_>,
    record: &ConnectionRecord,
    id: &str,
    code: &str,
    now: UnixTime,
) -> Result<(), FlowError> {
    let invalid = || FlowError::page("This answer is not valid for this connection. Ask the assistant for a new link.");
    let CodeTake::Fresh(taken) = stores.codes.take_code(&hash::digest(code), ctx.lifetimes.code).await? else {
        return Err(invalid());
    };
    let expected = client_id(&record.resource);
    if taken.client_id != expected
        || taken.redirect_uri != finish_uri(ctx.issuer)
        || taken.resource != record.resource
        || pkce::verify(Some(&record.verifier), &taken.code_challenge).is_err()
    {
        tracing::warn!(connection = %id, "a code for another flow was presented to /connect/finish");
        return Err(invalid());
    }
    let lifetime = ctx.lifetimes.refresh_token;
    if !stores.grants.set_grant_ttl(&taken.grant_id, lifetime).await? {
        return Err(invalid());
    }
    let key = session_key(&record.resource, &record.session);
    if let Some(before) = stores.connect.put_session(&key, &taken.grant_id, lifetime).await?
        && before != taken.grant_id
    {
        // Reconnecting a session replaces its account: the old grant ends.
        let trigger = Trigger::SessionReplaced { resource: record.resource.clone() };
        revocation::end(ctx.revoker, &[before], &trigger, true, ctx.origin, now).await.map_err(|e| {
            tracing::warn!(error = %e.description, "cannot end the session's earlier grant");
            FlowError::Page {
                status: super::flow::PageStatus::Unavailable,
                message: "Tether cannot complete this right now. Please try again shortly.".into(),
            }
        })?;
    }
    Ok(())
}

/// `GET /connect/{id}`: the connection's state, for its own server only.
pub async fn status(
    connect: &dyn ConnectStore,
    caller: &Resource,
    id: &str,
    now: UnixTime,
) -> Result<Option<ConnectionView>, OAuthError> {
    let Some(record) = connect.connection(id).await?.filter(|r| r.resource == caller.id) else {
        return Ok(None);
    };
    let outcome = connect.connection_outcome(id).await?;
    let status = match &outcome {
        Some(o) => o.status.as_str(),
        None if record.expires_at <= now => "expired",
        None => "pending",
    };
    Ok(Some(ConnectionView {
        id: id.to_owned(),
        session: record.session,
        status,
        reason: outcome.and_then(|o| o.reason),
        expires_at: record.expires_at,
    }))
}

/// A connected session's upstream credential.
#[derive(Debug, Serialize)]
pub struct Resolved {
    pub connected: bool,
    pub session: String,
    pub sub: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub upstream: UpstreamCredential,
}

/// `POST /connect/resolve`: the upstream credential of `caller`'s `session`, refreshed as
/// introspection refreshes it. `None`: not connected (never connected, disconnected, or the
/// upstream provider ended the grant).
pub async fn resolve(
    refresher: Refresher<'_>,
    connect: &dyn ConnectStore,
    caller: &Resource,
    session: &str,
    origin: &Origin,
    now: UnixTime,
) -> Result<Option<Resolved>, OAuthError> {
    check_session(session)?;
    let Some(grant_id) = connect.session(&session_key(&caller.id, session)).await? else { return Ok(None) };
    let Some(grant) = refresher.grants.grant(&grant_id).await? else { return Ok(None) };
    if grant.status != GrantStatus::Active || grant.info.resource != caller.id {
        return Ok(None);
    }
    let Some(tokens) = refresher.vault.open(&grant) else { return Ok(None) };
    let Freshness::Fresh(tokens) = refresher.ensure_fresh(&grant, tokens, now).await? else { return Ok(None) };
    let describe = || super::introspection::released(&grant, &caller.id, &tokens.access_token);
    refresher.audit.credential_released(&grant.id, &caller.id, &|| origin.clone(), now, describe);
    Ok(Some(Resolved {
        connected: true,
        session: session.to_owned(),
        sub: grant.info.subject,
        scope: grant.info.scope.join(" "),
        upstream: UpstreamCredential::new(grant.info.provider, tokens),
    }))
}

/// `DELETE /connect/{session}`: forgets the session and ends its grant (upstream too, where
/// the provider is so configured). The report when there was one.
pub async fn disconnect(
    revoker: Revoker<'_>,
    connect: &dyn ConnectStore,
    caller: &Resource,
    session: &str,
    origin: &Origin,
    now: UnixTime,
) -> Result<Option<Report>, OAuthError> {
    check_session(session)?;
    let Some(grant_id) = connect.take_session(&session_key(&caller.id, session)).await? else { return Ok(None) };
    let trigger = Trigger::SessionDisconnected { resource: caller.id.clone() };
    let report = revocation::end(revoker, &[grant_id], &trigger, true, origin, now).await?;
    tracing::info!(resource = %caller.id, "session disconnected");
    Ok(Some(report))
}
