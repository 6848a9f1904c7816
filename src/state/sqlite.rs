//! The embedded SQLite state store: one file, WAL journal, full sync on commit.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{unix_now, Claim, StateError, StateStore, StoredResponse};

/// State in a SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

pub(super) fn failed(e: impl std::fmt::Display) -> StateError {
    StateError::Failed(e.to_string())
}

impl SqliteStore {
    /// Proves, writing nothing, that `open` can use `path`: an existing file is a database
    /// (or empty) and not read-only; its folder, or the nearest one that exists, is a folder
    /// that is not read-only (the journal and a new store are written there). Permission bits
    /// only: a read-only mount or another owner shows when `serve` opens it.
    pub fn probe(path: &Path) -> Result<(), StateError> {
        if path.exists() {
            // Opening the database, even read-only, may write its WAL index: read the header.
            let mut header = [0u8; 16];
            let read = std::fs::File::open(path).and_then(|mut f| {
                let m = f.metadata()?;
                if m.len() > 0 {
                    std::io::Read::read_exact(&mut f, &mut header)?;
                }
                Ok(m)
            });
            match read {
                Ok(m) if m.len() > 0 && &header != b"SQLite format 3\0" => {
                    return Err(StateError::Failed(format!(
                        "{} is not a SQLite database",
                        path.display()
                    )))
                }
                Ok(m) if m.permissions().readonly() => {
                    return Err(StateError::Failed(format!(
                        "{} is read-only",
                        path.display()
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(StateError::Failed(format!("{}: {e}", path.display()))),
            }
        }
        let folder = path
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.exists())
            .filter(|a| !a.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match std::fs::metadata(folder) {
            Ok(m) if m.is_dir() && !m.permissions().readonly() => Ok(()),
            Ok(m) if m.is_dir() => Err(StateError::Failed(format!(
                "{} is read-only",
                folder.display()
            ))),
            Ok(_) => Err(StateError::Failed(format!(
                "{} is not a folder",
                folder.display()
            ))),
            Err(e) => Err(StateError::Failed(format!("{}: {e}", folder.display()))),
        }
    }

    /// Opens (creating when needed) the store at `path`. A SQLite store serves one process:
    /// delivery claims a process that ended still held are released.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StateError::Failed(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StateError::Failed(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(failed)?;
        migrate(&mut conn, path)?;
        conn.execute(
            "UPDATE deliveries SET claimed_by = NULL, claim_until = 0 WHERE claim_until > 0",
            [],
        )
        .map_err(failed)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `work` on the connection.
    pub(super) fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StateError::Failed("state store lock poisoned".into()))?;
        work(&mut conn).map_err(failed)
    }
}

/// The schema, one step per version (`PRAGMA user_version` counts the steps a store has run).
/// A new table or column is a new step at the end; a released step never changes.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema (stores written before versioning have it, at version 0).
    "CREATE TABLE IF NOT EXISTS idempotency (
         scope TEXT NOT NULL,
         key TEXT NOT NULL,
         fingerprint TEXT NOT NULL,
         created INTEGER NOT NULL,
         response TEXT,
         PRIMARY KEY (scope, key)
     );
     CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created);
     CREATE TABLE IF NOT EXISTS feed_cursors (
         feed TEXT PRIMARY KEY,
         position TEXT NOT NULL,
         updated_ms INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS feed_rows (
         feed TEXT NOT NULL,
         key TEXT NOT NULL,
         hash TEXT NOT NULL,
         seq INTEGER NOT NULL,
         pass INTEGER NOT NULL,
         row TEXT NOT NULL,
         PRIMARY KEY (feed, key)
     ) WITHOUT ROWID;
     CREATE INDEX IF NOT EXISTS feed_rows_pass ON feed_rows (feed, pass);
     CREATE TABLE IF NOT EXISTS events (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         id TEXT NOT NULL UNIQUE,
         feed TEXT NOT NULL,
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         row TEXT,
         detected_ms INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS events_feed ON events (feed, seq);
     CREATE TABLE IF NOT EXISTS subscriptions (
         name TEXT PRIMARY KEY,
         spec TEXT NOT NULL
     );
     CREATE TABLE IF NOT EXISTS deliveries (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         event_id TEXT NOT NULL,
         subscription TEXT NOT NULL,
         body BLOB NOT NULL,
         status TEXT NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_ms INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         last_error TEXT,
         UNIQUE (event_id, subscription)
     );
     CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_ms);
     CREATE TABLE IF NOT EXISTS attempts (
         delivery INTEGER NOT NULL,
         at_ms INTEGER NOT NULL,
         status INTEGER,
         error TEXT,
         duration_ms INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery);",
    // 2: change feeds that never go blind.
    // - A deleted row is kept as a tombstone with its change counter, so a key's counter
    //   survives a delete; the recorded row becomes optional (only feeds that announce
    //   deletes need it). The releases before dropped a deleted row's record and restarted
    //   its counter: every key's counter starts past its events in the log (no counter ever
    //   exceeded them), so no event id repeats.
    // - Events carry their key's counter; a delivery its event's feed, key and counter, so an
    //   ordered subscription finds a key's earlier pending delivery without the events
    //   (which retention prunes).
    // - Retention: events pruned by age; per feed, the newest log position pruned (a pull-feed
    //   cursor that points into pruned history is told so). A tombstone goes once its key has
    //   no event left, raising its feed's floor: a key without a record counts from there.
    "CREATE INDEX events_key ON events (feed, key);
     CREATE TABLE feed_rows_2 (
         feed TEXT NOT NULL,
         key TEXT NOT NULL,
         hash TEXT NOT NULL,
         seq INTEGER NOT NULL,
         pass INTEGER NOT NULL,
         row TEXT,
         deleted INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (feed, key)
     ) WITHOUT ROWID;
     INSERT INTO feed_rows_2 (feed, key, hash, seq, pass, row)
         SELECT feed, key, hash, seq, pass, row FROM feed_rows;
     INSERT INTO feed_rows_2 (feed, key, hash, seq, pass, row, deleted)
         SELECT feed, key, '', COUNT(*), 0, NULL, 1 FROM events AS e
         WHERE NOT EXISTS (SELECT 1 FROM feed_rows AS f WHERE f.feed = e.feed AND f.key = e.key)
         GROUP BY feed, key;
     UPDATE feed_rows_2 SET seq = MAX(seq, (SELECT COUNT(*) FROM events AS e
         WHERE e.feed = feed_rows_2.feed AND e.key = feed_rows_2.key));
     DROP TABLE feed_rows;
     ALTER TABLE feed_rows_2 RENAME TO feed_rows;
     CREATE INDEX feed_rows_live ON feed_rows (feed, pass) WHERE deleted = 0;
     ALTER TABLE events ADD COLUMN key_seq INTEGER;
     CREATE INDEX events_detected ON events (detected_ms);
     ALTER TABLE deliveries ADD COLUMN feed TEXT;
     ALTER TABLE deliveries ADD COLUMN key TEXT;
     ALTER TABLE deliveries ADD COLUMN key_seq INTEGER;
     UPDATE deliveries SET
         feed = (SELECT e.feed FROM events AS e WHERE e.id = deliveries.event_id),
         key = (SELECT e.key FROM events AS e WHERE e.id = deliveries.event_id);
     CREATE INDEX deliveries_pending_key ON deliveries (subscription, feed, key, id)
         WHERE status = 'pending';
     CREATE TABLE pruned_events (
         feed TEXT PRIMARY KEY,
         through_seq INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX feed_rows_tombstones ON feed_rows (feed, key) WHERE deleted = 1;
     CREATE TABLE feed_floors (
         feed TEXT PRIMARY KEY,
         seq INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 3: what replicas share (one process uses it the same way): a lease per feed with its
    // fencing token, replica heartbeats, delivery claims, and when an idempotency key was
    // claimed (a claim in flight past its lease belongs to a request that died).
    "CREATE TABLE feed_leases (
         feed TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         token INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE replicas (
         name TEXT PRIMARY KEY,
         seen_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
     ALTER TABLE deliveries ADD COLUMN claim_until INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX deliveries_claimed ON deliveries (subscription) WHERE claim_until > 0;
     CREATE INDEX deliveries_due_in_order ON deliveries (status, next_ms, id);
     ALTER TABLE idempotency ADD COLUMN claimed_ms INTEGER;",
];

/// Brings the store at `path` to the newest schema, one transaction per step (taken with the
/// write lock, so two processes opening one file run each step once); a store written by a
/// newer Portico is refused rather than used with a schema this one does not know.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(failed)?;
        let Some(sql) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v..))
            .map(|rest| rest.first())
        else {
            return Err(StateError::Failed(format!(
                "{} has schema version {version}, newer than this Portico knows ({}): use a \
                 newer Portico, or another state.path",
                path.display(),
                MIGRATIONS.len()
            )));
        };
        let Some(sql) = sql else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
}

