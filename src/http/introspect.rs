//! `POST /introspect` (RFC 7662), for MCP servers authenticated with their resource credentials.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::oauth::OAuthError;
use crate::oauth::introspection::{self, Inactive, Introspection};

use super::AppState;
use super::error::{ApiError, no_store};

#[derive(Debug, Deserialize)]
pub struct IntrospectForm {
    token: Option<String>,
}

impl IntrospectForm {
    fn required(self) -> Result<String, OAuthError> {
        self.token.filter(|t| !t.is_empty()).ok_or_else(|| OAuthError::invalid_request("token is required"))
    }
}

/// RFC 7662 §2.1: "the protected resource MUST authenticate" — a resource that fails to
/// gets 401; a token that is not active for it gets exactly `{"active": false}`.
#[tracing::instrument(skip_all, fields(resource))]
pub async fn post(
    req: HttpRequest,
    form: web::Form<IntrospectForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let broker = &state.broker;
    let caller = super::resource_caller(&req, &state)?;
    super::limits::per_resource(&state.limits.introspect, &caller.id, "introspection requests")?;
    let token = form.into_inner().required()?;
    // The request as audit events name it, made only when an event is recorded.
    let origin = || super::origin(&req, &state);
    let outcome = match introspection::introspect(broker.introspector(), caller, &token, &origin, now).await {
        Ok(outcome) => outcome,
        Err(e) => {
            broker.metrics.introspection("unavailable", "");
            return Err(e.into());
        }
    };
    Ok(answer(&state, outcome))
}

/// An introspection outcome on the wire: the token's answer, or exactly `{"active": false}`.
fn answer(state: &AppState, outcome: Introspection) -> HttpResponse {
    let broker = &state.broker;
    let mut ok = HttpResponse::Ok();
    no_store(&mut ok);
    match outcome {
        Introspection::Active(active) if active.upstream.is_none() => {
            broker.metrics.introspection("connect_first", "");
            ok.json(active)
        }
        Introspection::Active(active) => {
            broker.metrics.introspection("active", "");
            ok.json(active)
        }
        Introspection::Inactive(reason) => {
            let outcome = if reason == Inactive::WrongAudience { "wrong_audience" } else { "inactive" };
            broker.metrics.introspection(outcome, reason.code());
            ok.json(json!({"active": false}))
        }
    }
}

/// `POST /introspect/upstream-rejected`: the MCP server's upstream API call was refused with
/// the credential Tether gave it for `token` (see `oauth::reconnect::upstream_rejected`).
/// Authenticated and answered as introspection; limited per resource.
#[tracing::instrument(skip_all, fields(resource))]
pub async fn upstream_rejected(
    req: HttpRequest,
    form: web::Form<IntrospectForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let caller = super::resource_caller(&req, &state)?;
    super::limits::per_resource(&state.limits.upstream_rejected, &caller.id, "reports")?;
    let token = form.into_inner().required()?;
    let origin = || super::origin(&req, &state);
    let outcome =
        crate::oauth::reconnect::upstream_rejected(state.broker.introspector(), caller, &token, &origin, now).await?;
    Ok(answer(&state, outcome))
}
