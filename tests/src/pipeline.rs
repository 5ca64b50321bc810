//! The whole enclave-worker pipeline on real parts, for end-to-end and fault tests:
//! tansu (Kafka protocol), moto (AWS KMS API), a model server speaking the OpenAI and
//! Anthropic formats, and the `enclave-app` and `enclave-host` binaries as child processes
//! talking TCP on loopback, with dev attestation and the fleet keys sealed under a moto KMS
//! key. A producer side (user key, producer signing key) seals requests and opens answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use zenvelope_enclave::kms::{self, SealedKey};
use zenvelope_envelope::{
    Envelope, FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring, Kind, MetadataKey, Opener,
    Passphrase, Purpose, Sealer, SigningKey, UserKey,
};
use zenvelope_runtime::{KafkaConfig, Outbound, Producer, Subscriber};
use zenvelope_schemas::names::{media_type, topic};
use zenvelope_schemas::{AnalysisResult, SchemaCodec, SchemaId};

use crate::model_server::ModelServer;
use crate::{Moto, OutputLog, Tansu, free_port, workspace_binary};

/// The tenant the pipeline's producer writes for.
pub const TENANT: &str = "therapy-journal";
/// The user whose passphrase seals the requests.
pub const USER: &str = "ada@example.org";
/// Key id of the producer's signing key.
pub const PRODUCER_KEY_ID: &str = "journal-backend";
/// Dev passphrase (the user's secret in a real app).
pub const PASSPHRASE: &str = "correct horse battery staple";
/// PBKDF2 iterations: the minimum accepted, to keep tests fast.
pub const ITERATIONS: u32 = 100_000;
/// The tenant's metadata key (pseudonyms of subjects).
pub const METADATA_KEY: [u8; 32] = [7; 32];
/// RSA size for the test keys (the smallest accepted, for speed).
const RSA_BITS: usize = 2048;

/// Which model API the enclave calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions.
    OpenAi,
    /// Anthropic messages.
    Anthropic,
}

/// Knobs of a pipeline.
#[derive(Debug, Clone)]
pub struct Options {
    /// The model API.
    pub api: Api,
    /// Partitions of the request topic.
    pub partitions: i32,
    /// The host's in-flight bound.
    pub host_max_in_flight: usize,
    /// The enclave's in-flight bound.
    pub app_max_in_flight: usize,
    /// Provider attempts per request.
    pub provider_attempts: u32,
    /// Provider per-attempt timeout.
    pub provider_attempt_timeout_ms: u64,
    /// The host's limit on a request record's size (bigger ones go to the DLQ).
    pub host_max_message_bytes: usize,
    /// The host egress proxy's `max_streams`: model calls at once, through the host.
    pub egress_max_streams: usize,
    /// `RUST_LOG` of the services.
    pub log_filter: String,
    /// The host consumer's `auto.commit.interval.ms` (librdkafka's default: 5,000): how
    /// often stored offsets are committed.
    pub host_commit_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api: Api::OpenAi,
            partitions: 4,
            host_max_in_flight: 64,
            app_max_in_flight: 64,
            provider_attempts: 3,
            provider_attempt_timeout_ms: 2_000,
            host_max_message_bytes: 1024 * 1024,
            egress_max_streams: zenvelope_enclave::egress::DEFAULT_MAX_STREAMS,
            log_filter: "info,zenvelope_enclave=debug,zenvelope_runtime=debug".to_owned(),
            host_commit_interval_ms: 5_000,
        }
    }
}

/// The producer side: the keys a backend (and its user) hold.
pub struct ProducerSide {
    user: Arc<UserKey>,
    signer: Arc<SigningKey>,
    fleet_public: Arc<Keyring<FleetPublicKey>>,
    result_opener: Opener,
    subject: String,
}

/// A sealed request, as produced.
pub struct SentRequest {
    /// The request's message id.
    pub message_id: String,
    /// The Kafka value (Confluent-framed envelope).
    pub value: Vec<u8>,
}

/// An opened answer.
#[derive(Debug)]
pub struct Answer {
    /// The request it answers (correlation id).
    pub correlation_id: String,
    /// `RESULT` or `ERROR`.
    pub kind: Kind,
    /// The answer text (the model output for results, the error text for errors).
    pub text: String,
    /// The provider and model named in a result.
    pub provider: Option<(String, String)>,
}

