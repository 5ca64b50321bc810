//! The ScyllaDB audit store: the production store, shared by a cluster.
//!
//! Layout (`infra/cql/audit.cql`, compiled in as [`SCHEMA_CQL`]): one keyspace holds any
//! number of logs, each named by a `log` column. The rows live in `events`, partitioned by
//! `(log, idx / BUCKET_ROWS)`; `event_ids` maps an event id to its index; `log_head` holds
//! each log's size; `events_by_subject` keys the same rows by tenant, subject and time;
//! `checkpoints` holds the signed checkpoints.
//!
//! Commit protocol: an append writes its `events` and `events_by_subject` rows (plain,
//! idempotent inserts at their indices), then its `event_ids` rows (`IF NOT EXISTS`), and
//! last moves `log_head.size` with a lightweight transaction (`IF size = <expected>`).
//! That transaction is the commit point and the one-writer guard: a second writer's
//! transaction is refused and its append fails with [`Error::Conflict`]. A crash before
//! it leaves rows at indices at or past the head; every read ignores them and the next
//! append overwrites them at the same indices.
//!
//! Durability: when [`AuditStore::append`] returns `Ok`, the rows have been acknowledged
//! at the configured consistency (`LOCAL_QUORUM` by default) and the head transaction by a
//! Paxos quorum of the local datacenter (`LOCAL_SERIAL`). ScyllaDB fsyncs the commit log
//! of lightweight transactions before acknowledging them, but plain writes only every
//! `commitlog_sync_period_in_ms` unless the nodes run `commitlog_sync: batch`: with the
//! default, the rows survive the loss of a minority of replicas, and surviving a power
//! cut of a whole datacenter needs batch commit-log sync.
//!
//! Unlike the embedded store, nothing here forbids `UPDATE` or `DELETE`: whoever can
//! write the keyspace can rewrite the log. The defence, as for the embedded store, is the
//! Merkle tree and the signed checkpoints, which `zenvelope audit verify` checks.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _, future, stream};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use serde::Deserialize;
use uuid::Uuid;

use super::{AuditStore, EventRecord, Query, StoredCheckpoint, StoredEvent};
use crate::Error;
use crate::merkle::Hash;

/// Environment variable naming the ScyllaDB nodes to connect to, as comma-separated
/// `host:port` pairs (read by [`ScyllaConfig::from_env`]).
pub const SCYLLA_NODES_ENV: &str = "ZENVELOPE_SCYLLA_NODES";

/// Rows per `events` partition: the row at index `idx` lives in bucket `idx / BUCKET_ROWS`.
pub const BUCKET_ROWS: u64 = 65_536;

/// The schema the store expects, as written in `infra/cql/audit.cql`.
pub const SCHEMA_CQL: &str = include_str!("../../../infra/cql/audit.cql");

/// The keyspace name as spelled in [`SCHEMA_CQL`]; [`ScyllaStore::create_schema`]
/// substitutes the configured one.
const SCHEMA_KEYSPACE: &str = "zenvelope_audit";

/// The replication as spelled in [`SCHEMA_CQL`]; [`ScyllaStore::create_schema`]
/// substitutes the requested factor.
const SCHEMA_REPLICATION: &str = "'replication_factor': 3";

/// The tables [`SCHEMA_CQL`] creates, checked by [`ScyllaStore::connect`].
const TABLES: [&str; 5] = [
    "events",
    "event_ids",
    "log_head",
    "events_by_subject",
    "checkpoints",
];

/// Default [`ScyllaConfig::log`].
const DEFAULT_LOG: &str = "default";

/// Default [`ScyllaConfig::connect_timeout_ms`].
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Longest keyspace name ScyllaDB accepts.
const MAX_KEYSPACE_LEN: usize = 48;

/// Requests one store call keeps in flight at once (row writes, id look-ups).
const MAX_IN_FLIGHT: usize = 64;

/// Rows per page of a paged read. Rows carry a record value of a few hundred bytes.
const PAGE_ROWS: i32 = 1_000;

/// The columns of an `events` row, in the order every `SELECT` of them names them.
const EVENT_COLUMNS: &str =
    "idx, event_id, occurred_at_ms, tenant, subject, operation, leaf_hash, root_after, value";

/// An `events` row as the driver returns it, in [`EVENT_COLUMNS`] order.
type EventColumns = (
    i64,
    Uuid,
    i64,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
);

/// A consistency level for the store's reads and writes.
///
/// Names are the CQL ones (`LOCAL_QUORUM`, …), matched without regard to case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum ScyllaConsistency {
    /// `ONE`: one replica.
    One,
    /// `QUORUM`: a majority of all replicas, across datacenters.
    Quorum,
    /// `LOCAL_QUORUM`: a majority of the local datacenter's replicas (the default).
    #[default]
    LocalQuorum,
    /// `ALL`: every replica.
    All,
    /// `EACH_QUORUM`: a majority in every datacenter. ScyllaDB accepts it for writes
    /// only, so reads use `QUORUM`, which overlaps every set of per-datacenter majorities.
    EachQuorum,
    /// `LOCAL_ONE`: one replica of the local datacenter.
    LocalOne,
}

impl ScyllaConsistency {
    /// Every level, in the order of the variants.
    pub const VARIANTS: [Self; 6] = [
        Self::One,
        Self::Quorum,
        Self::LocalQuorum,
        Self::All,
        Self::EachQuorum,
        Self::LocalOne,
    ];

