//! The SQL Server strategies, in T-SQL that works from SQL Server 2008 on.
//!
//! `change_tracking` reads `CHANGETABLE(CHANGES …)` from the stored version inside a snapshot
//! transaction (the table needs Change Tracking and the database `ALLOW_SNAPSHOT_ISOLATION`
//! switched on by its owner) and sees deletes; when the stored version is older than
//! `CHANGE_TRACKING_MIN_VALID_VERSION` it says so in the log and re-snapshots the table.
//! `rowversion` reads the window `[last, MIN_ACTIVE_ROWVERSION())`, so rows of transactions
//! still in flight are not skipped. Both record the existing rows first (the baseline) so that
//! a later row is told apart as created or updated.

use super::{scan, Candidate, ChangeError, ChangeStrategy, Feed, Page, Phase, Position};
use crate::source::select::OrderTerm;
use crate::source::{ColumnType, Dialect, Param, Rows, Statement, Value};

/// The `change_tracking` strategy.
#[derive(Debug)]
pub struct ChangeTracking;

/// The `rowversion` strategy.
#[derive(Debug)]
pub struct Rowversion;

fn bigint(value: i64) -> Param {
    Param {
        value: Value::Int(value),
        column_type: ColumnType::Integer,
    }
}

fn quote(name: &str) -> String {
    Dialect::TSql.quote(name)
}

/// The version reached, read from the last column of a row.
fn version_of(row: &[Value]) -> Result<i64, ChangeError> {
    match row.last() {
        Some(Value::Int(v)) => Ok(*v),
        Some(Value::Null) => Ok(0),
        other => Err(ChangeError::Unexpected(format!(
            "a version where {other:?} came"
        ))),
    }
}

/// Start and baseline are alike for both strategies: fix the version, then record the rows.
fn start_or_baseline(feed: &Feed, position: &Position, version_sql: &str) -> Option<Statement> {
    match position.phase {
        Phase::Start => Some(Statement {
            sql: format!("SELECT {version_sql}"),
            params: Vec::new(),
            columns: vec![ColumnType::Integer],
            max_rows: 1,
        }),
        Phase::Baseline => Some(Dialect::TSql.select(&scan::by_key(feed, position.after.clone()))),
        Phase::Polling => None,
    }
}

fn interpret_start_or_baseline(
    feed: &Feed,
    position: &Position,
    rows: &Rows,
) -> Result<Option<Page>, ChangeError> {
    match position.phase {
        Phase::Start => Ok(Some(Page {
            candidates: Vec::new(),
            next: Position {
                phase: Phase::Baseline,
                version: Some(
                    rows.first()
                        .map(|r| version_of(r))
                        .transpose()?
                        .unwrap_or(0),
                ),
                ..Position::default()
            },
            done: false,
            baseline: true,
            sweep_before: None,
        })),
        Phase::Baseline => scan::baseline_page(feed, position, rows).map(Some),
        Phase::Polling => Ok(None),
    }
}

/// The page after a polling read: a full page goes on after its last row (`after` gives the
/// paging position); a short one ends the poll at the version its last row carries.
fn polled(
    feed: &Feed,
    position: &Position,
    candidates: Vec<Candidate>,
    rows: &Rows,
    after: impl FnOnce(&[Value]) -> Vec<Value>,
) -> Result<Page, ChangeError> {
    let full = rows.len() >= feed.page_size;
    let next = match rows.last() {
        Some(last) if full => Position {
            after: Some(after(last)),
            ..position.clone()
        },
        last => Position {
            after: None,
            version: match last {
                Some(row) => Some(version_of(row)?),
                None => position.version,
            },
            ..position.clone()
        },
    };
    Ok(Page {
        candidates,
        next,
        done: !full,
        baseline: false,
        sweep_before: None,
    })
}

