//! The poll loop of a feed: read a page, compare with what was recorded, and commit the
//! events, their deliveries and the advanced position in one state transaction. Nothing is
//! delivered before that commit; a failed poll changes nothing and is retried.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::detect::{compare, values_json, Change};
use super::lease::{FeedLease, Fleet};
use super::render::EventRecord;
use super::{event_id, now_ms, reconcile, row_hash, EventKind, Feed, Page, Position};
use crate::cache::ResponseCache;
use crate::config::InitialPosition;
use crate::source::{Source, Value};
use crate::state::{
    off_thread, Batch, KnownRow, NewDelivery, NewEvent, Notice, RowRecord, StateError, StateStore,
};
use crate::telemetry::change_metrics::{ChangeMetrics, EventLabels, FeedLabels};
use tracing::Instrument;

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

impl PollError {
    /// What kind of failure it is, for operators (the feed's last failure): never a driver
    /// message.
    pub fn kind(&self) -> &'static str {
        use crate::source::SourceError;
        match self {
            PollError::Source(SourceError::Unavailable { .. }) => "unavailable",
            PollError::Source(SourceError::Timeout { .. }) => "timeout",
            PollError::Source(SourceError::Busy { .. }) => "busy",
            PollError::Source(_) => "query",
            PollError::Strategy(_) => "strategy",
            PollError::State(_) => "state",
        }
    }
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
    /// This replica's part in a fleet sharing the store: the feed is polled only while this
    /// replica holds its lease. `None`: the only process, it always polls.
    pub fleet: Option<Arc<Fleet>>,
    /// The feed's lease, while held.
    pub lease: FeedLease,
}

impl Poller {
    /// Polls until the process ends.
    pub async fn run(self) {
        let labels = FeedLabels {
            feed: self.feed.name.clone(),
        };
        self.feed.started_ms.store(now_ms(), Ordering::Relaxed);
        // The feed's counters exist at 0 from the start, so alerts see them before they count.
        self.metrics.poll_errors.get_or_create(&labels).inc_by(0);
        self.metrics.future_stamps.get_or_create(&labels).inc_by(0);
        if self.feed.reconcile_interval.is_some() {
            self.metrics
                .reconcile_errors
                .get_or_create(&labels)
                .inc_by(0);
            self.metrics
                .reconcile_passes
                .get_or_create(&labels)
                .inc_by(0);
        }
        let mut next_poll = tokio::time::Instant::now();
        loop {
            if let Some(fleet) = &self.fleet {
                let leads = self
                    .lease
                    .lead(fleet, &self.store, &self.feed.name, &self.metrics)
                    .await;
                match leads {
                    Ok(true) => {}
                    Ok(false) => {
                        // Another replica polls it: its lag and readiness are that replica's.
                        self.feed.polled_ms.store(now_ms(), Ordering::Relaxed);
                        tokio::time::sleep(fleet.renew_every()).await;
                        continue;
                    }
                    Err(error) => {
                        self.metrics.poll_errors.get_or_create(&labels).inc();
                        self.feed.failed("lease", now_ms());
                        tracing::warn!(feed = %self.feed.name, %error, "cannot take or renew the feed's lease");
                        tokio::time::sleep(fleet.renew_every()).await;
                        continue;
                    }
                }
                if tokio::time::Instant::now() < next_poll {
                    // Leading between polls: renew well before the lease runs out.
                    let renew = tokio::time::Instant::now() + fleet.renew_every();
                    tokio::time::sleep_until(renew.min(next_poll)).await;
                    continue;
                }
            }
            // A completed poll has seen what was committed before it began: its lag counts
            // from there, so a poll that cannot keep up shows it.
            let began = now_ms();
            next_poll = tokio::time::Instant::now() + self.feed.poll_interval;
            match self.poll().await {
                Ok(()) => self.feed.polled_ms.store(began, Ordering::Relaxed),
                Err(PollError::State(StateError::LeaseLost { .. })) => {
                    if let Some(fleet) = &self.fleet {
                        self.lease.lost(fleet, &self.feed.name, &self.metrics);
                    }
                    tracing::warn!(feed = %self.feed.name, "another replica took the feed over; this poll's changes were not committed");
                }
                Err(error) => {
                    self.metrics.poll_errors.get_or_create(&labels).inc();
                    self.feed.failed(error.kind(), now_ms());
                    tracing::warn!(feed = %self.feed.name, %error, "change poll failed; retrying next interval");
                }
            }
            if self.fleet.is_none() {
                tokio::time::sleep(self.feed.poll_interval).await;
            }
        }
    }

