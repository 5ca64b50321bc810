//! The enclave application core: `Processor` end to end (seal → process → open), every
//! refusal, duplicates, the DEK cache, provider failures, the PHI canary, and `serve`
//! over TCP loopback.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use zenvelope_enclave::app::{
    AppConfig, CacheConfig, FreshnessConfig, ModelConfig, ProcessedOutcome, Processor,
    ProcessorParts, REASON_PROVIDER_FAILED, TEXT_PLAIN_UTF8, TenantPolicy, serve,
};
use zenvelope_enclave::providers::offline::{OFFLINE_LABEL, OFFLINE_PROVIDER_NAME};
use zenvelope_enclave::providers::{
    BoxFuture, ModelProvider, ModelRequest, ModelResponse, OfflineAnalyser, ProviderError,
};
use zenvelope_enclave::transport::TransportAddr;
use zenvelope_enclave_protocol::{ErrorCode, Frame, Message, Outcome, Role};
use zenvelope_envelope::danger::{FixedRandomness, seal_with_fixed_randomness};
use zenvelope_envelope::{
    DekSessionPolicy, DekWrapper, Envelope, FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring,
    Kind, Limits, MessageId, Opener, Passphrase, Purpose, Sealer, SigningKey, UserKey,
};
use zenvelope_schemas::names::media_type;
use zenvelope_schemas::{
    AnalysisInput, AnalysisRequest, AnalysisResult, AuditEvent, AuditOperation, ModelPreferences,
    Outcome as AuditOutcome, PurposeOfUse, ReceiptCheck, RequestLimits, SchemaCodec, Subject,
    TextInput,
};

const TENANT: &str = "clinic-a";
const SUBJECT: &str = "sp1_subject";
const CANARY: &str = "CANARY_PHI_91c4e2";
const BITS: usize = 2048;

/// Keys shared by every test (RSA generation and PBKDF2 are slow).
struct Keys {
    fleet_pk8: Vec<u8>,
    producer: Arc<SigningKey>,
    stranger: Arc<SigningKey>,
    enclave_signer_pk8: Vec<u8>,
    user: Arc<UserKey>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let fleet = FleetPrivateKey::generate("fleet", 1, BITS).expect("fleet key");
        let enclave_signer = SigningKey::generate_ecdsa_p256("fleet-signing", 1).expect("signer");
        Keys {
            fleet_pk8: fleet.to_pkcs8_der().expect("pkcs8").to_vec(),
            producer: Arc::new(SigningKey::generate("backend", 1, BITS).expect("producer")),
            stranger: Arc::new(SigningKey::generate("stranger", 1, BITS).expect("stranger")),
            enclave_signer_pk8: enclave_signer.to_pkcs8_der().expect("pkcs8").to_vec(),
            user: Arc::new(
                UserKey::derive_with_iterations(
                    TENANT,
                    "alice@example.com",
                    &Passphrase::new("test passphrase"),
                    100_000,
                )
                .expect("user key"),
            ),
        }
    })
}

fn fleet_private() -> FleetPrivateKey {
    FleetPrivateKey::from_pkcs8_der("fleet", 1, &keys().fleet_pk8).expect("fleet")
}

fn fleet_public() -> Arc<FleetPublicKey> {
    Arc::new(
        FleetPublicKey::from_spki_der("fleet", 1, fleet_private().public_key().spki_der())
            .expect("spki"),
    )
}

fn enclave_signer() -> SigningKey {
    SigningKey::from_pkcs8_der("fleet-signing", 1, &keys().enclave_signer_pk8).expect("signer")
}

/// A provider that counts calls, can fail, echo its input or wait.
#[derive(Default)]
struct TestProvider {
    calls: AtomicUsize,
    fail: bool,
    echo: bool,
    delay: Option<Duration>,
}

impl ModelProvider for TestProvider {
    fn name(&self) -> &'static str {
        "test-provider"
    }

    fn complete(
        &self,
        request: ModelRequest,
    ) -> BoxFuture<'_, Result<ModelResponse, ProviderError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            if self.fail {
                return Err(ProviderError::Status {
                    status: 400,
                    attempts: 1,
                    detail: String::new(),
                });
            }
            let mut response = OfflineAnalyser.analyse(&request);
            response.provider = "test-provider";
            if self.echo {
                response.output = format!("{} | {}", request.instruction, request.input);
            }
            Ok(response)
        })
    }
}

