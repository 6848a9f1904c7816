//! Metrics of configuration reloads: how each ended, which generation serves, since when.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `applied`, `refused` (the file has problems or changes a restart-only setting) or
    /// `failed` (the new configuration could not be put in place).
    pub outcome: &'static str,
}

/// Reload metrics; cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct ReloadMetrics {
    /// Reloads by outcome.
    pub reloads: Family<OutcomeLabels, Counter>,
    /// The generation of the configuration serving (1 at start, one more per applied reload).
    pub generation: Gauge,
    /// When the serving configuration was loaded (seconds since the epoch).
    pub loaded_seconds: Gauge,
}

impl ReloadMetrics {
    /// Counts one reload that ended as `outcome`.
    pub fn count(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records that `generation` serves from now on.
    pub fn serving(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.loaded_seconds
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// Registers every metric; each outcome's series is there at 0 before the first reload,
    /// so an alert finds it.
    pub fn register(&self, registry: &mut Registry) {
        for outcome in ["applied", "refused", "failed"] {
            self.reloads
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(0);
        }
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP, POST /admin/reload) by outcome",
            self.reloads.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the serving configuration (1 at start)",
            self.generation.clone(),
        );
        registry.register(
            "config_loaded_timestamp_seconds",
            "When the serving configuration was loaded, in seconds since the epoch",
            self.loaded_seconds.clone(),
        );
    }
}
