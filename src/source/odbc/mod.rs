//! ODBC sources through the system unixODBC (odbc-api): pooled connections, blocking calls on
//! a bounded set of threads, query timeouts and a concurrency limit that sheds load.

mod call;
pub mod catalog;
mod pooled;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use odbc_api::buffers::Indicator;
use odbc_api::buffers::TextRowSet;
use odbc_api::parameter::{InputParameter, VarCharBox, WithDataType};
use odbc_api::{Connection, ConnectionOptions, ConnectionTransitions, Cursor, DataType};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::telemetry::metrics::SourceMetrics;

use super::call::{Call, CallOutcome};
use super::diagnostic::driver_text;
use super::meters::{Meters, Raised};
use super::statement_span;
use super::write::{Step, WriteOutcome};
use pooled::Pooled;

use super::{
    decode, ColumnType, Dialect, Param, Rows, Source, SourceError, SourceFuture, Statement, Value,
};

/// Settings of one ODBC source, resolved from configuration.
#[derive(Debug, Clone)]
pub struct OdbcSettings {
    /// Name in configuration.
    pub name: String,
    /// ODBC connection string (secrets already interpolated).
    pub connection_string: String,
    /// Dialect to generate.
    pub dialect: Dialect,
    /// Queries and connections at once.
    pub max_concurrency: usize,
    /// Wait for a free slot before answering busy.
    pub queue_timeout: Duration,
    /// Longest a query may take.
    pub query_timeout: Duration,
    /// Longest a connection attempt may take.
    pub login_timeout: Duration,
    /// Upper bound for one text value, in bytes.
    pub max_text_bytes: usize,
    /// The statement that proves the database answers; the dialect's `SELECT 1` when `None`.
    pub health_statement: Option<String>,
    /// Fetch rows one by one from the start (the driver is declared to refuse block fetches);
    /// otherwise Portico falls back by itself when the driver refuses a row array size.
    pub row_by_row: bool,
}

impl OdbcSettings {
    fn health_statement(&self) -> &str {
        self.health_statement
            .as_deref()
            .unwrap_or(self.dialect.ping())
    }
}

/// Connects with `connection_string`, followed in memory by a NUL: some drivers (mdbtools
/// 1.0) read the string up to a NUL whatever length they are given.
pub fn connect(
    connection_string: &str,
    options: ConnectionOptions,
) -> Result<Connection<'static>, odbc_api::Error> {
    let terminated = format!("{connection_string}\0");
    let text = &terminated[..connection_string.len()];
    odbc_api::environment()?.connect_with_connection_string(text, options)
}

/// A legacy database reached through an ODBC driver.
pub struct OdbcSource {
    settings: Arc<OdbcSettings>,
    slots: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<Pooled>>>,
    row_by_row: Arc<AtomicBool>,
    prepares: Arc<AtomicBool>,
    meters: Meters,
}

impl OdbcSource {
    /// Creates the source; connections are opened on first use.
    pub fn new(settings: OdbcSettings, metrics: &SourceMetrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            idle: Arc::new(Mutex::new(Vec::new())),
            row_by_row: Arc::new(AtomicBool::new(settings.row_by_row)),
            prepares: Arc::new(AtomicBool::new(true)),
            meters: Meters::new(metrics, &settings.name, settings.max_concurrency.max(1)),
            settings: Arc::new(settings),
        }
    }

    /// Whether rows are fetched one by one (declared, or the driver refused block fetches).
    pub fn fetches_row_by_row(&self) -> bool {
        self.row_by_row.load(Ordering::Relaxed)
    }

    /// Runs `work` on a blocking thread holding one concurrency slot, within the timeouts.
    async fn run<T, F>(&self, work: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce(&Worker) -> Result<T, SourceError> + Send + 'static,
    {
        let s = &self.settings;
        let busy = || SourceError::Busy {
            source_name: s.name.clone(),
            retry_after: Duration::from_secs(1),
        };
        let waiting = Raised::new(&self.meters.waiting);
        let permit = tokio::time::timeout(s.queue_timeout, self.slots.clone().acquire_owned())
            .instrument(statement_span::pool_wait(&s.name))
            .await;
        drop(waiting);
        let Ok(Ok(permit)) = permit else {
            self.meters.shed.inc();
            return Err(busy());
        };
        let in_use = self.meters.in_use.clone();
        let fate = Arc::new(Mutex::new(Fate::Running));
        let worker = Worker {
            settings: Arc::clone(s),
            idle: self.idle.clone(),
            row_by_row: self.row_by_row.clone(),
            prepares: self.prepares.clone(),
            fate: fate.clone(),
        };
        let span = tracing::Span::current();
        // The permit moves into the thread: a query that outlives its timeout still holds
        // its slot, so a hung database cannot collect unbounded threads.
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _permit = permit;
            let _busy = Raised::new(&in_use);
            work(&worker)
        });
        let budget = s.query_timeout + s.login_timeout;
        let failed = |join: tokio::task::JoinError| SourceError::Query {
            source_name: s.name.clone(),
            detail: format!("driver call failed: {join}"),
        };
        let mut task = task;
        match tokio::time::timeout(budget, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(failed(join)),
            Err(_) => {
                // A transaction already committing is waited for: its caller must learn
                // that it was written. Anything else is abandoned and will not commit.
                let committing = match fate.lock() {
                    Ok(fate) if *fate == Fate::Committing => true,
                    Ok(mut fate) => {
                        *fate = Fate::Abandoned;
                        false
                    }
                    Err(_) => false,
                };
                if committing {
                    return task.await.unwrap_or_else(|join| Err(failed(join)));
                }
                Err(SourceError::Timeout {
                    source_name: s.name.clone(),
                    timeout: s.query_timeout,
                })
            }
        }
    }
}

/// Whether the request still waits for a blocking call, so a transaction may commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// The request waits.
    Running,
    /// The transaction is committing; the request waits for the outcome.
    Committing,
    /// The request gave up (timeout): the transaction must roll back.
    Abandoned,
}

