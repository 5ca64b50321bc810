//! [`EmbeddedBroker`]: librdkafka's in-process mock cluster, for local runs with nothing
//! installed (`zenvelope demo`). It speaks the real Kafka protocol on a loopback port, so
//! every client (and any other librdkafka program) talks to it as to a broker.
//!
//! Not for production, and not a full broker: it keeps records in memory only, does not
//! implement `CreateTopics` (topics are created here, up front), and its transactional
//! offset commits are not stored (see `tests/transactions.rs`).

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::config::KafkaConfig;
use crate::error::Error;

/// An in-process, in-memory Kafka-protocol broker on a loopback port. Stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with `topics` (name, partitions).
    pub fn start(topics: &[(&str, i32)]) -> Result<Self, Error> {
        let cluster = MockCluster::new(1).map_err(|e| Error::client("embedded broker", e))?;
        for (name, partitions) in topics {
            cluster
                .create_topic(name, *partitions, 1)
                .map_err(|e| Error::kafka("create topic", e))?;
        }
        Ok(Self { cluster })
    }

    /// The `host:port` list clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// A client configuration for this broker.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig::new(self.bootstrap_servers())
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}
