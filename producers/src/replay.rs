//! Replay audits: re-read the request, result and dead-letter topics, verify every
//! envelope's signature and account for every request. Nothing is ever opened or
//! decrypted: a replay reads only what the broker holds in the clear (the Kafka headers,
//! the envelopes' authenticated public headers, the signatures and the dead letters'
//! metadata), so it needs no secret key, only the public keys it trusts.
//!
//! [`ReplayAudit`] is the pure part: feed it records ([`ReplayAudit::add`]) in any order,
//! then [`ReplayAudit::finish`] gives a [`ReplayReport`]. [`replay`] is the driver that
//! reads the topics with the runtime's [`RangeReader`] and feeds an audit.
//!
//! # What a report says
//!
//! Records are classified by the topic they come from:
//!
//! - `zenvelope.dlq` holds `DeadLetter` records (Confluent-framed Avro);
//! - `zenvelope.audit`, `zenvelope.keys`, `zenvelope.checkpoints` and `zenvelope.usage`
//!   are counted but not inspected (they hold no envelopes);
//! - every other topic holds envelopes. On `zenvelope.requests` only `REQUEST` envelopes
//!   are expected, on `zenvelope.results` only `RESULT` and `ERROR`, on `zenvelope.vault`
//!   only `RECORD`; other topics may hold any kind.
//!
//! Each envelope's public header is decoded with the schema codec and its signature is
//! verified: `REQUEST` and `RECORD` envelopes against the trusted producer keys,
//! `RESULT` and `ERROR` envelopes against the trusted result keys. A record that fails
//! is a [`Problem`], with its position and a reason code:
//!
//! | class | reason codes | meaning |
//! |---|---|---|
//! | `malformed` | `empty_payload`, the schema codec's and envelope codec's codes (`wrong_magic_byte`, `truncated_frame`, `unknown_schema_id`, `malformed`, `oversized`, `unsupported_version`, …) | not a readable envelope (or dead letter) |
//! | `tampered` | `bad_signature` | the signature does not verify under the trusted key it names: the bytes changed after signing |
//! | `tampered` | `dead_letter_mismatch` | a dead letter names a request read in this replay by its position but carries other bytes |
//! | `unknown_signer` | `untrusted_signer` | signed by a key (id and version) that is not trusted for the envelope's kind |
//! | `unsigned` | `unsigned` | no signature at all |
//! | `unexpected_kind` | `unexpected_kind` | authentic, but of a kind that does not belong on its topic |
//! | `result_mismatch` | `result_mismatch` | an authentic answer whose tenant or subject differs from its request's |
//! | `header_mismatch` | `header_mismatch` | an authentic envelope whose (unauthenticated) Kafka headers contradict its header |
//!
//! Only envelopes that verify take part in the accounting; a forged or damaged answer
//! answers nothing. Then:
//!
//! - a **request** (a verified `REQUEST`, by message id) is *answered* when at least one
//!   verified `RESULT` or `ERROR` names it as its correlation id; otherwise it is
//!   *dead-lettered* when a dead letter accounts for it (below); otherwise it is a
//!   **request without result**.
//! - an **answer without request** is a verified `RESULT` or `ERROR` whose correlation id
//!   names no verified request read in this replay. Its entry carries the time the
//!   request id was minted (UUIDv7), so an answer to a request older than the replay
//!   window is easy to tell apart.
//! - **duplicates**: a request id with more than one answer record (at-least-once
//!   processing makes these legitimate, so they are listed, not counted as problems), and
//!   a request id on more than one request record. `identical_bytes` says whether the
//!   records are byte-for-byte copies (a producer retry) or differ (a reused id).
//! - a **dead letter** accounts for a request when its original position (topic,
//!   partition, offset) is a request read in this replay and its original value is those
//!   very bytes (or was left out because it was too large); failing a position match, when
//!   its original value is byte-for-byte a request read in this replay. Dead letters are
//!   grouped by reason code, each listing the request it accounts for, if any.
//!
//! The report is **clean** when it has no problems, no request without result and no
//! answer without request. Dead letters and duplicates are listed but do not make a
//! report unclean: they are the pipeline working as designed.
//!
//! # Filters
//!
//! With a tenant or subject filter, a verified envelope is in scope when its
//! authenticated header names that tenant (and subject). Records whose header cannot be
//! trusted (malformed, tampered, unknown signer, dead letters) are judged by every claim
//! they carry: the decoded header if any, and the `zenvelope-tenant` and
//! `zenvelope-subject` Kafka headers. Such a record is out of scope only when it makes a
//! claim and none of its claims matches; a record that makes no claim at all cannot be
//! attributed, so it is reported to every auditor. A dead letter that accounts for a
//! request is in scope exactly when that request is.
//!
//! # Windows
//!
//! A replay reads a window of each topic (see [`ReplayOptions`]). Near its edges the
//! accounting is necessarily partial: a request produced just before the window closes
//! may not be answered yet, and an answer at the start may answer a request before the
//! window. Topics are opened in the order given, and each one's end is fixed when it is
//! opened, so listing the requests topic first gives every request the most time to be
//! answered.
//!
//! # Cost
//!
//! The audit keeps a few hundred bytes per verified envelope and dead letter until it
//! finishes (ids, positions, tenant, subject, a SHA-256 of each request's bytes), and
//! verifies one signature per envelope (about 50 µs for RSA-PSS-2048, 100 µs for ECDSA
//! P-256) on the calling task: replay is a batch tool with nothing else to serve.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use zenvelope_envelope::{Envelope, Keyring, Kind, Limits, MessageId, Opener, VerifyingKey};
use zenvelope_runtime::{
    DEFAULT_IDLE_TIMEOUT, Inbound, KafkaConfig, PartitionRange, RangeReader, ReadFrom, ReadTo,
};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{DeadLetter, SchemaCodec, Topic};

use crate::error::Error;

/// The reason codes a replay assigns itself (the others come from the schema and
/// envelope codecs' `reason_code`).
pub mod reason {
    /// The record has no value.
    pub const EMPTY_PAYLOAD: &str = "empty_payload";
    /// An authentic envelope of a kind that does not belong on its topic.
    pub const UNEXPECTED_KIND: &str = "unexpected_kind";
    /// An authentic answer whose tenant or subject differs from its request's.
    pub const RESULT_MISMATCH: &str = "result_mismatch";
    /// Kafka headers that contradict the authenticated envelope header.
    pub const HEADER_MISMATCH: &str = "header_mismatch";
    /// A dead letter that names a request by position but carries other bytes.
    pub const DEAD_LETTER_MISMATCH: &str = "dead_letter_mismatch";
}

/// The public keys a replay trusts.
pub struct TrustedKeys {
    /// Producer signing keys: `REQUEST` and `RECORD` envelopes must verify under one.
    pub producers: Keyring<VerifyingKey>,
    /// The enclave fleet's result-signing keys: `RESULT` and `ERROR` envelopes must
    /// verify under one.
    pub results: Keyring<VerifyingKey>,
}

/// Which records a report covers. `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this subject pseudonym.
    pub subject: Option<String>,
}

