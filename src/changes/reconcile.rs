//! Reconciliation of a `high_water_mark` feed: a pass that pages through the whole table by
//! key, one page per poll after the mark's, so the rows' hashes are compared like
//! `snapshot_diff` does. It finds what the mark cannot see (a row updated without a new stamp,
//! one committed behind the mark, a deleted row) at the cost of one scan per
//! `reconcile_interval`. Its progress lives in the feed's [`Position`], so a restart resumes it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{scan, ChangeError, Feed, Page, Phase, Position};
use crate::source::{Dialect, Rows, Statement, Value};

/// Where a feed's reconciliation is, stored in its position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    /// A pass is under way.
    #[serde(default)]
    pub running: bool,
    /// The pass continues after these key values; `None`: from the first key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<Value>>,
    /// When the current (or last) pass began, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub started_ms: i64,
    /// When the last pass ended (0: none has).
    #[serde(default)]
    pub ended_ms: i64,
    /// Rows the current pass read so far.
    #[serde(default)]
    pub rows: u64,
    /// Rows the current pass announced as created so far.
    #[serde(default)]
    pub created: u64,
    /// Rows the current pass announced as updated so far.
    #[serde(default)]
    pub updated: u64,
}

/// The position to read the next reconciliation page from, or `None` when none is due: the
/// feed is not polling yet, or the last pass ended less than `interval` ago. A new pass takes
/// the next pass number, so rows the mark's polls record meanwhile count as seen in it.
pub fn due(position: &Position, interval: Duration, now_ms: i64) -> Option<Position> {
    if position.phase != Phase::Polling {
        return None;
    }
    let state = position.reconcile.clone().unwrap_or_default();
    if state.running {
        return Some(position.clone());
    }
    let since = now_ms.saturating_sub(state.ended_ms);
    if state.ended_ms > 0 && since < interval.as_millis() as i64 {
        return None;
    }
    Some(Position {
        pass: position.pass + 1,
        reconcile: Some(Reconcile {
            running: true,
            started_ms: now_ms,
            ended_ms: state.ended_ms,
            ..Reconcile::default()
        }),
        ..position.clone()
    })
}

/// The statement that reads the page of a pass at `position` (as [`due`] gave it).
pub fn read(feed: &Feed, position: &Position, dialect: Dialect) -> Statement {
    let after = position.reconcile.as_ref().and_then(|r| r.after.clone());
    dialect.select(&scan::by_key(feed, after))
}

