//! Where the audit log lives: a trait, the embedded SQLite store (the default, no server)
//! and the ScyllaDB store (production).
//!
//! A store is deliberately dumb: it keeps rows durably and in index order, and refuses an
//! append that does not start exactly at its current size (one writer per log). The tree
//! logic — which events are new, their leaf hashes and the root after each row — lives in
//! [`crate::sink`], so both stores hold the same rows and [`crate::verify`] checks either.

use std::collections::HashSet;
use std::future::Future;

use uuid::Uuid;

use crate::Error;
use crate::merkle::Hash;

pub mod embedded;
pub mod scylla;

pub use embedded::EmbeddedStore;
pub use scylla::{ScyllaConfig, ScyllaStore};

/// One audit event as it was consumed: the exact Kafka record value, plus the columns a
/// query needs (decoded from that value when it was appended).
#[derive(Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The event's id (the audit log is idempotent by it).
    pub event_id: Uuid,
    /// When the step happened, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// Tenant id.
    pub tenant: String,
    /// Subject pseudonym.
    pub subject: String,
    /// Operation symbol, e.g. `DISCLOSURE`.
    pub operation: String,
    /// The Kafka record value, byte for byte (Confluent-framed Avro `AuditEvent`). The
    /// Merkle leaf is the hash of exactly these bytes.
    pub value: Vec<u8>,
}

impl std::fmt::Debug for EventRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Audit events hold no PHI, but the value is printed as a length all the same:
        // logs are not the place for record bodies.
        f.debug_struct("EventRecord")
            .field("event_id", &self.event_id)
            .field("occurred_at_ms", &self.occurred_at_ms)
            .field("operation", &self.operation)
            .field("value_len", &self.value.len())
            .finish_non_exhaustive()
    }
}

/// A row of the log: an event at its index, with its leaf hash and the tree root after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log, from 0.
    pub index: u64,
    /// RFC 6962 leaf hash of [`EventRecord::value`].
    pub leaf_hash: Hash,
    /// Root of the tree of the first `index + 1` events. Lets `verify` name the first
    /// row that moved, even when the row's own leaf hash was rewritten to match.
    pub root_after: Hash,
    /// The event.
    pub record: EventRecord,
}

/// A signed checkpoint as stored next to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// The C2SP signed note, text.
    pub note: String,
    /// When it was signed, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// A filter over stored events; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Tenant id.
    pub tenant: Option<String>,
    /// Subject pseudonym.
    pub subject: Option<String>,
    /// Operation symbol, e.g. `DISCLOSURE`.
    pub operation: Option<String>,
    /// Events that occurred at or after this time (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Events that occurred before this time (ms since the epoch).
    pub to_ms: Option<i64>,
    /// At most this many events, oldest first.
    pub limit: Option<u64>,
}

impl Query {
    /// Whether `record` passes the filter (the limit aside).
    pub fn matches(&self, record: &EventRecord) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == record.tenant)
            && self.subject.as_ref().is_none_or(|s| *s == record.subject)
            && self
                .operation
                .as_ref()
                .is_none_or(|o| *o == record.operation)
            && self
                .from_ms
                .is_none_or(|from| record.occurred_at_ms >= from)
            && self.to_ms.is_none_or(|to| record.occurred_at_ms < to)
    }
}

/// Storage for one audit log. Implementations must be safe to call from several tasks;
/// appends come from one writer (the sink), and a second writer is refused through the
/// `expected_size` check rather than interleaved.
pub trait AuditStore: Send + Sync + 'static {
    /// Number of rows in the log: the index the next append starts at.
    fn size(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Which of `ids` the log already holds.
    fn existing_ids(
        &self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<HashSet<Uuid>, Error>> + Send;

    /// Appends `rows` (indices `expected_size`, `expected_size + 1`, …) atomically and
    /// durably: when this returns `Ok`, the rows survive a crash or power loss. Fails
    /// with [`Error::Conflict`] when the log's size is not `expected_size`.
    fn append(
        &self,
        expected_size: u64,
        rows: Vec<StoredEvent>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Rows with `from <= index < to`, in index order, exactly as stored (no checks:
    /// [`crate::verify`] does those).
    fn read_range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send;

    /// The row holding `event_id`, if any.
    fn find(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredEvent>, Error>> + Send;

    /// Rows matching `query`, oldest first (by time, then index).
    fn query(&self, query: &Query) -> impl Future<Output = Result<Vec<StoredEvent>, Error>> + Send;

    /// Checks the store's own query index against the rows: the indexes (at most `limit`)
    /// of rows whose index entry is missing or altered, which would hide them from
    /// [`AuditStore::query`]. `None` when this store does not check its index.
    fn query_index_problems(
        &self,
        limit: u64,
    ) -> impl Future<Output = Result<Option<Vec<u64>>, Error>> + Send;

    /// Stores a signed checkpoint; storing one for a size already held is a no-op.
    fn add_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Every stored checkpoint, by size.
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<StoredCheckpoint>, Error>> + Send;
}

/// How many rows one `read_range` call asks for when walking the whole log.
pub const READ_PAGE_ROWS: u64 = 10_000;

/// Which store a service or the CLI uses.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum StoreConfig {
    /// The embedded SQLite store (the default; no server).
    Embedded {
        /// The database file; created if missing.
        path: std::path::PathBuf,
    },
    /// ScyllaDB (production).
    Scylla(ScyllaConfig),
}

/// Either store, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// The embedded SQLite store.
    Embedded(EmbeddedStore),
    /// ScyllaDB.
    Scylla(ScyllaStore),
}

impl AnyStore {
    /// Opens the configured store.
    pub async fn open(config: &StoreConfig) -> Result<Self, Error> {
        Ok(match config {
            StoreConfig::Embedded { path } => AnyStore::Embedded(EmbeddedStore::open(path)?),
            StoreConfig::Scylla(cfg) => AnyStore::Scylla(ScyllaStore::connect(cfg).await?),
        })
    }
}

/// Forwards a call to whichever store is inside.
macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Embedded($store) => $call.await,
            AnyStore::Scylla($store) => $call.await,
        }
    };
}

impl AuditStore for AnyStore {
    async fn size(&self) -> Result<u64, Error> {
        delegate!(self, s => s.size())
    }
    async fn existing_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, Error> {
        delegate!(self, s => s.existing_ids(ids))
    }
    async fn append(&self, expected_size: u64, rows: Vec<StoredEvent>) -> Result<(), Error> {
        delegate!(self, s => s.append(expected_size, rows))
    }
    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<StoredEvent>, Error> {
        delegate!(self, s => s.read_range(from, to))
    }
    async fn find(&self, event_id: Uuid) -> Result<Option<StoredEvent>, Error> {
        delegate!(self, s => s.find(event_id))
    }
    async fn query(&self, query: &Query) -> Result<Vec<StoredEvent>, Error> {
        delegate!(self, s => s.query(query))
    }
    async fn query_index_problems(&self, limit: u64) -> Result<Option<Vec<u64>>, Error> {
        delegate!(self, s => s.query_index_problems(limit))
    }
    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), Error> {
        delegate!(self, s => s.add_checkpoint(checkpoint))
    }
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, Error> {
        delegate!(self, s => s.checkpoints())
    }
}
