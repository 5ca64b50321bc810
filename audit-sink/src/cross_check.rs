//! `zenvelope audit cross-check`: re-read the audit topic and confirm that the store holds
//! exactly its events, and that every checkpoint published on the checkpoints topic
//! matches the store.
//!
//! `verify` proves the store is consistent with itself and with its signed checkpoints;
//! it cannot see an event that never reached the store, or one that was deleted together
//! with every trace of it before the first checkpoint. The topic is an independent copy:
//! this module compares the two.
//!
//! The core, [`CrossCheck`], does no Kafka I/O, so it is tested without a broker: it is
//! fed the topic's records one by one ([`CrossCheck::add_event`],
//! [`CrossCheck::add_checkpoint`]), then [`CrossCheck::compare`] pages through the store
//! with [`AuditStore::read_range`]. Per event on the topic it keeps only the id, the leaf
//! hash of the record value and where the record was seen (about 64 bytes, so tens of
//! millions of events fit), and the store is read [`READ_PAGE_ROWS`] rows at a time.
//! The tree the checkpoints are compared with is a [`CompactRange`] over the leaf hashes
//! recomputed from the stored values: its root at each checkpoint's size is taken as the
//! walk passes that size, so memory does not grow with the log.
//!
//! What it finds ([`Finding`]):
//! - `missing_from_store`: a well-formed event on the topic whose id is not stored (lost,
//!   deleted, or the sink has not caught up yet: a second run after the sink caught up
//!   tells these apart);
//! - `not_on_topic`: a stored event whose id is not on the topic in the range read
//!   (inserted into the store, or dropped from the topic by retention: the report keeps
//!   the topic's low offsets to show which);
//! - `differs_from_store`: the stored bytes of an id differ from every copy on the topic;
//! - `conflicting_on_topic`: two different events with one id on the topic. The sink
//!   dead-letters the later one (`conflicting_event_id`), so this is a notice, and a
//!   finding only when the store holds neither copy;
//! - `malformed_on_topic`: a record that is not an audit event (dead-lettered by the sink
//!   as `malformed_audit_event`): a notice;
//! - `checkpoint_signature`, `checkpoint_beyond_store`, `checkpoint_root`: a record on
//!   the checkpoints topic that does not verify with the log's key, commits to more rows
//!   than the store holds, or whose root differs from the store's at its size.
//!
//! Redeliveries (one id, the same bytes, several times on the topic) are counted only.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;
use zenvelope_runtime::{KafkaConfig, RangeReader, ReadFrom, ReadTo};
use zenvelope_schemas::SchemaCodec;
use zenvelope_schemas::names::topic;

use crate::Error;
use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::note::{Checkpoint, Verifier};
use crate::sink::decode_record;
use crate::store::{AuditStore, READ_PAGE_ROWS};

/// Most findings listed in one report, and most notices; the counts cover them all.
pub const MAX_LISTED_FINDINGS: usize = 100;

/// Where a record was read on the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TopicPosition {
    /// The partition.
    pub partition: i32,
    /// The offset in it.
    pub offset: i64,
}

/// One thing the cross-check found. Whether it is a finding (the store and the topic
/// disagree) or a notice (the sink dead-letters such records; nothing is wrong with the
/// store) is [`Finding::is_problem`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A well-formed event on the topic whose id the store does not hold.
    MissingFromStore {
        /// The event.
        event_id: Uuid,
        /// Where it is on the topic (its first copy).
        at: TopicPosition,
    },
    /// A stored event whose id is not on the topic in the range read.
    NotOnTopic {
        /// The event.
        event_id: Uuid,
        /// Its row in the store.
        index: u64,
    },
    /// The stored bytes of an event differ from every copy of it on the topic.
    DiffersFromStore {
        /// The event.
        event_id: Uuid,
        /// Its row in the store.
        index: u64,
        /// Where it is on the topic (its first copy).
        at: TopicPosition,
    },
    /// The topic carries two different events with one id. A finding only when the
    /// store holds neither copy (`store_holds_a_copy` false).
    ConflictingOnTopic {
        /// The id both carry.
        event_id: Uuid,
        /// The first copy read.
        first_at: TopicPosition,
        /// The copy that differs from it.
        at: TopicPosition,
        /// The row holding the id in the store, if any.
        index: Option<u64>,
        /// Whether the stored bytes are those of one of the copies.
        store_holds_a_copy: bool,
    },
    /// A record on the audit topic that is not an audit event.
    MalformedOnTopic {
        /// Where it is.
        at: TopicPosition,
    },
    /// A record on the checkpoints topic that is not a checkpoint of this log signed by
    /// the verifier key.
    CheckpointSignature {
        /// Where it is on the checkpoints topic.
        at: TopicPosition,
        /// Why it was refused.
        reason: String,
    },
    /// A signed checkpoint commits to more rows than the store holds.
    CheckpointBeyondStore {
        /// The signed size.
        size: u64,
        /// The store's size.
        store_size: u64,
        /// Where it is on the checkpoints topic.
        at: TopicPosition,
    },
    /// A signed checkpoint's root differs from the store's root at its size.
    CheckpointRoot {
        /// The signed size.
        size: u64,
        /// Where it is on the checkpoints topic.
        at: TopicPosition,
    },
}

