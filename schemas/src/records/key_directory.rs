//! `KeyDirectoryEntry` (`key-directory-entry.avsc`): a published public key and the
//! attestation evidence binding it to an enclave image.

use core::fmt;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use super::logical::{avro_enum, put_symbol, put_u32_bytes};

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

impl From<zenvelope_envelope::SignatureAlgorithm> for KeyAlgorithm {
    fn from(algorithm: zenvelope_envelope::SignatureAlgorithm) -> Self {
        match algorithm {
            zenvelope_envelope::SignatureAlgorithm::RsaPssSha256 => KeyAlgorithm::RsaPssSha256,
            zenvelope_envelope::SignatureAlgorithm::EcdsaP256Sha256 => {
                KeyAlgorithm::EcdsaP256Sha256
            }
            // An algorithm newer than this crate's schema.
            _ => KeyAlgorithm::Unknown,
        }
    }
}

impl KeyAlgorithm {
    /// The signature algorithm this names, if it names one.
    pub fn signature_algorithm(self) -> Option<zenvelope_envelope::SignatureAlgorithm> {
        match self {
            KeyAlgorithm::RsaPssSha256 => {
                Some(zenvelope_envelope::SignatureAlgorithm::RsaPssSha256)
            }
            KeyAlgorithm::EcdsaP256Sha256 => {
                Some(zenvelope_envelope::SignatureAlgorithm::EcdsaP256Sha256)
            }
            KeyAlgorithm::Unknown | KeyAlgorithm::RsaOaepSha256 => None,
        }
    }
}

/// Domain label that starts the attestation binding of an entry.
pub const ATTESTATION_BINDING_LABEL: &[u8] = b"zenvelope/v1/key-directory-entry";

impl KeyDirectoryEntry {
    /// The 32 bytes an enclave puts in its attestation document's `user_data` so the
    /// document vouches for this entry, not only for its public key: SHA-256 over
    ///
    /// ```text
    /// ATTESTATION_BINDING_LABEL
    /// || u32be(len(key_id)) || key_id || i32be(key_version)
    /// || u8(len(purpose)) || purpose symbol || u8(len(algorithm)) || algorithm symbol
    /// || u32be(len(spki)) || spki || i64be(not_before_ms) || i64be(not_after_ms)
    /// || u8(len(status)) || status symbol
    /// ```
    ///
    /// The fingerprint and measurement are left out: a reader recomputes the one from the
    /// key and takes the other from the verified document. The document's `public_key`
    /// carries the SPKI itself. Specified in `docs/key-directory.md`.
    pub fn attestation_binding(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(ATTESTATION_BINDING_LABEL);
        put_u32_bytes(&mut h, self.key_id.as_bytes());
        h.update(self.key_version.to_be_bytes());
        put_symbol(&mut h, self.purpose.symbol());
        put_symbol(&mut h, self.algorithm.symbol());
        put_u32_bytes(&mut h, &self.public_key_spki_der);
        h.update(self.not_before_ms.to_be_bytes());
        h.update(self.not_after_ms.to_be_bytes());
        put_symbol(&mut h, self.status.symbol());
        h.finalize().into()
    }

    /// The Kafka key of this entry on the compacted topic: `PURPOSE/key_id/version`, so a
    /// newer record for the same key replaces the older one and versions are kept apart.
    pub fn topic_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.purpose.symbol(),
            self.key_id,
            self.key_version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_lower(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn entry() -> KeyDirectoryEntry {
        KeyDirectoryEntry {
            key_id: "fleet".into(),
            key_version: 2,
            purpose: KeyPurpose::FleetEncryption,
            algorithm: KeyAlgorithm::RsaOaepSha256,
            public_key_spki_der: vec![0x30, 0x03, 0x02, 0x01, 0x00],
            fingerprint_sha256: String::new(),
            not_before_ms: 1_700_000_000_000,
            not_after_ms: 1_800_000_000_000,
            attestation_document: None,
            enclave_measurement: None,
            status: KeyStatus::Active,
        }
    }

    /// Known answer: the binding as `docs/key-directory.md` specifies it, computed
    /// independently with Python's hashlib.
    #[test]
    fn binding_known_answer() {
        assert_eq!(
            hex_lower(&entry().attestation_binding()),
            "e4f87534b90171eda9115e7ffb2c5b1dfc59952557fb9f957efb1f9ff79c44b6"
        );
    }

    #[test]
    fn every_bound_field_changes_the_binding() {
        let base = entry().attestation_binding();
        let mutations: Vec<fn(&mut KeyDirectoryEntry)> = vec![
            |e| e.key_id.push('x'),
            |e| e.key_version += 1,
            |e| e.purpose = KeyPurpose::FleetSigning,
            |e| e.algorithm = KeyAlgorithm::RsaPssSha256,
            |e| e.public_key_spki_der.push(0),
            |e| e.not_before_ms -= 1,
            |e| e.not_after_ms += 1,
            |e| e.status = KeyStatus::Retired,
        ];
        for (i, mutate) in mutations.iter().enumerate() {
            let mut e = entry();
            mutate(&mut e);
            assert_ne!(
                e.attestation_binding(),
                base,
                "mutation {i} left the binding unchanged"
            );
        }
        // Evidence fields are not bound (they carry the binding).
        let mut e = entry();
        e.enclave_measurement = Some("00".into());
        e.attestation_document = Some(vec![1]);
        e.fingerprint_sha256 = "ff".into();
        assert_eq!(e.attestation_binding(), base);
    }

    #[test]
    fn topic_key_separates_purpose_id_and_version() {
        assert_eq!(entry().topic_key(), "FLEET_ENCRYPTION/fleet/2");
    }
}
