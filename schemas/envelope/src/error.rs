//! The crate's one error type.

/// Everything that can go wrong sealing, encoding, decoding or opening an envelope.
///
/// Structural problems (malformed bytes, oversized fields, untrusted or invalid
/// signatures) are public facts about the message and are reported precisely, so a
/// service can route the message to its DLQ with a reason. Everything that touches
/// secret material (unwrapping a DEK, the key commitment, the AEAD tag) collapses into
/// the single opaque [`Error::DecryptFailed`]: no padding or tag oracle, no hint of which
/// step failed. No variant ever carries plaintext, key bytes or IVs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed envelope.
    #[error("malformed envelope at byte {offset}: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
        /// Byte offset in the encoded envelope where decoding stopped.
        offset: usize,
    },
    /// A field or the whole envelope is larger than the configured limit.
    #[error("{field} is {len} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// Which field (or `envelope`).
        field: &'static str,
        /// Its size.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The envelope declares a format version this crate does not implement.
    #[error("envelope format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(i32),
    /// The envelope carries no signature but the open policy requires one.
    #[error("envelope is not signed, and the open policy requires a signature")]
    Unsigned,
    /// The envelope is signed by a key that is not in the trusted keyring.
    #[error(
        "envelope is signed by key {key_id:?} version {key_version}, which is not trusted here"
    )]
    UntrustedSigner {
        /// Key id named by the signature.
        key_id: String,
        /// Key version named by the signature.
        key_version: i32,
    },
    /// The signature does not verify under the trusted key it names.
    #[error("envelope signature does not verify")]
    BadSignature,
    /// None of the envelope's recipients is addressed to a key held by this opener.
    #[error("no recipient of this envelope is addressed to a key held here")]
    NoMatchingRecipient,
    /// Opening failed: wrong key, tampered wrapped key, commitment mismatch, or AEAD
    /// authentication failure. Deliberately opaque.
    #[error("decryption failed")]
    DecryptFailed,
    /// Key material could not be parsed or is outside the accepted parameters.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// An argument given to seal or to a key derivation is outside what the format allows.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    SigningFailed,
}

impl Error {
    /// A short, stable, bounded reason code for DLQ records and metric labels.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed",
            Error::TooLarge { .. } => "oversized",
            Error::UnsupportedVersion(_) => "unsupported_version",
            Error::Unsigned => "unsigned",
            Error::UntrustedSigner { .. } => "untrusted_signer",
            Error::BadSignature => "bad_signature",
            Error::NoMatchingRecipient => "no_matching_recipient",
            Error::DecryptFailed => "decrypt_failed",
            Error::InvalidKey(_) => "invalid_key",
            Error::InvalidInput(_) => "invalid_input",
            Error::Random => "random_failed",
            Error::SigningFailed => "signing_failed",
        }
    }
}
