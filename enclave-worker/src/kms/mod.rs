//! KMS key release: opening the `CiphertextForRecipient` that AWS KMS returns.
//!
//! When the enclave calls KMS `Decrypt` with a `Recipient` (its attestation document and
//! `RSAES_OAEP_SHA_256`), KMS does not return the plaintext. It returns a CMS (RFC 5652)
//! `ContentInfo` holding an `EnvelopedData`, BER-encoded with indefinite lengths: one
//! `KeyTransRecipientInfo` wraps a fresh AES-256 content-encryption key with RSAES-OAEP
//! (SHA-256, MGF1-SHA-256) under the ephemeral public key from the attestation document,
//! and the content is encrypted with AES-256-CBC.
//!
//! [`open_recipient_ciphertext`] is sans-io: bytes in, plaintext out. It parses with a
//! small, strict, bounded BER reader (see [`cms`]) and collapses every decryption failure
//! into the single opaque [`KmsError::DecryptFailed`]. Structural problems (not CMS, a
//! different algorithm, more than one recipient, oversize input) get specific variants:
//! they describe public bytes, not secrets.
//!
//! [`danger::build_recipient_ciphertext`] produces the same shape; it exists for tests and
//! for the local KMS emulation, which stands in for KMS where `Recipient` is unavailable.

pub mod cms;

pub use cms::{MAX_CIPHERTEXT_BYTES, MAX_DEPTH, open_recipient_ciphertext};

/// Builders that play the KMS side. Not for production paths: whoever holds the
/// recipient's public key can build a valid envelope, so these only make sense in tests
/// and in the local KMS emulation.
pub mod danger {
    pub use super::cms::{Encoding, build_recipient_ciphertext, build_recipient_ciphertext_with};
}

/// Everything that can go wrong while opening (or, on the `danger` side, building) a
/// KMS recipient ciphertext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The input is larger than the bounded reader accepts.
    #[error("The KMS recipient ciphertext is {len} bytes, more than the {max} bytes accepted.")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The BER nests deeper than the reader allows.
    #[error("The KMS recipient ciphertext nests deeper than {max} levels.")]
    TooDeep {
        /// The nesting limit.
        max: usize,
    },
    /// The bytes are not well-formed BER, or not the CMS shape KMS sends.
    #[error("The KMS recipient ciphertext is malformed: {reason}.")]
    Malformed {
        /// What was wrong, in a few words (never contains input bytes).
        reason: &'static str,
    },
    /// The `ContentInfo` content type is not `id-envelopedData`.
    #[error("The KMS recipient ciphertext is not CMS EnvelopedData.")]
    NotEnvelopedData,
    /// A version field holds a value this reader does not support.
    #[error("The KMS recipient ciphertext has an unsupported {field} version {version}.")]
    UnsupportedVersion {
        /// Which structure carried the version.
        field: &'static str,
        /// The version found.
        version: u64,
    },
    /// The `EnvelopedData` does not hold exactly one recipient.
    #[error("The KMS recipient ciphertext has {count} recipients; exactly one is expected.")]
    RecipientCount {
        /// Number of `RecipientInfo` entries found.
        count: usize,
    },
    /// The single recipient is not a `KeyTransRecipientInfo`.
    #[error("The KMS recipient ciphertext uses a recipient type other than key transport.")]
    UnsupportedRecipient,
    /// The key-encryption algorithm is not RSAES-OAEP.
    #[error("The KMS recipient ciphertext uses a key-encryption algorithm other than RSAES-OAEP.")]
    UnsupportedKeyEncryption,
    /// The RSAES-OAEP parameters are not SHA-256, MGF1-SHA-256 and an empty label.
    #[error(
        "The KMS recipient ciphertext uses RSAES-OAEP parameters other than SHA-256 with MGF1-SHA-256 and an empty label."
    )]
    UnsupportedOaepParameters,
    /// The encrypted content type is not `id-data`.
    #[error("The KMS recipient ciphertext encrypts a content type other than id-data.")]
    UnsupportedContentType,
    /// The content-encryption algorithm is not AES-256-CBC.
    #[error(
        "The KMS recipient ciphertext uses a content-encryption algorithm other than AES-256-CBC."
    )]
    UnsupportedContentEncryption,
    /// The AES-256-CBC parameter is not a 16-byte IV.
    #[error("The KMS recipient ciphertext carries an AES-256-CBC IV that is not 16 bytes.")]
    InvalidIv,
    /// The `EncryptedContentInfo` has no `encryptedContent`.
    #[error("The KMS recipient ciphertext carries no encrypted content.")]
    MissingEncryptedContent,
    /// Decryption failed. Deliberately carries no cause: wrong key, tampered wrapped key,
    /// bad padding and wrong key length all look the same.
    #[error("The KMS recipient ciphertext could not be decrypted.")]
    DecryptFailed,
    /// The recipient public key given to the builder is not a usable RSA SPKI.
    #[error("The recipient public key is not a usable RSA SubjectPublicKeyInfo.")]
    InvalidRecipientKey,
    /// Building the envelope failed (random generation or encryption). No cause is kept.
    #[error("The KMS recipient ciphertext could not be built.")]
    BuildFailed,
}
