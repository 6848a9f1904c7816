//! What `high_water_mark` cannot see (an update that keeps the stamp, a delete, a row
//! committed behind the mark) is missed without reconciliation and arrives exactly once with
//! it, made directly in the database on SQLite, PostgreSQL and MariaDB.

use super::*;

const FEED: &str = "legacy.TICKETS";

fn changes(reconcile: bool) -> String {
    let interval = if reconcile {
        ", reconcile_interval = \"1s\""
    } else {
        ""
    };
    // Two rows a page: a pass spans several polls, with the mark's reads in between.
    format!(
        "{{ strategy = \"high_water_mark\", column = \"UPDATED\", poll_interval = \"200ms\", \
         lag = \"1s\", page_size = 2{interval} }}"
    )
}

/// A subscription to every kind by name (`tickets.deleted` is refused where no delete can be
/// seen).
fn every_kind(url: &str, reconcile: bool) -> String {
    let events = if reconcile {
        r#"["tickets.created", "tickets.updated", "tickets.deleted"]"#
    } else {
        r#"["tickets.*"]"#
    };
    format!(
        "[subscriptions.portal]\nurl = \"{url}\"\nversion = \"v1\"\nevents = {events}\nsecret = \"{SECRET}\"\n"
    )
}

fn passes() -> String {
    format!("portico_change_reconcile_passes_total{{feed=\"{FEED}\"}}")
}

fn reconciled(kind: &str) -> String {
    format!("portico_change_reconciled_total{{feed=\"{FEED}\",kind=\"{kind}\"}}")
}

/// Waits until `passes` more reconciliation passes than now have completed.
async fn wait_passes(app: &Portico, passes_more: f64) {
    let target = app.metric(&passes()).await + passes_more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric(&passes()).await < target {
        assert!(
            Instant::now() < deadline,
            "no {passes_more} more reconciliation passes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The changes the mark cannot see: T1's status without a new stamp, T2 deleted, T0 inserted
/// with a stamp long behind the mark (a transaction open longer than `lag`); and T5 inserted
/// normally, which the mark sees.
fn change_behind_the_mark(tickets: &Tickets) {
    tickets.sql("UPDATE TICKETS SET STATUS = 'C' WHERE ID = 'T1'");
    tickets.sql("DELETE FROM TICKETS WHERE ID = 'T2'");
    tickets.sql("INSERT INTO TICKETS VALUES ('T0', 'O', 'C3', 1.00, '2025-12-31 09:00:00')");
    tickets.sql("INSERT INTO TICKETS VALUES ('T5', 'O', 'C1', 2.00, '2026-01-01 12:00:00')");
}

fn sorted(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(t, k)| (t.to_string(), k.to_string()))
        .collect();
    pairs.sort();
    pairs
}

/// Event ids of the pull feed, every page.
async fn pulled(app: &Portico) -> Vec<String> {
    let (mut ids, mut path) = (Vec::new(), "/v1/tickets/changes?limit=2".to_string());
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        ids.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap_or_default().to_string()),
        );
        if page.body["has_more"] != true {
            return ids;
        }
        let cursor = page.body["next_cursor"].as_str().unwrap();
        path = format!("/v1/tickets/changes?limit=2&after={cursor}");
    }
}

async fn the_mark_alone_misses_them(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let config = tickets.config(&changes(false), &every_kind(&receiver.url, false));
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;
    change_behind_the_mark(&tickets);
    receiver
        .wait("T5 created", 20, |e| has(e, "tickets.created", "T5"))
        .await;
    // A later change the mark sees: the polls after the misses have run.
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-01 12:00:01' WHERE ID = 'T5'");
    let entries = receiver
        .wait("T5 updated", 20, |e| has(e, "tickets.updated", "T5"))
        .await;
    let mut got = received(&entries);
    got.sort();
    assert_eq!(
        got,
        sorted(&[("tickets.created", "T5"), ("tickets.updated", "T5")]),
        "without reconciliation T1's unstamped update, T2's delete and the late T0 are lost"
    );
    assert_eq!(pulled(&app).await.len(), 2);
    assert_eq!(app.metric(&passes()).await, 0.0);
}

