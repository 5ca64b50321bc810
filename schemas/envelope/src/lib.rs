//! Sealed envelopes for zenvelope: sans-io cryptography, no tokio, no Kafka, no AWS.
//!
//! An [`Envelope`] carries an AES-256-GCM payload whose additional data binds every
//! header field (tenant, subject pseudonym, message id, kind, purpose of use, schema…),
//! a DEK wrapped for each recipient (a user's passphrase-derived KEK, an enclave fleet
//! RSA key, or KMS), a commitment to that DEK checked before decryption, and an
//! RSA-PSS signature over all of it. The byte format is specified in
//! `docs/envelope-spec.md`; golden vectors live in `schemas/envelope/vectors/`.
//!
//! ```
//! use std::sync::Arc;
//! use zenvelope_envelope::*;
//!
//! # fn main() -> Result<(), Error> {
//! // The enclave fleet's key (its private half never leaves the enclave).
//! let fleet = FleetPrivateKey::generate("fleet", 1, 2048)?;
//! let fleet_public = Keyring::new().with(FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der())?)?;
//! // The user's key, derived from credentials on their device.
//! let user = Arc::new(UserKey::derive_with_iterations(
//!     "clinic-a", "alice@example.com", &Passphrase::new("correct horse"), 100_000)?);
//! // The producer service's signing key, trusted by the enclave and the user.
//! let producer = Arc::new(SigningKey::generate("journal-backend", 1, 2048)?);
//! let trusted = Keyring::new().with(producer.verifying_key()?)?;
//!
//! let mut sealer = Sealer::new(vec![user.clone(), Arc::new(fleet_public)]).with_signer(producer);
//! let fields = HeaderFields {
//!     tenant: "clinic-a".into(),
//!     subject: MetadataKey::from_bytes([7; 32]).pseudonym("clinic-a", "alice@example.com"),
//!     kind: Kind::Request,
//!     purpose: Purpose::IndividualRequest,
//!     content_type: "text/plain".into(),
//!     schema_id: 0,
//! };
//! let sealed = sealer.seal(&fields, b"Slept badly again; worried about Monday.")?;
//! let wire: Vec<u8> = encode(&sealed); // Avro binary, what goes on Kafka
//!
//! // Inside the enclave: verify the producer's signature, unwrap with the fleet key, open.
//! let fleet_keys = Keyring::new().with(fleet)?;
//! let request = Opener::new(trusted).decode_and_open(&wire, &fleet_keys)?;
//! assert_eq!(request.plaintext(), b"Slept badly again; worried about Monday.");
//!
//! // The enclave answers under the response key, keeping the user's recipient (not its own).
//! let enclave_signer = SigningKey::generate("fleet-signing", 1, 2048)?;
//! let answer = seal_response(
//!     &request,
//!     &ResponseFields { kind: Kind::Result, content_type: "text/plain".into(), schema_id: 0 },
//!     b"Worry about Monday comes up often; consider noting what is in your control.",
//!     |r| r.recipient_type != RecipientType::RsaOaepSha256,
//!     Some(&enclave_signer),
//! )?;
//!
//! // The user opens the answer with nothing but their passphrase-derived key.
//! let user_trusts = Keyring::new().with(enclave_signer.verifying_key()?)?;
//! let mine = Opener::new(user_trusts).decode_and_open(&encode(&answer), &*user)?;
//! assert!(mine.plaintext().starts_with(b"Worry about Monday"));
//! assert_eq!(mine.header().correlation_id, Some(request.header().message_id));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

mod aad;
mod aead;
mod codec;
pub mod danger;
mod error;
mod kdf;
mod keys;
mod model;
mod pseudonym;
mod seal;
mod secret;

pub use aad::{LABEL_AAD, LABEL_SIGNATURE, LABEL_WRAP, payload_aad, signature_input, wrap_aad};
pub use aead::{BLOB_OVERHEAD, BLOB_VERSION, IV_LEN, TAG_LEN};
pub use codec::{Limits, decode, encode};
pub use error::Error;
pub use kdf::{
    DEFAULT_PBKDF2_ITERATIONS, INFO_KEK_ID, INFO_KEY_COMMITMENT, INFO_PAYLOAD_KEY, INFO_RESPONSE,
    LABEL_KEK_SALT, MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS, kek_salt, key_commitment,
    normalize_identity, response_dek,
};
pub use keys::{
    ACCEPTED_RSA_BITS, DEFAULT_RSA_BITS, DekUnwrapper, DekWrapper, FleetPrivateKey, FleetPublicKey,
    Keyed, Keyring, PASSPHRASE_KEY_VERSION, PASSPHRASE_PARAMS_LEN, SigningKey, UserKey,
    VerifyingKey, spki_fingerprint,
};
pub use model::{
    Envelope, FORMAT_VERSION, Header, Kind, MessageId, Purpose, Recipient, RecipientType,
    Signature, SignatureAlgorithm,
};
pub use pseudonym::{LABEL_SUBJECT, MetadataKey};
pub use seal::{
    DekSessionPolicy, HeaderFields, Opened, Opener, ResponseFields, Sealer, seal_response,
    sign_envelope,
};
pub use secret::{Dek, Passphrase, Plaintext};

/// The README's example, compiled and run as a doc test so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;

/// Crypto primitives exposed through this crate's wrappers for known-answer tests
/// (Wycheproof). Not part of the envelope API.
#[doc(hidden)]
pub mod primitives {
    pub use crate::aead::{open_blob as aes256gcm_open_blob, seal_blob as aes256gcm_seal_blob};
    pub use crate::kdf::hkdf_sha256;

    /// The AES-256-GCM key of one message's payload (HKDF of the DEK, salt = message id).
    pub fn payload_key(dek: &crate::Dek, message_id: &crate::MessageId) -> [u8; 32] {
        *crate::kdf::payload_key(dek, message_id)
    }

    /// PBKDF2-HMAC-SHA256 of the NFKC-normalised passphrase: the raw KEK, for vectors.
    pub fn derive_kek(
        passphrase: &crate::Passphrase,
        salt: &[u8; 32],
        iterations: u32,
    ) -> Result<[u8; 32], crate::Error> {
        Ok(crate::kdf::derive_kek(passphrase, salt, iterations)?.0)
    }
}
