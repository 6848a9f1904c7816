//! A weak ODBC driver: an Access file (`support/northwind.mdb`) through mdbtools, which cannot
//! fetch in blocks, bind `?` parameters, ORDER BY, or parse `SELECT 1`. Served from in-memory
//! snapshots it must answer exactly as the same data in SQLite does (a copy made by mdbtools'
//! own `mdb-schema` and `mdb-export`); without snapshots every request it cannot serve gets a
//! 501 naming what of the request cannot be done (the missing capability and the fix are for
//! the operator: the log and `check`); `introspect` and `check` work through it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fixture::Kind;
use crate::harness::{trap_database, Portico};

/// The tables served, as Access names them.
const TABLES: [&str; 4] = ["Orders", "Order Details", "Customers", "Shippers"];

/// The shipped Access file.
fn northwind() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/support/northwind.mdb")
}

fn mdb_connection_string() -> String {
    format!("Driver=MDBTools;DBQ={}", northwind().display())
}

/// The served tables of the Access file copied into a new SQLite database in `dir` by
/// mdbtools' own tools: `mdb-schema` writes the tables, `mdb-export` the rows.
fn sqlite_copy(dir: &Path) -> PathBuf {
    let db = dir.join("northwind.db");
    for table in TABLES {
        let schema = Command::new("mdb-schema")
            .args(["-T", table])
            .arg(northwind())
            .arg("sqlite")
            .output()
            .expect("mdb-schema installed (package mdbtools)");
        assert!(schema.status.success(), "mdb-schema {table}");
        let rows = Command::new("mdb-export")
            .args(["-I", "sqlite", "-q", "'"])
            .arg(northwind())
            .arg(table)
            .output()
            .expect("mdb-export installed (package mdbtools)");
        assert!(rows.status.success(), "mdb-export {table}");
        let mut script = schema.stdout;
        script.extend_from_slice(b"\nBEGIN;\n");
        script.extend_from_slice(&rows.stdout);
        script.extend_from_slice(b"\nCOMMIT;\n");
        let mut sqlite = Command::new("sqlite3")
            .arg(&db)
            .stdin(Stdio::piped())
            .spawn()
            .expect("sqlite3 installed");
        use std::io::Write;
        sqlite.stdin.take().unwrap().write_all(&script).unwrap();
        assert!(
            sqlite.wait().unwrap().success(),
            "loading {table} into SQLite"
        );
    }
    db
}

/// The resources over both sources: Orders (money, dates, NULLs), Order Details (a two-column
/// key), Customers (a text key), Shippers; money as decimal.
fn resources(source: &str) -> String {
    r#"
[versions.v1.resources.orders]
source = "SOURCE"
table = "Orders"
key = ["id"]
anonymous = true
max_limit = 1000
cache_ttl = "0s"
[versions.v1.resources.orders.fields]
id = { column = "OrderID", type = "integer" }
customer_id = { column = "CustomerID", type = "string" }
employee_id = { column = "EmployeeID", type = "integer" }
order_date = { column = "OrderDate", type = "datetime" }
shipped_date = { column = "ShippedDate", type = "datetime", nullable = true }
ship_via = { column = "ShipVia", type = "integer" }
freight = { column = "Freight", type = "decimal", scale = 2 }
ship_name = { column = "ShipName", type = "string" }
ship_city = { column = "ShipCity", type = "string" }
ship_region = { column = "ShipRegion", type = "string", nullable = true }
ship_postal_code = { column = "ShipPostalCode", type = "string", nullable = true }
ship_country = { column = "ShipCountry", type = "string" }

[versions.v1.resources.order_details]
source = "SOURCE"
table = "Order Details"
key = ["order_id", "product_id"]
anonymous = true
max_limit = 1000
cache_ttl = "0s"
[versions.v1.resources.order_details.fields]
order_id = { column = "OrderID", type = "integer" }
product_id = { column = "ProductID", type = "integer" }
unit_price = { column = "UnitPrice", type = "decimal", scale = 2 }
quantity = { column = "Quantity", type = "integer" }
discount = { column = "Discount", type = "number" }

[versions.v1.resources.customers]
source = "SOURCE"
table = "Customers"
key = ["id"]
anonymous = true
cache_ttl = "0s"
[versions.v1.resources.customers.fields]
id = { column = "CustomerID", type = "string" }
company_name = { column = "CompanyName", type = "string" }
contact_name = { column = "ContactName", type = "string" }
city = { column = "City", type = "string" }
region = { column = "Region", type = "string", nullable = true }
postal_code = { column = "PostalCode", type = "string", nullable = true }
country = { column = "Country", type = "string" }
fax = { column = "Fax", type = "string", nullable = true }

[versions.v1.resources.shippers]
source = "SOURCE"
table = "Shippers"
key = ["id"]
anonymous = true
cache_ttl = "0s"
[versions.v1.resources.shippers.fields]
id = { column = "ShipperID", type = "integer" }
company_name = { column = "CompanyName", type = "string" }
phone = { column = "Phone", type = "string" }
"#
    .replace("SOURCE", source)
}

