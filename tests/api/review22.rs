//! Findings of the issue-22 review: each test fails on the code before its fix.

use reqwest::Method;

use crate::compression::raw;
use crate::fixture::{self, Kind};
use crate::harness::{backend, execute, fresh_database, Portico};

const DASHBOARD: &str = "http://127.0.0.1:8081";

/// The fixture (anonymous jobs) with `server` appended to `[server]`.
fn anonymous_with(kind: Kind, server: &str) -> String {
    fixture::config(kind, &backend(kind).connection_string, "").replacen(
        "\n[sources.legacy]",
        &format!("\n{server}\n\n[sources.legacy]"),
        1,
    )
}

/// A list answers JSON or an export by `Accept`, and an anonymous resource answers
/// differently with a token: a shared cache must see both in `Vary`, whatever else the
/// layers add (CORS rewrites the first `Vary` header only) and whether or not the body is
/// large enough to compress.
#[tokio::test]
async fn a_small_anonymous_list_varies_by_accept_and_authorization_behind_cors() {
    for compression in ["", "[server.compression]\nenabled = false"] {
        let config = anonymous_with(
            Kind::Sqlite,
            &format!("[server.cors]\nallowed_origins = [\"{DASHBOARD}\"]\n{compression}"),
        );
        let app = Portico::spawn(&config).await;
        for origin in [None, Some(DASHBOARD)] {
            let mut headers = vec![("accept-encoding", "gzip")];
            if let Some(origin) = origin {
                headers.push(("origin", origin));
            }
            let answer = raw(&app, Method::GET, "/v1/jobs?limit=1", &headers).await;
            let case = format!(
                "{compression:?} origin {origin:?}: vary {:?}",
                answer.header("vary")
            );
            assert_eq!(answer.status, 200, "{case}");
            assert!(answer.body.len() < 1024, "{case}: a small page");
            for name in ["Accept", "Authorization", "Origin"] {
                assert!(answer.varies_by(name), "{case}: {name}");
            }
            headers.push(("accept", "application/x-ndjson"));
            let export = raw(&app, Method::GET, "/v1/jobs", &headers).await;
            let case = format!("export {case}: {:?}", export.header("vary"));
            assert_eq!(export.status, 200, "{case}");
            for name in ["Accept", "Authorization", "Origin"] {
                assert!(export.varies_by(name), "{case}: {name}");
            }
        }
    }
}

/// A `yyyymmdd` text column holding garbage (legacy data is what it is): its month bucket
/// must not take the server down; a bucket that is no date is served as null.
#[tokio::test]
async fn a_month_bucket_of_non_ascii_legacy_text_is_null_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cs = fresh_database(Kind::Sqlite, dir.path());
    execute(&cs, "CREATE TABLE T (ID INTEGER PRIMARY KEY, DUE CHAR(8))");
    execute(
        &cs,
        "INSERT INTO T VALUES (1, '20260315'), (2, '2\u{e9}\u{e9}\u{e9}0101'), (3, '20260320')",
    );
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[sources.legacy]
kind = "odbc"
dialect = "sqlite"
connection_string = "{cs}"

[versions.v1.resources.things]
source = "legacy"
table = "T"
key = ["id"]
anonymous = true

[versions.v1.resources.things.fields]
id = {{ column = "ID", type = "integer" }}
due_on = {{ column = "DUE", type = "date", format = "yyyymmdd", column_type = "char(8)" }}
"#
    );
    let app = Portico::spawn(&config).await;
    let answer = app
        .get("/v1/things/aggregate?group_by=due_on:month&count=true")
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let groups: Vec<(serde_json::Value, i64)> = answer.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"]["due_on"].clone(), g["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        groups,
        vec![
            (serde_json::json!("2026-03"), 2),
            (serde_json::Value::Null, 1)
        ],
        "{:?}",
        answer.body
    );
}

