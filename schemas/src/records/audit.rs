//! `AuditEvent` (`audit-event.avsc`): ids, pseudonyms, codes and hashes only, never PHI.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use zenvelope_envelope::{Keyring, VerifyingKey};

use super::key_directory::KeyAlgorithm;
use super::logical::{avro_enum, put_symbol, put_u32_bytes};

/// One step in the life of a message or key, appended to the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct AuditEvent {
    /// Unique id of this event.
    #[avro(with)]
    #[serde(with = "super::logical::uuid_string")]
    pub event_id: uuid::Uuid,
    /// When the step happened, milliseconds since the Unix epoch.
    #[avro(with = super::logical::timestamp_millis)]
    pub occurred_at_ms: i64,
    /// Tenant id.
    pub tenant: String,
    /// Subject pseudonym, never an email or a name.
    pub subject: String,
    /// What happened.
    pub operation: AuditOperation,
    /// Message id of the envelope concerned, if the event is about one.
    #[avro(with, default = "null")]
    #[serde(with = "super::logical::uuid_string_opt")]
    pub message_id: Option<uuid::Uuid>,
    /// For events about a result: the request's message id.
    #[avro(with, default = "null")]
    #[serde(with = "super::logical::uuid_string_opt")]
    pub correlation_id: Option<uuid::Uuid>,
    /// Service that performed the step, e.g. `enclave-app`.
    pub actor: String,
    /// How the step ended.
    pub outcome: Outcome,
    /// Short, stable reason code for failures and denials.
    pub reason_code: Option<String>,
    /// PCR0 of the enclave image that performed the step, lowercase hex.
    pub enclave_measurement: Option<String>,
    /// Key concerned (key release, or the recipient key used to open).
    pub key_id: Option<String>,
    /// Version of that key.
    pub key_version: Option<i32>,
    /// SHA-256 of the sealed request as it appeared on Kafka, lowercase hex.
    pub request_sha256: Option<String>,
    /// SHA-256 of the sealed result as it appeared on Kafka, lowercase hex.
    pub result_sha256: Option<String>,
    /// For disclosure events: the receipt.
    pub disclosure: Option<Disclosure>,
}

avro_enum! {
    /// What happened. Symbols a reader does not know read as `Unknown`.
    AuditOperation = "AuditOperation", default Unknown {
        /// An operation newer than this reader.
        Unknown = "UNKNOWN",
        /// A request was consumed from Kafka.
        RequestReceived = "REQUEST_RECEIVED",
        /// A request was opened inside the enclave.
        RequestOpened = "REQUEST_OPENED",
        /// The model was called.
        ModelCalled = "MODEL_CALLED",
        /// A result was produced to Kafka.
        ResultPublished = "RESULT_PUBLISHED",
        /// A message was sent to the DLQ.
        DeadLettered = "DEAD_LETTERED",
        /// A key was released to an enclave.
        KeyReleased = "KEY_RELEASED",
        /// PHI was disclosed to a third-party model (see [`Disclosure`]).
        Disclosure = "DISCLOSURE",
    }
}

avro_enum! {
    /// How a step ended. Symbols a reader does not know read as `Unknown`.
    Outcome = "Outcome", default Unknown {
        /// An outcome newer than this reader.
        Unknown = "UNKNOWN",
        /// The step succeeded.
        Success = "SUCCESS",
        /// The step failed.
        Failure = "FAILURE",
        /// The step was refused by policy.
        Denied = "DENIED",
    }
}

/// Receipt for a disclosure of PHI to a third-party model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct Disclosure {
    /// Provider the data was disclosed to.
    pub provider: String,
    /// Model that received the data.
    pub model: String,
    /// Why the data was disclosed.
    pub purpose: PurposeOfUse,
    /// The enclave fleet's signature over the receipt ([`AuditEvent::receipt_digest`]);
    /// `None` in receipts written before receipts were signed.
    pub signature: Option<ReceiptSignature>,
    /// Token counts of the call, when the provider reported them (usage metering; not
    /// covered by the receipt signature).
    #[avro(default = "null")]
    pub tokens: Option<TokenCount>,
}

/// Model tokens of one call, as the provider reported them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct TokenCount {
    /// Tokens in the prompt.
    pub input_tokens: i64,
    /// Tokens generated.
    pub output_tokens: i64,
}

