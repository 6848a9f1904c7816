//! `high_water_mark`: reads the rows whose monotonic column (an updated-at timestamp or an
//! identity) is past a mark, in (column, key) order. Each poll starts again from where the
//! column was `lag` ago, so a transaction that commits after a later one and rows with equal
//! values are still seen; rows already announced with the same content are recognised by
//! their hash. Deletes are not seen (use `snapshot_diff` or a SQL Server strategy for those).

use super::{scan, ChangeError, ChangeStrategy, Feed, Mark, Page, Phase, Position};
use crate::source::select::{Relation, Select};
use crate::source::{Dialect, Rows, Statement, Value};

/// The `high_water_mark` strategy.
#[derive(Debug)]
pub struct HighWaterMark;

fn column(feed: &Feed) -> usize {
    feed.column.unwrap_or(0)
}

/// The (column, key) values of a row in feed column order.
fn mark_values(feed: &Feed, row: &[Value]) -> Vec<Value> {
    std::iter::once(row[column(feed)].clone())
        .chain(row[..feed.key_len].iter().cloned())
        .collect()
}

/// Where a poll starts: the newest mark reached at least `lag` ago, else the oldest mark.
fn start(marks: &[Mark], lag_ms: i64, now_ms: i64) -> Option<&Mark> {
    marks
        .iter()
        .rev()
        .find(|m| m.at_ms <= now_ms - lag_ms)
        .or_else(|| marks.first())
}

impl ChangeStrategy for HighWaterMark {
    fn sees_deletes(&self) -> bool {
        false
    }

    fn read(&self, feed: &Feed, position: &Position, dialect: Dialect) -> Statement {
        let order_columns = std::iter::once(column(feed)).chain(0..feed.key_len);
        match position.phase {
            Phase::Start => {
                // The newest row fixes the starting mark before the baseline is recorded.
                let mut order = scan::order(feed, order_columns.clone());
                order.iter_mut().for_each(|t| t.descending = true);
                dialect.select(&Select {
                    relation: Relation::Table(feed.table.clone()),
                    columns: order_columns.map(|i| feed.columns[i].clone()).collect(),
                    filter: Vec::new(),
                    order,
                    after: None,
                    limit: 1,
                })
            }
            Phase::Baseline => dialect.select(&scan::by_key(feed, position.after.clone())),
            Phase::Polling => {
                let lag_ms = feed.lag.as_millis() as i64;
                let after = position.after.clone().or_else(|| {
                    start(&position.marks, lag_ms, super::now_ms())
                        .filter(|m| !m.values.is_empty())
                        .map(|m| m.values.clone())
                });
                dialect.select(&Select {
                    relation: Relation::Table(feed.table.clone()),
                    columns: feed.columns.clone(),
                    filter: Vec::new(),
                    order: scan::order(feed, order_columns),
                    after,
                    limit: feed.page_size,
                })
            }
        }
    }

