//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Everything that can go wrong configuring or talking to Kafka.
///
/// Messages name files, environment variables, topics, partitions and librdkafka error
/// codes; never record keys, values or header values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("the configuration file {path} could not be read: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("the configuration file {path} is not valid TOML at line {line}: {message}")]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error (0 if unknown).
        line: usize,
        /// The parser's complaint, without the quoted source line (it could hold a secret).
        message: String,
    },
    /// An environment override has a name that cannot be mapped to a configuration key.
    #[error("the environment variable {var} does not name a configuration key: {reason}")]
    ConfigEnv {
        /// The variable's name.
        var: String,
        /// Why it is not usable.
        reason: &'static str,
    },
    /// The merged configuration does not fit the service's configuration type.
    #[error("the configuration from {origin} is not valid: {message}")]
    ConfigInvalid {
        /// Where the configuration came from (file and environment prefix).
        origin: String,
        /// The deserializer's complaint (unknown field, missing field, wrong type).
        message: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("the configuration value {field} is not valid: {reason}")]
    ConfigValue {
        /// The field, as written in the configuration.
        field: &'static str,
        /// Why it is not valid.
        reason: &'static str,
    },
    /// librdkafka refused the client configuration or could not create the client.
    #[error("the Kafka {client} could not be created: {source}")]
    Client {
        /// Which client: "consumer", "producer" or "admin client".
        client: &'static str,
        /// librdkafka's error.
        #[source]
        source: KafkaFailure,
    },
    /// No broker answered a metadata request in time.
    #[error(
        "no Kafka broker answered at {bootstrap_servers} within {waited_ms} ms (is it running, and is the address right?)"
    )]
    Unreachable {
        /// The addresses tried.
        bootstrap_servers: String,
        /// How long the client waited.
        waited_ms: u64,
    },
    /// A Kafka operation failed.
    #[error("the Kafka operation \"{operation}\" failed: {source}")]
    Kafka {
        /// The operation (subscribe, commit, fetch metadata, ...).
        operation: &'static str,
        /// librdkafka's error.
        #[source]
        source: KafkaFailure,
    },
    /// A record could not be delivered to a topic.
    #[error("a record could not be delivered to topic {topic}: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaFailure,
    },
    /// Topic creation failed for a reason other than the topic already existing.
    #[error("topic {topic} could not be created: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// librdkafka's error code, as text.
        code: String,
    },
    /// The topic does not exist on the broker (or has no partitions).
    #[error("topic {topic} does not exist on the broker")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// A bounded read got neither a record nor an end of partition for too long: the
    /// broker stopped answering, or a partition's leader is unavailable.
    #[error(
        "reading topic {topic} stalled: no record and no end of partition arrived within {waited_ms} ms"
    )]
    ReadStalled {
        /// The topic being read.
        topic: String,
        /// How long the reader waited.
        waited_ms: u64,
    },
    /// A dead-letter record could not be encoded.
    #[error("a dead-letter record could not be encoded: {0}")]
    Schema(#[from] zenvelope_schemas::Error),
    /// The Prometheus exporter could not be installed.
    #[error("the Prometheus metrics exporter could not be installed: {0}")]
    Metrics(String),
}

impl Error {
    /// Whether retrying the same call later may succeed (a broker briefly unreachable,
    /// a full queue, a timeout).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { source, .. } | Error::Produce { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn kafka(operation: &'static str, e: KafkaError) -> Self {
        Error::Kafka {
            operation,
            source: KafkaFailure(Box::new(e)),
        }
    }

    pub(crate) fn client(client: &'static str, e: KafkaError) -> Self {
        Error::Client {
            client,
            source: KafkaFailure(Box::new(e)),
        }
    }

    pub(crate) fn produce(topic: &str, e: KafkaError) -> Self {
        Error::Produce {
            topic: topic.to_owned(),
            source: KafkaFailure(Box::new(e)),
        }
    }
}

/// An opaque librdkafka error, so that no rdkafka type appears in this crate's API.
///
/// Its `Display` is librdkafka's description of the error code and never includes
/// record contents.
pub struct KafkaFailure(Box<KafkaError>);

impl KafkaFailure {
    /// librdkafka's short name for the error code (e.g. `MessageSizeTooLarge`), if the
    /// error has one. Bounded: usable as a metric label.
    pub fn code_name(&self) -> Option<String> {
        self.0.rdkafka_error_code().map(|c| format!("{c:?}"))
    }

    /// Whether the failure is transient (a retry may succeed).
    pub fn is_transient(&self) -> bool {
        is_transient(&self.0)
    }
}

impl fmt::Display for KafkaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for KafkaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for KafkaFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether a Kafka error may go away by itself: the broker or network is having a bad
/// moment. Everything else (message too large, authorisation, invalid record, unknown
/// topic) is permanent for the record concerned.
pub(crate) fn is_transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageTimedOut
                | C::QueueFull
                | C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::Resolve
                | C::OperationTimedOut
                | C::TimedOutQueue
                | C::RequestTimedOut
                | C::NetworkException
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::KafkaStorageError
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::OutOfOrderSequenceNumber
                | C::PurgeQueue
                | C::PurgeInflight
                | C::WaitingForCoordinator
        )
    )
}

/// `error` and its causes for a person to read, each once, joined by `: `. The errors of
/// the zenvelope crates repeat their cause in their own sentence, so printing the chain
/// (`{:#}` with anyhow) would say each cause two or three times.
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        let error = Error::kafka(
            "fetch metadata",
            rdkafka::error::KafkaError::MetadataFetch(
                rdkafka::error::RDKafkaErrorCode::BrokerTransportFailure,
            ),
        );
        let report = error_report(&error);
        assert_eq!(
            report.matches("Broker transport failure").count(),
            1,
            "{report}"
        );
        assert!(
            report.starts_with("the Kafka operation \"fetch metadata\" failed: "),
            "{report}"
        );
        // A cause already in the sentence is not said again.
        let io = Error::ConfigRead {
            path: "/etc/zenvelope.toml".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(
            error_report(&io),
            "the configuration file /etc/zenvelope.toml could not be read: disk on fire"
        );
    }
}