/// Logged by `enclave-app` once it listens for the host.
const APP_READY: &str = "Enclave application ready";
/// Where the enclave writes its dev attestation root, in the pipeline's directory.
const DEV_ROOT_FILE: &str = "dev-attestation-root.der";

/// The PCR0 the dev attestor of `enclave-app` reports, pinned by local producers.
pub fn dev_enclave_pins() -> zenvelope_producer::PinnedMeasurements {
    let pcrs = zenvelope_attestation::danger::dev_measurements(
        zenvelope_enclave::app::launch::DEV_MEASUREMENT_LABEL,
    );
    zenvelope_producer::PinnedMeasurements::new().with_pcr(0, pcrs[&0].clone())
}

/// Logged by `enclave-host` once its egress proxy listens (the consumer starts next).
const HOST_READY: &str = "Egress proxy listening";

struct Service {
    name: &'static str,
    child: Child,
}

/// A running pipeline. Everything stops when it is dropped.
pub struct Pipeline {
    /// The broker.
    pub tansu: Tansu,
    /// The KMS emulator.
    pub moto: Moto,
    /// The model server.
    pub model: ModelServer,
    /// Every line the services wrote to stdout/stderr, across restarts.
    pub logs: OutputLog,
    /// The Kafka client configuration for the broker.
    pub kafka: KafkaConfig,
    /// The schema codec (offline catalog).
    pub codec: Arc<SchemaCodec>,
    dir: tempfile::TempDir,
    options: Options,
    producer_side: ProducerSide,
    producer: Producer,
    app: Option<Service>,
    host: Option<Service>,
    metrics_port: u16,
}

