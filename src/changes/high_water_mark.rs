//! `high_water_mark`: reads the rows whose monotonic column (an updated-at timestamp or an
//! identity) is past a mark, in (column, key) order. Each poll starts again from where the
//! column was `lag` ago, so a transaction that commits after a later one and rows with equal
//! values are still seen; rows already announced with the same content are recognised by
//! their hash. Deletes are not seen (use `snapshot_diff` or a SQL Server strategy for those).
//!
//! Over a timestamp column the mark never runs ahead of the database's own clock, read at the
//! start of each poll: a row stamped in the future (`9999-12-31`, or an hour ahead) is
//! announced like any change but does not carry the mark with it, so rows stamped normally
//! afterwards are still read. An identity column has no clock and is not bounded.

use super::{scan, ChangeError, ChangeStrategy, Feed, Mark, Page, Phase, Position};
use crate::source::select::{Relation, Select};
use crate::source::{ColumnType, Dialect, Rows, Statement, Value};
use crate::value::date::{sql_timestamp, timestamp_seconds};

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

/// Whether the column is a timestamp, so the database's clock bounds the mark.
fn clocked(feed: &Feed) -> bool {
    feed.columns
        .get(column(feed))
        .is_some_and(|(_, t)| *t == ColumnType::Timestamp)
}

/// The database's clock read for this poll, in whole seconds.
fn clock_seconds(position: &Position) -> Option<i64> {
    match &position.clock {
        Some(Value::Timestamp(text)) => timestamp_seconds(text),
        _ => None,
    }
}

