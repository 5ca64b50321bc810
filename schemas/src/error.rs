//! The crate's one error type.

/// Everything that can go wrong framing, encoding, decoding or resolving a schema.
///
/// Avro encode and decode failures deliberately carry no cause: `apache-avro` puts the
/// offending value in its messages, and an [`crate::AnalysisRequest`] is PHI, so the
/// message would end up in a log. Framing, catalog and registry errors describe only ids,
/// names and lengths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One of the `.avsc` files compiled into this crate does not parse (a build defect).
    #[error("the embedded schema {file} does not parse: {source}")]
    EmbeddedSchema {
        /// The file under `schemas/avro`.
        file: &'static str,
        /// The parser's complaint (about the schema text, which holds no data).
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The input is shorter than the 5-byte Confluent header.
    #[error(
        "the message is {len} bytes long, shorter than the {header_len}-byte Confluent header",
        header_len = crate::framing::HEADER_LEN
    )]
    Truncated {
        /// Length of the input.
        len: usize,
    },
    /// The input does not start with the Confluent magic byte 0.
    #[error("the message starts with byte {0:#04x}, not the Confluent magic byte 0x00")]
    WrongMagicByte(u8),
    /// The schema id in the header is not one this catalog (or registry) knows.
    #[error("schema id {0} is not in the offline catalog")]
    UnknownSchemaId(u32),
    /// A schema id does not fit the envelope header's signed 32-bit field.
    #[error("schema id {0} is outside the range of a Confluent schema id (0 to 2147483647)")]
    SchemaIdOutOfRange(i64),
    /// The message was written with a different record type than the one asked for.
    #[error("the message holds a {found}, but a {expected} was expected")]
    WrongSchema {
        /// Full name of the record asked for.
        expected: &'static str,
        /// Full name (or type) of the record the schema id stands for.
        found: String,
    },
    /// A value was encoded for a subject that carries another record type.
    #[error("subject {subject} carries {carries}, not {given}")]
    SubjectMismatch {
        /// The subject.
        subject: &'static str,
        /// Full name of the record the subject carries.
        carries: &'static str,
        /// Full name of the record that was given.
        given: &'static str,
    },
    /// The registry's envelope schema for this id is not the one the hand-written
    /// envelope codec implements, so its bytes cannot be decoded here.
    #[error(
        "schema id {0} names an envelope schema other than the one this build's envelope codec reads"
    )]
    EnvelopeSchemaMismatch(u32),
    /// A value could not be encoded as Avro (opaque: the cause would quote the value).
    #[error("a {schema} value could not be encoded as Avro")]
    Encode {
        /// Full name of the record.
        schema: &'static str,
    },
    /// Bytes could not be decoded as the record (opaque: the cause would quote the data).
    #[error("the bytes are not a valid {schema} Avro datum")]
    Decode {
        /// Full name of the record.
        schema: &'static str,
    },
    /// Bytes are left over after a complete datum.
    #[error("{len} bytes follow the {schema} datum")]
    TrailingBytes {
        /// Full name of the record.
        schema: &'static str,
        /// Number of unread bytes.
        len: usize,
    },
    /// The Avro datum inside the frame is not a well-formed envelope.
    #[error("the framed envelope is not valid: {0}")]
    Envelope(#[from] zenvelope_envelope::Error),
    /// A new schema cannot read all data written with an older one.
    #[error("the new schema cannot read data written with the old one: {reason}")]
    Incompatible {
        /// The compatibility checker's finding (names fields and types, never data).
        reason: String,
    },
    /// A call to the Confluent Schema Registry failed.
    #[cfg(feature = "registry")]
    #[error("the schema registry call failed: {0}")]
    Registry(#[source] Box<schema_registry_converter::error::SRCError>),
}

impl Error {
    /// A short, stable, bounded reason code for DLQ records and metric labels.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Error::EmbeddedSchema { .. } => "embedded_schema",
            Error::Truncated { .. } => "truncated_frame",
            Error::WrongMagicByte(_) => "wrong_magic_byte",
            Error::UnknownSchemaId(_) => "unknown_schema_id",
            Error::SchemaIdOutOfRange(_) => "schema_id_out_of_range",
            Error::WrongSchema { .. } => "wrong_schema",
            Error::SubjectMismatch { .. } => "subject_mismatch",
            Error::EnvelopeSchemaMismatch(_) => "envelope_schema_mismatch",
            Error::Encode { .. } => "avro_encode",
            Error::Decode { .. } => "avro_decode",
            Error::TrailingBytes { .. } => "trailing_bytes",
            Error::Envelope(e) => e.reason_code(),
            Error::Incompatible { .. } => "incompatible_schema",
            #[cfg(feature = "registry")]
            Error::Registry(_) => "schema_registry",
        }
    }

    /// Whether retrying the same call may succeed (a registry that is briefly unreachable).
    pub fn is_retriable(&self) -> bool {
        match self {
            #[cfg(feature = "registry")]
            Error::Registry(e) => e.retriable,
            _ => false,
        }
    }
}

#[cfg(feature = "registry")]
impl From<schema_registry_converter::error::SRCError> for Error {
    fn from(e: schema_registry_converter::error::SRCError) -> Self {
        Error::Registry(Box::new(e))
    }
}
