//! Streamed exports (`Accept: application/x-ndjson`, `text/csv`) on SQLite, PostgreSQL and
//! MariaDB: the same rows, order and values as paging the JSON list, under row policies and
//! masks, read in keyset chunks; CSV that Python's `csv` module reads back; the cap and its
//! marker; 406; a failure after the first bytes aborts the response. The exact T-SQL of the
//! chunks is checked against the TDS fixture.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::fixture::Kind;
use crate::harness::{execute, fresh_database, Portico};
use crate::idp::{AUDIENCE, ISSUER};
use crate::tds::{column, Cell, Collation, Reply, Request, ResultSet, Sent, SqlType, TdsFixture};

/// Rows in `THINGS`.
const ROWS: usize = 57;
/// `[server] export_chunk_rows` of the test configuration.
const CHUNK: usize = 10;
/// `max_export_rows` of the `capped` resource.
const CAP: usize = 25;

/// The hostile text of row `i`: commas, quotes, line breaks, a leading `=`, empty, null.
fn name(i: usize) -> Option<String> {
    Some(match i % 8 {
        0 => format!("plain {i}"),
        1 => format!("comma, {i}"),
        2 => format!("quote \"{i}\" here"),
        3 => format!("line\nbreak {i}"),
        4 => format!("=SUM(A1:A9) {i}"),
        5 => String::new(),
        6 => return None,
        _ => format!("crlf\r\n{i}"),
    })
}

fn load(kind: Kind, dir: &std::path::Path) -> String {
    let cs = fresh_database(kind, dir);
    let q = |n: &str| kind.quote(n);
    execute(
        &cs,
        &format!(
            "CREATE TABLE {} ({} CHAR(6) NOT NULL PRIMARY KEY, {} VARCHAR(20) NOT NULL)",
            q("OWNERS"),
            q("CUST"),
            q("LABEL")
        ),
    );
    execute(
        &cs,
        &format!(
            "INSERT INTO {} VALUES ('C1    ', 'first'), ('C2    ', 'second'), ('C3    ', 'third')",
            q("OWNERS")
        ),
    );
    execute(
        &cs,
        &format!(
            "CREATE TABLE {} ({} INTEGER NOT NULL PRIMARY KEY, {} CHAR(6) NOT NULL, {} VARCHAR(80), \
             {} DECIMAL(11,2), {} DECIMAL(11,2), {} CHAR(1) NOT NULL)",
            q("THINGS"),
            q("ID"),
            q("CUST"),
            q("NAME"),
            q("AMOUNT"),
            q("PRICE"),
            q("FLAG")
        ),
    );
    let rows: Vec<String> = (1..=ROWS)
        .map(|i| {
            let name = name(i).map_or("NULL".into(), |n| format!("'{}'", n.replace('\'', "''")));
            let price = if i % 5 == 0 {
                "NULL".to_string()
            } else {
                format!("{}.{:02}", i * 3, i % 100)
            };
            format!(
                // CHAR(6) padded as old programs write it (SQLite keeps what it is given).
                "({i}, 'C{}    ', {name}, {}.50, {price}, '{}')",
                i % 3 + 1,
                i * 10,
                if i % 2 == 0 { "Y" } else { "N" }
            )
        })
        .collect();
    execute(
        &cs,
        &format!("INSERT INTO {} VALUES {}", q("THINGS"), rows.join(", ")),
    );
    cs
}