/// The Access file as a source: the health statement it accepts, and `extra` settings.
fn access_source(extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [sources.access]\nkind = \"odbc\"\nconnection_string = \"{}\"\ndialect = \"generic\"\n\
         health_statement = \"SELECT COUNT(*) FROM Shippers\"\n{extra}\n",
        mdb_connection_string()
    )
}

fn access_config(extra: &str) -> String {
    format!("{}{}", access_source(extra), resources("access"))
}

fn sqlite_config(db: &Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [sources.lite]\nkind = \"odbc\"\nconnection_string = \"Driver=SQLite3;Database={}\"\n\
         dialect = \"sqlite\"\n{}",
        db.display(),
        resources("lite")
    )
}

const SNAPSHOT: &str = "snapshot = { max_rows = 5000, ttl = \"5m\" }";

/// Every listing compared: whole tables in small pages, filters of each kind on text,
/// integer, money and date fields, sorts both ways over NULLs, and combinations.
const LISTINGS: &[&str] = &[
    "orders?limit=40",
    "order_details?limit=97",
    "customers?limit=7",
    "shippers?limit=1",
    "orders?limit=25&sort=-freight",
    "orders?limit=30&sort=ship_region,-order_date",
    "orders?limit=30&sort=-ship_region,ship_postal_code",
    "orders?limit=30&sort=-shipped_date",
    "orders?limit=30&sort=shipped_date",
    "customers?limit=9&sort=region,-city",
    "customers?limit=9&sort=-fax",
    "order_details?limit=60&sort=-discount,unit_price",
    "order_details?limit=60&sort=-quantity",
    // text
    "orders?limit=10&ship_country=Germany",
    "orders?limit=50&ship_country[ne]=Germany&sort=ship_country",
    "orders?limit=10&ship_city[lt]=Bern",
    "orders?limit=50&ship_city[gte]=Rio&sort=-ship_city",
    "orders?limit=10&customer_id[in]=ALFKI,BONAP,QUICK",
    "orders?limit=10&ship_name[prefix]=Bon",
    "customers?limit=5&company_name[prefix]=La",
    "orders?limit=30&ship_region[null]=true",
    "orders?limit=30&ship_region[null]=false&sort=ship_region",
    "customers?limit=5&fax[null]=true",
    // integer
    "orders?limit=20&employee_id=5",
    "orders?limit=20&ship_via[ne]=2",
    "orders?limit=20&id[lt]=10300",
    "orders?limit=20&id[gte]=11000&sort=-id",
    "orders?limit=20&employee_id[in]=1,9",
    "order_details?limit=20&order_id=10248",
    "order_details?limit=20&quantity[gte]=100",
    // money
    "orders?limit=20&freight[gt]=800",
    "orders?limit=20&freight=32.38",
    "orders?limit=20&freight[lt]=1",
    "orders?limit=40&freight[gte]=500&sort=-freight",
    "orders?limit=20&freight[ne]=0.12&freight[lt]=0.5",
    "orders?limit=20&freight[in]=32.38,11.61,0.12",
    "order_details?limit=20&unit_price[gte]=200",
    // dates
    "orders?limit=20&order_date=1994-08-04T00:00:00",
    "orders?limit=50&order_date[gte]=1996-04-01T00:00:00&sort=-order_date",
    "orders?limit=20&order_date[lt]=1994-09-01T00:00:00",
    "orders?limit=20&shipped_date[null]=true",
    "orders?limit=20&shipped_date[gte]=1996-05-01T00:00:00&sort=shipped_date",
    "orders?limit=20&order_date[in]=1994-08-04T00:00:00,1995-01-02T00:00:00",
    // combined
    "orders?limit=15&ship_country=USA&freight[gt]=100&sort=-order_date",
    "orders?limit=15&ship_region[null]=false&employee_id[in]=2,3&sort=ship_region,-freight",
];