async fn reconciliation_finds_them_once(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let config = tickets.config(&changes(true), &every_kind(&receiver.url, true));
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;
    change_behind_the_mark(&tickets);
    let entries = receiver
        .wait("T1 updated, T2 deleted, T0 and T5 created", 30, |e| {
            has(e, "tickets.updated", "T1")
                && has(e, "tickets.deleted", "T2")
                && has(e, "tickets.created", "T0")
                && has(e, "tickets.created", "T5")
        })
        .await;
    let row = |kind: &str, key: &str| {
        entries
            .iter()
            .find(|e| e["body"]["type"] == kind && e["body"]["data"]["key"] == key)
            .map(|e| e["body"]["data"]["row"].clone())
            .unwrap()
    };
    assert_eq!(row("tickets.updated", "T1")["status"], "closed");
    assert_eq!(
        row("tickets.deleted", "T2")["amount"],
        "20.00",
        "a deleted row carries its last known values"
    );
    assert_eq!(
        row("tickets.created", "T0")["updated_at"],
        "2025-12-31T09:00:00"
    );

    // A delete found after those: later passes, and the mark's polls between their pages,
    // announce nothing twice.
    tickets.sql("DELETE FROM TICKETS WHERE ID = 'T3'");
    receiver
        .wait("T3 deleted", 30, |e| has(e, "tickets.deleted", "T3"))
        .await;
    wait_passes(&app, 2.0).await;
    let entries = receiver.entries();
    assert!(
        entries.iter().all(|e| e["outcome"] == "accepted"),
        "{entries:#?}"
    );
    let mut got = received(&entries);
    got.sort();
    assert_eq!(
        got,
        sorted(&[
            ("tickets.created", "T0"),
            ("tickets.created", "T5"),
            ("tickets.deleted", "T2"),
            ("tickets.deleted", "T3"),
            ("tickets.updated", "T1"),
        ]),
        "each change once, T5 (seen by the mark and by reconciliation) too"
    );
    // The pull feed holds the same events.
    let mut ids = pulled(&app).await;
    ids.sort();
    let mut delivered: Vec<String> = entries
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    delivered.sort();
    assert_eq!(ids, delivered);
    // What the mark missed is counted; T5 only when a pass read it before the mark did.
    assert_eq!(app.metric(&reconciled("updated")).await, 1.0);
    assert_eq!(app.metric(&reconciled("deleted")).await, 2.0);
    let created = app.metric(&reconciled("created")).await;
    assert!((1.0..=2.0).contains(&created), "{created}");
}

