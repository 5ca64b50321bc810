//! Every record type round-trips through `apache-avro` and the offline Confluent framing,
//! and malformed or mismatched input fails with the right typed error.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use zenvelope_schemas::*;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn uuid() -> impl Strategy<Value = uuid::Uuid> {
    any::<[u8; 16]>().prop_map(uuid::Uuid::from_bytes)
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn analysis_request() -> impl Strategy<Value = AnalysisRequest> {
    let input = prop_oneof![
        (text(), text())
            .prop_map(|(text, media_type)| AnalysisInput::Text(TextInput { text, media_type })),
        (proptest::collection::vec(any::<u8>(), 0..64), text())
            .prop_map(|(data, media_type)| AnalysisInput::Binary(BinaryInput { data, media_type })),
    ];
    let model = (
        opt_text(),
        opt_text(),
        proptest::option::of(0.0f64..2.0),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(
            |(provider, model, temperature, max_output_tokens)| ModelPreferences {
                provider,
                model,
                temperature,
                max_output_tokens,
            },
        );
    let limits = (
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(|(max_latency_ms, max_attempts)| RequestLimits {
            max_latency_ms,
            max_attempts,
        });
    (text(), input, model, limits, opt_text()).prop_map(
        |(instruction, input, model, limits, client_reference)| AnalysisRequest {
            instruction,
            input,
            model,
            limits,
            client_reference,
        },
    )
}

fn analysis_result() -> impl Strategy<Value = AnalysisResult> {
    let usage = proptest::option::of((any::<i64>(), any::<i64>()).prop_map(
        |(input_tokens, output_tokens)| TokenUsage {
            input_tokens,
            output_tokens,
        },
    ));
    (
        text(),
        text(),
        text(),
        usage,
        pick(FinishReason::ALL),
        any::<i64>(),
        opt_text(),
    )
        .prop_map(
            |(output, provider, model, usage, finish_reason, latency_ms, client_reference)| {
                AnalysisResult {
                    output,
                    provider,
                    model,
                    usage,
                    finish_reason,
                    latency_ms,
                    client_reference,
                }
            },
        )
}

fn audit_event() -> impl Strategy<Value = AuditEvent> {
    let ids = (
        uuid(),
        proptest::option::of(uuid()),
        proptest::option::of(uuid()),
    );
    let who = (
        any::<i64>(),
        text(),
        text(),
        text(),
        pick(AuditOperation::ALL),
        pick(Outcome::ALL),
    );
    let extra = (
        opt_text(),
        opt_text(),
        opt_text(),
        proptest::option::of(any::<i32>()),
        opt_text(),
        opt_text(),
    );
    let signature = proptest::option::of(
        (text(), any::<i32>(), pick(KeyAlgorithm::ALL), bytes()).prop_map(
            |(key_id, key_version, algorithm, value)| ReceiptSignature {
                key_id,
                key_version,
                algorithm,
                value,
            },
        ),
    );
    let disclosure = proptest::option::of(
        (text(), text(), pick(PurposeOfUse::ALL), signature).prop_map(
            |(provider, model, purpose, signature)| Disclosure {
                provider,
                model,
                purpose,
                signature,
                tokens: None,
            },
        ),
    );
    (ids, who, extra, disclosure).prop_map(
        |(
            (event_id, message_id, correlation_id),
            (occurred_at_ms, tenant, subject, actor, operation, outcome),
            (reason_code, enclave_measurement, key_id, key_version, request_sha256, result_sha256),
            disclosure,
        )| AuditEvent {
            event_id,
            occurred_at_ms,
            tenant,
            subject,
            operation,
            message_id,
            correlation_id,
            actor,
            outcome,
            reason_code,
            enclave_measurement,
            key_id,
            key_version,
            request_sha256,
            result_sha256,
            disclosure,
        },
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}

fn dead_letter() -> impl Strategy<Value = DeadLetter> {
    (
        (
            text(),
            any::<i32>(),
            any::<i64>(),
            proptest::option::of(bytes()),
            bytes(),
        ),
        (text(), text(), any::<i64>(), any::<i32>()),
    )
        .prop_map(
            |(
                (original_topic, original_partition, original_offset, original_key, original_value),
                (reason_code, reason_detail, failed_at_ms, redrive_count),
            )| DeadLetter {
                original_topic,
                original_partition,
                original_offset,
                original_key,
                original_value,
                reason_code,
                reason_detail,
                failed_at_ms,
                redrive_count,
            },
        )
}

fn key_directory_entry() -> impl Strategy<Value = KeyDirectoryEntry> {
    (
        (
            text(),
            any::<i32>(),
            pick(KeyPurpose::ALL),
            pick(KeyAlgorithm::ALL),
            bytes(),
            text(),
        ),
        (
            any::<i64>(),
            any::<i64>(),
            proptest::option::of(bytes()),
            opt_text(),
            pick(KeyStatus::ALL),
        ),
    )
        .prop_map(
            |(
                (key_id, key_version, purpose, algorithm, public_key_spki_der, fingerprint_sha256),
                (not_before_ms, not_after_ms, attestation_document, enclave_measurement, status),
            )| KeyDirectoryEntry {
                key_id,
                key_version,
                purpose,
                algorithm,
                public_key_spki_der,
                fingerprint_sha256,
                not_before_ms,
                not_after_ms,
                attestation_document,
                enclave_measurement,
                status,
            },
        )
}

/// `apache-avro` alone: serde writer, then generic reader and `from_value`; and the framed
/// offline codec, whose datum must be exactly `apache-avro`'s bytes.
fn assert_round_trips<T: Record + PartialEq + std::fmt::Debug>(value: &T, subject: Subject) {
    let schema = T::SCHEMA.parse().expect("schema");
    let datum = GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer")
        .write_ser_to_vec(value)
        .expect("write");
    let mut rest = datum.as_slice();
    let read = GenericDatumReader::builder(&schema)
        .build()
        .expect("reader")
        .read_value(&mut rest)
        .expect("read");
    assert!(rest.is_empty(), "the datum has {} unread bytes", rest.len());
    let back: T = apache_avro::from_value(&read).expect("from_value");
    assert_eq!(&back, value);

    let codec = SchemaCodec::offline().expect("codec");
    let framed = block_on(codec.encode(subject, value)).expect("encode");
    assert_eq!(framed[0], 0);
    assert_eq!(&framed[1..5], &T::SCHEMA.offline_id().get().to_be_bytes());
    assert_eq!(&framed[5..], datum.as_slice());
    assert_eq!(
        &block_on(codec.decode::<T>(&framed)).expect("decode"),
        value
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Integration tests have no lib.rs for proptest to store regressions next to.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn analysis_requests_round_trip(v in analysis_request()) {
        assert_round_trips(&v, Subject::AnalysisRequest);
    }

    #[test]
    fn analysis_results_round_trip(v in analysis_result()) {
        assert_round_trips(&v, Subject::AnalysisResult);
    }

    #[test]
    fn audit_events_round_trip(v in audit_event()) {
        assert_round_trips(&v, Subject::AuditValue);
    }

    #[test]
    fn dead_letters_round_trip(v in dead_letter()) {
        assert_round_trips(&v, Subject::DlqValue);
    }

    #[test]
    fn key_directory_entries_round_trip(v in key_directory_entry()) {
        assert_round_trips(&v, Subject::KeysValue);
    }
}

fn sample_request() -> AnalysisRequest {
    AnalysisRequest {
        instruction: "Summarise SECRET-PHI-INSTRUCTION.".to_owned(),
        input: AnalysisInput::Text(TextInput::plain(
            "Patient SECRET-PHI-TEXT reports chest pain.",
        )),
        model: ModelPreferences {
            provider: Some("anthropic".to_owned()),
            ..ModelPreferences::default()
        },
        limits: RequestLimits::default(),
        client_reference: Some("entry-17".to_owned()),
    }
}

fn sample_audit() -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::from_u128(0x0193_7f6e_1a2b_7c3d_8e4f_5a6b_7c8d_9e0f),
        occurred_at_ms: 1_763_000_000_000,
        tenant: "clinic-a".to_owned(),
        subject: "sp1_x".to_owned(),
        operation: AuditOperation::Disclosure,
        message_id: None,
        correlation_id: None,
        actor: "enclave-app".to_owned(),
        outcome: Outcome::Success,
        reason_code: None,
        enclave_measurement: Some("ab".repeat(48)),
        key_id: None,
        key_version: None,
        request_sha256: Some("00".repeat(32)),
        result_sha256: None,
        disclosure: Some(Disclosure {
            provider: "openai".to_owned(),
            model: "gpt-x".to_owned(),
            purpose: PurposeOfUse::Treatment,
            signature: Some(ReceiptSignature {
                key_id: "fleet-results".to_owned(),
                key_version: 1,
                algorithm: KeyAlgorithm::EcdsaP256Sha256,
                value: vec![7; 64],
            }),
            tokens: Some(TokenCount {
                input_tokens: 812,
                output_tokens: 95,
            }),
        }),
    }
}

#[test]
fn uuids_are_written_as_hyphenated_strings() {
    let event = sample_audit();
    let codec = SchemaCodec::offline().expect("codec");
    let framed = block_on(codec.encode(Subject::AuditValue, &event)).expect("encode");
    // The first field is a string: its zigzag length 36 is 0x48, then the text.
    assert_eq!(framed[5], 0x48);
    assert_eq!(&framed[6..42], b"01937f6e-1a2b-7c3d-8e4f-5a6b7c8d9e0f");
}

#[test]
fn decoding_as_the_wrong_record_type_fails_typed() {
    let codec = SchemaCodec::offline().expect("codec");
    let framed = block_on(codec.encode(Subject::AuditValue, &sample_audit())).expect("encode");
    let err = block_on(codec.decode::<DeadLetter>(&framed)).expect_err("wrong type");
    assert!(
        matches!(&err, Error::WrongSchema { expected: "io.zenvelope.v1.DeadLetter", found } if found == "io.zenvelope.v1.AuditEvent"),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), "wrong_schema");
}

#[test]
fn unknown_ids_wrong_magic_and_truncation_fail_typed() {
    let codec = SchemaCodec::offline().expect("codec");
    let mut framed = block_on(codec.encode(Subject::AuditValue, &sample_audit())).expect("encode");
    assert!(matches!(
        block_on(codec.decode::<AuditEvent>(&framed[..3])),
        Err(Error::Truncated { len: 3 })
    ));
    framed[4] = 99;
    let err = block_on(codec.decode::<AuditEvent>(&framed)).expect_err("unknown id");
    assert!(matches!(err, Error::UnknownSchemaId(99)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "schema id 99 is not in the offline catalog"
    );
    framed[0] = 0x7b;
    assert!(matches!(
        block_on(codec.decode::<AuditEvent>(&framed)),
        Err(Error::WrongMagicByte(0x7b))
    ));
}

#[test]
fn a_cut_datum_or_trailing_bytes_are_rejected() {
    let codec = SchemaCodec::offline().expect("codec");
    let framed = block_on(codec.encode(Subject::AuditValue, &sample_audit())).expect("encode");
    let cut = &framed[..framed.len() - 3];
    assert!(matches!(
        block_on(codec.decode::<AuditEvent>(cut)),
        Err(Error::Decode {
            schema: "io.zenvelope.v1.AuditEvent"
        })
    ));
    let mut longer = framed.clone();
    longer.extend_from_slice(&[0, 0]);
    assert!(matches!(
        block_on(codec.decode::<AuditEvent>(&longer)),
        Err(Error::TrailingBytes { len: 2, .. })
    ));
}

#[test]
fn errors_never_quote_the_plaintext() {
    let codec = SchemaCodec::offline().expect("codec");
    let framed =
        block_on(codec.encode(Subject::AnalysisRequest, &sample_request())).expect("encode");
    // Corrupt the union index of `input` so decoding fails after reading the instruction.
    let instruction_end = 5 + 1 + sample_request().instruction.len();
    let mut bad = framed.clone();
    bad[instruction_end] = 0x7f;
    let err = block_on(codec.decode::<AnalysisRequest>(&bad)).expect_err("corrupt");
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("SECRET-PHI"), "{shown}");
    assert!(matches!(err, Error::Decode { .. }), "{shown}");
    // Debug of the plaintext types shows sizes, not content.
    let debug = format!("{:?}", sample_request());
    assert!(!debug.contains("SECRET-PHI"), "{debug}");
    assert!(debug.contains("instruction_len"), "{debug}");
}

#[test]
fn encoding_for_a_subject_of_another_type_is_refused() {
    let codec = SchemaCodec::offline().expect("codec");
    let err = block_on(codec.encode(Subject::DlqValue, &sample_audit())).expect_err("mismatch");
    assert!(
        matches!(
            err,
            Error::SubjectMismatch {
                subject: "zenvelope.dlq-value",
                carries: "io.zenvelope.v1.DeadLetter",
                given: "io.zenvelope.v1.AuditEvent"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn plaintext_datums_carry_their_schema_id_separately() {
    let codec = SchemaCodec::offline().expect("codec");
    let (id, datum) =
        block_on(codec.encode_datum(Subject::AnalysisRequest, &sample_request())).expect("encode");
    assert_eq!(id, SchemaName::AnalysisRequest.offline_id());
    // The envelope header stores it as an Avro int.
    let header_field = id.to_header_field().expect("fits");
    let id_again = SchemaId::try_from(header_field).expect("id");
    let back: AnalysisRequest = block_on(codec.decode_datum(id_again, &datum)).expect("decode");
    assert_eq!(back, sample_request());
    assert!(matches!(
        block_on(codec.decode_datum::<AnalysisResult>(id_again, &datum)),
        Err(Error::WrongSchema { .. })
    ));
}

#[test]
fn text_input_media_type_defaults_to_text_plain_for_old_writers() {
    // A writer whose TextInput had no media_type: the reader fills in the default.
    let old = SchemaName::AnalysisRequest.avsc().replace(
        r#"{"name": "media_type", "type": "string", "default": "text/plain", "doc": "Media type of the text, e.g. text/plain, text/markdown, application/fhir+json."}"#,
        "",
    );
    let old = old.replace(
        r#"{"name": "text", "type": "string", "doc": "The text itself."},"#,
        r#"{"name": "text", "type": "string"}"#,
    );
    let old = apache_avro::Schema::parse_str(&old).expect("old schema parses");
    let current = SchemaName::AnalysisRequest.parse().expect("schema");
    assert_ne!(old.canonical_form(), current.canonical_form());
    zenvelope_schemas::compat::check_backward(&old, &current).expect("backward compatible");

    let mut old_record = apache_avro::types::Record::new(&old).expect("record");
    old_record.put("instruction", "Summarise.");
    let apache_avro::Schema::Record(root) = &old else {
        panic!("a record")
    };
    let input_schema = &root.fields[1].schema;
    let apache_avro::Schema::Union(u) = input_schema else {
        panic!("input is a union")
    };
    let mut text = apache_avro::types::Record::new(&u.variants()[0]).expect("text record");
    text.put("text", "hello");
    old_record.put(
        "input",
        apache_avro::types::Value::Union(0, Box::new(text.into())),
    );
    let model_schema = &root.fields[2].schema;
    let mut model = apache_avro::types::Record::new(model_schema).expect("model record");
    for f in ["provider", "model", "temperature", "max_output_tokens"] {
        model.put(
            f,
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        );
    }
    old_record.put("model", model);
    let mut limits =
        apache_avro::types::Record::new(&root.fields[3].schema).expect("limits record");
    for f in ["max_latency_ms", "max_attempts"] {
        limits.put(
            f,
            apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        );
    }
    old_record.put("limits", limits);
    old_record.put(
        "client_reference",
        apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
    );
    let datum = GenericDatumWriter::builder(&old)
        .build()
        .expect("writer")
        .write_value_to_vec(old_record)
        .expect("write");

    let mut rest = datum.as_slice();
    let value = GenericDatumReader::builder(&old)
        .reader_schema(&current)
        .build()
        .expect("reader")
        .read_value(&mut rest)
        .expect("resolve");
    let back: AnalysisRequest = apache_avro::from_value(&value).expect("from_value");
    assert_eq!(back.input, AnalysisInput::Text(TextInput::plain("hello")));
    assert_eq!(back.input.media_type(), "text/plain");
}

#[test]
fn envelope_purposes_map_to_audit_purposes_by_symbol() {
    for p in zenvelope_envelope::Purpose::ALL {
        let mapped = PurposeOfUse::from(*p);
        assert_ne!(mapped, PurposeOfUse::Unknown, "{p}");
        assert_eq!(mapped.symbol(), p.symbol());
    }
    assert_eq!(PurposeOfUse::default(), PurposeOfUse::Unknown);
}
