//! The DLQ for operators: list dead letters by reason and time, show one, and redrive
//! them to the topic they came from, with a redrive count that refuses loops.
//!
//! Nothing here opens an envelope: a dead letter's value is still sealed; what is shown
//! is the public header (ids, tenant, subject pseudonym, kind), the reason and the times.

use std::time::Duration;

use serde::Serialize;
use zenvelope_envelope::Limits;
use zenvelope_runtime::{KafkaConfig, Outbound, Producer, RangeReader, ReadFrom, ReadTo};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{DeadLetter, SchemaCodec};

use crate::error::Error;

/// Redrives allowed per message by default: a message that failed again after this many
/// redrives is not sent again.
pub const DEFAULT_MAX_REDRIVES: i32 = 3;

/// Which dead letters to select.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only this reason code.
    pub reason: Option<String>,
    /// Only dead letters written at or after this time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Only dead letters written before this time.
    pub until_ms: Option<i64>,
    /// Only these DLQ positions (`partition`, `offset`).
    pub at: Vec<(i32, i64)>,
}

impl Selection {
    fn matches(&self, e: &Entry) -> bool {
        self.reason.as_deref().is_none_or(|r| r == e.reason_code)
            && self.since_ms.is_none_or(|t| e.failed_at_ms >= t)
            && self.until_ms.is_none_or(|t| e.failed_at_ms < t)
            && (self.at.is_empty() || self.at.contains(&(e.partition, e.offset)))
    }
}

/// A dead letter, as an operator sees it: no value bytes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Reason code.
    pub reason_code: String,
    /// The reason in a sentence (never PHI).
    pub reason_detail: String,
    /// Where the message was consumed from.
    pub original_topic: String,
    /// Its partition there.
    pub original_partition: i32,
    /// Its offset there.
    pub original_offset: i64,
    /// When processing gave up.
    pub failed_at_ms: i64,
    /// Redrives so far.
    pub redrive_count: i32,
    /// Size of the sealed value.
    pub value_bytes: usize,
    /// From the envelope's public header, if the value is a readable envelope.
    pub message_id: Option<String>,
    /// Tenant (public header).
    pub tenant: Option<String>,
    /// Subject pseudonym (public header).
    pub subject: Option<String>,
    /// Kind symbol (public header).
    pub kind: Option<String>,
    /// Why the entry cannot be redriven, if it cannot.
    pub not_redrivable: Option<String>,
}

/// A dead letter and its record, for redrive.
struct Letter {
    entry: Entry,
    letter: DeadLetter,
    headers: Vec<(String, Vec<u8>)>,
}

async fn read(
    kafka: &KafkaConfig,
    codec: &SchemaCodec,
    dlq_topic: &str,
    sel: &Selection,
    max_redrives: i32,
) -> Result<Vec<Letter>, Error> {
    let from = sel
        .since_ms
        .map_or(ReadFrom::Beginning, ReadFrom::TimestampMs);
    let mut reader = match RangeReader::open(kafka, dlq_topic, from, ReadTo::Watermark).await {
        Ok(r) => r.with_idle_timeout(Duration::from_secs(30)),
        Err(zenvelope_runtime::Error::UnknownTopic { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    while let Some(record) = reader.next().await? {
        let letter: DeadLetter = match codec.decode(&record.payload).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, partition = record.partition, offset = record.offset, "Skipping an unreadable DLQ record.");
                continue;
            }
        };
        let env = codec
            .decode_envelope(&letter.original_value, &Limits::default())
            .await
            .ok();
        let not_redrivable = if letter.original_value.is_empty() {
            Some("the dead letter does not hold the original value (it was too large)".to_owned())
        } else if target(&letter.original_topic).is_none() {
            Some(format!(
                "it came from {}; redrive only sends requests back to {}",
                letter.original_topic,
                topic::REQUESTS
            ))
        } else if letter.redrive_count >= max_redrives {
            Some(format!(
                "it was redriven {} times already (limit {max_redrives}); fix the cause and raise --max-redrives to force it",
                letter.redrive_count
            ))
        } else {
            None
        };
        let entry = Entry {
            partition: record.partition,
            offset: record.offset,
            reason_code: letter.reason_code.clone(),
            reason_detail: letter.reason_detail.clone(),
            original_topic: letter.original_topic.clone(),
            original_partition: letter.original_partition,
            original_offset: letter.original_offset,
            failed_at_ms: letter.failed_at_ms,
            redrive_count: letter.redrive_count,
            value_bytes: letter.original_value.len(),
            message_id: env.as_ref().map(|e| e.header.message_id.to_string()),
            tenant: env.as_ref().map(|e| e.header.tenant.clone()),
            subject: env.as_ref().map(|e| e.header.subject.clone()),
            kind: env.as_ref().map(|e| e.header.kind.symbol().to_owned()),
            not_redrivable,
        };
        if sel.matches(&entry) {
            out.push(Letter {
                entry,
                letter,
                headers: record.headers,
            });
        }
    }
    supersede(&mut out);
    Ok(out)
}

