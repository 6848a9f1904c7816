//! Writes against SQLite, PostgreSQL and MariaDB: each test gets its own fresh database with a
//! CUSTOMERS table written the legacy way (CHAR padding, YYYYMMDD, one-letter codes) and a
//! NOTES table whose key the database generates. The table is always checked directly.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::fixture::Kind;
use crate::harness::{execute, fresh_database, query_text, Answer, Portico};
use crate::idp::{AUDIENCE, ISSUER};

/// A fresh database with the write fixture, and what keeps it alive.
pub(crate) struct Legacy {
    connection_string: String,
    kind: Kind,
    dir: tempfile::TempDir,
}

impl Legacy {
    pub(crate) fn new(kind: Kind) -> Self {
        Self::with_checks(kind, true)
    }

    /// The fixture without its CHECK constraint: a rule of the database that no document
    /// states (the round-trip property runs on it).
    pub(crate) fn without_checks(kind: Kind) -> Self {
        Self::with_checks(kind, false)
    }

    fn with_checks(kind: Kind, checks: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let connection_string = fresh_database(kind, dir.path());
        let generated = match kind {
            Kind::Postgres => "SERIAL PRIMARY KEY",
            Kind::MariaDb => "INTEGER AUTO_INCREMENT PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        let q = |n: &str| kind.quote(n);
        for sql in [
            format!(
                "CREATE TABLE {} ({} CHAR(6) NOT NULL PRIMARY KEY, {} VARCHAR(30) NOT NULL, \
                 {} CHAR(1) NOT NULL, {} CHAR(8) NOT NULL, {} DECIMAL(9,2), {} CHAR(4) NOT NULL, \
                 {} CHAR(8), {} CHAR(10){})",
                q("CUSTOMERS"),
                q("CUST_NO"),
                q("NAME"),
                q("STATUS"),
                q("SINCE"),
                q("CREDIT"),
                q("REGION"),
                q("LAST_UPD"),
                q("UPD_USER"),
                if checks {
                    format!(", CONSTRAINT credit_positive CHECK ({} >= 0)", q("CREDIT"))
                } else {
                    String::new()
                }
            ),
            format!(
                "INSERT INTO {} VALUES ('C001  ', 'Acme Tools', 'A', '20190301', 1500.00, 'EAST', NULL, NULL), \
                 ('C002  ', 'Bolt & Nut', 'H', '00000000', NULL, 'WEST', NULL, NULL)",
                q("CUSTOMERS")
            ),
            format!(
                "CREATE TABLE {} ({} {generated}, {} CHAR(6) NOT NULL, {} VARCHAR(200) NOT NULL)",
                q("NOTES"),
                q("NOTE_ID"),
                q("CUST_NO"),
                q("BODY")
            ),
        ] {
            execute(&connection_string, &sql);
        }
        Self {
            connection_string,
            kind,
            dir,
        }
    }

    /// The CUSTOMERS row as stored, column by column, as text.
    fn row(&self, key: &str) -> Option<Vec<Option<String>>> {
        let q = |n: &str| self.kind.quote(n);
        // SQLite keeps CHAR values as written, so its key is compared padded.
        let key = match self.kind {
            Kind::Sqlite => format!("{key:<6}"),
            _ => key.to_string(),
        };
        let sql = format!(
            "SELECT {}, {}, {}, {}, {}, {}, {}, {} FROM {} WHERE {} = '{key}'",
            q("CUST_NO"),
            q("NAME"),
            q("STATUS"),
            q("SINCE"),
            q("CREDIT"),
            q("REGION"),
            q("LAST_UPD"),
            q("UPD_USER"),
            q("CUSTOMERS"),
            q("CUST_NO"),
        );
        query_text(&self.connection_string, &sql).into_iter().next()
    }

    fn count(&self, table: &str) -> usize {
        let sql = format!("SELECT COUNT(*) FROM {}", self.kind.quote(table));
        let rows = query_text(&self.connection_string, &sql);
        rows[0][0].as_deref().unwrap().trim().parse().unwrap()
    }

    /// The configuration: `extra` goes into the customers resource, `tail` at the end.
    pub(crate) fn config(&self, extra: &str, tail: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

[state]
path = "{state}"

[sources.legacy]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{cs}"

[versions.v1.resources.customers]
source = "legacy"
table = "CUSTOMERS"
key = ["id"]
read_scope = "customers:read"
write_scope = "customers:write"
writes = ["create", "update", "delete"]
cache_ttl = "60s"
row_policies = [{{ name = "own-region", unless_scope = "customers:all", condition = "REGION = {{claims.region}}" }}]
{extra}

[versions.v1.resources.customers.write_values]
LAST_UPD = {{ value = "today", column_type = "char(8)", format = "yyyymmdd" }}
UPD_USER = {{ value = "{{sub}}", column_type = "char(10)" }}

[versions.v1.resources.customers.fields]
id = {{ column = "CUST_NO", type = "string", column_type = "char(6)" }}
name = {{ column = "NAME", type = "string", column_type = "varchar(30)", required = true }}
status = {{ column = "STATUS", type = "string", column_type = "char(1)", codes = {{ A = "active", H = "on_hold" }}, required = true }}
since = {{ column = "SINCE", type = "date", format = "yyyymmdd", null_values = ["00000000"] }}
credit = {{ column = "CREDIT", type = "decimal", column_type = "decimal(9,2)", scale = 2 }}
region = {{ column = "REGION", type = "string", column_type = "char(4)", required = true }}

[versions.v1.resources.notes]
source = "legacy"
table = "NOTES"
key = ["id"]
read_scope = "customers:read"
write_scope = "customers:write"
writes = ["create"]

[versions.v1.resources.notes.fields]
id = {{ column = "NOTE_ID", type = "integer", read_only = true }}
customer_id = {{ column = "CUST_NO", type = "string", column_type = "char(6)", required = true }}
body = {{ column = "BODY", type = "string", column_type = "varchar(200)", required = true }}
{tail}
"#,
            state = self.dir.path().join("state.sqlite3").display(),
            dialect = self.kind.dialect(),
            cs = self.connection_string,
        )
    }
}