fn config(kind: Kind, cs: &str) -> String {
    let things = |name: &str, extra: &str| {
        format!(
            r#"
[versions.v1.resources.{name}]
source = "legacy"
table = "THINGS"
key = ["id"]
read_scope = "things:read"
cache_ttl = "60s"
{extra}

[[versions.v1.resources.{name}.row_policies]]
name = "own"
unless_scope = "things:read:all"
condition = "CUST = {{claims.customer_id}}"

[versions.v1.resources.{name}.fields]
id = {{ column = "ID", type = "integer" }}
owner = {{ column = "CUST", type = "string", column_type = "char(6)" }}
name = {{ column = "NAME", type = "string", column_type = "varchar(80)" }}
amount = {{ column = "AMOUNT", type = "decimal", column_type = "decimal(11,2)", scale = 2, requires_scope = "things:read:amounts" }}
quote = {{ column = "PRICE", type = "money", column_type = "decimal(11,2)", currency = "USD", scale = 2 }}
flag = {{ column = "FLAG", type = "boolean", column_type = "char(1)", true_value = "Y", false_value = "N" }}
"#
        )
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2
export_chunk_rows = {CHUNK}

[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

[sources.legacy]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{cs}"

[versions.v1.resources.owners]
source = "legacy"
table = "OWNERS"
key = ["id"]
read_scope = "things:read"

[[versions.v1.resources.owners.row_policies]]
name = "own"
unless_scope = "things:read:all"
condition = "CUST = {{claims.customer_id}}"

[versions.v1.resources.owners.fields]
id = {{ column = "CUST", type = "string", column_type = "char(6)" }}
label = {{ column = "LABEL", type = "string", column_type = "varchar(20)" }}
{things}
{nested}
{capped}
"#,
        dialect = kind.dialect(),
        things = things("things", ""),
        nested = things(
            "owned",
            "parent = { resource = \"owners\", field = \"owner\" }"
        ),
        capped = things("capped", &format!("max_export_rows = {CAP}")),
    )
}

fn staff() -> String {
    hs_token(
        "staff",
        json!({"scp": ["things:read", "things:read:all", "things:read:amounts"]}),
    )
}

fn portal() -> String {
    hs_token(
        "portal",
        json!({"scope": "things:read", "customer_id": "C2"}),
    )
}

/// GETs `path` with a token and `Accept`: status, content type and body as text.
async fn export(app: &Portico, path: &str, token: &str, accept: &str) -> (u16, String, String) {
    let bearer = format!("Bearer {token}");
    let (status, headers, body) = app
        .get_with(path, &[("authorization", &bearer), ("accept", accept)])
        .await;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if status == 200 && content_type.starts_with("text/csv") {
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".csv\""),
            "{disposition}"
        );
        assert_eq!(headers["cache-control"], "no-store");
    }
    (
        status.as_u16(),
        content_type,
        String::from_utf8(body).unwrap(),
    )
}