impl Pipeline {
    /// Starts every part and waits until the host is ready.
    pub async fn start(options: Options) -> Result<Self> {
        let tansu = Tansu::start()?;
        let moto = Moto::start()?;
        let model = ModelServer::start().await?;
        let dir = tempfile::Builder::new()
            .prefix("zenvelope-pipeline-")
            .tempdir()?;
        let kafka = KafkaConfig::new(tansu.bootstrap_servers());
        let codec = Arc::new(SchemaCodec::offline()?);

        // Keys: the fleet's (sealed under a moto KMS key) and the producer side's.
        let fleet = FleetPrivateKey::generate("fleet", 1, RSA_BITS)?;
        let result_signer = SigningKey::generate_ecdsa_p256("fleet-results", 1)?;
        let producer_signer = Arc::new(SigningKey::generate(PRODUCER_KEY_ID, 1, RSA_BITS)?);
        let kms_client = kms::danger::local_kms_client(&moto.endpoint_url(), "us-east-1");
        let kms_key = kms_client
            .create_key()
            .description("zenvelope test fleet key")
            .send()
            .await
            .context("moto CreateKey")?
            .key_metadata
            .context("no key metadata")?
            .key_id;
        let seal = |der: Vec<u8>, purpose: &'static str, key_id: &str| {
            let client = kms_client.clone();
            let kms_key = kms_key.clone();
            let context = SealedKey::standard_context(purpose, key_id, 1);
            async move {
                let out = client
                    .encrypt()
                    .key_id(kms_key)
                    .plaintext(Blob::new(der))
                    .set_encryption_context(Some(context.into_iter().collect()))
                    .send()
                    .await
                    .context("moto Encrypt")?;
                let blob = out.ciphertext_blob.context("no ciphertext blob")?;
                anyhow::Ok(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
            }
        };
        let fleet_blob = seal(
            fleet.to_pkcs8_der()?.to_vec(),
            kms::PURPOSE_FLEET_KEY,
            "fleet",
        )
        .await?;
        let signing_blob = seal(
            result_signer.to_pkcs8_der()?.to_vec(),
            kms::PURPOSE_SIGNING_KEY,
            "fleet-results",
        )
        .await?;

        let user = Arc::new(UserKey::derive_with_iterations(
            TENANT,
            USER,
            &Passphrase::new(PASSPHRASE),
            ITERATIONS,
        )?);
        let producer_side = ProducerSide {
            user,
            signer: producer_signer.clone(),
            fleet_public: Arc::new(Keyring::new().with(FleetPublicKey::from_spki_der(
                "fleet",
                1,
                fleet.public_key().spki_der(),
            )?)?),
            result_opener: Opener::new(Keyring::new().with(result_signer.verifying_key()?)?),
            subject: MetadataKey::from_bytes(METADATA_KEY).pseudonym(TENANT, USER),
        };

        let app_port = free_port()?;
        let egress_port = free_port()?;
        let forward_port = free_port()?;
        let metrics_port = free_port()?;
        let moto_port = moto
            .endpoint_url()
            .rsplit(':')
            .next()
            .unwrap_or("0")
            .to_owned();
        let model_port = model.addr().port();
        let (provider_kind, model_name) = match options.api {
            Api::OpenAi => ("openai", "gpt-test"),
            Api::Anthropic => ("anthropic", "claude-test"),
        };
        let app_toml = format!(
            r#"
listen = "tcp://127.0.0.1:{app_port}"
host_egress = "tcp://127.0.0.1:{egress_port}"

[attestation]
mode = "danger_dev"
danger_dev_root_out = "{dev_root}"

[kms]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{forward_port}"
danger_without_recipient = true
forward = {{ listen = "127.0.0.1:{forward_port}", host = "127.0.0.1", port = {moto_port} }}

[[keys.fleet]]
key_id = "fleet"
key_version = 1
ciphertext_base64 = "{fleet_blob}"

[keys.result_signing]
key_id = "fleet-results"
key_version = 1
ciphertext_base64 = "{signing_blob}"

[provider]
kind = "{provider_kind}"
base_url = "{base_url}"
danger_allow_plain_http = true
max_attempts = {attempts}
attempt_timeout_ms = {attempt_timeout}
backoff_base_ms = 50

[app]
max_in_flight = {app_in_flight}
trusted_signers = [{{ key_id = "{PRODUCER_KEY_ID}", key_version = 1, spki_der_hex = "{spki}" }}]

[app.tenants.{TENANT}]
allowed_purposes = ["INDIVIDUAL_REQUEST", "TREATMENT"]

[app.model]
model = "{model_name}"
"#,
            base_url = model.base_url(),
            dev_root = dir.path().join(DEV_ROOT_FILE).display(),
            attempts = options.provider_attempts,
            attempt_timeout = options.provider_attempt_timeout_ms,
            app_in_flight = options.app_max_in_flight,
            spki = hex::encode(producer_signer.spki_der()),
        );
        let host_toml = format!(
            r#"
create_topics = true
topic_partitions = {partitions}

[kafka]
bootstrap_servers = "{bootstrap}"
properties = {{ "auto.commit.interval.ms" = "{commit_interval}" }}

[consumer]
group_id = "zenvelope-enclave-host"
topics = ["{requests}"]
max_in_flight = {host_in_flight}
max_message_bytes = {host_max_message_bytes}
shutdown_grace_ms = 5000

[enclave]
address = "tcp://127.0.0.1:{app_port}"
request_timeout_ms = 30000
max_backoff_ms = 1000

[egress]
listen = "tcp://127.0.0.1:{egress_port}"
allow = ["127.0.0.1:{moto_port}", "127.0.0.1:{model_port}"]
max_streams = {egress_max_streams}

[telemetry]
metrics_listen = "127.0.0.1:{metrics_port}"
"#,
            partitions = options.partitions,
            bootstrap = tansu.bootstrap_servers(),
            requests = topic::REQUESTS,
            host_in_flight = options.host_max_in_flight,
            host_max_message_bytes = options.host_max_message_bytes,
            egress_max_streams = options.egress_max_streams,
            commit_interval = options.host_commit_interval_ms,
        );
        std::fs::write(dir.path().join("enclave-app.toml"), app_toml)?;
        std::fs::write(dir.path().join("enclave-host.toml"), host_toml)?;

        let producer = Producer::new(&kafka)?;
        let mut pipeline = Self {
            tansu,
            moto,
            model,
            logs: OutputLog::default(),
            kafka,
            codec,
            dir,
            options,
            producer_side,
            producer,
            app: None,
            host: None,
            metrics_port,
        };
        // The topics exist before anything consumes or produces.
        zenvelope_runtime::ensure_topics(
            &pipeline.kafka,
            &[
                (topic::REQUESTS, pipeline.options.partitions),
                (topic::RESULTS, pipeline.options.partitions),
                (topic::DLQ, 1),
                (topic::AUDIT, 1),
            ],
        )
        .await?;
        // As on a Nitro host: the host (and its egress proxy) first, then the enclave,
        // which releases its keys through that proxy.
        pipeline.start_host()?;
        pipeline.start_app()?;
        Ok(pipeline)
    }