    /// The CQL name, e.g. `LOCAL_QUORUM`.
    pub fn name(self) -> &'static str {
        match self {
            Self::One => "ONE",
            Self::Quorum => "QUORUM",
            Self::LocalQuorum => "LOCAL_QUORUM",
            Self::All => "ALL",
            Self::EachQuorum => "EACH_QUORUM",
            Self::LocalOne => "LOCAL_ONE",
        }
    }

    /// The driver's level for writes (and the commit phase of lightweight transactions).
    fn for_writes(self) -> Consistency {
        match self {
            Self::One => Consistency::One,
            Self::Quorum => Consistency::Quorum,
            Self::LocalQuorum => Consistency::LocalQuorum,
            Self::All => Consistency::All,
            Self::EachQuorum => Consistency::EachQuorum,
            Self::LocalOne => Consistency::LocalOne,
        }
    }

    /// The driver's level for reads.
    fn for_reads(self) -> Consistency {
        match self {
            Self::EachQuorum => Consistency::Quorum,
            other => other.for_writes(),
        }
    }
}

impl fmt::Display for ScyllaConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScyllaConsistency {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Self::VARIANTS
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::Config {
                field: "store.scylla.consistency",
                reason: format!(
                    "{name:?} is not one of ONE, QUORUM, LOCAL_QUORUM, ALL, EACH_QUORUM, LOCAL_ONE"
                ),
            })
    }
}

impl TryFrom<String> for ScyllaConsistency {
    type Error = Error;

    fn try_from(name: String) -> Result<Self, Error> {
        name.parse()
    }
}

/// Where the ScyllaDB store lives and how to talk to it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` each; the driver discovers the rest of the cluster.
    pub nodes: Vec<String>,
    /// Keyspace holding the tables of `infra/cql/audit.cql`.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// Name of the log in that keyspace; one keyspace can hold several logs.
    #[serde(default = "default_log")]
    pub log: String,
    /// Consistency level of reads and writes. Lightweight transactions always use the
    /// serial consistency `LOCAL_SERIAL`.
    #[serde(default)]
    pub consistency: ScyllaConsistency,
    /// How long opening one connection to a node may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// User name for password authentication, if the cluster requires it.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`. Never printed: `Debug` shows `<redacted>`.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_keyspace() -> String {
    SCHEMA_KEYSPACE.to_owned()
}

fn default_log() -> String {
    DEFAULT_LOG.to_owned()
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

impl fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("log", &self.log)
            .field("consistency", &self.consistency)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ScyllaConfig {
    /// A configuration for `nodes` with every other field at its default.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: default_keyspace(),
            log: default_log(),
            consistency: ScyllaConsistency::default(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            username: None,
            password: None,
        }
    }

    /// A default configuration for the nodes named by [`SCYLLA_NODES_ENV`], or `None`
    /// when that variable is unset, empty or not Unicode.
    pub fn from_env() -> Option<Self> {
        Self::from_node_list(&std::env::var(SCYLLA_NODES_ENV).ok()?)
    }

    /// A default configuration for a comma-separated `host:port` list, or `None` when the
    /// list names no node. Blank entries are skipped.
    pub fn from_node_list(list: &str) -> Option<Self> {
        let nodes: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect();
        (!nodes.is_empty()).then(|| Self::new(nodes))
    }

    /// Checks the values the store relies on: at least one node, a plain keyspace name
    /// (it is written into CQL text), a log name, a timeout, and credentials in pairs.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |field: &'static str, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.nodes.is_empty() || self.nodes.iter().any(|n| n.trim().is_empty()) {
            return invalid(
                "store.scylla.nodes",
                "name at least one host:port, none blank",
            );
        }
        if !is_plain_identifier(&self.keyspace) {
            return invalid(
                "store.scylla.keyspace",
                "use 1 to 48 lower-case letters, digits and underscores, starting with a letter",
            );
        }
        if self.log.is_empty() {
            return invalid("store.scylla.log", "the log name is empty");
        }
        if self.connect_timeout_ms == 0 {
            return invalid("store.scylla.connect_timeout_ms", "the timeout is zero");
        }
        if self.username.is_some() != self.password.is_some() {
            return invalid(
                "store.scylla.username",
                "set both username and password, or neither",
            );
        }
        Ok(())
    }
}

/// Whether `name` is an unquoted CQL identifier that means itself: lower case, starting
/// with a letter, at most [`MAX_KEYSPACE_LEN`] characters.
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_KEYSPACE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An [`Error::Scylla`] for `operation`, from any driver error.
fn scylla_error<E: fmt::Display>(operation: &'static str) -> impl Fn(E) -> Error + Copy {
    move |error| Error::Scylla {
        operation,
        message: error.to_string(),
    }
}

/// `value` as a CQL `bigint`.
fn to_i64(value: u64, what: &'static str) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::Config {
        field: what,
        reason: format!("{value} is out of range"),
    })
}

/// A stored `bigint` index as an index.
fn index_from(index: i64) -> Result<u64, Error> {
    u64::try_from(index).map_err(|_| Error::MalformedRow {
        index,
        reason: "negative index",
    })
}

/// The `events` partition holding `index`.
fn bucket_of(index: u64) -> u64 {
    index / BUCKET_ROWS
}

/// The buckets covering `from <= index < to`, each as `(bucket, first, end)` with the
/// part of the range inside it, in order.
fn bucket_ranges(from: u64, to: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    let mut first = from;
    std::iter::from_fn(move || {
        if first >= to {
            return None;
        }
        let bucket = bucket_of(first);
        let end = to.min(bucket.saturating_add(1).saturating_mul(BUCKET_ROWS));
        let range = (bucket, first, end);
        first = end;
        Some(range)
    })
}

fn hash_column(index: i64, bytes: &[u8], reason: &'static str) -> Result<Hash, Error> {
    Hash::try_from(bytes).map_err(|_| Error::MalformedRow { index, reason })
}

