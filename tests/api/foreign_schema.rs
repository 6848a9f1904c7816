//! A schema nobody here wrote, served right the first time: `portico introspect` on the trap
//! schema (`support/traps`), `check` accepts what it printed, `serve --listen` serves it, and
//! every resource pages every row exactly once, compared with direct SQL.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::cli::http_get;
use crate::fixture::Kind;
use crate::harness::{
    execute, fresh_database, logged_address, query_text, trap_database, KillOnDrop,
};

fn portico() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portico"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `portico introspect` over the trap schema of `kind`: the starter it printed (written to
/// `starter.toml` in `dir`), parsed, and its stderr.
fn introspect(kind: Kind, dir: &Path, connection_string: &str) -> (String, toml::Table, String) {
    let source = dir.join("source.toml");
    std::fs::write(
        &source,
        format!(
            "[sources.northwind]\nkind = \"odbc\"\ndialect = \"{}\"\nconnection_string = {}\n",
            kind.dialect(),
            toml::Value::String(connection_string.to_string())
        ),
    )
    .unwrap();
    let out = portico()
        .args(["introspect", "--source", "northwind", "--config"])
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "introspect: {}", stderr(&out));
    let warnings = stderr(&out);
    let starter = String::from_utf8(out.stdout).unwrap();
    std::fs::write(dir.join("starter.toml"), &starter).unwrap();
    let parsed = toml::from_str(&starter).unwrap_or_else(|e| panic!("{e}\n{starter}"));
    (starter, parsed, warnings)
}

