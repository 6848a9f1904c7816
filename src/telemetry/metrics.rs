//! Prometheus metrics: one registry for HTTP, the response cache and the sources.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of HTTP request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route pattern (`/{version}/{resource}`), never the raw path.
    pub route: &'static str,
    /// HTTP method.
    pub method: &'static str,
    /// Status code.
    pub status: u16,
}

/// Labels of HTTP latencies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route pattern.
    pub route: &'static str,
}

/// Labels of source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Source name.
    pub source: String,
}

/// Labels of circuit breaker transitions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// Source name.
    pub source: String,
    /// The state entered (`closed`, `open`, `half_open`).
    pub state: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Metrics of one source; cheap to clone (shared counters).
#[derive(Clone, Debug)]
pub struct SourceMetrics {
    /// Read statements run.
    pub queries: Family<SourceLabels, Counter>,
    /// Statement latency.
    pub query_seconds: Family<SourceLabels, Histogram, fn() -> Histogram>,
    /// Connections busy with a statement.
    pub in_use: Family<SourceLabels, Gauge>,
    /// Requests waiting for a free slot.
    pub waiting: Family<SourceLabels, Gauge>,
    /// Requests answered 503 because the source was saturated.
    pub shed: Family<SourceLabels, Counter>,
    /// Connections (and statements) the source allows at once: its `max_concurrency`.
    pub connections_max: Family<SourceLabels, Gauge>,
    /// Circuit breaker state: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<SourceLabels, Gauge>,
    /// Circuit breaker transitions, by the state entered.
    pub breaker_transitions: Family<BreakerLabels, Counter>,
    /// Statements the open breaker kept from the database.
    pub breaker_refused: Family<SourceLabels, Counter>,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            query_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            in_use: Family::default(),
            waiting: Family::default(),
            shed: Family::default(),
            connections_max: Family::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            breaker_refused: Family::default(),
        }
    }
}

/// Metrics of the response cache.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    /// Answers served from the cache.
    pub hits: Counter,
    /// Answers that ran a query.
    pub misses: Counter,
    /// Answers that waited for another request's query of the same key.
    pub coalesced: Counter,
    /// Entries evicted to keep within the byte bound.
    pub evictions: Counter,
    /// Stale entries served during a source failure.
    pub stale_served: Counter,
    /// Weighted bytes held.
    pub bytes: Gauge,
    /// Entries held.
    pub entries: Gauge,
    /// Compressed variants made of cached answers (each is made once per entry and coding).
    pub compressions: Family<CodingLabels, Counter>,
}

/// Labels of compression counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodingLabels {
    /// Content coding (`br`, `gzip`).
    pub encoding: &'static str,
}

/// Labels of refused requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Machine-readable reason (`expired`, `missing_scope`, `rate_limited`).
    pub reason: &'static str,
}

/// Metrics of authentication and authorization.
#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    /// Fetches of the identity provider's key set (at start, on unknown `kid`, when old).
    pub jwks_fetches: Counter,
    /// Requests refused (401, 403, 429) by reason.
    pub refused: Family<RefusalLabels, Counter>,
}

/// Metrics of streamed exports (NDJSON, CSV).
#[derive(Clone, Debug, Default)]
pub struct ExportMetrics {
    /// Exports whose first rows were sent.
    pub started: Counter,
    /// Rows written into exports.
    pub rows: Counter,
    /// Exports cut short by a failure after their first bytes (the response was aborted).
    pub failures: Counter,
    /// Exports that stopped at their `max_export_rows` (ending with the truncation marker).
    pub truncated: Counter,
}

/// Every metric Portico exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request latency by route.
    pub http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Source metrics.
    pub sources: SourceMetrics,
    /// Cache metrics.
    pub cache: CacheMetrics,
    /// Auth metrics.
    pub auth: AuthMetrics,
    /// Change feed and webhook metrics.
    pub changes: super::change_metrics::ChangeMetrics,
    /// State store metrics.
    pub state: super::state_metrics::StateMetrics,
    /// Export metrics.
    pub exports: ExportMetrics,
    /// Configuration reload metrics.
    pub reloads: super::reload_metrics::ReloadMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portico");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let sources = SourceMetrics::default();
        let cache = CacheMetrics::default();
        let auth = AuthMetrics::default();
        registry.register(
            "http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_seconds.clone(),
        );
        registry.register(
            "source_queries",
            "Statements run on a source",
            sources.queries.clone(),
        );
        registry.register(
            "source_query_duration_seconds",
            "Statement latency per source",
            sources.query_seconds.clone(),
        );
        registry.register(
            "source_connections_in_use",
            "Connections running a statement",
            sources.in_use.clone(),
        );
        registry.register(
            "source_waiting",
            "Requests waiting for a source slot",
            sources.waiting.clone(),
        );
        registry.register(
            "source_shed",
            "Requests answered 503 because the source was saturated",
            sources.shed.clone(),
        );
        registry.register(
            "source_connections_max",
            "Connections a source may hold at once (max_concurrency)",
            sources.connections_max.clone(),
        );
        registry.register(
            "source_breaker_state",
            "Circuit breaker state per source: 0 closed, 1 half-open, 2 open",
            sources.breaker_state.clone(),
        );
        registry.register(
            "source_breaker_transitions",
            "Circuit breaker transitions per source, by the state entered",
            sources.breaker_transitions.clone(),
        );
        registry.register(
            "source_breaker_refused",
            "Statements the open circuit breaker kept from the source",
            sources.breaker_refused.clone(),
        );
        registry.register(
            "cache_hits",
            "Responses served from the cache",
            cache.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Responses that ran a query",
            cache.misses.clone(),
        );
        registry.register(
            "cache_coalesced",
            "Responses that waited for a concurrent identical query",
            cache.coalesced.clone(),
        );
        registry.register(
            "cache_evictions",
            "Entries evicted by the byte bound",
            cache.evictions.clone(),
        );
        registry.register(
            "cache_stale_served",
            "Stale entries served during a source failure",
            cache.stale_served.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by the response cache",
            cache.bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "Entries held by the response cache",
            cache.entries.clone(),
        );
        registry.register(
            "cache_compressions",
            "Compressed variants made of cached answers, by coding",
            cache.compressions.clone(),
        );
        registry.register(
            "auth_jwks_fetches",
            "Fetches of the identity provider's key set",
            auth.jwks_fetches.clone(),
        );
        registry.register(
            "auth_refused",
            "Requests refused by authentication, authorization or the rate limit",
            auth.refused.clone(),
        );
        let exports = ExportMetrics::default();
        registry.register(
            "exports",
            "Exports (NDJSON, CSV) whose first rows were sent",
            exports.started.clone(),
        );
        registry.register(
            "export_rows",
            "Rows written into exports",
            exports.rows.clone(),
        );
        registry.register(
            "export_failures",
            "Exports aborted by a failure after their first bytes",
            exports.failures.clone(),
        );
        registry.register(
            "exports_truncated",
            "Exports that stopped at max_export_rows",
            exports.truncated.clone(),
        );
        let changes = super::change_metrics::ChangeMetrics::default();
        changes.register(&mut registry);
        let state = super::state_metrics::StateMetrics::default();
        state.register(&mut registry);
        let reloads = super::reload_metrics::ReloadMetrics::default();
        reloads.register(&mut registry);
        Self {
            registry,
            http_requests,
            http_seconds,
            sources,
            cache,
            auth,
            changes,
            state,
            exports,
            reloads,
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
