//! The local stack `zenvelope demo` and `zenvelope up` run in one process: a broker
//! (embedded, or `--bootstrap`), the admission processor (checks, tier quota, usage
//! metering) between `zenvelope.requests` and `zenvelope.admitted`, the enclave
//! application with a DANGER dev attestation CA on loopback TCP, the enclave-host loop
//! on `zenvelope.admitted`, the host's key directory publisher and the audit sink.
//!
//! Everything is dev material generated at start: fleet and producer keys, the dev CA,
//! the tenant's metadata key. Printed as each part comes up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zenvelope_attestation::danger::{DevCa, dev_measurements};
use zenvelope_enclave::app::launch::DEV_MEASUREMENT_LABEL;
use zenvelope_enclave::app::{AppConfig, Processor, ProcessorParts, serve};
use zenvelope_enclave::egress::{
    EgressConnector, EgressConnectorConfig, EgressProxy, EgressProxyConfig,
};
use zenvelope_enclave::host::{EnclaveClient, RequestHandler, keep_published, publish_once};
use zenvelope_enclave::providers::http::Endpoint;
use zenvelope_enclave::providers::{
    ANTHROPIC_API_KEY_ENV, ModelProvider, OPENAI_API_KEY_ENV, OfflineAnalyser, ProviderConfig,
    ProviderKind, build_provider,
};
use zenvelope_enclave::transport::TransportAddr;
use zenvelope_enclave_protocol::EgressPolicy;
use zenvelope_envelope::{FleetPrivateKey, Keyring, Purpose, SigningKey, VerifyingKey};
use zenvelope_processors::Tier;
use zenvelope_processors::config::Tenant;
use zenvelope_producer::{KeyDirectoryPolicy, PinnedMeasurements};
use zenvelope_runtime::{EmbeddedBroker, KafkaConfig, ProcessorConfig, Producer, RunSummary};
use zenvelope_schemas::SchemaCodec;
use zenvelope_schemas::names::topic;

/// The tenant of the local stack.
pub(crate) const TENANT: &str = "demo-clinic";
/// Key id of the stack's producer signing key (trusted by its enclave).
pub(crate) const PRODUCER_KEY_ID: &str = "journal-backend";
/// Key id of the stack's result-signing key.
pub(crate) const RESULT_KEY_ID: &str = "fleet-results";
/// How long `--bootstrap` may take to answer before giving up.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `up` refreshes the key directory.
const KEY_REFRESH: Duration = Duration::from_secs(3600);

/// Which model answers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProviderChoice {
    /// OpenAI if ZENVELOPE_OPENAI_API_KEY is set, else Anthropic if
    /// ZENVELOPE_ANTHROPIC_API_KEY is set, else the offline analyser.
    Auto,
    /// The offline analyser: NOT a model (it counts words).
    Offline,
    /// OpenAI chat completions, or any OpenAI-compatible server (--provider-url).
    Openai,
    /// Anthropic messages.
    Anthropic,
}

/// The model provider options of `demo` and `up`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ModelArgs {
    /// Which model answers. API keys come from ZENVELOPE_OPENAI_API_KEY or
    /// ZENVELOPE_ANTHROPIC_API_KEY, never from the command line.
    #[arg(long, value_enum, default_value_t = ProviderChoice::Auto)]
    provider: ProviderChoice,
    /// The provider's base URL (default `https://api.openai.com` or
    /// `https://api.anthropic.com`). Any OpenAI-compatible server works; `http://` is
    /// accepted for local servers, with a warning (the host could read the prompts).
    #[arg(long, value_name = "URL")]
    provider_url: Option<String>,
    /// The model name (default gpt-4o-mini or claude-3-5-haiku-latest).
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
}

/// What to start.
pub(crate) struct StackOptions {
    /// A broker to use instead of the embedded one.
    pub(crate) bootstrap: Option<String>,
    /// RSA modulus size of the fleet and producer keys.
    pub(crate) rsa_bits: usize,
    /// Consumer group of the host loop.
    pub(crate) host_group: &'static str,
    /// The model provider.
    pub(crate) model: ModelArgs,
    /// Folder of the audit log (`audit.db`), its DEV checkpoint key and verifier key;
    /// kept across runs.
    pub(crate) audit_dir: PathBuf,
    /// The tier of the stack's tenant (its quota).
    pub(crate) tier: Tier,
    /// Where admission serves `GET /v1/usage` and `/v1/health`; none when absent.
    pub(crate) usage_listen: Option<SocketAddr>,
}

