//! A source's own handles into the shared metric families.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::telemetry::metrics::{SourceLabels, SourceMetrics};

/// One source's queries, durations, connections in use, waiters and shed requests.
pub struct Meters {
    /// Statements run.
    pub queries: Counter,
    /// Their durations.
    pub seconds: Histogram,
    /// Connections busy right now.
    pub in_use: Gauge,
    /// Requests waiting for a connection.
    pub waiting: Gauge,
    /// Requests answered busy.
    pub shed: Counter,
}

/// Lowers a gauge when dropped, however the work ends.
pub struct Raised(Gauge);

impl Raised {
    /// Raises `gauge` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Meters {
    /// The handles labelled with `source`, which holds at most `connections` at once.
    pub fn new(metrics: &SourceMetrics, source: &str, connections: usize) -> Self {
        let labels = SourceLabels {
            source: source.to_string(),
        };
        metrics
            .connections_max
            .get_or_create(&labels)
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
        Self {
            queries: metrics.queries.get_or_create_owned(&labels),
            seconds: metrics.query_seconds.get_or_create_owned(&labels),
            in_use: metrics.in_use.get_or_create_owned(&labels),
            waiting: metrics.waiting.get_or_create_owned(&labels),
            shed: metrics.shed.get_or_create_owned(&labels),
        }
    }

    /// Counts one finished statement and its duration.
    pub fn finished(&self, started: std::time::Instant) {
        self.queries.inc();
        self.seconds.observe(started.elapsed().as_secs_f64());
    }
}
