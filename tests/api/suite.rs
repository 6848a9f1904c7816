//! The resource suite: the same assertions against SQLite, PostgreSQL and MariaDB.

use std::cmp::Ordering;

use serde_json::Value;

use crate::fixture::{self, Job, Kind};
use crate::harness::{backend, query_text, Portico};

fn model(kind: Kind) -> Vec<Job> {
    let mut jobs = fixture::jobs(kind);
    jobs.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    jobs
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

fn expected_ids(kind: Kind, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    model(kind)
        .iter()
        .map(Job::api)
        .filter(|j| keep(j))
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

fn s<'a>(j: &'a Value, f: &str) -> Option<&'a str> {
    j[f].as_str()
}

fn dec(j: &Value, f: &str) -> Option<f64> {
    j[f].as_str().map(|a| a.parse().unwrap())
}

async fn reads_every_row_in_its_api_shape(kind: Kind) {
    let app = Portico::over(kind).await;
    let rows = app.all_pages("/v1/jobs?limit=100").await;
    let expected: Vec<Value> = model(kind).iter().map(Job::api).collect();
    assert_eq!(rows.len(), expected.len());
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    if kind.exact_decimals() {
        let big = app.get("/v1/jobs/J0001?").await;
        assert_eq!(
            big.body["amount"],
            fixture::BIG_AMOUNT,
            "every digit survives"
        );
    }
}