/// `values` (the column's then the key's), unless the column is past the database's clock:
/// then the position just before every row stamped at the clock, so the mark never runs
/// ahead of the clock. A stamp that is no readable time counts as past it.
fn bounded(feed: &Feed, position: &Position, values: Vec<Value>) -> Vec<Value> {
    let Some(clock) = clock_seconds(position).filter(|_| clocked(feed)) else {
        return values;
    };
    let ahead = match values.first() {
        None | Some(Value::Null) => false,
        Some(Value::Timestamp(text)) => timestamp_seconds(text).is_none_or(|at| at > clock),
        Some(_) => true,
    };
    match sql_timestamp(clock) {
        // NULL keys sort first: the rows stamped exactly at the clock are read again.
        Some(text) if ahead => std::iter::once(Value::Timestamp(text))
            .chain((0..feed.key_len).map(|_| Value::Null))
            .collect(),
        _ => values,
    }
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

    fn clock(&self, feed: &Feed, dialect: Dialect) -> Option<Statement> {
        clocked(feed).then(|| dialect.clock(feed.clock)).flatten()
    }

    fn stamped_ahead(&self, feed: &Feed, position: &Position, row: &[Value]) -> bool {
        let (Some(clock), Some(Value::Timestamp(at))) =
            (clock_seconds(position), row.get(column(feed)))
        else {
            return false;
        };
        let allowed = i64::try_from(feed.clock_skew.as_secs()).unwrap_or(i64::MAX);
        clocked(feed) && timestamp_seconds(at).is_some_and(|at| at > clock.saturating_add(allowed))
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
                    per_group: None,
                })
            }
            Phase::Baseline => dialect.select(&scan::by_key(feed, position.after.clone())),
            Phase::Polling => {
                let lag_ms = feed.lag.as_millis() as i64;
                // Paging goes on after the last row read, even a future one; only the start
                // is bounded (a mark stored before the clock guard may be past the clock).
                let after = position.after.clone().or_else(|| {
                    start(&position.marks, lag_ms, super::now_ms())
                        .filter(|m| !m.values.is_empty())
                        .map(|m| bounded(feed, position, m.values.clone()))
                });
                dialect.select(&Select {
                    relation: Relation::Table(feed.table.clone()),
                    columns: feed.columns.clone(),
                    filter: Vec::new(),
                    order: scan::order(feed, order_columns),
                    after,
                    limit: feed.page_size,
                    per_group: None,
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
        if let Some(clock) = position.clock.as_ref().filter(|_| clocked(feed)) {
            if clock_seconds(position).is_none() {
                return Err(ChangeError::Unexpected(format!(
                    "the database's clock reads {clock:?}, not a timestamp"
                )));
            }
        }
        match position.phase {
            Phase::Start => Ok(Page {
                candidates: Vec::new(),
                next: Position {
                    phase: Phase::Baseline,
                    marks: vec![Mark {
                        at_ms: now_ms,
                        values: bounded(
                            feed,
                            position,
                            rows.into_iter().next().unwrap_or_default(),
                        ),
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
                let reached = last
                    .or_else(|| position.after.clone())
                    .map(|values| bounded(feed, position, values));
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

    fn clocked_at(position: Position, clock: &str) -> Position {
        Position {
            clock: Some(Value::Timestamp(clock.into())),
            ..position
        }
    }

    #[test]
    fn the_mark_never_runs_ahead_of_the_database_clock() {
        let feed = jobs_feed("high_water_mark", 2);
        let now = "2026-06-01 12:00:00";
        let at_clock = vec![
            Value::Timestamp(now.into()),
            Value::Null, // before every key stamped at the clock
        ];
        // A sentinel as the newest row does not fix the starting mark.
        let start = clocked_at(Position::default(), "2026-06-01 12:00:00.123456");
        let sentinel = vec![
            Value::Timestamp("9999-12-31 23:59:59".into()),
            Value::Text(b"Z".to_vec()),
        ];
        let page = HighWaterMark
            .interpret(&feed, &start, vec![sentinel], 1_000)
            .unwrap();
        assert_eq!(page.next.marks[0].values, at_clock);
        // A poll pages on through future rows, then marks the clock, not the last row read.
        let polling = clocked_at(
            Position {
                phase: Phase::Polling,
                marks: vec![Mark {
                    at_ms: 0,
                    values: mark_values(&feed, &row("A", "2026-06-01 11:00:00")),
                }],
                ..Position::default()
            },
            now,
        );
        let full = vec![
            row("B", "2026-06-01 11:59:00"),
            row("C", "2026-06-01 13:00:00"),
        ];
        let page = HighWaterMark
            .interpret(&feed, &polling, full.clone(), 1_000)
            .unwrap();
        assert_eq!(page.next.after, Some(mark_values(&feed, &full[1])));
        let end = HighWaterMark
            .interpret(
                &feed,
                &page.next,
                vec![row("D", "9999-12-31 23:59:59")],
                2_000,
            )
            .unwrap();
        assert_eq!(end.next.marks.last().unwrap().values, at_clock);
        // The next poll reads every row stamped at or after the clock.
        let next = HighWaterMark.read(&feed, &end.next, Dialect::Postgres);
        assert!(
            next.sql.contains(
                "WHERE ((\"LAST_UPD\" > ? OR (\"LAST_UPD\" = ? AND \"JOB_NO\" IS NOT NULL)))"
            ),
            "{}",
            next.sql
        );
        assert_eq!(next.params[0].value, Value::Timestamp(now.into()));
        // Rows up to the clock move the mark as before.
        let behind = HighWaterMark
            .interpret(
                &feed,
                &polling,
                vec![row("E", "2026-06-01 11:59:59")],
                2_000,
            )
            .unwrap();
        assert_eq!(
            behind.next.marks.last().unwrap().values,
            mark_values(&feed, &row("E", "2026-06-01 11:59:59"))
        );
        // A mark stored past the clock (before the guard existed) is read from the clock.
        let blind = clocked_at(
            Position {
                phase: Phase::Polling,
                marks: vec![Mark {
                    at_ms: 0,
                    values: mark_values(&feed, &row("A", "9999-12-31 23:59:59")),
                }],
                ..Position::default()
            },
            now,
        );
        let read = HighWaterMark.read(&feed, &blind, Dialect::Sqlite);
        assert_eq!(read.params[0].value, Value::Timestamp(now.into()));
        // Without a clock (an identity column, a generic source) nothing is bounded.
        let unclocked = Position {
            clock: None,
            ..page.next.clone()
        };
        let end = HighWaterMark
            .interpret(
                &feed,
                &unclocked,
                vec![row("D", "9999-12-31 23:59:59")],
                2_000,
            )
            .unwrap();
        assert_eq!(
            end.next.marks.last().unwrap().values,
            mark_values(&feed, &row("D", "9999-12-31 23:59:59"))
        );
        let garbled = clocked_at(polling, "soon");
        assert!(HighWaterMark.interpret(&feed, &garbled, vec![], 0).is_err());
    }

    #[test]
    fn only_stamps_beyond_the_clock_and_its_skew_are_ahead() {
        let mut feed = jobs_feed("high_water_mark", 2);
        feed.clock_skew = std::time::Duration::from_secs(300);
        assert!(HighWaterMark.clock(&feed, Dialect::MySql).is_some());
        let position = clocked_at(Position::default(), "2026-06-01 12:00:00");
        let ahead =
            |feed: &Feed, at: &str| HighWaterMark.stamped_ahead(feed, &position, &row("A", at));
        assert!(!ahead(&feed, "2026-06-01 11:00:00"));
        assert!(!ahead(&feed, "2026-06-01 12:05:00"), "within the skew");
        assert!(ahead(&feed, "2026-06-01 12:05:01"));
        assert!(ahead(&feed, "9999-12-31 23:59:59"));
        assert!(!HighWaterMark.stamped_ahead(
            &feed,
            &Position::default(),
            &row("A", "9999-12-31 23:59:59")
        ));
        // An identity column has no clock.
        feed.columns[2].1 = ColumnType::Integer;
        assert!(HighWaterMark.clock(&feed, Dialect::MySql).is_none());
        assert!(!ahead(&feed, "9999-12-31 23:59:59"));
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