/// Key lookups compared, found and not found.
const LOOKUPS: &[&str] = &[
    "orders/10248",
    "orders/11077",
    "orders/99999",
    "order_details/10248,11",
    "order_details/10248,12",
    "order_details/11077,77",
    "customers/ALFKI",
    "customers/WOLZA",
    "customers/alfki",
    "shippers/3",
];

#[tokio::test]
async fn mdbtools_snapshots_answer_exactly_as_sqlite_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_copy(dir.path());
    let lite = Portico::spawn(&sqlite_config(&db)).await;
    let access = Portico::spawn(&access_config(SNAPSHOT)).await;
    let mut compared = 0;
    for listing in LISTINGS {
        let path = format!("/v1/{listing}");
        let expected = lite.all_pages(&path).await;
        let got = access.all_pages(&path).await;
        assert_eq!(got.len(), expected.len(), "GET {path}: row counts differ");
        assert!(got == expected, "GET {path}: rows differ");
        compared += got.len();
    }
    // The whole tables were compared, so the copy held what the file holds.
    assert_eq!(lite.all_pages("/v1/orders?limit=1000").await.len(), 830);
    assert_eq!(
        lite.all_pages("/v1/order_details?limit=1000").await.len(),
        2155
    );
    assert!(compared > 5000, "{compared} rows compared");
    for lookup in LOOKUPS {
        let path = format!("/v1/{lookup}");
        let (expected, got) = (lite.get(&path).await, access.get(&path).await);
        assert_eq!(got.status, expected.status, "GET {path}: {}", got.body);
        if expected.status == 200 {
            assert_eq!(got.body, expected.body, "GET {path}");
        }
    }
    // Filters that hold for no row, and a cursor followed with its filters.
    let none = "/v1/orders?freight[gt]=100000";
    assert_eq!(access.get(none).await.body["data"], Value::Array(vec![]));
    assert_eq!(lite.get(none).await.body["data"], Value::Array(vec![]));
}

#[tokio::test]
async fn a_table_larger_than_its_snapshot_bound_is_refused_never_cut_short() {
    let access = Portico::spawn(&access_config(
        "snapshot = { max_rows = 1000, ttl = \"5m\" }",
    ))
    .await;
    // Orders (830 rows) fits; Order Details (2155) does not.
    assert_eq!(access.get("/v1/orders?limit=1").await.status, 200);
    let answer = access.get("/v1/order_details?limit=1").await;
    let problem = answer.problem(501);
    assert_eq!(problem["type"], "/problems/unsupported-by-source");
    // The client learns what of its request cannot be done; the table, the source and the
    // setting to raise are the operator's (the log, `portico check`).
    assert_eq!(
        problem["detail"],
        "the data source behind this resource cannot do what this request needs: reading this \
         resource, which holds more rows than its data source serves; the operator's log and \
         `portico check` say why"
    );
}

/// `Umsätze` in this file holds the same 830 rows as `Orders` (mdb-export shows it too): a
/// non-ASCII table name reaches the driver intact.
#[tokio::test]
async fn a_non_ascii_table_name_reaches_the_driver() {
    let umsaetze = "\n[versions.v1.resources.umsaetze]\nsource = \"access\"\ntable = \"Umsätze\"\n\
                    key = [\"id\"]\nanonymous = true\nmax_limit = 1000\n\
                    [versions.v1.resources.umsaetze.fields]\n\
                    id = { column = \"OrderID\", type = \"integer\" }\n\
                    customer_id = { column = \"CustomerID\", type = \"string\" }\n\
                    freight = { column = \"Freight\", type = \"decimal\", scale = 2 }\n";
    let access = Portico::spawn(&(access_config(SNAPSHOT) + umsaetze)).await;
    let copy = access
        .all_pages("/v1/umsaetze?limit=1000&sort=-freight")
        .await;
    let orders = access
        .all_pages("/v1/orders?limit=1000&sort=-freight&fields=id,customer_id,freight")
        .await;
    assert_eq!(copy.len(), 830);
    assert_eq!(copy, orders);
}

