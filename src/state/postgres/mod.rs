//! The PostgreSQL state store: one database shared by every replica of a fleet. Pooled
//! (deadpool-postgres); the schema is created and migrated by Portico (`portico_schema` holds
//! its version). Its connections run on a small runtime of their own, so the store's calls,
//! synchronous like the SQLite store's, can be made from any blocking thread. Notices travel
//! by `NOTIFY portico` on one dedicated listening connection (`notify`).

mod changes;
mod deliveries;
mod fleet;
mod notify;
mod retention;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use postgres_native_tls::MakeTlsConnector;

use super::{Claim, StateError, StateStore, StoredResponse};
use crate::telemetry::state_metrics::StateMetrics;

/// State in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    notices: tokio::sync::broadcast::Sender<super::Notice>,
    /// This store's name in the notices it sends, so it skips its own.
    origin: String,
    metrics: StateMetrics,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A store failure, with PostgreSQL's own message and code when it sent one.
pub(super) fn failed(e: tokio_postgres::Error) -> StateError {
    match e.as_db_error() {
        Some(db) => StateError::Failed(format!("{} ({})", db.message(), db.code().code())),
        None => {
            // "error connecting to server: Connection refused", not only the first half.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StateError::Failed(text)
        }
    }
}

fn pool_failed(e: deadpool_postgres::PoolError) -> StateError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => failed(e),
        other => StateError::Failed(other.to_string()),
    }
}

/// TLS as the URL's `sslmode` asks (`prefer` by default: TLS when the server offers it;
/// `require` refuses a server without it), verified with the system's certificates.
pub(super) fn tls() -> Result<MakeTlsConnector, StateError> {
    native_tls::TlsConnector::new()
        .map(MakeTlsConnector::new)
        .map_err(|e| StateError::Failed(format!("cannot set up TLS: {e}")))
}

/// The schema, one step per version (`portico_schema.version` counts the steps run). A new
/// table or column is a new step at the end; a released step never changes.
const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store has at its version 3.
    "CREATE TABLE idempotency (
         scope TEXT NOT NULL,
         key TEXT NOT NULL,
         fingerprint TEXT NOT NULL,
         created BIGINT NOT NULL,
         claimed_ms BIGINT,
         response TEXT,
         PRIMARY KEY (scope, key)
     );
     CREATE INDEX idempotency_created ON idempotency (created);
     CREATE TABLE feed_cursors (
         feed TEXT PRIMARY KEY,
         position TEXT NOT NULL,
         updated_ms BIGINT NOT NULL
     );
     CREATE TABLE feed_rows (
         feed TEXT NOT NULL,
         key TEXT NOT NULL,
         hash TEXT NOT NULL,
         seq BIGINT NOT NULL,
         pass BIGINT NOT NULL,
         row TEXT,
         deleted BOOLEAN NOT NULL DEFAULT false,
         PRIMARY KEY (feed, key)
     );
     CREATE INDEX feed_rows_live ON feed_rows (feed, pass) WHERE NOT deleted;
     CREATE INDEX feed_rows_tombstones ON feed_rows (feed, key) WHERE deleted;
     CREATE TABLE events (
         seq BIGSERIAL PRIMARY KEY,
         id TEXT NOT NULL UNIQUE,
         feed TEXT NOT NULL,
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         row TEXT,
         key_seq BIGINT,
         detected_ms BIGINT NOT NULL
     );
     CREATE INDEX events_feed ON events (feed, seq);
     CREATE INDEX events_key ON events (feed, key);
     CREATE INDEX events_detected ON events (detected_ms);
     CREATE TABLE subscriptions (
         name TEXT PRIMARY KEY,
         spec TEXT NOT NULL
     );
     CREATE TABLE deliveries (
         id BIGSERIAL PRIMARY KEY,
         event_id TEXT NOT NULL,
         subscription TEXT NOT NULL,
         body BYTEA NOT NULL,
         status TEXT NOT NULL,
         attempts BIGINT NOT NULL DEFAULT 0,
         next_ms BIGINT NOT NULL,
         created_ms BIGINT NOT NULL,
         last_error TEXT,
         feed TEXT,
         key TEXT,
         key_seq BIGINT,
         claimed_by TEXT,
         claim_until BIGINT NOT NULL DEFAULT 0,
         UNIQUE (event_id, subscription)
     );
     CREATE INDEX deliveries_due ON deliveries (status, next_ms, id);
     CREATE INDEX deliveries_pending_key ON deliveries (subscription, feed, key, id)
         WHERE status = 'pending';
     CREATE INDEX deliveries_claimed ON deliveries (subscription) WHERE claim_until > 0;
     CREATE TABLE attempts (
         n BIGSERIAL PRIMARY KEY,
         delivery BIGINT NOT NULL,
         at_ms BIGINT NOT NULL,
         status INTEGER,
         error TEXT,
         duration_ms BIGINT NOT NULL
     );
     CREATE INDEX attempts_delivery ON attempts (delivery);
     CREATE TABLE pruned_events (
         feed TEXT PRIMARY KEY,
         through_seq BIGINT NOT NULL
     );
     CREATE TABLE feed_floors (
         feed TEXT PRIMARY KEY,
         seq BIGINT NOT NULL
     );
     CREATE TABLE feed_leases (
         feed TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         token BIGINT NOT NULL,
         expires_ms BIGINT NOT NULL
     );
     CREATE TABLE replicas (
         name TEXT PRIMARY KEY,
         seen_ms BIGINT NOT NULL
     );",
];

