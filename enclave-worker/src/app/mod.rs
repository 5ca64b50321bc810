//! The enclave application core: open a sealed request, call the model, seal the answer.
//!
//! - [`Processor`] is the per-request core, usable without any network: bytes of a
//!   request envelope in, a [`ProcessedOutcome`] (sealed result or dead letter, plus
//!   audit events) out. The steps, in order:
//!   1. decode with the configured [`Limits`](zenvelope_envelope::Limits) (Confluent-framed
//!      or bare Avro);
//!   2. the envelope is a `REQUEST` (`wrong_kind`) whose message id is the frame's request
//!      id (`request_id_mismatch`);
//!   3. the producer signature verifies under a pinned key (`unsigned`,
//!      `untrusted_signer`, `bad_signature`);
//!   4. tenant and purpose of use are allowed (`tenant_not_allowed`,
//!      `purpose_not_allowed`);
//!   5. a request id already answered gets the same sealed bytes again, with no second
//!      model call (a different envelope under that id: `request_id_reused`);
//!   6. freshness of `created_at_ms` (`stale`, `from_the_future`);
//!   7. DEK unwrap through [`CachingUnwrapper`] and open, off the reactor
//!      (`decrypt_failed`, `no_matching_recipient`);
//!   8. the plaintext by content type: an `AnalysisRequest` datum or UTF-8 text
//!      (`unsupported_content_type`, `unsupported_input`, `invalid_plaintext`);
//!   9. the model call; its answer sealed as an `AnalysisResult` (kind `RESULT`), or a
//!      sealed `ERROR` with a fixed, PHI-free text if the provider failed;
//!   10. audit events: the refusal with its reason code, or `REQUEST_OPENED` and a
//!       `DISCLOSURE` receipt (provider, model, purpose, hashes of the sealed bytes,
//!       enclave measurement).
//! - [`serve`] runs the host connection: handshake, concurrent `Process` frames under a
//!   bound, `Ping`/`Pong`, `KeysRequest` (answered with the attested key directory
//!   entries, see [`Processor::key_directory`]), reconnects.
//!
//! No PHI leaves this module except sealed: DLQ details are fixed sentences per reason
//! code, audit events carry ids, pseudonyms, codes and hashes, and telemetry labels are
//! reason codes, outcomes and provider names.

mod audit;
mod cache;
mod config;
mod dek_cache;
mod directory;
pub mod launch;
mod processor;
mod rejection;
mod serve;
pub mod telemetry;

pub use config::{
    AppConfig, CacheConfig, DEFAULT_ACTOR, FreshnessConfig, ModelConfig, TenantPolicy,
    TrustedSignerConfig,
};
pub use dek_cache::{CachingUnwrapper, DekCacheStats};
pub use directory::DEFAULT_KEY_VALIDITY_MS;
pub use processor::{
    ProcessedOutcome, Processor, ProcessorParts, REASON_DUPLICATE, REASON_PROVIDER_FAILED,
    REASON_PROVIDER_UNAVAILABLE, TEXT_PLAIN_UTF8,
};
pub use serve::{FrameRelay, HELLO_TIMEOUT, RequestProcessor, serve, serve_with_relay};

/// Errors of the enclave application's set-up. Request-level problems are not errors:
/// they become dead letters with a reason code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The configuration is invalid.
    #[error("The enclave application configuration is invalid: {reason}.")]
    Config {
        /// What is wrong.
        reason: String,
    },
}
