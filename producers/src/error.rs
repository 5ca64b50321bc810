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
    /// The configuration file, or a key file it names, cannot be read or parsed.
    #[error("The configuration {path} cannot be used: {reason}.")]
    ConfigFile {
        /// The file.
        path: String,
        /// What is wrong (never the file's contents).
        reason: String,
    },
    /// The key directory cannot be used as configured.
    #[error("The key directory cannot be used: {reason}.")]
    KeyDirectory {
        /// What is wrong.
        reason: String,
    },
    /// No fleet key in the key directory passed verification, so nothing can be sealed
    /// for the enclave. The text lists each refused entry and why.
    #[error(
        "No trusted fleet key: nothing was sealed. Every fleet key must carry an attestation document that verifies against the pinned root and measurements ({refused})."
    )]
    NoTrustedFleetKey {
        /// Each refused entry with its reason, or why there is none.
        refused: String,
    },
    /// A request sealed by a browser was not forwarded; the text says why. Nothing was
    /// produced.
    #[error("The browser's request was not forwarded: {0}.")]
    NotForwarded(&'static str),
    /// The admission processor refused a request of this user (its notice on
    /// `zenvelope.rejections`). Notices are not signed: this is the service's word, not
    /// proof. Call [`crate::Results::next`] again to go on.
    #[error("{0}")]
    Refused(Box<crate::results::Refusal>),
    /// A background task failed (key derivation or sealing).
    #[error("A background task failed: {0}")]
    Task(String),
}
