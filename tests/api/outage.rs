//! The database goes away and comes back; the database is slow; the source is saturated.

use std::time::{Duration, Instant};

use crate::fixture::{self, Kind};
use crate::harness::{backend, execute, load_fixture, query_text, shared_server, Portico};
use crate::servers::{DbServer, Engine};

async fn outage_answers_503_then_recovers_by_itself(engine: Engine, kind: Kind) {
    let server = DbServer::start(engine);
    let db = load_fixture(kind, Some(&server));
    let extra = "query_timeout = \"2s\"\nlogin_timeout = \"2s\"";
    let app = Portico::spawn(&fixture::config(kind, &db.connection_string, extra)).await;
    assert_eq!(app.get("/v1/jobs?limit=5").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 200);

    server.stop();
    let started = Instant::now();
    let answer = app.get("/v1/jobs?limit=5").await;
    let waited = started.elapsed();
    let body = answer.problem(503);
    assert!(matches!(
        body["type"].as_str(),
        Some("/problems/source-unavailable" | "/problems/source-timeout")
    ));
    assert!(answer.headers.contains_key("retry-after"));
    assert!(
        !body["detail"].as_str().unwrap().contains("Driver"),
        "driver text stays in the log"
    );
    assert!(
        waited < Duration::from_secs(10),
        "answered within the timeouts, took {waited:?}"
    );
    // Readiness is checked at most once a second: the next probe after that sees the outage.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/readyz").await.status, 503);

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.get("/v1/jobs?limit=5").await;
        if answer.status == 200 {
            assert_eq!(answer.body["data"].as_array().unwrap().len(), 5);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Portico did not recover: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn postgres_outage_answers_503_then_recovers() {
    outage_answers_503_then_recovers_by_itself(Engine::Postgres, Kind::Postgres).await;
}

#[tokio::test]
async fn mariadb_outage_answers_503_then_recovers() {
    outage_answers_503_then_recovers_by_itself(Engine::MariaDb, Kind::MariaDb).await;
}

fn with_slow_resource(source_extra: &str, seconds: u32) -> String {
    let b = backend(Kind::Postgres);
    let mut config = fixture::config(Kind::Postgres, &b.connection_string, source_extra);
    config.push_str(&format!(
        r#"
[versions.v1.resources.slow]
source = "legacy"
query = 'SELECT "JOB_NO" FROM "JOBS" CROSS JOIN (SELECT pg_sleep({seconds})) AS s'
key = ["id"]
anonymous = true
[versions.v1.resources.slow.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
"#
    ));
    config
}

#[tokio::test]
async fn a_saturated_source_sheds_load_with_503_and_retry_after() {
    let config = with_slow_resource("max_concurrency = 1\nqueue_timeout = \"100ms\"", 1);
    let app = Portico::spawn(&config).await;
    let requests = (0..4).map(|_| app.get("/v1/slow?limit=1"));
    let answers = futures_util::future::join_all(requests).await;
    let shed: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(
        answers.iter().any(|a| a.status == 200),
        "one request is served"
    );
    assert!(!shed.is_empty(), "the others are shed instead of queueing");
    for answer in shed {
        assert_eq!(answer.problem(503)["type"], "/problems/source-busy");
        assert_eq!(answer.headers.get("retry-after").unwrap(), "1");
    }
}

#[tokio::test]
async fn a_slow_query_is_cut_off_at_the_timeout() {
    let config = with_slow_resource("query_timeout = \"1s\"\nlogin_timeout = \"1s\"", 4);
    let app = Portico::spawn(&config).await;
    let started = Instant::now();
    let answer = app.get("/v1/slow?limit=1").await;
    assert_eq!(answer.problem(503)["type"], "/problems/source-timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

/// The backend process serving a request, and how often the refused query ran.
const REFUSED_AND_PID: &str = r#"
[versions.v1.resources.refused]
source = "legacy"
query = 'SELECT "JOB_NO" FROM "JOBS" WHERE counted_refusal() = 1'
key = ["id"]
anonymous = true
[versions.v1.resources.refused.fields]
id = { column = "JOB_NO", type = "string", column_type = "char(8)" }

[versions.v1.resources.backend]
source = "legacy"
query = 'SELECT pg_backend_pid() AS "PID"'
key = ["pid"]
anonymous = true
[versions.v1.resources.backend.fields]
pid = { column = "PID", type = "integer" }
"#;

#[tokio::test]
async fn a_refused_query_keeps_its_pooled_connection_and_runs_once() {
    let db = load_fixture(Kind::Postgres, Some(shared_server(Engine::Postgres)));
    // A sequence counts the runs: nextval is not undone when the statement fails.
    execute(&db.connection_string, "CREATE SEQUENCE attempts");
    execute(
        &db.connection_string,
        "CREATE FUNCTION counted_refusal() RETURNS integer LANGUAGE plpgsql VOLATILE AS \
         $$ BEGIN PERFORM nextval('attempts'); RAISE EXCEPTION 'refused on purpose'; END $$",
    );
    let mut config = fixture::config(Kind::Postgres, &db.connection_string, "max_concurrency = 1");
    config.push_str(REFUSED_AND_PID);
    let app = Portico::spawn(&config).await;
    let pid = |answer: crate::harness::Answer| answer.body["data"][0]["pid"].clone();
    let before = pid(app.get("/v1/backend").await);
    assert!(before.is_i64(), "{before}");

    let answer = app.get("/v1/refused").await;
    assert_eq!(answer.problem(502)["type"], "/problems/source-error");
    let runs = query_text(&db.connection_string, "SELECT last_value FROM attempts");
    assert_eq!(
        runs,
        [[Some("1".to_string())]],
        "the refused query ran once"
    );
    assert_eq!(
        pid(app.get("/v1/backend").await),
        before,
        "the refused query's connection stays in the pool"
    );
}

#[tokio::test]
async fn a_session_the_server_ends_answers_503_and_its_connection_is_not_reused() {
    let db = load_fixture(Kind::Postgres, Some(shared_server(Engine::Postgres)));
    let mut config = fixture::config(Kind::Postgres, &db.connection_string, "max_concurrency = 1");
    config.push_str(REFUSED_AND_PID);
    // The backend ends its own session (57P01, as on a server shutdown).
    config.push_str(
        r#"
[versions.v1.resources.ended]
source = "legacy"
query = 'SELECT 1 AS "DONE" WHERE pg_terminate_backend(pg_backend_pid())'
key = ["done"]
anonymous = true
[versions.v1.resources.ended.fields]
done = { column = "DONE", type = "integer" }
"#,
    );
    let app = Portico::spawn(&config).await;
    let pid = |answer: crate::harness::Answer| answer.body["data"][0]["pid"].clone();
    let before = pid(app.get("/v1/backend").await);
    assert!(before.is_i64(), "{before}");

    let answer = app.get("/v1/ended").await;
    assert_eq!(answer.problem(503)["type"], "/problems/source-unavailable");
    let after = app.get("/v1/backend").await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_ne!(pid(after), before, "the ended session left the pool");
}
