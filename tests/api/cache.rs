//! The response cache against a real SQLite database (and PostgreSQL for an outage).

use std::time::Duration;

use crate::fixture::{self, Kind};
use crate::harness::{execute, load_fixture, query_text, shared_server, Backend, Portico};
use crate::servers::{DbServer, Engine};

/// A fresh fixture database (the cache tests change rows behind Portico's back).
fn fresh_sqlite() -> Backend {
    load_fixture(Kind::Sqlite, None)
}

fn cached_config(backend: &Backend, jobs_extra: &str, cache: &str) -> String {
    fixture::config(Kind::Sqlite, &backend.connection_string, "").replace(
        "[versions.v1.resources.jobs]\n",
        &format!("[cache]\n{cache}\n\n[versions.v1.resources.jobs]\n{jobs_extra}\n"),
    )
}

const QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

fn set_status(backend: &Backend, job: &str, code: &str) {
    execute(
        &backend.connection_string,
        &format!("UPDATE \"JOBS\" SET \"STATUS\" = '{code}' WHERE \"JOB_NO\" = '{job:<8}'"),
    );
}

#[tokio::test]
async fn concurrent_misses_of_one_key_run_one_query() {
    let backend = fresh_sqlite();
    let app = Portico::spawn(&cached_config(&backend, "cache_ttl = \"60s\"", "")).await;
    let requests = (0..200).map(|_| app.get("/v1/jobs?status=open&limit=10"));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|a| a.status == 200));
    assert!(
        answers.iter().all(|a| a.body == answers[0].body),
        "every request sees the same page"
    );
    assert_eq!(
        app.metric(QUERIES).await,
        1.0,
        "200 concurrent misses ran one query"
    );
    let hits = app.metric("portico_cache_hits_total").await;
    let coalesced = app.metric("portico_cache_coalesced_total").await;
    assert_eq!(app.metric("portico_cache_misses_total").await, 1.0);
    assert_eq!(hits + coalesced, 199.0);

    // Parameter order and percent-encoding do not make a new key.
    let same = app.get("/v1/jobs?limit=10&status=%6Fpen").await;
    assert_eq!(same.body, answers[0].body);
    assert_eq!(app.metric(QUERIES).await, 1.0);
}

#[tokio::test]
async fn etags_answer_304_cached_or_not() {
    let backend = fresh_sqlite();
    let app = Portico::spawn(&cached_config(&backend, "cache_ttl = \"60s\"", "")).await;
    for path in [
        "/v1/jobs?status=held&limit=3",
        "/v1/jobs/J0003",
        "/v1/operations?limit=2",
    ] {
        let first = app.get(path).await;
        let etag = first
            .headers
            .get("etag")
            .expect("ETag on every cacheable GET")
            .to_str()
            .unwrap()
            .to_string();
        assert!(etag.starts_with('"'), "strong ETag: {etag}");
        let (status, headers, body) = app.get_with(path, &[("if-none-match", &etag)]).await;
        assert_eq!(status, 304, "{path}");
        assert!(body.is_empty());
        assert_eq!(headers.get("etag").unwrap().to_str().unwrap(), etag);
        let (status, _, _) = app.get_with(path, &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(status, 200);
    }
    let cached = app.get("/v1/jobs/J0003").await;
    assert_eq!(
        cached.headers.get("cache-control").unwrap(),
        "public, max-age=60"
    );
    let uncached = app.get("/v1/operations?limit=2").await;
    assert_eq!(uncached.headers.get("cache-control").unwrap(), "no-cache");
    let other = app.get("/v1/jobs?status=held&limit=4").await;
    assert_ne!(other.headers.get("etag"), cached.headers.get("etag"));
}

#[tokio::test]
async fn no_cache_bypasses_and_ttl_expires() {
    let backend = fresh_sqlite();
    let app = Portico::spawn(&cached_config(&backend, "cache_ttl = \"2s\"", "")).await;
    assert_eq!(app.get("/v1/jobs/J0003").await.body["status"], "open");
    set_status(&backend, "J0003", "C");
    assert_eq!(
        app.get("/v1/jobs/J0003").await.body["status"],
        "open",
        "served from the cache"
    );
    let (_, _, body) = app
        .get_with("/v1/jobs/J0003", &[("cache-control", "no-cache")])
        .await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "closed", "no-cache reads the database");
    assert_eq!(
        app.get("/v1/jobs/J0003").await.body["status"],
        "closed",
        "and refreshes the entry"
    );

    set_status(&backend, "J0003", "H");
    assert_eq!(app.get("/v1/jobs/J0003").await.body["status"], "closed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.get("/v1/jobs/J0003").await.body["status"],
        "held",
        "the TTL expired"
    );
}

#[tokio::test]
async fn purges_are_visible_on_the_next_read() {
    let backend = fresh_sqlite();
    let app = Portico::spawn(&cached_config(&backend, "cache_ttl = \"60s\"", "")).await;
    assert_eq!(app.get("/v1/jobs/J0004").await.body["status"], "held");
    set_status(&backend, "J0004", "O");
    assert_eq!(app.get("/v1/jobs/J0004").await.body["status"], "held");
    assert_eq!(app.delete("/admin/cache/jobs").await, 200);
    assert_eq!(app.get("/v1/jobs/J0004").await.body["status"], "open");

    set_status(&backend, "J0004", "C");
    assert_eq!(app.delete("/admin/cache").await, 200);
    assert_eq!(app.get("/v1/jobs/J0004").await.body["status"], "closed");
    assert_eq!(app.delete("/admin/cache/nothing").await, 404);
    app.get("/admin/cache").await.problem(405);
}

