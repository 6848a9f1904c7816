//! Webhook subscriptions, deliveries and their attempts in the state store.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::sqlite::failed;
use super::{SqliteStore, StateError};

/// A signing secret and, once rotated out, when it stops signing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretRecord {
    /// `whsec_…`.
    pub secret: String,
    /// Milliseconds since the epoch; `None`: current.
    pub expires_ms: Option<i64>,
}

/// A webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionRecord {
    /// Unique name.
    pub name: String,
    /// Target URL.
    pub url: String,
    /// Version whose shapes the events carry.
    pub version: String,
    /// Event type patterns (`jobs.updated`, `jobs.*`, `*`).
    pub events: Vec<String>,
    /// Scopes the subscription holds (field masks and row policies apply as to a token).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims row policies read.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Signing secrets, current one first.
    pub secrets: Vec<SecretRecord>,
    /// Delivers when true.
    pub enabled: bool,
    /// Why Portico disabled it (the endpoint answered 410 Gone); `None` when enabled or
    /// disabled by an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// A key's later deliveries wait while an earlier one of the same key is pending.
    #[serde(default)]
    pub ordered: bool,
    /// `config` or `api`.
    pub origin: String,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// The retry schedule is exhausted.
    Dead,
}

impl DeliveryStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Row id.
    pub id: i64,
    /// The event id (`webhook-id`).
    pub event_id: String,
    /// Subscription name.
    pub subscription: String,
    /// Body sent by every attempt.
    pub body: Vec<u8>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (ms since the epoch).
    pub next_ms: i64,
    /// When it was created.
    pub created_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptRecord {
    /// Delivery id.
    pub delivery: i64,
    /// When it started (ms since the epoch).
    pub at_ms: i64,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// What an attempt leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered.
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt(i64),
    /// Give up: a dead letter.
    Dead,
    /// Keep it pending, due at once when its subscription is enabled again; the attempt is
    /// logged but does not count against the retry schedule.
    Held,
}

impl AttemptResult {
    /// What an attempt started at `at_ms` leaves: the delivery's status, when it is next
    /// due (a finished one: when its last attempt started), and whether the attempt counts
    /// against the retry schedule.
    pub(super) fn leaves(self, at_ms: i64) -> (DeliveryStatus, i64, i64) {
        match self {
            AttemptResult::Delivered => (DeliveryStatus::Delivered, at_ms, 1),
            AttemptResult::RetryAt(at) => (DeliveryStatus::Pending, at, 1),
            AttemptResult::Dead => (DeliveryStatus::Dead, at_ms, 1),
            AttemptResult::Held => (DeliveryStatus::Pending, at_ms, 0),
        }
    }
}

/// How many deliveries of one subscription stand where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Subscription name.
    pub subscription: String,
    /// Delivered (until pruned by retention).
    pub delivered: i64,
    /// Waiting for an attempt.
    pub pending: i64,
    /// Of the pending ones, those that failed at least once and wait for a retry.
    pub retrying: i64,
    /// Dead letters.
    pub dead: i64,
}

/// The one statement both stores count deliveries with (plain SQL both engines run).
pub(super) const DELIVERY_COUNTS: &str = "SELECT subscription,
        SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END),
        SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END),
        SUM(CASE WHEN status = 'pending' AND attempts > 0 THEN 1 ELSE 0 END),
        SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END)
     FROM deliveries GROUP BY subscription ORDER BY subscription";

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this subscription's.
    pub subscription: Option<String>,
    /// Only in this state.
    pub status: Option<DeliveryStatus>,
    /// Only with ids below this (newest first paging).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Which due deliveries a replica claims, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct DueClaim<'a> {
    /// Due by this time (ms since the epoch).
    pub now_ms: i64,
    /// At most this many.
    pub limit: usize,
    /// Of these subscriptions (the enabled ones).
    pub subscriptions: &'a [String],
    /// Those of them that deliver each key's changes in order.
    pub ordered: &'a [String],
    /// Not these ids (this replica's attempts in flight).
    pub skip: &'a [i64],
    /// The claiming replica.
    pub holder: &'a str,
    /// How long the claim reserves them.
    pub lease_ms: i64,
    /// A subscription with this many unexpired claims gets no more.
    pub per_subscription: usize,
}

