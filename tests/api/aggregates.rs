//! Counts (`?count=exact|estimated`) and aggregates (`GET /{v}/{resource}/aggregate`) on
//! SQLite, PostgreSQL and MariaDB, over a small table holding every stored form an aggregate
//! must see through: a code map, `yyyymmdd` dates as text (with a `00000000` sentinel) and as
//! a number, a native DATE, decimals of 0.10 and 0.20 that drift when summed as doubles, a
//! text boolean, and a masked amount; under a portal token's row policy.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::fixture::Kind;
use crate::harness::{execute, fresh_database, Portico};
use crate::idp::{AUDIENCE, ISSUER};

/// Rows in `work_items`.
const ROWS: i64 = 240;

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

[cache]
default_ttl = "60s"

[sources.shop]
kind = "odbc"
dialect = "{dialect}"
connection_string = "{connection_string}"

[versions.v1.resources.work]
source = "shop"
table = "work_items"
key = ["id"]
max_limit = 1000
read_scope = "work:read"

[[versions.v1.resources.work.row_policies]]
name = "own-work"
unless_scope = "work:read:all"
condition = "cust = {{claims.customer_id}}"

[versions.v1.resources.work.fields]
id = {{ column = "id", type = "integer" }}
customer_id = {{ column = "cust", type = "string", column_type = "char(4)" }}
status = {{ column = "status", type = "string", column_type = "char(1)", codes = {{ O = "open", H = "held", C = "closed" }} }}
due_on = {{ column = "due_txt", type = "date", format = "yyyymmdd", column_type = "char(8)", null_values = ["00000000"] }}
planned_on = {{ column = "due_num", type = "date", format = "yyyymmdd", column_type = "integer", null_values = ["0"] }}
shipped_on = {{ column = "ship_date", type = "date", column_type = "date" }}
amount = {{ column = "amount", type = "decimal", column_type = "decimal(11,2)", scale = 2 }}
quantity = {{ column = "qty", type = "integer" }}
rush = {{ column = "rush", type = "boolean", column_type = "char(1)", true_value = "Y", false_value = "N" }}
noted_on = {{ column = "note", type = "date", format = "mm/dd/yyyy", column_type = "varchar(20)", null_values = [""] }}
cost = {{ column = "cost", type = "decimal", column_type = "decimal(11,2)", scale = 2, requires_scope = "work:read:cost" }}

[versions.v1.resources.lines]
source = "shop"
table = "work_lines"
key = ["id"]
max_limit = 1000
read_scope = "work:read"
parent = {{ resource = "work", field = "work_id" }}
aggregates = false

[versions.v1.resources.lines.fields]
id = {{ column = "id", type = "integer" }}
work_id = {{ column = "work_id", type = "integer" }}
hours = {{ column = "hours", type = "decimal", column_type = "decimal(7,2)", scale = 2 }}
"#,
        dialect = kind.dialect(),
        state = dir.join("state.sqlite3").display(),
    )
}

/// One generated row: what is stored, column by column.
struct Row {
    id: i64,
    cust: &'static str,
    status: &'static str,
    due: Option<(i64, i64, i64)>,
    amount: &'static str,
    qty: i64,
    rush: bool,
}

fn row(id: i64) -> Row {
    let day = id * 3;
    let due = (id % 17 != 0).then(|| (2026 + day / 360, 1 + (day % 360) / 30, 1 + day % 28));
    Row {
        id,
        cust: ["C1", "C2", "C3"][(id % 3) as usize],
        status: ["O", "H", "C"][((id / 3) % 3) as usize],
        due,
        amount: if id % 2 == 0 { "0.10" } else { "0.20" },
        qty: id % 5,
        rush: id % 4 == 0,
    }
}

