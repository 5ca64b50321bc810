//! Usage counters kept Kafka-natively: the compacted usage topic is the changelog, read
//! back in full when a stage starts and whenever its partitions change (another instance
//! may have counted meanwhile), like a Kafka Streams state store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use zenvelope_runtime::{KafkaConfig, Outbound, RangeReader, ReadFrom, ReadTo};
use zenvelope_schemas::{SchemaCodec, Subject, UsageCounter};

use crate::error::Error;
use crate::telemetry::METRIC_RESTORES;

/// The counters one stage writes, with the latest value of every key on the topic.
pub(crate) struct Counters {
    kafka: KafkaConfig,
    topic: String,
    codec: Arc<SchemaCodec>,
    state: tokio::sync::Mutex<HashMap<String, UsageCounter>>,
    /// Set when partitions change (or before the first record): restore before use.
    stale: AtomicBool,
}

impl Counters {
    pub(crate) fn new(kafka: KafkaConfig, topic: String, codec: Arc<SchemaCodec>) -> Self {
        Self {
            kafka,
            topic,
            codec,
            state: tokio::sync::Mutex::new(HashMap::new()),
            stale: AtomicBool::new(true),
        }
    }

    /// Marks the state stale (called on rebalance, from librdkafka's thread).
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Locks the state, restoring it from the topic first if it is stale. While the
    /// topic cannot be read, waits and tries again (a request is never refused or
    /// dead-lettered because the state store is away); `None` once `shutdown` is
    /// cancelled (the record is then left for redelivery).
    pub(crate) async fn lock_or_wait(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<tokio::sync::MutexGuard<'_, HashMap<String, UsageCounter>>> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.lock().await {
                Ok(state) => return Some(state),
                Err(error) => {
                    tracing::warn!(%error, "Usage state unavailable; waiting before trying again.");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Locks the state, restoring it from the topic first if it is stale.
    pub(crate) async fn lock(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, HashMap<String, UsageCounter>>, Error> {
        let mut state = self.state.lock().await;
        if self.stale.swap(false, Ordering::SeqCst) {
            match read_all(&self.kafka, &self.topic, &self.codec, true).await {
                Ok(latest) => {
                    tracing::info!(keys = latest.len(), topic = %self.topic, "Usage counters restored.");
                    metrics::counter!(METRIC_RESTORES).increment(1);
                    *state = latest;
                }
                Err(e) => {
                    self.stale.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(state)
    }

    /// The record that stores `counter` on the usage topic.
    pub(crate) async fn record(
        &self,
        key: &str,
        counter: &UsageCounter,
    ) -> Result<Outbound, Error> {
        let value = self.codec.encode(Subject::UsageValue, counter).await?;
        Ok(Outbound::new(
            &self.topic,
            Some(key.as_bytes().to_vec()),
            value,
        ))
    }
}

/// The key of the `source` partial of `tenant` for `period` and input `partition`, and its
/// value in `state` (an empty partial if nothing was counted yet).
pub(crate) fn partial(
    state: &HashMap<String, UsageCounter>,
    tenant: &str,
    period: &str,
    source: &str,
    partition: i32,
) -> (String, UsageCounter) {
    let key = UsageCounter::key(tenant, period, source, partition);
    let value = state.get(&key).cloned().unwrap_or_else(|| UsageCounter {
        tenant: tenant.to_owned(),
        period: period.to_owned(),
        source: source.to_owned(),
        input_partition: partition,
        applied_offset: -1,
        last_admitted_offset: -1,
        ..UsageCounter::default()
    });
    (key, value)
}

/// The value of every key on the usage `topic` with the highest `applied_offset` (a late
/// write of a previous owner cannot roll a counter back while the newer record is still
/// on the topic). `strict` (the stages' state): an unknown topic or an undecodable record
/// is an error, never a silently smaller count; otherwise (reports) an unknown topic is
/// no usage and an undecodable record is skipped with a warning.
pub(crate) async fn read_all(
    kafka: &KafkaConfig,
    topic: &str,
    codec: &SchemaCodec,
    strict: bool,
) -> Result<HashMap<String, UsageCounter>, Error> {
    let mut latest: HashMap<String, UsageCounter> = HashMap::new();
    let mut reader =
        match RangeReader::open(kafka, topic, ReadFrom::Beginning, ReadTo::Watermark).await {
            Ok(r) => r.with_idle_timeout(Duration::from_secs(30)),
            // Nothing counted yet.
            Err(zenvelope_runtime::Error::UnknownTopic { .. }) if !strict => return Ok(latest),
            Err(e) => return Err(e.into()),
        };
    while let Some(record) = reader.next().await? {
        let Some(key) = record
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
        else {
            continue;
        };
        if record.payload.is_empty() {
            latest.remove(&key);
            continue;
        }
        match codec.decode::<UsageCounter>(&record.payload).await {
            Ok(c) => {
                if latest
                    .get(&key)
                    .is_none_or(|old| c.applied_offset >= old.applied_offset)
                {
                    latest.insert(key, c);
                }
            }
            Err(error) if strict => return Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, partition = record.partition, offset = record.offset, "Skipping an unreadable usage record.");
            }
        }
    }
    Ok(latest)
}