#[tokio::test]
async fn the_byte_bound_holds_under_a_flood_of_distinct_queries() {
    let backend = fresh_sqlite();
    let config = cached_config(&backend, "cache_ttl = \"60s\"", "max_size = \"32KiB\"");
    let app = Portico::spawn(&config).await;
    for limit in 1..=100 {
        for status in ["open", "held", "closed"] {
            assert_eq!(
                app.get(&format!("/v1/jobs?status={status}&limit={limit}"))
                    .await
                    .status,
                200
            );
        }
    }
    let bytes = app.metric("portico_cache_bytes").await;
    assert!(
        bytes > 0.0 && bytes <= 32.0 * 1024.0,
        "cache holds {bytes} bytes"
    );
    assert!(app.metric("portico_cache_evictions_total").await > 0.0);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let backend = fresh_sqlite();
    let app = Portico::spawn(&cached_config(&backend, "", "")).await;
    app.get("/v1/jobs?limit=1").await;
    app.get("/v1/jobs?limit=0").await;
    app.get("/v1/jobs/J0001").await;
    let text = app.get_text("/metrics").await;
    for line in [
        "portico_http_requests_total{route=\"/{version}/{resource}\",method=\"GET\",status=\"200\"} 1",
        "portico_http_requests_total{route=\"/{version}/{resource}\",method=\"GET\",status=\"400\"} 1",
        "portico_http_requests_total{route=\"/{version}/{resource}/{key}\",method=\"GET\",status=\"200\"} 1",
        "portico_source_queries_total{source=\"legacy\"} 2",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("portico_source_query_duration_seconds_count{source=\"legacy\"} 2"));
}

#[tokio::test]
async fn stale_entries_serve_an_outage_only_where_allowed() {
    let server = DbServer::start(Engine::Postgres);
    let db = load_fixture(Kind::Postgres, Some(&server));
    let config = fixture::config(
        Kind::Postgres,
        &db.connection_string,
        "login_timeout = \"2s\"",
    )
    .replace(
        "[versions.v1.resources.jobs]\n",
        "[versions.v1.resources.jobs]\ncache_ttl = \"1s\"\nstale_if_error = \"60s\"\n",
    )
    .replace(
        "[versions.v1.resources.operations]\n",
        "[versions.v1.resources.operations]\ncache_ttl = \"1s\"\n",
    );
    let app = Portico::spawn(&config).await;
    let before = app.get("/v1/jobs?limit=3").await;
    assert_eq!(before.status, 200);
    assert_eq!(app.get("/v1/operations?limit=3").await.status, 200);

    server.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = app.get("/v1/jobs?limit=3").await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.body, before.body);
    assert!(stale
        .headers
        .get("warning")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("110"));
    app.get("/v1/operations?limit=3").await.problem(503);
    assert_eq!(app.metric("portico_cache_stale_served_total").await, 1.0);
}

/// Jobs read through a transaction-scoped advisory lock the test can hold, so a read can be
/// kept under way for as long as the test needs.
const HELD_JOBS: &str = r#"
[versions.v1.resources.held]
source = "legacy"
query = 'SELECT "JOB_NO", "STATUS" FROM "JOBS" CROSS JOIN (SELECT pg_advisory_xact_lock_shared(42)) AS l'
key = ["id"]
anonymous = true
cache_ttl = "60s"
[versions.v1.resources.held.fields]
id = { column = "JOB_NO", type = "string", column_type = "char(8)" }
status = { column = "STATUS", type = "string", column_type = "char(1)", codes = { O = "open", H = "held", C = "closed" } }
"#;

#[tokio::test]
async fn a_read_under_way_across_a_purge_is_not_cached() {
    let db = load_fixture(Kind::Postgres, Some(shared_server(Engine::Postgres)));
    let mut config = fixture::config(Kind::Postgres, &db.connection_string, "");
    config.push_str(HELD_JOBS);
    let app = Portico::spawn(&config).await;
    let env = odbc_api::environment().unwrap();
    let lock = env
        .connect_with_connection_string(&db.connection_string, Default::default())
        .unwrap();
    lock.execute("SELECT pg_advisory_lock(42)", (), None)
        .unwrap();

    let read = app.get("/v1/held/J0004");
    let meanwhile = async {
        // The read has its snapshot (J0004 held) and waits for the lock.
        let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";
        while query_text(&db.connection_string, waiting) == [[Some("0".to_string())]] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        execute(
            &db.connection_string,
            "UPDATE \"JOBS\" SET \"STATUS\" = 'O' WHERE \"JOB_NO\" = 'J0004  '",
        );
        assert_eq!(app.delete("/admin/cache/held").await, 200);
        lock.execute("SELECT pg_advisory_unlock(42)", (), None)
            .unwrap();
    };
    let (read, ()) = tokio::join!(read, meanwhile);
    assert_eq!(
        read.body["status"], "held",
        "the read began before the update"
    );
    assert_eq!(
        app.get("/v1/held/J0004").await.body["status"],
        "open",
        "the purge outlived the read that began before it"
    );
}
