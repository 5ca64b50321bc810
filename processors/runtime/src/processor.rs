//! The at-least-once consume → handle → produce loop.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use futures_util::future::join_all;
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zenvelope_schemas::{DeadLetter, SchemaCodec, Subject, names};

use crate::config::{KafkaConfig, ProcessorConfig};
use crate::error::{Error, is_transient};
use crate::message::{Disposition, Handler, Inbound, Outbound};
use crate::producer::Producer;
use crate::telemetry::{
    Abandoned, ConsumerError, DeadLettered, MessageFinished, Outcome, ProduceFailed, Rebalanced,
    RetryScheduled, in_flight,
};
use crate::tracker::{Generation, Trackers};
use crate::transactions::{self, Transactions};

/// Reason codes the runtime itself writes on dead letters.
pub mod reason {
    /// The record has no value.
    pub const EMPTY_PAYLOAD: &str = "empty_payload";
    /// The record's value is larger than `max_message_bytes`.
    pub const OVERSIZED: &str = "oversized";
    /// The handler asked for retries `max_retries` times and then once more.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// An output of the handler could not be produced (permanent broker or client error).
    pub const PRODUCE_FAILED: &str = "produce_failed";
    /// The handler panicked.
    pub const HANDLER_PANICKED: &str = "handler_panicked";
}

/// Longest backoff between retries, in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// Room left in a dead-letter record for everything but the original key and value
/// (Avro fields, Confluent header, topic name, record headers, protocol overhead).
const DLQ_OVERHEAD_BYTES: usize = 16 * 1024;

/// Pause after a consumer error before polling again.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long the final producer flush may take at shutdown.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Records finished (outputs or dead letter acknowledged, offset storable), whichever
    /// the outcome.
    pub processed: u64,
    /// Of those, records that went to the DLQ.
    pub dead_lettered: u64,
    /// Handler retries performed.
    pub retries: u64,
    /// Records received but not finished at shutdown; their offsets were not stored and
    /// they will be redelivered.
    pub abandoned: u64,
    /// Kafka transactions committed (0 when running idempotent-only).
    pub transactions_committed: u64,
    /// Kafka transactions aborted; the records they held were handled again.
    pub transactions_aborted: u64,
}

#[derive(Default)]
struct Stats {
    processed: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    abandoned: AtomicU64,
}

impl Stats {
    fn summary(&self, txn: Option<&Transactions>) -> RunSummary {
        let (transactions_committed, transactions_aborted) =
            txn.map_or((0, 0), Transactions::counts);
        RunSummary {
            processed: self.processed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            transactions_committed,
            transactions_aborted,
        }
    }
}

pub(crate) fn lock(trackers: &Mutex<Trackers>) -> MutexGuard<'_, Trackers> {
    // A panic while holding the lock cannot leave the trackers half-updated in a way
    // that stores a wrong offset (each method updates one partition entry), so recover.
    trackers.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Consumer context: resets offset trackers on every rebalance, so completions of
/// records from a partition we no longer own (or own again, from a new position) never
/// store an offset.
pub(crate) struct RuntimeContext {
    trackers: Arc<Mutex<Trackers>>,
    /// The handler's [`Handler::partitions_changed`].
    on_rebalance: Box<dyn Fn() + Send + Sync>,
}

impl ClientContext for RuntimeContext {}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (kind, tpl) = match rebalance {
            Rebalance::Assign(tpl) => ("assign", *tpl),
            Rebalance::Revoke(tpl) => ("revoke", *tpl),
            Rebalance::Error(error) => {
                tracing::warn!(%error, "Consumer group rebalance failed.");
                Rebalanced {
                    kind: "error",
                    partitions: &[],
                }
                .emit();
                (self.on_rebalance)();
                return;
            }
        };
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        {
            let mut trackers = lock(&self.trackers);
            for (topic, partition) in &partitions {
                trackers.reset(topic, *partition);
            }
        }
        (self.on_rebalance)();
        Rebalanced {
            kind,
            partitions: &partitions,
        }
        .emit();
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(partitions = offsets.count(), "Offsets committed."),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "Offset commit failed."),
        }
    }
}

pub(crate) type Consumer = StreamConsumer<RuntimeContext>;