#[tokio::test]
async fn without_snapshots_what_the_driver_cannot_do_is_a_501_naming_the_request_feature() {
    // Nothing declared: the generic dialect's capabilities are probed at start.
    let access = Portico::spawn(&access_config("")).await;
    for path in [
        "/v1/orders?freight[gt]=800",
        "/v1/orders",
        "/v1/orders/10248",
    ] {
        let answer = access.get(path).await;
        let problem = answer.problem(501);
        assert_eq!(problem["type"], "/problems/unsupported-by-source", "{path}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(
                "the data source behind this resource cannot do what this request needs: "
            ) && detail.contains("listing rows in order"),
            "{path}: {detail}"
        );
        // No source, table, capability key or setting reaches an anonymous client.
        for internal in [
            "access",
            "Orders",
            "capabilities",
            "snapshot",
            "ORDER BY",
            "probed",
        ] {
            assert!(
                !detail.contains(internal),
                "{path}: `{internal}` in {detail}"
            );
        }
    }
    let detail = access.get("/v1/orders?freight[gt]=800").await.body["detail"].clone();
    assert!(
        detail
            .as_str()
            .unwrap()
            .contains("filtering by a value, looking a row up by its key, or following a cursor"),
        "{detail}"
    );
    // Readiness asks the health statement, which the driver answers.
    assert_eq!(access.get("/readyz").await.status, 200);
}

fn portico(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn introspect_and_check_work_through_mdbtools() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.toml");
    std::fs::write(&source, access_source("")).unwrap();
    let out = portico(&["introspect", "--source", "access"], &source);
    let starter = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "introspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "table = \"Orders\"",
        "table = \"Order Details\"",
        "table = \"Shippers\"",
    ] {
        assert!(starter.contains(table), "{table} not in:\n{starter}");
    }
    assert!(starter.contains("column = \"Freight\""), "{starter}");

    // Served from snapshots, every resource is read once and passes.
    let served = dir.path().join("served.toml");
    std::fs::write(&served, access_config(SNAPSHOT)).unwrap();
    let out = portico(&["check"], &served);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check: {said}");

    // Without a health statement the default `SELECT 1` is refused, and check says what to set.
    let text = access_config(SNAPSHOT)
        .replace("health_statement = \"SELECT COUNT(*) FROM Shippers\"\n", "");
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, text).unwrap();
    let out = portico(&["check"], &bare);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("the health statement `SELECT 1` was refused")
            && said.contains("set [sources.access] health_statement"),
        "{said}"
    );
    // The driver's SQLSTATE holds a NUL: printed escaped, on the problem's one line.
    assert!(!said.contains('\0'), "{said:?}");
    assert!(
        said.contains("was refused: ODBC emitted an error calling 'SQLExecDirect': State: \\u{0}0000, Native error: 1, Message: Couldn't parse SQL; if the driver"),
        "{said}"
    );

    // Without snapshots: every resource is named with what its driver lacks, and writes
    // declared on the read-only driver are refused.
    let auth = "[auth]\ndevelopment = true\nissuer = \"portico-test\"\naudience = \"portico\"\n\
                [[auth.keys]]\nalgorithm = \"HS256\"\nsecret = \"mdbtools-test-secret-0123456789abcdef\"\n";
    let text = access_config("capabilities = { writes = false }").replace(
        "[versions.v1.resources.shippers]\n",
        "[versions.v1.resources.shippers]\nwrites = [\"create\"]\nwrite_scope = \"shippers:write\"\n",
    ) + auth;
    let weak = dir.path().join("weak.toml");
    std::fs::write(&weak, text).unwrap();
    let out = portico(&["check"], &weak);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    for resource in ["orders", "order_details", "customers", "shippers"] {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("versions.v1.resources.{resource}:")))
            .unwrap_or_else(|| panic!("{resource} not named: {said}"));
        assert!(
            line.contains("ORDER BY (capabilities.order_by = false, probed at start) to read `")
                && line.contains("snapshot = {"),
            "{line}"
        );
    }
    assert!(
        said.contains("versions.v1.resources.shippers.writes")
            && said.contains("writes in transactions (capabilities.writes = false, declared)"),
        "{said}"
    );
}

