//! Retention of the state store against real databases: under a long stream of changes the
//! store levels off while the same stream without retention keeps everything; pending
//! deliveries and young dead letters outlive the delivery retention; a pull-feed cursor into
//! pruned history is answered 410.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::changes::{has, listed, received, subscription, wait_polled, Receiver, Tickets};
use crate::fixture::Kind;
use crate::harness::Portico;

const CHANGES: &str =
    r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms", lag = "4s" }"#;

/// The state file a `Tickets` configuration names.
fn state_path(config: &str) -> PathBuf {
    config
        .lines()
        .find_map(|l| l.strip_prefix("path = \"")?.strip_suffix('"'))
        .map(PathBuf::from)
        .expect("the configuration names its state file")
}

/// `config` with these lines added to its `[state]` section.
fn with_state(config: &str, lines: &str) -> String {
    config.replacen("[state]\n", &format!("[state]\n{lines}\n"), 1)
}

/// What a state store holds: rows per table, and the bytes its live pages take.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    events: i64,
    deliveries: i64,
    attempts: i64,
    feed_rows: i64,
    row_values: i64,
    live_bytes: i64,
}

fn size(path: &Path) -> Size {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    Size {
        events: one("SELECT count(*) FROM events"),
        deliveries: one("SELECT count(*) FROM deliveries"),
        attempts: one("SELECT count(*) FROM attempts"),
        feed_rows: one("SELECT count(*) FROM feed_rows"),
        row_values: one("SELECT count(*) FROM feed_rows WHERE row IS NOT NULL"),
        live_bytes: one("PRAGMA page_count") * one("PRAGMA page_size")
            - one("PRAGMA freelist_count") * one("PRAGMA page_size"),
    }
}

