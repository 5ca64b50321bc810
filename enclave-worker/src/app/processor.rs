//! [`Processor`]: one sealed request in, one `Processed` frame's worth of data out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use zenvelope_enclave_protocol::{Message, Opaque, Outcome};
use zenvelope_envelope::{
    DekUnwrapper, Envelope, FleetPrivateKey, Keyring, Kind, Limits, Opened, Opener, Purpose,
    ResponseFields, SigningKey, VerifyingKey, seal_response,
};
use zenvelope_schemas::framing::{MAGIC_BYTE, frame};
use zenvelope_schemas::names::media_type;
use zenvelope_schemas::{
    AnalysisInput, AnalysisRequest, AnalysisResult, AuditEvent, AuditOperation, FinishReason,
    Outcome as AuditOutcome, SchemaCodec, SchemaId, Subject, TokenCount, TokenUsage,
};
use zeroize::{Zeroize, Zeroizing};

use super::AppError;
use super::audit::{AuditContext, now_ms, sha256_hex, sign_receipt, uuid_of};
use super::cache::BoundedCache;
use super::config::{AppConfig, FreshnessConfig, ModelConfig};
use super::dek_cache::{CachingUnwrapper, DekCacheStats};
use super::directory::KeyDirectory;
use super::rejection::Rejection;
use super::telemetry::{ModelCalled, RequestHandled, RequestRejected};
use crate::lock;
use crate::providers::{ModelProvider, ModelRequest, ModelResponse, ProviderError};

/// Media type of a plain-text request plaintext (UTF-8, used as the model input with no
/// instruction) and of the text inside a sealed ERROR answer.
pub const TEXT_PLAIN_UTF8: &str = "text/plain; charset=utf-8";

/// Reason code of a model call that failed on something that may pass later (connection,
/// timeout, 429 or 5xx after the provider's retries). The sealed ERROR answer is not
/// remembered, so a redelivered request tries again.
pub const REASON_PROVIDER_UNAVAILABLE: &str = "provider_unavailable";
/// Reason code of a model call that failed for good (rejected request, invalid response).
pub const REASON_PROVIDER_FAILED: &str = "provider_failed";
/// Whether a binary input of `media_type` is text the models can read: `text/*`,
/// `application/json`, `application/xml` and the `+json`/`+xml` suffixes (FHIR, CDA).
fn is_textual(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence == "application/json"
        || essence == "application/xml"
        || (essence.starts_with("application/")
            && (essence.ends_with("+json") || essence.ends_with("+xml")))
}

/// Reason code written into the audit event of a duplicate answered from the cache.
pub const REASON_DUPLICATE: &str = "duplicate";

/// What a [`Processor`] needs besides its configuration: key material released at boot
/// and live objects.
pub struct ProcessorParts {
    /// Producer keys whose signatures are accepted (see
    /// [`AppConfig::trusted_signer_keyring`]).
    pub trusted_signers: Keyring<VerifyingKey>,
    /// The fleet's private keys (every version still in service).
    pub fleet_keys: Keyring<FleetPrivateKey>,
    /// The fleet's result signing key.
    pub result_signer: SigningKey,
    /// The model provider.
    pub provider: Arc<dyn ModelProvider>,
    /// PCR0 of this enclave image, lowercase hex, for audit events and key directory
    /// entries; `None` outside an enclave.
    pub enclave_measurement: Option<String>,
    /// Attests the key directory entries the host publishes (`KeysRequest`); `None`
    /// publishes nothing.
    pub attestor: Option<Arc<dyn zenvelope_attestation::Attestor>>,
}

/// The data of one `Processed` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedOutcome {
    /// The request id, as in `Process`.
    pub request_id: [u8; 16],
    /// A sealed result (or sealed error) for `zenvelope.results`, or a dead letter.
    pub outcome: Outcome,
    /// Confluent-framed `AuditEvent`s (subject `zenvelope.audit-value`).
    pub audit_events: Vec<Opaque>,
}