/// SQLite keeps a DECIMAL as a binary double: `0.1 + 0.2` and `0.3` are two doubles that
/// are both `0.30` at the field's scale. Grouped as stored, they were two groups served with
/// the same value; grouped at the field's scale, they are one (also on a snapshot source).
#[tokio::test]
async fn sqlite_decimals_group_at_their_scale_not_by_their_double() {
    let dir = tempfile::tempdir().unwrap();
    let cs = fresh_database(Kind::Sqlite, dir.path());
    execute(
        &cs,
        "CREATE TABLE Q (ID INTEGER PRIMARY KEY, AMT DECIMAL(9,2))",
    );
    execute(
        &cs,
        "INSERT INTO Q VALUES (1, 0.1 + 0.2), (2, 0.3), (3, 1.25), (4, NULL)",
    );
    for snapshot in ["", "snapshot = { max_rows = 1000, ttl = \"5m\" }\n"] {
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[sources.legacy]
kind = "odbc"
dialect = "sqlite"
connection_string = "{cs}"
{snapshot}
[versions.v1.resources.quotes]
source = "legacy"
table = "Q"
key = ["id"]
anonymous = true

[versions.v1.resources.quotes.fields]
id = {{ column = "ID", type = "integer" }}
amount = {{ column = "AMT", type = "decimal", scale = 2, column_type = "decimal(9,2)" }}
"#
        );
        let app = Portico::spawn(&config).await;
        let answer = app
            .get("/v1/quotes/aggregate?group_by=amount&count=true&sum=amount")
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let groups: Vec<(serde_json::Value, i64)> = answer.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["group"]["amount"].clone(), g["count"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            groups,
            vec![
                (serde_json::Value::Null, 1),
                (serde_json::json!("0.30"), 2),
                (serde_json::json!("1.25"), 1)
            ],
            "{snapshot}{:?}",
            answer.body
        );
        assert_eq!(answer.body["data"][1]["sum"]["amount"], "0.60");
    }
}

/// The `generic` dialect cannot number rows per key, so its batched to-many read is cut at
/// its row limit whatever the keys: a parent with many related rows must not starve the
/// others of theirs (J2 showed `[]`, not its one operation).
#[tokio::test]
async fn a_generic_to_many_expand_serves_every_parent_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cs = fresh_database(Kind::Sqlite, dir.path());
    execute(&cs, "CREATE TABLE J (ID CHAR(4) PRIMARY KEY)");
    execute(&cs, "INSERT INTO J VALUES ('J1'), ('J2')");
    execute(
        &cs,
        "CREATE TABLE O (JOB CHAR(4), SEQ INTEGER, PRIMARY KEY (JOB, SEQ))",
    );
    let ops: Vec<String> = (1..=10).map(|i| format!("('J1', {i})")).collect();
    execute(
        &cs,
        &format!("INSERT INTO O VALUES {}, ('J2', 1)", ops.join(", ")),
    );
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[sources.legacy]
kind = "odbc"
dialect = "generic"
connection_string = "{cs}"

[versions.v1.resources.jobs]
source = "legacy"
table = "J"
key = ["id"]
anonymous = true

[versions.v1.resources.jobs.fields]
id = {{ column = "ID", type = "string" }}

[versions.v1.resources.jobs.relations]
operations = {{ resource = "operations", many = true, limit = 2 }}

[versions.v1.resources.operations]
source = "legacy"
table = "O"
key = ["job_id", "seq"]
anonymous = true
parent = {{ resource = "jobs", field = "job_id" }}

[versions.v1.resources.operations.fields]
job_id = {{ column = "JOB", type = "string" }}
seq = {{ column = "SEQ", type = "integer" }}
"#
    );
    let app = Portico::spawn(&config).await;
    let answer = app.get("/v1/jobs?expand=operations").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let seqs = |job: usize| -> Vec<i64> {
        answer.body["data"][job]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(seqs(0), [1, 2], "{}", answer.body);
    assert_eq!(answer.body["data"][0]["operations_truncated"], true);
    assert_eq!(seqs(1), [1], "{}", answer.body);
    assert!(answer.body["data"][1].get("operations_truncated").is_none());
}