/// A signature over a disclosure receipt by the enclave fleet's result-signing key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct ReceiptSignature {
    /// Id of the fleet's result-signing key.
    pub key_id: String,
    /// Version of that key.
    pub key_version: i32,
    /// Signature algorithm (RSA-PSS-SHA256, or ECDSA P-256 SHA-256 as `r || s`).
    pub algorithm: KeyAlgorithm,
    /// The signature over the receipt digest.
    #[avro(with)]
    #[serde(with = "apache_avro::serde::bytes")]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for ReceiptSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSignature")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("algorithm", &self.algorithm)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// What checking a disclosure receipt's signature found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptCheck {
    /// Signed by a trusted key, and the signature verifies.
    Valid,
    /// The receipt carries no signature.
    Unsigned,
    /// Signed by a key that is not among the trusted ones.
    UnknownKey,
    /// The signature does not verify: the receipt was altered, or signed otherwise.
    Invalid,
    /// The event is not a disclosure receipt.
    NotAReceipt,
}

impl ReceiptCheck {
    /// A short word for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptCheck::Valid => "signed",
            ReceiptCheck::Unsigned => "UNSIGNED",
            ReceiptCheck::UnknownKey => "UNKNOWN KEY",
            ReceiptCheck::Invalid => "BAD SIGNATURE",
            ReceiptCheck::NotAReceipt => "not a receipt",
        }
    }
}

/// Domain label that starts a disclosure receipt's digest.
pub const RECEIPT_DIGEST_LABEL: &[u8] = b"zenvelope/v1/disclosure-receipt";

impl AuditEvent {
    /// The 32 bytes the enclave signs for a disclosure receipt (`None` for other events):
    /// SHA-256 over
    ///
    /// ```text
    /// RECEIPT_DIGEST_LABEL
    /// || u32be(len) event_id (hyphenated) || i64be(occurred_at_ms)
    /// || u32be(len) tenant || u32be(len) subject || u32be(len) actor
    /// || u8(len) outcome symbol || opt(reason_code) || opt(message_id, hyphenated)
    /// || opt(enclave_measurement) || opt(request_sha256) || opt(result_sha256)
    /// || u32be(len) provider || u32be(len) model || u8(len) purpose symbol
    /// || u32be(len) key_id || i32be(key_version) || u8(len) algorithm symbol
    /// ```
    ///
    /// where `opt(x)` is `0x00` when absent and `0x01 || u32be(len) || x` when present,
    /// and the last three fields are the signing key's (so a signature cannot be claimed
    /// for another key). Every field an auditor reads from the receipt is covered; the
    /// key fields named in the event (`key_id`, `key_version`) and the correlation id are
    /// not part of a receipt.
    pub fn receipt_digest(
        &self,
        key_id: &str,
        key_version: i32,
        algorithm: KeyAlgorithm,
    ) -> Option<[u8; 32]> {
        use sha2::Digest as _;
        let disclosure = self.disclosure.as_ref()?;
        let mut h = sha2::Sha256::new();
        h.update(RECEIPT_DIGEST_LABEL);
        put_u32_bytes(&mut h, self.event_id.hyphenated().to_string().as_bytes());
        h.update(self.occurred_at_ms.to_be_bytes());
        put_u32_bytes(&mut h, self.tenant.as_bytes());
        put_u32_bytes(&mut h, self.subject.as_bytes());
        put_u32_bytes(&mut h, self.actor.as_bytes());
        put_symbol(&mut h, self.outcome.symbol());
        let message_id = self.message_id.map(|m| m.hyphenated().to_string());
        for field in [
            &self.reason_code,
            &message_id,
            &self.enclave_measurement,
            &self.request_sha256,
            &self.result_sha256,
        ] {
            match field {
                None => h.update([0]),
                Some(text) => {
                    h.update([1]);
                    put_u32_bytes(&mut h, text.as_bytes());
                }
            }
        }
        put_u32_bytes(&mut h, disclosure.provider.as_bytes());
        put_u32_bytes(&mut h, disclosure.model.as_bytes());
        put_symbol(&mut h, disclosure.purpose.symbol());
        put_u32_bytes(&mut h, key_id.as_bytes());
        h.update(key_version.to_be_bytes());
        put_symbol(&mut h, algorithm.symbol());
        Some(h.finalize().into())
    }

    /// Checks this disclosure receipt's signature against the fleet's result-signing
    /// keys in `trusted`.
    pub fn check_receipt(&self, trusted: &Keyring<VerifyingKey>) -> ReceiptCheck {
        let Some(disclosure) = &self.disclosure else {
            return ReceiptCheck::NotAReceipt;
        };
        let Some(signature) = &disclosure.signature else {
            return ReceiptCheck::Unsigned;
        };
        let Some(key) = trusted.get(&signature.key_id, signature.key_version) else {
            return ReceiptCheck::UnknownKey;
        };
        let (Some(algorithm), Some(digest)) = (
            signature.algorithm.signature_algorithm(),
            self.receipt_digest(
                &signature.key_id,
                signature.key_version,
                signature.algorithm,
            ),
        ) else {
            return ReceiptCheck::Invalid;
        };
        if key.verify(algorithm, &digest, &signature.value) {
            ReceiptCheck::Valid
        } else {
            ReceiptCheck::Invalid
        }
    }
}