    /// One poll: pages until the strategy says the poll is complete, then reads one page of
    /// a reconciliation pass when one is due.
    pub async fn poll(&self) -> Result<(), PollError> {
        let span = crate::telemetry::traces::exported_span!(
            "poll",
            otel.name = "poll",
            feed = %self.feed.name,
            events = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let polled = self.poll_pages(&span).instrument(span.clone()).await;
        if polled.is_err() {
            span.record("otel.status_code", "error");
        }
        polled
    }

    /// [`Poller::poll`] inside its span, which learns how many new events were committed.
    async fn poll_pages(&self, span: &tracing::Span) -> Result<(), PollError> {
        let (feed, store) = (&self.feed, &self.store);
        let mut found = 0;
        let name = feed.name.clone();
        let stored = off_thread(store, move |s| s.cursor(&name)).await?;
        let mut position: Position = stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let clock = self.read_clock().await?;
        loop {
            position.clock = clock.clone();
            let statement = feed.strategy.read(feed, &position, self.source.dialect());
            let rows = self.source.query(statement).await?;
            let now = now_ms();
            let page = feed.strategy.interpret(feed, &position, rows, now)?;
            let batch = self.detect(&position, &page, now).await?;
            found += self.commit(batch).await?.len();
            position = page.next;
            if let Some(pass) = page.sweep_before {
                self.sweep(pass).await?;
            }
            if page.done {
                // A reconciliation page that fails (an old row the mark never reads, a slow
                // scan) is tried again next poll; it must not stall the mark's polls, their
                // lag or readiness.
                if let Err(error) = self.reconcile(position).await {
                    let labels = FeedLabels {
                        feed: feed.name.clone(),
                    };
                    self.metrics.reconcile_errors.get_or_create(&labels).inc();
                    tracing::warn!(feed = %feed.name, %error, "reconciliation page failed; trying again next poll");
                }
                span.record("events", found);
                return Ok(());
            }
        }
    }

    /// One page of a reconciliation pass, when the feed has `reconcile_interval` and a pass is
    /// due or under way: its rows are compared like the mark's, and its last page sweeps the
    /// recorded rows the pass did not see (rows the mark's polls recorded meanwhile count as
    /// seen: they are stored with the pass's number).
    async fn reconcile(&self, position: Position) -> Result<(), PollError> {
        let feed = &self.feed;
        let Some(interval) = feed.reconcile_interval else {
            return Ok(());
        };
        let Some(position) = reconcile::due(&position, interval, now_ms()) else {
            return Ok(());
        };
        let statement = reconcile::read(feed, &position, self.source.dialect());
        let rows = self.source.query(statement).await?;
        let now = now_ms();
        let mut page = reconcile::interpret(feed, &position, &rows, now)?;
        let batch = self.detect(&position, &page, now).await?;
        // The pass's counts are committed with the events they count.
        let state = page.next.reconcile.get_or_insert_with(Default::default);
        for event in &batch.events {
            match EventKind::parse(&event.kind) {
                Some(EventKind::Created) => state.created += 1,
                Some(EventKind::Updated) => state.updated += 1,
                _ => {}
            }
        }
        let state = state.clone();
        let batch = Batch {
            position: serde_json::to_string(&page.next).ok(),
            ..batch
        };
        let mut found = self.commit(batch).await?;
        let mut deleted = 0;
        if let Some(pass) = page.sweep_before {
            let gone = self.sweep(pass).await?;
            deleted = gone.len();
            found.extend(gone);
        }
        for kind in found {
            let labels = EventLabels {
                feed: feed.name.clone(),
                kind: kind.as_str(),
            };
            self.metrics.reconciled.get_or_create(&labels).inc();
        }
        if page.done {
            let labels = FeedLabels {
                feed: feed.name.clone(),
            };
            self.metrics.reconcile_passes.get_or_create(&labels).inc();
            tracing::info!(
                feed = %feed.name,
                rows = state.rows,
                created = state.created,
                updated = state.updated,
                deleted,
                seconds = (now - state.started_ms) / 1_000,
                "reconciliation pass complete"
            );
        }
        Ok(())
    }

    /// The database's clock, for a strategy whose position must not run ahead of it.
    async fn read_clock(&self) -> Result<Option<Value>, PollError> {
        let Some(statement) = self.feed.strategy.clock(&self.feed, self.source.dialect()) else {
            return Ok(None);
        };
        let rows = self.source.query(statement).await?;
        match rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
        {
            Some(now) => Ok(Some(now)),
            None => Err(
                super::ChangeError::Unexpected("the database's clock read no row".into()).into(),
            ),
        }
    }

    /// Logs and counts a changed row stamped ahead of the database's clock.
    fn stamped_ahead(&self, position: &Position, key: &str, row: &[Value]) {
        let labels = FeedLabels {
            feed: self.feed.name.clone(),
        };
        self.metrics.future_stamps.get_or_create(&labels).inc();
        let stamp = self.feed.column.and_then(|i| row.get(i));
        tracing::warn!(
            feed = %self.feed.name, key, ?stamp, clock = ?position.clock,
            skew = ?self.feed.clock_skew,
            "row stamped ahead of the database's clock: announced, but the feed's mark stays at the clock"
        );
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
            let hash = candidate.row.as_deref().map(row_hash);
            match compare(previous, hash.as_deref(), announce) {
                Change::Unchanged => match (&candidate.row, previous) {
                    // A feed that announces deletes records the values it lacks (recorded
                    // before it did, such as a feed that took `reconcile_interval` later), so
                    // the row's deletion can carry them.
                    (Some(row), Some(known)) if known.row.is_none() && feed.keeps_rows() => {
                        batch.upserts.push(RowRecord {
                            key,
                            known: KnownRow {
                                row: Some(values_json(row)),
                                ..known.clone()
                            },
                        })
                    }
                    (Some(_), _) => batch.touched.push(key),
                    (None, _) => {}
                },
                Change::Deleted { .. } => {
                    if let Some(previous) = previous {
                        self.remove(&mut batch, key, previous, now);
                    }
                }
                Change::Recorded { kind, seq } => {
                    let (Some(row), Some(hash)) = (&candidate.row, hash) else {
                        continue; // recorded only when a row was found
                    };
                    // A baseline announces nothing: nothing to warn about either.
                    if announce && feed.strategy.stamped_ahead(feed, position, row) {
                        self.stamped_ahead(position, &key, row);
                    }
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
                            deleted: false,
                        },
                    });
                }
            }
        }
        Ok(batch)
    }

    /// Announces a recorded row as deleted (with its last known values) and keeps it as a
    /// tombstone, so its key's change counter goes on if the row comes back.
    fn remove(&self, batch: &mut Batch, key: String, known: &KnownRow, now: i64) {
        let row = self.last_values(&key, known);
        let seq = known.seq + 1;
        batch
            .events
            .push(self.event(&key, seq, None, EventKind::Deleted, &row, now));
        batch.upserts.push(RowRecord {
            key,
            // A tombstone keeps the counter; the values went out with the event.
            known: KnownRow {
                seq,
                deleted: true,
                row: None,
                hash: known.hash.clone(),
            },
        });
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
        // Not silent: a reader whose row policy needs a value does not get this event.
        tracing::info!(feed = %self.feed.name, key, "a deleted row is announced with its key only: its values were never recorded");
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
                    sequence: Some(seq),
                    detected_ms: now,
                };
                sink.deliveries_for(&self.feed, &record, now)
            })
            .unwrap_or_default();
        NewEvent {
            kind: kind.as_str().into(),
            key: key.into(),
            row: Some(values_json(row)),
            key_seq: seq,
            detected_ms: now,
            deliveries,
            id,
        }
    }

    /// Commits a batch, then invalidates cached answers and wakes the dispatcher; the kinds of
    /// the events that were new.
    async fn commit(&self, mut batch: Batch) -> Result<Vec<EventKind>, PollError> {
        let (feed, store) = (&self.feed, &self.store);
        if let Some(fleet) = &self.fleet {
            // Renewed before each page, so a long poll keeps its lease; refused once another
            // replica has it (and then the commit below would be too).
            if !self
                .lease
                .lead(fleet, store, &feed.name, &self.metrics)
                .await?
            {
                return Err(StateError::LeaseLost {
                    feed: feed.name.clone(),
                }
                .into());
            }
            batch.lease = self.lease.current();
        }
        let kinds: Vec<String> = batch.events.iter().map(|e| e.kind.clone()).collect();
        let (new, deliveries) = off_thread(store, move |s| s.commit(&batch)).await?;
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let new: Vec<EventKind> = new
            .iter()
            .map(|&i| EventKind::parse(&kinds[i]).unwrap_or(EventKind::Updated))
            .collect();
        for kind in &new {
            let labels = EventLabels {
                feed: feed.name.clone(),
                kind: kind.as_str(),
            };
            self.metrics.events.get_or_create(&labels).inc();
        }
        for resource in &self.affected {
            self.cache.invalidate_resource(resource);
        }
        crate::state::publish(store, Notice::Invalidate(self.affected.clone())).await;
        tracing::info!(feed = %feed.name, events = new.len(), deliveries, "changes detected");
        if let Some(sink) = &self.sink {
            sink.committed();
        }
        Ok(new)
    }

    /// Announces the deletion of rows a finished pass did not see; the kinds of the events
    /// that were new.
    async fn sweep(&self, pass: i64) -> Result<Vec<EventKind>, PollError> {
        let (feed, store) = (&self.feed, &self.store);
        let mut announced = Vec::new();
        loop {
            let (name, limit) = (feed.name.clone(), feed.page_size);
            let gone = off_thread(store, move |s| s.unseen_rows(&name, pass, limit)).await?;
            if gone.is_empty() {
                return Ok(announced);
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
            announced.extend(self.commit(batch).await?);
        }
    }
}
