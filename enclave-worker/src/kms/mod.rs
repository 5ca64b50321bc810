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
//!
//! [`release_fleet_key`] (module [`client`]) is the whole key release: ephemeral RSA key,
//! attestation document carrying it, KMS `Decrypt` with `Recipient`, this parser, PKCS#8.
//! [`danger::danger_release_without_recipient`] is the moto path (plain `Decrypt`).

pub mod client;
pub mod cms;

pub use client::{
    CONTEXT_KEY_ID, CONTEXT_KEY_VERSION, CONTEXT_PURPOSE, PURPOSE_FLEET_KEY, PURPOSE_SIGNING_KEY,
    SealedKey, attested_measurement, release_fleet_key, release_secret, release_signing_key,
};
pub use cms::{MAX_CIPHERTEXT_BYTES, MAX_DEPTH, open_recipient_ciphertext};

/// Builders that play the KMS side. Not for production paths: whoever holds the
/// recipient's public key can build a valid envelope, so these only make sense in tests
/// and in the local KMS emulation.
/// The local key-release paths for a KMS emulator without `Recipient` support (they print
/// a warning) and a client constructor for local endpoints are here too.
pub mod danger {
    pub use super::client::danger::{
        danger_release_secret_without_recipient, danger_release_without_recipient, local_kms_client,
    };
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
    /// The ephemeral RSA key pair for the `Recipient` could not be generated or encoded.
    #[error("The ephemeral RSA key for the KMS recipient could not be generated.")]
    KeyGeneration,
    /// The attestation document could not be obtained or read.
    #[error("The attestation document for the KMS recipient could not be obtained: {0}")]
    Attestation(#[from] zenvelope_attestation::Error),
    /// The KMS call failed (network, credentials, key policy, wrong encryption context).
    #[error("The KMS Decrypt call failed ({}): {message}.", code.as_deref().unwrap_or("no error code"))]
    Kms {
        /// The KMS error code, e.g. `AccessDeniedException`, `InvalidCiphertextException`.
        code: Option<String>,
        /// The SDK's description of the failure (no key material: the request and
        /// response bodies are not part of it).
        message: String,
    },
    /// KMS answered a `Recipient` request without `CiphertextForRecipient`.
    #[error("KMS answered without a CiphertextForRecipient.")]
    MissingCiphertextForRecipient,
    /// KMS answered a `Recipient` request with a plaintext, which it never does: refused.
    #[error("KMS answered a Recipient request with a plaintext; refusing it.")]
    UnexpectedPlaintext,
    /// KMS answered a plain `Decrypt` without a plaintext.
    #[error("KMS answered the Decrypt request without a plaintext.")]
    MissingPlaintext,
    /// The released bytes are not a usable RSA PKCS#8 private key.
    #[error("The key released by KMS is not a usable RSA PKCS#8 private key.")]
    InvalidReleasedKey,
    /// The attestation document carries no PCR0.
    #[error("The attestation document carries no PCR0 measurement.")]
    MissingMeasurement,
    /// A blocking crypto task panicked or was cancelled.
    #[error("A key-release crypto task failed to complete.")]
    TaskFailed,
}
