//! Avro schemas, Rust types, Confluent framing and names for zenvelope.
//!
//! - `schemas/avro/*.avsc` are the source of truth, compiled in with `include_str!`
//!   ([`SchemaName::avsc`]): the sealed [`Envelope`](zenvelope_envelope::Envelope), the
//!   plaintexts inside it ([`AnalysisRequest`], [`AnalysisResult`]) and the control-plane
//!   records ([`AuditEvent`], [`DeadLetter`], [`KeyDirectoryEntry`]).
//! - The Rust types derive their Avro schemas; tests check those equal the files, that
//!   `apache-avro` and the envelope crate's hand-written codec agree byte for byte, and
//!   that every schema still reads data written with its released snapshot
//!   (`schemas/avro/compat/v1/`, checked with [`compat::check_backward`]).
//! - [`SchemaCodec`] writes and reads Confluent wire framing (magic byte 0, 4-byte
//!   big-endian schema id, Avro datum; see [`framing`]). With no registry URL configured
//!   it uses the [`OfflineCatalog`]'s fixed ids; with one, it registers and resolves
//!   schemas through `schema_registry_converter` (module `registry`, feature `registry`,
//!   on by default).
//! - [`names`] defines every topic, Kafka header key, registry subject and media type once.
//!
//! Without the `registry` feature the crate is sans-io.
//!
//! ```
//! use zenvelope_schemas::*;
//!
//! # async fn demo() -> Result<(), Error> {
//! let codec = SchemaCodec::offline()?;
//! let event = DeadLetter {
//!     original_topic: names::topic::REQUESTS.to_owned(),
//!     original_partition: 3,
//!     original_offset: 42,
//!     original_key: None,
//!     original_value: vec![0, 0, 0, 0, 1, 2],
//!     reason_code: "untrusted_signer".to_owned(),
//!     reason_detail: "The envelope is signed by a key that is not trusted.".to_owned(),
//!     failed_at_ms: 1_763_000_000_000,
//!     redrive_count: 0,
//! };
//! let framed = codec.encode(Subject::DlqValue, &event).await?;
//! assert_eq!(&framed[..5], &[0, 0, 0, 0, 5]); // magic byte, offline id 5
//! assert_eq!(codec.decode::<DeadLetter>(&framed).await?, event);
//! # Ok(()) }
//! # block_on(demo()).expect("demo");
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
//! # }
//! ```
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

/// The namespace literal, so that `concat!` can build full names from it.
macro_rules! namespace {
    () => {
        "io.zenvelope.v1"
    };
}

/// Prefixes a record name with the namespace at compile time.
macro_rules! full_name {
    ($name:literal) => {
        concat!(namespace!(), ".", $name)
    };
}

pub mod catalog;
mod codec;
pub mod compat;
mod error;
pub mod framing;
pub mod names;
mod records;
#[cfg(feature = "registry")]
pub mod registry;

pub use catalog::{NAMESPACE, OfflineCatalog, SchemaId, SchemaName};
pub use codec::SchemaCodec;
pub use error::Error;
pub use names::{Subject, Topic};
pub use records::{
    ATTESTATION_BINDING_LABEL, AnalysisInput, AnalysisRequest, AnalysisResult, AuditEvent,
    AuditOperation, BinaryInput, DeadLetter, Disclosure, FinishReason, KeyAlgorithm,
    KeyDirectoryEntry, KeyPurpose, KeyStatus, ModelPreferences, Outcome, PurposeOfUse,
    RECEIPT_DIGEST_LABEL, ReceiptCheck, ReceiptSignature, Record, Rejection, RequestLimits,
    TextInput, TokenCount, TokenUsage, UsageCounter,
};
