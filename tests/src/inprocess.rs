//! The host and the enclave application run as tasks of the calling process, for the
//! pipeline benchmark (`benches/pipeline.rs`): either the real thing (the enclave's
//! [`Processor`] behind [`serve`], the host's [`RequestHandler`] in
//! [`zenvelope_runtime::run`]) or a **plaintext baseline** that takes the same path with
//! every envelope step left out, so that the difference between the two is the cost of
//! the envelope.
//!
//! Both variants share everything else: the broker, the model server, the provider's HTTP
//! client (plain TCP straight to the model server, no egress tunnel, for both), the
//! framed host⇄enclave connection through [`EnclaveClient`], the runtime's at-least-once
//! loop, and the number and size of records produced per request (a result and two audit
//! events). What the baseline leaves out: on the host, decoding the request and result
//! envelopes; in the enclave, decoding, signature check, DEK unwrap, open, response seal
//! and signature, and the real audit events (it sends opaque records of the same sizes).
//!
//! [`PlaintextBaseline`] and [`PlaintextBaselineHandler`] exist only in this test crate.
//! They send prompts and answers in the clear through Kafka and must never be used
//! outside a benchmark.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use zenvelope_enclave::app::{
    AppConfig, ProcessedOutcome, Processor, ProcessorParts, RequestProcessor, serve,
};
use zenvelope_enclave::host::{EnclaveClient, RequestHandler};
use zenvelope_enclave::providers::http::TcpConnector;
use zenvelope_enclave::providers::{
    self, ModelProvider, ModelRequest, ProviderConfig, ProviderKind, RetryPolicy,
};
use zenvelope_enclave::transport::TransportAddr;
use zenvelope_enclave_protocol::{Opaque, Outcome};
use zenvelope_envelope::{FleetPrivateKey, Keyring, Kind, SigningKey, VerifyingKey};
use zenvelope_runtime::{Disposition, Handler, Inbound, KafkaConfig, Outbound, ProcessorConfig};
use zenvelope_schemas::framing::frame;
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{AnalysisResult, FinishReason, SchemaCodec, Subject};

use crate::pipeline::{PRODUCER_KEY_ID, TENANT};

/// The model name both variants ask for.
pub const MODEL: &str = "gpt-test";

/// Topics of one run, unique so that runs on the same broker do not see each other.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Requests (the host consumes them).
    pub requests: String,
    /// Results.
    pub results: String,
    /// Dead letters.
    pub dlq: String,
    /// Audit events.
    pub audit: String,
}

impl Topics {
    /// Fresh topic names with `label` in them.
    pub fn unique(label: &str) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let name = |what: &str| format!("bench.{label}.{id}.{what}");
        Self {
            requests: name("requests"),
            results: name("results"),
            dlq: name("dlq"),
            audit: name("audit"),
        }
    }

    /// Creates the topics (requests and results with `partitions`).
    pub async fn create(&self, kafka: &KafkaConfig, partitions: i32) -> Result<()> {
        zenvelope_runtime::ensure_topics(
            kafka,
            &[
                (self.requests.as_str(), partitions),
                (self.results.as_str(), partitions),
                (self.dlq.as_str(), 1),
                (self.audit.as_str(), 1),
            ],
        )
        .await?;
        Ok(())
    }
}

/// The enclave's keys, kept as PKCS#8 so each run can build a fresh [`Processor`].
pub struct EnclaveKeys {
    /// The fleet decryption key, PKCS#8 DER.
    pub fleet_pkcs8: Vec<u8>,
    /// The result signing key, PKCS#8 DER.
    pub result_signer_pkcs8: Vec<u8>,
    /// The producer key the enclave trusts ([`PRODUCER_KEY_ID`] version 1), SPKI DER.
    pub producer_spki: Vec<u8>,
}

/// How a variant is run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The host's `max_in_flight` (runtime loop).
    pub host_max_in_flight: usize,
    /// The enclave's `max_in_flight`.
    pub app_max_in_flight: usize,
}

/// The model provider both variants use: OpenAI format over plain TCP to `base_url`.
pub fn provider(base_url: &str) -> Result<Arc<dyn ModelProvider>> {
    let mut config = ProviderConfig::from_env(ProviderKind::OpenAi, base_url);
    config.api_key = None;
    config.retry = RetryPolicy {
        max_attempts: 3,
        attempt_timeout_ms: 30_000,
        backoff_base_ms: 50,
        ..RetryPolicy::default()
    };
    Ok(Arc::from(providers::build_provider(
        config,
        Arc::new(TcpConnector),
    )?))
}