    fn spawn(&self, name: &'static str, config: &str) -> Result<Service> {
        let bin = workspace_binary("zenvelope-enclave", name)?;
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(self.dir.path().join(config))
            .env("RUST_LOG", &self.options.log_filter)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        self.logs.capture(name, &mut child);
        Ok(Service { name, child })
    }

    /// Starts (or restarts) the enclave application and waits for its ready line.
    pub fn start_app(&mut self) -> Result<()> {
        let before = self.logs.count_for("enclave-app", APP_READY);
        let service = self.spawn("enclave-app", "enclave-app.toml")?;
        self.app = Some(service);
        self.wait_for_log_count(
            "enclave-app",
            APP_READY,
            before + 1,
            Duration::from_secs(60),
        )
    }

    /// Starts (or restarts) the host and waits until its egress proxy listens.
    pub fn start_host(&mut self) -> Result<()> {
        let before = self.logs.count_for("enclave-host", HOST_READY);
        let service = self.spawn("enclave-host", "enclave-host.toml")?;
        self.host = Some(service);
        self.wait_for_log_count(
            "enclave-host",
            HOST_READY,
            before + 1,
            Duration::from_secs(60),
        )
    }

    /// Process id of the running `enclave-app` (for `/proc/<pid>/status`).
    pub fn app_pid(&self) -> Option<u32> {
        self.app.as_ref().map(|s| s.child.id())
    }

    /// Process id of the running `enclave-host`.
    pub fn host_pid(&self) -> Option<u32> {
        self.host.as_ref().map(|s| s.child.id())
    }

    /// Kills the host with SIGKILL: no drain, no commit.
    pub fn kill_host(&mut self) -> Result<()> {
        kill(self.host.take())
    }

    /// Kills the enclave application with SIGKILL.
    pub fn kill_app(&mut self) -> Result<()> {
        kill(self.app.take())
    }

