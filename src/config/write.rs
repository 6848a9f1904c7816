//! Configuration of writes: which operations a resource accepts, values Portico sets itself,
//! and Portico's own state store (idempotency keys, how long events and deliveries are kept).

use std::time::Duration;

use serde::Deserialize;

use super::DateFormat;

/// A write operation a resource may allow.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    /// `POST /{v}/{resource}`.
    Create,
    /// `PATCH /{v}/{resource}/{key}`.
    Update,
    /// `DELETE /{v}/{resource}/{key}`.
    Delete,
}

/// A value Portico writes into a column the API does not expose (`LAST_UPD = now`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteValueConfig {
    /// `now` (timestamp), `today` (date), `{sub}`, `{claims.path}`, or a literal.
    pub value: WriteValueText,
    /// Legacy column type, e.g. `char(8)` or `timestamp`; `varchar` when absent.
    pub column_type: Option<String>,
    /// How `today` is stored (`yyyymmdd`, `cyymmdd`, `iso`…).
    pub format: Option<DateFormat>,
    /// Operations that set it; `["create", "update"]` when absent.
    pub on: Option<Vec<WriteOp>>,
}

/// A literal or keyword of a write value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum WriteValueText {
    /// Integer literal.
    Integer(i64),
    /// Text: a keyword, a claim reference or a literal.
    Text(String),
}

/// Portico's own durable store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file, relative to the configuration file's folder (one process).
    #[serde(default = "default_state_path")]
    pub path: String,
    /// A PostgreSQL database every replica of a fleet shares
    /// (`postgres://user:password@host:port/database`); when set, `path` is not used.
    #[serde(default)]
    pub url: Option<String>,
    /// This replica's name in feed leases and delivery claims; by default the host name and
    /// the process id. Unique within a fleet.
    #[serde(default)]
    pub replica: Option<String>,
    /// Connections to the PostgreSQL store.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a feed's leader keeps its lease without renewing it (it renews at every
    /// poll): a dead leader's feeds are taken over about this long after it stopped.
    #[serde(
        default = "default_feed_lease",
        deserialize_with = "super::units::duration"
    )]
    pub feed_lease: Duration,
    /// How long a claimed delivery is reserved for the replica that claimed it: a replica
    /// killed mid-delivery has its claims retried by another after this. Longer than
    /// `webhooks.timeout`.
    #[serde(
        default = "default_claim_lease",
        deserialize_with = "super::units::duration"
    )]
    pub delivery_lease: Duration,
    /// How long a request holds its `Idempotency-Key` before answering: a claim older than
    /// this belongs to a request that died, and a retry takes the key over.
    #[serde(
        default = "default_claim_lease",
        deserialize_with = "super::units::duration"
    )]
    pub idempotency_lease: Duration,
    /// How long an `Idempotency-Key` is remembered.
    #[serde(
        default = "default_retention",
        deserialize_with = "super::units::duration"
    )]
    pub idempotency_retention: Duration,
    /// How long a change event stays in the log (the pull feed reads it); older ones are
    /// pruned, and a pull-feed cursor before them is answered 410.
    #[serde(
        default = "default_history_retention",
        deserialize_with = "super::units::duration"
    )]
    pub event_retention: Duration,
    /// How long a delivered webhook delivery and its attempts are kept after delivery.
    /// Pending deliveries are never pruned.
    #[serde(
        default = "default_history_retention",
        deserialize_with = "super::units::duration"
    )]
    pub delivery_retention: Duration,
    /// How long a dead letter is kept after its last attempt, unless it is resent.
    #[serde(
        default = "default_dead_letter_retention",
        deserialize_with = "super::units::duration"
    )]
    pub dead_letter_retention: Duration,
    /// Time between pruning rounds.
    #[serde(
        default = "default_prune_interval",
        deserialize_with = "super::units::duration"
    )]
    pub prune_interval: Duration,
    /// Rows deleted per state transaction while pruning (short, so polls and deliveries
    /// waiting for the store are not held up).
    #[serde(default = "default_prune_batch")]
    pub prune_batch: usize,
}

impl StateConfig {
    /// This process's name in feed leases and delivery claims: `replica` (or the host name)
    /// and an id of this process, so two processes given the same name by mistake never pass
    /// for one (each would take the other's leases as its own), and a restarted replica is a
    /// new holder.
    pub fn replica_name(&self) -> String {
        static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let process = PROCESS.get_or_init(|| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            format!("{}-{}", std::process::id(), &id[..8])
        });
        let name = self.replica.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "portico".into())
        });
        format!("{name}/{process}")
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            url: None,
            replica: None,
            pool_size: default_pool_size(),
            feed_lease: default_feed_lease(),
            delivery_lease: default_claim_lease(),
            idempotency_lease: default_claim_lease(),
            idempotency_retention: default_retention(),
            event_retention: default_history_retention(),
            delivery_retention: default_history_retention(),
            dead_letter_retention: default_dead_letter_retention(),
            prune_interval: default_prune_interval(),
            prune_batch: default_prune_batch(),
        }
    }
}

fn default_state_path() -> String {
    "portico-state.sqlite3".into()
}

fn default_pool_size() -> usize {
    8
}

fn default_feed_lease() -> Duration {
    Duration::from_secs(10)
}

fn default_claim_lease() -> Duration {
    Duration::from_secs(60)
}

fn default_retention() -> Duration {
    Duration::from_secs(86_400)
}

fn default_history_retention() -> Duration {
    Duration::from_secs(3 * 86_400)
}

fn default_dead_letter_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_prune_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_prune_batch() -> usize {
    500
}
