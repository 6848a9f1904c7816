//! Portico's SQL Server source against the TDS fixture: the exact T-SQL it sends for each
//! query shape, every SQL Server type decoded to the API values of the ODBC path, connections
//! replaced after the server drops them, timeouts, saturation and old servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::Portico;
use crate::tds::{column, Cell, Collation, Reply, Request, ResultSet, Sent, SqlType, TdsFixture};

const V2008R2: &str = "10.50.6000.34";
const V2016: &str = "13.0.5026.0";

fn config(fixture: &TdsFixture, source_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[sources.erp]
kind = "mssql"
connection_string = "{cs}"
{source_extra}

[versions.v1.resources.jobs]
source = "erp"
table = "dbo.JOBS"
key = ["id"]
anonymous = true
max_limit = 100

[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
status = {{ column = "STATUS", type = "string", column_type = "char(1)", codes = {{ O = "open", H = "held" }} }}
due_on = {{ column = "DUE_DT", type = "date", column_type = "date" }}
amount = {{ column = "AMOUNT", type = "decimal", column_type = "decimal(17,2)", scale = 2 }}
name = {{ column = "CUST_NAME", type = "string", column_type = "nvarchar(40)" }}
"#,
        cs = fixture.ado_string(),
    )
}

/// The fixture's configuration with `jobs` writable (`update`) by a token with `jobs:write`.
fn writable_config(fixture: &TdsFixture) -> String {
    config(fixture, "").replace(
        "anonymous = true",
        "read_scope = \"jobs:read\"\nwrite_scope = \"jobs:write\"\nwrites = [\"update\"]",
    ) + &format!(
        "\n[auth]\ndevelopment = true\nissuer = \"{}\"\naudience = \"{}\"\n\n[[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"{}\"\n",
        crate::idp::ISSUER,
        crate::idp::AUDIENCE,
        crate::auth::SECRET
    )
}

fn job_rows() -> Reply {
    Reply::Rows(vec![ResultSet {
        columns: vec![
            column("JOB_NO", SqlType::Char(8, Collation::Cp1252)),
            column("STATUS", SqlType::Char(1, Collation::Cp1252)),
            column("DUE_DT", SqlType::Date),
            column("AMOUNT", SqlType::Decimal(17, 2)),
            column("CUST_NAME", SqlType::NVarChar(40)),
        ],
        rows: (1..=3)
            .map(|i| {
                vec![
                    Cell::Text(format!("J{i:03}    ")),
                    Cell::Text("O".into()),
                    Cell::Date("2024-02-29"),
                    Cell::Decimal("10.50"),
                    Cell::Text("Müller".into()),
                ]
            })
            .collect(),
    }])
}

/// The requests that reached the fixture through Portico's statements (not pings or logins).
fn selects(fixture: &TdsFixture) -> Vec<Request> {
    fixture
        .requests()
        .into_iter()
        .filter(|r| r.sql().contains("FROM [dbo].[JOBS]"))
        .collect()
}