/// Subscriptions and deliveries.
pub trait DeliveryStore: Send + Sync {
    /// Creates or replaces a subscription.
    fn put_subscription(&self, subscription: &SubscriptionRecord) -> Result<(), StateError>;
    /// Creates a subscription unless one of its name exists (another replica may be creating
    /// it at the same moment); false when one did.
    fn add_subscription(&self, subscription: &SubscriptionRecord) -> Result<bool, StateError>;
    /// Every subscription.
    fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StateError>;
    /// Deletes a subscription and its deliveries; false when there was none.
    fn remove_subscription(&self, name: &str) -> Result<bool, StateError>;
    /// Claims pending deliveries of `claim.subscriptions` due by `claim.now_ms`, oldest first,
    /// leaving out `claim.skip`, deliveries another claim still reserves, and subscriptions
    /// with `per_subscription` unexpired claims; what is returned is reserved for
    /// `claim.holder` until its lease ends or an attempt is recorded. A delivery of an
    /// `ordered` subscription waits while an earlier one of the same feed and key for that
    /// subscription is pending (in flight or being retried); a dead letter holds nothing.
    fn claim_due(&self, claim: &DueClaim<'_>) -> Result<Vec<DeliveryRecord>, StateError>;
    /// Records an attempt and what it leaves.
    fn record_attempt(
        &self,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StateError>;
    /// Deliveries, newest first.
    fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StateError>;
    /// One delivery.
    fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, StateError>;
    /// A delivery's attempts, oldest first.
    fn attempts(&self, delivery: i64) -> Result<Vec<AttemptRecord>, StateError>;
    /// Makes a delivery due again now with a fresh schedule; false when there is none.
    fn resend(&self, id: i64, now_ms: i64) -> Result<bool, StateError>;
    /// Makes every dead letter of a subscription created since `since_ms` due again.
    fn recover(&self, subscription: &str, since_ms: i64, now_ms: i64) -> Result<usize, StateError>;
    /// Dead letters in the store.
    fn dead_letters(&self) -> Result<i64, StateError>;
    /// Each subscription's deliveries counted by where they stand (subscriptions without
    /// deliveries are not listed).
    fn delivery_counts(&self) -> Result<Vec<DeliveryCounts>, StateError>;
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, subscription, body, status, attempts, next_ms, created_ms, last_error";

/// `DELIVERY_COLUMNS` of deliveries `d`.
const DUE_COLUMNS: &str =
    "d.id, d.event_id, d.subscription, d.body, d.status, d.attempts, d.next_ms, d.created_ms, d.last_error";

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = r.get(4)?;
    Ok(DeliveryRecord {
        id: r.get(0)?,
        event_id: r.get(1)?,
        subscription: r.get(2)?,
        body: r.get(3)?,
        status: DeliveryStatus::parse(&status),
        attempts: r.get(5)?,
        next_ms: r.get(6)?,
        created_ms: r.get(7)?,
        last_error: r.get(8)?,
    })
}

impl DeliveryStore for SqliteStore {
    fn put_subscription(&self, subscription: &SubscriptionRecord) -> Result<(), StateError> {
        let spec = serde_json::to_string(subscription).map_err(failed)?;
        self.with(|conn| {
            conn.execute(
                "INSERT INTO subscriptions (name, spec) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET spec = ?2",
                params![subscription.name, spec],
            )
            .map(|_| ())
        })
    }

    fn add_subscription(&self, subscription: &SubscriptionRecord) -> Result<bool, StateError> {
        let spec = serde_json::to_string(subscription).map_err(failed)?;
        self.with(|conn| {
            conn.execute(
                "INSERT INTO subscriptions (name, spec) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![subscription.name, spec],
            )
            .map(|n| n == 1)
        })
    }

    fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StateError> {
        let specs: Vec<String> = self.with(|conn| {
            let mut statement = conn.prepare("SELECT spec FROM subscriptions ORDER BY name")?;
            let rows = statement.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        specs
            .iter()
            .map(|s| serde_json::from_str(s).map_err(failed))
            .collect()
    }

    fn remove_subscription(&self, name: &str) -> Result<bool, StateError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM attempts WHERE delivery IN (SELECT id FROM deliveries WHERE subscription = ?1)",
                params![name],
            )?;
            tx.execute("DELETE FROM deliveries WHERE subscription = ?1", params![name])?;
            let removed = tx.execute("DELETE FROM subscriptions WHERE name = ?1", params![name])?;
            tx.commit()?;
            Ok(removed > 0)
        })
    }

