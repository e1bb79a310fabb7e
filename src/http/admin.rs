//! The admin API (`/admin/v1/...`), served only on `admin.bind`: grants listed, shown and
//! revoked, users, connections, audit events. Every call carries an admin token
//! (`Authorization: Bearer`) with the scope the route needs, and every call is an audit event
//! naming the token's id (denied ones too).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::oauth::admin::{self, BulkRevoke, EventQuery, GrantFilter, State};
use crate::oauth::revocation::Trigger;
use crate::oauth::{ErrorCode, OAuthError};
use crate::settings::admin::AdminToken;

use super::AppState;
use super::error::{ApiError, json_error, no_store};

/// Every route of the admin API: method, path, the scope it needs. The router is built from
/// this table and `tests/admin.rs` checks the committed OpenAPI description against it.
pub const ROUTES: [(&str, &str, &str); 7] = [
    ("GET", "/admin/v1/grants", "grants:read"),
    ("POST", "/admin/v1/grants:revoke", "grants:revoke"),
    ("GET", "/admin/v1/grants/{id}", "grants:read"),
    ("DELETE", "/admin/v1/grants/{id}", "grants:revoke"),
    ("GET", "/admin/v1/users/{user}", "grants:read"),
    ("DELETE", "/admin/v1/connections/{id}", "grants:revoke"),
    ("GET", "/admin/v1/events", "events:read"),
];

/// The tokens that may call the admin API.
#[derive(Debug, Clone)]
pub struct AdminTokens(pub Vec<AdminToken>);

/// Mounts the admin API (on the admin listener only).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(64 * 1024).error_handler(super::error::json_error_handler))
        .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(&e)))
        .route("/admin/v1/grants", web::get().to(list))
        .route("/admin/v1/grants:revoke", web::post().to(revoke_matching))
        .route("/admin/v1/grants/{id}", web::get().to(show))
        .route("/admin/v1/grants/{id}", web::delete().to(revoke))
        .route("/admin/v1/users/{user}", web::get().to(user))
        .route("/admin/v1/connections/{id}", web::delete().to(disconnect))
        .route("/admin/v1/events", web::get().to(events));
}

fn query_error(e: &actix_web::error::QueryPayloadError) -> actix_web::Error {
    let error = OAuthError::invalid_request(format!("the query is malformed: {e}"));
    actix_web::error::InternalError::from_response("bad query", json_error(StatusCode::BAD_REQUEST, &error)).into()
}

/// The route template a request matched, for the scope table and the audit event.
fn route(req: &HttpRequest) -> String {
    req.match_pattern().unwrap_or_else(|| req.path().to_owned())
}

