//! Change polling: Portico notices rows changed inside the legacy database (whoever changed
//! them) by reading it with ordinary queries, and turns them into events with stable ids.

mod detect;
mod feed;
mod high_water_mark;
pub mod lease;
pub mod poller;
mod reconcile;
pub mod render;
mod scan;
mod snapshot_diff;
mod tsql;

use serde::{Deserialize, Serialize};

pub use detect::{event_id, row_hash, EventKind};
pub use feed::{compile_feeds, Feed, FeedView};
pub use high_water_mark::HighWaterMark;
pub use reconcile::Reconcile;
pub use snapshot_diff::SnapshotDiff;
pub use tsql::{ChangeTracking, Rowversion};

use crate::source::{Dialect, Rows, Statement, Value};

/// Where a feed is, stored as JSON in the state store with the events it produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// What the feed is doing.
    #[serde(default)]
    pub phase: Phase,
    /// Paging inside the current read: rows after these values of the read's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<Value>>,
    /// `high_water_mark`: positions the column reached, oldest first; each poll re-reads from
    /// the newest one at least `lag` old.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Mark>,
    /// The database's clock read at the start of this poll (`high_water_mark` over a
    /// timestamp: the mark never passes it); not stored.
    #[serde(skip)]
    pub clock: Option<Value>,
    /// `snapshot_diff`, and `high_water_mark` reconciliation: the current pass; rows not seen
    /// in a finished pass were deleted.
    #[serde(default)]
    pub pass: i64,
    /// SQL Server: the change tracking version or `rowversion` reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// `high_water_mark` with `reconcile_interval`: the reconciliation pass (it counts in
    /// `pass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
}

/// A feed's phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing read yet: fix the starting point.
    #[default]
    Start,
    /// Recording the rows that exist (events only with `initial = "everything"`).
    Baseline,
    /// Reading changes.
    Polling,
}

/// A position the monotonic column reached, and when Portico saw it get there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The column's then key columns' values; empty: before every row.
    pub values: Vec<Value>,
}

/// A row a read found, for the detector to compare with what it knew.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Key column values.
    pub key: Vec<Value>,
    /// The row in feed column order; `None`: the row was deleted.
    pub row: Option<Vec<Value>>,
}

/// What one read found, and where the feed is after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Rows to compare.
    pub candidates: Vec<Candidate>,
    /// The position once this page is committed.
    pub next: Position,
    /// The poll is complete: wait for the next interval.
    pub done: bool,
    /// The candidates form the baseline (recorded, announced only when asked).
    pub baseline: bool,
    /// Rows last seen before this pass are gone (after the last page of a `snapshot_diff` or
    /// reconciliation pass).
    pub sweep_before: Option<i64>,
}

/// Why a read could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The database's answer is not what the strategy asked for.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// A way of noticing changes: what to read next, and what the answer means.
pub trait ChangeStrategy: Send + Sync + std::fmt::Debug {
    /// The statement that reads the next page from `position`.
    fn read(&self, feed: &Feed, position: &Position, dialect: Dialect) -> Statement;
    /// Turns the answer to `read` into candidates and the next position.
    fn interpret(
        &self,
        feed: &Feed,
        position: &Position,
        rows: Rows,
        now_ms: i64,
    ) -> Result<Page, ChangeError>;
    /// Whether it notices deleted rows (a high-water mark only sees rows that are there).
    fn sees_deletes(&self) -> bool;
    /// The statement that reads the database's clock at the start of each poll, for a
    /// strategy whose position must not run ahead of it; its answer goes in `Position::clock`.
    fn clock(&self, _feed: &Feed, _dialect: Dialect) -> Option<Statement> {
        None
    }
    /// Whether `row` is stamped further ahead of `position.clock` than the feed allows.
    fn stamped_ahead(&self, _feed: &Feed, _position: &Position, _row: &[Value]) -> bool {
        false
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
