//! `portico check` against the trap schema (SQLite, PostgreSQL, MariaDB): a hand-written
//! configuration with planted mistakes is refused naming each of them, in one run, with its
//! location and nothing else; the same configuration put right passes.

use std::path::Path;
use std::process::Command;

use crate::fixture::Kind;
use crate::harness::{execute, trap_database};

/// The mistakes planted in the configuration, each fixed by its `right` spelling.
struct Mistakes {
    /// `order_details` keyed by its order alone (three rows per order).
    order_details_key: &'static str,
    /// The column of `order_details.quantity`.
    quantity: &'static str,
    /// The key column of the `shipments` query.
    shipment_key: &'static str,
    /// `orders.order_date` over text holding times.
    order_date: &'static str,
    /// `orders.customer_id` over `C001`.
    customer_id: &'static str,
    /// A `default_sort` on `customers`, the parent of `orders`.
    customers_sort: &'static str,
}

const WRONG: Mistakes = Mistakes {
    order_details_key: "[\"order_id\"]",
    quantity: "Quantityy",
    shipment_key: "OrderNo",
    order_date: "date",
    customer_id: "integer",
    customers_sort: "[\"-company\"]",
};

const RIGHT: Mistakes = Mistakes {
    order_details_key: "[\"order_id\", \"product_id\"]",
    quantity: "Quantity",
    shipment_key: "OrderID",
    order_date: "datetime",
    customer_id: "string",
    customers_sort: "[\"-name\"]",
};

/// A configuration over the trap schema, as a new user writes it by hand.
fn config(kind: Kind, connection_string: &str, m: &Mistakes) -> String {
    let dialect = match kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mysql",
        _ => "sqlite",
    };
    // A query resource: its columns are what its result set names.
    let shipments = match kind {
        Kind::Postgres => r#"SELECT o."OrderID", o."Ship Name" AS "ShipName" FROM "Orders" o"#,
        Kind::MariaDb => "SELECT o.OrderID, o.`Ship Name` AS ShipName FROM Orders o",
        _ => r#"SELECT o.OrderID, o."Ship Name" AS ShipName FROM Orders o"#,
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.northwind]
kind = "odbc"
connection_string = "{connection_string}"
dialect = "{dialect}"

[versions.v1.resources.customers]
source = "northwind"
table = "Customers"
key = ["id"]
anonymous = true
default_sort = {customers_sort}
[versions.v1.resources.customers.fields]
id = {{ column = "CustomerID", type = "string" }}
name = {{ column = "Company Name", type = "string" }}
street = {{ column = "Straße", type = "string" }}

[versions.v1.resources.orders]
source = "northwind"
table = "Orders"
key = ["id"]
anonymous = true
parent = {{ resource = "customers", field = "customer_id" }}
[versions.v1.resources.orders.fields]
id = {{ column = "OrderID", type = "integer" }}
customer_id = {{ column = "CustomerID", type = "{customer_id}" }}
order_date = {{ column = "OrderDate", type = "{order_date}" }}
freight = {{ column = "Freight", type = "number" }}
ship_postal_code = {{ column = "ShipPostalCode", type = "string" }}

[versions.v1.resources.order_details]
source = "northwind"
table = "Order Details"
key = {order_details_key}
anonymous = true
[versions.v1.resources.order_details.fields]
order_id = {{ column = "OrderID", type = "integer" }}
product_id = {{ column = "ProductID", type = "integer" }}
quantity = {{ column = "{quantity}", type = "integer" }}
unit_price = {{ column = "UnitPrice", type = "number" }}

[versions.v1.resources.shipments]
source = "northwind"
query = '{shipments}'
key = ["id"]
anonymous = true
[versions.v1.resources.shipments.fields]
id = {{ column = "{shipment_key}", type = "integer" }}
ship_name = {{ column = "ShipName", type = "string" }}
"#,
        customers_sort = m.customers_sort,
        customer_id = m.customer_id,
        order_date = m.order_date,
        order_details_key = m.order_details_key,
        quantity = m.quantity,
        shipment_key = m.shipment_key,
    )
}