/// What `portico check` printed, both streams.
fn printed(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// mdbtools cannot `GROUP BY`, so the key's duplicates are found by reading the keys in key
/// order from the snapshot: a key on `OrderID` alone is refused with the rows it shares.
#[test]
fn a_wrong_key_is_refused_where_the_driver_cannot_group() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = access_config(SNAPSHOT).replace(
        "key = [\"order_id\", \"product_id\"]",
        "key = [\"order_id\"]",
    );
    let config = dir.path().join("wrong.toml");
    std::fs::write(&config, wrong).unwrap();
    let out = portico(&["check"], &config);
    let said = printed(&out);
    assert!(!out.status.success(), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("versions.v1.resources.order_details.key:"))
        .unwrap_or_else(|| panic!("the key is not named: {said}"));
    assert!(
        line.contains(
            "the key `order_id` (column `OrderID`) is not unique in the data: 693 key value(s)"
        ) && line.contains("e.g. `10248` in 3 rows, `10249` in 2 rows, `10250` in 3 rows"),
        "{line}"
    );
    assert!(!said.contains("cannot prove the key unique"), "{said}");

    // The right keys are proven, not merely warned about.
    let right = dir.path().join("right.toml");
    std::fs::write(&right, access_config(SNAPSHOT)).unwrap();
    let out = portico(&["check"], &right);
    let said = printed(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("cannot prove the key unique"), "{said}");
}

/// mdbtools' catalog calls every column NOT NULL (and `introspect` writes `nullable = false`
/// from it), but `Orders.ShipRegion` holds NULLs: `check` names the field and the fix, whether
/// the file or the catalog says so.
#[test]
fn a_nullability_the_data_disproves_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let declared = "ship_region = { column = \"ShipRegion\", type = \"string\", nullable = true }";
    for (case, field) in [
        ("file", declared.replace("true", "false")),
        ("catalog", declared.replace(", nullable = true", "")),
    ] {
        let config = dir.path().join(format!("{case}.toml"));
        std::fs::write(&config, access_config(SNAPSHOT).replace(declared, &field)).unwrap();
        let out = portico(&["check"], &config);
        let said = printed(&out);
        assert!(!out.status.success(), "{case}: {said}");
        let line = said
            .lines()
            .find(|l| l.contains("versions.v1.resources.orders.fields.ship_region:"))
            .unwrap_or_else(|| panic!("{case}: ship_region is not named: {said}"));
        assert!(
            line.contains("but 507 of the 830 rows sampled hold NULL")
                && line.ends_with("set nullable = true"),
            "{case}: {line}"
        );
    }
}

/// Resources over the trap schema, the source `SOURCE` with `extra` settings.
fn trap_config(kind: Kind, connection_string: &str, extra: &str) -> String {
    let dialect = match kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mysql",
        _ => "sqlite",
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[sources.legacy]\nkind = \"odbc\"\n\
         connection_string = \"{connection_string}\"\ndialect = \"{dialect}\"\n{extra}\n{}",
        r#"
[versions.v1.resources.orders]
source = "legacy"
table = "Orders"
key = ["id"]
anonymous = true
cache_ttl = "0s"
[versions.v1.resources.orders.fields]
id = { column = "OrderID", type = "integer" }
customer_id = { column = "CustomerID", type = "string" }
order_date = { column = "OrderDate", type = "string" }
ship_postal_code = { column = "ShipPostalCode", type = "string", nullable = true }
freight = { column = "Freight", type = "number" }
ship_name = { column = "Ship Name", type = "string" }
amount = { column = "Freight", type = "decimal", column_type = "real", scale = 2 }

[versions.v1.resources.order_details]
source = "legacy"
table = "Order Details"
key = ["order_id", "product_id"]
anonymous = true
cache_ttl = "0s"
[versions.v1.resources.order_details.fields]
order_id = { column = "OrderID", type = "integer" }
product_id = { column = "ProductID", type = "integer" }
unit_price = { column = "UnitPrice", type = "number" }
quantity = { column = "Quantity", type = "integer" }
price = { column = "UnitPrice", type = "decimal", column_type = "real", scale = 2 }
discount = { column = "Discount", type = "number" }

[versions.v1.resources.customers]
source = "legacy"
table = "Customers"
key = ["id"]
anonymous = true
cache_ttl = "0s"
[versions.v1.resources.customers.fields]
id = { column = "CustomerID", type = "string" }
company_name = { column = "Company Name", type = "string" }
strasse = { column = "Straße", type = "string", nullable = true }
"#
    )
}

