//! The schemas compiled into this crate and the offline catalog of fixed schema ids.
//!
//! `schemas/avro/*.avsc` are the source of truth; they are embedded with `include_str!`.
//! Without a schema registry, every framed message carries the fixed id below. The ids
//! are part of the wire format: never renumber one, only append.
//!
//! | id | schema | file |
//! |---:|---|---|
//! | 1 | `io.zenvelope.v1.Envelope` | `envelope.avsc` |
//! | 2 | `io.zenvelope.v1.AnalysisRequest` | `analysis-request.avsc` |
//! | 3 | `io.zenvelope.v1.AnalysisResult` | `analysis-result.avsc` |
//! | 4 | `io.zenvelope.v1.AuditEvent` | `audit-event.avsc` |
//! | 5 | `io.zenvelope.v1.DeadLetter` | `dead-letter.avsc` |
//! | 6 | `io.zenvelope.v1.KeyDirectoryEntry` | `key-directory-entry.avsc` |
//! | 7 | `io.zenvelope.v1.UsageCounter` | `usage-counter.avsc` |
//! | 8 | `io.zenvelope.v1.Rejection` | `rejection.avsc` |

use core::fmt;
use std::sync::Arc;

use apache_avro::Schema;

use crate::error::Error;

/// The Avro namespace of every zenvelope v1 schema.
pub const NAMESPACE: &str = namespace!();

/// One of the record schemas in `schemas/avro`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SchemaName {
    /// The sealed envelope (`envelope.avsc`), encoded by `zenvelope-envelope`'s own codec.
    Envelope,
    /// Plaintext of a request (`analysis-request.avsc`).
    AnalysisRequest,
    /// Plaintext of a result (`analysis-result.avsc`).
    AnalysisResult,
    /// An audit event (`audit-event.avsc`).
    AuditEvent,
    /// A dead letter (`dead-letter.avsc`).
    DeadLetter,
    /// A key directory entry (`key-directory-entry.avsc`).
    KeyDirectoryEntry,
    /// A partial usage counter (`usage-counter.avsc`).
    UsageCounter,
    /// A rejection notice (`rejection.avsc`).
    Rejection,
}

impl SchemaName {
    /// Every schema, in offline-id order.
    pub const ALL: &'static [SchemaName] = &[
        SchemaName::Envelope,
        SchemaName::AnalysisRequest,
        SchemaName::AnalysisResult,
        SchemaName::AuditEvent,
        SchemaName::DeadLetter,
        SchemaName::KeyDirectoryEntry,
        SchemaName::UsageCounter,
        SchemaName::Rejection,
    ];

    /// The fixed schema id used when no registry is configured (see the module table).
    pub const fn offline_id(self) -> SchemaId {
        SchemaId(match self {
            SchemaName::Envelope => 1,
            SchemaName::AnalysisRequest => 2,
            SchemaName::AnalysisResult => 3,
            SchemaName::AuditEvent => 4,
            SchemaName::DeadLetter => 5,
            SchemaName::KeyDirectoryEntry => 6,
            SchemaName::UsageCounter => 7,
            SchemaName::Rejection => 8,
        })
    }

    /// Looks a schema up by its fixed offline id.
    pub fn from_offline_id(id: SchemaId) -> Option<SchemaName> {
        SchemaName::ALL
            .iter()
            .copied()
            .find(|s| s.offline_id() == id)
    }

    /// The record's full name, e.g. `io.zenvelope.v1.Envelope`.
    pub const fn full_name(self) -> &'static str {
        match self {
            SchemaName::Envelope => full_name!("Envelope"),
            SchemaName::AnalysisRequest => full_name!("AnalysisRequest"),
            SchemaName::AnalysisResult => full_name!("AnalysisResult"),
            SchemaName::AuditEvent => full_name!("AuditEvent"),
            SchemaName::DeadLetter => full_name!("DeadLetter"),
            SchemaName::KeyDirectoryEntry => full_name!("KeyDirectoryEntry"),
            SchemaName::UsageCounter => full_name!("UsageCounter"),
            SchemaName::Rejection => full_name!("Rejection"),
        }
    }

    /// Looks a schema up by its record's full name.
    pub fn from_full_name(name: &str) -> Option<SchemaName> {
        SchemaName::ALL
            .iter()
            .copied()
            .find(|s| s.full_name() == name)
    }

    /// The file under `schemas/avro` this schema comes from.
    pub const fn file_name(self) -> &'static str {
        match self {
            SchemaName::Envelope => "envelope.avsc",
            SchemaName::AnalysisRequest => "analysis-request.avsc",
            SchemaName::AnalysisResult => "analysis-result.avsc",
            SchemaName::AuditEvent => "audit-event.avsc",
            SchemaName::DeadLetter => "dead-letter.avsc",
            SchemaName::KeyDirectoryEntry => "key-directory-entry.avsc",
            SchemaName::UsageCounter => "usage-counter.avsc",
            SchemaName::Rejection => "rejection.avsc",
        }
    }

    /// The schema's JSON text, exactly as in the `.avsc` file.
    pub const fn avsc(self) -> &'static str {
        match self {
            SchemaName::Envelope => include_str!("../avro/envelope.avsc"),
            SchemaName::AnalysisRequest => include_str!("../avro/analysis-request.avsc"),
            SchemaName::AnalysisResult => include_str!("../avro/analysis-result.avsc"),
            SchemaName::AuditEvent => include_str!("../avro/audit-event.avsc"),
            SchemaName::DeadLetter => include_str!("../avro/dead-letter.avsc"),
            SchemaName::KeyDirectoryEntry => include_str!("../avro/key-directory-entry.avsc"),
            SchemaName::UsageCounter => include_str!("../avro/usage-counter.avsc"),
            SchemaName::Rejection => include_str!("../avro/rejection.avsc"),
        }
    }

    /// Parses [`Self::avsc`].
    pub fn parse(self) -> Result<Schema, Error> {
        Schema::parse_str(self.avsc()).map_err(|e| Error::EmbeddedSchema {
            file: self.file_name(),
            source: Box::new(e),
        })
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full_name())
    }
}

