//! Prometheus metrics: what operators graph and alert on. Labels are fixed vocabularies
//! (route templates, outcome codes, provider ids from the configuration): never a token, a
//! secret, a user or a client id.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/register/{client_id}`), or `other` for unknown paths.
    pub endpoint: String,
    pub method: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantTypeLabels {
    grant_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntrospectionLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    provider: String,
    call: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric Tether exports, registered once per process (or per test instance).
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    tokens_issued: Family<GrantTypeLabels, Counter>,
    introspections: Family<IntrospectionLabels, Counter>,
    upstream_calls: Family<UpstreamLabels, Counter>,
    store_duration: Histogram,
    store_errors: Family<StoreErrorLabels, Counter>,
    audit_dropped: Family<SinkLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let tokens_issued = Family::<GrantTypeLabels, Counter>::default();
        let introspections = Family::<IntrospectionLabels, Counter>::default();
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        let store_duration = latency_histogram();
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        let audit_dropped = Family::<SinkLabels, Counter>::default();
        let mut r = Registry::with_prefix("tether");
        r.register("http_requests", "HTTP requests by route template, method and status", http_requests.clone());
        r.register("http_request_duration_seconds", "HTTP request latency", http_duration.clone());
        r.register("tokens_issued", "Access tokens issued, by grant type", tokens_issued.clone());
        r.register(
            "introspections",
            "Introspection answers by outcome (active, inactive, wrong_audience, unavailable) and reason code",
            introspections.clone(),
        );
        r.register(
            "upstream_calls",
            "Calls to upstream providers by provider id, call and outcome (ok, refused, transient)",
            upstream_calls.clone(),
        );
        r.register("store_operation_duration_seconds", "Store operation latency", store_duration.clone());
        r.register("store_errors", "Store operations that failed, by kind", store_errors.clone());
        r.register(
            "audit_events_dropped",
            "Audit events that reached the log but not a sink (queue full, stream append failed, webhook busy)",
            audit_dropped.clone(),
        );
        Self {
            registry: r,
            http_requests,
            http_duration,
            tokens_issued,
            introspections,
            upstream_calls,
            store_duration,
            store_errors,
            audit_dropped,
        }
    }

    /// An audit event that did not reach `sink` (`queue`, `stream`, `webhook`).
    pub fn audit_dropped(&self, sink: &'static str) {
        self.audit_dropped.get_or_create(&SinkLabels { sink }).inc();
    }

    pub fn http_request(&self, labels: HttpLabels, elapsed: Duration) {
        self.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    pub fn token_issued(&self, grant_type: &'static str) {
        self.tokens_issued.get_or_create(&GrantTypeLabels { grant_type }).inc();
    }

    /// `reason` is an inactive token's reason code (`""` for active and unavailable answers).
    pub fn introspection(&self, outcome: &'static str, reason: &'static str) {
        self.introspections.get_or_create(&IntrospectionLabels { outcome, reason }).inc();
    }

    pub fn upstream_call(&self, provider: &str, call: &'static str, outcome: &'static str) {
        self.upstream_calls.get_or_create(&UpstreamLabels { provider: provider.to_owned(), call, outcome }).inc();
    }

    pub fn store_operation(&self, elapsed: Duration, error: Option<&'static str>) {
        self.store_duration.observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.store_errors.get_or_create(&StoreErrorLabels { kind }).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
