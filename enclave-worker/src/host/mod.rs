//! `enclave-host`: the parent-instance side of the enclave worker.
//!
//! Consumes sealed requests from `zenvelope.requests` through `zenvelope-runtime`'s
//! at-least-once loop, forwards each one to the enclave over the [`transport`](crate::transport)
//! (vsock in production, TCP on loopback locally), and turns the enclave's answer into
//! records: the sealed result on `zenvelope.results` (keyed by request id), or a dead letter
//! on `zenvelope.dlq` with the enclave's reason code, plus the audit events on
//! `zenvelope.audit`. The runtime stores the request's offset only after all of them are
//! acknowledged by the broker.
//!
//! Beside the loop, the host keeps the enclave's attested key directory published on
//! `zenvelope.keys` ([`keep_published`]).
//!
//! The host never holds a key that opens anything: it reads only the public envelope header
//! (message id, tenant, kind) to route and label records. While the enclave is unreachable
//! the host keeps retrying the same request (back-pressure: nothing is dead-lettered because
//! of an outage); on shutdown a request still waiting is left unacknowledged and is
//! delivered again after the restart.

mod client;
mod keys;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use zenvelope_enclave_protocol::Outcome;
use zenvelope_envelope::{Kind, Limits};
use zenvelope_runtime::{
    Disposition, Handler, Inbound, KafkaConfig, Outbound, ProcessorConfig, TelemetryConfig,
};
use zenvelope_schemas::SchemaCodec;
use zenvelope_schemas::names::{header, topic};

pub use client::{ClientError, EnclaveClient, Processed};
pub use keys::{KeyDirectoryConfig, PublishError, keep_published, publish_once};

use crate::transport::TransportAddr;

/// Prefix of the environment variables that override the host's configuration, e.g.
/// `ZENVELOPE_HOST__KAFKA__BOOTSTRAP_SERVERS`.
pub const ENV_PREFIX: &str = "ZENVELOPE_HOST";

/// The host's configuration (TOML, with [`ENV_PREFIX`] overrides).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// The consumer group, topics and processing bounds.
    pub consumer: ProcessorConfig,
    /// Where the enclave listens and how long to wait for it.
    pub enclave: EnclaveLinkConfig,
    /// The egress proxy the enclave reaches the model and KMS through; none when absent.
    #[serde(default)]
    pub egress: Option<EgressSection>,
    /// Metrics and logs.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Confluent Schema Registry URL; the offline catalog when absent.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    /// Create the zenvelope topics at start-up if they are missing (local runs).
    #[serde(default)]
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics`.
    #[serde(default = "default_partitions")]
    pub topic_partitions: i32,
    /// Publishing the enclave's attested keys on `zenvelope.keys`.
    #[serde(default)]
    pub key_directory: KeyDirectoryConfig,
}

/// How the host reaches the enclave's processing port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveLinkConfig {
    /// `vsock://CID:PORT` in production, `tcp://127.0.0.1:PORT` locally.
    pub address: String,
    /// How long one request may take inside the enclave, model call and its retries
    /// included, before the host sends it again.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Longest pause between attempts while the enclave is unreachable.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

/// The host's egress proxy: the enclave's only way out (model APIs, KMS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    /// Where the enclave's egress connections arrive: `vsock://4294967295:PORT` (any CID)
    /// in production, `tcp://127.0.0.1:PORT` locally. Not the processing port.
    pub listen: String,
    /// Allowed destinations, `host` (port 443) or `host:port`; IP literals only when
    /// listed exactly. Everything else is refused.
    pub allow: Vec<String>,
    /// Timeout for the enclave's handshake and for connecting to a destination.
    #[serde(default = "default_egress_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A stream silent in both directions for this long is closed. Keep it above the
    /// provider's per-attempt timeout: a model that thinks sends nothing.
    #[serde(default = "default_egress_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Most streams relayed at once.
    #[serde(default = "default_egress_max_streams")]
    pub max_streams: usize,
}