    /// Stops the host with SIGTERM and waits for its exit status.
    pub fn stop_host_gracefully(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut service = self.host.take().context("the host is not running")?;
        let pid = service.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = service.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = service.child.kill();
                bail!("{} did not stop within {timeout:?}", service.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_log_count(
        &mut self,
        service: &str,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs.count_for(service, needle) >= count {
                return Ok(());
            }
            for s in [&mut self.app, &mut self.host].into_iter().flatten() {
                if s.name == service
                    && let Some(status) = s.child.try_wait()?
                {
                    bail!(
                        "{service} exited with {status}; its output:\n{}",
                        self.logs.text_for(service)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{service} did not log {needle:?} within {timeout:?}; its output:\n{}",
                    self.logs.text_for(service)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Seals a request whose text is `text` (plain text content) with the default fields.
    pub fn seal_text(&self, text: &str) -> Result<SentRequest> {
        self.seal_with(text, |_| {})
    }

    /// Seals a request, letting `adjust` change the header fields first.
    pub fn seal_with(
        &self,
        text: &str,
        adjust: impl FnOnce(&mut HeaderFields),
    ) -> Result<SentRequest> {
        let mut fields = self.default_fields();
        adjust(&mut fields);
        let envelope = self.sealer().seal(&fields, text.as_bytes())?;
        self.frame(&envelope)
    }

    /// Seals like [`Pipeline::seal_text`] but dated `age` in the past: a captured request
    /// replayed later.
    pub fn seal_dated(&self, text: &str, age: Duration) -> Result<SentRequest> {
        use zenvelope_envelope::danger::{FixedRandomness, seal_with_fixed_randomness};
        let created_at_ms = i64::try_from(
            (std::time::SystemTime::now() - age)
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?;
        // Fresh random values: "fixed" only in that this call chooses them.
        let mut random = [0u8; 56];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let randomness = FixedRandomness {
            dek: random[..32].try_into()?,
            wrap_ivs: vec![random[32..44].try_into()?],
            payload_iv: random[44..56].try_into()?,
        };
        let envelope = seal_with_fixed_randomness(
            &mut self.sealer(),
            &self.default_fields(),
            text.as_bytes(),
            zenvelope_envelope::MessageId::new_v7(),
            created_at_ms,
            &randomness,
        )?;
        self.frame(&envelope)
    }

    /// Seals without a producer signature.
    pub fn seal_unsigned(&self, text: &str) -> Result<SentRequest> {
        let side = &self.producer_side;
        let mut sealer = Sealer::new(vec![side.user.clone(), side.fleet_public.clone()]);
        let envelope = sealer.seal(&self.default_fields(), text.as_bytes())?;
        self.frame(&envelope)
    }

    fn default_fields(&self) -> HeaderFields {
        HeaderFields {
            tenant: TENANT.into(),
            subject: self.producer_side.subject.clone(),
            kind: Kind::Request,
            purpose: Purpose::IndividualRequest,
            content_type: "text/plain; charset=utf-8".into(),
            schema_id: 0,
        }
    }

    /// A sealer for the producer side (user + fleet recipients, signed).
    pub fn sealer(&self) -> Sealer {
        let side = &self.producer_side;
        Sealer::new(vec![side.user.clone(), side.fleet_public.clone()])
            .with_signer(side.signer.clone())
    }

    /// Everything an outside client needs to talk to this pipeline as its producer and
    /// user would, for `tests/interop/python/independent_client.py`: credentials, the
    /// producer's signing key (private: a test key), the fleet's public key and the
    /// result-signing public key. Binary values are hex.
    pub fn client_keys_json(&self) -> Result<serde_json::Value> {
        use zenvelope_envelope::Keyed as _;
        let side = &self.producer_side;
        let fleet = side.fleet_public.current().context("no fleet public key")?;
        let result_key = side
            .result_opener
            .trusted()
            .current()
            .context("no result key")?;
        Ok(serde_json::json!({
            "bootstrap": self.kafka.bootstrap_servers,
            "tenant": TENANT,
            "identity": USER,
            "passphrase": PASSPHRASE,
            "iterations": ITERATIONS,
            "subject": side.subject,
            "producer_key_id": side.signer.key_id(),
            "producer_key_version": side.signer.key_version(),
            "producer_private_pkcs8": hex::encode(side.signer.to_pkcs8_der()?.as_slice()),
            "fleet_key_id": fleet.key_id(),
            "fleet_key_version": fleet.key_version(),
            "fleet_public_spki": hex::encode(fleet.spki_der()),
            "result_key_id": result_key.key_id(),
            "result_key_version": result_key.key_version(),
            "result_public_spki": hex::encode(result_key.spki_der()),
        }))
    }

    /// The records of the key directory topic (`zenvelope.keys`), as published by the
    /// host: Confluent-framed `KeyDirectoryEntry` values, at least `count` of them.
    pub async fn key_directory_records(&self, count: usize) -> Result<Vec<Vec<u8>>> {
        let records = self
            .read_topic(topic::KEYS, count, Duration::from_secs(60))
            .await?;
        anyhow::ensure!(
            records.len() >= count,
            "the key directory holds {} records, expected {count}",
            records.len()
        );
        Ok(records.into_iter().map(|r| r.payload).collect())
    }

    /// What a browser page of this pipeline's tenant knows: its user's credentials (typed
    /// in by the user), the subject pseudonym (from the backend), and the trust it pins at
    /// build time (the enclave's dev attestation root and PCR0), as JSON for the browser
    /// SDK's interop tool.
    pub fn browser_session_json(&self) -> Result<serde_json::Value> {
        let root = std::fs::read(self.dir.path().join(DEV_ROOT_FILE))
            .context("the enclave did not write its dev attestation root")?;
        let pcrs = zenvelope_attestation::danger::dev_measurements(
            zenvelope_enclave::app::launch::DEV_MEASUREMENT_LABEL,
        );
        Ok(serde_json::json!({
            "tenant": TENANT,
            "identity": USER,
            "passphrase": PASSPHRASE,
            "iterations": ITERATIONS,
            "subject": self.producer_side.subject,
            "dev_root_b64": base64::engine::general_purpose::STANDARD.encode(root),
            "pcrs": {"0": hex::encode(&pcrs[&0])},
        }))
    }

    /// Runs the independent Python client (`tests/interop/python/independent_client.py`,
    /// the spec implementation and librdkafka) against this pipeline with the user's keys
    /// and `args`; its JSON report on success, an error with its output otherwise.
    pub async fn run_independent_client(&self, args: &[&str]) -> Result<serde_json::Value> {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys.json");
        std::fs::write(&keys, serde_json::to_vec(&self.client_keys_json()?)?)?;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/interop/python/independent_client.py"
        );
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let output = tokio::process::Command::new(&python)
            .arg(script)
            .arg("--keys")
            .arg(&keys)
            .arg("--bootstrap")
            .arg(&self.kafka.bootstrap_servers)
            .args(args)
            .output()
            .await
            .with_context(|| format!("cannot run {python} {script}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "the independent client failed ({}): {stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_str(stdout.trim())?)
    }

    /// The producer's public signing key, as the enclave trusts it.
    pub fn producer_verifying_key(&self) -> Result<zenvelope_envelope::VerifyingKey> {
        Ok(self.producer_side.signer.verifying_key()?)
    }

    /// A producer SDK client for this pipeline, as a backend would configure it: the
    /// producer's signing key, and the fleet's keys from the attested key directory,
    /// verified against the enclave's dev attestation root and its PCR0.
    pub fn sdk_client(&self) -> Result<zenvelope_producer::Client> {
        let policy = self.key_directory_policy()?;
        self.sdk_builder()?
            .key_directory(policy)
            .build()
            .map_err(Into::into)
    }

    /// The key directory policy a local producer uses for this pipeline: the dev root the
    /// enclave wrote at start-up and the dev PCR0 of `enclave-app`.
    pub fn key_directory_policy(&self) -> Result<zenvelope_producer::KeyDirectoryPolicy> {
        let root = std::fs::read(self.dir.path().join(DEV_ROOT_FILE))
            .context("the enclave did not write its dev attestation root")?;
        Ok(zenvelope_producer::KeyDirectoryPolicy::danger_dev_root(
            &root,
            dev_enclave_pins(),
        )?)
    }

    /// An SDK client that pins the fleet's keys directly instead of reading the key
    /// directory.
    pub fn sdk_client_pinned(&self) -> Result<zenvelope_producer::Client> {
        use zenvelope_envelope::Keyed as _;
        let side = &self.producer_side;
        let fleet = side.fleet_public.current().context("no fleet key")?;
        let fleet =
            FleetPublicKey::from_spki_der(fleet.key_id(), fleet.key_version(), fleet.spki_der())?;
        let result = side
            .result_opener
            .trusted()
            .current()
            .context("no result key")?;
        let result = zenvelope_envelope::VerifyingKey::from_spki_der(
            result.key_id(),
            result.key_version(),
            result.spki_der(),
        )?;
        Ok(self
            .sdk_builder()?
            .fleet_keys(Keyring::new().with(fleet)?)
            .result_keys(Keyring::new().with(result)?)
            .build()?)
    }

    fn sdk_builder(&self) -> Result<zenvelope_producer::ClientBuilder> {
        use zenvelope_envelope::Keyed as _;
        let side = &self.producer_side;
        let signer = SigningKey::from_pkcs8_der(
            side.signer.key_id(),
            side.signer.key_version(),
            &side.signer.to_pkcs8_der()?,
        )?;
        Ok(
            zenvelope_producer::Client::builder(self.kafka.clone(), TENANT)
                .signer(signer)
                .metadata_key(MetadataKey::from_bytes(METADATA_KEY))
                .codec(self.codec.clone())
                .pbkdf2_iterations(ITERATIONS),
        )
    }

    /// Frames an envelope for the request topic.
    pub fn frame(&self, envelope: &Envelope) -> Result<SentRequest> {
        let id = self
            .codec
            .catalog()
            .id(zenvelope_schemas::SchemaName::Envelope);
        Ok(SentRequest {
            message_id: envelope.header.message_id.to_string(),
            value: zenvelope_schemas::framing::frame(id, &zenvelope_envelope::encode(envelope)),
        })
    }

    /// Produces raw bytes to the request topic.
    pub async fn produce_raw(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.producer
            .send(Outbound::new(topic::REQUESTS, Some(key.to_vec()), value))
            .await?;
        Ok(())
    }

    /// Produces a sealed request, keyed by the subject pseudonym.
    pub async fn produce(&self, request: &SentRequest) -> Result<()> {
        self.produce_raw(self.producer_side.subject.as_bytes(), request.value.clone())
            .await
    }

    /// Reads every record of `topic` from the beginning until `count` have arrived or
    /// `timeout` passes; returns what arrived.
    pub async fn read_topic(
        &self,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<zenvelope_runtime::Inbound>> {
        let group = format!("reader-{}", uuid::Uuid::now_v7());
        let subscriber = Subscriber::new(&self.kafka, &group, &[topic], true)?;
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while records.len() < count {
            match tokio::time::timeout_at(deadline, subscriber.recv()).await {
                Ok(record) => records.push(record?),
                Err(_) => break,
            }
        }
        Ok(records)
    }

    /// Opens a result record with the user's key.
    pub async fn open_answer(&self, value: &[u8]) -> Result<Answer> {
        let (_, datum) = zenvelope_schemas::framing::unframe(value)?;
        let side = &self.producer_side;
        let opened = side
            .result_opener
            .decode_and_open(datum, &*side.user)
            .context("the user cannot open the answer")?;
        let header = opened.header().clone();
        let correlation_id = header
            .correlation_id
            .map(|c| c.to_string())
            .context("an answer without a correlation id")?;
        let (text, provider) = if header.content_type == media_type::ANALYSIS_RESULT {
            let id = SchemaId::try_from(header.schema_id)?;
            let result: AnalysisResult = self.codec.decode_datum(id, opened.plaintext()).await?;
            (result.output, Some((result.provider, result.model)))
        } else {
            (String::from_utf8(opened.plaintext().to_vec())?, None)
        };
        Ok(Answer {
            correlation_id,
            kind: header.kind,
            text,
            provider,
        })
    }

    /// Reads and opens answers until every id in `expected` has one (or `timeout`);
    /// returns them by correlation id (duplicates counted in the second value). Answers
    /// to other requests are opened (so they must open) and skipped.
    pub async fn collect_answers(
        &self,
        expected: &[String],
        timeout: Duration,
    ) -> Result<(BTreeMap<String, Answer>, usize)> {
        let group = format!("answers-{}", uuid::Uuid::now_v7());
        let subscriber = Subscriber::new(&self.kafka, &group, &[topic::RESULTS], true)?;
        let mut answers = BTreeMap::new();
        let mut duplicates = 0;
        let deadline = tokio::time::Instant::now() + timeout;
        while !expected.iter().all(|id| answers.contains_key(id)) {
            let record = match tokio::time::timeout_at(deadline, subscriber.recv()).await {
                Ok(record) => record?,
                Err(_) => break,
            };
            let answer = self.open_answer(&record.payload).await?;
            if !expected.contains(&answer.correlation_id) {
                continue;
            }
            if answers.contains_key(&answer.correlation_id) {
                duplicates += 1;
            } else {
                answers.insert(answer.correlation_id.clone(), answer);
            }
        }
        Ok((answers, duplicates))
    }

    /// The host's Prometheus exposition.
    pub async fn metrics_text(&self) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(body)
    }

    /// The subject pseudonym requests are keyed by.
    pub fn subject(&self) -> &str {
        &self.producer_side.subject
    }

    /// The pipeline's working directory (configs).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn kill(service: Option<Service>) -> Result<()> {
    if let Some(mut service) = service {
        service.child.kill().ok();
        service.child.wait()?;
    }
    Ok(())
}

/// Set to print every service's output when a pipeline is dropped (debugging a test).
pub const DUMP_LOGS_ENV: &str = "ZENVELOPE_TEST_DUMP_LOGS";

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = kill(self.host.take());
        let _ = kill(self.app.take());
        if std::env::var_os(DUMP_LOGS_ENV).is_some() {
            eprintln!("{}", self.logs.text());
        }
    }
}