async fn every_filter_operator_pushes_down(kind: Kind) {
    let app = Portico::over(kind).await;
    type Keep = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        ("status=open", Box::new(|j| s(j, "status") == Some("open"))),
        (
            "status[eq]=closed",
            Box::new(|j| s(j, "status") == Some("closed")),
        ),
        (
            "status[ne]=held",
            Box::new(|j| s(j, "status") != Some("held")),
        ),
        (
            "status[in]=open,held",
            Box::new(|j| matches!(s(j, "status"), Some("open" | "held"))),
        ),
        (
            "customer_id=C003",
            Box::new(|j| s(j, "customer_id") == Some("C003")),
        ),
        (
            "id[in]=J0001,J0002,J0149",
            Box::new(|j| matches!(s(j, "id"), Some("J0001" | "J0002" | "J0149"))),
        ),
        (
            "id[prefix]=J01",
            Box::new(|j| s(j, "id").is_some_and(|i| i.starts_with("J01"))),
        ),
        (
            "description[prefix]=Café",
            Box::new(|j| s(j, "description").is_some_and(|d| d.starts_with("Café"))),
        ),
        ("description[prefix]=Caf%25", Box::new(|_| false)),
        (
            "description=Café 12",
            Box::new(|j| s(j, "description") == Some("Café 12")),
        ),
        (
            "due_on=2024-01-10",
            Box::new(|j| s(j, "due_on") == Some("2024-01-10")),
        ),
        (
            "due_on[ne]=2024-01-10",
            Box::new(|j| s(j, "due_on").is_some_and(|d| d != "2024-01-10")),
        ),
        (
            "due_on[lt]=2024-01-10",
            Box::new(|j| s(j, "due_on").is_some_and(|d| d < "2024-01-10")),
        ),
        (
            "due_on[lte]=2024-01-10",
            Box::new(|j| s(j, "due_on").is_some_and(|d| d <= "2024-01-10")),
        ),
        (
            "due_on[gt]=2024-02-01",
            Box::new(|j| s(j, "due_on").is_some_and(|d| d > "2024-02-01")),
        ),
        (
            "due_on[gte]=2024-02-01",
            Box::new(|j| s(j, "due_on").is_some_and(|d| d >= "2024-02-01")),
        ),
        ("due_on[null]=true", Box::new(|j| j["due_on"].is_null())),
        ("due_on[null]=false", Box::new(|j| !j["due_on"].is_null())),
        (
            "ordered_on[gte]=2023-01-20",
            Box::new(|j| s(j, "ordered_on").is_some_and(|d| d >= "2023-01-20")),
        ),
        (
            "shipped_on[gt]=2000-01-01",
            Box::new(|j| s(j, "shipped_on").is_some_and(|d| d > "2000-01-01")),
        ),
        (
            "shipped_on[lt]=2000-01-01",
            Box::new(|j| s(j, "shipped_on").is_some_and(|d| d < "2000-01-01")),
        ),
        (
            "shipped_on[null]=true",
            Box::new(|j| j["shipped_on"].is_null()),
        ),
        (
            "closed_on=2024-04-04",
            Box::new(|j| s(j, "closed_on") == Some("2024-04-04")),
        ),
        (
            "closed_on[in]=2024-04-04,2024-05-05",
            Box::new(|j| matches!(s(j, "closed_on"), Some("2024-04-04" | "2024-05-05"))),
        ),
        (
            "closed_on[null]=true",
            Box::new(|j| j["closed_on"].is_null()),
        ),
        (
            "amount[gte]=500",
            Box::new(|j| dec(j, "amount").is_some_and(|a| a >= 500.0)),
        ),
        (
            "amount[lt]=100.5",
            Box::new(|j| dec(j, "amount").is_some_and(|a| a < 100.5)),
        ),
        (
            "amount=74.02",
            Box::new(|j| s(j, "amount") == Some("74.02")),
        ),
        ("amount[null]=true", Box::new(|j| j["amount"].is_null())),
        ("priority=2", Box::new(|j| j["priority"] == 2)),
        (
            "priority[ne]=2",
            Box::new(|j| j["priority"].as_i64().is_some_and(|p| p != 2)),
        ),
        (
            "priority[in]=1,3",
            Box::new(|j| matches!(j["priority"].as_i64(), Some(1 | 3))),
        ),
        ("priority[null]=true", Box::new(|j| j["priority"].is_null())),
        ("rush=true", Box::new(|j| j["rush"] == true)),
        (
            "rush=false&status=held",
            Box::new(|j| j["rush"] == false && s(j, "status") == Some("held")),
        ),
        (
            "created_on[gte]=2022-03-01&created_on[lt]=2022-04-01",
            Box::new(|j| {
                s(j, "created_on").is_some_and(|d| ("2022-03-01".."2022-04-01").contains(&d))
            }),
        ),
        (
            "updated_at[gte]=2024-03-01T11:30:00",
            Box::new(|j| s(j, "updated_at").is_some_and(|d| d >= "2024-03-01T11:30:00")),
        ),
        (
            "updated_at=2024-03-01T10:05:00",
            Box::new(|j| s(j, "updated_at") == Some("2024-03-01T10:05:00")),
        ),
    ];
    for (query, keep) in cases {
        let rows = app.all_pages(&format!("/v1/jobs?limit=100&{query}")).await;
        assert_eq!(ids(&rows), expected_ids(kind, keep), "{kind:?} ?{query}");
    }
}