fn default_egress_connect_timeout_ms() -> u64 {
    crate::egress::DEFAULT_CONNECT_TIMEOUT_MS
}
fn default_egress_idle_timeout_ms() -> u64 {
    crate::egress::DEFAULT_IDLE_TIMEOUT_MS
}
fn default_egress_max_streams() -> usize {
    crate::egress::DEFAULT_MAX_STREAMS
}

impl EgressSection {
    /// The proxy configuration this section describes.
    pub fn proxy_config(&self) -> anyhow::Result<crate::egress::EgressProxyConfig> {
        use anyhow::Context as _;
        let listen: TransportAddr = self
            .listen
            .parse()
            .context("egress.listen is not a transport address")?;
        let policy = zenvelope_enclave_protocol::EgressPolicy::from_entries(&self.allow)
            .context("egress.allow has an invalid entry")?;
        Ok(crate::egress::EgressProxyConfig {
            listen,
            policy,
            connect_timeout_ms: self.connect_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            max_streams: self.max_streams,
        })
    }
}

fn default_partitions() -> i32 {
    4
}
fn default_request_timeout_ms() -> u64 {
    120_000
}
fn default_max_backoff_ms() -> u64 {
    5_000
}

impl HostConfig {
    /// Reads the configuration file (if any) and the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, zenvelope_runtime::Error> {
        zenvelope_runtime::load_config(path, ENV_PREFIX)
    }
}

/// The runtime handler: one sealed request in, records out.
pub struct RequestHandler {
    client: Arc<EnclaveClient>,
    codec: Arc<SchemaCodec>,
    limits: Limits,
    max_backoff: Duration,
    shutdown: CancellationToken,
}