/// The audit log's files in [`StackOptions::audit_dir`].
pub(crate) mod audit_files {
    /// The embedded store.
    pub(crate) const STORE: &str = "audit.db";
    /// The DEV checkpoint signing key (owner-only).
    pub(crate) const SIGNING_KEY: &str = "danger-dev-audit-checkpoint.key";
    /// The verifier key auditors check checkpoints with.
    pub(crate) const VERIFIER_KEY: &str = "audit.vkey";
}

/// The running stack.
pub(crate) struct LocalStack {
    /// The broker's client configuration.
    pub(crate) kafka: KafkaConfig,
    /// The schema codec (offline catalog).
    pub(crate) codec: Arc<SchemaCodec>,
    /// The tenant's dev metadata key.
    pub(crate) metadata_key: [u8; 32],
    /// The producer signing key the enclave trusts, PKCS#8 DER.
    pub(crate) producer_pkcs8: zeroize::Zeroizing<Vec<u8>>,
    /// The fleet's result-signing public key, DER SubjectPublicKeyInfo.
    pub(crate) result_spki: Vec<u8>,
    /// The dev attestation root, DER.
    pub(crate) dev_root: Vec<u8>,
    /// The enclave's dev PCR0.
    pub(crate) pcr0: Vec<u8>,
    stop: CancellationToken,
    host: JoinHandle<Result<RunSummary, zenvelope_runtime::Error>>,
    admission: JoinHandle<Result<AdmissionSummary, zenvelope_processors::Error>>,
    audit: JoinHandle<Result<RunSummary, zenvelope_audit::Error>>,
    app: JoinHandle<()>,
    _embedded: Option<EmbeddedBroker>,
}

