//! `POST /register` (RFC 7591) and `GET, DELETE /register/{client_id}` (RFC 7592).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::oauth::admin::{self, BulkRevoke, GrantFilter};
use crate::oauth::registration::{self, RegistrationRequest};
use crate::oauth::revocation::Trigger;

use super::error::{ApiError, no_store};
use super::{AppState, authorization_header};

/// RFC 7591 §3.2.1: 201 with the registered metadata and the issued credentials.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn post(
    req: HttpRequest,
    body: web::Json<RegistrationRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let broker = &state.broker;
    let unused_ttl = broker.lifetimes.client_unused;
    let response = registration::register(
        broker.store.as_ref(),
        &broker.issuer,
        body.into_inner(),
        unused_ttl,
        broker.registration.caps,
        now,
    )
    .await?;
    tracing::Span::current().record("client_id", response.client_id.as_str());
    tracing::info!(client_id = %response.client_id, method = %response.metadata.token_endpoint_auth_method, "client registered");
    broker.audit.emit(
        Event::new(
            EventType::ClientRegistered,
            Actor::new(ActorKind::Client, &response.client_id),
            Outcome::Success,
            now,
        )
        .client(&response.client_id)
        .detail("token_endpoint_auth_method", response.metadata.token_endpoint_auth_method.clone())
        .detail("redirect_hosts", redirect_hosts(&response.metadata.redirect_uris))
        .origin(&super::origin(&req, &state)),
    );
    let mut created = HttpResponse::Created();
    no_store(&mut created);
    Ok(created.json(response))
}

/// The hosts a client's redirect URIs point at (what a reviewer checks a self-registered
/// client by).
fn redirect_hosts(uris: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> =
        uris.iter().filter_map(|u| url::Url::parse(u).ok()).filter_map(|u| u.host_str().map(str::to_owned)).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The registration access token of an RFC 7592 request (`Authorization: Bearer ...`).
fn bearer(req: &HttpRequest) -> Option<String> {
    let header = authorization_header(req)?;
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// RFC 7592 §2.1.
#[tracing::instrument(skip_all)]
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let broker = &state.broker;
    let response = registration::read(broker.store.as_ref(), &broker.issuer, &path, bearer(&req).as_deref()).await?;
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    Ok(ok.json(response))
}

/// RFC 7592 §2.3: 204 once deleted.
#[tracing::instrument(skip_all)]
pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    registration::deregister(state.broker.store.as_ref(), &path, bearer(&req).as_deref()).await?;
    let now = state.clock.now();
    let origin = super::origin(&req, &state);
    state.broker.audit.emit(
        Event::new(EventType::ClientDeleted, Actor::new(ActorKind::Client, path.as_str()), Outcome::Success, now)
            .client(path.as_str())
            .origin(&origin),
    );
    // RFC 7592 §2.3: "the authorization server SHOULD immediately invalidate all existing
    // authorization grants and currently-active tokens associated with this client".
    let every = BulkRevoke {
        filter: GrantFilter { client_id: Some(path.clone()), ..GrantFilter::default() },
        upstream: true,
        ..BulkRevoke::default()
    };
    let trigger = Trigger::ClientDeleted { client_id: path.clone() };
    let report = admin::revoke_matching(state.broker.admin(), &every, &trigger, &origin, now).await?;
    tracing::info!(client_id = %path, grants = report.matched, "the deleted client's grants were revoked");
    let mut gone = HttpResponse::NoContent();
    no_store(&mut gone);
    Ok(gone.finish())
}
