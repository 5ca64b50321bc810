//! Audit events the enclave reports: ids, pseudonyms, codes and hashes, never PHI.

use aws_lc_rs::digest;
use zenvelope_envelope::{Header, Keyed as _, Purpose, SigningKey};
use zenvelope_schemas::{
    AuditEvent, AuditOperation, Disclosure, KeyAlgorithm, Outcome, PurposeOfUse, ReceiptSignature,
};

use super::config::encode_hex;

/// Milliseconds since the Unix epoch, from the enclave clock.
pub(crate) use zenvelope_runtime::now_ms;

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    encode_hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// A message id as a UUID (the audit schema's logical type).
pub(crate) fn uuid_of(id: &[u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id)
}

/// The facts every event about one request shares.
pub(crate) struct AuditContext<'a> {
    pub(crate) actor: &'a str,
    pub(crate) measurement: Option<&'a str>,
    pub(crate) tenant: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) message_id: Option<uuid::Uuid>,
    pub(crate) request_sha256: &'a str,
}

impl<'a> AuditContext<'a> {
    /// Context for a request whose header is known.
    pub(crate) fn for_header(
        actor: &'a str,
        measurement: Option<&'a str>,
        header: &'a Header,
        request_sha256: &'a str,
    ) -> Self {
        Self {
            actor,
            measurement,
            tenant: &header.tenant,
            subject: &header.subject,
            message_id: Some(uuid_of(header.message_id.as_bytes())),
            request_sha256,
        }
    }

    /// A blank event of `operation` with `outcome`.
    pub(crate) fn event(&self, operation: AuditOperation, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            event_id: uuid::Uuid::now_v7(),
            occurred_at_ms: now_ms(),
            tenant: self.tenant.to_owned(),
            subject: self.subject.to_owned(),
            operation,
            message_id: self.message_id,
            correlation_id: None,
            actor: self.actor.to_owned(),
            outcome,
            reason_code: None,
            enclave_measurement: self.measurement.map(str::to_owned),
            key_id: None,
            key_version: None,
            request_sha256: Some(self.request_sha256.to_owned()),
            result_sha256: None,
            disclosure: None,
        }
    }

    /// The disclosure receipt for one model call.
    pub(crate) fn disclosure(
        &self,
        provider: &str,
        model: &str,
        purpose: Purpose,
        result_sha256: Option<&str>,
        reason_code: Option<&str>,
    ) -> AuditEvent {
        let outcome = if reason_code.is_none() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut event = self.event(AuditOperation::Disclosure, outcome);
        event.reason_code = reason_code.map(str::to_owned);
        event.result_sha256 = result_sha256.map(str::to_owned);
        event.disclosure = Some(Disclosure {
            provider: provider.to_owned(),
            model: model.to_owned(),
            purpose: PurposeOfUse::from(purpose),
            signature: None,
            tokens: None,
        });
        event
    }
}

/// Signs a disclosure receipt with the fleet's result-signing key (see
/// [`AuditEvent::receipt_digest`]). A receipt that cannot be signed is still published,
/// unsigned, so the disclosure is accounted for; `audit disclosures` reports it as such.
pub(crate) fn sign_receipt(mut event: AuditEvent, signer: &SigningKey) -> AuditEvent {
    let algorithm = KeyAlgorithm::from(signer.algorithm());
    let Some(digest) = event.receipt_digest(signer.key_id(), signer.key_version(), algorithm)
    else {
        return event;
    };
    match signer.sign(&digest) {
        Ok(value) => {
            if let Some(disclosure) = event.disclosure.as_mut() {
                disclosure.signature = Some(ReceiptSignature {
                    key_id: signer.key_id().to_owned(),
                    key_version: signer.key_version(),
                    algorithm,
                    value,
                });
            }
        }
        Err(error) => {
            tracing::error!(%error, "The disclosure receipt could not be signed; it is published unsigned.");
        }
    }
    event
}
