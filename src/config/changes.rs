//! Configuration of change polling (per resource), webhook delivery and subscriptions.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

/// How Portico notices changed rows of a resource's table.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StrategyName {
    /// SQL Server Change Tracking (`CHANGETABLE(CHANGES …)`); sees deletes.
    ChangeTracking,
    /// A SQL Server `rowversion` column, read up to `MIN_ACTIVE_ROWVERSION()`.
    Rowversion,
    /// A monotonic column (updated-at or identity), re-read over a lag window.
    HighWaterMark,
    /// Row hashes compared page by page; works on anything and sees deletes.
    SnapshotDiff,
}

impl StrategyName {
    /// The name as configured (`high_water_mark`).
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyName::ChangeTracking => "change_tracking",
            StrategyName::Rowversion => "rowversion",
            StrategyName::HighWaterMark => "high_water_mark",
            StrategyName::SnapshotDiff => "snapshot_diff",
        }
    }
}

/// Where a change feed starts the first time it runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    /// Existing rows are the baseline: only later changes become events.
    #[default]
    Now,
    /// Every existing row becomes a `created` event.
    Everything,
}

/// Which clock a `high_water_mark` column's stamps follow, so the feed reads the same clock
/// from the database.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StampClock {
    /// The database's local time (`NOW()`, `SYSDATETIME()`), as legacy programs stamp.
    #[default]
    Local,
    /// UTC (`UTC_TIMESTAMP()`, `SYSUTCDATETIME()`).
    Utc,
}

/// `[versions.v1.resources.jobs.changes]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesConfig {
    /// The strategy.
    pub strategy: StrategyName,
    /// The monotonic (`high_water_mark`) or `rowversion` column.
    pub column: Option<String>,
    /// The column's legacy type when no field shows it (`timestamp` by default; a
    /// `rowversion` column is read as a number).
    pub column_type: Option<String>,
    /// Time between polls.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "super::units::duration"
    )]
    pub poll_interval: Duration,
    /// `high_water_mark`: how far back each poll re-reads, so a transaction that commits
    /// after a later one (or a row with an equal value) is still seen.
    #[serde(default = "default_lag", deserialize_with = "super::units::duration")]
    pub lag: Duration,
    /// Rows read per statement.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Where the feed starts the first time.
    #[serde(default)]
    pub initial: InitialPosition,
    /// `high_water_mark`: how long after a reconciliation pass the next one starts. A pass
    /// pages through the table by key (one page per poll) and announces what the mark
    /// missed: rows updated without a new stamp, rows committed behind the mark, deletes.
    /// Off when absent.
    #[serde(default, deserialize_with = "super::units::optional_duration")]
    pub reconcile_interval: Option<Duration>,
    /// `high_water_mark` over a timestamp: the clock its stamps follow.
    #[serde(default)]
    pub clock: StampClock,
    /// `high_water_mark` over a timestamp: how far ahead of the database's clock a stamp may
    /// be before the row is logged and counted as stamped in the future.
    #[serde(
        default = "default_clock_skew",
        deserialize_with = "super::units::duration"
    )]
    pub clock_skew: Duration,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_lag() -> Duration {
    Duration::from_secs(30)
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(300)
}

fn default_page_size() -> usize {
    500
}

/// `[webhooks]`: how deliveries are made.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Waits before each attempt: the first entry before the first attempt, and so on; after
    /// the last, the delivery is a dead letter.
    #[serde(
        default = "default_schedule",
        deserialize_with = "super::units::durations"
    )]
    pub retry_schedule: Vec<Duration>,
    /// Random extra wait, as a fraction of each scheduled wait.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Time allowed for one attempt (connect, send, answer).
    #[serde(
        default = "default_timeout",
        deserialize_with = "super::units::duration"
    )]
    pub timeout: Duration,
    /// Attempts in flight at once for one subscription.
    #[serde(default = "default_per_subscription")]
    pub max_in_flight_per_subscription: usize,
    /// Attempts in flight at once overall.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Hosts, addresses or networks (`10.1.0.0/16`) webhooks may reach although they are not
    /// globally routable (loopback, private, link-local…).
    #[serde(default)]
    pub allow_private: Vec<String>,
    /// An HTTP proxy every delivery goes through (`http://proxy.corp:3128`). Environment
    /// proxies (`HTTP_PROXY`, `HTTPS_PROXY`) are never used; with a proxy, each target is
    /// still resolved and checked against the guard before every attempt.
    pub proxy: Option<String>,
    /// How long a rotated-out secret still signs deliveries.
    #[serde(default = "default_grace", deserialize_with = "super::units::duration")]
    pub secret_grace: Duration,
    /// How often due deliveries are looked for when nothing wakes the dispatcher.
    #[serde(default = "default_tick", deserialize_with = "super::units::duration")]
    pub dispatch_interval: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            retry_schedule: default_schedule(),
            jitter: default_jitter(),
            timeout: default_timeout(),
            max_in_flight_per_subscription: default_per_subscription(),
            max_in_flight: default_in_flight(),
            allow_private: Vec::new(),
            proxy: None,
            secret_grace: default_grace(),
            dispatch_interval: default_tick(),
        }
    }
}

fn default_schedule() -> Vec<Duration> {
    [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000]
        .map(Duration::from_secs)
        .to_vec()
}

fn default_jitter() -> f64 {
    0.1
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

fn default_per_subscription() -> usize {
    16
}

fn default_in_flight() -> usize {
    128
}

fn default_grace() -> Duration {
    Duration::from_secs(86_400)
}

fn default_tick() -> Duration {
    Duration::from_secs(1)
}

/// `[subscriptions.portal]`: a webhook receiver declared in configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Where events are POSTed (`https://…`).
    pub url: String,
    /// The version whose field names the events carry.
    pub version: String,
    /// Event types (`jobs.updated`), a resource's every type (`jobs.*`) or `*`.
    #[serde(default = "every_event")]
    pub events: Vec<String>,
    /// The signing secret (`whsec_` + base64), from the environment. Changing it rotates:
    /// the previous secret keeps signing for `webhooks.secret_grace`.
    pub secret: String,
    /// Scopes the subscription holds: fields that need another scope are left out.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims the resources' row policies read (`{customer_id = "C00002"}`): the receiver
    /// gets only the rows a token with these claims and scopes would see.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Delivers when true.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Per-key order: a key's later deliveries wait while an earlier one is being retried.
    #[serde(default)]
    pub ordered: bool,
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

fn enabled() -> bool {
    true
}

/// Subscriptions by name.
pub type Subscriptions = IndexMap<String, SubscriptionConfig>;