impl StateStore for SqliteStore {
    fn claim_idempotency(
        &self,
        scope: &str,
        key: &str,
        fingerprints: &[String],
        retention_secs: i64,
        lease_ms: i64,
    ) -> Result<Claim, StateError> {
        let now = unix_now();
        let now_ms = super::unix_now_ms();
        let fingerprint = fingerprints.first().map_or("", String::as_str);
        let found = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM idempotency WHERE created < ?1",
                params![now - retention_secs],
            )?;
            // A claim in flight past its lease: the request that made it died.
            tx.execute(
                "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND response IS NULL
                 AND COALESCE(claimed_ms, created * 1000) < ?3",
                params![scope, key, now_ms - lease_ms],
            )?;
            let found: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT fingerprint, response FROM idempotency WHERE scope = ?1 AND key = ?2",
                    params![scope, key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            if found.is_none() {
                tx.execute(
                    "INSERT INTO idempotency (scope, key, fingerprint, created, claimed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![scope, key, fingerprint, now, now_ms],
                )?;
            }
            tx.commit()?;
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
        let text = serde_json::to_string(response).map_err(failed)?;
        self.with(|conn| {
            conn.execute(
                "UPDATE idempotency SET response = ?3 WHERE scope = ?1 AND key = ?2",
                params![scope, key, text],
            )
            .map(|_| ())
        })
    }

