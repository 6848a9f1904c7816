//! Filters that say what they mean, over the trap schema (`support/traps`) on SQLite,
//! PostgreSQL and MariaDB: two fields over one column each decode with their own type.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::fixture::Kind;
use crate::harness::{fresh_database, Portico};
use crate::idp::{AUDIENCE, ISSUER};

/// The trap schema loaded into a fresh database of `kind`; its connection string.
fn traps(kind: Kind, dir: &std::path::Path) -> String {
    let file = match kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mariadb",
        _ => "sqlite",
    };
    let path = format!(
        "{}/tests/api/support/traps/{file}.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    let script = std::fs::read_to_string(&path).unwrap();
    let connection_string = fresh_database(kind, dir);
    let text: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        execute(&connection_string, statement);
    }
    connection_string
}

/// A hand-written configuration over the trap schema: `Orders.OrderDate` (text holding
/// `1994-08-04 15:30:00`) read by three fields: a date, and two date-times, one reading the
/// column as the text it is (which binds cursors and filters as text on every database).
fn config(kind: Kind, connection_string: &str, dir: &std::path::Path) -> String {
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

[sources.traps]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{connection_string}"

[versions.v1.resources.orders]
source = "traps"
table = "Orders"
key = ["id"]
anonymous = true
write_scope = "orders:write"
writes = ["update"]
max_limit = 1000

[versions.v1.resources.orders.fields]
id = {{ column = "OrderID", type = "integer" }}
customer_id = {{ column = "CustomerID", type = "string" }}
order_date = {{ column = "OrderDate", type = "date" }}
order_time = {{ column = "OrderDate", type = "datetime", column_type = "varchar(19)" }}
ordered_at = {{ column = "OrderDate", type = "datetime" }}
ship_name = {{ column = "Ship Name", type = "string" }}

[versions.v1.resources.customers]
source = "traps"
table = "Customers"
key = ["id"]
anonymous = true
max_limit = 1000

[versions.v1.resources.customers.fields]
id = {{ column = "CustomerID", type = "string" }}
company_name = {{ column = "Company Name", type = "string" }}
street = {{ column = "Straße", type = "string" }}
"#,
        dialect = kind.dialect(),
        state = dir.join("state.sqlite3").display(),
    )
}

async fn serve(kind: Kind) -> (tempfile::TempDir, String, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = traps(kind, dir.path());
    let app = Portico::spawn(&config(kind, &connection_string, dir.path())).await;
    (dir, connection_string, app)
}

fn ids(answer: &Value) -> Vec<String> {
    answer["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {answer}"))
        .iter()
        .map(|row| match &row["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// `order_date` (date) declared before `order_time` and `ordered_at` (datetime), all over
/// `OrderDate`: each decodes with its own type, on one row, on a page, sorted and paged, and a
/// write guarded by the row's ETag goes through.
async fn two_fields_over_one_column_decode_with_their_own_types(kind: Kind) {
    let (_dir, _cs, app) = serve(kind).await;
    let row = app.get("/v1/orders/10248").await;
    assert_eq!(row.status, 200, "{}", row.body);
    assert_eq!(row.body["order_date"], "1994-08-04", "{}", row.body);
    assert_eq!(
        row.body["order_time"], "1994-08-04T15:30:00",
        "{}",
        row.body
    );
    assert_eq!(
        row.body["ordered_at"], "1994-08-04T15:30:00",
        "{}",
        row.body
    );

    // Sorted and paged by the date-time: every row once, each time its own, in order.
    let rows = app
        .all_pages("/v1/orders?sort=-order_time&fields=order_date,order_time,ordered_at&limit=97")
        .await;
    assert_eq!(rows.len(), 830);
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["order_time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "not in order");
    // Order i is dated 1994-08-04 15:30 + i days + (i % 7) hours.
    let last = &rows[0];
    assert_eq!(last["id"], 11077);
    assert_eq!(last["order_time"], "1996-11-10T18:30:00");
    assert_eq!(last["order_date"], "1996-11-10");
    assert!(rows.iter().all(|r| r["order_time"] == r["ordered_at"]
        && r["order_time"].as_str().unwrap()[..10] == r["order_date"]));
    // Filtered on the date-time's text: its own value, not the date's.
    let at = app
        .get("/v1/orders?order_time[gte]=1996-11-10T18:30:00&fields=order_date")
        .await;
    assert_eq!(ids(&at.body), ["11077"], "{}", at.body);

    // The ETag covers both readings, and a write guarded by it compares the column with the
    // reading that keeps all of it (the date alone never equals the stored text).
    let (status, headers, _) = app.get_with("/v1/orders/10249", &[]).await;
    assert_eq!(status, 200);
    let etag = headers["etag"].to_str().unwrap().to_string();
    let token = hs_token("clerk", json!({"scope": "orders:write"}));
    let patched = app
        .send(
            Method::PATCH,
            "/v1/orders/10249",
            Some(&token),
            &[("if-match", &etag)],
            Some(Ok(json!({"ship_name": "Renamed"}))),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["ship_name"], "Renamed");
    assert_eq!(patched.body["order_time"], "1994-08-05T16:30:00");
    let stale = app
        .send(
            Method::PATCH,
            "/v1/orders/10249",
            Some(&token),
            &[("if-match", &etag)],
            Some(Ok(json!({"ship_name": "Again"}))),
        )
        .await;
    stale.problem(412);
}

macro_rules! on_every_database {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            use super::*;
            #[tokio::test]
            async fn sqlite() { $test(Kind::Sqlite).await }
            #[tokio::test]
            async fn postgres() { $test(Kind::Postgres).await }
            #[tokio::test]
            async fn mariadb() { $test(Kind::MariaDb).await }
        })*
    };
}

on_every_database!(two_fields_over_one_column_decode_with_their_own_types,);