/// Where a redrive sends a letter's value: back to the requests topic, so every check
/// runs again (a letter from admission's repartition topic or from the admitted topic
/// included); letters from other topics are not redriven.
fn target(original_topic: &str) -> Option<&'static str> {
    [topic::REQUESTS, topic::ADMISSION_BY_TENANT, topic::ADMITTED]
        .contains(&original_topic)
        .then_some(topic::REQUESTS)
}

/// One message that failed several times (redriven, or dead-lettered twice) has several
/// letters: only the newest (highest redrive count, then latest position) is redrivable,
/// so running the same redrive again does not multiply the message.
fn supersede(letters: &mut [Letter]) {
    use sha2::Digest as _;
    let mut newest: std::collections::HashMap<[u8; 32], (i32, i32, i64)> =
        std::collections::HashMap::new();
    let hashes: Vec<[u8; 32]> = letters
        .iter()
        .map(|l| sha2::Sha256::digest(&l.letter.original_value).into())
        .collect();
    for (l, h) in letters.iter().zip(&hashes) {
        let rank = (l.entry.redrive_count, l.entry.partition, l.entry.offset);
        let best = newest.entry(*h).or_insert(rank);
        if rank > *best {
            *best = rank;
        }
    }
    for (l, h) in letters.iter_mut().zip(&hashes) {
        if l.letter.original_value.is_empty() {
            continue;
        }
        let (_, p, o) = newest[h];
        if (l.entry.partition, l.entry.offset) != (p, o) && l.entry.not_redrivable.is_none() {
            l.entry.not_redrivable = Some(format!(
                "superseded by the newer dead letter of the same message at {p}:{o}"
            ));
        }
    }
}

/// The dead letters matching `sel`, oldest first per partition.
pub async fn list(
    kafka: &KafkaConfig,
    codec: &SchemaCodec,
    dlq_topic: &str,
    sel: &Selection,
    max_redrives: i32,
) -> Result<Vec<Entry>, Error> {
    Ok(read(kafka, codec, dlq_topic, sel, max_redrives)
        .await?
        .into_iter()
        .map(|l| l.entry)
        .collect())
}

/// What a redrive did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RedriveReport {
    /// Re-published to their original topic (or would be, in a dry run).
    pub redriven: Vec<Entry>,
    /// Not re-published, with the reason in `not_redrivable`.
    pub refused: Vec<Entry>,
}

/// Re-publishes the selected dead letters' original values, byte for byte, to their
/// original topics with their original keys and headers, plus `zenvelope-redrive-count`
/// (one more than the dead letter's). A message redriven `max_redrives` times already,
/// one without its value, or one from the DLQ itself is refused. With `dry_run`,
/// nothing is produced.
pub async fn redrive(
    kafka: &KafkaConfig,
    codec: &SchemaCodec,
    dlq_topic: &str,
    sel: &Selection,
    max_redrives: i32,
    dry_run: bool,
) -> Result<RedriveReport, Error> {
    let letters = read(kafka, codec, dlq_topic, sel, max_redrives).await?;
    let mut report = RedriveReport::default();
    let producer = if dry_run {
        None
    } else {
        Some(Producer::new(kafka)?)
    };
    for l in letters {
        if l.entry.not_redrivable.is_some() {
            report.refused.push(l.entry);
            continue;
        }
        if let Some(producer) = &producer {
            let mut headers: Vec<(String, Vec<u8>)> = l
                .headers
                .into_iter()
                .filter(|(k, _)| k != header::REASON && k != header::REDRIVE_COUNT)
                .collect();
            headers.push((
                header::REDRIVE_COUNT.to_owned(),
                (l.letter.redrive_count + 1).to_string().into_bytes(),
            ));
            // Records of admission's own topics are keyed by tenant: requests are keyed by
            // the subject pseudonym, which the dead letter's headers carry.
            let key = if l.letter.original_topic == topic::REQUESTS {
                l.letter.original_key.clone()
            } else {
                headers
                    .iter()
                    .find(|(k, _)| k == header::SUBJECT)
                    .map(|(_, v)| v.clone())
                    .or_else(|| l.letter.original_key.clone())
            };
            let out = Outbound {
                topic: target(&l.letter.original_topic)
                    .unwrap_or(topic::REQUESTS)
                    .to_owned(),
                key,
                payload: l.letter.original_value.clone(),
                headers,
            };
            producer.send(out).await?;
            tracing::info!(partition = l.entry.partition, offset = l.entry.offset, to = %l.letter.original_topic, "Dead letter redriven.");
        }
        report.redriven.push(l.entry);
    }
    Ok(report)
}

/// The default DLQ topic.
pub fn default_topic() -> &'static str {
    topic::DLQ
}