/// The calling token's id, once its token and scope check out (audited either way).
fn authorize(req: &HttpRequest, state: &AppState) -> Result<String, ApiError> {
    let route = route(req);
    let method = req.method().as_str();
    let scope = ROUTES.iter().find(|(m, p, _)| *m == method && *p == route).map_or("", |(_, _, s)| *s);
    let presented = super::authorization_header(req).and_then(|h| {
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    let tokens = req.app_data::<web::Data<AdminTokens>>().map(|t| t.0.clone()).unwrap_or_default();
    let found = presented.as_deref().and_then(|token| {
        let digest = crate::crypto::hash::digest(token);
        // Compared in constant time, every token every time (no early exit on a match).
        let mut found = None;
        for known in &tokens {
            if crate::crypto::hash::constant_time_eq(known.digest.as_bytes(), digest.as_bytes()) {
                found = Some(known.clone());
            }
        }
        found
    });
    let audit = |actor: Actor, outcome: Outcome, reason: &str| {
        let event = Event::new(EventType::AdminCall, actor, outcome, state.clock.now())
            .detail("method", method)
            .detail("route", route.clone())
            .origin(&super::origin(req, state));
        state.broker.audit.emit(if reason.is_empty() { event } else { event.reason(reason) });
    };
    let Some(token) = found else {
        audit(Actor { kind: ActorKind::Admin, id: None }, Outcome::Denied, "no valid admin token");
        let message = if presented.is_some() {
            "the admin token is not valid"
        } else {
            "an admin token is required (Authorization: Bearer)"
        };
        return Err(OAuthError::new(ErrorCode::InvalidToken, message).into());
    };
    if !token.scopes.iter().any(|s| s == scope) {
        audit(Actor::new(ActorKind::Admin, &token.id), Outcome::Denied, "insufficient scope");
        return Err(OAuthError::new(ErrorCode::InsufficientScope, format!("the admin token lacks {scope}")).into());
    }
    audit(Actor::new(ActorKind::Admin, &token.id), Outcome::Success, "");
    tracing::Span::current().record("admin", token.id.as_str());
    Ok(token.id)
}

fn ok(body: &impl serde::Serialize) -> HttpResponse {
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    ok.json(body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    user: Option<String>,
    client_id: Option<String>,
    resource: Option<String>,
    provider: Option<String>,
    upstream_account: Option<String>,
    status: Option<String>,
    page_size: Option<usize>,
    page_token: Option<String>,
}

fn status(text: Option<&str>) -> Result<Option<State>, OAuthError> {
    text.map(|s| {
        State::parse(s).ok_or_else(|| OAuthError::invalid_request("status is active, needs_reauth, expired or revoked"))
    })
    .transpose()
}

/// `GET /admin/v1/grants`: grants by filter, newest first, with a `Link` to the next page.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let q = query.into_inner();
    let filter = GrantFilter {
        status: status(q.status.as_deref())?,
        user: q.user,
        client_id: q.client_id,
        resource: q.resource,
        provider: q.provider,
        upstream_account: q.upstream_account,
    };
    let size = q.page_size.unwrap_or(admin::DEFAULT_PAGE);
    let page = admin::list(state.broker.admin(), &filter, size, q.page_token.as_deref()).await?;
    let mut response = ok(&page);
    if let Some(next) = &page.next_page_token {
        let mut url = url::Url::parse(&format!("http://admin{}", req.uri()))
            .map_err(|_| OAuthError::invalid_request("bad request target"))?;
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "page_token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept).append_pair("page_token", next);
        let link = format!("<{}?{}>; rel=\"next\"", url.path(), url.query().unwrap_or_default());
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// `GET /admin/v1/grants/{id}`.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn show(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(ok(&admin::show(state.broker.admin(), &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeQuery {
    /// Also revoke at the provider where it is configured to (default true).
    upstream: Option<bool>,
}

/// `DELETE /admin/v1/grants/{id}`: ends the grant; the report says what happened upstream.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn revoke(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<RevokeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let admin_id = authorize(&req, &state)?;
    let origin = super::origin(&req, &state);
    let upstream = query.upstream.unwrap_or(true);
    let report = admin::revoke(state.broker.admin(), &id, &admin_id, upstream, &origin, state.clock.now()).await?;
    Ok(ok(&report))
}

/// `POST /admin/v1/grants:revoke`: ends every grant a filter matches (`all: true` for an
/// empty one), or with `dry_run` counts them.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn revoke_matching(
    req: HttpRequest,
    body: web::Json<BulkRevoke>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let admin_id = authorize(&req, &state)?;
    let origin = super::origin(&req, &state);
    let trigger = Trigger::Admin { token: admin_id };
    let report = admin::revoke_matching(state.broker.admin(), &body, &trigger, &origin, state.clock.now()).await?;
    Ok(ok(&report))
}

/// `GET /admin/v1/users/{user}`: the user, their upstream accounts and grants.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn user(
    req: HttpRequest,
    user: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(ok(&admin::user(state.broker.admin(), &user).await?))
}

/// `DELETE /admin/v1/connections/{id}`: ends an upstream connection (`provider:subject`) and
/// every grant on it.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn disconnect(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<RevokeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let admin_id = authorize(&req, &state)?;
    let origin = super::origin(&req, &state);
    let trigger = Trigger::Admin { token: admin_id };
    let upstream = query.upstream.unwrap_or(true);
    let report = admin::disconnect(state.broker.admin(), &id, &trigger, upstream, &origin, state.clock.now()).await?;
    Ok(ok(&report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated event types (`grant.revoked,token.reuse_detected`).
    r#type: Option<String>,
    user: Option<String>,
    grant_id: Option<String>,
    client_id: Option<String>,
    /// Unix seconds: only events since then.
    since: Option<i64>,
    page_size: Option<usize>,
    page_token: Option<String>,
}

/// `GET /admin/v1/events`: the audit trail, newest first.
#[tracing::instrument(skip_all, fields(admin))]
pub async fn events(
    req: HttpRequest,
    query: web::Query<EventsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let q = query.into_inner();
    let mut types = Vec::new();
    for name in q.r#type.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
        types.push(
            crate::audit::EventType::parse(name)
                .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is not an event type")))?,
        );
    }
    let query = EventQuery { types, user: q.user, grant_id: q.grant_id, client_id: q.client_id, since: q.since };
    let size = q.page_size.unwrap_or(admin::DEFAULT_PAGE);
    Ok(ok(&admin::events(state.broker.admin(), &query, size, q.page_token.as_deref()).await?))
}

/// Anything else on the admin listener.
pub async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, &OAuthError::new(ErrorCode::NotFound, "no such admin route"))
}