/// The feed's position as the state store holds it.
fn stored_position(tickets: &Tickets) -> Value {
    let path = tickets.dir.path().join("state.sqlite3");
    let store =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    store.busy_timeout(Duration::from_secs(5)).unwrap();
    let text: String = store
        .query_row(
            "SELECT position FROM feed_cursors WHERE feed = ?1",
            [FEED],
            |r| r.get(0),
        )
        .unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The number of the pass under way once it has read its first page (`None`: none is).
fn pass_past_its_first_page(position: &Value) -> Option<i64> {
    let reconcile = &position["reconcile"];
    (reconcile["running"] == true && !reconcile["after"].is_null())
        .then(|| position["pass"].as_i64())
        .flatten()
}

async fn rows_the_mark_records_during_a_pass_are_not_swept(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    // One row a page: a pass takes several polls.
    let changes = changes(true).replace("page_size = 2", "page_size = 1");
    let app = Portico::spawn(&tickets.config(&changes, &every_kind(&receiver.url, true))).await;
    wait_polled(&app.base).await;
    let mut mid_pass = Vec::new();
    for i in 0..10 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let pass = loop {
            if let Some(pass) = pass_past_its_first_page(&stored_position(&tickets)) {
                break pass;
            }
            assert!(
                Instant::now() < deadline,
                "no reconciliation pass under way"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // A key before every other one: the pass under way has read past it, and only the
        // mark records it.
        let key = format!("A{}", 9 - i);
        tickets.sql(&format!(
            "INSERT INTO TICKETS VALUES ('{key}', 'O', 'C1', 1.00, '2026-01-01 12:00:{i:02}')"
        ));
        receiver
            .wait(&format!("{key} created"), 20, |e| {
                has(e, "tickets.created", &key)
            })
            .await;
        if pass_past_its_first_page(&stored_position(&tickets)) == Some(pass) {
            mid_pass.push(key);
            if mid_pass.len() == 2 {
                break;
            }
        }
    }
    assert!(
        !mid_pass.is_empty(),
        "the mark never recorded a row in the middle of a pass"
    );
    // The passes that were under way end, and one more: no row the mark recorded is swept.
    wait_passes(&app, 2.0).await;
    let got = received(&receiver.entries());
    assert!(
        got.iter().all(|(kind, _)| kind == "tickets.created"),
        "{mid_pass:?} recorded mid-pass: {got:?}"
    );
    let mut keys: Vec<&str> = got.iter().map(|(_, key)| key.as_str()).collect();
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count, "each created once: {got:?}");
}

/// A reconciliation page that keeps failing (here an old row the view cannot compute, which
/// only the pass reads) is counted on its own; the mark's polls go on: they deliver, count no
/// error, and the feed's lag stays at about the poll interval.
#[tokio::test]
async fn a_failing_reconciliation_page_does_not_stall_the_feed() {
    let tickets = Tickets::new(Kind::Postgres);
    // TICKETS becomes a view whose AMOUNT divides by zero for T0.
    tickets.sql("ALTER TABLE TICKETS RENAME TO tickets_base");
    tickets.sql(
        "CREATE VIEW TICKETS AS SELECT ID, STATUS, CUST, \
         AMOUNT / CASE WHEN ID = 'T0' THEN 0 ELSE 1 END AS AMOUNT, UPDATED FROM tickets_base",
    );
    let receiver = Receiver::start(&[]);
    let config = tickets.config(&changes(true), &every_kind(&receiver.url, true));
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;
    // The counters an alert watches exist at 0 before anything goes wrong.
    let text = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "portico_change_reconcile_errors_total",
        "portico_change_poll_errors_total",
        "portico_change_future_stamps_total",
    ] {
        let line = format!("{series}{{feed=\"{FEED}\"}} 0");
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    // Behind the mark: only a reconciliation page reads it, and fails.
    tickets.sql("INSERT INTO tickets_base VALUES ('T0', 'O', 'C3', 1.00, '2025-12-31 09:00:00')");
    let errors = format!("portico_change_reconcile_errors_total{{feed=\"{FEED}\"}}");
    let poll_errors = format!("portico_change_poll_errors_total{{feed=\"{FEED}\"}}");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Three failures, counted one way or the other.
    while app.metric(&errors).await + app.metric(&poll_errors).await < 3.0 {
        assert!(Instant::now() < deadline, "no failing reconciliation page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tickets.sql(
        "UPDATE tickets_base SET STATUS = 'C', UPDATED = '2026-01-01 12:00:00' WHERE ID = 'T1'",
    );
    receiver
        .wait("T1 updated", 30, |e| has(e, "tickets.updated", "T1"))
        .await;
    assert_eq!(app.metric(&poll_errors).await, 0.0, "failed polls");
    assert!(app.metric(&errors).await >= 3.0);
    let lag = format!("portico_feed_lag_seconds{{feed=\"{FEED}\"}}");
    let lag = app.metric(&lag).await;
    assert!(lag < 5.0, "the feed's lag grew to {lag} s");
}

macro_rules! per_database {
    ($($database:ident: $kind:expr),* $(,)?) => {
        $(mod $database {
            use super::*;
            #[tokio::test]
            async fn without_reconciliation_the_mark_misses_them() {
                the_mark_alone_misses_them($kind).await
            }
            #[tokio::test]
            async fn reconciliation_announces_each_once() {
                reconciliation_finds_them_once($kind).await
            }
            #[tokio::test]
            async fn rows_the_mark_records_during_a_pass_count_as_seen() {
                rows_the_mark_records_during_a_pass_are_not_swept($kind).await
            }
        })*
    };
}

per_database!(sqlite: Kind::Sqlite, postgres: Kind::Postgres, mariadb: Kind::MariaDb);