fn into_stored(columns: EventColumns) -> Result<StoredEvent, Error> {
    let (idx, event_id, occurred_at_ms, tenant, subject, operation, leaf_hash, root_after, value) =
        columns;
    Ok(StoredEvent {
        index: index_from(idx)?,
        leaf_hash: hash_column(idx, &leaf_hash, "leaf_hash is not 32 bytes")?,
        root_after: hash_column(idx, &root_after, "root_after is not 32 bytes")?,
        record: EventRecord {
            event_id,
            occurred_at_ms,
            tenant,
            subject,
            operation,
            value,
        },
    })
}

/// Splits CQL text into statements the way cqlsh does: `--`, `//` and `/* */` comments
/// are dropped and statements end at semicolons outside quotes. Blank statements are
/// skipped.
fn split_cql(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(open) = quote {
            current.push(c);
            // A doubled quote closes and reopens, which leaves it open: right either way.
            if c == open {
                quote = None;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('\'' | '"', _) => {
                quote = Some(c);
                current.push(c);
            }
            ('-', Some('-')) | ('/', Some('/')) => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut previous = ' ';
                for skipped in chars.by_ref() {
                    if previous == '*' && skipped == '/' {
                        break;
                    }
                    previous = skipped;
                }
                current.push(' ');
            }
            (';', _) => {
                let statement = current.trim();
                if !statement.is_empty() {
                    statements.push(statement.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    statements
}

/// The statements of [`SCHEMA_CQL`] for `keyspace`, replicated `replication_factor` times
/// in every datacenter.
fn schema_statements(keyspace: &str, replication_factor: u32) -> Vec<String> {
    let replication = format!("'replication_factor': {replication_factor}");
    split_cql(SCHEMA_CQL)
        .into_iter()
        .map(|statement| {
            statement
                .replace(SCHEMA_KEYSPACE, keyspace)
                .replace(SCHEMA_REPLICATION, &replication)
        })
        .collect()
}

/// Opens a session to the configured cluster (no keyspace selected).
async fn open_session(config: &ScyllaConfig) -> Result<Session, Error> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        // Client-side, monotonic write timestamps: an append that overwrites rows an
        // interrupted append left behind wins by its timestamp, and with one writer per
        // log that timestamp comes from one clock.
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user, password);
    }
    builder.build().await.map_err(scylla_error("connect"))
}

/// Fails unless `keyspace` holds every table of the schema.
async fn check_schema(session: &Session, keyspace: &str) -> Result<(), Error> {
    const OPERATION: &str = "check the schema";
    let mut rows = session
        .query_iter(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(scylla_error(OPERATION))?
        .rows_stream::<(String,)>()
        .map_err(scylla_error(OPERATION))?;
    let mut present = HashSet::new();
    while let Some((table,)) = rows.try_next().await.map_err(scylla_error(OPERATION))? {
        present.insert(table);
    }
    let missing: Vec<&str> = TABLES
        .into_iter()
        .filter(|table| !present.contains(*table))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Scylla {
        operation: OPERATION,
        message: format!(
            "the keyspace {keyspace} lacks the tables {}: create them with infra/cql/audit.cql \
             (cqlsh -f infra/cql/audit.cql) or ScyllaStore::create_schema",
            missing.join(", ")
        ),
    })
}

/// What a statement does, which decides its execution settings.
#[derive(Clone, Copy)]
enum Kind {
    /// A read at the configured consistency; idempotent.
    Read,
    /// A read through Paxos (`LOCAL_SERIAL`): sees every accepted transaction.
    SerialRead,
    /// A plain write; idempotent (it always writes the same row at the same key).
    Write,
    /// A lightweight transaction: not idempotent, serial phase `LOCAL_SERIAL`.
    Lwt,
}

async fn prepare(
    session: &Session,
    cql: String,
    kind: Kind,
    consistency: ScyllaConsistency,
) -> Result<PreparedStatement, Error> {
    let mut statement = session
        .prepare(cql)
        .await
        .map_err(scylla_error("prepare a statement"))?;
    match kind {
        Kind::Read => {
            statement.set_consistency(consistency.for_reads());
            statement.set_is_idempotent(true);
            statement.set_page_size(PAGE_ROWS);
        }
        Kind::SerialRead => {
            statement.set_consistency(Consistency::LocalSerial);
            statement.set_is_idempotent(true);
        }
        Kind::Write => {
            statement.set_consistency(consistency.for_writes());
            statement.set_is_idempotent(true);
        }
        Kind::Lwt => {
            statement.set_consistency(consistency.for_writes());
            statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            statement.set_is_idempotent(false);
        }
    }
    Ok(statement)
}

/// Every statement the store runs, prepared once at connect.
struct Statements {
    /// `log` → `size`.
    head: PreparedStatement,
    /// `log` → `size`, through Paxos.
    head_serial: PreparedStatement,
    /// `log`: creates the head at 0 if absent.
    head_create: PreparedStatement,
    /// `new size, log, expected size`: the commit point.
    head_advance: PreparedStatement,
    /// `log, bucket, idx, event_id, occurred_at_ms, tenant, subject, operation,
    /// leaf_hash, root_after, value`.
    event_insert: PreparedStatement,
    /// `log, bucket, first idx, end idx` → [`EVENT_COLUMNS`].
    event_range: PreparedStatement,
    /// `log, bucket, idx` → [`EVENT_COLUMNS`].
    event_at: PreparedStatement,
    /// `log, bucket, idx` → `event_id`.
    event_id_at: PreparedStatement,
    /// `log, tenant, subject, occurred_at_ms, idx, event_id, operation, leaf_hash,
    /// root_after, value`.
    subject_insert: PreparedStatement,
    /// `log, tenant, subject, lowest time, highest time` → `idx, event_id, operation`.
    subject_range: PreparedStatement,
    /// `log, event_id, idx`, if the id is not yet recorded.
    id_insert: PreparedStatement,
    /// `log, event_id` → `idx`.
    id_lookup: PreparedStatement,
    /// `new idx, log, event_id, old idx`.
    id_repoint: PreparedStatement,
    /// `log, size, root, note, created_at_ms`, if the size has none yet.
    checkpoint_insert: PreparedStatement,
    /// `log` → `size, root, note, created_at_ms`, by size.
    checkpoint_all: PreparedStatement,
}

impl Statements {
    async fn prepare(
        session: &Session,
        ks: &str,
        consistency: ScyllaConsistency,
    ) -> Result<Self, Error> {
        let p = |cql: String, kind: Kind| prepare(session, cql, kind, consistency);
        Ok(Self {
            head: p(
                format!("SELECT size FROM {ks}.log_head WHERE log = ?"),
                Kind::Read,
            )
            .await?,
            head_serial: p(
                format!("SELECT size FROM {ks}.log_head WHERE log = ?"),
                Kind::SerialRead,
            )
            .await?,
            head_create: p(
                format!("INSERT INTO {ks}.log_head (log, size) VALUES (?, 0) IF NOT EXISTS"),
                Kind::Lwt,
            )
            .await?,
            head_advance: p(
                format!("UPDATE {ks}.log_head SET size = ? WHERE log = ? IF size = ?"),
                Kind::Lwt,
            )
            .await?,
            event_insert: p(
                format!(
                    "INSERT INTO {ks}.events (log, bucket, {EVENT_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                Kind::Write,
            )
            .await?,
            event_range: p(
                format!(
                    "SELECT {EVENT_COLUMNS} FROM {ks}.events \
                     WHERE log = ? AND bucket = ? AND idx >= ? AND idx < ?"
                ),
                Kind::Read,
            )
            .await?,
            event_at: p(
                format!(
                    "SELECT {EVENT_COLUMNS} FROM {ks}.events \
                     WHERE log = ? AND bucket = ? AND idx = ?"
                ),
                Kind::Read,
            )
            .await?,
            event_id_at: p(
                format!(
                    "SELECT event_id FROM {ks}.events WHERE log = ? AND bucket = ? AND idx = ?"
                ),
                Kind::Read,
            )
            .await?,
            subject_insert: p(
                format!(
                    "INSERT INTO {ks}.events_by_subject (log, tenant, subject, occurred_at_ms, \
                     idx, event_id, operation, leaf_hash, root_after, value) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                Kind::Write,
            )
            .await?,
            subject_range: p(
                format!(
                    "SELECT idx, event_id, operation FROM {ks}.events_by_subject \
                     WHERE log = ? AND tenant = ? AND subject = ? \
                     AND occurred_at_ms >= ? AND occurred_at_ms <= ?"
                ),
                Kind::Read,
            )
            .await?,
            id_insert: p(
                format!(
                    "INSERT INTO {ks}.event_ids (log, event_id, idx) VALUES (?, ?, ?) \
                     IF NOT EXISTS"
                ),
                Kind::Lwt,
            )
            .await?,
            id_lookup: p(
                format!("SELECT idx FROM {ks}.event_ids WHERE log = ? AND event_id = ?"),
                Kind::Read,
            )
            .await?,
            id_repoint: p(
                format!(
                    "UPDATE {ks}.event_ids SET idx = ? WHERE log = ? AND event_id = ? \
                     IF idx = ?"
                ),
                Kind::Lwt,
            )
            .await?,
            checkpoint_insert: p(
                format!(
                    "INSERT INTO {ks}.checkpoints (log, size, root, note, created_at_ms) \
                     VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
                ),
                Kind::Lwt,
            )
            .await?,
            checkpoint_all: p(
                format!(
                    "SELECT size, root, note, created_at_ms FROM {ks}.checkpoints \
                     WHERE log = ? ORDER BY size ASC"
                ),
                Kind::Read,
            )
            .await?,
        })
    }
}

/// The outcome of a lightweight transaction: whether it applied, and the value the row
/// held in `column` (ScyllaDB returns the old row either way; Cassandra when refused).
fn lwt_outcome(
    result: QueryResult,
    column: &str,
    operation: &'static str,
) -> Result<(bool, Option<i64>), Error> {
    let rows = result.into_rows_result().map_err(scylla_error(operation))?;
    let position = rows.column_specs().get_by_name(column).map(|(at, _)| at);
    let row: Row = rows.single_row().map_err(scylla_error(operation))?;
    let Some(Some(CqlValue::Boolean(applied))) = row.columns.first() else {
        return Err(Error::Scylla {
            operation,
            message: "the conditional write returned no [applied] column".to_owned(),
        });
    };
    let value = position
        .and_then(|at| row.columns.get(at))
        .and_then(Option::as_ref)
        .and_then(CqlValue::as_bigint);
    Ok((*applied, value))
}

/// The ScyllaDB store for one log. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    keyspace: String,
    log: String,
    statements: Statements,
}

impl fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.inner.keyspace)
            .field("log", &self.inner.log)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects to the cluster, checks that the keyspace holds the tables of
    /// `infra/cql/audit.cql`, and prepares every statement. Creates nothing: the first
    /// append creates the log's head row.
    pub async fn connect(config: &ScyllaConfig) -> Result<Self, Error> {
        config.validate()?;
        let session = open_session(config).await?;
        check_schema(&session, &config.keyspace).await?;
        let statements =
            Statements::prepare(&session, &config.keyspace, config.consistency).await?;
        tracing::info!(
            keyspace = %config.keyspace,
            log = %config.log,
            consistency = %config.consistency,
            "Connected to the ScyllaDB audit store."
        );
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                keyspace: config.keyspace.clone(),
                log: config.log.clone(),
                statements,
            }),
        })
    }

    /// Creates the keyspace and tables of `infra/cql/audit.cql` if absent, in the
    /// configured keyspace and with `replication_factor` replicas in every datacenter
    /// (the file says 3). Meant for tests and development clusters; production applies
    /// the file with cqlsh. An existing keyspace keeps its replication.
    pub async fn create_schema(
        config: &ScyllaConfig,
        replication_factor: u32,
    ) -> Result<(), Error> {
        config.validate()?;
        if replication_factor == 0 {
            return Err(Error::Config {
                field: "replication_factor",
                reason: "at least one replica is needed".to_owned(),
            });
        }
        let session = open_session(config).await?;
        for statement in schema_statements(&config.keyspace, replication_factor) {
            // The driver waits for schema agreement after each DDL statement.
            session
                .query_unpaged(statement, ())
                .await
                .map_err(scylla_error("create the schema"))?;
        }
        tracing::info!(
            keyspace = %config.keyspace,
            replication_factor,
            "Created the ScyllaDB audit schema."
        );
        Ok(())
    }

    /// The keyspace this store reads and writes.
    pub fn keyspace(&self) -> &str {
        &self.inner.keyspace
    }

    /// The name of the log this store reads and writes.
    pub fn log(&self) -> &str {
        &self.inner.log
    }

    /// Test hook: every write of [`AuditStore::append`] except the last, which moves the
    /// head, as if the writer crashed just before its commit point.
    #[doc(hidden)]
    pub async fn append_rows_without_head(
        &self,
        expected_size: u64,
        rows: Vec<StoredEvent>,
    ) -> Result<(), Error> {
        self.write_rows(expected_size, &rows).await
    }

    fn log_name(&self) -> &str {
        &self.inner.log
    }

    fn statements(&self) -> &Statements {
        &self.inner.statements
    }

    fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The head row's size, `None` before the first append.
    async fn head(&self, statement: &PreparedStatement) -> Result<Option<u64>, Error> {
        const OPERATION: &str = "read the log size";
        let result = self
            .session()
            .execute_unpaged(statement, (self.log_name(),))
            .await
            .map_err(scylla_error(OPERATION))?
            .into_rows_result()
            .map_err(scylla_error(OPERATION))?;
        let size = result
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(scylla_error(OPERATION))?
            .and_then(|(size,)| size);
        size.map(|size| {
            u64::try_from(size).map_err(|_| Error::MalformedRow {
                index: size,
                reason: "the log head is negative",
            })
        })
        .transpose()
    }

    /// The log's size: its committed head, 0 before the first append.
    async fn committed_size(&self) -> Result<u64, Error> {
        Ok(self.head(&self.statements().head).await?.unwrap_or(0))
    }

    /// The `events` row at `index`, whatever the head says.
    async fn row_at(&self, index: u64) -> Result<Option<StoredEvent>, Error> {
        const OPERATION: &str = "read an event";
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().event_at,
                (
                    self.log_name(),
                    to_i64(bucket_of(index), "index")?,
                    to_i64(index, "index")?,
                ),
            )
            .await
            .map_err(scylla_error(OPERATION))?
            .into_rows_result()
            .map_err(scylla_error(OPERATION))?;
        result
            .maybe_first_row::<EventColumns>()
            .map_err(scylla_error(OPERATION))?
            .map(into_stored)
            .transpose()
    }

    /// The event id of the `events` row at `index`, whatever the head says.
    async fn event_id_at(&self, index: u64) -> Result<Option<Uuid>, Error> {
        const OPERATION: &str = "read an event id";
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().event_id_at,
                (
                    self.log_name(),
                    to_i64(bucket_of(index), "index")?,
                    to_i64(index, "index")?,
                ),
            )
            .await
            .map_err(scylla_error(OPERATION))?
            .into_rows_result()
            .map_err(scylla_error(OPERATION))?;
        Ok(result
            .maybe_first_row::<(Option<Uuid>,)>()
            .map_err(scylla_error(OPERATION))?
            .and_then(|(id,)| id))
    }

    /// The index `event_ids` records for `event_id`, if any. Not trusted on its own: see
    /// [`ScyllaStore::committed_index`].
    async fn recorded_index(&self, event_id: Uuid) -> Result<Option<u64>, Error> {
        const OPERATION: &str = "look up an event id";
        let result = self
            .session()
            .execute_unpaged(&self.statements().id_lookup, (self.log_name(), event_id))
            .await
            .map_err(scylla_error(OPERATION))?
            .into_rows_result()
            .map_err(scylla_error(OPERATION))?;
        result
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(scylla_error(OPERATION))?
            .and_then(|(idx,)| idx)
            .map(index_from)
            .transpose()
    }

    /// The committed index holding `event_id`: the recorded index, if it is below `head`
    /// and the row there carries that id. An interrupted append can leave an `event_ids`
    /// entry pointing past the head, or at an index a later append filled with another
    /// event; both mean "not in the log".
    async fn committed_index(&self, event_id: Uuid, head: u64) -> Result<Option<u64>, Error> {
        match self.recorded_index(event_id).await? {
            Some(index) if index < head => {
                Ok((self.event_id_at(index).await? == Some(event_id)).then_some(index))
            }
            _ => Ok(None),
        }
    }

    /// Reads the rows `from <= index < to` bucket by bucket, keeping those `keep` accepts.
    async fn scan(
        &self,
        from: u64,
        to: u64,
        mut keep: impl FnMut(&StoredEvent) -> bool + Send,
    ) -> Result<Vec<StoredEvent>, Error> {
        const OPERATION: &str = "read events";
        let mut kept = Vec::new();
        for (bucket, first, end) in bucket_ranges(from, to) {
            let mut rows = self
                .session()
                .execute_iter(
                    self.statements().event_range.clone(),
                    (
                        self.log_name(),
                        to_i64(bucket, "index")?,
                        to_i64(first, "from")?,
                        to_i64(end, "to")?,
                    ),
                )
                .await
                .map_err(scylla_error(OPERATION))?
                .rows_stream::<EventColumns>()
                .map_err(scylla_error(OPERATION))?;
            while let Some(columns) = rows.try_next().await.map_err(scylla_error(OPERATION))? {
                let row = into_stored(columns)?;
                if keep(&row) {
                    kept.push(row);
                }
            }
        }
        Ok(kept)
    }

    /// Rows of one tenant and subject matching `query`, oldest first, through
    /// `events_by_subject`. Each index entry is checked against the `events` row it names
    /// (the authority), which also drops entries an interrupted append left behind.
    async fn query_by_subject(
        &self,
        tenant: &str,
        subject: &str,
        query: &Query,
        head: u64,
    ) -> Result<Vec<StoredEvent>, Error> {
        const OPERATION: &str = "query events by subject";
        let lowest = query.from_ms.unwrap_or(i64::MIN);
        // `to_ms` is exclusive; the statement's upper bound is inclusive.
        let highest = match query.to_ms.map(|to| to.checked_sub(1)) {
            None => i64::MAX,
            Some(Some(highest)) => highest,
            Some(None) => return Ok(Vec::new()),
        };
        if lowest > highest {
            return Ok(Vec::new());
        }
        let limit = query.limit.map_or(usize::MAX, |limit| {
            usize::try_from(limit).unwrap_or(usize::MAX)
        });
        let entries = self
            .session()
            .execute_iter(
                self.statements().subject_range.clone(),
                (self.log_name(), tenant, subject, lowest, highest),
            )
            .await
            .map_err(scylla_error(OPERATION))?
            .rows_stream::<(i64, Uuid, String)>()
            .map_err(scylla_error(OPERATION))?;
        let rows =
            entries
                .map_err(scylla_error(OPERATION))
                .try_filter_map(|(idx, event_id, operation)| {
                    future::ready(index_from(idx).map(|index| {
                        let wanted = index < head
                            && query
                                .operation
                                .as_ref()
                                .is_none_or(|wanted| *wanted == operation);
                        wanted.then_some((index, event_id))
                    }))
                })
                .map_ok(|(index, event_id)| async move {
                    Ok::<_, Error>(self.row_at(index).await?.filter(|row| {
                        row.record.event_id == event_id && query.matches(&row.record)
                    }))
                })
                .try_buffered(MAX_IN_FLIGHT);
        let mut rows = std::pin::pin!(rows);
        let mut found = Vec::new();
        while found.len() < limit {
            match rows.try_next().await? {
                Some(Some(row)) => found.push(row),
                Some(None) => {}
                None => break,
            }
        }
        Ok(found)
    }

    /// Writes one row to `events` and `events_by_subject`.
    async fn write_row(&self, row: &StoredEvent) -> Result<(), Error> {
        const OPERATION: &str = "append an event";
        let idx = to_i64(row.index, "index")?;
        let bucket = to_i64(bucket_of(row.index), "index")?;
        let r = &row.record;
        let log = self.log_name();
        let statements = self.statements();
        let event = self.session().execute_unpaged(
            &statements.event_insert,
            (
                log,
                bucket,
                idx,
                r.event_id,
                r.occurred_at_ms,
                r.tenant.as_str(),
                r.subject.as_str(),
                r.operation.as_str(),
                row.leaf_hash.as_slice(),
                row.root_after.as_slice(),
                r.value.as_slice(),
            ),
        );
        let by_subject = self.session().execute_unpaged(
            &statements.subject_insert,
            (
                log,
                r.tenant.as_str(),
                r.subject.as_str(),
                r.occurred_at_ms,
                idx,
                r.event_id,
                r.operation.as_str(),
                row.leaf_hash.as_slice(),
                row.root_after.as_slice(),
                r.value.as_slice(),
            ),
        );
        future::try_join(event, by_subject)
            .await
            .map_err(scylla_error(OPERATION))?;
        Ok(())
    }

    /// Records `row`'s event id at its index in `event_ids`, during an append starting at
    /// `expected_size` (the committed head).
    async fn record_id(&self, row: &StoredEvent, expected_size: u64) -> Result<(), Error> {
        const OPERATION: &str = "record an event id";
        let event_id = row.record.event_id;
        let idx = to_i64(row.index, "index")?;
        let statements = self.statements();
        let result = self
            .session()
            .execute_unpaged(&statements.id_insert, (self.log_name(), event_id, idx))
            .await
            .map_err(scylla_error(OPERATION))?;
        let (applied, recorded) = lwt_outcome(result, "idx", OPERATION)?;
        if applied {
            return Ok(());
        }
        let Some(recorded) = recorded else {
            return Err(Error::Scylla {
                operation: OPERATION,
                message: format!("event {event_id} is recorded without an index"),
            });
        };
        if recorded == idx {
            // An interrupted append put this event at this same index.
            return Ok(());
        }
        let recorded_index = index_from(recorded)?;
        if recorded_index < expected_size
            && self.event_id_at(recorded_index).await? == Some(event_id)
        {
            return Err(Error::Scylla {
                operation: OPERATION,
                message: format!("event {event_id} is already in the log at index {recorded}"),
            });
        }
        // The entry names a row an interrupted append left behind (past the head, or
        // since overwritten by another event): point it at this row.
        tracing::warn!(
            event_id = %event_id,
            stale_index = recorded,
            index = idx,
            "An event id named a row left by an interrupted append; pointing it at the new row."
        );
        let result = self
            .session()
            .execute_unpaged(
                &statements.id_repoint,
                (idx, self.log_name(), event_id, recorded),
            )
            .await
            .map_err(scylla_error(OPERATION))?;
        let (applied, _) = lwt_outcome(result, "idx", OPERATION)?;
        if applied {
            Ok(())
        } else {
            Err(Error::Scylla {
                operation: OPERATION,
                message: format!(
                    "event {event_id} was recorded concurrently: another writer is appending to the same log"
                ),
            })
        }
    }

    /// Every write of an append but the commit: checks the head, writes the rows, then
    /// records their ids.
    async fn write_rows(&self, expected_size: u64, rows: &[StoredEvent]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut ids = HashSet::with_capacity(rows.len());
        for (offset, row) in (0_u64..).zip(rows) {
            let want = expected_size.saturating_add(offset);
            if row.index != want {
                return Err(Error::Conflict {
                    expected: want,
                    actual: row.index,
                });
            }
            if !ids.insert(row.record.event_id) {
                return Err(Error::Scylla {
                    operation: "append events",
                    message: format!("event {} appears twice in one append", row.record.event_id),
                });
            }
        }
        let head = self.head(&self.statements().head).await?;
        let actual = head.unwrap_or(0);
        if actual != expected_size {
            return Err(Error::Conflict {
                expected: expected_size,
                actual,
            });
        }
        if head.is_none() {
            // First append to this log: create its head at 0 for the commit to compare
            // against. Refused harmlessly if another writer got there first.
            self.session()
                .execute_unpaged(&self.statements().head_create, (self.log_name(),))
                .await
                .map_err(scylla_error("create the log head"))?;
        }
        // The futures are built before they are streamed: a closure over borrowed rows
        // inside the stream would make the append future's `Send` proof fail.
        let writes: Vec<_> = rows.iter().map(|row| self.write_row(row)).collect();
        stream::iter(writes)
            .buffer_unordered(MAX_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        let records: Vec<_> = rows
            .iter()
            .map(|row| self.record_id(row, expected_size))
            .collect();
        stream::iter(records)
            .buffer_unordered(MAX_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// The commit point: moves the head from `expected_size` to `new_size`, or fails with
    /// [`Error::Conflict`] naming the size another writer left.
    async fn advance_head(&self, expected_size: u64, new_size: u64) -> Result<(), Error> {
        const OPERATION: &str = "move the log head";
        let result = self
            .session()
            .execute_unpaged(
                &self.statements().head_advance,
                (
                    to_i64(new_size, "size")?,
                    self.log_name(),
                    to_i64(expected_size, "size")?,
                ),
            )
            .await
            .map_err(scylla_error(OPERATION))?;
        let (applied, current) = lwt_outcome(result, "size", OPERATION)?;
        if applied {
            return Ok(());
        }
        let actual = match current.map(u64::try_from) {
            Some(Ok(actual)) => actual,
            _ => self
                .head(&self.statements().head_serial)
                .await?
                .unwrap_or(0),
        };
        Err(Error::Conflict {
            expected: expected_size,
            actual,
        })
    }
}

impl AuditStore for ScyllaStore {
    async fn size(&self) -> Result<u64, Error> {
        self.committed_size().await
    }

    async fn existing_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, Error> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let head = self.committed_size().await?;
        let unique: HashSet<Uuid> = ids.iter().copied().collect();
        stream::iter(unique)
            .map(|id| async move {
                Ok::<_, Error>(self.committed_index(id, head).await?.map(|_| id))
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok::<_, Error>(found) })
            .try_collect()
            .await
    }

    async fn append(&self, expected_size: u64, rows: Vec<StoredEvent>) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let added = u64::try_from(rows.len()).map_err(|_| Error::Config {
            field: "rows",
            reason: "too many rows in one append".to_owned(),
        })?;
        self.write_rows(expected_size, &rows).await?;
        self.advance_head(expected_size, expected_size.saturating_add(added))
            .await
    }

    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<StoredEvent>, Error> {
        let to = to.min(self.committed_size().await?);
        self.scan(from, to, |_| true).await
    }

    async fn find(&self, event_id: Uuid) -> Result<Option<StoredEvent>, Error> {
        let head = self.committed_size().await?;
        match self.committed_index(event_id, head).await? {
            Some(index) => Ok(self
                .row_at(index)
                .await?
                .filter(|row| row.record.event_id == event_id)),
            None => Ok(None),
        }
    }

    async fn query(&self, query: &Query) -> Result<Vec<StoredEvent>, Error> {
        if query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let head = self.committed_size().await?;
        if let (Some(tenant), Some(subject)) = (&query.tenant, &query.subject) {
            return self.query_by_subject(tenant, subject, query, head).await;
        }
        // No partition to go to: walk the whole log, bucket by bucket.
        let mut rows = self.scan(0, head, |row| query.matches(&row.record)).await?;
        rows.sort_by_key(|row| (row.record.occurred_at_ms, row.index));
        if let Some(limit) = query.limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(rows)
    }

    async fn query_index_problems(&self, _limit: u64) -> Result<Option<Vec<u64>>, Error> {
        // `events_by_subject` is not compared with the log here: that needs a scan of
        // every subject partition. Reported as not checked, never as clean.
        Ok(None)
    }

    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), Error> {
        // `IF NOT EXISTS`: a checkpoint already stored for this size stays as it is.
        self.session()
            .execute_unpaged(
                &self.statements().checkpoint_insert,
                (
                    self.log_name(),
                    to_i64(checkpoint.size, "size")?,
                    checkpoint.root.as_slice(),
                    checkpoint.note.as_str(),
                    checkpoint.created_at_ms,
                ),
            )
            .await
            .map_err(scylla_error("store a checkpoint"))?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, Error> {
        const OPERATION: &str = "read checkpoints";
        let mut rows = self
            .session()
            .execute_iter(self.statements().checkpoint_all.clone(), (self.log_name(),))
            .await
            .map_err(scylla_error(OPERATION))?
            .rows_stream::<(i64, Vec<u8>, String, i64)>()
            .map_err(scylla_error(OPERATION))?;
        let mut checkpoints = Vec::new();
        while let Some((size, root, note, created_at_ms)) =
            rows.try_next().await.map_err(scylla_error(OPERATION))?
        {
            checkpoints.push(StoredCheckpoint {
                size: u64::try_from(size).map_err(|_| Error::MalformedRow {
                    index: size,
                    reason: "checkpoint size is negative",
                })?,
                root: hash_column(size, &root, "checkpoint root is not 32 bytes")?,
                note,
                created_at_ms,
            });
        }
        Ok(checkpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_ranges_at_their_edges() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(BUCKET_ROWS - 1), 0);
        assert_eq!(bucket_of(BUCKET_ROWS), 1);
        assert_eq!(bucket_of(3 * BUCKET_ROWS + 7), 3);

        assert_eq!(bucket_ranges(5, 5).count(), 0);
        assert_eq!(bucket_ranges(9, 5).count(), 0);
        assert_eq!(bucket_ranges(3, 10).collect::<Vec<_>>(), vec![(0, 3, 10)]);
        assert_eq!(
            bucket_ranges(BUCKET_ROWS - 2, 2 * BUCKET_ROWS + 1).collect::<Vec<_>>(),
            vec![
                (0, BUCKET_ROWS - 2, BUCKET_ROWS),
                (1, BUCKET_ROWS, 2 * BUCKET_ROWS),
                (2, 2 * BUCKET_ROWS, 2 * BUCKET_ROWS + 1),
            ]
        );
        // Exactly one whole bucket.
        assert_eq!(
            bucket_ranges(BUCKET_ROWS, 2 * BUCKET_ROWS).collect::<Vec<_>>(),
            vec![(1, BUCKET_ROWS, 2 * BUCKET_ROWS)]
        );
    }

    #[test]
    fn cql_splits_on_semicolons_outside_comments_and_quotes() {
        let text = "-- a comment; with a semicolon\n\
                    CREATE TABLE a (x int); // trailing; comment\n\
                    INSERT INTO a (s) VALUES ('semi;colon''s');\n\
                    /* block; comment */ SELECT \"odd;name\" FROM a\n\
                    ;;  \n";
        assert_eq!(
            split_cql(text),
            vec![
                "CREATE TABLE a (x int)",
                "INSERT INTO a (s) VALUES ('semi;colon''s')",
                "SELECT \"odd;name\" FROM a",
            ]
        );
        assert_eq!(split_cql("SELECT 1"), vec!["SELECT 1"]);
        assert!(split_cql("-- only a comment\n").is_empty());
    }

    #[test]
    fn schema_file_creates_every_table_and_substitutes() {
        assert_eq!(SCHEMA_CQL.matches(SCHEMA_REPLICATION).count(), 1);
        let statements = schema_statements("audit_test", 1);
        assert_eq!(statements.len(), 1 + TABLES.len());
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS audit_test"));
        assert!(statements[0].contains("'NetworkTopologyStrategy', 'replication_factor': 1}"));
        for table in TABLES {
            let create = format!("CREATE TABLE IF NOT EXISTS audit_test.{table} (");
            assert!(
                statements.iter().any(|s| s.starts_with(&create)),
                "no {create}"
            );
        }
        assert!(statements.iter().all(|s| !s.contains(SCHEMA_KEYSPACE)));
        assert!(statements.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(is_plain_identifier("zenvelope_audit"));
        assert!(is_plain_identifier("a1"));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier("1a"));
        assert!(!is_plain_identifier("_a"));
        assert!(!is_plain_identifier("Audit"));
        assert!(!is_plain_identifier("a; DROP KEYSPACE b"));
        assert!(!is_plain_identifier(&"a".repeat(MAX_KEYSPACE_LEN + 1)));
    }

    #[test]
    fn reads_never_use_each_quorum() {
        for level in ScyllaConsistency::VARIANTS {
            assert_ne!(level.for_reads(), Consistency::EachQuorum);
        }
        assert_eq!(
            ScyllaConsistency::EachQuorum.for_writes(),
            Consistency::EachQuorum
        );
        assert_eq!(
            ScyllaConsistency::default().for_reads(),
            Consistency::LocalQuorum
        );
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let columns: EventColumns = (
            4,
            Uuid::nil(),
            0,
            String::new(),
            String::new(),
            String::new(),
            vec![0; 31],
            vec![0; 32],
            Vec::new(),
        );
        assert!(matches!(
            into_stored(columns),
            Err(Error::MalformedRow {
                index: 4,
                reason: "leaf_hash is not 32 bytes"
            })
        ));
    }
}
