//! Leases, heartbeats and notices in PostgreSQL.

use super::{failed, PgStore};
use crate::state::{FleetStore, Notice, StateError};

impl FleetStore for PgStore {
    fn heartbeat(&self, replica: &str, now_ms: i64, live_ms: i64) -> Result<usize, StateError> {
        self.run(|client| async move {
            client
                .execute(
                    "INSERT INTO replicas (name, seen_ms) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET seen_ms = $2",
                    &[&replica, &now_ms],
                )
                .await
                .map_err(failed)?;
            client
                .execute(
                    "DELETE FROM replicas WHERE seen_ms < $1",
                    &[&(now_ms - 10 * live_ms)],
                )
                .await
                .map_err(failed)?;
            let live: i64 = client
                .query_one(
                    "SELECT COUNT(*) FROM replicas WHERE seen_ms >= $1",
                    &[&(now_ms - live_ms)],
                )
                .await
                .map_err(failed)?
                .get(0);
            Ok(live.max(1) as usize)
        })
    }

    fn acquire_lease(
        &self,
        feed: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StateError> {
        self.run(|client| async move {
                // One statement: a new lease, a renewal of one's own (same token), or a
                // takeover of an expired one (the token raised, fencing the old holder).
                let row = client
                    .query_opt(
                        "INSERT INTO feed_leases (feed, holder, token, expires_ms)
                         VALUES ($1, $2, 1, $3::bigint + $4::bigint)
                         ON CONFLICT (feed) DO UPDATE SET
                             token = CASE WHEN feed_leases.holder = EXCLUDED.holder
                                          THEN feed_leases.token ELSE feed_leases.token + 1 END,
                             holder = EXCLUDED.holder,
                             expires_ms = EXCLUDED.expires_ms
                         WHERE feed_leases.holder = EXCLUDED.holder OR feed_leases.expires_ms <= $3::bigint
                         RETURNING token",
                        &[&feed, &holder, &now_ms, &ttl_ms],
                    )
                    .await
                    .map_err(failed)?;
                Ok(row.map(|r| r.get(0)))
            })
    }

    fn release_lease(&self, feed: &str, holder: &str, token: i64) -> Result<(), StateError> {
        self.run(|client| async move {
            client
                .execute(
                    "UPDATE feed_leases SET expires_ms = 0
                     WHERE feed = $1 AND holder = $2 AND token = $3",
                    &[&feed, &holder, &token],
                )
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn publish(&self, notice: &Notice) -> Result<(), StateError> {
        let mut payload = super::notify::payload(&self.origin, notice)?;
        if payload.len() > super::notify::MAX_PAYLOAD {
            // PostgreSQL refuses a NOTIFY payload of 8000 bytes or more: too many resources to
            // name, so every cached answer goes instead.
            payload = super::notify::payload(&self.origin, &Notice::PurgeAll)?;
        }
        let sent = self.run(|client| async move {
            client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&super::notify::CHANNEL, &payload],
                )
                .await
                .map(|_| ())
                .map_err(failed)
        });
        self.metrics
            .count_notice(if sent.is_ok() { "sent" } else { "failed" });
        sent
    }

    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        Some(self.notices.subscribe())
    }
}
