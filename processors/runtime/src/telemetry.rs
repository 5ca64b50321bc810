//! Internal events: each `emit()` logs (with `tracing`) and counts (with `metrics`).
//!
//! Labels are bounded: topic names, outcomes, reason codes, librdkafka error-code names.
//! Never tenant ids, subjects, keys or payload bytes.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::config::TelemetryConfig;
use crate::error::Error;

/// Metric names, defined once.
pub mod metric {
    /// Counter: records finished, labels `topic`, `outcome` (`produced`, `dead_lettered`).
    pub const MESSAGES_TOTAL: &str = "zenvelope_runtime_messages_total";
    /// Counter: dead letters written, label `reason`.
    pub const DLQ_TOTAL: &str = "zenvelope_runtime_dlq_total";
    /// Counter: handler retries, label `reason`.
    pub const RETRIES_TOTAL: &str = "zenvelope_runtime_retries_total";
    /// Gauge: records being handled right now.
    pub const IN_FLIGHT: &str = "zenvelope_runtime_in_flight";
    /// Histogram: seconds from receipt to the last acknowledgement, label `topic`.
    pub const PROCESSING_SECONDS: &str = "zenvelope_runtime_processing_seconds";
    /// Counter: failed produce attempts, labels `topic`, `code`, `kind` (`transient`,
    /// `permanent`).
    pub const PRODUCE_ERRORS_TOTAL: &str = "zenvelope_runtime_produce_errors_total";
    /// Counter: consumer errors while polling, label `code`.
    pub const CONSUMER_ERRORS_TOTAL: &str = "zenvelope_runtime_consumer_errors_total";
    /// Counter: rebalance events, label `kind` (`assign`, `revoke`, `error`).
    pub const REBALANCES_TOTAL: &str = "zenvelope_runtime_rebalances_total";
    /// Counter: records abandoned at shutdown (they are redelivered after a restart).
    pub const ABANDONED_TOTAL: &str = "zenvelope_runtime_abandoned_total";
    /// Counter: Kafka transactions ended, label `outcome` (`committed`, `aborted`).
    pub const TRANSACTIONS_TOTAL: &str = "zenvelope_runtime_transactions_total";
}

/// Label names, defined once.
mod label {
    pub(super) const TOPIC: &str = "topic";
    pub(super) const OUTCOME: &str = "outcome";
    pub(super) const REASON: &str = "reason";
    pub(super) const CODE: &str = "code";
    pub(super) const KIND: &str = "kind";
}

/// Installs the Prometheus recorder and its HTTP listener when `metrics_listen` is set.
///
/// Safe to call more than once: only the first call that installs anything has an
/// effect; later calls log a warning if they ask for another address.
pub fn install_metrics(cfg: &TelemetryConfig) -> Result<(), Error> {
    static INSTALLED: OnceLock<std::net::SocketAddr> = OnceLock::new();
    let Some(addr) = cfg.metrics_listen else {
        return Ok(());
    };
    if let Some(existing) = INSTALLED.get() {
        if *existing != addr {
            tracing::warn!(%existing, requested = %addr, "Metrics exporter already installed; ignoring the new address.");
        }
        return Ok(());
    }
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| Error::Metrics(e.to_string()))?;
    let _ = INSTALLED.set(addr);
    describe_metrics();
    tracing::info!(%addr, "Prometheus metrics exporter listening.");
    Ok(())
}

fn describe_metrics() {
    describe_counter!(
        metric::MESSAGES_TOTAL,
        "Records finished, by topic and outcome."
    );
    describe_counter!(metric::DLQ_TOTAL, "Dead letters written, by reason code.");
    describe_counter!(metric::RETRIES_TOTAL, "Handler retries, by reason code.");
    describe_gauge!(metric::IN_FLIGHT, "Records being handled right now.");
    describe_histogram!(
        metric::PROCESSING_SECONDS,
        metrics::Unit::Seconds,
        "Time from receipt to the last acknowledgement."
    );
    describe_counter!(metric::PRODUCE_ERRORS_TOTAL, "Failed produce attempts.");
    describe_counter!(
        metric::CONSUMER_ERRORS_TOTAL,
        "Consumer errors while polling."
    );
    describe_counter!(metric::REBALANCES_TOTAL, "Consumer group rebalance events.");
    describe_counter!(metric::ABANDONED_TOTAL, "Records abandoned at shutdown.");
    describe_counter!(
        metric::TRANSACTIONS_TOTAL,
        "Kafka transactions ended, by outcome."
    );
}

/// How a record finished.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Produced,
    DeadLettered,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Produced => "produced",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// A record is done and its offset may be stored.