/// The longest a store call may take, waiting for a connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Any number that names Portico's migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x706f_7274_6963_6f31;

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) with up to
    /// `pool_size` connections, brings the schema to this Portico's version, and starts
    /// listening for other replicas' notices.
    pub fn open(url: &str, pool_size: usize) -> Result<Self, StateError> {
        Self::open_counted(url, pool_size, StateMetrics::default())
    }

    /// `open`, counting the notices sent and received in `metrics`.
    pub fn open_counted(
        url: &str,
        pool_size: usize,
        metrics: StateMetrics,
    ) -> Result<Self, StateError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StateError::Failed(format!("state.url: {e}")))?;
        // A server that stops answering without closing (a partition, a hung host) is noticed
        // by the kernel within about half a minute, not the default two hours.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .connect_timeout(Duration::from_secs(10));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("portico-state")
            .enable_all()
            .build()
            .map_err(|e| StateError::Failed(format!("cannot start the state runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(10)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| StateError::Failed(e.to_string()))?
        };
        let (notices, _) = tokio::sync::broadcast::channel(1024);
        let store = Self {
            pool,
            runtime: Some(runtime),
            notices,
            origin: uuid::Uuid::new_v4().simple().to_string(),
            metrics,
        };
        store.run(migrate)?;
        if let Some(runtime) = &store.runtime {
            runtime.spawn(notify::listen(
                config,
                store.notices.clone(),
                store.origin.clone(),
                store.metrics.clone(),
            ));
        }
        Ok(store)
    }

    /// Proves, writing nothing, that `open` can use the database at `url`: it answers, and its
    /// schema (if Portico made one) is not newer than this Portico knows.
    pub async fn probe(url: &str) -> Result<(), StateError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StateError::Failed(format!("state.url: {e}")))?;
        let (client, connection) =
            tokio::time::timeout(Duration::from_secs(10), config.connect(tls()?))
                .await
                .map_err(|_| {
                    StateError::Failed("the state database did not answer in 10 s".into())
                })?
                .map_err(failed)?;
        let driver = tokio::spawn(connection);
        let version = client
            .query_opt(
                "SELECT version FROM portico_schema WHERE to_regclass('portico_schema') IS NOT NULL",
                &[],
            )
            .await;
        // Without the table the query fails to plan: a database Portico has not used yet.
        let version: i32 = match version {
            Ok(row) => row.map_or(0, |r| r.get(0)),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => 0,
            Err(e) => return Err(failed(e)),
        };
        drop(client);
        driver.abort();
        if version as usize > MIGRATIONS.len() {
            return Err(StateError::Failed(format!(
                "the state database has schema version {version}, newer than this Portico knows \
                 ({}): use a newer Portico, or another state.url",
                MIGRATIONS.len()
            )));
        }
        Ok(())
    }

    /// Runs `work` on a pooled connection, blocking this thread until it is done. The
    /// connections' I/O runs on the store's runtime; this thread only waits, so it may be a
    /// blocking thread or, for the rare call made there (reloading subscriptions), an async
    /// one, where a tokio `block_on` would refuse to run.
    pub(super) fn run<T, F>(
        &self,
        work: impl FnOnce(deadpool_postgres::Client) -> F,
    ) -> Result<T, StateError>
    where
        F: std::future::Future<Output = Result<T, StateError>>,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StateError::Failed("the state store is closed".into()))?;
        // New connections and the pool's timers belong to the store's runtime.
        let _entered = runtime.enter();
        futures_executor::block_on(async {
            let call = async {
                let client = self.pool.get().await.map_err(pool_failed)?;
                work(client).await
            };
            // A call the server never answers fails rather than holding its caller (a poll,
            // the dispatcher, a request) for good.
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .unwrap_or_else(|_| {
                    Err(StateError::Failed(format!(
                        "the state database did not answer within {} s",
                        CALL_TIMEOUT.as_secs()
                    )))
                })
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; a store may be dropped on an async thread.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Brings the schema to the newest version, one transaction per step under an advisory lock
/// (replicas starting together run each step once); a schema newer than this Portico knows
/// is refused.
async fn migrate(mut client: deadpool_postgres::Client) -> Result<(), StateError> {
    loop {
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(failed)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS portico_schema (version INTEGER NOT NULL)")
            .await
            .map_err(failed)?;
        let version: i32 = tx
            .query_opt("SELECT version FROM portico_schema", &[])
            .await
            .map_err(failed)?
            .map_or(0, |r| r.get(0));
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v..))
            .map(|rest| rest.first())
        else {
            return Err(StateError::Failed(format!(
                "the state database has schema version {version}, newer than this Portico knows \
                 ({}): use a newer Portico, or another state.url",
                MIGRATIONS.len()
            )));
        };
        let Some(step) = step else {
            return Ok(());
        };
        tx.batch_execute(step).await.map_err(failed)?;
        tx.execute("DELETE FROM portico_schema", &[])
            .await
            .map_err(failed)?;
        tx.execute(
            "INSERT INTO portico_schema (version) VALUES ($1)",
            &[&(version + 1)],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
    }
}

impl StateStore for PgStore {
    fn claim_idempotency(
        &self,
        scope: &str,
        key: &str,
        fingerprints: &[String],
        retention_secs: i64,
        lease_ms: i64,
    ) -> Result<Claim, StateError> {
        let now = super::unix_now();
        let now_ms = super::unix_now_ms();
        let fingerprint = fingerprints.first().map_or("", String::as_str);
        let found = self.run(|mut client| async move {
            let tx = client.transaction().await.map_err(failed)?;
            tx.execute(
                "DELETE FROM idempotency WHERE created < $1",
                &[&(now - retention_secs)],
            )
            .await
            .map_err(failed)?;
            // A claim in flight past its lease: the request that made it died.
            tx.execute(
                "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND response IS NULL
                 AND COALESCE(claimed_ms, created * 1000) < $3",
                &[&scope, &key, &(now_ms - lease_ms)],
            )
            .await
            .map_err(failed)?;
            // Claims racing on one key: one inserts, the others find its row.
            let inserted = tx
                .execute(
                    "INSERT INTO idempotency (scope, key, fingerprint, created, claimed_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
                    &[&scope, &key, &fingerprint, &now, &now_ms],
                )
                .await
                .map_err(failed)?;
            let found = if inserted == 1 {
                None
            } else {
                tx.query_opt(
                    "SELECT fingerprint, response FROM idempotency WHERE scope = $1 AND key = $2",
                    &[&scope, &key],
                )
                .await
                .map_err(failed)?
                .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)))
            };
            tx.commit().await.map_err(failed)?;
            Ok(found)
        })?;
        super::claim_found(found, fingerprints)
    }

    fn complete_idempotency(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StateError> {
        let text =
            serde_json::to_string(response).map_err(|e| StateError::Failed(e.to_string()))?;
        self.run(|client| async move {
            client
                .execute(
                    "UPDATE idempotency SET response = $3 WHERE scope = $1 AND key = $2",
                    &[&scope, &key, &text],
                )
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn release_idempotency(&self, scope: &str, key: &str) -> Result<(), StateError> {
        self.run(|client| async move {
            client
                .execute(
                    "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND response IS NULL",
                    &[&scope, &key],
                )
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }
}
