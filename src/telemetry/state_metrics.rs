//! Metrics of Portico's own state store: what retention pruned.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of pruned rows.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// `events`, `deliveries` or `attempts`.
    pub table: &'static str,
}

/// Metrics of the state store; cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct StateMetrics {
    /// Rows deleted by retention, per table.
    pub pruned: Family<TableLabels, Counter>,
}

impl StateMetrics {
    /// Counts `rows` deleted from `table` by retention.
    pub fn count_pruned(&self, table: &'static str, rows: usize) {
        // Created at 0 too, so a dashboard sees the series before the first row is pruned.
        self.pruned
            .get_or_create(&TableLabels { table })
            .inc_by(rows as u64);
    }

    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "state_pruned",
            "Rows of the state store deleted by retention, per table",
            self.pruned.clone(),
        );
    }
}
