//! `AuditEvent` (`audit-event.avsc`): ids, pseudonyms, codes and hashes only, never PHI.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use super::logical::avro_enum;

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