/// `portico serve --config FILE --listen 127.0.0.1:0`: the process and the address it logged.
/// The rest of its log is drained, so the server never blocks on a full pipe.
fn serve(config: &Path) -> (KillOnDrop, String) {
    let mut child = portico()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("PORTICO_LOG", "info")
        .env_remove("PORTICO_LISTEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = KillOnDrop(child);
    let address = loop {
        let line = lines
            .next()
            .expect("portico serve logs its address")
            .unwrap();
        if let Some(address) = logged_address(&line) {
            break address;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, address)
}

/// Every row of `/v1/{resource}`, `limit` rows a page, following `next_cursor`.
fn all_pages(address: &str, resource: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut path = format!("/v1/{resource}?limit={limit}");
    for _ in 0..10_000 {
        let (status, body) = http_get(address, &path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        rows.extend(body["data"].as_array().expect("data").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/{resource}?limit={limit}&cursor={cursor}"),
            None => return rows,
        }
    }
    panic!("paging {resource} did not end");
}

/// One field of the starter: its column, API type and scale.
struct FieldSpec {
    name: String,
    column: String,
    api_type: String,
    scale: Option<usize>,
}

fn fields(resource: &toml::Table) -> Vec<FieldSpec> {
    resource["fields"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, spec)| FieldSpec {
            name: name.clone(),
            column: spec["column"].as_str().unwrap().to_string(),
            api_type: spec["type"].as_str().unwrap().to_string(),
            scale: spec
                .get("scale")
                .and_then(toml::Value::as_integer)
                .map(|s| s as usize),
        })
        .collect()
}

/// A value in one spelling for both sides: integers as integers, decimals to their scale,
/// numbers to 6 places, text as it is.
fn normalized(field: &FieldSpec, text: Option<&str>) -> Option<String> {
    let text = text?;
    Some(match field.api_type.as_str() {
        "integer" => text.trim().parse::<i64>().unwrap().to_string(),
        "decimal" => format!(
            "{:.*}",
            field.scale.unwrap_or(0),
            text.trim().parse::<f64>().unwrap()
        ),
        "number" => format!("{:.6}", text.trim().parse::<f64>().unwrap()),
        _ => text.to_string(),
    })
}

fn api_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The rows of a resource's table read directly, in the API's field order, normalized.
fn direct_rows(
    kind: Kind,
    connection_string: &str,
    table: &str,
    fields: &[FieldSpec],
) -> Vec<Vec<Option<String>>> {
    let columns: Vec<String> = fields.iter().map(|f| kind.quote(&f.column)).collect();
    let sql = format!("SELECT {} FROM {}", columns.join(", "), kind.quote(table));
    let mut rows: Vec<Vec<Option<String>>> = query_text(connection_string, &sql)
        .into_iter()
        .map(|row| {
            fields
                .iter()
                .zip(row)
                .map(|(f, v)| normalized(f, v.as_deref()))
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

fn the_starter_serves_every_row_exactly_once(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    let (starter, parsed, warnings) = introspect(kind, dir.path(), &connection_string);

    let out = portico()
        .args(["check", "--config"])
        .arg(dir.path().join("starter.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check refuses what introspect printed: {}",
        stderr(&out)
    );

    let (_server, address) = serve(&dir.path().join("starter.toml"));
    let resources = parsed["versions"]["v1"]["resources"].as_table().unwrap();
    for (name, resource) in resources {
        let resource = resource.as_table().unwrap();
        let fields = fields(resource);
        let mut paged: Vec<Vec<Option<String>>> = all_pages(&address, name, 50)
            .iter()
            .map(|row| {
                fields
                    .iter()
                    .map(|f| normalized(f, api_text(&row[&f.name]).as_deref()))
                    .collect()
            })
            .collect();
        paged.sort();
        let table = resource["table"].as_str().unwrap();
        let direct = direct_rows(kind, &connection_string, table, &fields);
        if paged != direct {
            let mut counts: BTreeMap<&Vec<Option<String>>, i64> = BTreeMap::new();
            for row in &paged {
                *counts.entry(row).or_default() += 1;
            }
            for row in &direct {
                *counts.entry(row).or_default() -= 1;
            }
            let wrong: Vec<_> = counts.iter().filter(|(_, n)| **n != 0).take(5).collect();
            panic!(
                "{kind:?} {name}: paging gave {} rows, the table holds {}; first differences \
                 (row, paged minus held): {wrong:?}",
                paged.len(),
                direct.len()
            );
        }
        assert!(direct.len() > 50, "{name} spans pages");
    }

    // Keys: the unique index where there is no primary key; no key at all, nothing served.
    let mut names: Vec<&String> = resources.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["customers", "order_details", "orders"],
        "served resources:\n{starter}"
    );
    assert_eq!(
        resources["order_details"]["key"],
        toml::Value::Array(vec!["order_id".into(), "product_id".into()]),
        "{starter}"
    );
    assert!(
        starter.contains("# NOT SERVED: table \"Umsätze\" has no key"),
        "{starter}"
    );
    assert!(
        warnings.contains("table \"Umsätze\" has no key"),
        "introspect's stderr names the table: {warnings}"
    );
    // Readable, transliterated names over the columns as the database spells them.
    for (resource, field, column) in [
        ("customers", "customer_id", "CustomerID"),
        ("customers", "company_name", "Company Name"),
        ("customers", "strasse", "Straße"),
        ("orders", "ship_postal_code", "ShipPostalCode"),
        ("orders", "order_date", "OrderDate"),
        ("orders", "ship_name", "Ship Name"),
        ("order_details", "unit_price", "UnitPrice"),
    ] {
        assert_eq!(
            resources[resource]["fields"][field]["column"].as_str(),
            Some(column),
            "{resource}.{field}:\n{starter}"
        );
    }
    assert!(
        starter.contains("# [versions.v1.resources.umsaetze]"),
        "{starter}"
    );
    // Money held as a float: a decimal with 2 places over the same column.
    let freight = &resources["orders"]["fields"]["freight"];
    assert_eq!(freight["type"].as_str(), Some("decimal"), "{starter}");
    assert_eq!(freight["scale"].as_integer(), Some(2), "{starter}");
    assert!(
        starter.contains("# skipped: column \"Photo\", binary"),
        "{starter}"
    );
    assert!(
        resources["customers"]["fields"].get("photo").is_none(),
        "{starter}"
    );

    // Freight served with exactly two places.
    for row in all_pages(&address, "orders", 500) {
        if let Some(freight) = row["freight"].as_str() {
            let (_, places) = freight.split_once('.').expect("a point");
            assert_eq!(places.len(), 2, "{row}");
        }
    }
    // A key lookup returns the one row.
    let (status, row) = http_get(&address, "/v1/order_details/10248,18", None);
    assert_eq!(status, 200, "{row}");
    assert_eq!(
        (row["order_id"].as_i64(), row["product_id"].as_i64()),
        (Some(10248), Some(18))
    );
    let held = query_text(
        &connection_string,
        &format!(
            "SELECT {} FROM {} WHERE {} = 10248 AND {} = 18",
            kind.quote("Quantity"),
            kind.quote("Order Details"),
            kind.quote("OrderID"),
            kind.quote("ProductID")
        ),
    );
    assert_eq!(held.len(), 1);
    assert_eq!(Some(row["quantity"].to_string()), held[0][0]);
    let (status, _) = http_get(&address, "/v1/order_details/10248", None);
    assert_ne!(status, 200, "half a key finds no row");
    let (status, body) = http_get(&address, "/v1/umsaetze", None);
    assert_eq!(status, 404, "a table without a key is not served: {body}");
}

#[test]
fn the_starter_serves_every_row_exactly_once_on_sqlite() {
    the_starter_serves_every_row_exactly_once(Kind::Sqlite);
}

#[test]
fn the_starter_serves_every_row_exactly_once_on_postgres() {
    the_starter_serves_every_row_exactly_once(Kind::Postgres);
}

#[test]
fn the_starter_serves_every_row_exactly_once_on_mariadb() {
    the_starter_serves_every_row_exactly_once(Kind::MariaDb);
}

#[test]
fn serve_listens_where_the_flag_or_the_environment_says() {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(Kind::Sqlite, dir.path());
    introspect(Kind::Sqlite, dir.path(), &connection_string);
    let config = dir.path().join("starter.toml");
    // The file says 127.0.0.1:8080; the variable and the flag override it, the flag first.
    let port = crate::servers::free_port();
    let mut child = KillOnDrop(
        portico()
            .args(["serve", "--config"])
            .arg(&config)
            .env("PORTICO_LOG", "info")
            .env("PORTICO_LISTEN", format!("127.0.0.1:{port}"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("serve logs its address").unwrap();
        if let Some(address) = logged_address(&line) {
            break address;
        }
    };
    assert_eq!(address, format!("127.0.0.1:{port}"));
    drop(child);

    let (_server, address) = serve(&config);
    assert!(
        !address.ends_with(":8080") && !address.ends_with(":0"),
        "{address}"
    );
    assert_eq!(http_get(&address, "/v1/orders?limit=1", None).0, 200);

    // A bad address is an error that names where it came from.
    for (flag, variable, named) in [
        (Some("localhost"), None, "--listen `localhost`: has no port"),
        (
            None,
            Some("127.0.0.1:http"),
            "PORTICO_LISTEN `127.0.0.1:http`",
        ),
        (
            Some("127.0.0.1:99999"),
            Some("127.0.0.1:0"),
            "--listen `127.0.0.1:99999`",
        ),
    ] {
        let mut command = portico();
        command.args(["serve", "--config"]).arg(&config);
        if let Some(flag) = flag {
            command.args(["--listen", flag]);
        }
        match variable {
            Some(v) => command.env("PORTICO_LISTEN", v),
            None => command.env_remove("PORTICO_LISTEN"),
        };
        let out = command.output().unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(named), "{named}: {}", stderr(&out));
    }
}

/// A table and a column whose own names contain `.`: `introspect` skips both with the reason
/// (a configuration reads every `.` as a qualifier), and `check` on a configuration that names
/// them says at the table's and the field's location how the name was read.
fn names_with_a_dot_are_skipped_and_explained(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = trap_database(kind, dir.path());
    let q = |name: &str| kind.quote(name);
    for statement in [
        format!(
            "CREATE TABLE {} ({} integer PRIMARY KEY, {} varchar(20))",
            q("Kunden.Alt"),
            q("ID"),
            q("Name")
        ),
        format!(
            "CREATE TABLE {} ({} integer PRIMARY KEY, {} varchar(20))",
            q("Preise"),
            q("ID"),
            q("Preis.Netto")
        ),
        format!("INSERT INTO {} VALUES (1, 'a')", q("Kunden.Alt")),
        format!("INSERT INTO {} VALUES (1, '9.50')", q("Preise")),
    ] {
        execute(&connection_string, &statement);
    }
    let (starter, parsed, warnings) = introspect(kind, dir.path(), &connection_string);
    assert!(
        starter.contains("# skipped: table \"Kunden.Alt\", its name contains `.`"),
        "{starter}"
    );
    assert!(
        starter.contains("# skipped: column \"Preis.Netto\", its name contains `.`"),
        "{starter}"
    );
    assert!(
        warnings.contains("table \"Kunden.Alt\" is skipped"),
        "{warnings}"
    );
    let resources = parsed["versions"]["v1"]["resources"].as_table().unwrap();
    assert!(resources.get("kunden_alt").is_none(), "{starter}");
    assert_eq!(
        resources["preise"]["fields"].as_table().unwrap().len(),
        1,
        "{starter}"
    );
    let out = portico()
        .args(["check", "--config"])
        .arg(dir.path().join("starter.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Named by hand, each is explained where it is written.
    let source = std::fs::read_to_string(dir.path().join("source.toml")).unwrap();
    let config = format!(
        r#"{source}
[versions.v1.resources.kunden]
source = "northwind"
table = "Kunden.Alt"
key = ["id"]
anonymous = true
[versions.v1.resources.kunden.fields]
id = {{ column = "ID", type = "integer" }}

[versions.v1.resources.preise]
source = "northwind"
table = "Preise"
key = ["id"]
anonymous = true
[versions.v1.resources.preise.fields]
id = {{ column = "ID", type = "integer" }}
netto = {{ column = "Preis.Netto", type = "string" }}
"#
    );
    let path = dir.path().join("dotted.toml");
    std::fs::write(&path, config).unwrap();
    let out = portico()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "versions.v1.resources.kunden.table: `Kunden.Alt` is read as table `Alt` of schema \
             `Kunden` (a `.` in a configured name is a qualifier)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "versions.v1.resources.preise.fields.netto: column `Preis.Netto` is read as column \
             `Netto` of `Preis` (a `.` in a configured name is a qualifier), which is not in \
             table `Preise`"
        ),
        "{text}"
    );
}

#[test]
fn names_with_a_dot_are_skipped_and_explained_on_sqlite() {
    names_with_a_dot_are_skipped_and_explained(Kind::Sqlite);
}

#[test]
fn names_with_a_dot_are_skipped_and_explained_on_postgres() {
    names_with_a_dot_are_skipped_and_explained(Kind::Postgres);
}

#[test]
fn names_with_a_dot_are_skipped_and_explained_on_mariadb() {
    names_with_a_dot_are_skipped_and_explained(Kind::MariaDb);
}

/// A unique index with a WHERE clause holds only for the rows it covers, so it is no key: the
/// drivers of PostgreSQL and SQLite leave SQLStatistics' FILTER_CONDITION empty, and the first
/// introspect took such an index as the key (`check` caught it only when the data had
/// duplicates outside the index).
fn a_partial_unique_index_is_no_key(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = fresh_database(kind, dir.path());
    for statement in [
        "CREATE TABLE partial_u (a integer NOT NULL, b varchar(10))",
        "CREATE UNIQUE INDEX partial_u_a ON partial_u (a) WHERE a > 0",
        "INSERT INTO partial_u VALUES (1, 'x'), (-1, 'y'), (-1, 'z')",
        "CREATE TABLE whole_u (a integer NOT NULL, b varchar(10))",
        "CREATE UNIQUE INDEX whole_u_a ON whole_u (a)",
        "INSERT INTO whole_u VALUES (1, 'x'), (2, 'y')",
    ] {
        execute(&connection_string, statement);
    }
    let (starter, parsed, warnings) = introspect(kind, dir.path(), &connection_string);
    let resources = parsed["versions"]["v1"]["resources"].as_table().unwrap();
    assert!(
        !resources.contains_key("partial_u"),
        "a partial index served as the key:\n{starter}"
    );
    assert!(warnings.contains("\"partial_u\" has no key"), "{warnings}");
    assert_eq!(
        resources["whole_u"]["key"].as_array().unwrap(),
        &vec![toml::Value::String("a".into())],
        "{starter}"
    );
}

#[test]
fn a_partial_unique_index_is_no_key_on_sqlite() {
    a_partial_unique_index_is_no_key(Kind::Sqlite);
}

#[test]
fn a_partial_unique_index_is_no_key_on_postgres() {
    a_partial_unique_index_is_no_key(Kind::Postgres);
}
