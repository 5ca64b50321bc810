//! The Rust types' derived Avro schemas equal the `.avsc` files, which follow the house
//! rules (a doc on every field, nullable fields default to null, enums have a default).

use apache_avro::Schema;
use serde_json::Value;
use zenvelope_schemas::*;

/// Removes every `doc` attribute: the Rust doc comments need not repeat the files' text.
fn without_docs(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("doc");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn assert_derived_equals_file<T: Record>() {
    let derived = T::get_schema();
    let file = T::SCHEMA.parse().expect("the .avsc parses");
    // The spec's comparison: Parsing Canonical Form (names, types, fields, symbols).
    assert_eq!(
        derived.canonical_form(),
        file.canonical_form(),
        "{}: canonical forms differ",
        T::SCHEMA
    );
    // Stricter: also defaults, logical types, enum defaults and namespaces.
    let derived_json = without_docs(serde_json::to_value(&derived).expect("json"));
    let file_json = without_docs(serde_json::to_value(&file).expect("json"));
    assert_eq!(
        derived_json,
        file_json,
        "{}: schemas differ beyond their docs\nderived: {derived_json:#}\nfile:    {file_json:#}",
        T::SCHEMA
    );
}

#[test]
fn analysis_request_schema_equals_its_avsc() {
    assert_derived_equals_file::<AnalysisRequest>();
}

#[test]
fn analysis_result_schema_equals_its_avsc() {
    assert_derived_equals_file::<AnalysisResult>();
}

#[test]
fn audit_event_schema_equals_its_avsc() {
    assert_derived_equals_file::<AuditEvent>();
}

#[test]
fn dead_letter_schema_equals_its_avsc() {
    assert_derived_equals_file::<DeadLetter>();
}

#[test]
fn key_directory_entry_schema_equals_its_avsc() {
    assert_derived_equals_file::<KeyDirectoryEntry>();
}

#[test]
fn the_comparison_notices_a_changed_default() {
    // The stricter comparison must see what canonical forms ignore.
    let file = SchemaName::DeadLetter.avsc();
    let changed = file.replace(r#""default": 0"#, r#""default": 1"#);
    assert_ne!(file, changed);
    let a = Schema::parse_str(file).expect("parse");
    let b = Schema::parse_str(&changed).expect("parse");
    assert_eq!(a.canonical_form(), b.canonical_form());
    assert_ne!(
        without_docs(serde_json::to_value(&a).expect("json")),
        without_docs(serde_json::to_value(&b).expect("json"))
    );
}

/// A record field or an enum found in a schema's JSON text, with its path.
enum Node<'a> {
    Field(String, &'a serde_json::Map<String, Value>),
    Enum(String, &'a serde_json::Map<String, Value>),
}

/// Collects every record field and enum in a schema's JSON text.
fn walk<'a>(v: &'a Value, path: &str, out: &mut Vec<Node<'a>>) {
    match v {
        Value::Object(map) => match map.get("type").and_then(Value::as_str) {
            Some("record") => {
                let name = map.get("name").and_then(Value::as_str).unwrap_or("?");
                for f in map
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = f.as_object().expect("field object");
                    let fname = f.get("name").and_then(Value::as_str).unwrap_or("?");
                    let p = format!("{path}{name}.{fname}");
                    out.push(Node::Field(p.clone(), f));
                    if let Some(t) = f.get("type") {
                        walk(t, &format!("{p}/"), out);
                    }
                }
            }
            Some("enum") => {
                let name = map.get("name").and_then(Value::as_str).unwrap_or("?");
                out.push(Node::Enum(format!("{path}{name}"), map));
            }
            _ => map.values().for_each(|t| walk(t, path, out)),
        },
        Value::Array(items) => items.iter().for_each(|t| walk(t, path, out)),
        _ => {}
    }
}

#[test]
fn new_schemas_document_every_field_default_nullable_fields_and_default_enums() {
    for name in SchemaName::ALL {
        if *name == SchemaName::Envelope {
            continue; // Fixed source of truth, owned by the envelope crate.
        }
        let json: Value = serde_json::from_str(name.avsc()).expect("json");
        assert_eq!(json["namespace"], NAMESPACE, "{name}");
        assert!(json["doc"].is_string(), "{name} has no doc");
        let mut nodes = Vec::new();
        walk(&json, "", &mut nodes);
        let mut fields = 0;
        let mut problems = Vec::new();
        for node in &nodes {
            match node {
                Node::Field(path, f) => {
                    fields += 1;
                    if !f.get("doc").is_some_and(Value::is_string) {
                        problems.push(format!("{path}: no doc"));
                    }
                    let nullable = f
                        .get("type")
                        .and_then(Value::as_array)
                        .is_some_and(|u| u.first() == Some(&Value::from("null")));
                    if nullable && f.get("default") != Some(&Value::Null) {
                        problems.push(format!("{path}: nullable without a null default"));
                    }
                }
                Node::Enum(path, e) => {
                    if !e.get("default").is_some_and(Value::is_string) {
                        problems.push(format!("{path}: enum without a default symbol"));
                    }
                }
            }
        }
        assert!(fields >= 5, "{name}: walked only {fields} fields");
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}

#[test]
fn the_house_rules_check_finds_an_undocumented_field() {
    let json: Value = serde_json::from_str(
        r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "string"]}]}"#,
    )
    .expect("json");
    let mut nodes = Vec::new();
    walk(&json, "", &mut nodes);
    assert!(
        matches!(nodes.as_slice(), [Node::Field(p, f)] if p == "R.a" && f.get("doc").is_none())
    );
}
