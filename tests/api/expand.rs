//! Related rows (`relations`, `?expand=`) on SQLite, PostgreSQL and MariaDB over the shared
//! fixture plus a customer table: one batched read per relation per page, the related
//! resource's own scope, row policies and masks inside the expansion, the refusals, and cached
//! expanded answers that follow writes to the related resource. The exact T-SQL of the batched
//! reads is checked against the TDS fixture.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth::{hs_token, SECRET};
use crate::fixture::{self, Kind};
use crate::harness::{execute, fresh_database, Portico};
use crate::idp::{AUDIENCE, ISSUER};

const QUERIES: &str = "portico_source_queries_total{source=\"legacy\"}";

/// Customers C000 to C005 exist; the fixture's jobs of C006 have none.
const CUSTOMERS: usize = 6;

fn config(kind: Kind, connection_string: &str) -> String {
    let fixture = fixture::config(kind, connection_string, "");
    // The fixture's jobs and operations behind scopes and a portal policy, with relations.
    let fixture = fixture
        .replace(
            "key = [\"id\"]\nanonymous = true\nmax_limit = 100",
            "key = [\"id\"]\nmax_limit = 100\nread_scope = \"jobs:read\"\n\
             relations.customer = { resource = \"customers\", field = \"customer_id\" }\n\
             relations.operations = { resource = \"operations\", many = true, limit = 1 }\n\
             [[versions.v1.resources.jobs.row_policies]]\nname = \"own-jobs\"\n\
             unless_scope = \"jobs:read:all\"\ncondition = \"CUST_NO = {claims.customer_id}\"",
        )
        .replace(
            "key = [\"job_id\", \"seq\"]\nanonymous = true",
            "key = [\"job_id\", \"seq\"]\nread_scope = \"ops:read\"\n\
             relations.job = { resource = \"jobs\", field = \"job_id\" }",
        );
    assert!(fixture.contains("relations.customer") && fixture.contains("relations.job"));
    format!(
        r#"{fixture}
[auth]
development = true
issuer = "{ISSUER}"
audience = "{AUDIENCE}"

[[auth.keys]]
algorithm = "HS256"
secret = "{SECRET}"

[cache]
default_ttl = "60s"

[versions.v1.resources.customers]
source = "legacy"
table = "CUSTOMERS"
key = ["id"]
read_scope = "customers:read"
write_scope = "customers:write"
writes = ["update"]

[[versions.v1.resources.customers.row_policies]]
name = "own-customer"
unless_scope = "customers:read:all"
condition = "CUST_NO = {{claims.customer_id}}"

[versions.v1.resources.customers.fields]
id = {{ column = "CUST_NO", type = "string", column_type = "char(6)" }}
name = {{ column = "NAME", type = "string", column_type = "varchar(30)" }}
credit_limit = {{ column = "CREDIT", type = "decimal", column_type = "decimal(9,2)", scale = 2, requires_scope = "customers:read:credit" }}
"#
    )
}

async fn serve(kind: Kind) -> (tempfile::TempDir, Portico) {
    let dir = tempfile::tempdir().unwrap();
    let cs = fresh_database(kind, dir.path());
    for statement in fixture::sql(kind) {
        execute(&cs, &statement);
    }
    let q = |n: &str| kind.quote(n);
    execute(
        &cs,
        &format!(
            "CREATE TABLE {} ({} CHAR(6) NOT NULL PRIMARY KEY, {} VARCHAR(30) NOT NULL, {} DECIMAL(9,2))",
            q("CUSTOMERS"),
            q("CUST_NO"),
            q("NAME"),
            q("CREDIT")
        ),
    );
    let rows: Vec<String> = (0..CUSTOMERS)
        .map(|i| {
            // SQLite keeps CHAR values as written: padded, as the old programs wrote them.
            let id = match kind {
                Kind::Sqlite => format!("C{i:03}  "),
                _ => format!("C{i:03}"),
            };
            format!("('{id}', 'Customer {i}', {}.50)", 1000 * (i + 1))
        })
        .collect();
    execute(
        &cs,
        &format!("INSERT INTO {} VALUES {}", q("CUSTOMERS"), rows.join(", ")),
    );
    let app = Portico::spawn(&config(kind, &cs)).await;
    (dir, app)
}

fn staff() -> String {
    hs_token(
        "staff",
        json!({"scope": "jobs:read jobs:read:all customers:read customers:read:all customers:read:credit customers:write ops:read"}),
    )
}

