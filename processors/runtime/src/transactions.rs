//! Transactional consume-transform-produce, used when `kafka.transactional_id` is set and
//! `init_transactions` succeeds.
//!
//! Records are still handled concurrently, up to `max_in_flight`. Their outputs and dead
//! letters go into the open transaction; a committer task ends it every
//! `transaction_interval_ms` together with the consumed positions that are safe to commit
//! (every record below them finished and its outputs acknowledged), then begins the next
//! one. `read_committed` readers see a record's outputs and its consumed offset together
//! or not at all.
//!
//! An abortable failure aborts the transaction: everything produced in it disappears for
//! `read_committed` readers, so every finished-but-uncommitted record must be handled
//! again. The committer forgets all offset tracking and asks the loop to rewind the
//! consumer to the committed offsets (the loop does it before its next poll, so no record
//! from the old positions is taken in between). Records still in flight from before
//! finish into the next transaction as duplicates, which the at-least-once contract
//! already allows. A fatal error (e.g. this producer was fenced by another instance with
//! the same transactional id) stops the loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::message::Handler;
use crate::processor::{Shared, lock};
use crate::telemetry::{TransactionAborted, TransactionCommitted};

/// How long one transaction call (init, send offsets, commit, abort) may block.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a rewind may wait for the committed offsets.
const REWIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of the final commit at shutdown when it fails with a retriable error.
const FINAL_COMMIT_ATTEMPTS: u32 = 3;

/// The state shared by the loop, the record tasks and the committer.
pub(crate) struct Transactions {
    /// Record tasks hold the read side while enqueueing; the committer holds the write
    /// side from the commit to the next `begin_transaction`.
    pub(crate) gate: RwLock<()>,
    /// Set by an abort until the loop has rewound the consumer; meanwhile no offsets
    /// are committed.
    rewind: AtomicBool,
    /// Wakes the loop from a poll that may wait for a long time, so it rewinds now.
    rewind_requested: Notify,
    committed: AtomicU64,
    aborted: AtomicU64,
    /// The positions the last committed transactions carried, so unchanged ones are not
    /// sent again (an idle loop then commits empty transactions, which cost nothing).
    last_positions: Mutex<HashMap<(String, i32), i64>>,
    /// The fatal error that stopped the loop, if any.
    fatal: Mutex<Option<Error>>,
}

/// How one attempt to end a transaction went.
enum Ended {
    Committed,
    Aborted,
    /// A retriable error: the transaction is still open, try again later.
    Retry,
}

impl Transactions {
    /// Creates the transactional producer's state after `init_transactions` and the
    /// first `begin_transaction` succeeded on `producer` (see [`init`]).
    fn new() -> Self {
        Self {
            gate: RwLock::new(()),
            rewind: AtomicBool::new(false),
            rewind_requested: Notify::new(),
            committed: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            last_positions: Mutex::new(HashMap::new()),
            fatal: Mutex::new(None),
        }
    }