pub(crate) fn clerk() -> String {
    hs_token(
        "clerk",
        json!({"scope": "customers:read customers:write customers:all"}),
    )
}

fn reader() -> String {
    hs_token("viewer", json!({"scope": "customers:read customers:all"}))
}

fn east_portal() -> String {
    hs_token(
        "east-desk",
        json!({"scope": "customers:read customers:write", "region": "EAST"}),
    )
}

async fn post(app: &Portico, path: &str, token: &str, body: Value) -> Answer {
    app.send(Method::POST, path, Some(token), &[], Some(Ok(body)))
        .await
}

async fn patch(
    app: &Portico,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: Value,
) -> Answer {
    let headers: Vec<(&str, &str)> = if_match.map(|t| ("if-match", t)).into_iter().collect();
    app.send(
        Method::PATCH,
        path,
        Some(token),
        &headers,
        Some(Err((
            "application/merge-patch+json",
            body.to_string().into_bytes(),
        ))),
    )
    .await
}

async fn delete(app: &Portico, path: &str, token: &str, if_match: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = if_match.map(|t| ("if-match", t)).into_iter().collect();
    app.send(Method::DELETE, path, Some(token), &headers, None)
        .await
}

async fn post_raw(app: &Portico, content_type: &str, body: Vec<u8>) -> Answer {
    app.send(
        Method::POST,
        "/v1/customers",
        Some(&clerk()),
        &[],
        Some(Err((content_type, body))),
    )
    .await
}

/// Asserts a 422 whose `errors` mention every one of `words`.
fn assert_errors(answer: &Answer, words: &[&str]) {
    let errors = answer.problem(422)["errors"].to_string();
    for word in words {
        assert!(errors.contains(word), "{word} in {errors}");
    }
}

fn etag(answer: &Answer) -> String {
    answer.headers["etag"].to_str().unwrap().to_string()
}

fn today_yyyymmdd() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let date = portico::catalog::date::Date::from_days(days as i64).unwrap();
    format!("{:04}{:02}{:02}", date.year, date.month, date.day)
}

/// Trims what a driver pads, so rows compare across databases.
fn text(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|s| s.trim_end().to_string())
}

