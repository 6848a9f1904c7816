//! Retention: events, finished deliveries (with their attempts) and dead letters older than
//! their `[state]` retention are pruned by a background task in short batches, so the store
//! stops growing without holding up polls or deliveries. Per feed, the newest log position
//! pruned is remembered, so a pull-feed cursor into pruned history is refused rather than
//! silently skipping what was pruned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{off_thread, unix_now_ms, DeliveryStatus, SqliteStore, StateError, StateStore};
use crate::config::StateConfig;
use crate::telemetry::state_metrics::StateMetrics;

/// The shortest pause between two batches of one pruning round.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// How long what is kept, and how pruning runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are pruned.
    pub events: Duration,
    /// Deliveries delivered longer ago than this are pruned.
    pub deliveries: Duration,
    /// Dead letters whose last attempt is older than this are pruned.
    pub dead_letters: Duration,
    /// Time between rounds.
    pub interval: Duration,
    /// Rows per transaction.
    pub batch: usize,
}

impl Retention {
    /// The retention `[state]` configures.
    pub fn new(config: &StateConfig) -> Self {
        Self {
            events: config.event_retention,
            deliveries: config.delivery_retention,
            dead_letters: config.dead_letter_retention,
            interval: config.prune_interval,
            batch: config.prune_batch.max(1),
        }
    }
}

/// What one pruning round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events.
    pub events: usize,
    /// Deliveries (delivered and dead).
    pub deliveries: usize,
    /// Attempts of those deliveries.
    pub attempts: usize,
    /// Recorded rows whose values were cleared (feeds that do not keep them).
    pub row_values: usize,
    /// Tombstones of deleted rows whose events are all pruned.
    pub tombstones: usize,
}

/// Pruning in the state store; each call is one short transaction.
pub trait RetentionStore: Send + Sync {
    /// Deletes up to `limit` events detected before `before_ms`, oldest first, and remembers
    /// per feed the newest log position deleted; returns how many were deleted.
    fn prune_events(&self, before_ms: i64, limit: usize) -> Result<usize, StateError>;
    /// Deletes up to `limit` deliveries in `status` whose last attempt was before
    /// `before_ms`, with their attempts; returns (deliveries, attempts). Pending deliveries
    /// are never deleted.
    fn prune_deliveries(
        &self,
        status: DeliveryStatus,
        before_ms: i64,
        limit: usize,
    ) -> Result<(usize, usize), StateError>;
    /// Deletes up to `limit` tombstones (deleted rows kept for their key's counter) whose
    /// key has no event left in the log, raising each feed's floor to the counters deleted,
    /// so a key created again counts on from past them; returns how many were deleted.
    fn prune_tombstones(&self, limit: usize) -> Result<usize, StateError>;
    /// The newest log position of `feed` that was pruned; 0 when none was.
    fn pruned_through(&self, feed: &str) -> Result<i64, StateError>;
    /// Clears the recorded values of up to `limit` rows of `feed` with keys after `after`,
    /// for a feed that does not keep them; returns how many were cleared and the key to go on
    /// after (`None`: the feed is done).
    fn forget_row_values(
        &self,
        feed: &str,
        after: &str,
        limit: usize,
    ) -> Result<(usize, Option<String>), StateError>;
}

impl RetentionStore for SqliteStore {
    fn prune_events(&self, before_ms: i64, limit: usize) -> Result<usize, StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut newest: HashMap<String, i64> = HashMap::new();
            let mut deleted = 0;
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM events WHERE seq IN (
                         SELECT seq FROM events WHERE detected_ms < ?1
                         ORDER BY detected_ms, seq LIMIT ?2)
                     RETURNING seq, feed",
                )?;
                let mut rows = delete.query(params![before_ms, limit as i64])?;
                while let Some(row) = rows.next()? {
                    let (seq, feed): (i64, String) = (row.get(0)?, row.get(1)?);
                    let through = newest.entry(feed).or_default();
                    *through = (*through).max(seq);
                    deleted += 1;
                }
                let mut remember = tx.prepare_cached(
                    "INSERT INTO pruned_events (feed, through_seq) VALUES (?1, ?2)
                     ON CONFLICT (feed) DO UPDATE SET through_seq = max(through_seq, ?2)",
                )?;
                for (feed, seq) in &newest {
                    remember.execute(params![feed, seq])?;
                }
            }
            tx.commit()?;
            Ok(deleted)
        })
    }

    fn prune_deliveries(
        &self,
        status: DeliveryStatus,
        before_ms: i64,
        limit: usize,
    ) -> Result<(usize, usize), StateError> {
        let status = match status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Pending => return Ok((0, 0)),
        };
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut deliveries, mut attempts) = (0, 0);
            {
                // A finished delivery's `next_ms` is when its last attempt started.
                let mut finished = tx.prepare_cached(
                    "SELECT id FROM deliveries WHERE status = ?1 AND next_ms < ?2
                     ORDER BY next_ms LIMIT ?3",
                )?;
                let ids: Vec<i64> = finished
                    .query_map(params![status, before_ms, limit as i64], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut forget_attempts =
                    tx.prepare_cached("DELETE FROM attempts WHERE delivery = ?1")?;
                let mut forget = tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
                for id in ids {
                    attempts += forget_attempts.execute(params![id])?;
                    deliveries += forget.execute(params![id])?;
                }
            }
            tx.commit()?;
            Ok((deliveries, attempts))
        })
    }

    fn prune_tombstones(&self, limit: usize) -> Result<usize, StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let gone: Vec<(String, String, i64)> = tx
                .prepare_cached(
                    "SELECT feed, key, seq FROM feed_rows AS t WHERE deleted = 1
                     AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.feed = t.feed AND e.key = t.key)
                     LIMIT ?1",
                )?
                .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            {
                let mut raise = tx.prepare_cached(
                    "INSERT INTO feed_floors (feed, seq) VALUES (?1, ?2)
                     ON CONFLICT (feed) DO UPDATE SET seq = max(seq, ?2)",
                )?;
                let mut forget = tx.prepare_cached(
                    "DELETE FROM feed_rows WHERE feed = ?1 AND key = ?2 AND deleted = 1",
                )?;
                for (feed, key, seq) in &gone {
                    raise.execute(params![feed, seq])?;
                    forget.execute(params![feed, key])?;
                }
            }
            tx.commit()?;
            Ok(gone.len())
        })
    }

    fn pruned_through(&self, feed: &str) -> Result<i64, StateError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT through_seq FROM pruned_events WHERE feed = ?1",
                params![feed],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn forget_row_values(
        &self,
        feed: &str,
        after: &str,
        limit: usize,
    ) -> Result<(usize, Option<String>), StateError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let last: Option<String> = tx
                .query_row(
                    "SELECT max(key) FROM (SELECT key FROM feed_rows WHERE feed = ?1 AND key > ?2
                     ORDER BY key LIMIT ?3)",
                    params![feed, after, limit as i64],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let Some(last) = last else {
                return Ok((0, None));
            };
            let cleared = tx.execute(
                "UPDATE feed_rows SET row = NULL
                 WHERE feed = ?1 AND key > ?2 AND key <= ?3 AND row IS NOT NULL",
                params![feed, after, last],
            )?;
            tx.commit()?;
            Ok((cleared, Some(last)))
        })
    }
}

