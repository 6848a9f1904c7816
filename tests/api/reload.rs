//! Reloading the configuration while serving (`POST /admin/reload`, `SIGHUP`): under load no
//! request fails, unchanged sources keep their connections, unchanged resources their cached
//! answers, feeds start and stop with the file, and a broken file is refused whole.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::changes::{has, wait_polled, Receiver};
use crate::fixture::Kind;
use crate::harness::{execute, fresh_database, query_text, Portico, Served};
use crate::idp::{AUDIENCE, ISSUER};

/// A fresh database with `ITEMS` (I1, I2) and `NOTES` (N1), and a configuration file beside it.
struct Legacy {
    kind: Kind,
    connection_string: String,
    dir: tempfile::TempDir,
}

/// What one configuration of the test serves.
#[derive(Clone, Copy, Default)]
struct Shape {
    /// `items.name` is called `title`.
    title: bool,
    /// `notes` is served.
    notes: bool,
    /// `notes.body` is called `text`.
    text: bool,
    /// Both resources have a change feed (and a subscription takes every event).
    feeds: bool,
    /// `[server] workers` (bound at start).
    workers: usize,
}

impl Legacy {
    fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let connection_string = fresh_database(kind, dir.path());
        let legacy = Self {
            kind,
            connection_string,
            dir,
        };
        legacy.sql("CREATE TABLE ITEMS (ID VARCHAR(6) NOT NULL PRIMARY KEY, NAME VARCHAR(20) NOT NULL, QTY INTEGER NOT NULL)");
        legacy.sql(
            "CREATE TABLE NOTES (ID VARCHAR(6) NOT NULL PRIMARY KEY, BODY VARCHAR(40) NOT NULL)",
        );
        legacy.sql("INSERT INTO ITEMS (ID, NAME, QTY) VALUES ('I1', 'bolt', 5)");
        legacy.sql("INSERT INTO ITEMS (ID, NAME, QTY) VALUES ('I2', 'nut', 7)");
        legacy.sql("INSERT INTO NOTES (ID, BODY) VALUES ('N1', 'first')");
        legacy
    }

    /// Runs `sql` with the upper-case names quoted the way the database keeps them.
    fn sql(&self, sql: &str) {
        let names = ["ITEMS", "NOTES", "ID", "NAME", "QTY", "BODY"];
        let mut text = String::new();
        for (i, word) in sql.split(' ').enumerate() {
            if i > 0 {
                text.push(' ');
            }
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            match names.contains(&bare) && !word.contains('\'') {
                true => text.push_str(&word.replacen(bare, &self.kind.quote(bare), 1)),
                false => text.push_str(word),
            }
        }
        execute(&self.connection_string, &text);
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("portico.toml")
    }

    /// Writes the configuration of `shape` to the file and serves it in this process.
    async fn serve(&self, shape: Shape, receiver: Option<&str>) -> Portico {
        self.write(shape, receiver);
        Portico::serve_file(&self.path()).await
    }

    /// Writes the configuration of `shape` (subscribing `receiver` to every event) to the file.
    fn write(&self, shape: Shape, receiver: Option<&str>) {
        std::fs::write(self.path(), self.config(shape, receiver)).unwrap();
    }

    fn config(&self, shape: Shape, receiver: Option<&str>) -> String {
        let feed = match shape.feeds {
            true => "changes = { strategy = \"snapshot_diff\", poll_interval = \"200ms\" }",
            false => "",
        };
        let mut text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = {workers}

[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
admin_scope = "portico:admin"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

[sources.legacy]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{cs}"

[state]
path = "{state}"

[webhooks]
retry_schedule = ["0s", "300ms"]
jitter = 0.0
allow_private = ["127.0.0.1"]
dispatch_interval = "100ms"

[versions.v1.resources.items]
source = "legacy"
table = "ITEMS"
key = ["id"]
anonymous = true
cache_ttl = "60s"
writes = ["update"]
write_scope = "items:write"
{feed}

[versions.v1.resources.items.fields]
id = {{ column = "ID", type = "string", read_only = true }}
{name} = {{ column = "NAME", type = "string" }}
qty = {{ column = "QTY", type = "integer" }}
"#,
            workers = shape.workers.max(2),
            dialect = self.kind.dialect(),
            cs = self.connection_string,
            state = self.dir.path().join("state.sqlite3").display(),
            name = if shape.title { "title" } else { "name" },
        );
        if shape.notes {
            text.push_str(&format!(
                r#"
[versions.v1.resources.notes]
source = "legacy"
table = "NOTES"
key = ["id"]
anonymous = true
cache_ttl = "60s"
{feed}

[versions.v1.resources.notes.fields]
id = {{ column = "ID", type = "string" }}
{body} = {{ column = "BODY", type = "string" }}
"#,
                body = if shape.text { "text" } else { "body" },
            ));
        }
        if let Some(url) = receiver {
            text.push_str(&format!(
                "\n[subscriptions.all]\nurl = \"{url}\"\nversion = \"v1\"\nevents = [\"*\"]\nsecret = \"{}\"\n",
                crate::changes::SECRET
            ));
        }
        text
    }
}