async fn query_shapes(version: &str) -> Vec<Request> {
    let fixture = TdsFixture::start(version, |_| job_rows()).await;
    let app = Portico::spawn(&config(&fixture, "")).await;
    let page = app.get("/v1/jobs?limit=2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["data"][0]["id"], "J001");
    assert_eq!(page.body["data"][0]["name"], "Müller");
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    assert_eq!(
        app.get(&format!("/v1/jobs?limit=2&cursor={cursor}"))
            .await
            .status,
        200
    );
    let filtered = app
        .get("/v1/jobs?status[in]=open,held&amount[gte]=100&id[prefix]=J0&due_on[null]=false&sort=-due_on,id")
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    assert_eq!(app.get("/v1/jobs/J001").await.status, 200);
    selects(&fixture)
}

/// Each query shape as SQL Server receives it: TOP with keyset paging on 2008 R2 as on 2016,
/// single-byte text compared as varchar, a prefix matched case-sensitively, values only ever
/// as parameters.
#[tokio::test(flavor = "multi_thread")]
async fn each_query_shape_sends_the_exact_tsql_on_2008_and_2016() {
    let old = query_shapes(V2008R2).await;
    let sql: Vec<&str> = old.iter().map(Request::sql).collect();
    let list =
        "SELECT TOP (3) [JOB_NO], [STATUS], [DUE_DT], [AMOUNT], [CUST_NAME] FROM [dbo].[JOBS]";
    assert_eq!(sql[0], format!("{list} ORDER BY [JOB_NO]"));
    assert_eq!(
        sql[1],
        format!("{list} WHERE ([JOB_NO] > CAST(@P1 AS varchar(8000))) ORDER BY [JOB_NO]")
    );
    assert_eq!(
        sql[2],
        "SELECT TOP (51) [JOB_NO], [STATUS], [DUE_DT], [AMOUNT], [CUST_NAME] FROM [dbo].[JOBS] \
         WHERE ([STATUS] IN (CAST(@P1 AS varchar(8000)), CAST(@P2 AS varchar(8000))) \
         AND [AMOUNT] >= @P3 AND ([JOB_NO] LIKE CAST(@P4 AS varchar(8000)) ESCAPE '!' \
         AND CAST([JOB_NO] AS nvarchar(max)) COLLATE Latin1_General_BIN2 \
         LIKE CAST(@P5 AS varchar(8000)) ESCAPE '!') \
         AND [DUE_DT] IS NOT NULL) ORDER BY [DUE_DT] DESC, [JOB_NO]"
    );
    assert_eq!(
        sql[3],
        "SELECT TOP (2) [JOB_NO], [STATUS], [DUE_DT], [AMOUNT], [CUST_NAME] FROM [dbo].[JOBS] \
         WHERE ([JOB_NO] = CAST(@P1 AS varchar(8000))) ORDER BY [JOB_NO]"
    );
    let params = |i: usize| match &old[i] {
        Request::Rpc { params, .. } => params.clone(),
        other => panic!("not sp_executesql: {other:?}"),
    };
    assert_eq!(params(0), vec![]);
    assert_eq!(params(1), vec![Sent::Text("J002    ".into())]);
    assert_eq!(
        params(2),
        vec![
            Sent::Text("O".into()),
            Sent::Text("H".into()),
            Sent::Decimal("100".into()),
            // The prefix twice: under the column's collation (an index seek), then under a
            // binary one, where case counts.
            Sent::Text("J0%".into()),
            Sent::Text("J0%".into()),
        ]
    );
    assert_eq!(params(3), vec![Sent::Text("J001    ".into())]);
    assert!(sql
        .iter()
        .all(|s| !s.contains("OFFSET") && !s.contains("FETCH")));
    let new = query_shapes(V2016).await;
    assert_eq!(old, new, "the same T-SQL on 2008 R2 and 2016");
}

/// The type zoo: one column of each SQL Server type, as the server answers the T-SQL it got
/// (money and CP850 text change type only when Portico asked for the cast).
fn types_reply(request: &Request) -> Reply {
    let sql = request.sql();
    if !sql.contains("[dbo].[TYPES]") {
        return Reply::Error {
            number: 208,
            message: "Invalid object name.".into(),
        };
    }
    let money_cast = sql.contains("CAST([M] AS decimal(19,4)) AS [M]");
    let smallmoney_cast = sql.contains("CAST([SM] AS decimal(19,4)) AS [SM]");
    let oem_cast = sql.contains("CAST([OEM] AS nvarchar(20)) AS [OEM]");
    let mut columns = vec![
        column("ID", SqlType::Int),
        column("B", SqlType::Bit),
        column("TI", SqlType::TinyInt),
        column("SI", SqlType::SmallInt),
        column("BI", SqlType::BigInt),
        column("R", SqlType::Real),
        column("F", SqlType::Float),
        column("D", SqlType::Decimal(38, 2)),
        column("N", SqlType::Numeric(7, 3)),
    ];
    columns.push(column(
        "M",
        if money_cast {
            SqlType::Decimal(19, 4)
        } else {
            SqlType::Money
        },
    ));
    columns.push(column(
        "SM",
        if smallmoney_cast {
            SqlType::Decimal(19, 4)
        } else {
            SqlType::SmallMoney
        },
    ));
    columns.extend([
        column("C", SqlType::Char(6, Collation::Cp1252)),
        column("VC", SqlType::VarChar(20, Collation::Cp1252)),
        column(
            "OEM",
            if oem_cast {
                SqlType::NVarChar(20)
            } else {
                SqlType::VarChar(20, Collation::Cp850)
            },
        ),
        column("NC", SqlType::NChar(4)),
        column("NVC", SqlType::NVarChar(20)),
        column("T", SqlType::Text(Collation::Cp1252)),
        column("NT", SqlType::NText),
        column("DT", SqlType::Date),
        column("TM", SqlType::Time(7)),
        column("DTM", SqlType::DateTime),
        column("SDT", SqlType::SmallDateTime),
        column("DT2", SqlType::DateTime2(7)),
        column("DTO", SqlType::DateTimeOffset(7)),
        column("G", SqlType::UniqueIdentifier),
        column("BIN", SqlType::Binary(4)),
        column("VB", SqlType::VarBinary(10)),
        column("IMG", SqlType::Image),
        column("RV", SqlType::RowVersion),
        column("X", SqlType::Xml),
    ]);
    // Without the cast the column is sent as money, which tiberius reads as an f64.
    let money = Cell::Decimal("922337203685477.5807");
    let values = vec![
        Cell::Int(1),
        Cell::Bool(true),
        Cell::Int(255),
        Cell::Int(-32768),
        Cell::Int(9_007_199_254_740_993),
        Cell::Float(1.5),
        Cell::Float(-2.25e-10),
        Cell::Decimal("123456789012345678901234567890123456.78"),
        Cell::Decimal("-1234.567"),
        money,
        Cell::Decimal("-214748.3648"),
        Cell::Text("AB    ".into()),
        Cell::Text("Café".into()),
        Cell::Text("Façade Größe".into()),
        Cell::Text("ÄÖ  ".into()),
        Cell::Text("Ünïcödé ✓".into()),
        Cell::Text("long café text".into()),
        Cell::Text("långt ✓".into()),
        Cell::Date("2024-02-29"),
        Cell::Time("13:45:30.1234567"),
        Cell::DateTime("2024-02-29 13:45:30.123"),
        Cell::DateTime("2024-02-29 13:45"),
        Cell::DateTime("2024-02-29 13:45:30.1234567"),
        Cell::DateTimeOffset("2024-02-29 13:45:30.1234567 +01:00"),
        Cell::Guid("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
        Cell::Bytes(vec![0xDE, 0xAD, 0xBE, 0xEF]),
        Cell::Bytes(vec![0, 1, 2]),
        Cell::Bytes(vec![0xFF; 3]),
        Cell::Bytes(vec![0, 0, 0, 0, 0, 0, 0x07, 0xD1]),
        Cell::Text("<a b=\"1\"/>".into()),
    ];
    let mut nulls = vec![Cell::Int(2)];
    nulls.resize(values.len(), Cell::Null);
    Reply::Rows(vec![ResultSet {
        columns,
        rows: vec![values, nulls],
    }])
}

fn types_config(fixture: &TdsFixture) -> String {
    let fields = [
        ("id", "ID", "integer", "int", ""),
        ("b", "B", "boolean", "bit", ""),
        ("ti", "TI", "integer", "tinyint", ""),
        ("si", "SI", "integer", "smallint", ""),
        ("bi", "BI", "integer", "bigint", ""),
        ("r", "R", "number", "real", ""),
        ("f", "F", "number", "float", ""),
        ("d", "D", "decimal", "decimal(38,2)", ""),
        ("n", "N", "decimal", "numeric(7,3)", ""),
        ("m", "M", "money", "money", r#", currency = "USD""#),
        ("sm", "SM", "decimal", "smallmoney", ", scale = 2"),
        ("c", "C", "string", "char(6)", ""),
        ("vc", "VC", "string", "varchar(20)", ""),
        (
            "oem",
            "OEM",
            "string",
            "varchar(20)",
            r#", encoding = "cp850""#,
        ),
        ("nc", "NC", "string", "nchar(4)", ""),
        ("nvc", "NVC", "string", "nvarchar(20)", ""),
        ("t", "T", "string", "text", ""),
        ("nt", "NT", "string", "ntext", ""),
        ("dt", "DT", "date", "date", ""),
        ("tm", "TM", "string", "time", ""),
        ("dtm", "DTM", "datetime", "datetime", ""),
        ("sdt", "SDT", "datetime", "smalldatetime", ""),
        ("dt2", "DT2", "datetime", "datetime2", ""),
        ("dto", "DTO", "datetime", "datetimeoffset", ""),
        ("g", "G", "string", "uniqueidentifier", ""),
        ("bin", "BIN", "string", "binary(4)", ""),
        ("vb", "VB", "string", "varbinary(10)", ""),
        ("img", "IMG", "string", "image", ""),
        ("rv", "RV", "string", "rowversion", ""),
        ("x", "X", "string", "xml", ""),
    ];
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[sources.erp]
kind = "mssql"
connection_string = "{}"

[versions.v1.resources.types]
source = "erp"
table = "dbo.TYPES"
key = ["id"]
anonymous = true

[versions.v1.resources.types.fields]
"#,
        fixture.ado_string()
    );
    for (name, col, api, sql, extra) in fields {
        text.push_str(&format!(
            "{name} = {{ column = \"{col}\", type = \"{api}\", column_type = \"{sql}\"{extra} }}\n"
        ));
    }
    text
}

/// Every SQL Server type and its NULL arrive as the API values the ODBC path gives.
#[tokio::test(flavor = "multi_thread")]
async fn every_sql_server_type_and_null_decodes_to_its_api_value() {
    let fixture = TdsFixture::start(V2016, types_reply).await;
    let app = Portico::spawn(&types_config(&fixture)).await;
    let page = app.get("/v1/types").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let sent = &fixture.statements()[0];
    assert!(sent.contains("CAST([M] AS decimal(19,4)) AS [M]"), "{sent}");
    assert!(
        sent.contains("CAST([OEM] AS nvarchar(20)) AS [OEM]"),
        "{sent}"
    );
    assert_eq!(
        page.body["data"][0],
        json!({
            "id": 1, "b": true, "ti": 255, "si": -32768, "bi": 9_007_199_254_740_993_i64,
            "r": 1.5, "f": -2.25e-10,
            "d": "123456789012345678901234567890123456.78", "n": "-1234.567",
            "m": {"value": "922337203685477.5807", "currency": "USD"},
            "sm": "-214748.3648",
            "c": "AB", "vc": "Café", "oem": "Façade Größe", "nc": "ÄÖ", "nvc": "Ünïcödé ✓",
            "t": "long café text", "nt": "långt ✓",
            "dt": "2024-02-29", "tm": "13:45:30.1234567",
            "dtm": "2024-02-29T13:45:30.123", "sdt": "2024-02-29T13:45:00",
            "dt2": "2024-02-29T13:45:30.1234567", "dto": "2024-02-29T13:45:30.1234567+01:00",
            "g": "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "bin": "DEADBEEF", "vb": "000102", "img": "FFFFFF", "rv": "00000000000007D1",
            "x": "<a b=\"1\"/>",
        })
    );
    let nulls = page.body["data"][1].as_object().unwrap();
    assert_eq!(nulls["id"], 2);
    for (name, value) in nulls.iter().filter(|(n, _)| *n != "id") {
        assert!(value.is_null(), "{name} = {value}");
    }
}

/// A connection the server dropped (a restart) is noticed before reuse and replaced.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_by_the_server_is_replaced() {
    let fixture = TdsFixture::start(V2016, |_| job_rows()).await;
    let app = Portico::spawn(&config(&fixture, "")).await;
    assert_eq!(app.get("/v1/jobs/J001").await.status, 200);
    assert_eq!(fixture.logins(), 1);
    fixture.drop_connections();
    let again = app.get("/v1/jobs/J002").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        fixture.logins(),
        2,
        "a new connection replaced the dropped one"
    );
    let login = fixture.last_login().unwrap();
    assert_eq!(
        (login.user.as_str(), login.database.as_str()),
        ("api_ro", "ERP")
    );
    assert_eq!(login.app_name, "portico");
}