impl RequestHandler {
    /// A handler forwarding to `client`. Share that client with the key directory
    /// publisher ([`keep_published`]): the enclave serves one host connection at a time.
    pub fn new(
        client: Arc<EnclaveClient>,
        codec: Arc<SchemaCodec>,
        max_backoff: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            client,
            codec,
            limits: Limits::default(),
            max_backoff,
            shutdown,
        }
    }

    async fn forward(&self, request_id: [u8; 16], value: &[u8]) -> Option<Processed> {
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match self.client.process(request_id, value.to_vec()).await {
                Ok(processed) => return Some(processed),
                Err(error) => error,
            };
            metrics::counter!(METRIC_ENCLAVE_RETRIES).increment(1);
            if attempt == 1 || attempt.is_power_of_two() {
                tracing::warn!(%error, attempt, "The enclave did not answer; sending the request again.");
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// Attempts to reach the enclave that failed (connection refused, timeout, lost).
pub const METRIC_ENCLAVE_RETRIES: &str = "zenvelope_host_enclave_retries_total";

impl Handler for RequestHandler {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        // Only the public header is read here: routing needs the message id and kind.
        let envelope = match self.codec.decode_envelope(&msg.payload, &self.limits).await {
            Ok(envelope) => envelope,
            Err(error) if error.is_retriable() => {
                return Disposition::retry(error.reason_code(), error.to_string());
            }
            Err(error) => return Disposition::dead_letter(error.reason_code(), error.to_string()),
        };
        if envelope.header.kind != Kind::Request {
            return Disposition::dead_letter(
                "wrong_kind",
                format!(
                    "The envelope on the request topic is of kind {}, not REQUEST.",
                    envelope.header.kind
                ),
            );
        }
        let request_id = *envelope.header.message_id.as_bytes();
        let request_key = envelope.header.message_id.to_string();
        drop(envelope);

        let Some(processed) = self.forward(request_id, &msg.payload).await else {
            return Disposition::Abandon;
        };
        let audit: Vec<Outbound> = processed
            .audit_events
            .into_iter()
            .map(|event| Outbound {
                topic: topic::AUDIT.to_owned(),
                key: Some(request_key.clone().into_bytes()),
                payload: event.into_vec(),
                headers: Vec::new(),
            })
            .collect();
        match processed.outcome {
            Outcome::Result { envelope } => {
                let bytes = envelope.into_vec();
                let result = match self.codec.decode_envelope(&bytes, &self.limits).await {
                    Ok(result) => result,
                    Err(error) => {
                        return Disposition::DeadLetter {
                            reason_code: "enclave_bad_result".to_owned(),
                            detail: format!("The enclave's result could not be decoded: {error}"),
                            also: audit,
                        };
                    }
                };
                let h = &result.header;
                let headers = vec![
                    (header::KIND.to_owned(), h.kind.symbol().as_bytes().to_vec()),
                    (header::TENANT.to_owned(), h.tenant.as_bytes().to_vec()),
                    (header::SUBJECT.to_owned(), h.subject.as_bytes().to_vec()),
                    (
                        header::MESSAGE_ID.to_owned(),
                        h.message_id.to_string().into_bytes(),
                    ),
                    (
                        header::CORRELATION_ID.to_owned(),
                        request_key.clone().into_bytes(),
                    ),
                    (
                        header::SCHEMA_ID.to_owned(),
                        h.schema_id.to_string().into_bytes(),
                    ),
                ];
                let mut records = vec![Outbound {
                    topic: topic::RESULTS.to_owned(),
                    key: Some(request_key.into_bytes()),
                    payload: bytes,
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
                also: audit,
            },
            _ => Disposition::DeadLetter {
                reason_code: "enclave_unknown_outcome".to_owned(),
                detail: "The enclave answered with an outcome this host does not know.".to_owned(),
                also: audit,
            },
        }
    }
}

/// Runs the host until `shutdown` is cancelled: telemetry, the egress proxy, then the
/// at-least-once loop over the request topic.
pub async fn run(
    config: HostConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<zenvelope_runtime::RunSummary> {
    use anyhow::Context as _;
    zenvelope_runtime::install_metrics(&config.telemetry)?;
    let enclave: TransportAddr = config
        .enclave
        .address
        .parse()
        .context("enclave.address is not a transport address")?;
    let codec = Arc::new(
        SchemaCodec::from_registry_url(config.schema_registry_url.as_deref())
            .context("cannot set up the schema codec")?,
    );
    if config.create_topics {
        let topics: Vec<(&str, i32)> = [
            topic::REQUESTS,
            topic::RESULTS,
            topic::DLQ,
            topic::AUDIT,
            topic::KEYS,
        ]
        .into_iter()
        .map(|t| (t, config.topic_partitions))
        .collect();
        zenvelope_runtime::ensure_topics(&config.kafka, &topics).await?;
    }
    // The proxy outlives the processing loop: requests still in flight at shutdown need
    // their model calls to finish.
    let egress_stop = CancellationToken::new();
    let _stop_egress = egress_stop.clone().drop_guard();
    if let Some(egress) = &config.egress {
        let proxy = crate::egress::EgressProxy::new(egress.proxy_config()?)?;
        let listener = proxy
            .bind()
            .await
            .context("cannot start the egress proxy")?;
        tracing::info!(address = %listener.local_addr()?, "Egress proxy listening.");
        tokio::spawn(proxy.serve(listener, egress_stop.clone()));
    }
    // One connection for requests and key directory alike: the enclave serves one host
    // connection at a time.
    let client = Arc::new(EnclaveClient::new(
        enclave,
        Duration::from_millis(config.enclave.request_timeout_ms),
    ));
    if let Err(error) = client.ensure_connected().await {
        tracing::warn!(%error, "The enclave is not reachable yet; requests will wait for it.");
    }
    if config.key_directory.publish {
        let producer = zenvelope_runtime::Producer::new(&config.kafka)?;
        tokio::spawn(keep_published(
            client.clone(),
            producer,
            codec.clone(),
            Duration::from_millis(config.key_directory.refresh_ms),
            shutdown.clone(),
        ));
    }
    let handler = Arc::new(RequestHandler::new(
        client,
        codec.clone(),
        Duration::from_millis(config.enclave.max_backoff_ms),
        shutdown.clone(),
    ));
    Ok(zenvelope_runtime::run(&config.kafka, &config.consumer, codec, handler, shutdown).await?)
}
