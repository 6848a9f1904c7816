//! SQL Server natively over TDS (tiberius on tokio): pooled connections checked before reuse
//! without a round trip (a lost one is retried once), statement timeouts, and the same
//! concurrency limit and errors as the ODBC source.

mod call;
pub mod columns;
mod decode;
mod pool;
pub mod settings;
mod statement;
pub mod version;

use std::sync::Arc;
use std::time::Instant;

use deadpool::managed::{Object, Pool, PoolError, TimeoutType};
use deadpool::Runtime;
use futures_util::TryStreamExt;
use tiberius::{Query, QueryItem};
use tracing::Instrument;

use super::call::{Call, CallOutcome};
use super::meters::{Meters, Raised};
use super::statement_span;
use super::write::{Step, WriteOutcome};
use super::{Dialect, Rows, Source, SourceError, SourceFuture, Statement};
use crate::telemetry::metrics::SourceMetrics;
pub use settings::MssqlSettings;
use version::ServerVersion;

/// A SQL Server reached without an ODBC driver.
pub struct MssqlSource {
    inner: Arc<Inner>,
    /// Every statement runs as a task here: connections stay on the runtime whose reactor
    /// they were opened with (not on whichever HTTP worker asked), and a statement whose
    /// request went away still finishes and hands its connection back cleanly. Without a
    /// runtime at creation (a configuration merely compiled), statements run in place.
    runtime: Option<tokio::runtime::Handle>,
}

/// The pool and what the statements need.
struct Inner {
    settings: Arc<MssqlSettings>,
    pool: Pool<pool::Connector>,
    meters: Meters,
}

/// A pooled connection, held for one request.
type Held = Object<pool::Connector>;

impl MssqlSource {
    /// Creates the source on the current tokio runtime; connections are opened on first use.
    pub fn new(settings: MssqlSettings, metrics: &SourceMetrics) -> Result<Self, SourceError> {
        Ok(Self {
            inner: Arc::new(Inner::new(settings, metrics)?),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// The version of the server, once a connection has been made.
    pub fn server_version(&self) -> Option<ServerVersion> {
        self.inner.pool.manager().version()
    }

    /// Runs `work` on the source's runtime and waits for it.
    fn spawn<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, SourceError>> + Send + 'static,
    ) -> SourceFuture<'_, T> {
        let Some(runtime) = &self.runtime else {
            return Box::pin(work);
        };
        // The work runs on the source's runtime: it carries the caller's span along.
        let task = runtime.spawn(work.instrument(tracing::Span::current()));
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(SourceError::Query {
                    source_name: self.inner.settings.name.clone(),
                    detail: format!("statement task failed: {e}"),
                })
            })
        })
    }
}

impl Inner {
    fn new(settings: MssqlSettings, metrics: &SourceMetrics) -> Result<Self, SourceError> {
        let connector = pool::Connector::new(
            &settings.name,
            settings.connection.clone(),
            settings.login_timeout,
        );
        let pool = Pool::builder(connector)
            .max_size(settings.max_concurrency)
            .wait_timeout(Some(settings.queue_timeout))
            .create_timeout(Some(settings.login_timeout))
            .recycle_timeout(Some(settings.login_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| SourceError::Unavailable {
                source_name: settings.name.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            meters: Meters::new(metrics, &settings.name, settings.max_concurrency),
            settings: Arc::new(settings),
            pool,
        })
    }

    /// A connection, or busy when none frees up within `queue_timeout`.
    async fn checkout(&self) -> Result<Held, SourceError> {
        let waiting = Raised::new(&self.meters.waiting);
        let got = self
            .pool
            .get()
            .instrument(statement_span::pool_wait(&self.settings.name))
            .await;
        drop(waiting);
        got.map_err(|e| match e {
            PoolError::Timeout(TimeoutType::Wait) => {
                self.meters.shed.inc();
                SourceError::Busy {
                    source_name: self.settings.name.clone(),
                    retry_after: std::time::Duration::from_secs(1),
                }
            }
            PoolError::Backend(e) => e,
            other => self.unavailable(other),
        })
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable {
            source_name: self.settings.name.clone(),
            detail: detail.to_string(),
        }
    }

    fn timeout(&self) -> SourceError {
        SourceError::Timeout {
            source_name: self.settings.name.clone(),
            timeout: self.settings.query_timeout,
        }
    }

    /// Waits for `work` on `held` up to the query timeout. A connection whose work did not
    /// finish is closed at once, which makes the server abandon and roll back what it ran
    /// instead of holding its locks until the connection is next checked; one that was lost
    /// (an I/O error) is dropped rather than pooled.
    async fn bounded<T>(
        &self,
        held: Held,
        work: impl for<'h> AsyncFnOnce(&'h mut pool::Client) -> Result<T, SourceError>,
    ) -> (Option<Held>, Result<T, SourceError>) {
        let mut held = held;
        held.busy = true;
        match tokio::time::timeout(self.settings.query_timeout, work(&mut held.client)).await {
            Ok(result @ Err(SourceError::Unavailable { .. })) => {
                drop(Object::take(held));
                (None, result)
            }
            Ok(result) => {
                held.busy = false;
                (Some(held), result)
            }
            Err(_) => {
                drop(Object::take(held));
                (None, Err(self.timeout()))
            }
        }
    }