/// A server older than 2008 is refused at connect, with no statement sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_sql_server_2005_is_refused_with_a_503() {
    let fixture = TdsFixture::start("9.00.5000.00", |_| job_rows()).await;
    let app = Portico::spawn(&config(&fixture, "")).await;
    let answer = app.get("/v1/jobs").await;
    answer.problem(503);
    assert!(selects(&fixture).is_empty());
}

/// Reads carry the source's isolation; writes' transactions use read committed.
#[tokio::test(flavor = "multi_thread")]
async fn reads_run_at_the_configured_isolation() {
    let fixture = TdsFixture::start(V2016, |_| job_rows()).await;
    let app = Portico::spawn(&config(&fixture, "isolation = \"snapshot\"")).await;
    assert_eq!(app.get("/v1/jobs").await.status, 200);
    let sql = selects(&fixture)[0].sql().to_string();
    assert!(
        sql.starts_with("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; SELECT TOP (51) "),
        "{sql}"
    );
}

/// A statement past `query_timeout` is a 503 and its connection is closed (the server rolls
/// back); a saturated source answers 503 + Retry-After instead of queueing.
#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_saturation_answer_503() {
    let slow = Arc::new(AtomicUsize::new(0));
    let seen = slow.clone();
    let fixture = TdsFixture::start(V2016, move |request| {
        if request.sql().contains("FROM [dbo].[JOBS]") && seen.load(Ordering::SeqCst) > 0 {
            return Reply::Delayed(Duration::from_millis(1500), Box::new(job_rows()));
        }
        job_rows()
    })
    .await;
    let app = Portico::spawn(&config(
        &fixture,
        "query_timeout = \"300ms\"\nmax_concurrency = 1\nqueue_timeout = \"100ms\"",
    ))
    .await;
    assert_eq!(app.get("/v1/jobs").await.status, 200);
    slow.store(1, Ordering::SeqCst);
    let timed_out = app.get("/v1/jobs?limit=5").await;
    assert_eq!(timed_out.problem(503)["type"], "/problems/source-timeout");
    // Saturation: one slow statement holds the only connection.
    let (first, second) = tokio::join!(app.get("/v1/jobs?limit=6"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.get("/v1/jobs?limit=7").await
    });
    let busy = [&first, &second]
        .into_iter()
        .find(|a| a.body["type"] == "/problems/source-busy")
        .unwrap_or_else(|| panic!("one request was shed: {} / {}", first.body, second.body));
    assert!(busy.headers.contains_key("retry-after"));
    slow.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let logins = fixture.logins();
    assert_eq!(app.get("/v1/jobs").await.status, 200, "the source recovers");
    assert!(logins >= 2, "timed-out connections were closed, not reused");
}

