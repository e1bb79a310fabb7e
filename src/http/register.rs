//! `POST /register` (RFC 7591) and `GET, DELETE /register/{client_id}` (RFC 7592).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::oauth::registration::{self, RegistrationRequest};

use super::error::{ApiError, no_store};
use super::{AppState, authorization_header};

/// RFC 7591 §3.2.1: 201 with the registered metadata and the issued credentials.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn post(body: web::Json<RegistrationRequest>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
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
    let mut created = HttpResponse::Created();
    no_store(&mut created);
    Ok(created.json(response))
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
    let mut gone = HttpResponse::NoContent();
    no_store(&mut gone);
    Ok(gone.finish())
}
