//! `KeyDirectoryEntry` (`key-directory-entry.avsc`): a published public key and the
//! attestation evidence binding it to an enclave image.

use core::fmt;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use super::logical::avro_enum;

/// A public key on the compacted key directory topic.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct KeyDirectoryEntry {
    /// Key id, as named in envelope recipients and signatures.
    pub key_id: String,
    /// Key version.
    pub key_version: i32,
    /// What the key is for.
    pub purpose: KeyPurpose,
    /// Algorithm the key is used with.
    pub algorithm: KeyAlgorithm,
    /// The public key, DER-encoded SubjectPublicKeyInfo.
    #[avro(with)]
    #[serde(with = "apache_avro::serde::bytes")]
    pub public_key_spki_der: Vec<u8>,
    /// SHA-256 of `public_key_spki_der`, lowercase hex.
    pub fingerprint_sha256: String,
    /// Not valid before, milliseconds since the Unix epoch.
    #[avro(with = super::logical::timestamp_millis)]
    pub not_before_ms: i64,
    /// Not valid after, milliseconds since the Unix epoch.
    #[avro(with = super::logical::timestamp_millis)]
    pub not_after_ms: i64,
    /// Nitro attestation document (COSE_Sign1) binding this key, if enclave-held.
    #[avro(with, default = "null")]
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub attestation_document: Option<Vec<u8>>,
    /// PCR0 of the enclave image holding the private key, lowercase hex.
    pub enclave_measurement: Option<String>,
    /// Lifecycle state.
    pub status: KeyStatus,
}

avro_enum! {
    /// What a key is for. Symbols a reader does not know read as `Unknown`; readers ignore
    /// such keys.
    KeyPurpose = "KeyPurpose", default Unknown {
        /// A purpose newer than this reader.
        Unknown = "UNKNOWN",
        /// Enclave fleet key that producers wrap DEKs to (RSA-OAEP).
        FleetEncryption = "FLEET_ENCRYPTION",
        /// Enclave fleet key that signs results.
        FleetSigning = "FLEET_SIGNING",
        /// A producer service's envelope-signing key.
        ProducerSigning = "PRODUCER_SIGNING",
    }
}

avro_enum! {
    /// Algorithm a key is used with. Symbols a reader does not know read as `Unknown`.
    KeyAlgorithm = "KeyAlgorithm", default Unknown {
        /// An algorithm newer than this reader.
        Unknown = "UNKNOWN",
        /// RSA-OAEP with SHA-256 (key wrapping).
        RsaOaepSha256 = "RSA_OAEP_SHA256",
        /// RSASSA-PSS with SHA-256 (signatures).
        RsaPssSha256 = "RSA_PSS_SHA256",
        /// ECDSA on P-256 with SHA-256 (signatures; the fleet's result-signing default).
        EcdsaP256Sha256 = "ECDSA_P256_SHA256",
    }
}

avro_enum! {
    /// Lifecycle state of a key. Symbols a reader does not know read as `Unknown`; readers
    /// do not use such keys.
    KeyStatus = "KeyStatus", default Unknown {
        /// A state newer than this reader.
        Unknown = "UNKNOWN",
        /// New messages may be wrapped to (or signed with) this key.
        Active = "ACTIVE",
        /// Kept for opening or verifying old messages only.
        Retired = "RETIRED",
    }
}

impl fmt::Debug for KeyDirectoryEntry {
    /// Elides the key and attestation bytes; the fingerprint identifies the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDirectoryEntry")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("purpose", &self.purpose)
            .field("algorithm", &self.algorithm)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .field(
                "attestation_document_len",
                &self.attestation_document.as_ref().map(Vec::len),
            )
            .field("enclave_measurement", &self.enclave_measurement)
            .field("status", &self.status)
            .finish()
    }
}
