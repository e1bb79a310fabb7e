//! `GET /reconnect/{link}`: a "connect first" link (see `oauth::reconnect`), opened by the
//! person whose connection needs them again.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::oauth::reconnect;

use super::AppState;
use super::authorize::{flow_error, redirect, with_binding};

pub async fn get(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let origin = super::origin(&req, &state);
    let flow = state.broker.flow(&origin);
    // The same browser binding as every other sign-in: the callback must come to this browser.
    let presented = state.binding(&req);
    let session = state.session(&req);
    match reconnect::start(flow, &path, presented.as_deref(), session.as_deref(), state.clock.now()).await {
        Ok((url, binding)) => with_binding(redirect(url.as_str(), StatusCode::FOUND), &state, binding),
        Err(e) => flow_error(e),
    }
}
