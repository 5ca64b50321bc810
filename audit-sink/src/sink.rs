//! The sink service: `zenvelope.audit` → store, with signed checkpoints.
//!
//! The runtime's at-least-once loop calls [`AuditHandler`] for each record, many at once.
//! Each call decodes the event and hands it to one [`Appender`] task, which groups what
//! is waiting into one store transaction (group commit), fsyncs, and only then answers;
//! the runtime stores the record's offset after that answer. So a crash loses nothing
//! (an unanswered record is delivered again) and doubles nothing (the store already holds
//! its event id, so the redelivery is skipped).
//!
//! The appender keeps the Merkle tree's compact range in memory, gives every row its
//! leaf hash and the root after it, and every `every_events` events or `every_ms`
//! milliseconds signs a checkpoint, stores it and publishes it on
//! `zenvelope.checkpoints`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zenvelope_runtime::now_ms;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zenvelope_runtime::{Disposition, Handler, Inbound, Outbound, Producer};
use zenvelope_schemas::names::topic;
use zenvelope_schemas::{AuditEvent, SchemaCodec};

use crate::Error;
use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::note::{Checkpoint, Signer};
use crate::store::{AuditStore, EventRecord, READ_PAGE_ROWS, StoredCheckpoint, StoredEvent};
use crate::telemetry::{Appended, CheckpointSigned};

/// Reason codes the sink writes on dead letters and retries.
pub mod reason {
    /// The record is not a decodable `AuditEvent`.
    pub const MALFORMED_AUDIT_EVENT: &str = "malformed_audit_event";
    /// A different event already holds the record's event id.
    pub const CONFLICTING_EVENT_ID: &str = "conflicting_event_id";
    /// The store refused or failed the append; retried.
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
}

/// When and how checkpoints are signed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The log's origin line (C2SP tlog-checkpoint), e.g. `audit.example.org/zenvelope`;
    /// also the signing key's name.
    #[serde(default = "default_origin")]
    pub origin: String,
    /// The Ed25519 signing key in the signed-note private key format
    /// (`PRIVATE+KEY+<name>+<id>+<key>`), one line, owner-only file.
    pub signing_key_file: PathBuf,
    /// Sign a checkpoint once this many events were appended since the last one.
    #[serde(default = "default_every_events")]
    pub every_events: u64,
    /// Sign a checkpoint at least this often while new events arrive, in milliseconds.
    #[serde(default = "default_every_ms")]
    pub every_ms: u64,
    /// Publish each checkpoint on `zenvelope.checkpoints`.
    #[serde(default = "default_true")]
    pub publish: bool,
}

/// How events are grouped into store transactions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one store transaction.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// How long the first event of a batch may wait for others, in milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            linger_ms: default_linger_ms(),
        }
    }
}

/// The default origin: names a local, unconfigured log.
pub const DEFAULT_ORIGIN: &str = "zenvelope.local/audit";

fn default_origin() -> String {
    DEFAULT_ORIGIN.to_owned()
}
fn default_every_events() -> u64 {
    1_000
}
fn default_every_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_max_events() -> usize {
    1_000
}
fn default_linger_ms() -> u64 {
    5
}

/// What the appender answers for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended at this index.
    Appended(u64),
    /// The log already held the event id with the same bytes (a redelivery); nothing was
    /// written.
    Duplicate,
    /// The log already held the event id with different bytes: a second, different event
    /// claims the id. Nothing was written; the record goes to the DLQ.
    ConflictingId,
}

type Reply = oneshot::Sender<Result<AppendOutcome, Arc<Error>>>;

/// Handle to the appender task.
#[derive(Clone, Debug)]
pub struct AppenderHandle {
    tx: mpsc::Sender<(EventRecord, Reply)>,
}

impl AppenderHandle {
    /// Appends one event; returns once it is durable (or known to be a duplicate).
    pub async fn append(&self, record: EventRecord) -> Result<AppendOutcome, Arc<Error>> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((record, reply)).await.is_err() {
            return Err(Arc::new(Error::Stopped));
        }
        answer.await.unwrap_or(Err(Arc::new(Error::Stopped)))
    }
}

/// Builds the tree's compact range from the stored leaf hashes, and checks it against the
/// last row's `root_after`: a sink must not extend a log that was altered under it.
pub async fn load_tree<S: AuditStore>(store: &S) -> Result<CompactRange, Error> {
    let size = store.size().await?;
    let mut tree = CompactRange::new();
    let mut last: Option<StoredEvent> = None;
    let mut from = 0;
    while from < size {
        let to = (from + READ_PAGE_ROWS).min(size);
        let rows = store.read_range(from, to).await?;
        for row in rows {
            if row.index != tree.size() {
                return Err(Error::Tampered {
                    index: tree.size(),
                    reason: "a row is missing or out of place",
                });
            }
            tree.push(row.leaf_hash);
            last = Some(row);
        }
        from = to;
    }
    if let Some(last) = last
        && last.root_after != tree.root()
    {
        return Err(Error::Tampered {
            index: last.index,
            reason: "the tree root recomputed from the stored leaf hashes differs from the stored one",
        });
    }
    Ok(tree)
}

