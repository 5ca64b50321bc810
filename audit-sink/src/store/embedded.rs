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

/// The `meta` key holding how far the `subject_index` table reaches: rows below it are indexed.
const SUBJECT_INDEXED_UPTO: &str = "subject_indexed_upto";

/// The by-subject index is written in bulk, once this many rows wait for it, instead of
/// row by row in every append. Row by row, each event lands on a different page of the
/// index (one page per subject in the batch), so a commit of 1,000 events rewrote about
/// 1,000 index pages and the append rate fell with the number of subjects (13,000
/// events/s at 10,000 subjects). In bulk, each page is written once per catch-up.
/// Queries read the index below the mark and scan the rows above it, so they always see
/// every row; the scan is bounded by this constant.
pub const SUBJECT_INDEX_LAG_ROWS: u64 = 50_000;

/// SQLite's page cache for this connection, in KiB when negative (64 MiB), so that a
/// by-subject catch-up and the indexes' hot pages stay in memory.
const CACHE_SIZE_PRAGMA: i64 = -65_536;

/// WAL pages after which a commit copies the WAL back into the database (SQLite's
/// default is 1,000, about 4 MiB). Less often, the pages every append touches (the log's
/// tail, the id index's tail) are copied once per many appends instead of once per few.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

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
DROP INDEX IF EXISTS events_by_subject;
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_at_ms);
CREATE TABLE IF NOT EXISTS subject_index (
    tenant         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    idx            INTEGER NOT NULL,
    PRIMARY KEY (tenant, subject, occurred_at_ms, idx)
) WITHOUT ROWID;
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
        // Another process (the sink, an auditor's CLI) may be creating the same new store
        // at this moment. SQLite answers some of those collisions (the switch to WAL, a
        // read lock upgraded to a write lock) with "busy" at once, without waiting: the
        // set-up is retried until BUSY_TIMEOUT.
        let started = std::time::Instant::now();
        loop {
            match Self::set_up(&conn) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(open_err(e)),
            }
        }
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'format_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(open_err)?;
        match version.as_deref() {
            Some(FORMAT_VERSION) => {}
            None | Some(_) => {
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

    /// Pragmas, tables and the format version (written only where none is, in one
    /// immediate transaction, so two processes creating the store cannot collide on it).
    fn set_up(conn: &Connection) -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", CACHE_SIZE_PRAGMA)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA}; INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', '{FORMAT_VERSION}'); COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
    }

    /// Brings the by-subject index up to the log's size now (the store otherwise does it
    /// every [`SUBJECT_INDEX_LAG_ROWS`] rows). Returns the rows indexed.
    pub async fn index_now(&self) -> Result<u64, Error> {
        self.blocking(catch_up_subject_index).await
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

/// How far the by-subject index reaches (rows below are indexed); 0 for a store written
/// before the index existed, whose next catch-up then indexes every row.
fn subject_indexed_upto(conn: &Connection) -> Result<u64, Error> {
    let upto: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [SUBJECT_INDEXED_UPTO],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sqlite("read the index mark"))?;
    Ok(upto.and_then(|u| u.parse().ok()).unwrap_or(0))
}

/// Indexes every row at or above the mark, in one transaction, in index order, and moves
/// the mark to the log's size. Returns the rows indexed.
fn catch_up_subject_index(conn: &mut Connection) -> Result<u64, Error> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(Error::sqlite("begin indexing"))?;
    let upto = subject_indexed_upto(&tx)?;
    let size = size_of(&tx)?;
    if size <= upto {
        return Ok(0);
    }
    // Sorted by the index key, the inserts walk the index's pages in order.
    tx.execute(
        "INSERT OR IGNORE INTO subject_index (tenant, subject, occurred_at_ms, idx)
         SELECT tenant, subject, occurred_at_ms, idx FROM events WHERE idx >= ?1
         ORDER BY tenant, subject, occurred_at_ms, idx",
        [to_i64(upto, "index mark")?],
    )
    .map_err(Error::sqlite("index rows by subject"))?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![SUBJECT_INDEXED_UPTO, size.to_string()],
    )
    .map_err(Error::sqlite("move the index mark"))?;
    tx.commit().map_err(Error::sqlite("commit indexing"))?;
    Ok(size - upto)
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
            // One read transaction for the whole batch: outside one, every lookup would
            // take and release the file locks on its own.
            let tx = conn
                .transaction()
                .map_err(Error::sqlite("look up event ids"))?;
            let mut found = HashSet::new();
            {
                let mut stmt = tx
                    .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")
                    .map_err(Error::sqlite("look up event ids"))?;
                for id in ids {
                    if stmt
                        .exists([id.as_bytes().as_slice()])
                        .map_err(Error::sqlite("look up event ids"))?
                    {
                        found.insert(id);
                    }
                }
            }
            tx.finish().map_err(Error::sqlite("look up event ids"))?;
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
            tx.commit().map_err(Error::sqlite("commit an append"))?;
            // The append is durable now; indexing is separate, and a failure there only
            // leaves more rows for queries to scan (and is tried again next time).
            let size = expected_size + rows.len() as u64;
            let due = subject_indexed_upto(conn)
                .map(|upto| size.saturating_sub(upto) >= SUBJECT_INDEX_LAG_ROWS);
            if let Err(error) = due.and_then(|due| {
                if due {
                    catch_up_subject_index(conn)?;
                }
                Ok(())
            }) {
                tracing::warn!(%error, "Could not extend the by-subject index; queries scan the rows after it.");
            }
            Ok(())
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
            let tx = conn.transaction().map_err(Error::sqlite("query events"))?;
            let upto = subject_indexed_upto(&tx)?;
            let mut values: Vec<(&'static str, rusqlite::types::Value)> = Vec::new();
            let mut row_filter = Vec::new();
            let mut index_filter = Vec::new();
            for (column, name, value) in [
                ("tenant", ":tenant", &query.tenant),
                ("subject", ":subject", &query.subject),
                ("operation", ":operation", &query.operation),
            ] {
                if let Some(v) = value {
                    row_filter.push(format!("{column} = {name}"));
                    if column != "operation" {
                        index_filter.push(format!("{column} = {name}"));
                    }
                    values.push((name, v.clone().into()));
                }
            }
            for (clause, name, value) in [
                ("occurred_at_ms >= :from", ":from", query.from_ms),
                ("occurred_at_ms < :to", ":to", query.to_ms),
            ] {
                if let Some(v) = value {
                    row_filter.push(clause.to_owned());
                    index_filter.push(clause.to_owned());
                    values.push((name, v.into()));
                }
            }
            let limit = match query.limit {
                Some(n) => to_i64(n, "limit")?,
                None => -1,
            };
            values.push((":limit", limit.into()));
            let by_subject = query.tenant.is_some() || query.subject.is_some();
            let sql = if by_subject {
                // Rows below the mark through the index, the rest by a scan of the tail.
                values.push((":upto", to_i64(upto, "index mark")?.into()));
                let rows = row_filter.join(" AND ");
                let entries = index_filter.join(" AND ");
                format!(
                    "SELECT {ROW_COLUMNS} FROM events WHERE idx < :upto AND {rows} AND idx IN \
                     (SELECT idx FROM subject_index WHERE idx < :upto AND {entries}) \
                     UNION ALL SELECT {ROW_COLUMNS} FROM events WHERE idx >= :upto AND {rows} \
                     ORDER BY occurred_at_ms, idx LIMIT :limit"
                )
            } else {
                let filter = if row_filter.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", row_filter.join(" AND "))
                };
                format!(
                    "SELECT {ROW_COLUMNS} FROM events{filter} ORDER BY occurred_at_ms, idx LIMIT :limit"
                )
            };
            let mut stmt = tx.prepare(&sql).map_err(Error::sqlite("query events"))?;
            let named: Vec<(&str, &dyn rusqlite::ToSql)> = values
                .iter()
                .map(|(name, value)| (*name, value as &dyn rusqlite::ToSql))
                .collect();
            collect_rows(&mut stmt, named.as_slice(), "query events")
        })
        .await
    }

    async fn query_index_problems(&self, limit: u64) -> Result<Option<Vec<u64>>, Error> {
        let limit = to_i64(limit, "limit")?;
        self.blocking(move |conn| {
            let tx = conn
                .transaction()
                .map_err(Error::sqlite("check the by-subject index"))?;
            let upto = to_i64(subject_indexed_upto(&tx)?, "index mark")?;
            let mut stmt = tx
                .prepare(
                    "SELECT idx FROM events e WHERE idx < ?1 AND NOT EXISTS \
                       (SELECT 1 FROM subject_index s WHERE s.tenant = e.tenant \
                        AND s.subject = e.subject AND s.occurred_at_ms = e.occurred_at_ms \
                        AND s.idx = e.idx) \
                     UNION SELECT idx FROM subject_index s WHERE idx < ?1 AND NOT EXISTS \
                       (SELECT 1 FROM events e WHERE e.idx = s.idx AND e.tenant = s.tenant \
                        AND e.subject = s.subject AND e.occurred_at_ms = s.occurred_at_ms) \
                     ORDER BY 1 LIMIT ?2",
                )
                .map_err(Error::sqlite("check the by-subject index"))?;
            let bad: Vec<i64> = stmt
                .query_map([upto, limit], |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(Error::sqlite("check the by-subject index"))?;
            Ok(Some(
                bad.into_iter()
                    .map(|i| u64::try_from(i).unwrap_or(0))
                    .collect(),
            ))
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
