//! `UsageCounter` (`usage-counter.avsc`) and `Rejection` (`rejection.avsc`): the admission
//! processor's metering partials and its notices to clients. Counts, ids and codes only.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// One partial usage counter on `zenvelope.usage`, keyed `tenant/period/source/partition`
/// (see [`UsageCounter::key`]). Each key has one writer; readers sum the partials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct UsageCounter {
    /// Tenant id.
    pub tenant: String,
    /// Metering period: `YYYY-MM-DD` (daily tiers) or `YYYY-MM` (monthly ones), UTC.
    pub period: String,
    /// What counted: `admission` or `results`.
    pub source: String,
    /// The input partition this partial counts.
    pub input_partition: i32,
    /// The last input offset counted.
    pub applied_offset: i64,
    /// Admission partials: the offset of the last request admitted (-1: none).
    #[avro(default = "-1")]
    pub last_admitted_offset: i64,
    /// Admission partials: the message ids (16 bytes each, oldest first) of the last
    /// [`UsageCounter::RECENT_IDS`] requests admitted.
    #[avro(with, default = "\"\"")]
    #[serde(with = "apache_avro::serde::bytes")]
    pub recent_message_ids: Vec<u8>,
    /// Requests admitted.
    #[avro(default = "0")]
    pub requests: i64,
    /// Sealed bytes of the requests admitted.
    #[avro(default = "0")]
    pub request_bytes: i64,
    /// Requests refused because the tier quota was used up.
    #[avro(default = "0")]
    pub quota_rejected: i64,
    /// RESULT answers published.
    #[avro(default = "0")]
    pub results: i64,
    /// ERROR answers published.
    #[avro(default = "0")]
    pub errors: i64,
    /// Sealed bytes of the answers published.
    #[avro(default = "0")]
    pub result_bytes: i64,
    /// Model input tokens.
    #[avro(default = "0")]
    pub input_tokens: i64,
    /// Model output tokens.
    #[avro(default = "0")]
    pub output_tokens: i64,
    /// When this partial was last written, milliseconds since the Unix epoch.
    #[avro(with = super::logical::timestamp_millis)]
    pub updated_at_ms: i64,
}

impl UsageCounter {
    /// How many recent message ids an admission partial remembers.
    pub const RECENT_IDS: usize = 256;

    /// Whether `id` is among the recently admitted message ids.
    pub fn admitted_recently(&self, id: &[u8; 16]) -> bool {
        self.recent_message_ids.chunks_exact(16).any(|c| c == id)
    }

    /// Remembers `id` as admitted, forgetting the oldest beyond [`Self::RECENT_IDS`].
    pub fn remember(&mut self, id: &[u8; 16]) {
        self.recent_message_ids.extend_from_slice(id);
        let excess = self
            .recent_message_ids
            .len()
            .saturating_sub(16 * Self::RECENT_IDS);
        self.recent_message_ids.drain(..excess);
    }

    /// The record key of a partial: `tenant/period/source/partition`.
    pub fn key(tenant: &str, period: &str, source: &str, partition: i32) -> String {
        format!("{tenant}/{period}/{source}/{partition}")
    }

    /// Adds `other`'s counts to this one (ids and offsets are left alone).
    pub fn add(&mut self, other: &UsageCounter) {
        self.requests += other.requests;
        self.request_bytes += other.request_bytes;
        self.quota_rejected += other.quota_rejected;
        self.results += other.results;
        self.errors += other.errors;
        self.result_bytes += other.result_bytes;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.updated_at_ms = self.updated_at_ms.max(other.updated_at_ms);
    }
}

/// A refused request, told to the client on `zenvelope.rejections`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct Rejection {
    /// The refused envelope's message id, when it could be read.
    #[avro(with, default = "null")]
    #[serde(with = "super::logical::uuid_string_opt")]
    pub message_id: Option<uuid::Uuid>,
    /// The tenant the envelope names, when it could be read.
    #[avro(default = "null")]
    pub tenant: Option<String>,
    /// The subject pseudonym the envelope names, when it could be read.
    #[avro(default = "null")]
    pub subject: Option<String>,
    /// Short, stable reason code (the dead letter's).
    pub reason_code: String,
    /// One sentence for the client; never PHI.
    pub reason_detail: String,
    /// For `quota_exceeded`: milliseconds until the quota period ends.
    #[avro(default = "null")]
    pub retry_after_ms: Option<i64>,
    /// When it was refused, milliseconds since the Unix epoch.
    #[avro(with = super::logical::timestamp_millis)]
    pub rejected_at_ms: i64,
}