/// The real enclave processor with `keys`, allowing [`TENANT`].
pub fn real_processor(
    keys: &EnclaveKeys,
    provider: Arc<dyn ModelProvider>,
    app_max_in_flight: usize,
) -> Result<Processor> {
    let config = AppConfig::from_toml(&format!(
        r#"
max_in_flight = {app_max_in_flight}
[tenants.{TENANT}]
allowed_purposes = ["INDIVIDUAL_REQUEST"]
[model]
model = "{MODEL}"
"#
    ))?;
    let trusted = Keyring::new().with(VerifyingKey::from_spki_der(
        PRODUCER_KEY_ID,
        1,
        &keys.producer_spki,
    )?)?;
    Ok(Processor::new(
        &config,
        ProcessorParts {
            trusted_signers: trusted,
            fleet_keys: Keyring::new().with(FleetPrivateKey::from_pkcs8_der(
                "fleet",
                1,
                &keys.fleet_pkcs8,
            )?)?,
            result_signer: SigningKey::from_pkcs8_der(
                "fleet-results",
                1,
                &keys.result_signer_pkcs8,
            )?,
            provider,
            enclave_measurement: None,
            attestor: None,
        },
    )?)
}

/// TEST AND BENCHMARK ONLY: an enclave stand-in that treats the request bytes as a UTF-8
/// prompt, calls the model through the same provider client, and answers with the
/// `AnalysisResult` datum (Confluent-framed) **unsealed**. Audit events are opaque
/// records of the given sizes, so the host produces as many bytes as for the real
/// processor.
pub struct PlaintextBaseline {
    provider: Arc<dyn ModelProvider>,
    codec: SchemaCodec,
    audit_event_sizes: Vec<usize>,
}

impl PlaintextBaseline {
    /// A baseline calling `provider`, sending audit records of `audit_event_sizes` bytes.
    pub fn new(provider: Arc<dyn ModelProvider>, audit_event_sizes: Vec<usize>) -> Result<Self> {
        Ok(Self {
            provider,
            codec: SchemaCodec::offline()?,
            audit_event_sizes,
        })
    }

    async fn answer(&self, bytes: &[u8]) -> Outcome {
        let Ok(prompt) = std::str::from_utf8(bytes) else {
            return Outcome::DeadLetter {
                reason_code: "invalid_plaintext".to_owned(),
                detail: "The baseline request is not UTF-8.".to_owned(),
            };
        };
        let request = ModelRequest {
            instruction: String::new(),
            input: prompt.to_owned(),
            model: MODEL.to_owned(),
            temperature: None,
            max_output_tokens: None,
        };
        let response = match self.provider.complete(request).await {
            Ok(response) => response,
            Err(error) => {
                return Outcome::DeadLetter {
                    reason_code: "provider_failed".to_owned(),
                    detail: error.to_string(),
                };
            }
        };
        let result = AnalysisResult {
            output: response.output,
            provider: response.provider.to_owned(),
            model: response.model,
            usage: None,
            finish_reason: FinishReason::Stop,
            latency_ms: 0,
            client_reference: None,
        };
        match self
            .codec
            .encode_datum(Subject::AnalysisResult, &result)
            .await
        {
            Ok((id, datum)) => Outcome::Result {
                envelope: Opaque::new(frame(id, &datum)),
            },
            Err(error) => Outcome::DeadLetter {
                reason_code: "result_encode_failed".to_owned(),
                detail: error.to_string(),
            },
        }
    }
}

impl RequestProcessor for PlaintextBaseline {
    async fn process(&self, request_id: [u8; 16], bytes: &[u8]) -> ProcessedOutcome {
        let outcome = self.answer(bytes).await;
        ProcessedOutcome {
            request_id,
            outcome,
            audit_events: self
                .audit_event_sizes
                .iter()
                .map(|n| Opaque::new(vec![0x5a; *n]))
                .collect(),
        }
    }
}