/// `portico check` reads the catalog of every table a SQL Server resource reads and names each
/// column it could not serve as declared: a sql_variant, a money read through a float, text
/// in an OEM code page without its `encoding`.
#[tokio::test(flavor = "multi_thread")]
async fn check_names_the_columns_a_resource_cannot_read() {
    let fixture = TdsFixture::start(V2016, |request| {
        if request.sql().contains("GROUP BY") || request.sql().contains(" IS NULL") {
            // The key probes: no duplicate, no NULL.
            let Reply::Rows(mut sets) = job_rows() else {
                unreachable!()
            };
            sets[0].rows.clear();
            return Reply::Rows(sets);
        }
        if !request.sql().contains("sys.columns") {
            return job_rows();
        }
        let row = |name: &str, ty: &str, code_page: Option<i64>| {
            vec![
                Cell::Text(name.into()),
                Cell::Text(ty.into()),
                Cell::Bool(false),
                code_page.map_or(Cell::Null, Cell::Int),
            ]
        };
        Reply::Rows(vec![ResultSet {
            columns: vec![
                column("name", SqlType::NVarChar(128)),
                column("type", SqlType::NVarChar(128)),
                column("is_assembly_type", SqlType::Bit),
                column("code_page", SqlType::Int),
            ],
            rows: vec![
                row("JOB_NO", "char", Some(1252)),
                row("STATUS", "sql_variant", None),
                row("DUE_DT", "date", None),
                row("AMOUNT", "money", None),
                row("CUST_NAME", "varchar", Some(850)),
            ],
        }])
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portico.toml");
    std::fs::write(&path, config(&fixture, "")).unwrap();
    let problems = portico::check::check(&path).await;
    let found: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.location.as_str(), p.message.as_str()))
        .collect();
    let at = |field: &str| {
        found
            .iter()
            .find(|(location, _)| *location == format!("versions.v1.resources.jobs.fields.{field}"))
            .map(|(_, message)| *message)
            .unwrap_or_else(|| panic!("nothing about {field}: {found:?}"))
    };
    assert!(at("status").contains("`STATUS` is `sql_variant`"));
    assert!(at("amount").contains("column_type = \"money\""));
    assert!(at("name").contains("encoding = \"cp850\""));
    assert_eq!(problems.len(), 3, "{found:?}");
}