fn load(kind: Kind, connection_string: &str) {
    execute(
        connection_string,
        "CREATE TABLE work_items (id INTEGER PRIMARY KEY, cust CHAR(4), status CHAR(1), \
         due_txt CHAR(8), due_num INTEGER, ship_date DATE, amount DECIMAL(11,2), qty INTEGER, \
         rush CHAR(1), note VARCHAR(20), cost DECIMAL(11,2))",
    );
    execute(
        connection_string,
        "CREATE TABLE work_lines (id INTEGER PRIMARY KEY, work_id INTEGER, hours DECIMAL(7,2))",
    );
    let values: Vec<String> = (1..=ROWS)
        .map(|id| {
            let r = row(id);
            let (text, number, date, us) = match r.due {
                Some((y, m, d)) => (
                    format!("'{y:04}{m:02}{d:02}'"),
                    format!("{y:04}{m:02}{d:02}"),
                    format!("'{y:04}-{m:02}-{d:02}'"),
                    format!("'{m:02}/{d:02}/{y:04}'"),
                ),
                None => ("'00000000'".into(), "0".into(), "NULL".into(), "''".into()),
            };
            // CHAR(4) padded as the legacy programs write it (SQLite keeps what it is given).
            format!(
                "({}, '{:<4}', '{}', {text}, {number}, {date}, {}, {}, '{}', {us}, 1.50)",
                r.id,
                r.cust,
                r.status,
                r.amount,
                r.qty,
                if r.rush { "Y" } else { "N" },
            )
        })
        .collect();
    execute(
        connection_string,
        &format!("INSERT INTO work_items VALUES {}", values.join(", ")),
    );
    let lines: Vec<String> = (1..=30)
        .map(|id| format!("({id}, {}, {}.25)", 1 + id % 3, id % 4))
        .collect();
    execute(
        connection_string,
        &format!("INSERT INTO work_lines VALUES {}", lines.join(", ")),
    );
    let _ = kind;
}

async fn serve(kind: Kind) -> (tempfile::TempDir, String, Portico) {
    serve_with(kind, "").await
}

/// `source_extra` is added to the source's settings (a snapshot).
async fn serve_with(kind: Kind, source_extra: &str) -> (tempfile::TempDir, String, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let connection_string = fresh_database(kind, dir.path());
    load(kind, &connection_string);
    let config = config(kind, &connection_string, dir.path()).replacen(
        "\n[versions.v1.resources.work]",
        &format!("{source_extra}\n\n[versions.v1.resources.work]"),
        1,
    );
    let app = Portico::spawn(&config).await;
    (dir, connection_string, app)
}

fn all() -> String {
    hs_token("ops", json!({"scope": "work:read work:read:all"}))
}

fn portal(customer: &str) -> String {
    hs_token(
        "portal",
        json!({"scope": "work:read", "customer_id": customer}),
    )
}

/// `total` is the rows matching the filters and the row policy, the same on every page;
/// without `count` the body is as before; a bad value is a 400 at `count`.
async fn counts_cover_the_filters_and_the_callers_rows(kind: Kind) {
    let (_dir, _cs, app) = serve(kind).await;
    let token = all();
    let mut next = "/v1/work?count=exact&status=open&limit=7".to_string();
    let mut pages = 0;
    let mut rows = 0;
    loop {
        let page = app.get_as(&next, Some(&token)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let expected = (1..=ROWS).filter(|&i| row(i).status == "O").count();
        assert_eq!(page.body["total"], expected as i64, "{}", page.body);
        assert_eq!(page.body["total_estimated"], false);
        rows += page.body["data"].as_array().unwrap().len();
        pages += 1;
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                next = format!("/v1/work?count=exact&status=open&limit=7&cursor={cursor}")
            }
            None => break,
        }
    }
    assert!(pages > 1);
    assert_eq!(rows, (1..=ROWS).filter(|&i| row(i).status == "O").count());

    let plain = app.get_as("/v1/work?limit=3", Some(&token)).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.get("total").is_none() && plain.body.get("total_estimated").is_none());

    // A portal token counts its own rows only.
    let own = app
        .get_as("/v1/work?count=exact&limit=1", Some(&portal("C2")))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        own.body["total"],
        (1..=ROWS).filter(|&i| row(i).cust == "C2").count() as i64
    );
    // Estimated on a filtered listing (a row policy is a filter) is counted.
    let own = app
        .get_as("/v1/work?count=estimated&limit=1", Some(&portal("C2")))
        .await;
    assert_eq!(own.body["total_estimated"], false, "{}", own.body);
    assert_eq!(
        own.body["total"],
        (1..=ROWS).filter(|&i| row(i).cust == "C2").count() as i64
    );

    // A child listing counts the parent's children.
    let lines = app
        .get_as("/v1/work/2/lines?count=exact&limit=2", Some(&token))
        .await;
    assert_eq!(lines.status, 200, "{}", lines.body);
    assert_eq!(
        lines.body["total"],
        (1..=30).filter(|i| 1 + i % 3 == 2).count() as i64
    );

    let bad = app.get_as("/v1/work?count=yes", Some(&token)).await;
    assert_eq!(bad.problem(400)["parameter"], "count");
}