/// A portal token of `customer` that may list every job (`jobs:read:all`) but sees only its
/// own customer row, without the credit limit.
fn portal(customer: &str) -> String {
    hs_token(
        &format!("portal-{customer}"),
        json!({"scope": "jobs:read jobs:read:all customers:read ops:read", "customer_id": customer}),
    )
}

/// GETs `path` as `token` and says how many statements the source ran for it.
async fn counted(app: &Portico, path: &str, token: &str) -> (Value, f64) {
    let before = app.metric(QUERIES).await;
    let answer = app.get_as(path, Some(token)).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    (answer.body, app.metric(QUERIES).await - before)
}

fn customer_of(job: &Value) -> Option<String> {
    let id = job["customer_id"].as_str().unwrap();
    let n: usize = id[1..].parse().unwrap();
    (n < CUSTOMERS).then(|| format!("Customer {n}"))
}

/// To-one and to-many relations on a page, on a child listing, on one row and two levels
/// deep: the related rows are right, and each relation costs exactly one statement.
async fn expands_with_one_read_per_relation(kind: Kind) {
    let (_dir, app) = serve(kind).await;
    let token = staff();
    let (page, statements) =
        counted(&app, "/v1/jobs?limit=30&expand=customer,operations", &token).await;
    assert_eq!(statements, 3.0, "the page and one read per relation");
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 30);
    let mut seen_null = false;
    for job in rows {
        match customer_of(job) {
            Some(name) => {
                assert_eq!(job["customer"]["name"], name, "{job}");
                assert_eq!(job["customer"]["id"], job["customer_id"]);
                assert!(job["customer"]["credit_limit"].is_string(), "{job}");
            }
            None => {
                seen_null = true;
                assert!(job["customer"].is_null(), "a missing row is null: {job}");
            }
        }
        let operations = job["operations"].as_array().expect("an array");
        match job["id"].as_str().unwrap() {
            // Two operations each, cut at the relation's limit of one.
            "J0003" | "J0004" | "J,COMMA" => {
                assert_eq!(operations.len(), 1, "{job}");
                assert_eq!(operations[0]["seq"], 10);
                assert_eq!(operations[0]["job_id"], job["id"]);
                assert_eq!(job["operations_truncated"], true);
            }
            _ => {
                assert!(operations.is_empty(), "{job}");
                assert!(job.get("operations_truncated").is_none(), "{job}");
            }
        }
    }
    assert!(seen_null, "the page holds a job of C006");

    // `fields=` may leave the link out: it is still read, never shown.
    let (page, statements) =
        counted(&app, "/v1/jobs?limit=5&fields=id&expand=customer", &token).await;
    assert_eq!(statements, 2.0);
    // `J,COMMA` sorts first; then J0000 of C000, J0001 of C001.
    assert!(page["data"][2].get("customer_id").is_none());
    assert_eq!(page["data"][2]["customer"]["name"], "Customer 1");

    // A child listing: the parent's lookup, the page, one read for `job`.
    let (page, statements) = counted(&app, "/v1/jobs/J0003/operations?expand=job", &token).await;
    assert_eq!(statements, 3.0);
    let ops = page["data"].as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|op| op["job"]["id"] == "J0003"), "{page}");

    // One row.
    let (row, statements) =
        counted(&app, "/v1/jobs/J0004?expand=customer,operations", &token).await;
    assert_eq!(statements, 3.0);
    assert_eq!(row["customer"]["name"], "Customer 4");
    assert_eq!(row["operations"][0]["work_center"], "SAW");

    // Two levels: operations, their jobs, the jobs' customers: one read per level.
    let (page, statements) = counted(&app, "/v1/operations?expand=job.customer", &token).await;
    assert_eq!(statements, 3.0);
    for op in page["data"].as_array().unwrap() {
        let job = &op["job"];
        assert_eq!(job["id"], op["job_id"]);
        assert_eq!(job["customer"]["id"], job["customer_id"], "{op}");
    }
}

/// A portal token sees its own customer inside the expansion and `null` for another's, never
/// the credit limit its token lacks the scope for; a staff token sees both. Both grant the
/// same jobs: their cached answers must not be shared.
async fn policies_and_masks_apply_inside_the_expansion(kind: Kind) {
    let (_dir, app) = serve(kind).await;
    let path = "/v1/jobs?limit=14&expand=customer";
    let staff_page = app.get_as(path, Some(&staff())).await;
    assert_eq!(staff_page.status, 200, "{}", staff_page.body);
    let portal_page = app.get_as(path, Some(&portal("C001"))).await;
    assert_eq!(portal_page.status, 200, "{}", portal_page.body);
    let rows = portal_page.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 14, "jobs:read:all lists every job");
    for (job, staff_job) in rows.iter().zip(staff_page.body["data"].as_array().unwrap()) {
        if job["customer_id"] == "C001" {
            assert_eq!(job["customer"]["name"], "Customer 1");
            assert!(job["customer"].get("credit_limit").is_none(), "{job}");
        } else {
            assert!(
                job["customer"].is_null(),
                "another's customer is hidden: {job}"
            );
        }
        if customer_of(staff_job).is_some() {
            assert!(
                staff_job["customer"]["credit_limit"].is_string(),
                "{staff_job}"
            );
        }
    }
    assert!(portal_page
        .headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("private")));
}

