//! The database's clock and the feeds: a row stamped in the future does not blind a
//! `high_water_mark` feed.

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

/// The value of the metric line that starts with `series` (labels included), if present.
async fn metric(app: &Portico, series: &str) -> Option<i64> {
    app.get_text("/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
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
        metric(
            &app,
            "portico_change_future_stamps_total{feed=\"legacy.TICKETS\"}"
        )
        .await,
        Some(2)
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
