//! The spans of a source: the wait for a connection and each legacy statement, described by
//! what it is (dialect, operation, table, row count) and never by what it carries.

use tracing::field::Empty;
use tracing::Span;

use super::dialect::Dialect;
use super::SourceError;

/// The span of waiting for a connection (or a concurrency slot) of `source`.
pub fn pool_wait(source: &str) -> Span {
    crate::telemetry::traces::exported_span!(
        "pool.wait",
        otel.name = "pool.wait",
        db.client.connection.pool.name = source
    )
}

/// The span of one statement in `dialect`. Only the leading keyword and the identifier after
/// `FROM`/`INTO`/`UPDATE` are read from `sql`: its values are bound parameters, and a
/// configured query's literals are never taken.
pub fn statement(dialect: Dialect, sql: &str) -> Span {
    if !crate::telemetry::traces::on() {
        return Span::none();
    }
    let (operation, table) = target(sql);
    let name = match table {
        Some(table) => format!("{operation} {table}"),
        None => operation.to_string(),
    };
    crate::telemetry::traces::exported_span!(
        "statement",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = system(dialect),
        db.operation.name = operation,
        db.collection.name = table,
        db.response.returned_rows = Empty,
    )
}

/// Records on a statement's span how many rows it returned, or that it failed.
pub fn returned<T>(span: &Span, result: &Result<Vec<T>, SourceError>) {
    match result {
        Ok(rows) => span.record("db.response.returned_rows", rows.len()),
        Err(_) => span.record("otel.status_code", "error"),
    };
}

/// Records on a statement's span that it failed (a change or a procedure call: no rows to
/// count).
pub fn finished<T>(span: &Span, result: &Result<T, SourceError>) {
    if result.is_err() {
        span.record("otel.status_code", "error");
    }
}

/// Runs `work`, one statement of `sql`, inside its span; `outcome` ([`returned`] or
/// [`finished`]) records how it ended on the span.
pub async fn traced<T>(
    dialect: Dialect,
    sql: &str,
    work: impl std::future::Future<Output = Result<T, SourceError>>,
    outcome: fn(&Span, &Result<T, SourceError>),
) -> Result<T, SourceError> {
    let span = statement(dialect, sql);
    let result = tracing::Instrument::instrument(work, span.clone()).await;
    outcome(&span, &result);
    result
}

/// The OpenTelemetry `db.system.name` of a dialect.
fn system(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgresql",
        Dialect::MySql => "mysql",
        Dialect::TSql => "microsoft.sql_server",
        Dialect::Generic => "other_sql",
    }
}

/// The operation (`SELECT`, `INSERT`, …) of `sql` and the first table it names, as far as a
/// plain identifier tells; never a literal.
fn target(sql: &str) -> (&'static str, Option<&str>) {
    // `{CALL name(?, ?)}`: the ODBC escape of a procedure call.
    let sql = sql.trim_start().trim_start_matches('{');
    let words = || sql.split_ascii_whitespace();
    let first = words().next().unwrap_or_default();
    let operation = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "EXEC", "CALL",
    ]
    .into_iter()
    .find(|op| first.eq_ignore_ascii_case(op))
    .or_else(|| first.eq_ignore_ascii_case("WITH").then_some("SELECT"))
    .unwrap_or("statement");
    let identifier = |word: &&str| {
        word.starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '"' | '[' | '`' | '_'))
            && word.chars().all(|c| {
                c.is_alphanumeric() || matches!(c, '_' | '.' | '"' | '[' | ']' | '`' | '$')
            })
    };
    if matches!(operation, "EXEC" | "CALL") {
        // The procedure's name, up to its parameter list.
        let procedure = words()
            .nth(1)
            .map(|word| word.split('(').next().unwrap_or_default())
            .filter(|word| !word.is_empty() && identifier(word));
        return (operation, procedure);
    }
    let after = if operation == "UPDATE" {
        &["UPDATE"][..]
    } else {
        &["FROM", "INTO", "MERGE"][..]
    };
    let table = words()
        .zip(words().skip(1))
        .filter(|(keyword, _)| after.iter().any(|k| keyword.eq_ignore_ascii_case(k)))
        .map(|(_, word)| word)
        .find(identifier);
    (operation, table)
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn a_statement_is_named_by_operation_and_table_never_by_a_literal() {
        assert_eq!(
            target("SELECT \"id\", \"status\" FROM \"jobs\" WHERE \"id\" = ? LIMIT 2"),
            ("SELECT", Some("\"jobs\""))
        );
        assert_eq!(
            target("SELECT TOP 2 [ID] FROM dbo.JOBS WHERE [ID] = @P1"),
            ("SELECT", Some("dbo.JOBS"))
        );
        assert_eq!(
            target("INSERT INTO jobs (id) VALUES (?)"),
            ("INSERT", Some("jobs"))
        );
        assert_eq!(target("UPDATE jobs SET a = ?"), ("UPDATE", Some("jobs")));
        // A configured query: the derived table is no identifier, its literal never taken.
        assert_eq!(
            target("SELECT * FROM (SELECT a FROM 'secret' WHERE b = 'x') q"),
            ("SELECT", None)
        );
        assert_eq!(target("PRAGMA x"), ("statement", None));
        assert_eq!(
            target("{CALL dbo.close_job(?, ?)}"),
            ("CALL", Some("dbo.close_job"))
        );
        assert_eq!(
            target("EXEC dbo.close_job @P1"),
            ("EXEC", Some("dbo.close_job"))
        );
        assert_eq!(target("CALL 'x'(?)"), ("CALL", None));
    }
}
