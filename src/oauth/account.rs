//! The account page: a person signs in to Tether and sees, per MCP client, what they
//! delegated (which MCP servers, which upstream account, which scopes, when last used), and
//! takes it back: one client, every client, or a whole upstream connection. Every removal
//! goes through the one revocation path (`revocation::end`), as the admin API's do.
//!
//! Signing in: with `[login]`, at the login provider; otherwise at one of the upstream
//! providers, which shows the grants of that upstream identity. Either way the page runs on
//! the same short, browser-bound session as the consent flow (`links::session`). Knows
//! nothing of HTML: `http::account` shapes the pages.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::{EventType, Origin};
use crate::clock::UnixTime;
use crate::crypto::seal::KeyRing;
use crate::crypto::{hash, random};
pub use crate::store::SessionRecord;
use crate::store::{AuthorizationRecord, PendingRecord};

use super::admin::{self, AdminContext, BulkRevoke, GrantFilter, GrantView, State};
use super::authorize::FlowContext;
use super::error::{ErrorCode, OAuthError};
use super::flow::{FlowError, PageStatus};
use super::revocation::{Trigger, UpstreamResult};

/// Recent events shown on the page.
const ACTIVITY: usize = 10;

/// The providers a person may sign in with: the login provider under `[login]`, otherwise
/// every provider an MCP server uses (id, display name).
pub fn sign_in_choices(ctx: FlowContext<'_>) -> Vec<(String, String)> {
    if let Some(login) = ctx.login {
        return vec![(login.id().to_owned(), login.display_name().to_owned())];
    }
    let mut choices: Vec<(String, String)> = Vec::new();
    for resource in ctx.registry.resources() {
        if choices.iter().any(|(id, _)| *id == resource.provider) {
            continue;
        }
        if let Some(provider) = ctx.providers.get(&resource.provider) {
            choices.push((provider.id().to_owned(), provider.display_name().to_owned()));
        }
    }
    choices
}

/// Sends the browser to sign in at `provider` for the account page: the URL, and the browser
/// binding to (re)set (the one presented, or a new one; the session is bound to it).
pub async fn start_sign_in(
    ctx: FlowContext<'_>,
    provider: &str,
    presented_binding: Option<&str>,
    now: UnixTime,
) -> Result<(url::Url, String), FlowError> {
    let binding =
        presented_binding.filter(|b| super::authorize::is_binding(b)).map_or_else(random::token, str::to_owned);
    let binding_digest = hash::digest(&binding);
    if ctx.lifetimes.session.is_zero() {
        return Err(FlowError::page(
            "The account page needs sign-in sessions, which this server turned off (tokens.session_ttl_secs = 0).",
        ));
    }
    if !sign_in_choices(ctx).iter().any(|(id, _)| id == provider) {
        return Err(FlowError::page("You cannot sign in to this page with that provider."));
    }
    let url = page_sign_in(ctx, provider, &[], &binding_digest, None, now).await?;
    Ok((url, binding))
}

/// Stores a pending upstream sign-in at `provider` that ends on the account page (no client
/// waits for it; its failures are pages), for the provider's own scopes and `upstream_scopes`,
/// bound to the browser; `reconnect` when it restores a connection (see `oauth::reconnect`).
/// Returns where to send the browser.
pub(super) async fn page_sign_in(
    ctx: FlowContext<'_>,
    provider: &str,
    upstream_scopes: &[String],
    binding_digest: &str,
    reconnect: Option<crate::store::Reconnect>,
    now: UnixTime,
) -> Result<url::Url, FlowError> {
    let provider = ctx.providers.get(provider).ok_or_else(|| FlowError::page("That provider is not configured."))?;
    let (state, verifier) = (random::token(), random::token());
    let nonce = provider.uses_nonce().then(random::token);
    let mut scopes = provider.base_scopes().to_vec();
    scopes.extend(upstream_scopes.iter().filter(|s| !provider.base_scopes().contains(s)).cloned());
    let url = provider.authorize_url(&state, &verifier, nonce.as_deref(), &scopes).await.map_err(|e| {
        tracing::warn!(provider = %provider.id(), error = %e, "cannot start an upstream sign-in");
        FlowError::Page {
            status: PageStatus::Unavailable,
            message: "The provider is unavailable. Try again in a moment.".into(),
        }
    })?;
    let record = PendingRecord {
        // No client waits for this sign-in; the callback sends the browser to the page.
        request: AuthorizationRecord {
            client_id: String::new(),
            redirect_uri: format!("{}/account", ctx.issuer),
            redirect_uri_sent: false,
            state: None,
            code_challenge: String::new(),
            resource: String::new(),
            scope: Vec::new(),
            requested_scope: Vec::new(),
            widens: None,
            offline: false,
            client_name: None,
            client_source: None,
        },
        binding_digest: binding_digest.to_owned(),
        provider: provider.id().to_owned(),
        upstream_verifier: verifier,
        upstream_nonce: nonce,
        upstream_scopes: scopes,
        created_at: now,
        user: None,
        resume: None,
        account: true,
        reconnect,
    };
    ctx.store.put_pending(&hash::digest(&state), &record, ctx.lifetimes.authorization).await?;
    Ok(url)
}