/// On PostgreSQL, `count=estimated` of the unfiltered table reads `reltuples` once the table
/// was analyzed; before (-1), and with a filter, it counts.
#[tokio::test]
async fn estimated_counts_read_postgres_statistics_only_unfiltered() {
    let (_dir, cs, app) = serve(Kind::Postgres).await;
    let token = all();
    let before = app
        .get_as("/v1/work?count=estimated&limit=1", Some(&token))
        .await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(before.body["total"], ROWS);
    execute(&cs, "ANALYZE work_items");
    let after = app
        .get_as("/v1/work?count=estimated&limit=2", Some(&token))
        .await;
    assert_eq!(after.body["total_estimated"], true, "{}", after.body);
    assert_eq!(after.body["total"], ROWS);
    let filtered = app
        .get_as("/v1/work?count=estimated&limit=2&status=held", Some(&token))
        .await;
    assert_eq!(filtered.body["total_estimated"], false, "{}", filtered.body);
    assert_eq!(
        filtered.body["total"],
        (1..=ROWS).filter(|&i| row(i).status == "H").count() as i64
    );
}

/// What paging through the list and computing in the test gives: groups keyed by the
/// rendered group values.
fn expected_groups(
    rows: &[Value],
    key: impl Fn(&Value) -> Value,
) -> BTreeMap<String, (i64, i64, Option<String>, Option<String>)> {
    let mut out: BTreeMap<String, (i64, i64, Option<String>, Option<String>)> = BTreeMap::new();
    for r in rows {
        let entry = out.entry(key(r).to_string()).or_insert((0, 0, None, None));
        entry.0 += 1;
        let cents = r["amount"]
            .as_str()
            .unwrap()
            .replace('.', "")
            .parse::<i64>()
            .unwrap();
        entry.1 += cents;
        if let Some(due) = r["due_on"].as_str() {
            if entry.2.as_deref().is_none_or(|m| due < m) {
                entry.2 = Some(due.to_string());
            }
            if entry.3.as_deref().is_none_or(|m| due > m) {
                entry.3 = Some(due.to_string());
            }
        }
    }
    out
}

fn cents(total: i64) -> String {
    format!("{}.{:02}", total / 100, total % 100)
}

/// Grouped by a code field, by month of `yyyymmdd` text and number and of a native date,
/// summed to the cent, min and max dates: equal to what the list's rows give; a portal
/// token's aggregate covers its rows only.
async fn aggregates_equal_what_the_list_gives(kind: Kind) {
    let (_dir, _cs, app) = serve(kind).await;
    aggregates_match_the_list(&app).await;
}

/// A source served from in-memory snapshots counts and aggregates in memory, with the same
/// answers as the SQL pushed down.
#[tokio::test]
async fn a_snapshot_source_counts_and_aggregates_in_memory() {
    let (_dir, _cs, app) =
        serve_with(Kind::Sqlite, "snapshot = { max_rows = 1000, ttl = \"5m\" }").await;
    aggregates_match_the_list(&app).await;
    let own = app
        .get_as(
            "/v1/work?count=exact&limit=1&status=held",
            Some(&portal("C2")),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        own.body["total"],
        (1..=ROWS)
            .filter(|&i| row(i).cust == "C2" && row(i).status == "H")
            .count() as i64
    );
}

