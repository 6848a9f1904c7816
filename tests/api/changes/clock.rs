//! The database's clock and the feeds: a row stamped in the future does not blind a
//! `high_water_mark` feed, and a feed that cannot poll shows a growing lag and, past
//! `[server] ready_max_feed_lag`, makes `/readyz` fail.

use super::*;

/// A `high_water_mark` feed that re-reads one second back.
const SHORT_LAG: &str =
    r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms", lag = "1s" }"#;

/// The database's own local time `hours` from now, in the dialect of `kind`.
fn db_time(kind: Kind, hours: i32) -> String {
    match kind {
        Kind::Sqlite => format!("datetime('now', 'localtime', '{hours:+} hours')"),
        Kind::Postgres => format!("LOCALTIMESTAMP(0) + interval '{hours} hours'"),
        _ => format!("NOW() + INTERVAL {hours} HOUR"),
    }
}

fn count(entries: &[Value], kind: &str, key: &str) -> usize {
    received(entries)
        .iter()
        .filter(|(t, k)| t == kind && k == key)
        .count()
}

async fn a_future_stamp_does_not_blind_the_feed(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let app =
        Portico::spawn(&tickets.config(SHORT_LAG, &subscription("portal", &receiver.url))).await;
    wait_polled(&app.base).await;
    let now = db_time(kind, 0);

    // An hour ahead of the database's clock: announced like any change.
    tickets.sql(&format!(
        "UPDATE TICKETS SET STATUS = 'C', UPDATED = {} WHERE ID = 'T1'",
        db_time(kind, 1)
    ));
    receiver
        .wait("T1 stamped an hour ahead", 30, |e| {
            has(e, "tickets.updated", "T1")
        })
        .await;
    // Past the lag window, every poll starts from a mark taken after the future row was read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = ["N1", "N2", "N3", "N4", "N5"];
    for id in fresh {
        tickets.sql(&format!(
            "INSERT INTO TICKETS VALUES ('{id}', 'O', 'C3', 1.00, {now})"
        ));
    }
    tickets.sql(&format!(
        "UPDATE TICKETS SET STATUS = 'C', UPDATED = {now} WHERE ID = 'T2'"
    ));
    receiver
        .wait("the normally stamped changes after it", 30, |e| {
            fresh.iter().all(|id| has(e, "tickets.created", id)) && has(e, "tickets.updated", "T2")
        })
        .await;

    // A sentinel stamp does not blind it for good either.
    tickets.sql("UPDATE TICKETS SET UPDATED = '9999-12-31 23:59:59' WHERE ID = 'T3'");
    receiver
        .wait("T3 stamped 9999-12-31", 30, |e| {
            has(e, "tickets.updated", "T3")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tickets.sql(&format!(
        "UPDATE TICKETS SET AMOUNT = 1.00, UPDATED = {now} WHERE ID = 'T2'"
    ));
    receiver
        .wait("T2's second update after the sentinel", 30, |e| {
            count(e, "tickets.updated", "T2") == 2
        })
        .await;
    // Setting the future stamp back is a change like any other.
    tickets.sql(&format!(
        "UPDATE TICKETS SET UPDATED = {now} WHERE ID = 'T1'"
    ));
    receiver
        .wait("T1 stamped back", 30, |e| {
            count(e, "tickets.updated", "T1") == 2
        })
        .await;

    // Future rows are read again by every poll, but announced once per change.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let entries = receiver.entries();
    assert!(
        entries.iter().all(|e| e["outcome"] == "accepted"),
        "{entries:#?}"
    );
    let mut got = received(&entries);
    got.sort();
    let mut expected: Vec<(String, String)> = fresh
        .iter()
        .map(|id| ("tickets.created".to_string(), id.to_string()))
        .chain(
            ["T1", "T1", "T2", "T2", "T3"]
                .iter()
                .map(|id| ("tickets.updated".to_string(), id.to_string())),
        )
        .collect();
    expected.sort();
    assert_eq!(got, expected, "every change once");
    // The hour-ahead stamp and the sentinel were counted (the skew allows 5 minutes).
    assert_eq!(
        app.metric("portico_change_future_stamps_total{feed=\"legacy.TICKETS\"}")
            .await,
        2.0
    );
}

mod future_stamps {
    use super::*;
    #[tokio::test]
    async fn sqlite() {
        a_future_stamp_does_not_blind_the_feed(Kind::Sqlite).await
    }
    #[tokio::test]
    async fn postgres() {
        a_future_stamp_does_not_blind_the_feed(Kind::Postgres).await
    }
    #[tokio::test]
    async fn mariadb() {
        a_future_stamp_does_not_blind_the_feed(Kind::MariaDb).await
    }
}

/// Waits until `/readyz` answers `status`; returns its body.
async fn readiness(app: &Portico, status: u16, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.get("/readyz").await;
        if answer.status == status {
            return answer.body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /readyz answered {} {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_feed_that_cannot_poll_falls_behind_and_is_not_ready(kind: Kind) {
    let tickets = Tickets::new(kind);
    let config = tickets.config(SHORT_LAG, "").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nready_max_feed_lag = \"3s\"",
    );
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;
    let lag = "portico_feed_lag_seconds{feed=\"legacy.TICKETS\"}";
    let healthy = readiness(&app, 200, "a feed that polls").await;
    assert_eq!(
        healthy["feeds"]["legacy.TICKETS"]["status"], "ok",
        "{healthy}"
    );

    // Every poll fails from now on; the source itself still answers.
    tickets.sql("ALTER TABLE TICKETS RENAME TO TICKETS_AWAY");
    let behind = readiness(&app, 503, "a feed that cannot poll").await;
    assert_eq!(behind["status"], "unavailable", "{behind}");
    assert_eq!(behind["sources"]["legacy"], "ok", "{behind}");
    assert_eq!(behind["feeds"]["legacy.TICKETS"]["status"], "behind");
    assert!(
        behind["feeds"]["legacy.TICKETS"]["lag_seconds"]
            .as_i64()
            .unwrap()
            >= 3
    );
    // The lag keeps growing while the polls fail.
    let first = app.metric(lag).await;
    assert!(first >= 3.0, "{first}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric(lag).await <= first {
        assert!(Instant::now() < deadline, "the lag stayed at {first}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        app.metric("portico_change_poll_errors_total{feed=\"legacy.TICKETS\"}")
            .await
            > 0.0
    );

    // Polls succeed again: ready again, the lag back under the bound.
    tickets.sql("ALTER TABLE TICKETS_AWAY RENAME TO TICKETS");
    let recovered = readiness(&app, 200, "a feed that polls again").await;
    assert_eq!(recovered["feeds"]["legacy.TICKETS"]["status"], "ok");
}

mod feed_lag {
    use super::*;
    #[tokio::test]
    async fn sqlite() {
        a_feed_that_cannot_poll_falls_behind_and_is_not_ready(Kind::Sqlite).await
    }
    #[tokio::test]
    async fn postgres() {
        a_feed_that_cannot_poll_falls_behind_and_is_not_ready(Kind::Postgres).await
    }
}
