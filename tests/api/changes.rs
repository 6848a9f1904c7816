//! Change feeds and webhooks against real databases: rows changed directly in the database
//! (not through Portico) arrive at a receiver that verifies every signature with the
//! `standardwebhooks` library from PyPI; retries, dead letters, resend, the SSRF guard, the
//! pull feed, and a SIGKILL in the middle of 5,000 deliveries.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odbc_api::ConnectionOptions;
use serde_json::{json, Value};

use crate::fixture::Kind;
use crate::harness::{execute, fresh_database, Portico};
use crate::servers::free_port;

mod clock;
mod reconcile;

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn repo(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The test receiver (tests/api/support/webhook_receiver.py) and its log.
pub(crate) struct Receiver {
    child: Child,
    pub(crate) url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub(crate) fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        let python = repo(".venv/bin/python");
        assert!(
            python.exists(),
            "run `bash scripts/install-deps.sh test` (.venv)"
        );
        let mut child = Command::new(python)
            .arg(repo("tests/api/support/webhook_receiver.py"))
            .args(["--secret", SECRET, "--log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .expect("receiver address");
        Self {
            child,
            url: format!("http://{address}/hook"),
            log,
            _dir: dir,
        }
    }

    pub(crate) fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub(crate) fn accepted(&self) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e["outcome"] == "accepted")
            .collect()
    }

    /// Waits until `done` holds for the log; the log on timeout is in the panic message.
    pub(crate) async fn wait(
        &self,
        what: &str,
        seconds: u64,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let entries = self.entries();
            if done(&entries) {
                return entries;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log: {entries:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `type` and key of every accepted delivery.
pub(crate) fn received(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .map(|e| {
            (
                e["body"]["type"].as_str().unwrap_or_default().to_string(),
                e["body"]["data"]["key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

pub(crate) fn has(entries: &[Value], kind: &str, key: &str) -> bool {
    received(entries).contains(&(kind.to_string(), key.to_string()))
}

/// A fresh database with `TICKETS`, three rows in it.
pub(crate) struct Tickets {
    connection_string: String,
    kind: Kind,
    dir: tempfile::TempDir,
}

impl Tickets {
    pub(crate) fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let connection_string = fresh_database(kind, dir.path());
        let timestamp = if kind == Kind::MariaDb {
            "DATETIME"
        } else {
            "TIMESTAMP"
        };
        let tickets = Self {
            connection_string,
            kind,
            dir,
        };
        tickets.sql(&format!(
            "CREATE TABLE TICKETS (ID CHAR(6) NOT NULL PRIMARY KEY, STATUS CHAR(1) NOT NULL, \
             CUST CHAR(6) NOT NULL, AMOUNT DECIMAL(9,2), UPDATED {timestamp} NOT NULL)"
        ));
        tickets.sql(
            "INSERT INTO TICKETS VALUES ('T1', 'O', 'C1', 10.50, '2026-01-01 10:00:01'), \
             ('T2', 'O', 'C2', 20.00, '2026-01-01 10:00:02'), ('T3', 'O', 'C1', NULL, '2026-01-01 10:00:03')",
        );
        tickets
    }

    /// Runs `sql` directly; PostgreSQL gets the upper-case names quoted (Portico quotes them).
    pub(crate) fn sql(&self, sql: &str) {
        let mut text = sql.to_string();
        if self.kind == Kind::Postgres {
            text = quote_words(
                sql,
                &["TICKETS", "ID", "STATUS", "CUST", "AMOUNT", "UPDATED"],
            );
        }
        execute(&self.connection_string, &text);
    }

    /// The configuration: `TICKETS` as `/v1/tickets` with `changes`, `[webhooks]` and `tail`.
    pub(crate) fn config(&self, changes: &str, tail: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[sources.legacy]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{cs}"

[state]
path = "{state}"

[webhooks]
retry_schedule = ["0s", "300ms", "300ms"]
jitter = 0.0
allow_private = ["127.0.0.1"]
dispatch_interval = "100ms"
timeout = "5s"

[versions.v1.resources.tickets]
source = "legacy"
table = "TICKETS"
key = ["id"]
anonymous = true
cache_ttl = "60s"
changes = {changes}

[versions.v1.resources.tickets.fields]
# SQLite stores the keys unpadded: compared as VARCHAR, trimmed where CHAR pads them.
id = {{ column = "ID", type = "string", column_type = "varchar(6)", trim = true }}
status = {{ column = "STATUS", type = "string", codes = {{ O = "open", C = "closed" }} }}
customer = {{ column = "CUST", type = "string", column_type = "varchar(6)", trim = true }}
amount = {{ column = "AMOUNT", type = "decimal", scale = 2 }}
updated_at = {{ column = "UPDATED", type = "datetime" }}
{tail}
"#,
            dialect = self.kind.dialect(),
            cs = self.connection_string,
            state = self.dir.path().join("state.sqlite3").display(),
        )
    }
}

/// `sql` with every whole word of `names` in double quotes (outside string literals).
pub(crate) fn quote_words(sql: &str, names: &[&str]) -> String {
    let (mut out, mut word, mut in_literal) = (String::new(), String::new(), false);
    for c in sql.chars().chain(std::iter::once(' ')) {
        if !in_literal && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
            continue;
        }
        if names.contains(&word.as_str()) {
            out.push_str(&format!("\"{word}\""));
        } else {
            out.push_str(&word);
        }
        word.clear();
        if c == '\'' {
            in_literal = !in_literal;
        }
        out.push(c);
    }
    out.pop();
    out
}

pub(crate) fn subscription(name: &str, url: &str) -> String {
    format!(
        "[subscriptions.{name}]\nurl = \"{url}\"\nversion = \"v1\"\nevents = [\"tickets.*\"]\nsecret = \"{SECRET}\"\n"
    )
}

/// Waits until every feed has completed a poll (its lag gauge is no longer -1).
pub(crate) async fn wait_polled(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("portico_change_poll_lag_seconds{"))
            .collect();
        if !lags.is_empty() && lags.iter().all(|l| !l.ends_with(" -1")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no feed completed a poll: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the admin listing at `path` holds `count` deliveries (an attempt is recorded
/// just after the receiver answers) and returns them; more than `count` fails at once.
pub(crate) async fn listed(app: &Portico, path: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let data = answer.body["data"].as_array().unwrap().clone();
        assert!(data.len() <= count, "{path}: {}", answer.body);
        if data.len() == count {
            return data;
        }
        assert!(Instant::now() < deadline, "{path}: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const HIGH_WATER_MARK: &str =
    r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms", lag = "4s" }"#;
const SNAPSHOT_DIFF: &str =
    r#"{ strategy = "snapshot_diff", poll_interval = "200ms", page_size = 2 }"#;

async fn direct_changes_arrive_as_verified_webhooks(kind: Kind, changes: &str) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let app =
        Portico::spawn(&tickets.config(changes, &subscription("portal", &receiver.url))).await;
    wait_polled(&app.base).await;
    // A cached page, which the detected changes must invalidate.
    assert_eq!(app.get("/v1/tickets/T1").await.body["status"], "open");

    // A new row and an update with the very same timestamp.
    tickets.sql("INSERT INTO TICKETS VALUES ('T4', 'O', 'C2', 5.00, '2026-01-01 11:00:00')");
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-01 11:00:00' WHERE ID = 'T1'");
    let entries = receiver
        .wait("T4 created and T1 updated", 20, |e| {
            has(e, "tickets.created", "T4") && has(e, "tickets.updated", "T1")
        })
        .await;
    let update = entries
        .iter()
        .find(|e| e["body"]["type"] == "tickets.updated")
        .unwrap();
    assert_eq!(
        update["body"]["data"]["row"],
        json!({"id": "T1", "status": "closed", "customer": "C1", "amount": "10.50",
               "updated_at": "2026-01-01T11:00:00"})
    );
    assert!(update["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(
        update["id"], update["body"]["id"],
        "webhook-id is the event id"
    );
    assert_eq!(
        app.get("/v1/tickets/T1").await.body["status"],
        "closed",
        "cache invalidated"
    );

    // A transaction that commits after a later one (an older timestamp lands behind the mark).
    match kind {
        Kind::Sqlite => {
            // SQLite has one writer at a time: a backdated write is the same situation.
            tickets.sql("UPDATE TICKETS SET UPDATED = '2026-01-01 11:45:00' WHERE ID = 'T2'");
            receiver
                .wait("T2 updated", 20, |e| has(e, "tickets.updated", "T2"))
                .await;
            tickets.sql(
                "UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-01 11:30:00' WHERE ID = 'T3'",
            );
        }
        _ => {
            let env = odbc_api::environment().unwrap();
            let late = env
                .connect_with_connection_string(
                    &tickets.connection_string,
                    ConnectionOptions::default(),
                )
                .unwrap();
            late.set_autocommit(false).unwrap();
            let update =
                "UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-01 11:30:00' WHERE ID = 'T3'";
            let update = match kind {
                Kind::Postgres => quote_words(update, &["TICKETS", "ID", "STATUS", "UPDATED"]),
                _ => update.to_string(),
            };
            late.execute(&update, (), None).unwrap();
            tickets.sql("UPDATE TICKETS SET UPDATED = '2026-01-01 11:45:00' WHERE ID = 'T2'");
            receiver
                .wait("T2 updated", 20, |e| has(e, "tickets.updated", "T2"))
                .await;
            late.commit().unwrap();
        }
    }
    receiver
        .wait("the late T3 update", 20, |e| {
            has(e, "tickets.updated", "T3")
        })
        .await;

    let snapshot = changes.contains("snapshot_diff");
    if snapshot {
        tickets.sql("DELETE FROM TICKETS WHERE ID = 'T4'");
        let entries = receiver
            .wait("T4 deleted", 20, |e| has(e, "tickets.deleted", "T4"))
            .await;
        let deleted = entries
            .iter()
            .find(|e| e["body"]["type"] == "tickets.deleted")
            .unwrap();
        assert_eq!(
            deleted["body"]["data"]["row"]["amount"], "5.00",
            "the last known row"
        );
    }
    // Let a few more polls run: nothing is announced twice.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let entries = receiver.entries();
    assert!(
        entries.iter().all(|e| e["outcome"] == "accepted"),
        "{entries:#?}"
    );
    let mut expected = vec![
        ("tickets.created", "T4"),
        ("tickets.updated", "T1"),
        ("tickets.updated", "T2"),
        ("tickets.updated", "T3"),
    ];
    if snapshot {
        expected.push(("tickets.deleted", "T4"));
    }
    let mut got = received(&entries);
    got.sort();
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(t, k)| (t.to_string(), k.to_string()))
        .collect();
    expected.sort();
    assert_eq!(
        got, expected,
        "each change once, nothing for the baseline rows"
    );

    // The pull feed holds the same events in order, paged.
    let feed = app.get("/v1/tickets/changes?limit=2").await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    assert_eq!(feed.body["has_more"], true);
    let mut ids: Vec<Value> = feed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let rest = app
        .get(&format!(
            "/v1/tickets/changes?after={}",
            feed.body["next_cursor"].as_str().unwrap()
        ))
        .await;
    ids.extend(
        rest.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].clone()),
    );
    let delivered: Vec<Value> = entries.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), delivered.len());
    let text = |v: &[Value]| v.iter().map(|i| i.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(text(&ids), text(&delivered));
    assert_eq!(
        app.get("/v1/tickets/changes?after=x").await.problem(400)["parameter"],
        "after"
    );
    assert_eq!(
        app.get("/v1/tickets/changes?since=1").await.problem(400)["parameter"],
        "since"
    );
}

macro_rules! per_database_and_strategy {
    ($($strategy:ident: $config:expr),* $(,)?) => {
        $(mod $strategy {
            use super::*;
            #[tokio::test]
            async fn sqlite() { direct_changes_arrive_as_verified_webhooks(Kind::Sqlite, $config).await }
            #[tokio::test]
            async fn postgres() { direct_changes_arrive_as_verified_webhooks(Kind::Postgres, $config).await }
            #[tokio::test]
            async fn mariadb() { direct_changes_arrive_as_verified_webhooks(Kind::MariaDb, $config).await }
        })*
    };
}

per_database_and_strategy!(high_water_mark: HIGH_WATER_MARK, snapshot_diff: SNAPSHOT_DIFF);

#[tokio::test]
async fn failing_receivers_get_retries_then_dead_letters_and_resend() {
    let tickets = Tickets::new(Kind::Sqlite);
    let flaky = Receiver::start(&["--fail-first", "2", "--retry-after", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let recovered = dir.path().join("recovered");
    let down = Receiver::start(&[
        "--fail-until-file",
        recovered.to_str().unwrap(),
        "--status",
        "503",
    ]);
    let tail = format!(
        "{}{}",
        subscription("flaky", &flaky.url),
        subscription("down", &down.url)
    );
    let app = Portico::spawn(&tickets.config(HIGH_WATER_MARK, &tail)).await;
    wait_polled(&app.base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T2'");

    // Two failures, then success, all with the same webhook-id; timestamps are per attempt.
    let entries = flaky
        .wait("a delivery after two failures", 20, |e| {
            has(e, "tickets.updated", "T2")
        })
        .await;
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "accepted"]);
    assert!(entries.iter().all(|e| e["id"] == entries[0]["id"]));

    // The receiver that never recovers: three attempts, then a dead letter.
    down.wait("three failed attempts", 20, |e| e.len() >= 3)
        .await;
    let dead = listed(&app, "/admin/dead-letters?subscription=down", 1).await[0].clone();
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["last_error"], "answered 503");
    assert_eq!(dead["event"]["data"]["key"], "T2");
    let detail = app.get(&format!("/admin/deliveries/{}", dead["id"])).await;
    let statuses: Vec<&Value> = detail.body["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(503), &json!(503)]);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        down.entries().len(),
        3,
        "a dead letter is not attempted again by itself"
    );
    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portico_webhook_dead_letters 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("portico_webhook_attempts_total{subscription=\"down\",outcome=\"dead\"} 1"));

    // Resend once the receiver is back: delivered with the same webhook-id.
    std::fs::write(&recovered, b"").unwrap();
    let resent = app
        .send(
            reqwest::Method::POST,
            &format!("/admin/deliveries/{}/resend", dead["id"]),
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(resent.status, 202);
    let entries = down
        .wait("the resent delivery", 20, |e| {
            has(e, "tickets.updated", "T2")
        })
        .await;
    assert_eq!(entries.last().unwrap()["id"], dead["event_id"]);
    listed(
        &app,
        "/admin/deliveries?subscription=down&status=delivered",
        1,
    )
    .await;
    assert_eq!(
        app.get("/admin/deliveries?status=lost").await.problem(400)["parameter"],
        "status"
    );
    // The document says a subscription name is not empty; so does the server.
    assert_eq!(
        app.get("/admin/deliveries?subscription=")
            .await
            .problem(400)["parameter"],
        "subscription"
    );
    // A parameter given twice is a mistake, as on every other endpoint (not the last one wins).
    assert_eq!(
        app.get("/admin/deliveries?status=pending&status=dead")
            .await
            .problem(400)["parameter"],
        "status"
    );
    let twice = app
        .send(
            reqwest::Method::POST,
            "/admin/subscriptions/down/recover?since=0&since=1",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(twice.problem(400)["parameter"], "since");
}

/// Each request is counted under the pattern of the route that answered it: the admin, document
/// and Swagger UI paths under their own, the feed apart from row lookups, a path nothing serves
/// under `/{other}`; never under another route's pattern, never with a segment of its path.
#[tokio::test]
async fn metrics_label_each_request_with_the_pattern_of_its_route() {
    let tickets = Tickets::new(Kind::Sqlite);
    let app = Portico::spawn(&tickets.config(HIGH_WATER_MARK, "")).await;
    let requests = [
        ("/admin/subscriptions/x", "/admin/subscriptions/{name}", 404),
        ("/admin/deliveries", "/admin/deliveries", 200),
        ("/admin/dead-letters", "/admin/dead-letters", 200),
        ("/openapi/v1.json", "/openapi/{file}", 200),
        ("/docs/index.html", "/docs/{file}", 200),
        ("/v1/tickets/changes", "/{version}/{resource}/changes", 200),
        ("/v1/tickets/T1", "/{version}/{resource}/{key}", 200),
        (
            "/v1/tickets/T1/children",
            "/{version}/{resource}/{key}/{child}",
            404,
        ),
        (
            "/v1/procedures/close",
            "/{version}/procedures/{procedure}",
            404,
        ),
        ("/nothing/is/served/down/here", "/{other}", 404),
    ];
    for (path, _, status) in requests {
        let (got, _, _) = app.get_with(path, &[]).await;
        assert_eq!(got.as_u16(), status, "{path}");
    }
    let text = app.get_text("/metrics").await;
    let counted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("portico_http_requests_total{"))
        .collect();
    for (path, route, status) in requests {
        let line = format!(
            "portico_http_requests_total{{route=\"{route}\",method=\"GET\",status=\"{status}\"}} 1"
        );
        assert!(
            counted.contains(&line.as_str()),
            "{path}: no `{line}` in {counted:#?}"
        );
    }
    assert_eq!(counted.len(), requests.len(), "{counted:#?}");
    for wrong in ["/admin/cache", "/{version}/{resource}\"", "nothing", "T1"] {
        assert!(
            counted.iter().all(|l| !l.contains(wrong)),
            "`{wrong}` in {counted:#?}"
        );
    }
}

#[tokio::test]
async fn webhook_targets_on_private_networks_are_refused() {
    let tickets = Tickets::new(Kind::Sqlite);
    // In the configuration: refused at start, naming the subscription.
    let text = tickets
        .config(
            HIGH_WATER_MARK,
            &subscription("inside", "http://10.0.0.7/hook"),
        )
        .replace("allow_private = [\"127.0.0.1\"]", "allow_private = []");
    let config = portico::config::parse("t.toml", &text, &|_| None).unwrap();
    let Err(error) = portico::app::build(&config, "t.toml") else {
        panic!("a private webhook target was accepted");
    };
    let error = error.to_string();
    assert!(
        error.contains("subscriptions.inside.url") && error.contains("not a public address"),
        "{error}"
    );

    // Through the admin API: refused with the field named; names are resolved first.
    let text = tickets
        .config(HIGH_WATER_MARK, "")
        .replace("allow_private = [\"127.0.0.1\"]", "allow_private = []");
    let app = Portico::spawn(&text).await;
    let create = |body: Value| {
        app.send(
            reqwest::Method::POST,
            "/admin/subscriptions",
            None,
            &[],
            Some(Ok(body)),
        )
    };
    for url in [
        "http://localhost:9/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/h",
        "http://127.0.0.1:9/",
    ] {
        let answer = create(json!({"name": "x", "url": url, "version": "v1"})).await;
        let problem = answer.problem(422);
        assert_eq!(problem["errors"][0]["pointer"], "/url", "{url}: {problem}");
        assert!(problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not a public address"));
    }
    let answer = create(json!({"name": "x", "url": "http://8.8.8.8/h", "version": "v9"})).await;
    assert_eq!(answer.problem(422)["errors"][0]["pointer"], "/version");
    let answer = create(
        json!({"name": "x", "url": "http://8.8.8.8/h", "version": "v1", "events": ["jobs.*"]}),
    )
    .await;
    assert_eq!(answer.problem(422)["errors"][0]["pointer"], "/events");
    let answer =
        create(json!({"name": "x", "url": "http://8.8.8.8/h", "version": "v1", "colour": "red"}))
            .await;
    assert!(answer.problem(422)["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("colour"));
    // The members by position (an array) are not a subscription.
    let answer = create(json!([
        "byposition",
        "http://8.8.8.8/h",
        "v1",
        ["*"],
        [],
        {},
        false
    ]))
    .await;
    assert!(answer.problem(422)["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("JSON object"));
    // A public target is taken; the secret is shown once.
    let answer =
        create(json!({"name": "public", "url": "http://8.8.8.8:9/h", "version": "v1"})).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(answer.body["secret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    let again =
        create(json!({"name": "public", "url": "http://8.8.8.8:9/h", "version": "v1"})).await;
    again.problem(409);
    let listed = app.get("/admin/subscriptions").await;
    assert_eq!(listed.body["data"][0]["name"], "public");
    assert!(listed.body["data"][0].get("secret").is_none());
    let post = |path: &'static str| app.send(reqwest::Method::POST, path, None, &[], None);
    assert_eq!(
        post("/admin/subscriptions/public/disable").await.body["enabled"],
        false
    );
    let rotated = post("/admin/subscriptions/public/rotate").await;
    assert_eq!(
        rotated.body["signing_secrets"], 2,
        "the old secret signs during the grace period"
    );
    assert_ne!(rotated.body["secret"], answer.body["secret"]);
    let deleted = app
        .send(
            reqwest::Method::DELETE,
            "/admin/subscriptions/public",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.get("/admin/subscriptions/public").await.status, 404);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let tickets = Tickets::new(Kind::Sqlite);
    let target = Receiver::start(&[]);
    let redirecting = Receiver::start(&["--redirect-to", &target.url]);
    let app =
        Portico::spawn(&tickets.config(HIGH_WATER_MARK, &subscription("moved", &redirecting.url)))
            .await;
    wait_polled(&app.base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T1'");
    redirecting
        .wait("three redirected attempts", 20, |e| e.len() >= 3)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(target.entries().is_empty(), "the redirect was followed");
    let dead = listed(&app, "/admin/dead-letters", 1).await;
    assert_eq!(dead[0]["last_error"], "answered 307");
}

/// Portico as its own process, so it can be killed.
fn serve(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["serve", "--config"])
        .arg(config)
        .env("PORTICO_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_sigkill_while_delivering_5000_events_loses_none() {
    let tickets = Tickets::new(Kind::Sqlite);
    let receiver = Receiver::start(&[]);
    let port = free_port();
    let config = tickets.dir.path().join("portico.toml");
    let changes = r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms", page_size = 500 }"#;
    let text = tickets
        .config(changes, &subscription("bulk", &receiver.url))
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut portico = serve(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "Portico did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_polled(&base).await;
    tickets.sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
         INSERT INTO TICKETS SELECT printf('N%05d', i), 'O', 'C9', NULL, '2026-02-01 00:00:00' FROM n",
    );
    receiver
        .wait("the first deliveries", 60, |e| e.len() >= 300)
        .await;
    portico.kill().unwrap(); // SIGKILL
    portico.wait().unwrap();
    let before_restart = receiver.accepted().len();
    let mut portico = serve(&config);
    let entries = receiver
        .wait("all 5,000 events", 180, |e| {
            e.iter()
                .filter(|e| e["outcome"] == "accepted")
                .filter_map(|e| e["id"].as_str())
                .collect::<BTreeSet<_>>()
                .len()
                >= 5000
        })
        .await;
    portico.kill().unwrap();
    portico.wait().unwrap();
    // Every ticket arrived; a ticket delivered twice carries one webhook-id.
    let mut ids_by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["outcome"] == "accepted") {
        assert_eq!(e["body"]["type"], "tickets.created");
        let key = e["body"]["data"]["key"].as_str().unwrap().to_string();
        ids_by_key
            .entry(key)
            .or_default()
            .insert(e["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids_by_key.len(), 5000);
    assert!(
        ids_by_key.values().all(|ids| ids.len() == 1),
        "one webhook-id per event"
    );
    assert!(
        before_restart < 5000,
        "the kill came before every delivery ({before_restart})"
    );
    eprintln!(
        "killed after {before_restart} deliveries; {} deliveries in all for 5000 events",
        entries
            .iter()
            .filter(|e| e["outcome"] == "accepted")
            .count()
    );
}

/// The demo served in-process with feeds polling every 200 ms (`edit` changes its text),
/// a token minter for its development secret, and the demo database's path.
struct Demo {
    app: Portico,
    config: portico::config::Config,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    async fn start(edit: impl Fn(String) -> String) -> Self {
        let (dir, db) = crate::harness::demo_database();
        let text = std::fs::read_to_string(repo("config/demo.toml"))
            .unwrap()
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
            .replace("poll_interval = \"2s\"", "poll_interval = \"200ms\"");
        let text = edit(text);
        let (db_path, state) = (db.display().to_string(), dir.path().join("state.sqlite3"));
        let config = portico::config::parse("demo.toml", &text, &|name| match name {
            "DEMO_DB" => Some(db_path.clone()),
            "PORTICO_STATE" => Some(state.display().to_string()),
            _ => None,
        })
        .unwrap();
        let file = dir.path().join("demo.toml").display().to_string();
        let app = Portico::start(portico::app::build(&config, &file).unwrap(), &config).await;
        Self {
            app,
            config,
            db,
            _dir: dir,
        }
    }

    fn mint(&self, subject: &str, scopes: &[&str], claims: Value) -> String {
        portico::auth::token::mint(
            self.config.auth.as_ref().unwrap(),
            &portico::auth::token::TokenRequest {
                subject: subject.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                claims: claims.as_object().cloned().unwrap_or_default(),
                ttl: Duration::from_secs(600),
            },
        )
        .unwrap()
    }
}

/// A pull-feed cursor is a position in one log that every feed shares: a number the feed
/// did not give (ahead of the log, or another feed's) would skip its events silently, so it is
/// refused; so is a parameter given twice.
#[tokio::test]
async fn the_pull_feed_takes_only_cursors_it_gave() {
    let tickets = Tickets::new(Kind::Sqlite);
    tickets.sql("CREATE TABLE NOTES (ID CHAR(6) NOT NULL PRIMARY KEY, UPDATED TIMESTAMP NOT NULL)");
    let notes = r#"
[versions.v1.resources.notes]
source = "legacy"
table = "NOTES"
key = ["id"]
anonymous = true
changes = { strategy = "snapshot_diff", poll_interval = "200ms" }

[versions.v1.resources.notes.fields]
id = { column = "ID", type = "string", column_type = "varchar(6)" }
updated_at = { column = "UPDATED", type = "datetime" }
"#;
    let app = Portico::spawn(&tickets.config(SNAPSHOT_DIFF, notes)).await;
    wait_polled(&app.base).await;
    let cursor = |path: &'static str| {
        let app = &app;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let answer = app.get(path).await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                if !answer.body["data"].as_array().unwrap().is_empty() {
                    return answer.body["next_cursor"]
                        .as_str()
                        .unwrap()
                        .parse::<i64>()
                        .unwrap();
                }
                assert!(Instant::now() < deadline, "no event at {path}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tickets.sql("INSERT INTO NOTES VALUES ('N1', '2026-01-01 10:00:00')");
    let note = cursor("/v1/notes/changes").await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C' WHERE ID = 'T1'");
    let ticket = cursor("/v1/tickets/changes").await;
    assert!(ticket > note);
    let refused = |after: String| {
        let app = &app;
        async move {
            let answer = app.get(&format!("/v1/tickets/changes?{after}")).await;
            let problem = answer.problem(400);
            assert_eq!(problem["parameter"], "after", "{after}: {problem}");
        }
    };
    // Another feed's position, one ahead of the log, one far ahead.
    refused(format!("after={note}")).await;
    refused(format!("after={}", ticket + 1)).await;
    refused("after=999999".into()).await;
    refused(format!("after={ticket}&after=0")).await;
    // Its own positions are taken: the last one, and 0.
    for after in [ticket, 0] {
        let answer = app.get(&format!("/v1/tickets/changes?after={after}")).await;
        assert_eq!(answer.status, 200, "{after}: {}", answer.body);
    }
}

#[tokio::test]
async fn the_pull_feed_applies_row_policies_and_masks() {
    let demo = Demo::start(|text| text).await;
    let (app, db_path) = (&demo.app, demo.db.display().to_string());
    let staff = demo.mint(
        "clerk",
        &["jobs:read", "jobs:read:all", "jobs:read:amounts"],
        json!({}),
    );
    let portal = demo.mint("portal", &["jobs:read"], json!({"customer_id": "C00002"}));
    wait_polled(&app.base).await;
    let legacy = format!("Driver=SQLite3;Database={db_path}");
    let job_of = |customer: &str| {
        let sql = format!(
            "SELECT JOB_NO FROM JOBHDR WHERE CUST_NO LIKE '{customer}%' ORDER BY JOB_NO LIMIT 1"
        );
        crate::harness::query_text(&legacy, &sql)[0][0]
            .clone()
            .unwrap()
    };
    let (theirs, other) = (job_of("C00002"), job_of("C00001"));
    execute(
        &legacy,
        &format!("UPDATE JOBHDR SET STATUS = 'H', LAST_UPD = '2099-01-01 00:00:00' WHERE JOB_NO IN ('{theirs}', '{other}')"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let answer = app.get_as("/v1/jobs/changes", Some(&staff)).await;
        if answer.body["data"].as_array().is_some_and(|d| d.len() == 2) {
            break answer.body["data"].clone();
        }
        assert!(Instant::now() < deadline, "no events: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "jobs.updated"
            && e["data"]["row"]["status"] == "held"
            && e["data"]["row"].get("quote_amount").is_some()));
    let mine = app.get_as("/v1/jobs/changes", Some(&portal)).await;
    let events = mine.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", mine.body);
    assert_eq!(events[0]["data"]["key"], theirs.trim());
    assert_eq!(events[0]["data"]["row"]["customer_id"], "C00002");
    assert!(
        events[0]["data"]["row"].get("quote_amount").is_none(),
        "masked field"
    );
    assert_eq!(
        mine.body["next_cursor"],
        app.get_as("/v1/jobs/changes", Some(&staff)).await.body["next_cursor"]
    );
    app.get_as("/v1/jobs/changes", None).await.problem(401);
}

/// A subscription made the way a newcomer makes it, without `scopes` or `claims`, would be
/// accepted and then receive nothing (the jobs' row policy needs a claim): it is a 422 that
/// says what it needs. Rows filtered through a parent's policy cannot be judged from an event
/// alone: such subscriptions and pull-feed readers are refused, never quietly starved.
#[tokio::test]
async fn subscriptions_and_feed_readers_that_would_see_nothing_are_refused() {
    let demo = Demo::start(|text| {
        text.replacen(
            "require_if_match = true",
            "require_if_match = true\nchanges = { strategy = \"snapshot_diff\", poll_interval = \"30s\" }",
            1,
        )
    })
    .await;
    let app = &demo.app;
    let admin = demo.mint("ops", &["portico:admin"], json!({}));
    let create = |body: Value| {
        app.send(
            reqwest::Method::POST,
            "/admin/subscriptions",
            Some(&admin),
            &[],
            Some(Ok(body)),
        )
    };
    let subscription = |name: &str, events: &str, scopes: Value, claims: Value| {
        json!({"name": name, "url": "http://127.0.0.1:9/hook", "version": "v1",
               "events": [events], "scopes": scopes, "claims": claims})
    };
    let refused = |answer: &crate::harness::Answer, words: &[&str]| {
        let problem = answer.problem(422);
        assert_eq!(problem["errors"][0]["pointer"], "/scopes", "{problem}");
        let detail = problem["errors"][0]["detail"].as_str().unwrap();
        for word in words {
            assert!(detail.contains(word), "{word}: {detail}");
        }
    };
    let answer = create(
        json!({"name": "bare", "url": "http://127.0.0.1:9/hook", "version": "v1",
                               "events": ["jobs.*"]}),
    )
    .await;
    refused(&answer, &["jobs", "jobs:read"]);
    let answer = create(subscription(
        "scoped",
        "jobs.*",
        json!(["jobs:read"]),
        json!({}),
    ))
    .await;
    refused(&answer, &["jobs", "customer_id"]);
    let answer = create(subscription(
        "every",
        "*",
        json!(["jobs:read"]),
        json!({"customer_id": "C00002"}),
    ))
    .await;
    refused(&answer, &["customers", "customers:read"]);
    let answer = create(subscription(
        "ops-portal",
        "operations.*",
        json!(["operations:read"]),
        json!({"customer_id": "C00002"}),
    ))
    .await;
    refused(&answer, &["operations", "`jobs`"]);
    // A blank claim is no claim; a deleted event from a strategy that never sees deletes
    // would never come.
    let answer = create(subscription(
        "blank",
        "jobs.*",
        json!(["jobs:read"]),
        json!({"customer_id": "  "}),
    ))
    .await;
    refused(&answer, &["jobs", "customer_id"]);
    let answer = create(subscription(
        "deletes",
        "jobs.deleted",
        json!(["jobs:read", "jobs:read:all"]),
        json!({}),
    ))
    .await;
    let problem = answer.problem(422);
    assert_eq!(problem["errors"][0]["pointer"], "/events", "{problem}");
    assert!(problem["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("never sees deleted rows"));
    for (name, events, scopes, claims) in [
        (
            "staff-jobs",
            "jobs.*",
            json!(["jobs:read", "jobs:read:all"]),
            json!({}),
        ),
        (
            "portal-jobs",
            "jobs.updated",
            json!(["jobs:read"]),
            json!({"customer_id": "C00002"}),
        ),
        (
            "staff-ops",
            "operations.*",
            json!(["operations:read", "jobs:read:all"]),
            json!({}),
        ),
    ] {
        let answer = create(subscription(name, events, scopes, claims)).await;
        assert_eq!(answer.status, 201, "{name}: {}", answer.body);
    }
    // The admin API shows whom a subscription reads as (never its secret).
    let shown = app
        .get_as("/admin/subscriptions/portal-jobs", Some(&admin))
        .await;
    assert_eq!(shown.body["claims"], json!({"customer_id": "C00002"}));
    assert_eq!(shown.body["scopes"], json!(["jobs:read"]));
    assert!(shown.body.get("secret").is_none());
    // The pull feed of a nested resource: the portal is refused, staff read it.
    let portal = demo.mint(
        "portal",
        &["operations:read"],
        json!({"customer_id": "C00002"}),
    );
    let answer = app.get_as("/v1/operations/changes", Some(&portal)).await;
    assert!(answer.problem(403)["detail"]
        .as_str()
        .unwrap()
        .contains("jobs"));
    let staff = demo.mint("staff", &["operations:read", "jobs:read:all"], json!({}));
    assert_eq!(
        app.get_as("/v1/operations/changes", Some(&staff))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn webhook_urls_with_credentials_control_characters_or_hidden_private_addresses_are_refused()
{
    let tickets = Tickets::new(Kind::Sqlite);
    // In the configuration: credentials are refused at start, and never repeated.
    let text = tickets
        .config(
            HIGH_WATER_MARK,
            &subscription("creds", "https://alice:s3cret@hooks.example.com/h"),
        )
        .replace("allow_private = [\"127.0.0.1\"]", "allow_private = []");
    let config = portico::config::parse("t.toml", &text, &|_| None).unwrap();
    let error = portico::app::build(&config, "t.toml")
        .err()
        .expect("credentials in a webhook URL were accepted")
        .to_string();
    assert!(error.contains("subscriptions.creds.url"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");

    let text = tickets
        .config(HIGH_WATER_MARK, "")
        .replace("allow_private = [\"127.0.0.1\"]", "allow_private = []");
    let app = Portico::spawn(&text).await;
    let create = |url: &str| {
        app.send(
            reqwest::Method::POST,
            "/admin/subscriptions",
            None,
            &[],
            Some(Ok(json!({"name": "x", "url": url, "version": "v1"}))),
        )
    };
    for (url, words) in [
        ("http://user:pass@8.8.8.8/h", "no user name or password"),
        ("http://token@8.8.8.8/h", "no user name or password"),
        (
            "http://8.8.8.8/h\r\n2026-01-01T00:00:00Z  INFO forged",
            "control characters",
        ),
        ("http://8.8.8.8/h\tx", "control characters"),
        // Every IPv6 form that carries a private IPv4 address, and the special ranges.
        ("http://[::127.0.0.1]/h", "not a public address"),
        ("http://[::169.254.169.254]/h", "not a public address"),
        ("http://[::10.0.0.1]/h", "not a public address"),
        ("http://[2002:7f00:1::1]/h", "not a public address"),
        ("http://[2002:a9fe:a9fe::]/h", "not a public address"),
        ("http://[64:ff9b:1::a9fe:a9fe]/h", "not a public address"),
        (
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/h",
            "not a public address",
        ),
        ("http://[100::1]/h", "not a public address"),
        ("http://[::ffff:0:7f00:1]/h", "not a public address"),
    ] {
        let answer = create(url).await;
        let problem = answer.problem(422);
        assert_eq!(problem["errors"][0]["pointer"], "/url", "{url}: {problem}");
        let detail = problem["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{url}: {detail}");
        assert!(!detail.contains("pass@"), "{detail}");
    }
    assert_eq!(
        app.get("/admin/subscriptions").await.body["data"],
        json!([])
    );
}

/// tinyproxy, a real HTTP proxy, on loopback; its log shows every request it forwarded.
struct TinyProxy {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyProxy {
    fn start() -> Self {
        // A port picked beforehand may be taken by another test's server meanwhile: then
        // tinyproxy exits, and it is started again on another.
        for _ in 0..5 {
            if let Some(proxy) = Self::start_on(free_port()) {
                return proxy;
            }
        }
        panic!("tinyproxy did not start on five ports");
    }

    fn start_on(port: u16) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (conf, log) = (
            dir.path().join("tinyproxy.conf"),
            dir.path().join("tinyproxy.log"),
        );
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 10\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 20\nAllow 127.0.0.1\n",
                log.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy (scripts/install-deps.sh test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Listening once its log says so (a connection could reach another server).
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Accepting connections")
        {
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        })
    }

    /// Hosts it opened connections to.
    fn forwarded(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Established connection to host"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the admin listing shows a delivery whose last error contains `words`.
async fn delivery_failed_with(base: &str, words: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listing: Value = reqwest::get(format!("{base}/admin/deliveries"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = listing["data"].as_array().and_then(|d| {
            d.iter()
                .find(|d| d["last_error"].as_str().is_some_and(|e| e.contains(words)))
                .cloned()
        });
        if let Some(delivery) = found {
            return delivery;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery failed with `{words}`: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `HTTP_PROXY` in Portico's environment would carry deliveries to a proxy that resolves
/// `localhost` itself, past the guard: environment proxies are never used. An explicit
/// `[webhooks] proxy` is used, and each target is still resolved and checked first.
#[tokio::test]
async fn deliveries_ignore_environment_proxies_and_guard_an_explicit_one() {
    let proxy = TinyProxy::start();
    let receiver = Receiver::start(&[]);
    let hidden = receiver.url.replace("127.0.0.1", "localhost");
    let changes =
        r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms" }"#;

    // The environment names a proxy; nothing allows `localhost`.
    let tickets = Tickets::new(Kind::Sqlite);
    let file = tickets.dir.path().join("portico.toml");
    let text = tickets
        .config(changes, &subscription("inside", &hidden))
        .replace("allow_private = [\"127.0.0.1\"]", "allow_private = []");
    std::fs::write(&file, text).unwrap();
    let proxied_env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|v| (*v, proxy.url.as_str()))
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();
    // Its own port (read from its log): a port picked beforehand may be taken meanwhile by
    // another test's server.
    let mut portico =
        crate::harness::Served::spawn(&file, &proxied_env, &tickets.dir.path().join("portico.log"));
    let base = format!("http://{}", portico.address().await);
    wait_polled(&base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T1'");
    let failed = delivery_failed_with(&base, "public address").await;
    drop(portico);
    assert!(
        receiver.entries().is_empty(),
        "delivered past the guard: {failed}"
    );
    assert!(proxy.forwarded().is_empty(), "{:?}", proxy.forwarded());

    // An explicit proxy: a target the guard refuses is never sent to it...
    let tickets = Tickets::new(Kind::Sqlite);
    let proxied = |allow: &str| {
        tickets
            .config(changes, &subscription("via-proxy", &hidden))
            .replace(
                "allow_private = [\"127.0.0.1\"]",
                &format!("allow_private = [{allow}]\nproxy = \"{}\"", proxy.url),
            )
    };
    let app = Portico::spawn(&proxied("")).await;
    wait_polled(&app.base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T1'");
    delivery_failed_with(&app.base, "public address").await;
    drop(app);
    assert!(receiver.entries().is_empty());
    assert!(proxy.forwarded().is_empty(), "{:?}", proxy.forwarded());
    // ...and one it allows goes through the proxy.
    let app = Portico::spawn(&proxied("\"localhost\"")).await;
    wait_polled(&app.base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'H', UPDATED = '2026-01-03 00:00:00' WHERE ID = 'T2'");
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.entries().is_empty() {
        if Instant::now() > deadline {
            let deliveries = reqwest::get(format!("{}/admin/deliveries", app.base)).await;
            let deliveries = match deliveries {
                Ok(answer) => answer.text().await.unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            panic!(
                "nothing delivered through the proxy; deliveries: {deliveries}; proxy log: {}",
                std::fs::read_to_string(&proxy.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        proxy.forwarded().iter().any(|l| l.contains("localhost")),
        "{:?}",
        proxy.forwarded()
    );
}

/// A stopped server stops polling and delivering with it (a process that goes on, as a test
/// run, must not keep an old configuration's dispatcher racing a new one for deliveries); the
/// change it did not see is delivered by the next start, from the stored position.
#[tokio::test]
async fn a_stopped_server_polls_and_delivers_nothing_more() {
    let tickets = Tickets::new(Kind::Sqlite);
    let receiver = Receiver::start(&[]);
    let config = tickets.config(
        r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "100ms" }"#,
        &subscription("portal", &receiver.url),
    );
    let app = Portico::spawn(&config).await;
    wait_polled(&app.base).await;
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T1'");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        receiver.entries().is_empty(),
        "delivered after its server stopped: {:#?}",
        receiver.entries()
    );
    let app = Portico::spawn(&config).await;
    let entries = receiver
        .wait("T1's change, after the restart", 20, |e| {
            has(e, "tickets.updated", "T1")
        })
        .await;
    assert_eq!(
        received(&entries),
        [("tickets.updated".into(), "T1".into())]
    );
    drop(app);
}

/// Accepted deliveries of `key`, in the order they arrived.
fn accepted_of<'a>(entries: &'a [Value], key: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["outcome"] == "accepted" && e["body"]["data"]["key"] == key)
        .collect()
}

/// Insert, delete, insert again with the very same values, then update: created, deleted,
/// created, updated, each with its own id and the key's next sequence. (The second `created`
/// used to get the first one's id and be dropped as a duplicate, and the update then came for
/// a key the consumer thought gone.)
async fn a_re_created_row_is_announced_again(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let app =
        Portico::spawn(&tickets.config(SNAPSHOT_DIFF, &subscription("portal", &receiver.url)))
            .await;
    wait_polled(&app.base).await;
    let insert = "INSERT INTO TICKETS VALUES ('C09999', 'O', 'C9', 7.00, '2026-01-01 12:00:00')";
    let count = |n: usize| move |e: &[Value]| accepted_of(e, "C09999").len() >= n;
    tickets.sql(insert);
    receiver.wait("C09999 created", 20, count(1)).await;
    tickets.sql("DELETE FROM TICKETS WHERE ID = 'C09999'");
    receiver.wait("C09999 deleted", 20, count(2)).await;
    tickets.sql(insert);
    receiver.wait("C09999 created again", 20, count(3)).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C' WHERE ID = 'C09999'");
    receiver.wait("C09999 updated", 20, count(4)).await;
    // A few more passes: nothing more, nothing twice.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let entries = receiver.entries();
    let events = accepted_of(&entries, "C09999");
    let seen: Vec<(&str, i64)> = events
        .iter()
        .map(|e| {
            (
                e["body"]["type"].as_str().unwrap(),
                e["body"]["data"]["sequence"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no data.sequence: {e}")),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("tickets.created", 1),
            ("tickets.deleted", 2),
            ("tickets.created", 3),
            ("tickets.updated", 4)
        ]
    );
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "one id per change: {ids:?}");
    assert_eq!(
        events[0]["body"]["data"]["row"], events[2]["body"]["data"]["row"],
        "the same values, created twice"
    );
    assert_eq!(events[3]["body"]["data"]["row"]["status"], "closed");
    // The pull feed has the same events with the same sequences.
    let feed = app.get("/v1/tickets/changes").await;
    let pulled: Vec<(Value, Value)> = feed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["key"] == "C09999")
        .map(|e| (e["id"].clone(), e["data"]["sequence"].clone()))
        .collect();
    let delivered: Vec<(Value, Value)> = events
        .iter()
        .map(|e| (e["id"].clone(), e["body"]["data"]["sequence"].clone()))
        .collect();
    assert_eq!(pulled, delivered);
}

/// `[webhooks]` with a schedule long enough that a receiver failing 30 % of requests at random
/// never makes a dead letter (0.3^12), its first retry a second later so newer events of the
/// key overtake a failed one.
fn patient(config: String) -> String {
    config.replace(
        r#"retry_schedule = ["0s", "300ms", "300ms"]"#,
        r#"retry_schedule = ["0s", "1s", "500ms", "500ms", "500ms", "500ms", "500ms", "500ms", "500ms", "500ms", "500ms", "500ms"]"#,
    )
}

const ROUNDS: i64 = 20;
const KEYS: [&str; 3] = ["T1", "T2", "T3"];

/// `ROUNDS` updates of each of `KEYS`, a poll apart: in round r, key i gets AMOUNT r*10 + i
/// (so amounts grow with each change of a key); then waits until the receiver accepted every
/// key's last change and `subscription` has no pending delivery. The accepted log.
async fn many_updates_to_few_keys(
    tickets: &Tickets,
    app: &Portico,
    receiver: &Receiver,
    subscription: &str,
) -> Vec<Value> {
    for round in 1..=ROUNDS {
        tickets.sql(&format!(
            "UPDATE TICKETS SET AMOUNT = {} + CASE ID WHEN 'T1' THEN 1 WHEN 'T2' THEN 2 ELSE 3 END, \
             STATUS = '{}', UPDATED = '2026-03-01 10:00:{round:02}'",
            round * 10,
            if round % 2 == 0 { "C" } else { "O" },
        ));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let last = |i: usize| format!("{}.00", ROUNDS * 10 + i as i64 + 1);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let entries = receiver.entries();
        let arrived = KEYS.iter().enumerate().all(|(i, key)| {
            accepted_of(&entries, key)
                .iter()
                .any(|e| e["body"]["data"]["row"]["amount"] == last(i))
        });
        let pending = app
            .get(&format!(
                "/admin/deliveries?subscription={subscription}&status=pending"
            ))
            .await;
        if arrived
            && pending.body["data"]
                .as_array()
                .is_some_and(|d| d.is_empty())
        {
            assert!(
                listed(app, "/admin/dead-letters", 0).await.is_empty(),
                "a dead letter"
            );
            return entries
                .into_iter()
                .filter(|e| e["outcome"] == "accepted")
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for every change; pending: {}; received: {:#?}",
            pending.body,
            received(&entries)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each key's AMOUNT in the database, as a number.
fn amounts_in_database(tickets: &Tickets) -> BTreeMap<String, f64> {
    let mut sql = "SELECT ID, AMOUNT FROM TICKETS".to_string();
    if tickets.kind == Kind::Postgres {
        sql = quote_words(&sql, &["TICKETS", "ID", "AMOUNT"]);
    }
    crate::harness::query_text(&tickets.connection_string, &sql)
        .into_iter()
        .map(|row| {
            let key = row[0].clone().unwrap().trim().to_string();
            let amount = row[1].clone().unwrap_or_default().parse().unwrap_or(-1.0);
            (key, amount)
        })
        .collect()
}

/// An event's key, sequence and amount.
fn key_sequence_amount(e: &Value) -> (String, i64, f64) {
    let data = &e["body"]["data"];
    (
        data["key"].as_str().unwrap().to_string(),
        data["sequence"]
            .as_i64()
            .unwrap_or_else(|| panic!("no data.sequence: {e}")),
        data["row"]["amount"].as_str().unwrap().parse().unwrap(),
    )
}

/// Retries deliver a key's events out of order; a consumer applying the documented rule
/// (apply an event only if its `sequence` is above the last one applied for its key) still
/// ends with the database's state. One that keeps the last event received may not (reported,
/// not asserted: it depends on which attempts fail).
async fn the_sequence_rule_survives_retries(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&["--fail-rate", "0.3", "--seed", "18"]);
    let changes = r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "100ms", lag = "4s" }"#;
    let app = Portico::spawn(&patient(
        tickets.config(changes, &subscription("any-order", &receiver.url)),
    ))
    .await;
    wait_polled(&app.base).await;
    let accepted = many_updates_to_few_keys(&tickets, &app, &receiver, "any-order").await;
    let (mut by_rule, mut naive) = (BTreeMap::new(), BTreeMap::new());
    let mut sequences: BTreeMap<(String, i64), String> = BTreeMap::new();
    for e in &accepted {
        let (key, sequence, amount) = key_sequence_amount(e);
        // One event per sequence of a key (a redelivery carries the same id).
        let id = e["id"].as_str().unwrap().to_string();
        assert_eq!(
            sequences
                .entry((key.clone(), sequence))
                .or_insert(id.clone()),
            &id
        );
        let applied = by_rule.entry(key.clone()).or_insert((0, 0.0));
        if sequence > applied.0 {
            *applied = (sequence, amount);
        }
        naive.insert(key, amount);
    }
    let database = amounts_in_database(&tickets);
    for key in KEYS {
        assert_eq!(
            by_rule[key].1,
            database[key],
            "{key}: the sequence rule's state; deliveries: {:#?}",
            accepted_of(&accepted, key)
                .iter()
                .map(|e| key_sequence_amount(e))
                .collect::<Vec<_>>()
        );
    }
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    let late = accepted
        .iter()
        .filter(|e| {
            let (key, sequence, _) = key_sequence_amount(e);
            let seen = newest.entry(key).or_insert(0);
            let late = sequence < *seen;
            *seen = sequence.max(*seen);
            late
        })
        .count();
    let wrong = KEYS.iter().filter(|k| naive[**k] != database[**k]).count();
    eprintln!(
        "{} deliveries accepted, {late} after a newer one of their key; a last-received \
         consumer is wrong on {wrong} of {} keys",
        accepted.len(),
        KEYS.len()
    );
}

/// With `ordered = true` a key's later events wait while an earlier one is retried: the
/// receiver gets each key's events in sequence order (and their amounts, which grow with each
/// change, in the order they were written), so even a last-received consumer is right.
async fn an_ordered_subscription_delivers_each_key_in_order(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&["--fail-rate", "0.3", "--seed", "18"]);
    let changes = r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "100ms", lag = "4s" }"#;
    let tail = format!(
        "{}ordered = true\n",
        subscription("in-order", &receiver.url)
    );
    let app = Portico::spawn(&patient(tickets.config(changes, &tail))).await;
    assert_eq!(
        app.get("/admin/subscriptions/in-order").await.body["ordered"],
        true
    );
    wait_polled(&app.base).await;
    let accepted = many_updates_to_few_keys(&tickets, &app, &receiver, "in-order").await;
    let failed = receiver
        .entries()
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .count();
    assert!(failed > 0, "the receiver failed no request");
    let database = amounts_in_database(&tickets);
    for key in KEYS {
        let got: Vec<(String, i64, f64)> = accepted_of(&accepted, key)
            .iter()
            .map(|e| key_sequence_amount(e))
            .collect();
        assert!(
            got.windows(2).all(|w| w[0].1 < w[1].1 && w[0].2 < w[1].2),
            "{key} out of order: {got:#?}"
        );
        assert_eq!(got.last().unwrap().2, database[key], "{key}");
    }
}

/// Standard Webhooks: 410 Gone means the endpoint is gone. The subscription is disabled (the
/// reason in the admin API, kept across a restart), its delivery waits (no retry, no dead
/// letter), and `enable` sends it, with the same id.
async fn a_gone_endpoint_disables_its_subscription_until_enabled(kind: Kind) {
    let tickets = Tickets::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back");
    let receiver = Receiver::start(&[
        "--fail-until-file",
        back.to_str().unwrap(),
        "--status",
        "410",
    ]);
    let text = tickets.config(HIGH_WATER_MARK, &subscription("gone", &receiver.url));
    let app = Portico::spawn(&text).await;
    wait_polled(&app.base).await;
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T1'");
    let first = receiver
        .wait("the first attempt", 20, |e| !e.is_empty())
        .await;
    assert_eq!(first[0]["outcome"], "failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    let disabled = loop {
        let shown = app.get("/admin/subscriptions/gone").await;
        if shown.body["enabled"] == false {
            break shown.body;
        }
        assert!(
            Instant::now() < deadline,
            "still enabled after a 410: {}; receiver: {:#?}",
            shown.body,
            receiver.entries()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the endpoint answered 410 Gone at 20"),
        "{disabled}"
    );
    // Longer than the whole retry schedule: not retried, not a dead letter, still pending.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.entries().len(), 1, "{:#?}", receiver.entries());
    let waiting = listed(
        &app,
        "/admin/deliveries?subscription=gone&status=pending",
        1,
    )
    .await;
    assert_eq!(
        waiting[0]["attempts"], 0,
        "the 410 does not use up the schedule"
    );
    assert_eq!(waiting[0]["last_error"], "answered 410");
    assert!(listed(&app, "/admin/dead-letters", 0).await.is_empty());
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics
            .contains("portico_webhook_attempts_total{subscription=\"gone\",outcome=\"gone\"} 1"),
        "{metrics}"
    );

    // A restart (its sync of the configured subscriptions) keeps it disabled.
    let config = portico::config::parse("test.toml", &text, &|_| None).unwrap();
    let services = portico::app::build(&config, "test.toml").unwrap();
    let store: std::sync::Arc<dyn portico::state::StateStore> = std::sync::Arc::new({
        let Some(portico::app::StateLocation::Sqlite(path)) = &services.state else {
            panic!("a SQLite state store")
        };
        portico::state::SqliteStore::open(path).unwrap()
    });
    let restarted = portico::webhooks::Webhooks::new(
        services.delivery.unwrap(),
        store.clone(),
        std::sync::Arc::new(services.catalog),
        Default::default(),
    );
    restarted.sync_config(&config).unwrap();
    let kept = serde_json::to_value(&restarted.subscription("gone").unwrap().record).unwrap();
    assert_eq!(
        (&kept["enabled"], &kept["disabled_reason"]),
        (&json!(false), &json!(reason)),
        "{kept}"
    );

    // The endpoint is back and an operator enables the subscription: the delivery goes.
    std::fs::write(&back, b"").unwrap();
    let enabled = app
        .send(
            reqwest::Method::POST,
            "/admin/subscriptions/gone/enable",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    assert_eq!(enabled.body["enabled"], true);
    assert_eq!(enabled.body["disabled_reason"], Value::Null);
    let entries = receiver
        .wait("the waiting delivery", 20, |e| {
            has(e, "tickets.updated", "T1")
        })
        .await;
    assert_eq!(entries.last().unwrap()["id"], first[0]["id"]);
    listed(
        &app,
        "/admin/deliveries?subscription=gone&status=delivered",
        1,
    )
    .await;
}

macro_rules! on_sqlite_and_postgres {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            use super::*;
            #[tokio::test]
            async fn sqlite() { super::$test(Kind::Sqlite).await }
            #[tokio::test]
            async fn postgres() { super::$test(Kind::Postgres).await }
        })*
    };
}

on_sqlite_and_postgres!(
    a_re_created_row_is_announced_again,
    the_sequence_rule_survives_retries,
    an_ordered_subscription_delivers_each_key_in_order,
    a_gone_endpoint_disables_its_subscription_until_enabled,
);
