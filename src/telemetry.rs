//! Logging and tracing: JSON (or pretty) lines through `tracing`, one root span per request,
//! W3C trace context, and optional OTLP trace export.
//!
//! The request span records the method and the path only: query strings carry codes and
//! states (`/callback?code=...`), so they never reach the log or a trace.
//!
//! Trace export is configured by the standard OpenTelemetry environment:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` turns it on (OTLP
//! over HTTP with protobuf), `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`, `OTEL_SERVICE_NAME`
//! (default `tether`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// Whether spans are exported (set once, with the global subscriber).
static EXPORTING: OnceLock<bool> = OnceLock::new();

/// The trace exporter, to flush before the process exits.
#[derive(Debug, Default)]
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered (within the exporter's timeout).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        // The SDK blocks while its exporter thread drains; the export itself runs on this
        // runtime, so block elsewhere.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("tether: flushing traces: {e}");
        }
    }
}

/// Installs the global subscriber (and, when the environment asks for it, the OTLP trace
/// exporter). `RUST_LOG` overrides `level`. Call from within the Tokio runtime that serves.
pub fn init(format: LogFormat, level: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    };
    let (provider, problem) = match exporter() {
        Ok(provider) => (provider, None),
        Err(problem) => (None, Some(problem)),
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tether")));
    // A second initialisation (tests spawning several apps) keeps the first subscriber.
    if tracing_subscriber::registry().with(fmt).with(otel).with(filter).try_init().is_err() {
        return Telemetry::default();
    }
    let _ = EXPORTING.set(provider.is_some());
    if let Some(problem) = problem {
        tracing::warn!("trace export is off: {problem}");
    } else if provider.is_some() {
        tracing::info!("exporting traces over OTLP (http/protobuf)");
    }
    Telemetry { provider }
}

/// The OTLP exporter the environment configures, if any.
fn exporter() -> Result<Option<SdkTracerProvider>, String> {
    use opentelemetry_otlp::WithHttpConfig;
    let configured = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if !configured || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "none") {
        return Ok(None);
    }
    for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Ok(protocol) = std::env::var(name)
            && protocol != "http/protobuf"
        {
            return Err(format!("{name}={protocol}: Tether speaks OTLP over http/protobuf only"));
        }
    }
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| "no runtime to export from".to_owned())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client: reqwest::Client::new(), runtime })
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("tether");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    Ok(Some(provider))
}

/// The exporter's HTTP client. The SDK exports from a thread of its own, outside any
/// runtime; the request runs on Tether's.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime.spawn(async move { client.send_bytes(request).await }).await?
    }
}

/// Request headers as the W3C trace-context propagator reads them.
struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(actix_web::http::header::HeaderName::as_str).collect()
    }
}

/// Joins the request span to the caller's trace (a valid `traceparent` header) and records
/// the trace id, so log lines and exported spans of one request share it. Without export,
/// the id is the caller's, when it sent one.
fn join_trace(span: &Span, request: &ServiceRequest) {
    let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
    let exporting = EXPORTING.get().copied().unwrap_or(false);
    let trace_id = if exporting {
        let _ = span.set_parent(parent);
        span.context().span().span_context().trace_id()
    } else {
        parent.span().span_context().trace_id()
    };
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Paths whose successful requests are logged at debug, not info: introspection answers
/// every MCP tool call of every user and probes and scrapes come every few seconds, so an
/// info line each would be most of the log (and of the hot path's cost); `/metrics` counts
/// them. Their failures are logged like any other request's.
fn routine(path: &str) -> bool {
    matches!(path, "/introspect" | "/healthz" | "/readyz" | "/metrics")
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
        macro_rules! request_span {
            ($($otel:tt)*) => {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.path(),
                    request_id = %request_id,
                    trace_id = tracing::field::Empty,
                    status = tracing::field::Empty,
                    $($otel)*
                )
            };
        }
        // The OpenTelemetry fields name the exported span; logs go without them.
        let span = if EXPORTING.get().copied().unwrap_or(false) {
            let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
            let name = format!("{} {route}", request.method());
            request_span!(otel.name = %name, otel.kind = "server", otel.status_code = tracing::field::Empty)
        } else {
            request_span!()
        };
        join_trace(&span, request);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, started) = match outcome {
            Ok(response) => (response.status().as_u16(), response.request().extensions().get::<Started>().copied()),
            Err(error) => (error.as_response_error().status_code().as_u16(), None),
        };
        span.record("status", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let latency_ms = started.map_or(0.0, |s| s.0.elapsed().as_secs_f64() * 1000.0);
        let routine = matches!(outcome, Ok(response) if status < 400 && routine(response.request().path()));
        span.in_scope(|| {
            if status >= 500 {
                tracing::warn!(status, latency_ms, "request finished");
            } else if routine {
                tracing::debug!(status, latency_ms, "request finished");
            } else {
                tracing::info!(status, latency_ms, "request finished");
            }
        });
    }
}