pub(crate) struct Shared<H> {
    pub(crate) consumer: Consumer,
    /// Transactional when `txn` is set, idempotent otherwise.
    pub(crate) producer: Producer,
    pub(crate) trackers: Arc<Mutex<Trackers>>,
    codec: Arc<SchemaCodec>,
    handler: Arc<H>,
    cfg: ProcessorConfig,
    /// Largest original key + value a dead letter may carry.
    dlq_value_limit: usize,
    /// Cancelled at shutdown, or when transactions fail fatally.
    shutdown: CancellationToken,
    stats: Stats,
    /// Set when running with Kafka transactions.
    pub(crate) txn: Option<Transactions>,
}

/// Runs the at-least-once loop until `shutdown` is cancelled, then drains in-flight
/// records (up to `shutdown_grace_ms`), commits the stored offsets and flushes the
/// producer.
///
/// Returns an error only for start-up failures (configuration, client creation,
/// subscription) and fatal consumer errors; per-record failures go to the DLQ.
pub async fn run<H: Handler>(
    kafka: &KafkaConfig,
    processor: &ProcessorConfig,
    codec: Arc<SchemaCodec>,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<RunSummary, Error> {
    processor.validate()?;
    let (producer, txn) = match &kafka.transactional_id {
        Some(id) => match transactions::init(kafka, id).await {
            Some((producer, txn)) => (producer, Some(txn)),
            None => (Producer::new(kafka)?, None),
        },
        None => (Producer::new(kafka)?, None),
    };
    // Cancelled by the caller's shutdown, or by the transaction committer on a fatal
    // error.
    let shutdown = shutdown.child_token();

    let trackers = Arc::new(Mutex::new(Trackers::default()));
    let mut consumer_config = kafka.client_config();
    consumer_config
        .set("group.id", &processor.group_id)
        // With transactions, offsets are committed only inside them.
        .set(
            "enable.auto.commit",
            if txn.is_some() { "false" } else { "true" },
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: Consumer = consumer_config
        .create_with_context(RuntimeContext {
            trackers: trackers.clone(),
            on_rebalance: {
                let handler = handler.clone();
                Box::new(move || handler.partitions_changed())
            },
        })
        .map_err(|e| Error::client("consumer", e))?;
    let topics: Vec<&str> = processor.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| Error::kafka("subscribe", e))?;

    let shared = Arc::new(Shared {
        consumer,
        producer,
        trackers,
        codec,
        handler,
        cfg: processor.clone(),
        dlq_value_limit: kafka
            .producer_max_message_bytes()
            .saturating_sub(DLQ_OVERHEAD_BYTES),
        shutdown: shutdown.clone(),
        stats: Stats::default(),
        txn,
    });
    let committer = shared.txn.as_ref().map(|_| {
        tokio::spawn(transactions::committer(
            shared.clone(),
            Duration::from_millis(processor.transaction_interval_ms),
            shutdown.clone(),
        ))
    });
    tracing::info!(group_id = %processor.group_id, topics = ?processor.topics, max_in_flight = processor.max_in_flight, "Processing loop started.");

    let semaphore = Arc::new(Semaphore::new(processor.max_in_flight));
    let mut tasks = JoinSet::new();
    let fatal = loop {
        while let Some(joined) = tasks.try_join_next() {
            log_join(joined);
        }
        // Back-pressure: no permit, no poll.
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break None,
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break None,
            },
        };
        // After an aborted transaction, rewind before taking anything new.
        if !transactions::rewind_if_needed(&shared).await {
            tokio::select! {
                () = shutdown.cancelled() => break None,
                () = tokio::time::sleep(CONSUMER_ERROR_PAUSE) => continue,
            }
        }
        let rewind_requested = async {
            match &shared.txn {
                Some(txn) => txn.rewind_requested().await,
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => break None,
            // An aborted transaction: go round and rewind before polling again.
            () = rewind_requested => continue,
            m = shared.consumer.recv() => m.map(|m| to_inbound(&m)),
        };
        match received {
            Ok(inbound) => {
                let generation =
                    lock(&shared.trackers).begin(&inbound.topic, inbound.partition, inbound.offset);
                in_flight(processor.max_in_flight - semaphore.available_permits());
                tasks.spawn(process(
                    shared.clone(),
                    Arc::new(inbound),
                    generation,
                    permit,
                ));
            }
            Err(KafkaError::MessageConsumptionFatal(code)) => {
                break Some(Error::kafka(
                    "consume",
                    KafkaError::MessageConsumptionFatal(code),
                ));
            }
            Err(error) => {
                ConsumerError {
                    code: &error
                        .rdkafka_error_code()
                        .map_or_else(|| "unknown".to_owned(), |c| format!("{c:?}")),
                    error: &error,
                }
                .emit();
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(CONSUMER_ERROR_PAUSE) => {}
                }
            }
        }
    };

    tracing::info!(
        in_flight = tasks.len(),
        "Processing loop stopping; draining in-flight records."
    );
    let grace = Duration::from_millis(processor.shutdown_grace_ms);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        let count = tasks.len();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        shared
            .stats
            .abandoned
            .fetch_add(count as u64, Ordering::Relaxed);
        Abandoned { count }.emit();
    }
    in_flight(0);
    let pending = lock(&shared.trackers).pending();
    if pending > 0 {
        tracing::info!(
            pending,
            "Some records are unfinished; their offsets are not stored and they will be redelivered."
        );
    }

    // With transactions: stop the committer, then commit the last transaction with the
    // final positions.
    let mut fatal = fatal;
    if let Some(committer) = committer {
        shutdown.cancel();
        let _ = committer.await;
        if let Some(error) = shared.txn.as_ref().and_then(Transactions::take_fatal) {
            fatal.get_or_insert(error);
        } else if let Err(error) = transactions::commit(&shared, true).await {
            tracing::warn!(%error, "The final transaction failed.");
        }
    }

    // Every finished record's outputs are already acknowledged; flush anything an
    // abandoned record queued, then commit what is stored (without transactions), then
    // leave the group. All of these block, so they run off the reactor.
    let closing = shared.clone();
    drop(shared);
    let summary = tokio::task::spawn_blocking(move || {
        if let Err(error) = closing.producer.flush_blocking(FINAL_FLUSH_TIMEOUT) {
            tracing::warn!(%error, "Producer flush at shutdown did not complete.");
        }
        if closing.txn.is_none() {
            match closing.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => tracing::warn!(%error, "Final offset commit failed."),
            }
        }
        closing.consumer.unsubscribe();
        closing.stats.summary(closing.txn.as_ref())
    })
    .await
    .map_err(|_| Error::kafka("close", KafkaError::Canceled))?;
    tracing::info!(
        processed = summary.processed,
        dead_lettered = summary.dead_lettered,
        retries = summary.retries,
        abandoned = summary.abandoned,
        transactions_committed = summary.transactions_committed,
        transactions_aborted = summary.transactions_aborted,
        "Processing loop stopped."
    );
    match fatal {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && !error.is_cancelled()
    {
        tracing::error!(%error, "A record task failed.");
    }
}

