//! `POST /consent`: the user's decision on the consent page (MCP "Confused Deputy Problem").

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::oauth::authorize::BrowserCookies;
use crate::oauth::decide;

use super::AppState;
use super::authorize::{flow_error, redirect};
use super::pages::error_page;

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    consent: Option<String>,
    decision: Option<String>,
}

/// Approve sends the browser upstream; deny returns `access_denied` to the client. Both are
/// 303 See Other, so the browser follows with a GET.
#[tracing::instrument(skip_all)]
pub async fn post(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(e) => return super::pages::body_error(&e),
    };
    let now = state.clock.now();
    let Ok(form) = serde_urlencoded::from_bytes::<ConsentForm>(&body) else {
        return error_page(crate::oauth::flow::PageStatus::BadRequest, "The consent form is malformed.");
    };
    let (Some(consent), Some(decision)) = (form.consent, form.decision) else {
        return error_page(crate::oauth::flow::PageStatus::BadRequest, "The consent form is incomplete.");
    };
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return error_page(crate::oauth::flow::PageStatus::BadRequest, "Unknown decision."),
    };
    let (binding, consent_cookie) = (state.binding(&req), state.consent(&req));
    let session = state.session(&req);
    let cookies =
        BrowserCookies { binding: binding.as_deref(), consent: consent_cookie.as_deref(), session: session.as_deref() };
    let broker = &state.broker;
    match decide::decide(
        broker.flow(&super::origin(&req, &state)),
        broker.store.as_ref(),
        &consent,
        cookies,
        approve,
        now,
    )
    .await
    {
        Ok(decision) => {
            let mut response = redirect(decision.upstream.as_str(), StatusCode::SEE_OTHER);
            if let Some(value) = decision.consent_cookie
                && let Err(e) = response.add_cookie(&state.consent_cookie(value))
            {
                tracing::error!(error = %e, "cannot set the consent cookie");
            }
            response
        }
        Err(crate::oauth::flow::FlowError::Redirect(url)) => redirect(url.as_str(), StatusCode::SEE_OTHER),
        Err(page) => flow_error(page),
    }
}
