//! Topic administration and offset inspection.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::Error;

/// How long metadata and committed-offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the topics that do not exist yet, with the given partition counts and
/// replication factor 1 (development brokers). Existing topics are left alone, whatever
/// their partition count.
pub async fn ensure_topics(kafka: &KafkaConfig, topics: &[(&str, i32)]) -> Result<(), Error> {
    ensure_topics_replicated(kafka, topics, 1).await
}

/// [`ensure_topics`] with an explicit replication factor (3 on MSK).
pub async fn ensure_topics_replicated(
    kafka: &KafkaConfig,
    topics: &[(&str, i32)],
    replication_factor: i32,
) -> Result<(), Error> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config()
        .create()
        .map_err(|e| Error::client("admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            let topic = NewTopic::new(
                name,
                *partitions,
                TopicReplication::Fixed(replication_factor),
            );
            // The key directory and the vault keep the newest record per key.
            if zenvelope_schemas::Topic::from_name(name).is_some_and(|t| t.is_compacted()) {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| Error::kafka("create topics", e))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "Topic created."),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "Topic already exists.");
            }
            Err((topic, code)) => {
                return Err(Error::CreateTopic {
                    topic,
                    code: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that a broker at `kafka.bootstrap_servers` answers a metadata request within
/// `timeout`: a quick, clear failure before anything that would wait longer.
pub async fn check_broker(kafka: &KafkaConfig, timeout: Duration) -> Result<(), Error> {
    let config = kafka.client_config();
    let servers = kafka.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(|e| Error::client("consumer", e))?;
        consumer
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|_| Error::Unreachable {
                bootstrap_servers: servers,
                waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
    })
    .await
    .map_err(|_| Error::kafka("check broker", KafkaError::Canceled))?
}

/// Which of `topics` exist on the cluster, in the order given. Blocks the calling
/// thread for at most `timeout` per topic (a metadata request each; none is created).
///
/// For clients that follow an optional topic: the SDK reads `zenvelope.rejections` only
/// where admission runs.
pub fn existing_topics(
    kafka: &KafkaConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<String>, Error> {
    let mut config = kafka.client_config();
    config.set("allow.auto.create.topics", "false");
    let consumer: BaseConsumer = config.create().map_err(|e| Error::client("consumer", e))?;
    let mut found = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| Error::kafka("fetch metadata", e))?;
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == *topic && t.error().is_none() && !t.partitions().is_empty())
        {
            found.push((*topic).to_owned());
        }
    }
    Ok(found)
}

/// The offsets `group_id` has committed on each partition of `topic` (the next offset it
/// will consume; `None` where it has committed nothing). Does not join the group.
///
/// For operators and tests: how far a processor has got.
pub async fn committed_offsets(
    kafka: &KafkaConfig,
    group_id: &str,
    topic: &str,
) -> Result<BTreeMap<i32, Option<i64>>, Error> {
    let mut config = kafka.client_config();
    config.set("group.id", group_id);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(|e| Error::client("consumer", e))?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka("fetch metadata", e))?;
        let mut tpl = TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
        let committed = consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka("fetch committed offsets", e))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition(), offset)
            })
            .collect())
    })
    .await
    .map_err(|_| {
        Error::kafka(
            "fetch committed offsets",
            rdkafka::error::KafkaError::Canceled,
        )
    })?
}