fn config() -> AppConfig {
    AppConfig {
        actor: "enclave-app-test".to_owned(),
        trusted_signers: Vec::new(),
        tenants: BTreeMap::from([(
            TENANT.to_owned(),
            TenantPolicy {
                allowed_purposes: vec!["TREATMENT".to_owned(), "INDIVIDUAL_REQUEST".to_owned()],
            },
        )]),
        freshness: FreshnessConfig::default(),
        danger_accept_unsigned: false,
        limits: zenvelope_envelope::Limits::default(),
        model: ModelConfig {
            model: "test-model".to_owned(),
            max_output_tokens: Some(512),
            default_temperature: None,
        },
        caches: CacheConfig::default(),
        max_in_flight: 8,
        key_directory_validity_ms: zenvelope_enclave::app::DEFAULT_KEY_VALIDITY_MS,
    }
}

struct Fixture {
    processor: Arc<Processor>,
    provider: Arc<dyn ModelProvider>,
    calls: Arc<TestProvider>,
    codec: SchemaCodec,
}

fn fixture_with(config: AppConfig, provider: TestProvider, offline: bool) -> Fixture {
    let calls = Arc::new(provider);
    let provider: Arc<dyn ModelProvider> = if offline {
        Arc::new(OfflineAnalyser)
    } else {
        calls.clone()
    };
    let parts = ProcessorParts {
        trusted_signers: Keyring::new()
            .with(keys().producer.verifying_key().expect("vk"))
            .expect("ring"),
        fleet_keys: Keyring::new().with(fleet_private()).expect("ring"),
        result_signer: enclave_signer(),
        provider: provider.clone(),
        enclave_measurement: Some("ab".repeat(48)),
        attestor: None,
    };
    Fixture {
        processor: Arc::new(Processor::new(&config, parts).expect("processor")),
        provider,
        calls,
        codec: SchemaCodec::offline().expect("codec"),
    }
}

fn fixture() -> Fixture {
    fixture_with(config(), TestProvider::default(), false)
}

fn sealer() -> Sealer {
    let wrappers: Vec<Arc<dyn DekWrapper>> = vec![keys().user.clone(), fleet_public()];
    Sealer::new(wrappers).with_signer(keys().producer.clone())
}

fn analysis_request(text: &str) -> AnalysisRequest {
    AnalysisRequest {
        instruction: format!("Summarise. {CANARY}"),
        input: AnalysisInput::Text(TextInput::plain(text)),
        model: ModelPreferences::default(),
        limits: RequestLimits::default(),
        client_reference: Some("ref-1".to_owned()),
    }
}

async fn fields_for(codec: &SchemaCodec, req: &AnalysisRequest) -> (HeaderFields, Vec<u8>) {
    let (id, datum) = codec
        .encode_datum(Subject::AnalysisRequest, req)
        .await
        .expect("datum");
    (
        HeaderFields {
            tenant: TENANT.to_owned(),
            subject: SUBJECT.to_owned(),
            kind: Kind::Request,
            purpose: Purpose::Treatment,
            content_type: media_type::ANALYSIS_REQUEST.to_owned(),
            schema_id: id.to_header_field().expect("id"),
        },
        datum,
    )
}

async fn framed(codec: &SchemaCodec, env: &Envelope) -> Vec<u8> {
    codec
        .encode_envelope(Subject::RequestsValue, env)
        .await
        .expect("frame")
}

/// A sealed, signed, framed AnalysisRequest with a canary in it.
async fn request(f: &Fixture, sealer: &mut Sealer) -> (MessageId, Vec<u8>) {
    let (fields, datum) = fields_for(
        &f.codec,
        &analysis_request(&format!("Patient note {CANARY}.")),
    )
    .await;
    let env = sealer.seal(&fields, &datum).expect("seal");
    (env.header.message_id, framed(&f.codec, &env).await)
}

async fn process(f: &Fixture, id: MessageId, bytes: &[u8]) -> ProcessedOutcome {
    f.processor.process(*id.as_bytes(), bytes).await
}

/// The user's side: open the sealed answer with the passphrase key.
async fn user_opens(f: &Fixture, bytes: &[u8]) -> (Envelope, Vec<u8>) {
    let env = f
        .codec
        .decode_envelope(bytes, &Limits::default())
        .await
        .expect("result envelope");
    let opener = Opener::new(
        Keyring::new()
            .with(enclave_signer().verifying_key().expect("vk"))
            .expect("ring"),
    );
    let opened = opener.open(env.clone(), &*keys().user).expect("user opens");
    (env, opened.plaintext().to_vec())
}