async fn create_update_delete_round_trip_in_the_legacy_shape(kind: Kind) {
    let db = Legacy::new(kind);
    let app = Portico::spawn(&db.config("", "")).await;
    // A cached read first, so the writes below must invalidate it.
    let before = app.get_as("/v1/customers?limit=10", Some(&reader())).await;
    assert_eq!(before.body["data"].as_array().unwrap().len(), 2);

    let created = post(
        &app,
        "/v1/customers",
        &clerk(),
        json!({"id": "C100", "name": "Café Ünïcode", "status": "on_hold",
               "since": "2024-02-29", "credit": "1234.50", "region": "EAST"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.headers["location"], "/v1/customers/C100");
    assert_eq!(
        created.body,
        json!({"id": "C100", "name": "Café Ünïcode", "status": "on_hold", "since": "2024-02-29",
               "credit": "1234.50", "region": "EAST"})
    );
    let stored = db.row("C100").expect("the row is in the table");
    let today = today_yyyymmdd();
    assert_eq!(
        stored[0].as_deref().map(str::len),
        Some(if kind == Kind::MariaDb { 4 } else { 6 }),
        "CHAR(6) key as the database keeps it: {stored:?}"
    );
    assert_eq!(
        stored.iter().skip(1).map(text).collect::<Vec<_>>(),
        vec![
            Some("Café Ünïcode".into()),
            Some("H".into()),
            Some("20240229".into()),
            Some(if kind == Kind::Sqlite {
                "1234.5".into()
            } else {
                "1234.50".into()
            }),
            Some("EAST".into()),
            Some(today.clone()),
            Some("clerk".into()),
        ]
    );
    // The GET of the new row carries the ETag the POST returned.
    let got = app.get_as("/v1/customers/C100", Some(&reader())).await;
    assert_eq!(got.body, created.body);
    assert_eq!(etag(&got), etag(&created));
    let listed = app.get_as("/v1/customers?limit=10", Some(&reader())).await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        3,
        "the cached list was invalidated"
    );

    // A merge patch: null goes back to the legacy sentinel, untouched fields stay.
    let patched = patch(
        &app,
        "/v1/customers/C100",
        &clerk(),
        Some(&etag(&got)),
        json!({"status": "active", "since": null, "credit": null, "id": "C100"}),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["status"], "active");
    assert_eq!(patched.body["since"], Value::Null);
    assert_eq!(patched.body["name"], "Café Ünïcode");
    assert_ne!(etag(&patched), etag(&got), "a changed row has a new ETag");
    let stored = db.row("C100").unwrap();
    assert_eq!(text(&stored[2]).as_deref(), Some("A"));
    assert_eq!(
        text(&stored[3]).as_deref(),
        Some("00000000"),
        "null is the old programs' sentinel"
    );
    assert_eq!(stored[4], None, "credit is NULL");
    let got = app.get_as("/v1/customers/C100", Some(&reader())).await;
    assert_eq!(
        got.body["status"], "active",
        "the cached item was invalidated"
    );

    // A generated key is read back in the same transaction and named in Location.
    let note = post(
        &app,
        "/v1/notes",
        &clerk(),
        json!({"customer_id": "C100", "body": "first"}),
    )
    .await;
    assert_eq!(note.status, 201, "{}", note.body);
    let id = note.body["id"].as_i64().expect("generated integer key");
    assert_eq!(note.headers["location"], format!("/v1/notes/{id}").as_str());
    let second = post(
        &app,
        "/v1/notes",
        &clerk(),
        json!({"customer_id": "C100", "body": "second"}),
    )
    .await;
    assert_eq!(second.body["id"].as_i64(), Some(id + 1));
    assert_eq!(second.body["body"], "second");

    let deleted = delete(&app, "/v1/customers/C100", &clerk(), Some(&etag(&got))).await;
    assert_eq!(deleted.status, 204);
    assert!(db.row("C100").is_none());
    assert_eq!(
        app.get_as("/v1/customers/C100", Some(&reader()))
            .await
            .status,
        404
    );
    let again = delete(&app, "/v1/customers/C100", &clerk(), None).await;
    again.problem(404);
}

async fn every_validation_failure_is_reported_at_its_pointer(kind: Kind) {
    let db = Legacy::new(kind);
    let app = Portico::spawn(&db.config("", "")).await;
    let before = db.count("CUSTOMERS");
    let answer = post(
        &app,
        "/v1/customers",
        &clerk(),
        json!({
            "id": "C1234567",
            "name": "x".repeat(31),
            "status": "gone",
            "since": "2024-02-30",
            "credit": "12345678.5",
            "nickname": "?",
            "region": 7,
        }),
    )
    .await;
    let problem = answer.problem(422);
    assert_eq!(problem["type"], "/problems/validation");
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().into(),
                e["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    let at = |pointer: &str, words: &str| {
        assert!(
            errors
                .iter()
                .any(|(p, d)| p == pointer && d.contains(words)),
            "{pointer} `{words}` in {errors:?}"
        )
    };
    at("/id", "longer than the column's 6 characters");
    at("/name", "longer than the column's 30 characters");
    at("/status", "must be one of: active, on_hold");
    at("/since", "must be a date");
    at("/credit", "more than 7 digits before the decimal point");
    at("/nickname", "is not a field");
    at("/region", "must be a string");
    assert_eq!(errors.len(), 7, "{errors:?}");

    // Required fields, decimal places, wrong JSON types, read-only and masked-out fields.
    let answer = post(
        &app,
        "/v1/customers",
        &clerk(),
        json!({"credit": "1.234", "since": 20240101}),
    )
    .await;
    assert_errors(
        &answer,
        &[
            "/id",
            "/name",
            "/status",
            "/region",
            "is required",
            "more than 2 decimal places",
            "must be a date string",
        ],
    );
    let answer = post(
        &app,
        "/v1/notes",
        &clerk(),
        json!({"id": 5, "customer_id": "C001", "body": "x"}),
    )
    .await;
    assert!(answer.problem(422)["errors"]
        .to_string()
        .contains("is read-only"));
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &clerk(),
        None,
        json!({"id": "C999"}),
    )
    .await;
    assert!(answer.problem(422)["errors"]
        .to_string()
        .contains("part of the key"));
    let answer = patch(&app, "/v1/customers/C001", &clerk(), None, json!([1, 2])).await;
    assert_eq!(answer.problem(422)["errors"][0]["pointer"], "");

    // Not JSON, the wrong media type, too large.
    let answer = post_raw(&app, "application/json", b"{\"id\": ".to_vec()).await;
    assert_eq!(answer.problem(400)["type"], "/problems/malformed-body");
    let answer = post_raw(&app, "text/plain", b"id=C9".to_vec()).await;
    answer.problem(415);
    let big = json!({"id": "C9", "name": "x".repeat(70_000)})
        .to_string()
        .into_bytes();
    let answer = post_raw(&app, "application/json", big).await;
    answer.problem(413);
    assert_eq!(db.count("CUSTOMERS"), before, "nothing was written");
}