    fn interpret(
        &self,
        feed: &Feed,
        position: &Position,
        rows: Rows,
        now_ms: i64,
    ) -> Result<Page, ChangeError> {
        match position.phase {
            Phase::Start => Ok(Page {
                candidates: Vec::new(),
                next: Position {
                    phase: Phase::Baseline,
                    marks: vec![Mark {
                        at_ms: now_ms,
                        values: rows.into_iter().next().unwrap_or_default(),
                    }],
                    ..Position::default()
                },
                done: false,
                baseline: true,
                sweep_before: None,
            }),
            Phase::Baseline => scan::baseline_page(feed, position, &rows),
            Phase::Polling => {
                let candidates = scan::candidates(feed, &rows)?;
                let last = rows.last().map(|r| mark_values(feed, r));
                if rows.len() >= feed.page_size {
                    return Ok(Page {
                        candidates,
                        next: Position {
                            after: last,
                            ..position.clone()
                        },
                        done: false,
                        baseline: false,
                        sweep_before: None,
                    });
                }
                let reached = last.or_else(|| position.after.clone());
                let mut marks = position.marks.clone();
                if let Some(values) = reached {
                    if marks.last().is_none_or(|m| m.values != values) {
                        marks.push(Mark {
                            at_ms: now_ms,
                            values,
                        });
                    }
                }
                // Keep the marks a later poll may start from.
                let lag_ms = feed.lag.as_millis() as i64;
                let keep_from = marks
                    .iter()
                    .rposition(|m| m.at_ms <= now_ms - lag_ms)
                    .unwrap_or(0);
                marks.drain(..keep_from);
                Ok(Page {
                    candidates,
                    next: Position {
                        after: None,
                        marks,
                        ..position.clone()
                    },
                    done: true,
                    baseline: false,
                    sweep_before: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::feed::tests::jobs_feed;

    fn row(key: &str, at: &str) -> Vec<Value> {
        vec![
            Value::Text(key.into()),
            Value::Text(b"O".to_vec()),
            Value::Timestamp(at.into()),
        ]
    }

    #[test]
    fn the_start_mark_is_the_newest_row_then_the_baseline_scans_by_key() {
        let feed = jobs_feed("high_water_mark", 2);
        let sql = HighWaterMark
            .read(&feed, &Position::default(), Dialect::Postgres)
            .sql;
        assert_eq!(
            sql,
            "SELECT \"LAST_UPD\", \"JOB_NO\" FROM \"JOBHDR\" ORDER BY \"LAST_UPD\" DESC, \"JOB_NO\" DESC LIMIT 1"
        );
        let newest = vec![
            Value::Timestamp("2026-01-02 00:00:00".into()),
            Value::Text(b"B".to_vec()),
        ];
        let page = HighWaterMark
            .interpret(&feed, &Position::default(), vec![newest.clone()], 1_000)
            .unwrap();
        assert_eq!(page.next.phase, Phase::Baseline);
        assert_eq!(
            page.next.marks,
            vec![Mark {
                at_ms: 1_000,
                values: newest
            }]
        );
        let sql = HighWaterMark.read(&feed, &page.next, Dialect::Postgres).sql;
        assert!(sql.ends_with("ORDER BY \"JOB_NO\" LIMIT 2"), "{sql}");
    }

    #[test]
    fn polls_restart_from_the_mark_reached_lag_ago_and_prune_older_marks() {
        let mut feed = jobs_feed("high_water_mark", 2);
        feed.lag = std::time::Duration::from_millis(500);
        let mark = |at_ms, at: &str| Mark {
            at_ms,
            values: mark_values(&feed, &row("A", at)),
        };
        // Reads start from the mark that is `lag` old (marks at now - 1 s and now - 0.1 s).
        let now = crate::changes::now_ms();
        let recent = Position {
            phase: Phase::Polling,
            marks: vec![
                mark(now - 1_000, "2026-01-01 00:00:00"),
                mark(now - 100, "2026-01-01 00:00:09"),
            ],
            ..Position::default()
        };
        let statement = HighWaterMark.read(&feed, &recent, Dialect::Sqlite);
        assert_eq!(
            statement.params[0].value,
            Value::Timestamp("2026-01-01 00:00:00".into())
        );
        let position = Position {
            phase: Phase::Polling,
            marks: vec![
                mark(0, "2026-01-01 00:00:00"),
                mark(900, "2026-01-01 00:00:09"),
            ],
            ..Position::default()
        };
        // At 1 000 ms only the first mark is 500 ms old; with no mark that old, the oldest.
        assert_eq!(start(&position.marks, 500, 1_000), Some(&position.marks[0]));
        assert_eq!(
            start(&position.marks, 5_000, 1_000),
            Some(&position.marks[0])
        );
        assert_eq!(start(&position.marks, 50, 1_000), Some(&position.marks[1]));
        assert!(statement
            .sql
            .contains("ORDER BY \"LAST_UPD\", \"JOB_NO\" LIMIT 2"));
        // A full page continues after its last row within the same poll.
        let full = vec![
            row("B", "2026-01-01 00:00:05"),
            row("C", "2026-01-01 00:00:05"),
        ];
        let page = HighWaterMark
            .interpret(&feed, &position, full, 1_000)
            .unwrap();
        assert!(!page.done);
        assert_eq!(
            page.next.after,
            Some(mark_values(&feed, &row("C", "2026-01-01 00:00:05")))
        );
        // The last page ends the poll with a new mark; at 2 000 ms the first mark is no longer
        // needed (the one of 900 ms is old enough to start from).
        let end = HighWaterMark
            .interpret(
                &feed,
                &page.next,
                vec![row("D", "2026-01-01 00:00:10")],
                2_000,
            )
            .unwrap();
        assert!(end.done && end.next.after.is_none());
        assert_eq!(end.next.marks.len(), 2);
        assert_eq!(end.next.marks[0].at_ms, 900);
        assert_eq!(
            end.next.marks[1].values,
            mark_values(&feed, &row("D", "2026-01-01 00:00:10"))
        );
    }
}