async fn audit(f: &Fixture, out: &ProcessedOutcome) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    for e in &out.audit_events {
        events.push(
            f.codec
                .decode::<AuditEvent>(e.as_bytes())
                .await
                .expect("audit event"),
        );
    }
    events
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// No canary in anything that leaves the enclave unsealed.
fn assert_no_canary(out: &ProcessedOutcome) {
    let canary = CANARY.as_bytes();
    match &out.outcome {
        Outcome::Result { envelope } => assert!(!contains(envelope.as_bytes(), canary)),
        Outcome::DeadLetter {
            reason_code,
            detail,
        } => {
            assert!(!reason_code.contains(CANARY) && !detail.contains(CANARY));
        }
        other => panic!("unexpected outcome {other:?}"),
    }
    for e in &out.audit_events {
        assert!(!contains(e.as_bytes(), canary), "canary in an audit event");
    }
    assert!(!format!("{out:?}").contains(CANARY));
}

fn reason(out: &ProcessedOutcome) -> &str {
    out.reason_code().unwrap_or("(answered)")
}

#[tokio::test]
async fn round_trip_with_the_offline_analyser() {
    let f = fixture_with(config(), TestProvider::default(), true);
    let mut sealer = sealer();
    let (id, bytes) = request(&f, &mut sealer).await;
    let out = process(&f, id, &bytes).await;
    assert_eq!(out.request_id, *id.as_bytes());
    let result = out.result_envelope().expect("answered");
    let (env, plaintext) = user_opens(&f, result).await;
    assert_eq!(env.header.kind, Kind::Result);
    assert_eq!(env.header.correlation_id, Some(id));
    assert_eq!(env.header.content_type, media_type::ANALYSIS_RESULT);
    assert!(
        env.recipients.iter().all(|r| r.key_id != "fleet"),
        "the fleet recipient is not copied into the answer"
    );
    let answer: AnalysisResult = f
        .codec
        .decode_datum(
            zenvelope_schemas::SchemaId::new(env.header.schema_id as u32),
            &plaintext,
        )
        .await
        .expect("AnalysisResult");
    assert!(answer.output.starts_with(OFFLINE_LABEL));
    assert_eq!(answer.provider, OFFLINE_PROVIDER_NAME);
    assert_eq!(answer.client_reference.as_deref(), Some("ref-1"));

    let events = audit(&f, &out).await;
    let ops: Vec<_> = events.iter().map(|e| e.operation).collect();
    assert_eq!(
        ops,
        [AuditOperation::RequestOpened, AuditOperation::Disclosure]
    );
    let opened = &events[0];
    assert_eq!(opened.key_id.as_deref(), Some("fleet"));
    assert_eq!(opened.tenant, TENANT);
    assert_eq!(opened.subject, SUBJECT);
    assert_eq!(
        opened.message_id,
        Some(uuid::Uuid::from_bytes(*id.as_bytes()))
    );
    let receipt = &events[1];
    assert_eq!(receipt.outcome, AuditOutcome::Success);
    assert_eq!(receipt.actor, "enclave-app-test");
    assert_eq!(
        receipt.request_sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(
        receipt.result_sha256.as_deref(),
        Some(sha256_hex(result).as_str())
    );
    assert_eq!(receipt.enclave_measurement, Some("ab".repeat(48)));
    let disclosure = receipt.disclosure.as_ref().expect("receipt");
    assert_eq!(disclosure.provider, OFFLINE_PROVIDER_NAME);
    assert_eq!(disclosure.purpose, PurposeOfUse::Treatment);
    // Token counts ride on the receipt for usage metering (the offline analyser counts
    // words in and out): counts only, never text.
    let tokens = disclosure.tokens.as_ref().expect("token counts");
    assert!(
        tokens.input_tokens > 0 && tokens.output_tokens > 0,
        "{tokens:?}"
    );
    // The receipt is signed by the fleet's result-signing key, and only that key.
    let mut fleet = zenvelope_envelope::Keyring::new();
    fleet
        .insert(enclave_signer().verifying_key().expect("public"))
        .expect("insert");
    assert_eq!(receipt.check_receipt(&fleet), ReceiptCheck::Valid);
    let mut moved = receipt.clone();
    moved.subject = "sp1_someone_else".to_owned();
    assert_eq!(moved.check_receipt(&fleet), ReceiptCheck::Invalid);
    let mut stranger = zenvelope_envelope::Keyring::new();
    let forged = SigningKey::generate_ecdsa_p256("fleet-signing", 1).expect("key");
    stranger
        .insert(forged.verifying_key().expect("public"))
        .expect("insert");
    assert_eq!(receipt.check_receipt(&stranger), ReceiptCheck::Invalid);
    assert_no_canary(&out);
    let _ = &f.provider;
}

#[tokio::test]
async fn plain_text_requests_and_bare_avro_are_accepted() {
    let f = fixture();
    let fields = HeaderFields {
        tenant: TENANT.to_owned(),
        subject: SUBJECT.to_owned(),
        kind: Kind::Request,
        purpose: Purpose::IndividualRequest,
        content_type: TEXT_PLAIN_UTF8.to_owned(),
        schema_id: 0,
    };
    let env = sealer()
        .seal(&fields, b"Slept badly. Better today.")
        .expect("seal");
    let bare = zenvelope_envelope::encode(&env);
    let out = process(&f, env.header.message_id, &bare).await;
    let (_, plaintext) = user_opens(&f, out.result_envelope().expect("answered")).await;
    assert!(!plaintext.is_empty());
    assert_eq!(f.calls.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refusals_carry_their_reason_codes() {
    let f = fixture();
    let mut s = sealer();
    let (id, bytes) = request(&f, &mut s).await;

    // Signed, then tampered: the signature no longer verifies.
    let mut env = f
        .codec
        .decode_envelope(&bytes, &Limits::default())
        .await
        .expect("env");
    let last = env.payload.len() - 1;
    env.payload[last] ^= 1;
    let out = process(&f, id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "bad_signature");

    // Not a request id the frame names.
    let out = f.processor.process([7; 16], &bytes).await;
    assert_eq!(reason(&out), "request_id_mismatch");

    // Garbage and truncation.
    assert_eq!(
        reason(&f.processor.process([7; 16], b"\x02garbage").await),
        "malformed"
    );
    assert_eq!(
        reason(&f.processor.process([7; 16], &bytes[..3]).await),
        "truncated_frame"
    );

    // Unsigned.
    let wrappers: Vec<Arc<dyn DekWrapper>> = vec![keys().user.clone(), fleet_public()];
    let mut unsigned = Sealer::new(wrappers.clone());
    let (id, bytes) = request(&f, &mut unsigned).await;
    assert_eq!(reason(&process(&f, id, &bytes).await), "unsigned");

    // Signed by a key the enclave does not trust.
    let mut stranger = Sealer::new(wrappers).with_signer(keys().stranger.clone());
    let (id, bytes) = request(&f, &mut stranger).await;
    let out = process(&f, id, &bytes).await;
    assert_eq!(reason(&out), "untrusted_signer");
    let events = audit(&f, &out).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].operation, AuditOperation::RequestReceived);
    assert_eq!(events[0].outcome, AuditOutcome::Denied);
    assert_eq!(events[0].reason_code.as_deref(), Some("untrusted_signer"));

    // Wrong tenant, disallowed purpose.
    let (mut fields, datum) = fields_for(&f.codec, &analysis_request("x")).await;
    fields.tenant = "clinic-b".to_owned();
    let env = s.seal(&fields, &datum).expect("seal");
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "tenant_not_allowed");
    fields.tenant = TENANT.to_owned();
    fields.purpose = Purpose::Research;
    let env = s.seal(&fields, &datum).expect("seal");
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "purpose_not_allowed");

    // Unsupported content type.
    fields.purpose = Purpose::Treatment;
    fields.content_type = "application/pdf".to_owned();
    let env = s.seal(&fields, &datum).expect("seal");
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "unsupported_content_type");
    let events = audit(&f, &out).await;
    assert_eq!(events[0].operation, AuditOperation::RequestOpened);
    assert_eq!(events[0].outcome, AuditOutcome::Failure);
    assert_no_canary(&out);

    // A result is not a request.
    let f2 = fixture();
    let (id, bytes) = request(&f2, &mut s).await;
    let answered = process(&f2, id, &bytes).await;
    let result = answered.result_envelope().expect("answered").to_vec();
    let result_env = f
        .codec
        .decode_envelope(&result, &Limits::default())
        .await
        .expect("env");
    let out = process(&f, result_env.header.message_id, &result).await;
    // The fleet signing key is not a trusted producer, but the kind is checked first.
    assert_eq!(reason(&out), "wrong_kind");
    assert_eq!(
        f.calls.calls.load(Ordering::SeqCst),
        0,
        "no refusal calls the model"
    );
}

