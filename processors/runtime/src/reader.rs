//! [`RangeReader`]: a bounded, read-only pass over one topic, for replay and audits.
//!
//! The reader assigns every partition of the topic directly: it joins no consumer group,
//! stores and commits no offset, and so cannot disturb a processor. The range is fixed
//! when the reader is opened. Each partition's end is the requested end, capped at the
//! high watermark read at that moment, so a replay of a live topic terminates: records
//! produced after [`RangeReader::open`] are not read.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, is_transient};
use crate::message::Inbound;
use crate::processor::to_inbound;

/// How long each metadata, watermark or offset-lookup request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `group.id` librdkafka requires before it assigns partitions. The reader never
/// joins this group and never commits to it.
const GROUP_ID: &str = "zenvelope-range-reader";

/// How long [`RangeReader::next`] waits for a record or an end of partition, unless set
/// with [`RangeReader::with_idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where reading starts, the same on every partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest offset still on the broker (the low watermark).
    Beginning,
    /// This offset (inclusive), clamped to the offsets the partition holds.
    Offset(i64),
    /// The first record whose timestamp is at or after this time (milliseconds since the
    /// Unix epoch), as the broker's time index finds it (`offsets_for_times`). Where no
    /// record is that recent, the partition is not read.
    TimestampMs(i64),
}

/// Where reading ends (exclusive), the same on every partition. Whatever is asked, a
/// partition's end is never past its high watermark as read when the reader was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTo {
    /// The high watermark read when the reader was opened.
    Watermark,
    /// Before this offset (exclusive).
    Offset(i64),
    /// Before the first record whose timestamp is at or after this time (milliseconds
    /// since the Unix epoch), as `offsets_for_times` finds it; the high watermark where
    /// no record is that recent.
    TimestampMs(i64),
}

/// The offsets one partition is read between, fixed when the reader is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartitionRange {
    /// The partition.
    pub partition: i32,
    /// The first offset read (inclusive).
    pub start: i64,
    /// The offset reading stops before (exclusive); equal to `start` when there is
    /// nothing to read.
    pub end: i64,
    /// The partition's low watermark (oldest offset held) when the reader was opened.
    pub low_watermark: i64,
    /// The partition's high watermark (next offset to be written) when the reader was
    /// opened.
    pub high_watermark: i64,
}

