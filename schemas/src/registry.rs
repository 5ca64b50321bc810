//! The Confluent Schema Registry client, through `schema_registry_converter`'s async
//! [`AvroEncoder`] (schema registration and id lookup, cached per subject) and
//! [`AvroDecoder`] (writer schema by id, cached per id). The only module that does I/O;
//! it is compiled with the `registry` feature.
//!
//! Registry endpoints used: `POST /subjects/{subject}/versions` (register, or find the id
//! of an already registered identical schema) and `GET /schemas/ids/{id}`.

use std::sync::Arc;
use std::time::Duration;

use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::avro_common::AvroSchema;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

pub use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::catalog::SchemaId;
use crate::error::Error;
use crate::names::Subject;

/// Timeout for each registry call made by [`RegistryClient::from_url`], in milliseconds.
pub const DEFAULT_REGISTRY_TIMEOUT_MS: u64 = 10_000;

/// A Confluent Schema Registry client with per-subject and per-id caches.
#[derive(Debug)]
pub struct RegistryClient {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl RegistryClient {
    /// A client with fully specified settings (several URLs, authentication, proxy…).
    pub fn new(settings: SrSettings) -> Self {
        Self {
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
        }
    }

    /// A client for the registry at `url` (e.g. `http://localhost:8081`), with
    /// [`DEFAULT_REGISTRY_TIMEOUT_MS`].
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let settings = SrSettings::new_builder(url.to_owned())
            .set_timeout(Duration::from_millis(DEFAULT_REGISTRY_TIMEOUT_MS))
            .build()?;
        Ok(Self::new(settings))
    }

    /// The strategy under which `subject`'s schema is registered, carrying the `.avsc`.
    pub fn strategy(subject: Subject) -> SubjectNameStrategy {
        let schema = subject.schema();
        let supplied = SuppliedSchema::new(
            Some(schema.full_name().to_owned()),
            SchemaType::Avro,
            schema.avsc().to_owned(),
        );
        match subject.topic() {
            Some(topic) => SubjectNameStrategy::TopicNameStrategyWithSchema(
                topic.name().to_owned(),
                false,
                supplied,
            ),
            None => SubjectNameStrategy::RecordNameStrategyWithSchema(supplied),
        }
    }

    /// Registers the crate's schema for `subject` (the registry returns the existing id
    /// when an identical schema is already registered, and refuses one that breaks the
    /// subject's compatibility rule) and returns its id. Cached after the first success.
    pub async fn register(&self, subject: Subject) -> Result<SchemaId, Error> {
        let strategy = Self::strategy(subject);
        let key = strategy.get_subject()?;
        let registered = self.encoder.get_schema_and_id(&key, strategy).await?;
        Ok(SchemaId::new(registered.id))
    }

    /// The schema registered under `id` (the writer's schema of a framed message).
    pub async fn schema(&self, id: SchemaId) -> Result<Arc<AvroSchema>, Error> {
        Ok(self.decoder.get_schema(id.get()).await?)
    }
}