impl ReplayFilter {
    /// Whether a record making these claims is in scope (see the module docs): for each
    /// filtered field, out only if it makes a claim and none matches.
    fn admits<'a>(
        &self,
        tenants: impl IntoIterator<Item = &'a str> + Clone,
        subjects: impl IntoIterator<Item = &'a str> + Clone,
    ) -> bool {
        fn one<'a>(want: Option<&String>, claims: impl IntoIterator<Item = &'a str>) -> bool {
            let Some(want) = want else { return true };
            let mut any = false;
            for claim in claims {
                if claim == want {
                    return true;
                }
                any = true;
            }
            !any
        }
        one(self.tenant.as_ref(), tenants) && one(self.subject.as_ref(), subjects)
    }

    /// Whether an authenticated tenant and subject are in scope.
    fn admits_exactly(&self, tenant: &str, subject: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
            && self.subject.as_deref().is_none_or(|s| s == subject)
    }
}

/// Where a record is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RecordRef {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's Kafka timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl RecordRef {
    fn of(record: &Inbound) -> Self {
        Self {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
        }
    }

    fn position(&self) -> (&str, i32, i64) {
        (&self.topic, self.partition, self.offset)
    }
}

/// What kind of problem a record has. Serializes as [`ProblemClass::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProblemClass {
    /// Not a readable envelope or dead letter.
    Malformed,
    /// Changed after signing (the signature does not verify), or a dead letter that
    /// carries other bytes than the record at its original position.
    Tampered,
    /// Signed by a key that is not trusted for the envelope's kind.
    UnknownSigner,
    /// Not signed.
    Unsigned,
    /// Authentic, but of a kind that does not belong on its topic.
    UnexpectedKind,
    /// An authentic answer whose tenant or subject differs from its request's.
    ResultMismatch,
    /// An authentic envelope whose Kafka headers contradict its authenticated header.
    HeaderMismatch,
}

impl ProblemClass {
    /// The class's name in reports: `malformed`, `tampered`, `unknown_signer`,
    /// `unsigned`, `unexpected_kind`, `result_mismatch` or `header_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemClass::Malformed => "malformed",
            ProblemClass::Tampered => "tampered",
            ProblemClass::UnknownSigner => "unknown_signer",
            ProblemClass::Unsigned => "unsigned",
            ProblemClass::UnexpectedKind => "unexpected_kind",
            ProblemClass::ResultMismatch => "result_mismatch",
            ProblemClass::HeaderMismatch => "header_mismatch",
        }
    }
}

impl Serialize for ProblemClass {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A key named by a signature.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyRef {
    /// Key id.
    pub key_id: String,
    /// Key version.
    pub key_version: i32,
}

/// A record that failed a check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where it is.
    #[serde(flatten)]
    pub record: RecordRef,
    /// What kind of problem.
    pub class: ProblemClass,
    /// A short, stable reason code (see the module docs).
    pub reason: &'static str,
    /// The message id the record's header gives, if it could be decoded. Not
    /// authenticated unless the class is `unexpected_kind`, `result_mismatch` or
    /// `header_mismatch`.
    pub message_id: Option<String>,
    /// The key the signature names (unknown signers, bad signatures).
    pub signer: Option<KeyRef>,
    /// One sentence; names no key material and no plaintext.
    pub detail: String,
}

/// A request, with every record that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestEntry {
    /// Its message id.
    pub message_id: String,
    /// Tenant (authenticated).
    pub tenant: String,
    /// Subject pseudonym (authenticated).
    pub subject: String,
    /// When the producer sealed it, milliseconds since the Unix epoch (authenticated).
    pub created_at_ms: i64,
    /// The request records with this id, in position order.
    pub records: Vec<RecordRef>,
}

/// A request that was not answered but dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetteredRequest {
    /// The request.
    #[serde(flatten)]
    pub request: RequestEntry,
    /// The reason codes of the dead letters that account for it.
    pub reasons: Vec<String>,
    /// Those dead letters.
    pub dead_letters: Vec<RecordRef>,
}

/// An answer whose request was not read in this replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnswerEntry {
    /// Where it is.
    #[serde(flatten)]
    pub record: RecordRef,
    /// Its message id.
    pub message_id: String,
    /// The request it answers.
    pub correlation_id: String,
    /// `RESULT` or `ERROR`.
    pub kind: &'static str,
    /// Tenant (authenticated).
    pub tenant: String,
    /// Subject pseudonym (authenticated).
    pub subject: String,
    /// When the request id was minted (its UUIDv7 time), milliseconds since the Unix
    /// epoch: before the window's start means the request is outside the window.
    pub request_created_at_ms: i64,
}

/// One id on several records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// The request id (for answers: the correlation id they share).
    pub id: String,
    /// Whether every record holds the same bytes.
    pub identical_bytes: bool,
    /// The records, in position order.
    pub records: Vec<RecordRef>,
}

/// A dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterEntry {
    /// Where the dead letter is.
    #[serde(flatten)]
    pub record: RecordRef,
    /// Topic the original record was consumed from.
    pub original_topic: String,
    /// Its partition.
    pub original_partition: i32,
    /// Its offset.
    pub original_offset: i64,
    /// The message id in the original envelope's header, if it decodes (not
    /// authenticated).
    pub message_id: Option<String>,
    /// The request this dead letter accounts for, if any (see the module docs).
    pub accounts_for: Option<String>,
    /// When processing gave up, milliseconds since the Unix epoch.
    pub failed_at_ms: i64,
    /// How often the original had already been redriven.
    pub redrive_count: i32,
    /// The service's one-sentence explanation (never plaintext by contract).
    pub detail: String,
}

/// The dead letters with one reason code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterGroup {
    /// How many.
    pub count: u64,
    /// Each, in position order.
    pub records: Vec<DeadLetterEntry>,
}

/// How a topic's records are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicRole {
    /// Envelopes, verified and accounted for.
    #[default]
    Envelopes,
    /// `DeadLetter` records.
    DeadLetters,
    /// Counted only.
    NotInspected,
}

impl TopicRole {
    /// The role of a topic, by name (see the module docs).
    pub fn of(name: &str) -> Self {
        match Topic::from_name(name) {
            Some(Topic::Dlq) => TopicRole::DeadLetters,
            Some(Topic::Audit | Topic::Keys | Topic::Checkpoints | Topic::Usage) => {
                TopicRole::NotInspected
            }
            _ => TopicRole::Envelopes,
        }
    }
}

/// The offsets read on one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReadRange {
    /// Partition.
    pub partition: i32,
    /// First offset read (inclusive).
    pub start_offset: i64,
    /// Offset reading stopped before (exclusive).
    pub end_offset: i64,
    /// Oldest offset the partition held when the replay started.
    pub low_watermark: i64,
    /// Next offset to be written when the replay started.
    pub high_watermark: i64,
}

impl From<&PartitionRange> for ReadRange {
    fn from(r: &PartitionRange) -> Self {
        Self {
            partition: r.partition,
            start_offset: r.start,
            end_offset: r.end,
            low_watermark: r.low_watermark,
            high_watermark: r.high_watermark,
        }
    }
}

/// Counts for one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    /// How its records were read.
    pub role: TopicRole,
    /// The offsets read, per partition (empty when the audit was fed directly).
    pub ranges: Vec<ReadRange>,
    /// Records read.
    pub records: u64,
    /// Records in scope of the filter.
    pub in_scope: u64,
    /// Records in scope that decoded and, for envelopes, verified.
    pub verified: u64,
    /// Problems found in its records in scope.
    pub problems: u64,
}