impl PartitionRange {
    /// How many offsets the range spans: an upper bound on its records (transaction
    /// markers and compacted-away records occupy offsets but are never delivered).
    pub fn len(&self) -> u64 {
        u64::try_from(self.end - self.start).unwrap_or(0)
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// How far a [`RangeReader`] has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadProgress {
    /// Records returned so far.
    pub read: u64,
    /// Offsets spanned by the ranges: the records expected at most.
    pub expected: u64,
    /// Partitions finished (every offset of their range passed, or their end reached).
    pub partitions_done: usize,
    /// Partitions in the topic.
    pub partitions: usize,
}

/// Per-partition state while reading.
struct Cursor {
    range: PartitionRange,
    done: bool,
}

/// Reads one topic between fixed offsets on every partition, then stops.
///
/// No consumer group is joined and nothing is committed. The consumer reads with
/// `isolation.level=read_committed`, so records of aborted or still-open transactions
/// are not returned. A partition is finished when a record at or past its end arrives
/// (that record is not returned), when the record just before its end arrives, or when
/// librdkafka reports the end of the partition, whichever comes first; the last case
/// covers transaction markers and compacted-away records at the end of a range.
pub struct RangeReader {
    consumer: StreamConsumer,
    topic: String,
    cursors: BTreeMap<i32, Cursor>,
    open_partitions: usize,
    read: u64,
    expected: u64,
    idle_timeout: Duration,
}

impl RangeReader {
    /// Resolves the range of every partition of `topic` (metadata, watermarks and, for
    /// timestamps, `offsets_for_times`: several blocking requests, run on the blocking
    /// pool) and assigns the partitions that have something to read.
    ///
    /// A topic the broker does not know is [`Error::UnknownTopic`].
    pub async fn open(
        kafka: &KafkaConfig,
        topic: &str,
        from: ReadFrom,
        to: ReadTo,
    ) -> Result<Self, Error> {
        let mut config = kafka.client_config();
        config
            .set("group.id", GROUP_ID)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            // Records deleted by retention between planning and fetching: go on from the
            // oldest offset still held rather than fail.
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer = config.create().map_err(|e| Error::client("consumer", e))?;
        let topic_name = topic.to_owned();
        let (consumer, ranges) = tokio::task::spawn_blocking(move || {
            let ranges = plan(&consumer, &topic_name, from, to)?;
            let mut tpl = TopicPartitionList::new();
            for r in ranges.iter().filter(|r| !r.is_empty()) {
                tpl.add_partition_offset(&topic_name, r.partition, Offset::Offset(r.start))
                    .map_err(|e| Error::kafka("assign", e))?;
            }
            consumer
                .assign(&tpl)
                .map_err(|e| Error::kafka("assign", e))?;
            Ok::<_, Error>((consumer, ranges))
        })
        .await
        .map_err(|_| Error::kafka("plan the read range", KafkaError::Canceled))??;

        let cursors: BTreeMap<i32, Cursor> = ranges
            .into_iter()
            .map(|range| {
                (
                    range.partition,
                    Cursor {
                        range,
                        done: range.is_empty(),
                    },
                )
            })
            .collect();
        let open_partitions = cursors.values().filter(|c| !c.done).count();
        let expected = cursors.values().map(|c| c.range.len()).sum();
        tracing::debug!(
            topic,
            partitions = cursors.len(),
            expected,
            "Read range planned."
        );
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            cursors,
            open_partitions,
            read: 0,
            expected,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        })
    }

    /// Sets how long [`RangeReader::next`] may wait for a record or an end of partition
    /// before it fails with [`Error::ReadStalled`] ([`DEFAULT_IDLE_TIMEOUT`] by default).
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every partition's range, in partition order (empty ranges included).
    pub fn ranges(&self) -> impl Iterator<Item = &PartitionRange> {
        self.cursors.values().map(|c| &c.range)
    }

    /// How far reading has got.
    pub fn progress(&self) -> ReadProgress {
        ReadProgress {
            read: self.read,
            expected: self.expected,
            partitions_done: self.cursors.len() - self.open_partitions,
            partitions: self.cursors.len(),
        }
    }

    /// The next record in range, or `None` once every partition is finished. Records of
    /// one partition come in offset order; partitions interleave.
    ///
    /// Transient consumer errors (a broker restarting, a leader moving) are logged and
    /// waited out; when neither a record nor an end of partition arrives for the idle
    /// timeout, this fails with [`Error::ReadStalled`]. The reader stays usable: calling
    /// `next` again goes on waiting. Any other consumer error is returned as is.
    pub async fn next(&mut self) -> Result<Option<Inbound>, Error> {
        let deadline = tokio::time::Instant::now() + self.idle_timeout;
        while self.open_partitions > 0 {
            let received = tokio::time::timeout_at(deadline, self.consumer.recv())
                .await
                .map_err(|_| Error::ReadStalled {
                    topic: self.topic.clone(),
                    waited_ms: u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX),
                })?;
            let message = match received {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.finish(partition);
                    continue;
                }
                Err(error) if is_transient(&error) => {
                    tracing::warn!(topic = %self.topic, %error, "Transient error while reading; waiting.");
                    continue;
                }
                Err(e) => return Err(Error::kafka("consume", e)),
            };
            let record = to_inbound(&message);
            drop(message);
            let Some(cursor) = self.cursors.get(&record.partition) else {
                continue;
            };
            if cursor.done || record.offset < cursor.range.start {
                continue;
            }
            if record.offset >= cursor.range.end {
                self.finish(record.partition);
                continue;
            }
            if record.offset + 1 >= cursor.range.end {
                self.finish(record.partition);
            }
            self.read += 1;
            return Ok(Some(record));
        }
        Ok(None)
    }

    /// Marks a partition finished and stops fetching it.
    fn finish(&mut self, partition: i32) {
        let Some(cursor) = self.cursors.get_mut(&partition) else {
            return;
        };
        if cursor.done {
            return;
        }
        cursor.done = true;
        self.open_partitions -= 1;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        if let Err(error) = self.consumer.pause(&tpl) {
            // Harmless: later records of the partition are skipped anyway.
            tracing::debug!(topic = %self.topic, partition, %error, "Partition could not be paused.");
        }
    }
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("topic", &self.topic)
            .field("progress", &self.progress())
            .finish_non_exhaustive()
    }
}