/// The single writer of one log.
pub struct Appender<S> {
    store: Arc<S>,
    tree: CompactRange,
    batch: BatchConfig,
    checkpoints: Checkpointer,
}

impl<S: AuditStore> Appender<S> {
    /// Loads the tree from `store` (see [`load_tree`]) and prepares the checkpointer.
    pub async fn open(
        store: Arc<S>,
        batch: BatchConfig,
        checkpoints: Checkpointer,
    ) -> Result<Self, Error> {
        if batch.max_events == 0 {
            return Err(Error::Config {
                field: "batch.max_events",
                reason: "must be at least 1".to_owned(),
            });
        }
        let tree = load_tree(store.as_ref()).await?;
        let mut checkpoints = checkpoints;
        checkpoints.last_size = store.checkpoints().await?.last().map_or(0, |c| c.size);
        Ok(Self {
            store,
            tree,
            batch,
            checkpoints,
        })
    }

    /// Current log size.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Current root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Signs a checkpoint if one is due (or, with `force`, if any event is not yet
    /// covered by one).
    pub async fn sign_due(&mut self, force: bool) {
        self.checkpoints
            .maybe_sign(self.store.as_ref(), &self.tree, force)
            .await;
    }

    /// Appends a batch: skips ids already stored (or repeated in the batch), computes the
    /// rows, and writes them in one durable transaction. Returns one outcome per input.
    pub async fn append_batch(
        &mut self,
        records: Vec<EventRecord>,
    ) -> Result<Vec<AppendOutcome>, Error> {
        let ids: Vec<Uuid> = records.iter().map(|r| r.event_id).collect();
        // The leaf hash of every id already held (stored, or earlier in this batch), to
        // tell a redelivery from a different event reusing an id.
        let mut seen: HashMap<Uuid, Hash> = HashMap::new();
        for id in self.store.existing_ids(&ids).await? {
            if let Some(row) = self.store.find(id).await? {
                seen.insert(id, leaf_hash(&row.record.value));
            }
        }
        let start = self.tree.size();
        let mut next = self.tree.clone();
        let mut rows = Vec::with_capacity(records.len());
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let leaf = leaf_hash(&record.value);
            if let Some(held) = seen.get(&record.event_id) {
                outcomes.push(if *held == leaf {
                    AppendOutcome::Duplicate
                } else {
                    AppendOutcome::ConflictingId
                });
                continue;
            }
            seen.insert(record.event_id, leaf);
            let index = next.size();
            next.push(leaf);
            outcomes.push(AppendOutcome::Appended(index));
            rows.push(StoredEvent {
                index,
                leaf_hash: leaf,
                root_after: next.root(),
                record,
            });
        }
        let appended = rows.len();
        if appended > 0 {
            self.store.append(start, rows).await?;
            self.tree = next;
        }
        Appended {
            appended,
            duplicates: outcomes.len() - appended,
        }
        .emit();
        Ok(outcomes)
    }

    /// Runs until `shutdown` (or until every handle is dropped): group-commits what the
    /// handlers send, and signs checkpoints on schedule and once more at the end.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<(EventRecord, Reply)>,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let mut tick = tokio::time::interval(self.checkpoints.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.sign_due(false).await,
                first = rx.recv() => {
                    let Some(first) = first else { break };
                    let mut batch = vec![first];
                    let deadline = Instant::now() + Duration::from_millis(self.batch.linger_ms);
                    while batch.len() < self.batch.max_events {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(mpsc::error::TryRecvError::Empty) => {
                                match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                                    Ok(Some(item)) => batch.push(item),
                                    Ok(None) | Err(_) => break,
                                }
                            }
                            Err(mpsc::error::TryRecvError::Disconnected) => break,
                        }
                    }
                    self.commit(batch).await;
                    self.sign_due(false).await;
                }
            }
        }
        self.sign_due(true).await;
        Ok(())
    }

    async fn commit(&mut self, batch: Vec<(EventRecord, Reply)>) {
        let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.append_batch(records).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = replies.len(), "Audit append failed; the events will be retried.");
                // After a conflict or an unknown outcome, believe the store, not memory.
                match load_tree(self.store.as_ref()).await {
                    Ok(tree) => self.tree = tree,
                    Err(error) => {
                        tracing::error!(%error, "Audit log could not be reloaded after a failed append.");
                    }
                }
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(Arc::clone(&error)));
                }
            }
        }
    }
}

/// Signs, stores and publishes checkpoints.
pub struct Checkpointer {
    signer: Signer,
    origin: String,
    every_events: u64,
    every: Duration,
    publisher: Option<Producer>,
    last_size: u64,
    last_at: Instant,
}