    fn claim_due(&self, claim: &DueClaim<'_>) -> Result<Vec<DeliveryRecord>, StateError> {
        let (subscriptions, ordered) = (claim.subscriptions, claim.ordered);
        if subscriptions.is_empty() || claim.limit == 0 {
            return Ok(Vec::new());
        }
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let marks = |n: usize| vec!["?"; n].join(", ");
            // Deliveries of one key are created in the order of its changes, so an earlier
            // delivery id is an earlier change.
            let in_order = if ordered.is_empty() {
                String::new()
            } else {
                format!(
                    "AND (d.subscription NOT IN ({}) OR d.key IS NULL OR NOT EXISTS (
                         SELECT 1 FROM deliveries p
                         WHERE p.subscription = d.subscription AND p.feed = d.feed
                           AND p.key = d.key AND p.status = 'pending' AND p.id < d.id))",
                    marks(ordered.len())
                )
            };
            let mut busy: HashMap<String, usize> = HashMap::new();
            {
                let mut claimed = tx.prepare_cached(
                    "SELECT subscription, COUNT(*) FROM deliveries
                     WHERE claim_until > 0 AND claim_until > ?1 AND status = 'pending'
                     GROUP BY subscription",
                )?;
                let rows = claimed.query_map(params![claim.now_ms], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (subscription, n) = row?;
                    busy.insert(subscription, n as usize);
                }
            }
            // A subscription at its limit is left out of the query, so its backlog does not
            // crowd the others out of the rows read.
            let open: Vec<&String> = subscriptions
                .iter()
                .filter(|s| busy.get(*s).copied().unwrap_or(0) < claim.per_subscription)
                .collect();
            if open.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {DUE_COLUMNS} FROM deliveries d
                 WHERE d.status = 'pending' AND d.next_ms <= ? AND d.claim_until <= ?
                   AND d.subscription IN ({}) {in_order}
                 ORDER BY d.next_ms, d.id LIMIT ?",
                marks(open.len())
            );
            let mut due = Vec::new();
            {
                let mut statement = tx.prepare_cached(&sql)?;
                let mut values: Vec<rusqlite::types::Value> =
                    vec![claim.now_ms.into(), claim.now_ms.into()];
                values.extend(open.iter().map(|s| (*s).clone().into()));
                values.extend(ordered.iter().map(|s| s.clone().into()));
                values.push(((claim.limit + claim.skip.len()) as i64).into());
                let rows = statement.query_map(rusqlite::params_from_iter(values), delivery_row)?;
                for row in rows {
                    let row = row?;
                    let taken = busy.entry(row.subscription.clone()).or_default();
                    if claim.skip.contains(&row.id)
                        || due.len() >= claim.limit
                        || *taken >= claim.per_subscription
                    {
                        continue;
                    }
                    *taken += 1;
                    due.push(row);
                }
                let mut reserve = tx.prepare_cached(
                    "UPDATE deliveries SET claimed_by = ?2, claim_until = ?3 WHERE id = ?1",
                )?;
                for d in &due {
                    reserve.execute(params![d.id, claim.holder, claim.now_ms + claim.lease_ms])?;
                }
            }
            tx.commit()?;
            Ok(due)
        })
    }

    fn record_attempt(
        &self,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StateError> {
        let (status, next_ms, counted) = result.leaves(attempt.at_ms);
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO attempts (delivery, at_ms, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![attempt.delivery, attempt.at_ms, attempt.status, attempt.error, attempt.duration_ms],
            )?;
            tx.execute(
                "UPDATE deliveries SET status = ?2, attempts = attempts + ?5, next_ms = ?3, last_error = ?4,
                     claimed_by = NULL, claim_until = 0 WHERE id = ?1",
                params![attempt.delivery, status.as_str(), next_ms, attempt.error, counted],
            )?;
            tx.commit()
        })
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StateError> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE (?1 IS NULL OR subscription = ?1) AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?4"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(
                params![
                    filter.subscription,
                    filter.status.map(DeliveryStatus::as_str),
                    filter.before_id,
                    filter.limit as i64
                ],
                delivery_row,
            )?;
            rows.collect()
        })
    }

    fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, StateError> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"),
                params![id],
                delivery_row,
            )
            .optional()
        })
    }

    fn attempts(&self, delivery: i64) -> Result<Vec<AttemptRecord>, StateError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT delivery, at_ms, status, error, duration_ms FROM attempts
                 WHERE delivery = ?1 ORDER BY at_ms, rowid",
            )?;
            let rows = statement.query_map(params![delivery], |r| {
                Ok(AttemptRecord {
                    delivery: r.get(0)?,
                    at_ms: r.get(1)?,
                    status: r.get(2)?,
                    error: r.get(3)?,
                    duration_ms: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    fn resend(&self, id: i64, now_ms: i64) -> Result<bool, StateError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_ms = ?2 WHERE id = ?1",
                params![id, now_ms],
            )
            .map(|n| n > 0)
        })
    }

    fn recover(&self, subscription: &str, since_ms: i64, now_ms: i64) -> Result<usize, StateError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_ms = ?3
                 WHERE subscription = ?1 AND status = 'dead' AND created_ms >= ?2",
                params![subscription, since_ms, now_ms],
            )
        })
    }

    fn dead_letters(&self) -> Result<i64, StateError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT count(*) FROM deliveries WHERE status = 'dead'",
                [],
                |r| r.get(0),
            )
        })
    }

    fn delivery_counts(&self) -> Result<Vec<DeliveryCounts>, StateError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(DELIVERY_COUNTS)?;
            let rows = statement.query_map([], |r| {
                Ok(DeliveryCounts {
                    subscription: r.get(0)?,
                    delivered: r.get(1)?,
                    pending: r.get(2)?,
                    retrying: r.get(3)?,
                    dead: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the contract tests in `tests/api/state_store.rs` cannot show: a subscription a
    /// SQLite store wrote before `ordered` and `disabled_reason` existed.
    #[test]
    fn a_subscription_stored_before_ordered_existed_reads_as_unordered_without_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap();
        let record = SubscriptionRecord {
            name: "gone".into(),
            url: "https://example.com/hook".into(),
            version: "v1".into(),
            events: vec!["*".into()],
            scopes: vec![],
            claims: Default::default(),
            secrets: vec![SecretRecord {
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                expires_ms: None,
            }],
            enabled: false,
            disabled_reason: Some("the endpoint answered 410 Gone".into()),
            ordered: true,
            origin: "api".into(),
            created_ms: 0,
        };
        store.put_subscription(&record).unwrap();
        assert_eq!(store.subscriptions().unwrap(), [record]);
        store
            .with(|conn| {
                conn.execute(
                    "UPDATE subscriptions SET spec = json_remove(spec, '$.ordered', '$.disabled_reason')",
                    [],
                )
            })
            .unwrap();
        let old = &store.subscriptions().unwrap()[0];
        assert_eq!((old.ordered, old.disabled_reason.as_deref()), (false, None));
    }
}