/// TEST AND BENCHMARK ONLY: the host side of the baseline. Reads the request id from the
/// `zenvelope-message-id` header, forwards the raw record value through the same
/// [`EnclaveClient`] (retrying like the real host while the enclave is busy or away),
/// and produces the answer and the audit records with the real host's headers.
pub struct PlaintextBaselineHandler {
    client: EnclaveClient,
    topics: Topics,
    result_schema_id: Vec<u8>,
}

impl PlaintextBaselineHandler {
    /// A handler forwarding to `client` and producing to `topics`.
    pub async fn new(client: EnclaveClient, topics: Topics) -> Result<Self> {
        let codec = SchemaCodec::offline()?;
        let id = codec.schema_id(Subject::AnalysisResult).await?;
        Ok(Self {
            client,
            topics,
            result_schema_id: id.to_string().into_bytes(),
        })
    }
}

impl Handler for PlaintextBaselineHandler {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        let Some(request_id) = msg
            .header(header::MESSAGE_ID)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| uuid::Uuid::parse_str(v).ok())
        else {
            return Disposition::dead_letter("no_message_id", "The record has no message id.");
        };
        let request_key = request_id.to_string();
        let mut backoff = Duration::from_millis(50);
        let processed = loop {
            match self
                .client
                .process(*request_id.as_bytes(), msg.payload.clone())
                .await
            {
                Ok(processed) => break processed,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        let audit = processed.audit_events.into_iter().map(|event| Outbound {
            topic: self.topics.audit.clone(),
            key: Some(request_key.clone().into_bytes()),
            payload: event.into_vec(),
            headers: Vec::new(),
        });
        match processed.outcome {
            Outcome::Result { envelope } => {
                let headers = vec![
                    (
                        header::KIND.to_owned(),
                        Kind::Result.symbol().as_bytes().to_vec(),
                    ),
                    (header::TENANT.to_owned(), TENANT.as_bytes().to_vec()),
                    // The same length as a real subject pseudonym's header.
                    (header::SUBJECT.to_owned(), vec![b's'; 47]),
                    (
                        header::MESSAGE_ID.to_owned(),
                        uuid::Uuid::now_v7().to_string().into_bytes(),
                    ),
                    (
                        header::CORRELATION_ID.to_owned(),
                        request_key.clone().into_bytes(),
                    ),
                    (header::SCHEMA_ID.to_owned(), self.result_schema_id.clone()),
                ];
                let mut records = vec![Outbound {
                    topic: self.topics.results.clone(),
                    key: Some(request_key.clone().into_bytes()),
                    payload: envelope.into_vec(),
                    headers,
                }];
                records.extend(audit);
                Disposition::Produce(records)
            }
            Outcome::DeadLetter {
                reason_code,
                detail,
            } => Disposition::DeadLetter {
                reason_code,
                detail,
                also: audit.collect(),
            },
            _ => Disposition::dead_letter("unknown_outcome", "Unknown outcome."),
        }
    }
}

/// Wraps the real host handler so that its records go to a run's own topics instead of
/// `zenvelope.results` and `zenvelope.audit` (a rename of the topic string, nothing else).
pub struct Retopic<H> {
    inner: H,
    topics: Topics,
}

impl<H> Retopic<H> {
    fn rename(&self, mut record: Outbound) -> Outbound {
        if record.topic == topic::RESULTS {
            record.topic.clone_from(&self.topics.results);
        } else if record.topic == topic::AUDIT {
            record.topic.clone_from(&self.topics.audit);
        }
        record
    }
}

impl<H: Handler> Handler for Retopic<H> {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        match self.inner.handle(msg).await {
            Disposition::Produce(records) => {
                Disposition::Produce(records.into_iter().map(|r| self.rename(r)).collect())
            }
            Disposition::DeadLetter {
                reason_code,
                detail,
                also,
            } => Disposition::DeadLetter {
                reason_code,
                detail,
                also: also.into_iter().map(|r| self.rename(r)).collect(),
            },
            other => other,
        }
    }
}

/// Which pipeline to run.
pub enum Variant {
    /// The real processor and host handler.
    Encrypted(Processor),
    /// The plaintext baseline.
    Baseline(Box<PlaintextBaseline>),
}

/// A host and an enclave running as tasks; stopped (and awaited) by [`InProcess::stop`].
pub struct InProcess {
    shutdown: CancellationToken,
    app: tokio::task::JoinHandle<()>,
    host: tokio::task::JoinHandle<Result<zenvelope_runtime::RunSummary>>,
}