impl Finding {
    /// Whether this means the store and the topic disagree (exit status 1), rather than
    /// a record the sink dead-letters.
    pub fn is_problem(&self) -> bool {
        match self {
            Finding::ConflictingOnTopic {
                store_holds_a_copy, ..
            } => !store_holds_a_copy,
            Finding::MalformedOnTopic { .. } => false,
            _ => true,
        }
    }

    /// The kind, as written in the JSON report.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::MissingFromStore { .. } => "missing_from_store",
            Finding::NotOnTopic { .. } => "not_on_topic",
            Finding::DiffersFromStore { .. } => "differs_from_store",
            Finding::ConflictingOnTopic { .. } => "conflicting_on_topic",
            Finding::MalformedOnTopic { .. } => "malformed_on_topic",
            Finding::CheckpointSignature { .. } => "checkpoint_signature",
            Finding::CheckpointBeyondStore { .. } => "checkpoint_beyond_store",
            Finding::CheckpointRoot { .. } => "checkpoint_root",
        }
    }

    /// One sentence for people: ids, rows and offsets, never event bytes.
    pub fn describe(&self) -> String {
        match self {
            Finding::MissingFromStore { event_id, at } => format!(
                "event {event_id} (partition {}, offset {}) is on the topic but not in the store",
                at.partition, at.offset
            ),
            Finding::NotOnTopic { event_id, index } => format!(
                "row {index} (event {event_id}) is in the store but not on the topic in the range read"
            ),
            Finding::DiffersFromStore {
                event_id,
                index,
                at,
            } => format!(
                "row {index} (event {event_id}) differs from the event on the topic (partition {}, offset {})",
                at.partition, at.offset
            ),
            Finding::ConflictingOnTopic {
                event_id,
                first_at,
                at,
                index,
                store_holds_a_copy,
            } => {
                let store = match (index, store_holds_a_copy) {
                    (Some(index), true) => format!("row {index} holds one of them"),
                    (Some(index), false) => format!("row {index} holds neither"),
                    (None, _) => "the store holds neither".to_owned(),
                };
                format!(
                    "two different events carry the id {event_id} (partition {}, offset {} and partition {}, offset {}); {store}",
                    first_at.partition, first_at.offset, at.partition, at.offset
                )
            }
            Finding::MalformedOnTopic { at } => format!(
                "the record at partition {}, offset {} is not an audit event",
                at.partition, at.offset
            ),
            Finding::CheckpointSignature { at, reason } => format!(
                "the checkpoint at partition {}, offset {} is not validly signed for this log: {reason}",
                at.partition, at.offset
            ),
            Finding::CheckpointBeyondStore {
                size,
                store_size,
                at,
            } => format!(
                "the checkpoint at partition {}, offset {} covers {size} rows but the store holds {store_size}: rows were deleted from the end",
                at.partition, at.offset
            ),
            Finding::CheckpointRoot { size, at } => format!(
                "the root signed for size {size} (checkpoint at partition {}, offset {}) differs from the store's root at that size",
                at.partition, at.offset
            ),
        }
    }
}

/// The offsets one partition was read between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionSpan {
    /// The partition.
    pub partition: i32,
    /// The oldest offset the broker still held (the low watermark): records before it
    /// were dropped by retention.
    pub low_offset: i64,
    /// The offset reading stopped before (the high watermark when reading started).
    pub end_offset: i64,
}

