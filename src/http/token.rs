//! `POST /token` (OAuth 2.1 §3.2, RFC 6749 §5).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::oauth::client_auth::{self, Presented};
use crate::oauth::grants::{self, TokenForm, TokenRequest};
use crate::oauth::{ErrorCode, OAuthError};
use crate::oauth::{enterprise, exchange};

use super::error::{ApiError, no_store};
use super::{AppState, authorization_header};

#[tracing::instrument(skip_all, fields(grant_type, client_id))]
pub async fn post(
    req: HttpRequest,
    form: web::Form<TokenForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let form = form.into_inner();
    let span = tracing::Span::current();
    if let Some(grant_type) = &form.grant_type {
        span.record("grant_type", grant_type.as_str());
    }
    if form.grant_type.as_deref() == Some(exchange::GRANT_TYPE) {
        return exchange_post(&req, form, &state, now).await;
    }
    if form.grant_type.as_deref() == Some(enterprise::JWT_BEARER) && state.broker.enterprise.is_on() {
        return jag_post(&req, form, &state, now).await;
    }
    let presented = presented(&req, &form);
    let request = TokenRequest::try_from(form)?;
    let broker = &state.broker;
    let client = client_auth::authenticate(broker.clients(), &presented, now).await?;
    span.record("client_id", client.client_id.as_str());
    let origin = super::origin(&req, &state);
    let grant_type = match &request {
        TokenRequest::AuthorizationCode(_) => "authorization_code",
        TokenRequest::RefreshToken(_) => "refresh_token",
    };
    let response = grants::issue(broker.token_context(&origin), &client, request, now).await?;
    broker.metrics.token_issued(grant_type);
    Ok(issued(&response))
}

/// The client credentials a token request presents (HTTP Basic, or the form's).
fn presented(req: &HttpRequest, form: &TokenForm) -> Presented {
    Presented {
        basic: authorization_header(req),
        client_id: form.client_id.clone(),
        client_secret: form.client_secret.clone(),
    }
}

/// A token answer: 200, never cached (RFC 6749 §5.1).
fn issued(answer: &impl serde::Serialize) -> HttpResponse {
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    ok.json(answer)
}

/// RFC 8693 token exchange: an MCP server, authenticated as the resource (as for
/// introspection, and limited like it), trades a Tether access token addressed to it for the
/// upstream access token behind it.
async fn exchange_post(
    req: &HttpRequest,
    form: TokenForm,
    state: &web::Data<AppState>,
    now: crate::clock::UnixTime,
) -> Result<HttpResponse, ApiError> {
    let broker = &state.broker;
    let caller = super::resource_caller(req, state).map_err(|e| {
        if e.code == ErrorCode::InvalidClient {
            OAuthError::invalid_client(
                "token exchange is for MCP servers: authenticate with the resource's credentials",
            )
        } else {
            e
        }
    })?;
    super::limits::per_resource(&state.limits.introspect, &caller.id, "token exchanges")?;
    let origin = || super::origin(req, state);
    let request = form.exchange_request();
    let answer = exchange::exchange(broker.introspector(), broker.minter(), caller, &request, &origin, now).await?;
    broker.metrics.token_issued("token_exchange");
    Ok(issued(&answer))
}

/// RFC 7523 `jwt-bearer` with an ID-JAG (enterprise-managed authorization): the client
/// authenticates as usual; the assertion names the person.
async fn jag_post(
    req: &HttpRequest,
    form: TokenForm,
    state: &web::Data<AppState>,
    now: crate::clock::UnixTime,
) -> Result<HttpResponse, ApiError> {
    let broker = &state.broker;
    let client = client_auth::authenticate(broker.clients(), &presented(req, &form), now).await?;
    tracing::Span::current().record("client_id", client.client_id.as_str());
    let origin = super::origin(req, state);
    let login = broker.login.as_deref();
    let ctx = broker.token_context(&origin);
    let answer =
        enterprise::issue(ctx, &broker.enterprise, login, &broker.providers, &client, form.jag_request(), now).await?;
    broker.metrics.token_issued("jwt_bearer");
    Ok(issued(&answer))
}
