//! `nin`, the filter that excludes several values at once (`?id[nin]=1,2`: neither 1 nor 2),
//! over the trap schema on SQLite, PostgreSQL and MariaDB: its list is written as `in`'s, a
//! null matches it no more than `ne`, its values count toward `max_bound_parameters` (and a
//! `prefix` counts as the parameters its dialect binds), and each repeated operator is refused
//! with advice of its own (a repeated `ne` points to `nin`).

use serde_json::Value;

use crate::fixture::Kind;
use crate::harness::trap_database;
use crate::harness::{execute, Portico};

fn config(kind: Kind, connection_string: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2
max_bound_parameters = 3

[sources.traps]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{connection_string}"

[versions.v1.resources.orders]
source = "traps"
table = "Orders"
key = ["id"]
anonymous = true
max_limit = 1000
[versions.v1.resources.orders.fields]
id = {{ column = "OrderID", type = "integer" }}
customer_id = {{ column = "CustomerID", type = "string" }}
ship_postal_code = {{ column = "ShipPostalCode", type = "string" }}

[versions.v1.resources.customers]
source = "traps"
table = "Customers"
key = ["id"]
anonymous = true
max_limit = 1000
[versions.v1.resources.customers.fields]
id = {{ column = "CustomerID", type = "string" }}
company_name = {{ column = "Company Name", type = "string" }}
"#,
        dialect = kind.dialect(),
    )
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

async fn nin_excludes_several_values(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    let (table, company, id) = match kind {
        Kind::MariaDb => ("Customers", "`Company Name`", "CustomerID"),
        Kind::Postgres => ("\"Customers\"", "\"Company Name\"", "\"CustomerID\""),
        _ => ("Customers", "\"Company Name\"", "CustomerID"),
    };
    execute(
        &connection_string,
        &format!("UPDATE {table} SET {company} = 'Smith, Jones & Co' WHERE {id} = 'C002'"),
    );
    let app = Portico::spawn(&config(kind, &connection_string)).await;

    let neither = app.get("/v1/orders?id[nin]=10248,10249&id[lt]=10252").await;
    assert_eq!(neither.status, 200, "{}", neither.body);
    assert_eq!(ids(&neither.body), ["10250", "10251"]);

    // The list is written as `in`'s: `\,` is a comma inside a value.
    let listed = app
        .all_pages(
            "/v1/customers?company_name[nin]=Smith%5C%2C%20Jones%20%26%20Co,Company%201&limit=1000",
        )
        .await;
    let listed: Vec<&str> = listed.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(listed.len(), 89, "{listed:?}");
    assert!(!listed.contains(&"C001") && !listed.contains(&"C002"));

    // A null postal code (every tenth order) matches neither `ne` nor `nin`.
    let count = |path: String| {
        let app = &app;
        async move { app.all_pages(&path).await.len() }
    };
    let ne = count("/v1/orders?ship_postal_code[ne]=10037&limit=1000".into()).await;
    let nin = count("/v1/orders?ship_postal_code[nin]=10037&limit=1000".into()).await;
    assert_eq!((ne, nin), (746, 746));

    // Bound parameters: each `nin` value counts, and a `prefix` as its dialect binds it.
    let four = app.get("/v1/orders?id[nin]=1,2,3&customer_id=C001").await;
    let problem = four.problem(400);
    assert_eq!(problem["parameter"], "customer_id", "{problem}");
    let prefixed = app
        .get("/v1/customers?company_name[prefix]=Company&id[ne]=C001&limit=1000")
        .await;
    assert_eq!(prefixed.status, 200, "{}", prefixed.body);
    if kind == Kind::MariaDb {
        // `LIKE ?` under the collation, then `LIKE ?` exactly: two parameters, four in all.
        let over = app
            .get("/v1/customers?company_name[prefix]=Company&id[nin]=C001,C003")
            .await;
        assert_eq!(over.problem(400)["parameter"], "id[nin]");
    } else {
        let within = app
            .get("/v1/customers?company_name[prefix]=Company&id[nin]=C001,C003&limit=1000")
            .await;
        assert_eq!(within.status, 200, "{}", within.body);
        assert_eq!(ids(&within.body).len(), 88);
    }
}

/// Each operator given twice on one field is refused with what to send instead.
async fn a_repeated_operator_says_what_to_send_instead(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    let app = Portico::spawn(&config(kind, &connection_string)).await;
    for (query, parameter, advice) in [
        (
            "id[ne]=1&id[ne]=2",
            "id[ne]",
            "send them together with `nin`",
        ),
        ("id[gt]=1&id[gt]=2", "id[gt]", "one bound per operator"),
        ("id[lte]=1&id[lte]=2", "id[lte]", "one bound per operator"),
        (
            "id[in]=1&id[in]=2",
            "id[in]",
            "send every value in one list",
        ),
        (
            "id[nin]=1&id[nin]=2",
            "id[nin]",
            "send every value in one list",
        ),
        ("id=1&id[eq]=2", "id[eq]", "give it once"),
        (
            "customer_id[prefix]=C&customer_id[prefix]=C0",
            "customer_id[prefix]",
            "give it once",
        ),
        ("id[null]=true&id[null]=false", "id[null]", "give it once"),
    ] {
        let answer = app.get(&format!("/v1/orders?{query}")).await;
        let problem = answer.problem(400);
        assert_eq!(problem["parameter"], parameter, "{query}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("is given more than once") && detail.contains(advice),
            "{query}: {detail}"
        );
        assert!(!detail.contains("together with `in`"), "{query}: {detail}");
    }
    let unknown = app.get("/v1/orders?id[out]=1").await;
    let detail = unknown.problem(400)["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("in, nin, prefix"), "{detail}");
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
    nin_excludes_several_values,
    a_repeated_operator_says_what_to_send_instead,
);