/// A Confluent schema id: a registry id, or a fixed id from the offline catalog.
///
/// Confluent ids are Java `int`s, so they are at most `i32::MAX`; the envelope header
/// stores one in an Avro `int` ([`TryFrom<i32>`] and [`SchemaId::to_header_field`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(u32);

impl SchemaId {
    /// Wraps a raw id, as read from a frame or returned by a registry.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The raw id.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The id as the envelope header's `schema_id` (an Avro `int`).
    pub fn to_header_field(self) -> Result<i32, Error> {
        i32::try_from(self.0).map_err(|_| Error::SchemaIdOutOfRange(i64::from(self.0)))
    }
}

impl TryFrom<i32> for SchemaId {
    type Error = Error;

    /// Reads the envelope header's `schema_id`; negative ids are rejected.
    fn try_from(id: i32) -> Result<Self, Error> {
        u32::try_from(id)
            .map(SchemaId)
            .map_err(|_| Error::SchemaIdOutOfRange(i64::from(id)))
    }
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The schemas compiled into this crate, parsed once, with their fixed offline ids.
///
/// This is what frames and resolves messages when no registry URL is configured, and the
/// source of reader schemas when one is.
#[derive(Clone, Debug)]
pub struct OfflineCatalog {
    /// Indexed by `SchemaName as usize`, which is the position in [`SchemaName::ALL`].
    schemas: Vec<Arc<Schema>>,
}

impl OfflineCatalog {
    /// Parses every embedded schema.
    pub fn new() -> Result<Self, Error> {
        let schemas = SchemaName::ALL
            .iter()
            .map(|name| name.parse().map(Arc::new))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self { schemas })
    }

    /// The parsed schema of `name`.
    pub fn schema(&self, name: SchemaName) -> &Arc<Schema> {
        // In bounds: `new` parsed every entry of `SchemaName::ALL`, which lists every
        // variant in declaration order (checked by a test).
        &self.schemas[name as usize]
    }

    /// The fixed id of `name`.
    pub fn id(&self, name: SchemaName) -> SchemaId {
        name.offline_id()
    }

    /// Resolves a fixed id, rejecting ids the catalog does not define.
    pub fn resolve(&self, id: SchemaId) -> Result<SchemaName, Error> {
        SchemaName::from_offline_id(id).ok_or(Error::UnknownSchemaId(id.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_parses_and_is_named_as_listed() {
        let catalog = OfflineCatalog::new().expect("catalog");
        for name in SchemaName::ALL {
            let schema = catalog.schema(*name);
            let Schema::Record(record) = schema.as_ref() else {
                panic!("{name} is not a record");
            };
            assert_eq!(record.name.fullname(None), name.full_name());
            assert_eq!(record.name.namespace(), Some(NAMESPACE));
            assert_eq!(SchemaName::from_full_name(name.full_name()), Some(*name));
        }
    }

    #[test]
    fn all_lists_every_variant_in_declaration_order() {
        for (i, name) in SchemaName::ALL.iter().enumerate() {
            assert_eq!(*name as usize, i);
        }
    }

    #[test]
    fn offline_ids_are_the_documented_table() {
        let table: Vec<(u32, &str)> = SchemaName::ALL
            .iter()
            .map(|n| (n.offline_id().get(), n.file_name()))
            .collect();
        assert_eq!(
            table,
            [
                (1, "envelope.avsc"),
                (2, "analysis-request.avsc"),
                (3, "analysis-result.avsc"),
                (4, "audit-event.avsc"),
                (5, "dead-letter.avsc"),
                (6, "key-directory-entry.avsc"),
                (7, "usage-counter.avsc"),
                (8, "rejection.avsc"),
            ]
        );
        let catalog = OfflineCatalog::new().expect("catalog");
        for name in SchemaName::ALL {
            assert_eq!(catalog.resolve(catalog.id(*name)).expect("known"), *name);
        }
        assert!(matches!(
            catalog.resolve(SchemaId::new(0)),
            Err(Error::UnknownSchemaId(0))
        ));
        assert!(matches!(
            catalog.resolve(SchemaId::new(9)),
            Err(Error::UnknownSchemaId(9))
        ));
    }

    #[test]
    fn schema_ids_convert_to_and_from_the_header_field() {
        assert_eq!(SchemaId::try_from(2).expect("id").get(), 2);
        assert!(matches!(
            SchemaId::try_from(-1),
            Err(Error::SchemaIdOutOfRange(-1))
        ));
        assert_eq!(SchemaId::new(42).to_header_field().expect("fits"), 42);
        assert!(matches!(
            SchemaId::new(u32::MAX).to_header_field(),
            Err(Error::SchemaIdOutOfRange(4_294_967_295))
        ));
    }
}
