//! Binary float columns served right: over the trap schema (`support/traps`: `Orders.Freight`
//! and `Order Details.UnitPrice` are PostgreSQL `real`, MariaDB `FLOAT`, SQLite `REAL`), keyset
//! pages sorted by a float serve every row exactly once, a decimal with a scale over a float
//! is filtered by the value it is served as, and a `number` over a single-precision column is
//! served and matched as written. Also: SQLite text is read whole whatever width it declares.

use std::collections::HashMap;

use serde_json::Value;

use crate::fixture::Kind;
use crate::harness::{execute, query_text, trap_database, Portico};

/// The trap schema in a fresh database of `kind`, with a view of a third of each freight:
/// doubles that need all 17 digits to name them.
fn traps(kind: Kind, dir: &std::path::Path) -> String {
    let connection_string = trap_database(kind, dir);
    let freight = match kind {
        Kind::Postgres => "CAST(\"Freight\" AS double precision)".to_string(),
        _ => kind.quote("Freight"),
    };
    execute(
        &connection_string,
        &format!(
            "CREATE VIEW {} AS SELECT {}, {freight} / 3 AS {} FROM {}",
            kind.quote("Freight Thirds"),
            kind.quote("OrderID"),
            kind.quote("Third"),
            kind.quote("Orders")
        ),
    );
    connection_string
}

/// What `introspect` proposes for the trap schema's floats, written by hand: money as a
/// decimal with 2 places over the float column, a plain float as a number.
fn config(kind: Kind, connection_string: &str) -> String {
    let float = match kind {
        Kind::MariaDb => "float",
        _ => "real",
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.traps]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{connection_string}"

[versions.v1.resources.orders]
source = "traps"
table = "Orders"
key = ["id"]
anonymous = true
cache_ttl = "0s"
max_limit = 500
[versions.v1.resources.orders.fields]
id = {{ column = "OrderID", type = "integer" }}
freight = {{ column = "Freight", type = "decimal", column_type = "{float}", scale = 2 }}

[versions.v1.resources.order_details]
source = "traps"
table = "Order Details"
key = ["order_id", "product_id"]
anonymous = true
cache_ttl = "0s"
max_limit = 500
[versions.v1.resources.order_details.fields]
order_id = {{ column = "OrderID", type = "integer" }}
product_id = {{ column = "ProductID", type = "integer" }}
unit_price = {{ column = "UnitPrice", type = "decimal", column_type = "{float}", scale = 2 }}
quantity = {{ column = "Quantity", type = "integer" }}
discount = {{ column = "Discount", type = "number", column_type = "{float}" }}

[versions.v1.resources.thirds]
source = "traps"
table = "Freight Thirds"
key = ["id"]
anonymous = true
cache_ttl = "0s"
max_limit = 500
[versions.v1.resources.thirds.fields]
id = {{ column = "OrderID", type = "integer" }}
third = {{ column = "Third", type = "number", column_type = "double" }}
"#,
        dialect = kind.dialect(),
    )
}

/// Which served values a filter keeps.
type Keeps = Box<dyn Fn(&str) -> bool>;

/// SQL reading a float column as the exact double it holds (or widens to).
fn exact(kind: Kind, column: &str) -> String {
    let quoted = kind.quote(column);
    match kind {
        Kind::Postgres => format!("CAST({quoted} AS double precision)"),
        Kind::MariaDb => format!("CAST({quoted} AS DOUBLE)"),
        _ => format!("printf('%!.17g', {quoted})"),
    }
}

