//! `DeadLetter` (`dead-letter.avsc`): a failed message, still sealed, with the reason.

use core::fmt;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// A message that could not be opened, verified or answered. Never holds plaintext:
/// `original_value` is the record value exactly as consumed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct DeadLetter {
    /// Topic the message was consumed from.
    pub original_topic: String,
    /// Partition it was consumed from.
    pub original_partition: i32,
    /// Offset it had there.
    pub original_offset: i64,
    /// Its Kafka key, if it had one.
    #[avro(with, default = "null")]
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    /// Its value, byte for byte as consumed: still sealed.
    #[avro(with)]
    #[serde(with = "apache_avro::serde::bytes")]
    pub original_value: Vec<u8>,
    /// Short, stable, bounded reason code.
    pub reason_code: String,
    /// One sentence explaining the failure; never PHI or key material.
    pub reason_detail: String,
    /// When processing gave up, milliseconds since the Unix epoch.
    #[avro(with = super::logical::timestamp_millis)]
    pub failed_at_ms: i64,
    /// How many times this message has already been redriven.
    #[avro(default = "0")]
    pub redrive_count: i32,
}

impl fmt::Debug for DeadLetter {
    /// Elides the key and value bytes (sealed, but noise in a log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("original_topic", &self.original_topic)
            .field("original_partition", &self.original_partition)
            .field("original_offset", &self.original_offset)
            .field(
                "original_key_len",
                &self.original_key.as_ref().map(Vec::len),
            )
            .field("original_value_len", &self.original_value.len())
            .field("reason_code", &self.reason_code)
            .field("reason_detail", &self.reason_detail)
            .field("failed_at_ms", &self.failed_at_ms)
            .field("redrive_count", &self.redrive_count)
            .finish()
    }
}