async fn aggregates_match_the_list(app: &Portico) {
    let token = all();
    let rows = app.all_pages_as("/v1/work?limit=100", Some(&token)).await;
    assert_eq!(rows.len() as i64, ROWS);
    let check =
        |answer: &Value,
         name: &str,
         expected: BTreeMap<String, (i64, i64, Option<String>, Option<String>)>| {
            let data = answer["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{answer}"));
            assert_eq!(answer["truncated"], false, "{answer}");
            assert_eq!(data.len(), expected.len(), "{answer}");
            for group in data {
                let key = group["group"][name].to_string();
                let (count, total, min, max) = expected
                    .get(&key)
                    .unwrap_or_else(|| panic!("unexpected group {key}: {answer}"));
                assert_eq!(group["count"], *count, "{group}");
                assert_eq!(group["sum"]["amount"], cents(*total), "{group}");
                assert_eq!(group["min"]["due_on"], json!(min), "{group}");
                assert_eq!(group["max"]["due_on"], json!(max), "{group}");
            }
        };
    let measures = "count=true&sum=amount&min=due_on&max=due_on";

    let by_status = app
        .get_as(
            &format!("/v1/work/aggregate?group_by=status&{measures}"),
            Some(&token),
        )
        .await;
    assert_eq!(by_status.status, 200, "{}", by_status.body);
    check(
        &by_status.body,
        "status",
        expected_groups(&rows, |r| r["status"].clone()),
    );
    assert_eq!(
        by_status.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group"]["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        // Sorted by the stored code: C, H, O.
        ["closed", "held", "open"]
    );

    // Months of yyyymmdd text: the sentinel 00000000 is the null group.
    let month = |r: &Value| match r["due_on"].as_str() {
        Some(d) => json!(d[..7]),
        None => Value::Null,
    };
    let by_month = app
        .get_as(
            &format!("/v1/work/aggregate?group_by=due_on:month&{measures}"),
            Some(&token),
        )
        .await;
    assert_eq!(by_month.status, 200, "{}", by_month.body);
    check(&by_month.body, "due_on", expected_groups(&rows, month));
    assert!(
        by_month.body["data"][0]["group"]["due_on"].is_null(),
        "null first"
    );

    // The same months of the number and of the native date.
    for field in ["planned_on", "shipped_on"] {
        let answer = app
            .get_as(
                &format!("/v1/work/aggregate?group_by={field}:month&{measures}"),
                Some(&token),
            )
            .await;
        assert_eq!(answer.status, 200, "{field}: {}", answer.body);
        check(&answer.body, field, expected_groups(&rows, month));
    }
    let years = app
        .get_as(
            "/v1/work/aggregate?group_by=planned_on:year,status&count=true",
            Some(&token),
        )
        .await;
    assert_eq!(years.status, 200, "{}", years.body);
    let total: i64 = years.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, ROWS);
    assert!(years.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["group"]["planned_on"] == "2026"));

    // Filters apply, and a sum of 0.10 and 0.20 many times is exact.
    let filtered = app
        .get_as(
            "/v1/work/aggregate?rush=false&count=true&sum=amount,quantity&avg=amount",
            Some(&token),
        )
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.body);
    let kept: Vec<&Value> = rows.iter().filter(|r| r["rush"] == false).collect();
    let group = &filtered.body["data"][0];
    assert_eq!(group["count"], kept.len() as i64);
    let amount: i64 = kept
        .iter()
        .map(|r| {
            r["amount"]
                .as_str()
                .unwrap()
                .replace('.', "")
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(group["sum"]["amount"], cents(amount), "{group}");
    let quantity: i64 = kept.iter().map(|r| r["quantity"].as_i64().unwrap()).sum();
    assert_eq!(group["sum"]["quantity"], quantity.to_string(), "{group}");
    assert!(
        group["avg"]["amount"].as_str().unwrap().starts_with("0.1"),
        "{group}"
    );

    // The portal token's aggregate covers its rows only.
    let own = app
        .get_as(
            "/v1/work/aggregate?group_by=customer_id&count=true",
            Some(&portal("C3")),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        own.body["data"],
        json!([{ "group": { "customer_id": "C3" }, "count": rows.iter().filter(|r| r["customer_id"] == "C3").count() }])
    );

    // A limit on groups says the answer was cut.
    let cut = app
        .get_as(
            "/v1/work/aggregate?group_by=id&count=true&limit=5",
            Some(&token),
        )
        .await;
    assert_eq!(cut.body["truncated"], true, "{}", cut.body);
    assert_eq!(cut.body["data"].as_array().unwrap().len(), 5);
}

/// Bad parameters are 400s naming the parameter; a masked field is refused like an unknown
/// one, without its value.
async fn aggregate_parameters_are_checked(kind: Kind) {
    let (_dir, _cs, app) = serve(kind).await;
    let token = all();
    for (query, parameter, words) in [
        ("group_by=status", "count", "required"),
        (
            "group_by=cost&count=true",
            "group_by",
            "unknown field `cost`",
        ),
        ("sum=cost", "sum", "unknown field `cost`"),
        ("min=cost", "min", "unknown field `cost`"),
        ("group_by=nope&count=true", "group_by", "unknown field"),
        ("sum=status", "sum", "summed"),
        ("max=status", "max", "sort"),
        (
            "group_by=status:month&count=true",
            "group_by",
            "date fields",
        ),
        ("group_by=due_on:week&count=true", "group_by", "buckets"),
        (
            "group_by=noted_on:month&count=true",
            "group_by",
            "MM/DD/YYYY",
        ),
        ("min=noted_on", "min", "sort"),
        ("count=maybe", "count", "true or false"),
        ("count=true&limit=0", "limit", "between"),
        ("count=true&sort=id", "sort", "does not apply"),
        ("count=true&status=pending", "status", "one of"),
    ] {
        let answer = app
            .get_as(&format!("/v1/work/aggregate?{query}"), Some(&token))
            .await;
        let problem = answer.problem(400);
        assert_eq!(problem["parameter"], parameter, "{query}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(words),
            "{query}: {problem}"
        );
        assert!(!problem.to_string().contains("1.50"), "{problem}");
    }
    // With the scope that unmasks it, the cost is summed.
    let cost = hs_token(
        "cost",
        json!({"scope": "work:read work:read:all work:read:cost"}),
    );
    let answer = app.get_as("/v1/work/aggregate?sum=cost", Some(&cost)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["data"][0]["sum"]["cost"], cents(150 * ROWS));
}

/// `aggregates = false` gives the path back to the keys: `/v1/lines/aggregate` is a row
/// lookup, and the document has no aggregate operation for `lines`.
#[tokio::test]
async fn aggregates_off_gives_the_path_back_to_keys() {
    let (_dir, _cs, app) = serve(Kind::Sqlite).await;
    let token = all();
    let lookup = app.get_as("/v1/lines/aggregate", Some(&token)).await;
    let problem = lookup.problem(400);
    assert_eq!(problem["parameter"], "id", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("path key"),
        "{problem}"
    );
    let grouped = app
        .get_as("/v1/work/aggregate?count=true", Some(&token))
        .await;
    assert_eq!(grouped.body["data"][0]["count"], ROWS, "{}", grouped.body);
    let document = app.get("/openapi/v1.json").await;
    assert_eq!(document.status, 200);
    let paths = document.body["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/work/aggregate"));
    assert!(!paths.contains_key("/v1/lines/aggregate"));
    let operation = &paths["/v1/work/aggregate"]["get"];
    let group_by = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "group_by")
        .unwrap();
    let allowed = group_by["schema"]["items"]["enum"].as_array().unwrap();
    assert!(allowed.contains(&json!("due_on:month")) && allowed.contains(&json!("status")));
    assert!(
        !allowed.contains(&json!("noted_on:month")),
        "MM/DD/YYYY is not bucketed"
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
    counts_cover_the_filters_and_the_callers_rows,
    aggregates_equal_what_the_list_gives,
    aggregate_parameters_are_checked,
);

