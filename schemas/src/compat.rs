//! Schema evolution checks. Released schemas are snapshotted under
//! `schemas/avro/compat/<version>/`; a test checks that every current schema can read data
//! written with its snapshot, so a change that would break readers fails CI.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::error::Error;

/// Checks that data written with `old` can always be read with `new` (Avro backward
/// compatibility: new fields need defaults, types may only widen, enums keep their
/// symbols or have a default). "Partially" compatible counts as incompatible: some data
/// would fail to resolve.
pub fn check_backward(old: &Schema, new: &Schema) -> Result<(), Error> {
    match SchemaCompatibility::can_read(old, new) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(Error::Incompatible {
            reason: "only some data written with the old schema resolves to the new one".to_owned(),
        }),
        Err(e) => Err(Error::Incompatible {
            reason: e.to_string(),
        }),
    }
}