impl ProcessedOutcome {
    /// The `Processed` message.
    pub fn into_message(self) -> Message {
        Message::Processed {
            request_id: self.request_id,
            outcome: self.outcome,
            audit_events: self.audit_events,
        }
    }

    /// The dead letter's reason code, if the request was refused.
    pub fn reason_code(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::DeadLetter { reason_code, .. } => Some(reason_code),
            _ => None,
        }
    }

    /// The sealed result bytes, if the request was answered.
    pub fn result_envelope(&self) -> Option<&[u8]> {
        match &self.outcome {
            Outcome::Result { envelope } => Some(envelope.as_bytes()),
            _ => None,
        }
    }
}

/// The per-request core of the enclave application. Sans network: give it envelope
/// bytes, get a sealed answer or a dead letter, plus audit events.
///
/// Cheap to share: wrap it in an `Arc`; [`Processor::process`] takes `&self` and runs
/// any number of requests at once.
pub struct Processor {
    inner: Arc<Inner>,
}

struct Inner {
    opener: Opener,
    unwrapper: CachingUnwrapper,
    signer: SigningKey,
    tenants: HashMap<String, Vec<Purpose>>,
    freshness: FreshnessConfig,
    limits: Limits,
    codec: SchemaCodec,
    provider: Arc<dyn ModelProvider>,
    model: ModelConfig,
    actor: String,
    measurement: Option<String>,
    answered: Mutex<BoundedCache<[u8; 16], Answered>>,
    gates: Mutex<HashMap<[u8; 16], Arc<tokio::sync::Mutex<()>>>>,
    directory: KeyDirectory,
}

/// A remembered answer: which envelope it answered and the sealed bytes.
#[derive(Clone)]
struct Answered {
    request_sha256: Arc<str>,
    result: Arc<Vec<u8>>,
    result_sha256: Arc<str>,
}

/// A sealed answer, ready for the results topic.
struct Answer {
    bytes: Vec<u8>,
    label: &'static str,
}

/// What is known about the request so far, for the audit events.
struct Trace {
    request_sha256: String,
    header: Option<zenvelope_envelope::Header>,
    events: Vec<AuditEvent>,
}

/// The model input taken out of the plaintext. Zeroized on drop.
struct ModelInput {
    instruction: Zeroizing<String>,
    input: Zeroizing<String>,
    temperature: Option<f32>,
    max_output_tokens: Option<u32>,
    client_reference: Option<Zeroizing<String>>,
}

