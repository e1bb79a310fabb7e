//! `POST /revoke` (RFC 7009).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::oauth::client_auth::{self, Presented};
use crate::oauth::{OAuthError, revocation};

use super::error::{ApiError, no_store};
use super::{AppState, authorization_header};

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// RFC 7009 §2.2: 200 whether or not the token was known.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn post(
    req: HttpRequest,
    form: web::Form<RevokeForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let form = form.into_inner();
    let broker = &state.broker;
    let presented =
        Presented { basic: authorization_header(&req), client_id: form.client_id, client_secret: form.client_secret };
    let client = client_auth::authenticate(broker.clients(), &presented, now).await?;
    tracing::Span::current().record("client_id", client.client_id.as_str());
    let token = form.token.filter(|t| !t.is_empty()).ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    revocation::revoke(broker.revoker(), &client, &token, &super::origin(&req, &state), now).await?;
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    Ok(ok.finish())
}