fn admin() -> String {
    hs_token("ops", json!({"scope": "portico:admin"}))
}

/// `POST /admin/reload` with `token`: the status and the body (checked against the document).
async fn reload(app: &Portico, token: Option<&str>) -> (u16, Value) {
    let answer = app
        .send(reqwest::Method::POST, "/admin/reload", token, &[], None)
        .await;
    (answer.status.as_u16(), answer.body)
}

/// `GET path` (past the cache with `past_cache`), not kept for the contract check: the
/// answers of earlier configurations need not match the document of the last one.
async fn fetch(app: &Portico, path: &str, past_cache: bool) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", app.base));
    if past_cache {
        request = request.header("cache-control", "no-cache");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Whether `item` (a row of `/v1/items`) is shaped as one of the two configurations says.
fn shaped(item: &Value) -> bool {
    let keys: Vec<&str> = item
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut keys = keys;
    keys.sort_unstable();
    keys == ["id", "name", "qty"] || keys == ["id", "qty", "title"]
}

/// Clients looping on cached and uncached reads and a write until `stop`, recording every
/// answer neither configuration would give.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    answered: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for client_no in 0..5 {
            let (stop, failures, answered) = (stop.clone(), failures.clone(), answered.clone());
            let base = base.to_string();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let writer = hs_token("writer", json!({"scope": "items:write"}));
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    let outcome = match client_no {
                        // Cached: the list and one row.
                        0 | 1 => read(&client, &format!("{base}/v1/items?limit=10"), false).await,
                        // Uncached: the client asks past the cache.
                        2 => read(&client, &format!("{base}/v1/items/I1"), true).await,
                        // A resource only one configuration serves.
                        3 => notes(&client, &base).await,
                        _ => {
                            let answer = client
                                .patch(format!("{base}/v1/items/I2"))
                                .bearer_auth(&writer)
                                .json(&json!({ "qty": round % 1000 }))
                                .send()
                                .await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            match answer {
                                Ok(r) if r.status().is_success() => Ok(()),
                                Ok(r) => Err(format!(
                                    "PATCH: {} {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                )),
                                Err(e) => Err(format!("PATCH: {e}")),
                            }
                        }
                    };
                    answered.fetch_add(1, Ordering::SeqCst);
                    if let Err(failure) = outcome {
                        failures.lock().unwrap().push(failure);
                    }
                }
            }));
        }
        Self {
            stop,
            failures,
            answered,
            tasks,
        }
    }

    /// Stops the clients; every answer that failed.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.answered.load(Ordering::SeqCst), failures)
    }
}