impl Source for OdbcSource {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn dialect(&self) -> Dialect {
        self.settings.dialect
    }

    fn query(&self, statement: Statement) -> SourceFuture<'_, Rows> {
        Box::pin(async move {
            let started = Instant::now();
            let dialect = self.settings.dialect;
            let result = self
                .run(move |worker| {
                    let span = statement_span::statement(dialect, &statement.sql);
                    let _entered = span.enter();
                    let rows = worker.with_connection(|pooled| worker.read(pooled, &statement));
                    statement_span::returned(&span, &rows);
                    rows
                })
                .await;
            self.meters.queries.inc();
            self.meters.seconds.observe(started.elapsed().as_secs_f64());
            result
        })
    }

    fn write(&self, steps: Vec<Step>) -> SourceFuture<'_, WriteOutcome> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.run(move |worker| worker.transaction(&steps)).await;
            self.meters.queries.inc();
            self.meters.seconds.observe(started.elapsed().as_secs_f64());
            result
        })
    }

    fn call(&self, call: Call) -> SourceFuture<'_, CallOutcome> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self
                .run(move |worker| {
                    worker.in_transaction(call.commit, |conn| {
                        let span = statement_span::statement(worker.settings.dialect, &call.sql);
                        let _entered = span.enter();
                        let outcome = call::run(
                            conn,
                            &call,
                            worker.timeout_secs(),
                            worker.settings.max_text_bytes,
                        )
                        .map_err(|e| worker.classify(e));
                        statement_span::finished(&span, &outcome);
                        outcome
                    })
                })
                .await;
            self.meters.queries.inc();
            self.meters.seconds.observe(started.elapsed().as_secs_f64());
            result
        })
    }

    fn ping(&self) -> SourceFuture<'_, ()> {
        Box::pin(async move {
            let result = self
                .run(move |worker| {
                    worker.with_connection(|pooled| {
                        pooled
                            .connection()
                            .execute(
                                worker.settings.health_statement(),
                                (),
                                Some(worker.timeout_secs()),
                            )
                            .map(|_| ())
                    })
                })
                .await;
            result.map_err(|e| match e {
                // Say which statement was refused, and what to do about a driver that
                // refuses the default one.
                SourceError::Query {
                    source_name,
                    detail,
                } => {
                    let statement = self.settings.health_statement();
                    let hint = match &self.settings.health_statement {
                        Some(_) => String::new(),
                        None => format!(
                            "; if the driver refuses `{statement}`, set [sources.{source_name}] \
                             health_statement to one it accepts, such as \
                             `SELECT COUNT(*) FROM <a small table>`"
                        ),
                    };
                    SourceError::Query {
                        detail: format!(
                            "the health statement `{statement}` was refused: {}{hint}",
                            detail.trim_end()
                        ),
                        source_name,
                    }
                }
                other => other,
            })
        })
    }
}

/// What a blocking thread needs: settings and the idle connections.
struct Worker {
    settings: Arc<OdbcSettings>,
    idle: Arc<Mutex<Vec<Pooled>>>,
    row_by_row: Arc<AtomicBool>,
    /// Whether reads are prepared once per connection (until the driver refuses to prepare).
    prepares: Arc<AtomicBool>,
    fate: Arc<Mutex<Fate>>,
}

impl Worker {
    fn timeout_secs(&self) -> usize {
        self.settings.query_timeout.as_secs().max(1) as usize
    }

    fn connect(&self) -> Result<Pooled, SourceError> {
        let unavailable = |e: odbc_api::Error| SourceError::Unavailable {
            source_name: self.settings.name.clone(),
            detail: driver_text(&e),
        };
        let options = ConnectionOptions {
            login_timeout_sec: Some(self.settings.login_timeout.as_secs().max(1) as u32),
            packet_size: None,
        };
        connect(&self.settings.connection_string, options)
            .map(Pooled::new)
            .map_err(unavailable)
    }