/// A PATCH runs as one transaction on one connection: read committed, XACT_ABORT, the
/// compare-and-set UPDATE, the read-back, COMMIT; a row that changed meanwhile (0 rows
/// updated) rolls back with a 412.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_is_one_transaction_committed_only_when_the_row_matched() {
    let changed = Arc::new(AtomicUsize::new(0));
    let seen = changed.clone();
    let fixture = TdsFixture::start(V2016, move |request| {
        let sql = request.sql();
        if sql.starts_with("UPDATE ") {
            return Reply::Affected(if seen.load(Ordering::SeqCst) > 0 {
                0
            } else {
                1
            });
        }
        if sql.contains("FROM [dbo].[JOBS]") {
            return job_rows();
        }
        Reply::Affected(0)
    })
    .await;
    let app = Portico::spawn(&writable_config(&fixture)).await;
    let token = crate::auth::hs_token("clerk", json!({"scope": "jobs:read jobs:write"}));
    let read = app.get_as("/v1/jobs/J001", Some(&token)).await;
    let etag = read.headers["etag"].to_str().unwrap().to_string();
    fixture.clear();
    let patch = |etag: String| {
        let (app, token) = (&app, &token);
        async move {
            app.send(
                reqwest::Method::PATCH,
                "/v1/jobs/J001",
                Some(token),
                &[("If-Match", etag.as_str())],
                Some(Ok(json!({"status": "held"}))),
            )
            .await
        }
    };
    let answer = patch(etag.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A fresh read checks If-Match first, then the transaction.
    let all = fixture.statements();
    let begin =
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET XACT_ABORT ON; BEGIN TRANSACTION";
    let at = all.iter().position(|s| s == begin).expect("a transaction");
    let sent = &all[at..];
    assert!(
        sent[1].starts_with("UPDATE [dbo].[JOBS] SET [STATUS] = CAST(@P1 AS varchar(8000)) WHERE "),
        "{}",
        sent[1]
    );
    assert!(sent[2].starts_with("SELECT TOP (2) "), "{}", sent[2]);
    assert_eq!(sent[3], "COMMIT TRANSACTION");
    assert_eq!(sent.len(), 4, "{sent:?}");

    changed.store(1, Ordering::SeqCst);
    fixture.clear();
    patch(etag).await.problem(412);
    let sent = fixture.statements();
    assert_eq!(
        sent.last().unwrap(),
        "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION"
    );
    assert!(!sent.iter().any(|s| s.starts_with("COMMIT")), "{sent:?}");
}

