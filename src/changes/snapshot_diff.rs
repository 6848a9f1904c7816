//! `snapshot_diff`: pages through the whole table by key and compares each row's hash with the
//! one recorded; rows a finished pass did not see were deleted. Works on any database and
//! costs one scan per poll; memory stays bounded by the page size.

use super::{scan, ChangeError, ChangeStrategy, Feed, Page, Phase, Position};
use crate::source::{Dialect, Rows, Statement};

/// The `snapshot_diff` strategy.
#[derive(Debug)]
pub struct SnapshotDiff;

impl ChangeStrategy for SnapshotDiff {
    fn sees_deletes(&self) -> bool {
        true
    }

    fn read(&self, feed: &Feed, position: &Position, dialect: Dialect) -> Statement {
        dialect.select(&scan::by_key(feed, position.after.clone()))
    }

    fn interpret(
        &self,
        feed: &Feed,
        position: &Position,
        rows: Rows,
        _now_ms: i64,
    ) -> Result<Page, ChangeError> {
        let candidates = scan::candidates(feed, &rows)?;
        let baseline = position.phase != Phase::Polling;
        let next = scan::advanced(feed, position, &rows);
        if next.after.is_some() {
            return Ok(Page {
                candidates,
                next: Position {
                    phase: if baseline {
                        Phase::Baseline
                    } else {
                        Phase::Polling
                    },
                    ..next
                },
                done: false,
                baseline,
                sweep_before: None,
            });
        }
        // The end of the table: the pass is complete.
        Ok(Page {
            candidates,
            next: Position {
                phase: Phase::Polling,
                after: None,
                pass: position.pass + 1,
                ..position.clone()
            },
            done: true,
            baseline,
            sweep_before: (!baseline).then_some(position.pass),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::feed::tests::jobs_feed;
    use crate::source::Value;

    fn row(key: &str) -> Vec<Value> {
        vec![
            Value::Text(key.into()),
            Value::Text(b"O".to_vec()),
            Value::Null,
        ]
    }

    #[test]
    fn a_pass_pages_by_key_and_ends_with_a_sweep_of_unseen_rows() {
        let feed = jobs_feed("snapshot_diff", 2);
        let start = Position::default();
        let sql = SnapshotDiff.read(&feed, &start, Dialect::Sqlite).sql;
        assert_eq!(
            sql,
            "SELECT \"JOB_NO\", \"STATUS\", \"LAST_UPD\" FROM \"JOBHDR\" ORDER BY \"JOB_NO\" LIMIT 2"
        );
        // A full page: the baseline continues after its last key.
        let page = SnapshotDiff
            .interpret(&feed, &start, vec![row("A"), row("B")], 0)
            .unwrap();
        assert!(page.baseline && !page.done && page.sweep_before.is_none());
        assert_eq!(page.next.after, Some(vec![Value::Text(b"B".to_vec())]));
        let sql = SnapshotDiff.read(&feed, &page.next, Dialect::Sqlite).sql;
        assert!(sql.contains("WHERE (\"JOB_NO\" > ?)"), "{sql}");
        // A short page ends the baseline; nothing is swept after it.
        let end = SnapshotDiff
            .interpret(&feed, &page.next, vec![row("C")], 0)
            .unwrap();
        assert!(end.baseline && end.done && end.sweep_before.is_none());
        assert_eq!(
            (end.next.phase, end.next.pass, end.next.after.clone()),
            (Phase::Polling, 1, None)
        );
        // The end of a polling pass sweeps rows not seen in it.
        let pass = SnapshotDiff.interpret(&feed, &end.next, vec![], 0).unwrap();
        assert!(!pass.baseline && pass.done);
        assert_eq!(pass.sweep_before, Some(1));
        assert_eq!(pass.next.pass, 2);
    }
}
