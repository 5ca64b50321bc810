//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong storing, reading or checking the audit log.
///
/// Messages name files, indices, event ids and database errors; audit events carry no PHI,
/// and record bodies are never quoted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The embedded store's file could not be opened or created.
    #[error("the audit store {path} could not be opened")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement on the embedded store failed.
    #[error("the embedded audit store failed to {operation}")]
    Sqlite {
        /// What was being done.
        operation: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A ScyllaDB request failed.
    #[error("the ScyllaDB audit store failed to {operation}: {message}")]
    Scylla {
        /// What was being done.
        operation: &'static str,
        /// The driver's error, as text.
        message: String,
    },
    /// An append did not start at the log's current size: another writer appended first.
    #[error(
        "the audit log holds {actual} rows but this writer expected {expected}: another writer is appending to the same log"
    )]
    Conflict {
        /// The size the writer believed.
        expected: u64,
        /// The size the store holds.
        actual: u64,
    },
    /// A stored row is not in the shape the store writes (a column has the wrong length or
    /// type), which happens only if the store was edited by hand.
    #[error("row {index} of the audit store is malformed: {reason}")]
    MalformedRow {
        /// The row's index (or -1 when unknown).
        index: i64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A Kafka record on the audit topic is not an `AuditEvent`.
    #[error("the record is not a decodable AuditEvent")]
    Decode(#[source] zenvelope_schemas::Error),
    /// A Kafka operation failed.
    #[error("a Kafka operation failed")]
    Kafka(#[source] zenvelope_runtime::Error),
    /// The checkpoint signing or verification key is unusable.
    #[error("the checkpoint key is unusable")]
    Key(#[source] crate::note::NoteError),
    /// A file could not be read or written.
    #[error("the file {path} could not be {action}")]
    File {
        /// The file.
        path: PathBuf,
        /// "read" or "written".
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("the configuration value {field} is not valid: {reason}")]
    Config {
        /// The field, as written in the configuration.
        field: &'static str,
        /// Why it is not valid.
        reason: String,
    },
    /// The stored log is not what the sink wrote: a sink refuses to extend it.
    #[error(
        "the audit log was altered at row {index} ({reason}); run `zenvelope audit verify` before appending to it"
    )]
    Tampered {
        /// The first row found wrong.
        index: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No signed checkpoint covers this row yet (the sink signs one every few seconds).
    #[error(
        "no valid signed checkpoint covers row {index} yet; wait for the next checkpoint and try again"
    )]
    NotCovered {
        /// The row.
        index: u64,
    },
    /// The appender task has stopped (shutdown, or a fatal store error).
    #[error("the audit appender has stopped")]
    Stopped,
    /// A task running blocking store work panicked or was cancelled.
    #[error("a store task did not finish")]
    Join(#[source] tokio::task::JoinError),
}

impl Error {
    /// An [`Error::Sqlite`] for `operation`.
    pub(crate) fn sqlite(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| Error::Sqlite { operation, source }
    }
}