/// The signed-in person, when the browser presents a live session issued to it.
pub async fn session(
    ctx: FlowContext<'_>,
    session: Option<&str>,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<Option<SessionRecord>, OAuthError> {
    let Some(binding) = binding.filter(|b| super::authorize::is_binding(b)) else { return Ok(None) };
    super::links::session(ctx, session, &hash::digest(binding), now).await
}

/// Ends the session the browser presents (the cookie is dropped by the caller).
pub async fn sign_out(ctx: FlowContext<'_>, session: &str) -> Result<(), OAuthError> {
    ctx.store.end_browser_session(&hash::digest(session)).await?;
    Ok(())
}

fn csrf_message(session: &str) -> Vec<u8> {
    let mut message = b"tether/account-form/v1\0".to_vec();
    message.extend_from_slice(hash::digest(session).as_bytes());
    message
}

/// The token every form on the page carries: a MAC of the session, so a page of another
/// site cannot post on the user's behalf (and it changes with every sign-in).
pub fn form_token(keys: &KeyRing, session: &str) -> String {
    let (kid, tag) = keys.mac(&csrf_message(session));
    format!("{kid}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Whether `token` is this session's form token (under any key still in the ring).
pub fn form_token_ok(keys: &KeyRing, session: &str, token: &str) -> bool {
    let Some((kid, tag)) = token.split_once('.') else { return false };
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
    keys.verify_mac(kid, &csrf_message(session), &tag)
}

/// How a client came to be known, as the page says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Registered itself (RFC 7591): anyone can claim a name. Its redirect host.
    Dynamic { redirect_host: Option<String> },
    /// Identified by a metadata document (CIMD): its host published the document.
    Document { host: String },
    /// Configured by the operator.
    PreRegistered,
    /// A grant made before Tether recorded it.
    Unknown,
}

/// One MCP server a client reaches for the user.
#[derive(Debug, Clone)]
pub struct ServerAccess {
    pub grant_id: String,
    pub resource_name: String,
    pub resource_uri: Option<String>,
    pub provider_name: String,
    /// The upstream account it acts as (the GitHub login).
    pub account: Option<String>,
    /// MCP scopes with the resource's descriptions.
    pub scopes: Vec<(String, Option<String>)>,
    pub upstream_scopes: Vec<String>,
    pub status: State,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

/// One client's card: everything the user delegated to it.
#[derive(Debug, Clone)]
pub struct ClientCard {
    pub client_id: String,
    pub name: Option<String>,
    pub registration: Registration,
    pub servers: Vec<ServerAccess>,
    pub connected_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// The MCP server that used it last.
    pub last_used_by: Option<String>,
    /// The card's chip: active when any access is, otherwise the first reason it is not.
    pub status: State,
}

/// One upstream connection of the user.
#[derive(Debug, Clone)]
pub struct ConnectionCard {
    pub id: String,
    pub provider_name: String,
    pub account: Option<String>,
    pub status: Option<&'static str>,
    pub scope: Vec<String>,
    pub connected_at: Option<UnixTime>,
    pub active_grants: usize,
    /// Whether removal also revokes at the provider by default (the provider is configured to).
    pub revokes_upstream: bool,
    /// The provider's own page of authorized apps.
    pub provider_page: Option<String>,
}

/// Something that happened, in words, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// RFC 3339 (UTC).
    pub time: String,
    pub what: String,
}

/// What the page shows.
#[derive(Debug, Clone)]
pub struct AccountView {
    pub user: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub clients: Vec<ClientCard>,
    pub connections: Vec<ConnectionCard>,
    pub activity: Vec<Activity>,
}

impl AccountView {
    /// The name the page greets the person by.
    pub fn who(&self) -> &str {
        self.name.as_deref().or(self.email.as_deref()).unwrap_or(&self.user)
    }
}

/// The name a session's person is greeted by (as on the consent page).
pub fn who(session: &SessionRecord) -> &str {
    session.display_name.as_deref().or(session.email.as_deref()).unwrap_or(&session.user)
}

/// The user's live grants and connections (grants already revoked stay off the page; the
/// activity list says who removed them).
async fn grants(admin: AdminContext<'_>, user: &str) -> Result<Option<admin::UserView>, OAuthError> {
    match admin::user(admin, user).await {
        Ok(view) => Ok(Some(view)),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Everything the page shows for the signed-in `session`.
pub async fn view(
    ctx: FlowContext<'_>,
    admin: AdminContext<'_>,
    session: &SessionRecord,
) -> Result<AccountView, OAuthError> {
    let (mut view, names) = delegations(ctx, admin, session).await?;
    view.activity = activity(ctx, admin, &session.user, &names).await;
    Ok(view)
}

/// The page without its activity list, and the client names the activity list uses.
async fn delegations(
    ctx: FlowContext<'_>,
    admin: AdminContext<'_>,
    session: &SessionRecord,
) -> Result<(AccountView, BTreeMap<String, String>), OAuthError> {
    let user = &session.user;
    let found = grants(admin, user).await?;
    let (grants, connections) = match found {
        Some(view) => (view.grants, view.connections),
        None => (Vec::new(), Vec::new()),
    };
    let names: BTreeMap<String, String> =
        grants.iter().filter_map(|g| g.client.name.clone().map(|n| (g.client.client_id.clone(), n))).collect();
    let mut clients: Vec<ClientCard> = Vec::new();
    for grant in grants.iter().filter(|g| g.status != State::Revoked) {
        let access = server_access(ctx, grant);
        match clients.iter_mut().find(|c| c.client_id == grant.client.client_id) {
            Some(card) => {
                card.connected_at = card.connected_at.min(grant.created_at);
                if grant.last_used_at > card.last_used_at {
                    card.last_used_at = grant.last_used_at;
                    card.last_used_by = last_used_by(ctx, grant);
                }
                if card.status != State::Active {
                    card.status = grant.status;
                }
                card.servers.push(access);
            }
            None => clients.push(ClientCard {
                client_id: grant.client.client_id.clone(),
                name: grant.client.name.clone(),
                registration: registration(grant),
                connected_at: grant.created_at,
                last_used_at: grant.last_used_at,
                last_used_by: last_used_by(ctx, grant),
                status: grant.status,
                servers: vec![access],
            }),
        }
    }
    let connections = connections
        .into_iter()
        .filter(|c| c.active_grants > 0 || c.status.is_some_and(|s| s != "ended"))
        .map(|c| {
            let provider = ctx.providers.get(&c.provider);
            ConnectionCard {
                provider_name: provider.map_or_else(|| c.provider.clone(), |p| p.display_name().to_owned()),
                revokes_upstream: provider.is_some_and(|p| p.revokes_upstream()),
                provider_page: provider.and_then(|p| p.account_url()).map(ToString::to_string),
                account: if c.status == Some(admin::WAITING) { None } else { c.upstream_account.or(Some(c.subject)) },
                status: c.status,
                scope: c.scope,
                connected_at: c.connected_at,
                active_grants: c.active_grants,
                id: c.id,
            }
        })
        .collect();
    let first = grants.first();
    let view = AccountView {
        user: user.clone(),
        name: session.display_name.clone().or_else(|| first.and_then(|g| g.user.name.clone())),
        email: session.email.clone().or_else(|| first.and_then(|g| g.user.email.clone())),
        clients,
        connections,
        activity: Vec::new(),
    };
    Ok((view, names))
}

fn registration(grant: &GrantView) -> Registration {
    match grant.client.registration {
        "dynamic" => Registration::Dynamic { redirect_host: grant.client.redirect_host.clone() },
        "metadata_document" => Registration::Document { host: super::redirect::display_host(&grant.client.client_id) },
        "pre_registered" => Registration::PreRegistered,
        _ => Registration::Unknown,
    }
}

fn resource_name(ctx: FlowContext<'_>, id: &str) -> String {
    ctx.registry.resource(id).map_or_else(|| id.to_owned(), |r| r.name.clone())
}

fn last_used_by(ctx: FlowContext<'_>, grant: &GrantView) -> Option<String> {
    grant.last_used_by.as_deref().map(|by| resource_name(ctx, by))
}

fn server_access(ctx: FlowContext<'_>, grant: &GrantView) -> ServerAccess {
    let offered = ctx.registry.resource(&grant.resource.id);
    let scopes = grant
        .scope
        .iter()
        .map(|s| {
            let description =
                offered.and_then(|r| r.scopes.iter().find(|o| o.name == *s)).and_then(|o| o.description.clone());
            (s.clone(), description)
        })
        .collect();
    ServerAccess {
        grant_id: grant.id.clone(),
        resource_name: grant.resource.name.clone().unwrap_or_else(|| grant.resource.id.clone()),
        resource_uri: grant.resource.uri.clone(),
        provider_name: ctx
            .providers
            .get(&grant.provider)
            .map_or_else(|| grant.provider.clone(), |p| p.display_name().to_owned()),
        account: grant.user.upstream_account.clone(),
        scopes,
        upstream_scopes: grant.upstream_scope.clone(),
        status: grant.status,
        created_at: grant.created_at,
        last_used_at: grant.last_used_at,
    }
}

/// The user's recent events in words. The page still works when the trail cannot be read.
async fn activity(
    ctx: FlowContext<'_>,
    admin: AdminContext<'_>,
    user: &str,
    clients: &BTreeMap<String, String>,
) -> Vec<Activity> {
    match admin.events.user_events(user).await {
        Ok(events) => events
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.json).ok())
            .filter_map(|e| describe(ctx, &e, clients))
            .take(ACTIVITY)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the recent activity for the account page");
            Vec::new()
        }
    }
}

/// One event in words, or `None` for one the page does not show.
fn describe(ctx: FlowContext<'_>, event: &serde_json::Value, clients: &BTreeMap<String, String>) -> Option<Activity> {
    let data = &event["data"];
    let field = |name: &str| data[name].as_str().map(str::to_owned);
    let client = field("client_id").map(|id| clients.get(&id).cloned().unwrap_or(id));
    let client = client.as_deref().unwrap_or("an application");
    let resource = field("resource").map(|r| resource_name(ctx, &r));
    let resource = resource.as_deref().unwrap_or("an MCP server");
    let provider = field("provider").map(|p| ctx.providers.get(&p).map_or(p, |p| p.display_name().to_owned()));
    let provider = provider.as_deref().unwrap_or("the provider");
    let kind = EventType::parse(event["type"].as_str()?)?;
    let what = match kind {
        EventType::UserSignedIn => format!("You signed in with {provider}."),
        EventType::ConnectionMade => format!("You connected your {provider} account."),
        EventType::ConnectionWidened => format!("You gave Tether more access to your {provider} account."),
        EventType::ConnectionRefreshed => format!("Tether renewed its access to your {provider} account."),
        EventType::ConnectionRefreshFailed => {
            format!("{provider} refused to renew Tether's access: connect it again to go on.")
        }
        EventType::ConnectionRestored => format!("You connected your {provider} account again."),
        EventType::GrantIssued => format!("{client} was given access to {resource}."),
        EventType::CredentialReleased => {
            let times = data["count"].as_u64().filter(|n| *n > 1).map(|n| format!(" ({n} times)")).unwrap_or_default();
            format!("{resource} used your {provider} access for {client}{times}.")
        }
        EventType::GrantRevoked => {
            let by = match data["actor"]["type"].as_str() {
                Some("user") => "by you".to_owned(),
                Some("admin") => "by an administrator".to_owned(),
                Some("client") => "by the application".to_owned(),
                Some("resource") => "by the MCP server".to_owned(),
                _ => format!("by Tether ({})", field("reason").unwrap_or_default().replace('_', " ")),
            };
            format!("Access of {client} to {resource} was removed {by}.")
        }
        _ => return None,
    };
    Some(Activity { time: event["time"].as_str().unwrap_or_default().to_owned(), what })
}

/// What a removal did, for the page after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Accesses (grants) ended.
    pub ended: usize,
    pub upstream: UpstreamResult,
}