    fn take_idle(&self) -> Option<Pooled> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    fn give_back(&self, conn: Pooled) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `work` on a pooled connection. A pooled connection that has lost its server (see
    /// [`blame_on`]) is discarded and the work tried once more on a fresh one, so a restarted
    /// database heals without a restart of Portico; only reads go through here, and a read
    /// whose connection broke did not finish. An error that is the statement's (the database
    /// refused it) keeps the connection; one that may be either drops it. Neither is run again.
    fn with_connection<T>(
        &self,
        work: impl Fn(&mut Pooled) -> Result<T, odbc_api::Error>,
    ) -> Result<T, SourceError> {
        if let Some(mut conn) = self.take_idle() {
            match work(&mut conn) {
                Ok(value) => {
                    self.give_back(conn);
                    return Ok(value);
                }
                Err(e) => match pooled_blame(&e, &conn) {
                    Blame::Connection => match self.classify(e) {
                        // A timeout already spent the query's budget: do not spend it twice.
                        timeout @ SourceError::Timeout { .. } => return Err(timeout),
                        other => {
                            tracing::debug!(source = %self.settings.name, error = %other, "pooled connection lost; reconnecting");
                        }
                    },
                    blame => return Err(self.settle(conn, e, blame)),
                },
            }
        }
        let mut conn = self.connect()?;
        match work(&mut conn) {
            Ok(value) => {
                self.give_back(conn);
                Ok(value)
            }
            Err(e) => {
                let blame = pooled_blame(&e, &conn);
                Err(self.settle(conn, e, blame))
            }
        }
    }

    /// The error of a read that failed on `conn`, which goes back to the pool only when the
    /// error is the statement's and not a timeout (a driver may leave the connection of a
    /// cancelled statement busy).
    fn settle(&self, conn: Pooled, error: odbc_api::Error, blame: Blame) -> SourceError {
        let error = self.classify(error);
        if blame == Blame::Statement && !matches!(error, SourceError::Timeout { .. }) {
            self.give_back(conn);
        } else if blame == Blame::Unknown {
            tracing::debug!(source = %self.settings.name, error = %error, "dropping a connection after an error that may be its own");
        }
        error
    }

    /// Runs a write's steps in one transaction.
    fn transaction(&self, steps: &[Step]) -> Result<WriteOutcome, SourceError> {
        self.in_transaction(true, |conn| self.run_steps(conn, steps))
    }

    /// Runs `work` in one transaction on one connection, committed when `commit` is set and
    /// the work succeeds, rolled back otherwise. A pooled connection is pinged first (a write
    /// must not be retried once it may have reached the database); the connection goes back
    /// to the pool in autocommit mode, or is dropped when it cannot be put back cleanly.
    fn in_transaction<T: Finished>(
        &self,
        commit: bool,
        work: impl FnOnce(&Connection<'static>) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let ping = self.settings.health_statement();
        let pooled = self.take_idle().filter(|pooled| {
            pooled
                .connection()
                .execute(ping, (), Some(self.timeout_secs()))
                .is_ok()
        });
        let pooled = match pooled {
            Some(pooled) => pooled,
            None => self.connect()?,
        };
        let conn = pooled.connection();
        conn.set_autocommit(false).map_err(|e| self.classify(e))?;
        let mut result = work(&conn);
        let mut keep = commit && result.as_ref().is_ok_and(Finished::keep);
        if keep && !self.may_commit() {
            // The request timed out while the work ran (a driver without statement timeouts):
            // its caller was told so, so nothing may be written.
            keep = false;
            result = Err(SourceError::Timeout {
                source_name: self.settings.name.clone(),
                timeout: self.settings.query_timeout,
            });
        }
        let ended = if keep { conn.commit() } else { conn.rollback() };
        match (result, ended) {
            (Ok(_), Err(e)) if keep => {
                tracing::warn!(source = %self.settings.name, error = %driver_text(&e), "committing failed");
                Err(self.classify(e))
            }
            (result, ended) => {
                if ended.is_ok() && conn.set_autocommit(true).is_ok() {
                    drop(conn);
                    self.give_back(pooled);
                }
                result
            }
        }
    }

    /// Marks the transaction as committing unless the request already gave up.
    fn may_commit(&self) -> bool {
        match self.fate.lock() {
            Ok(mut fate) if *fate == Fate::Running => {
                *fate = Fate::Committing;
                true
            }
            _ => false,
        }
    }

    fn run_steps(
        &self,
        conn: &Connection<'static>,
        steps: &[Step],
    ) -> Result<WriteOutcome, SourceError> {
        let mut rows = Vec::new();
        for step in steps {
            match step {
                Step::Execute {
                    statement,
                    expect_one,
                } => {
                    let span = statement_span::statement(self.settings.dialect, &statement.sql);
                    let _entered = span.enter();
                    let count = self.execute(conn, statement);
                    statement_span::finished(&span, &count);
                    // A refused change ends the write, whether or not it had to touch one row.
                    let count = count?;
                    if let Some(reason) = expect_one {
                        if count != Some(1) {
                            return Ok(WriteOutcome::RolledBack(*reason));
                        }
                    }
                }
                Step::Read {
                    statement,
                    require_row,
                } => {
                    let span = statement_span::statement(self.settings.dialect, &statement.sql);
                    let _entered = span.enter();
                    let read = self.fetch(conn, statement).map_err(|e| self.classify(e));
                    statement_span::returned(&span, &read);
                    rows = read?;
                    if let (Some(reason), true) = (require_row, rows.is_empty()) {
                        return Ok(WriteOutcome::RolledBack(*reason));
                    }
                }
            }
        }
        Ok(WriteOutcome::Committed(rows))
    }

    /// Runs one change; the rows it touched, as the driver counts them.
    fn execute(
        &self,
        conn: &Connection<'static>,
        statement: &Statement,
    ) -> Result<Option<usize>, SourceError> {
        let params: Vec<Box<dyn InputParameter>> = statement.params.iter().map(bind).collect();
        let mut prepared = conn.preallocate().map_err(|e| self.classify(e))?;
        prepared
            .set_query_timeout_sec(self.timeout_secs())
            .map_err(|e| self.classify(e))?;
        prepared
            .execute(&statement.sql, &params[..])
            .map_err(|e| self.classify(e))?;
        prepared.row_count().map_err(|e| self.classify(e))
    }

    fn classify(&self, error: odbc_api::Error) -> SourceError {
        let (state, native_error) = match &error {
            odbc_api::Error::Diagnostics { record, .. } => {
                (Some(record.state.0), record.native_error)
            }
            _ => (None, 0),
        };
        let name = self.settings.name.clone();
        if let (Some(state), odbc_api::Error::Diagnostics { record, .. }) = (state, &error) {
            let message = String::from_utf8_lossy(&record.message);
            if let Some(violation) = super::constraint::recognise(&state, &message) {
                return SourceError::Constraint {
                    source_name: name,
                    violation,
                    detail: driver_text(&error),
                };
            }
        }
        match state {
            // HYT00/HYT01: ODBC timeouts; S1T00: ODBC 2; 57014: PostgreSQL cancelled it for us.
            Some(s) if [b"HYT00", b"HYT01", b"S1T00", b"57014"].contains(&&s) => {
                SourceError::Timeout {
                    source_name: name,
                    timeout: self.settings.query_timeout,
                }
            }
            // The server is gone or going (a restart): a 503, which a stale copy may answer.
            Some(s) if lost_connection_state(&s, native_error) => SourceError::Unavailable {
                source_name: name,
                detail: driver_text(&error),
            },
            _ => SourceError::Query {
                source_name: name,
                detail: driver_text(&error),
            },
        }
    }

    /// Runs a read on a pooled connection through its prepared statement (prepared now on first
    /// use), fetching into the buffer kept from its last run. Falls back to running it directly
    /// ([`Self::fetch`]) where preparing does not work: a driver that cannot prepare it (from
    /// then on this source's reads are run directly), or a kept statement that fails (the
    /// table may have changed under it: it is closed and the read runs once more directly,
    /// unless it timed out).
    fn read(&self, pooled: &mut Pooled, statement: &Statement) -> Result<Rows, odbc_api::Error> {
        if !self.prepares.load(Ordering::Relaxed) {
            return self.fetch(&pooled.connection(), statement);
        }
        let timeout = self.timeout_secs();
        let prepared = pooled.read(&statement.sql, |connection| {
            let mut prepared = connection.into_prepared(&statement.sql)?;
            prepared.set_query_timeout_sec(timeout)?;
            Ok(prepared)
        });
        let read = match prepared {
            Ok(read) => read,
            Err(refused) => {
                let rows = self.fetch(&pooled.connection(), statement)?;
                // Only a driver that says it cannot prepare turns preparing off: a server out
                // of prepared statements for now (MariaDB 1461) may have room again later.
                if cannot_prepare(&refused) && self.prepares.swap(false, Ordering::Relaxed) {
                    tracing::warn!(source = %self.settings.name, error = %driver_text(&refused), "the driver cannot prepare a read it runs directly; running reads directly from now on");
                }
                return Ok(rows);
            }
        };
        let ran_before = read.kept.widths.is_some();
        match self.fetch_prepared(read, statement) {
            Ok(PreparedFetch::Rows { rows, buffer }) => {
                if let Some((buffer, buffered_rows)) = buffer {
                    pooled.keep_buffer(&statement.sql, buffer, buffered_rows);
                }
                Ok(rows)
            }
            Ok(PreparedFetch::Fetched(rows)) => {
                pooled.forget(&statement.sql);
                Ok(rows)
            }
            Ok(PreparedFetch::Direct) => {
                pooled.forget(&statement.sql);
                self.fetch(&pooled.connection(), statement)
            }
            Err(e) => {
                // Closed either way: whatever failed, the next run prepares it afresh.
                pooled.forget(&statement.sql);
                if !stale_prepared_statement(&e, ran_before) {
                    return Err(e);
                }
                tracing::debug!(source = %self.settings.name, error = %driver_text(&e), "a prepared read went stale; running it directly");
                self.fetch(&pooled.connection(), statement)
            }
        }
    }

    /// Executes a prepared read and fetches its rows ([`Self::fetch_cursor`] with the buffer,
    /// widths and state kept with the statement).
    fn fetch_prepared(
        &self,
        read: &mut pooled::PreparedRead,
        statement: &Statement,
    ) -> Result<PreparedFetch, odbc_api::Error> {
        let params: Vec<Box<dyn InputParameter>> = statement.params.iter().map(bind).collect();
        let pooled::PreparedRead {
            statement: prepared,
            kept,
        } = read;
        let Some(cursor) = prepared.execute(&params[..])? else {
            return Ok(PreparedFetch::Rows {
                rows: Vec::new(),
                buffer: None,
            });
        };
        Ok(match self.fetch_cursor(cursor, statement, Some(kept))? {
            Fetched::Rows { rows, buffer } => PreparedFetch::Rows { rows, buffer },
            // The rows are read; the statement, in a state nothing vouches for, is closed.
            Fetched::Unbound(rows) => PreparedFetch::Fetched(rows),
            Fetched::BlockRefused | Fetched::BoundBefore => PreparedFetch::Direct,
        })
    }

    /// Runs a read and fetches its rows ([`Self::fetch_cursor`]); when the driver refuses a
    /// row array size the statement runs again and its rows come one by one (as every later
    /// read of this source's).
    fn fetch(
        &self,
        conn: &Connection<'static>,
        statement: &Statement,
    ) -> Result<Rows, odbc_api::Error> {
        let params: Vec<Box<dyn InputParameter>> = statement.params.iter().map(bind).collect();
        let execute = || conn.execute(&statement.sql, &params[..], Some(self.timeout_secs()));
        let Some(cursor) = execute()? else {
            return Ok(Vec::new());
        };
        match self.fetch_cursor(cursor, statement, None)? {
            Fetched::Rows { rows, .. } | Fetched::Unbound(rows) => Ok(rows),
            Fetched::BlockRefused | Fetched::BoundBefore => {
                let Some(cursor) = execute()? else {
                    return Ok(Vec::new());
                };
                self.fetch_rows(cursor, statement, None)
            }
        }
    }

    /// Fetches a result: in blocks of up to 500 rows into a text buffer (the one `kept` with a
    /// prepared statement when it fits, handed back with the rows), or one by one when the
    /// source fetches row by row, the driver cannot describe the result columns, or the
    /// buffer would pass [`BLOCK_BUFFER_BYTES`]. A kept statement that had a block buffer
    /// bound keeps its row array size, so it is never fetched row by row again
    /// ([`Fetched::BoundBefore`]).
    fn fetch_cursor(
        &self,
        mut cursor: impl Cursor,
        statement: &Statement,
        mut kept: Option<&mut pooled::KeptFetch>,
    ) -> Result<Fetched, odbc_api::Error> {
        let bound_before = kept.as_ref().is_some_and(|k| k.bound);
        let one_by_one = |cursor, widths: Option<&[usize]>| {
            if bound_before {
                return Ok(Fetched::BoundBefore);
            }
            Ok(Fetched::Rows {
                rows: self.fetch_rows(cursor, statement, widths)?,
                buffer: None,
            })
        };
        if self.row_by_row.load(Ordering::Relaxed) {
            return one_by_one(cursor, None);
        }
        let known = kept
            .as_deref()
            .filter(|k| k.columns == statement.columns)
            .and_then(|k| k.widths.clone());
        let widths = match known {
            Some(widths) => widths,
            None => match self.widths(&mut cursor, statement) {
                Ok(widths) => {
                    if let Some(k) = kept.as_deref_mut() {
                        k.widths = Some(widths.clone());
                        k.columns = statement.columns.clone();
                        k.buffer = None;
                    }
                    widths
                }
                Err(e) => {
                    tracing::debug!(source = %self.settings.name, error = %driver_text(&e), "the driver cannot describe the result columns; fetching row by row");
                    return one_by_one(cursor, None);
                }
            },
        };
        let batch = statement.max_rows.clamp(1, 500);
        if pooled::text_buffer_bytes(batch, &widths) > BLOCK_BUFFER_BYTES {
            return one_by_one(cursor, Some(&widths));
        }
        let reused = kept.as_deref_mut().and_then(|k| k.buffer.take());
        let buffer = match reused {
            Some((buffer, rows)) if rows == batch => buffer,
            _ => TextRowSet::from_max_str_lens(batch, widths)?,
        };
        if let Some(k) = kept.as_deref_mut() {
            k.bound = true;
        }
        let mut block = match cursor.bind_buffer(buffer) {
            Ok(block) => block,
            Err(e) if refuses_block_fetch(&e) => {
                if !self.row_by_row.swap(true, Ordering::Relaxed) {
                    tracing::warn!(source = %self.settings.name, error = %driver_text(&e), "the driver refuses block fetches; fetching row by row from now on (declare capabilities.block_fetch = false to skip this)");
                }
                return Ok(Fetched::BlockRefused);
            }
            Err(e) => return Err(e),
        };
        let rows = self.fetch_blocks(&mut block, statement)?;
        if kept.is_none() {
            return Ok(Fetched::Rows { rows, buffer: None });
        }
        match block.unbind() {
            Ok((_, buffer)) => Ok(Fetched::Rows {
                rows,
                buffer: Some((buffer, batch)),
            }),
            Err(e) => {
                tracing::debug!(source = %self.settings.name, error = %driver_text(&e), "unbinding a prepared read's buffer failed; closing it");
                Ok(Fetched::Unbound(rows))
            }
        }
    }

    /// Bytes to hold each result column as text.
    fn widths(
        &self,
        cursor: &mut impl Cursor,
        statement: &Statement,
    ) -> Result<Vec<usize>, odbc_api::Error> {
        let mut widths = Vec::new();
        for c in 0..cursor.num_result_cols()? {
            let column = u16::try_from(c + 1).unwrap_or(u16::MAX);
            let reported = match cursor.col_data_type(column)?.utf8_len() {
                Some(len) => Some(len.get()),
                None => cursor.col_display_size(column)?.map(|n| n.get()),
            };
            let column_type = statement
                .columns
                .get(c as usize)
                .copied()
                .unwrap_or(ColumnType::Varchar);
            // SQLite's declared widths bound nothing (`DATE` says 10 and holds a time too):
            // its text gets the room `max_text_bytes` gives, whatever the driver reports.
            let reported = reported.filter(|_| self.settings.dialect != Dialect::Sqlite);
            widths.push(buffer_width(
                column_type,
                reported,
                self.settings.max_text_bytes,
            ));
        }
        Ok(widths)
    }

    fn fetch_blocks(
        &self,
        block: &mut odbc_api::BlockCursor<impl Cursor, TextRowSet>,
        statement: &Statement,
    ) -> Result<Rows, odbc_api::Error> {
        let mut rows = Vec::new();
        while let Some(set) = block.fetch()? {
            for r in 0..set.num_rows() {
                if rows.len() == statement.max_rows {
                    return Ok(rows);
                }
                let row = (0..set.num_cols())
                    .map(|c| {
                        let column_type = statement
                            .columns
                            .get(c)
                            .copied()
                            .unwrap_or(ColumnType::Varchar);
                        set.at(c, r).map_or(Value::Null, |bytes| {
                            let complete = match set.indicator_at(c, r) {
                                Indicator::Length(n) => n <= bytes.len(),
                                Indicator::NoTotal => false,
                                Indicator::Null => true,
                            };
                            if !complete {
                                tracing::warn!(
                                    column = c + 1,
                                    kept = bytes.len(),
                                    "text value longer than max_text_bytes was truncated"
                                );
                            }
                            decode::from_text(bytes, column_type)
                        })
                    })
                    .collect();
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// Fetches one row at a time, each value read whole as text (`SQLGetData`) and then held
    /// to `max_text_bytes` like a block fetch's, or to the block buffer's `widths` when this
    /// stands in for a block fetch whose buffer would be too large (the same value is served
    /// whichever way it was fetched).
    fn fetch_rows(
        &self,
        mut cursor: impl Cursor,
        statement: &Statement,
        widths: Option<&[usize]>,
    ) -> Result<Rows, odbc_api::Error> {
        let columns = u16::try_from(cursor.num_result_cols()?).unwrap_or(0);
        let max_text = self.settings.max_text_bytes.max(1);
        let mut rows = Vec::new();
        let mut buffer = Vec::new();
        while rows.len() < statement.max_rows {
            let Some(mut row) = cursor.next_row()? else {
                break;
            };
            let mut values = Vec::with_capacity(usize::from(columns));
            for c in 1..=columns {
                let column_type = statement
                    .columns
                    .get(usize::from(c) - 1)
                    .copied()
                    .unwrap_or(ColumnType::Varchar);
                let limit = widths
                    .and_then(|w| w.get(usize::from(c) - 1))
                    .map_or(max_text, |&w| w.max(1));
                buffer.clear();
                if !row.get_text(c, &mut buffer)? {
                    values.push(Value::Null);
                    continue;
                }
                if buffer.len() > limit {
                    tracing::warn!(
                        column = c,
                        kept = limit,
                        "text value longer than max_text_bytes was truncated"
                    );
                    buffer.truncate(limit);
                }
                values.push(decode::from_text(&buffer, column_type));
            }
            rows.push(values);
        }
        Ok(rows)
    }
}

/// Bytes above which a result is fetched row by row rather than into a block buffer: text
/// columns whose width the driver does not bound (SQLite's, PostgreSQL's `text`) take
/// `max_text_bytes` each, and a buffer of hundreds of such rows costs more to allocate and
/// clear than reading each value whole.
const BLOCK_BUFFER_BYTES: usize = 1 << 20;

/// Whether `error` is a driver refusing a block cursor's statement attributes (the row array
/// size, the bind type): `HY092` invalid attribute, `HYC00` not implemented, `HY024` invalid
/// value, or any failure of `SQLSetStmtAttr` while binding.
fn refuses_block_fetch(error: &odbc_api::Error) -> bool {
    match error {
        odbc_api::Error::Diagnostics { record, function } => {
            *function == "SQLSetStmtAttr"
                || [b"HY092", b"HYC00", b"HY024"].contains(&&record.state.0)
        }
        odbc_api::Error::NoDiagnostics { function } => *function == "SQLSetStmtAttr",
        _ => false,
    }
}

/// What an error says about the connection it happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    /// The statement's: the database answered and refused it; the connection works and goes
    /// back to the pool.
    Statement,
    /// The connection's: it no longer reaches its server. Dropped, and a read is run again on
    /// a fresh one (it did not finish).
    Connection,
    /// Nothing says whose. Dropped, because the pool hands out the connection returned last, so
    /// one dead connection kept would fail every request; a live one dropped costs a reconnect.
    /// The read is not run again: it may be a statement the database refused.
    Unknown,
}

/// What `error` says about `conn`. A driver that says the connection is dead is believed; one
/// that says it is alive (or cannot tell) changes nothing: it may not have noticed yet.
fn blame_on(error: &odbc_api::Error, conn: &Connection<'_>) -> Blame {
    match blame(error) {
        Blame::Connection => Blame::Connection,
        _ if conn.is_dead().unwrap_or(false) => Blame::Connection,
        blame => blame,
    }
}

/// Whether `error` says a kept prepared statement no longer fits its table, so the read did
/// not run and may run again: PostgreSQL's `0A000` "cached plan must not change result type"
/// from a statement that ran before (a column changed under it; the message may be in
/// another language) and `26000` (the prepared statement is gone), MariaDB's `1615`
/// "Prepared statement needs to be re-prepared". Anything else the database said about the
/// statement stands: a refused read is not run twice.
fn stale_prepared_statement(error: &odbc_api::Error, ran_before: bool) -> bool {
    let odbc_api::Error::Diagnostics { record, .. } = error else {
        return false;
    };
    match &record.state.0 {
        b"0A000" => ran_before,
        b"26000" => true,
        _ => record.native_error == 1615,
    }
}

/// Whether `error` from preparing a statement says the driver cannot prepare at all (not
/// that this statement or this moment is the problem): `HYC00` optional feature not
/// implemented, `IM001` the driver lacks the function, MariaDB's 1295 (not in the prepared
/// statement protocol).
fn cannot_prepare(error: &odbc_api::Error) -> bool {
    match error {
        odbc_api::Error::Diagnostics { record, .. } => {
            matches!(&record.state.0, b"HYC00" | b"IM001") || record.native_error == 1295
        }
        odbc_api::Error::NoDiagnostics { .. } => true,
        _ => false,
    }
}

/// How [`Worker::fetch_cursor`] ended.
enum Fetched {
    /// The rows, and the block buffer they were fetched into (kept statements only).
    Rows {
        rows: Rows,
        buffer: Option<(TextRowSet, usize)>,
    },
    /// The rows; unbinding the kept statement's buffer failed.
    Unbound(Rows),
    /// The driver refused a row array size; nothing was fetched.
    BlockRefused,
    /// Row by row was asked of a kept statement bound to a block buffer before; nothing was
    /// fetched.
    BoundBefore,
}

/// How a prepared read ended.
enum PreparedFetch {
    /// Its rows, and the block buffer to keep for its next run.
    Rows {
        rows: Rows,
        buffer: Option<(TextRowSet, usize)>,
    },
    /// Its rows; the statement is to be closed.
    Fetched(Rows),
    /// It was not fetched: the read runs directly, and the statement is closed.
    Direct,
}

/// What `error` says about the connection of `pooled`.
fn pooled_blame(error: &odbc_api::Error, pooled: &Pooled) -> Blame {
    let connection = pooled.connection();
    blame_on(error, &connection)
}

/// What `error` alone says about its connection: only a diagnostic record can say anything
/// (a driver's error without one, `NoDiagnostics`, or odbc-api's own errors say nothing).
fn blame(error: &odbc_api::Error) -> Blame {
    match error {
        odbc_api::Error::Diagnostics { record, .. } => {
            blame_state(&record.state.0, record.native_error)
        }
        _ => Blame::Unknown,
    }
}

/// The blame of a SQLSTATE (with the native error where the state alone is too vague).
fn blame_state(state: &[u8; 5], native_error: i32) -> Blame {
    if lost_connection_state(state, native_error) {
        Blame::Connection
    } else if statement_state(state, native_error) {
        Blame::Statement
    } else {
        Blame::Unknown
    }
}

/// The SQLSTATEs (with the native error where the state alone is too vague) of a lost
/// connection: class 08 (connection exception), `HYT01` (connection timeout), PostgreSQL's
/// `57P01`–`57P05` (shut down, crashed, starting, database dropped, idle session timeout: the
/// server closes the session; psqlODBC passes them on), `HY000` with MariaDB's native error
/// 2006, 2013 or 2055 (server has gone away, lost connection), MySQL 8's 4031 (the server
/// closed an idle session) or 5013/5014 (Connector/C's
/// socket read and write errors, what a pooled connection meets after a server restart), or
/// FreeTDS's 20004, 20006 or 20017 (read from or write to the server failed, unexpected EOF).
fn lost_connection_state(state: &[u8; 5], native_error: i32) -> bool {
    match state {
        [b'0', b'8', ..] | b"HYT01" => true,
        [b'5', b'7', b'P', b'0', b'1'..=b'5'] => true,
        b"HY000" => matches!(
            native_error,
            2006 | 2013 | 2055 | 4031 | 5013 | 5014 | 20004 | 20006 | 20017
        ),
        _ => false,
    }
}

/// The SQLSTATEs that are about the statement alone: the database parsed, ran or refused it
/// over a working connection. Classes `07` (dynamic SQL: parameters), `0A` (feature not
/// supported), `21` (cardinality), `22` (data), `23` (constraints), `24` (cursor state), `26`,
/// `34` (statement and cursor names), `2F`, `38`, `39` (routines), `3F` (schema name), `40`
/// (serialization failure, deadlock: the server rolled the transaction back and the session
/// goes on) but not `40003` (completion unknown: the connection failed), `42` (syntax, access),
/// `44` (check option), `45` (MariaDB's `SIGNAL`), `54` (program limits), `55` (object in use,
/// lock not available), `P0` (PL/pgSQL `RAISE`); the driver's own checks of a statement
/// (`HY004`, `HY090`, `HY104`, `HY105`, `HYC00`); statement timeouts (`HYT00`, PostgreSQL's
/// `57014`); and MariaDB's `HY000` 1205 (lock wait timeout). Not class `25` (transaction
/// state): a connection stuck in a failed transaction would fail every read handed it.
fn statement_state(state: &[u8; 5], native_error: i32) -> bool {
    match state {
        b"40003" => false,
        [b'0', b'7', ..]
        | [b'0', b'A', ..]
        | [b'2', b'1' | b'2' | b'3' | b'4' | b'6' | b'F', ..]
        | [b'3', b'4' | b'8' | b'9' | b'F', ..]
        | [b'4', b'0' | b'2' | b'4' | b'5', ..]
        | [b'5', b'4' | b'5', ..]
        | [b'P', b'0', ..] => true,
        b"HY004" | b"HY090" | b"HY104" | b"HY105" | b"HYC00" | b"HYT00" | b"57014" => true,
        b"HY000" => native_error == 1205,
        _ => false,
    }
}

/// Bytes to hold one value of a column as text. Drivers report a column's declared width
/// (SQLite says 10 for any INTEGER), but the value can be wider: numbers, dates and flags
/// always get room for their widest rendering, so they are never cut; text is capped at
/// `max_text_bytes`. A reported width is trusted for text only where the database enforces
/// it (the caller passes none for SQLite).
fn buffer_width(column_type: ColumnType, reported: Option<usize>, max_text_bytes: usize) -> usize {
    let widest = match column_type {
        // i64::MIN, or a DECIMAL(38) with its sign and point, or a double's longest form.
        ColumnType::Integer => 20,
        ColumnType::Decimal | ColumnType::Money => 48,
        ColumnType::Float => 32,
        ColumnType::Date
        | ColumnType::Timestamp
        | ColumnType::TimestampOffset
        | ColumnType::Bit => 40,
        ColumnType::Char(_)
        | ColumnType::Varchar
        | ColumnType::NChar(_)
        | ColumnType::NVarchar
        | ColumnType::Oem(_)
        | ColumnType::Binary => {
            return reported.unwrap_or(max_text_bytes).clamp(1, max_text_bytes);
        }
    };
    // A driver that reports a huge width for such a column (SQLite's TEXT) gets no more room
    // than text would.
    reported
        .map_or(widest, |r| r.min(max_text_bytes.max(widest)))
        .max(widest)
}

/// Whether a transaction's result is to be kept (committed) or undone.
trait Finished {
    fn keep(&self) -> bool;
}

impl Finished for WriteOutcome {
    fn keep(&self) -> bool {
        matches!(self, WriteOutcome::Committed(_))
    }
}

impl Finished for CallOutcome {
    fn keep(&self) -> bool {
        true
    }
}

/// Binds a parameter with the SQL type of the column it meets, so every driver compares it
/// the way the column's own values compare (CHAR as CHAR, DECIMAL exactly).
pub fn bind(param: &Param) -> Box<dyn InputParameter> {
    let text = |bytes: Vec<u8>, data_type: DataType| -> Box<dyn InputParameter> {
        Box::new(WithDataType::new(VarCharBox::from_vec(bytes), data_type))
    };
    let length = |n: usize| std::num::NonZeroUsize::new(n.max(1));
    match (&param.value, param.column_type) {
        (Value::Null, _) => text_null(),
        (Value::Int(i), _) => Box::new(*i),
        (Value::Float(f), _) => Box::new(*f),
        (Value::Bool(b), _) => Box::new(WithDataType::new(i64::from(*b), DataType::Bit)),
        (Value::Decimal(d), _) => {
            let digits = d.chars().filter(char::is_ascii_digit).count();
            let scale = d.split_once('.').map_or(0, |(_, f)| f.len()) as i16;
            text(
                d.clone().into_bytes(),
                DataType::Decimal {
                    precision: digits.max(1),
                    scale,
                },
            )
        }
        (Value::Date(d), _) => text(d.clone().into_bytes(), DataType::Date),
        (Value::Timestamp(t), _) => {
            text(t.clone().into_bytes(), DataType::Timestamp { precision: 3 })
        }
        (Value::Text(bytes), ColumnType::Char(_)) => {
            let n = bytes.len();
            text(bytes.clone(), DataType::Char { length: length(n) })
        }
        (Value::Text(bytes), _) => {
            let n = bytes.len();
            text(bytes.clone(), DataType::Varchar { length: length(n) })
        }
    }
}

fn text_null() -> Box<dyn InputParameter> {
    Box::new(WithDataType::new(
        VarCharBox::null(),
        DataType::Varchar {
            length: std::num::NonZeroUsize::new(1),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_states_mean_a_lost_connection() {
        for (state, native) in [
            (b"08S01", 0),
            (b"08001", 0),
            (b"HYT01", 0),
            (b"57P01", 0),
            (b"57P03", 0),
            (b"HY000", 2006),
            (b"HY000", 2013),
            (b"HY000", 5014),
        ] {
            assert!(lost_connection_state(state, native), "{state:?} {native}");
        }
        // Syntax, constraint, type and timeout errors, and MariaDB's other HY000s.
        for (state, native) in [
            (b"42601", 0),
            (b"42S02", 0),
            (b"23505", 0),
            (b"22007", 0),
            (b"P0001", 0),
            (b"HYT00", 0),
            (b"57014", 0),
            (b"HY000", 1064),
        ] {
            assert!(!lost_connection_state(state, native), "{state:?} {native}");
        }
    }

    fn diagnostics(state: &[u8; 5], native_error: i32) -> odbc_api::Error {
        odbc_api::Error::Diagnostics {
            record: odbc_api::handles::Record {
                state: odbc_api::handles::State(*state),
                native_error,
                message: b"refused".to_vec(),
            },
            function: "SQLExecDirect",
        }
    }

    #[test]
    fn a_connection_is_kept_only_after_an_error_that_is_the_statements() {
        use Blame::{Connection, Statement, Unknown};
        for (state, native, expected) in [
            // Refused by the database over a working connection.
            (b"42601", 0, Statement),
            (b"42S02", 0, Statement),
            (b"42000", 1064, Statement),
            (b"23505", 0, Statement),
            (b"23000", 1062, Statement),
            (b"22007", 0, Statement),
            (b"21000", 0, Statement),
            (b"24000", 0, Statement),
            (b"07009", 0, Statement),
            (b"0A000", 0, Statement),
            (b"40001", 0, Statement),
            (b"40P01", 0, Statement),
            (b"45000", 1644, Statement),
            (b"55P03", 0, Statement),
            (b"P0001", 0, Statement),
            (b"HYC00", 0, Statement),
            (b"HYT00", 0, Statement),
            (b"57014", 0, Statement),
            (b"HY000", 1205, Statement),
            // The server is gone or going.
            (b"08S01", 0, Connection),
            (b"08001", 0, Connection),
            (b"HYT01", 0, Connection),
            (b"57P01", 0, Connection),
            (b"57P02", 0, Connection),
            (b"57P03", 0, Connection),
            (b"57P05", 0, Connection),
            (b"HY000", 2006, Connection),
            (b"HY000", 2013, Connection),
            (b"HY000", 5013, Connection),
            (b"HY000", 5014, Connection),
            (b"HY000", 4031, Connection),
            (b"HY000", 20004, Connection),
            (b"HY000", 20006, Connection),
            // Nothing says whose: dropped.
            (b"HY000", 0, Unknown),
            (b"HY000", 1064, Unknown),
            (b"HY000", 20003, Unknown),
            (b"HY008", 0, Unknown),
            (b"HY010", 0, Unknown),
            (b"25P02", 0, Unknown),
            (b"40003", 0, Unknown),
            (b"53300", 0, Unknown),
            (b"58030", 0, Unknown),
            (b"XX000", 0, Unknown),
            (b"IM001", 0, Unknown),
        ] {
            assert_eq!(blame_state(state, native), expected, "{state:?} {native}");
            assert_eq!(blame(&diagnostics(state, native)), expected);
        }
        let silent = odbc_api::Error::NoDiagnostics {
            function: "SQLExecDirect",
        };
        assert_eq!(blame(&silent), Unknown, "an error without a record");
    }

    #[test]
    fn a_lost_connection_answers_unavailable() {
        let worker = Worker {
            settings: Arc::new(OdbcSettings {
                name: "legacy".into(),
                connection_string: String::new(),
                dialect: Dialect::Postgres,
                max_concurrency: 1,
                queue_timeout: Duration::from_secs(1),
                query_timeout: Duration::from_secs(5),
                login_timeout: Duration::from_secs(5),
                max_text_bytes: 4000,
                health_statement: None,
                row_by_row: false,
            }),
            idle: Arc::new(Mutex::new(Vec::new())),
            row_by_row: Arc::new(AtomicBool::new(false)),
            prepares: Arc::new(AtomicBool::new(true)),
            fate: Arc::new(Mutex::new(Fate::Running)),
        };
        for (state, native) in [
            (b"08S01", 0),
            (b"57P01", 0),
            (b"57P02", 0),
            (b"57P03", 0),
            (b"HY000", 2006),
            (b"HY000", 20004),
            (b"HY000", 20006),
        ] {
            let error = worker.classify(diagnostics(state, native));
            assert!(
                matches!(error, SourceError::Unavailable { .. }),
                "{state:?} {native}: {error:?}"
            );
            assert!(error.is_outage(), "{state:?} {native}");
        }
        for (state, native) in [(b"42601", 0), (b"P0001", 0), (b"HY000", 0)] {
            let error = worker.classify(diagnostics(state, native));
            assert!(matches!(error, SourceError::Query { .. }), "{error:?}");
        }
        for state in [b"HYT00", b"HYT01", b"57014"] {
            let error = worker.classify(diagnostics(state, 0));
            assert!(matches!(error, SourceError::Timeout { .. }), "{error:?}");
        }
        let silent = odbc_api::Error::NoDiagnostics {
            function: "SQLExecDirect",
        };
        assert!(matches!(worker.classify(silent), SourceError::Query { .. }));
    }

    #[test]
    fn numbers_get_room_for_their_widest_value_whatever_the_driver_reports() {
        // SQLite reports 10 for any INTEGER; i64::MIN takes 20.
        assert_eq!(buffer_width(ColumnType::Integer, Some(10), 4000), 20);
        assert_eq!(buffer_width(ColumnType::Decimal, Some(13), 16), 48);
        assert_eq!(buffer_width(ColumnType::Decimal, Some(80), 4000), 80);
        assert_eq!(buffer_width(ColumnType::Date, Some(1 << 18), 4000), 4000);
        // Text is what the driver says, capped at max_text_bytes.
        assert_eq!(buffer_width(ColumnType::Varchar, Some(160), 4000), 160);
        assert_eq!(buffer_width(ColumnType::Varchar, None, 4000), 4000);
        assert_eq!(buffer_width(ColumnType::Varchar, Some(1 << 30), 4000), 4000);
    }
}
