//! Metrics of Portico's own state store: what retention pruned, and what replicas sharing it
//! told each other.

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

/// Labels of notices between replicas.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    /// `sent`, `received` or `failed` (could not be sent).
    pub direction: &'static str,
}

/// Metrics of the state store; cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct StateMetrics {
    /// Rows deleted by retention, per table.
    pub pruned: Family<TableLabels, Counter>,
    /// Notices to and from other replicas.
    pub notices: Family<NoticeLabels, Counter>,
    /// Whole-cache purges after notices may have been missed (the listening connection came
    /// back, or notices arrived faster than they were applied).
    pub cache_resyncs: Counter,
}

impl StateMetrics {
    /// Counts `rows` deleted from `table` by retention.
    pub fn count_pruned(&self, table: &'static str, rows: usize) {
        // Created at 0 too, so a dashboard sees the series before the first row is pruned.
        self.pruned
            .get_or_create(&TableLabels { table })
            .inc_by(rows as u64);
    }

    /// Counts one notice `direction` (`sent`, `received`, `failed`).
    pub fn count_notice(&self, direction: &'static str) {
        self.notices
            .get_or_create(&NoticeLabels { direction })
            .inc();
    }

    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "state_notices",
            "Notices to and from the other replicas sharing the state store",
            self.notices.clone(),
        );
        registry.register(
            "cache_resyncs",
            "Whole-cache purges because notices from other replicas may have been missed",
            self.cache_resyncs.clone(),
        );
        registry.register(
            "state_pruned",
            "Rows of the state store deleted by retention, per table",
            self.pruned.clone(),
        );
    }
}
