//! `GET/POST /authorize` (OAuth 2.1 §4.1.1, RFC 7636, RFC 8707, RFC 9207).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use actix_web::http::StatusCode;

use crate::oauth::authorize::{self, AuthorizeParams, AuthorizeStores, BrowserCookies, Started};
use crate::oauth::flow::{FlowError, PageStatus};

use super::AppState;
use super::pages::{browser_headers, consent_page, error_page};

/// RFC 6749 §3.1: the authorization endpoint MUST support GET.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match serde_urlencoded::from_str::<AuthorizeParams>(req.query_string()) {
        Ok(params) => handle(&req, &state, params).await,
        Err(e) => malformed(&e),
    }
}

/// RFC 6749 §3.1: MAY support POST, with the same parameters as a form body.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn post(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(e) => return super::pages::body_error(&e),
    };
    match serde_urlencoded::from_bytes::<AuthorizeParams>(&body) {
        Ok(params) => handle(&req, &state, params).await,
        Err(e) => malformed(&e),
    }
}

fn malformed(e: &serde_urlencoded::de::Error) -> HttpResponse {
    error_page(PageStatus::BadRequest, &format!("The authorization request is malformed ({e})."))
}

async fn handle(req: &HttpRequest, state: &AppState, params: AuthorizeParams) -> HttpResponse {
    let now = state.clock.now();
    if let Some(client_id) = &params.client_id {
        tracing::Span::current().record("client_id", client_id.as_str());
    }
    let broker = &state.broker;
    let store = broker.store.as_ref();
    let (binding, consent) = (state.binding(req), state.consent(req));
    let session = state.session(req);
    let cookies =
        BrowserCookies { binding: binding.as_deref(), consent: consent.as_deref(), session: session.as_deref() };
    let stores = AuthorizeStores { pending: store, grants: store, browsers: store };
    let (response, binding) =
        match authorize::start(broker.flow(&super::origin(req, state)), stores, params, cookies, now).await {
            Ok(Started::Consent(view)) => (consent_page(&view), view.binding),
            Ok(Started::Upstream { url, binding }) => (redirect(url.as_str(), StatusCode::FOUND), binding),
            Err(e) => return flow_error(e),
        };
    with_binding(response, state, binding)
}

/// `response` with the browser binding cookie set to `binding` (every step that sends the
/// browser upstream binds the flow to it).
pub fn with_binding(mut response: HttpResponse, state: &AppState, binding: String) -> HttpResponse {
    if let Err(e) = response.add_cookie(&state.binding_cookie(binding)) {
        tracing::error!(error = %e, "cannot set the binding cookie");
    }
    response
}

/// A failed browser step: an error page, or the error sent to the client's redirect URI.
pub fn flow_error(error: FlowError) -> HttpResponse {
    match error {
        FlowError::Page { status, message } => error_page(status, &message),
        FlowError::Redirect(url) => redirect(url.as_str(), actix_web::http::StatusCode::FOUND),
    }
}

/// A browser redirect that leaks nothing through caches or the Referer header.
pub fn redirect(location: &str, status: actix_web::http::StatusCode) -> HttpResponse {
    let Ok(value) = HeaderValue::from_str(location) else {
        return error_page(PageStatus::ServerError, "The redirect address cannot be used.");
    };
    let mut response = HttpResponse::build(status);
    browser_headers(&mut response);
    response.insert_header((header::LOCATION, value)).finish()
}
