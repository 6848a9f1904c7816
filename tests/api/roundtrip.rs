//! Exact round trips: every writable field of every resource of the demo takes values generated
//! from its own schema in the published document (hypothesis-jsonschema, a generator we did not
//! write) and serves them back unchanged, or answers 422 at the field's pointer; nothing else
//! (`support/roundtrip.py` is the property). On SQLite the demo's own database; on PostgreSQL
//! and MariaDB the demo's tables written in their SQL, served by the demo's configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::Kind;
use crate::harness::{demo_database, execute, fresh_database, Portico};

/// Generated values per field and write; each case is a write, a read and an undo.
const EXAMPLES: &str = "250";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The demo's tables (config/demo/legacy.sql) in `kind`'s SQL, with a few rows of each; names
/// quoted where the database would fold them (PostgreSQL), as the demo spells them.
fn demo_tables(kind: Kind) -> Vec<String> {
    const NAMES: [&str; 25] = [
        "CUSTMAST",
        "CUST_NO",
        "CUST_NAME",
        "CITY",
        "ACTIVE",
        "CREDIT_LIM",
        "OPENED_DT",
        "JOBHDR",
        "JOB_NO",
        "DESCR",
        "STATUS",
        "PRIORITY",
        "ORDER_DT",
        "DUE_DT",
        "SHIP_DT",
        "QUOTE_AMT",
        "RUSH",
        "LAST_UPD",
        "JOBOPS",
        "OP_SEQ",
        "WORK_CTR",
        "OP_DESC",
        "STD_HRS",
        "DONE_FLAG",
        "DONE_DT",
    ];
    demo_statements(kind)
        .into_iter()
        .map(|sql| match kind {
            Kind::Postgres => crate::changes::quote_words(&sql, &NAMES),
            _ => sql,
        })
        .collect()
}

fn demo_statements(kind: Kind) -> Vec<String> {
    let timestamp = if kind == Kind::MariaDb {
        "DATETIME"
    } else {
        "TIMESTAMP"
    };
    vec![
        "CREATE TABLE CUSTMAST (CUST_NO CHAR(8) NOT NULL PRIMARY KEY, CUST_NAME CHAR(30) NOT NULL, \
         CITY CHAR(20), ACTIVE CHAR(1) NOT NULL, CREDIT_LIM DECIMAL(11,2), OPENED_DT CHAR(8) NOT NULL)"
            .into(),
        format!(
            "CREATE TABLE JOBHDR (JOB_NO CHAR(10) NOT NULL PRIMARY KEY, CUST_NO CHAR(8) NOT NULL, \
             DESCR VARCHAR(60), STATUS CHAR(1) NOT NULL, PRIORITY INTEGER, ORDER_DT INTEGER NOT NULL, \
             DUE_DT CHAR(8) NOT NULL, SHIP_DT NUMERIC(7,0) NOT NULL, QUOTE_AMT DECIMAL(13,2), \
             RUSH CHAR(1) NOT NULL, LAST_UPD {timestamp} NOT NULL)"
        ),
        "CREATE TABLE JOBOPS (JOB_NO CHAR(10) NOT NULL, OP_SEQ INTEGER NOT NULL, WORK_CTR CHAR(6) NOT NULL, \
         OP_DESC VARCHAR(40), STD_HRS DECIMAL(7,2), DONE_FLAG CHAR(1) NOT NULL, DONE_DT VARCHAR(10) NOT NULL, \
         PRIMARY KEY (JOB_NO, OP_SEQ))"
            .into(),
        "INSERT INTO CUSTMAST VALUES ('C00001  ', 'Acme Tool & Die               ', 'Dayton              ', 'Y', 12500.00, '19960301'), \
         ('C00002  ', 'Northside Fabrication         ', NULL, 'N', NULL, '19970415')"
            .into(),
        "INSERT INTO JOBHDR VALUES ('J000001   ', 'C00001  ', 'Flange 1', 'O', 3, 19960602, '19960629', 0, 1197.29, 'N', '1996-06-05 10:00:00'), \
         ('J000002   ', 'C00002  ', NULL, 'C', NULL, 19960603, '00000000', 960623, NULL, 'Y', '1996-06-06 11:00:00')"
            .into(),
        "INSERT INTO JOBOPS VALUES ('J000001   ', 10, 'SAW   ', 'Cut stock per drawing', 1.25, 'Y', '06/03/1996'), \
         ('J000001   ', 20, 'LATHE ', 'Turn per drawing', 2.50, 'N', ''), \
         ('J000002   ', 10, 'MILL  ', NULL, 0.75, 'N', ''), \
         ('J000002   ', 20, 'INSP  ', 'Inspect per drawing', 4.00, 'N', '')"
            .into(),
    ]
}