impl LocalStack {
    /// Starts every part and publishes the key directory once.
    pub(crate) async fn start(options: &StackOptions) -> anyhow::Result<Self> {
        if !zenvelope_envelope::ACCEPTED_RSA_BITS.contains(&options.rsa_bits) {
            anyhow::bail!(
                "RSA keys must be 2048, 3072 or 4096 bits (--rsa-bits {})",
                options.rsa_bits
            );
        }
        let topics = [
            (topic::REQUESTS, 2),
            (topic::ADMISSION_BY_TENANT, 2),
            (topic::ADMITTED, 2),
            (topic::REJECTIONS, 2),
            (topic::USAGE, 1),
            (topic::RESULTS, 2),
            (topic::DLQ, 1),
            (topic::AUDIT, 1),
            (topic::KEYS, 1),
            (topic::CHECKPOINTS, 1),
        ];

        // The usage endpoint's port first: a clash shows before anything starts.
        let usage_listener = match options.usage_listen {
            Some(addr) => Some(usage_listener(addr).await?),
            None => None,
        };

        // The broker.
        let (embedded, kafka) = match &options.bootstrap {
            Some(servers) => {
                let kafka = KafkaConfig::new(servers.clone());
                zenvelope_runtime::check_broker(&kafka, BROKER_CHECK_TIMEOUT).await?;
                zenvelope_runtime::ensure_topics(&kafka, &topics)
                    .await
                    .with_context(|| format!("cannot create the zenvelope topics on {servers}"))?;
                println!("broker     {servers} (given with --bootstrap)");
                (None, kafka)
            }
            None => {
                let broker = EmbeddedBroker::start(&topics)?;
                println!(
                    "broker     embedded Kafka-protocol broker at {} (librdkafka's in-memory mock cluster)",
                    broker.bootstrap_servers()
                );
                let kafka = broker.kafka_config();
                (Some(broker), kafka)
            }
        };

        // Keys.
        let t = Instant::now();
        let fleet = FleetPrivateKey::generate("fleet", 1, options.rsa_bits)
            .context("cannot generate the dev fleet key")?;
        let producer = SigningKey::generate(PRODUCER_KEY_ID, 1, options.rsa_bits)?;
        let producer_public = producer.verifying_key()?;
        let producer_for_admission =
            VerifyingKey::from_spki_der(PRODUCER_KEY_ID, 1, producer.spki_der())?;
        let result_signer = SigningKey::generate_ecdsa_p256(RESULT_KEY_ID, 1)?;
        let result_spki = result_signer.spki_der().to_vec();
        println!(
            "keys       dev keys: fleet encryption and producer signing (RSA-{}), fleet result signing (ECDSA P-256), {} ms",
            options.rsa_bits,
            t.elapsed().as_millis()
        );
        println!(
            "           fleet key fingerprint (SHA-256 of SPKI): {}",
            fleet.public_key().fingerprint()
        );

        // Attestation: a dev CA in the real Nitro document format.
        let dev_ca = DevCa::generate(false).context("cannot create the dev attestation CA")?;
        let pcrs = dev_measurements(DEV_MEASUREMENT_LABEL);
        let pcr0 = pcrs.get(&0).cloned().unwrap_or_default();
        let attestor: Arc<dyn zenvelope_attestation::Attestor> =
            Arc::new(dev_ca.issue("enclave-app", pcrs)?);
        println!(
            "attest     DANGER dev attestation CA (real Nitro document format; trusted locally only), enclave PCR0 {}...",
            &hex::encode(&pcr0)[..16]
        );

        // The enclave application, in this process, on loopback TCP.
        let stop = CancellationToken::new();
        let (provider, model_name) = model_provider(&options.model, &stop).await?;
        let processor = Processor::new(
            &AppConfig::from_toml(&format!(
                "[tenants.{TENANT}]\nallowed_purposes = [\"INDIVIDUAL_REQUEST\"]\n[model]\nmodel = {model_name:?}\n"
            ))?,
            ProcessorParts {
                trusted_signers: Keyring::new().with(producer_public)?,
                fleet_keys: Keyring::new().with(fleet)?,
                result_signer,
                provider,
                enclave_measurement: Some(hex::encode(&pcr0)),
                attestor: Some(attestor),
            },
        )?;
        let listener = "tcp://127.0.0.1:0".parse::<TransportAddr>()?.bind().await?;
        let enclave_addr = listener.local_addr()?;
        let app = tokio::spawn(serve(listener, Arc::new(processor), stop.clone(), 64));
        println!(
            "enclave    enclave-app at {enclave_addr} (TCP loopback here, vsock in a Nitro Enclave; keys generated here, no KMS)"
        );

        // The host loop.
        let codec = Arc::new(SchemaCodec::offline()?);
        // One connection for requests and the key directory: the enclave serves one host
        // connection at a time.
        let enclave = Arc::new(EnclaveClient::new(enclave_addr, Duration::from_secs(30)));
        let handler = RequestHandler::new(
            enclave.clone(),
            codec.clone(),
            Duration::from_secs(1),
            stop.clone(),
        );
        // The host reads what admission let through, as in production.
        let host_config =
            ProcessorConfig::new(options.host_group, vec![topic::ADMITTED.to_owned()]);
        let (host_kafka, host_codec, host_stop) = (kafka.clone(), codec.clone(), stop.clone());
        let host = tokio::spawn(async move {
            zenvelope_runtime::run(
                &host_kafka,
                &host_config,
                host_codec,
                Arc::new(handler),
                host_stop,
            )
            .await
        });
        println!("host       enclave-host consuming {}", topic::ADMITTED);
        let keys_producer = Producer::new(&kafka)?;
        let published = publish_once(&enclave, &keys_producer, &codec)
            .await
            .context("the host could not publish the key directory")?;
        println!(
            "           published {published} attested public keys on {} (the host cannot alter them unnoticed)\n",
            topic::KEYS
        );
        // Published just now: the refresh loop starts one interval later.
        let (refresh_codec, refresh_stop) = (codec.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = refresh_stop.cancelled() => {}
                () = tokio::time::sleep(KEY_REFRESH) => {
                    keep_published(enclave, keys_producer, refresh_codec, KEY_REFRESH, refresh_stop)
                        .await;
                }
            }
        });

        let audit = start_audit_sink(&options.audit_dir, &kafka, &codec, &stop).await?;
        let admission = start_admission(
            options,
            producer_for_admission,
            usage_listener,
            &kafka,
            &codec,
            &stop,
        )
        .await?;

        Ok(Self {
            audit,
            kafka,
            codec,
            metadata_key: random_32()?,
            producer_pkcs8: producer.to_pkcs8_der()?,
            result_spki,
            dev_root: dev_ca.root_der().to_vec(),
            pcr0,
            stop,
            host,
            admission,
            app,
            _embedded: embedded,
        })
    }

    /// The producer signing key the enclave trusts.
    pub(crate) fn producer_signer(&self) -> anyhow::Result<SigningKey> {
        Ok(SigningKey::from_pkcs8_der(
            PRODUCER_KEY_ID,
            1,
            &self.producer_pkcs8,
        )?)
    }

    /// The policy a local producer verifies the key directory with.
    pub(crate) fn key_directory_policy(&self) -> anyhow::Result<KeyDirectoryPolicy> {
        Ok(KeyDirectoryPolicy::danger_dev_root(
            &self.dev_root,
            PinnedMeasurements::new().with_pcr(0, self.pcr0.clone()),
        )?)
    }

    /// A token cancelled when the stack stops.
    pub(crate) fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops every part; returns what the host and admission did.
    pub(crate) async fn stop(self) -> anyhow::Result<(RunSummary, AdmissionSummary)> {
        self.stop.cancel();
        let host = self.host.await.context("the host task failed")??;
        let admission = self
            .admission
            .await
            .context("the admission task failed")??;
        let _ = self.app.await;
        self.audit.await.context("the audit sink task failed")??;
        Ok((host, admission))
    }
}

