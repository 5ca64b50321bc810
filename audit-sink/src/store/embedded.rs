//! The embedded audit store: one SQLite file, no server.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a committed append has been
//! fsynced before [`AuditStore::append`] returns, and the sink stores the Kafka offset
//! only after that. A `kill -9` or a power cut loses at most an uncommitted transaction,
//! whose events Kafka delivers again; the unique `event_id` makes that redelivery a no-op.
//!
//! Append-only: triggers refuse `UPDATE` and `DELETE` on both tables. They are a tripwire
//! against mistakes, not a defence: whoever holds the file can drop them. The defence is
//! the Merkle tree and the signed checkpoints, which `zenvelope audit verify` checks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use uuid::Uuid;

use super::{AuditStore, EventRecord, Query, StoredCheckpoint, StoredEvent};
use crate::Error;
use crate::merkle::Hash;

/// Layout version written to the `meta` table.
const FORMAT_VERSION: &str = "1";

/// How long a statement waits for another connection's lock (a reader's checkpoint of the
/// WAL, the CLI reading while the sink writes) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    idx            INTEGER PRIMARY KEY,
    event_id       BLOB    NOT NULL UNIQUE,
    occurred_at_ms INTEGER NOT NULL,
    tenant         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    operation      TEXT    NOT NULL,
    leaf_hash      BLOB    NOT NULL,
    root_after     BLOB    NOT NULL,
    value          BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (tenant, subject, occurred_at_ms);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_at_ms);