/// Each row's key (as text, comma-joined) in the order direct SQL gives.
fn direct_keys(
    kind: Kind,
    connection_string: &str,
    table: &str,
    keys: &[&str],
    order: &str,
) -> Vec<String> {
    let columns: Vec<String> = keys.iter().map(|k| kind.quote(k)).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {order}",
        columns.join(", "),
        kind.quote(table)
    );
    query_text(connection_string, &sql)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(Option::unwrap)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn api_key(row: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| {
            row[*k]
                .as_i64()
                .unwrap_or_else(|| panic!("{row}"))
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Keyset pages sorted by a float column, 7 and 50 rows a page, give every row once, in the
/// order the database sorts the stored values.
async fn float_sorts_page_every_row_exactly_once(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = traps(kind, dir.path());
    let portico = Portico::spawn(&config(kind, &connection_string)).await;
    let q = |c: &str| kind.quote(c);
    let cases = [
        (
            "thirds?sort=-third",
            "Freight Thirds",
            vec!["id"],
            vec!["OrderID"],
            format!("{} DESC, {}", q("Third"), q("OrderID")),
        ),
        (
            "orders?sort=freight",
            "Orders",
            vec!["id"],
            vec!["OrderID"],
            format!("{} ASC, {}", q("Freight"), q("OrderID")),
        ),
        (
            "orders?sort=-freight",
            "Orders",
            vec!["id"],
            vec!["OrderID"],
            format!("{} DESC, {}", q("Freight"), q("OrderID")),
        ),
        (
            "order_details?sort=-quantity,unit_price",
            "Order Details",
            vec!["order_id", "product_id"],
            vec!["OrderID", "ProductID"],
            format!(
                "{} DESC, {}, {}, {}",
                q("Quantity"),
                q("UnitPrice"),
                q("OrderID"),
                q("ProductID")
            ),
        ),
        (
            "order_details?sort=-unit_price,discount",
            "Order Details",
            vec!["order_id", "product_id"],
            vec!["OrderID", "ProductID"],
            format!(
                "{} DESC, {}, {}, {}",
                q("UnitPrice"),
                q("Discount"),
                q("OrderID"),
                q("ProductID")
            ),
        ),
    ];
    for (listing, table, api_keys, keys, order) in &cases {
        let expected = direct_keys(kind, &connection_string, table, keys, order);
        assert!(expected.len() >= 830, "{table} holds its rows");
        for limit in [7, 50] {
            let path = format!("/v1/{listing}&limit={limit}");
            let got: Vec<String> = portico
                .all_pages(&path)
                .await
                .iter()
                .map(|row| api_key(row, api_keys))
                .collect();
            let mut unique = got.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                (got.len(), unique.len()),
                (expected.len(), expected.len()),
                "{kind:?} GET {path}: rows served, distinct rows; the table holds {}",
                expected.len()
            );
            assert!(
                got == expected,
                "{kind:?} GET {path}: not in the stored order"
            );
        }
    }
}

/// A decimal with 2 places over a float column is served as its stored value rounded to 2
/// places, and `eq`, `ne`, `in` and the range operators compare that served value: exactly the
/// rows direct SQL's stored values say. A `number` over a single-precision column is served
/// as written (0.05) and `eq` finds it.
async fn float_filters_compare_the_served_value(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = traps(kind, dir.path());
    let portico = Portico::spawn(&config(kind, &connection_string)).await;
    // The stored values, each rounded to 2 places in Rust from its exact double.
    let sql = format!(
        "SELECT {}, {} FROM {}",
        kind.quote("OrderID"),
        exact(kind, "Freight"),
        kind.quote("Orders")
    );
    let freight: HashMap<i64, String> = query_text(&connection_string, &sql)
        .into_iter()
        .map(|row| {
            let id = row[0].as_deref().unwrap().parse().unwrap();
            let stored: f64 = row[1].as_deref().unwrap().parse().unwrap();
            (id, format!("{stored:.2}"))
        })
        .collect();
    assert_eq!(freight.len(), 830);

    // Served as stored, to 2 places.
    for row in portico.all_pages("/v1/orders?limit=500").await {
        let id = row["id"].as_i64().unwrap();
        assert_eq!(
            row["freight"].as_str(),
            Some(freight[&id].as_str()),
            "{row}"
        );
    }

    // 79.19 is stored a little above (79.19000244… in a float4), 117.88 a little below
    // (117.87999725…), 158.38 above.
    let value = |text: &str| text.parse::<f64>().unwrap();
    let filters: Vec<(String, Keeps)> = vec![
        ("freight=79.19".into(), Box::new(|s: &str| s == "79.19")),
        (
            "freight[eq]=117.88".into(),
            Box::new(|s: &str| s == "117.88"),
        ),
        (
            "freight[eq]=117.880".into(),
            Box::new(|s: &str| s == "117.88"),
        ),
        (
            "freight[ne]=117.88".into(),
            Box::new(|s: &str| s != "117.88"),
        ),
        (
            "freight[in]=79.19,117.88,158.38".into(),
            Box::new(|s: &str| ["79.19", "117.88", "158.38"].contains(&s)),
        ),
        (
            "freight[nin]=79.19,117.88".into(),
            Box::new(|s: &str| !["79.19", "117.88"].contains(&s)),
        ),
        (
            "freight[gte]=117.88".into(),
            Box::new(move |s: &str| value(s) >= 117.88),
        ),
        (
            "freight[lt]=117.88".into(),
            Box::new(move |s: &str| value(s) < 117.88),
        ),
        (
            "freight[gt]=79.19".into(),
            Box::new(move |s: &str| value(s) > 79.19),
        ),
        (
            "freight[lte]=79.19".into(),
            Box::new(move |s: &str| value(s) <= 79.19),
        ),
        (
            "freight[gte]=79.19&freight[lt]=158.38".into(),
            Box::new(move |s: &str| value(s) >= 79.19 && value(s) < 158.38),
        ),
        ("freight=79.191".into(), Box::new(|_: &str| false)),
    ];
    for (filter, keeps) in &filters {
        let mut expected: Vec<i64> = freight
            .iter()
            .filter(|(_, served)| keeps(served))
            .map(|(id, _)| *id)
            .collect();
        expected.sort();
        let path = format!("/v1/orders?limit=500&{filter}");
        let mut got: Vec<i64> = portico
            .all_pages(&path)
            .await
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, expected, "{kind:?} GET {path}");
    }
    assert_eq!(
        portico
            .all_pages("/v1/orders?limit=10&freight=117.88")
            .await
            .len(),
        1,
        "{kind:?}: the row served as 117.88 is found"
    );

    // A number is served as the double it is, and `eq` that served text finds its row.
    let page = portico.get("/v1/thirds?limit=20").await.body;
    for row in page["data"].as_array().unwrap() {
        let path = format!("/v1/thirds?third={}", row["third"]);
        let found = portico.all_pages(&path).await;
        assert_eq!(found, std::slice::from_ref(row), "{kind:?} GET {path}");
    }

    // Discount: 0.05 on every second line of an order, else 0; a float4 on PostgreSQL and
    // MariaDB, served as written and found by it.
    for (discount, lines) in [("0.05", 830), ("0", 1660)] {
        let path = format!("/v1/order_details?limit=500&discount={discount}");
        let rows = portico.all_pages(&path).await;
        assert_eq!(rows.len(), lines, "{kind:?} GET {path}");
        for row in &rows {
            assert_eq!(
                row["discount"].as_f64(),
                Some(discount.parse().unwrap()),
                "{kind:?} {row}"
            );
            assert!(row["discount"].to_string().len() <= 4, "{kind:?} {row}");
        }
    }
    let path = "/v1/order_details?limit=500&discount[gte]=0.05";
    assert_eq!(
        portico.all_pages(path).await.len(),
        830,
        "{kind:?} GET {path}"
    );
}