    /// Maps a tiberius error to the source's error kinds.
    fn classify(&self, error: tiberius::error::Error) -> SourceError {
        use tiberius::error::Error;
        let name = self.settings.name.clone();
        match &error {
            Error::Server(token) => {
                if let Some(violation) = constraint(token.code(), token.message()) {
                    return SourceError::Constraint {
                        source_name: name,
                        violation,
                        detail: error.to_string(),
                    };
                }
                SourceError::Query {
                    source_name: name,
                    detail: format!("{} (error {})", token.message(), token.code()),
                }
            }
            Error::Encoding(_) => SourceError::Query {
                source_name: name,
                detail: format!(
                    "{error}: a char/varchar column in a code page tiberius cannot decode \
                     (CP437, CP850) needs its `encoding` declared; `portico check` names it"
                ),
            },
            Error::Io { .. } | Error::Tls(_) | Error::Routing { .. } => SourceError::Unavailable {
                source_name: name,
                detail: error.to_string(),
            },
            _ => SourceError::Query {
                source_name: name,
                detail: error.to_string(),
            },
        }
    }

    /// Reads the first result set of `statement`, at most `max_rows` rows.
    async fn read(
        &self,
        client: &mut pool::Client,
        statement: &Statement,
        isolation: bool,
    ) -> Result<Rows, SourceError> {
        let prefix = match isolation {
            true => statement::isolation_prefix(self.settings.isolation),
            false => "",
        };
        let prepared = statement::prepare(prefix, &statement.sql, &statement.params);
        let mut query = Query::new(prepared.sql);
        for param in prepared.params {
            query.bind(param);
        }
        let mut stream = query.query(client).await.map_err(|e| self.classify(e))?;
        let mut rows = Vec::new();
        while let Some(item) = stream.try_next().await.map_err(|e| self.classify(e))? {
            let QueryItem::Row(row) = item else { continue };
            if row.result_index() > 0 || rows.len() == statement.max_rows {
                // The rest is drained before the connection's next request.
                break;
            }
            rows.push(
                row.cells()
                    .enumerate()
                    .map(|(i, (_, data))| {
                        let column_type = statement
                            .columns
                            .get(i)
                            .copied()
                            .unwrap_or(super::ColumnType::NVarchar);
                        decode::value(data, column_type)
                    })
                    .collect(),
            );
        }
        Ok(rows)
    }

    /// Runs a change; its own row count (triggers' counts come before it).
    async fn execute(
        &self,
        client: &mut pool::Client,
        statement: &Statement,
    ) -> Result<u64, SourceError> {
        let prepared = statement::prepare("", &statement.sql, &statement.params);
        let mut query = Query::new(prepared.sql);
        for param in prepared.params {
            query.bind(param);
        }
        let result = query.execute(client).await.map_err(|e| self.classify(e))?;
        Ok(result.rows_affected().last().copied().unwrap_or(0))
    }

    /// Runs a batch without parameters, draining its results.
    async fn batch(&self, client: &mut pool::Client, sql: &str) -> Result<(), SourceError> {
        client
            .simple_query(sql)
            .await
            .map_err(|e| self.classify(e))?
            .into_results()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(())
    }

    async fn steps(
        &self,
        client: &mut pool::Client,
        steps: &[Step],
    ) -> Result<WriteOutcome, SourceError> {
        let mut rows = Vec::new();
        for step in steps {
            match step {
                Step::Execute {
                    statement,
                    expect_one,
                } => {
                    let count = statement_span::traced(
                        Dialect::TSql,
                        &statement.sql,
                        self.execute(client, statement),
                        statement_span::finished,
                    )
                    .await?;
                    if let (Some(reason), false) = (expect_one, count == 1) {
                        return Ok(WriteOutcome::RolledBack(*reason));
                    }
                }
                Step::Read {
                    statement,
                    require_row,
                } => {
                    rows = statement_span::traced(
                        Dialect::TSql,
                        &statement.sql,
                        self.read(client, statement, false),
                        statement_span::returned,
                    )
                    .await?;
                    if let (Some(reason), true) = (require_row, rows.is_empty()) {
                        return Ok(WriteOutcome::RolledBack(*reason));
                    }
                }
            }
        }
        Ok(WriteOutcome::Committed(rows))
    }