/// config/demo.toml over `connection_string`, on a free port, without a rate limit in the way.
fn demo_config(kind: Kind, connection_string: &str, state: &Path) -> portico::config::Config {
    let mut text = std::fs::read_to_string(repo("config/demo.toml"))
        .unwrap()
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("requests_per_second = 100", "requests_per_second = 100000")
        .replace("burst = 200", "burst = 100000");
    if kind != Kind::Sqlite {
        // The demo keeps CP1252 bytes in SQLite; these databases store UTF-8 text. The widths,
        // precisions and NOT NULLs the demo declares are left to these databases' catalogs
        // (their INTEGER is 32 bits, not SQLite's 64).
        for declared in [
            ", column_type = \"bigint\"",
            ", column_type = \"decimal(11,2)\"",
            ", column_type = \"decimal(7,2)\"",
            ", column_type = \"varchar(40)\"",
            ", column_type = \"varchar(10)\"",
            ", nullable = false",
        ] {
            text = text.replace(declared, "");
        }
        text = text.replace(", encoding = \"windows-1252\"", "").replace(
            "dialect = \"sqlite\"",
            &format!("dialect = \"{}\"", kind.dialect()),
        );
    }
    let (db, state) = (
        connection_string
            .trim_start_matches("Driver=SQLite3;Database=")
            .to_string(),
        state.display().to_string(),
    );
    let mut config = portico::config::parse("demo.toml", &text, &move |name| match name {
        "DEMO_DB" => Some(db.clone()),
        "PORTICO_STATE" => Some(state.clone()),
        _ => None,
    })
    .expect("the demo configuration parses");
    if kind != Kind::Sqlite {
        if let Some(source) = config.sources.get_mut("shop") {
            source.connection_string = connection_string.to_string();
        }
    }
    config
}

