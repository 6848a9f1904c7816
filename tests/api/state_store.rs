//! The state store's contract, written once against `&dyn StateStore` (its public API only)
//! and run on every store, the embedded SQLite file and a PostgreSQL database of its own:
//! idempotency keys, change feeds, deliveries, retention, and what replicas share (feed
//! leases, heartbeats, delivery claims). Two handles opened on one store are two replicas.
//! What concerns one store itself (SQLite's file migrations and probe, PostgreSQL's schema
//! version and notices) is tested for that store only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portico::state::retention::{prune, Pruned, Retention};
use portico::state::{
    AttemptRecord, AttemptResult, Batch, ChangeStore, Claim, DeliveryCounts, DeliveryFilter,
    DeliveryRecord, DeliveryStatus, DueClaim, KnownRow, Lease, NewDelivery, NewEvent, Notice,
    PgStore, RowRecord, SecretRecord, SqliteStore, StateError, StateStore, StoredResponse,
    SubscriptionRecord,
};
use portico::telemetry::state_metrics::StateMetrics;

use crate::harness::{create_postgres_database, execute, query_text, shared_server};
use crate::servers::Engine;

/// Connections each PostgreSQL handle pools.
const POOL: usize = 4;

/// Where a fresh, empty store lives; every `open` is another handle on it (another process, or
/// another replica).
enum StoreHome {
    /// A SQLite file in a folder of its own.
    Sqlite(tempfile::TempDir),
    /// A new database on the shared PostgreSQL server.
    Postgres {
        /// What `[state] url` would say.
        url: String,
        /// The same database over ODBC, to look at what the store wrote.
        odbc: String,
    },
}

impl StoreHome {
    fn sqlite() -> Self {
        StoreHome::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        let (odbc, url) = create_postgres_database(shared_server(Engine::Postgres));
        StoreHome::Postgres { url, odbc }
    }

    fn path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("state.sqlite3")
    }

    /// A handle on the store, migrated.
    fn open(&self) -> Box<dyn StateStore> {
        match self {
            StoreHome::Sqlite(dir) => Box::new(SqliteStore::open(&Self::path(dir)).unwrap()),
            StoreHome::Postgres { url, .. } => Box::new(PgStore::open(url, POOL).unwrap()),
        }
    }
}

/// Runs each contract test on every store: `state_store::NAME::sqlite` and
/// `state_store::NAME::postgres`.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&super::StoreHome::sqlite());
                }

                #[test]
                fn postgres() {
                    super::$name(&super::StoreHome::postgres());
                }
            }
        )*
    };
}

on_every_store!(
    keys_are_claimed_once_replayed_and_survive_a_reopen,
    a_batch_commits_rows_events_deliveries_and_cursor_together_and_events_once,
    a_deleted_row_stays_as_a_tombstone_that_sweeps_skip,
    deliveries_are_due_retried_dead_lettered_resent_and_recovered,
    deliveries_are_counted_per_subscription_by_where_they_stand,
    an_ordered_subscription_holds_a_key_behind_its_pending_delivery_only,
    a_held_attempt_is_logged_and_keeps_the_delivery_pending_and_its_schedule,
    subscriptions_keep_ordered_and_why_they_were_disabled,
    a_subscription_is_added_once_whoever_adds_it,
    old_events_are_pruned_in_batches_and_each_feed_remembers_how_far,
    pending_deliveries_are_kept_and_dead_letters_outlive_delivered_ones,
    row_values_are_cleared_page_by_page_for_one_feed_only,
    tombstones_go_with_their_events_and_a_key_created_again_counts_on_past_them,
    a_round_prunes_what_is_past_retention_and_counts_it,
    an_idempotency_claim_in_flight_past_its_lease_is_taken_over,
    a_finished_idempotency_key_replays_on_every_replica,
    a_feed_lease_is_renewed_taken_over_once_expired_and_fences_its_old_holder,
    replicas_are_live_while_their_heartbeats_are_recent,
    replicas_claiming_at_once_never_get_the_same_delivery,
    a_claim_reserves_a_delivery_until_it_expires_or_an_attempt_is_recorded,
    a_subscription_with_its_limit_of_unexpired_claims_gets_no_more,
    a_subscription_at_its_limit_does_not_crowd_the_others_out,
);

// Idempotency keys.

/// How long an idempotency claim in flight blocks its key, where a test does not wait it out.
const LEASE_MS: i64 = 60_000;

