//! Change feeds in PostgreSQL: cursors, recorded rows, the event log. A batch commits in one
//! transaction that first locks its feed's lease row, so commits of one feed never interleave
//! and a replica that lost the lease writes nothing.

use std::collections::HashMap;

use super::{failed, PgStore};
use crate::state::{Batch, ChangeStore, KnownRow, StateError, StoredEvent};

impl ChangeStore for PgStore {
    fn cursor(&self, feed: &str) -> Result<Option<String>, StateError> {
        self.run(|client| async move {
            Ok(client
                .query_opt(
                    "SELECT position FROM feed_cursors WHERE feed = $1",
                    &[&feed],
                )
                .await
                .map_err(failed)?
                .map(|r| r.get(0)))
        })
    }

    fn known_rows(
        &self,
        feed: &str,
        keys: &[String],
    ) -> Result<HashMap<String, KnownRow>, StateError> {
        self.run(|client| async move {
            // Tombstones retention pruned raised the feed's floor: a key without a record
            // counts from there, so its counter never goes back to a value it had.
            let floor: i64 = client
                .query_opt("SELECT seq FROM feed_floors WHERE feed = $1", &[&feed])
                .await
                .map_err(failed)?
                .map_or(0, |r| r.get(0));
            let rows = client
                .query(
                    "SELECT key, hash, seq, row, deleted FROM feed_rows
                     WHERE feed = $1 AND key = ANY($2)",
                    &[&feed, &keys],
                )
                .await
                .map_err(failed)?;
            let mut found: HashMap<String, KnownRow> = rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        KnownRow {
                            hash: r.get(1),
                            seq: r.get(2),
                            row: r.get(3),
                            deleted: r.get(4),
                        },
                    )
                })
                .collect();
            if floor > 0 {
                for key in keys {
                    found.entry(key.clone()).or_insert_with(|| KnownRow {
                        hash: String::new(),
                        seq: floor,
                        row: None,
                        deleted: true,
                    });
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
        self.run(|client| async move {
            let rows = client
                .query(
                    "SELECT key, hash, seq, row FROM feed_rows
                     WHERE feed = $1 AND pass < $2 AND NOT deleted LIMIT $3",
                    &[&feed, &pass, &(limit as i64)],
                )
                .await
                .map_err(failed)?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        KnownRow {
                            hash: r.get(1),
                            seq: r.get(2),
                            row: r.get(3),
                            deleted: false,
                        },
                    )
                })
                .collect())
        })
    }

    fn commit(&self, batch: &Batch) -> Result<(Vec<usize>, usize), StateError> {
        let now = crate::state::unix_now_ms();
        let committed = self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            if let Some(lease) = &batch.lease {
                let held = tx
                    .query_opt(
                        "SELECT 1 FROM feed_leases WHERE feed = $1 AND holder = $2 AND token = $3
                         FOR UPDATE",
                        &[&batch.feed, &lease.holder, &lease.token],
                    )
                    .await
                    .map_err(failed)?;
                if held.is_none() {
                    return Ok(None);
                }
            }
            if !batch.upserts.is_empty() {
                let keys: Vec<&str> = batch.upserts.iter().map(|r| r.key.as_str()).collect();
                let hashes: Vec<&str> = batch
                    .upserts
                    .iter()
                    .map(|r| r.known.hash.as_str())
                    .collect();
                let seqs: Vec<i64> = batch.upserts.iter().map(|r| r.known.seq).collect();
                let values: Vec<Option<&str>> = batch
                    .upserts
                    .iter()
                    .map(|r| r.known.row.as_deref())
                    .collect();
                let deleted: Vec<bool> = batch.upserts.iter().map(|r| r.known.deleted).collect();
                tx.execute(
                    "INSERT INTO feed_rows (feed, key, hash, seq, pass, row, deleted)
                     SELECT $1, k, h, s, $2, r, d
                     FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::bool[])
                         AS u (k, h, s, r, d)
                     ON CONFLICT (feed, key) DO UPDATE SET hash = EXCLUDED.hash,
                         seq = EXCLUDED.seq, pass = EXCLUDED.pass, row = EXCLUDED.row,
                         deleted = EXCLUDED.deleted",
                    &[
                        &batch.feed,
                        &batch.pass,
                        &keys,
                        &hashes,
                        &seqs,
                        &values,
                        &deleted,
                    ],
                )
                .await
                .map_err(failed)?;
            }
            if !batch.touched.is_empty() {
                tx.execute(
                    "UPDATE feed_rows SET pass = $2 WHERE feed = $1 AND key = ANY($3)",
                    &[&batch.feed, &batch.pass, &batch.touched],
                )
                .await
                .map_err(failed)?;
            }
            // Events and their deliveries in two statements whatever their number (a
            // first pass commits pages of hundreds): an event already in the log is
            // skipped with its deliveries. Rows are inserted in the batch's order, so
            // the log's positions follow it.
            let events = &batch.events;
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
            let rows: Vec<Option<&str>> = events.iter().map(|e| e.row.as_deref()).collect();
            let detected: Vec<i64> = events.iter().map(|e| e.detected_ms).collect();
            let key_seqs: Vec<i64> = events.iter().map(|e| e.key_seq).collect();
            let inserted: std::collections::HashSet<String> = if events.is_empty() {
                Default::default()
            } else {
                tx.query(
                    "INSERT INTO events (id, feed, kind, key, row, detected_ms, key_seq)
                     SELECT i, $1, k, ky, r, d, s
                     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::bigint[], $7::bigint[])
                         WITH ORDINALITY AS u (i, k, ky, r, d, s, n)
                     ORDER BY n
                     ON CONFLICT (id) DO NOTHING RETURNING id",
                    &[
                        &batch.feed,
                        &ids,
                        &kinds,
                        &keys,
                        &rows,
                        &detected,
                        &key_seqs,
                    ],
                )
                .await
                .map_err(failed)?
                .iter()
                .map(|r| r.get(0))
                .collect()
            };
            let new: Vec<usize> = (0..events.len())
                .filter(|&i| inserted.contains(&events[i].id))
                .collect();
            let to: Vec<(&crate::state::NewEvent, &crate::state::NewDelivery)> = new
                .iter()
                .flat_map(|&i| events[i].deliveries.iter().map(move |d| (&events[i], d)))
                .collect();
            let mut deliveries = 0;
            if !to.is_empty() {
                let event_ids: Vec<&str> = to.iter().map(|(e, _)| e.id.as_str()).collect();
                let names: Vec<&str> = to.iter().map(|(_, d)| d.subscription.as_str()).collect();
                let bodies: Vec<&[u8]> = to.iter().map(|(_, d)| d.body.as_slice()).collect();
                let due: Vec<i64> = to.iter().map(|(_, d)| d.next_ms).collect();
                let keys: Vec<&str> = to.iter().map(|(e, _)| e.key.as_str()).collect();
                let key_seqs: Vec<i64> = to.iter().map(|(e, _)| e.key_seq).collect();
                deliveries = tx
                    .execute(
                        "INSERT INTO deliveries (event_id, subscription, body, status, next_ms,
                             created_ms, feed, key, key_seq)
                         SELECT e, s, b, 'pending', n, $1, $2, k, q
                         FROM unnest($3::text[], $4::text[], $5::bytea[], $6::bigint[],
                                     $7::text[], $8::bigint[])
                             WITH ORDINALITY AS u (e, s, b, n, k, q, o)
                         ORDER BY o
                         ON CONFLICT (event_id, subscription) DO NOTHING",
                        &[
                            &now,
                            &batch.feed,
                            &event_ids,
                            &names,
                            &bodies,
                            &due,
                            &keys,
                            &key_seqs,
                        ],
                    )
                    .await
                    .map_err(failed)? as usize;
            }
            let events = new;
            if let Some(position) = &batch.position {
                tx.execute(
                    "INSERT INTO feed_cursors (feed, position, updated_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (feed) DO UPDATE SET position = $2, updated_ms = $3",
                    &[&batch.feed, position, &now],
                )
                .await
                .map_err(failed)?;
            }
            tx.commit().await.map_err(failed)?;
            Ok(Some((events, deliveries)))
        })?;
        committed.ok_or_else(|| StateError::LeaseLost {
            feed: batch.feed.clone(),
        })
    }

    fn has_event(&self, feed: &str, seq: i64) -> Result<bool, StateError> {
        self.run(|client| async move {
            Ok(client
                .query_opt(
                    "SELECT 1 FROM events WHERE seq = $1 AND feed = $2",
                    &[&seq, &feed],
                )
                .await
                .map_err(failed)?
                .is_some())
        })
    }

    fn events_after(
        &self,
        feed: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StateError> {
        self.run(|client| async move {
            let rows = client
                .query(
                    "SELECT seq, id, feed, kind, key, row, detected_ms, key_seq FROM events
                     WHERE feed = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&feed, &after, &(limit as i64)],
                )
                .await
                .map_err(failed)?;
            Ok(rows
                .iter()
                .map(|r| StoredEvent {
                    seq: r.get(0),
                    id: r.get(1),
                    feed: r.get(2),
                    kind: r.get(3),
                    key: r.get(4),
                    row: r.get(5),
                    detected_ms: r.get(6),
                    key_seq: r.get(7),
                })
                .collect())
        })
    }
}