async fn concurrent_writers_with_one_etag_one_wins(kind: Kind) {
    let db = Legacy::new(kind);
    let app = Portico::spawn(&db.config("require_if_match = true", "")).await;
    let got = app.get_as("/v1/customers/C001", Some(&reader())).await;
    let tag = etag(&got);
    let clerk = clerk();
    // Without If-Match: 428.
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &clerk,
        None,
        json!({"name": "x"}),
    )
    .await;
    answer.problem(428);
    // Eight writers read the same version; the check in the UPDATE itself lets one win.
    let writers = (0..8).map(|i| {
        let body = json!({ "name": format!("Writer {i}") });
        let (app, clerk, tag) = (&app, &clerk, &tag);
        async move { patch(app, "/v1/customers/C001", clerk, Some(tag), body).await }
    });
    let answers = futures_util::future::join_all(writers).await;
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(answer.problem(412)["type"], "/problems/precondition-failed");
    }
    let winner = winners[0];
    let stored = db.row("C001").unwrap();
    assert_eq!(
        Some(winner.body["name"].as_str().unwrap().to_string()),
        text(&stored[1])
    );
    // The stale tag keeps failing; the fresh one works; a stale DELETE leaves the row.
    let stale = patch(
        &app,
        "/v1/customers/C001",
        &clerk,
        Some(&tag),
        json!({"name": "late"}),
    )
    .await;
    assert_eq!(stale.problem(412)["type"], "/problems/precondition-failed");
    let delete = delete(&app, "/v1/customers/C001", &clerk, Some(&tag)).await;
    delete.problem(412);
    assert!(db.row("C001").is_some());
    let fresh = patch(
        &app,
        "/v1/customers/C001",
        &clerk,
        Some(&etag(winner)),
        json!({"name": "Fresh"}),
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    // The same race on a decimal only (SQLite keeps it as a double): one wins too.
    let got = app.get_as("/v1/customers/C001", Some(&reader())).await;
    let decimal_tag = etag(&got);
    let writers = (0..8).map(|i| {
        let body = json!({ "credit": format!("{}.25", 100 + i) });
        let (app, clerk, tag) = (&app, &clerk, &decimal_tag);
        async move { patch(app, "/v1/customers/C001", clerk, Some(tag), body).await }
    });
    let answers = futures_util::future::join_all(writers).await;
    let won = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(won, 1, "exactly one writer of a decimal wins");
}

async fn an_idempotent_post_retried_concurrently_writes_one_row(kind: Kind) {
    let db = Legacy::new(kind);
    let app = Portico::spawn(&db.config("", "")).await;
    let body = json!({"customer_id": "C001", "body": "exactly once"});
    let headers = [("idempotency-key", "order-7f3a")];
    let clerk = clerk();
    let send = || {
        app.send(
            Method::POST,
            "/v1/notes",
            Some(&clerk),
            &headers,
            Some(Ok(body.clone())),
        )
    };
    let answers = futures_util::future::join_all((0..10).map(|_| send())).await;
    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert!(!created.is_empty());
    for answer in &answers {
        assert!(
            matches!(answer.status.as_u16(), 201 | 409),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(db.count("NOTES"), 1, "one row whatever the retries");
    // Once the first finished, every retry gets its response, marked as replayed.
    let replay = send().await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, created[0].body);
    assert_eq!(replay.headers["location"], created[0].headers["location"]);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let other = app
        .send(
            Method::POST,
            "/v1/notes",
            Some(&clerk),
            &headers,
            Some(Ok(json!({"customer_id": "C001", "body": "another"}))),
        )
        .await;
    assert_eq!(
        other.problem(422)["type"],
        "/problems/idempotency-key-reused"
    );
    assert_eq!(db.count("NOTES"), 1);
    // Keys live in the state store: a new Portico on the same store still knows this one.
    drop(app);
    let app = Portico::spawn(&db.config("", "")).await;
    let replay = app
        .send(
            Method::POST,
            "/v1/notes",
            Some(&clerk),
            &headers,
            Some(Ok(body.clone())),
        )
        .await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(db.count("NOTES"), 1);
}

async fn constraint_violations_are_conflicts_that_change_nothing(kind: Kind) {
    let db = Legacy::new(kind);
    let app = Portico::spawn(&db.config("", "")).await;
    let before = db.row("C001");
    let duplicate = post(
        &app,
        "/v1/customers",
        &clerk(),
        json!({"id": "C001", "name": "Dup", "status": "active", "region": "EAST"}),
    )
    .await;
    let problem = duplicate.problem(409);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("unique"), "{detail}");
    if kind == Kind::Sqlite {
        // SQLite names the column; the problem names the field.
        assert!(detail.contains("`id`"), "{detail}");
    }
    for leak in ["INSERT", "CUSTOMERS\"", "SQL", "[ma-", "ERROR:"] {
        assert!(!detail.contains(leak), "{detail}");
    }
    let negative = patch(
        &app,
        "/v1/customers/C001",
        &clerk(),
        None,
        json!({"credit": "-5.00"}),
    )
    .await;
    let detail = negative.problem(409)["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("check") && detail.contains("credit_positive"),
        "{detail}"
    );
    assert_eq!(db.row("C001"), before, "the row is unchanged");
    assert_eq!(db.count("CUSTOMERS"), 2);
}

