//! The SQL Server change strategies driven through the TDS fixture: the fixture plays a table
//! under Change Tracking (`change_tracking`) or with a `rowversion` column (`rowversion`),
//! answering each statement Portico sends the way SQL Server would, so the tests see the
//! statements across polls and the events that come of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::changes::{received, Receiver, SECRET};
use crate::harness::Portico;
use crate::tds::{column, Cell, Collation, Reply, Request, ResultSet, Sent, SqlType, TdsFixture};

const V2016: &str = "13.0.5026.0";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `n` of `TOP (n)`.
fn top(sql: &str) -> usize {
    let at = sql.find("TOP (").map_or(0, |i| i + 5);
    sql[at..]
        .split(')')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no TOP (n) in {sql}"))
}

fn params(request: &Request) -> Vec<Sent> {
    match request {
        Request::Rpc { params, .. } => params.clone(),
        Request::Batch { .. } => Vec::new(),
    }
}

fn int(sent: &Sent) -> i64 {
    match sent {
        Sent::Int(i) => *i,
        other => panic!("a number was expected, not {other:?}"),
    }
}

fn text(sent: &Sent) -> String {
    match sent {
        Sent::Text(t) => t.trim_end().to_string(),
        other => panic!("text was expected, not {other:?}"),
    }
}

fn error(request: &Request) -> Reply {
    Reply::Error {
        number: 208,
        message: format!("the test table does not answer {}", request.sql()),
    }
}

/// The rows of a key-order read of `dbo.JOBS` (a baseline page or an API read): `TOP (n)`,
/// after or equal to the key parameter when there is one.
fn key_order<'a, T>(
    request: &Request,
    rows: impl Iterator<Item = (&'a String, T)>,
) -> Vec<(&'a String, T)> {
    let sql = request.sql();
    let key = params(request).first().map(text);
    let equal = sql.contains("[JOB_NO] = ");
    rows.filter(|(k, _)| match &key {
        Some(key) if equal => *k == key,
        Some(key) => k.as_str() > key.as_str(),
        None => true,
    })
    .take(top(sql))
    .collect()
}

/// The configuration: `dbo.JOBS (JOB_NO char(8), STATUS char(1)[, RV rowversion])` as
/// `/v1/jobs` with `changes`, a state store in `dir`, and `tail`.
fn config(fixture: &TdsFixture, dir: &std::path::Path, changes: &str, tail: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.erp]
kind = "mssql"
connection_string = "{cs}"

[state]
path = "{state}"

[webhooks]
retry_schedule = ["0s", "300ms", "300ms"]
jitter = 0.0
allow_private = ["127.0.0.1"]
dispatch_interval = "100ms"
timeout = "5s"

[versions.v1.resources.jobs]
source = "erp"
table = "dbo.JOBS"
key = ["id"]
anonymous = true
changes = {changes}

[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
status = {{ column = "STATUS", type = "string", column_type = "char(1)", codes = {{ O = "open", H = "held", C = "closed" }} }}
{tail}
"#,
        cs = fixture.ado_string(),
        state = dir.join("state.sqlite3").display(),
    )
}

/// Waits until `found` gives something; `what` and the last `found` state are in the panic.
async fn until<T>(what: &str, seconds: u64, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of the pull feed: `(type, key, row)`.
async fn events(app: &Portico) -> Vec<(String, String, Value)> {
    let page = app.get("/v1/jobs/changes?limit=1000").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["data"]["key"].as_str().unwrap().to_string(),
                e["data"]["row"].clone(),
            )
        })
        .collect()
}