/// What the cross-check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Whether the store holds exactly the topic's well-formed events and every
    /// checkpoint on the topic matches (no finding; notices allowed).
    pub clean: bool,
    /// The audit topic read.
    pub topic: String,
    /// Its partitions, with the oldest offset each still held.
    pub partitions: Vec<PartitionSpan>,
    /// The checkpoints topic read.
    pub checkpoints_topic: String,
    /// Its partitions.
    pub checkpoint_partitions: Vec<PartitionSpan>,
    /// Records read from the audit topic.
    pub topic_records: u64,
    /// Distinct event ids among them.
    pub topic_events: u64,
    /// Records that repeat an earlier one byte for byte (redeliveries; not a finding).
    pub redeliveries: u64,
    /// Records that are not audit events (notices).
    pub malformed_on_topic: u64,
    /// Records that carry the id of a different, earlier event.
    pub conflicting_on_topic: u64,
    /// Rows in the store.
    pub store_rows: u64,
    /// Stored rows that match an event on the topic.
    pub matched: u64,
    /// Rows appended while the topic was read, not found on it (the sink read past the
    /// topic's end as fixed at the start; not a finding).
    pub stored_during_check: u64,
    /// Well-formed events on the topic that the store lacks.
    pub missing_from_store: u64,
    /// Stored rows whose id is not on the topic.
    pub not_on_topic: u64,
    /// Stored rows whose bytes differ from every copy on the topic.
    pub differs_from_store: u64,
    /// Records read from the checkpoints topic.
    pub checkpoints_read: u64,
    /// Checkpoints whose signature and root were checked and matched.
    pub checkpoints_matched: u64,
    /// The largest size among them (0 if none).
    pub checkpoint_covered_size: u64,
    /// Checkpoints that failed (signature, size or root).
    pub checkpoint_problems: u64,
    /// The findings, by kind and then position ([`MAX_LISTED_FINDINGS`] at most).
    pub findings: Vec<Finding>,
    /// Findings not listed because of the cap.
    pub findings_not_listed: u64,
    /// Notices (malformed records, conflicting ids whose store row holds a copy),
    /// [`MAX_LISTED_FINDINGS`] at most.
    pub notices: Vec<Finding>,
    /// Notices not listed because of the cap.
    pub notices_not_listed: u64,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.clean
    }
}

/// What the comparer keeps per event id seen on the topic.
struct Seen {
    leaf: Hash,
    at: TopicPosition,
    /// A stored row with this id was found.
    stored: bool,
}

/// A further, different copy of an id already seen.
struct OtherCopy {
    leaf: Hash,
    at: TopicPosition,
}

/// A checkpoint read from the topic that verified.
struct SignedAt {
    checkpoint: Checkpoint,
    at: TopicPosition,
}

/// A bounded list that keeps the smallest entries by key (for findings found in hash
/// order: the report lists the first ones by position, whatever the order of discovery).
struct Smallest<K: Ord> {
    heap: BinaryHeap<K>,
    dropped: u64,
}

impl<K: Ord> Smallest<K> {
    fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, key: K) {
        self.heap.push(key);
        if self.heap.len() > MAX_LISTED_FINDINGS {
            self.heap.pop();
            self.dropped += 1;
        }
    }

    fn into_sorted(self) -> (Vec<K>, u64) {
        (self.heap.into_sorted_vec(), self.dropped)
    }
}

/// Which part of the work a progress call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the audit topic: records read, of at most this many.
    Topic,
    /// Reading the checkpoints topic.
    Checkpoints,
    /// Paging through the store: rows read, of the store's size.
    Store,
}

/// The Kafka-free comparer: fed the topics' records, then compared with a store.
pub struct CrossCheck {
    codec: Arc<SchemaCodec>,
    verifier: Verifier,
    seen: HashMap<Uuid, Seen>,
    others: HashMap<Uuid, Vec<OtherCopy>>,
    checkpoints: Vec<SignedAt>,
    settled_rows: Option<u64>,
    report: Report,
    notices: Vec<Finding>,
    problems: Vec<Finding>,
}