/// Lacking the related resource's read scope is a 403 naming the relation; an unknown
/// relation, a path three deep, `expand` twice and other parameters on a row are 400s.
async fn refusals_name_the_relation(kind: Kind) {
    let (_dir, app) = serve(kind).await;
    let jobs_only = hs_token("jobs-only", json!({"scope": "jobs:read jobs:read:all"}));
    let refused = app
        .get_as("/v1/jobs?expand=customer", Some(&jobs_only))
        .await;
    let problem = refused.problem(403);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("expand=customer") && detail.contains("customers:read"),
        "{detail}"
    );
    let refused = app
        .get_as("/v1/jobs/J0001?expand=customer", Some(&jobs_only))
        .await;
    refused.problem(403);
    // Without `expand` the same token reads jobs.
    assert_eq!(
        app.get_as("/v1/jobs/J0001", Some(&jobs_only)).await.status,
        200
    );

    let token = staff();
    for (path, needle) in [
        ("/v1/jobs?expand=supplier", "not a relation of `jobs`"),
        ("/v1/operations?expand=job.customer.jobs", "at most 2"),
        (
            "/v1/jobs?expand=customer.operations",
            "not a relation of `customers`",
        ),
        (
            "/v1/jobs?expand=customer&expand=operations",
            "more than once",
        ),
        ("/v1/jobs?expand=", "empty relation name"),
    ] {
        let answer = app.get_as(path, Some(&token)).await;
        let problem = answer.problem(400);
        assert_eq!(problem["parameter"], "expand", "{path}");
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{path}: {problem}"
        );
    }
    let answer = app
        .get_as("/v1/jobs/J0001?expand=customer&limit=2", Some(&token))
        .await;
    assert_eq!(answer.problem(400)["parameter"], "limit");
}

/// A cached `jobs?expand=customer` page is dropped by a write to `customers`.
async fn a_write_to_the_related_resource_refreshes_the_expanded_page(kind: Kind) {
    let (_dir, app) = serve(kind).await;
    let token = staff();
    let path = "/v1/jobs?limit=3&expand=customer";
    let (page, statements) = counted(&app, path, &token).await;
    assert_eq!(page["data"][2]["customer"]["name"], "Customer 1");
    assert_eq!(statements, 2.0);
    let (_, statements) = counted(&app, path, &token).await;
    assert_eq!(statements, 0.0, "served from the cache");
    let written = app
        .send(
            Method::PATCH,
            "/v1/customers/C001",
            Some(&token),
            &[],
            Some(Ok(json!({"name": "Renamed"}))),
        )
        .await;
    assert_eq!(written.status, 200, "{}", written.body);
    let (page, statements) = counted(&app, path, &token).await;
    assert_eq!(page["data"][2]["customer"]["name"], "Renamed");
    assert_eq!(statements, 2.0, "read again after the write");
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
    expands_with_one_read_per_relation,
    policies_and_masks_apply_inside_the_expansion,
    refusals_name_the_relation,
    a_write_to_the_related_resource_refreshes_the_expanded_page,
);