/// The T-SQL of a count, an estimate and an aggregate, as SQL Server receives it: one
/// `COUNT(*)` under the filters, `sys.partitions` for an unfiltered estimate, and one GROUP BY
/// over a derived table (no GROUP BY by position, which T-SQL lacks), `TOP` for the groups.
#[tokio::test(flavor = "multi_thread")]
async fn tsql_counts_and_aggregates_send_the_exact_statements() {
    use crate::tds::{column, Cell, Collation, Reply, ResultSet, SqlType, TdsFixture};
    let fixture = TdsFixture::start("13.0.5026.0", |request| {
        let sql = request.sql();
        let one = |name: &str, ty: SqlType, cell: Cell| {
            Reply::Rows(vec![ResultSet {
                columns: vec![column(name, ty)],
                rows: vec![vec![cell]],
            }])
        };
        if sql.contains("sys.partitions") {
            one("n", SqlType::BigInt, Cell::Int(1234))
        } else if sql.starts_with("SELECT COUNT(*)") {
            one("n", SqlType::Int, Cell::Int(2))
        } else if sql.contains("GROUP BY") {
            Reply::Rows(vec![ResultSet {
                columns: vec![
                    column("g0", SqlType::Char(1, Collation::Cp1252)),
                    column("g1", SqlType::Char(7, Collation::Cp1252)),
                    column("n", SqlType::Int),
                    column("s", SqlType::Decimal(38, 4)),
                    column("c", SqlType::Int),
                    column("m", SqlType::Date),
                ],
                rows: vec![vec![
                    Cell::Text("O".into()),
                    Cell::Text("2024-02".into()),
                    Cell::Int(3),
                    Cell::Decimal("31.5000"),
                    Cell::Int(3),
                    Cell::Date("2024-02-29"),
                ]],
            }])
        } else {
            Reply::Rows(vec![ResultSet {
                columns: vec![
                    column("JOB_NO", SqlType::Char(8, Collation::Cp1252)),
                    column("STATUS", SqlType::Char(1, Collation::Cp1252)),
                    column("DUE_DT", SqlType::Date),
                    column("AMOUNT", SqlType::Decimal(17, 2)),
                ],
                rows: vec![vec![
                    Cell::Text("J001    ".into()),
                    Cell::Text("O".into()),
                    Cell::Date("2024-02-29"),
                    Cell::Decimal("10.50"),
                ]],
            }])
        }
    })
    .await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[sources.erp]
kind = "mssql"
connection_string = "{cs}"

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
"#,
        cs = fixture.ado_string(),
    );
    let app = Portico::spawn(&config).await;
    let counted = app.get("/v1/jobs?count=exact&status=open&limit=5").await;
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert_eq!(counted.body["total"], 2);
    let estimated = app.get("/v1/jobs?count=estimated&limit=5").await;
    assert_eq!(estimated.body["total"], 1234, "{}", estimated.body);
    assert_eq!(estimated.body["total_estimated"], true);
    let grouped = app
        .get("/v1/jobs/aggregate?group_by=status,due_on:month&count=true&avg=amount&min=due_on&status[in]=open,held")
        .await;
    assert_eq!(grouped.status, 200, "{}", grouped.body);
    assert_eq!(
        grouped.body,
        json!({"data": [{"group": {"status": "open", "due_on": "2024-02"}, "count": 3,
                          "avg": {"amount": "10.5000"}, "min": {"due_on": "2024-02-29"}}],
               "truncated": false})
    );
    let sql: Vec<String> = fixture
        .requests()
        .iter()
        .map(|r| r.sql().to_string())
        .filter(|s| s.contains("JOBS"))
        .collect();
    assert!(
        sql.contains(
            &"SELECT COUNT(*) FROM [dbo].[JOBS] WHERE ([STATUS] = CAST(@P1 AS varchar(8000)))"
                .to_string()
        ),
        "{sql:#?}"
    );
    let estimate: Vec<String> = fixture
        .requests()
        .iter()
        .map(|r| r.sql().to_string())
        .filter(|s| s.contains("sys.partitions"))
        .collect();
    assert_eq!(
        estimate,
        [
            "SELECT CAST(COALESCE(SUM(p.rows), -1) AS bigint) FROM sys.partitions p \
          WHERE p.object_id = OBJECT_ID(CAST(@P1 AS varchar(8000))) AND p.index_id IN (0, 1)"
        ]
    );
    assert!(
        sql.contains(
            &"SELECT TOP (101) portico_g0, portico_g1, COUNT(*), \
              SUM(portico_m0), COUNT(portico_m1), \
              MIN(portico_m2) FROM (SELECT [STATUS] AS portico_g0, \
              CONVERT(char(7), [DUE_DT], 126) AS portico_g1, [AMOUNT] AS portico_m0, \
              [AMOUNT] AS portico_m1, [DUE_DT] AS portico_m2 FROM [dbo].[JOBS] \
              WHERE ([STATUS] IN (CAST(@P1 AS varchar(8000)), CAST(@P2 AS varchar(8000))))) \
              portico_a GROUP BY portico_g0, portico_g1 ORDER BY portico_g0, portico_g1"
                .to_string()
        ),
        "{sql:#?}"
    );
}