/// A read of `/v1/items` or one item: 200 with rows shaped as either configuration.
async fn read(client: &reqwest::Client, url: &str, past_cache: bool) -> Result<(), String> {
    let mut request = client.get(url);
    if past_cache {
        request = request.header("cache-control", "no-cache");
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let rows = match body["data"].as_array() {
        Some(rows) => rows.clone(),
        None => vec![body.clone()],
    };
    match status == 200 && !rows.is_empty() && rows.iter().all(shaped) {
        true => Ok(()),
        false => Err(format!("GET {url}: {status} {body}")),
    }
}

/// `/v1/notes`: 200 where it is served, 404 where it is not; nothing else.
async fn notes(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let response = client
        .get(format!("{base}/v1/notes"))
        .send()
        .await
        .map_err(|e| format!("GET /v1/notes: {e}"))?;
    match response.status().as_u16() {
        200 | 404 => Ok(()),
        other => Err(format!("GET /v1/notes: {other}")),
    }
}

/// The first item's member names and whether `/v1/notes` is served, as a new request sees them.
async fn visible(app: &Portico) -> (bool, bool) {
    let (status, item) = fetch(app, "/v1/items/I1", false).await;
    assert_eq!(status, 200, "{item}");
    let notes = fetch(app, "/v1/notes", false).await.0;
    assert!(notes == 200 || notes == 404, "{notes}");
    (item.get("title").is_some(), notes == 200)
}

/// How a test asks for a reload.
enum Trigger<'a> {
    /// `POST /admin/reload` with an admin token.
    Post,
    /// `SIGHUP` to a `portico serve` process.
    Hangup(&'a Served),
}

/// Ten reloads alternating the configurations `plain` (serving) and `other` while clients
/// read (cached and uncached) and write: every answer is one of the two configurations', and
/// each reload is visible to the next request.
async fn alternate_under_load(app: &Portico, legacy: &Legacy, plain: Shape, trigger: Trigger<'_>) {
    let other = Shape {
        title: true,
        notes: true,
        ..plain
    };
    assert_eq!(visible(app).await, (false, false));
    let load = Load::start(&app.base);
    let token = admin();
    for round in 0..10u64 {
        let shape = if round % 2 == 0 { other } else { plain };
        legacy.write(shape, None);
        match trigger {
            Trigger::Post => {
                let (status, report) = reload(app, Some(&token)).await;
                assert_eq!(status, 200, "{report}");
                assert_eq!(report["generation"], round + 2, "{report}");
                assert_eq!(report["sources_kept"], json!(["legacy"]), "{report}");
            }
            Trigger::Hangup(served) => {
                served.hangup();
                wait_metric(app, "portico_config_generation", (round + 2) as f64).await;
            }
        }
        let seen = visible(app).await;
        assert_eq!(seen, (shape.title, shape.notes), "round {round}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (answered, failures) = load.finish().await;
    assert!(answered > 50, "the clients answered only {answered} times");
    let failed = failures.len();
    assert!(
        failures.is_empty(),
        "{failed} of {answered} failed: {failures:#?}"
    );
    assert_eq!(app.metric("portico_config_generation").await, 11.0);
    let applied = "portico_config_reloads_total{outcome=\"applied\"}";
    assert_eq!(app.metric(applied).await, 10.0);
}

/// Ten reloads through `POST /admin/reload` under load (with change feeds polling).
async fn ten_reloads_under_load_fail_no_request(kind: Kind) {
    let legacy = Legacy::new(kind);
    let plain = Shape {
        feeds: true,
        ..Shape::default()
    };
    let app = legacy.serve(plain, None).await;
    alternate_under_load(&app, &legacy, plain, Trigger::Post).await;
}

/// Waits until `sample` reads `value` on `app`'s metrics.
async fn wait_metric(app: &Portico, sample: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = app.metric(sample).await;
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{sample} is {now}, not {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same through `SIGHUP` to a `portico serve` process; then a broken file, refused with
/// every problem in the log while the running configuration keeps answering.
#[tokio::test]
async fn ten_hangups_under_load_fail_no_request() {
    let legacy = Legacy::new(Kind::Sqlite);
    let plain = Shape::default();
    legacy.write(plain, None);
    let mut served = Served::spawn(&legacy.path(), &[], &legacy.dir.path().join("log.txt"));
    let app = Portico::attach(&served.address().await);
    alternate_under_load(&app, &legacy, plain, Trigger::Hangup(&served)).await;

    std::fs::write(
        legacy.path(),
        legacy
            .config(plain, None)
            .replace(
                "workers = 2\n",
                "workers = 2\nmax_filter_terms = 0\nbody_timeout = \"soon\"\n",
            )
            .replace("source = \"legacy\"", "source = \"nowhere\""),
    )
    .unwrap();
    served.hangup();
    wait_metric(
        &app,
        "portico_config_reloads_total{outcome=\"refused\"}",
        1.0,
    )
    .await;
    let log = served.log();
    for location in [
        "server.body_timeout",
        "server.max_filter_terms",
        "versions.v1.resources.items.source",
    ] {
        assert!(log.contains(location), "{location} not logged:\n{log}");
    }
    assert_eq!(app.metric("portico_config_generation").await, 11.0);
    assert_eq!(
        visible(&app).await,
        (false, false),
        "the last good file serves on"
    );
}

/// A file with several problems is refused with every one listed, and a change to a setting
/// bound at start is refused naming it; the running configuration answers on.
#[tokio::test]
async fn a_broken_file_is_refused_with_every_problem_and_the_old_one_serves_on() {
    let legacy = Legacy::new(Kind::Sqlite);
    let plain = Shape::default();
    let app = legacy.serve(plain, None).await;
    let token = admin();
    std::fs::write(
        legacy.path(),
        legacy
            .config(
                Shape {
                    notes: true,
                    ..plain
                },
                None,
            )
            .replace(
                "workers = 2\n",
                "workers = 2\nmax_filter_terms = 0\nbody_timeout = \"soon\"\n",
            )
            .replace(
                "table = \"NOTES\"",
                "table = \"NOTES\"\ndefault_sort = [\"colour\"]",
            ),
    )
    .unwrap();
    let (status, body) = reload(&app, Some(&token)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "/problems/configuration-refused");
    let locations: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["location"].as_str().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            "server.body_timeout",
            "server.max_filter_terms",
            "versions.v1.resources.notes.default_sort"
        ],
        "{body}"
    );
    assert!(body["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("`soon` is not a duration"));
    assert_eq!(visible(&app).await, (false, false));

    // Bound at start: refused whole, naming each setting.
    let mut text = legacy.config(
        Shape {
            workers: 3,
            notes: true,
            ..plain
        },
        None,
    );
    text = text.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"");
    std::fs::write(legacy.path(), text).unwrap();
    let (status, body) = reload(&app, Some(&token)).await;
    assert_eq!(status, 422, "{body}");
    let locations: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["location"].as_str().unwrap())
        .collect();
    assert_eq!(locations, ["server.listen", "server.workers"], "{body}");
    assert_eq!(visible(&app).await, (false, false), "notes was not added");
    assert_eq!(app.metric("portico_config_generation").await, 1.0);
    assert_eq!(
        app.metric("portico_config_reloads_total{outcome=\"refused\"}")
            .await,
        2.0
    );
}

/// A file with problems that also changes a setting bound at start names that setting too:
/// every problem in one answer, not one more refusal once the others are fixed.
#[tokio::test]
async fn a_broken_file_names_its_restart_only_changes_too() {
    let legacy = Legacy::new(Kind::Sqlite);
    let plain = Shape::default();
    let app = legacy.serve(plain, None).await;
    let text = legacy
        .config(
            Shape {
                workers: 3,
                ..plain
            },
            None,
        )
        .replace("workers = 3\n", "workers = 3\nbody_timeout = \"soon\"\n");
    std::fs::write(legacy.path(), text).unwrap();
    let (status, body) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 422, "{body}");
    let locations: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["location"].as_str().unwrap())
        .collect();
    assert_eq!(
        locations,
        ["server.body_timeout", "server.workers"],
        "{body}"
    );
}

/// A request that started before a reload and reaches the cache after it (here: waiting for
/// the identity provider's keys) answers from the configuration it started with, but must not
/// leave that answer in the cache for the requests of the new configuration.
#[tokio::test]
async fn a_request_of_the_old_configuration_leaves_no_cached_answer_behind() {
    let legacy = Legacy::new(Kind::Sqlite);
    let plain = Shape::default();
    let minted = crate::idp::pyjwt(
        &[("rs1", "RS256"), ("rs2", "RS256")],
        &[("rs2", crate::idp::claims("late", json!({})))],
    );
    let jwks = crate::idp::JwksServer::start(vec![minted.jwks["rs1"].clone()]);
    let with_jwks = |shape: Shape| {
        legacy.config(shape, None).replace(
            "[sources.legacy]",
            &format!(
                "[auth.jwks]\ndiscovery = \"{}\"\nalgorithms = [\"RS256\"]\n\
                 refresh_min_interval = \"3s\"\n\n[sources.legacy]",
                jwks.base
            ),
        )
    };
    std::fs::write(legacy.path(), with_jwks(plain)).unwrap();
    let app = Portico::serve_file(&legacy.path()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while jwks.fetches() == 0 {
        assert!(Instant::now() < deadline, "the key set is fetched at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its key is not published yet: the request waits for the next fetch the interval allows.
    let late = {
        let (url, token) = (format!("{}/v1/items", app.base), minted.tokens[0].clone());
        tokio::spawn(async move {
            let answer = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    jwks.publish(minted.jwks["rs2"].clone());
    std::fs::write(
        legacy.path(),
        with_jwks(Shape {
            title: true,
            ..plain
        }),
    )
    .unwrap();
    let (status, body) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caches_dropped"], json!(["items"]), "{body}");
    let (status, old) = late.await.unwrap();
    assert_eq!(status, 200, "{old}");
    assert!(
        old["data"][0].get("name").is_some(),
        "served on the old configuration: {old}"
    );
    let (status, now) = fetch(&app, "/v1/items", false).await;
    assert_eq!(status, 200, "{now}");
    assert!(
        now["data"][0].get("title").is_some(),
        "the new configuration's answer, not the old one cached after the reload: {now}"
    );
}

/// Only an admin token reloads.
#[tokio::test]
async fn reload_needs_the_admin_scope() {
    let legacy = Legacy::new(Kind::Sqlite);
    let app = legacy.serve(Shape::default(), None).await;
    // Before any reload or breaker transition, the series an operator alerts on are there at 0.
    let scraped = app.get_text("/metrics").await;
    for series in [
        "portico_config_reloads_total{outcome=\"applied\"} 0",
        "portico_config_reloads_total{outcome=\"refused\"} 0",
        "portico_config_reloads_total{outcome=\"failed\"} 0",
        "portico_source_breaker_transitions_total{source=\"legacy\",state=\"open\"} 0",
        "portico_source_breaker_transitions_total{source=\"legacy\",state=\"half_open\"} 0",
        "portico_source_breaker_transitions_total{source=\"legacy\",state=\"closed\"} 0",
    ] {
        assert!(
            scraped.lines().any(|l| l == series),
            "{series} missing:\n{scraped}"
        );
    }
    assert_eq!(reload(&app, None).await.0, 401);
    let writer = hs_token("writer", json!({"scope": "items:write"}));
    assert_eq!(reload(&app, Some(&writer)).await.0, 403);
    assert_eq!(reload(&app, Some(&admin())).await.0, 200);
}

/// A caller who spent its rate limit is still limited after a reload: the counts survive it.
#[tokio::test]
async fn the_rate_limiter_keeps_its_counts_across_a_reload() {
    let legacy = Legacy::new(Kind::Sqlite);
    let limited = |shape: Shape| {
        legacy.config(shape, None) + "\n[rate_limit]\nrequests_per_second = 0.01\nburst = 2\n"
    };
    std::fs::write(legacy.path(), limited(Shape::default())).unwrap();
    let app = Portico::serve_file(&legacy.path()).await;
    let reader = hs_token("reader", json!({}));
    let read = || {
        let request = reqwest::Client::new()
            .get(format!("{}/v1/items/I1", app.base))
            .bearer_auth(&reader);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(read().await, 200);
    assert_eq!(read().await, 200);
    assert_eq!(read().await, 429, "the burst is spent");
    std::fs::write(
        legacy.path(),
        limited(Shape {
            notes: true,
            ..Shape::default()
        }),
    )
    .unwrap();
    let (status, report) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(read().await, 429, "a reload gave the spent burst back");
}

/// A reload that changes `notes` drops its cached answers and keeps `items`'.
async fn only_changed_resources_lose_their_cached_answers(kind: Kind) {
    let legacy = Legacy::new(kind);
    let shape = Shape {
        notes: true,
        ..Shape::default()
    };
    let app = legacy.serve(shape, None).await;
    assert_eq!(fetch(&app, "/v1/items/I1", false).await.1["qty"], 5);
    assert_eq!(fetch(&app, "/v1/notes/N1", false).await.1["body"], "first");
    // Behind Portico's back: the cached answers do not know.
    legacy.sql("UPDATE ITEMS SET QTY = 99 WHERE ID = 'I1'");
    legacy.sql("UPDATE NOTES SET BODY = 'second' WHERE ID = 'N1'");
    assert_eq!(fetch(&app, "/v1/items/I1", false).await.1["qty"], 5);
    assert_eq!(fetch(&app, "/v1/notes/N1", false).await.1["body"], "first");

    legacy.write(
        Shape {
            text: true,
            ..shape
        },
        None,
    );
    let (status, report) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["caches_dropped"], json!(["notes"]), "{report}");
    assert_eq!(report["sources_kept"], json!(["legacy"]), "{report}");
    assert_eq!(
        fetch(&app, "/v1/items/I1", false).await.1["qty"],
        5,
        "an unchanged resource keeps its cached answer"
    );
    let note = fetch(&app, "/v1/notes/N1", false).await.1;
    assert_eq!(note["text"], "second", "{note}");
    let document = fetch(&app, "/openapi/v1.json", false).await.1;
    let fields = &document["components"]["schemas"]["Note"]["properties"];
    assert!(
        fields.get("text").is_some() && fields.get("body").is_none(),
        "{fields}"
    );
}

/// A feed a reload adds polls and delivers; one a reload removes stops; one unchanged polls on.
async fn feeds_follow_the_file(kind: Kind) {
    let legacy = Legacy::new(kind);
    let receiver = Receiver::start(&[]);
    let without = Shape {
        feeds: true,
        ..Shape::default()
    };
    let with = Shape {
        notes: true,
        ..without
    };
    let app = legacy.serve(without, Some(&receiver.url)).await;
    wait_polled(&app.base).await;

    legacy.write(with, Some(&receiver.url));
    let (status, report) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["feeds_started"], json!(["legacy.NOTES"]), "{report}");
    assert_eq!(report["feeds_kept"], json!(["legacy.ITEMS"]), "{report}");
    wait_polled(&app.base).await;
    legacy.sql("INSERT INTO NOTES (ID, BODY) VALUES ('N2', 'added')");
    receiver
        .wait("notes.created N2", 30, |e| has(e, "notes.created", "N2"))
        .await;

    legacy.write(without, Some(&receiver.url));
    let (status, report) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["feeds_stopped"], json!(["legacy.NOTES"]), "{report}");
    assert_eq!(report["feeds_kept"], json!(["legacy.ITEMS"]), "{report}");
    legacy.sql("INSERT INTO NOTES (ID, BODY) VALUES ('N3', 'unwatched')");
    legacy.sql("UPDATE ITEMS SET QTY = 42 WHERE ID = 'I1'");
    receiver
        .wait("items.updated I1", 30, |e| has(e, "items.updated", "I1"))
        .await;
    // Several of the stopped feed's poll intervals: it detects nothing more (its events
    // would not be delivered anyway, the resource being gone).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let created = "portico_change_events_total{feed=\"legacy.NOTES\",kind=\"created\"}";
    assert_eq!(app.metric(created).await, 1.0, "a removed feed polled on");
    assert!(!has(&receiver.entries(), "notes.created", "N3"));
}

/// Portico's connections to the database behind `connection_string`: (pid, backend_start).
fn backends(connection_string: &str) -> Vec<(String, String)> {
    query_text(
        connection_string,
        "SELECT pid, backend_start FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .into_iter()
    .map(|row| {
        (
            row[0].clone().unwrap_or_default(),
            row[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

/// On PostgreSQL: the unchanged source's connection is the same backend after a reload; the
/// changed source's pool is new (its old backend ends, a new one serves).
#[tokio::test]
async fn an_unchanged_source_keeps_its_pool_and_a_changed_one_is_rebuilt() {
    let kept = Legacy::new(Kind::Postgres);
    let changed = Legacy::new(Kind::Postgres);
    let config = |concurrency: usize| {
        let mut text = kept.config(Shape::default(), None);
        text.push_str(&format!(
            r#"
[sources.other]
kind = "odbc"
dialect = "postgres"
connection_string = "{cs}"
max_concurrency = {concurrency}

[versions.v1.resources.others]
source = "other"
table = "ITEMS"
key = ["id"]
anonymous = true

[versions.v1.resources.others.fields]
id = {{ column = "ID", type = "string" }}
qty = {{ column = "QTY", type = "integer" }}
"#,
            cs = changed.connection_string
        ));
        text
    };
    std::fs::write(kept.path(), config(2)).unwrap();
    let app = Portico::serve_file(&kept.path()).await;
    assert_eq!(fetch(&app, "/v1/items/I1", true).await.0, 200);
    assert_eq!(fetch(&app, "/v1/others/I1", true).await.0, 200);
    let kept_before = backends(&kept.connection_string);
    let changed_before = backends(&changed.connection_string);
    assert!(!kept_before.is_empty() && !changed_before.is_empty());

    std::fs::write(kept.path(), config(3)).unwrap();
    let (status, report) = reload(&app, Some(&admin())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["sources_kept"], json!(["legacy"]), "{report}");
    assert_eq!(report["sources_rebuilt"], json!(["other"]), "{report}");
    assert_eq!(report["caches_dropped"], json!(["others"]), "{report}");

    assert_eq!(fetch(&app, "/v1/items/I1", true).await.0, 200);
    assert_eq!(fetch(&app, "/v1/others/I1", true).await.0, 200);
    let kept_after = backends(&kept.connection_string);
    assert!(
        kept_before.iter().any(|b| kept_after.contains(b)),
        "the unchanged source's connection was replaced: {kept_before:?} -> {kept_after:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = backends(&changed.connection_string);
        let old_gone = !changed_before.iter().any(|b| after.contains(b));
        if old_gone && !after.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the changed source kept its connection: {changed_before:?} -> {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

macro_rules! per_database {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $test() { super::$test(super::Kind::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $test() { super::$test(super::Kind::Postgres).await })*
        }
        mod mariadb {
            $(#[tokio::test] async fn $test() { super::$test(super::Kind::MariaDb).await })*
        }
    };
}

per_database!(
    ten_reloads_under_load_fail_no_request,
    only_changed_resources_lose_their_cached_answers,
    feeds_follow_the_file,
    a_file_its_database_disproves_is_refused,
);

/// A file that builds but names what its database lacks (a column that is not there, a type
/// its values do not fit) is refused as `portico check` would refuse it, on every database:
/// the new or changed resources are proven before the swap, and the old file serves on.
async fn a_file_its_database_disproves_is_refused(kind: Kind) {
    let legacy = Legacy::new(kind);
    let plain = Shape::default();
    let app = legacy.serve(plain, None).await;
    let token = admin();
    let adding = Shape {
        notes: true,
        ..plain
    };
    let text = legacy
        .config(adding, None)
        .replace(
            "{ column = \"BODY\", type = \"string\" }",
            "{ column = \"BODDY\", type = \"string\" }",
        )
        .replace(
            "qty = { column = \"QTY\", type = \"integer\" }",
            "qty = { column = \"NAME\", type = \"integer\" }",
        );
    std::fs::write(legacy.path(), text).unwrap();
    let (status, body) = reload(&app, Some(&token)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "/problems/configuration-refused");
    let problems = body["problems"].as_array().unwrap();
    let named = |location: &str, says: &str| {
        problems.iter().any(|p| {
            p["location"]
                .as_str()
                .unwrap_or_default()
                .starts_with(location)
                && p["message"].as_str().unwrap_or_default().contains(says)
        })
    };
    assert!(
        named("versions.v1.resources.notes", "BODDY"),
        "the missing column is named: {body}"
    );
    assert!(
        named("versions.v1.resources.items.fields.qty", "integer"),
        "the type its values do not fit is named: {body}"
    );
    assert_eq!(
        visible(&app).await,
        (false, false),
        "the old file serves on"
    );
    assert_eq!(app.metric("portico_config_generation").await, 1.0);

    // The same change without the mistakes goes in.
    legacy.write(adding, None);
    let (status, body) = reload(&app, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(visible(&app).await, (false, true));
}