    /// Transactions committed and aborted so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.committed.load(Ordering::Relaxed),
            self.aborted.load(Ordering::Relaxed),
        )
    }

    /// Resolves when an abort asks the loop to rewind.
    pub(crate) async fn rewind_requested(&self) {
        self.rewind_requested.notified().await;
    }

    /// The fatal error that stopped the loop, if any.
    pub(crate) fn take_fatal(&self) -> Option<Error> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Creates the transactional producer and opens the first transaction; `None` (with a
/// warning) if the broker or the configuration does not allow transactions.
pub(crate) async fn init(
    kafka: &crate::KafkaConfig,
    transactional_id: &str,
) -> Option<(crate::Producer, Transactions)> {
    let producer = match crate::Producer::transactional(kafka, transactional_id) {
        Ok(p) => p,
        Err(error) => {
            tracing::warn!(%error, "Cannot create a transactional producer; running idempotent-only.");
            return None;
        }
    };
    let client = producer.client().clone();
    let result = blocking(move || {
        client.init_transactions(TRANSACTION_TIMEOUT)?;
        client.begin_transaction()
    })
    .await;
    match result {
        Ok(()) => {
            tracing::info!(
                transactional_id,
                "Kafka transactions enabled: outputs and consumed offsets are committed together."
            );
            Some((producer, Transactions::new()))
        }
        Err(error) => {
            tracing::warn!(%error, "Kafka transactions are unavailable; running idempotent-only.");
            None
        }
    }
}

/// Runs a blocking librdkafka call off the reactor; a failed task reads as an error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Ends the open transaction with the positions that are safe to commit and begins the
/// next one (unless `last`). Returns an error only for fatal failures.
pub(crate) async fn commit<H: Handler>(shared: &Arc<Shared<H>>, last: bool) -> Result<(), Error> {
    let Some(txn) = shared.txn.as_ref() else {
        return Ok(());
    };
    let _writer = txn.gate.write().await;
    let positions: Vec<(String, i32, i64)> = if txn.rewind.load(Ordering::SeqCst) {
        Vec::new()
    } else {
        let last = txn
            .last_positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        lock(&shared.trackers)
            .positions()
            .into_iter()
            .filter(|(t, p, o)| last.get(&(t.clone(), *p)) != Some(o))
            .collect()
    };
    let attempts = if last { FINAL_COMMIT_ATTEMPTS } else { 1 };
    for _ in 0..attempts {
        let s = shared.clone();
        let p = positions.clone();
        let ended = tokio::task::spawn_blocking(move || end_blocking(&s, &p, last))
            .await
            .map_err(|_| Error::kafka("commit transaction", KafkaError::Canceled))??;
        match ended {
            Ended::Committed => {
                txn.committed.fetch_add(1, Ordering::Relaxed);
                let mut last = txn
                    .last_positions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for (topic, partition, next) in &positions {
                    last.insert((topic.clone(), *partition), *next);
                }
                TransactionCommitted {
                    partitions: positions.len(),
                }
                .emit();
                return Ok(());
            }
            Ended::Aborted => {
                txn.aborted.fetch_add(1, Ordering::Relaxed);
                // Everything finished since the last commit must be handled again.
                lock(&shared.trackers).reset_all();
                txn.last_positions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                txn.rewind.store(true, Ordering::SeqCst);
                txn.rewind_requested.notify_one();
                return Ok(());
            }
            Ended::Retry => {}
        }
    }
    if last {
        tracing::warn!(
            "The final transaction could not be committed; the records since the last commit will be handled again."
        );
    }
    Ok(())
}

/// The blocking part of [`commit`]: send offsets, commit, or abort; then begin.
fn end_blocking<H: Handler>(
    shared: &Shared<H>,
    positions: &[(String, i32, i64)],
    last: bool,
) -> Result<Ended, Error> {
    let producer = shared.producer.client();
    let attempt = || -> Result<(), KafkaError> {
        if !positions.is_empty() {
            let mut tpl = TopicPartitionList::with_capacity(positions.len());
            for (topic, partition, next) in positions {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
            }
            match shared.consumer.group_metadata() {
                Some(group) => {
                    producer.send_offsets_to_transaction(&tpl, &group, TRANSACTION_TIMEOUT)?;
                }
                None => tracing::warn!(
                    "No consumer group metadata; committing the transaction without offsets."
                ),
            }
        }
        producer.commit_transaction(TRANSACTION_TIMEOUT)
    };
    let ended = match attempt() {
        Ok(()) => Ended::Committed,
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
            TransactionAborted {
                error: &KafkaError::Transaction(e),
            }
            .emit();
            producer
                .abort_transaction(TRANSACTION_TIMEOUT)
                .map_err(|e| Error::kafka("abort transaction", e))?;
            Ended::Aborted
        }
        Err(KafkaError::Transaction(e)) if e.is_retriable() => {
            tracing::warn!(error = %e, "Committing the transaction failed; retrying.");
            return Ok(Ended::Retry);
        }
        Err(error) => return Err(Error::kafka("commit transaction", error)),
    };
    if !last {
        producer
            .begin_transaction()
            .map_err(|e| Error::kafka("begin transaction", e))?;
    }
    Ok(ended)
}

/// Commits every `interval` until `stop` is cancelled. A fatal error is kept for the
/// loop and cancels `stop`.
pub(crate) async fn committer<H: Handler>(
    shared: Arc<Shared<H>>,
    interval: Duration,
    stop: CancellationToken,
) {
    let Some(txn) = shared.txn.as_ref() else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(error) = commit(&shared, false).await {
            tracing::error!(%error, "Transactions failed fatally; stopping the processing loop.");
            *txn.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
            stop.cancel();
            return;
        }
    }
}

/// After an abort: forgets all offset tracking and seeks every assigned partition back
/// to its committed offset (the beginning if none). Run by the loop between polls.
/// Returns `false` if the rewind must be tried again.
pub(crate) async fn rewind_if_needed<H: Handler>(shared: &Arc<Shared<H>>) -> bool {
    let Some(txn) = shared.txn.as_ref() else {
        return true;
    };
    if !txn.rewind.load(Ordering::SeqCst) {
        return true;
    }
    let s = shared.clone();
    let result = blocking(move || -> Result<usize, KafkaError> {
        let assignment = s.consumer.assignment()?;
        let mut committed = s.consumer.committed_offsets(assignment, REWIND_TIMEOUT)?;
        let never_committed: Vec<(String, i32)> = committed
            .elements()
            .iter()
            .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in never_committed {
            committed.set_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        lock(&s.trackers).reset_all();
        let count = committed.count();
        if count > 0 {
            s.consumer.seek_partitions(committed, REWIND_TIMEOUT)?;
        }
        Ok(count)
    })
    .await;
    match result {
        Ok(partitions) => {
            txn.rewind.store(false, Ordering::SeqCst);
            tracing::info!(
                partitions,
                "Rewound to the committed offsets after an aborted transaction."
            );
            true
        }
        Err(error) => {
            tracing::warn!(%error, "Rewinding after an aborted transaction failed; retrying.");
            false
        }
    }
}