/// Waits until `done` holds for the store at `path`; returns its size then.
async fn wait_size(path: &Path, what: &str, seconds: u64, done: impl Fn(&Size) -> bool) -> Size {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let now = size(path);
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const ROWS: usize = 50;
const ROUNDS: usize = 50;

/// The stamp of a round, as the database holds it and as the API shows it.
fn stamp(round: usize) -> (String, String) {
    let (m, s) = (round / 60, round % 60);
    (
        format!("2026-01-02 00:{m:02}:{s:02}"),
        format!("2026-01-02T00:{m:02}:{s:02}"),
    )
}

/// Accepted deliveries in a receiver's log, and whether every row's last change is among them.
fn caught_up(entries: &[Value]) -> (i64, bool) {
    let accepted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .collect();
    let last = stamp(ROUNDS).1;
    let done = accepted
        .iter()
        .filter(|e| e["body"]["data"]["row"]["updated_at"] == last.as_str())
        .count();
    (accepted.len() as i64, done == ROWS)
}

async fn the_store_levels_off_under_a_long_stream(kind: Kind) {
    let tickets = Tickets::new(kind);
    let values: Vec<String> = (4..=ROWS)
        .map(|i| format!("('R{i:03}', 'O', 'C1', 1.00, '2026-01-01 10:00:00')"))
        .collect();
    tickets.sql(&format!("INSERT INTO TICKETS VALUES {}", values.join(", ")));
    let (to_retained, to_control) = (Receiver::start(&[]), Receiver::start(&[]));
    let retained_config = with_state(
        &tickets.config(CHANGES, &subscription("portal", &to_retained.url)),
        "event_retention = \"2s\"\ndelivery_retention = \"2s\"\nprune_interval = \"200ms\"\nprune_batch = 100",
    );
    let retained_path = state_path(&retained_config);
    // The same feed over the same table, with the default retention (days).
    let dir = tempfile::tempdir().unwrap();
    let control_path = dir.path().join("control.sqlite3");
    let control_config = tickets
        .config(CHANGES, &subscription("portal", &to_control.url))
        .replace(
            &retained_path.display().to_string(),
            &control_path.display().to_string(),
        );
    let retained = Portico::spawn(&retained_config).await;
    let control = Portico::spawn(&control_config).await;
    wait_polled(&retained.base).await;
    wait_polled(&control.base).await;

    // Every row changes each round (a poll that comes late sees two rounds as one change).
    let mut samples = Vec::new();
    for round in 1..=ROUNDS {
        tickets.sql(&format!(
            "UPDATE TICKETS SET AMOUNT = {round}, UPDATED = '{}'",
            stamp(round).0
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        samples.push(size(&retained_path));
    }
    let retained_entries = to_retained
        .wait("the retained Portico's last round", 60, |e| caught_up(e).1)
        .await;
    // Each Portico counts its own events: a poll that comes late sees two rounds as one.
    let (retained_total, _) = caught_up(&retained_entries);
    let entries = to_control
        .wait("the control's last round", 60, |e| caught_up(e).1)
        .await;
    let (total, _) = caught_up(&entries);
    assert!(total >= (ROWS * ROUNDS / 4) as i64, "{total} events");
    // Without retention the store holds every event, delivery and attempt.
    let kept = wait_size(&control_path, "the control store", 60, |s| {
        s.events == total && s.deliveries == total && s.attempts >= total
    })
    .await;
    // With it, a window of the stream: the second half never holds half of the stream.
    let peak = samples[ROUNDS / 2..]
        .iter()
        .map(|s| s.events)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{kind:?}: {total} events; retained events over the stream {:?}; control at the end \
         {kept:?}",
        samples.iter().map(|s| s.events).collect::<Vec<_>>()
    );
    assert!(
        peak < total / 2,
        "the retained store kept growing: {samples:?}"
    );
    // Once the stream stops, everything delivered and older than its retention is gone.
    let drained = wait_size(&retained_path, "the retained store to drain", 60, |s| {
        s.events == 0 && s.deliveries == 0 && s.attempts == 0
    })
    .await;
    assert!(
        drained.live_bytes * 4 < kept.live_bytes,
        "live bytes: retained {drained:?}, control {kept:?}"
    );
    // The recorded rows are the table's, with no values: high_water_mark announces no
    // deletes, so key, hash and counter are all it needs.
    for s in [drained, kept] {
        assert_eq!((s.feed_rows, s.row_values), (ROWS as i64, 0), "{s:?}");
    }
    let pruned = |table: &str| format!("portico_state_pruned_total{{table=\"{table}\"}}");
    assert!(retained.metric(&pruned("events")).await >= retained_total as f64);
    assert!(retained.metric(&pruned("attempts")).await >= retained_total as f64);
    assert_eq!(control.metric(&pruned("events")).await, 0.0);
}

async fn pending_deliveries_and_young_dead_letters_are_kept_and_old_cursors_expire(kind: Kind) {
    let tickets = Tickets::new(kind);
    let ok = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let down = Receiver::start(&[
        "--fail-until-file",
        dir.path().join("never").to_str().unwrap(),
        "--status",
        "503",
    ]);
    // A receiver that never answers: each attempt stays in flight until the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let tail = format!(
        "{}{}{}",
        subscription("ok", &ok.url),
        subscription("down", &down.url),
        subscription("held", &silent_url)
    );
    let config = with_state(
        &tickets.config(CHANGES, &tail),
        "event_retention = \"1s\"\ndelivery_retention = \"1s\"\ndead_letter_retention = \"1h\"\nprune_interval = \"100ms\"",
    )
    .replace("timeout = \"5s\"", "timeout = \"60s\"");
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;

    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-01 11:00:00' WHERE ID = 'T1'");
    ok.wait("T1 updated", 20, |e| has(e, "tickets.updated", "T1"))
        .await;
    let first = app.get("/v1/tickets/changes").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["data"].as_array().unwrap().len(), 1);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-01 11:00:01' WHERE ID = 'T2'");
    ok.wait("T2 updated", 20, |e| has(e, "tickets.updated", "T2"))
        .await;
    // Both dead letters (three quick failures each) are in before the retention passes.
    listed(&app, "/admin/dead-letters?subscription=down", 2).await;

    // Both events and ok's two deliveries are pruned a second after.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = app
            .metric("portico_state_pruned_total{table=\"events\"}")
            .await;
        let deliveries = app
            .metric("portico_state_pruned_total{table=\"deliveries\"}")
            .await;
        if events >= 2.0 && deliveries >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was pruned: {events} events, {deliveries} deliveries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listing = |path: &'static str| {
        let app = &app;
        async move {
            let answer = app.get(path).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.body["data"].as_array().unwrap().clone()
        }
    };
    assert!(listing("/admin/deliveries?subscription=ok")
        .await
        .is_empty());
    // Pending deliveries are never pruned, however old.
    let held = listing("/admin/deliveries?subscription=held").await;
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|d| d["status"] == "pending"), "{held:?}");
    // Dead letters are kept for their own, longer retention.
    let dead: Vec<Value> = listing("/admin/dead-letters?subscription=down").await;
    assert_eq!(dead.len(), 2, "{dead:?}");

    // A cursor with pruned events after it is refused, never answered with a gap.
    let expired = app
        .get(&format!("/v1/tickets/changes?after={cursor}"))
        .await;
    let problem = expired.problem(410);
    assert_eq!(problem["type"], "/problems/cursor-expired");
    assert_eq!(problem["parameter"], "after");
    assert!(
        problem["detail"].as_str().unwrap().contains("after=0"),
        "{problem}"
    );
    // From the start, the oldest event kept: none, and a cursor past the pruned ones.
    let restart = app.get("/v1/tickets/changes?after=0").await;
    assert_eq!(restart.status, 200, "{}", restart.body);
    assert!(restart.body["data"].as_array().unwrap().is_empty());
    let now: i64 = restart.body["next_cursor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(now > cursor.parse::<i64>().unwrap(), "{}", restart.body);
    let resumed = app.get(&format!("/v1/tickets/changes?after={now}")).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    drop(silent);
}