/// A pooled connection is reused without a `SELECT 1` round trip per request (its socket is
/// peeked instead); `/readyz` still asks the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_reused_connection_costs_no_extra_round_trip() {
    let fixture = TdsFixture::start(V2016, |_| job_rows()).await;
    let app = Portico::spawn(&config(&fixture, "")).await;
    for key in ["J001", "J002", "J003"] {
        assert_eq!(app.get(&format!("/v1/jobs/{key}")).await.status, 200);
    }
    assert_eq!(app.get("/v1/jobs").await.status, 200);
    assert_eq!(fixture.logins(), 1, "one connection served every request");
    let sent: Vec<String> = fixture
        .requests()
        .iter()
        .map(|r| r.sql().to_string())
        .collect();
    assert_eq!(
        sent.len(),
        5,
        "the version, then one statement per request: {sent:?}"
    );
    assert!(
        sent[0].contains("SERVERPROPERTY('ProductVersion')"),
        "{sent:?}"
    );
    assert!(
        sent[1..].iter().all(|s| s.contains("FROM [dbo].[JOBS]")),
        "{sent:?}"
    );

    fixture.clear();
    assert_eq!(app.get("/readyz").await.status, 200);
    let sent: Vec<String> = fixture
        .requests()
        .iter()
        .map(|r| r.sql().trim().to_string())
        .collect();
    assert_eq!(sent, ["SELECT 1"]);
}

