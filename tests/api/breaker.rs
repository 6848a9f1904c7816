//! The circuit breaker per source: a database really stopped and started behind a small proxy
//! that counts the connections Portico makes to it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{self, Kind};
use crate::harness::{execute, load_fixture, Answer, Portico};
use crate::servers::{DbServer, Engine};

/// Passes connections through to a database server, counting them.
struct Proxy {
    accepted: Arc<AtomicUsize>,
    /// The connection string through the proxy.
    connection_string: String,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// A proxy in front of the server `connection_string` names (a TCP port for PostgreSQL, a
    /// Unix socket for MariaDB), on a thread of its own: building Portico connects from the
    /// test's thread, which a proxy on the test's runtime could not answer then.
    fn start(engine: Engine, connection_string: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let entered = runtime.enter();
        let accepted = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().unwrap();
        let setting = |key: &str| {
            connection_string
                .split(';')
                .find_map(|part| part.strip_prefix(key))
                .unwrap()
                .to_string()
        };
        let counter = accepted.clone();
        let connection_string = match engine {
            Engine::Postgres => {
                let port = setting("Port=");
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mine = listener.local_addr().unwrap().port();
                let upstream = format!("127.0.0.1:{port}");
                runtime.spawn(async move {
                    while let Ok((mut client, _)) = listener.accept().await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let upstream = upstream.clone();
                        tokio::spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                });
                connection_string.replace(&format!("Port={port}"), &format!("Port={mine}"))
            }
            Engine::MariaDb => {
                let socket = setting("Socket=");
                let path: PathBuf = dir.path().join("proxy.sock");
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                let upstream = socket.clone();
                runtime.spawn(async move {
                    while let Ok((mut client, _)) = listener.accept().await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let upstream = upstream.clone();
                        tokio::spawn(async move {
                            if let Ok(mut server) = tokio::net::UnixStream::connect(upstream).await
                            {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                });
                connection_string.replace(
                    &format!("Socket={socket}"),
                    &format!("Socket={}", path.display()),
                )
            }
        };
        drop(entered);
        std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
        Self {
            accepted,
            connection_string,
            _dir: dir,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn kind_of(engine: Engine) -> Kind {
    match engine {
        Engine::Postgres => Kind::Postgres,
        Engine::MariaDb => Kind::MariaDb,
    }
}

/// `TICKETS`, watched by a high-water-mark feed polled every 200 ms.
fn tickets_table(kind: Kind, connection_string: &str) {
    let q = |n: &str| kind.quote(n);
    let timestamp = if kind == Kind::MariaDb {
        "DATETIME"
    } else {
        "TIMESTAMP"
    };
    execute(
        connection_string,
        &format!(
            "CREATE TABLE {} ({} CHAR(6) NOT NULL PRIMARY KEY, {} {timestamp} NOT NULL)",
            q("TICKETS"),
            q("ID"),
            q("UPDATED")
        ),
    );
    insert_ticket(kind, connection_string, "T1", "2026-01-01 10:00:00");
}

fn insert_ticket(kind: Kind, connection_string: &str, id: &str, updated: &str) {
    execute(
        connection_string,
        &format!(
            "INSERT INTO {} VALUES ('{id}', '{updated}')",
            kind.quote("TICKETS")
        ),
    );
}

const TICKETS: &str = r#"
[versions.v1.resources.tickets]
source = "legacy"
table = "TICKETS"
key = ["id"]
anonymous = true
changes = { strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms" }

[versions.v1.resources.tickets.fields]
id = { column = "ID", type = "string", column_type = "char(6)", trim = true }
updated_at = { column = "UPDATED", type = "datetime" }
"#;

/// The value of the first metric sample starting with `sample`, if it is exported at all.
async fn sample(app: &Portico, sample: &str) -> Option<f64> {
    app.get_text("/metrics")
        .await
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
}

async fn breaker_state(app: &Portico) -> Option<f64> {
    sample(app, "portico_source_breaker_state{source=\"legacy\"}").await
}

async fn transitions(app: &Portico, state: &str) -> f64 {
    let line =
        format!("portico_source_breaker_transitions_total{{source=\"legacy\",state=\"{state}\"}}");
    sample(app, &line).await.unwrap_or(0.0)
}

async fn poll_errors(app: &Portico) -> f64 {
    sample(
        app,
        "portico_change_poll_errors_total{feed=\"legacy.TICKETS\"}",
    )
    .await
    .unwrap_or(0.0)
}

/// Whether `answer` is the open breaker's 503 (asserting its shape when it is).
fn refused_by_breaker(answer: &Answer) -> bool {
    if answer.status != 503
        || !answer.body["detail"]
            .to_string()
            .contains("circuit breaker")
    {
        return false;
    }
    let problem = answer.problem(503);
    assert_eq!(problem["type"], "/problems/source-unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("`legacy`") && detail.contains("circuit breaker is open"),
        "{detail}"
    );
    for leak in ["Driver", "ODBC", "connect"] {
        assert!(!detail.contains(leak), "no driver text: {detail}");
    }
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&retry_after), "{retry_after}");
    true
}

/// Sends `path` until `done` says the answer is the awaited one; 30 s at most.
async fn until(app: &Portico, path: &str, what: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.get(path).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_breaker_keeps_a_stopped_database_unhammered_and_closes_when_it_is_back(
    engine: Engine,
) {
    let kind = kind_of(engine);
    let server = DbServer::start(engine);
    let db = load_fixture(kind, Some(&server));
    tickets_table(kind, &db.connection_string);
    let proxy = Proxy::start(engine, &db.connection_string);
    let state = tempfile::tempdir().unwrap();
    let extra = "query_timeout = \"2s\"\nlogin_timeout = \"2s\"\n\
                 breaker = { min_statements = 3, failure_rate = 0.5, window = \"60s\", cool_down = \"4s\", probes = 2 }";
    let config = fixture::config(kind, &proxy.connection_string, extra).replace(
        "[versions.v1.resources.jobs]\n",
        "[versions.v1.resources.jobs]\ncache_ttl = \"1s\"\nstale_if_error = \"10m\"\n",
    ) + TICKETS
        + &format!(
            "\n[state]\npath = \"{}\"\n",
            state.path().join("state.sqlite3").display()
        );
    let app = Portico::spawn(&config).await;
    crate::changes::wait_polled(&app.base).await;
    let cached = app.get("/v1/jobs?limit=3").await;
    assert_eq!(cached.status, 200, "{}", cached.body);
    let cached_at = Instant::now();
    assert_eq!(app.get("/v1/operations?limit=3").await.status, 200);
    assert_eq!(breaker_state(&app).await, Some(0.0), "closed, and exported");
    assert!(proxy.connections() > 0, "Portico goes through the proxy");

    server.stop();
    until(&app, "/v1/operations?limit=3", "the breaker opens", |a| {
        assert_eq!(a.status, 503, "{}", a.body);
        refused_by_breaker(a)
    })
    .await;
    assert_eq!(breaker_state(&app).await, Some(2.0), "open");

    // While it is open, nothing reaches the database: requests, readiness, polls.
    let mut proven = false;
    for _ in 0..5 {
        let half_opened = transitions(&app, "half_open").await;
        let (connections, refused, polls_failed) = (
            proxy.connections(),
            sample(
                &app,
                "portico_source_breaker_refused_total{source=\"legacy\"}",
            )
            .await
            .unwrap_or(0.0),
            poll_errors(&app).await,
        );
        let mut answered = 0;
        for _ in 0..10 {
            answered += refused_by_breaker(&app.get("/v1/operations?limit=3").await) as u32;
        }
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert_eq!(ready.body["sources"]["legacy"], "unavailable");
        // A few poll intervals.
        tokio::time::sleep(Duration::from_millis(800)).await;
        if transitions(&app, "half_open").await != half_opened {
            // The cool-down ended meanwhile (a slow machine): a probe may have gone out.
            until(
                &app,
                "/v1/operations?limit=3",
                "reopened",
                refused_by_breaker,
            )
            .await;
            continue;
        }
        assert_eq!(answered, 10, "each request answered by the open breaker");
        assert_eq!(
            proxy.connections(),
            connections,
            "no connection attempt while the breaker is open"
        );
        let refused_now = sample(
            &app,
            "portico_source_breaker_refused_total{source=\"legacy\"}",
        )
        .await
        .unwrap();
        assert!(refused_now >= refused + 10.0, "{refused} -> {refused_now}");
        assert!(
            poll_errors(&app).await > polls_failed,
            "the poller's skipped polls count as failed"
        );
        proven = true;
        break;
    }
    assert!(proven, "the breaker stayed open long enough to be observed");

    // A resource with stale_if_error still answers its cached copy, marked stale.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(cached_at.elapsed())).await;
    let stale = app.get("/v1/jobs?limit=3").await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.body, cached.body);
    assert!(stale.headers["warning"]
        .to_str()
        .unwrap()
        .starts_with("110"));

    // After the cool-down a probe goes out, fails (the server is still down), and the breaker
    // opens again for another cool-down.
    let opened = transitions(&app, "open").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while transitions(&app, "open").await <= opened {
        assert!(Instant::now() < deadline, "a failing probe re-opens it");
        app.get("/v1/operations?limit=3").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(transitions(&app, "half_open").await >= 1.0);
    assert_eq!(breaker_state(&app).await, Some(2.0), "open again");

    server.resume();
    let back = until(&app, "/v1/operations?limit=3", "the breaker closes", |a| {
        a.status == 200
    })
    .await;
    assert_eq!(back.body["data"].as_array().unwrap().len(), 3);
    // Two probes must answer before it closes; the poller or this request may be either.
    let deadline = Instant::now() + Duration::from_secs(30);
    while breaker_state(&app).await != Some(0.0) {
        assert!(Instant::now() < deadline, "the breaker closes");
        app.get("/v1/operations?limit=3").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(transitions(&app, "closed").await >= 1.0);
    let fresh = app.get("/v1/jobs?limit=3").await;
    assert_eq!(fresh.status, 200);
    assert!(!fresh.headers.contains_key("warning"), "a fresh answer");

    // The feed catches up: a change made now is polled and announced.
    insert_ticket(kind, &db.connection_string, "T9", "2026-01-01 11:00:00");
    until(&app, "/v1/tickets/changes", "the poller catches up", |a| {
        a.status == 200 && a.body["data"].to_string().contains("T9")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn postgres_breaker_opens_on_a_stopped_server_and_closes_when_it_is_back() {
    the_breaker_keeps_a_stopped_database_unhammered_and_closes_when_it_is_back(Engine::Postgres)
        .await;
}

#[tokio::test]
async fn mariadb_breaker_opens_on_a_stopped_server_and_closes_when_it_is_back() {
    the_breaker_keeps_a_stopped_database_unhammered_and_closes_when_it_is_back(Engine::MariaDb)
        .await;
}

async fn clients_errors_do_not_open_the_breaker(kind: Kind) {
    let db = crate::writes::Legacy::new(kind);
    let app = Portico::spawn(&db.config(
        "",
        "\n[sources.legacy.breaker]\nmin_statements = 2\nfailure_rate = 0.1\ncool_down = \"60s\"\n",
    ))
    .await;
    let clerk = crate::writes::clerk();
    for _ in 0..6 {
        // A constraint violation: the database answered, it refused this write.
        let duplicate = app
            .send(
                reqwest::Method::POST,
                "/v1/customers",
                Some(&clerk),
                &[],
                Some(Ok(
                    json!({"id": "C001", "name": "Dup", "status": "active", "region": "EAST"}),
                )),
            )
            .await;
        assert_eq!(duplicate.status, 409, "{}", duplicate.body);
        // A value refused before any SQL.
        let invalid = app
            .send(
                reqwest::Method::POST,
                "/v1/customers",
                Some(&clerk),
                &[],
                Some(Ok(json!({"id": "C777", "status": "sleeping"}))),
            )
            .await;
        assert_eq!(invalid.status, 422, "{}", invalid.body);
    }
    assert_eq!(breaker_state(&app).await, Some(0.0), "still closed");
    assert_eq!(transitions(&app, "open").await, 0.0);
    let read = app.get_as("/v1/customers/C001", Some(&clerk)).await;
    assert_eq!(read.status, 200, "{}", read.body);
}

#[tokio::test]
async fn postgres_clients_errors_do_not_open_the_breaker() {
    clients_errors_do_not_open_the_breaker(Kind::Postgres).await;
}

#[tokio::test]
async fn mariadb_clients_errors_do_not_open_the_breaker() {
    clients_errors_do_not_open_the_breaker(Kind::MariaDb).await;
}

/// A reload that keeps a source keeps its breaker, open or not, and the exported state stays
/// that breaker's: building the new file's sources (a kept one is built, then dropped) must
/// not report a breaker that serves nothing.
async fn a_reload_keeps_the_open_breakers_state_exported(engine: Engine) {
    let kind = kind_of(engine);
    let server = DbServer::start(engine);
    let db = load_fixture(kind, Some(&server));
    let dir = tempfile::tempdir().unwrap();
    let extra = "query_timeout = \"2s\"\nlogin_timeout = \"2s\"\n\
                 breaker = { min_statements = 3, failure_rate = 0.5, window = \"60s\", cool_down = \"4s\", probes = 2 }";
    let path = dir.path().join("portico.toml");
    std::fs::write(&path, fixture::config(kind, &db.connection_string, extra)).unwrap();
    let app = Portico::serve_file(&path).await;
    assert_eq!(app.get("/v1/operations?limit=3").await.status, 200);
    server.stop();
    until(&app, "/v1/operations?limit=3", "the breaker opens", |a| {
        assert_eq!(a.status, 503, "{}", a.body);
        refused_by_breaker(a)
    })
    .await;
    assert_eq!(breaker_state(&app).await, Some(2.0), "open");

    // The same file again (without [auth], the loopback may reload).
    let reloaded = app
        .send(reqwest::Method::POST, "/admin/reload", None, &[], None)
        .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(reloaded.body["sources_kept"], json!(["legacy"]));
    assert_eq!(
        breaker_state(&app).await,
        Some(2.0),
        "the kept source's breaker is still open, and the gauge says so"
    );
    let overview = app.get("/admin/overview").await;
    assert_eq!(
        overview.body["sources"][0]["breaker"], "open",
        "{}",
        overview.body
    );
    server.resume();
}

#[tokio::test]
async fn postgres_a_reload_keeps_the_open_breakers_state_exported() {
    a_reload_keeps_the_open_breakers_state_exported(Engine::Postgres).await;
}

/// A reload while the database is down keeps what the running configuration read from the
/// database's catalog (column limits): the same file must publish the same document, and
/// must not try the stopped database behind its open breaker.
async fn a_reload_during_an_outage_keeps_the_catalogs_limits(engine: Engine) {
    let kind = kind_of(engine);
    let server = DbServer::start(engine);
    let db = load_fixture(kind, Some(&server));
    let proxy = Proxy::start(engine, &db.connection_string);
    let dir = tempfile::tempdir().unwrap();
    let extra = "query_timeout = \"2s\"\nlogin_timeout = \"2s\"\n\
                 breaker = { min_statements = 3, failure_rate = 0.5, window = \"60s\", cool_down = \"4s\", probes = 2 }";
    let path = dir.path().join("portico.toml");
    std::fs::write(
        &path,
        fixture::config(kind, &proxy.connection_string, extra),
    )
    .unwrap();
    let app = Portico::serve_file(&path).await;
    let document = app.get("/openapi/v1.json").await;
    assert_eq!(document.status, 200);
    server.stop();
    until(&app, "/v1/operations?limit=3", "the breaker opens", |a| {
        assert_eq!(a.status, 503, "{}", a.body);
        refused_by_breaker(a)
    })
    .await;
    let connections = proxy.connections();
    // Twice: what the first reload kept, the second keeps too.
    for _ in 0..2 {
        let reloaded = app
            .send(reqwest::Method::POST, "/admin/reload", None, &[], None)
            .await;
        assert_eq!(reloaded.status, 200, "{}", reloaded.body);
        // Not assert_eq!: the whole document would be printed. Before, filter values of the
        // jobs' undeclared text columns went from `maxLength` 40 (the catalog's) to 1000.
        let after = app.get("/openapi/v1.json").await.body;
        assert!(after == document.body, "the same file, the same document");
    }
    assert_eq!(
        proxy.connections(),
        connections,
        "nothing sent behind the open breaker"
    );
    server.resume();
}

#[tokio::test]
async fn postgres_a_reload_during_an_outage_keeps_the_catalogs_limits() {
    a_reload_during_an_outage_keeps_the_catalogs_limits(Engine::Postgres).await;
}