impl Checkpointer {
    /// A checkpointer for `origin`, signing with `signer`; publishes when `publisher` is
    /// set.
    pub fn new(
        signer: Signer,
        origin: String,
        every_events: u64,
        every_ms: u64,
        publisher: Option<Producer>,
    ) -> Result<Self, Error> {
        if every_events == 0 || every_ms == 0 {
            return Err(Error::Config {
                field: "checkpoint.every_events / checkpoint.every_ms",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(Self {
            signer,
            origin,
            every_events,
            every: Duration::from_millis(every_ms),
            publisher,
            last_size: 0,
            last_at: Instant::now(),
        })
    }

    fn interval(&self) -> Duration {
        self.every
    }

    /// Signs a checkpoint if enough events or time went by (or `force`, when anything is
    /// new). Failures are logged: the next attempt covers the same events.
    pub async fn maybe_sign<S: AuditStore>(&mut self, store: &S, tree: &CompactRange, force: bool) {
        let size = tree.size();
        if size == 0 || size == self.last_size {
            return;
        }
        let due =
            size - self.last_size >= self.every_events || self.last_at.elapsed() >= self.every;
        if !(due || force) {
            return;
        }
        match self.sign(store, tree).await {
            Ok(()) => {
                self.last_size = size;
                self.last_at = Instant::now();
            }
            Err(error) => tracing::warn!(%error, size, "Checkpoint could not be signed or stored."),
        }
    }

    async fn sign<S: AuditStore>(&mut self, store: &S, tree: &CompactRange) -> Result<(), Error> {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: tree.size(),
            root: tree.root(),
            extensions: Vec::new(),
        };
        let note = checkpoint.sign(&self.signer).map_err(Error::Key)?;
        store
            .add_checkpoint(&StoredCheckpoint {
                size: checkpoint.size,
                root: checkpoint.root,
                note: note.clone(),
                created_at_ms: now_ms(),
            })
            .await?;
        CheckpointSigned {
            size: checkpoint.size,
        }
        .emit();
        if let Some(producer) = &self.publisher {
            let record = Outbound::new(
                topic::CHECKPOINTS,
                Some(self.origin.as_bytes().to_vec()),
                note.into_bytes(),
            );
            if let Err(error) = producer.send(record).await {
                // Stored already; the next checkpoint supersedes this one on the topic.
                tracing::warn!(%error, size = checkpoint.size, "Checkpoint could not be published.");
            }
        }
        Ok(())
    }
}

/// The runtime handler: decodes, then waits for the appender's durable answer.
pub struct AuditHandler {
    codec: Arc<SchemaCodec>,
    appender: AppenderHandle,
}

impl AuditHandler {
    /// A handler feeding `appender`.
    pub fn new(codec: Arc<SchemaCodec>, appender: AppenderHandle) -> Self {
        Self { codec, appender }
    }
}

/// Decodes a Kafka audit record into the row the store keeps.
pub async fn decode_record(codec: &SchemaCodec, value: &[u8]) -> Result<EventRecord, Error> {
    let event: AuditEvent = codec.decode(value).await.map_err(Error::Decode)?;
    Ok(EventRecord {
        event_id: event.event_id,
        occurred_at_ms: event.occurred_at_ms,
        tenant: event.tenant,
        subject: event.subject,
        operation: event.operation.symbol().to_owned(),
        value: value.to_vec(),
    })
}

impl Handler for AuditHandler {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        let record = match decode_record(&self.codec, &msg.payload).await {
            Ok(record) => record,
            Err(error) => {
                let cause = std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return Disposition::dead_letter(
                    reason::MALFORMED_AUDIT_EVENT,
                    format!("The record is not a decodable AuditEvent: {cause}."),
                );
            }
        };
        match self.appender.append(record).await {
            Ok(AppendOutcome::ConflictingId) => Disposition::dead_letter(
                reason::CONFLICTING_EVENT_ID,
                "The audit log already holds a different event with this event id.",
            ),
            Ok(_) => Disposition::Produce(Vec::new()),
            Err(error) => Disposition::retry(
                reason::STORE_UNAVAILABLE,
                format!("The audit store did not take the event: {error}."),
            ),
        }
    }
}

/// Starts an appender task for `store`; returns the handle the handlers use and the
/// task, which ends after `shutdown` with a final checkpoint.
pub async fn spawn_appender<S: AuditStore>(
    store: Arc<S>,
    batch: BatchConfig,
    checkpoints: Checkpointer,
    shutdown: CancellationToken,
) -> Result<(AppenderHandle, tokio::task::JoinHandle<Result<(), Error>>), Error> {
    let capacity = batch.max_events.saturating_mul(4).max(16);
    let appender = Appender::open(store, batch, checkpoints).await?;
    tracing::info!(
        size = appender.size(),
        root = %hex::encode(appender.root()),
        "Audit log opened."
    );
    let (tx, rx) = mpsc::channel(capacity);
    let task = tokio::spawn(appender.run(rx, shutdown));
    Ok((AppenderHandle { tx }, task))
}