avro_enum! {
    /// Purpose of use, as authenticated in the envelope header. Symbols a reader does not
    /// know read as `Unknown`.
    PurposeOfUse = "PurposeOfUse", default Unknown {
        /// A purpose newer than this reader.
        Unknown = "UNKNOWN",
        /// Treatment of the patient.
        Treatment = "TREATMENT",
        /// Payment for care.
        Payment = "PAYMENT",
        /// Health-care operations.
        Operations = "OPERATIONS",
        /// Research.
        Research = "RESEARCH",
        /// Public-health activities.
        PublicHealth = "PUBLIC_HEALTH",
        /// At the request of the individual.
        IndividualRequest = "INDIVIDUAL_REQUEST",
    }
}

impl From<zenvelope_envelope::Purpose> for PurposeOfUse {
    /// Maps the envelope header's purpose by symbol (the two enums share their symbols).
    fn from(p: zenvelope_envelope::Purpose) -> Self {
        PurposeOfUse::from_symbol(p.symbol()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use zenvelope_envelope::{Keyed as _, SigningKey};

    use super::*;

    fn receipt() -> AuditEvent {
        AuditEvent {
            event_id: uuid::Uuid::from_u128(1),
            occurred_at_ms: 1_700_000_000_000,
            tenant: "clinic-a".to_owned(),
            subject: "sp1_subject".to_owned(),
            operation: AuditOperation::Disclosure,
            message_id: Some(uuid::Uuid::from_u128(2)),
            correlation_id: None,
            actor: "enclave-app".to_owned(),
            outcome: Outcome::Success,
            reason_code: None,
            enclave_measurement: Some("ab".repeat(48)),
            key_id: None,
            key_version: None,
            request_sha256: Some("cd".repeat(32)),
            result_sha256: Some("ef".repeat(32)),
            disclosure: Some(Disclosure {
                provider: "openai".to_owned(),
                model: "gpt-4o-mini".to_owned(),
                purpose: PurposeOfUse::Treatment,
                signature: None,
                tokens: None,
            }),
        }
    }

    fn signed(event: &AuditEvent, key: &SigningKey) -> AuditEvent {
        let algorithm = KeyAlgorithm::from(key.algorithm());
        let digest = event
            .receipt_digest(key.key_id(), key.key_version(), algorithm)
            .expect("a receipt");
        let mut out = event.clone();
        if let Some(d) = out.disclosure.as_mut() {
            d.signature = Some(ReceiptSignature {
                key_id: key.key_id().to_owned(),
                key_version: key.key_version(),
                algorithm,
                value: key.sign(&digest).expect("sign"),
            });
        }
        out
    }

    #[test]
    fn a_signed_receipt_verifies_and_every_covered_field_breaks_it() {
        let key = SigningKey::generate_ecdsa_p256("fleet-results", 1).expect("key");
        let mut trusted = Keyring::new();
        trusted
            .insert(key.verifying_key().expect("public"))
            .expect("insert");
        let good = signed(&receipt(), &key);
        assert_eq!(good.check_receipt(&trusted), ReceiptCheck::Valid);
        assert_eq!(receipt().check_receipt(&trusted), ReceiptCheck::Unsigned);
        assert_eq!(
            good.check_receipt(&Keyring::new()),
            ReceiptCheck::UnknownKey
        );
        let edits: [fn(&mut AuditEvent); 13] = [
            |e| e.event_id = uuid::Uuid::from_u128(9),
            |e| e.occurred_at_ms += 1,
            |e| e.tenant.push('x'),
            |e| e.subject.push('x'),
            |e| e.actor.push('x'),
            |e| e.outcome = Outcome::Failure,
            |e| e.reason_code = Some(String::new()),
            |e| e.message_id = None,
            |e| e.enclave_measurement = None,
            |e| e.result_sha256 = Some("00".repeat(32)),
            |e| {
                if let Some(d) = e.disclosure.as_mut() {
                    d.model.push('x');
                }
            },
            |e| {
                if let Some(d) = e.disclosure.as_mut() {
                    d.purpose = PurposeOfUse::Research;
                }
            },
            |e| {
                if let Some(d) = e.disclosure.as_mut() {
                    d.provider = "anthropic".to_owned();
                }
            },
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut altered = good.clone();
            edit(&mut altered);
            assert_eq!(
                altered.check_receipt(&trusted),
                ReceiptCheck::Invalid,
                "edit {i} went unnoticed"
            );
        }
        let mut not_a_receipt = good.clone();
        not_a_receipt.disclosure = None;
        assert_eq!(
            not_a_receipt.check_receipt(&trusted),
            ReceiptCheck::NotAReceipt
        );
    }
}