async fn writes_need_the_method_the_scope_and_the_row_policy(kind: Kind) {
    let db = Legacy::new(kind);
    let app = Portico::spawn(&db.config("", "")).await;
    let before = db.count("CUSTOMERS");
    // A method the resource does not take: 405 with Allow.
    let answer = patch(&app, "/v1/notes/1", &clerk(), None, json!({"body": "x"})).await;
    answer.problem(405);
    assert_eq!(answer.headers["allow"], "GET, HEAD");
    let answer = app
        .send(Method::PUT, "/v1/customers/C001", Some(&clerk()), &[], None)
        .await;
    assert_eq!(answer.headers["allow"], "GET, HEAD, PATCH, DELETE");
    // No token: 401; a read-only token: 403.
    let body = json!({"id": "C300", "name": "N", "status": "active", "region": "EAST"});
    let answer = app
        .send(
            Method::POST,
            "/v1/customers",
            None,
            &[],
            Some(Ok(body.clone())),
        )
        .await;
    answer.problem(401);
    let answer = post(&app, "/v1/customers", &reader(), body.clone()).await;
    assert_eq!(answer.problem(403)["type"], "/problems/insufficient-scope");
    // A portal limited to EAST writes EAST rows only, and cannot touch WEST ones.
    let answer = post(
        &app,
        "/v1/customers",
        &east_portal(),
        json!({"id": "C301", "name": "W", "status": "active", "region": "WEST"}),
    )
    .await;
    answer.problem(403);
    assert!(db.row("C301").is_none(), "rolled back");
    let answer = patch(
        &app,
        "/v1/customers/C002",
        &east_portal(),
        None,
        json!({"name": "mine now"}),
    )
    .await;
    answer.problem(404);
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &east_portal(),
        None,
        json!({"region": "WEST"}),
    )
    .await;
    answer.problem(403);
    assert_eq!(text(&db.row("C001").unwrap()[5]).as_deref(), Some("EAST"));
    let answer = delete(&app, "/v1/customers/C002", &east_portal(), None).await;
    answer.problem(404);
    let answer = post(&app, "/v1/customers", &east_portal(), body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(db.count("CUSTOMERS"), before + 1);
    assert_eq!(
        text(&db.row("C300").unwrap()[7]).as_deref(),
        Some("east-desk"),
        "UPD_USER records the subject"
    );
}

/// The security review's write findings: text with U+0000, blank keys, members named twice,
/// idempotency keys shared across tenants, fields a portal may not set. Each is a precise 4xx
/// and nothing is stored.
async fn hostile_writes_are_refused_and_store_nothing(kind: Kind) {
    let db = Legacy::new(kind);
    // Only the credit desk sets credit limits; the portal corrects names and regions.
    let config = db.config("", "").replacen(
        r#"column_type = "decimal(9,2)", scale = 2 }"#,
        r#"column_type = "decimal(9,2)", scale = 2, write_scope = "customers:credit" }"#,
        1,
    );
    let app = Portico::spawn(&config).await;
    let before = db.row("C001");
    let count = db.count("CUSTOMERS");

    // U+0000: the database would keep it, drivers would cut the value there when reading.
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &clerk(),
        None,
        json!({"name": "Cut\u{0}x"}),
    )
    .await;
    assert_errors(&answer, &["/name", "U+0000"]);
    let answer = post(
        &app,
        "/v1/customers",
        &clerk(),
        json!({"id": "C400", "name": "abc\u{0}hidden", "status": "active", "region": "EAST"}),
    )
    .await;
    assert_errors(&answer, &["/name", "U+0000"]);
    // A NUL in a filter or a key is refused too, before the database sees it.
    let answer = app
        .get_as("/v1/customers?name=a%00b", Some(&reader()))
        .await;
    assert_eq!(answer.problem(400)["parameter"], "name");

    // A blank key makes a row nobody can address; a blank required field is no value either.
    for blank in ["", "   "] {
        let answer = post(
            &app,
            "/v1/customers",
            &clerk(),
            json!({"id": blank, "name": "Blank", "status": "active", "region": "EAST"}),
        )
        .await;
        assert_errors(&answer, &["/id", "cannot be empty"]);
        let answer = post(
            &app,
            "/v1/customers",
            &clerk(),
            json!({"id": "C404", "name": blank, "status": "active", "region": "EAST"}),
        )
        .await;
        assert_errors(&answer, &["/name", "cannot be empty"]);
    }
    // A write answers with the row, so it needs the read scope too: an empty PATCH by a
    // token that may write but not read was a read.
    let writer = hs_token("writer", json!({"scope": "customers:write customers:all"}));
    let answer = patch(&app, "/v1/customers/C001", &writer, None, json!({})).await;
    assert_eq!(answer.problem(403)["type"], "/problems/insufficient-scope");
    assert!(!answer.body.to_string().contains("Acme"), "{}", answer.body);
    // A write takes no query parameters.
    let answer = patch(&app, "/v1/customers/C001?x=1", &clerk(), None, json!({})).await;
    assert_eq!(answer.problem(400)["parameter"], "x");

    // A member named twice: which copy counts would be a guess.
    let answer = post_raw(
        &app,
        "application/json",
        br#"{"id": "C401", "id": "C402", "name": "Twice", "status": "active", "region": "EAST"}"#
            .to_vec(),
    )
    .await;
    let problem = answer.problem(400);
    assert_eq!(problem["type"], "/problems/malformed-body");
    assert!(
        problem["detail"].as_str().unwrap().contains("`id`"),
        "{problem}"
    );

    // Per-field write permission: the portal may rename its rows, not raise their credit.
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &east_portal(),
        None,
        json!({"credit": "999999.00"}),
    )
    .await;
    assert_errors(&answer, &["/credit", "customers:credit"]);
    let answer = post(
        &app,
        "/v1/customers",
        &east_portal(),
        json!({"id": "C403", "name": "N", "status": "active", "region": "EAST", "credit": "1.00"}),
    )
    .await;
    assert_errors(&answer, &["/credit", "customers:credit"]);
    assert_eq!(db.row("C001"), before, "nothing of C001 changed");
    assert_eq!(db.count("CUSTOMERS"), count, "no row was created");
    let renamed = patch(
        &app,
        "/v1/customers/C001",
        &east_portal(),
        None,
        json!({"name": "Acme Tools Ltd"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let credit_desk = hs_token(
        "credits",
        json!({"scope": "customers:read customers:write customers:all customers:credit"}),
    );
    let raised = patch(
        &app,
        "/v1/customers/C001",
        &credit_desk,
        None,
        json!({"credit": "2000.00"}),
    )
    .await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.body["credit"], "2000.00");

    // Idempotency keys belong to their caller: one service account (`sub`) serving two
    // regions never replays one region's row to the other.
    let desk = |region: &str| {
        hs_token(
            "desk",
            json!({"scope": "customers:read customers:write", "region": region}),
        )
    };
    let body = json!({"id": "C410", "name": "East Only", "status": "active", "region": "EAST"});
    let key = [("idempotency-key", "tenant-probe-1")];
    let first = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&desk("EAST")),
            &key,
            Some(Ok(body.clone())),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    // The same caller's retry is replayed, however the path is spelled.
    // (Sent past the contract recorder: the spelling is no documented path.)
    let retry = reqwest::Client::new()
        .post(format!("{}/v1//customers", app.base))
        .bearer_auth(desk("EAST"))
        .header("idempotency-key", key[0].1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let probe = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&desk("WEST")),
            &key,
            Some(Ok(body.clone())),
        )
        .await;
    assert_ne!(probe.status, 201, "{}", probe.body);
    assert!(probe.headers.get("idempotent-replayed").is_none());
    assert!(
        !probe.body.to_string().contains("East Only"),
        "{}",
        probe.body
    );
    // A token without `sub` has no key of its own: it cannot use one.
    let anonymous_desk = crate::auth::sign_claims(json!({
        "scope": "customers:read customers:write customers:all",
    }));
    let answer = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&anonymous_desk),
            &key,
            Some(Ok(body)),
        )
        .await;
    let problem = answer.problem(400);
    assert_eq!(problem["parameter"], "Idempotency-Key");
    assert!(
        problem["detail"].as_str().unwrap().contains("sub"),
        "{problem}"
    );
    assert_eq!(
        db.count("CUSTOMERS"),
        count + 1,
        "only the first create wrote"
    );
}

