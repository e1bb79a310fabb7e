//! Request metrics and the `/metrics` endpoint.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use crate::metrics::{HttpLabels, Metrics};

/// Counts and times every request by route template (never the raw path: it can carry ids).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().as_str().to_owned();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let (endpoint, status) = match &result {
            Ok(response) => (response.request().match_pattern(), response.status().as_u16()),
            Err(error) => (None, error.as_response_error().status_code().as_u16()),
        };
        let endpoint = endpoint.unwrap_or_else(|| "other".to_owned());
        metrics.http_request(HttpLabels { endpoint, method, status }, started.elapsed());
    }
    result
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(metrics.render())
}
