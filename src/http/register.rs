//! `POST /register` (RFC 7591).

use actix_web::{HttpResponse, web};

use crate::oauth::registration::{self, RegistrationRequest};

use super::AppState;
use super::error::{ApiError, no_store};

/// RFC 7591 §3.2.1: 201 with the registered metadata and the issued credentials.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn post(body: web::Json<RegistrationRequest>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let broker = &state.broker;
    let response =
        registration::register(broker.store.as_ref(), body.into_inner(), broker.registration.client_ttl, now).await?;
    tracing::Span::current().record("client_id", response.client_id.as_str());
    tracing::info!(client_id = %response.client_id, method = %response.metadata.token_endpoint_auth_method, "client registered");
    let mut created = HttpResponse::Created();
    no_store(&mut created);
    Ok(created.json(response))
}
