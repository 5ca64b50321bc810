//! The `audit-sink` service: configuration and `run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use zenvelope_runtime::{KafkaConfig, ProcessorConfig, Producer, RunSummary, TelemetryConfig};
use zenvelope_schemas::SchemaCodec;
use zenvelope_schemas::names::topic;

use crate::Error;
use crate::note::Signer;
use crate::sink::{AuditHandler, BatchConfig, CheckpointConfig, Checkpointer, spawn_appender};
use crate::store::{AnyStore, AuditStore, StoreConfig};

/// Prefix of the environment overrides, e.g. `ZENVELOPE_AUDIT__KAFKA__BOOTSTRAP_SERVERS`.
pub const ENV_PREFIX: &str = "ZENVELOPE_AUDIT";

/// The sink's configuration (TOML, then `ZENVELOPE_AUDIT__SECTION__FIELD` overrides).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// Consumer group, topics (normally `zenvelope.audit`) and processing bounds. Keep
    /// `max_in_flight` at least `batch.max_events` so batches can fill.
    pub consumer: ProcessorConfig,
    /// Where the log is stored.
    pub store: StoreConfig,
    /// Checkpoint signing.
    pub checkpoint: CheckpointConfig,
    /// Group commit.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Metrics and logs.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Confluent Schema Registry URL; the offline catalog when absent.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    /// Create the audit and checkpoint topics at start-up if they are missing (local runs).
    #[serde(default)]
    pub create_topics: bool,
}

impl SinkConfig {
    /// Reads the configuration file (if any) and the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        zenvelope_runtime::load_config(path, ENV_PREFIX).map_err(Error::Kafka)
    }
}

/// Reads a signed-note private key file (`PRIVATE+KEY+…`, one line).
pub fn read_signer(path: &Path) -> Result<Signer, Error> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.to_owned(),
            action: "read",
            source,
        })?);
    Signer::from_private_key_text(text.trim()).map_err(Error::Key)
}

/// Writes a new signing key to `key_path` (owner-only, refusing to overwrite) and its
/// verifier key to `vkey_path`; returns the verifier key text.
pub fn write_new_signer(name: &str, key_path: &Path, vkey_path: &Path) -> Result<String, Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let signer = Signer::generate(name).map_err(Error::Key)?;
    let file_err = |path: &Path| {
        let path: PathBuf = path.to_owned();
        move |source| Error::File {
            path,
            action: "written",
            source,
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_path)
        .map_err(file_err(key_path))?;
    file.write_all(signer.to_private_key_text().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(file_err(key_path))?;
    let vkey = signer.verifier().to_vkey();
    std::fs::write(vkey_path, format!("{vkey}\n")).map_err(file_err(vkey_path))?;
    Ok(vkey)
}

/// Runs the sink until `shutdown`: consume, append, checkpoint.
pub async fn run(config: SinkConfig, shutdown: CancellationToken) -> Result<RunSummary, Error> {
    zenvelope_runtime::install_metrics(&config.telemetry).map_err(Error::Kafka)?;
    let codec = Arc::new(
        SchemaCodec::from_registry_url(config.schema_registry_url.as_deref())
            .map_err(Error::Decode)?,
    );
    if config.create_topics {
        zenvelope_runtime::ensure_topics(
            &config.kafka,
            &[(topic::AUDIT, 1), (topic::CHECKPOINTS, 1)],
        )
        .await
        .map_err(Error::Kafka)?;
    }
    let store = Arc::new(AnyStore::open(&config.store).await?);
    run_with_store(config, store, codec, shutdown).await
}

/// [`run`] on an opened store (the local stack passes its own).
pub async fn run_with_store<S: AuditStore>(
    config: SinkConfig,
    store: Arc<S>,
    codec: Arc<SchemaCodec>,
    shutdown: CancellationToken,
) -> Result<RunSummary, Error> {
    let signer = read_signer(&config.checkpoint.signing_key_file)?;
    if signer.name() != config.checkpoint.origin {
        return Err(Error::Config {
            field: "checkpoint.origin",
            reason: format!(
                "the signing key is named {:?} but the origin is {:?}; a checkpoint key is named after its log",
                signer.name(),
                config.checkpoint.origin
            ),
        });
    }
    let publisher = if config.checkpoint.publish {
        Some(Producer::new(&config.kafka).map_err(Error::Kafka)?)
    } else {
        None
    };
    let checkpointer = Checkpointer::new(
        signer,
        config.checkpoint.origin.clone(),
        config.checkpoint.every_events,
        config.checkpoint.every_ms,
        publisher,
    )?;
    // The appender outlives the consume loop: records in flight at shutdown still need
    // their answers, and the last checkpoint covers them.
    let appender_stop = CancellationToken::new();
    let (appender, task) = spawn_appender(
        store,
        config.batch.clone(),
        checkpointer,
        appender_stop.clone(),
    )
    .await?;
    let handler = Arc::new(AuditHandler::new(Arc::clone(&codec), appender));
    let summary = zenvelope_runtime::run(&config.kafka, &config.consumer, codec, handler, shutdown)
        .await
        .map_err(Error::Kafka);
    appender_stop.cancel();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "Audit appender failed."),
        Err(error) => tracing::error!(%error, "Audit appender task did not finish."),
    }
    summary
}
