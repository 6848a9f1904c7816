//! The operator console (`/console`) in headless Chromium, signed in with an admin token: what
//! it shows equals what `GET /admin/overview` answers with the same token (sources, cache,
//! feeds, subscriptions, versions and their dates); its Resend button sends a dead letter
//! again and the receiver, verifying with the `standardwebhooks` library, accepts it; a token
//! without the admin scope sees the refusal; nothing is fetched from another origin. The run
//! saves the README's screenshot, `docs/console.png`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::auth::hs_token;
use crate::changes::{subscription, wait_polled, Receiver, Tickets, SECRET as WEBHOOK_SECRET};
use crate::dashboard::drive;
use crate::fixture::Kind;
use crate::harness::Portico;
use crate::idp::{AUDIENCE, ISSUER};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

const CHANGES: &str =
    r#"{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms", lag = "4s" }"#;

/// `[auth]` with the admin scope, and an older version with its deprecation dates.
fn tail(receiver: &str) -> String {
    format!(
        r#"{subscription}
[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
admin_scope = "portico:admin"

[[auth.keys]]
algorithm = "HS256"
secret = "{hs}"

[versions.v0]
deprecated = "2026-01-01"
sunset = "2027-06-30"

[versions.v0.resources.tickets]
source = "legacy"
table = "TICKETS"
key = ["id"]
anonymous = true

[versions.v0.resources.tickets.fields]
id = {{ column = "ID", type = "string", column_type = "varchar(6)", trim = true }}
"#,
        subscription = subscription("console", receiver),
        hs = crate::auth::SECRET,
    )
}

fn admin_token() -> String {
    hs_token("ops", json!({"scope": "portico:admin"}))
}

/// What the console showed, driven by tests/browser/console.mjs in `mode`.
async fn browse(mode: &str, base: &str, token: &str, screenshot: &Path, id: &str) -> Value {
    let args = [mode, base, token, &screenshot.display().to_string(), id].map(str::to_string);
    let page = drive("console.mjs", args.to_vec()).await;
    assert!(page["error"].is_null(), "{page:#}");
    // Offline: every request went to Portico, none was blocked, no token in any address.
    assert_eq!(page["blocked"], json!([]), "{page:#}");
    for request in page["requests"].as_array().unwrap() {
        let request = request.as_str().unwrap();
        assert!(
            request.split_once(' ').unwrap().1.starts_with(base),
            "{request}"
        );
        assert!(!request.contains(token), "a token in an address: {request}");
    }
    assert_eq!(page["page_errors"], json!([]), "{page:#}");
    page
}

/// `GET /admin/overview` with `token`.
async fn overview(app: &Portico, token: &str) -> Value {
    let answer = app.get_as("/admin/overview", Some(token)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Waits until `path` (admin API, with `token`) lists `count` items; returns them.
async fn listed(app: &Portico, token: &str, path: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.get_as(path, Some(token)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let data = answer.body["data"].as_array().unwrap().clone();
        if data.len() == count {
            return data;
        }
        assert!(Instant::now() < deadline, "{path}: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value a page cell carries for `value` of the API (`""` for null).
fn as_cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(as_cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn number(cell: &Value) -> f64 {
    cell["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {cell}"))
}

/// The page's rows of `table`, keyed by `name` (or `id`), as the API's are.
fn rows_by<'a>(page: &'a Value, table: &str, key: &str) -> Vec<(String, &'a Value)> {
    page["shown"][table]
        .as_array()
        .unwrap_or_else(|| panic!("no {table}: {page:#}"))
        .iter()
        .map(|row| (row[key]["value"].as_str().unwrap().to_string(), row))
        .collect()
}

/// Asserts each row of the API's `table` is on the page: `equal` fields as the API answered
/// them (both before and after the page read them, so they are settled), `counters` between
/// the answers before and after.
fn same_rows(
    page: &Value,
    table: &str,
    before: &Value,
    after: &Value,
    equal: &[&str],
    counters: &[&str],
) {
    let shown = rows_by(page, table, "name");
    let (before, after) = (
        before[table].as_array().unwrap(),
        after[table].as_array().unwrap(),
    );
    assert_eq!(shown.len(), after.len(), "{table}: {page:#}");
    for ((name, row), (old, new)) in shown.iter().zip(before.iter().zip(after)) {
        assert_eq!(name, new["name"].as_str().unwrap(), "{table} in order");
        for field in equal {
            assert_eq!(old[field], new[field], "{table} {name} {field} settled");
            assert_eq!(
                row[field]["value"].as_str().unwrap_or_default(),
                as_cell(&new[field]),
                "{table} {name} {field}: {row}"
            );
        }
        for field in counters {
            let shown = number(&row[field]);
            let (low, high) = (old[field].as_f64().unwrap(), new[field].as_f64().unwrap());
            assert!(
                low <= shown && shown <= high,
                "{table} {name} {field}: {shown} not within {low}..={high}"
            );
        }
    }
}

#[tokio::test]
async fn the_console_shows_what_the_admin_api_answers_and_resends_a_dead_letter() {
    let tickets = Tickets::new(Kind::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let recovered = dir.path().join("recovered");
    let receiver = Receiver::start(&[
        "--fail-until-file",
        recovered.to_str().unwrap(),
        "--status",
        "503",
    ]);
    let app = Portico::spawn(&tickets.config(CHANGES, &tail(&receiver.url))).await;
    let admin = admin_token();
    wait_polled(&app.base).await;
    // A miss and a hit for the cache, statements for the source.
    for _ in 0..2 {
        assert_eq!(app.get("/v1/tickets").await.status, 200);
    }
    tickets.sql("UPDATE TICKETS SET STATUS = 'C', UPDATED = '2026-01-02 00:00:00' WHERE ID = 'T2'");
    receiver
        .wait("three failed attempts", 30, |e| e.len() >= 3)
        .await;
    let dead = listed(&app, &admin, "/admin/dead-letters?subscription=console", 1).await[0].clone();

    // The shell is static, embedded, and locked down.
    let shell = reqwest::get(format!("{}/console", app.base)).await.unwrap();
    assert_eq!(shell.status(), 200);
    let headers = shell.headers().clone();
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = shell.text().await.unwrap();
    for asset in ["/console/console.js", "/console/console.css"] {
        assert!(html.contains(asset), "{html}");
        let answer = reqwest::get(format!("{}{asset}", app.base)).await.unwrap();
        assert_eq!(answer.status(), 200, "{asset}");
        assert!(answer.headers().contains_key("content-security-policy"));
        let text = answer.text().await.unwrap();
        for outside in ["\"http", "'http", "(http", "`http", "\"//", "'//"] {
            assert!(!text.contains(outside), "{asset} names another origin");
        }
    }
    let missing = reqwest::get(format!("{}/console/other.js", app.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The overview needs the admin scope, and names no secret.
    let reader = hs_token("clerk", json!({"scope": "tickets:read"}));
    app.get_as("/admin/overview", None).await.problem(401);
    app.get_as("/admin/overview", Some(&reader))
        .await
        .problem(403);
    let before = overview(&app, &admin).await;
    let text = before.to_string();
    for secret in [
        WEBHOOK_SECRET,
        crate::auth::SECRET,
        admin.as_str(),
        "state.sqlite3",
    ] {
        assert!(!text.contains(secret), "the overview names {secret}");
    }
    assert!(!text.contains(receiver.url.as_str()), "{text}");

    // Signed in: the page shows what the API answers.
    let shot = repo("docs/console.png");
    let page = browse("read", &app.base, &admin, &shot, "").await;
    let after = overview(&app, &admin).await;
    assert_eq!(page["session_token"], admin, "kept in session storage");
    assert_eq!(page["local_storage"], 0);
    assert_eq!(page["url"], format!("{}/console", app.base));
    assert_eq!(page["sign_in_visible"], false);
    same_rows(
        &page,
        "sources",
        &before,
        &after,
        &["dialect", "health", "breaker", "connections_max", "shed"],
        &["statements"],
    );
    let source = &rows_by(&page, "sources", "name")[0].1;
    assert_eq!(source["dialect"]["value"], "sqlite");
    assert_eq!(source["health"]["value"], "ok");
    assert_eq!(source["breaker"]["value"], "closed");
    assert!(number(&source["latency_mean_ms"]) >= 0.0, "{source}");
    assert!(number(&source["latency_p95_ms"]) >= 0.0, "{source}");
    same_rows(
        &page,
        "feeds",
        &before,
        &after,
        &["resources", "strategy", "last_error"],
        &["poll_errors"],
    );
    let feed = &rows_by(&page, "feeds", "name")[0].1;
    assert_eq!(feed["strategy"]["value"], "high_water_mark");
    assert_eq!(feed["resources"]["value"], "v1/tickets, v0/tickets");
    assert!(!feed["last_poll_at"]["value"].as_str().unwrap().is_empty());
    assert!(number(&feed["lag_seconds"]) >= 0.0);
    same_rows(
        &page,
        "subscriptions",
        &before,
        &after,
        &[
            "version",
            "enabled",
            "delivered",
            "pending",
            "retrying",
            "dead_letters",
        ],
        &[],
    );
    let console = &rows_by(&page, "subscriptions", "name")[0].1;
    assert_eq!(console["dead_letters"]["value"], "1");
    assert_eq!(console["delivered"]["value"], "0");
    same_rows(
        &page,
        "versions",
        &before,
        &after,
        &["status", "deprecated", "sunset"],
        &[],
    );
    let versions = rows_by(&page, "versions", "name");
    let v0 = versions.iter().find(|(n, _)| n == "v0").unwrap().1;
    assert_eq!(v0["status"]["value"], "deprecated");
    assert_eq!(v0["deprecated"]["text"], "2026-01-01");
    assert_eq!(v0["sunset"]["text"], "2027-06-30");
    let cache = &page["shown"]["cache"];
    for counter in ["hits", "misses"] {
        let shown = number(&cache[counter]);
        let low = before["cache"][counter].as_f64().unwrap();
        let high = after["cache"][counter].as_f64().unwrap();
        assert!(
            low <= shown && shown <= high && shown >= 1.0,
            "{counter}: {shown}"
        );
    }
    for gauge in ["entries", "bytes"] {
        let shown = cache[gauge]["value"].as_str().unwrap();
        assert!(
            [&before, &after]
                .iter()
                .any(|o| as_cell(&o["cache"][gauge]) == shown),
            "{gauge}: {shown}"
        );
    }
    let letters = rows_by(&page, "dead_letters", "id");
    assert_eq!(letters.len(), 1, "{page:#}");
    assert_eq!(letters[0].0, dead["id"].to_string());
    assert_eq!(letters[0].1["event_id"]["value"], dead["event_id"]);
    assert_eq!(letters[0].1["subscription"]["value"], "console");
    let size = std::fs::metadata(&shot).unwrap().len();
    assert!(
        (10_000..300_000).contains(&size),
        "screenshot of {size} bytes"
    );

    // Resend from the page once the receiver is back: it gets that delivery, verified.
    std::fs::write(&recovered, b"").unwrap();
    let id = dead["id"].to_string();
    let page = browse("resend", &app.base, &admin, Path::new("-"), &id).await;
    assert_eq!(page["outcome"]["status"], "202", "{page:#}");
    let text = page["outcome"]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("Delivery {id} is due again")),
        "{text}"
    );
    let entries = receiver
        .wait("the resent delivery", 30, |e| {
            e.iter().any(|e| e["outcome"] == "accepted")
        })
        .await;
    let accepted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["id"], dead["event_id"], "the same webhook-id");
    assert_eq!(accepted[0]["body"]["data"]["key"], "T2");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = overview(&app, &admin).await;
        let counts = &now["subscriptions"][0];
        if counts["delivered"] == 1 && counts["dead_letters"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{now:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A token without the admin scope, and one that does not verify: refused, and shown so.
    for (token, status) in [(reader.as_str(), "403"), ("not-a-token", "401")] {
        let page = browse("refused", &app.base, token, Path::new("-"), "").await;
        assert_eq!(page["shown_error"]["status"], status, "{page:#}");
        let text = page["shown_error"]["text"].as_str().unwrap();
        assert!(text.starts_with(&format!("Refused ({status}")), "{text}");
        assert_eq!(page["board_visible"], false);
        assert_eq!(page["rows_shown"], 0);
        assert_eq!(page["sign_in_visible"], true, "asks for another token");
        assert!(
            page["session_token"].is_null(),
            "the refused token is forgotten"
        );
        if status == "403" {
            assert!(text.contains("portico:admin"), "names the scope: {text}");
        }
    }
}

/// The overview on each database: its dialect, health, statements and latency, and a feed's
/// failed polls with the kind of the last failure.
async fn the_overview_reports_the_database_and_a_failing_feed(kind: Kind) {
    let tickets = Tickets::new(kind);
    let receiver = Receiver::start(&[]);
    let app = Portico::spawn(&tickets.config(CHANGES, &tail(&receiver.url))).await;
    let admin = admin_token();
    wait_polled(&app.base).await;
    assert_eq!(app.get("/v1/tickets").await.status, 200);
    let answer = overview(&app, &admin).await;
    let source = &answer["sources"][0];
    assert_eq!(source["name"], "legacy");
    assert_eq!(source["dialect"], kind.dialect());
    assert_eq!(source["health"], "ok");
    assert_eq!(source["breaker"], "closed");
    assert_eq!(source["connections_max"], 8, "the default max_concurrency");
    assert!(source["statements"].as_u64().unwrap() >= 2, "{source}");
    assert!(
        source["latency_mean_ms"].as_f64().unwrap() > 0.0,
        "{source}"
    );
    assert!(source["latency_p95_ms"].as_f64().unwrap() > 0.0, "{source}");
    let feed = &answer["feeds"][0];
    assert_eq!(feed["name"], "legacy.TICKETS");
    assert_eq!(feed["poll_errors"], 0);
    assert!(feed["last_error"].is_null());
    assert!(feed["last_poll_at"].is_string());

    // The table goes away: polls fail, counted, the last one's kind kept (no driver text).
    tickets.sql("DROP TABLE TICKETS");
    let deadline = Instant::now() + Duration::from_secs(30);
    let feed = loop {
        let answer = overview(&app, &admin).await;
        let feed = answer["feeds"][0].clone();
        if feed["poll_errors"].as_u64().unwrap() >= 1 {
            break feed;
        }
        assert!(Instant::now() < deadline, "{answer:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(feed["last_error"]["kind"], "query", "{feed}");
    assert!(feed["last_error"]["at"].is_string());
}

mod overview_per_database {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        the_overview_reports_the_database_and_a_failing_feed(Kind::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() {
        the_overview_reports_the_database_and_a_failing_feed(Kind::Postgres).await
    }

    #[tokio::test]
    async fn mariadb() {
        the_overview_reports_the_database_and_a_failing_feed(Kind::MariaDb).await
    }
}
