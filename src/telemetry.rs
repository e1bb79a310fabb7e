//! Logging: JSON (or pretty) lines through `tracing`, one root span per request.
//!
//! The request span records the method and the path only: query strings carry codes and
//! states (`/callback?code=...`), so they never reach the log.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests spawning several apps) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// Start time of a request, kept in its extensions for the latency figure.
#[derive(Clone, Copy)]
struct Started(Instant);

/// Root span per request with method, path (no query), request id and, at the end, status.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().map(ToString::to_string).unwrap_or_default();
        request.extensions_mut().insert(Started(Instant::now()));
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.path(),
            request_id = %request_id,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, started) = match outcome {
            Ok(response) => (response.status().as_u16(), response.request().extensions().get::<Started>().copied()),
            Err(error) => (error.as_response_error().status_code().as_u16(), None),
        };
        span.record("status", status);
        let latency_ms = started.map_or(0.0, |s| s.0.elapsed().as_secs_f64() * 1000.0);
        span.in_scope(|| {
            if status >= 500 {
                tracing::warn!(status, latency_ms, "request finished");
            } else {
                tracing::info!(status, latency_ms, "request finished");
            }
        });
    }
}
