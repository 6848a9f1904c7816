//! Change feeds in the state store: cursors, the rows each feed last saw, and the event log.
//! A poll's events, their deliveries and the advanced cursor commit in one transaction.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{SqliteStore, StateError};

/// A row as its feed last recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRow {
    /// Hash of its legacy values.
    pub hash: String,
    /// How many changes of its key were announced, deletes included.
    pub seq: i64,
    /// Its legacy values (JSON), kept only for feeds that announce deletes with them.
    pub row: Option<String>,
    /// The row was deleted: a tombstone kept for its key's change counter.
    pub deleted: bool,
}

/// A row to record.
#[derive(Debug, Clone)]
pub struct RowRecord {
    /// Key values (JSON).
    pub key: String,
    /// The row as recorded.
    pub known: KnownRow,
}

/// A delivery to create with its event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Subscription name.
    pub subscription: String,
    /// The exact body every attempt sends.
    pub body: Vec<u8>,
    /// When the first attempt is due.
    pub next_ms: i64,
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Stable id (`evt_…`), the `webhook-id` of its deliveries.
    pub id: String,
    /// `created`, `updated` or `deleted`.
    pub kind: String,
    /// Key values (JSON).
    pub key: String,
    /// Legacy values (JSON): the new row, or the last known one of a deleted row.
    pub row: Option<String>,
    /// The key's change counter: this is its `key_seq`-th change.
    pub key_seq: i64,
    /// When it was detected.
    pub detected_ms: i64,
    /// One per matching subscription.
    pub deliveries: Vec<NewDelivery>,
}

/// Everything one read of a feed produced, committed at once.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Feed name.
    pub feed: String,
    /// The feed's new position (JSON); `None` leaves it.
    pub position: Option<String>,
    /// The pass the rows of this batch were seen in.
    pub pass: i64,
    /// Rows that are new or changed.
    pub upserts: Vec<RowRecord>,
    /// Keys of rows seen unchanged (their pass is updated).
    pub touched: Vec<String>,
    /// Events with their deliveries.
    pub events: Vec<NewEvent>,
    /// The feed's lease the poller holds: the commit is refused when it is no longer current.
    pub lease: Option<super::Lease>,
}

/// An event from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log (the pull feed's cursor).
    pub seq: i64,
    /// Stable id.
    pub id: String,
    /// Feed name.
    pub feed: String,
    /// `created`, `updated` or `deleted`.
    pub kind: String,
    /// Key values (JSON).
    pub key: String,
    /// Legacy values (JSON).
    pub row: Option<String>,
    /// The key's change counter (`None` for events stored before it was kept).
    pub key_seq: Option<i64>,
    /// When it was detected.
    pub detected_ms: i64,
}

