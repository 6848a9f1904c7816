//! Pruning in PostgreSQL: the same short transactions as the SQLite store's.

use std::collections::HashMap;

use super::{failed, PgStore};
use crate::state::{DeliveryStatus, RetentionStore, StateError};

impl RetentionStore for PgStore {
    fn prune_events(&self, before_ms: i64, limit: usize) -> Result<usize, StateError> {
        self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            let rows = tx
                .query(
                    "DELETE FROM events WHERE seq IN (
                         SELECT seq FROM events WHERE detected_ms < $1
                         ORDER BY detected_ms, seq LIMIT $2)
                     RETURNING seq, feed",
                    &[&before_ms, &(limit as i64)],
                )
                .await
                .map_err(failed)?;
            let mut newest: HashMap<String, i64> = HashMap::new();
            for row in &rows {
                let through = newest.entry(row.get(1)).or_default();
                *through = (*through).max(row.get(0));
            }
            for (feed, seq) in &newest {
                tx.execute(
                    "INSERT INTO pruned_events (feed, through_seq) VALUES ($1, $2)
                     ON CONFLICT (feed) DO UPDATE
                     SET through_seq = GREATEST(pruned_events.through_seq, $2)",
                    &[feed, seq],
                )
                .await
                .map_err(failed)?;
            }
            tx.commit().await.map_err(failed)?;
            Ok(rows.len())
        })
    }

    fn prune_deliveries(
        &self,
        status: DeliveryStatus,
        before_ms: i64,
        limit: usize,
    ) -> Result<(usize, usize), StateError> {
        if status == DeliveryStatus::Pending {
            return Ok((0, 0));
        }
        let status = status.as_str();
        self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            // A finished delivery's `next_ms` is when its last attempt started.
            let ids: Vec<i64> = tx
                .query(
                    "SELECT id FROM deliveries WHERE status = $1 AND next_ms < $2
                     ORDER BY next_ms LIMIT $3",
                    &[&status, &before_ms, &(limit as i64)],
                )
                .await
                .map_err(failed)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let attempts = tx
                .execute("DELETE FROM attempts WHERE delivery = ANY($1)", &[&ids])
                .await
                .map_err(failed)?;
            let deliveries = tx
                .execute("DELETE FROM deliveries WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok((deliveries as usize, attempts as usize))
        })
    }

    fn prune_tombstones(&self, limit: usize) -> Result<usize, StateError> {
        self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            let gone = tx
                .query(
                    "SELECT feed, key, seq FROM feed_rows AS t WHERE deleted
                     AND NOT EXISTS (SELECT 1 FROM events AS e
                                     WHERE e.feed = t.feed AND e.key = t.key)
                     LIMIT $1",
                    &[&(limit as i64)],
                )
                .await
                .map_err(failed)?;
            for row in &gone {
                let (feed, key, seq): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
                tx.execute(
                    "INSERT INTO feed_floors (feed, seq) VALUES ($1, $2)
                     ON CONFLICT (feed) DO UPDATE SET seq = GREATEST(feed_floors.seq, $2)",
                    &[&feed, &seq],
                )
                .await
                .map_err(failed)?;
                tx.execute(
                    "DELETE FROM feed_rows WHERE feed = $1 AND key = $2 AND deleted",
                    &[&feed, &key],
                )
                .await
                .map_err(failed)?;
            }
            tx.commit().await.map_err(failed)?;
            Ok(gone.len())
        })
    }

    fn pruned_through(&self, feed: &str) -> Result<i64, StateError> {
        self.run(|client| async move {
            Ok(client
                .query_opt(
                    "SELECT through_seq FROM pruned_events WHERE feed = $1",
                    &[&feed],
                )
                .await
                .map_err(failed)?
                .map_or(0, |r| r.get(0)))
        })
    }

    fn forget_row_values(
        &self,
        feed: &str,
        after: &str,
        limit: usize,
    ) -> Result<(usize, Option<String>), StateError> {
        self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            let last: Option<String> = tx
                .query_one(
                    "SELECT max(key) FROM (SELECT key FROM feed_rows WHERE feed = $1 AND key > $2
                     ORDER BY key LIMIT $3) AS page",
                    &[&feed, &after, &(limit as i64)],
                )
                .await
                .map_err(failed)?
                .get(0);
            let Some(last) = last else {
                return Ok((0, None));
            };
            let cleared = tx
                .execute(
                    "UPDATE feed_rows SET row = NULL
                     WHERE feed = $1 AND key > $2 AND key <= $3 AND row IS NOT NULL",
                    &[&feed, &after, &last],
                )
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok((cleared as usize, Some(last)))
        })
    }
}
