//! The admission service: the check, quota and metering loops and the usage endpoint,
//! run together until shutdown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use zenvelope_runtime::RunSummary;
use zenvelope_schemas::SchemaCodec;

use crate::check::AdmissionCheck;
use crate::config::{AdmissionConfig, Tenant};
use crate::error::Error;
use crate::http::UsageEndpoint;
use crate::metering::ResultsMetering;
use crate::quota::QuotaStage;

/// What each loop did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The stateless checks.
    pub check: RunSummary,
    /// The quota stage.
    pub quota: RunSummary,
    /// The results metering.
    pub metering: RunSummary,
}

/// Runs the service until `shutdown` is cancelled (or a loop fails to start): tenants
/// and their keys from the configuration, the usage endpoint on `http.listen`.
pub async fn run(config: AdmissionConfig, shutdown: CancellationToken) -> Result<Summary, Error> {
    let tenants = config.tenants()?;
    let codec = Arc::new(SchemaCodec::from_registry_url(
        config.schema_registry_url.as_deref(),
    )?);
    zenvelope_runtime::install_metrics(&config.telemetry)?;
    let http = match config.http.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?,
        ),
        None => None,
    };
    run_with(config, tenants, codec, http, shutdown).await
}

/// Runs the service with tenants, codec and usage listener given by the caller (an
/// in-process stack such as `zenvelope demo`); `config.tenants` and `config.http` are
/// not read. Installs no metrics recorder.
pub async fn run_with(
    config: AdmissionConfig,
    tenants: BTreeMap<String, Tenant>,
    codec: Arc<SchemaCodec>,
    http: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<Summary, Error> {
    config.validate()?;
    let tenants = Arc::new(tenants);
    let t = &config.topics;
    if config.create_topics {
        let names = [
            &t.requests,
            &t.by_tenant,
            &t.admitted,
            &t.rejections,
            &t.usage,
            &t.results,
        ];
        let topics: Vec<(&str, i32)> = names
            .iter()
            .map(|n| (n.as_str(), config.topic_partitions))
            .chain([(config.check.dlq_topic.as_str(), config.topic_partitions)])
            .collect();
        zenvelope_runtime::ensure_topics(&config.kafka, &topics).await?;
    }
    let running = Arc::new(AtomicBool::new(false));
    let http = match http {
        Some(listener) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "Usage endpoint listening (GET /v1/usage, /v1/health).");
            }
            let endpoint = Arc::new(UsageEndpoint {
                kafka: config.kafka.clone(),
                codec: codec.clone(),
                topic: t.usage.clone(),
                running: running.clone(),
            });
            Some(tokio::spawn(crate::http::serve(
                listener,
                endpoint,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(tenants = tenants.len(), "Admission starting.");
    let check = AdmissionCheck::new(tenants.clone(), t.clone(), codec.clone());
    // One loop failing to start stops the others.
    let stop_all = shutdown.child_token();
    let quota = QuotaStage::new(
        config.kafka.clone(),
        tenants.clone(),
        t.clone(),
        codec.clone(),
        stop_all.clone(),
    );
    let metering = ResultsMetering::new(
        config.kafka.clone(),
        tenants,
        t,
        codec.clone(),
        stop_all.clone(),
    );
    running.store(true, Ordering::SeqCst);
    let (check, quota, metering) = tokio::join!(
        run_loop(&config.kafka, &config.check, &codec, check, &stop_all),
        run_loop(&config.kafka, &config.quota, &codec, quota, &stop_all),
        run_loop(&config.kafka, &config.metering, &codec, metering, &stop_all),
    );
    running.store(false, Ordering::SeqCst);
    stop_all.cancel();
    if let Some(h) = http {
        h.abort();
    }
    Ok(Summary {
        check: check?,
        quota: quota?,
        metering: metering?,
    })
}

/// Runs one loop; if it fails, cancels `stop_all` so the others stop too.
async fn run_loop<H: zenvelope_runtime::Handler>(
    kafka: &zenvelope_runtime::KafkaConfig,
    cfg: &zenvelope_runtime::ProcessorConfig,
    codec: &Arc<SchemaCodec>,
    handler: H,
    stop_all: &CancellationToken,
) -> Result<RunSummary, zenvelope_runtime::Error> {
    let result = zenvelope_runtime::run(
        kafka,
        cfg,
        codec.clone(),
        Arc::new(handler),
        stop_all.clone(),
    )
    .await;
    if result.is_err() {
        stop_all.cancel();
    }
    result
}