/// Over the trap schema, a snapshot of each table answers every listing and lookup exactly as
/// the same database does when the query is pushed down: filters, NULLs, sorts, keyset pages.
async fn snapshots_answer_as_pushdown_does(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    let pushed = Portico::spawn(&trap_config(kind, &connection_string, "")).await;
    let memory = Portico::spawn(&trap_config(kind, &connection_string, SNAPSHOT)).await;
    let listings = [
        "orders?limit=37",
        "orders?limit=50&sort=-freight",
        "orders?limit=50&sort=ship_postal_code,-id",
        "orders?limit=50&sort=-ship_postal_code",
        "orders?limit=40&customer_id=C007",
        "orders?limit=40&customer_id[in]=C001,C050,C091",
        "orders?limit=40&customer_id[ne]=C001&id[lt]=10300",
        "orders?limit=40&ship_postal_code[null]=true",
        "orders?limit=40&ship_postal_code[null]=false&ship_postal_code[gte]=30000&sort=ship_postal_code",
        "orders?limit=40&freight[gt]=900",
        "orders?limit=40&freight[lt]=10&sort=freight",
        "orders?limit=40&order_date[gte]=1996-01-01&sort=-order_date",
        "orders?limit=40&ship_name[prefix]=Ship%208",
        "order_details?limit=100",
        "order_details?limit=50&order_id=10300",
        "order_details?limit=50&sort=-quantity,unit_price",
        "order_details?limit=7&sort=-quantity,unit_price",
        "order_details?limit=50&sort=price,-discount",
        "order_details?limit=50&discount=0.05&price[lt]=20",
        "orders?limit=7&sort=freight",
        "orders?limit=40&amount=117.88",
        "orders?limit=40&amount[in]=79.19,117.88,158.38",
        "orders?limit=40&amount[gte]=117.88&amount[lt]=158.38&sort=-amount",
        "orders?limit=40&amount[ne]=117.88&amount[lte]=200",
        "customers?limit=10&sort=-strasse",
        "customers?limit=10&company_name[prefix]=Company%209",
    ];
    for listing in listings {
        let path = format!("/v1/{listing}");
        let expected = pushed.all_pages(&path).await;
        let got = memory.all_pages(&path).await;
        assert!(
            !expected.is_empty(),
            "{kind:?} GET {path}: no rows to compare"
        );
        assert_eq!(got.len(), expected.len(), "{kind:?} GET {path}: row counts");
        assert!(got == expected, "{kind:?} GET {path}: rows differ");
    }
    for lookup in [
        "orders/10248",
        "orders/1",
        "order_details/10248,18",
        "customers/C001",
        "customers/C999",
    ] {
        let path = format!("/v1/{lookup}");
        let (expected, got) = (pushed.get(&path).await, memory.get(&path).await);
        assert_eq!(got.status, expected.status, "{kind:?} GET {path}");
        assert_eq!(got.body, expected.body, "{kind:?} GET {path}");
    }
}

mod snapshots_answer_as_pushdown_does {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        snapshots_answer_as_pushdown_does(Kind::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() {
        snapshots_answer_as_pushdown_does(Kind::Postgres).await
    }

    #[tokio::test]
    async fn mariadb() {
        snapshots_answer_as_pushdown_does(Kind::MariaDb).await
    }
}
