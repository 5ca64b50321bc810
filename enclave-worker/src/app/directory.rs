//! The enclave's key directory entries: the public half of every key it holds, each with
//! an attestation document that binds it to this enclave image.
//!
//! For each key the enclave asks its [`Attestor`] (the NSM in production) for a document
//! whose `public_key` is the key's SubjectPublicKeyInfo and whose `user_data` is
//! [`KeyDirectoryEntry::attestation_binding`] of the entry (key id, version, purpose,
//! algorithm, validity and status). The host publishes the entries on `zenvelope.keys`
//! unchanged; the producer SDK verifies the document against its pinned root and PCRs
//! before it wraps anything to a key, so neither the host nor anyone with write access to
//! the topic can substitute a key. Entries are made fresh for every `KeysRequest`, valid
//! from now for the configured time; the host asks again well before they expire.

use std::sync::Arc;

use zenvelope_attestation::{AttestationRequest, Attestor};
use zenvelope_envelope::{FleetPrivateKey, Keyed as _, Keyring, SigningKey};
use zenvelope_schemas::{KeyAlgorithm, KeyDirectoryEntry, KeyPurpose, KeyStatus};

/// Default validity of a published entry: seven days. The host refreshes entries every
/// hour by default, so a week leaves room for a long host outage before producers stop
/// trusting the keys.
pub const DEFAULT_KEY_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;

/// The public facts of one key, fixed at start-up.
#[derive(Clone)]
pub(crate) struct KeySpec {
    key_id: String,
    key_version: i32,
    purpose: KeyPurpose,
    algorithm: KeyAlgorithm,
    spki_der: Vec<u8>,
}

/// What the enclave publishes about its keys, and how it attests them.
pub(crate) struct KeyDirectory {
    attestor: Option<Arc<dyn Attestor>>,
    keys: Vec<KeySpec>,
    measurement: Option<String>,
    validity_ms: i64,
}

impl KeyDirectory {
    /// The directory of `fleet` (every version, newest last in the published order) and the
    /// result signing key. Without an attestor nothing is published: the SDK would refuse
    /// unattested keys anyway.
    pub(crate) fn new(
        attestor: Option<Arc<dyn Attestor>>,
        fleet: &Keyring<FleetPrivateKey>,
        signer: &SigningKey,
        measurement: Option<String>,
        validity_ms: i64,
    ) -> Self {
        let mut keys: Vec<KeySpec> = fleet
            .iter()
            .map(|key| KeySpec {
                key_id: key.key_id().to_owned(),
                key_version: key.key_version(),
                purpose: KeyPurpose::FleetEncryption,
                algorithm: KeyAlgorithm::RsaOaepSha256,
                spki_der: key.public_key().spki_der().to_vec(),
            })
            .collect();
        keys.push(KeySpec {
            key_id: signer.key_id().to_owned(),
            key_version: signer.key_version(),
            purpose: KeyPurpose::FleetSigning,
            // An algorithm the schema cannot name maps to UNKNOWN, which readers refuse.
            algorithm: KeyAlgorithm::from(signer.algorithm()),
            spki_der: signer.spki_der().to_vec(),
        });
        Self {
            attestor,
            keys,
            measurement,
            validity_ms,
        }
    }

    /// Fresh entries, each with its own attestation document, valid from `now_ms`.
    /// A key whose document cannot be made is left out (and logged): publishing it
    /// without evidence would only get it refused.
    pub(crate) fn entries(&self, now_ms: i64) -> Vec<KeyDirectoryEntry> {
        let Some(attestor) = &self.attestor else {
            tracing::warn!(
                "The host asked for the key directory, but this enclave has no attestor; nothing is published."
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.keys.len());
        for spec in &self.keys {
            let mut entry = KeyDirectoryEntry {
                key_id: spec.key_id.clone(),
                key_version: spec.key_version,
                purpose: spec.purpose,
                algorithm: spec.algorithm,
                public_key_spki_der: spec.spki_der.clone(),
                fingerprint_sha256: zenvelope_envelope::spki_fingerprint(&spec.spki_der),
                not_before_ms: now_ms,
                not_after_ms: now_ms.saturating_add(self.validity_ms),
                attestation_document: None,
                enclave_measurement: self.measurement.clone(),
                status: KeyStatus::Active,
            };
            let request = AttestationRequest {
                public_key: Some(spec.spki_der.clone()),
                user_data: Some(entry.attestation_binding().to_vec()),
                nonce: None,
            };
            match attestor.attest(&request) {
                Ok(document) => {
                    entry.attestation_document = Some(document);
                    out.push(entry);
                }
                Err(error) => tracing::error!(
                    %error,
                    key_id = %spec.key_id,
                    key_version = spec.key_version,
                    "The key could not be attested; it is left out of the key directory."
                ),
            }
        }
        out
    }
}
