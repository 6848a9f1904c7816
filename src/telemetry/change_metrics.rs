//! Metrics of change feeds and webhook deliveries.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of feed metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabels {
    /// Feed name (`source.table`).
    pub feed: String,
}

/// Labels of detected events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Feed name.
    pub feed: String,
    /// `created`, `updated`, `deleted`.
    pub kind: &'static str,
}

/// Labels of delivery attempts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// Subscription name.
    pub subscription: String,
    /// `delivered`, `retrying`, `dead`, `gone` (410: the subscription was disabled).
    pub outcome: &'static str,
}

/// Labels of events withheld from a reader.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WithheldLabels {
    /// Feed name.
    pub feed: String,
    /// Why the row policy could not be decided (`collation`, `missing_column`, ...).
    pub reason: &'static str,
}

/// Metrics of change feeds and deliveries; cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct ChangeMetrics {
    /// `feed_lag`, but -1 until the feed's first poll completes (refreshed when scraped).
    pub poll_lag: Family<FeedLabels, Gauge>,
    /// Seconds each feed is behind the database's present: since its last completed poll began
    /// reading, or since polling started before one completed (refreshed when scraped).
    pub feed_lag: Family<FeedLabels, Gauge>,
    /// Polls that failed (source unreachable, timeout, state store error).
    pub poll_errors: Family<FeedLabels, Counter>,
    /// Events detected and stored.
    pub events: Family<EventLabels, Counter>,
    /// Of those, the ones a reconciliation pass found: changes a `high_water_mark` missed.
    pub reconciled: Family<EventLabels, Counter>,
    /// Reconciliation passes completed.
    pub reconcile_passes: Family<FeedLabels, Counter>,
    /// Reconciliation pages that failed (the mark's polls go on; the page is tried again).
    pub reconcile_errors: Family<FeedLabels, Counter>,
    /// Delivery attempts by outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Dead letters waiting in the store (refreshed when scraped).
    pub dead_letters: Gauge,
    /// Events withheld from a reader because a row policy could not be decided on the row.
    pub withheld: Family<WithheldLabels, Counter>,
    /// Row changes stamped further ahead of the database's clock than the feed allows.
    pub future_stamps: Family<FeedLabels, Counter>,
    /// 1 while this replica holds the feed's lease and polls it (a fleet sharing a
    /// PostgreSQL state store); absent for a single process.
    pub leader: Family<FeedLabels, Gauge>,
}

impl ChangeMetrics {
    /// Counts an event of `feed` withheld from a reader because its row policy could not be
    /// decided on the row (`reason`).
    pub fn count_withheld(&self, feed: &str, reason: &'static str) {
        self.withheld
            .get_or_create(&WithheldLabels {
                feed: feed.to_string(),
                reason,
            })
            .inc();
    }

    /// Registers every metric.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "change_poll_lag_seconds",
            "Seconds since the feed's last completed poll began reading (-1 before the first)",
            self.poll_lag.clone(),
        );
        registry.register(
            "feed_lag_seconds",
            "Seconds the feed is behind the database: since its last completed poll began reading, or since polling started",
            self.feed_lag.clone(),
        );
        registry.register(
            "change_poll_errors",
            "Polls that failed",
            self.poll_errors.clone(),
        );
        registry.register(
            "change_events",
            "Change events detected",
            self.events.clone(),
        );
        registry.register(
            "change_reconciled",
            "Change events found by a reconciliation pass (changes the high-water mark missed)",
            self.reconciled.clone(),
        );
        registry.register(
            "change_reconcile_passes",
            "Reconciliation passes completed",
            self.reconcile_passes.clone(),
        );
        registry.register(
            "change_reconcile_errors",
            "Reconciliation pages that failed; the feed's own polls go on",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome",
            self.deliveries.clone(),
        );
        registry.register(
            "webhook_dead_letters",
            "Deliveries that exhausted their retry schedule",
            self.dead_letters.clone(),
        );
        registry.register(
            "change_events_withheld",
            "Change events withheld from a reader because a row policy could not be decided on the event's row",
            self.withheld.clone(),
        );
        registry.register(
            "change_future_stamps",
            "Row changes stamped further ahead of the database's clock than the feed's clock_skew (announced; the feed's mark does not follow them)",
            self.future_stamps.clone(),
        );
        registry.register(
            "feed_leader",
            "1 while this replica holds the feed's lease and polls it (replicas sharing a PostgreSQL state store)",
            self.leader.clone(),
        );
    }
}
