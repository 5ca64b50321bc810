//! The idempotent producer.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::RwLock;

use crate::config::KafkaConfig;
use crate::error::Error;
use crate::message::Outbound;

/// How long `send` waits for room in librdkafka's local queue before reporting
/// `QueueFull` (a transient error).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to enqueue while librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// An idempotent (`enable.idempotence=true`, `acks=all`) producer for services that
/// produce outside the processing loop (SDK, CLI). Cheap to share behind an `Arc`.
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    /// Creates the producer. No broker is contacted until the first send.
    ///
    /// `KafkaConfig::transactional_id` is ignored here: this producer is never
    /// transactional.
    pub fn new(kafka: &KafkaConfig) -> Result<Self, Error> {
        let inner = kafka
            .producer_config()
            .create()
            .map_err(|e| Error::client("producer", e))?;
        Ok(Self { inner })
    }

    /// Produces `record` and waits for the broker's acknowledgement; returns its
    /// partition and offset.
    pub async fn send(&self, record: Outbound) -> Result<(i32, i64), Error> {
        self.send_ref(&record)
            .await
            .map_err(|e| Error::produce(&record.topic, e))
    }

    /// Waits up to `timeout` for every queued record to be acknowledged. Failures are
    /// logged (each send reports its own).
    pub async fn flush(&self, timeout: Duration) {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || inner.flush(timeout)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "Producer flush did not complete."),
            Err(error) => tracing::warn!(%error, "Producer flush task failed."),
        }
    }

    /// A transactional producer (`transactional.id` set). The caller runs
    /// `init_transactions` (blocking) before the first send.
    pub(crate) fn transactional(
        kafka: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Self, Error> {
        let mut config = kafka.producer_config();
        config.set("transactional.id", transactional_id);
        let inner = config
            .create()
            .map_err(|e| Error::client("transactional producer", e))?;
        Ok(Self { inner })
    }

    /// The librdkafka producer, for the transaction calls.
    pub(crate) fn client(&self) -> &FutureProducer {
        &self.inner
    }

    /// Sends without consuming the record, so that callers can retry.
    pub(crate) async fn send_ref(&self, record: &Outbound) -> Result<(i32, i64), KafkaError> {
        self.send_gated(record, None).await
    }

    /// Sends `record`; with a `gate`, holds its read lock while the record is enqueued
    /// (not while waiting for the acknowledgement), so the transaction committer, which
    /// takes the write lock, never sees a record enqueued between the commit and the
    /// next `begin_transaction`.
    pub(crate) async fn send_gated(
        &self,
        record: &Outbound,
        gate: Option<&RwLock<()>>,
    ) -> Result<(i32, i64), KafkaError> {
        let deadline = tokio::time::Instant::now() + QUEUE_TIMEOUT;
        let delivery = loop {
            let guard = match gate {
                Some(g) => Some(g.read().await),
                None => None,
            };
            match self.inner.send_result(future_record(record)) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tokio::time::Instant::now() < deadline =>
                {
                    drop(guard);
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                // The returned record borrows `record`; keep the error only.
                Err((e, _record)) => return Err(e),
            }
        };
        match delivery.await {
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            // The returned message holds the payload; drop it, keep the error only.
            Ok(Err((e, _message))) => Err(e),
            Err(_canceled) => Err(KafkaError::Canceled),
        }
    }

    pub(crate) fn flush_blocking(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}

/// The librdkafka record for `record`, borrowing its bytes.
fn future_record(record: &Outbound) -> FutureRecord<'_, Vec<u8>, Vec<u8>> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    let mut fr: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&record.topic)
        .payload(&record.payload)
        .headers(headers);
    if let Some(key) = &record.key {
        fr = fr.key(key);
    }
    fr
}
