//! The idempotent producer.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::config::KafkaConfig;
use crate::error::Error;
use crate::message::Outbound;

/// How long `send` waits for room in librdkafka's local queue before reporting
/// `QueueFull` (a transient error).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Sends without consuming the record, so that callers can retry.
    pub(crate) async fn send_ref(&self, record: &Outbound) -> Result<(i32, i64), KafkaError> {
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
        match self.inner.send(fr, QUEUE_TIMEOUT).await {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            // The returned message holds the payload; drop it, keep the error only.
            Err((e, _message)) => Err(e),
        }
    }

    pub(crate) fn flush_blocking(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }
}
