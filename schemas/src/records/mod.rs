//! Rust types for the plaintext and control-plane records, and their Avro datum codec.
//!
//! Each type derives its Avro schema; a test checks it equals the `.avsc` file. Datums
//! are always written with the `.avsc` schema (what the registry holds) and read by
//! resolving the writer's schema to it, so data written under an older compatible schema
//! reads with the defaults filled in.

mod audit;
mod dead_letter;
mod key_directory;
pub(crate) mod logical;
mod request;
mod result;
mod usage;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{AvroSchema, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use audit::{
    AuditEvent, AuditOperation, Disclosure, Outcome, PurposeOfUse, RECEIPT_DIGEST_LABEL,
    ReceiptCheck, ReceiptSignature, TokenCount,
};
pub use dead_letter::DeadLetter;
pub use key_directory::{
    ATTESTATION_BINDING_LABEL, KeyAlgorithm, KeyDirectoryEntry, KeyPurpose, KeyStatus,
};
pub use request::{
    AnalysisInput, AnalysisRequest, BinaryInput, ModelPreferences, RequestLimits, TextInput,
};
pub use result::{AnalysisResult, FinishReason, TokenUsage};
pub use usage::{Rejection, UsageCounter};

use crate::catalog::SchemaName;
use crate::error::Error;

mod sealed {
    pub trait Sealed {}
}

/// A record type of this crate: serde-mapped, with a derived Avro schema equal to the
/// `.avsc` file named by [`Record::SCHEMA`]. Sealed: the catalog is closed.
pub trait Record: Serialize + DeserializeOwned + AvroSchema + sealed::Sealed {
    /// The schema this type maps.
    const SCHEMA: SchemaName;
}

macro_rules! record {
    ($ty:ty, $name:ident) => {
        impl sealed::Sealed for $ty {}
        impl Record for $ty {
            const SCHEMA: SchemaName = SchemaName::$name;
        }
    };
}

record!(AnalysisRequest, AnalysisRequest);
record!(AnalysisResult, AnalysisResult);
record!(AuditEvent, AuditEvent);
record!(DeadLetter, DeadLetter);
record!(UsageCounter, UsageCounter);
record!(Rejection, Rejection);
record!(KeyDirectoryEntry, KeyDirectoryEntry);

/// Writes `value` as a bare Avro datum under `schema` (its `.avsc` schema).
pub(crate) fn write_datum<T: Record>(schema: &Schema, value: &T) -> Result<Vec<u8>, Error> {
    let encode = || Error::Encode {
        schema: T::SCHEMA.full_name(),
    };
    GenericDatumWriter::builder(schema)
        .build()
        .map_err(|_| encode())?
        .write_ser_to_vec(value)
        .map_err(|_| encode())
}

/// Reads a bare Avro datum written under `writer`, resolved to `reader` (the `.avsc`
/// schema of `T`). The whole input must be one datum.
pub(crate) fn read_datum<T: Record>(
    writer: &Schema,
    reader: &Schema,
    datum: &[u8],
) -> Result<T, Error> {
    let schema = T::SCHEMA.full_name();
    let decode = || Error::Decode { schema };
    let mut rest = datum;
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .map_err(|_| decode())?
        .read_value(&mut rest)
        .map_err(|_| decode())?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes {
            schema,
            len: rest.len(),
        });
    }
    apache_avro::from_value(&value).map_err(|_| decode())
}
