//! A pooled ODBC connection and the reads prepared on it: each distinct read statement is
//! prepared once per connection (the database parses and plans it once, the driver describes
//! its columns once) and executed again with new parameters, into a fetch buffer kept with it.

use std::sync::{Arc, Mutex, MutexGuard};

use hashlink::LruCache;
use odbc_api::buffers::TextRowSet;
use odbc_api::handles::StatementConnection;
use odbc_api::{Connection, Prepared, SharedConnection};

use crate::source::ColumnType;

/// Distinct read statements kept prepared per connection; the least recently used one is
/// closed when another is prepared (a database bounds its prepared statements per session or
/// in all, MariaDB's `max_prepared_stmt_count`).
const PREPARED_PER_CONNECTION: usize = 64;

/// Bytes of fetch buffers kept per connection; a statement whose buffer would not fit gets a
/// new one each time (SQLite's text columns take `max_text_bytes` each, whatever they hold).
const BUFFER_BYTES_PER_CONNECTION: usize = 4 << 20;

/// A read statement prepared on one connection.
pub struct PreparedRead {
    /// The prepared statement; it holds the connection it was prepared on.
    pub statement: Prepared<StatementConnection<SharedConnection<'static>>>,
    /// What its fetches keep from one run to the next.
    pub kept: KeptFetch,
}

/// What a prepared read's fetches keep from one run to the next.
#[derive(Default)]
pub struct KeptFetch {
    /// The result columns' types the widths were described for.
    pub columns: Vec<ColumnType>,
    /// Bytes for each result column as text, once described.
    pub widths: Option<Vec<usize>>,
    /// The fetch buffer of the last execution (and its rows), kept while the connection's
    /// budget allows.
    pub buffer: Option<(TextRowSet, usize)>,
    /// Whether a block buffer was ever bound to it: its row array size stays set, so a row by
    /// row fetch would skip rows.
    pub bound: bool,
}

/// One connection of the pool with its prepared reads.
pub struct Pooled {
    connection: SharedConnection<'static>,
    reads: LruCache<String, PreparedRead>,
}

impl Pooled {
    /// Wraps a fresh connection.
    pub fn new(connection: Connection<'static>) -> Self {
        Self {
            connection: Arc::new(Mutex::new(connection)),
            reads: LruCache::new(PREPARED_PER_CONNECTION),
        }
    }

    /// The connection, for statements that are not prepared reads (writes, calls, pings).
    pub fn connection(&self) -> MutexGuard<'_, Connection<'static>> {
        // A thread that panicked holding it drops this `Pooled` with it; the handle under a
        // poisoned lock is still a handle.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The prepared read of `sql`, prepared now when it is not kept yet.
    pub fn read(
        &mut self,
        sql: &str,
        prepare: impl FnOnce(
            SharedConnection<'static>,
        ) -> Result<
            Prepared<StatementConnection<SharedConnection<'static>>>,
            odbc_api::Error,
        >,
    ) -> Result<&mut PreparedRead, odbc_api::Error> {
        if !self.reads.contains_key(sql) {
            let statement = prepare(Arc::clone(&self.connection))?;
            self.reads.insert(
                sql.to_string(),
                PreparedRead {
                    statement,
                    kept: KeptFetch::default(),
                },
            );
        }
        self.reads
            .get_mut(sql)
            .ok_or(odbc_api::Error::NoDiagnostics {
                function: "SQLPrepare",
            })
    }

    /// Closes the prepared read of `sql` (it failed: the table may have changed under it).
    pub fn forget(&mut self, sql: &str) {
        self.reads.remove(sql);
    }

    /// Keeps `buffer` of `rows` rows with the read of `sql` when the connection's buffers stay
    /// within budget.
    pub fn keep_buffer(&mut self, sql: &str, buffer: TextRowSet, rows: usize) {
        let held: usize = self
            .reads
            .iter()
            .filter(|(other, _)| other.as_str() != sql)
            .map(|(_, read)| read.kept.buffer_bytes())
            .sum();
        if let Some(read) = self.reads.get_mut(sql).map(|read| &mut read.kept) {
            let bytes = read
                .widths
                .as_deref()
                .map_or(usize::MAX, |w| text_buffer_bytes(rows, w));
            if held.saturating_add(bytes) <= BUFFER_BYTES_PER_CONNECTION {
                read.buffer = Some((buffer, rows));
            }
        }
    }
}

impl KeptFetch {
    fn buffer_bytes(&self) -> usize {
        match (&self.buffer, &self.widths) {
            (Some((_, rows)), Some(widths)) => text_buffer_bytes(*rows, widths),
            _ => 0,
        }
    }
}

/// Bytes a text buffer of `rows` rows with `widths` holds (values, terminators, indicators).
pub fn text_buffer_bytes(rows: usize, widths: &[usize]) -> usize {
    widths.iter().map(|w| (w + 1 + 8) * rows).sum()
}