/// The lines of an NDJSON body, parsed.
fn ndjson(body: &str) -> Vec<Value> {
    assert!(body.is_empty() || body.ends_with('\n'), "{body:?}");
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// A CSV body read by Python's `csv` module (RFC 4180 dialect as Python reads it).
fn python_csv(body: &str) -> Vec<Vec<String>> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let mut child = Command::new(python)
        .args([
            "-c",
            "import csv, io, json, sys\n\
             text = sys.stdin.buffer.read().decode('utf-8')\n\
             print(json.dumps(list(csv.reader(io.StringIO(text, newline=''), strict=True))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect(".venv/bin/python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python csv failed on {body:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The CSV cells of a JSON row, in the header's columns.
fn cells(row: &Value, header: &[String]) -> Vec<String> {
    header
        .iter()
        .map(|column| {
            let value = match column.split_once('.') {
                Some((field, member)) => &row[field][member],
                None => &row[column.as_str()],
            };
            match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        })
        .collect()
}

async fn queries(app: &Portico) -> f64 {
    app.metric("portico_source_queries_total{source=\"legacy\"}")
        .await
}

async fn exports_equal_paging_the_list(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let cs = load(kind, dir.path());
    let app = Portico::spawn(&config(kind, &cs)).await;
    let (staff, portal) = (staff(), portal());
    let listings = [
        ("/v1/things", staff.as_str()),
        ("/v1/things?flag=false&sort=-amount,id", staff.as_str()),
        ("/v1/things?fields=name,quote&sort=name", staff.as_str()),
        // The portal: its own rows only, `amount` masked.
        ("/v1/things?sort=-id", portal.as_str()),
        ("/v1/owners/C3/owned", staff.as_str()),
        ("/v1/owners/C2/owned?flag=true", portal.as_str()),
    ];
    for (path, token) in listings {
        let join = if path.contains('?') { '&' } else { '?' };
        let paged = app
            .all_pages_as(&format!("{path}{join}limit=7"), Some(token))
            .await;
        assert!(paged.len() > CHUNK || path.contains("owned"), "{path}");
        let before = queries(&app).await;
        let (status, content_type, body) = export(&app, path, token, "application/x-ndjson").await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/x-ndjson"),
            "{body}"
        );
        let after = queries(&app).await;
        let rows = ndjson(&body);
        assert_eq!(
            rows, paged,
            "{kind:?} {path}: the export is the pages' rows"
        );
        // One statement per chunk of CHUNK rows, the last one short (or empty).
        let chunks = paged.len() / CHUNK + 1;
        let parent_lookup = usize::from(path.contains("owned"));
        assert_eq!(
            after - before,
            (chunks + parent_lookup) as f64,
            "{kind:?} {path}: {} rows in chunks of {CHUNK}",
            paged.len()
        );
        if token == portal {
            assert!(rows.iter().all(|r| r["owner"] == "C2"), "{path}");
            assert!(rows.iter().all(|r| r.get("amount").is_none()), "{path}");
        }

        let (status, content_type, body) = export(&app, path, token, "text/csv").await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/csv; charset=utf-8")
        );
        assert!(body.ends_with("\r\n"), "CRLF line ends");
        let table = python_csv(&body);
        let header = table[0].clone();
        let expected_header: Vec<String> = paged
            .first()
            .map(|row| {
                row.as_object()
                    .unwrap()
                    .iter()
                    .flat_map(|(k, v)| match v {
                        Value::Object(_) => vec![format!("{k}.value"), format!("{k}.currency")],
                        _ if k == "quote" => vec![format!("{k}.value"), format!("{k}.currency")],
                        _ => vec![k.clone()],
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(header, expected_header, "{kind:?} {path}");
        assert_eq!(
            header.contains(&"amount".to_string()),
            token == staff && !path.contains("fields")
        );
        let expected: Vec<Vec<String>> = paged.iter().map(|row| cells(row, &header)).collect();
        assert_eq!(
            table[1..],
            expected[..],
            "{kind:?} {path}: the CSV is the pages' values"
        );
    }
    // The hostile values come back exactly, with null (empty cell) apart from "" (quoted).
    let (_, _, body) = export(&app, "/v1/things?fields=name", &staff, "text/csv").await;
    assert!(
        body.starts_with("id,name\r\n1,\"comma, 1\"\r\n2,\"quote \"\"2\"\" here\"\r\n"),
        "{body}"
    );
    assert!(
        body.contains("\r\n4,=SUM(A1:A9) 4\r\n5,\"\"\r\n6,\r\n7,\"crlf\r\n7\"\r\n"),
        "{body}"
    );
    let table = python_csv(&body);
    for (i, row) in table[1..].iter().enumerate() {
        assert_eq!(row[1], name(i + 1).unwrap_or_default(), "row {}", i + 1);
    }

    // Past `max_export_rows`: the rows up to it, then a marker with the cursor that resumes.
    let mut rows = Vec::new();
    let mut path = "/v1/capped".to_string();
    let mut markers = 0;
    loop {
        let (status, _, body) = export(&app, &path, &staff, "application/x-ndjson").await;
        assert_eq!(status, 200, "{body}");
        let mut lines = ndjson(&body);
        match lines.last().and_then(|l| l.get("@truncated")).cloned() {
            Some(marker) => {
                lines.pop();
                assert_eq!(lines.len(), CAP);
                assert_eq!(marker["max_export_rows"], CAP);
                path = format!(
                    "/v1/capped?cursor={}",
                    marker["next_cursor"].as_str().unwrap()
                );
                markers += 1;
            }
            None => {
                assert!(lines.len() <= CAP);
                rows.extend(lines);
                break;
            }
        }
        rows.extend(lines);
    }
    assert_eq!(markers, ROWS / CAP);
    assert_eq!(
        rows,
        app.all_pages_as("/v1/things?limit=50", Some(&staff)).await
    );
    let (_, _, body) = export(&app, "/v1/capped", &staff, "text/csv").await;
    let table = python_csv(&body);
    assert_eq!(table.len(), 1 + CAP + 1, "header, the rows, the marker");
    let marker = &table[CAP + 1];
    assert_eq!(marker.len(), 1);
    assert!(
        marker[0].starts_with(&format!("#truncated: max_export_rows={CAP}; next_cursor=")),
        "{marker:?}"
    );
    assert!(app.metric("portico_exports_truncated_total").await >= 2.0);

    // An Accept nothing matches: 406; a parent the portal may not see: 404 before any row.
    for accept in ["application/xml", "text/csv;q=0, application/json;q=0"] {
        let (status, content_type, body) = export(&app, "/v1/things", &staff, accept).await;
        assert_eq!(
            (status, content_type.as_str()),
            (406, "application/problem+json"),
            "{body}"
        );
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["type"], "/problems/not-acceptable");
    }
    let (status, content_type, _) = export(&app, "/v1/owners/C1/owned", &portal, "text/csv").await;
    assert_eq!(
        (status, content_type.as_str()),
        (404, "application/problem+json")
    );
    // JSON stays the default, and says it varies by Accept.
    let bearer = format!("Bearer {staff}");
    let (status, headers, _) = app
        .get_with(
            "/v1/things?limit=2",
            &[("authorization", &bearer), ("accept", "*/*")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get_all("vary").iter().any(|v| v == "Accept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_exports_equal_paging_the_list() {
    exports_equal_paging_the_list(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_exports_equal_paging_the_list() {
    exports_equal_paging_the_list(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_exports_equal_paging_the_list() {
    exports_equal_paging_the_list(Kind::MariaDb).await;
}

/// A statement that fails at row 15 (SQLite's `abs` of the smallest integer overflows): the
/// chunk that reaches it fails after the first bytes went out, so the response is cut off
/// (no final chunk) and counted; with the failing row in the first chunk, it is a problem.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_mid_export_aborts_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let cs = load(Kind::Sqlite, dir.path());
    let text = config(Kind::Sqlite, &cs).replace(
        "[versions.v1.resources.capped]\nsource = \"legacy\"\ntable = \"THINGS\"",
        "[versions.v1.resources.capped]\nsource = \"legacy\"\nquery = \"SELECT ID, CUST, \
         NAME, AMOUNT, CASE WHEN ID = 15 THEN abs(-9223372036854775807 - 1) ELSE PRICE END AS \
         PRICE, FLAG FROM THINGS\"",
    );
    assert!(text.contains("abs("));
    let app = Portico::spawn(&text).await;
    let staff = staff();
    let client = reqwest::Client::new();
    // The server cuts the connection: the head and the first chunk may or may not have left
    // its buffer by then, so the client sees a request or a body that did not complete —
    // never a complete export.
    let sent = client
        .get(format!("{}/v1/capped", app.base))
        .bearer_auth(&staff)
        .header("accept", "application/x-ndjson")
        .send()
        .await;
    if let Ok(response) = sent {
        assert_eq!(response.status(), 200);
        let read = response.bytes().await;
        assert!(
            read.is_err(),
            "the body must not end like a complete export: {read:?}"
        );
    }
    assert_eq!(app.metric("portico_export_failures_total").await, 1.0);
    // The failing row in the first chunk: nothing was sent yet, so a problem+json.
    let bearer = format!("Bearer {staff}");
    let (status, headers, _) = app
        .get_with(
            "/v1/capped?id[gte]=12",
            &[("authorization", &bearer), ("accept", "text/csv")],
        )
        .await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "application/problem+json");
}

/// The chunks as SQL Server receives them: `TOP (n)` statements, each after the last key.
#[tokio::test(flavor = "multi_thread")]
async fn export_chunks_are_keyset_statements_in_tsql() {
    let ids: Vec<String> = (1..=7).map(|i| format!("J{i:03}    ")).collect();
    let reply_ids = ids.clone();
    let fixture = TdsFixture::start("13.0.5026.0", move |request| {
        let sql = request.sql();
        let top: usize = sql
            .split("TOP (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let after = match request {
            Request::Rpc { params, .. } => params.iter().find_map(|p| match p {
                Sent::Text(t) => Some(t.clone()),
                _ => None,
            }),
            Request::Batch { .. } => None,
        };
        let rows = reply_ids
            .iter()
            .filter(|id| after.as_ref().is_none_or(|a| id.as_str() > a.as_str()))
            .take(top)
            .map(|id| vec![Cell::Text(id.clone()), Cell::Text("O".into())])
            .collect();
        Reply::Rows(vec![ResultSet {
            columns: vec![
                column("JOB_NO", SqlType::Char(8, Collation::Cp1252)),
                column("STATUS", SqlType::Char(1, Collation::Cp1252)),
            ],
            rows,
        }])
    })
    .await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
export_chunk_rows = 3

[sources.erp]
kind = "mssql"
connection_string = "{cs}"

[versions.v1.resources.jobs]
source = "erp"
table = "dbo.JOBS"
key = ["id"]
anonymous = true

[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
status = {{ column = "STATUS", type = "string", column_type = "char(1)", codes = {{ O = "open" }} }}
"#,
        cs = fixture.ado_string()
    );
    let app = Portico::spawn(&config).await;
    let (status, _, body) = app
        .get_with("/v1/jobs", &[("accept", "application/x-ndjson")])
        .await;
    assert_eq!(status, 200);
    let rows = ndjson(&String::from_utf8(body).unwrap());
    let served: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        served,
        ["J001", "J002", "J003", "J004", "J005", "J006", "J007"]
    );
    let statements: Vec<(String, Vec<Sent>)> = fixture
        .requests()
        .into_iter()
        .filter(|r| r.sql().contains("[dbo].[JOBS]"))
        .map(|r| match r {
            Request::Rpc { sql, params, .. } => (sql, params),
            Request::Batch { sql } => (sql, vec![]),
        })
        .collect();
    let list = "SELECT TOP (3) [JOB_NO], [STATUS] FROM [dbo].[JOBS]";
    let after = format!("{list} WHERE ([JOB_NO] > CAST(@P1 AS varchar(8000))) ORDER BY [JOB_NO]");
    assert_eq!(
        statements,
        [
            (format!("{list} ORDER BY [JOB_NO]"), vec![]),
            (after.clone(), vec![Sent::Text(ids[2].clone())]),
            (after, vec![Sent::Text(ids[5].clone())]),
        ]
    );
}
