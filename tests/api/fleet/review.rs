//! Attacks on the fleet: the PostgreSQL state server restarted under load, a notice too large
//! for `NOTIFY`. Each test says what it expects a fleet to do; one that fails shows a gap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico::state::{FleetStore, Notice, PgStore};

use super::{delivered, item_event, receive, Fleet, Setup};
use crate::changes::Receiver;
use crate::harness::{create_postgres_database, execute, shared_server};
use crate::servers::{DbServer, Engine};

/// The fleet of `setup` with its state database on a PostgreSQL server of its own (so it can
/// be restarted without disturbing other tests).
async fn fleet_on(server: &DbServer, setup: Setup) -> Fleet {
    let legacy = super::legacy_database(shared_server(Engine::Postgres));
    let (state, state_url) = create_postgres_database(server);
    let text = setup.config(&legacy, &state_url);
    Fleet::of(3, &text, legacy, state).await
}

/// The state server stops for a few seconds while rows change and deliveries are under way,
/// then comes back: every change is delivered (redeliveries only with the same `webhook-id`),
/// one replica leads the feed again, every replica is ready again, and a write through one
/// replica is read fresh on another (its listening connection came back).
#[tokio::test]
async fn the_state_server_restarted_under_load_loses_nothing() {
    let server = DbServer::start(Engine::Postgres);
    let receiver = Receiver::start(&[]);
    let fleet = fleet_on(
        &server,
        Setup {
            feed: true,
            subscriptions: vec![("bulk", receiver.url.clone())],
            ..Setup::default()
        },
    )
    .await;
    let insert = |prefix: &str, rows: usize| {
        format!(
            "INSERT INTO items (id, label) SELECT '{prefix}' || lpad(i::text, 5, '0'), 'new' \
             FROM generate_series(1, {rows}) AS i"
        )
    };
    fleet.leader_of("items").await;
    execute(&fleet.legacy, &insert("P", 1000));
    receive(&receiver, "the first deliveries", 60, |e| {
        delivered(e, "P", 1) >= 100
    })
    .await;
    let resyncs: Vec<f64> = futures_util::future::join_all(
        (0..3).map(|i| fleet.app(i).metric("portico_cache_resyncs_total")),
    )
    .await;

    server.stop();
    let stopped = Instant::now();
    // Changes keep coming while the state store is away.
    execute(&fleet.legacy, &insert("Q", 1000));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut ready_while_down = Vec::new();
    for i in 0..3 {
        ready_while_down.push(fleet.app(i).get_with("/readyz", &[]).await.0);
    }
    server.resume();
    eprintln!(
        "review: state server down {:?}; /readyz while down: {ready_while_down:?}",
        stopped.elapsed()
    );
    let back = Instant::now();

    let entries = receive(&receiver, "all 2,000 changes after the restart", 120, |e| {
        delivered(e, "P", 1) + delivered(e, "Q", 1) >= 2000
    })
    .await;
    eprintln!(
        "review: every change delivered {:?} after the restart",
        back.elapsed()
    );
    let mut ids: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    let mut accepted = 0;
    for entry in entries.iter().filter(|e| e["outcome"] == "accepted") {
        accepted += 1;
        let (change, id) = item_event(entry).unwrap();
        ids.entry(change).or_default().insert(id);
    }
    let doubled: Vec<_> = ids.iter().filter(|(_, i)| i.len() > 1).take(5).collect();
    let distinct: usize = ids.values().map(BTreeSet::len).sum();
    eprintln!(
        "review: {distinct} distinct events, {} redeliveries in {accepted} accepted POSTs",
        accepted - distinct
    );
    assert!(doubled.is_empty(), "a change announced twice: {doubled:?}");
    assert_eq!(ids.len(), 2000);

    fleet.leader_of("items").await;
    for (i, before) in resyncs.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while fleet.app(i).get_with("/readyz", &[]).await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "replica {i} not ready again\n{}",
                fleet.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let now = fleet.app(i).metric("portico_cache_resyncs_total").await;
        assert!(now > *before, "replica {i} did not resync its cache");
    }

    // Notices flow again: a write on one replica is read fresh on another.
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('W1', 'before')",
    );
    let (a, b) = (fleet.app(0), fleet.app(1));
    assert_eq!(b.get("/v1/items/W1").await.body["label"], "before");
    let written = super::relabel(a, "W1", "after").await;
    assert_eq!(written.status, 200, "{}", written.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.get("/v1/items/W1").await.body["label"] != "after" {
        assert!(
            Instant::now() < deadline,
            "B serves the old value\n{}",
            fleet.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = fleet.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    for line in logs.lines().filter(|l| l.contains("WARN")) {
        let message = line.split_once("WARN").map_or(line, |(_, m)| m);
        let message: String = message.chars().take(160).collect();
        *warnings.entry(message).or_default() += 1;
    }
    eprintln!("review: warnings logged: {warnings:#?}");
    server.stop();
}

/// `NOTIFY` refuses a payload of 8000 bytes or more: a write or a procedure that invalidates
/// many resources must still reach the other replicas (as a purge of everything, say), not
/// fail and leave their caches stale for their whole TTL.
#[test]
fn a_notice_naming_many_resources_still_reaches_the_other_replicas() {
    let (_, url) = create_postgres_database(shared_server(Engine::Postgres));
    let store = PgStore::open(&url, 2).unwrap();
    let resources: Vec<String> = (0..300)
        .map(|i| format!("warehouse_inventory_adjustment_{i:04}"))
        .collect();
    let sent = FleetStore::publish(&store, &Notice::Invalidate(resources));
    assert!(sent.is_ok(), "{sent:?}");
}

/// A leader whose page query outlasts its lease must not commit that page: while it waited,
/// another replica led the feed, announced the row's newer version and died. Today the stalled
/// leader takes the expired lease back under a new token in the middle of its poll, and its
/// commit, carrying the new token, passes the fence: it announces the row's older version
/// again (after the newer one) and sets the cursor back.
#[tokio::test]
async fn a_page_read_under_a_lost_lease_is_not_committed_under_a_new_one() {
    let receiver = Receiver::start(&[]);
    let server = shared_server(Engine::Postgres);
    let (legacy, _) = create_postgres_database(server);
    // `items` is a view over `items_base` whose scan first sleeps 12 s when the connected
    // user (each replica connects as its own name) is the one `ctl` names: a slow page.
    for statement in [
        "CREATE TABLE items_base (id VARCHAR(8) PRIMARY KEY, label VARCHAR(40) NOT NULL, \
         version INTEGER NOT NULL DEFAULT 1, updated TIMESTAMP NOT NULL DEFAULT now())",
        "CREATE TABLE ctl (who TEXT NOT NULL)",
        "INSERT INTO ctl VALUES ('')",
        "CREATE FUNCTION slow_gate() RETURNS boolean LANGUAGE sql VOLATILE AS \
         $$ SELECT CASE WHEN current_user = (SELECT who FROM ctl) \
         THEN pg_sleep(12) IS NOT NULL ELSE true END $$",
        "CREATE VIEW items AS SELECT * FROM items_base WHERE (SELECT slow_gate())",
        "CREATE TABLE notes (note_id SERIAL PRIMARY KEY, body VARCHAR(200) NOT NULL)",
    ] {
        execute(&legacy, statement);
    }
    for role in ["a", "b", "c"] {
        execute(
            &legacy,
            &format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN SUPERUSER; \
                 EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            ),
        );
    }
    let (state, state_url) = create_postgres_database(server);
    let setup = Setup {
        feed: true,
        subscriptions: vec![("hook", receiver.url.clone())],
        ..Setup::default()
    };
    let per_replica = legacy.replace("Uid=postgres;", "Uid=${PORTICO_REPLICA};");
    let text = setup.config(&per_replica, &state_url).replacen(
        "dialect = \"postgres\"\n",
        "dialect = \"postgres\"\nquery_timeout = \"60s\"\n",
        1,
    );
    let mut fleet = Fleet::of(3, &text, legacy.clone(), state).await;
    // Two replicas: the leader `slow`, and `fast`.
    let leader = fleet.leader_of("items").await;
    let third = (0..3).find(|&i| i != leader).unwrap();
    fleet.kill(third);
    let slow = fleet.leader_of("items").await;
    let fast = 1 - slow;
    let slow_name = fleet.replicas[slow].name.clone();

    // The row appears and the leader's next page query stalls, in one statement.
    execute(
        &legacy,
        &format!(
            "WITH added AS (INSERT INTO items_base (id, label) VALUES ('X1', 'first')) \
             UPDATE ctl SET who = '{slow_name}'"
        ),
    );
    let version_of = |e: &serde_json::Value| e["body"]["data"]["row"]["version"].as_i64();
    receiver
        .wait("X1 announced by the replica that took over", 30, |e| {
            e.iter().any(|e| version_of(e) == Some(1))
        })
        .await;
    execute(&legacy, "UPDATE ctl SET who = ''");
    execute(
        &legacy,
        "UPDATE items_base SET label = 'second', version = 2, updated = now() WHERE id = 'X1'",
    );
    receiver
        .wait("X1's second version", 30, |e| {
            e.iter().any(|e| version_of(e) == Some(2))
        })
        .await;
    let fast_name = fleet.kill(fast);
    // The stalled page returns (12 s after it began), then a few polls.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let versions: Vec<(i64, Option<i64>)> = receiver
        .accepted()
        .iter()
        .filter(|e| e["body"]["data"]["key"] == "X1")
        .map(|e| {
            (
                version_of(e).unwrap_or(-1),
                e["body"]["data"]["sequence"].as_i64(),
            )
        })
        .collect();
    eprintln!("review: X1 as delivered (version, sequence): {versions:?}; {slow_name} stalled, {fast_name} killed");
    let mut announced: Vec<i64> = versions.iter().map(|v| v.0).collect();
    announced.dedup();
    assert_eq!(
        announced,
        [1, 2],
        "X1 went back to an older version: {versions:?}\n{}",
        fleet.logs()
    );
}

/// A TCP relay to `upstream` that can stall every connection (as a partitioned network or a
/// hung server does: nothing is refused, nothing answers); its port.
fn stalling_relay(upstream: u16, stalled: Arc<AtomicBool>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let pipe = |mut from: tokio::net::tcp::OwnedReadHalf,
                mut to: tokio::net::tcp::OwnedWriteHalf,
                stalled: Arc<AtomicBool>| async move {
        let mut buffer = vec![0u8; 16384];
        loop {
            if stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            // Reading is cancel-safe: a stall that begins meanwhile is seen within 50 ms.
            let read = tokio::select! {
                read = from.read(&mut buffer) => read,
                _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let (client_in, client_out) = client.into_split();
                let (server_in, server_out) = server.into_split();
                tokio::spawn(pipe(client_in, server_out, stalled.clone()));
                tokio::spawn(pipe(server_in, client_out, stalled.clone()));
            }
        });
    });
    port
}