/// A retry is the same request whatever order its client wrote the members in, at any depth
/// (here a `money` object): it gets the first answer replayed, not a 422. A body that differs
/// in a value is still another request.
#[tokio::test]
async fn an_idempotent_retry_with_members_reordered_replays_the_first_answer() {
    let db = Legacy::new(Kind::Sqlite);
    let config = db.config("", "").replace(
        r#"credit = { column = "CREDIT", type = "decimal", column_type = "decimal(9,2)", scale = 2 }"#,
        r#"credit = { column = "CREDIT", type = "money", currency = "USD", column_type = "decimal(9,2)", scale = 2 }"#,
    );
    assert!(config.contains("type = \"money\""));
    let app = Portico::spawn(&config).await;
    let clerk = clerk();
    let send = |body: &str| {
        let bytes = body.as_bytes().to_vec();
        app.send(
            Method::POST,
            "/v1/customers",
            Some(&clerk),
            &[("idempotency-key", "reordered-1")],
            Some(Err(("application/json", bytes))),
        )
    };
    let first = send(
        r#"{"id": "C300", "name": "Order", "status": "active", "region": "EAST",
            "credit": {"value": "12.50", "currency": "USD"}}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let retry = send(
        r#"{"credit": {"currency": "USD", "value": "12.50"}, "region": "EAST",
            "status": "active", "name": "Order", "id": "C300"}"#,
    )
    .await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["location"], first.headers["location"]);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let other = send(
        r#"{"credit": {"currency": "USD", "value": "13.50"}, "region": "EAST",
            "status": "active", "name": "Order", "id": "C300"}"#,
    )
    .await;
    assert_eq!(
        other.problem(422)["type"],
        "/problems/idempotency-key-reused"
    );
    assert_eq!(db.count("CUSTOMERS"), 3, "one row written");
}

