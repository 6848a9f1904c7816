//! In-memory snapshots of whole tables, for a driver that cannot filter, sort or page right:
//! each table is read with the simplest statement (`SELECT cols FROM table`), bounded by
//! `max_rows` (a larger table is refused, never cut short), and read again once `ttl` has
//! passed or a write through Portico committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::memory::Table;
use super::select::{Relation, Select};
use super::{ColumnType, Source, SourceError};

/// Bounds of a source's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// Largest table read whole.
    pub max_rows: usize,
    /// How long a snapshot is served before the table is read again.
    pub ttl: Duration,
}

/// One table's rows as last read.
struct Taken {
    table: Arc<Table>,
    read_at: Instant,
}

/// The snapshots of one source's tables.
pub struct Snapshots {
    settings: SnapshotSettings,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Taken>>>>>,
}

impl Snapshots {
    /// No table read yet.
    pub fn new(settings: SnapshotSettings) -> Self {
        Self {
            settings,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every snapshot (after a write), so the next read sees the database again.
    pub fn clear(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.clear();
        }
    }

    fn slot(&self, table: &str) -> Arc<tokio::sync::Mutex<Option<Taken>>> {
        match self.slots.lock() {
            Ok(mut slots) => slots.entry(table.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// The snapshot of `table` holding at least `columns`, read through `source` when there is
    /// none, it is older than the TTL, or it lacks a column (then read with the columns of
    /// both). Concurrent callers of one table wait for one read.
    pub async fn table(
        &self,
        source: &dyn Source,
        table: &str,
        columns: &[(String, Option<ColumnType>)],
    ) -> Result<Arc<Table>, SourceError> {
        let slot = self.slot(table);
        let mut taken = slot.lock().await;
        let holds = |t: &Table| {
            columns.iter().all(|(name, column_type)| {
                t.columns
                    .iter()
                    .any(|(n, t)| n == name && column_type.is_none_or(|c| c == *t))
            })
        };
        if let Some(current) = taken.as_ref() {
            if current.read_at.elapsed() < self.settings.ttl && holds(&current.table) {
                return Ok(current.table.clone());
            }
        }
        let mut wanted: Vec<(String, ColumnType)> = taken
            .as_ref()
            .map(|t| t.table.columns.clone())
            .unwrap_or_default();
        for (name, column_type) in columns {
            let known = wanted
                .iter()
                .any(|(n, t)| n == name && column_type.is_none_or(|c| c == *t));
            if !known {
                wanted.push((name.clone(), column_type.unwrap_or(ColumnType::Varchar)));
            }
        }
        let read = source.dialect().select(&Select {
            relation: Relation::Table(table.to_string()),
            columns: wanted.clone(),
            filter: Vec::new(),
            order: Vec::new(),
            after: None,
            limit: self.settings.max_rows.saturating_add(1),
            per_group: None,
        });
        let started = Instant::now();
        let rows = source.query(read).await?;
        if rows.len() > self.settings.max_rows {
            return Err(SourceError::Unsupported {
                source_name: source.name().to_string(),
                request: "reading this resource, which holds more rows than its data source \
                          serves"
                    .into(),
                needs: format!(
                    "a snapshot of `{table}`, which holds more than snapshot.max_rows ({}) rows",
                    self.settings.max_rows
                ),
                fix: format!(
                    "raise [sources.{}] snapshot.max_rows, or serve `{table}` from a source \
                     whose driver filters, sorts and pages itself",
                    source.name()
                ),
            });
        }
        tracing::info!(
            source = source.name(),
            table,
            rows = rows.len(),
            columns = wanted.len(),
            millis = started.elapsed().as_millis() as u64,
            "read a table snapshot"
        );
        let fresh = Arc::new(Table {
            columns: wanted,
            rows,
        });
        *taken = Some(Taken {
            table: fresh.clone(),
            read_at: started,
        });
        Ok(fresh)
    }
}
