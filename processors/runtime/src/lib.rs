//! The Kafka runtime of zenvelope services, and the only zenvelope crate that knows
//! rdkafka: no rdkafka type appears in its API.
//!
//! - [`load_config`]: typed configuration ([`KafkaConfig`], [`ProcessorConfig`],
//!   [`TelemetryConfig`]) from a TOML file plus `PREFIX__SECTION__FIELD` environment
//!   overrides.
//! - [`run`]: the at-least-once loop of a processor. It consumes with
//!   `enable.auto.offset.store=false`, hands each record to a [`Handler`] (concurrently, up
//!   to `max_in_flight`, which is also the back-pressure bound), produces what the handler
//!   returns with an idempotent `acks=all` producer, and stores a partition's offset only
//!   once every record below it is finished and everything they produced is
//!   acknowledged. Failures go to the DLQ as Confluent-framed `DeadLetter` records with
//!   a reason code ([`reason`]), still sealed. On cancellation it drains in-flight
//!   records, commits and flushes. With [`KafkaConfig::transactional_id`] set and a
//!   broker that supports transactions, outputs, dead letters and consumed offsets are
//!   committed together in Kafka transactions (every
//!   [`ProcessorConfig::transaction_interval_ms`]); an aborted transaction rewinds to
//!   the committed offsets. Without them, or if `init_transactions` fails, the loop is
//!   the same at-least-once loop with an idempotent producer: correctness never depends
//!   on transactions.
//! - [`Producer`], [`Subscriber`], [`ensure_topics`], [`committed_offsets`]: the pieces
//!   other services (SDK, CLI, audit sink, tests) need.
//! - [`install_metrics`]: the Prometheus exporter; the metric names are in [`metric`].
//! - [`EmbeddedBroker`]: librdkafka's in-process mock cluster, for local runs.
//!
//! Nothing here logs, counts or returns record keys, values or header values: only
//! topics, partitions, offsets, lengths and reason codes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use zenvelope_runtime::*;
//!
//! struct Echo;
//! impl Handler for Echo {
//!     async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
//!         Disposition::Produce(vec![Outbound::new("echo", msg.key.clone(), msg.payload.clone())])
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(serde::Deserialize)]
//! struct Config { kafka: KafkaConfig, processor: ProcessorConfig }
//! let config: Config = load_config(None, "ZENVELOPE_ECHO")?;
//! let codec = Arc::new(zenvelope_schemas::SchemaCodec::offline()?);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let summary = run(&config.kafka, &config.processor, codec, Arc::new(Echo), shutdown).await?;
//! println!("{} records processed", summary.processed);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

mod admin;
mod config;
mod embedded;
mod error;
mod message;
mod processor;
mod producer;
mod reader;
pub mod service;
mod subscriber;
mod telemetry;
mod tracker;
mod transactions;

pub use admin::{
    check_broker, committed_offsets, ensure_topics, ensure_topics_replicated, existing_topics,
};
pub use config::{
    DEFAULT_CLIENT_ID, ENV_SEPARATOR, KafkaConfig, PROPERTIES_FIELD, ProcessorConfig,
    TelemetryConfig, load_config, load_config_from_vars,
};
pub use embedded::EmbeddedBroker;
pub use error::{Error, KafkaFailure, error_report};
pub use message::{Disposition, Handler, Inbound, Outbound};
pub use processor::{MAX_BACKOFF_MS, RunSummary, now_ms, reason, run};
pub use producer::Producer;
pub use reader::{
    DEFAULT_IDLE_TIMEOUT, PartitionRange, RangeReader, ReadFrom, ReadProgress, ReadTo,
};
pub use subscriber::Subscriber;
pub use telemetry::{install_metrics, metric};