/// `require_if_match` means the ETag as last read: `If-Match: *` (any version) is a 428 too.
#[tokio::test]
async fn if_match_star_does_not_satisfy_require_if_match() {
    let db = Legacy::new(Kind::Sqlite);
    let app = Portico::spawn(&db.config("require_if_match = true", "")).await;
    let before = db.row("C001");
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &clerk(),
        Some("*"),
        json!({"name": "X"}),
    )
    .await;
    answer.problem(428);
    let answer = delete(&app, "/v1/customers/C001", &clerk(), Some("*")).await;
    answer.problem(428);
    for listed in ["*, *", "*, \"x\"", "\"x\", *"] {
        let answer = delete(&app, "/v1/customers/C001", &clerk(), Some(listed)).await;
        answer.problem(428);
    }
    assert_eq!(db.row("C001"), before);
    let got = app.get_as("/v1/customers/C001", Some(&reader())).await;
    let answer = patch(
        &app,
        "/v1/customers/C001",
        &clerk(),
        Some(&etag(&got)),
        json!({"name": "X"}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// A text value the database holds with U+0000 in it (written by an old program) is served
/// whole, never cut at the NUL. SQLite's own text functions (and its ODBC driver) end text at
/// a NUL, and PostgreSQL cannot store one, so MariaDB is the database to prove it on.
#[tokio::test]
async fn a_stored_nul_is_served_whole_on_mariadb() {
    let db = Legacy::new(Kind::MariaDb);
    execute(
        &db.connection_string,
        "UPDATE CUSTOMERS SET NAME = CONCAT('Cut', CHAR(0), 'x') WHERE CUST_NO = 'C001'",
    );
    let app = Portico::spawn(&db.config("", "")).await;
    let answer = app.get_as("/v1/customers/C001", Some(&reader())).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["name"], "Cut\u{0}x");
}

/// A body sent a byte at a time does not hold a worker: past `body_timeout` the answer is a
/// 408 and nothing is written.
#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_with_408() {
    use std::io::{Read, Write};
    let db = Legacy::new(Kind::Sqlite);
    let config = db
        .config("", "")
        .replacen("workers = 2", "workers = 2\nbody_timeout = \"1s\"", 1);
    let app = Portico::spawn(&config).await;
    let body = br#"{"id": "C500", "name": "Slow", "status": "active", "region": "EAST"}"#;
    let address = app.base.trim_start_matches("http://").to_string();
    let token = clerk();
    let started = std::time::Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(250)))
            .unwrap();
        let mut answer = Vec::new();
        for byte in body {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    answer.extend_from_slice(&chunk[..n]);
                    break;
                }
                _ => {}
            }
            if started.elapsed() > std::time::Duration::from_secs(8) {
                break;
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(db.row("C500").is_none());
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
    create_update_delete_round_trip_in_the_legacy_shape,
    every_validation_failure_is_reported_at_its_pointer,
    concurrent_writers_with_one_etag_one_wins,
    an_idempotent_post_retried_concurrently_writes_one_row,
    constraint_violations_are_conflicts_that_change_nothing,
    writes_need_the_method_the_scope_and_the_row_policy,
    hostile_writes_are_refused_and_store_nothing,
);

const PROCEDURES: &str = r#"
[versions.v1.procedures.customer_summary]
source = "legacy"
procedure = "customer_summary"
description = "Moves a customer's start date; answers its note count and name."
scope = "customers:write"
writes = true
invalidates = ["customers"]

[versions.v1.procedures.customer_summary.parameters]
customer_id = { type = "string", column_type = "char(6)", required = true }
since = { type = "date", format = "yyyymmdd", column_type = "char(8)" }
notes = { type = "integer", direction = "out" }
name = { type = "string", column_type = "varchar(30)", direction = "out" }

[versions.v1.procedures.customer_notes]
source = "legacy"
procedure = "customer_notes"
scope = "customers:read"

[versions.v1.procedures.customer_notes.parameters]
customer_id = { type = "string", column_type = "char(6)", required = true }

[versions.v1.procedures.customer_notes.result]
id = { column = "NOTE_ID", type = "integer" }
body = { column = "BODY", type = "string" }
"#;

/// The procedures in each database's own language: inputs, outputs, a write, a result set.
fn create_procedures(db: &Legacy) {
    let statements: Vec<&str> = match db.kind {
        Kind::MariaDb => vec![
            "CREATE PROCEDURE customer_summary(IN p_cust CHAR(6), IN p_since CHAR(8), \
             OUT p_notes INT, OUT p_name VARCHAR(30)) \
             BEGIN \
               UPDATE CUSTOMERS SET SINCE = p_since WHERE CUST_NO = p_cust; \
               SELECT COUNT(*) INTO p_notes FROM NOTES WHERE CUST_NO = p_cust; \
               SELECT NAME INTO p_name FROM CUSTOMERS WHERE CUST_NO = p_cust; \
               SELECT NOTE_ID, BODY FROM NOTES WHERE CUST_NO = p_cust ORDER BY NOTE_ID; \
             END",
            "CREATE PROCEDURE customer_notes(IN p_cust CHAR(6)) \
             SELECT NOTE_ID, BODY FROM NOTES WHERE CUST_NO = p_cust ORDER BY NOTE_ID",
        ],
        Kind::Postgres => vec![
            "CREATE FUNCTION customer_summary(p_cust CHAR(6), p_since CHAR(8), \
             OUT p_notes INT, OUT p_name VARCHAR) AS $$ \
             BEGIN \
               UPDATE \"CUSTOMERS\" SET \"SINCE\" = p_since WHERE \"CUST_NO\" = p_cust; \
               SELECT COUNT(*) INTO p_notes FROM \"NOTES\" WHERE \"CUST_NO\" = p_cust; \
               SELECT \"NAME\" INTO p_name FROM \"CUSTOMERS\" WHERE \"CUST_NO\" = p_cust; \
             END $$ LANGUAGE plpgsql",
            "CREATE FUNCTION customer_notes(p_cust CHAR(6)) \
             RETURNS TABLE (note_id INT, body VARCHAR) AS $$ \
             SELECT \"NOTE_ID\", \"BODY\" FROM \"NOTES\" WHERE \"CUST_NO\" = p_cust ORDER BY \"NOTE_ID\" \
             $$ LANGUAGE sql",
        ],
        _ => unreachable!("SQLite has no stored procedures"),
    };
    for sql in statements {
        execute(&db.connection_string, sql);
    }
}