/// The audit sink, in this process, on the embedded store in `dir` (the same code as the
/// `audit-sink` service). Reuses the checkpoint key found there, or makes a DEV one.
async fn start_audit_sink(
    dir: &Path,
    kafka: &KafkaConfig,
    codec: &Arc<SchemaCodec>,
    stop: &CancellationToken,
) -> anyhow::Result<JoinHandle<Result<RunSummary, zenvelope_audit::Error>>> {
    use zenvelope_audit::service::{SinkConfig, run_with_store, write_new_signer};
    use zenvelope_audit::sink::{BatchConfig, CheckpointConfig, DEFAULT_ORIGIN};
    use zenvelope_audit::store::{EmbeddedStore, StoreConfig};
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the audit folder {}", dir.display()))?;
    let key = dir.join(audit_files::SIGNING_KEY);
    let vkey = dir.join(audit_files::VERIFIER_KEY);
    if !key.exists() {
        write_new_signer(DEFAULT_ORIGIN, &key, &vkey)?;
    }
    let path = dir.join(audit_files::STORE);
    let store = Arc::new(EmbeddedStore::open(&path)?);
    let mut consumer =
        ProcessorConfig::new("zenvelope-local-audit-sink", vec![topic::AUDIT.to_owned()]);
    consumer.max_in_flight = 1_024;
    let config = SinkConfig {
        kafka: kafka.clone(),
        consumer,
        store: StoreConfig::Embedded { path: path.clone() },
        checkpoint: CheckpointConfig {
            origin: DEFAULT_ORIGIN.to_owned(),
            signing_key_file: key,
            every_events: 1_000,
            every_ms: 2_000,
            publish: true,
        },
        batch: BatchConfig::default(),
        telemetry: Default::default(),
        schema_registry_url: None,
        create_topics: false,
    };
    println!(
        "audit      audit sink appending {} to {} (Merkle tree, DANGER dev checkpoint key; verifier key {})",
        topic::AUDIT,
        path.display(),
        vkey.display()
    );
    Ok(tokio::spawn(run_with_store(
        config,
        store,
        codec.clone(),
        stop.clone(),
    )))
}

/// Listens on `addr`; if that port is taken (a deployed admission service, another
/// `up`), on a free port of the same address instead, and says so.
async fn usage_listener(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => {
            let listener = tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .with_context(|| {
                    format!("cannot listen on {} for the usage endpoint", addr.ip())
                })?;
            println!(
                "note       {addr} is in use; the usage endpoint listens on {} instead",
                listener.local_addr()?
            );
            Ok(listener)
        }
        Err(e) => Err(e).with_context(|| {
            format!("cannot listen on {addr} for the usage endpoint (--usage-listen)")
        }),
    }
}

/// What admission did in a run.
pub(crate) type AdmissionSummary = zenvelope_processors::service::Summary;