/// A state server that stops answering (a partition, a hung host: no connection is refused)
/// must not hang the store's callers: the poller, the dispatcher, the heartbeat and requests
/// with an `Idempotency-Key` all wait on it. A store call should fail within a bound (here
/// 30 s, generous), so the callers retry and the caller's lease can run out cleanly.
#[test]
fn a_state_server_that_stops_answering_fails_store_calls_within_a_bound() {
    let server = shared_server(Engine::Postgres);
    let (_, direct) = create_postgres_database(server);
    let stalled = Arc::new(AtomicBool::new(false));
    let port = stalling_relay(server.port, stalled.clone());
    // The same database, reached through the relay.
    let url = direct.replace(&format!(":{}/", server.port), &format!(":{port}/"));
    let store = Arc::new(PgStore::open(&url, 2).unwrap());
    assert!(FleetStore::heartbeat(store.as_ref(), "x", 1, 1000).is_ok());
    stalled.store(true, Ordering::SeqCst);
    let (done, answered) = std::sync::mpsc::channel();
    let caller = store.clone();
    std::thread::spawn(move || {
        let began = Instant::now();
        let result = FleetStore::heartbeat(caller.as_ref(), "x", 2, 1000);
        let _ = done.send((result.map_err(|e| e.to_string()), began.elapsed()));
    });
    let answer = answered.recv_timeout(Duration::from_secs(30));
    eprintln!("review: a store call with the server stalled: {answer:?}");
    assert!(answer.is_ok(), "a store call still waits after 30 s");
}