/// The feed's columns for a SELECT list, `prefix`ed; the `rowversion` column (if any) as a number.
fn select_list(
    feed: &Feed,
    rowversion: Option<usize>,
    prefix: impl Fn(usize) -> &'static str,
) -> String {
    feed.columns
        .iter()
        .enumerate()
        .map(|(i, (c, column_type))| {
            let column = format!("{}{}", prefix(i), quote(c));
            let cast = match rowversion == Some(i) {
                true => Some("BIGINT".to_string()),
                false => Dialect::TSql.read_cast(*column_type),
            };
            match cast {
                Some(cast) => format!("CAST({column} AS {cast})"),
                None => column,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ChangeStrategy for Rowversion {
    fn sees_deletes(&self) -> bool {
        false
    }

    fn read(&self, feed: &Feed, position: &Position, _dialect: Dialect) -> Statement {
        if let Some(statement) =
            start_or_baseline(feed, position, "CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT)")
        {
            return statement;
        }
        let rv = quote(&feed.columns[feed.column.unwrap_or(0)].0);
        let binary = "CAST(CAST(? AS BIGINT) AS BINARY(8))";
        // Within a poll: after the last row read; else from the version reached.
        let (from, start) = match position.after.as_deref() {
            Some([Value::Int(last)]) => (format!("{rv} > {binary}"), *last),
            _ => (format!("{rv} >= {binary}"), position.version.unwrap_or(0)),
        };
        let params = vec![bigint(start)];
        let mut columns: Vec<ColumnType> = feed.columns.iter().map(|(_, t)| *t).collect();
        columns.push(ColumnType::Integer);
        Statement {
            sql: format!(
                "SELECT TOP ({}) {}, CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) FROM {} \
                 WHERE {from} AND {rv} < MIN_ACTIVE_ROWVERSION() ORDER BY {rv}",
                feed.page_size,
                select_list(feed, feed.column, |_| ""),
                quote(&feed.table),
            ),
            params,
            columns,
            max_rows: feed.page_size,
        }
    }

    fn interpret(
        &self,
        feed: &Feed,
        position: &Position,
        rows: Rows,
        _now_ms: i64,
    ) -> Result<Page, ChangeError> {
        if let Some(page) = interpret_start_or_baseline(feed, position, &rows)? {
            return Ok(page);
        }
        let candidates = scan::candidates(feed, &rows)?;
        let column = feed.column.unwrap_or(0);
        // A short page: everything below this page's MIN_ACTIVE_ROWVERSION() has been read.
        polled(feed, position, candidates, &rows, |last| {
            vec![last[column].clone()]
        })
    }
}

/// `ChangeTracking` marks the answer with this operation when the stored version expired.
const EXPIRED: &[u8] = b"X";

impl ChangeStrategy for ChangeTracking {
    fn sees_deletes(&self) -> bool {
        true
    }

    fn read(&self, feed: &Feed, position: &Position, _dialect: Dialect) -> Statement {
        if let Some(statement) =
            start_or_baseline(feed, position, "CHANGE_TRACKING_CURRENT_VERSION()")
        {
            return statement;
        }
        let table = quote(&feed.table);
        let keys = &feed.columns[..feed.key_len];
        let join = keys
            .iter()
            .map(|(k, _)| format!("t.{0} = ct.{0}", quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let order = std::iter::once("ct.SYS_CHANGE_VERSION".to_string())
            .chain(keys.iter().map(|(k, _)| format!("ct.{}", quote(k))))
            .collect::<Vec<_>>()
            .join(", ");
        let mut params = vec![bigint(position.version.unwrap_or(0))];
        let mut paging = String::new();
        if let Some(after) = &position.after {
            // Rows after (version, key…) of the previous page of this poll.
            let order: Vec<OrderTerm> =
                std::iter::once(("SYS_CHANGE_VERSION", ColumnType::Integer))
                    .chain(keys.iter().map(|(k, t)| (k.as_str(), *t)))
                    .map(|(column, column_type)| OrderTerm {
                        column: format!("ct.{column}"),
                        column_type,
                        descending: false,
                        nullable: false,
                    })
                    .collect();
            let (sql, keyset) = Dialect::TSql.keyset(&order, after);
            paging = format!(" AND {sql}");
            params.extend(keyset);
        }
        let object = feed.table.replace('\'', "''");
        let mut columns: Vec<ColumnType> = feed.columns.iter().map(|(_, t)| *t).collect();
        columns.extend([
            ColumnType::Char(Some(1)),
            ColumnType::Integer,
            ColumnType::Integer,
        ]);
        let key_len = feed.key_len;
        Statement {
            sql: format!(
                "SET NOCOUNT ON; SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; \
                 DECLARE @last BIGINT = ?; \
                 DECLARE @min BIGINT = CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{object}')); \
                 DECLARE @current BIGINT = CHANGE_TRACKING_CURRENT_VERSION(); \
                 IF @min IS NULL OR @last < @min \
                 SELECT {nulls}'X', NULL, @current; \
                 ELSE \
                 SELECT TOP ({limit}) {list}, ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION, @current \
                 FROM CHANGETABLE(CHANGES {table}, @last) AS ct LEFT JOIN {table} AS t ON {join} \
                 WHERE ct.SYS_CHANGE_VERSION <= @current{paging} ORDER BY {order}; \
                 COMMIT TRANSACTION;",
                nulls = "NULL, ".repeat(feed.columns.len()),
                limit = feed.page_size,
                list = select_list(feed, None, |i| if i < key_len { "ct." } else { "t." }),
            ),
            params,
            columns,
            max_rows: feed.page_size,
        }
    }

    fn interpret(
        &self,
        feed: &Feed,
        position: &Position,
        rows: Rows,
        _now_ms: i64,
    ) -> Result<Page, ChangeError> {
        if let Some(page) = interpret_start_or_baseline(feed, position, &rows)? {
            return Ok(page);
        }
        let width = feed.columns.len();
        if let Some(row) = rows
            .first()
            .filter(|r| r.get(width) == Some(&Value::Text(EXPIRED.to_vec())))
        {
            let current = version_of(row)?;
            tracing::warn!(
                feed = %feed.name,
                stored = position.version,
                "the stored change tracking version has expired; re-snapshotting the table"
            );
            return Ok(Page {
                candidates: Vec::new(),
                next: Position {
                    phase: Phase::Baseline,
                    after: None,
                    version: Some(current),
                    pass: position.pass + 1,
                    marks: Vec::new(),
                    ..Position::default()
                },
                done: false,
                baseline: false,
                sweep_before: None,
            });
        }
        let mut candidates = Vec::new();
        for row in &rows {
            if row.len() < width + 3 {
                return Err(ChangeError::Unexpected(format!("{} columns", row.len())));
            }
            let deleted = matches!(&row[width], Value::Text(op) if op.trim_ascii() == b"D");
            candidates.push(Candidate {
                key: row[..feed.key_len].to_vec(),
                row: (!deleted).then(|| row[..width].to_vec()),
            });
        }
        polled(feed, position, candidates, &rows, |last| {
            std::iter::once(last[width + 1].clone())
                .chain(last[..feed.key_len].iter().cloned())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::feed::tests::jobs_feed;

    fn polling(version: i64) -> Position {
        Position {
            phase: Phase::Polling,
            version: Some(version),
            ..Position::default()
        }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn rowversion_reads_up_to_the_oldest_active_transaction() {
        let mut feed = jobs_feed("rowversion", 2);
        feed.columns[2] = ("RV".into(), ColumnType::Integer);
        let start = Rowversion.read(&feed, &Position::default(), Dialect::TSql);
        assert_eq!(start.sql, "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT)");
        let statement = Rowversion.read(&feed, &polling(7), Dialect::TSql);
        assert_eq!(
            statement.sql,
            "SELECT TOP (2) [JOB_NO], [STATUS], CAST([RV] AS BIGINT), CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) \
             FROM [JOBHDR] WHERE [RV] >= CAST(CAST(? AS BIGINT) AS BINARY(8)) AND [RV] < MIN_ACTIVE_ROWVERSION() ORDER BY [RV]"
        );
        assert_eq!(statement.params[0].value, Value::Int(7));
        // A full page continues after its last rowversion within the poll.
        let row = |key: &str, rv: i64, upper: i64| {
            vec![text(key), text("O"), Value::Int(rv), Value::Int(upper)]
        };
        let page = Rowversion
            .interpret(
                &feed,
                &polling(7),
                vec![row("A", 8, 20), row("B", 9, 20)],
                0,
            )
            .unwrap();
        assert!(!page.done);
        assert_eq!(page.candidates[1].row.as_ref().unwrap()[2], Value::Int(9));
        let next = Rowversion.read(&feed, &page.next, Dialect::TSql);
        assert!(next
            .sql
            .contains("[RV] > CAST(CAST(? AS BIGINT) AS BINARY(8))"));
        assert_eq!(next.params[0].value, Value::Int(9));
        // A short page ends the poll at the upper bound it was read under.
        let end = Rowversion
            .interpret(&feed, &page.next, vec![row("C", 12, 21)], 0)
            .unwrap();
        assert!(end.done);
        assert_eq!((end.next.version, end.next.after.clone()), (Some(21), None));
        let empty = Rowversion.interpret(&feed, &end.next, vec![], 0).unwrap();
        assert_eq!(empty.next.version, Some(21));
    }

    #[test]
    fn change_tracking_reads_changetable_in_a_snapshot_transaction() {
        let feed = jobs_feed("change_tracking", 2);
        let start = ChangeTracking.read(&feed, &Position::default(), Dialect::TSql);
        assert_eq!(start.sql, "SELECT CHANGE_TRACKING_CURRENT_VERSION()");
        let statement = ChangeTracking.read(&feed, &polling(41), Dialect::TSql);
        let sql = &statement.sql;
        for part in [
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;",
            "DECLARE @last BIGINT = ?;",
            "CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'JOBHDR'))",
            "IF @min IS NULL OR @last < @min SELECT NULL, NULL, NULL, 'X', NULL, @current;",
            "SELECT TOP (2) ct.[JOB_NO], t.[STATUS], t.[LAST_UPD], ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION, @current",
            "FROM CHANGETABLE(CHANGES [JOBHDR], @last) AS ct LEFT JOIN [JOBHDR] AS t ON t.[JOB_NO] = ct.[JOB_NO]",
            "WHERE ct.SYS_CHANGE_VERSION <= @current ORDER BY ct.SYS_CHANGE_VERSION, ct.[JOB_NO];",
            "COMMIT TRANSACTION;",
        ] {
            assert!(sql.contains(part), "{part}\nin\n{sql}");
        }
        assert_eq!(statement.params.len(), 1);
        assert_eq!(statement.params[0].value, Value::Int(41));
        let change = |key: &str, op: &str, version: i64| {
            vec![
                text(key),
                text("O"),
                Value::Null,
                text(op),
                Value::Int(version),
                Value::Int(50),
            ]
        };
        let page = ChangeTracking
            .interpret(
                &feed,
                &polling(41),
                vec![change("A", "U", 42), change("B", "D", 43)],
                0,
            )
            .unwrap();
        assert!(page.candidates[0].row.is_some());
        assert_eq!(page.candidates[1].row, None, "a delete has no row");
        assert_eq!(page.candidates[1].key, vec![text("B")]);
        let next = ChangeTracking.read(&feed, &page.next, Dialect::TSql);
        assert!(next.sql.contains(
            "AND ([ct].[SYS_CHANGE_VERSION] > ? OR ([ct].[SYS_CHANGE_VERSION] = ? AND [ct].[JOB_NO] > ?))"
        ));
        assert_eq!(next.params.len(), 4);
        let end = ChangeTracking
            .interpret(&feed, &page.next, vec![change("C", "I", 44)], 0)
            .unwrap();
        assert!(end.done);
        assert_eq!(end.next.version, Some(50));
    }

    #[test]
    fn an_expired_change_tracking_version_re_snapshots_and_sweeps() {
        let feed = jobs_feed("change_tracking", 2);
        let expired = vec![
            Value::Null,
            Value::Null,
            Value::Null,
            text("X"),
            Value::Null,
            Value::Int(90),
        ];
        let page = ChangeTracking
            .interpret(
                &feed,
                &Position {
                    pass: 3,
                    ..polling(5)
                },
                vec![expired],
                0,
            )
            .unwrap();
        assert_eq!(page.next.phase, Phase::Baseline);
        assert_eq!((page.next.version, page.next.pass), (Some(90), 4));
        // The re-snapshot is announced (not a silent baseline) and ends with a sweep.
        let row = vec![text("A"), text("O"), Value::Null];
        let end = ChangeTracking
            .interpret(&feed, &page.next, vec![row], 0)
            .unwrap();
        assert!(!end.baseline && end.done);
        assert_eq!(end.sweep_before, Some(4));
        assert_eq!(end.next.phase, Phase::Polling);
    }
}