/// The page of a pass: its rows to compare, and the position after it. The last page ends the
/// pass and sweeps the recorded rows it did not see.
pub fn interpret(
    feed: &Feed,
    position: &Position,
    rows: &Rows,
    now_ms: i64,
) -> Result<Page, ChangeError> {
    let candidates = scan::candidates(feed, rows)?;
    let mut state = position.reconcile.clone().unwrap_or_default();
    state.after = scan::next_after(feed, rows);
    state.rows += rows.len() as u64;
    let done = state.after.is_none();
    if done {
        state.running = false;
        state.ended_ms = now_ms;
    }
    Ok(Page {
        candidates,
        next: Position {
            reconcile: Some(state),
            ..position.clone()
        },
        done,
        baseline: false,
        sweep_before: done.then_some(position.pass),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::feed::tests::jobs_feed;

    fn row(key: &str) -> Vec<Value> {
        vec![
            Value::Text(key.into()),
            Value::Text(b"O".to_vec()),
            Value::Timestamp("2026-01-01 00:00:00".into()),
        ]
    }

    #[test]
    fn a_pass_starts_when_polling_and_the_interval_since_the_last_one_elapsed() {
        let hour = Duration::from_secs(3_600);
        let baseline = Position {
            phase: Phase::Baseline,
            ..Position::default()
        };
        assert_eq!(due(&baseline, hour, 1_000), None);
        // Never reconciled: the first pass starts at once, with the next pass number.
        let polling = Position {
            phase: Phase::Polling,
            pass: 4,
            ..Position::default()
        };
        let first = due(&polling, hour, 1_000).unwrap();
        assert_eq!(first.pass, 5);
        let state = first.reconcile.clone().unwrap();
        assert!(state.running && state.after.is_none());
        assert_eq!(state.started_ms, 1_000);
        // A pass under way continues where it is, in its pass.
        assert_eq!(due(&first, hour, 2_000), Some(first.clone()));
        // Ended at 10 s: the next one is due an hour later, not before.
        let ended = Position {
            reconcile: Some(Reconcile {
                running: false,
                ended_ms: 10_000,
                ..state
            }),
            ..first
        };
        assert_eq!(due(&ended, hour, 10_000 + 3_599_999), None);
        let next = due(&ended, hour, 10_000 + 3_600_000).unwrap();
        assert_eq!(next.pass, 6);
        assert_eq!(next.reconcile.unwrap().ended_ms, 10_000);
    }

    #[test]
    fn the_pass_is_stored_in_the_position_and_older_positions_have_none() {
        let older: Position = serde_json::from_str(r#"{"phase":"polling","pass":3}"#).unwrap();
        assert_eq!((older.pass, older.reconcile), (3, None));
        let under_way = Position {
            phase: Phase::Polling,
            pass: 4,
            reconcile: Some(Reconcile {
                running: true,
                after: Some(vec![Value::Text(b"J7".to_vec())]),
                started_ms: 1_000,
                rows: 7,
                updated: 1,
                ..Reconcile::default()
            }),
            ..Position::default()
        };
        let text = serde_json::to_string(&under_way).unwrap();
        // A restart resumes the pass where it was.
        let resumed: Position = serde_json::from_str(&text).unwrap();
        assert_eq!(resumed, under_way);
        assert_eq!(
            due(&resumed, Duration::from_secs(3_600), 2_000),
            Some(under_way)
        );
    }

    #[test]
    fn a_pass_pages_by_key_and_its_last_page_sweeps_the_rows_it_did_not_see() {
        let feed = jobs_feed("high_water_mark", 2);
        let polling = Position {
            phase: Phase::Polling,
            marks: vec![crate::changes::Mark {
                at_ms: 5,
                values: Vec::new(),
            }],
            ..Position::default()
        };
        let start = due(&polling, Duration::from_secs(1), 100).unwrap();
        let sql = read(&feed, &start, Dialect::Sqlite).sql;
        assert_eq!(
            sql,
            "SELECT \"JOB_NO\", \"STATUS\", \"LAST_UPD\" FROM \"JOBHDR\" ORDER BY \"JOB_NO\" LIMIT 2"
        );
        // A full page: the pass goes on after its last key; the mark's state is untouched.
        let page = interpret(&feed, &start, &vec![row("A"), row("B")], 200).unwrap();
        assert!(!page.done && !page.baseline && page.sweep_before.is_none());
        assert_eq!(page.candidates.len(), 2);
        assert_eq!(page.next.marks, polling.marks);
        let state = page.next.reconcile.clone().unwrap();
        assert_eq!(state.after, Some(vec![Value::Text(b"B".to_vec())]));
        assert_eq!((state.running, state.rows), (true, 2));
        let sql = read(&feed, &page.next, Dialect::Sqlite).sql;
        assert!(sql.contains("WHERE (\"JOB_NO\" > ?)"), "{sql}");
        // A short page ends the pass: rows recorded before this pass are swept.
        let end = interpret(&feed, &page.next, &vec![row("C")], 300).unwrap();
        assert!(end.done && !end.baseline);
        assert_eq!(end.sweep_before, Some(1));
        let state = end.next.reconcile.unwrap();
        assert!(!state.running && state.after.is_none());
        assert_eq!(
            (state.rows, state.started_ms, state.ended_ms),
            (3, 100, 300)
        );
        assert_eq!(end.next.pass, 1);
    }
}
