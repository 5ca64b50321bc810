//! Shared helpers: an in-process mock cluster, unique names, produce and read helpers.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zenvelope_runtime::{
    Error, Handler, Inbound, KafkaConfig, Outbound, ProcessorConfig, Producer, RunSummary,
    Subscriber,
};
use zenvelope_schemas::SchemaCodec;

pub type Cluster = MockCluster<'static, DefaultProducerContext>;

/// How long any wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A fresh one-broker mock cluster.
pub fn cluster() -> Result<Cluster> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Ok(MockCluster::new(1)?)
}

/// A name unique within this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Client configuration for the cluster, with a short auto-commit interval so that
/// committed offsets show up quickly.
pub fn kafka(cluster: &Cluster) -> KafkaConfig {
    let mut k = KafkaConfig::new(cluster.bootstrap_servers());
    k.properties
        .insert("auto.commit.interval.ms".into(), "100".into());
    k.properties.insert("linger.ms".into(), "1".into());
    k
}

/// A processor configuration with fast retries and short grace.
pub fn processor(group: &str, topics: &[&str], dlq: &str) -> ProcessorConfig {
    let mut p = ProcessorConfig::new(group, topics.iter().map(|t| t.to_string()).collect());
    p.retry_backoff_ms = 10;
    p.shutdown_grace_ms = 5_000;
    p.dlq_topic = dlq.to_owned();
    p
}

/// Creates topics on the mock cluster.
pub fn topics(cluster: &Cluster, names: &[(&str, i32)]) -> Result<()> {
    for (name, partitions) in names {
        cluster.create_topic(name, *partitions, 1)?;
    }
    Ok(())
}

/// Produces `payloads` to `topic` (keyed by index), waiting for each ack.
pub async fn produce(kafka: &KafkaConfig, topic: &str, payloads: &[Vec<u8>]) -> Result<()> {
    let producer = Producer::new(kafka)?;
    for (i, p) in payloads.iter().enumerate() {
        producer
            .send(Outbound::new(
                topic,
                Some(format!("k{i}").into_bytes()),
                p.clone(),
            ))
            .await?;
    }
    Ok(())
}

/// Reads `n` records of `topic` from the beginning.
pub async fn read(kafka: &KafkaConfig, topic: &str, n: usize) -> Result<Vec<Inbound>> {
    let sub = Subscriber::new(kafka, &unique("reader"), &[topic], true)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.recv()).await {
            Ok(r) => out.push(r?),
            Err(_) => bail!(
                "read {} of {n} records from {topic} before the deadline",
                out.len()
            ),
        }
    }
    Ok(out)
}

/// Asserts that no further record arrives on `topic` beyond the first `n` within `quiet`.
pub async fn assert_no_more(
    kafka: &KafkaConfig,
    topic: &str,
    n: usize,
    quiet: Duration,
) -> Result<()> {
    let sub = Subscriber::new(kafka, &unique("reader"), &[topic], true)?;
    for _ in 0..n {
        tokio::time::timeout(WAIT, sub.recv())
            .await
            .context("expected record")??;
    }
    if let Ok(r) = tokio::time::timeout(quiet, sub.recv()).await {
        bail!("unexpected extra record on {topic}: {:?}", r?);
    }
    Ok(())
}

/// Starts the processing loop in a task.
pub fn start<H: Handler>(
    kafka: &KafkaConfig,
    processor: &ProcessorConfig,
    handler: Arc<H>,
) -> Result<(CancellationToken, JoinHandle<Result<RunSummary, Error>>)> {
    let shutdown = CancellationToken::new();
    let codec = Arc::new(SchemaCodec::offline()?);
    let (k, p, s) = (kafka.clone(), processor.clone(), shutdown.clone());
    let task = tokio::spawn(async move { zenvelope_runtime::run(&k, &p, codec, handler, s).await });
    Ok((shutdown, task))
}

/// Cancels the loop and returns its summary.
pub async fn stop(
    shutdown: CancellationToken,
    task: JoinHandle<Result<RunSummary, Error>>,
) -> Result<RunSummary> {
    shutdown.cancel();
    Ok(tokio::time::timeout(WAIT, task)
        .await
        .context("run did not stop")???)
}

/// Polls `f` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if f().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sum of the committed offsets of `group` on `topic` (None counts as 0).
pub async fn committed_total(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<i64> {
    Ok(zenvelope_runtime::committed_offsets(kafka, group, topic)
        .await?
        .values()
        .map(|o| o.unwrap_or(0))
        .sum())
}

/// `n` distinct payloads.
pub fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("sealed-{i}").into_bytes()).collect()
}