CREATE TABLE IF NOT EXISTS checkpoints (
    size          INTEGER PRIMARY KEY,
    root          BLOB    NOT NULL,
    note          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

const ROW_COLUMNS: &str =
    "idx, event_id, occurred_at_ms, tenant, subject, operation, leaf_hash, root_after, value";

/// The embedded store. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let open_err = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'format_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(open_err)?;
        match version.as_deref() {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('format_version', ?1)",
                    [FORMAT_VERSION],
                )
                .map_err(open_err)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(_) => {
                return Err(Error::Config {
                    field: "store.path",
                    reason: format!(
                        "{} was written by another version of zenvelope (format_version is not {FORMAT_VERSION})",
                        path.display()
                    ),
                });
            }
        }
        Ok(Self {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection off the async reactor.
    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` rolls back its transaction (rusqlite's drop), so the
            // connection is usable after a poisoned lock.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(Error::Join)?
    }
}

fn size_of(conn: &Connection) -> Result<u64, Error> {
    // A bare MAX over the rowid is answered from the b-tree's last entry; wrapped in an
    // expression (COALESCE(MAX(idx) + 1, 0)) SQLite scans the whole table instead.
    let last: Option<i64> = conn
        .query_row("SELECT MAX(idx) FROM events", [], |r| r.get(0))
        .map_err(Error::sqlite("read the log size"))?;
    Ok(last.map_or(0, |last| u64::try_from(last).map_or(0, |l| l + 1)))
}

fn hash_column(index: i64, bytes: Vec<u8>, column: &'static str) -> Result<Hash, Error> {
    Hash::try_from(bytes.as_slice()).map_err(|_| Error::MalformedRow {
        index,
        reason: column,
    })
}

/// A raw row as SQLite returns it; converted (and checked for shape) outside the closure.
struct RawRow {
    idx: i64,
    event_id: Vec<u8>,
    occurred_at_ms: i64,
    tenant: String,
    subject: String,
    operation: String,
    leaf_hash: Vec<u8>,
    root_after: Vec<u8>,
    value: Vec<u8>,
}

/// The bytes of a BLOB or TEXT column. The store writes BLOBs; a hand edit can leave
/// TEXT (SQLite's `||` yields text), which `verify` must still read and then report.
fn bytes(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    match r.get_ref(i)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
        ValueRef::Null => Ok(Vec::new()),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            "blob".to_owned(),
            other.data_type(),
        )),
    }
}

/// The text of a TEXT or BLOB column (lossy for invalid UTF-8, which `verify` reports as
/// a column that differs from the event).
fn text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    bytes(r, i).map(|b| String::from_utf8_lossy(&b).into_owned())
}

impl RawRow {
    fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            idx: r.get(0)?,
            event_id: bytes(r, 1)?,
            occurred_at_ms: r.get(2)?,
            tenant: text(r, 3)?,
            subject: text(r, 4)?,
            operation: text(r, 5)?,
            leaf_hash: bytes(r, 6)?,
            root_after: bytes(r, 7)?,
            value: bytes(r, 8)?,
        })
    }

    fn into_stored(self) -> Result<StoredEvent, Error> {
        let index = self.idx;
        Ok(StoredEvent {
            index: u64::try_from(index).map_err(|_| Error::MalformedRow {
                index,
                reason: "negative index",
            })?,
            leaf_hash: hash_column(index, self.leaf_hash, "leaf_hash is not 32 bytes")?,
            root_after: hash_column(index, self.root_after, "root_after is not 32 bytes")?,
            record: EventRecord {
                event_id: Uuid::from_slice(&self.event_id).map_err(|_| Error::MalformedRow {
                    index,
                    reason: "event_id is not 16 bytes",
                })?,
                occurred_at_ms: self.occurred_at_ms,
                tenant: self.tenant,
                subject: self.subject,
                operation: self.operation,
                value: self.value,
            },
        })
    }
}

fn collect_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    operation: &'static str,
) -> Result<Vec<StoredEvent>, Error> {
    let raw: Vec<RawRow> = stmt
        .query_map(params, RawRow::from_sql)
        .and_then(Iterator::collect)
        .map_err(Error::sqlite(operation))?;
    raw.into_iter().map(RawRow::into_stored).collect()
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::Config {
        field: what,
        reason: format!("{value} is out of range"),
    })
}

impl AuditStore for EmbeddedStore {
    async fn size(&self) -> Result<u64, Error> {
        self.blocking(|conn| size_of(conn)).await
    }

    async fn existing_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, Error> {
        let ids = ids.to_vec();
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
                .map_err(Error::sqlite("look up event ids"))?;
            let mut found = HashSet::new();
            for id in ids {
                if stmt
                    .exists([id.as_bytes().as_slice()])
                    .map_err(Error::sqlite("look up event ids"))?
                {
                    found.insert(id);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn append(&self, expected_size: u64, rows: Vec<StoredEvent>) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        self.blocking(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(Error::sqlite("begin an append"))?;
            let actual = size_of(&tx)?;
            if actual != expected_size {
                return Err(Error::Conflict {
                    expected: expected_size,
                    actual,
                });
            }
            {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "INSERT INTO events ({ROW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ))
                    .map_err(Error::sqlite("prepare an append"))?;
                for (offset, row) in rows.iter().enumerate() {
                    let want = expected_size + offset as u64;
                    if row.index != want {
                        return Err(Error::Conflict {
                            expected: want,
                            actual: row.index,
                        });
                    }
                    let r = &row.record;
                    stmt.execute(params![
                        to_i64(row.index, "index")?,
                        r.event_id.as_bytes().as_slice(),
                        r.occurred_at_ms,
                        r.tenant,
                        r.subject,
                        r.operation,
                        row.leaf_hash.as_slice(),
                        row.root_after.as_slice(),
                        r.value,
                    ])
                    .map_err(Error::sqlite("append an event"))?;
                }
            }
            // With synchronous = FULL the commit returns after the WAL is fsynced.
            tx.commit().map_err(Error::sqlite("commit an append"))
        })
        .await
    }

    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<StoredEvent>, Error> {
        let (from, to) = (to_i64(from, "from")?, to_i64(to, "to")?);
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM events WHERE idx >= ?1 AND idx < ?2 ORDER BY idx"
                ))
                .map_err(Error::sqlite("read events"))?;
            collect_rows(&mut stmt, params![from, to], "read events")
        })
        .await
    }

    async fn find(&self, event_id: Uuid) -> Result<Option<StoredEvent>, Error> {
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM events WHERE event_id = ?1"
                ))
                .map_err(Error::sqlite("find an event"))?;
            Ok(
                collect_rows(&mut stmt, [event_id.as_bytes().as_slice()], "find an event")?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    async fn query(&self, query: &Query) -> Result<Vec<StoredEvent>, Error> {
        let query = query.clone();
        self.blocking(move |conn| {
            let mut clauses = Vec::new();
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            let mut text = |clause: &str, value: &Option<String>| {
                if let Some(v) = value {
                    clauses.push(clause.to_owned());
                    values.push(v.clone().into());
                }
            };
            text("tenant = ?", &query.tenant);
            text("subject = ?", &query.subject);
            text("operation = ?", &query.operation);
            if let Some(from) = query.from_ms {
                clauses.push("occurred_at_ms >= ?".to_owned());
                values.push(from.into());
            }
            if let Some(to) = query.to_ms {
                clauses.push("occurred_at_ms < ?".to_owned());
                values.push(to.into());
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", clauses.join(" AND "))
            };
            let limit = match query.limit {
                Some(n) => to_i64(n, "limit")?,
                None => -1,
            };
            values.push(limit.into());
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {ROW_COLUMNS} FROM events{filter} ORDER BY occurred_at_ms, idx LIMIT ?"
                ))
                .map_err(Error::sqlite("query events"))?;
            collect_rows(
                &mut stmt,
                rusqlite::params_from_iter(values),
                "query events",
            )
        })
        .await
    }

    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), Error> {
        let cp = checkpoint.clone();
        self.blocking(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO checkpoints (size, root, note, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![to_i64(cp.size, "size")?, cp.root.as_slice(), cp.note, cp.created_at_ms],
            )
            .map_err(Error::sqlite("store a checkpoint"))?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, Error> {
        self.blocking(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT size, root, note, created_at_ms FROM checkpoints ORDER BY size",
                )
                .map_err(Error::sqlite("read checkpoints"))?;
            let raw: Vec<(i64, Vec<u8>, String, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .and_then(Iterator::collect)
                .map_err(Error::sqlite("read checkpoints"))?;
            raw.into_iter()
                .map(|(size, root, note, created_at_ms)| {
                    Ok(StoredCheckpoint {
                        size: u64::try_from(size).map_err(|_| Error::MalformedRow {
                            index: size,
                            reason: "checkpoint size is negative",
                        })?,
                        root: hash_column(size, root, "checkpoint root is not 32 bytes")?,
                        note,
                        created_at_ms,
                    })
                })
                .collect()
        })
        .await
    }
}