/// Runs `portico check` over `text`; its exit status and the problems it listed
/// (`location: message`).
fn check(dir: &Path, text: &str, flags: &[&str]) -> (bool, Vec<String>, String) {
    let path = dir.join("portico.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("check")
        .args(flags)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let problems = stderr
        .split_once("problem(s) in")
        .map(|(_, listed)| {
            listed
                .lines()
                .skip(1)
                .filter_map(|l| l.strip_prefix("  "))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (out.status.success(), problems, stderr)
}

/// The problem at `location`, which must be listed exactly once.
fn at<'a>(problems: &'a [String], location: &str) -> &'a str {
    let found: Vec<&String> = problems
        .iter()
        .filter(|p| p.starts_with(&format!("{location}: ")))
        .collect();
    assert_eq!(found.len(), 1, "{location} once in {problems:#?}");
    &found[0][location.len() + 2..]
}

fn every_mistake_is_named_at_once_and_the_fixed_config_passes(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    let (ok, problems, stderr) = check(dir.path(), &config(kind, &connection_string, &WRONG), &[]);
    assert!(!ok, "{stderr}");
    let v1 = "versions.v1.resources";
    let mut locations: Vec<String> = problems
        .iter()
        .map(|p| p.split(": ").next().unwrap_or_default().to_string())
        .collect();
    locations.sort();
    assert_eq!(
        locations,
        [
            format!("{v1}.customers.default_sort"),
            format!("{v1}.order_details.fields.quantity"),
            format!("{v1}.order_details.key"),
            format!("{v1}.orders.fields.customer_id"),
            format!("{v1}.orders.fields.order_date"),
            format!("{v1}.shipments.fields.id"),
        ],
        "{stderr}"
    );
    let quantity = at(&problems, &format!("{v1}.order_details.fields.quantity"));
    assert!(
        quantity.starts_with(
            "column `Quantityy` is not in table `Order Details`; did you mean `Quantity`?"
        ),
        "{quantity}"
    );
    let key = at(&problems, &format!("{v1}.order_details.key"));
    assert!(
        key.contains("`order_id` (column `OrderID`) is not unique")
            && key.contains("at least 50 key value(s)")
            && key.contains("`10248` in 3 rows"),
        "{key}"
    );
    let shipment = at(&problems, &format!("{v1}.shipments.fields.id"));
    assert!(
        shipment
            .starts_with("column `OrderNo` is not in the query's result; did you mean `OrderID`?"),
        "{shipment}"
    );
    let date = at(&problems, &format!("{v1}.orders.fields.order_date"));
    assert!(
        date.starts_with("declared `date`, but 830 of the 830 rows sampled hold a time of day")
            && date.contains("(e.g. `1994-08-04 15:30:00` is served as `1994-08-04`)")
            && date.ends_with("`datetime` fits them"),
        "{date}"
    );
    let customer = at(&problems, &format!("{v1}.orders.fields.customer_id"));
    assert!(
        customer.starts_with("declared `integer`, but 830 of the 830 rows sampled")
            && customer.contains("(e.g. `C001`): they are served as null")
            && customer.ends_with("`string` fits them"),
        "{customer}"
    );
    assert!(at(&problems, &format!("{v1}.customers.default_sort")).contains("`company`"));

    // Skipping the probe for the table (or for every resource) leaves the rest.
    for flags in [
        &["--skip-key-probe"][..],
        &["--skip-key-probe", "order_details"],
    ] {
        let (ok, skipped, stderr) =
            check(dir.path(), &config(kind, &connection_string, &WRONG), flags);
        assert!(!ok);
        assert_eq!(skipped.len(), 5, "{flags:?}: {stderr}");
        assert!(
            !skipped.iter().any(|p| p.contains(".order_details.key")),
            "{flags:?}: {stderr}"
        );
    }

    let right = config(kind, &connection_string, &RIGHT);
    let (ok, problems, stderr) = check(dir.path(), &right, &[]);
    assert!(ok && problems.is_empty(), "{stderr}");

    // Names are compared as the database resolves a quoted name: exactly on PostgreSQL only.
    let lower = right.replace("\"ShipPostalCode\"", "\"shippostalcode\"");
    let (ok, problems, stderr) = check(dir.path(), &lower, &[]);
    if kind == Kind::Postgres {
        assert!(!ok && problems.len() == 1, "{stderr}");
        assert_eq!(
            at(&problems, &format!("{v1}.orders.fields.ship_postal_code")),
            "column `shippostalcode` is not in table `Orders`; did you mean `ShipPostalCode`? \
             (PostgreSQL compares quoted names exactly)"
        );
    } else {
        assert!(ok && problems.is_empty(), "{stderr}");
    }

    // A key column holding NULLs: those rows cannot be looked up, and page wrongly.
    let nullable_key = format!(
        "{right}
[versions.v1.resources.postal_codes]
source = \"northwind\"
table = \"Orders\"
key = [\"code\"]
anonymous = true
[versions.v1.resources.postal_codes.fields]
code = {{ column = \"ShipPostalCode\", type = \"string\" }}
"
    );
    let (ok, problems, stderr) = check(dir.path(), &nullable_key, &[]);
    assert!(!ok && problems.len() == 1, "{stderr}");
    let key = at(&problems, &format!("{v1}.postal_codes.key"));
    assert!(
        key.contains("`code` (column `ShipPostalCode`) is NULL in at least 50 row(s)"),
        "{key}"
    );
}

#[test]
fn check_names_every_planted_mistake_at_once_on_sqlite() {
    every_mistake_is_named_at_once_and_the_fixed_config_passes(Kind::Sqlite);
}

#[test]
fn check_names_every_planted_mistake_at_once_on_postgres() {
    every_mistake_is_named_at_once_and_the_fixed_config_passes(Kind::Postgres);
}

#[test]
fn check_names_every_planted_mistake_at_once_on_mariadb() {
    every_mistake_is_named_at_once_and_the_fixed_config_passes(Kind::MariaDb);
}

/// `Orders` of the trap schema with every other `OrderDate` at midnight (`1994-08-04
/// 00:00:00`, still text), and two typed columns beside it: `ShippedDate` declared DATE and
/// `ShippedAt` a timestamp holding midnights (SQLite keeps both as the text written).
fn midnight_orders(kind: Kind, connection_string: &str) {
    let statements: &[&str] = match kind {
        Kind::Postgres => &[
            r#"UPDATE "Orders" SET "OrderDate" = substr("OrderDate", 1, 10) || ' 00:00:00'
               WHERE "OrderID" % 2 = 0"#,
            r#"ALTER TABLE "Orders" ADD COLUMN "ShippedDate" date,
               ADD COLUMN "ShippedAt" timestamp"#,
            r#"UPDATE "Orders" SET "ShippedDate" = CAST(substr("OrderDate", 1, 10) AS date),
               "ShippedAt" = CAST(substr("OrderDate", 1, 10) AS timestamp)"#,
        ],
        Kind::MariaDb => &[
            "UPDATE Orders SET OrderDate = CONCAT(SUBSTR(OrderDate, 1, 10), ' 00:00:00') \
             WHERE OrderID % 2 = 0",
            "ALTER TABLE Orders ADD COLUMN ShippedDate date, ADD COLUMN ShippedAt datetime",
            "UPDATE Orders SET ShippedDate = CAST(SUBSTR(OrderDate, 1, 10) AS DATE), \
             ShippedAt = CAST(SUBSTR(OrderDate, 1, 10) AS DATETIME)",
        ],
        _ => &[
            "UPDATE Orders SET OrderDate = substr(OrderDate, 1, 10) || ' 00:00:00' \
             WHERE OrderID % 2 = 0",
            "ALTER TABLE Orders ADD COLUMN ShippedDate DATE",
            "ALTER TABLE Orders ADD COLUMN ShippedAt TIMESTAMP",
            "UPDATE Orders SET ShippedDate = OrderDate, \
             ShippedAt = substr(OrderDate, 1, 10) || ' 00:00:00'",
        ],
    };
    for statement in statements {
        execute(connection_string, statement);
    }
}

/// A `date` field is proven against the whole stored text: over text, a midnight is as much a
/// misfit as a time of day (filters and cursors compare the text, which is not the date), each
/// counted with its own example; a column the database keeps as a date or a timestamp
/// compares as a day and passes; a SQLite column declared DATE is read whole (its driver says
/// it is 10 wide).
fn a_date_over_text_is_proven_against_the_whole_text(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    midnight_orders(kind, &connection_string);
    let dialect = match kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mysql",
        _ => "sqlite",
    };
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.northwind]
kind = "odbc"
connection_string = "{connection_string}"
dialect = "{dialect}"

[versions.v1.resources.orders]
source = "northwind"
table = "Orders"
key = ["id"]
anonymous = true
[versions.v1.resources.orders.fields]
id = {{ column = "OrderID", type = "integer" }}
order_date = {{ column = "OrderDate", type = "date" }}
shipped = {{ column = "ShippedDate", type = "date" }}
shipped_at = {{ column = "ShippedAt", type = "date" }}
order_day = {{ column = "OrderDate", type = "date", column_type = "text" }}
"#
    );
    let (ok, problems, stderr) = check(dir.path(), &config, &[]);
    assert!(!ok, "{stderr}");
    let v1 = "versions.v1.resources.orders.fields";
    let order_date = at(&problems, &format!("{v1}.order_date"));
    assert_eq!(
        order_date,
        "declared `date`, but 415 of the 830 rows sampled hold a time of day that is dropped \
         (e.g. `1994-08-05 16:30:00` is served as `1994-08-05`), and filters on the field \
         compare dates with text that has times; 415 hold text that goes on after the date \
         (e.g. `1994-08-04 00:00:00` is served as `1994-08-04`): the column holds text, which \
         is not the date, so `eq`, `in` and `lte` filters skip those rows and paging sorted by \
         the field repeats them; `datetime` fits them",
        "{stderr}"
    );
    // Read as the text it is, a date is compared by filters as that text: it must be the date
    // exactly, whatever follows it (a time, or midnight).
    let order_day = at(&problems, &format!("{v1}.order_day"));
    assert!(
        order_day.starts_with(
            "declared `date`, but 830 of the 830 rows sampled hold text that goes on after the date"
        ),
        "{order_day}"
    );
    if kind == Kind::Sqlite {
        // SQLite keeps the text written into a DATE or TIMESTAMP column, and compares it as text.
        assert_eq!(problems.len(), 4, "{stderr}");
        let shipped = at(&problems, &format!("{v1}.shipped"));
        assert!(
            shipped.starts_with("declared `date`, but 415 of the 830 rows sampled hold a time")
                && shipped.contains("(e.g. `1994-08-05 16:30:00` is served as `1994-08-05`)")
                && shipped.contains("; 415 hold text that goes on after the date"),
            "{shipped}"
        );
        let shipped_at = at(&problems, &format!("{v1}.shipped_at"));
        assert!(
            shipped_at.starts_with(
                "declared `date`, but 830 of the 830 rows sampled hold text that goes on"
            ) && shipped_at.contains("(e.g. `1994-08-04 00:00:00` is served as `1994-08-04`)"),
            "{shipped_at}"
        );
    } else {
        // A DATE column's text is the date; a timestamp's midnight is the day it starts.
        assert_eq!(problems.len(), 2, "{stderr}");
    }
}

#[test]
fn a_date_over_text_is_proven_against_the_whole_text_on_sqlite() {
    a_date_over_text_is_proven_against_the_whole_text(Kind::Sqlite);
}

#[test]
fn a_date_over_text_is_proven_against_the_whole_text_on_postgres() {
    a_date_over_text_is_proven_against_the_whole_text(Kind::Postgres);
}

#[test]
fn a_date_over_text_is_proven_against_the_whole_text_on_mariadb() {
    a_date_over_text_is_proven_against_the_whole_text(Kind::MariaDb);
}

/// The sample also shows what the configuration promises and the data breaks: NULLs in a
/// field taken as never null, and text longer than the source reads whole (served cut short,
/// with only a log line at serve time).
fn nulls_and_cut_text_are_named(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    // Eight ship names of 20,000 bytes (OrderID 10300, 10400, … 11000).
    let statements: &[&str] = match kind {
        Kind::Postgres => &[
            r#"ALTER TABLE "Orders" ALTER COLUMN "Ship Name" TYPE text"#,
            r#"UPDATE "Orders" SET "Ship Name" = repeat('x', 20000) WHERE "OrderID" % 100 = 0"#,
        ],
        Kind::MariaDb => &[
            "ALTER TABLE Orders MODIFY `Ship Name` text",
            "UPDATE Orders SET `Ship Name` = REPEAT('x', 20000) WHERE OrderID % 100 = 0",
        ],
        _ => &[
            "UPDATE Orders SET \"Ship Name\" = replace(hex(zeroblob(10000)), '0', 'x') \
             WHERE OrderID % 100 = 0",
        ],
    };
    for statement in statements {
        execute(&connection_string, statement);
    }
    let dialect = match kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mysql",
        _ => "sqlite",
    };
    let config = |postal: &str, max_text_bytes: usize| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[sources.northwind]
kind = "odbc"
connection_string = "{connection_string}"
dialect = "{dialect}"
max_text_bytes = {max_text_bytes}

[versions.v1.resources.orders]
source = "northwind"
table = "Orders"
key = ["id"]
anonymous = true
[versions.v1.resources.orders.fields]
id = {{ column = "OrderID", type = "integer" }}
ship_postal_code = {{ column = "ShipPostalCode", type = "string", nullable = {postal} }}
ship_name = {{ column = "Ship Name", type = "string" }}
"#
        )
    };
    let (ok, problems, stderr) = check(dir.path(), &config("false", 8192), &[]);
    assert!(!ok, "{stderr}");
    assert_eq!(problems.len(), 2, "{stderr}");
    let v1 = "versions.v1.resources.orders.fields";
    assert_eq!(
        at(&problems, &format!("{v1}.ship_postal_code")),
        "taken as never null (`nullable = false`, or the database's catalog says NOT NULL), \
         but 83 of the 830 rows sampled hold NULL: the API document and the write rules \
         promise a value the data does not have; set nullable = true",
        "{stderr}"
    );
    assert_eq!(
        at(&problems, &format!("{v1}.ship_name")),
        "8 of the 830 rows sampled hold text longer than the 8192 bytes the source reads \
         whole (the longest: 20000 bytes): they are served cut short; raise \
         [sources.northwind] max_text_bytes to at least that",
        "{stderr}"
    );
    // Put right, it passes.
    let (ok, problems, stderr) = check(dir.path(), &config("true", 20000), &[]);
    assert!(ok && problems.is_empty(), "{stderr}");
}

#[test]
fn nulls_and_cut_text_are_named_on_sqlite() {
    nulls_and_cut_text_are_named(Kind::Sqlite);
}

#[test]
fn nulls_and_cut_text_are_named_on_postgres() {
    nulls_and_cut_text_are_named(Kind::Postgres);
}

#[test]
fn nulls_and_cut_text_are_named_on_mariadb() {
    nulls_and_cut_text_are_named(Kind::MariaDb);
}