pub(crate) fn to_inbound(m: &BorrowedMessage<'_>) -> Inbound {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Inbound {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Handles one record to the end and marks it finished, or abandons it at shutdown.
async fn process<H: Handler>(
    shared: Arc<Shared<H>>,
    inbound: Arc<Inbound>,
    generation: Generation,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let Some(outcome) = handle_record(&shared, &inbound).await else {
        shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.stats.processed.fetch_add(1, Ordering::Relaxed);
    MessageFinished {
        topic: &inbound.topic,
        partition: inbound.partition,
        offset: inbound.offset,
        outcome,
        elapsed: started.elapsed(),
    }
    .emit();
    // Hold the lock while storing, so stores of one partition stay in order and a
    // rebalance cannot interleave. With transactions the committer reads the positions
    // from the trackers instead.
    let trackers = &mut *lock(&shared.trackers);
    if let Some(next) = trackers.complete(
        generation,
        &inbound.topic,
        inbound.partition,
        inbound.offset,
    ) && shared.txn.is_none()
        && let Err(error) =
            store_position(&shared.consumer, &inbound.topic, inbound.partition, next)
    {
        // Typically the partition was revoked meanwhile; it is redelivered elsewhere.
        tracing::warn!(topic = %inbound.topic, partition = inbound.partition, offset = next, %error, "Storing an offset failed.");
    }
}

/// Stores `next` (the next offset to consume) as the partition's position. Not
/// `Consumer::store_offset`: that stores its argument plus one (librdkafka's legacy
/// `rd_kafka_offset_store`).
fn store_position(consumer: &Consumer, topic: &str, partition: i32, next: i64) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    consumer.store_offsets(&tpl)
}

/// Returns the outcome once everything is acknowledged, `None` if abandoned at shutdown.
async fn handle_record<H: Handler>(shared: &Shared<H>, inbound: &Arc<Inbound>) -> Option<Outcome> {
    let cfg = &shared.cfg;
    if inbound.payload.is_empty() {
        return dead_letter(
            shared,
            inbound,
            reason::EMPTY_PAYLOAD,
            "The record has no value.".to_owned(),
            Vec::new(),
        )
        .await;
    }
    if inbound.payload.len() > cfg.max_message_bytes {
        let detail = format!(
            "The record value is {} bytes, more than the {} bytes allowed.",
            inbound.payload.len(),
            cfg.max_message_bytes
        );
        return dead_letter(shared, inbound, reason::OVERSIZED, detail, Vec::new()).await;
    }

    let mut retries = 0;
    loop {
        let disposition = AssertUnwindSafe(shared.handler.handle(inbound.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Disposition::dead_letter(reason::HANDLER_PANICKED, "The handler panicked.")
            });
        match disposition {
            Disposition::Produce(outputs) => {
                return produce_outputs(shared, inbound, outputs).await;
            }
            Disposition::DeadLetter {
                reason_code,
                detail,
                also,
            } => return dead_letter(shared, inbound, &reason_code, detail, also).await,
            Disposition::Abandon => return None,
            Disposition::Retry {
                reason_code,
                detail,
            } => {
                if retries >= cfg.max_retries {
                    let detail = format!(
                        "Gave up after {retries} retries; the last reason was {reason_code}: {detail}"
                    );
                    return dead_letter(
                        shared,
                        inbound,
                        reason::RETRIES_EXHAUSTED,
                        detail,
                        Vec::new(),
                    )
                    .await;
                }
                retries += 1;
                let backoff = backoff(cfg.retry_backoff_ms, retries);
                RetryScheduled {
                    topic: &inbound.topic,
                    partition: inbound.partition,
                    offset: inbound.offset,
                    reason: &reason_code,
                    attempt: retries,
                    backoff,
                }
                .emit();
                shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// `base_ms * 2^(attempt - 1)`, capped at [`MAX_BACKOFF_MS`].
fn backoff(base_ms: u64, attempt: u32) -> Duration {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(base_ms.saturating_mul(factor).min(MAX_BACKOFF_MS))
}

/// Why producing one record stopped.
enum ProduceStop {
    /// A permanent error: retrying the same record cannot succeed.
    Permanent { topic: String, code: String },
    /// Shutdown while retrying a transient error.
    Shutdown,
}

/// Produces the handler's outputs concurrently; a permanent failure sends the inbound
/// record to the DLQ as `produce_failed`.
async fn produce_outputs<H: Handler>(
    shared: &Shared<H>,
    inbound: &Arc<Inbound>,
    outputs: Vec<Outbound>,
) -> Option<Outcome> {
    let results = join_all(outputs.iter().map(|o| produce_retrying(shared, o, false))).await;
    let mut permanent = None;
    for result in results {
        match result {
            Ok(()) => {}
            Err(ProduceStop::Shutdown) => return None,
            Err(ProduceStop::Permanent { topic, code }) => {
                permanent.get_or_insert((topic, code));
            }
        }
    }
    match permanent {
        None => Some(Outcome::Produced),
        Some((topic, code)) => {
            let detail =
                format!("Producing an output to topic {topic} failed permanently ({code}).");
            dead_letter(shared, inbound, reason::PRODUCE_FAILED, detail, Vec::new()).await
        }
    }
}

/// Produces one record, retrying transient errors with backoff until shutdown (or every
/// error, when `retry_permanent`).
async fn produce_retrying<H: Handler>(
    shared: &Shared<H>,
    record: &Outbound,
    retry_permanent: bool,
) -> Result<(), ProduceStop> {
    let mut attempt = 0;
    loop {
        let gate = shared.txn.as_ref().map(|t| &t.gate);
        let error = match shared.producer.send_gated(record, gate).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let transient = is_transient(&error);
        let code = error
            .rdkafka_error_code()
            .map_or_else(|| "unknown".to_owned(), |c| format!("{c:?}"));
        ProduceFailed {
            topic: &record.topic,
            code: &code,
            transient,
            error: &error,
        }
        .emit();
        if !transient && !retry_permanent {
            return Err(ProduceStop::Permanent {
                topic: record.topic.clone(),
                code,
            });
        }
        attempt += 1;
        tokio::select! {
            () = shared.shutdown.cancelled() => return Err(ProduceStop::Shutdown),
            () = tokio::time::sleep(backoff(shared.cfg.retry_backoff_ms, attempt)) => {}
        }
    }
}

/// Writes the inbound record to the DLQ (retrying until it is acknowledged or shutdown)
/// and produces `also`.
async fn dead_letter<H: Handler>(
    shared: &Shared<H>,
    inbound: &Arc<Inbound>,
    reason_code: &str,
    mut detail: String,
    also: Vec<Outbound>,
) -> Option<Outcome> {
    let original_len = inbound.payload.len() + inbound.key.as_ref().map_or(0, Vec::len);
    let mut include_value = original_len <= shared.dlq_value_limit;
    if !include_value {
        detail.push_str(&format!(
            " The original value ({} bytes) is too large for the dead-letter queue and was left out.",
            inbound.payload.len()
        ));
    }
    let mut attempt = 0;
    loop {
        let record = match dlq_record(shared, inbound, reason_code, &detail, include_value).await {
            Ok(r) => Some(r),
            Err(error) => {
                tracing::error!(topic = %inbound.topic, partition = inbound.partition, offset = inbound.offset, %error, "Encoding a dead letter failed.");
                None
            }
        };
        if let Some(record) = record {
            match produce_retrying(shared, &record, false).await {
                Ok(()) => break,
                Err(ProduceStop::Shutdown) => return None,
                Err(ProduceStop::Permanent { code, .. }) => {
                    if include_value
                        && code == format!("{:?}", RDKafkaErrorCode::MessageSizeTooLarge)
                    {
                        include_value = false;
                        detail.push_str(&format!(
                            " The original value ({} bytes) is too large for the dead-letter queue and was left out.",
                            inbound.payload.len()
                        ));
                        continue;
                    }
                }
            }
        }
        // Never store this offset without a dead letter: retry until shutdown.
        attempt += 1;
        tokio::select! {
            () = shared.shutdown.cancelled() => return None,
            () = tokio::time::sleep(backoff(shared.cfg.retry_backoff_ms, attempt)) => {}
        }
    }
    DeadLettered {
        topic: &inbound.topic,
        partition: inbound.partition,
        offset: inbound.offset,
        reason: reason_code,
    }
    .emit();
    shared.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);

    // The dead letter is written; `also` records (audit events) are best effort beyond
    // transient retries: a permanent failure is logged and counted, not retried.
    for result in join_all(also.iter().map(|o| produce_retrying(shared, o, false))).await {
        match result {
            Ok(()) | Err(ProduceStop::Permanent { .. }) => {}
            Err(ProduceStop::Shutdown) => return None,
        }
    }
    Some(Outcome::DeadLettered)
}

async fn dlq_record<H: Handler>(
    shared: &Shared<H>,
    inbound: &Inbound,
    reason_code: &str,
    detail: &str,
    include_value: bool,
) -> Result<Outbound, Error> {
    let letter = DeadLetter {
        original_topic: inbound.topic.clone(),
        original_partition: inbound.partition,
        original_offset: inbound.offset,
        original_key: if include_value {
            inbound.key.clone()
        } else {
            None
        },
        original_value: if include_value {
            inbound.payload.clone()
        } else {
            Vec::new()
        },
        reason_code: reason_code.to_owned(),
        reason_detail: detail.to_owned(),
        failed_at_ms: now_ms(),
        // A redriven record that fails again carries its count on (redrive refuses loops).
        redrive_count: inbound
            .header(names::header::REDRIVE_COUNT)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u16>().ok())
            .map_or(0, i32::from),
    };
    let payload = shared.codec.encode(Subject::DlqValue, &letter).await?;
    // Keep the original headers (tenant, kind, ids) for redrive; replace any old reason.
    let mut headers: Vec<(String, Vec<u8>)> = inbound
        .headers
        .iter()
        .filter(|(k, _)| k != names::header::REASON)
        .cloned()
        .collect();
    headers.push((
        names::header::REASON.to_owned(),
        reason_code.as_bytes().to_vec(),
    ));
    Ok(Outbound {
        topic: shared.cfg.dlq_topic.clone(),
        key: inbound.key.clone(),
        payload,
        headers,
    })
}

/// Milliseconds since the Unix epoch, from this machine's clock (0 before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(200, 1), Duration::from_millis(200));
        assert_eq!(backoff(200, 2), Duration::from_millis(400));
        assert_eq!(backoff(200, 4), Duration::from_millis(1600));
        assert_eq!(backoff(200, 60), Duration::from_millis(MAX_BACKOFF_MS));
        assert_eq!(backoff(200, 0), Duration::from_millis(200));
    }
}
