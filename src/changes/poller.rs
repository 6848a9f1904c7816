//! The poll loop of a feed: read a page, compare with what was recorded, and commit the
//! events, their deliveries and the advanced position in one state transaction. Nothing is
//! delivered before that commit; a failed poll changes nothing and is retried.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::detect::values_json;
use super::render::EventRecord;
use super::{event_id, now_ms, row_hash, EventKind, Feed, Page, Position};
use crate::cache::ResponseCache;
use crate::config::InitialPosition;
use crate::source::{Source, Value};
use crate::state::{off_thread, Batch, KnownRow, NewDelivery, NewEvent, RowRecord, StateStore};
use crate::telemetry::change_metrics::{ChangeMetrics, EventLabels, FeedLabels};

/// Why a poll failed (it is retried at the next interval).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The legacy database did not answer.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// The answer was not what the strategy expected.
    #[error(transparent)]
    Strategy(#[from] super::ChangeError),
    /// Portico's state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Where a feed's events go besides the state store: the deliveries each event makes, and a
/// nudge once they are committed. The webhooks hub is one; the poller knows nothing else of it.
pub trait EventSink: Send + Sync {
    /// The deliveries `event` makes, committed with it.
    fn deliveries_for(&self, feed: &Feed, event: &EventRecord<'_>, now_ms: i64)
        -> Vec<NewDelivery>;
    /// Events and their deliveries were committed.
    fn committed(&self);
}

/// Everything one feed's poll loop uses, and nothing of the web side.
pub struct Poller {
    /// The watched table.
    pub feed: Arc<Feed>,
    /// The legacy database the table is in.
    pub source: Arc<dyn Source>,
    /// Where the position, the known rows and the events are kept.
    pub store: Arc<dyn StateStore>,
    /// Cached answers a change makes stale.
    pub cache: Arc<ResponseCache>,
    /// The resources (in every version) that read the feed's table.
    pub affected: Vec<String>,
    /// Where events go besides the store (webhooks), if anywhere.
    pub sink: Option<Arc<dyn EventSink>>,
    /// Change metrics.
    pub metrics: ChangeMetrics,
}

impl Poller {
    /// Polls until the process ends.
    pub async fn run(self) {
        let labels = FeedLabels {
            feed: self.feed.name.clone(),
        };
        loop {
            match self.poll().await {
                Ok(()) => self.feed.polled_ms.store(now_ms(), Ordering::Relaxed),
                Err(error) => {
                    self.metrics.poll_errors.get_or_create(&labels).inc();
                    tracing::warn!(feed = %self.feed.name, %error, "change poll failed; retrying next interval");
                }
            }
            tokio::time::sleep(self.feed.poll_interval).await;
        }
    }

    /// One poll: pages until the strategy says the poll is complete.
    pub async fn poll(&self) -> Result<(), PollError> {
        let (feed, store) = (&self.feed, &self.store);
        let name = feed.name.clone();
        let stored = off_thread(store, move |s| s.cursor(&name)).await?;
        let mut position: Position = stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        loop {
            let statement = feed.strategy.read(feed, &position, self.source.dialect());
            let rows = self.source.query(statement).await?;
            let now = now_ms();
            let page = feed.strategy.interpret(feed, &position, rows, now)?;
            let batch = self.detect(&position, &page, now).await?;
            self.commit(batch).await?;
            position = page.next;
            if let Some(pass) = page.sweep_before {
                self.sweep(pass).await?;
            }
            if page.done {
                return Ok(());
            }
        }
    }

    /// Compares a page with the recorded rows: the batch to commit.
    async fn detect(&self, position: &Position, page: &Page, now: i64) -> Result<Batch, PollError> {
        let (feed, store) = (&self.feed, &self.store);
        let keys: Vec<String> = page
            .candidates
            .iter()
            .map(|c| values_json(&c.key))
            .collect();
        let (name, lookup) = (feed.name.clone(), keys.clone());
        let known: HashMap<String, KnownRow> =
            off_thread(store, move |s| s.known_rows(&name, &lookup)).await?;
        let announce = !page.baseline || feed.initial == InitialPosition::Everything;
        let mut batch = Batch {
            feed: feed.name.clone(),
            position: serde_json::to_string(&page.next).ok(),
            pass: position.pass,
            ..Batch::default()
        };
        for (candidate, key) in page.candidates.iter().zip(keys) {
            let previous = known.get(&key);
            match &candidate.row {
                Some(row) => {
                    let hash = row_hash(row);
                    if previous.is_some_and(|p| p.hash == hash) {
                        batch.touched.push(key);
                        continue;
                    }
                    let seq = previous.map_or(0, |p| p.seq) + i64::from(announce);
                    let kind = match previous {
                        Some(_) => EventKind::Updated,
                        None => EventKind::Created,
                    };
                    if announce {
                        batch
                            .events
                            .push(self.event(&key, seq, Some(&hash), kind, row, now));
                    }
                    batch.upserts.push(RowRecord {
                        key,
                        known: KnownRow {
                            hash,
                            seq,
                            row: feed.keeps_rows().then(|| values_json(row)),
                        },
                    });
                }
                None => {
                    if let Some(previous) = previous {
                        self.remove(&mut batch, key, previous, now);
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Announces a recorded row as deleted (with its last known values) and forgets it.
    fn remove(&self, batch: &mut Batch, key: String, known: &KnownRow, now: i64) {
        let row = self.last_values(&key, known);
        let seq = known.seq + 1;
        batch
            .events
            .push(self.event(&key, seq, None, EventKind::Deleted, &row, now));
        batch.removed.push(key);
    }

    /// A recorded row's last values; only its key when the store kept no values for it.
    fn last_values(&self, key: &str, known: &KnownRow) -> Vec<Value> {
        if let Some(row) = known
            .row
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
        {
            return row;
        }
        let mut row: Vec<Value> = serde_json::from_str(key).unwrap_or_default();
        row.resize(self.feed.columns.len(), Value::Null);
        row
    }

    /// An event and its deliveries.
    fn event(
        &self,
        key: &str,
        seq: i64,
        hash: Option<&str>,
        kind: EventKind,
        row: &[Value],
        now: i64,
    ) -> NewEvent {
        let id = event_id(&self.feed.name, key, seq, hash);
        let deliveries = self
            .sink
            .as_ref()
            .map(|sink| {
                let record = EventRecord {
                    id: &id,
                    kind,
                    row,
                    detected_ms: now,
                };
                sink.deliveries_for(&self.feed, &record, now)
            })
            .unwrap_or_default();
        NewEvent {
            kind: kind.as_str().into(),
            key: key.into(),
            row: Some(values_json(row)),
            detected_ms: now,
            deliveries,
            id,
        }
    }

    /// Commits a batch, then invalidates cached answers and wakes the dispatcher.
    async fn commit(&self, batch: Batch) -> Result<(), PollError> {
        let (feed, store) = (&self.feed, &self.store);
        let kinds: Vec<String> = batch.events.iter().map(|e| e.kind.clone()).collect();
        let (new, deliveries) = off_thread(store, move |s| s.commit(&batch)).await?;
        if new.is_empty() {
            return Ok(());
        }
        for &i in &new {
            let kind = EventKind::parse(&kinds[i]).map_or("updated", EventKind::as_str);
            let labels = EventLabels {
                feed: feed.name.clone(),
                kind,
            };
            self.metrics.events.get_or_create(&labels).inc();
        }
        for resource in &self.affected {
            self.cache.invalidate_resource(resource);
        }
        tracing::info!(feed = %feed.name, events = new.len(), deliveries, "changes detected");
        if let Some(sink) = &self.sink {
            sink.committed();
        }
        Ok(())
    }

    /// Announces the deletion of rows a finished pass did not see.
    async fn sweep(&self, pass: i64) -> Result<(), PollError> {
        let (feed, store) = (&self.feed, &self.store);
        loop {
            let (name, limit) = (feed.name.clone(), feed.page_size);
            let gone = off_thread(store, move |s| s.unseen_rows(&name, pass, limit)).await?;
            if gone.is_empty() {
                return Ok(());
            }
            let now = now_ms();
            let mut batch = Batch {
                feed: feed.name.clone(),
                pass,
                ..Batch::default()
            };
            for (key, known) in gone {
                self.remove(&mut batch, key, &known, now);
            }
            self.commit(batch).await?;
        }
    }
}