/// Prunes every `retention.interval` until the process ends. `slim` names the feeds that
/// keep no row values: values a store recorded for them earlier are cleared once.
pub async fn run(
    store: Arc<dyn StateStore>,
    retention: Retention,
    metrics: StateMetrics,
    slim: Vec<String>,
) {
    let mut slim: Vec<(String, String)> = slim.into_iter().map(|f| (f, String::new())).collect();
    loop {
        match prune(&store, &retention, &metrics, &mut slim).await {
            Ok(pruned) if pruned != Pruned::default() => tracing::info!(
                events = pruned.events,
                deliveries = pruned.deliveries,
                attempts = pruned.attempts,
                row_values = pruned.row_values,
                tombstones = pruned.tombstones,
                "state store pruned"
            ),
            Ok(_) => tracing::debug!("state store pruned: nothing was due"),
            Err(error) => {
                tracing::warn!(%error, "pruning the state store failed; retrying next interval")
            }
        }
        tokio::time::sleep(retention.interval).await;
    }
}

/// One round: every kind of row past its retention, batch by batch. Between batches the task
/// pauses as long as the batch took, so pruning never holds the store more than half the
/// time.
pub async fn prune(
    store: &Arc<dyn StateStore>,
    retention: &Retention,
    metrics: &StateMetrics,
    slim: &mut Vec<(String, String)>,
) -> Result<Pruned, StateError> {
    let now = unix_now_ms();
    let before =
        |kept: Duration| now.saturating_sub(i64::try_from(kept.as_millis()).unwrap_or(i64::MAX));
    let batch = retention.batch;
    let mut pruned = Pruned::default();
    let cutoff = before(retention.events);
    pruned.events = drain(store, batch, metrics, "events", move |s| {
        s.prune_events(cutoff, batch)
    })
    .await?;
    for (status, kept) in [
        (DeliveryStatus::Delivered, retention.deliveries),
        (DeliveryStatus::Dead, retention.dead_letters),
    ] {
        loop {
            let started = Instant::now();
            let cutoff = before(kept);
            let (deliveries, attempts) =
                off_thread(store, move |s| s.prune_deliveries(status, cutoff, batch)).await?;
            metrics.count_pruned("deliveries", deliveries);
            metrics.count_pruned("attempts", attempts);
            pruned.deliveries += deliveries;
            pruned.attempts += attempts;
            if deliveries < batch {
                break;
            }
            pause(started).await;
        }
    }
    pruned.tombstones = drain(store, batch, metrics, "feed_rows", move |s| {
        s.prune_tombstones(batch)
    })
    .await?;
    while let Some((feed, after)) = slim.first().cloned() {
        let started = Instant::now();
        let (cleared, next) =
            off_thread(store, move |s| s.forget_row_values(&feed, &after, batch)).await?;
        pruned.row_values += cleared;
        match next {
            Some(key) => slim[0].1 = key,
            None => {
                slim.remove(0);
            }
        }
        pause(started).await;
    }
    Ok(pruned)
}

/// Runs `work` (one batch, returning the rows it deleted) until a batch comes back short,
/// counting the rows under `table` and pausing between batches; the rows deleted in all.
async fn drain(
    store: &Arc<dyn StateStore>,
    batch: usize,
    metrics: &StateMetrics,
    table: &'static str,
    work: impl Fn(&dyn StateStore) -> Result<usize, StateError> + Copy + Send + 'static,
) -> Result<usize, StateError> {
    let mut deleted = 0;
    loop {
        let started = Instant::now();
        let rows = off_thread(store, work).await?;
        metrics.count_pruned(table, rows);
        deleted += rows;
        if rows < batch {
            return Ok(deleted);
        }
        pause(started).await;
    }
}

/// Leaves the store to polls and deliveries for as long as the last batch held it.
async fn pause(started: Instant) {
    tokio::time::sleep(started.elapsed().max(MIN_PAUSE)).await;
}
