//! The host publishes the enclave's key directory on `zenvelope.keys`.
//!
//! The host asks the enclave for its entries (`KeysRequest`), reads only each entry's id,
//! version and purpose to key the record, and produces the bytes unchanged. It vouches for
//! nothing: every entry carries an attestation document that readers verify against their
//! pinned root and measurements. Entries are fetched again every `refresh_ms`, so their
//! validity window moves on and a restarted enclave's fresh documents replace the old ones
//! on the compacted topic.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use zenvelope_runtime::{Outbound, Producer};
use zenvelope_schemas::names::topic;
use zenvelope_schemas::{KeyDirectoryEntry, SchemaCodec};

use super::EnclaveClient;

/// How the host keeps the key directory published.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDirectoryConfig {
    /// Publish the enclave's key directory entries on `zenvelope.keys`. Default on.
    #[serde(default = "default_publish")]
    pub publish: bool,
    /// How often to fetch fresh entries from the enclave and publish them again,
    /// milliseconds. Default one hour; keep it well below the enclave's
    /// `key_directory_validity_ms` (seven days by default).
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

impl Default for KeyDirectoryConfig {
    fn default() -> Self {
        Self {
            publish: default_publish(),
            refresh_ms: default_refresh_ms(),
        }
    }
}

fn default_publish() -> bool {
    true
}
fn default_refresh_ms() -> u64 {
    3_600_000
}

/// Longest pause between attempts while the enclave or the broker is not ready.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// Why one round of publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The enclave did not give its entries.
    #[error("The enclave did not send its key directory: {0}")]
    Enclave(#[from] super::ClientError),
    /// An entry from the enclave does not decode as a `KeyDirectoryEntry`.
    #[error("A key directory entry from the enclave does not decode: {0}")]
    Decode(#[from] zenvelope_schemas::Error),
    /// The broker did not take an entry.
    #[error("A key directory entry could not be produced: {0}")]
    Produce(#[from] zenvelope_runtime::Error),
}

/// Fetches the enclave's entries once and produces each on `zenvelope.keys`, keyed by
/// [`KeyDirectoryEntry::topic_key`]. Returns how many were published.
pub async fn publish_once(
    client: &EnclaveClient,
    producer: &Producer,
    codec: &SchemaCodec,
) -> Result<usize, PublishError> {
    let entries = client.keys().await?;
    for bytes in &entries {
        let entry: KeyDirectoryEntry = codec.decode(bytes.as_bytes()).await?;
        producer
            .send(Outbound::new(
                topic::KEYS,
                Some(entry.topic_key().into_bytes()),
                bytes.as_bytes().to_vec(),
            ))
            .await?;
    }
    if entries.is_empty() {
        tracing::warn!(
            "The enclave published no key directory entries; producers that verify the directory cannot seal to it."
        );
    }
    Ok(entries.len())
}

/// Publishes the key directory now (retrying with backoff until it works) and then every
/// `refresh`, until `shutdown`. Give it the same client as the [`super::RequestHandler`]:
/// the enclave serves one host connection at a time.
pub async fn keep_published(
    client: std::sync::Arc<EnclaveClient>,
    producer: Producer,
    codec: std::sync::Arc<SchemaCodec>,
    refresh: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let wait = match publish_once(&client, &producer, &codec).await {
            Ok(count) => {
                tracing::info!(entries = count, "Key directory published.");
                backoff = Duration::from_millis(200);
                refresh
            }
            Err(error) => {
                tracing::warn!(%error, "The key directory could not be published; trying again.");
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
