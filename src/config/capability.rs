//! What a weak ODBC driver can do: the declared capability profile of a source, the statement
//! that proves it answers, and the in-memory snapshots that serve what it cannot push down.

use std::time::Duration;

use serde::Deserialize;

/// Capabilities a source's driver is declared to have (`true`) or lack (`false`); those left
/// out are probed at start (see `SourceConfig::probe`) or assumed.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesConfig {
    /// Fetching many rows per call (a row array size); without it rows are fetched one by one.
    pub block_fetch: Option<bool>,
    /// `?` parameter markers (every filter, key lookup and keyset page binds its values).
    pub parameters: Option<bool>,
    /// `ORDER BY` (every list and page is ordered).
    pub order_by: Option<bool>,
    /// `IN (…)` lists (`in` filters).
    pub in_list: Option<bool>,
    /// The dialect's row limit clause (`LIMIT`, `TOP`).
    pub limit: Option<bool>,
    /// Correct comparisons of floating, decimal and currency values.
    pub float_compare: Option<bool>,
    /// Correct comparisons of date and timestamp values.
    pub date_compare: Option<bool>,
    /// `IS NULL` / `IS NOT NULL`.
    pub is_null: Option<bool>,
    /// Writes in transactions (`INSERT`, `UPDATE`, `DELETE`, commit and rollback).
    pub writes: Option<bool>,
}

/// Tables served whole from memory: read with the simplest statement, filtered, sorted and
/// paged by Portico.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Largest table read whole; a table with more rows is refused with a clear error, never
    /// cut short.
    #[serde(default = "default_snapshot_rows")]
    pub max_rows: usize,
    /// How long a snapshot is served before the table is read again.
    #[serde(
        default = "default_snapshot_ttl",
        deserialize_with = "super::units::duration"
    )]
    pub ttl: Duration,
}

fn default_snapshot_rows() -> usize {
    50_000
}

fn default_snapshot_ttl() -> Duration {
    Duration::from_secs(300)
}