    fn release_idempotency(&self, scope: &str, key: &str) -> Result<(), StateError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND response IS NULL",
                params![scope, key],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ChangeStore;

    #[test]
    fn a_probe_proves_the_store_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("later/state.sqlite3");
        SqliteStore::probe(&new).unwrap();
        assert!(
            !dir.path().join("later").exists(),
            "the probe created the folder"
        );
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a database, but long enough to be read as one's header",
        )
        .unwrap();
        assert!(SqliteStore::probe(&text).is_err());
        let empty = dir.path().join("empty.sqlite3");
        std::fs::write(&empty, "").unwrap();
        SqliteStore::probe(&empty).unwrap();
        assert!(SqliteStore::probe(&text.join("state.sqlite3")).is_err());
        let real = dir.path().join("state.sqlite3");
        drop(SqliteStore::open(&real).unwrap());
        let before = std::fs::read(&real).unwrap();
        SqliteStore::probe(&real).unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), before);
    }

    #[test]
    fn stores_are_migrated_step_by_step_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite3");
        // A store from before versioning: the first schema at version 0, with data.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO feed_cursors (feed, position, updated_ms) VALUES ('f', '{}', 1)",
                [],
            )
            .unwrap();
        }
        {
            let conn = Connection::open(&path).unwrap();
            // [1] lives with counter 1, but was created, deleted and created again (its
            // counter restarted then): 3 events. [2] was created and deleted: 2 events, no
            // record. [3] has one event and its record's counter.
            conn.execute_batch(
                "INSERT INTO feed_rows (feed, key, hash, seq, pass, row) VALUES
                     ('f', '[1]', 'h', 1, 1, '[1]'), ('f', '[3]', 'h', 1, 1, '[3]');
                 INSERT INTO events (id, feed, kind, key, row, detected_ms) VALUES
                     ('e1', 'f', 'created', '[1]', '[1]', 1), ('e2', 'f', 'deleted', '[1]', '[1]', 2),
                     ('e3', 'f', 'created', '[1]', '[1]', 3), ('e4', 'f', 'created', '[2]', '[2]', 4),
                     ('e5', 'f', 'deleted', '[2]', '[2]', 5), ('e6', 'f', 'created', '[3]', '[3]', 6);
                 INSERT INTO deliveries (event_id, subscription, body, status, next_ms, created_ms)
                     VALUES ('e6', 's', x'7b7d', 'pending', 0, 6);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.cursor("f").unwrap().as_deref(), Some("{}"));
        let keys = ["[1]", "[2]", "[3]"].map(String::from);
        let known = store.known_rows("f", &keys).unwrap();
        // Every counter starts past the key's events, so no event id repeats.
        assert_eq!((known["[1]"].seq, known["[1]"].deleted), (3, false));
        assert_eq!((known["[2]"].seq, known["[2]"].deleted), (2, true));
        assert_eq!((known["[3]"].seq, known["[3]"].deleted), (1, false));
        let (feed, key): (String, String) = store
            .with(|c| {
                c.query_row("SELECT feed, key FROM deliveries", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .unwrap();
        assert_eq!((feed.as_str(), key.as_str()), ("f", "[3]"));
        let version = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        drop(store);
        assert_eq!(version(&path), MIGRATIONS.len() as i64);
        // Opening again runs nothing.
        drop(SqliteStore::open(&path).unwrap());
        assert_eq!(version(&path), MIGRATIONS.len() as i64);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let refused = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(refused.contains("schema version 99"), "{refused}");
    }
}
