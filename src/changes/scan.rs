//! Reads shared by the strategies: the whole table page by page in key order.

use super::{Candidate, ChangeError, Feed, Page, Phase, Position};
use crate::source::select::{OrderTerm, Relation, Select};
use crate::source::{Rows, Value};

/// `ORDER BY` terms over `columns` (indexes into the feed's columns), ascending.
pub fn order(feed: &Feed, columns: impl IntoIterator<Item = usize>) -> Vec<OrderTerm> {
    columns
        .into_iter()
        .map(|i| OrderTerm {
            column: feed.columns[i].0.clone(),
            column_type: feed.columns[i].1,
            descending: false,
            nullable: false,
        })
        .collect()
}

/// Every feed column, in key order, after `after`.
pub fn by_key(feed: &Feed, after: Option<Vec<Value>>) -> Select {
    Select {
        relation: Relation::Table(feed.table.clone()),
        columns: feed.columns.clone(),
        filter: Vec::new(),
        order: order(feed, 0..feed.key_len),
        after,
        limit: feed.page_size,
        per_group: None,
    }
}

/// Rows in feed column order as candidates.
pub fn candidates(feed: &Feed, rows: &Rows) -> Result<Vec<Candidate>, ChangeError> {
    rows.iter()
        .map(|row| {
            if row.len() < feed.columns.len() {
                return Err(ChangeError::Unexpected(format!(
                    "{} columns where {} were asked for",
                    row.len(),
                    feed.columns.len()
                )));
            }
            Ok(Candidate {
                key: row[..feed.key_len].to_vec(),
                row: Some(row[..feed.columns.len()].to_vec()),
            })
        })
        .collect()
}

/// The key-order position after the last of `rows`, or `None` when the table is done.
pub fn next_after(feed: &Feed, rows: &Rows) -> Option<Vec<Value>> {
    (rows.len() >= feed.page_size)
        .then(|| rows.last().map(|r| r[..feed.key_len].to_vec()))
        .flatten()
}

/// The position of a key-order scan once `rows` are read: the same phase, further on.
pub fn advanced(feed: &Feed, position: &Position, rows: &Rows) -> Position {
    Position {
        after: next_after(feed, rows),
        ..position.clone()
    }
}

/// A page of the key-order baseline scan: every row recorded, polling once the table is done.
/// A re-snapshot (a later `pass`) is no baseline: it announces what changed and ends with a
/// sweep of the rows it did not see.
pub fn baseline_page(feed: &Feed, position: &Position, rows: &Rows) -> Result<Page, ChangeError> {
    let next = advanced(feed, position, rows);
    let done = next.after.is_none();
    Ok(Page {
        candidates: candidates(feed, rows)?,
        next: Position {
            phase: if done {
                Phase::Polling
            } else {
                Phase::Baseline
            },
            ..next
        },
        done,
        baseline: position.pass == 0,
        sweep_before: (done && position.pass > 0).then_some(position.pass),
    })
}
