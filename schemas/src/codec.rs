//! [`SchemaCodec`]: Confluent-framed encoding and decoding against the offline catalog
//! or, when a registry URL is configured, a Confluent Schema Registry.

use std::sync::Arc;

use apache_avro::Schema;
use zenvelope_envelope::{Envelope, Limits};

use crate::catalog::{OfflineCatalog, SchemaId, SchemaName};
use crate::error::Error;
use crate::framing::{frame, unframe};
use crate::names::Subject;
use crate::records::{Record, read_datum, write_datum};

#[cfg(feature = "registry")]
use crate::registry::RegistryClient;

/// Encodes values into Confluent-framed Avro (`0 | schema id | datum`) and back.
///
/// Offline (no registry configured), ids are the catalog's fixed ids. With a registry,
/// encoding registers the crate's `.avsc` schema under the subject (or finds it already
/// registered) and uses the registry's id; decoding fetches the writer's schema by id and
/// resolves it to the crate's schema. Both lookups are cached by the registry client.
///
/// Sans-io when offline: the `async` methods then complete without awaiting anything.
#[derive(Debug)]
pub struct SchemaCodec {
    catalog: OfflineCatalog,
    #[cfg(feature = "registry")]
    registry: Option<RegistryClient>,
}

/// The writer's schema a schema id stands for.
enum Writer {
    Offline(Arc<Schema>),
    #[cfg(feature = "registry")]
    Registry(Arc<schema_registry_converter::avro_common::AvroSchema>),
}

impl Writer {
    fn schema(&self) -> &Schema {
        match self {
            Writer::Offline(s) => s,
            #[cfg(feature = "registry")]
            Writer::Registry(s) => &s.parsed,
        }
    }
}

impl SchemaCodec {
    /// A codec on the offline catalog.
    pub fn offline() -> Result<Self, Error> {
        Ok(Self {
            catalog: OfflineCatalog::new()?,
            #[cfg(feature = "registry")]
            registry: None,
        })
    }

    /// A codec on a Confluent Schema Registry.
    #[cfg(feature = "registry")]
    pub fn with_registry(client: RegistryClient) -> Result<Self, Error> {
        Ok(Self {
            catalog: OfflineCatalog::new()?,
            registry: Some(client),
        })
    }

    /// The registry at `url` if one is configured, the offline catalog otherwise. A blank
    /// URL counts as not configured (an empty environment variable).
    #[cfg(feature = "registry")]
    pub fn from_registry_url(url: Option<&str>) -> Result<Self, Error> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Self::with_registry(RegistryClient::from_url(url)?),
            None => Self::offline(),
        }
    }

    /// Whether this codec uses the offline catalog's fixed ids.
    pub fn is_offline(&self) -> bool {
        #[cfg(feature = "registry")]
        {
            self.registry.is_none()
        }
        #[cfg(not(feature = "registry"))]
        {
            true
        }
    }

    /// The compiled-in schemas (the reader schemas in both modes).
    pub fn catalog(&self) -> &OfflineCatalog {
        &self.catalog
    }

    /// The schema id values of `subject` are written with.
    pub async fn schema_id(&self, subject: Subject) -> Result<SchemaId, Error> {
        #[cfg(feature = "registry")]
        if let Some(registry) = &self.registry {
            return registry.register(subject).await;
        }
        Ok(self.catalog.id(subject.schema()))
    }

    /// The writer's schema for `id`, which must be a `expected`.
    async fn writer(&self, id: SchemaId, expected: SchemaName) -> Result<Writer, Error> {
        #[cfg(feature = "registry")]
        if let Some(registry) = &self.registry {
            let writer = registry.schema(id).await?;
            let found = writer
                .parsed
                .name()
                .map(|n| n.fullname(None))
                .unwrap_or_else(|| writer.parsed.canonical_form());
            if found != expected.full_name() {
                return Err(Error::WrongSchema {
                    expected: expected.full_name(),
                    found,
                });
            }
            return Ok(Writer::Registry(writer));
        }
        let found = self.catalog.resolve(id)?;
        if found != expected {
            return Err(Error::WrongSchema {
                expected: expected.full_name(),
                found: found.full_name().to_owned(),
            });
        }
        Ok(Writer::Offline(self.catalog.schema(found).clone()))
    }

    /// Encodes `value` as a bare Avro datum for `subject`, returning the schema id to
    /// carry next to it (for a plaintext: the envelope header's `schema_id`).
    pub async fn encode_datum<T: Record>(
        &self,
        subject: Subject,
        value: &T,
    ) -> Result<(SchemaId, Vec<u8>), Error> {
        check_subject(subject, T::SCHEMA)?;
        let id = self.schema_id(subject).await?;
        let datum = write_datum(self.catalog.schema(T::SCHEMA), value)?;
        Ok((id, datum))
    }

    /// Decodes a bare Avro datum written with schema `id`.
    pub async fn decode_datum<T: Record>(&self, id: SchemaId, datum: &[u8]) -> Result<T, Error> {
        let writer = self.writer(id, T::SCHEMA).await?;
        read_datum(writer.schema(), self.catalog.schema(T::SCHEMA), datum)
    }

    /// Encodes `value` as a Confluent-framed Avro message for `subject`.
    pub async fn encode<T: Record>(&self, subject: Subject, value: &T) -> Result<Vec<u8>, Error> {
        let (id, datum) = self.encode_datum(subject, value).await?;
        Ok(frame(id, &datum))
    }

    /// Decodes a Confluent-framed Avro message.
    pub async fn decode<T: Record>(&self, framed: &[u8]) -> Result<T, Error> {
        let (id, datum) = unframe(framed)?;
        self.decode_datum(id, datum).await
    }

    /// Frames an envelope (encoded by `zenvelope-envelope`'s codec) for `subject`.
    pub async fn encode_envelope(
        &self,
        subject: Subject,
        env: &Envelope,
    ) -> Result<Vec<u8>, Error> {
        check_subject(subject, SchemaName::Envelope)?;
        let id = self.schema_id(subject).await?;
        Ok(frame(id, &zenvelope_envelope::encode(env)))
    }

    /// Decodes a framed envelope with `zenvelope-envelope`'s bounded codec, after checking
    /// that the frame's schema is the envelope schema that codec implements.
    pub async fn decode_envelope(&self, framed: &[u8], limits: &Limits) -> Result<Envelope, Error> {
        let (id, datum) = unframe(framed)?;
        let writer = self.writer(id, SchemaName::Envelope).await?;
        // Structural equality (names, fields, types; not docs): exactly what fixes the
        // byte layout the hand-written codec reads.
        if writer.schema() != self.catalog.schema(SchemaName::Envelope).as_ref() {
            return Err(Error::EnvelopeSchemaMismatch(id.get()));
        }
        Ok(zenvelope_envelope::decode(datum, limits)?)
    }
}

fn check_subject(subject: Subject, given: SchemaName) -> Result<(), Error> {
    if subject.schema() == given {
        Ok(())
    } else {
        Err(Error::SubjectMismatch {
            subject: subject.name(),
            carries: subject.schema().full_name(),
            given: given.full_name(),
        })
    }
}