fn keys_are_claimed_once_replayed_and_survive_a_reopen(home: &StoreHome) {
    let store = home.open();
    let day = 86_400;
    assert_eq!(
        store
            .claim_idempotency("s", "k", &["f1".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
    assert_eq!(
        store
            .claim_idempotency("s", "k", &["f1".into()], day, LEASE_MS)
            .unwrap(),
        Claim::InFlight
    );
    assert_eq!(
        store
            .claim_idempotency("s", "k", &["f2".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Mismatch
    );
    assert_eq!(
        store
            .claim_idempotency("other", "k", &["f2".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
    let response = StoredResponse {
        status: 201,
        headers: vec![("location".into(), "/v1/x/1".into())],
        body: b"{}".to_vec(),
    };
    store.complete_idempotency("s", "k", &response).unwrap();
    drop(store);
    let store = home.open();
    assert_eq!(
        store
            .claim_idempotency("s", "k", &["f1".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Replay(response.clone())
    );
    store.release_idempotency("other", "k").unwrap();
    assert_eq!(
        store
            .claim_idempotency("other", "k", &["f3".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
    // A key stored under another accepted fingerprint (an older form of the same body) is the
    // same request; the first fingerprint is the one a new key is stored under.
    assert_eq!(
        store
            .claim_idempotency("s", "k", &["f0".into(), "f1".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Replay(response.clone())
    );
    // Past the retention window a key is new again.
    assert_eq!(
        store
            .claim_idempotency("s", "k", &["f9".into()], -1, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
}

// Change feeds.

/// An `updated` event of key `["J1"]` with one delivery, due at once, per subscription.
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

fn a_batch_commits_rows_events_deliveries_and_cursor_together_and_events_once(home: &StoreHome) {
    let store = home.open();
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

fn a_deleted_row_stays_as_a_tombstone_that_sweeps_skip(home: &StoreHome) {
    let store = home.open();
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

// Deliveries.

fn subscription(name: &str, enabled: bool) -> SubscriptionRecord {
    SubscriptionRecord {
        name: name.into(),
        url: "https://example.com/hook".into(),
        version: "v1".into(),
        events: vec!["*".into()],
        scopes: vec![],
        claims: Default::default(),
        secrets: vec![SecretRecord {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            expires_ms: None,
        }],
        enabled,
        disabled_reason: None,
        ordered: false,
        origin: "api".into(),
        created_ms: 0,
    }
}

/// Due deliveries as a dispatcher that reserves nothing sees them: its claim ends as it is
/// made, so the next call finds them again (the tests of claims reserve them).
fn due(
    store: &dyn StateStore,
    now_ms: i64,
    limit: usize,
    subscriptions: &[String],
    ordered: &[String],
    skip: &[i64],
) -> Vec<DeliveryRecord> {
    store
        .claim_due(&DueClaim {
            now_ms,
            limit,
            subscriptions,
            ordered,
            skip,
            holder: "dispatcher",
            lease_ms: 0,
            per_subscription: 1_000,
        })
        .unwrap()
}

fn deliveries_are_due_retried_dead_lettered_resent_and_recovered(home: &StoreHome) {
    let store = home.open();
    let store = store.as_ref();
    store.put_subscription(&subscription("on", true)).unwrap();
    store.put_subscription(&subscription("off", false)).unwrap();
    let deliveries = ["on", "off"]
        .map(|s| NewDelivery {
            subscription: s.into(),
            body: b"{}".to_vec(),
            next_ms: 10,
        })
        .to_vec();
    let batch = Batch {
        feed: "f".into(),
        events: vec![NewEvent {
            id: "evt_1".into(),
            kind: "created".into(),
            key: "[]".into(),
            row: None,
            key_seq: 1,
            detected_ms: 0,
            deliveries,
        }],
        ..Batch::default()
    };
    store.commit(&batch).unwrap();
    // The dispatcher names the enabled subscriptions only.
    let on = ["on".to_string()];
    assert!(due(store, 9, 10, &on, &[], &[]).is_empty(), "not due yet");
    let found = due(store, 10, 10, &on, &[], &[]);
    assert_eq!(found.len(), 1, "only the named subscription's delivery");
    let id = found[0].id;
    assert!(due(store, 10, 10, &on, &[], &[id]).is_empty(), "in flight");
    let attempt = |at_ms| AttemptRecord {
        delivery: id,
        at_ms,
        status: Some(500),
        error: Some("answered 500".into()),
        duration_ms: 3,
    };
    store
        .record_attempt(&attempt(10), AttemptResult::RetryAt(50))
        .unwrap();
    assert!(due(store, 49, 10, &on, &[], &[]).is_empty());
    store
        .record_attempt(&attempt(50), AttemptResult::Dead)
        .unwrap();
    assert_eq!(store.dead_letters().unwrap(), 1);
    assert!(due(store, 1_000, 10, &on, &[], &[]).is_empty());
    assert_eq!(store.attempts(id).unwrap().len(), 2);
    let dead = store
        .deliveries(&DeliveryFilter {
            status: Some(DeliveryStatus::Dead),
            limit: 10,
            ..DeliveryFilter::default()
        })
        .unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 2));
    assert!(store.resend(id, 60).unwrap());
    assert_eq!(due(store, 60, 10, &on, &[], &[])[0].attempts, 0);
    store
        .record_attempt(&attempt(60), AttemptResult::Dead)
        .unwrap();
    assert_eq!(store.recover("on", 0, 70).unwrap(), 1);
    assert_eq!(store.dead_letters().unwrap(), 0);
    assert!(store.remove_subscription("on").unwrap());
    assert!(store.delivery(id).unwrap().is_none());
}

fn deliveries_are_counted_per_subscription_by_where_they_stand(home: &StoreHome) {
    let store = home.open();
    let store = store.as_ref();
    store.put_subscription(&subscription("sub", true)).unwrap();
    store.put_subscription(&subscription("idle", true)).unwrap();
    assert!(store.delivery_counts().unwrap().is_empty());
    let ids = keyed_events(store, "sub");
    let attempt = |delivery, status| AttemptRecord {
        delivery,
        at_ms: 5,
        status: Some(status),
        error: (status >= 300).then(|| format!("answered {status}")),
        duration_ms: 1,
    };
    store
        .record_attempt(&attempt(ids[0], 204), AttemptResult::Delivered)
        .unwrap();
    store
        .record_attempt(&attempt(ids[1], 500), AttemptResult::RetryAt(1_000))
        .unwrap();
    store
        .record_attempt(&attempt(ids[2], 500), AttemptResult::Dead)
        .unwrap();
    // ids[3] was never attempted: pending, not retrying. `idle` has no deliveries: not listed.
    assert_eq!(
        store.delivery_counts().unwrap(),
        vec![DeliveryCounts {
            subscription: "sub".into(),
            delivered: 1,
            pending: 2,
            retrying: 1,
            dead: 1,
        }]
    );
    assert!(store.resend(ids[2], 10).unwrap());
    let counts = store.delivery_counts().unwrap();
    assert_eq!((counts[0].pending, counts[0].dead), (3, 0));
}

/// Events of keys `K1` and `K2`, in this order: K1, K1, K2, K1; one delivery each for `sub`,
/// due at once. Their delivery ids, oldest first.
fn keyed_events(store: &dyn StateStore, sub: &str) -> Vec<i64> {
    let events = ["K1", "K1", "K2", "K1"]
        .iter()
        .enumerate()
        .map(|(i, key)| NewEvent {
            id: format!("evt_{i}"),
            kind: "updated".into(),
            key: format!("[\"{key}\"]"),
            row: None,
            key_seq: i as i64 + 1,
            detected_ms: 0,
            deliveries: vec![NewDelivery {
                subscription: sub.into(),
                body: b"{}".to_vec(),
                next_ms: 0,
            }],
        })
        .collect();
    store
        .commit(&Batch {
            feed: "f".into(),
            events,
            ..Batch::default()
        })
        .unwrap();
    let mut ids: Vec<i64> = store
        .deliveries(&DeliveryFilter {
            subscription: Some(sub.into()),
            limit: 10,
            ..DeliveryFilter::default()
        })
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids
}

fn an_ordered_subscription_holds_a_key_behind_its_pending_delivery_only(home: &StoreHome) {
    let store = home.open();
    let store = store.as_ref();
    let ids = keyed_events(store, "in-order");
    let subs = ["in-order".to_string()];
    let due_ids = |skip: &[i64]| -> Vec<i64> {
        due(store, 100, 10, &subs, &subs, skip)
            .iter()
            .map(|d| d.id)
            .collect()
    };
    // K1's first and K2's only; K1's later ones wait.
    assert_eq!(due_ids(&[]), [ids[0], ids[2]]);
    // Also once retention has pruned their events (a receiver down for days).
    assert_eq!(store.prune_events(i64::MAX, 10).unwrap(), 4);
    assert!(store.events_after("f", 0, 10).unwrap().is_empty());
    assert_eq!(due_ids(&[]), [ids[0], ids[2]]);
    // In flight is still pending: K1 stays held.
    assert_eq!(due_ids(&[ids[0]]), [ids[2]]);
    let attempt = |delivery, result| {
        let record = AttemptRecord {
            delivery,
            at_ms: 100,
            status: Some(500),
            error: Some("answered 500".into()),
            duration_ms: 1,
        };
        store.record_attempt(&record, result).unwrap();
    };
    // Being retried holds the key too.
    attempt(ids[0], AttemptResult::RetryAt(200));
    assert_eq!(due_ids(&[]), [ids[2]]);
    // A dead letter holds nothing: the key's next delivery goes.
    attempt(ids[0], AttemptResult::Dead);
    assert_eq!(due_ids(&[]), [ids[1], ids[2]]);
    attempt(ids[1], AttemptResult::Delivered);
    assert_eq!(due_ids(&[]), [ids[2], ids[3]]);
    // Resent, the dead letter holds the key's later deliveries again.
    assert!(store.resend(ids[0], 100).unwrap());
    assert_eq!(due_ids(&[]), [ids[2], ids[0]]);
    // Without `ordered`, nothing waits.
    let all = due(store, 100, 10, &subs, &[], &[]);
    assert_eq!(all.len(), 3);
}

fn a_held_attempt_is_logged_and_keeps_the_delivery_pending_and_its_schedule(home: &StoreHome) {
    let store = home.open();
    let ids = keyed_events(store.as_ref(), "gone");
    let record = AttemptRecord {
        delivery: ids[0],
        at_ms: 100,
        status: Some(410),
        error: Some("answered 410".into()),
        duration_ms: 1,
    };
    store.record_attempt(&record, AttemptResult::Held).unwrap();
    let held = store.delivery(ids[0]).unwrap().unwrap();
    assert_eq!(
        (held.status, held.attempts, held.next_ms),
        (DeliveryStatus::Pending, 0, 100)
    );
    assert_eq!(store.attempts(ids[0]).unwrap().len(), 1);
}

fn subscriptions_keep_ordered_and_why_they_were_disabled(home: &StoreHome) {
    let store = home.open();
    let record = SubscriptionRecord {
        ordered: true,
        disabled_reason: Some("the endpoint answered 410 Gone".into()),
        ..subscription("gone", false)
    };
    store.put_subscription(&record).unwrap();
    assert_eq!(store.subscriptions().unwrap(), [record]);
}

fn a_subscription_is_added_once_whoever_adds_it(home: &StoreHome) {
    let (a, b) = (home.open(), home.open());
    let first = subscription("portal", true);
    assert!(a.add_subscription(&first).unwrap());
    // Another replica adding the same name (with its own secret) changes nothing.
    let second = SubscriptionRecord {
        url: "https://elsewhere.example/hook".into(),
        ..subscription("portal", true)
    };
    assert!(!b.add_subscription(&second).unwrap());
    assert_eq!(a.subscriptions().unwrap(), std::slice::from_ref(&first));
    assert_eq!(b.subscriptions().unwrap(), [first]);
}

// Retention.

/// Commits event `id` of `feed`, detected at `detected_ms`, with a delivery to `to`.
fn event_at(store: &dyn StateStore, feed: &str, id: &str, detected_ms: i64, to: &[&str]) {
    let batch = Batch {
        feed: feed.into(),
        events: vec![NewEvent {
            detected_ms,
            ..event(id, to)
        }],
        ..Batch::default()
    };
    store.commit(&batch).unwrap();
}

fn attempt(store: &dyn StateStore, delivery: i64, at_ms: i64, result: AttemptResult) {
    let record = AttemptRecord {
        delivery,
        at_ms,
        status: Some(503),
        error: None,
        duration_ms: 1,
    };
    store.record_attempt(&record, result).unwrap();
}

fn delivery_of(store: &dyn StateStore, subscription: &str) -> Option<i64> {
    let filter = DeliveryFilter {
        subscription: Some(subscription.into()),
        limit: 10,
        ..DeliveryFilter::default()
    };
    store.deliveries(&filter).unwrap().first().map(|d| d.id)
}

fn old_events_are_pruned_in_batches_and_each_feed_remembers_how_far(home: &StoreHome) {
    let store = home.open();
    let store = store.as_ref();
    for (i, detected) in [10, 20, 30, 40].into_iter().enumerate() {
        event_at(store, "a", &format!("evt_a{i}"), detected, &[]);
    }
    event_at(store, "b", "evt_b", 15, &[]);
    assert_eq!(store.pruned_through("a").unwrap(), 0);
    // Oldest first, at most `limit` at a time.
    assert_eq!(store.prune_events(35, 2).unwrap(), 2);
    assert_eq!(store.pruned_through("a").unwrap(), 1);
    assert_eq!(store.pruned_through("b").unwrap(), 5);
    assert_eq!(store.prune_events(35, 2).unwrap(), 2);
    assert_eq!(store.prune_events(35, 2).unwrap(), 0);
    assert_eq!(store.pruned_through("a").unwrap(), 3);
    let kept = store.events_after("a", 0, 10).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].detected_ms, 40);
}

fn pending_deliveries_are_kept_and_dead_letters_outlive_delivered_ones(home: &StoreHome) {
    let store = home.open();
    let store = store.as_ref();
    event_at(
        store,
        "f",
        "evt_1",
        0,
        &["delivered", "pending", "dead", "old_dead"],
    );
    let id = |s| delivery_of(store, s).unwrap();
    attempt(store, id("delivered"), 100, AttemptResult::Delivered);
    attempt(store, id("pending"), 100, AttemptResult::RetryAt(200));
    attempt(store, id("dead"), 1_000, AttemptResult::Dead);
    attempt(store, id("old_dead"), 100, AttemptResult::Dead);
    let (delivered, dead, pending) = (id("delivered"), id("dead"), id("pending"));

    // Delivered at 100: pruned with its attempt once the cutoff passes it.
    assert_eq!(
        store
            .prune_deliveries(DeliveryStatus::Delivered, 100, 10)
            .unwrap(),
        (0, 0)
    );
    assert_eq!(
        store
            .prune_deliveries(DeliveryStatus::Delivered, 5_000, 10)
            .unwrap(),
        (1, 1)
    );
    assert!(store.delivery(delivered).unwrap().is_none());
    assert!(store.attempts(delivered).unwrap().is_empty());
    // A dead letter younger than its own retention stays; an older one goes.
    assert_eq!(
        store
            .prune_deliveries(DeliveryStatus::Dead, 500, 10)
            .unwrap(),
        (1, 1)
    );
    assert!(delivery_of(store, "old_dead").is_none());
    assert!(store.delivery(dead).unwrap().is_some());
    // Pending deliveries are never pruned, however old.
    assert_eq!(
        store
            .prune_deliveries(DeliveryStatus::Pending, i64::MAX, 10)
            .unwrap(),
        (0, 0)
    );
    assert_eq!(store.attempts(pending).unwrap().len(), 1);
    // A resent dead letter is pending again, and kept.
    assert!(store.resend(dead, 2_000).unwrap());
    assert_eq!(
        store
            .prune_deliveries(DeliveryStatus::Dead, i64::MAX, 10)
            .unwrap(),
        (0, 0)
    );
    assert!(store.delivery(dead).unwrap().is_some());
}

fn row_values_are_cleared_page_by_page_for_one_feed_only(home: &StoreHome) {
    let store = home.open();
    let row = |key: &str| RowRecord {
        key: key.into(),
        known: KnownRow {
            hash: "h".into(),
            seq: 1,
            row: Some("[\"values\"]".into()),
            deleted: false,
        },
    };
    for feed in ["slim", "full"] {
        let batch = Batch {
            feed: feed.into(),
            upserts: ["[1]", "[2]", "[3]"].into_iter().map(row).collect(),
            ..Batch::default()
        };
        store.commit(&batch).unwrap();
    }
    assert_eq!(
        store.forget_row_values("slim", "", 2).unwrap(),
        (2, Some("[2]".into()))
    );
    assert_eq!(
        store.forget_row_values("slim", "[2]", 2).unwrap(),
        (1, Some("[3]".into()))
    );
    assert_eq!(
        store.forget_row_values("slim", "[3]", 2).unwrap(),
        (0, None)
    );
    let keys = ["[1]".to_string(), "[3]".to_string()];
    let slim = store.known_rows("slim", &keys).unwrap();
    assert!(slim.values().all(|k| k.row.is_none() && k.seq == 1));
    let full = store.known_rows("full", &keys).unwrap();
    assert!(full.values().all(|k| k.row.is_some()));
}

fn tombstones_go_with_their_events_and_a_key_created_again_counts_on_past_them(home: &StoreHome) {
    let store = home.open();
    let tombstone = |key: &str, seq| RowRecord {
        key: key.into(),
        known: KnownRow {
            hash: "h".into(),
            seq,
            row: None,
            deleted: true,
        },
    };
    // [1] was deleted at counter 7, [2] at 3; [2]'s deletion is still in the log.
    let batch = Batch {
        feed: "f".into(),
        upserts: vec![tombstone("[1]", 7), tombstone("[2]", 3)],
        events: vec![NewEvent {
            id: "evt_2".into(),
            kind: "deleted".into(),
            key: "[2]".into(),
            row: None,
            key_seq: 3,
            detected_ms: 1,
            deliveries: Vec::new(),
        }],
        ..Batch::default()
    };
    store.commit(&batch).unwrap();
    assert_eq!(store.prune_tombstones(10).unwrap(), 1);
    let keys = ["[1]", "[2]", "[9]"].map(String::from);
    let known: HashMap<String, KnownRow> = store.known_rows("f", &keys).unwrap();
    // [1]'s record is gone; it, and a key never seen, count on from the floor it left.
    for key in ["[1]", "[9]"] {
        assert_eq!((known[key].seq, known[key].deleted), (7, true), "{key}");
    }
    assert_eq!(known["[2]"].seq, 3);
    // Once [2]'s event is pruned, its tombstone goes; the floor never goes down.
    assert_eq!(store.prune_events(2, 10).unwrap(), 1);
    assert_eq!(store.prune_tombstones(10).unwrap(), 1);
    assert_eq!(store.known_rows("f", &keys).unwrap()["[2]"].seq, 7);
    assert!(store.known_rows("other", &keys).unwrap().is_empty());
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn a_round_prunes_what_is_past_retention_and_counts_it(home: &StoreHome) {
    let store = home.open();
    let now = now_ms();
    event_at(store.as_ref(), "f", "evt_old", now - 10_000, &["s"]);
    event_at(store.as_ref(), "f", "evt_new", now, &["s"]);
    let old = store.events_after("f", 0, 1).unwrap()[0].seq;
    let filter = DeliveryFilter {
        limit: 10,
        ..DeliveryFilter::default()
    };
    for d in store.deliveries(&filter).unwrap() {
        let at = if d.event_id == "evt_old" {
            now - 10_000
        } else {
            now
        };
        attempt(store.as_ref(), d.id, at, AttemptResult::Delivered);
    }
    let store: Arc<dyn StateStore> = Arc::from(store);
    let retention = Retention {
        events: Duration::from_secs(5),
        deliveries: Duration::from_secs(5),
        dead_letters: Duration::from_secs(50),
        interval: Duration::from_secs(1),
        batch: 1,
    };
    let metrics = StateMetrics::default();
    let mut slim = Vec::new();
    // The round runs the store's calls on the runtime's blocking threads, as `serve` does.
    let pruned = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(prune(&store, &retention, &metrics, &mut slim))
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            events: 1,
            deliveries: 1,
            attempts: 1,
            row_values: 0,
            tombstones: 0,
        }
    );
    assert_eq!(store.pruned_through("f").unwrap(), old);
    assert_eq!(store.events_after("f", 0, 10).unwrap().len(), 1);
    let mut registry = prometheus_client::registry::Registry::with_prefix("portico");
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("portico_state_pruned_total{table=\"events\"} 1"),
        "{text}"
    );
}

// Idempotency across replicas.

fn an_idempotency_claim_in_flight_past_its_lease_is_taken_over(home: &StoreHome) {
    let store = home.open();
    let day = 86_400;
    let f1 = ["f1".to_string()];
    assert_eq!(
        store
            .claim_idempotency("s", "k", &f1, day, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
    assert_eq!(
        store
            .claim_idempotency("s", "k", &f1, day, LEASE_MS)
            .unwrap(),
        Claim::InFlight
    );
    // The request died with its replica: once its claim is older than the lease, a retry
    // takes the key over instead of waiting out the retention.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(
        store.claim_idempotency("s", "k", &f1, day, 1_000).unwrap(),
        Claim::Fresh,
        "a claim past its lease is taken over"
    );
    assert_eq!(
        store
            .claim_idempotency("s", "k", &f1, day, LEASE_MS)
            .unwrap(),
        Claim::InFlight,
        "the new claim holds the key"
    );
    // A finished request's key is never taken over, however short the lease: it replays.
    let response = StoredResponse {
        status: 201,
        headers: vec![],
        body: b"{\"id\":1}".to_vec(),
    };
    store.complete_idempotency("s", "k", &response).unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(
        store.claim_idempotency("s", "k", &f1, day, 1_000).unwrap(),
        Claim::Replay(response)
    );
}

fn a_finished_idempotency_key_replays_on_every_replica(home: &StoreHome) {
    let (a, b) = (home.open(), home.open());
    let day = 86_400;
    let f1 = ["f1".to_string()];
    assert_eq!(
        a.claim_idempotency("s", "k", &f1, day, LEASE_MS).unwrap(),
        Claim::Fresh
    );
    assert_eq!(
        b.claim_idempotency("s", "k", &f1, day, LEASE_MS).unwrap(),
        Claim::InFlight,
        "a retry on another replica while the first runs"
    );
    assert_eq!(
        b.claim_idempotency("s", "k", &["f2".into()], day, LEASE_MS)
            .unwrap(),
        Claim::Mismatch
    );
    let response = StoredResponse {
        status: 201,
        headers: vec![("location".into(), "/v1/x/1".into())],
        body: b"{}".to_vec(),
    };
    a.complete_idempotency("s", "k", &response).unwrap();
    // Releasing a finished key (a late failure elsewhere) leaves it.
    b.release_idempotency("s", "k").unwrap();
    for replica in [&a, &b] {
        assert_eq!(
            replica
                .claim_idempotency("s", "k", &f1, day, LEASE_MS)
                .unwrap(),
            Claim::Replay(response.clone())
        );
    }
    // A claim released on one replica is free on the other.
    assert_eq!(
        a.claim_idempotency("s", "gone", &f1, day, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
    a.release_idempotency("s", "gone").unwrap();
    assert_eq!(
        b.claim_idempotency("s", "gone", &f1, day, LEASE_MS)
            .unwrap(),
        Claim::Fresh
    );
}

// Feed leases and heartbeats.

fn a_feed_lease_is_renewed_taken_over_once_expired_and_fences_its_old_holder(home: &StoreHome) {
    let (a, b) = (home.open(), home.open());
    let first = a
        .acquire_lease("f", "a", 1_000, 100)
        .unwrap()
        .expect("a free lease");
    assert_eq!(
        b.acquire_lease("f", "b", 1_050, 100).unwrap(),
        None,
        "a's lease runs"
    );
    assert_eq!(
        a.acquire_lease("f", "a", 1_050, 100).unwrap(),
        Some(first),
        "a renewal keeps the token"
    );
    assert_eq!(
        b.acquire_lease("f", "b", 1_120, 100).unwrap(),
        None,
        "renewed at 1 050, a's lease runs until 1 150"
    );
    let row = |key: &str| RowRecord {
        key: key.into(),
        known: KnownRow {
            hash: "h".into(),
            seq: 1,
            row: None,
            deleted: false,
        },
    };
    let a_lease = Lease {
        holder: "a".into(),
        token: first,
    };
    let committed = a
        .commit(&Batch {
            feed: "f".into(),
            position: Some("1".into()),
            pass: 1,
            upserts: vec![row("[\"J1\"]")],
            events: vec![event("evt_1", &["s"])],
            lease: Some(a_lease.clone()),
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(committed, (vec![0], 1));
    // a pauses past its lease; b takes the feed over with a higher token.
    let second = b
        .acquire_lease("f", "b", 1_200, 100)
        .unwrap()
        .expect("an expired lease");
    assert!(second > first, "{second} after {first}");
    // a wakes up and commits what it read: refused, and nothing of it written.
    let stale = Batch {
        feed: "f".into(),
        position: Some("2".into()),
        pass: 2,
        upserts: vec![row("[\"J2\"]")],
        touched: vec!["[\"J1\"]".into()],
        events: vec![NewEvent {
            key: "[\"J2\"]".into(),
            ..event("evt_2", &["s"])
        }],
        lease: Some(a_lease),
    };
    match a.commit(&stale) {
        Err(StateError::LeaseLost { feed }) => assert_eq!(feed, "f"),
        other => panic!("a stale leader's commit: {other:?}"),
    }
    for store in [&a, &b] {
        assert_eq!(store.cursor("f").unwrap().as_deref(), Some("1"));
        let ids: Vec<String> = store
            .events_after("f", 0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["evt_1"]);
        let filter = DeliveryFilter {
            limit: 10,
            ..DeliveryFilter::default()
        };
        assert_eq!(store.deliveries(&filter).unwrap().len(), 1);
        let keys = ["[\"J1\"]".to_string(), "[\"J2\"]".to_string()];
        assert_eq!(store.known_rows("f", &keys).unwrap().len(), 1);
        assert_eq!(
            store.unseen_rows("f", 2, 10).unwrap().len(),
            1,
            "J1 was not touched"
        );
    }
    assert_eq!(
        a.acquire_lease("f", "a", 1_210, 100).unwrap(),
        None,
        "the old holder cannot renew"
    );
    // The new holder's commit of the same read goes.
    let b_lease = Lease {
        holder: "b".into(),
        token: second,
    };
    let committed = b
        .commit(&Batch {
            lease: Some(b_lease),
            ..stale
        })
        .unwrap();
    assert_eq!(committed, (vec![0], 1));
    assert_eq!(a.cursor("f").unwrap().as_deref(), Some("2"));
    // A release with a token that is no longer current does nothing…
    a.release_lease("f", "a", first).unwrap();
    assert_eq!(a.acquire_lease("f", "a", 1_220, 100).unwrap(), None);
    // …b's own frees the feed at once, for a higher token.
    b.release_lease("f", "b", second).unwrap();
    let third = a
        .acquire_lease("f", "a", 1_220, 100)
        .unwrap()
        .expect("a released lease");
    assert!(third > second, "{third} after {second}");
    // Leases are per feed.
    assert!(b.acquire_lease("g", "b", 1_220, 100).unwrap().is_some());
}

fn replicas_are_live_while_their_heartbeats_are_recent(home: &StoreHome) {
    let (a, b) = (home.open(), home.open());
    assert_eq!(a.heartbeat("a", 1_000, 100).unwrap(), 1);
    assert_eq!(b.heartbeat("b", 1_050, 100).unwrap(), 2);
    assert_eq!(a.heartbeat("a", 1_100, 100).unwrap(), 2, "b beat at 1 050");
    // b stopped beating: at 1 200 its last beat is older than 100 ms.
    assert_eq!(a.heartbeat("a", 1_200, 100).unwrap(), 1);
    // Back, it counts again.
    assert_eq!(b.heartbeat("b", 1_210, 100).unwrap(), 2);
}

// Delivery claims.

/// Commits `n` events of feed `f`, each of its own key with one delivery to `subscription`
/// due at once; their delivery ids, oldest first.
fn deliveries_for(store: &dyn StateStore, subscription: &str, n: usize) -> Vec<i64> {
    let events = (0..n)
        .map(|i| NewEvent {
            key: format!("[{i}]"),
            ..event(&format!("evt_{subscription}_{i}"), &[subscription])
        })
        .collect();
    store
        .commit(&Batch {
            feed: "f".into(),
            events,
            ..Batch::default()
        })
        .unwrap();
    let mut ids: Vec<i64> = store
        .deliveries(&DeliveryFilter {
            subscription: Some(subscription.into()),
            limit: n + 1,
            ..DeliveryFilter::default()
        })
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    assert_eq!(ids.len(), n);
    ids
}

/// Claims for `holder` at `now_ms` for `lease_ms`, up to `limit`, `per_subscription` at most.
fn claim(
    store: &dyn StateStore,
    holder: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
    per_subscription: usize,
    subscriptions: &[String],
) -> Vec<DeliveryRecord> {
    store
        .claim_due(&DueClaim {
            now_ms,
            limit,
            subscriptions,
            ordered: &[],
            skip: &[],
            holder,
            lease_ms,
            per_subscription,
        })
        .unwrap()
}

fn a_subscription_at_its_limit_does_not_crowd_the_others_out(home: &StoreHome) {
    let store = home.open();
    // The busy subscription's backlog is older, so it comes first in due order.
    let busy = deliveries_for(store.as_ref(), "busy", 10);
    let other = deliveries_for(store.as_ref(), "other", 1);
    let both = ["busy".to_string(), "other".to_string()];
    let now = now_ms() + 60_000;
    let first = claim(store.as_ref(), "a", now, 60_000, 2, 2, &both);
    assert_eq!(ids(&first), busy[..2]);
    // "busy" holds its limit: the next claim reaches past its backlog to "other".
    let second = claim(store.as_ref(), "b", now, 60_000, 2, 2, &both);
    assert_eq!(ids(&second), other);
}

fn ids(claimed: &[DeliveryRecord]) -> Vec<i64> {
    claimed.iter().map(|d| d.id).collect()
}

fn replicas_claiming_at_once_never_get_the_same_delivery(home: &StoreHome) {
    let store = home.open();
    let all = deliveries_for(store.as_ref(), "s", 150);
    let subs = ["s".to_string()];
    let replicas: Vec<(String, Box<dyn StateStore>)> =
        (0..3).map(|i| (format!("r{i}"), home.open())).collect();
    // Each replica claims small batches until nothing is left for it.
    let claimed: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let running: Vec<_> = replicas
            .iter()
            .map(|(holder, replica)| {
                let subs = &subs;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let got = claim(replica.as_ref(), holder, 1_000, 60_000, 4, 1_000, subs);
                        if got.is_empty() {
                            return mine;
                        }
                        mine.extend(ids(&got));
                    }
                })
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut every: Vec<i64> = claimed.concat();
    every.sort();
    let mut distinct = every.clone();
    distinct.dedup();
    assert_eq!(
        every.len(),
        distinct.len(),
        "a delivery was claimed twice: {claimed:?}"
    );
    assert_eq!(distinct, all, "every delivery was claimed once");
    assert!(
        claim(store.as_ref(), "late", 1_000, 60_000, 10, 1_000, &subs).is_empty(),
        "all are reserved"
    );
}

fn a_claim_reserves_a_delivery_until_it_expires_or_an_attempt_is_recorded(home: &StoreHome) {
    let (a, b) = (home.open(), home.open());
    let (a, b) = (a.as_ref(), b.as_ref());
    let all = deliveries_for(a, "s", 2);
    let subs = ["s".to_string()];
    let by_a = claim(a, "a", 100, 50, 10, 1_000, &subs);
    assert_eq!(ids(&by_a), all);
    assert!(
        claim(b, "b", 120, 50, 10, 1_000, &subs).is_empty(),
        "a's claims run until 150"
    );
    // a's attempt of the first fails: it is due again at 130, free for anyone.
    attempt(a, all[0], 110, AttemptResult::RetryAt(130));
    let by_b = claim(b, "b", 130, 50, 10, 1_000, &subs);
    assert_eq!(ids(&by_b), [all[0]], "an attempt frees the claim");
    assert_eq!(by_b[0].event_id, by_a[0].event_id);
    // a was killed with the second in flight: once its claim expires, b retries it with the
    // same event id (the `webhook-id`).
    let retried = claim(b, "b", 160, 50, 10, 1_000, &subs);
    assert_eq!(
        ids(&retried),
        [all[1]],
        "an expired claim is handed out again"
    );
    assert_eq!(retried[0].event_id, by_a[1].event_id);
    assert_eq!(retried[0].body, by_a[1].body);
    // Delivered, it is never claimed again.
    attempt(b, all[0], 170, AttemptResult::Delivered);
    attempt(b, all[1], 170, AttemptResult::Delivered);
    assert!(claim(a, "a", 10_000, 50, 10, 1_000, &subs).is_empty());
}

fn a_subscription_with_its_limit_of_unexpired_claims_gets_no_more(home: &StoreHome) {
    let (a, b) = (home.open(), home.open());
    let (a, b) = (a.as_ref(), b.as_ref());
    let busy = deliveries_for(a, "busy", 5);
    let idle = deliveries_for(a, "idle", 2);
    let subs = ["busy".to_string(), "idle".to_string()];
    let count = |claimed: &[DeliveryRecord], subscription: &str| {
        claimed
            .iter()
            .filter(|d| d.subscription == subscription)
            .count()
    };
    let by_a = claim(a, "a", 100, 50, 10, 2, &subs);
    assert_eq!((count(&by_a, "busy"), count(&by_a, "idle")), (2, 2));
    assert_eq!(ids(&by_a)[..2], busy[..2]);
    // The limit counts the claims of every replica.
    assert!(
        claim(b, "b", 110, 50, 10, 2, &subs).is_empty(),
        "both subscriptions hold their limit in claims until 150"
    );
    // One of busy's attempts finished: room for one more.
    attempt(a, busy[0], 115, AttemptResult::Delivered);
    let by_b = claim(b, "b", 120, 50, 10, 2, &subs);
    assert_eq!(ids(&by_b), [busy[2]]);
    // At 160 a's claims expired (busy[1], idle's two); b's of busy[2] runs until 170.
    let later = claim(b, "b", 160, 50, 10, 2, &subs);
    assert_eq!((count(&later, "busy"), count(&later, "idle")), (1, 2));
    assert_eq!(
        ids(&later),
        [busy[1], idle[0], idle[1]],
        "oldest first, within the limit"
    );
}

// PostgreSQL only: its schema version, its notices.

/// The `portico_schema` row: the row version PostgreSQL gave it (any write changes it) and
/// the schema version.
fn schema_row(odbc: &str) -> Vec<Vec<Option<String>>> {
    query_text(odbc, "SELECT xmin::text, version FROM portico_schema")
}

#[test]
fn postgres_a_migrated_database_is_opened_without_running_a_step_again() {
    let home = StoreHome::postgres();
    let StoreHome::Postgres { url, odbc } = &home else {
        unreachable!()
    };
    // Replicas starting together on a new database: each step runs once.
    let opened: Vec<Result<PgStore, StateError>> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| PgStore::open(url, POOL)))
            .collect();
        starting.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    opened[0]
        .as_ref()
        .unwrap()
        .commit(&Batch {
            feed: "f".into(),
            position: Some("{}".into()),
            ..Batch::default()
        })
        .unwrap();
    drop(opened);
    let migrated = schema_row(odbc);
    assert_eq!(migrated.len(), 1, "one version row: {migrated:?}");
    // Opening again writes nothing to the schema and keeps what was stored.
    let store = PgStore::open(url, POOL).unwrap();
    assert_eq!(schema_row(odbc), migrated);
    assert_eq!(store.cursor("f").unwrap().as_deref(), Some("{}"));
}

#[test]
fn postgres_a_schema_newer_than_this_portico_knows_is_refused() {
    let home = StoreHome::postgres();
    let StoreHome::Postgres { url, odbc } = &home else {
        unreachable!()
    };
    drop(PgStore::open(url, POOL).unwrap());
    execute(odbc, "UPDATE portico_schema SET version = 99");
    let refused = PgStore::open(url, POOL).err().unwrap().to_string();
    assert!(refused.contains("schema version 99"), "{refused}");
    assert_eq!(
        schema_row(odbc)[0][1].as_deref(),
        Some("99"),
        "the refusal changed nothing"
    );
}

#[test]
fn postgres_notices_reach_the_other_replicas_and_not_their_sender() {
    let home = StoreHome::postgres();
    let (a, b) = (home.open(), home.open());
    let mut at_a = a.notices().expect("a PostgreSQL store listens");
    let mut at_b = b.notices().expect("a PostgreSQL store listens");
    let notice = Notice::Invalidate(vec!["jobs".into()]);
    // b starts listening in the background: publish until it hears.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let heard = 'wait: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "b heard nothing in 30 s"
        );
        a.publish(&notice).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        while let Ok(received) = at_b.try_recv() {
            if received != Notice::Resync {
                break 'wait received;
            }
        }
    };
    assert_eq!(heard, notice);
    b.publish(&Notice::Subscriptions).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match at_a.try_recv() {
            Ok(Notice::Subscriptions) => break,
            Ok(Notice::Resync) => {}
            Ok(other) => panic!("a heard its own notice: {other:?}"),
            Err(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a heard nothing in 30 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn sqlite_a_store_of_one_process_sends_and_hears_no_notices() {
    let home = StoreHome::sqlite();
    let store = home.open();
    assert!(store.notices().is_none());
    store.publish(&Notice::PurgeAll).unwrap();
}