/// A table whose rows come and go (a queue, a staging table): the tombstones its deletes
/// leave go once their events are pruned, so the recorded rows level off at the table's size;
/// a key created again afterwards counts on past its old sequence, with a new id.
async fn tombstones_of_a_churning_table_go_and_keys_count_on(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let config = with_state(
        &tickets.config(
            r#"{ strategy = "snapshot_diff", poll_interval = "200ms" }"#,
            &subscription("portal", &receiver.url),
        ),
        "event_retention = \"1s\"\ndelivery_retention = \"1s\"\nprune_interval = \"100ms\"",
    );
    let path = state_path(&config);
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;
    let keys = |round: usize| (0..4).map(move |i| format!("N{round}{i}"));
    for round in 0..5 {
        let rows: Vec<String> = keys(round)
            .map(|k| format!("('{k}', 'O', 'C1', 1.00, '2026-01-01 10:00:00')"))
            .collect();
        tickets.sql(&format!("INSERT INTO TICKETS VALUES {}", rows.join(", ")));
        receiver
            .wait("the round's rows created", 30, |e| {
                keys(round).all(|k| has(e, "tickets.created", &k))
            })
            .await;
        tickets.sql(&format!("DELETE FROM TICKETS WHERE ID LIKE 'N{round}%'"));
        receiver
            .wait("the round's rows deleted", 30, |e| {
                keys(round).all(|k| has(e, "tickets.deleted", &k))
            })
            .await;
    }
    // The three rows of the table are all that stays recorded.
    wait_size(&path, "the tombstones to go", 30, |s| s.feed_rows == 3).await;
    let first: Vec<Value> = receiver
        .accepted()
        .into_iter()
        .filter(|e| e["body"]["data"]["key"] == "N00")
        .collect();
    let sequences: Vec<i64> = first
        .iter()
        .map(|e| e["body"]["data"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2], "{first:?}");
    tickets.sql("INSERT INTO TICKETS VALUES ('N00', 'O', 'C1', 1.00, '2026-01-01 10:00:00')");
    let entries = receiver
        .wait("N00 created again", 30, |e| {
            received(e)
                .iter()
                .filter(|(kind, key)| kind == "tickets.created" && key == "N00")
                .count()
                == 2
        })
        .await;
    let again = entries
        .iter()
        .rfind(|e| e["outcome"] == "accepted" && e["body"]["data"]["key"] == "N00")
        .unwrap();
    assert!(
        again["body"]["data"]["sequence"].as_i64().unwrap() > 2,
        "{again}"
    );
    assert!(first.iter().all(|e| e["id"] != again["id"]), "{again}");
}

macro_rules! per_database {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() { $name(Kind::Sqlite).await }
            #[tokio::test]
            async fn postgres() { $name(Kind::Postgres).await }
        })*
    };
}

per_database!(
    the_store_levels_off_under_a_long_stream,
    tombstones_of_a_churning_table_go_and_keys_count_on,
    pending_deliveries_and_young_dead_letters_are_kept_and_old_cursors_expire,
);
