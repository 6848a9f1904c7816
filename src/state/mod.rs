//! Portico's own durable state (idempotency keys, change feeds, webhook deliveries), behind
//! traits so a shared PostgreSQL store can serve several replicas later. The default is an
//! embedded SQLite file. What is past its retention is pruned (`retention`).

mod deliveries;
mod feeds;
pub mod retention;
mod sqlite;

pub use deliveries::{
    AttemptRecord, AttemptResult, DeliveryFilter, DeliveryRecord, DeliveryStatus, DeliveryStore,
    SecretRecord, SubscriptionRecord,
};
pub use feeds::{Batch, ChangeStore, KnownRow, NewDelivery, NewEvent, RowRecord, StoredEvent};
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
#[error("state store: {0}")]
pub struct StateError(pub String);

/// Portico's durable store.
pub trait StateStore: ChangeStore + DeliveryStore + RetentionStore + Send + Sync {
    /// Claims `key` within `scope` for a request whose body hashes to `fingerprints[0]` (a key
    /// stored under any of `fingerprints` is the same request); keys older than
    /// `retention_secs` are forgotten first.
    fn claim_idempotency(
        &self,
        scope: &str,
        key: &str,
        fingerprints: &[String],
        retention_secs: i64,
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

/// Runs a store call on the blocking threads (SQLite syncs to disk on commit), off the async
/// ones.
pub async fn off_thread<T: Send + 'static>(
    store: &std::sync::Arc<dyn StateStore>,
    work: impl FnOnce(&dyn StateStore) -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|e| StateError(format!("state store task failed: {e}")))?
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