impl Processor {
    /// Builds a processor.
    ///
    /// # Errors
    /// [`AppError::Config`] for an unknown purpose symbol, an empty fleet keyring or a
    /// schema catalog that does not load.
    pub fn new(config: &AppConfig, parts: ProcessorParts) -> Result<Self, AppError> {
        if parts.fleet_keys.is_empty() {
            return Err(AppError::Config {
                reason: "the fleet keyring is empty".to_owned(),
            });
        }
        let mut tenants = HashMap::new();
        for (tenant, policy) in &config.tenants {
            tenants.insert(tenant.clone(), policy.purposes(tenant)?);
        }
        let limits = config.limits;
        let mut opener = Opener::new(parts.trusted_signers).with_limits(limits);
        if config.danger_accept_unsigned {
            tracing::warn!(
                "DANGER: danger_accept_unsigned is on; the enclave opens unsigned requests. Never use this in production."
            );
            opener = opener.accept_unsigned();
        }
        let codec = SchemaCodec::offline().map_err(|e| AppError::Config {
            reason: format!("the offline schema catalog does not load: {e}"),
        })?;
        let caches = config.caches;
        let directory = KeyDirectory::new(
            parts.attestor,
            &parts.fleet_keys,
            &parts.result_signer,
            parts.enclave_measurement.clone(),
            config.key_directory_validity_ms,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                opener,
                unwrapper: CachingUnwrapper::new(parts.fleet_keys, caches.dek_cache_max_entries),
                signer: parts.result_signer,
                tenants,
                freshness: config.freshness,
                limits,
                codec,
                provider: parts.provider,
                model: config.model.clone(),
                actor: config.actor.clone(),
                measurement: parts.enclave_measurement,
                answered: Mutex::new(BoundedCache::new(
                    caches.dedupe_max_entries,
                    caches.dedupe_max_bytes,
                )),
                gates: Mutex::new(HashMap::new()),
                directory,
            }),
        })
    }

    /// The key directory entries of the keys this enclave holds, freshly attested and
    /// Confluent-framed (subject `zenvelope.keys-value`), for a `Keys` frame. Attestation
    /// runs off the reactor (the NSM is a blocking device).
    pub async fn key_directory(&self) -> Vec<Opaque> {
        let inner = self.inner.clone();
        let entries =
            match tokio::task::spawn_blocking(move || inner.directory.entries(now_ms())).await {
                Ok(entries) => entries,
                Err(_) => return Vec::new(),
            };
        let mut out = Vec::with_capacity(entries.len());
        for entry in &entries {
            match self.inner.codec.encode(Subject::KeysValue, entry).await {
                Ok(bytes) => out.push(Opaque::new(bytes)),
                Err(error) => {
                    tracing::error!(%error, "A key directory entry could not be encoded; it is left out.")
                }
            }
        }
        out
    }

    /// Counters of the DEK cache.
    pub fn dek_cache_stats(&self) -> DekCacheStats {
        self.inner.unwrapper.stats()
    }

    /// Number of answered requests remembered for duplicate suppression.
    pub fn answered_len(&self) -> usize {
        lock(&self.inner.answered).len()
    }

    /// Processes one request: `envelope_bytes` is the value of a `zenvelope.requests`
    /// record, Confluent-framed (first byte 0) or the bare Avro envelope.
    ///
    /// Never fails: every problem becomes a dead letter with a reason code, and every
    /// model failure a sealed ERROR answer.
    pub async fn process(&self, request_id: [u8; 16], envelope_bytes: &[u8]) -> ProcessedOutcome {
        let started = Instant::now();
        let mut trace = Trace {
            request_sha256: sha256_hex(envelope_bytes),
            header: None,
            events: Vec::new(),
        };
        let result = self.run(request_id, envelope_bytes, &mut trace).await;
        let inner = &self.inner;
        let (outcome, label) = match result {
            Ok(answer) => (
                Outcome::Result {
                    envelope: Opaque::new(answer.bytes),
                },
                answer.label,
            ),
            Err(rejection) => {
                let reason = rejection.reason_code();
                RequestRejected { reason }.emit();
                let (tenant, subject, message_id) = match &trace.header {
                    Some(h) => (
                        h.tenant.as_str(),
                        h.subject.as_str(),
                        Some(uuid_of(h.message_id.as_bytes())),
                    ),
                    None => ("", "", None),
                };
                let ctx = AuditContext {
                    actor: &inner.actor,
                    measurement: inner.measurement.as_deref(),
                    tenant,
                    subject,
                    message_id,
                    request_sha256: &trace.request_sha256,
                };
                let operation = if trace.events.is_empty() && !is_open_stage(&rejection) {
                    AuditOperation::RequestReceived
                } else {
                    AuditOperation::RequestOpened
                };
                let mut event = ctx.event(operation, rejection.audit_outcome());
                event.reason_code = Some(reason.to_owned());
                trace.events.push(event);
                (
                    Outcome::DeadLetter {
                        reason_code: reason.to_owned(),
                        detail: rejection.detail().to_owned(),
                    },
                    "dead_letter",
                )
            }
        };
        let mut audit_events = Vec::with_capacity(trace.events.len());
        for event in &trace.events {
            match inner.codec.encode(Subject::AuditValue, event).await {
                Ok(bytes) => audit_events.push(Opaque::new(bytes)),
                Err(error) => {
                    tracing::error!(%error, "Audit event could not be encoded; it is lost.")
                }
            }
        }
        RequestHandled {
            outcome: label,
            elapsed: started.elapsed(),
        }
        .emit();
        ProcessedOutcome {
            request_id,
            outcome,
            audit_events,
        }
    }

    async fn run(
        &self,
        request_id: [u8; 16],
        bytes: &[u8],
        trace: &mut Trace,
    ) -> Result<Answer, Rejection> {
        let inner = &self.inner;
        let env = self.decode(bytes).await?;
        trace.header = Some(env.header.clone());
        if env.header.kind != Kind::Request {
            return Err(Rejection::WrongKind);
        }
        if env.header.message_id.as_bytes() != &request_id {
            return Err(Rejection::RequestIdMismatch);
        }
        inner.opener.verify(&env).map_err(Rejection::Envelope)?;
        let allowed = inner
            .tenants
            .get(&env.header.tenant)
            .ok_or(Rejection::TenantNotAllowed)?;
        if !allowed.contains(&env.header.purpose) {
            return Err(Rejection::PurposeNotAllowed);
        }

        // One request id at a time: a duplicate waits for the first to finish, then is
        // answered from the cache without a second model call.
        let gate = Gate::enter(inner, request_id);
        let _held = gate.gate.lock().await;
        let cached = lock(&inner.answered).get(&request_id).cloned();
        if let Some(answered) = cached {
            if *answered.request_sha256 != *trace.request_sha256 {
                return Err(Rejection::RequestIdReused);
            }
            let ctx = self.context(&env, &trace.request_sha256);
            let mut event = ctx.event(AuditOperation::RequestReceived, AuditOutcome::Success);
            event.reason_code = Some(REASON_DUPLICATE.to_owned());
            event.result_sha256 = Some(answered.result_sha256.to_string());
            trace.events.push(event);
            return Ok(Answer {
                bytes: answered.result.as_ref().clone(),
                label: "duplicate",
            });
        }
        self.check_freshness(env.header.created_at_ms)?;

        let opened_with = env
            .recipients
            .iter()
            .find(|r| inner.unwrapper.holds(r))
            .map(|r| (r.key_id.clone(), r.key_version));
        let header = env.header.clone();
        let worker = self.inner.clone();
        let opened =
            tokio::task::spawn_blocking(move || worker.opener.open(env, &worker.unwrapper))
                .await
                .map_err(|_| Rejection::Internal("open_panicked"))?
                .map_err(Rejection::Envelope)?;
        let input = self.model_input(&opened).await?;
        {
            let ctx = self.context_of(&header, &trace.request_sha256);
            let mut event = ctx.event(AuditOperation::RequestOpened, AuditOutcome::Success);
            if let Some((key_id, key_version)) = opened_with {
                event.key_id = Some(key_id);
                event.key_version = Some(key_version);
            }
            trace.events.push(event);
        }

        let (answer, remember) = self.answer(opened, input, &header, trace).await?;
        if remember {
            let result_sha256: Arc<str> = sha256_hex(&answer.bytes).into();
            let weight = answer.bytes.len();
            lock(&inner.answered).insert(
                request_id,
                Answered {
                    request_sha256: trace.request_sha256.as_str().into(),
                    result: Arc::new(answer.bytes.clone()),
                    result_sha256,
                },
                weight,
            );
        }
        Ok(answer)
    }

    /// Calls the model and seals its answer, or a sealed ERROR if the call failed.
    /// Returns whether the answer may be remembered for duplicates.
    async fn answer(
        &self,
        opened: Opened,
        mut input: ModelInput,
        header: &zenvelope_envelope::Header,
        trace: &mut Trace,
    ) -> Result<(Answer, bool), Rejection> {
        let inner = &self.inner;
        let model = &inner.model;
        let request = ModelRequest {
            instruction: std::mem::take(&mut *input.instruction),
            input: std::mem::take(&mut *input.input),
            model: model.model.clone(),
            temperature: input.temperature.or(model.default_temperature),
            max_output_tokens: match (input.max_output_tokens, model.max_output_tokens) {
                (Some(asked), Some(cap)) => Some(asked.min(cap)),
                (asked, cap) => asked.or(cap),
            },
        };
        let provider = inner.provider.name();
        let started = Instant::now();
        let response = inner.provider.complete(request).await;
        let latency = started.elapsed();
        ModelCalled {
            provider,
            success: response.is_ok(),
            elapsed: latency,
        }
        .emit();

        // Token counts are metering data (no PHI): they go on the disclosure receipt.
        let tokens = match &response {
            Ok(r) => match (r.input_tokens, r.output_tokens) {
                (Some(i), Some(o)) => Some(TokenCount {
                    input_tokens: i64::try_from(i).unwrap_or(i64::MAX),
                    output_tokens: i64::try_from(o).unwrap_or(i64::MAX),
                }),
                _ => None,
            },
            Err(_) => None,
        };
        let (fields, plaintext, failure, disclosed_model) = match response {
            Ok(response) => {
                let disclosed_model = response.model.clone();
                let plaintext = self
                    .result_plaintext(response, latency, input.client_reference.take())
                    .await?;
                let schema_id = self.result_schema_id().await?;
                (
                    ResponseFields {
                        kind: Kind::Result,
                        content_type: media_type::ANALYSIS_RESULT.to_owned(),
                        schema_id,
                    },
                    plaintext,
                    None,
                    disclosed_model,
                )
            }
            Err(error) => {
                let reason = provider_reason(&error);
                tracing::warn!(%error, reason, "Model call failed; answering with a sealed error.");
                (
                    ResponseFields {
                        kind: Kind::Error,
                        content_type: TEXT_PLAIN_UTF8.to_owned(),
                        schema_id: 0,
                    },
                    Zeroizing::new(error_text(reason).into_bytes()),
                    Some(reason),
                    model.model.clone(),
                )
            }
        };
        drop(input);

        let worker = self.inner.clone();
        let sealed = tokio::task::spawn_blocking(move || {
            let sealed = seal_response(
                &opened,
                &fields,
                &plaintext,
                |r| !worker.unwrapper.holds(r),
                Some(&worker.signer),
            );
            // The request plaintext, its DEK and the answer plaintext are wiped here.
            drop(opened);
            drop(plaintext);
            sealed
        })
        .await
        .map_err(|_| Rejection::Internal("seal_panicked"))?
        .map_err(|_| Rejection::Internal("seal_failed"))?;
        let bytes = self.frame_result(&sealed).await?;
        let result_sha256 = sha256_hex(&bytes);
        let ctx = self.context_of(header, &trace.request_sha256);
        let mut receipt = ctx.disclosure(
            provider,
            &disclosed_model,
            header.purpose,
            Some(result_sha256.as_str()),
            failure,
        );
        if let Some(d) = receipt.disclosure.as_mut() {
            d.tokens = tokens;
        }
        let worker = self.inner.clone();
        let receipt = tokio::task::spawn_blocking(move || sign_receipt(receipt, &worker.signer))
            .await
            .map_err(|_| Rejection::Internal("receipt_sign_panicked"))?;
        trace.events.push(receipt);
        let label = if failure.is_some() {
            "error_result"
        } else {
            "result"
        };
        Ok((
            Answer { bytes, label },
            failure != Some(REASON_PROVIDER_UNAVAILABLE),
        ))
    }

    async fn decode(&self, bytes: &[u8]) -> Result<Envelope, Rejection> {
        let limits = &self.inner.limits;
        if bytes.first() == Some(&MAGIC_BYTE) {
            self.inner
                .codec
                .decode_envelope(bytes, limits)
                .await
                .map_err(|e| match e {
                    zenvelope_schemas::Error::Envelope(e) => Rejection::Envelope(e),
                    other => Rejection::Framing(other),
                })
        } else {
            zenvelope_envelope::decode(bytes, limits).map_err(Rejection::Envelope)
        }
    }

    fn check_freshness(&self, created_at_ms: i64) -> Result<(), Rejection> {
        let now = now_ms();
        let f = &self.inner.freshness;
        let age = i128::from(now) - i128::from(created_at_ms);
        if age > i128::from(f.max_age_ms) {
            return Err(Rejection::Stale);
        }
        if -age > i128::from(f.max_future_skew_ms) {
            return Err(Rejection::FromTheFuture);
        }
        Ok(())
    }

    /// Takes the model input out of the opened plaintext.
    async fn model_input(&self, opened: &Opened) -> Result<ModelInput, Rejection> {
        let header = opened.header();
        let content_type = header.content_type.as_str();
        if content_type == TEXT_PLAIN_UTF8 {
            let text =
                std::str::from_utf8(opened.plaintext()).map_err(|_| Rejection::InvalidPlaintext)?;
            return Ok(ModelInput {
                instruction: Zeroizing::new(String::new()),
                input: Zeroizing::new(text.to_owned()),
                temperature: None,
                max_output_tokens: None,
                client_reference: None,
            });
        }
        if content_type != media_type::ANALYSIS_REQUEST {
            return Err(Rejection::UnsupportedContentType);
        }
        let schema_id = u32::try_from(header.schema_id).map_err(|_| Rejection::InvalidPlaintext)?;
        let mut request: AnalysisRequest = self
            .inner
            .codec
            .decode_datum(SchemaId::new(schema_id), opened.plaintext())
            .await
            .map_err(|_| Rejection::InvalidPlaintext)?;
        let instruction = Zeroizing::new(std::mem::take(&mut request.instruction));
        let client_reference = request.client_reference.take().map(Zeroizing::new);
        let input = match &mut request.input {
            AnalysisInput::Text(text) => Zeroizing::new(std::mem::take(&mut text.text)),
            AnalysisInput::Binary(binary) if is_textual(&binary.media_type) => {
                match String::from_utf8(std::mem::take(&mut binary.data)) {
                    Ok(text) => Zeroizing::new(text),
                    Err(error) => {
                        error.into_bytes().zeroize();
                        return Err(Rejection::InvalidPlaintext);
                    }
                }
            }
            AnalysisInput::Binary(binary) => {
                binary.data.zeroize();
                return Err(Rejection::UnsupportedInput);
            }
        };
        let prefs = &request.model;
        Ok(ModelInput {
            instruction,
            input,
            temperature: prefs.temperature.map(|t| t as f32),
            max_output_tokens: prefs
                .max_output_tokens
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
            client_reference,
        })
    }

    /// The AnalysisResult datum for a model response. Zeroized on drop.
    async fn result_plaintext(
        &self,
        response: ModelResponse,
        latency: std::time::Duration,
        client_reference: Option<Zeroizing<String>>,
    ) -> Result<Zeroizing<Vec<u8>>, Rejection> {
        let usage = match (response.input_tokens, response.output_tokens) {
            (Some(i), Some(o)) => Some(TokenUsage {
                input_tokens: i64::try_from(i).unwrap_or(i64::MAX),
                output_tokens: i64::try_from(o).unwrap_or(i64::MAX),
            }),
            _ => None,
        };
        let finish_reason = match response.finish_reason.as_deref() {
            Some("stop" | "end_turn" | "stop_sequence") => FinishReason::Stop,
            Some("length" | "max_tokens") => FinishReason::Length,
            Some("content_filter" | "refusal") => FinishReason::ContentFilter,
            _ => FinishReason::Unknown,
        };
        let mut result = AnalysisResult {
            output: response.output,
            provider: response.provider.to_owned(),
            model: response.model,
            usage,
            finish_reason,
            latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
            client_reference: client_reference.map(|c| c.as_str().to_owned()),
        };
        let encoded = self
            .inner
            .codec
            .encode_datum(Subject::AnalysisResult, &result)
            .await;
        result.output.zeroize();
        if let Some(c) = result.client_reference.as_mut() {
            c.zeroize();
        }
        let (_, datum) = encoded.map_err(|_| Rejection::Internal("result_encode_failed"))?;
        Ok(Zeroizing::new(datum))
    }

    async fn result_schema_id(&self) -> Result<i32, Rejection> {
        self.inner
            .codec
            .schema_id(Subject::AnalysisResult)
            .await
            .and_then(|id| id.to_header_field())
            .map_err(|_| Rejection::Internal("result_encode_failed"))
    }

    async fn frame_result(&self, env: &Envelope) -> Result<Vec<u8>, Rejection> {
        let id = self
            .inner
            .codec
            .schema_id(Subject::ResultsValue)
            .await
            .map_err(|_| Rejection::Internal("result_encode_failed"))?;
        Ok(frame(id, &zenvelope_envelope::encode(env)))
    }

    fn context<'a>(&'a self, env: &'a Envelope, request_sha256: &'a str) -> AuditContext<'a> {
        self.context_of(&env.header, request_sha256)
    }

    fn context_of<'a>(
        &'a self,
        header: &'a zenvelope_envelope::Header,
        request_sha256: &'a str,
    ) -> AuditContext<'a> {
        AuditContext::for_header(
            &self.inner.actor,
            self.inner.measurement.as_deref(),
            header,
            request_sha256,
        )
    }
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("fleet_keys", self.inner.unwrapper.keyring())
            .field("trusted_signers", self.inner.opener.trusted())
            .field("provider", &self.inner.provider.name())
            .field("model", &self.inner.model.model)
            .finish_non_exhaustive()
    }
}

