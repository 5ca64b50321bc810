//! Schemas for fields whose Avro type is a logical type, for `#[avro(with = ..)]`.

use std::collections::{BTreeMap, HashSet};

use apache_avro::AvroSchemaComponent;
use apache_avro::Schema;
use apache_avro::schema::{EnumSchema, Name, NamespaceRef, RecordField, UuidSchema};
use serde::{Deserialize, Deserializer, Serializer};

/// `{"type": "long", "logicalType": "timestamp-millis"}`, for `i64` milliseconds.
pub(crate) fn timestamp_millis(_: &mut HashSet<Name>, _: NamespaceRef<'_>) -> Schema {
    Schema::TimestampMillis
}

/// Stands for `{"type": "string", "logicalType": "uuid"}` so that `Option<UuidString>`
/// yields the nullable union through `apache-avro`'s own `Option` implementation.
pub(crate) struct UuidString;

impl AvroSchemaComponent for UuidString {
    fn get_schema_in_ctxt(_: &mut HashSet<Name>, _: NamespaceRef<'_>) -> Schema {
        Schema::Uuid(UuidSchema::String)
    }

    fn get_record_fields_in_ctxt(
        _: &mut HashSet<Name>,
        _: NamespaceRef<'_>,
    ) -> Option<Vec<RecordField>> {
        None
    }
}

/// A `uuid::Uuid` as an Avro `uuid` string (hyphenated, lowercase), for `#[serde(with)]`.
pub(crate) mod uuid_string {
    use super::*;

    pub(crate) fn get_schema_in_ctxt(names: &mut HashSet<Name>, ns: NamespaceRef<'_>) -> Schema {
        UuidString::get_schema_in_ctxt(names, ns)
    }

    pub(crate) fn serialize<S: Serializer>(id: &uuid::Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<uuid::Uuid, D::Error> {
        let text = String::deserialize(d)?;
        uuid::Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// An optional `uuid::Uuid` as `["null", uuid string]`, for `#[serde(with)]`.
pub(crate) mod uuid_string_opt {
    use super::*;

    pub(crate) fn get_schema_in_ctxt(names: &mut HashSet<Name>, ns: NamespaceRef<'_>) -> Schema {
        <Option<UuidString>>::get_schema_in_ctxt(names, ns)
    }

    pub(crate) fn serialize<S: Serializer>(
        id: &Option<uuid::Uuid>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<uuid::Uuid>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| uuid::Uuid::parse_str(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The schema of a named Avro enum, or a reference to it when already defined.
pub(crate) fn named_enum(
    named_schemas: &mut HashSet<Name>,
    full_name: &str,
    symbols: &[&str],
    default: &str,
) -> Schema {
    let Ok(name) = Name::new(full_name) else {
        // Unreachable: every caller passes a literal, valid full name, and the schema
        // equality tests compare the result with the `.avsc` files.
        return Schema::Null;
    };
    if named_schemas.contains(&name) {
        return Schema::Ref { name };
    }
    named_schemas.insert(name.clone());
    Schema::Enum(EnumSchema {
        name,
        aliases: None,
        doc: None,
        symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
        default: Some(default.to_owned()),
        attributes: BTreeMap::new(),
    })
}

/// Declares a closed Avro enum with a default symbol: the Rust enum, its serde mapping
/// by symbol, `ALL`/`symbol`/`from_symbol`, `Default`, `Display` and its Avro schema.
/// (The `AvroSchema` derive rejects doc comments on unit variants.)
macro_rules! avro_enum {
    (
        $(#[$meta:meta])*
        $name:ident = $avro_name:literal, default $default:ident {
            $($(#[$vmeta:meta])* $variant:ident = $symbol:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $symbol)] $variant,)+
        }

        impl $name {
            /// Every value, in Avro symbol order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The Avro enum symbol.
            pub const fn symbol(self) -> &'static str {
                match self { $($name::$variant => $symbol,)+ }
            }

            /// Looks a value up by its Avro symbol.
            pub fn from_symbol(symbol: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.symbol() == symbol)
            }
        }

        impl Default for $name {
            /// The Avro enum's default symbol, which readers use for symbols they do not know.
            fn default() -> Self {
                $name::$default
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.symbol())
            }
        }

        impl apache_avro::AvroSchemaComponent for $name {
            fn get_schema_in_ctxt(
                named_schemas: &mut std::collections::HashSet<apache_avro::schema::Name>,
                _: apache_avro::schema::NamespaceRef<'_>,
            ) -> apache_avro::Schema {
                $crate::records::logical::named_enum(
                    named_schemas,
                    full_name!($avro_name),
                    &[$($symbol,)+],
                    $name::$default.symbol(),
                )
            }

            fn get_record_fields_in_ctxt(
                _: &mut std::collections::HashSet<apache_avro::schema::Name>,
                _: apache_avro::schema::NamespaceRef<'_>,
            ) -> Option<Vec<apache_avro::schema::RecordField>> {
                None
            }
        }
    };
}
pub(crate) use avro_enum;

/// Hashes `bytes` with a big-endian u32 length prefix (digests that bind several fields).
pub(crate) fn put_u32_bytes(h: &mut sha2::Sha256, bytes: &[u8]) {
    use sha2::Digest as _;
    // Fields are bounded far below 4 GiB by the message limits; saturate rather than wrap.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(bytes);
}

/// Hashes an Avro enum symbol with a one-byte length prefix.
pub(crate) fn put_symbol(h: &mut sha2::Sha256, symbol: &str) {
    use sha2::Digest as _;
    // Avro symbols are short ASCII names.
    let len = u8::try_from(symbol.len()).unwrap_or(u8::MAX);
    h.update([len]);
    h.update(symbol.as_bytes());
}
