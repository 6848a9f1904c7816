//! Subscriptions, deliveries and attempts in PostgreSQL. Replicas claim due deliveries with
//! `FOR UPDATE SKIP LOCKED`, so two never take the same one; a claim lasts its lease, so the
//! deliveries of a replica killed mid-attempt are taken by another once it runs out.

use std::collections::HashMap;

use super::{failed, PgStore};
use crate::state::{
    AttemptRecord, AttemptResult, DeliveryCounts, DeliveryFilter, DeliveryRecord, DeliveryStatus,
    DeliveryStore, DueClaim, StateError, SubscriptionRecord,
};

const DELIVERY_COLUMNS: &str =
    "id, event_id, subscription, body, status, attempts, next_ms, created_ms, last_error";

fn delivery_row(r: &tokio_postgres::Row) -> DeliveryRecord {
    DeliveryRecord {
        id: r.get(0),
        event_id: r.get(1),
        subscription: r.get(2),
        body: r.get(3),
        status: DeliveryStatus::parse(r.get(4)),
        attempts: r.get(5),
        next_ms: r.get(6),
        created_ms: r.get(7),
        last_error: r.get(8),
    }
}

impl DeliveryStore for PgStore {
    fn put_subscription(&self, subscription: &SubscriptionRecord) -> Result<(), StateError> {
        let spec =
            serde_json::to_string(subscription).map_err(|e| StateError::Failed(e.to_string()))?;
        self.run(|client| async move {
            client
                .execute(
                    "INSERT INTO subscriptions (name, spec) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET spec = $2",
                    &[&subscription.name, &spec],
                )
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn add_subscription(&self, subscription: &SubscriptionRecord) -> Result<bool, StateError> {
        let spec =
            serde_json::to_string(subscription).map_err(|e| StateError::Failed(e.to_string()))?;
        self.run(|client| async move {
            client
                .execute(
                    "INSERT INTO subscriptions (name, spec) VALUES ($1, $2)
                     ON CONFLICT (name) DO NOTHING",
                    &[&subscription.name, &spec],
                )
                .await
                .map(|n| n == 1)
                .map_err(failed)
        })
    }

    fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StateError> {
        let specs: Vec<String> = self.run(|client| async move {
            let rows = client
                .query("SELECT spec FROM subscriptions ORDER BY name", &[])
                .await
                .map_err(failed)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        specs
            .iter()
            .map(|s| serde_json::from_str(s).map_err(|e| StateError::Failed(e.to_string())))
            .collect()
    }

    fn remove_subscription(&self, name: &str) -> Result<bool, StateError> {
        self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            tx.execute(
                "DELETE FROM attempts WHERE delivery IN
                 (SELECT id FROM deliveries WHERE subscription = $1)",
                &[&name],
            )
            .await
            .map_err(failed)?;
            tx.execute("DELETE FROM deliveries WHERE subscription = $1", &[&name])
                .await
                .map_err(failed)?;
            let removed = tx
                .execute("DELETE FROM subscriptions WHERE name = $1", &[&name])
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(removed > 0)
        })
    }

    fn claim_due(&self, claim: &DueClaim<'_>) -> Result<Vec<DeliveryRecord>, StateError> {
        if claim.subscriptions.is_empty() || claim.limit == 0 {
            return Ok(Vec::new());
        }
        let claim = *claim;
        self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            // A claim lost in a crash of the state server only lets another replica send
            // the delivery too (a redelivery with the same webhook-id): it need not wait
            // for the disk.
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .map_err(failed)?;
            // Only claimed rows are counted (`deliveries_claimed`): the claims in flight,
            // not the whole backlog.
            // Claims other replicas hold count against each subscription's limit. Two
            // replicas claiming at once both see the same count, so fleet-wide the limit
            // holds approximately: at most one batch over per racing replica.
            let busy: HashMap<String, i64> = tx
                .query(
                    "SELECT subscription, COUNT(*) FROM deliveries
                     WHERE claim_until > 0 AND claim_until > $1 AND status = 'pending'
                     GROUP BY subscription",
                    &[&claim.now_ms],
                )
                .await
                .map_err(failed)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            // A subscription at its limit is left out of the query, so its backlog does
            // not crowd the others out of the rows read.
            let open: Vec<&String> = claim
                .subscriptions
                .iter()
                .filter(|s| busy.get(*s).copied().unwrap_or(0) < claim.per_subscription as i64)
                .collect();
            if open.is_empty() {
                return Ok(Vec::new());
            }
            // Deliveries of one key are created in the order of its changes, so an
            // earlier delivery id is an earlier change.
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d
                 WHERE d.status = 'pending' AND d.next_ms <= $1 AND d.claim_until <= $1
                   AND d.subscription = ANY($2) AND NOT (d.id = ANY($3))
                   AND (NOT (d.subscription = ANY($4)) OR d.key IS NULL OR NOT EXISTS (
                       SELECT 1 FROM deliveries p
                       WHERE p.subscription = d.subscription AND p.feed = d.feed
                         AND p.key = d.key AND p.status = 'pending' AND p.id < d.id))
                 ORDER BY d.next_ms, d.id LIMIT $5
                 FOR UPDATE OF d SKIP LOCKED"
            );
            let rows = tx
                .query(
                    &sql,
                    &[
                        &claim.now_ms,
                        &open,
                        &claim.skip,
                        &claim.ordered,
                        &((claim.limit * 4) as i64),
                    ],
                )
                .await
                .map_err(failed)?;
            let mut taken: HashMap<String, usize> = busy
                .into_iter()
                .map(|(s, n)| (s, n.max(0) as usize))
                .collect();
            let mut due = Vec::new();
            for row in &rows {
                let delivery = delivery_row(row);
                let busy = taken.entry(delivery.subscription.clone()).or_default();
                if due.len() >= claim.limit || *busy >= claim.per_subscription {
                    continue;
                }
                *busy += 1;
                due.push(delivery);
            }
            let ids: Vec<i64> = due.iter().map(|d| d.id).collect();
            tx.execute(
                "UPDATE deliveries SET claimed_by = $2, claim_until = $3 WHERE id = ANY($1)",
                &[&ids, &claim.holder, &(claim.now_ms + claim.lease_ms)],
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(due)
        })
    }

    fn record_attempt(
        &self,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StateError> {
        let (status, next_ms, counted) = result.leaves(attempt.at_ms);
        let code = attempt.status.map(i32::from);
        // One statement (one round trip, its own transaction): the attempt and what it
        // leaves, which frees the claim.
        self.run(|client| async move {
            client
                .execute(
                    "WITH logged AS (
                         INSERT INTO attempts (delivery, at_ms, status, error, duration_ms)
                         VALUES ($1, $6, $7, $4, $8))
                     UPDATE deliveries SET status = $2, attempts = attempts + $5,
                         next_ms = $3, last_error = $4, claimed_by = NULL, claim_until = 0
                     WHERE id = $1",
                    &[
                        &attempt.delivery,
                        &status.as_str(),
                        &next_ms,
                        &attempt.error,
                        &counted,
                        &attempt.at_ms,
                        &code,
                        &attempt.duration_ms,
                    ],
                )
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StateError> {
        let status = filter.status.map(DeliveryStatus::as_str);
        self.run(|client| async move {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE ($1::text IS NULL OR subscription = $1)
                   AND ($2::text IS NULL OR status = $2)
                   AND ($3::bigint IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            );
            let rows = client
                .query(
                    &sql,
                    &[
                        &filter.subscription,
                        &status,
                        &filter.before_id,
                        &(filter.limit as i64),
                    ],
                )
                .await
                .map_err(failed)?;
            Ok(rows.iter().map(delivery_row).collect())
        })
    }

    fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, StateError> {
        self.run(|client| async move {
            Ok(client
                .query_opt(
                    &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(failed)?
                .as_ref()
                .map(delivery_row))
        })
    }

    fn attempts(&self, delivery: i64) -> Result<Vec<AttemptRecord>, StateError> {
        self.run(|client| async move {
            let rows = client
                .query(
                    "SELECT delivery, at_ms, status, error, duration_ms FROM attempts
                     WHERE delivery = $1 ORDER BY at_ms, n",
                    &[&delivery],
                )
                .await
                .map_err(failed)?;
            Ok(rows
                .iter()
                .map(|r| AttemptRecord {
                    delivery: r.get(0),
                    at_ms: r.get(1),
                    status: r
                        .get::<_, Option<i32>>(2)
                        .and_then(|s| u16::try_from(s).ok()),
                    error: r.get(3),
                    duration_ms: r.get(4),
                })
                .collect())
        })
    }

    fn resend(&self, id: i64, now_ms: i64) -> Result<bool, StateError> {
        self.run(|client| async move {
            client
                .execute(
                    "UPDATE deliveries SET status = 'pending', attempts = 0, next_ms = $2
                     WHERE id = $1",
                    &[&id, &now_ms],
                )
                .await
                .map(|n| n > 0)
                .map_err(failed)
        })
    }

    fn recover(&self, subscription: &str, since_ms: i64, now_ms: i64) -> Result<usize, StateError> {
        self.run(|client| async move {
            client
                .execute(
                    "UPDATE deliveries SET status = 'pending', attempts = 0, next_ms = $3
                     WHERE subscription = $1 AND status = 'dead' AND created_ms >= $2",
                    &[&subscription, &since_ms, &now_ms],
                )
                .await
                .map(|n| n as usize)
                .map_err(failed)
        })
    }

    fn dead_letters(&self) -> Result<i64, StateError> {
        self.run(|client| async move {
            client
                .query_one("SELECT count(*) FROM deliveries WHERE status = 'dead'", &[])
                .await
                .map(|r| r.get(0))
                .map_err(failed)
        })
    }

    fn delivery_counts(&self) -> Result<Vec<DeliveryCounts>, StateError> {
        self.run(|client| async move {
            let rows = client
                .query(crate::state::deliveries::DELIVERY_COUNTS, &[])
                .await
                .map_err(failed)?;
            Ok(rows
                .iter()
                .map(|r| DeliveryCounts {
                    subscription: r.get(0),
                    delivered: r.get(1),
                    pending: r.get(2),
                    retrying: r.get(3),
                    dead: r.get(4),
                })
                .collect())
        })
    }
}