/// Fetches the topic's partitions and watermarks and resolves `from` and `to` on each.
/// Blocking.
fn plan(
    consumer: &StreamConsumer,
    topic: &str,
    from: ReadFrom,
    to: ReadTo,
) -> Result<Vec<PartitionRange>, Error> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| Error::kafka("fetch metadata", e))?;
    let mut partitions = Vec::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        match t.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                return Err(Error::UnknownTopic {
                    topic: topic.to_owned(),
                });
            }
            Some(code) => {
                return Err(Error::kafka(
                    "fetch metadata",
                    KafkaError::MetadataFetch(code),
                ));
            }
        }
        partitions.extend(t.partitions().iter().map(|p| p.id()));
    }
    if partitions.is_empty() {
        return Err(Error::UnknownTopic {
            topic: topic.to_owned(),
        });
    }
    partitions.sort_unstable();

    let mut watermarks = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka("fetch watermarks", e))?;
        watermarks.insert(p, (low, high));
    }
    let starts = match from {
        ReadFrom::TimestampMs(ts) => Some(offsets_for_time(consumer, topic, &partitions, ts)?),
        _ => None,
    };
    let ends = match to {
        ReadTo::TimestampMs(ts) => Some(offsets_for_time(consumer, topic, &partitions, ts)?),
        _ => None,
    };

    Ok(watermarks
        .into_iter()
        .map(|(partition, (low, high))| {
            let start = match from {
                ReadFrom::Beginning => low,
                ReadFrom::Offset(o) => o,
                // No record that recent: nothing to read.
                ReadFrom::TimestampMs(_) => found(starts.as_ref(), partition).unwrap_or(high),
            }
            // Not `clamp`: it panics on a broker that reports low > high.
            .max(low)
            .min(high);
            let end = match to {
                ReadTo::Watermark => high,
                ReadTo::Offset(o) => o,
                ReadTo::TimestampMs(_) => found(ends.as_ref(), partition).unwrap_or(high),
            }
            .max(start)
            .min(high);
            PartitionRange {
                partition,
                start,
                end,
                low_watermark: low,
                high_watermark: high,
            }
        })
        .collect())
}

/// The offset found for `partition`, if any.
fn found(offsets: Option<&BTreeMap<i32, Option<i64>>>, partition: i32) -> Option<i64> {
    offsets.and_then(|o| o.get(&partition).copied().flatten())
}

/// For each partition, the first offset whose record timestamp is at or after
/// `timestamp_ms`; `None` where no record is that recent. Blocking.
fn offsets_for_time(
    consumer: &StreamConsumer,
    topic: &str,
    partitions: &[i32],
    timestamp_ms: i64,
) -> Result<BTreeMap<i32, Option<i64>>, Error> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(timestamp_ms))
            .map_err(|e| Error::kafka("look up offsets by time", e))?;
    }
    let found = consumer
        .offsets_for_times(tpl, REQUEST_TIMEOUT)
        .map_err(|e| Error::kafka("look up offsets by time", e))?;
    let mut out = BTreeMap::new();
    for e in found.elements() {
        e.error()
            .map_err(|e| Error::kafka("look up offsets by time", e))?;
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        };
        out.insert(e.partition(), offset);
    }
    Ok(out)
}