/// Runs the property against `app`'s `version` with `token`; answers the report.
async fn property(app: &Portico, token: &str) -> String {
    let (base, token) = (app.base.clone(), token.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(repo(".venv/bin/python"))
            .arg(repo("tests/api/support/roundtrip.py"))
            .args(["--base", &base, "--version", "v1", "--token", &token])
            .args(["--examples", EXAMPLES])
            .output()
            .expect(".venv/bin/python (scripts/install-deps.sh test makes it)")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "values the document allows were not served back unchanged:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// The demo's configuration served over `connection_string`, and a token with every scope its
/// writable resources need.
async fn demo_app(kind: Kind, connection_string: &str, dir: &Path) -> (Portico, String) {
    let config = demo_config(kind, connection_string, &dir.join("state.sqlite3"));
    let token = portico::auth::token::mint(
        config.auth.as_ref().unwrap(),
        &portico::auth::token::TokenRequest {
            subject: "round-trips".into(),
            scopes: [
                "customers:read",
                "customers:read:all",
                "customers:write",
                "customers:write:terms",
                "jobs:read",
                "jobs:read:all",
                "jobs:read:amounts",
                "jobs:write",
                "operations:read",
                "operations:write",
            ]
            .map(String::from)
            .to_vec(),
            claims: Default::default(),
            ttl: std::time::Duration::from_secs(3600),
        },
    )
    .unwrap();
    let services =
        portico::app::build(&config, &dir.join("demo.toml").display().to_string()).unwrap();
    (Portico::start(services, &config).await, token)
}

async fn round_trips(kind: Kind, connection_string: &str, dir: &Path) {
    let (app, token) = demo_app(kind, connection_string, dir).await;
    if kind != Kind::Sqlite {
        // What the catalog said reached the document.
        let document: serde_json::Value =
            serde_json::from_str(&app.get_text("/openapi/v1.json").await).unwrap();
        let schemas = &document["components"]["schemas"];
        assert_eq!(
            schemas["CustomerPatch"]["properties"]["name"]["type"],
            serde_json::json!(["string"])
        );
        assert_eq!(
            schemas["CustomerPatch"]["properties"]["credit_limit"]["pattern"],
            r"^-?0*[0-9]{1,9}(\.[0-9]{1,2}0*)?$"
        );
        assert_eq!(
            schemas["OperationPatch"]["properties"]["description"]["maxLength"],
            40
        );
        assert_eq!(
            schemas["JobPatch"]["properties"]["priority"]["maximum"],
            i32::MAX
        );
    }
    let report = property(&app, &token).await;
    // Every writable field of customers, jobs (both writes) and operations was tried.
    assert!(report.contains("29 fields: 29 ok"), "{kind:?}: {report}");
}

#[tokio::test]
async fn every_demo_field_round_trips_on_sqlite() {
    let (dir, db) = demo_database();
    round_trips(
        Kind::Sqlite,
        &format!("Driver=SQLite3;Database={}", db.display()),
        dir.path(),
    )
    .await;
}

/// The demo's tables written in a fresh database of `kind`, served and round-tripped.
async fn demo_tables_round_trip(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let cs = fresh_database(kind, dir.path());
    for sql in demo_tables(kind) {
        execute(&cs, &sql);
    }
    round_trips(kind, &cs, dir.path()).await;
}

#[tokio::test]
async fn every_demo_field_round_trips_on_postgres() {
    demo_tables_round_trip(Kind::Postgres).await;
}

#[tokio::test]
async fn every_demo_field_round_trips_on_mariadb() {
    demo_tables_round_trip(Kind::MariaDb).await;
}

/// The requests of the outside run that found values accepted and then corrupted (issue 16),
/// each now stored exactly or refused at its pointer, and the answers its document promised.
#[tokio::test]
async fn the_values_an_outside_run_saw_corrupted_are_kept_or_refused() {
    use reqwest::Method;
    use serde_json::json;
    let (dir, db) = demo_database();
    let cs = format!("Driver=SQLite3;Database={}", db.display());
    let (app, token) = demo_app(Kind::Sqlite, &cs, dir.path()).await;
    let send = |method: Method, path: &'static str, body: serde_json::Value| {
        let (app, token) = (&app, token.clone());
        async move {
            app.send(method, path, Some(&token), &[], Some(Ok(body)))
                .await
        }
    };
    // 1. A year below 1000 in a YYYYMMDD integer column reads back.
    let created = send(
        Method::POST,
        "/v1/jobs",
        json!({"id": "JEVAL0002", "customer_id": "C00002", "status": "open", "ordered_on": "0530-12-30", "rush": false}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["ordered_on"], "0530-12-30");
    assert_eq!(
        app.get_as("/v1/jobs/JEVAL0002", Some(&token)).await.body["ordered_on"],
        "0530-12-30"
    );
    // 2. Integers are read at their width: the largest int64 and a stored negative one.
    let big = send(
        Method::PATCH,
        "/v1/jobs/J000001",
        json!({"priority": i64::MAX}),
    )
    .await;
    assert_eq!(big.body["priority"], json!(i64::MAX), "{}", big.body);
    let negative = send(
        Method::PATCH,
        "/v1/jobs/J000002",
        json!({"priority": -147589156322897_i64}),
    )
    .await;
    assert_eq!(negative.body["priority"], json!(-147589156322897_i64));
    // 7.0 is an integer, as JSON Schema says.
    let whole = send(Method::PATCH, "/v1/jobs/J000003", json!({"priority": 7.0})).await;
    assert_eq!(
        (whole.status.as_u16(), whole.body["priority"].clone()),
        (200, json!(7))
    );
    // Past 2^53 a double is no exact integer.
    let inexact = send(
        Method::PATCH,
        "/v1/jobs/J000003",
        json!({"priority": 9007199254740993.0_f64}),
    )
    .await;
    assert_eq!(inexact.problem(422)["errors"][0]["pointer"], "/priority");
    // A job named like the change feed gets a Location that serves the job.
    let feedlike = send(
        Method::POST,
        "/v1/jobs",
        json!({"id": "changes", "customer_id": "C00002", "status": "open", "ordered_on": "2026-11-23", "rush": false}),
    )
    .await;
    assert_eq!(feedlike.status, 201, "{}", feedlike.body);
    let location = feedlike.headers["location"].to_str().unwrap().to_string();
    assert_eq!(location, "/v1/jobs/%63hanges");
    assert_eq!(
        app.get_as(&location, Some(&token)).await.body["id"],
        "changes"
    );
    // 3. A decimal beyond the column's scale or precision (DECIMAL(11,2), from the catalog).
    for value in ["1.239", "12345678901234567890.5"] {
        let answer = send(
            Method::PATCH,
            "/v1/customers/C00001",
            json!({"credit_limit": value}),
        )
        .await;
        assert_eq!(
            answer.problem(422)["errors"][0]["pointer"],
            "/credit_limit",
            "{value}"
        );
    }
    // A decimal is written as the document's pattern says: `-`, digits, a point with digits.
    for value in ["+.5", ".5", "5.", " 12", "12\n", "1e3"] {
        let answer = send(
            Method::PATCH,
            "/v1/customers/C00001",
            json!({"credit_limit": value}),
        )
        .await;
        assert_eq!(
            answer.problem(422)["errors"][0]["pointer"],
            "/credit_limit",
            "{value:?}"
        );
    }
    let padded = send(
        Method::PATCH,
        "/v1/customers/C00001",
        json!({"credit_limit": "0012.500"}),
    )
    .await;
    assert_eq!(padded.body["credit_limit"], "12.50", "{}", padded.body);
    // 4. A key the column cannot hold, blank text, control characters.
    let long = send(
        Method::POST,
        "/v1/jobs",
        json!({"id": "J\u{7}\u{1F600}XXXXXXXXXXXXXXXXXXXXXXXXXX", "customer_id": "C00002", "status": "open", "ordered_on": "2020-01-01", "rush": false}),
    )
    .await;
    assert_eq!(long.problem(422)["errors"][0]["pointer"], "/id");
    let city = send(
        Method::PATCH,
        "/v1/customers/C00001",
        json!({"city": "Day\u{1}ton", "name": " "}),
    )
    .await;
    let mut pointers: Vec<&str> = city.problem(422)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["/city", "/name"]);
    // 5. NOT NULL columns take no null: a 422 at the field, never the database's 409.
    let null = send(Method::PATCH, "/v1/customers/C00001", json!({"name": null})).await;
    assert_eq!(null.problem(422)["errors"][0]["pointer"], "/name");
    // A change feed takes GET and HEAD only, and says so.
    let options = app
        .send(Method::OPTIONS, "/v1/jobs/changes", Some(&token), &[], None)
        .await;
    assert_eq!(options.status, 405);
    assert_eq!(options.headers["allow"], "GET, HEAD");
}

/// The write fixture of `writes.rs` (a yyyymmdd date with a sentinel, a code map, a decimal,
/// a row policy, a key the database generates), without its CHECK constraint.
async fn write_fixture_round_trips(kind: Kind) {
    let db = crate::writes::Legacy::without_checks(kind);
    let app = Portico::spawn(&db.config("", "")).await;
    let clerk = crate::writes::clerk();
    // The property builds a POST from an existing row: notes starts empty.
    let note = serde_json::json!({"customer_id": "C001", "body": "Called about the invoice"});
    let first = app
        .send(
            reqwest::Method::POST,
            "/v1/notes",
            Some(&clerk),
            &[],
            Some(Ok(note)),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let report = property(&app, &clerk).await;
    // customers: 5 fields by PATCH, 6 by POST; notes: 2 by POST.
    assert!(report.contains("13 fields: 13 ok"), "{kind:?}: {report}");
}

#[tokio::test]
async fn every_write_fixture_field_round_trips_on_sqlite() {
    write_fixture_round_trips(Kind::Sqlite).await;
}

#[tokio::test]
async fn every_write_fixture_field_round_trips_on_postgres() {
    write_fixture_round_trips(Kind::Postgres).await;
}

#[tokio::test]
async fn every_write_fixture_field_round_trips_on_mariadb() {
    write_fixture_round_trips(Kind::MariaDb).await;
}
