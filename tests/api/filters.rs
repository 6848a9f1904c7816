//! Filters that say what they mean, over the trap schema (`support/traps`) on SQLite,
//! PostgreSQL and MariaDB: two fields over one column each decode with their own type, `in`
//! values carry escaped commas, `prefix` counts case on every database, and a filter repeated
//! on one field and operator is refused like a repeated `limit`.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::fixture::Kind;
use crate::harness::{execute, trap_database, Portico};
use crate::idp::{AUDIENCE, ISSUER};

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
    let connection_string = trap_database(kind, dir.path());
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

/// `\,` is a comma inside an `in` value and `\\` a backslash; `%2C` still separates values
/// (it is decoded before the list is split); any other backslash is a 400 naming the filter.
async fn in_values_carry_escaped_commas(kind: Kind) {
    let (_dir, connection_string, app) = serve(kind).await;
    let (table, company, id, backslash) = match kind {
        Kind::MariaDb => ("Customers", "`Company Name`", "CustomerID", "\\\\"),
        Kind::Postgres => ("\"Customers\"", "\"Company Name\"", "\"CustomerID\"", "\\"),
        _ => ("Customers", "\"Company Name\"", "CustomerID", "\\"),
    };
    let rename = |id_value: &str, name: &str| {
        execute(
            &connection_string,
            &format!("UPDATE {table} SET {company} = '{name}' WHERE {id} = '{id_value}'"),
        )
    };
    rename("C002", "Smith, Jones & Co");
    rename("C003", &format!("Back{backslash}slash"));
    let listed = app
        .get("/v1/customers?company_name[in]=Smith%5C%2C%20Jones%20%26%20Co,Company%201")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(ids(&listed.body), ["C001", "C002"]);
    let listed = app
        .get("/v1/customers?company_name[in]=Back%5C%5Cslash%2CCompany%204")
        .await;
    assert_eq!(ids(&listed.body), ["C003", "C004"], "{}", listed.body);
    let bad = app.get("/v1/customers?company_name[in]=a%5Cb").await;
    let problem = bad.problem(400);
    assert_eq!(problem["parameter"], "company_name[in]");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("backslash before `b`"),
        "{problem}"
    );
}

/// `prefix` matches these exact characters on every database: case counts (SQLite's `LIKE`
/// and MariaDB's default collation ignore it), `ß` is not `ss`, and `_`, `%`, `*` are
/// characters, not wildcards.
async fn prefix_counts_case_on_every_database(kind: Kind) {
    let (_dir, _cs, app) = serve(kind).await;
    let count = |path: &'static str| {
        let app = &app;
        async move {
            let answer = app.get(path).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            ids(&answer.body).len()
        }
    };
    // Company 1, Company 10 … Company 19.
    assert_eq!(
        count("/v1/customers?company_name[prefix]=Company%201").await,
        11
    );
    assert_eq!(count("/v1/customers?company_name[prefix]=company").await, 0);
    assert_eq!(
        count("/v1/customers?company_name[prefix]=COMPANY%201").await,
        0
    );
    assert_eq!(
        count("/v1/customers?street[prefix]=Hauptstra%C3%9Fe%202").await,
        11
    );
    assert_eq!(
        count("/v1/customers?street[prefix]=HAUPTSTRA%C3%9FE").await,
        0
    );
    assert_eq!(count("/v1/customers?street[prefix]=Hauptstrasse").await, 0);
    assert_eq!(
        count("/v1/customers?company_name[prefix]=Company_1").await,
        0
    );
    assert_eq!(
        count("/v1/customers?company_name[prefix]=Company%25").await,
        0
    );
    assert_eq!(count("/v1/customers?company_name[prefix]=Comp*").await, 0);
    assert_eq!(
        count("/v1/customers?company_name[prefix]=Company%209").await,
        3
    );
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

on_every_database!(
    two_fields_over_one_column_decode_with_their_own_types,
    in_values_carry_escaped_commas,
    prefix_counts_case_on_every_database,
);

/// A filter given twice on one field and operator is a 400 naming it, as a repeated `limit`
/// is (before, the two were silently ANDed); a range of two operators stays allowed.
#[tokio::test]
async fn a_filter_repeated_on_one_field_and_operator_is_refused() {
    let (_dir, _cs, app) = serve(Kind::Sqlite).await;
    let twice = app.get("/v1/orders?id[gt]=10248&id[gt]=10300").await;
    let problem = twice.problem(400);
    assert_eq!(problem["parameter"], "id[gt]");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("more than once"),
        "{problem}"
    );
    // `field=` is `field[eq]=`.
    let twice = app
        .get("/v1/orders?customer_id=C001&customer_id[eq]=C002")
        .await;
    assert_eq!(twice.problem(400)["parameter"], "customer_id[eq]");
    let twice = app
        .get("/v1/orders?customer_id[in]=C001&customer_id[in]=C002")
        .await;
    assert_eq!(twice.problem(400)["parameter"], "customer_id[in]");
    // Different operators on one field: a range.
    let range = app
        .get("/v1/orders?id[gte]=10248&id[lt]=10251&id[ne]=10249")
        .await;
    assert_eq!(range.status, 200, "{}", range.body);
    assert_eq!(ids(&range.body), ["10248", "10250"]);
    // The other parameters, as before.
    for (query, parameter) in [
        ("limit=1&limit=2", "limit"),
        ("sort=id&sort=-id", "sort"),
        ("fields=id&fields=ship_name", "fields"),
        ("cursor=a&cursor=b", "cursor"),
    ] {
        let answer = app.get(&format!("/v1/orders?{query}")).await;
        assert_eq!(answer.problem(400)["parameter"], parameter, "{query}");
    }
}