/// A handler answering like `job_rows` (writes: one row changed) that first hangs up on
/// `hangups` requests whose SQL starts with or contains `at`, as a connection the server
/// dropped shows itself when the drop was not seen before reuse.
fn hanging_up(at: &'static str, hangups: Arc<AtomicUsize>) -> impl Fn(&Request) -> Reply {
    move |request| {
        let sql = request.sql();
        let due = sql.contains(at)
            && hangups
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if due {
            return Reply::Hangup;
        }
        if sql.starts_with("UPDATE ") {
            return Reply::Affected(1);
        }
        if sql.contains("FROM [dbo].[JOBS]") {
            return job_rows();
        }
        Reply::Affected(0)
    }
}

/// A read on a reused connection that turns out lost (the server closed it unseen) runs once
/// more on a new connection; a new connection that fails too is a 503.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_on_a_connection_lost_unseen_is_retried_once() {
    let hangups = Arc::new(AtomicUsize::new(0));
    let fixture = TdsFixture::start(V2016, hanging_up("FROM [dbo].[JOBS]", hangups.clone())).await;
    let app = Portico::spawn(&config(&fixture, "")).await;
    assert_eq!(app.get("/v1/jobs/J001").await.status, 200);
    hangups.store(1, Ordering::SeqCst);
    let again = app.get("/v1/jobs/J002").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        fixture.logins(),
        2,
        "a new connection replaced the lost one"
    );
    assert_eq!(selects(&fixture).len(), 3, "the lost read ran once more");

    hangups.store(2, Ordering::SeqCst);
    fixture.clear();
    app.get("/v1/jobs/J003").await.problem(503);
    assert_eq!(selects(&fixture).len(), 2, "retried once, not more");
}

/// A write whose opening batch finds its reused connection lost runs on a new one (nothing of
/// the transaction ran); a connection lost after the opening batch is a 503, never a second
/// UPDATE.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_retries_a_lost_connection_only_before_its_transaction_began() {
    let begin =
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET XACT_ABORT ON; BEGIN TRANSACTION";
    let hangups = Arc::new(AtomicUsize::new(0));
    let hang_on_update = Arc::new(AtomicUsize::new(0));
    let (on_begin, on_update) = (hanging_up(begin, hangups.clone()), hang_on_update.clone());
    let fixture = TdsFixture::start(V2016, move |request| {
        let update = request.sql().starts_with("UPDATE ");
        if update
            && on_update
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Reply::Hangup;
        }
        on_begin(request)
    })
    .await;
    let app = Portico::spawn(&writable_config(&fixture)).await;
    let token = crate::auth::hs_token("clerk", json!({"scope": "jobs:read jobs:write"}));
    let read = app.get_as("/v1/jobs/J001", Some(&token)).await;
    let etag = read.headers["etag"].to_str().unwrap().to_string();
    let patch = || {
        let (app, token, etag) = (&app, &token, etag.clone());
        async move {
            app.send(
                reqwest::Method::PATCH,
                "/v1/jobs/J001",
                Some(token),
                &[("If-Match", etag.as_str())],
                Some(Ok(json!({"status": "held"}))),
            )
            .await
        }
    };
    let count = |prefix: &str| {
        fixture
            .statements()
            .iter()
            .filter(|s| s.starts_with(prefix))
            .count()
    };

    hangups.store(1, Ordering::SeqCst);
    fixture.clear();
    let answer = patch().await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(fixture.logins(), 1, "one new connection");
    assert_eq!(count(begin), 2, "the transaction opened again");
    assert_eq!(count("UPDATE "), 1);
    assert_eq!(count("COMMIT"), 1);

    hang_on_update.store(1, Ordering::SeqCst);
    fixture.clear();
    patch().await.problem(503);
    assert_eq!(
        count("UPDATE "),
        1,
        "an UPDATE that may have run is not sent again"
    );
    assert_eq!(count(begin), 1);
}
