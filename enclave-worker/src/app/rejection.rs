//! Why a request is refused: the reason code for the DLQ record, the audit event and the
//! metric label, and one fixed sentence for operators. Nothing here is derived from the
//! request's contents, so no PHI (nor attacker-chosen text) can reach a DLQ detail.

use zenvelope_schemas::Outcome;

/// A refused request.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// Decoding, signature checks or opening failed.
    Envelope(zenvelope_envelope::Error),
    /// The Confluent framing around the envelope is wrong.
    Framing(zenvelope_schemas::Error),
    /// The envelope is not a request.
    WrongKind,
    /// The frame's request id is not the envelope's message id.
    RequestIdMismatch,
    /// The tenant is not configured.
    TenantNotAllowed,
    /// The tenant may not claim this purpose of use.
    PurposeNotAllowed,
    /// The request is older than the freshness window.
    Stale,
    /// The request claims a creation time too far ahead of the enclave clock.
    FromTheFuture,
    /// A different envelope with an already answered message id.
    RequestIdReused,
    /// The plaintext's content type is not one the enclave reads.
    UnsupportedContentType,
    /// The analysis input is not text.
    UnsupportedInput,
    /// The plaintext does not decode as its content type says.
    InvalidPlaintext,
    /// Something inside the enclave failed (a task panicked, a record did not encode).
    Internal(&'static str),
}

impl Rejection {
    /// The reason code: `[a-z0-9_]`, stable, bounded.
    pub(crate) fn reason_code(&self) -> &'static str {
        match self {
            Rejection::Envelope(e) => e.reason_code(),
            Rejection::Framing(e) => e.reason_code(),
            Rejection::WrongKind => "wrong_kind",
            Rejection::RequestIdMismatch => "request_id_mismatch",
            Rejection::TenantNotAllowed => "tenant_not_allowed",
            Rejection::PurposeNotAllowed => "purpose_not_allowed",
            Rejection::Stale => "stale",
            Rejection::FromTheFuture => "from_the_future",
            Rejection::RequestIdReused => "request_id_reused",
            Rejection::UnsupportedContentType => "unsupported_content_type",
            Rejection::UnsupportedInput => "unsupported_input",
            Rejection::InvalidPlaintext => "invalid_plaintext",
            Rejection::Internal(code) => code,
        }
    }

    /// DENIED for policy and authenticity refusals, FAILURE for everything else.
    pub(crate) fn audit_outcome(&self) -> Outcome {
        match self.reason_code() {
            "unsigned"
            | "untrusted_signer"
            | "bad_signature"
            | "tenant_not_allowed"
            | "purpose_not_allowed"
            | "stale"
            | "from_the_future"
            | "request_id_reused" => Outcome::Denied,
            _ => Outcome::Failure,
        }
    }

    /// One sentence for operators. Fixed text per reason: never request contents.
    pub(crate) fn detail(&self) -> &'static str {
        match self.reason_code() {
            "malformed" => "The request is not a well-formed envelope.",
            "oversized" => "The request envelope or one of its fields exceeds the enclave limits.",
            "unsupported_version" => "The request envelope has an unsupported format version.",
            "unsigned" => "The request is not signed, and the enclave requires a signature.",
            "untrusted_signer" => "The request is signed by a key the enclave does not trust.",
            "bad_signature" => "The request signature does not verify.",
            "no_matching_recipient" => {
                "No recipient of the request is addressed to a fleet key held by this enclave."
            }
            "decrypt_failed" => "The request could not be decrypted.",
            "wrong_kind" => "The envelope is not a request.",
            "request_id_mismatch" => "The request id does not match the envelope's message id.",
            "tenant_not_allowed" => "The tenant is not allowed to use this enclave.",
            "purpose_not_allowed" => "The tenant is not allowed to claim this purpose of use.",
            "stale" => "The request is older than the enclave's freshness window.",
            "from_the_future" => {
                "The request's creation time is too far ahead of the enclave clock."
            }
            "request_id_reused" => {
                "A different envelope with this message id was already answered."
            }
            "unsupported_content_type" => {
                "The request plaintext has a content type the enclave does not read."
            }
            "unsupported_input" => "The request input is not text.",
            "invalid_plaintext" => {
                "The request plaintext does not decode as its content type says."
            }
            "wrong_magic_byte"
            | "truncated_frame"
            | "unknown_schema_id"
            | "wrong_schema"
            | "envelope_schema_mismatch"
            | "schema_id_out_of_range" => {
                "The request is not a Confluent-framed envelope the enclave reads."
            }
            _ => "The enclave failed to process the request.",
        }
    }
}