/// Raw order of the fixture: NULL first ascending, last descending; blanks before sentinels.
fn raw_cmp(a: &Job, b: &Job, terms: &[(&str, bool)]) -> Ordering {
    for &(field, descending) in terms {
        let ord = match field {
            "priority" => a.priority.cmp(&b.priority),
            "due_on" => a.due.cmp(&b.due),
            "amount" => {
                let num = |j: &Job| j.amount.as_ref().map(|x| x.parse::<f64>().unwrap());
                num(a).partial_cmp(&num(b)).unwrap()
            }
            "shipped_on" => a.shipped.cmp(&b.shipped),
            "id" => a.id.as_bytes().cmp(b.id.as_bytes()),
            other => panic!("no model order for {other}"),
        };
        let ord = if descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

async fn keyset_paging_covers_every_row_once_despite_ties_and_nulls(kind: Kind) {
    let app = Portico::over(kind).await;
    for (sort, terms) in [
        (
            "-priority,due_on",
            vec![("priority", true), ("due_on", false), ("id", false)],
        ),
        (
            "priority,-due_on",
            vec![("priority", false), ("due_on", true), ("id", false)],
        ),
        ("amount", vec![("amount", false), ("id", false)]),
        ("-amount", vec![("amount", true), ("id", false)]),
        ("-shipped_on,-id", vec![("shipped_on", true), ("id", true)]),
        ("-id", vec![("id", true)]),
    ] {
        let rows = app
            .all_pages(&format!("/v1/jobs?sort={sort}&limit=7&fields=id"))
            .await;
        let mut expected = model(kind);
        expected.sort_by(|a, b| raw_cmp(a, b, &terms));
        let expected: Vec<String> = expected.into_iter().map(|j| j.id).collect();
        assert_eq!(ids(&rows), expected, "{kind:?} sort={sort}");
        assert!(
            rows.iter().all(|r| r.as_object().unwrap().len() == 1),
            "fields=id gives only id"
        );
    }
    // Filters and cursors combine: the cursor continues the filtered listing.
    let rows = app
        .all_pages("/v1/jobs?status=open&sort=-priority&limit=4")
        .await;
    assert_eq!(
        rows.len(),
        expected_ids(kind, |j| s(j, "status") == Some("open")).len()
    );
}

async fn keys_composite_keys_and_nesting(kind: Kind) {
    let app = Portico::over(kind).await;
    let job = app.get("/v1/jobs/J0003").await;
    assert_eq!(job.status, 200);
    let want = model(kind)
        .into_iter()
        .find(|j| j.id == "J0003")
        .unwrap()
        .api();
    assert_eq!(job.body, want);

    let op = app.get("/v1/operations/J0003,20").await;
    assert_eq!(op.status, 200, "{}", op.body);
    assert_eq!(op.body["work_center"], "LATHE");
    assert_eq!(op.body["hours"], "2.25");

    let comma = app.get("/v1/operations/J%2CCOMMA,10").await;
    assert_eq!(
        comma.status, 200,
        "an encoded comma stays inside its key part: {}",
        comma.body
    );
    assert_eq!(comma.body["job_id"], "J,COMMA");

    let nested = app.get("/v1/jobs/J%2CCOMMA/operations").await;
    assert_eq!(nested.status, 200, "{}", nested.body);
    let seqs: Vec<i64> = nested.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![10, 20]);
    let filtered = app.get("/v1/jobs/J0004/operations?seq[gt]=10").await;
    assert_eq!(filtered.body["data"].as_array().unwrap().len(), 1);

    assert_eq!(
        app.head("/v1/jobs/J0003").await,
        (reqwest::StatusCode::OK, 0),
        "HEAD answers like GET, without a body"
    );
    app.get("/v1/jobs/J9999").await.problem(404);
    app.get("/v1/operations/J0003,30").await.problem(404);
    app.get("/v1/jobs/J9999/operations").await.problem(404);
    app.get("/v1/nothing").await.problem(404);
    app.get("/v7/jobs").await.problem(404);
    let arity = app.get("/v1/operations/J0003").await;
    assert_eq!(
        arity.problem(400)["parameter"],
        "job_id,seq",
        "the path's own parameters"
    );
    let typed = app.get("/v1/operations/J0003,ten").await;
    assert_eq!(typed.problem(400)["parameter"], "seq");
}

async fn bad_parameters_get_precise_problems(kind: Kind) {
    let app = Portico::over(kind).await;
    let other_sort = app.get("/v1/jobs?sort=-priority&limit=1").await;
    let foreign_cursor = other_sort.body["next_cursor"].as_str().unwrap().to_string();
    let cases = [
        ("colour=red", "colour"),
        ("status[like]=open", "status[like]"),
        ("status[eq=open", "status[eq"),
        ("priority=high", "priority"),
        ("due_on=2024-13-01", "due_on"),
        ("due_on=20240101", "due_on"),
        ("updated_at[gt]=yesterday", "updated_at[gt]"),
        ("amount=1e3", "amount"),
        ("rush=yes", "rush"),
        ("status=gone", "status"),
        ("status[gt]=open", "status[gt]"),
        ("closed_on[lt]=2024-01-01", "closed_on[lt]"),
        ("closed_on=03/04/2024", "closed_on"),
        ("priority[prefix]=1", "priority[prefix]"),
        ("priority[null]=maybe", "priority[null]"),
        ("customer_id=C0000001", "customer_id"),
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=ten", "limit"),
        ("limit=5&limit=6", "limit"),
        ("sort=colour", "sort"),
        ("sort=status", "sort"),
        ("sort=id,id", "sort"),
        ("fields=id,secret", "fields"),
        ("cursor=garbage", "cursor"),
        (
            "cursor=eyJzIjoiaWQiLCJ2IjpbeyJ0IjoiaSIsInYiOjV9XX0",
            "cursor",
        ),
        ("%FF=1", "%FF"),
    ];
    for (query, parameter) in cases {
        let answer = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(
            answer.problem(400)["parameter"],
            parameter,
            "?{query}: {}",
            answer.body
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("J{i:04}")).collect();
    app.get(&format!("/v1/jobs?id[in]={}", many.join(",")))
        .await
        .problem(400);
    let answer = app.get(&format!("/v1/jobs?cursor={foreign_cursor}")).await;
    assert_eq!(answer.problem(400)["parameter"], "cursor");
    let answer = app.get("/v1/jobs?colour=red").await;
    assert!(
        answer.body["detail"].as_str().unwrap().contains("due_on"),
        "lists the known fields"
    );
}

async fn injection_attempts_leave_the_database_unchanged(kind: Kind) {
    let backend = backend(kind);
    let count = || {
        query_text(
            &backend.connection_string,
            &format!("SELECT COUNT(*) FROM {}", kind.quote("JOBS")),
        )
    };
    let before = count();
    let app = Portico::over(kind).await;
    let payloads = [
        "' OR '1'='1",
        "'; DROP TABLE JOBS; --",
        "\"; DROP TABLE \"JOBS\"; --",
        "`; DROP TABLE `JOBS`; --",
        "1) OR (1=1",
        "%' OR 1=1 --",
        "J0001' UNION SELECT * FROM OPS --",
        "\\'; DELETE FROM JOBS; --",
    ];
    for payload in payloads {
        let p = percent_encode(payload);
        for query in [
            format!("id={p}"),
            format!("description={p}"),
            format!("description[prefix]={p}"),
            format!("status[in]=open,{p}"),
            format!("priority={p}"),
            format!("due_on={p}"),
            format!("sort={p}"),
            format!("fields={p}"),
            format!("{p}=1"),
            format!("status[{p}]=open"),
            format!("cursor={p}"),
        ] {
            let answer = app.get(&format!("/v1/jobs?{query}")).await;
            let status = answer.status.as_u16();
            assert!(
                status == 200 || status == 400,
                "?{query} answered {status}: {}",
                answer.body
            );
            if status == 200 {
                assert!(
                    answer.body["data"].as_array().unwrap().is_empty(),
                    "?{query} matched rows"
                );
            }
        }
        let answer = app.get(&format!("/v1/jobs/{p}")).await;
        assert!(
            matches!(answer.status.as_u16(), 400 | 404),
            "key {payload}: {}",
            answer.status
        );
    }
    assert_eq!(count(), before, "the legacy table is unchanged");
    assert_eq!(app.get("/v1/jobs?limit=1").await.status, 200);
}

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

macro_rules! per_backend {
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
        mod generic_dialect_on_sqlite {
            $(#[tokio::test] async fn $test() { super::$test(super::Kind::Generic).await })*
        }
        mod mssql_server {
            $(
                #[cfg_attr(not(mssql_server), ignore = "MSSQL_URL is not set: this SQL Server test did not run")]
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() { super::$test(super::Kind::Mssql).await }
            )*
        }
    };
}

per_backend!(
    reads_every_row_in_its_api_shape,
    every_filter_operator_pushes_down,
    keyset_paging_covers_every_row_once_despite_ties_and_nulls,
    keys_composite_keys_and_nesting,
    bad_parameters_get_precise_problems,
    injection_attempts_leave_the_database_unchanged,
);