/// The headline numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Distinct verified requests in scope.
    pub requests: u64,
    /// Requests with at least one verified answer.
    pub answered: u64,
    /// Requests without an answer that a dead letter accounts for.
    pub dead_lettered: u64,
    /// Requests with neither.
    pub without_result: u64,
    /// Verified answer records in scope (`RESULT` and `ERROR`).
    pub answers: u64,
    /// Of those, `ERROR` answers.
    pub error_answers: u64,
    /// Answer records whose request was not read.
    pub answers_without_request: u64,
    /// Request ids with more than one answer record.
    pub duplicate_answers: u64,
    /// Request ids on more than one request record.
    pub duplicate_requests: u64,
    /// Dead letters in scope.
    pub dead_letters: u64,
    /// Problems in scope.
    pub problems: u64,
}

/// Where a window starts or ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum WindowBound {
    /// The oldest offset held.
    Beginning,
    /// The high watermark when the replay started.
    Watermark,
    /// An offset, the same on every partition (start inclusive, end exclusive).
    Offset {
        /// The offset.
        offset: i64,
    },
    /// A time (start inclusive, end exclusive), resolved with the broker's time index.
    Time {
        /// Milliseconds since the Unix epoch.
        timestamp_ms: i64,
    },
}

impl From<ReadFrom> for WindowBound {
    fn from(f: ReadFrom) -> Self {
        match f {
            ReadFrom::Beginning => WindowBound::Beginning,
            ReadFrom::Offset(offset) => WindowBound::Offset { offset },
            ReadFrom::TimestampMs(timestamp_ms) => WindowBound::Time { timestamp_ms },
        }
    }
}

impl From<ReadTo> for WindowBound {
    fn from(t: ReadTo) -> Self {
        match t {
            ReadTo::Watermark => WindowBound::Watermark,
            ReadTo::Offset(offset) => WindowBound::Offset { offset },
            ReadTo::TimestampMs(timestamp_ms) => WindowBound::Time { timestamp_ms },
        }
    }
}

/// The window a replay read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Where it starts.
    pub from: WindowBound,
    /// Where it ends.
    pub to: WindowBound,
}

/// What a replay found. Serializes to the JSON the CLI prints with `--json`. Every list
/// is in position order (topic, partition, offset), so equal inputs give equal reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// No problems, no request without result and no answer without request.
    pub clean: bool,
    /// The window read, if the report comes from [`replay`].
    pub window: Option<Window>,
    /// The filter applied.
    pub filter: ReplayFilter,
    /// Counts per topic.
    pub topics: BTreeMap<String, TopicSummary>,
    /// The headline numbers.
    pub summary: Summary,
    /// Records that failed a check.
    pub problems: Vec<Problem>,
    /// Verified requests with no verified answer and no dead letter.
    pub requests_without_results: Vec<RequestEntry>,
    /// Verified requests with no verified answer, accounted for by a dead letter.
    pub dead_lettered_requests: Vec<DeadLetteredRequest>,
    /// Verified answers whose request was not read.
    pub answers_without_requests: Vec<AnswerEntry>,
    /// Request ids with several answer records.
    pub duplicate_answers: Vec<Duplicate>,
    /// Request ids on several request records.
    pub duplicate_requests: Vec<Duplicate>,
    /// Dead letters by reason code.
    pub dead_letters: BTreeMap<String, DeadLetterGroup>,
}

/// A verified request or answer.
struct Seen {
    id: MessageId,
    at: RecordRef,
    tenant: String,
    subject: String,
    created_at_ms: i64,
    digest: [u8; 32],
    /// For answers: the request id and kind.
    answer: Option<(MessageId, Kind)>,
}

/// A decoded dead letter.
struct Dead {
    at: RecordRef,
    letter: DeadLetter,
    /// SHA-256 of the original value; `None` when it was left out.
    original_digest: Option<[u8; 32]>,
    /// The original envelope's (unauthenticated) header fields, if it decodes.
    original: Option<(MessageId, String, String)>,
    /// The dead letter's own tenant and subject Kafka headers.
    header_tenant: Option<String>,
    header_subject: Option<String>,
}

/// Accumulates records and produces a [`ReplayReport`]. Pure apart from the schema codec
/// (which does no I/O when offline); feed it records in any order.
pub struct ReplayAudit {
    codec: Arc<SchemaCodec>,
    producers: Opener,
    results: Opener,
    filter: ReplayFilter,
    limits: Limits,
    window: Option<Window>,
    topics: BTreeMap<String, TopicSummary>,
    requests: Vec<Seen>,
    answers: Vec<Seen>,
    dead: Vec<Dead>,
    problems: Vec<Problem>,
}