    /// Runs `work` in a transaction: committed when `keep` says so, rolled back otherwise.
    /// A transaction cut short by the timeout is rolled back by closing its connection; a
    /// commit under way is waited for, so its caller learns it was written. A reused
    /// connection found lost by the opening batch (nothing of the transaction ran) is
    /// replaced once.
    async fn transaction<T>(
        &self,
        work: impl for<'h> AsyncFnOnce(&'h mut pool::Client) -> Result<T, SourceError>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<T, SourceError> {
        let begin = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET XACT_ABORT ON; \
                     BEGIN TRANSACTION";
        let mut retried = false;
        let (begun, _in_use) = loop {
            let held = self.checkout().await?;
            let reused = Object::metrics(&held).recycle_count > 0;
            let in_use = Raised::new(&self.meters.in_use);
            match self
                .bounded(held, async |client| self.batch(client, begin).await)
                .await
            {
                (_, Err(SourceError::Unavailable { .. })) if reused && !retried => retried = true,
                begun => break (begun, in_use),
            }
        };
        // A failed opening batch is rolled back below like failed work: part of it may have run.
        let (held, result) = match begun {
            (Some(held), Ok(())) => self.bounded(held, work).await,
            (held, Err(e)) => (held, Err(e)),
            // `bounded` keeps the connection unless the work failed.
            (None, Ok(())) => (None, Err(self.timeout())),
        };
        let Some(mut held) = held else {
            return result;
        };
        let commit = result.as_ref().is_ok_and(&keep);
        let end = if commit {
            "COMMIT TRANSACTION"
        } else {
            "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION"
        };
        held.busy = true;
        let ended = self.batch(&mut held.client, end).await;
        match (result, ended) {
            (Ok(_), Err(e)) if commit => Err(e),
            (result, Ok(())) => {
                held.busy = false;
                result
            }
            (result, Err(_)) => result,
        }
    }
}

/// The SQL Server errors that name a broken rule: 2627/2601 unique, 547 check or foreign
/// key, 515 NULL.
fn constraint(code: u32, message: &str) -> Option<super::constraint::Violation> {
    let state: &[u8; 5] = match code {
        2627 | 2601 | 547 | 515 => b"23000",
        _ => return None,
    };
    super::constraint::recognise(state, message)
}

impl Inner {
    /// A read changes nothing, so when a reused connection the server closed unseen (its FIN
    /// had not arrived when it was peeked) fails at once with an I/O error, the read runs once
    /// more on another connection.
    async fn query(&self, statement: Statement) -> Result<Rows, SourceError> {
        let started = Instant::now();
        let mut retried = false;
        let result = loop {
            let held = self.checkout().await?;
            let reused = Object::metrics(&held).recycle_count > 0;
            let _in_use = Raised::new(&self.meters.in_use);
            let (_, result) = self
                .bounded(held, async |client| {
                    statement_span::traced(
                        Dialect::TSql,
                        &statement.sql,
                        self.read(client, &statement, true),
                        statement_span::returned,
                    )
                    .await
                })
                .await;
            match result {
                Err(SourceError::Unavailable { .. }) if reused && !retried => retried = true,
                result => break result,
            }
        };
        self.meters.finished(started);
        result
    }

    /// Checks the server answers: `SELECT 1` on a pooled connection, retried like a read.
    async fn ping(&self) -> Result<(), SourceError> {
        let mut retried = false;
        loop {
            let held = self.checkout().await?;
            let reused = Object::metrics(&held).recycle_count > 0;
            let (_, result) = self
                .bounded(held, async |client| self.batch(client, "SELECT 1").await)
                .await;
            match result {
                Err(SourceError::Unavailable { .. }) if reused && !retried => retried = true,
                result => return result,
            }
        }
    }

    async fn write(&self, steps: Vec<Step>) -> Result<WriteOutcome, SourceError> {
        let started = Instant::now();
        let result = self
            .transaction(
                async |client| self.steps(client, &steps).await,
                |outcome| matches!(outcome, WriteOutcome::Committed(_)),
            )
            .await;
        self.meters.finished(started);
        result
    }

    async fn call(&self, call: Call) -> Result<CallOutcome, SourceError> {
        let started = Instant::now();
        let commit = call.commit;
        let result = self
            .transaction(
                async |client| {
                    statement_span::traced(
                        Dialect::TSql,
                        &call.sql,
                        call::run(self, client, &call),
                        statement_span::finished,
                    )
                    .await
                },
                |_| commit,
            )
            .await;
        self.meters.finished(started);
        result
    }
}

impl Source for MssqlSource {
    fn name(&self) -> &str {
        &self.inner.settings.name
    }

    fn dialect(&self) -> Dialect {
        Dialect::TSql
    }

    fn query(&self, statement: Statement) -> SourceFuture<'_, Rows> {
        let inner = self.inner.clone();
        self.spawn(async move { inner.query(statement).await })
    }

    fn write(&self, steps: Vec<Step>) -> SourceFuture<'_, WriteOutcome> {
        let inner = self.inner.clone();
        self.spawn(async move { inner.write(steps).await })
    }

    fn call(&self, call: Call) -> SourceFuture<'_, CallOutcome> {
        let inner = self.inner.clone();
        self.spawn(async move { inner.call(call).await })
    }

    fn ping(&self) -> SourceFuture<'_, ()> {
        let inner = self.inner.clone();
        self.spawn(async move { inner.ping().await })
    }
}