mod float_sorts_page_every_row_exactly_once {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        float_sorts_page_every_row_exactly_once(Kind::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() {
        float_sorts_page_every_row_exactly_once(Kind::Postgres).await
    }

    #[tokio::test]
    async fn mariadb() {
        float_sorts_page_every_row_exactly_once(Kind::MariaDb).await
    }
}

mod float_filters_compare_the_served_value {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        float_filters_compare_the_served_value(Kind::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() {
        float_filters_compare_the_served_value(Kind::Postgres).await
    }

    #[tokio::test]
    async fn mariadb() {
        float_filters_compare_the_served_value(Kind::MariaDb).await
    }
}

/// SQLite's driver reports the declared width of a text column (10 for `DATE`), which bounds
/// nothing in SQLite: a `string` field over a `DATE` column holding times is served whole.
#[tokio::test]
async fn sqlite_text_is_read_whole_whatever_width_it_declares() {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = traps(Kind::Sqlite, dir.path());
    execute(
        &connection_string,
        "CREATE TABLE Shipped (OrderID INTEGER PRIMARY KEY, ShippedDate DATE, Code VARCHAR(2))",
    );
    execute(
        &connection_string,
        "INSERT INTO Shipped SELECT OrderID, OrderDate, \"Ship Name\" FROM Orders",
    );
    let portico = Portico::spawn(&format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.traps]
kind = "odbc"
dialect = "sqlite"
connection_string = "{connection_string}"

[versions.v1.resources.shipped]
source = "traps"
table = "Shipped"
key = ["id"]
anonymous = true
cache_ttl = "0s"
max_limit = 500
[versions.v1.resources.shipped.fields]
id = {{ column = "OrderID", type = "integer" }}
shipped = {{ column = "ShippedDate", type = "string" }}
code = {{ column = "Code", type = "string" }}
"#
    ))
    .await;
    // Read from the TEXT columns they were copied from: the driver cuts a direct read too.
    let held: HashMap<i64, (String, String)> = query_text(
        &connection_string,
        "SELECT OrderID, OrderDate, \"Ship Name\" FROM Orders",
    )
    .into_iter()
    .map(|row| {
        let id = row[0].as_deref().unwrap().parse().unwrap();
        (id, (row[1].clone().unwrap(), row[2].clone().unwrap()))
    })
    .collect();
    let rows = portico.all_pages("/v1/shipped?limit=500").await;
    assert_eq!(rows.len(), 830);
    for row in &rows {
        let (date, code) = &held[&row["id"].as_i64().unwrap()];
        assert_eq!(date.len(), 19, "{date}");
        assert_eq!(row["shipped"].as_str(), Some(date.as_str()), "{row}");
        assert_eq!(row["code"].as_str(), Some(code.as_str()), "{row}");
    }
    let (status, one) = {
        let answer = portico.get("/v1/shipped/10248").await;
        (answer.status, answer.body)
    };
    assert_eq!(status, 200);
    assert_eq!(one["shipped"], "1994-08-04 15:30:00");
}