impl ReplayAudit {
    /// An audit that trusts `keys` and reports on what `filter` admits.
    pub fn new(codec: Arc<SchemaCodec>, keys: TrustedKeys, filter: ReplayFilter) -> Self {
        Self {
            codec,
            producers: Opener::new(keys.producers),
            results: Opener::new(keys.results),
            filter,
            limits: Limits::default(),
            window: None,
            topics: BTreeMap::new(),
            requests: Vec::new(),
            answers: Vec::new(),
            dead: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Notes the window read, for the report.
    pub fn set_window(&mut self, window: Window) {
        self.window = Some(window);
    }

    /// Notes the offsets read on one partition of `topic`, for the report.
    pub fn add_range(&mut self, topic: &str, range: &PartitionRange) {
        self.topic(topic).ranges.push(range.into());
    }

    fn topic(&mut self, name: &str) -> &mut TopicSummary {
        self.topics
            .entry(name.to_owned())
            .or_insert_with(|| TopicSummary {
                role: TopicRole::of(name),
                ..TopicSummary::default()
            })
    }

    /// Takes one record into account. Fails only when the schema codec cannot reach its
    /// registry (a retriable error): a record that cannot be read is a [`Problem`], not
    /// an error.
    pub async fn add(&mut self, record: &Inbound) -> Result<(), Error> {
        self.topic(&record.topic).records += 1;
        match TopicRole::of(&record.topic) {
            TopicRole::Envelopes => self.add_envelope(record).await,
            TopicRole::DeadLetters => self.add_dead_letter(record).await,
            TopicRole::NotInspected => {
                if self.filter.admits(
                    text_header(record, header::TENANT),
                    text_header(record, header::SUBJECT),
                ) {
                    self.topic(&record.topic).in_scope += 1;
                }
                Ok(())
            }
        }
    }

    /// Records a problem if its claims are in scope, counting the record in scope.
    fn problem(
        &mut self,
        record: &Inbound,
        claimed: Option<&Envelope>,
        class: ProblemClass,
        reason: &'static str,
        detail: String,
    ) {
        let tenants = claimed
            .map(|e| e.header.tenant.as_str())
            .into_iter()
            .chain(text_header(record, header::TENANT));
        let subjects = claimed
            .map(|e| e.header.subject.as_str())
            .into_iter()
            .chain(text_header(record, header::SUBJECT));
        if !self.filter.admits(tenants, subjects) {
            return;
        }
        self.topic(&record.topic).in_scope += 1;
        self.push_problem(record, claimed, class, reason, detail);
    }

    /// Records a problem about a record already known to be in scope.
    fn push_problem(
        &mut self,
        record: &Inbound,
        claimed: Option<&Envelope>,
        class: ProblemClass,
        reason: &'static str,
        detail: String,
    ) {
        self.topic(&record.topic).problems += 1;
        self.problems.push(Problem {
            record: RecordRef::of(record),
            class,
            reason,
            message_id: claimed.map(|e| e.header.message_id.to_string()),
            signer: claimed.and_then(|e| {
                e.signature.as_ref().map(|s| KeyRef {
                    key_id: s.key_id.clone(),
                    key_version: s.key_version,
                })
            }),
            detail,
        });
    }

    async fn add_envelope(&mut self, record: &Inbound) -> Result<(), Error> {
        if record.payload.is_empty() {
            self.problem(
                record,
                None,
                ProblemClass::Malformed,
                reason::EMPTY_PAYLOAD,
                "The record has no value.".to_owned(),
            );
            return Ok(());
        }
        let envelope = match self
            .codec
            .decode_envelope(&record.payload, &self.limits)
            .await
        {
            Ok(envelope) => envelope,
            Err(e) if e.is_retriable() => return Err(e.into()),
            Err(e) => {
                self.problem(
                    record,
                    None,
                    ProblemClass::Malformed,
                    e.reason_code(),
                    sentence(&e),
                );
                return Ok(());
            }
        };
        let h = &envelope.header;
        let opener = if h.kind.is_response() {
            &self.results
        } else {
            &self.producers
        };
        if let Err(e) = opener.verify(&envelope) {
            let class = match e {
                zenvelope_envelope::Error::BadSignature => ProblemClass::Tampered,
                zenvelope_envelope::Error::UntrustedSigner { .. } => ProblemClass::UnknownSigner,
                zenvelope_envelope::Error::Unsigned => ProblemClass::Unsigned,
                _ => ProblemClass::Malformed,
            };
            let detail = match &e {
                zenvelope_envelope::Error::UntrustedSigner { .. } => format!(
                    "The {} envelope is signed by a key not trusted for its kind.",
                    h.kind
                ),
                _ => sentence(&e),
            };
            self.problem(record, Some(&envelope), class, e.reason_code(), detail);
            return Ok(());
        }
        // Authentic from here on: the filter uses the header alone.
        if !self.filter.admits_exactly(&h.tenant, &h.subject) {
            return Ok(());
        }
        if let Some(expected) = expected_kinds(&record.topic)
            && !expected.contains(&h.kind)
        {
            self.problem(
                record,
                Some(&envelope),
                ProblemClass::UnexpectedKind,
                reason::UNEXPECTED_KIND,
                format!(
                    "A {} envelope does not belong on topic {}.",
                    h.kind, record.topic
                ),
            );
            return Ok(());
        }
        if let Some(name) = contradicted_header(record, &envelope) {
            self.push_problem(
                record,
                Some(&envelope),
                ProblemClass::HeaderMismatch,
                reason::HEADER_MISMATCH,
                format!("The Kafka header {name} contradicts the signed envelope header."),
            );
        }
        let summary = self.topic(&record.topic);
        summary.in_scope += 1;
        summary.verified += 1;
        let seen = Seen {
            id: h.message_id,
            at: RecordRef::of(record),
            tenant: h.tenant.clone(),
            subject: h.subject.clone(),
            created_at_ms: h.created_at_ms,
            digest: Sha256::digest(&record.payload).into(),
            answer: h.correlation_id.map(|c| (c, h.kind)),
        };
        match h.kind {
            Kind::Request => self.requests.push(seen),
            k if k.is_response() => self.answers.push(seen),
            // Vault records and kinds added later: verified and counted only.
            _ => {}
        }
        Ok(())
    }

    async fn add_dead_letter(&mut self, record: &Inbound) -> Result<(), Error> {
        let letter = match self.codec.decode::<DeadLetter>(&record.payload).await {
            Ok(letter) => letter,
            Err(e) if e.is_retriable() => return Err(e.into()),
            Err(e) => {
                let reason = if record.payload.is_empty() {
                    reason::EMPTY_PAYLOAD
                } else {
                    e.reason_code()
                };
                self.problem(record, None, ProblemClass::Malformed, reason, sentence(&e));
                return Ok(());
            }
        };
        let original = if letter.original_value.is_empty() {
            None
        } else {
            match self
                .codec
                .decode_envelope(&letter.original_value, &self.limits)
                .await
            {
                Ok(e) => Some((e.header.message_id, e.header.tenant, e.header.subject)),
                Err(e) if e.is_retriable() => return Err(e.into()),
                Err(_) => None,
            }
        };
        self.dead.push(Dead {
            at: RecordRef::of(record),
            original_digest: (!letter.original_value.is_empty())
                .then(|| Sha256::digest(&letter.original_value).into()),
            original,
            header_tenant: text_header(record, header::TENANT).map(str::to_owned),
            header_subject: text_header(record, header::SUBJECT).map(str::to_owned),
            letter,
        });
        Ok(())
    }

    /// Matches requests, answers and dead letters and produces the report.
    pub fn finish(mut self) -> ReplayReport {
        let filter = self.filter.clone();
        let requests = std::mem::take(&mut self.requests);
        let answers = std::mem::take(&mut self.answers);
        let dead = std::mem::take(&mut self.dead);

        let mut by_id: HashMap<MessageId, Vec<&Seen>> = HashMap::new();
        let mut by_position: HashMap<(&str, i32, i64), &Seen> = HashMap::new();
        let mut by_digest: HashMap<[u8; 32], &Seen> = HashMap::new();
        for r in &requests {
            by_id.entry(r.id).or_default().push(r);
            by_position.insert(r.at.position(), r);
            by_digest.entry(r.digest).or_insert(r);
        }
        let mut answers_by_request: HashMap<MessageId, Vec<&Seen>> = HashMap::new();
        for a in &answers {
            if let Some((correlation, _)) = a.answer {
                answers_by_request.entry(correlation).or_default().push(a);
            }
        }

        // Dead letters: which request each accounts for, and whether it is in scope.
        let mut dead_letters: BTreeMap<String, DeadLetterGroup> = BTreeMap::new();
        let mut dead_for: HashMap<MessageId, Vec<(&str, &RecordRef)>> = HashMap::new();
        let mut dlq_counts: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for d in &dead {
            let l = &d.letter;
            let at_position = by_position
                .get(&(
                    l.original_topic.as_str(),
                    l.original_partition,
                    l.original_offset,
                ))
                .copied();
            let mut mismatch = false;
            let accounts = match (at_position, d.original_digest) {
                (Some(r), None) => Some(r),
                (Some(r), Some(digest)) if digest == r.digest => Some(r),
                (Some(_), Some(_)) => {
                    mismatch = true;
                    None
                }
                (None, Some(digest)) => by_digest.get(&digest).copied(),
                (None, None) => None,
            };
            let in_scope = match accounts {
                Some(r) => filter.admits_exactly(&r.tenant, &r.subject),
                None => {
                    let tenants = d
                        .original
                        .as_ref()
                        .map(|(_, t, _)| t.as_str())
                        .into_iter()
                        .chain(d.header_tenant.as_deref());
                    let subjects = d
                        .original
                        .as_ref()
                        .map(|(_, _, s)| s.as_str())
                        .into_iter()
                        .chain(d.header_subject.as_deref());
                    filter.admits(tenants, subjects)
                }
            };
            if !in_scope {
                continue;
            }
            let counts = dlq_counts.entry(d.at.topic.clone()).or_default();
            counts.0 += 1;
            if mismatch {
                counts.2 += 1;
                self.problems.push(Problem {
                    record: d.at.clone(),
                    class: ProblemClass::Tampered,
                    reason: reason::DEAD_LETTER_MISMATCH,
                    message_id: d.original.as_ref().map(|(id, _, _)| id.to_string()),
                    signer: None,
                    detail: format!(
                        "The dead letter names {} partition {} offset {} but carries other bytes than that record.",
                        l.original_topic, l.original_partition, l.original_offset
                    ),
                });
            } else {
                counts.1 += 1;
            }
            if let Some(r) = accounts {
                dead_for
                    .entry(r.id)
                    .or_default()
                    .push((l.reason_code.as_str(), &d.at));
            }
            let group = dead_letters.entry(l.reason_code.clone()).or_default();
            group.count += 1;
            group.records.push(DeadLetterEntry {
                record: d.at.clone(),
                original_topic: l.original_topic.clone(),
                original_partition: l.original_partition,
                original_offset: l.original_offset,
                message_id: d.original.as_ref().map(|(id, _, _)| id.to_string()),
                accounts_for: accounts.map(|r| r.id.to_string()),
                failed_at_ms: l.failed_at_ms,
                redrive_count: l.redrive_count,
                detail: l.reason_detail.clone(),
            });
        }
        for (name, (in_scope, verified, problems)) in dlq_counts {
            let t = self.topic(&name);
            t.in_scope += in_scope;
            t.verified += verified;
            t.problems += problems;
        }
        for group in dead_letters.values_mut() {
            group.records.sort_by(|a, b| a.record.cmp(&b.record));
        }

        // Requests: answered, dead-lettered or without result.
        let mut summary = Summary::default();
        let mut without = Vec::new();
        let mut dead_lettered = Vec::new();
        let mut duplicate_requests = Vec::new();
        for (id, records) in in_position_order(&by_id) {
            let first = records[0];
            if !filter.admits_exactly(&first.tenant, &first.subject) {
                continue;
            }
            summary.requests += 1;
            let entry = || entry_of(records);
            if records.len() > 1 {
                duplicate_requests.push(duplicate(&id.to_string(), records));
            }
            if answers_by_request.contains_key(id) {
                summary.answered += 1;
                for a in &answers_by_request[id] {
                    if a.tenant != first.tenant || a.subject != first.subject {
                        self.problems.push(Problem {
                            record: a.at.clone(),
                            class: ProblemClass::ResultMismatch,
                            reason: reason::RESULT_MISMATCH,
                            message_id: Some(a.id.to_string()),
                            signer: None,
                            detail: "The answer's tenant or subject differs from its request's."
                                .to_owned(),
                        });
                        let t = self.topic(&a.at.topic);
                        t.problems += 1;
                    }
                }
            } else if let Some(letters) = dead_for.get(id) {
                summary.dead_lettered += 1;
                let mut letters = letters.clone();
                letters.sort_by(|a, b| a.1.cmp(b.1));
                dead_lettered.push(DeadLetteredRequest {
                    request: entry(),
                    reasons: letters.iter().map(|(r, _)| (*r).to_owned()).collect(),
                    dead_letters: letters.iter().map(|(_, at)| (*at).clone()).collect(),
                });
            } else {
                summary.without_result += 1;
                without.push(entry());
            }
        }

        // Answers: without request, duplicates.
        let mut answers_without = Vec::new();
        let mut duplicate_answers = Vec::new();
        for (correlation, group) in in_position_order(&answers_by_request) {
            let in_scope: Vec<&Seen> = group
                .iter()
                .copied()
                .filter(|a| filter.admits_exactly(&a.tenant, &a.subject))
                .collect();
            if in_scope.is_empty() {
                continue;
            }
            for a in &in_scope {
                summary.answers += 1;
                if matches!(a.answer, Some((_, Kind::Error))) {
                    summary.error_answers += 1;
                }
            }
            if in_scope.len() > 1 {
                duplicate_answers.push(duplicate(&correlation.to_string(), &in_scope));
            }
            if !by_id.contains_key(correlation) {
                for a in &in_scope {
                    answers_without.push(AnswerEntry {
                        record: a.at.clone(),
                        message_id: a.id.to_string(),
                        correlation_id: correlation.to_string(),
                        kind: a.answer.map_or("", |(_, k)| k.symbol()),
                        tenant: a.tenant.clone(),
                        subject: a.subject.clone(),
                        request_created_at_ms: correlation.timestamp_ms(),
                    });
                }
            }
        }
        answers_without.sort_by(|a, b| a.record.cmp(&b.record));

        let mut problems = std::mem::take(&mut self.problems);
        problems.sort_by(|a, b| (&a.record, a.class).cmp(&(&b.record, b.class)));
        summary.answers_without_request = answers_without.len() as u64;
        summary.duplicate_answers = duplicate_answers.len() as u64;
        summary.duplicate_requests = duplicate_requests.len() as u64;
        summary.dead_letters = dead_letters.values().map(|g| g.count).sum();
        summary.problems = problems.len() as u64;
        let clean = problems.is_empty() && without.is_empty() && answers_without.is_empty();
        ReplayReport {
            clean,
            window: self.window,
            filter,
            topics: self.topics,
            summary,
            problems,
            requests_without_results: without,
            dead_lettered_requests: dead_lettered,
            answers_without_requests: answers_without,
            duplicate_answers,
            duplicate_requests,
            dead_letters,
        }
    }
}

/// The groups ordered by their first record's position.
fn in_position_order<'a>(
    groups: &'a HashMap<MessageId, Vec<&'a Seen>>,
) -> Vec<(&'a MessageId, &'a [&'a Seen])> {
    let mut out: Vec<_> = groups
        .iter()
        .filter_map(|(id, g)| Some((g.iter().map(|s| &s.at).min()?, id, g.as_slice())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.into_iter().map(|(_, id, g)| (id, g)).collect()
}

fn entry_of(records: &[&Seen]) -> RequestEntry {
    let first = records[0];
    let mut at: Vec<RecordRef> = records.iter().map(|r| r.at.clone()).collect();
    at.sort();
    RequestEntry {
        message_id: first.id.to_string(),
        tenant: first.tenant.clone(),
        subject: first.subject.clone(),
        created_at_ms: first.created_at_ms,
        records: at,
    }
}

fn duplicate(id: &str, records: &[&Seen]) -> Duplicate {
    let mut at: Vec<RecordRef> = records.iter().map(|r| r.at.clone()).collect();
    at.sort();
    Duplicate {
        id: id.to_owned(),
        identical_bytes: records.iter().all(|r| r.digest == records[0].digest),
        records: at,
    }
}

/// The envelope kinds that belong on a topic; `None` for topics that may hold any.
fn expected_kinds(name: &str) -> Option<&'static [Kind]> {
    match name {
        topic::REQUESTS => Some(&[Kind::Request]),
        topic::RESULTS => Some(&[Kind::Result, Kind::Error]),
        topic::VAULT => Some(&[Kind::Record]),
        _ => None,
    }
}

/// The first Kafka header that contradicts the authenticated envelope header, if any.
/// Absent headers contradict nothing.
fn contradicted_header(record: &Inbound, envelope: &Envelope) -> Option<&'static str> {
    let h = &envelope.header;
    let checks: [(&'static str, Option<String>); 5] = [
        (header::TENANT, Some(h.tenant.clone())),
        (header::SUBJECT, Some(h.subject.clone())),
        (header::KIND, Some(h.kind.symbol().to_owned())),
        (header::MESSAGE_ID, Some(h.message_id.to_string())),
        (
            header::CORRELATION_ID,
            h.correlation_id.map(|c| c.to_string()),
        ),
    ];
    checks.into_iter().find_map(|(name, signed)| {
        let claimed = record.header(name)?;
        (signed.as_deref().map(str::as_bytes) != Some(claimed)).then_some(name)
    })
}

/// A Kafka header's value as text, if present and UTF-8.
fn text_header<'a>(record: &'a Inbound, name: &str) -> Option<&'a str> {
    record
        .header(name)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// An error's message as a sentence: capitalised, with a full stop.
fn sentence(e: &dyn std::error::Error) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// What to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The topics, opened in this order (requests first, see the module docs).
    pub topics: Vec<String>,
    /// Where to start on every partition.
    pub from: ReadFrom,
    /// Where to stop on every partition (never past the high watermark at the start).
    pub to: ReadTo,
    /// How long to wait for a record or an end of partition before giving up.
    pub idle_timeout: Duration,
}

impl ReplayOptions {
    /// The request, result and dead-letter topics, whole.
    pub fn pipeline() -> Self {
        Self {
            topics: [topic::REQUESTS, topic::RESULTS, topic::DLQ]
                .map(str::to_owned)
                .to_vec(),
            from: ReadFrom::Beginning,
            to: ReadTo::Watermark,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// How far a replay has got, over all its topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayProgress {
    /// The topic being read.
    pub topic: String,
    /// Records read so far, all topics together.
    pub read: u64,
    /// Records expected at most, all topics together (offsets spanned by the ranges).
    pub expected: u64,
}

/// Reads `options.topics` between `options.from` and `options.to` and feeds `audit`,
/// calling `progress` after each record and once per topic opened. Every topic is opened
/// (its range fixed) before the first is read.
pub async fn replay(
    kafka: &KafkaConfig,
    options: &ReplayOptions,
    mut audit: ReplayAudit,
    mut progress: impl FnMut(&ReplayProgress),
) -> Result<ReplayReport, Error> {
    audit.set_window(Window {
        from: options.from.into(),
        to: options.to.into(),
    });
    let mut readers = Vec::with_capacity(options.topics.len());
    for name in &options.topics {
        let reader = RangeReader::open(kafka, name, options.from, options.to)
            .await?
            .with_idle_timeout(options.idle_timeout);
        for range in reader.ranges() {
            audit.add_range(name, range);
        }
        readers.push(reader);
    }
    let expected = readers.iter().map(|r| r.progress().expected).sum();
    let mut read = 0;
    for mut reader in readers {
        progress(&ReplayProgress {
            topic: reader.topic().to_owned(),
            read,
            expected,
        });
        while let Some(record) = reader.next().await? {
            audit.add(&record).await?;
            read += 1;
            progress(&ReplayProgress {
                topic: record.topic,
                read,
                expected,
            });
        }
        tracing::debug!(
            topic = reader.topic(),
            read = reader.progress().read,
            "Topic replayed."
        );
    }
    Ok(audit.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use zenvelope_envelope::{
        DekWrapper, HeaderFields, Keyed as _, Purpose, Sealer, Signature, SigningKey, UserKey,
        signature_input,
    };
    use zenvelope_schemas::Subject;

    use super::*;

    const TENANT: &str = "clinic-a";
    const OTHER_TENANT: &str = "clinic-b";
    const CANARY: &str = "CANARY-PHI-7d2e41";

    struct Keys {
        user: Arc<UserKey>,
        producer: Arc<SigningKey>,
        results: SigningKey,
        rogue: Arc<SigningKey>,
    }

    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| Keys {
            user: Arc::new(
                UserKey::derive_with_iterations(
                    TENANT,
                    "ada@example.org",
                    &crate::Passphrase::new("correct horse"),
                    100_000,
                )
                .expect("user key"),
            ),
            producer: Arc::new(SigningKey::generate_ecdsa_p256("producer", 1).expect("key")),
            results: SigningKey::generate_ecdsa_p256("results", 1).expect("key"),
            rogue: Arc::new(SigningKey::generate_ecdsa_p256("producer", 2).expect("key")),
        })
    }

    fn audit(filter: ReplayFilter) -> ReplayAudit {
        let k = keys();
        let trusted = TrustedKeys {
            producers: Keyring::new()
                .with(k.producer.verifying_key().expect("public"))
                .expect("ring"),
            results: Keyring::new()
                .with(k.results.verifying_key().expect("public"))
                .expect("ring"),
        };
        ReplayAudit::new(
            Arc::new(SchemaCodec::offline().expect("codec")),
            trusted,
            filter,
        )
    }

    fn seal(tenant: &str, subject: &str, signer: Option<&Arc<SigningKey>>) -> Envelope {
        let user: Arc<dyn DekWrapper> = keys().user.clone();
        let mut sealer = Sealer::new(vec![user]);
        if let Some(s) = signer {
            sealer = sealer.with_signer(s.clone());
        }
        sealer
            .seal(
                &HeaderFields {
                    tenant: tenant.to_owned(),
                    subject: subject.to_owned(),
                    kind: Kind::Request,
                    purpose: Purpose::IndividualRequest,
                    content_type: "text/plain".to_owned(),
                    schema_id: 0,
                },
                format!("Summarise: {CANARY}").as_bytes(),
            )
            .expect("seal")
    }

    fn request(subject: &str) -> Envelope {
        seal(TENANT, subject, Some(&keys().producer))
    }

    fn sign(env: &mut Envelope, signer: &SigningKey) {
        let input = signature_input(
            &env.header,
            &env.recipients,
            &env.payload,
            signer.key_id(),
            signer.key_version(),
            signer.algorithm(),
        );
        env.signature = Some(Signature {
            key_id: signer.key_id().to_owned(),
            key_version: signer.key_version(),
            algorithm: signer.algorithm(),
            value: signer.sign(&input).expect("sign"),
        });
    }

    /// An answer to `req`, signed by the result key. Its payload is not a real response
    /// (a replay never opens it), but its header and signature are.
    fn answer(req: &Envelope, kind: Kind) -> Envelope {
        let mut env = req.clone();
        env.header.kind = kind;
        env.header.message_id = MessageId::new_v7();
        env.header.correlation_id = Some(req.header.message_id);
        sign(&mut env, &keys().results);
        env
    }

    async fn framed(env: &Envelope) -> Vec<u8> {
        SchemaCodec::offline()
            .expect("codec")
            .encode_envelope(Subject::RequestsValue, env)
            .await
            .expect("frame")
    }

    fn inbound(topic: &str, offset: i64, payload: Vec<u8>) -> Inbound {
        Inbound {
            topic: topic.to_owned(),
            partition: 0,
            offset,
            key: None,
            payload,
            headers: Vec::new(),
            timestamp_ms: Some(1_700_000_000_000 + offset),
        }
    }

    async fn record(topic: &str, offset: i64, env: &Envelope) -> Inbound {
        inbound(topic, offset, framed(env).await)
    }

    async fn dead_letter(offset: i64, original: &Inbound, reason_code: &str) -> Inbound {
        let letter = DeadLetter {
            original_topic: original.topic.clone(),
            original_partition: original.partition,
            original_offset: original.offset,
            original_key: None,
            original_value: original.payload.clone(),
            reason_code: reason_code.to_owned(),
            reason_detail: "The test dead-lettered it.".to_owned(),
            failed_at_ms: 1_700_000_000_999,
            redrive_count: 0,
        };
        let mut r = inbound(
            topic::DLQ,
            offset,
            SchemaCodec::offline()
                .expect("codec")
                .encode(Subject::DlqValue, &letter)
                .await
                .expect("encode"),
        );
        r.headers
            .push((header::REASON.to_owned(), reason_code.as_bytes().to_vec()));
        r
    }

    /// Flips a byte in the middle of the envelope's ciphertext.
    fn tamper(framed: &mut [u8], env: &Envelope) {
        let at = framed
            .windows(env.payload.len())
            .position(|w| w == env.payload.as_slice())
            .expect("payload in the frame");
        framed[at + env.payload.len() / 2] ^= 0x01;
    }

    fn at(topic: &str, offset: i64) -> RecordRef {
        RecordRef {
            topic: topic.to_owned(),
            partition: 0,
            offset,
            timestamp_ms: Some(1_700_000_000_000 + offset),
        }
    }

    fn positions(problems: &[Problem]) -> Vec<(&str, i64, ProblemClass, &str)> {
        problems
            .iter()
            .map(|p| (p.record.topic.as_str(), p.record.offset, p.class, p.reason))
            .collect()
    }

    #[tokio::test]
    async fn every_request_is_accounted_for() {
        let (req, res, dlq) = (topic::REQUESTS, topic::RESULTS, topic::DLQ);
        let answered = request("sp1_a");
        let gap = request("sp1_b");
        let dead = request("sp1_c");
        let twice = request("sp1_d");
        let elsewhere = request("sp1_e"); // answered, but not on the replayed topic
        let tampered = request("sp1_f");
        let rogue = seal(TENANT, "sp1_g", Some(&keys().rogue));
        let unsigned = seal(TENANT, "sp1_h", None);

        let mut a = audit(ReplayFilter::default());
        let dead_record = record(req, 2, &dead).await;
        let mut tampered_bytes = framed(&tampered).await;
        tamper(&mut tampered_bytes, &tampered);
        let records = vec![
            record(req, 0, &answered).await,
            record(req, 1, &gap).await,
            dead_record.clone(),
            record(req, 3, &twice).await,
            inbound(req, 4, tampered_bytes),
            record(req, 5, &rogue).await,
            record(req, 6, &unsigned).await,
            inbound(req, 7, b"not an envelope".to_vec()),
            inbound(req, 8, Vec::new()),
            record(res, 0, &answer(&answered, Kind::Result)).await,
            record(res, 1, &answer(&twice, Kind::Result)).await,
            record(res, 2, &answer(&twice, Kind::Error)).await,
            record(res, 3, &answer(&elsewhere, Kind::Result)).await,
            dead_letter(0, &dead_record, "stale").await,
        ];
        // Order does not matter: the dead letter and answers may come first.
        for r in records.iter().rev() {
            a.add(r).await.expect("add");
        }
        let report = a.finish();

        assert!(!report.clean);
        assert_eq!(
            positions(&report.problems),
            [
                (req, 4, ProblemClass::Tampered, "bad_signature"),
                (req, 5, ProblemClass::UnknownSigner, "untrusted_signer"),
                (req, 6, ProblemClass::Unsigned, "unsigned"),
                (req, 7, ProblemClass::Malformed, "wrong_magic_byte"),
                (req, 8, ProblemClass::Malformed, "empty_payload"),
            ]
        );
        assert_eq!(
            report.problems[0].message_id,
            Some(tampered.header.message_id.to_string())
        );
        assert_eq!(
            report.problems[1].signer,
            Some(KeyRef {
                key_id: "producer".to_owned(),
                key_version: 2
            })
        );
        assert_eq!(
            report.summary,
            Summary {
                requests: 4,
                answered: 2,
                dead_lettered: 1,
                without_result: 1,
                answers: 4,
                error_answers: 1,
                answers_without_request: 1,
                duplicate_answers: 1,
                duplicate_requests: 0,
                dead_letters: 1,
                problems: 5,
            }
        );
        assert_eq!(
            report.requests_without_results,
            [RequestEntry {
                message_id: gap.header.message_id.to_string(),
                tenant: TENANT.to_owned(),
                subject: "sp1_b".to_owned(),
                created_at_ms: gap.header.created_at_ms,
                records: vec![at(req, 1)],
            }]
        );
        assert_eq!(report.dead_lettered_requests.len(), 1);
        let d = &report.dead_lettered_requests[0];
        assert_eq!(d.request.message_id, dead.header.message_id.to_string());
        assert_eq!(
            (d.reasons.as_slice(), d.dead_letters.as_slice()),
            (&["stale".to_owned()][..], &[at(dlq, 0)][..])
        );
        assert_eq!(report.answers_without_requests.len(), 1);
        let orphan = &report.answers_without_requests[0];
        assert_eq!(
            (
                orphan.record.clone(),
                orphan.correlation_id.clone(),
                orphan.kind
            ),
            (
                at(res, 3),
                elsewhere.header.message_id.to_string(),
                "RESULT"
            )
        );
        assert_eq!(
            orphan.request_created_at_ms,
            elsewhere.header.message_id.timestamp_ms()
        );
        assert_eq!(
            report.duplicate_answers,
            [Duplicate {
                id: twice.header.message_id.to_string(),
                identical_bytes: false,
                records: vec![at(res, 1), at(res, 2)],
            }]
        );
        let group = &report.dead_letters["stale"];
        assert_eq!(group.count, 1);
        assert_eq!(
            group.records[0].accounts_for,
            Some(dead.header.message_id.to_string())
        );
        assert_eq!(
            (
                group.records[0].original_topic.as_str(),
                group.records[0].original_offset
            ),
            (req, 2)
        );
        assert_eq!(
            report.topics[req],
            TopicSummary {
                role: TopicRole::Envelopes,
                ranges: Vec::new(),
                records: 9,
                in_scope: 9,
                verified: 4,
                problems: 5,
            }
        );
        assert_eq!(
            (report.topics[res].verified, report.topics[dlq].verified),
            (4, 1)
        );
        assert_eq!(report.topics[dlq].role, TopicRole::DeadLetters);

        // Nothing in the report, in JSON or in Debug, holds plaintext: there is none.
        let json = serde_json::to_string(&report).expect("json");
        assert!(!json.contains(CANARY) && !format!("{report:?}").contains(CANARY));
        assert!(json.contains("\"class\":\"unknown_signer\""), "{json}");
    }

    #[tokio::test]
    async fn answered_requests_make_a_clean_report() {
        let mut a = audit(ReplayFilter::default());
        let r = request("sp1_a");
        a.add(&record(topic::REQUESTS, 0, &r).await)
            .await
            .expect("add");
        a.add(&record(topic::RESULTS, 0, &answer(&r, Kind::Error)).await)
            .await
            .expect("add");
        // A byte-for-byte copy of the request: a producer retry, listed but not a problem.
        a.add(&record(topic::REQUESTS, 1, &r).await)
            .await
            .expect("add");
        let report = a.finish();
        assert!(report.clean, "{report:?}");
        assert_eq!(
            report.duplicate_requests,
            [Duplicate {
                id: r.header.message_id.to_string(),
                identical_bytes: true,
                records: vec![at(topic::REQUESTS, 0), at(topic::REQUESTS, 1)],
            }]
        );
        assert_eq!(
            (report.summary.answered, report.summary.error_answers),
            (1, 1)
        );
    }

    #[tokio::test]
    async fn filters_keep_what_may_belong_to_the_tenant() {
        let mine = request("sp1_mine");
        let theirs = seal(OTHER_TENANT, "sp1_theirs", Some(&keys().producer));
        let mut theirs_tampered = framed(&theirs).await;
        tamper(&mut theirs_tampered, &theirs);
        let mut garbage_for_them = inbound(topic::REQUESTS, 3, b"garbage".to_vec());
        garbage_for_them
            .headers
            .push((header::TENANT.to_owned(), OTHER_TENANT.as_bytes().to_vec()));

        let filter = ReplayFilter {
            tenant: Some(TENANT.to_owned()),
            subject: None,
        };
        let mut a = audit(filter.clone());
        for r in [
            record(topic::REQUESTS, 0, &mine).await,
            record(topic::REQUESTS, 1, &theirs).await,
            inbound(topic::REQUESTS, 2, theirs_tampered),
            garbage_for_them,
            // No claim at all: cannot be attributed, so reported to every tenant.
            inbound(topic::REQUESTS, 4, b"garbage".to_vec()),
            record(topic::RESULTS, 0, &answer(&theirs, Kind::Result)).await,
        ] {
            a.add(&r).await.expect("add");
        }
        let report = a.finish();
        assert_eq!(report.filter, filter);
        assert_eq!(
            positions(&report.problems),
            [(
                topic::REQUESTS,
                4,
                ProblemClass::Malformed,
                "wrong_magic_byte"
            )]
        );
        assert_eq!(report.summary.requests, 1);
        assert_eq!(report.summary.answers, 0);
        assert_eq!(
            report.requests_without_results[0].message_id,
            mine.header.message_id.to_string()
        );
        let t = &report.topics[topic::REQUESTS];
        assert_eq!(
            (t.records, t.in_scope, t.verified, t.problems),
            (5, 2, 1, 1)
        );

        let by_subject = ReplayFilter {
            tenant: None,
            subject: Some("sp1_theirs".to_owned()),
        };
        let mut a = audit(by_subject);
        a.add(&record(topic::REQUESTS, 0, &mine).await)
            .await
            .expect("add");
        a.add(&record(topic::REQUESTS, 1, &theirs).await)
            .await
            .expect("add");
        let report = a.finish();
        assert_eq!(report.summary.requests, 1);
        assert_eq!(
            report.requests_without_results[0].subject,
            "sp1_theirs".to_owned()
        );
    }

    #[tokio::test]
    async fn authentic_records_in_the_wrong_place_are_problems() {
        let r = request("sp1_a");
        let mut a = audit(ReplayFilter::default());
        // An answer on the request topic, a request on the result topic.
        a.add(&record(topic::REQUESTS, 0, &answer(&r, Kind::Result)).await)
            .await
            .expect("add");
        a.add(&record(topic::RESULTS, 0, &r).await)
            .await
            .expect("add");
        // Kafka headers that contradict the signed header.
        let mut relabelled = record(topic::REQUESTS, 1, &r).await;
        relabelled
            .headers
            .push((header::SUBJECT.to_owned(), b"sp1_someone_else".to_vec()));
        a.add(&relabelled).await.expect("add");
        // An answer whose subject is not its request's, signed by the fleet.
        let mut crossed = answer(&r, Kind::Result);
        crossed.header.subject = "sp1_someone_else".to_owned();
        sign(&mut crossed, &keys().results);
        a.add(&record(topic::RESULTS, 1, &crossed).await)
            .await
            .expect("add");
        let report = a.finish();
        assert_eq!(
            positions(&report.problems),
            [
                (
                    topic::REQUESTS,
                    0,
                    ProblemClass::UnexpectedKind,
                    "unexpected_kind"
                ),
                (
                    topic::REQUESTS,
                    1,
                    ProblemClass::HeaderMismatch,
                    "header_mismatch"
                ),
                (
                    topic::RESULTS,
                    0,
                    ProblemClass::UnexpectedKind,
                    "unexpected_kind"
                ),
                (
                    topic::RESULTS,
                    1,
                    ProblemClass::ResultMismatch,
                    "result_mismatch"
                ),
            ]
        );
        assert_eq!(
            report.problems[1].detail,
            "The Kafka header zenvelope-subject contradicts the signed envelope header."
        );
        // The relabelled request is still authentic, and it was answered.
        assert_eq!((report.summary.requests, report.summary.answered), (1, 1));
    }

    #[tokio::test]
    async fn dead_letters_account_only_for_the_bytes_they_carry() {
        let r = request("sp1_a");
        let other = request("sp1_b");
        let original = record(topic::REQUESTS, 0, &r).await;
        let mut a = audit(ReplayFilter::default());
        a.add(&original).await.expect("add");
        a.add(&record(topic::REQUESTS, 1, &other).await)
            .await
            .expect("add");
        // Names offset 1 but carries the bytes of offset 0: a forged dead letter.
        let mut forged_original = original.clone();
        forged_original.offset = 1;
        a.add(&dead_letter(0, &forged_original, "bad_signature").await)
            .await
            .expect("add");
        // Value left out (oversized): the position alone accounts for offset 0.
        let mut left_out = original.clone();
        left_out.payload = Vec::new();
        a.add(&dead_letter(1, &left_out, "oversized").await)
            .await
            .expect("add");
        // An original outside the replay: listed, accounts for nothing.
        let mut outside = original.clone();
        outside.offset = 99;
        outside.payload = framed(&request("sp1_z")).await;
        a.add(&dead_letter(2, &outside, "stale").await)
            .await
            .expect("add");
        // Not a dead letter at all.
        a.add(&inbound(topic::DLQ, 3, b"\0\0\0\0\x05junk".to_vec()))
            .await
            .expect("add");
        let report = a.finish();

        assert_eq!(
            positions(&report.problems),
            [
                (
                    topic::DLQ,
                    0,
                    ProblemClass::Tampered,
                    "dead_letter_mismatch"
                ),
                (topic::DLQ, 3, ProblemClass::Malformed, "avro_decode"),
            ]
        );
        assert_eq!(report.summary.dead_lettered, 1);
        assert_eq!(
            report.requests_without_results[0].message_id,
            other.header.message_id.to_string()
        );
        assert_eq!(
            report.dead_letters["oversized"].records[0].accounts_for,
            Some(r.header.message_id.to_string())
        );
        assert_eq!(
            report.dead_letters["bad_signature"].records[0].accounts_for,
            None
        );
        let stale = &report.dead_letters["stale"].records[0];
        assert_eq!(
            (stale.accounts_for.as_ref(), stale.original_offset),
            (None, 99)
        );
        assert!(stale.message_id.is_some());
        let t = &report.topics[topic::DLQ];
        assert_eq!(
            (t.records, t.in_scope, t.verified, t.problems),
            (4, 4, 2, 2)
        );
    }
}