fn nothing(what: &str) -> OAuthError {
    OAuthError::new(ErrorCode::NotFound, format!("you have no {what} to remove (it may be gone already)"))
}

/// Ends the user's access given to one client (every MCP server it reaches). Upstream
/// authorizations are revoked only when no other grant of the user uses them.
pub async fn remove_client(
    admin: AdminContext<'_>,
    user: &str,
    client_id: &str,
    origin: &Origin,
    now: UnixTime,
) -> Result<Removed, OAuthError> {
    let filter =
        GrantFilter { user: Some(user.to_owned()), client_id: Some(client_id.to_owned()), ..GrantFilter::default() };
    remove(admin, user, filter, origin, now)
        .await
        .and_then(|r| if r.ended == 0 { Err(nothing("access for that application")) } else { Ok(r) })
}

/// Ends every access the user gave.
pub async fn remove_all(
    admin: AdminContext<'_>,
    user: &str,
    origin: &Origin,
    now: UnixTime,
) -> Result<Removed, OAuthError> {
    let filter = GrantFilter { user: Some(user.to_owned()), ..GrantFilter::default() };
    remove(admin, user, filter, origin, now)
        .await
        .and_then(|r| if r.ended == 0 { Err(nothing("access")) } else { Ok(r) })
}

async fn remove(
    admin: AdminContext<'_>,
    user: &str,
    filter: GrantFilter,
    origin: &Origin,
    now: UnixTime,
) -> Result<Removed, OAuthError> {
    let request = BulkRevoke { filter, upstream: true, ..BulkRevoke::default() };
    let trigger = Trigger::User { user: user.to_owned() };
    let report = admin::revoke_matching(admin, &request, &trigger, origin, now).await?;
    Ok(Removed { ended: report.matched, upstream: report.upstream.unwrap_or(UpstreamResult::Skipped) })
}

