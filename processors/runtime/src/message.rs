//! The records a handler sees and returns, and the handler trait.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// A consumed record, owned. `Debug` prints lengths, never bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Topic it was consumed from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value (empty if the record had none).
    pub payload: Vec<u8>,
    /// Headers in order; a null header value is an empty vector.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Record timestamp, milliseconds since the Unix epoch, if the broker gave one.
    pub timestamp_ms: Option<i64>,
}

impl Inbound {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("key_len", &self.key.as_ref().map(Vec::len))
            .field("payload_len", &self.payload.len())
            .field("headers", &HeaderNames(&self.headers))
            .field("timestamp_ms", &self.timestamp_ms)
            .finish()
    }
}

/// A record to produce. `Debug` prints lengths, never bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Destination topic.
    pub topic: String,
    /// Record key (the partitioner hashes it).
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Outbound {
    /// A record with no headers.
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.into(),
            key,
            payload,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("topic", &self.topic)
            .field("key_len", &self.key.as_ref().map(Vec::len))
            .field("payload_len", &self.payload.len())
            .field("headers", &HeaderNames(&self.headers))
            .finish()
    }
}

fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// Prints header names only.
struct HeaderNames<'a>(&'a [(String, Vec<u8>)]);

impl fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// What to do with a consumed record. The offset is stored only once everything this
/// asks for has been acknowledged by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Produce these records (results, audit events). An empty list simply completes the
    /// record.
    Produce(Vec<Outbound>),
    /// Send the inbound record to the DLQ (a `DeadLetter` Avro record, Confluent-framed,
    /// original key and value still sealed, header `zenvelope-reason`) and also produce
    /// `also` (e.g. audit events).
    DeadLetter {
        /// Short, stable, bounded reason code (it becomes a metric label).
        reason_code: String,
        /// One sentence; never PHI or key material.
        detail: String,
        /// Records to produce next to the dead letter.
        also: Vec<Outbound>,
    },
    /// Transient failure: the handler is called again after a backoff, up to
    /// `max_retries` times; then the record goes to the DLQ as `retries_exhausted`,
    /// with the last reason code in the detail.
    Retry {
        /// Short, stable, bounded reason code.
        reason_code: String,
        /// One sentence; never PHI or key material.
        detail: String,
    },
    /// Leave the record unfinished: nothing is produced and its offset is never stored,
    /// so it is delivered again after a restart or rebalance. For handlers that wait on
    /// something unavailable (an enclave that is restarting) and are told to shut down;
    /// later records of the same partition cannot be committed past it either.
    Abandon,
}

impl Disposition {
    /// [`Disposition::DeadLetter`] with nothing else to produce.
    pub fn dead_letter(reason_code: impl Into<String>, detail: impl Into<String>) -> Self {
        Disposition::DeadLetter {
            reason_code: reason_code.into(),
            detail: detail.into(),
            also: Vec::new(),
        }
    }

    /// [`Disposition::Retry`].
    pub fn retry(reason_code: impl Into<String>, detail: impl Into<String>) -> Self {
        Disposition::Retry {
            reason_code: reason_code.into(),
            detail: detail.into(),
        }
    }
}

/// A service's per-record logic. Called concurrently (up to `max_in_flight` records at
/// once) and possibly more than once per record (retries, redelivery after a crash):
/// it must be idempotent in effect.
///
/// A handler that panics sends the record to the DLQ as `handler_panicked`.
pub trait Handler: Send + Sync + 'static {
    /// Decides what to do with `msg`. CPU-heavy work belongs on `spawn_blocking`.
    fn handle(&self, msg: Arc<Inbound>) -> impl Future<Output = Disposition> + Send;

    /// Called when the consumer group revokes or assigns partitions, before the change
    /// takes effect, on librdkafka's thread (keep it quick, do not block). A handler that
    /// keeps state per partition marks it stale here: another instance may have changed
    /// it while this one did not own the partition. Default: nothing.
    fn partitions_changed(&self) {}
}
