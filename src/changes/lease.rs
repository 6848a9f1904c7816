//! One poller per feed across a fleet: a feed is polled only by the replica holding its lease
//! in the shared state store. Leases spread: a replica holding more than its share
//! (ceil(feeds / live replicas)) gives one up and lets it rest a lease's length, so another
//! replica takes it; a free or expired lease is taken by whoever asks first (a feed with no
//! poller is worse than an unbalanced fleet).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::{off_thread, Lease, StateError, StateStore};
use crate::telemetry::change_metrics::{ChangeMetrics, FeedLabels};

/// This replica's part in the fleet, shared by its pollers.
#[derive(Debug)]
pub struct Fleet {
    /// This replica's name in leases.
    pub replica: String,
    /// How long a lease lasts unrenewed.
    pub ttl: Duration,
    /// Feeds this replica polls when it leads them.
    feeds: usize,
    /// Replicas seen live at the last heartbeat.
    live: AtomicUsize,
    /// The leases this replica holds, by feed: how many it holds, and what `stop` gives up.
    leases: Mutex<HashMap<String, Lease>>,
    /// The process is stopping: no lease is taken or renewed any more.
    stopping: AtomicBool,
}

impl Fleet {
    /// A replica named `replica` polling `feeds` feeds with leases of `ttl`.
    pub fn new(replica: String, ttl: Duration, feeds: usize) -> Self {
        Self {
            replica,
            ttl,
            feeds,
            live: AtomicUsize::new(1),
            leases: Mutex::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Gives every lease this replica holds up, so the others take its feeds at once rather
    /// than a lease's length after it stopped (a rolling upgrade); no lease is taken after.
    pub async fn stop(&self, store: &Arc<dyn StateStore>) {
        self.stopping.store(true, Ordering::Relaxed);
        let held: Vec<(String, Lease)> = self
            .leases
            .lock()
            .map(|mut leases| leases.drain().collect())
            .unwrap_or_default();
        for (feed, lease) in held {
            let name = feed.clone();
            let released = off_thread(store, move |s| {
                s.release_lease(&name, &lease.holder, lease.token)
            })
            .await;
            match released {
                Ok(()) => tracing::info!(feed, "feed lease given up: this replica is stopping"),
                Err(error) => tracing::warn!(feed, %error, "cannot give the feed lease up"),
            }
        }
    }

    fn remember(&self, feed: &str, lease: Option<Lease>) {
        if let Ok(mut leases) = self.leases.lock() {
            match lease {
                Some(lease) => leases.insert(feed.to_string(), lease),
                None => leases.remove(feed),
            };
        }
    }

    /// Whether `feed`'s lease is one to give up, this replica holding more than its share;
    /// forgets it if so. Decided under the lock, so of several pollers seeing too many, only
    /// as many give up as there are too many.
    fn give_up(&self, feed: &str) -> bool {
        let share = self.share();
        self.leases
            .lock()
            .is_ok_and(|mut leases| leases.len() > share && leases.remove(feed).is_some())
    }

    /// How many leases this replica should hold at most.
    fn share(&self) -> usize {
        self.feeds
            .div_ceil(self.live.load(Ordering::Relaxed).max(1))
            .max(1)
    }

    /// How often pollers renew their leases (and followers look for a free one).
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Records this replica as live every third of a lease, and learns how many are, until
    /// the process ends.
    pub async fn heartbeat(self: Arc<Self>, store: Arc<dyn StateStore>) {
        let live_ms = self.ttl.as_millis() as i64;
        loop {
            let replica = self.replica.clone();
            let now = crate::state::unix_now_ms();
            match off_thread(&store, move |s| s.heartbeat(&replica, now, live_ms)).await {
                Ok(live) => self.live.store(live, Ordering::Relaxed),
                Err(error) => tracing::warn!(%error, "cannot record this replica's heartbeat"),
            }
            tokio::time::sleep(self.renew_every()).await;
        }
    }
}

/// What a poller knows of its feed's lease.
#[derive(Debug, Default)]
pub struct FeedLease {
    held: Mutex<Option<Lease>>,
    /// When this replica took the lease: one just taken over from a replica that died is
    /// kept while the dead one still counts as live (its last heartbeat is a lease old).
    held_since: Mutex<Option<Instant>>,
    /// A lease given up to balance the fleet is not taken back before this.
    resting_until: Mutex<Option<Instant>>,
}

impl FeedLease {
    /// The lease as held now, for a commit to carry.
    pub fn current(&self) -> Option<Lease> {
        self.held.lock().ok().and_then(|held| held.clone())
    }

    /// Takes or renews the feed's lease; whether this replica leads the feed now.
    pub async fn lead(
        &self,
        fleet: &Arc<Fleet>,
        store: &Arc<dyn StateStore>,
        feed: &str,
        metrics: &ChangeMetrics,
    ) -> Result<bool, StateError> {
        if fleet.stopping.load(Ordering::Relaxed) {
            self.lost(fleet, feed, metrics);
            return Ok(false);
        }
        let held = self.current();
        if let Some(lease) = &held {
            let settled = self
                .held_since
                .lock()
                .ok()
                .and_then(|since| *since)
                .is_some_and(|since| since.elapsed() >= fleet.ttl);
            if settled && fleet.give_up(feed) {
                let (name, lease) = (feed.to_string(), lease.clone());
                let result = off_thread(store, move |s| {
                    s.release_lease(&name, &lease.holder, lease.token)
                })
                .await;
                self.lost(fleet, feed, metrics);
                if let Ok(mut resting) = self.resting_until.lock() {
                    *resting = Some(Instant::now() + fleet.ttl);
                }
                tracing::info!(feed, "feed lease given up to balance the fleet");
                return result.map(|()| false);
            }
        } else if self
            .resting_until
            .lock()
            .ok()
            .and_then(|r| *r)
            .is_some_and(|until| Instant::now() < until)
        {
            return Ok(false);
        }
        let (name, replica) = (feed.to_string(), fleet.replica.clone());
        let (now, ttl) = (crate::state::unix_now_ms(), fleet.ttl.as_millis() as i64);
        let token = off_thread(store, move |s| s.acquire_lease(&name, &replica, now, ttl)).await;
        let token = match token {
            Ok(token) => token,
            Err(error) => {
                // Without an answer the lease may be running out: stop polling until renewed.
                if held.is_some() {
                    self.lost(fleet, feed, metrics);
                }
                return Err(error);
            }
        };
        match (held, token) {
            (Some(lease), Some(token)) if lease.token == token => Ok(true),
            (Some(_), Some(_)) => {
                // Taken back under a new token: another replica led in between, so what this
                // poll read under the old lease is stale. Step down; the next poll starts
                // from the stored position.
                self.lost(fleet, feed, metrics);
                Ok(false)
            }
            (None, Some(token)) => {
                if let Ok(mut since) = self.held_since.lock() {
                    *since = Some(Instant::now());
                }
                tracing::info!(feed, token, "this replica now polls the feed");
                let lease = Lease {
                    holder: fleet.replica.clone(),
                    token,
                };
                fleet.remember(feed, Some(lease.clone()));
                if let Ok(mut slot) = self.held.lock() {
                    *slot = Some(lease);
                }
                metrics
                    .leader
                    .get_or_create(&FeedLabels {
                        feed: feed.to_string(),
                    })
                    .set(1);
                Ok(true)
            }
            (Some(_), None) => {
                self.lost(fleet, feed, metrics);
                Ok(false)
            }
            (None, None) => Ok(false),
        }
    }

    /// Forgets the lease (it passed to another replica, could not be renewed, or was given
    /// up): stop polling.
    pub fn lost(&self, fleet: &Fleet, feed: &str, metrics: &ChangeMetrics) {
        let had = self.held.lock().ok().and_then(|mut held| held.take());
        fleet.remember(feed, None);
        if had.is_some() {
            tracing::info!(feed, "this replica no longer polls the feed");
        }
        metrics
            .leader
            .get_or_create(&FeedLabels {
                feed: feed.to_string(),
            })
            .set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SqliteStore;

    /// A poll that began under one lease must not commit under another: between the two,
    /// another replica may have led the feed and committed, so what this poll read (the
    /// cursor, the recorded rows) is stale. `lead` answers `true` for a new token as for a
    /// renewal, so the poll's next `commit` carries the new token and passes the fence.
    #[tokio::test]
    async fn a_lease_taken_back_mid_poll_is_not_the_lease_the_poll_began_under() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open(&dir.path().join("s.sqlite3")).unwrap());
        let ttl = Duration::from_millis(300);
        let fleet = Arc::new(Fleet::new("a".into(), ttl, 1));
        let (lease, metrics) = (FeedLease::default(), ChangeMetrics::default());
        assert!(lease.lead(&fleet, &store, "f", &metrics).await.unwrap());
        let began_under = lease.current().unwrap();

        // `a` stalls (a slow page query) past its lease; `b` takes the feed over, commits a
        // page, and dies; its lease runs out too.
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        let now = crate::state::unix_now_ms();
        assert_eq!(
            store.acquire_lease("f", "b", now, 300).unwrap(),
            Some(began_under.token + 1)
        );
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;

        // `a`'s poll goes on: `Poller::commit` calls `lead` before committing its page.
        let leads = lease.lead(&fleet, &store, "f", &metrics).await.unwrap();
        let now_under = lease.current();
        assert!(
            !leads || now_under.as_ref() == Some(&began_under),
            "the stalled poll goes on leading under a new lease {now_under:?} (it began \
             under {began_under:?}), so its stale page commits"
        );
    }
}