async fn procedures_take_inputs_and_answer_outputs_and_rows(kind: Kind) {
    let db = Legacy::new(kind);
    create_procedures(&db);
    let app = Portico::spawn(&db.config("", PROCEDURES)).await;
    for body in ["first", "second"] {
        let note = post(
            &app,
            "/v1/notes",
            &clerk(),
            json!({"customer_id": "C001", "body": body}),
        )
        .await;
        assert_eq!(note.status, 201);
    }
    let cached = app.get_as("/v1/customers/C001", Some(&reader())).await;
    assert_eq!(cached.body["since"], "2019-03-01");

    let call = |path: &'static str, token: String, body: Value| {
        let app = &app;
        async move {
            app.send(Method::POST, path, Some(&token), &[], Some(Ok(body)))
                .await
        }
    };
    let summary = call(
        "/v1/procedures/customer_summary",
        clerk(),
        json!({"customer_id": "C001", "since": "2020-01-31"}),
    )
    .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert_eq!(
        summary.body["output"],
        json!({"notes": 2, "name": "Acme Tools"})
    );
    assert_eq!(
        text(&db.row("C001").unwrap()[3]).as_deref(),
        Some("20200131"),
        "the input went down as YYYYMMDD and the write committed"
    );
    let fresh = app.get_as("/v1/customers/C001", Some(&reader())).await;
    assert_eq!(
        fresh.body["since"], "2020-01-31",
        "the call invalidated the cached row"
    );

    let notes = call(
        "/v1/procedures/customer_notes",
        reader(),
        json!({"customer_id": "C001"}),
    )
    .await;
    assert_eq!(notes.status, 200, "{}", notes.body);
    assert_eq!(
        notes.body["rows"],
        json!([{"id": 1, "body": "first"}, {"id": 2, "body": "second"}])
    );

    // Validation, scope, method.
    let bad = call(
        "/v1/procedures/customer_summary",
        clerk(),
        json!({"since": "yesterday", "notes": 3, "extra": 1}),
    )
    .await;
    assert_errors(
        &bad,
        &[
            "/customer_id",
            "is required",
            "/since",
            "/notes",
            "is an output parameter",
            "/extra",
            "not a parameter",
        ],
    );
    let denied = call(
        "/v1/procedures/customer_summary",
        reader(),
        json!({"customer_id": "C001"}),
    )
    .await;
    denied.problem(403);
    let get = app
        .send(
            Method::GET,
            "/v1/procedures/customer_notes",
            Some(&reader()),
            &[],
            None,
        )
        .await;
    assert_eq!(get.problem(405)["status"], 405);
    assert_eq!(get.headers["allow"], "POST");
    let missing = call("/v1/procedures/nope", clerk(), json!({})).await;
    missing.problem(404);
}

mod procedures {
    #[tokio::test]
    async fn mariadb() {
        super::procedures_take_inputs_and_answer_outputs_and_rows(super::Kind::MariaDb).await
    }
    #[tokio::test]
    async fn postgres() {
        super::procedures_take_inputs_and_answer_outputs_and_rows(super::Kind::Postgres).await
    }
}

/// A write that outlives its time budget is rolled back: PostgreSQL cancels the statement at
/// `query_timeout`; MariaDB's driver has no statement timeout, so the call runs on after the
/// client got its 503, and must then roll back instead of committing.
async fn a_write_past_its_timeout_rolls_back(kind: Kind) {
    let db = Legacy::new(kind);
    let sql = match kind {
        Kind::Postgres => {
            "CREATE FUNCTION slow_rename(p_cust CHAR(6)) RETURNS INT AS $$ \
             BEGIN \
               UPDATE \"CUSTOMERS\" SET \"NAME\" = 'Renamed' WHERE \"CUST_NO\" = p_cust; \
               PERFORM pg_sleep(4); \
               RETURN 1; \
             END $$ LANGUAGE plpgsql"
        }
        _ => {
            "CREATE PROCEDURE slow_rename(IN p_cust CHAR(6)) \
             BEGIN \
               UPDATE CUSTOMERS SET NAME = 'Renamed' WHERE CUST_NO = p_cust; \
               DO SLEEP(4); \
             END"
        }
    };
    execute(&db.connection_string, sql);
    let procedure = r#"
[versions.v1.procedures.slow_rename]
source = "legacy"
procedure = "slow_rename"
scope = "customers:write"
writes = true
parameters = { customer_id = { type = "string", column_type = "char(6)", required = true } }
"#;
    let config = db.config("", procedure).replacen(
        "[sources.legacy]",
        "[sources.legacy]\nquery_timeout = \"1s\"\nlogin_timeout = \"1s\"",
        1,
    );
    let app = Portico::spawn(&config).await;
    let answer = app
        .send(
            Method::POST,
            "/v1/procedures/slow_rename",
            Some(&clerk()),
            &[],
            Some(Ok(json!({"customer_id": "C001"}))),
        )
        .await;
    assert_eq!(answer.problem(503)["type"], "/problems/source-timeout");
    // Past the end of the slow call, whoever ended it.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        text(&db.row("C001").unwrap()[1]).as_deref(),
        Some("Acme Tools"),
        "the UPDATE before the timeout was rolled back"
    );
}

mod timeouts {
    #[tokio::test]
    async fn postgres() {
        super::a_write_past_its_timeout_rolls_back(super::Kind::Postgres).await
    }
    #[tokio::test]
    async fn mariadb() {
        super::a_write_past_its_timeout_rolls_back(super::Kind::MariaDb).await
    }
}
