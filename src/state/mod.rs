//! Portico's own durable state (idempotency keys, change feeds, webhook deliveries, and what
//! replicas share: feed leases, delivery claims, notices), behind traits. The default is an
//! embedded SQLite file for one process; a PostgreSQL store (`postgres`) serves a fleet. What
//! is past its retention is pruned (`retention`).

mod deliveries;
mod feeds;
mod fleet;
pub mod postgres;
pub mod retention;
mod sqlite;

pub use deliveries::{
    AttemptRecord, AttemptResult, DeliveryCounts, DeliveryFilter, DeliveryRecord, DeliveryStatus,
    DeliveryStore, DueClaim, SecretRecord, SubscriptionRecord,
};
pub use feeds::{Batch, ChangeStore, KnownRow, NewDelivery, NewEvent, RowRecord, StoredEvent};
pub use fleet::{FleetStore, Lease, Notice};
pub use postgres::PgStore;
pub use retention::RetentionStore;
pub use sqlite::SqliteStore;

/// A response remembered for an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers worth replaying (`Location`, `ETag`).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: this request owns it and must complete or release it.
    Fresh,
    /// Another request with this key is still running.
    InFlight,
    /// The key was used by a finished request with the same body: its response.
    Replay(StoredResponse),
    /// The key was used with another request body.
    Mismatch,
}

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store could not do what was asked.
    #[error("state store: {0}")]
    Failed(String),
    /// A feed's commit carried a lease that is no longer this replica's: another replica took
    /// the feed over, so nothing was written.
    #[error("state store: the lease of feed {feed} passed to another replica")]
    LeaseLost {
        /// The feed.
        feed: String,
    },
}

/// Portico's durable store.
pub trait StateStore:
    ChangeStore + DeliveryStore + RetentionStore + FleetStore + Send + Sync
{
    /// Claims `key` within `scope` for a request whose body hashes to `fingerprints[0]` (a key
    /// stored under any of `fingerprints` is the same request); keys older than
    /// `retention_secs` are forgotten first. A claim still in flight after `lease_ms` belongs
    /// to a request that died (its replica was killed): it is taken over.
    fn claim_idempotency(
        &self,
        scope: &str,
        key: &str,
        fingerprints: &[String],
        retention_secs: i64,
        lease_ms: i64,
    ) -> Result<Claim, StateError>;
    /// Remembers the response of a claimed key.
    fn complete_idempotency(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StateError>;
    /// Gives a claimed key up (the request failed without writing), so a retry can run.
    fn release_idempotency(&self, scope: &str, key: &str) -> Result<(), StateError>;
}

/// What claiming a key found, from its stored fingerprint and response (`None`: the claim is
/// this request's).
pub(crate) fn claim_found(
    found: Option<(String, Option<String>)>,
    fingerprints: &[String],
) -> Result<Claim, StateError> {
    Ok(match found {
        None => Claim::Fresh,
        Some((stored, _)) if !fingerprints.contains(&stored) => Claim::Mismatch,
        Some((_, None)) => Claim::InFlight,
        Some((_, Some(response))) => Claim::Replay(
            serde_json::from_str(&response).map_err(|e| StateError::Failed(e.to_string()))?,
        ),
    })
}

/// Runs a store call on the blocking threads (SQLite syncs to disk on commit), off the async
/// ones.
pub async fn off_thread<T: Send + 'static>(
    store: &std::sync::Arc<dyn StateStore>,
    work: impl FnOnce(&dyn StateStore) -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|e| StateError::Failed(format!("state store task failed: {e}")))?
}

/// Tells the other replicas sharing the store (none for a store one process uses), waiting
/// here: for a blocking thread or the start. A notice that cannot be sent is logged and
/// counted, never an error of the change that caused it (that is committed already).
pub fn tell(store: &dyn StateStore, notice: &Notice) {
    if !store.shared() {
        return;
    }
    if let Err(error) = store.publish(notice) {
        tracing::warn!(%error, ?notice, "cannot tell the other replicas");
    }
}

/// `tell`, from an async thread: the store is waited on by a blocking one.
pub async fn publish(store: &std::sync::Arc<dyn StateStore>, notice: Notice) {
    if !store.shared() {
        return;
    }
    if let Err(error) = off_thread(store, move |s| {
        tell(s, &notice);
        Ok(())
    })
    .await
    {
        tracing::warn!(%error, "cannot tell the other replicas");
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