#[tokio::test]
async fn tampered_ciphertext_is_decrypt_failed() {
    let mut cfg = config();
    cfg.danger_accept_unsigned = true;
    let f = fixture_with(cfg, TestProvider::default(), false);
    let wrappers: Vec<Arc<dyn DekWrapper>> = vec![keys().user.clone(), fleet_public()];
    let mut unsigned = Sealer::new(wrappers);
    let (fields, datum) = fields_for(&f.codec, &analysis_request("x")).await;
    let mut env = unsigned.seal(&fields, &datum).expect("seal");
    let last = env.payload.len() - 1;
    env.payload[last] ^= 1;
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "decrypt_failed");
    assert_eq!(
        audit(&f, &out).await[0].operation,
        AuditOperation::RequestOpened
    );
    // The fleet's wrapped key tampered.
    let mut env = unsigned.seal(&fields, &datum).expect("seal");
    let fleet = env
        .recipients
        .iter_mut()
        .find(|r| r.key_id == "fleet")
        .expect("fleet");
    fleet.wrapped_key[0] ^= 1;
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "decrypt_failed");
    assert_eq!(f.calls.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn freshness_is_enforced() {
    let f = fixture();
    let (fields, datum) = fields_for(&f.codec, &analysis_request("x")).await;
    let now = MessageId::new_v7().timestamp_ms();
    let randomness = |n: u8| FixedRandomness {
        dek: [n; 32],
        wrap_ivs: vec![[n; 12]],
        payload_iv: [n.wrapping_add(1); 12],
    };
    for (created_at_ms, expected) in [
        (now - 16 * 60 * 1000, "stale"),
        (now + 3 * 60 * 1000, "from_the_future"),
        (now - 60 * 1000, "(answered)"),
    ] {
        let id = MessageId::new_v7();
        let env = seal_with_fixed_randomness(
            &mut sealer(),
            &fields,
            &datum,
            id,
            created_at_ms,
            &randomness(created_at_ms as u8),
        )
        .expect("seal");
        let out = process(&f, id, &framed(&f.codec, &env).await).await;
        assert_eq!(reason(&out), expected);
    }
}

#[tokio::test]
async fn duplicates_get_the_same_answer_without_a_second_model_call() {
    let f = fixture();
    let (id, bytes) = request(&f, &mut sealer()).await;
    let (a, b) = tokio::join!(process(&f, id, &bytes), process(&f, id, &bytes));
    let c = process(&f, id, &bytes).await;
    let first = a.result_envelope().expect("answered");
    assert_eq!(Some(first), b.result_envelope());
    assert_eq!(Some(first), c.result_envelope());
    assert_eq!(f.calls.calls.load(Ordering::SeqCst), 1);
    let events = audit(&f, &c).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason_code.as_deref(), Some("duplicate"));
    assert_eq!(
        events[0].result_sha256.as_deref(),
        Some(sha256_hex(first).as_str())
    );
    assert_eq!(f.processor.answered_len(), 1);

    // Another envelope under the same message id is refused, not answered from cache.
    let (fields, datum) = fields_for(&f.codec, &analysis_request("other")).await;
    let randomness = FixedRandomness {
        dek: [9; 32],
        wrap_ivs: vec![[9; 12]],
        payload_iv: [8; 12],
    };
    let env = seal_with_fixed_randomness(
        &mut sealer(),
        &fields,
        &datum,
        id,
        id.timestamp_ms(),
        &randomness,
    )
    .expect("seal");
    let out = process(&f, id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "request_id_reused");
    assert_eq!(f.calls.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_dek_session_costs_one_rsa_unwrap() {
    let f = fixture();
    let mut s = sealer().with_dek_session(DekSessionPolicy {
        max_messages: 10,
        max_age_ms: 60_000,
    });
    let (id1, b1) = request(&f, &mut s).await;
    let (id2, b2) = request(&f, &mut s).await;
    assert!(process(&f, id1, &b1).await.result_envelope().is_some());
    assert!(process(&f, id2, &b2).await.result_envelope().is_some());
    let stats = f.processor.dek_cache_stats();
    assert_eq!(stats.unwraps, 1);
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.entries, 1);
    // A new session: a new unwrap.
    let (id3, b3) = request(&f, &mut sealer()).await;
    assert!(process(&f, id3, &b3).await.result_envelope().is_some());
    assert_eq!(f.processor.dek_cache_stats().unwraps, 2);
}

#[tokio::test]
async fn a_failed_model_call_is_answered_with_a_sealed_error() {
    let f = fixture_with(
        config(),
        TestProvider {
            fail: true,
            ..TestProvider::default()
        },
        false,
    );
    let (id, bytes) = request(&f, &mut sealer()).await;
    let out = process(&f, id, &bytes).await;
    let (env, plaintext) = user_opens(&f, out.result_envelope().expect("sealed error")).await;
    assert_eq!(env.header.kind, Kind::Error);
    assert_eq!(env.header.content_type, TEXT_PLAIN_UTF8);
    let text = String::from_utf8(plaintext).expect("utf-8");
    assert!(text.contains(REASON_PROVIDER_FAILED), "{text}");
    let events = audit(&f, &out).await;
    let receipt = events
        .iter()
        .find(|e| e.operation == AuditOperation::Disclosure)
        .expect("receipt");
    assert_eq!(receipt.outcome, AuditOutcome::Failure);
    assert_eq!(receipt.reason_code.as_deref(), Some(REASON_PROVIDER_FAILED));
    assert_no_canary(&out);
    // A permanent failure is remembered: the redelivery gets the same sealed error.
    let again = process(&f, id, &bytes).await;
    assert_eq!(again.result_envelope(), out.result_envelope());
    assert_eq!(f.calls.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_canary_never_leaves_unsealed() {
    let f = fixture_with(
        config(),
        TestProvider {
            echo: true,
            ..TestProvider::default()
        },
        false,
    );
    let (id, bytes) = request(&f, &mut sealer()).await;
    let out = process(&f, id, &bytes).await;
    assert_no_canary(&out);
    // The echo reached the user, sealed.
    let (_, plaintext) = user_opens(&f, out.result_envelope().expect("answered")).await;
    assert!(contains(&plaintext, CANARY.as_bytes()));
    // Binary input is refused without echoing anything.
    let mut req = analysis_request("x");
    req.input = AnalysisInput::Binary(zenvelope_schemas::BinaryInput {
        data: CANARY.as_bytes().to_vec(),
        media_type: "application/octet-stream".to_owned(),
    });
    let (fields, datum) = fields_for(&f.codec, &req).await;
    let env = sealer().seal(&fields, &datum).expect("seal");
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "unsupported_input");
    assert_no_canary(&out);
}

#[tokio::test]
async fn textual_documents_sent_as_bytes_are_analysed_as_text() {
    let f = fixture_with(
        config(),
        TestProvider {
            echo: true,
            ..TestProvider::default()
        },
        false,
    );
    let seal_bytes = |data: Vec<u8>, media_type: &str| {
        let mut req = analysis_request("Summarise the observation.");
        req.input = AnalysisInput::Binary(zenvelope_schemas::BinaryInput {
            data,
            media_type: media_type.to_owned(),
        });
        req
    };
    // A FHIR resource (application/fhir+json) reaches the model as its text.
    let fhir = format!(r#"{{"resourceType":"Observation","note":"{CANARY}"}}"#);
    let req = seal_bytes(
        fhir.clone().into_bytes(),
        "application/fhir+json; fhirVersion=4.0",
    );
    let (fields, datum) = fields_for(&f.codec, &req).await;
    let env = sealer().seal(&fields, &datum).expect("seal");
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_no_canary(&out);
    let (_, plaintext) = user_opens(&f, out.result_envelope().expect("answered")).await;
    assert!(
        contains(&plaintext, fhir.as_bytes()),
        "the model saw the document"
    );
    // Bytes that claim to be text but are not UTF-8 are refused, not guessed at.
    let req = seal_bytes(vec![0xff, 0xfe, 0x00, 0x41], "text/plain");
    let (fields, datum) = fields_for(&f.codec, &req).await;
    let env = sealer().seal(&fields, &datum).expect("seal");
    let out = process(&f, env.header.message_id, &framed(&f.codec, &env).await).await;
    assert_eq!(reason(&out), "invalid_plaintext");
}

async fn read_until<F: FnMut(&Frame) -> bool>(
    conn: &mut zenvelope_enclave::transport::Connection,
    mut done: F,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), conn.recv())
            .await
            .expect("in time")
            .expect("recv")
            .expect("open");
        let stop = done(&frame);
        frames.push(frame);
        if stop {
            return frames;
        }
    }
}