/// Whether a rejection happened at or after opening (its audit event is REQUEST_OPENED).
fn is_open_stage(rejection: &Rejection) -> bool {
    matches!(
        rejection,
        Rejection::Envelope(
            zenvelope_envelope::Error::DecryptFailed
                | zenvelope_envelope::Error::NoMatchingRecipient
        ) | Rejection::UnsupportedContentType
            | Rejection::UnsupportedInput
            | Rejection::InvalidPlaintext
    )
}

/// Transient failures (the provider's own retries are exhausted, but a later attempt may
/// pass) versus permanent ones.
fn provider_reason(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Connect { .. }
        | ProviderError::Transport { .. }
        | ProviderError::Timeout { .. } => REASON_PROVIDER_UNAVAILABLE,
        ProviderError::Status { status, .. } if *status == 429 || *status >= 500 => {
            REASON_PROVIDER_UNAVAILABLE
        }
        _ => REASON_PROVIDER_FAILED,
    }
}

/// The text of a sealed ERROR answer: the reason code, nothing from the request.
fn error_text(reason: &str) -> String {
    format!(
        "The model provider could not answer this request ({reason}). No model output was produced."
    )
}

/// Membership in the per-request-id gate map; leaves it on drop (also when the request
/// future is cancelled), removing the gate once nobody else holds it.
struct Gate<'a> {
    inner: &'a Inner,
    id: [u8; 16],
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Gate<'a> {
    fn enter(inner: &'a Inner, id: [u8; 16]) -> Self {
        let gate = lock(&inner.gates).entry(id).or_default().clone();
        Self { inner, id, gate }
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        let mut gates = lock(&self.inner.gates);
        // Clones are only made under this lock: 2 = the map's and ours.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(&self.id);
        }
    }
}