/// The user's connection `id`, if it is theirs.
pub async fn connection(
    ctx: FlowContext<'_>,
    admin: AdminContext<'_>,
    session: &SessionRecord,
    id: &str,
) -> Result<Option<ConnectionCard>, OAuthError> {
    Ok(delegations(ctx, admin, session).await?.0.connections.into_iter().find(|c| c.id == id))
}

/// Ends `connection`, one of the user's (from [`connection`]): every grant on it, and with
/// `upstream` the authorization at the provider.
pub async fn disconnect(
    admin: AdminContext<'_>,
    session: &SessionRecord,
    connection: &ConnectionCard,
    upstream: bool,
    origin: &Origin,
    now: UnixTime,
) -> Result<Removed, OAuthError> {
    let trigger = Trigger::User { user: session.user.clone() };
    let report = admin::disconnect(admin, &connection.id, &trigger, upstream, origin, now).await?;
    Ok(Removed { ended: report.matched, upstream: report.upstream.unwrap_or(UpstreamResult::Skipped) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sign_ins_of_the_previous_version_read_as_client_flows() {
        let old = serde_json::json!({
            "request": {"client_id": "c", "redirect_uri": "https://c/cb", "redirect_uri_sent": true,
                "code_challenge": "x", "resource": "files", "scope": [], "offline": true},
            "binding_digest": "b", "provider": "dev", "upstream_verifier": "v", "upstream_scopes": [], "created_at": 1
        });
        let read: PendingRecord = serde_json::from_value(old).unwrap();
        assert!(!read.account, "an authorization in flight during the upgrade is not an account sign-in");
        assert!(read.reconnect.is_none(), "nor a reconnection");
        let written = serde_json::to_string(&read).unwrap();
        assert!(!written.contains("account") && !written.contains("reconnect"), "{written}");
    }

    #[test]
    fn the_form_token_belongs_to_one_session_and_one_key_ring() {
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let token = form_token(&keys, "session-a");
        assert!(form_token_ok(&keys, "session-a", &token));
        assert!(!form_token_ok(&keys, "session-b", &token), "another session");
        let other = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        assert!(!form_token_ok(&other, "session-a", &token), "another key");
        for junk in ["", ".", "k1.", "k1.!!", "nodot", "k2.AAAA"] {
            assert!(!form_token_ok(&keys, "session-a", junk), "{junk}");
        }
    }
}
