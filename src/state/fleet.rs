//! What replicas sharing one store agree through: a lease per feed (one poller across the
//! fleet, fenced by a token), heartbeats (how many replicas are live, to spread the feeds), and
//! notices (cache invalidations and subscription changes, sent to every other replica).

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{SqliteStore, StateError};

/// A feed's lease as its holder knows it; a commit carrying it is refused once another replica
/// took the feed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The replica holding it.
    pub holder: String,
    /// The fencing token: raised at every takeover, kept by a renewal.
    pub token: i64,
}

/// A message to every other replica of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// Cached answers of these resources are stale.
    Invalidate(Vec<String>),
    /// Every cached answer is stale.
    PurgeAll,
    /// Subscriptions changed: reload them.
    Subscriptions,
    /// Local only: the connection notices arrive on was lost and is back, so some may have
    /// been missed.
    Resync,
}

/// Leases, heartbeats and notices.
pub trait FleetStore: Send + Sync {
    /// Records `replica` as live at `now_ms`; returns how many replicas were seen within
    /// `live_ms` (itself included).
    fn heartbeat(&self, replica: &str, now_ms: i64, live_ms: i64) -> Result<usize, StateError>;
    /// Takes the feed's lease for `holder` until `now_ms + ttl_ms` when it is free or expired
    /// (a higher token), or renews `holder`'s own (the same token); `None` while another
    /// holder's lease runs.
    fn acquire_lease(
        &self,
        feed: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StateError>;
    /// Gives the lease up, if `holder` still holds it with `token`.
    fn release_lease(&self, feed: &str, holder: &str, token: i64) -> Result<(), StateError>;
    /// Whether other processes share this store (and so notices and leases matter).
    fn shared(&self) -> bool;
    /// Sends `notice` to every other replica (nothing to do for a store only one process uses).
    fn publish(&self, notice: &Notice) -> Result<(), StateError>;
    /// Notices other replicas published; `None` for a store only one process uses.
    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>>;
}

/// SQLite serves one process: the lease logic runs the same, notices go nowhere.
impl FleetStore for SqliteStore {
    fn heartbeat(&self, replica: &str, now_ms: i64, live_ms: i64) -> Result<usize, StateError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO replicas (name, seen_ms) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET seen_ms = ?2",
                params![replica, now_ms],
            )?;
            conn.execute(
                "DELETE FROM replicas WHERE seen_ms < ?1",
                params![now_ms - 10 * live_ms],
            )?;
            conn.query_row(
                "SELECT COUNT(*) FROM replicas WHERE seen_ms >= ?1",
                params![now_ms - live_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(1) as usize)
        })
    }

    fn acquire_lease(
        &self,
        feed: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT holder, token, expires_ms FROM feed_leases WHERE feed = ?1",
                    params![feed],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let token = match current {
                Some((h, token, _)) if h == holder => token,
                Some((_, _, expires)) if expires > now_ms => return Ok(None),
                Some((_, token, _)) => token + 1,
                None => 1,
            };
            tx.execute(
                "INSERT INTO feed_leases (feed, holder, token, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (feed) DO UPDATE SET holder = ?2, token = ?3, expires_ms = ?4",
                params![feed, holder, token, now_ms + ttl_ms],
            )?;
            tx.commit()?;
            Ok(Some(token))
        })
    }

    fn release_lease(&self, feed: &str, holder: &str, token: i64) -> Result<(), StateError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE feed_leases SET expires_ms = 0 WHERE feed = ?1 AND holder = ?2 AND token = ?3",
                params![feed, holder, token],
            )
            .map(|_| ())
        })
    }

    fn shared(&self) -> bool {
        false
    }

    fn publish(&self, _notice: &Notice) -> Result<(), StateError> {
        Ok(())
    }

    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        None
    }
}

/// Whether a feed's lease row says `lease` still holds it (checked inside a commit's
/// transaction).
pub(super) fn still_held(
    tx: &rusqlite::Transaction<'_>,
    feed: &str,
    lease: &Lease,
) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT 1 FROM feed_leases WHERE feed = ?1 AND holder = ?2 AND token = ?3",
        params![feed, lease.holder, lease.token],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}