/// The batched reads as SQL Server receives them: the page, then one `IN (…)` per relation
/// (to-one: `TOP` the number of keys; to-many: the first rows of each parent numbered with
/// `ROW_NUMBER() OVER (PARTITION BY …)`), every key a parameter.
#[tokio::test(flavor = "multi_thread")]
async fn tsql_reads_each_relation_in_one_batched_statement() {
    use crate::tds::{column, Collation, Reply, Request, ResultSet, SqlType, TdsFixture};
    let fixture = TdsFixture::start("13.0.5026.0", |request: &Request| {
        let sql = request.sql();
        let text = |n: u16| SqlType::Char(n, Collation::Cp1252);
        let set = if sql.contains("[dbo].[OPS]") {
            ResultSet {
                columns: vec![column("JOB_NO", text(8)), column("SEQ", SqlType::Int)],
                rows: [("J001", 10), ("J001", 20), ("J001", 30), ("J002", 10)]
                    .iter()
                    .map(|(job, seq)| {
                        vec![
                            crate::tds::Cell::Text(format!("{job:<8}")),
                            crate::tds::Cell::Int(*seq),
                        ]
                    })
                    .collect(),
            }
        } else if sql.contains("[dbo].[CUSTOMERS]") {
            ResultSet {
                columns: vec![
                    column("CUST_NO", text(6)),
                    column("NAME", SqlType::NVarChar(30)),
                ],
                rows: vec![vec![
                    crate::tds::Cell::Text("C01   ".into()),
                    crate::tds::Cell::Text("Müller".into()),
                ]],
            }
        } else {
            ResultSet {
                columns: vec![column("JOB_NO", text(8)), column("CUST_NO", text(6))],
                rows: [("J001", "C01"), ("J002", "C02"), ("J003", "C01")]
                    .iter()
                    .map(|(job, customer)| {
                        vec![
                            crate::tds::Cell::Text(format!("{job:<8}")),
                            crate::tds::Cell::Text(format!("{customer:<6}")),
                        ]
                    })
                    .collect(),
            }
        };
        Reply::Rows(vec![set])
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
relations.customer = {{ resource = "customers", field = "customer_id" }}
relations.operations = {{ resource = "operations", many = true, limit = 2 }}

[versions.v1.resources.jobs.fields]
id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
customer_id = {{ column = "CUST_NO", type = "string", column_type = "char(6)" }}

[versions.v1.resources.customers]
source = "erp"
table = "dbo.CUSTOMERS"
key = ["id"]
anonymous = true

[versions.v1.resources.customers.fields]
id = {{ column = "CUST_NO", type = "string", column_type = "char(6)" }}
name = {{ column = "NAME", type = "string", column_type = "nvarchar(30)" }}

[versions.v1.resources.operations]
source = "erp"
table = "dbo.OPS"
key = ["job_id", "seq"]
anonymous = true
parent = {{ resource = "jobs", field = "job_id" }}

[versions.v1.resources.operations.fields]
job_id = {{ column = "JOB_NO", type = "string", column_type = "char(8)" }}
seq = {{ column = "SEQ", type = "integer" }}
"#,
        cs = fixture.ado_string(),
    );
    let app = Portico::spawn(&config).await;
    let page = app.get("/v1/jobs?expand=customer,operations").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let rows = page.body["data"].as_array().unwrap();
    assert_eq!(rows[0]["customer"]["name"], "Müller");
    assert!(rows[1]["customer"].is_null());
    assert_eq!(rows[2]["customer"]["id"], "C01");
    // The fixture answers three operations of J001: two are served, and the cut is said.
    assert_eq!(rows[0]["operations"].as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["operations_truncated"], true);
    assert_eq!(rows[1]["operations"][0]["seq"], 10);
    assert!(rows[2]["operations"].as_array().unwrap().is_empty());
    let sent: Vec<Request> = fixture
        .requests()
        .into_iter()
        .filter(|r| r.sql().contains("FROM "))
        .collect();
    let sql: Vec<&str> = sent.iter().map(Request::sql).collect();
    assert_eq!(
        sql,
        [
            "SELECT TOP (51) [JOB_NO], [CUST_NO] FROM [dbo].[JOBS] ORDER BY [JOB_NO]",
            "SELECT TOP (2) [CUST_NO], [NAME] FROM [dbo].[CUSTOMERS] \
             WHERE ([CUST_NO] IN (CAST(@P1 AS varchar(8000)), CAST(@P2 AS varchar(8000)))) \
             ORDER BY [CUST_NO]",
            "SELECT TOP (9) [JOB_NO], [SEQ] FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY \
             [JOB_NO] ORDER BY [JOB_NO], [SEQ]) AS portico_rn FROM [dbo].[OPS] \
             WHERE ([JOB_NO] IN (CAST(@P1 AS varchar(8000)), CAST(@P2 AS varchar(8000)), \
             CAST(@P3 AS varchar(8000))))) portico_g WHERE portico_rn <= 3 ORDER BY [JOB_NO], [SEQ]",
        ]
    );
    let params = |i: usize| match &sent[i] {
        Request::Rpc { params, .. } => params.clone(),
        other => panic!("not sp_executesql: {other:?}"),
    };
    use crate::tds::Sent;
    assert_eq!(
        params(1),
        vec![Sent::Text("C01   ".into()), Sent::Text("C02   ".into())]
    );
    assert_eq!(params(2).len(), 3);
}
