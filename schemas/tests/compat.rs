//! Backward compatibility: every current schema reads data written with every released
//! snapshot under `schemas/avro/compat/<version>/`. A change that would break readers of
//! existing Kafka data (a new field without a default, a narrowed type, a dropped enum
//! symbol) fails here.

use std::path::{Path, PathBuf};

use apache_avro::Schema;
use zenvelope_schemas::compat::check_backward;
use zenvelope_schemas::{Error, SchemaName};

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("avro")
        .join("compat")
}

/// Every `(version, file, schema text)` under the compat directory.
fn snapshots() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut versions: Vec<_> = std::fs::read_dir(compat_dir())
        .expect("schemas/avro/compat exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    versions.sort();
    for dir in versions {
        let version = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("version dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&file).expect("readable");
            out.push((version.clone(), name, text));
        }
    }
    out
}

fn current(file: &str) -> Option<SchemaName> {
    SchemaName::ALL
        .iter()
        .copied()
        .find(|s| s.file_name() == file)
}

#[test]
fn every_schema_has_a_v1_snapshot() {
    let snaps = snapshots();
    for name in SchemaName::ALL {
        assert!(
            snaps
                .iter()
                .any(|(v, f, _)| v == "v1" && f == name.file_name()),
            "no compat/v1 snapshot of {}",
            name.file_name()
        );
    }
}

#[test]
fn current_schemas_read_data_written_with_every_snapshot() {
    let snaps = snapshots();
    assert!(snaps.len() >= SchemaName::ALL.len());
    for (version, file, text) in snaps {
        let name = current(&file)
            .unwrap_or_else(|| panic!("compat/{version}/{file} is not a current schema"));
        let old = Schema::parse_str(&text).expect("snapshot parses");
        let new = name.parse().expect("current parses");
        if let Err(e) = check_backward(&old, &new) {
            panic!(
                "{} can no longer read data written with compat/{version}/{file}: {e}",
                name.file_name()
            );
        }
    }
}

fn parse(text: &str) -> Schema {
    Schema::parse_str(text).expect("parses")
}

fn dead_letter_with_extra_field(field: &str) -> Schema {
    let text = SchemaName::DeadLetter.avsc();
    let anchor = r#"{"name": "original_topic""#;
    assert!(text.contains(anchor));
    parse(&text.replacen(anchor, &format!("{field},\n    {anchor}"), 1))
}

#[test]
fn the_checker_rejects_a_new_field_without_default() {
    let old = SchemaName::DeadLetter.parse().expect("parses");
    let new = dead_letter_with_extra_field(r#"{"name": "tenant", "type": "string"}"#);
    let err = check_backward(&old, &new).expect_err("a new field without default breaks readers");
    assert!(
        matches!(&err, Error::Incompatible { reason } if reason.contains("tenant")),
        "{err}"
    );
    assert_eq!(err.reason_code(), "incompatible_schema");
}

#[test]
fn the_checker_accepts_a_new_field_with_a_default() {
    let old = SchemaName::DeadLetter.parse().expect("parses");
    let new = dead_letter_with_extra_field(
        r#"{"name": "tenant", "type": ["null", "string"], "default": null}"#,
    );
    check_backward(&old, &new).expect("a new optional field is backward compatible");
}

#[test]
fn the_checker_rejects_a_narrowed_type() {
    let old = SchemaName::DeadLetter.parse().expect("parses");
    let text = SchemaName::DeadLetter.avsc().replace(
        r#"{"name": "original_offset", "type": "long""#,
        r#"{"name": "original_offset", "type": "int""#,
    );
    let new = parse(&text);
    assert_ne!(old.canonical_form(), new.canonical_form());
    assert!(matches!(
        check_backward(&old, &new),
        Err(Error::Incompatible { .. })
    ));
    // The reverse (int widened to long) is allowed by Avro.
    check_backward(&new, &old).expect("int widens to long");
}

#[test]
fn the_checker_rejects_a_dropped_symbol_of_an_enum_without_default() {
    // The envelope's Kind has no default symbol: dropping RECORD strands RECORD data.
    let old = SchemaName::Envelope.parse().expect("parses");
    let text = SchemaName::Envelope.avsc().replace(r#", "RECORD"]"#, "]");
    let new = parse(&text);
    assert_ne!(old.canonical_form(), new.canonical_form());
    assert!(matches!(
        check_backward(&old, &new),
        Err(Error::Incompatible { .. })
    ));
}

#[test]
fn an_enum_default_makes_new_writer_symbols_readable() {
    // Writers on a newer schema add an operation; readers on the current one fall back to
    // UNKNOWN instead of failing.
    let reader = SchemaName::AuditEvent.parse().expect("parses");
    let text = SchemaName::AuditEvent
        .avsc()
        .replace(r#""DISCLOSURE"]"#, r#""DISCLOSURE", "REPLAYED"]"#);
    let writer = parse(&text);
    assert_ne!(reader.canonical_form(), writer.canonical_form());
    check_backward(&writer, &reader).expect("the reader's enum default covers new symbols");
}

#[test]
fn the_checker_rejects_a_renamed_record() {
    let old = SchemaName::DeadLetter.parse().expect("parses");
    let new = parse(
        &SchemaName::DeadLetter
            .avsc()
            .replace(r#""name": "DeadLetter""#, r#""name": "DeadLetters""#),
    );
    assert!(matches!(
        check_backward(&old, &new),
        Err(Error::Incompatible { .. })
    ));
}
