//! A plain consumer for subscribers, replay and tests.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::Error;
use crate::message::Inbound;
use crate::processor::to_inbound;

/// How long the metadata request of a from-the-beginning subscriber may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain consumer: [`Subscriber::recv`] returns records one by one; nothing is stored
/// or committed until [`Subscriber::commit`], which commits everything received so far.
pub struct Subscriber {
    consumer: StreamConsumer,
}

impl Subscriber {
    /// Creates the consumer.
    ///
    /// With `from_beginning`, every partition of `topics` is assigned directly (no group
    /// membership, no rebalancing) and read from its first offset, whatever the group
    /// has committed: replay. This fetches topic metadata, blocking the calling thread
    /// for up to ten seconds; a topic that does not exist is an error. Otherwise the
    /// consumer joins `group_id` and resumes from the group's committed offsets (the
    /// earliest offset where there are none).
    pub fn new(
        kafka: &KafkaConfig,
        group_id: &str,
        topics: &[&str],
        from_beginning: bool,
    ) -> Result<Self, Error> {
        let mut config = kafka.client_config();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer = config.create().map_err(|e| Error::client("consumer", e))?;
        if from_beginning {
            let mut tpl = TopicPartitionList::new();
            for topic in topics {
                let metadata = consumer
                    .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                    .map_err(|e| Error::kafka("fetch metadata", e))?;
                for t in metadata.topics() {
                    if let Some(code) = t.error() {
                        return Err(Error::kafka(
                            "fetch metadata",
                            KafkaError::MetadataFetch(RDKafkaErrorCode::from(code)),
                        ));
                    }
                    for p in t.partitions() {
                        tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                            .map_err(|e| Error::kafka("assign", e))?;
                    }
                }
            }
            consumer
                .assign(&tpl)
                .map_err(|e| Error::kafka("assign", e))?;
        } else {
            consumer
                .subscribe(topics)
                .map_err(|e| Error::kafka("subscribe", e))?;
        }
        Ok(Self { consumer })
    }

    /// The next record.
    pub async fn recv(&self) -> Result<Inbound, Error> {
        self.consumer
            .recv()
            .await
            .map(|m| to_inbound(&m))
            .map_err(|e| Error::kafka("consume", e))
    }

    /// Commits the position after every record received so far, synchronously.
    /// Committing with nothing new to commit is not an error.
    pub fn commit(&self) -> Result<(), Error> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(Error::kafka("commit", e)),
        }
    }
}
