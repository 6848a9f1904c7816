//! The poll loop of a feed: read a page, compare with what was recorded, and commit the
//! events, their deliveries and the advanced position in one state transaction. Nothing is
//! delivered before that commit; a failed poll changes nothing and is retried.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::detect::values_json;
use super::render::EventRecord;
use super::{event_id, now_ms, row_hash, EventKind, Feed, Page, Position};
use crate::config::InitialPosition;
use crate::http::AppState;
use crate::source::Value;
use crate::state::{off_thread, Batch, KnownRow, NewEvent, RowRecord, StateStore};
use crate::telemetry::change_metrics::{EventLabels, FeedLabels};

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
    /// Configuration gap (no state store or source).
    #[error("{0}")]
    Setup(String),
}

/// Starts a poll loop per feed and the webhook dispatcher.
pub fn spawn_all(state: Arc<AppState>) {
    for index in 0..state.feeds.len() {
        tokio::spawn(run(state.clone(), index));
    }
    if let Some(hub) = state.webhooks.clone() {
        tokio::spawn(crate::webhooks::dispatch::run(hub));
    }
}

/// Polls one feed until the process ends.
pub async fn run(state: Arc<AppState>, index: usize) {
    let feed = state.feeds[index].clone();
    let labels = FeedLabels {
        feed: feed.name.clone(),
    };
    loop {
        match poll(&state, &feed).await {
            Ok(()) => feed.polled_ms.store(now_ms(), Ordering::Relaxed),
            Err(error) => {
                state
                    .metrics
                    .changes
                    .poll_errors
                    .get_or_create(&labels)
                    .inc();
                tracing::warn!(feed = %feed.name, %error, "change poll failed; retrying next interval");
            }
        }
        tokio::time::sleep(feed.poll_interval).await;
    }
}

/// One poll: pages until the strategy says the poll is complete.
pub async fn poll(state: &AppState, feed: &Feed) -> Result<(), PollError> {
    let store = state
        .state_store
        .clone()
        .ok_or_else(|| PollError::Setup("no state store".into()))?;
    let source = state
        .sources
        .get(&feed.source)
        .ok_or_else(|| PollError::Setup(format!("no source `{}`", feed.source)))?
        .clone();
    let name = feed.name.clone();
    let stored = off_thread(&store, move |s| s.cursor(&name)).await?;
    let mut position: Position = stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    loop {
        let statement = feed.strategy.read(feed, &position, source.dialect());
        let rows = source.query(statement).await?;
        let now = now_ms();
        let page = feed.strategy.interpret(feed, &position, rows, now)?;
        let batch = detect(state, &store, feed, &position, &page, now).await?;
        commit(state, &store, feed, batch).await?;
        position = page.next;
        if let Some(pass) = page.sweep_before {
            sweep(state, &store, feed, pass).await?;
        }
        if page.done {
            return Ok(());
        }
    }
}

/// Compares a page with the recorded rows: the batch to commit.
async fn detect(
    state: &AppState,
    store: &Arc<dyn StateStore>,
    feed: &Feed,
    position: &Position,
    page: &Page,
    now: i64,
) -> Result<Batch, PollError> {
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
                        .push(event(state, feed, &key, seq, Some(&hash), kind, row, now));
                }
                batch.upserts.push(RowRecord {
                    key,
                    known: KnownRow {
                        hash,
                        seq,
                        row: values_json(row),
                    },
                });
            }
            None => {
                if let Some(previous) = previous {
                    remove(state, feed, &mut batch, key, previous, now);
                }
            }
        }
    }
    Ok(batch)
}

/// Announces a recorded row as deleted (with its last known values) and forgets it.
fn remove(
    state: &AppState,
    feed: &Feed,
    batch: &mut Batch,
    key: String,
    known: &KnownRow,
    now: i64,
) {
    let row: Vec<Value> = serde_json::from_str(&known.row).unwrap_or_default();
    let seq = known.seq + 1;
    batch.events.push(event(
        state,
        feed,
        &key,
        seq,
        None,
        EventKind::Deleted,
        &row,
        now,
    ));
    batch.removed.push(key);
}

/// An event and its deliveries.
#[allow(clippy::too_many_arguments)]
fn event(
    state: &AppState,
    feed: &Feed,
    key: &str,
    seq: i64,
    hash: Option<&str>,
    kind: EventKind,
    row: &[Value],
    now: i64,
) -> NewEvent {
    let id = event_id(&feed.name, key, seq, hash);
    let deliveries = state
        .webhooks
        .as_ref()
        .map(|hub| {
            let record = EventRecord {
                id: &id,
                kind,
                row,
                detected_ms: now,
            };
            hub.deliveries_for(&state.catalog, feed, &record, now)
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
async fn commit(
    state: &AppState,
    store: &Arc<dyn StateStore>,
    feed: &Feed,
    batch: Batch,
) -> Result<(), PollError> {
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
        state.metrics.changes.events.get_or_create(&labels).inc();
    }
    for resource in state.catalog.affected_by_write(&feed.source, &feed.table) {
        state.cache.invalidate_resource(&resource);
    }
    tracing::info!(feed = %feed.name, events = new.len(), deliveries, "changes detected");
    if let Some(hub) = &state.webhooks {
        hub.wake();
    }
    Ok(())
}

/// Announces the deletion of rows a finished pass did not see.
async fn sweep(
    state: &AppState,
    store: &Arc<dyn StateStore>,
    feed: &Feed,
    pass: i64,
) -> Result<(), PollError> {
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
            remove(state, feed, &mut batch, key, &known, now);
        }
        commit(state, store, feed, batch).await?;
    }
}