/// Waits until the pull feed holds `count` events and returns them; more fail at once.
async fn feed_of(app: &Portico, count: usize) -> Vec<(String, String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = events(app).await;
        assert!(found.len() <= count, "more than {count} events: {found:#?}");
        if found.len() == count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{count} events expected: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event(kind: &str, key: &str, row: Value) -> (String, String, Value) {
    (format!("jobs.{kind}"), key.to_string(), row)
}

/// The steps of a statement list, consecutive repeats (polls that found nothing new) once.
fn steps(requests: &[Request], step: impl Fn(&Request) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for label in requests.iter().filter_map(step) {
        if out.last() != Some(&label) {
            out.push(label);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// change_tracking

/// `dbo.JOBS` under Change Tracking: its rows, and per key the versions and operations of its
/// changes (what `CHANGETABLE(CHANGES …)` is computed from).
#[derive(Default)]
struct Tracked {
    /// `CHANGE_TRACKING_CURRENT_VERSION()`.
    current: i64,
    /// `CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.JOBS'))`: raised by the cleanup.
    min_valid: i64,
    rows: BTreeMap<String, String>,
    changes: BTreeMap<String, Vec<(i64, char)>>,
}

impl Tracked {
    /// Sets a row's status (`None`: deletes it) in a transaction of its own.
    fn change(&mut self, key: &str, status: Option<&str>) {
        self.current += 1;
        let op = match (status, self.rows.contains_key(key)) {
            (None, _) => 'D',
            (Some(_), true) => 'U',
            (Some(_), false) => 'I',
        };
        match status {
            Some(status) => self.rows.insert(key.into(), status.into()),
            None => self.rows.remove(key),
        };
        self.changes
            .entry(key.into())
            .or_default()
            .push((self.current, op));
    }

    /// `CHANGETABLE(CHANGES dbo.JOBS, last)`: each key changed since `last` once, with its
    /// latest version and the net operation, in (version, key) order.
    fn changes_since(&self, last: i64) -> Vec<(i64, String, char)> {
        let mut out: Vec<(i64, String, char)> = self
            .changes
            .iter()
            .filter_map(|(key, all)| {
                let since: Vec<&(i64, char)> = all.iter().filter(|(v, _)| *v > last).collect();
                let (first, latest) = (since.first()?, since.last()?);
                let op = match (first.1, latest.1) {
                    (_, 'D') => 'D',
                    ('I', _) => 'I',
                    _ => 'U',
                };
                Some((latest.0, key.clone(), op))
            })
            .collect();
        out.sort();
        out
    }

    fn answer(&self, request: &Request) -> Reply {
        let sql = request.sql();
        if sql == "SELECT CHANGE_TRACKING_CURRENT_VERSION()" {
            return Reply::Rows(vec![ResultSet {
                columns: vec![column("", SqlType::BigInt)],
                rows: vec![vec![Cell::Int(self.current)]],
            }]);
        }
        if sql.contains("FROM CHANGETABLE(CHANGES [dbo].[JOBS], @last)") {
            return self.changetable(request);
        }
        if sql.contains(" FROM [dbo].[JOBS]") {
            let rows = key_order(request, self.rows.iter())
                .into_iter()
                .map(|(key, status)| vec![Cell::Text(key.clone()), Cell::Text(status.clone())])
                .collect();
            return Reply::Rows(vec![ResultSet {
                columns: vec![
                    column("JOB_NO", SqlType::Char(8, Collation::Cp1252)),
                    column("STATUS", SqlType::Char(1, Collation::Cp1252)),
                ],
                rows,
            }]);
        }
        error(request)
    }

    /// The one result set of Portico's `change_tracking` batch: `@P1` is the version read
    /// from; `@P2…@P4` (version, version, key) page after a row of the same poll.
    fn changetable(&self, request: &Request) -> Reply {
        let sent = params(request);
        let last = int(&sent[0]);
        let after = (sent.len() == 4).then(|| (int(&sent[1]), text(&sent[3])));
        let mut columns = vec![
            column("JOB_NO", SqlType::Char(8, Collation::Cp1252)),
            column("STATUS", SqlType::Char(1, Collation::Cp1252)),
            column("SYS_CHANGE_OPERATION", SqlType::NChar(1)),
            column("SYS_CHANGE_VERSION", SqlType::BigInt),
            column("", SqlType::BigInt),
        ];
        if last < self.min_valid {
            // `SELECT NULL, NULL, 'X', NULL, @current`
            columns[0] = column("", SqlType::Int);
            columns[1] = column("", SqlType::Int);
            columns[2] = column("", SqlType::VarChar(1, Collation::Cp1252));
            columns[3] = column("", SqlType::Int);
            return Reply::Rows(vec![ResultSet {
                columns,
                rows: vec![vec![
                    Cell::Null,
                    Cell::Null,
                    Cell::Text("X".into()),
                    Cell::Null,
                    Cell::Int(self.current),
                ]],
            }]);
        }
        let rows = self
            .changes_since(last)
            .into_iter()
            .filter(|(version, key, _)| match &after {
                Some((v, k)) => (*version, key) > (*v, k),
                None => true,
            })
            .take(top(request.sql()))
            .map(|(version, key, op)| {
                let status = self
                    .rows
                    .get(&key)
                    .map_or(Cell::Null, |s| Cell::Text(s.clone()));
                vec![
                    Cell::Text(key),
                    status,
                    Cell::Text(op.to_string()),
                    Cell::Int(version),
                    Cell::Int(self.current),
                ]
            })
            .collect();
        Reply::Rows(vec![ResultSet { columns, rows }])
    }
}

/// What a `change_tracking` statement is: the version read, a baseline page, a CHANGETABLE read.
fn tracking_step(request: &Request) -> Option<String> {
    let sql = request.sql();
    let sent = params(request);
    if sql == "SELECT CHANGE_TRACKING_CURRENT_VERSION()" {
        return Some("version".into());
    }
    if sql.contains("CHANGETABLE(CHANGES") {
        let mut step = format!("changes since {}", int(&sent[0]));
        if sent.len() == 4 {
            step += &format!(" after ({}, {})", int(&sent[1]), text(&sent[3]));
        }
        return Some(step);
    }
    if sql.starts_with("SELECT TOP (2) [JOB_NO], [STATUS] FROM [dbo].[JOBS]") {
        return Some(match sent.first() {
            Some(key) => format!("scan after {}", text(key)),
            None => "scan".into(),
        });
    }
    None
}

/// `change_tracking` over polls: the current version fixed, the baseline recorded, then
/// CHANGETABLE read from the stored version page by page; I/U/D rows become created, updated
/// and deleted events with the rows they had (a deleted one's last known values); an expired
/// version (the cleanup passed it) re-snapshots the table and announces what changed,
/// deletes included; then CHANGETABLE again from the version of the re-snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn change_tracking_reads_changetable_across_polls_and_re_snapshots_an_expired_version() {
    let table = Arc::new(Mutex::new(Tracked {
        current: 10,
        min_valid: 1,
        ..Tracked::default()
    }));
    {
        let mut t = lock(&table);
        for key in ["J001", "J002", "J003"] {
            t.rows.insert(key.into(), "O".into());
        }
    }
    let answering = table.clone();
    let fixture = TdsFixture::start(V2016, move |r| lock(&answering).answer(r)).await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&[]);
    let subscription = format!(
        "[subscriptions.portal]\nurl = \"{}\"\nversion = \"v1\"\nevents = [\"jobs.*\"]\nsecret = \"{SECRET}\"\n",
        receiver.url
    );
    let changes = r#"{ strategy = "change_tracking", poll_interval = "200ms", page_size = 2 }"#;
    let app = Portico::spawn(&config(&fixture, dir.path(), changes, &subscription)).await;
    let polled_from = |version: i64| {
        let fixture = &fixture;
        move || {
            let label = format!("changes since {version}");
            let count = fixture
                .requests()
                .iter()
                .filter(|r| tracking_step(r).as_deref() == Some(label.as_str()))
                .count();
            (count >= 2).then_some(())
        }
    };
    until("polls from version 10", 30, polled_from(10)).await;
    assert!(
        events(&app).await.is_empty(),
        "the baseline is not announced"
    );

    // Five changes between two polls (J003 twice): three CHANGETABLE pages of two.
    {
        let mut t = lock(&table);
        t.change("J004", Some("O"));
        t.change("J001", Some("H"));
        t.change("J002", None);
        t.change("J003", Some("H"));
        t.change("J003", Some("C"));
        t.change("J005", Some("O"));
    }
    let open = |key: &str| json!({"id": key, "status": "open"});
    let expected = vec![
        event("created", "J004", open("J004")),
        event("updated", "J001", json!({"id": "J001", "status": "held"})),
        event("deleted", "J002", open("J002")),
        event("updated", "J003", json!({"id": "J003", "status": "closed"})),
        event("created", "J005", open("J005")),
    ];
    assert_eq!(feed_of(&app, 5).await, expected);
    until("polls from version 16", 30, polled_from(16)).await;

    // The cleanup passes the stored version: three changes are no longer in CHANGETABLE.
    {
        let mut t = lock(&table);
        t.change("J001", Some("C"));
        t.change("J003", None);
        t.change("J006", Some("H"));
        t.min_valid = 18;
    }
    let mut expected_after = expected.clone();
    expected_after.extend([
        event("updated", "J001", json!({"id": "J001", "status": "closed"})),
        event("created", "J006", json!({"id": "J006", "status": "held"})),
        event("deleted", "J003", json!({"id": "J003", "status": "closed"})),
    ]);
    assert_eq!(feed_of(&app, 8).await, expected_after);
    until("polls from version 19", 30, polled_from(19)).await;

    // Polling goes on from the re-snapshot's version.
    lock(&table).change("J004", Some("H"));
    expected_after.push(event(
        "updated",
        "J004",
        json!({"id": "J004", "status": "held"}),
    ));
    assert_eq!(feed_of(&app, 9).await, expected_after);
    until("polls from version 20", 30, polled_from(20)).await;

    assert_eq!(
        steps(&fixture.requests(), tracking_step),
        [
            "version",
            "scan",
            "scan after J002",
            "changes since 10",
            "changes since 10 after (12, J001)",
            "changes since 10 after (15, J003)",
            "changes since 16",
            "scan",
            "scan after J004",
            "scan after J006",
            "changes since 19",
            "changes since 20",
        ]
    );
    let read = fixture
        .requests()
        .into_iter()
        .find(|r| tracking_step(r).as_deref() == Some("changes since 10 after (12, J001)"))
        .unwrap();
    for part in [
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; DECLARE @last BIGINT = @P1;",
        "CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.JOBS'))",
        "FROM CHANGETABLE(CHANGES [dbo].[JOBS], @last) AS ct LEFT JOIN [dbo].[JOBS] AS t ON t.[JOB_NO] = ct.[JOB_NO]",
        "AND ([ct].[SYS_CHANGE_VERSION] > @P2 OR ([ct].[SYS_CHANGE_VERSION] = @P3 AND [ct].[JOB_NO] > CAST(@P4 AS varchar(8000))))",
        "COMMIT TRANSACTION;",
    ] {
        assert!(read.sql().contains(part), "{part}\nin\n{}", read.sql());
    }

    // The webhooks carry the same events, signatures verified by the receiver.
    let entries = receiver
        .wait("nine deliveries", 30, |e| received(e).len() >= 9)
        .await;
    let mut delivered = received(&entries);
    delivered.sort();
    let mut announced: Vec<(String, String)> = expected_after
        .iter()
        .map(|(kind, key, _)| (kind.clone(), key.clone()))
        .collect();
    announced.sort();
    assert_eq!(delivered, announced);
}

// ---------------------------------------------------------------------------------------------
// rowversion

/// `dbo.JOBS` with a `rowversion` column `RV`: committed rows, and the writes of one
/// transaction still open (their rowversions are given out, their rows not yet visible).
#[derive(Default)]
struct Versioned {
    /// `@@DBTS`: the last rowversion given out.
    dbts: i64,
    /// Committed rows: key → (status, rowversion).
    rows: BTreeMap<String, (String, i64)>,
    /// The open transaction's writes: key → (status, rowversion).
    open: BTreeMap<String, (String, i64)>,
    /// A write committed right after the starting point is read, while the baseline is read.
    after_start: Option<(String, String)>,
    /// The open transaction commits while the next read of changes runs: after the rows are
    /// chosen, before the rest of the statement (a second `MIN_ACTIVE_ROWVERSION()`) runs.
    commit_during_read: bool,
}

impl Versioned {
    /// Sets a row's status in a transaction of its own.
    fn write(&mut self, key: &str, status: &str) {
        self.dbts += 1;
        self.rows.insert(key.into(), (status.into(), self.dbts));
    }

    /// Sets a row's status in the open transaction.
    fn write_open(&mut self, key: &str, status: &str) {
        self.dbts += 1;
        self.open.insert(key.into(), (status.into(), self.dbts));
    }

    fn commit(&mut self) {
        let open = std::mem::take(&mut self.open);
        self.rows.extend(open);
    }

    /// `MIN_ACTIVE_ROWVERSION()`: the lowest rowversion of an open transaction, else the next.
    fn min_active(&self) -> i64 {
        self.open
            .values()
            .map(|(_, rv)| *rv)
            .min()
            .unwrap_or(self.dbts + 1)
    }

    fn answer(&mut self, request: &Request) -> Reply {
        let sql = request.sql();
        if sql == "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT)" {
            let reply = Reply::Rows(vec![ResultSet {
                columns: vec![column("", SqlType::BigInt)],
                rows: vec![vec![Cell::Int(self.min_active())]],
            }]);
            if let Some((key, status)) = self.after_start.take() {
                self.write(&key, &status);
            }
            return reply;
        }
        let mut columns = vec![
            column("JOB_NO", SqlType::Char(8, Collation::Cp1252)),
            column("STATUS", SqlType::Char(1, Collation::Cp1252)),
        ];
        if is_rowversion_read(sql) {
            // Past the stored rowversion, below the oldest open transaction's.
            let from = int(&params(request)[0]);
            let inclusive = sql.contains("[RV] >= ");
            let bounded = sql.contains("AND [RV] < MIN_ACTIVE_ROWVERSION()")
                || sql.contains("AND [RV] < @upper");
            let upper = match bounded {
                true => self.min_active(),
                false => i64::MAX,
            };
            let mut found: Vec<(&String, &(String, i64))> = self
                .rows
                .iter()
                .filter(|(_, (_, rv))| (*rv > from || inclusive && *rv == from) && *rv < upper)
                .collect();
            found.sort_by_key(|(_, (_, rv))| *rv);
            columns.extend([column("", SqlType::BigInt), column("", SqlType::BigInt)]);
            let found: Vec<(String, String, i64)> = found
                .into_iter()
                .take(top(sql))
                .map(|(key, (status, rv))| (key.clone(), status.clone(), *rv))
                .collect();
            if std::mem::take(&mut self.commit_during_read) {
                self.commit();
            }
            // The bound read once into @upper, or MIN_ACTIVE_ROWVERSION() read again now.
            let reported = match sql.contains("CAST(@upper AS BIGINT)") {
                true => upper,
                false => self.min_active(),
            };
            let rows = found
                .into_iter()
                .map(|(key, status, rv)| {
                    vec![
                        Cell::Text(key),
                        Cell::Text(status),
                        Cell::Int(rv),
                        Cell::Int(reported),
                    ]
                })
                .collect();
            return Reply::Rows(vec![ResultSet { columns, rows }]);
        }
        if sql.contains(" FROM [dbo].[JOBS]") {
            let with_rv = sql.contains("[RV]");
            if with_rv {
                columns.push(column("RV", SqlType::RowVersion));
            }
            let rows = key_order(request, self.rows.iter())
                .into_iter()
                .map(|(key, (status, rv))| {
                    let mut row = vec![Cell::Text(key.clone()), Cell::Text(status.clone())];
                    if with_rv {
                        row.push(Cell::Bytes(rv.to_be_bytes().to_vec()));
                    }
                    row
                })
                .collect();
            return Reply::Rows(vec![ResultSet { columns, rows }]);
        }
        error(request)
    }
}

/// A `rowversion` read of changes (the bound as a second column: read once, or read again).
fn is_rowversion_read(sql: &str) -> bool {
    [
        "CAST(@upper AS BIGINT) FROM",
        "CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) FROM",
    ]
    .iter()
    .any(|form| sql.contains(form))
}

/// What a `rowversion` statement is: the starting point, a baseline page, a read of changes
/// from the stored rowversion or after the last row of the poll's previous page.
fn rowversion_step(request: &Request) -> Option<String> {
    let sql = request.sql();
    let sent = params(request);
    if sql == "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT)" {
        return Some("start".into());
    }
    if is_rowversion_read(sql) {
        let from = int(&sent[0]);
        return Some(match sql.contains("[RV] >= ") {
            true => format!("rows from {from}"),
            false => format!("rows after {from}"),
        });
    }
    if sql.starts_with("SELECT TOP (2) [JOB_NO], [STATUS], [RV] FROM [dbo].[JOBS]") {
        return Some(match sent.first() {
            Some(key) => format!("scan after {}", text(key)),
            None => "scan".into(),
        });
    }
    None
}

/// How many reads of `step` the fixture has received.
fn count(fixture: &TdsFixture, step: &str) -> usize {
    fixture
        .requests()
        .iter()
        .filter(|r| rowversion_step(r).as_deref() == Some(step))
        .count()
}

/// Waits until the fixture has received `more` reads of `step` beyond `seen`.
async fn reads(fixture: &TdsFixture, step: &str, seen: usize, more: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(fixture, step) < seen + more {
        assert!(
            Instant::now() < deadline,
            "{more} more reads of `{step}` expected; the reads were {:#?}",
            steps(&fixture.requests(), rowversion_step)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn versioned(rows: &[(&str, &str)]) -> Arc<Mutex<Versioned>> {
    let mut table = Versioned::default();
    for (key, status) in rows {
        table.write(key, status);
    }
    Arc::new(Mutex::new(table))
}

const ROWVERSION: &str =
    r#"{ strategy = "rowversion", column = "RV", poll_interval = "200ms", page_size = 2 }"#;

/// `rowversion` over polls: the starting point is `MIN_ACTIVE_ROWVERSION()`, each poll reads
/// from the stored rowversion up to the oldest open transaction's; a row written by a
/// transaction still open holds the mark back, so rows committed after it (with higher
/// rowversions) wait too, and all are read once it commits. A deleted row is never announced
/// (the strategy cannot see it); inserted again, it is an update of the row the feed knows.
#[tokio::test(flavor = "multi_thread")]
async fn rowversion_reads_below_min_active_rowversion_and_waits_for_open_transactions() {
    let table = versioned(&[("J001", "O"), ("J002", "O"), ("J003", "O")]);
    let answering = table.clone();
    let fixture = TdsFixture::start(V2016, move |r| lock(&answering).answer(r)).await;
    let dir = tempfile::tempdir().unwrap();
    let app = Portico::spawn(&config(&fixture, dir.path(), ROWVERSION, "")).await;
    reads(&fixture, "rows from 4", 0, 2).await;
    assert!(
        events(&app).await.is_empty(),
        "the baseline is not announced"
    );

    // J002 is written by a transaction still open (rowversion 5); J004 and J003 commit after it.
    {
        let mut t = lock(&table);
        t.write("J001", "H");
        t.write_open("J002", "H");
        t.write("J004", "O");
        t.write("J003", "C");
        assert_eq!(t.min_active(), 5);
    }
    let held = |key: &str| json!({"id": key, "status": "held"});
    let mut expected = vec![event("updated", "J001", held("J001"))];
    assert_eq!(feed_of(&app, 1).await, expected);
    // Polls go on from 5, not past it: J004 (6) and J003 (7) are not read yet.
    reads(&fixture, "rows from 5", 0, 3).await;
    assert_eq!(events(&app).await, expected);

    lock(&table).commit();
    expected.extend([
        event("updated", "J002", held("J002")),
        event("created", "J004", json!({"id": "J004", "status": "open"})),
        event("updated", "J003", json!({"id": "J003", "status": "closed"})),
    ]);
    assert_eq!(feed_of(&app, 4).await, expected);

    // A delete is not seen; the same key inserted again is an update of the row it knew.
    reads(&fixture, "rows from 8", 0, 1).await;
    lock(&table).rows.remove("J004");
    let seen = count(&fixture, "rows from 8");
    reads(&fixture, "rows from 8", seen, 3).await;
    assert_eq!(events(&app).await, expected, "no event for the delete");
    lock(&table).write("J004", "H");
    expected.push(event("updated", "J004", held("J004")));
    assert_eq!(feed_of(&app, 5).await, expected);
    reads(&fixture, "rows from 9", 0, 1).await;

    assert_eq!(
        steps(&fixture.requests(), rowversion_step),
        [
            "start",
            "scan",
            "scan after J002",
            "rows from 4",
            "rows from 5",
            "rows after 6",
            "rows from 8",
            "rows from 9",
        ]
    );
    let read = fixture
        .requests()
        .into_iter()
        .find(|r| rowversion_step(r).as_deref() == Some("rows from 5"))
        .unwrap();
    assert_eq!(
        read.sql(),
        "SET NOCOUNT ON; DECLARE @upper BINARY(8) = MIN_ACTIVE_ROWVERSION(); \
         SELECT TOP (2) [JOB_NO], [STATUS], CAST([RV] AS BIGINT), CAST(@upper AS BIGINT) \
         FROM [dbo].[JOBS] WHERE [RV] >= CAST(CAST(@P1 AS BIGINT) AS BINARY(8)) \
         AND [RV] < @upper ORDER BY [RV]"
    );
}

/// The mark a read leaves is the bound it read below: a transaction that commits while the
/// read runs (after its rows were chosen) must not carry the mark past its rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_committing_during_a_read_is_not_passed_by_the_mark() {
    let table = versioned(&[("J001", "O"), ("J002", "O"), ("J003", "O")]);
    let answering = table.clone();
    let fixture = TdsFixture::start(V2016, move |r| lock(&answering).answer(r)).await;
    let dir = tempfile::tempdir().unwrap();
    let app = Portico::spawn(&config(&fixture, dir.path(), ROWVERSION, "")).await;
    reads(&fixture, "rows from 4", 0, 2).await;
    // J001 commits (5); J002 is written by a transaction still open (6), J003 after it (7).
    // The open transaction commits while the next read runs.
    {
        let mut t = lock(&table);
        t.write("J001", "H");
        t.write_open("J002", "H");
        t.write("J003", "C");
        t.commit_during_read = true;
    }
    let held = |key: &str| json!({"id": key, "status": "held"});
    let expected = vec![
        event("updated", "J001", held("J001")),
        event("updated", "J002", held("J002")),
        event("updated", "J003", json!({"id": "J003", "status": "closed"})),
    ];
    assert_eq!(feed_of(&app, 3).await, expected);
}

/// A resource that shows the `rowversion` column (as the example configuration does): a poll
/// pages on past a full page, events show the column as the resource reads it (hex), and a row
/// written while the baseline is read, recorded by it, is not announced again.
#[tokio::test(flavor = "multi_thread")]
async fn a_rowversion_column_the_resource_shows_pages_and_reads_as_the_resource_does() {
    let table = versioned(&[("J001", "O"), ("J002", "O"), ("J003", "O")]);
    lock(&table).after_start = Some(("J003".into(), "C".into()));
    let answering = table.clone();
    let fixture = TdsFixture::start(V2016, move |r| lock(&answering).answer(r)).await;
    let dir = tempfile::tempdir().unwrap();
    let shown = r#"version = { column = "RV", type = "string", column_type = "rowversion" }"#;
    let app = Portico::spawn(&config(&fixture, dir.path(), ROWVERSION, shown)).await;
    // J003 (rowversion 4) is in the baseline and in the first read from 4: nothing to announce.
    reads(&fixture, "rows from 5", 0, 2).await;
    assert!(events(&app).await.is_empty(), "{:#?}", events(&app).await);

    {
        let mut t = lock(&table);
        t.write("J001", "H");
        t.write("J002", "H");
        t.write("J004", "O");
    }
    let row = |key: &str, status: &str, rv: u8| json!({"id": key, "status": status, "version": format!("{rv:016X}")});
    let expected = vec![
        event("updated", "J001", row("J001", "held", 5)),
        event("updated", "J002", row("J002", "held", 6)),
        event("created", "J004", row("J004", "open", 7)),
    ];
    assert_eq!(feed_of(&app, 3).await, expected);
    reads(&fixture, "rows from 8", 0, 1).await;
    assert_eq!(
        steps(&fixture.requests(), rowversion_step),
        [
            "start",
            "scan",
            "scan after J002",
            "rows from 4",
            "rows from 5",
            "rows after 6",
            "rows from 8",
        ]
    );
    let read = app.get("/v1/jobs/J004").await;
    assert_eq!(
        read.body, expected[2].2,
        "the event's row is the row a read gives"
    );
}