impl CrossCheck {
    /// A comparer decoding events with `codec` and opening checkpoints with `verifier`
    /// (the log's key; its name is the log's origin).
    pub fn new(codec: Arc<SchemaCodec>, verifier: Verifier) -> Self {
        Self {
            codec,
            verifier,
            seen: HashMap::new(),
            others: HashMap::new(),
            checkpoints: Vec::new(),
            settled_rows: None,
            report: Report::default(),
            notices: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The store's size before the topic's end was fixed. Rows at or past it that are
    /// not on the topic were appended from records after that end (a sink running during
    /// the check): they are counted in [`Report::stored_during_check`], not reported.
    pub fn store_rows_before_read(&mut self, rows: u64) {
        self.settled_rows = Some(rows);
    }

    fn notice(&mut self, finding: Finding) {
        if self.notices.len() < MAX_LISTED_FINDINGS {
            self.notices.push(finding);
        } else {
            self.report.notices_not_listed += 1;
        }
    }

    fn problem(&mut self, finding: Finding) {
        if self.problems.len() < MAX_LISTED_FINDINGS {
            self.problems.push(finding);
        } else {
            self.report.findings_not_listed += 1;
        }
    }

    /// Takes one record of the audit topic: its partition, offset and value.
    pub async fn add_event(&mut self, partition: i32, offset: i64, value: &[u8]) {
        self.report.topic_records += 1;
        let at = TopicPosition { partition, offset };
        // The same decision as the sink's: what it dead-letters as malformed is
        // malformed here.
        let event_id = match decode_record(&self.codec, value).await {
            Ok(record) => record.event_id,
            Err(_) => {
                self.report.malformed_on_topic += 1;
                self.notice(Finding::MalformedOnTopic { at });
                return;
            }
        };
        let leaf = leaf_hash(value);
        let Some(first) = self.seen.get(&event_id) else {
            self.seen.insert(
                event_id,
                Seen {
                    leaf,
                    at,
                    stored: false,
                },
            );
            return;
        };
        let others = self.others.entry(event_id).or_default();
        if first.leaf == leaf || others.iter().any(|o| o.leaf == leaf) {
            self.report.redeliveries += 1;
            if others.is_empty() {
                self.others.remove(&event_id);
            }
            return;
        }
        others.push(OtherCopy { leaf, at });
        self.report.conflicting_on_topic += 1;
    }

    /// Takes one record of the checkpoints topic: a signed note.
    pub fn add_checkpoint(&mut self, partition: i32, offset: i64, value: &[u8]) {
        self.report.checkpoints_read += 1;
        let at = TopicPosition { partition, offset };
        let opened = std::str::from_utf8(value)
            .map_err(|_| "the record is not UTF-8 text".to_owned())
            .and_then(|note| Checkpoint::open(note, &self.verifier).map_err(|e| e.to_string()));
        match opened {
            Ok(checkpoint) => self.checkpoints.push(SignedAt { checkpoint, at }),
            Err(reason) => {
                self.report.checkpoint_problems += 1;
                self.problem(Finding::CheckpointSignature { at, reason });
            }
        }
    }

    /// Pages through `store` and compares it with what the topics held. `progress` is
    /// called with rows read and the store's size after each page.
    pub async fn compare<S: AuditStore>(
        mut self,
        store: &S,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Report, Error> {
        let size = store.size().await?;
        let settled = self.settled_rows.unwrap_or(size);
        self.checkpoints.sort_by_key(|c| c.checkpoint.size);
        let mut pending = std::mem::take(&mut self.checkpoints).into_iter().peekable();
        let mut tree = CompactRange::new();
        self.check_checkpoints_at(&tree, &mut pending);

        let mut from = 0;
        while from < size {
            let to = (from + READ_PAGE_ROWS).min(size);
            for row in store.read_range(from, to).await? {
                let leaf = leaf_hash(&row.record.value);
                tree.push(leaf);
                self.check_checkpoints_at(&tree, &mut pending);
                self.compare_row(row.record.event_id, row.index, leaf, settled);
            }
            progress(to, size);
            from = to;
        }
        self.report.store_rows = tree.size();
        for rest in pending {
            self.report.checkpoint_problems += 1;
            self.problem(Finding::CheckpointBeyondStore {
                size: rest.checkpoint.size,
                store_size: tree.size(),
                at: rest.at,
            });
        }

        // Events on the topic that no row claimed, listed by position.
        let mut missing = Smallest::new();
        let mut unstored_conflicts = Vec::new();
        for (event_id, seen) in &self.seen {
            if seen.stored {
                continue;
            }
            match self.others.get(event_id) {
                Some(others) => {
                    unstored_conflicts.extend(others.iter().map(|o| (*event_id, seen.at, o.at)))
                }
                None => missing.push((seen.at, *event_id)),
            }
        }
        unstored_conflicts.sort_by_key(|(_, _, at)| *at);
        for (event_id, first_at, at) in unstored_conflicts {
            self.problem(Finding::ConflictingOnTopic {
                event_id,
                first_at,
                at,
                index: None,
                store_holds_a_copy: false,
            });
        }
        let (listed, dropped) = missing.into_sorted();
        self.report.missing_from_store = listed.len() as u64 + dropped;
        self.report.findings_not_listed += dropped;
        for (at, event_id) in listed {
            self.problem(Finding::MissingFromStore { event_id, at });
        }

        let mut report = self.report;
        report.topic_events = self.seen.len() as u64;
        self.problems.sort_by_key(order);
        self.notices.sort_by_key(order);
        report.findings = self.problems;
        report.notices = self.notices;
        report.clean = report.findings.is_empty() && report.findings_not_listed == 0;
        Ok(report)
    }

    /// Compares the checkpoints of exactly the tree's size with its root.
    fn check_checkpoints_at(
        &mut self,
        tree: &CompactRange,
        pending: &mut std::iter::Peekable<std::vec::IntoIter<SignedAt>>,
    ) {
        while let Some(next) = pending.next_if(|c| c.checkpoint.size == tree.size()) {
            if next.checkpoint.root == tree.root() {
                self.report.checkpoints_matched += 1;
                self.report.checkpoint_covered_size = tree.size();
            } else {
                self.report.checkpoint_problems += 1;
                self.problem(Finding::CheckpointRoot {
                    size: next.checkpoint.size,
                    at: next.at,
                });
            }
        }
    }

    /// Compares one stored row with the topic's copies of its id.
    fn compare_row(&mut self, event_id: Uuid, index: u64, leaf: Hash, settled: u64) {
        let Some(seen) = self.seen.get_mut(&event_id) else {
            if index >= settled {
                self.report.stored_during_check += 1;
            } else {
                self.report.not_on_topic += 1;
                self.problem(Finding::NotOnTopic { event_id, index });
            }
            return;
        };
        // A second row with the same id (which `verify` reports) is compared all the same.
        seen.stored = true;
        let (first_leaf, first_at) = (seen.leaf, seen.at);
        let others = self.others.get(&event_id);
        let holds_a_copy =
            first_leaf == leaf || others.is_some_and(|o| o.iter().any(|o| o.leaf == leaf));
        if holds_a_copy {
            self.report.matched += 1;
        }
        if !holds_a_copy {
            self.report.differs_from_store += 1;
        }
        if let Some(others) = others {
            let conflicts: Vec<TopicPosition> = others.iter().map(|o| o.at).collect();
            for at in conflicts {
                let finding = Finding::ConflictingOnTopic {
                    event_id,
                    first_at,
                    at,
                    index: Some(index),
                    store_holds_a_copy: holds_a_copy,
                };
                if holds_a_copy {
                    self.notice(finding);
                } else {
                    self.problem(finding);
                }
            }
        } else if !holds_a_copy {
            self.problem(Finding::DiffersFromStore {
                event_id,
                index,
                at: first_at,
            });
        }
    }
}

/// Sort key of findings: by kind, then topic position, then store row.
fn order(finding: &Finding) -> (&'static str, Option<TopicPosition>, Option<u64>) {
    let (at, index) = match finding {
        Finding::MissingFromStore { at, .. }
        | Finding::MalformedOnTopic { at }
        | Finding::CheckpointSignature { at, .. }
        | Finding::CheckpointBeyondStore { at, .. }
        | Finding::CheckpointRoot { at, .. } => (Some(*at), None),
        Finding::NotOnTopic { index, .. } => (None, Some(*index)),
        Finding::DiffersFromStore { index, at, .. } => (Some(*at), Some(*index)),
        Finding::ConflictingOnTopic { at, index, .. } => (Some(*at), *index),
    };
    (finding.kind(), at, index)
}

/// Which topics to read and how patiently.
#[derive(Clone, Debug)]
pub struct Options {
    /// The audit topic.
    pub topic: String,
    /// The checkpoints topic.
    pub checkpoints_topic: String,
    /// How long a topic read may wait for a record before it fails.
    pub idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            topic: topic::AUDIT.to_owned(),
            checkpoints_topic: topic::CHECKPOINTS.to_owned(),
            idle_timeout: zenvelope_runtime::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Runs the cross-check end to end: notes the store's size, fixes the end of both topics
/// (their high watermarks now), reads them from their oldest offsets, then pages through
/// the store. `progress` is called with the stage, the work done and the work expected.
pub async fn run<S: AuditStore>(
    kafka: &KafkaConfig,
    store: &S,
    codec: Arc<SchemaCodec>,
    verifier: Verifier,
    options: &Options,
    mut progress: impl FnMut(Stage, u64, u64),
) -> Result<Report, Error> {
    let mut check = CrossCheck::new(codec, verifier);
    // Before the topics' ends are fixed: every row below this size came from a record
    // that is on the topic now (unless retention dropped it).
    check.store_rows_before_read(store.size().await?);
    let open = |name: &str| {
        let name = name.to_owned();
        async move {
            RangeReader::open(kafka, &name, ReadFrom::Beginning, ReadTo::Watermark)
                .await
                .map(|reader| reader.with_idle_timeout(options.idle_timeout))
                .map_err(Error::Kafka)
        }
    };
    let mut events = open(&options.topic).await?;
    let mut notes = open(&options.checkpoints_topic).await?;
    let partitions = spans(&events);
    let checkpoint_partitions = spans(&notes);

    while let Some(record) = events.next().await.map_err(Error::Kafka)? {
        check
            .add_event(record.partition, record.offset, &record.payload)
            .await;
        let p = events.progress();
        progress(Stage::Topic, p.read, p.expected);
    }
    while let Some(record) = notes.next().await.map_err(Error::Kafka)? {
        check.add_checkpoint(record.partition, record.offset, &record.payload);
        let p = notes.progress();
        progress(Stage::Checkpoints, p.read, p.expected);
    }
    drop((events, notes));

    let mut report = check
        .compare(store, |done, of| progress(Stage::Store, done, of))
        .await?;
    report.topic.clone_from(&options.topic);
    report.partitions = partitions;
    report
        .checkpoints_topic
        .clone_from(&options.checkpoints_topic);
    report.checkpoint_partitions = checkpoint_partitions;
    tracing::info!(
        topic = %report.topic,
        topic_events = report.topic_events,
        store_rows = report.store_rows,
        findings = report.findings.len() as u64 + report.findings_not_listed,
        "Audit cross-check finished."
    );
    Ok(report)
}

fn spans(reader: &RangeReader) -> Vec<PartitionSpan> {
    reader
        .ranges()
        .map(|r| PartitionSpan {
            partition: r.partition,
            low_offset: r.low_watermark,
            end_offset: r.end,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use anyhow::{Context as _, Result, ensure};
    use zenvelope_schemas::{AuditEvent, AuditOperation, Outcome, Subject};

    use super::*;
    use crate::note::Signer;
    use crate::sink::{Appender, BatchConfig, Checkpointer};
    use crate::store::{EmbeddedStore, StoredCheckpoint};

    const ORIGIN: &str = "cross-check.test.example/audit";

    /// A store filled through the real appender, and the topics' records that fed it.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<EmbeddedStore>,
        codec: Arc<SchemaCodec>,
        signer: Signer,
        /// The audit topic: one value per offset of partition 0.
        topic: Vec<Vec<u8>>,
        /// The checkpoints topic: signed notes, as the sink publishes them.
        notes: Vec<String>,
    }

    fn event(i: i64) -> AuditEvent {
        AuditEvent {
            event_id: Uuid::now_v7(),
            occurred_at_ms: 1_750_000_000_000 + i,
            tenant: "tenant-x".to_owned(),
            subject: format!("sp1_cc_{i}"),
            operation: AuditOperation::ResultPublished,
            message_id: None,
            correlation_id: None,
            actor: "cross-check-test".to_owned(),
            outcome: Outcome::Success,
            reason_code: None,
            enclave_measurement: None,
            key_id: None,
            key_version: None,
            request_sha256: None,
            result_sha256: Some(format!("{i:064x}")),
            disclosure: None,
        }
    }

    impl Fixture {
        /// `n` events on the topic and in the store, a checkpoint every 10 events.
        async fn new(n: i64) -> Result<Self> {
            let dir = tempfile::tempdir()?;
            let store = Arc::new(EmbeddedStore::open(&dir.path().join("audit.db"))?);
            let codec = Arc::new(SchemaCodec::offline()?);
            let signer = Signer::generate(ORIGIN)?;
            let mut fixture = Self {
                _dir: dir,
                store,
                codec,
                signer,
                topic: Vec::new(),
                notes: Vec::new(),
            };
            for i in 0..n {
                let value = fixture.encode(i).await?;
                fixture.topic.push(value);
            }
            fixture.append(&fixture.topic.clone()).await?;
            Ok(fixture)
        }

        async fn encode(&self, i: i64) -> Result<Vec<u8>> {
            Ok(self.codec.encode(Subject::AuditValue, &event(i)).await?)
        }

        /// Appends `values` to the store through the sink's appender (checkpoints
        /// every 10 events and at the end), and publishes its checkpoints.
        async fn append(&mut self, values: &[Vec<u8>]) -> Result<()> {
            let signer = Signer::from_private_key_text(&self.signer.to_private_key_text())?;
            let checkpoints = Checkpointer::new(signer, ORIGIN.to_owned(), 10, 60_000, None)?;
            let mut appender =
                Appender::open(Arc::clone(&self.store), BatchConfig::default(), checkpoints)
                    .await?;
            for chunk in values.chunks(5) {
                let mut records = Vec::new();
                for value in chunk {
                    records.push(decode_record(&self.codec, value).await?);
                }
                appender.append_batch(records).await?;
                appender.sign_due(false).await;
            }
            appender.sign_due(true).await;
            self.notes = self
                .store
                .checkpoints()
                .await?
                .into_iter()
                .map(|c: StoredCheckpoint| c.note)
                .collect();
            Ok(())
        }

        /// Feeds `topic` and `notes` (partition 0, offsets in order) and compares.
        async fn check(&self) -> Result<Report> {
            let mut check = CrossCheck::new(Arc::clone(&self.codec), self.signer.verifier());
            for (offset, value) in (0i64..).zip(&self.topic) {
                check.add_event(0, offset, value).await;
            }
            for (offset, note) in (0i64..).zip(&self.notes) {
                check.add_checkpoint(0, offset, note.as_bytes());
            }
            Ok(check.compare(self.store.as_ref(), |_, _| {}).await?)
        }

        async fn id(&self, offset: usize) -> Result<Uuid> {
            let value = self.topic.get(offset).context("no such offset")?;
            Ok(decode_record(&self.codec, value).await?.event_id)
        }
    }

    fn only(report: &Report, wanted: &[Finding]) -> Result<()> {
        ensure!(
            report.findings == wanted,
            "findings: {:?}, wanted {wanted:?}",
            report.findings
        );
        ensure!(report.clean == wanted.is_empty(), "clean: {}", report.clean);
        Ok(())
    }

    fn at(offset: i64) -> TopicPosition {
        TopicPosition {
            partition: 0,
            offset,
        }
    }

    #[tokio::test]
    async fn a_store_holding_exactly_the_topic_is_clean() -> Result<()> {
        let fixture = Fixture::new(25).await?;
        let report = fixture.check().await?;
        only(&report, &[])?;
        ensure!(report.topic_events == 25 && report.store_rows == 25 && report.matched == 25);
        // Signed at 10, 20 and 25.
        ensure!(
            report.checkpoints_read == 3
                && report.checkpoints_matched == 3
                && report.checkpoint_covered_size == 25,
            "{report:?}"
        );
        ensure!(report.redeliveries == 0 && report.notices.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn an_event_missing_from_the_store_is_named_with_its_offset() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let extra = fixture.encode(99).await?;
        fixture.topic.push(extra);
        let report = fixture.check().await?;
        let event_id = fixture.id(12).await?;
        only(
            &report,
            &[Finding::MissingFromStore {
                event_id,
                at: at(12),
            }],
        )?;
        ensure!(report.missing_from_store == 1 && report.matched == 12);
        Ok(())
    }

    #[tokio::test]
    async fn a_stored_event_not_on_the_topic_is_named_with_its_row() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let removed = fixture.topic.remove(4);
        let event_id = decode_record(&fixture.codec, &removed).await?.event_id;
        let report = fixture.check().await?;
        only(&report, &[Finding::NotOnTopic { event_id, index: 4 }])?;
        ensure!(report.not_on_topic == 1);

        // Rows appended after the topic's end was fixed are counted, not reported.
        let mut check = CrossCheck::new(Arc::clone(&fixture.codec), fixture.signer.verifier());
        check.store_rows_before_read(4);
        for (offset, value) in (0i64..).zip(&fixture.topic) {
            check.add_event(0, offset, value).await;
        }
        let report = check.compare(fixture.store.as_ref(), |_, _| {}).await?;
        only(&report, &[])?;
        ensure!(report.stored_during_check == 1);
        Ok(())
    }

    #[tokio::test]
    async fn stored_bytes_that_differ_from_the_topic_are_named() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        // The topic's copy of event 7 differs from the stored one in one byte of its
        // result hash (still a well-formed event with the same id).
        let event_id = fixture.id(7).await?;
        let value = fixture.topic.get_mut(7).context("offset 7")?;
        let last = value.len() - 2;
        value[last] ^= 0x01;
        ensure!(decode_record(&fixture.codec, value).await?.event_id == event_id);
        let report = fixture.check().await?;
        only(
            &report,
            &[Finding::DiffersFromStore {
                event_id,
                index: 7,
                at: at(7),
            }],
        )?;
        ensure!(report.differs_from_store == 1 && report.matched == 11);
        Ok(())
    }

    #[tokio::test]
    async fn a_redelivery_is_counted_not_reported() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let again = fixture.topic[3].clone();
        fixture.topic.push(again);
        let report = fixture.check().await?;
        only(&report, &[])?;
        ensure!(report.redeliveries == 1 && report.topic_events == 12);
        ensure!(report.topic_records == 13);
        Ok(())
    }

    #[tokio::test]
    async fn two_events_sharing_an_id_are_a_notice_unless_the_store_holds_neither() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let event_id = fixture.id(5).await?;
        let mut other = fixture.topic[5].clone();
        let last = other.len() - 2;
        other[last] ^= 0x01;
        fixture.topic.push(other.clone());
        let report = fixture.check().await?;
        only(&report, &[])?;
        ensure!(report.conflicting_on_topic == 1);
        ensure!(
            report.notices
                == [Finding::ConflictingOnTopic {
                    event_id,
                    first_at: at(5),
                    at: at(12),
                    index: Some(5),
                    store_holds_a_copy: true,
                }],
            "{:?}",
            report.notices
        );

        // The store holds a third version: neither copy.
        let mut third = other;
        third[last - 1] ^= 0x01;
        fixture.topic[5] = third;
        fixture.topic.push(fixture.topic[12].clone());
        fixture.topic[12][last - 1] ^= 0x02;
        let report = fixture.check().await?;
        ensure!(
            report.findings.len() == 2
                && report.findings.iter().all(|f| matches!(
                    f,
                    Finding::ConflictingOnTopic {
                        index: Some(5),
                        store_holds_a_copy: false,
                        ..
                    }
                )),
            "{:?}",
            report.findings
        );
        ensure!(!report.clean);
        Ok(())
    }

    #[tokio::test]
    async fn a_malformed_record_is_a_notice() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        fixture.topic.push(b"not an audit event".to_vec());
        let report = fixture.check().await?;
        only(&report, &[])?;
        ensure!(report.malformed_on_topic == 1);
        ensure!(report.notices == [Finding::MalformedOnTopic { at: at(12) }]);
        Ok(())
    }

    /// The body of `note` (its text up to the signatures), as a checkpoint.
    fn body(note: &str) -> Result<Checkpoint> {
        let text = note.split("\n\n").next().context("note body")?;
        Ok(Checkpoint::parse_body(&format!("{text}\n"))?)
    }

    #[tokio::test]
    async fn a_forged_checkpoint_is_a_finding() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let forger = Signer::generate(ORIGIN)?;
        let forged = body(&fixture.notes[0])?.sign(&forger)?;
        fixture.notes.push(forged);
        let report = fixture.check().await?;
        ensure!(
            matches!(
                report.findings.as_slice(),
                [Finding::CheckpointSignature { at: p, .. }] if *p == at(2)
            ),
            "{:?}",
            report.findings
        );
        ensure!(report.checkpoints_matched == 2 && report.checkpoint_problems == 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_checkpoint_beyond_the_store_is_a_finding() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let mut cp = body(&fixture.notes[1])?;
        cp.size = 20;
        fixture.notes.push(cp.sign(&fixture.signer)?);
        let report = fixture.check().await?;
        only(
            &report,
            &[Finding::CheckpointBeyondStore {
                size: 20,
                store_size: 12,
                at: at(2),
            }],
        )?;
        Ok(())
    }

    #[tokio::test]
    async fn a_checkpoint_with_a_wrong_root_is_a_finding() -> Result<()> {
        let mut fixture = Fixture::new(12).await?;
        let mut cp = body(&fixture.notes[0])?;
        cp.root = leaf_hash(b"some other tree");
        fixture.notes.push(cp.sign(&fixture.signer)?);
        let report = fixture.check().await?;
        only(
            &report,
            &[Finding::CheckpointRoot {
                size: 10,
                at: at(2),
            }],
        )?;
        Ok(())
    }
}