/// A fixture whose model answers after `delay`, served on a loopback port with
/// `max_in_flight`: the fixture, the address, the shutdown token and the server task.
async fn serving(
    delay: Duration,
    max_in_flight: usize,
) -> (
    Fixture,
    TransportAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let f = fixture_with(
        config(),
        TestProvider {
            delay: Some(delay),
            ..TestProvider::default()
        },
        false,
    );
    let listener = "tcp://127.0.0.1:0"
        .parse::<TransportAddr>()
        .expect("addr")
        .bind()
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        f.processor.clone(),
        shutdown.clone(),
        max_in_flight,
    ));
    (f, addr, shutdown, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_concurrent_requests_over_tcp() {
    let (f, addr, shutdown, server) = serving(Duration::from_millis(50), 8).await;

    let mut requests = Vec::new();
    let mut s = sealer();
    for _ in 0..6 {
        requests.push(request(&f, &mut s).await);
    }
    for round in 0..2 {
        // Round 1 reconnects after the first connection was dropped.
        let mut conn = addr.connect().await.expect("connect");
        assert_eq!(conn.hello(Role::Host).await.expect("hello"), Role::Enclave);
        for (n, (id, bytes)) in requests.iter().enumerate() {
            let frame = Frame::new(
                100 + n as u64,
                Message::Process {
                    request_id: *id.as_bytes(),
                    envelope: bytes.clone().into(),
                },
            );
            conn.send(frame).await.expect("send");
        }
        conn.send(Frame::new(7, Message::Ping { nonce: 42 }))
            .await
            .expect("ping");
        let mut processed = 0;
        let frames = read_until(&mut conn, |frame| {
            matches!(frame.message, Message::Processed { .. }) && {
                processed += 1;
                processed == requests.len()
            }
        })
        .await;
        let mut pong = false;
        for frame in frames {
            match frame.message {
                Message::Processed {
                    request_id,
                    outcome,
                    audit_events,
                } => {
                    let n = (frame.stream_id - 100) as usize;
                    assert_eq!(request_id, *requests[n].0.as_bytes(), "round {round}");
                    assert!(matches!(outcome, Outcome::Result { .. }), "{outcome:?}");
                    assert!(!audit_events.is_empty());
                }
                Message::Pong { nonce } => {
                    assert_eq!((frame.stream_id, nonce), (7, 42));
                    pong = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if !pong {
            let frames = read_until(&mut conn, |f| matches!(f.message, Message::Pong { .. })).await;
            assert_eq!(frames.len(), 1);
        }
        drop(conn);
    }
    // Each request reached the model once; round 1 was answered from the cache.
    assert_eq!(f.calls.calls.load(Ordering::SeqCst), requests.len());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve stops")
        .expect("serve task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_replies_busy_over_the_in_flight_bound() {
    let (f, addr, shutdown, server) = serving(Duration::from_millis(500), 1).await;
    let mut conn = addr.connect().await.expect("connect");
    conn.hello(Role::Host).await.expect("hello");
    let mut s = sealer();
    for n in 0..3u64 {
        let (id, bytes) = request(&f, &mut s).await;
        let frame = Frame::new(
            n + 1,
            Message::Process {
                request_id: *id.as_bytes(),
                envelope: bytes.into(),
            },
        );
        conn.send(frame).await.expect("send");
    }
    let frames = read_until(&mut conn, |f| {
        matches!(f.message, Message::Processed { .. })
    })
    .await;
    let busy: Vec<u64> = frames
        .iter()
        .filter(|f| {
            matches!(
                f.message,
                Message::Error {
                    code: ErrorCode::BUSY,
                    ..
                }
            )
        })
        .map(|f| f.stream_id)
        .collect();
    assert_eq!(busy, [2, 3]);
    assert_eq!(frames.last().map(|f| f.stream_id), Some(1));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve stops")
        .expect("serve task");
}
