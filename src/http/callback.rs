//! `GET /callback`: the one redirect URI Tether registers at every upstream provider.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::oauth::callback::{self, CallbackParams};
use crate::oauth::flow::PageStatus;

use super::AppState;
use super::authorize::{flow_error, redirect};
use super::pages::error_page;

#[tracing::instrument(skip_all)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let now = state.clock.now();
    let Ok(params) = serde_urlencoded::from_str::<CallbackParams>(req.query_string()) else {
        return error_page(PageStatus::BadRequest, "The provider's answer is malformed.");
    };
    let broker = &state.broker;
    let binding = state.binding(&req);
    match callback::complete(broker.flow(&super::origin(&req, &state)), params, binding.as_deref(), now).await {
        Ok(done) => {
            let mut response = redirect(done.redirect.as_str(), StatusCode::FOUND);
            if let Some(session) = done.session
                && let Err(e) = response.add_cookie(&state.session_cookie(session))
            {
                tracing::error!(error = %e, "cannot set the session cookie");
            }
            response
        }
        Err(e) => flow_error(e),
    }
}
