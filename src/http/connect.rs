//! The connect flow's endpoints (see `oauth::connect`).
//!
//! For MCP servers, authenticated as their resource (HTTP Basic): `POST /connect`,
//! `GET /connect/{id}` (long-poll with `?wait=`), `POST /connect/resolve`,
//! `DELETE /connect/{session}`. For the user's browser: `GET /connect/link/{token}` (the
//! consent page) and `GET /connect/finish` (where the authorization comes back).

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::oauth::OAuthError;
use crate::oauth::connect::{self, ConnectStores, FinishParams};
use crate::oauth::flow::PageStatus;
use crate::store::ConnectionStatus;

use super::AppState;
use super::authorize::flow_error;
use super::error::{ApiError, no_store};
use super::pages::{consent_page, error_page, message_page};

/// The longest a status request may wait for the connection to settle.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting request looks again (another replica may settle it).
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize)]
pub struct StartBody {
    session: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SessionBody {
    session: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    wait: Option<u64>,
}

fn stores(state: &AppState) -> ConnectStores<'_> {
    let store = state.broker.store.as_ref();
    ConnectStores { connect: store, pending: store, codes: store, grants: store }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    no_store(&mut response);
    response.json(body)
}

fn required(value: Option<String>, name: &str) -> Result<String, OAuthError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// `POST /connect` `{"session": "...", "scope": "..."}` → 201 with the link for the user.
#[tracing::instrument(skip_all, fields(resource))]
pub async fn start(
    req: HttpRequest,
    body: web::Json<StartBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = super::resource_caller(&req, &state)?;
    let StartBody { session, scope } = body.into_inner();
    let session = required(session, "session")?;
    let broker = &state.broker;
    let started = connect::start(
        broker.flow(&super::origin(&req, &state)),
        stores(&state),
        caller,
        &session,
        scope.as_deref(),
        state.clock.now(),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &started))
}

/// `GET /connect/{id}?wait=N`: the connection's status; with `wait`, answers as soon as it
/// is no longer pending, or after N seconds (at most 60).
#[tracing::instrument(skip_all, fields(resource))]
pub async fn status(
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<WaitQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = super::resource_caller(&req, &state)?;
    let deadline = Instant::now() + Duration::from_secs(query.wait.unwrap_or(0)).min(MAX_WAIT);
    let store = state.broker.store.as_ref();
    loop {
        let view = connect::status(store, caller, &id, state.clock.now()).await?;
        let Some(view) = view else {
            return Ok(json(
                StatusCode::NOT_FOUND,
                &json!({"error": "invalid_request", "error_description": "no such connection"}),
            ));
        };
        if view.status != "pending" || Instant::now() + POLL > deadline {
            return Ok(json(StatusCode::OK, &view));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `POST /connect/resolve` `{"session": "..."}`: the session's upstream credential, or
/// `{"connected": false}`.
#[tracing::instrument(skip_all, fields(resource))]
pub async fn resolve(
    req: HttpRequest,
    body: web::Json<SessionBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = super::resource_caller(&req, &state)?;
    let session = required(body.into_inner().session, "session")?;
    let broker = &state.broker;
    let origin = super::origin(&req, &state);
    let resolved =
        connect::resolve(broker.refresher(), broker.store.as_ref(), caller, &session, &origin, state.clock.now())
            .await?;
    Ok(match resolved {
        Some(resolved) => json(StatusCode::OK, &resolved),
        None => json(StatusCode::OK, &json!({"connected": false, "session": session})),
    })
}

/// `DELETE /connect/{session}`: disconnects the session and ends its grant (and, with
/// `revoke_upstream`, the upstream token).
#[tracing::instrument(skip_all, fields(resource))]
pub async fn disconnect(
    req: HttpRequest,
    session: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = super::resource_caller(&req, &state)?;
    let broker = &state.broker;
    let origin = super::origin(&req, &state);
    let now = state.clock.now();
    let ended = connect::disconnect(broker.revoker(), broker.store.as_ref(), caller, &session, &origin, now).await?;
    Ok(json(StatusCode::OK, &json!({"session": session.into_inner(), "disconnected": ended.is_some()})))
}

/// `GET /connect/link/{token}`: the user opened the link; the consent page.
#[tracing::instrument(skip_all)]
pub async fn link(req: HttpRequest, token: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let broker = &state.broker;
    let binding = state.binding(&req);
    match connect::open(
        broker.flow(&super::origin(&req, &state)),
        stores(&state),
        &token,
        binding.as_deref(),
        state.clock.now(),
    )
    .await
    {
        Ok(view) => {
            let page = consent_page(&view);
            super::authorize::with_binding(page, &state, view.binding)
        }
        Err(e) => flow_error(e),
    }
}

/// `GET /connect/finish`: the authorization came back; settle the connection and tell the
/// user.
#[tracing::instrument(skip_all)]
pub async fn finish(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Ok(params) = serde_urlencoded::from_str::<FinishParams>(req.query_string()) else {
        return error_page(PageStatus::BadRequest, "The answer is malformed.");
    };
    let binding = state.binding(&req);
    let (broker, now) = (&state.broker, state.clock.now());
    match connect::finish(broker.flow(&super::origin(&req, &state)), stores(&state), &params, binding.as_deref(), now)
        .await
    {
        Ok(done) => {
            if let Some(hook) = broker.registry.resource(&done.resource).and_then(|r| r.webhook.as_ref()) {
                broker.webhooks.send(
                    hook,
                    &format!("connection.{}", done.outcome.status.as_str()),
                    done.event.clone(),
                    now,
                );
            }
            finished_page(&done)
        }
        Err(e) => flow_error(e),
    }
}

fn finished_page(done: &connect::Finished) -> HttpResponse {
    match done.outcome.status {
        ConnectionStatus::Connected => message_page(
            StatusCode::OK,
            "Connected",
            &format!("{} can now act on your behalf. Return to your conversation.", done.resource_name),
        ),
        ConnectionStatus::Denied => message_page(
            StatusCode::OK,
            "Not connected",
            &format!("You declined; {} was told. Return to your conversation.", done.resource_name),
        ),
        ConnectionStatus::Failed => message_page(
            StatusCode::BAD_GATEWAY,
            "Not connected",
            "The sign-in did not complete. Ask the assistant for a new link and try again.",
        ),
    }
}