impl InProcess {
    /// Starts the enclave side (on a loopback port) and the host loop over
    /// `topics.requests`.
    pub async fn start(
        variant: Variant,
        kafka: &KafkaConfig,
        topics: &Topics,
        bounds: Bounds,
    ) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let listen: TransportAddr = "tcp://127.0.0.1:0".parse()?;
        let listener = listen.bind().await?;
        let addr = listener.local_addr()?;
        let app_stop = shutdown.clone();
        let client = EnclaveClient::new(addr, Duration::from_secs(60));
        let codec = Arc::new(SchemaCodec::offline()?);
        let mut config = ProcessorConfig::new(
            format!("bench-host-{}", uuid::Uuid::now_v7()),
            vec![topics.requests.clone()],
        );
        config.max_in_flight = bounds.host_max_in_flight;
        config.dlq_topic.clone_from(&topics.dlq);
        config.shutdown_grace_ms = 5_000;
        let kafka = kafka.clone();
        let host_stop = shutdown.clone();
        let (app, host) = match variant {
            Variant::Encrypted(processor) => {
                let app = tokio::spawn(serve(
                    listener,
                    Arc::new(processor),
                    app_stop,
                    bounds.app_max_in_flight,
                ));
                let handler = Arc::new(Retopic {
                    inner: RequestHandler::new(
                        Arc::new(client),
                        codec.clone(),
                        Duration::from_secs(1),
                        shutdown.clone(),
                    ),
                    topics: topics.clone(),
                });
                let host = tokio::spawn(async move {
                    Ok(zenvelope_runtime::run(&kafka, &config, codec, handler, host_stop).await?)
                });
                (app, host)
            }
            Variant::Baseline(baseline) => {
                let app = tokio::spawn(serve(
                    listener,
                    Arc::<PlaintextBaseline>::from(baseline),
                    app_stop,
                    bounds.app_max_in_flight,
                ));
                let handler =
                    Arc::new(PlaintextBaselineHandler::new(client, topics.clone()).await?);
                let host = tokio::spawn(async move {
                    Ok(zenvelope_runtime::run(&kafka, &config, codec, handler, host_stop).await?)
                });
                (app, host)
            }
        };
        Ok(Self {
            shutdown,
            app,
            host,
        })
    }

    /// Stops the host (it drains and commits) and then the enclave side.
    pub async fn stop(self) -> Result<zenvelope_runtime::RunSummary> {
        self.shutdown.cancel();
        let summary = self.host.await.context("the host task panicked")??;
        self.app.await.context("the enclave task panicked")?;
        Ok(summary)
    }
}

/// An enclave processor for key-directory tests: fleet keys of `versions` (RSA-2048, for
/// speed), the offline analyser, `tenant` allowed `INDIVIDUAL_REQUEST`, attesting with an
/// attestor of `ca` that reports the dev measurements of `enclave-app`.
pub fn attested_processor(
    ca: &zenvelope_attestation::danger::DevCa,
    tenant: &str,
    versions: &[i32],
) -> Result<Processor> {
    use zenvelope_attestation::danger::dev_measurements;
    use zenvelope_enclave::app::launch::DEV_MEASUREMENT_LABEL;
    let mut fleet = Keyring::new();
    for v in versions {
        fleet.insert(FleetPrivateKey::generate("fleet", *v, 2048)?)?;
    }
    let pcrs = dev_measurements(DEV_MEASUREMENT_LABEL);
    let pcr0 = hex::encode(&pcrs[&0]);
    let attestor: Arc<dyn zenvelope_attestation::Attestor> =
        Arc::new(ca.issue("enclave-app", pcrs)?);
    Ok(Processor::new(
        &AppConfig::from_toml(&format!(
            "[tenants.{tenant}]\nallowed_purposes = [\"INDIVIDUAL_REQUEST\"]\n[model]\nmodel = \"offline\"\n"
        ))?,
        ProcessorParts {
            trusted_signers: Keyring::new(),
            fleet_keys: fleet,
            result_signer: SigningKey::generate_ecdsa_p256("fleet-results", 1)?,
            provider: Arc::new(providers::OfflineAnalyser),
            enclave_measurement: Some(pcr0),
            attestor: Some(attestor),
        },
    )?)
}
