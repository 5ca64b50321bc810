//! The enclave worker: `enclave-host` and `enclave-app`.
//!
//! - [`host`]: the parent-instance side. Consumes `zenvelope.requests` through
//!   `zenvelope-runtime`, forwards each sealed request to the enclave over the
//!   [`transport`], produces the sealed result, DLQ record and audit events, and stores the
//!   offset only after they are acknowledged. Runs the egress proxy ([`egress`]).
//! - [`app`]: the enclave side. Attests, releases the fleet keys through [`kms`], verifies,
//!   opens, calls the model through [`providers`] (egress only through the host), seals the
//!   answer and reports audit events without PHI.

pub mod app;
pub mod cli;
pub mod egress;
pub mod host;
pub mod kms;
pub mod providers;
pub mod transport;

/// Locks a std mutex, taking over a poisoned one: every critical section in this crate
/// leaves its data consistent, so a panic elsewhere does not make it unusable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
