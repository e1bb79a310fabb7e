//! `GET /callback`: the one redirect URI Tether registers at every upstream provider.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::oauth::callback::{self, CallbackParams, CallbackStores};
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
    let store = broker.store.as_ref();
    let stores = CallbackStores { pending: store, grants: store, codes: store, browsers: store, index: store };
    let binding = state.binding(&req);
    match callback::complete(
        broker.flow(&super::origin(&req, &state)),
        stores,
        &broker.vault,
        params,
        binding.as_deref(),
        now,
    )
    .await
    {
        Ok(url) => redirect(url.as_str(), StatusCode::FOUND),
        Err(e) => flow_error(e),
    }
}