/// The admission processor, in this process (the same code as the `zenvelope-admission`
/// service): the stack's tenant at `options.tier`, allowed the purpose the demo claims,
/// with the stack's producer key registered.
async fn start_admission(
    options: &StackOptions,
    producer: VerifyingKey,
    listener: Option<tokio::net::TcpListener>,
    kafka: &KafkaConfig,
    codec: &Arc<SchemaCodec>,
    stop: &CancellationToken,
) -> anyhow::Result<JoinHandle<Result<AdmissionSummary, zenvelope_processors::Error>>> {
    let tenants = BTreeMap::from([(
        TENANT.to_owned(),
        Tenant::new(
            options.tier,
            vec![Purpose::IndividualRequest],
            Keyring::new().with(producer)?,
        ),
    )]);
    let mut config = zenvelope_processors::AdmissionConfig {
        kafka: kafka.clone(),
        ..Default::default()
    };
    // Consumer groups of this stack's own, never those of a deployed admission service.
    let prefix = options.host_group.trim_end_matches("-host");
    config.check.group_id = format!("{prefix}-admission");
    config.quota.group_id = format!("{prefix}-admission-quota");
    config.metering.group_id = format!("{prefix}-admission-usage");
    let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let quota = match options.tier.quota() {
        Some(n) => format!(
            "{n} requests per {}",
            match options.tier.window() {
                zenvelope_processors::Window::Day => "UTC day",
                zenvelope_processors::Window::Month => "UTC month",
            }
        ),
        None => "no quota".to_owned(),
    };
    println!(
        "admission  {} -> {}: framing, producer signature against {TENANT}'s registered key, purpose, {} tier quota ({quota}); refusals to {} with a notice on {}",
        topic::REQUESTS,
        topic::ADMITTED,
        options.tier.name(),
        topic::DLQ,
        topic::REJECTIONS,
    );
    if let Some(addr) = addr {
        println!("           usage: GET http://{addr}/v1/usage?tenant={TENANT}");
    }
    let (codec, stop) = (codec.clone(), stop.clone());
    Ok(tokio::spawn(async move {
        let result =
            zenvelope_processors::service::run_with(config, tenants, codec, listener, stop.clone())
                .await;
        // Without admission nothing reaches the enclave: a stack whose admission ended
        // by itself stops, rather than leaving requests unanswered.
        if !stop.is_cancelled() {
            match &result {
                Err(error) => eprintln!("error: admission stopped: {error}; stopping the stack"),
                Ok(_) => eprintln!("error: admission stopped by itself; stopping the stack"),
            }
            stop.cancel();
        }
        result
    }))
}

/// The model provider `options` ask for. An HTTP provider is reached as in production:
/// through an egress proxy (the host's side, here in this process) that allows only the
/// provider's address; TLS ends in the enclave.
async fn model_provider(
    options: &ModelArgs,
    stop: &CancellationToken,
) -> anyhow::Result<(Arc<dyn ModelProvider>, String)> {
    let has_key = |var| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let kind = match options.provider {
        ProviderChoice::Offline => None,
        ProviderChoice::Openai => Some(ProviderKind::OpenAi),
        ProviderChoice::Anthropic => Some(ProviderKind::Anthropic),
        ProviderChoice::Auto if has_key(OPENAI_API_KEY_ENV) => Some(ProviderKind::OpenAi),
        ProviderChoice::Auto if has_key(ANTHROPIC_API_KEY_ENV) => Some(ProviderKind::Anthropic),
        ProviderChoice::Auto => None,
    };
    let Some(kind) = kind else {
        println!("           model: the offline analyser, NOT a model (it counts words)");
        return Ok((Arc::new(OfflineAnalyser), "offline".to_owned()));
    };
    let (default_url, default_model, key_env) = match kind {
        ProviderKind::Anthropic => (
            "https://api.anthropic.com",
            "claude-3-5-haiku-latest",
            ANTHROPIC_API_KEY_ENV,
        ),
        _ => ("https://api.openai.com", "gpt-4o-mini", OPENAI_API_KEY_ENV),
    };
    let url = options.provider_url.as_deref().unwrap_or(default_url);
    let model = options.model.as_deref().unwrap_or(default_model).to_owned();
    let endpoint = Endpoint::from_base_url(url)
        .with_context(|| format!("--provider-url {url} is not usable"))?;
    if endpoint.scheme == "https" && !has_key(key_env) {
        anyhow::bail!("the {kind:?} provider at {url} needs an API key in {key_env}");
    }
    let proxy = EgressProxy::new(EgressProxyConfig::new(
        "tcp://127.0.0.1:0".parse()?,
        EgressPolicy::from_entries(&[endpoint.allow_entry()])?,
    ))?;
    let listener = proxy.bind().await?;
    let mut connector = EgressConnectorConfig::new(listener.local_addr()?);
    tokio::spawn(proxy.serve(listener, stop.clone()));
    if endpoint.scheme == "http" {
        println!(
            "           DANGER: plain http:// to the model: the host could read the prompts (local model servers only)"
        );
        connector.allow_plain_http = true;
    }
    let provider = build_provider(
        ProviderConfig::from_env(kind, url.to_owned()),
        Arc::new(EgressConnector::new(connector)?),
    )?;
    println!(
        "           model: {kind:?} {model} at {url}, through the host's egress proxy (only {} allowed)",
        endpoint.allow_entry()
    );
    Ok((Arc::from(provider), model))
}

fn random_32() -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(key)
}
