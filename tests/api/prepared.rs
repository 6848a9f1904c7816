//! Reads are prepared once per pooled connection and run again with new parameters; a
//! statement the database changed under them is prepared afresh, not served as an error.

use crate::fixture::{self, Kind};
use crate::harness::{execute, load_fixture, shared_server, Portico};
use crate::servers::Engine;

/// Reads a key and a page twice (the second time through the statements prepared by the first),
/// changes the table under them, and reads again: the same rows come back.
async fn a_table_changed_under_prepared_reads_is_read_again(kind: Kind, alter: &[&str]) {
    let server = match kind {
        Kind::Postgres => Some(shared_server(Engine::Postgres)),
        Kind::MariaDb => Some(shared_server(Engine::MariaDb)),
        _ => None,
    };
    let db = load_fixture(kind, server);
    let config = fixture::config(kind, &db.connection_string, "max_concurrency = 1");
    let app = Portico::spawn(&config).await;
    let read = || async {
        let page = app.get("/v1/jobs?limit=7&sort=id").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let one = app.get("/v1/jobs/J0002").await;
        assert_eq!(one.status, 200, "{}", one.body);
        let other = app.get("/v1/jobs/J0003").await;
        assert_eq!(other.status, 200, "{}", other.body);
        (page.body, one.body, other.body)
    };
    let first = read().await;
    assert_eq!(
        read().await,
        first,
        "a prepared read answers as the first one did"
    );
    for statement in alter {
        execute(&db.connection_string, statement);
    }
    let after = read().await;
    assert_eq!(after.1["id"], "J0002");
    assert_eq!(
        after.0["data"].as_array().map(Vec::len),
        Some(7),
        "{}",
        after.0
    );
    assert_eq!(
        after, first,
        "the changed column still holds the same values"
    );
}

#[tokio::test]
async fn a_table_changed_under_prepared_reads_is_read_again_on_postgres() {
    // A wider type changes the result's row type: PostgreSQL refuses the kept plan
    // ("cached plan must not change result type").
    a_table_changed_under_prepared_reads_is_read_again(
        Kind::Postgres,
        &[r#"ALTER TABLE "JOBS" ALTER COLUMN "DESCR" TYPE text"#],
    )
    .await;
}

#[tokio::test]
async fn a_table_changed_under_prepared_reads_is_read_again_on_mariadb() {
    a_table_changed_under_prepared_reads_is_read_again(
        Kind::MariaDb,
        &["ALTER TABLE `JOBS` MODIFY `DESCR` VARCHAR(200)"],
    )
    .await;
}

#[tokio::test]
async fn a_table_changed_under_prepared_reads_is_read_again_on_sqlite() {
    a_table_changed_under_prepared_reads_is_read_again(
        Kind::Sqlite,
        &[
            "ALTER TABLE JOBS ADD COLUMN NOTE VARCHAR(10)",
            "ALTER TABLE JOBS RENAME COLUMN NOTE TO REMARK",
        ],
    )
    .await;
}