pub(crate) struct MessageFinished<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) outcome: Outcome,
    pub(crate) elapsed: Duration,
}

impl MessageFinished<'_> {
    pub(crate) fn emit(&self) {
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            outcome = self.outcome.as_str(),
            elapsed_ms = self.elapsed.as_millis() as u64,
            "Record finished."
        );
        counter!(metric::MESSAGES_TOTAL, label::TOPIC => self.topic.to_owned(), label::OUTCOME => self.outcome.as_str()).increment(1);
        histogram!(metric::PROCESSING_SECONDS, label::TOPIC => self.topic.to_owned())
            .record(self.elapsed.as_secs_f64());
    }
}

/// A record went to the DLQ.
pub(crate) struct DeadLettered<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) reason: &'a str,
}

impl DeadLettered<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = self.reason,
            "Record sent to the dead-letter queue."
        );
        counter!(metric::DLQ_TOTAL, label::REASON => self.reason.to_owned()).increment(1);
    }
}

/// The handler asked for a retry.
pub(crate) struct RetryScheduled<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) reason: &'a str,
    pub(crate) attempt: u32,
    pub(crate) backoff: Duration,
}

impl RetryScheduled<'_> {
    pub(crate) fn emit(&self) {
        tracing::info!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = self.reason,
            attempt = self.attempt,
            backoff_ms = self.backoff.as_millis() as u64,
            "Handler asked for a retry."
        );
        counter!(metric::RETRIES_TOTAL, label::REASON => self.reason.to_owned()).increment(1);
    }
}

/// Producing a record failed.
pub(crate) struct ProduceFailed<'a> {
    pub(crate) topic: &'a str,
    pub(crate) code: &'a str,
    pub(crate) transient: bool,
    pub(crate) error: &'a dyn std::fmt::Display,
}

impl ProduceFailed<'_> {
    pub(crate) fn emit(&self) {
        let kind = if self.transient {
            "transient"
        } else {
            "permanent"
        };
        tracing::warn!(topic = self.topic, code = self.code, kind, error = %self.error, "Producing a record failed.");
        counter!(
            metric::PRODUCE_ERRORS_TOTAL,
            label::TOPIC => self.topic.to_owned(),
            label::CODE => self.code.to_owned(),
            label::KIND => kind
        )
        .increment(1);
    }
}

/// Polling the consumer returned an error.
pub(crate) struct ConsumerError<'a> {
    pub(crate) code: &'a str,
    pub(crate) error: &'a dyn std::fmt::Display,
}

impl ConsumerError<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(code = self.code, error = %self.error, "Consumer error while polling.");
        counter!(metric::CONSUMER_ERRORS_TOTAL, label::CODE => self.code.to_owned()).increment(1);
    }
}

/// Partitions were assigned or revoked.
pub(crate) struct Rebalanced<'a> {
    pub(crate) kind: &'static str,
    pub(crate) partitions: &'a [(String, i32)],
}

impl Rebalanced<'_> {
    pub(crate) fn emit(&self) {
        tracing::info!(kind = self.kind, partitions = ?self.partitions, "Consumer group rebalance.");
        counter!(metric::REBALANCES_TOTAL, label::KIND => self.kind).increment(1);
    }
}

/// Records still in flight when the shutdown grace period ran out.
pub(crate) struct Abandoned {
    pub(crate) count: usize,
}

impl Abandoned {
    pub(crate) fn emit(&self) {
        if self.count > 0 {
            tracing::warn!(
                count = self.count,
                "Shutdown grace period over; abandoning in-flight records, they will be redelivered."
            );
            counter!(metric::ABANDONED_TOTAL).increment(self.count as u64);
        }
    }
}

/// A transaction was committed, with the consumed positions of `partitions` partitions.
pub(crate) struct TransactionCommitted {
    pub(crate) partitions: usize,
}

impl TransactionCommitted {
    pub(crate) fn emit(&self) {
        tracing::debug!(partitions = self.partitions, "Transaction committed.");
        counter!(metric::TRANSACTIONS_TOTAL, label::OUTCOME => "committed").increment(1);
    }
}

/// A transaction was aborted; its records will be handled again.
pub(crate) struct TransactionAborted<'a> {
    pub(crate) error: &'a rdkafka::error::KafkaError,
}

impl TransactionAborted<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(
            error = %self.error,
            "Transaction aborted; rewinding to the committed offsets, the records since then will be handled again."
        );
        counter!(metric::TRANSACTIONS_TOTAL, label::OUTCOME => "aborted").increment(1);
    }
}

/// Sets the in-flight gauge.
pub(crate) fn in_flight(n: usize) {
    gauge!(metric::IN_FLIGHT).set(n as f64);
}