/// Cursors, recorded rows and the event log of change feeds.
pub trait ChangeStore: Send + Sync {
    /// The feed's stored position (JSON).
    fn cursor(&self, feed: &str) -> Result<Option<String>, StateError>;
    /// The recorded rows among `keys`, tombstones of deleted ones included.
    fn known_rows(
        &self,
        feed: &str,
        keys: &[String],
    ) -> Result<HashMap<String, KnownRow>, StateError>;
    /// Up to `limit` recorded rows (not tombstones) last seen before `pass`.
    fn unseen_rows(
        &self,
        feed: &str,
        pass: i64,
        limit: usize,
    ) -> Result<Vec<(String, KnownRow)>, StateError>;
    /// Commits a batch; returns the indexes of the events that were new (an event already in
    /// the log is skipped with its deliveries) and how many deliveries were created. A batch
    /// whose lease another replica took over writes nothing: `StateError::LeaseLost`.
    fn commit(&self, batch: &Batch) -> Result<(Vec<usize>, usize), StateError>;
    /// Whether log position `seq` holds an event of `feed` (a cursor the feed gave).
    fn has_event(&self, feed: &str, seq: i64) -> Result<bool, StateError>;
    /// Events of a feed after log position `after`, oldest first.
    fn events_after(
        &self,
        feed: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StateError>;
}

impl ChangeStore for SqliteStore {
    fn cursor(&self, feed: &str) -> Result<Option<String>, StateError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT position FROM feed_cursors WHERE feed = ?1",
                params![feed],
                |row| row.get(0),
            )
            .optional()
        })
    }

    fn known_rows(
        &self,
        feed: &str,
        keys: &[String],
    ) -> Result<HashMap<String, KnownRow>, StateError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT hash, seq, row, deleted FROM feed_rows WHERE feed = ?1 AND key = ?2",
            )?;
            // Tombstones retention pruned raised the feed's floor: a key without a record
            // counts from there, so its counter never goes back to a value it had.
            let floor: i64 = conn
                .prepare_cached("SELECT seq FROM feed_floors WHERE feed = ?1")?
                .query_row(params![feed], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let mut found = HashMap::new();
            for key in keys {
                let row = statement
                    .query_row(params![feed, key], |r| {
                        Ok(KnownRow {
                            hash: r.get(0)?,
                            seq: r.get(1)?,
                            row: r.get(2)?,
                            deleted: r.get(3)?,
                        })
                    })
                    .optional()?;
                let row = row.or_else(|| {
                    (floor > 0).then(|| KnownRow {
                        hash: String::new(),
                        seq: floor,
                        row: None,
                        deleted: true,
                    })
                });
                if let Some(row) = row {
                    found.insert(key.clone(), row);
                }
            }
            Ok(found)
        })
    }

    fn unseen_rows(
        &self,
        feed: &str,
        pass: i64,
        limit: usize,
    ) -> Result<Vec<(String, KnownRow)>, StateError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT key, hash, seq, row FROM feed_rows
                 WHERE feed = ?1 AND pass < ?2 AND deleted = 0 LIMIT ?3",
            )?;
            let rows = statement.query_map(params![feed, pass, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    KnownRow {
                        hash: r.get(1)?,
                        seq: r.get(2)?,
                        row: r.get(3)?,
                        deleted: false,
                    },
                ))
            })?;
            rows.collect()
        })
    }

    fn commit(&self, batch: &Batch) -> Result<(Vec<usize>, usize), StateError> {
        let now = super::unix_now_ms();
        let committed = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(lease) = &batch.lease {
                if !super::fleet::still_held(&tx, &batch.feed, lease)? {
                    return Ok(None);
                }
            }
            let (mut events, mut deliveries) = (Vec::new(), 0);
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO feed_rows (feed, key, hash, seq, pass, row, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (feed, key) DO UPDATE SET hash = ?3, seq = ?4, pass = ?5, row = ?6, deleted = ?7",
                )?;
                for r in &batch.upserts {
                    let k = &r.known;
                    upsert.execute(params![batch.feed, r.key, k.hash, k.seq, batch.pass, k.row, k.deleted])?;
                }
                let mut touch =
                    tx.prepare_cached("UPDATE feed_rows SET pass = ?3 WHERE feed = ?1 AND key = ?2")?;
                for key in &batch.touched {
                    touch.execute(params![batch.feed, key, batch.pass])?;
                }
                let mut event = tx.prepare_cached(
                    "INSERT OR IGNORE INTO events (id, feed, kind, key, row, detected_ms, key_seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let mut delivery = tx.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (event_id, subscription, body, status, next_ms, created_ms, feed, key, key_seq)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8)",
                )?;
                for (i, e) in batch.events.iter().enumerate() {
                    let new = event.execute(params![
                        e.id,
                        batch.feed,
                        e.kind,
                        e.key,
                        e.row,
                        e.detected_ms,
                        e.key_seq
                    ])?;
                    if new == 0 {
                        continue;
                    }
                    events.push(i);
                    for d in &e.deliveries {
                        deliveries += delivery.execute(params![
                            e.id,
                            d.subscription,
                            d.body,
                            d.next_ms,
                            now,
                            batch.feed,
                            e.key,
                            e.key_seq
                        ])?;
                    }
                }
            }
            if let Some(position) = &batch.position {
                tx.execute(
                    "INSERT INTO feed_cursors (feed, position, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (feed) DO UPDATE SET position = ?2, updated_ms = ?3",
                    params![batch.feed, position, now],
                )?;
            }
            tx.commit()?;
            Ok(Some((events, deliveries)))
        })?;
        committed.ok_or_else(|| StateError::LeaseLost {
            feed: batch.feed.clone(),
        })
    }

    fn has_event(&self, feed: &str, seq: i64) -> Result<bool, StateError> {
        self.with(|conn| {
            conn.prepare_cached("SELECT 1 FROM events WHERE seq = ?1 AND feed = ?2")?
                .exists(params![seq, feed])
        })
    }

    fn events_after(
        &self,
        feed: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StateError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, id, feed, kind, key, row, detected_ms, key_seq FROM events
                 WHERE feed = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = statement.query_map(params![feed, after, limit as i64], |r| {
                Ok(StoredEvent {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    feed: r.get(2)?,
                    kind: r.get(3)?,
                    key: r.get(4)?,
                    row: r.get(5)?,
                    detected_ms: r.get(6)?,
                    key_seq: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, subscriptions: &[&str]) -> NewEvent {
        NewEvent {
            id: id.into(),
            kind: "updated".into(),
            key: "[\"J1\"]".into(),
            row: Some("[]".into()),
            key_seq: 1,
            detected_ms: 5,
            deliveries: subscriptions
                .iter()
                .map(|s| NewDelivery {
                    subscription: s.to_string(),
                    body: b"{}".to_vec(),
                    next_ms: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_commits_rows_events_deliveries_and_cursor_together_and_events_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap();
        let known = KnownRow {
            hash: "h1".into(),
            seq: 1,
            row: Some("[]".into()),
            deleted: false,
        };
        let batch = Batch {
            feed: "shop.JOBHDR".into(),
            position: Some("{\"pass\":1}".into()),
            pass: 1,
            upserts: vec![RowRecord {
                key: "[\"J1\"]".into(),
                known: known.clone(),
            }],
            events: vec![event("evt_1", &["a", "b"])],
            ..Batch::default()
        };
        assert_eq!(store.commit(&batch).unwrap(), (vec![0], 2));
        // The same event again (a poll repeated after a crash) is a no-op.
        assert_eq!(store.commit(&batch).unwrap(), (vec![], 0));
        assert_eq!(
            store.cursor("shop.JOBHDR").unwrap().as_deref(),
            Some("{\"pass\":1}")
        );
        let keys = ["[\"J1\"]".to_string(), "[\"J2\"]".to_string()];
        let found = store.known_rows("shop.JOBHDR", &keys).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[&keys[0]], known);
        // Rows not touched in pass 2 are unseen; touched ones are not.
        assert_eq!(store.unseen_rows("shop.JOBHDR", 2, 10).unwrap().len(), 1);
        let touch = Batch {
            feed: "shop.JOBHDR".into(),
            pass: 2,
            touched: vec![keys[0].clone()],
            ..Batch::default()
        };
        store.commit(&touch).unwrap();
        assert!(store.unseen_rows("shop.JOBHDR", 2, 10).unwrap().is_empty());
        let events = store.events_after("shop.JOBHDR", 0, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].id.as_str(), events[0].seq), ("evt_1", 1));
        assert!(store.events_after("shop.JOBHDR", 1, 10).unwrap().is_empty());
    }

    #[test]
    fn a_deleted_row_stays_as_a_tombstone_that_sweeps_skip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap();
        let key = "[\"C09999\"]".to_string();
        let record = |seq, deleted| RowRecord {
            key: key.clone(),
            known: KnownRow {
                hash: "h1".into(),
                seq,
                row: Some("[]".into()),
                deleted,
            },
        };
        let batch = |upsert, id: &str, key_seq| Batch {
            feed: "f".into(),
            pass: 1,
            upserts: vec![upsert],
            events: vec![NewEvent {
                key_seq,
                ..event(id, &[])
            }],
            ..Batch::default()
        };
        store.commit(&batch(record(1, false), "evt_1", 1)).unwrap();
        store.commit(&batch(record(2, true), "evt_2", 2)).unwrap();
        let found = store.known_rows("f", std::slice::from_ref(&key)).unwrap();
        assert_eq!(found[&key], record(2, true).known, "the counter survives");
        assert!(
            store.unseen_rows("f", 5, 10).unwrap().is_empty(),
            "a tombstone is not swept again"
        );
        store.commit(&batch(record(3, false), "evt_3", 3)).unwrap();
        assert_eq!(store.unseen_rows("f", 5, 10).unwrap().len(), 1);
        let sequences: Vec<Option<i64>> = store
            .events_after("f", 0, 10)
            .unwrap()
            .iter()
            .map(|e| e.key_seq)
            .collect();
        assert_eq!(sequences, [Some(1), Some(2), Some(3)]);
    }
}
