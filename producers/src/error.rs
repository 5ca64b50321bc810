//! The SDK's one error type.

/// What can go wrong in the SDK. Crypto failures stay opaque (the envelope crate's
/// errors never carry plaintext, keys or causes an attacker could use).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client is missing something it needs; the text names it.
    #[error("The client is not configured: {0}.")]
    Config(&'static str),
    /// Sealing, opening or verifying an envelope failed.
    #[error("Envelope error: {0}")]
    Envelope(#[from] zenvelope_envelope::Error),
    /// Encoding or decoding an Avro datum or frame failed.
    #[error("Schema error: {0}")]
    Schema(#[from] zenvelope_schemas::Error),
    /// Talking to Kafka failed.
    #[error("Kafka error: {0}")]
    Kafka(#[from] zenvelope_runtime::Error),
    /// An answer could not be verified or opened; it was not for this user, or it was
    /// forged or damaged.
    #[error("An answer on {topic} at offset {offset} could not be opened: {source}")]
    Unopenable {
        /// Topic of the record.
        topic: String,
        /// Offset of the record.
        offset: i64,
        /// Why (opaque for crypto failures).
        source: Box<Error>,
    },
    /// A background task failed (key derivation or sealing).
    #[error("A background task failed: {0}")]
    Task(String),
}