/// Two replicas given one name (the README's `replica = "api-1"` copied into the one file
/// every replica reads) must not both poll a feed: they share every lease and token, so the
/// fence cannot tell them apart. Either the second is refused at start or named apart.
#[tokio::test]
async fn two_replicas_with_one_name_do_not_both_lead_a_feed() {
    let server = shared_server(Engine::Postgres);
    let legacy = super::legacy_database(server);
    let (state, state_url) = create_postgres_database(server);
    let text = Setup {
        feed: true,
        ..Setup::default()
    }
    .config(&legacy, &state_url)
    .replace("replica = \"${PORTICO_REPLICA}\"", "replica = \"api-1\"");
    let fleet = Fleet::of(2, &text, legacy, state).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders = fleet.leaders().await;
    let polled: Vec<f64> =
        futures_util::future::join_all((0..2).map(|i| fleet.app(i).metric(super::SOURCE_QUERIES)))
            .await;
    eprintln!("review: leaders {leaders:?}, source queries {polled:?}");
    assert!(
        leaders.iter().filter(|l| !l.is_empty()).count() <= 1,
        "both replicas lead the feed: {leaders:?}"
    );
}

/// An endpoint that answers 410 Gone has its subscription disabled, fleet-wide: after the 410
/// no replica sends it anything more (as one process sends nothing until it is enabled
/// again). Today only the replica that got the 410 reloads; the others keep it enabled in
/// memory: they claim the held delivery and send it again, and a leader among them makes
/// deliveries of new events for it.
#[tokio::test]
async fn a_subscription_disabled_by_410_gone_is_disabled_on_every_replica() {
    let receiver = Receiver::start(&["--fail-first", "1", "--status", "410"]);
    let fleet = Fleet::start(Setup {
        feed: true,
        subscriptions: vec![("gone", receiver.url.clone())],
        ..Setup::default()
    })
    .await;
    fleet.leader_of("items").await;
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) VALUES ('G1', 'one')",
    );
    receiver
        .wait("the 410", 30, |e| {
            e.iter().any(|e| e["outcome"] != "accepted")
        })
        .await;
    let admin = super::operator();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = fleet
            .app(0)
            .get_as("/admin/subscriptions/gone", Some(&admin))
            .await;
        if shown.body["enabled"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "never disabled: {}", shown.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One process holds the deliveries of a subscription that answered 410 until it is
    // enabled again: nothing after the 410 reaches the endpoint.
    let disabled_at = 1;
    execute(
        &fleet.legacy,
        "INSERT INTO items (id, label) SELECT 'G' || i, 'more' FROM generate_series(2, 10) AS i",
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<_> = receiver.entries()[disabled_at..]
        .iter()
        .map(|e| (e["outcome"].clone(), e["body"]["data"]["key"].clone()))
        .collect();
    let all: Vec<_> = receiver
        .entries()
        .iter()
        .map(|e| (e["outcome"].clone(), e["body"]["data"]["key"].clone()))
        .collect();
    eprintln!("review: sent to the disabled subscription afterwards: {after:?}; all: {all:?}; leaders {:?}", fleet.leaders().await);
    eprintln!(
        "review: deliveries in the store: {:?}",
        crate::harness::query_text(
            &fleet.state,
            "SELECT e.key, d.status, d.attempts FROM events e LEFT JOIN deliveries d ON e.id = d.event_id ORDER BY e.seq"
        )
    );
    assert!(
        after.is_empty(),
        "a disabled subscription still gets deliveries: {after:?}"
    );
}
