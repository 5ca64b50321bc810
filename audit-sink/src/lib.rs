//! The audit sink: consumes the audit topic into an append-only, tamper-evident log.
//!
//! - [`store`]: where the log lives (embedded SQLite by default, ScyllaDB in production).
//! - [`merkle`]: the RFC 6962 Merkle tree over the events, with inclusion and consistency
//!   proofs.
//! - [`note`]: signed checkpoints in the C2SP tlog-checkpoint / signed-note format.
//! - [`verify`]: recompute and check the log; inclusion proofs.
//! - [`cross_check`]: re-read the audit topic and confirm the store holds exactly its
//!   events.

pub mod cross_check;
mod error;
pub mod merkle;
pub mod note;
pub mod service;
pub mod sink;
pub mod store;
pub mod telemetry;
pub mod verify;

pub use error::Error;
