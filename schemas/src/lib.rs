//! Avro schemas and names (filled in below).
