//! Differential test of `zenvelope-envelope`'s hand-written Avro codec against
//! `apache-avro` on `envelope.avsc`: same bytes, and each decodes the other's output to
//! the same envelope.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use zenvelope_envelope::{
    Envelope, Header, Kind, Limits, MessageId, Purpose, Recipient, RecipientType, Signature,
    SignatureAlgorithm,
};
use zenvelope_schemas::{Error, SchemaCodec, SchemaName, Subject, framing};

fn envelope_schema() -> Schema {
    SchemaName::Envelope.parse().expect("envelope.avsc parses")
}

/// 16 random bytes made into a UUIDv7 (version nibble 7, RFC 4122 variant bits 10).
fn message_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(|mut b| {
        b[6] = (b[6] & 0x0f) | 0x70;
        b[8] = (b[8] & 0x3f) | 0x80;
        MessageId::from_bytes(b).expect("a UUIDv7")
    })
}

fn short_text() -> impl Strategy<Value = String> {
    "\\PC{0,20}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn recipient() -> impl Strategy<Value = Recipient> {
    (
        proptest::sample::select(RecipientType::ALL),
        short_text(),
        any::<i32>(),
        bytes(40),
        bytes(100),
    )
        .prop_map(
            |(recipient_type, key_id, key_version, params, wrapped_key)| Recipient {
                recipient_type,
                key_id,
                key_version,
                params,
                wrapped_key,
            },
        )
}

fn signature() -> impl Strategy<Value = Signature> {
    (
        short_text(),
        any::<i32>(),
        proptest::sample::select(SignatureAlgorithm::ALL),
        bytes(100),
    )
        .prop_map(|(key_id, key_version, algorithm, value)| Signature {
            key_id,
            key_version,
            algorithm,
            value,
        })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let header = (
        (
            message_id(),
            short_text(),
            short_text(),
            proptest::sample::select(Kind::ALL),
            proptest::sample::select(Purpose::ALL),
            short_text(),
        ),
        (
            any::<i64>(),
            proptest::option::of(message_id()),
            any::<i32>(),
            any::<[u8; 32]>(),
        ),
    )
        .prop_map(
            |(
                (message_id, tenant, subject, kind, purpose, content_type),
                (created_at_ms, correlation_id, schema_id, key_commitment),
            )| {
                // The codec requires a correlation id on responses.
                let correlation_id = if kind.is_response() {
                    Some(correlation_id.unwrap_or(message_id))
                } else {
                    correlation_id
                };
                Header {
                    version: 1,
                    message_id,
                    tenant,
                    subject,
                    kind,
                    purpose,
                    content_type,
                    created_at_ms,
                    correlation_id,
                    schema_id,
                    key_commitment,
                }
            },
        );
    (
        header,
        proptest::collection::vec(recipient(), 0..4),
        bytes(200),
        proptest::option::of(signature()),
    )
        .prop_map(|(header, recipients, payload, signature)| Envelope {
            header,
            recipients,
            payload,
            signature,
        })
}

fn symbol(index: usize, symbol: &str) -> Value {
    Value::Enum(u32::try_from(index).expect("small"), symbol.to_owned())
}

/// The envelope as `apache-avro` decodes it from `envelope.avsc` (logical types included).
fn to_value(env: &Envelope) -> Value {
    let h = &env.header;
    let header = Value::Record(vec![
        ("version".into(), Value::Int(h.version)),
        (
            "message_id".into(),
            Value::Fixed(16, h.message_id.as_bytes().to_vec()),
        ),
        ("tenant".into(), Value::String(h.tenant.clone())),
        ("subject".into(), Value::String(h.subject.clone())),
        ("kind".into(), symbol(h.kind.index(), h.kind.symbol())),
        (
            "purpose".into(),
            symbol(h.purpose.index(), h.purpose.symbol()),
        ),
        ("content_type".into(), Value::String(h.content_type.clone())),
        (
            "created_at_ms".into(),
            Value::TimestampMillis(h.created_at_ms),
        ),
        (
            "correlation_id".into(),
            match &h.correlation_id {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(id) => Value::Union(1, Box::new(Value::Fixed(16, id.as_bytes().to_vec()))),
            },
        ),
        ("schema_id".into(), Value::Int(h.schema_id)),
        (
            "key_commitment".into(),
            Value::Fixed(32, h.key_commitment.to_vec()),
        ),
    ]);
    let recipients = Value::Array(
        env.recipients
            .iter()
            .map(|r| {
                Value::Record(vec![
                    (
                        "type".into(),
                        symbol(r.recipient_type.index(), r.recipient_type.symbol()),
                    ),
                    ("key_id".into(), Value::String(r.key_id.clone())),
                    ("key_version".into(), Value::Int(r.key_version)),
                    ("params".into(), Value::Bytes(r.params.clone())),
                    ("wrapped_key".into(), Value::Bytes(r.wrapped_key.clone())),
                ])
            })
            .collect(),
    );
    let signature = match &env.signature {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(
            1,
            Box::new(Value::Record(vec![
                ("key_id".into(), Value::String(s.key_id.clone())),
                ("key_version".into(), Value::Int(s.key_version)),
                (
                    "algorithm".into(),
                    symbol(s.algorithm.index(), s.algorithm.symbol()),
                ),
                ("value".into(), Value::Bytes(s.value.clone())),
            ])),
        ),
    };
    Value::Record(vec![
        ("header".into(), header),
        ("recipients".into(), recipients),
        ("payload".into(), Value::Bytes(env.payload.clone())),
        ("signature".into(), signature),
    ])
}

fn avro_write(schema: &Schema, value: &Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .expect("writer")
        .write_value_to_vec(value.clone())
        .expect("apache-avro writes the envelope")
}

fn avro_read(schema: &Schema, bytes: &[u8]) -> Value {
    let mut rest = bytes;
    let value = GenericDatumReader::builder(schema)
        .build()
        .expect("reader")
        .read_value(&mut rest)
        .expect("apache-avro reads the envelope");
    assert!(rest.is_empty(), "{} bytes left unread", rest.len());
    value
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Integration tests have no lib.rs for proptest to store regressions next to.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hand_codec_and_apache_avro_agree(env in envelope()) {
        let schema = envelope_schema();
        let value = to_value(&env);
        let ours = zenvelope_envelope::encode(&env);

        // Same bytes.
        let theirs = avro_write(&schema, &value);
        prop_assert_eq!(&theirs, &ours);
        // apache-avro reads the hand codec's bytes as the same values.
        prop_assert_eq!(avro_read(&schema, &ours), value.clone());
        // The hand codec reads apache-avro's bytes as the same envelope.
        let decoded = zenvelope_envelope::decode(&theirs, &Limits::default()).expect("decode");
        prop_assert_eq!(&decoded, &env);
    }

    #[test]
    fn framed_envelopes_round_trip_offline(env in envelope()) {
        let codec = SchemaCodec::offline().expect("codec");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let framed = rt.block_on(codec.encode_envelope(Subject::RequestsValue, &env)).expect("frame");
        let (id, datum) = framing::unframe(&framed).expect("unframe");
        prop_assert_eq!(id, SchemaName::Envelope.offline_id());
        let plain = zenvelope_envelope::encode(&env);
        prop_assert_eq!(datum, plain.as_slice());
        let back = rt.block_on(codec.decode_envelope(&framed, &Limits::default())).expect("decode");
        prop_assert_eq!(back, env);
    }
}

#[test]
fn the_differential_check_notices_a_difference() {
    // Guard against a vacuous comparison: a changed field changes both encodings.
    let runner_env = envelope()
        .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
        .expect("tree")
        .current();
    let mut other = runner_env.clone();
    other.header.schema_id = other.header.schema_id.wrapping_add(1);
    let schema = envelope_schema();
    assert_ne!(
        avro_write(&schema, &to_value(&other)),
        zenvelope_envelope::encode(&runner_env)
    );
}

#[test]
fn envelope_frames_with_another_schema_id_are_refused() {
    let env = envelope()
        .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
        .expect("tree")
        .current();
    let codec = SchemaCodec::offline().expect("codec");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let framed = framing::frame(
        SchemaName::AuditEvent.offline_id(),
        &zenvelope_envelope::encode(&env),
    );
    let err = rt
        .block_on(codec.decode_envelope(&framed, &Limits::default()))
        .expect_err("not an envelope id");
    assert!(
        matches!(
            err,
            Error::WrongSchema {
                expected: "io.zenvelope.v1.Envelope",
                ..
            }
        ),
        "{err:?}"
    );
    let err = rt
        .block_on(codec.encode_envelope(Subject::AuditValue, &env))
        .expect_err("audit subject");
    assert!(matches!(err, Error::SubjectMismatch { .. }), "{err:?}");
    // A structurally bad envelope datum surfaces the envelope crate's reason code.
    let bad = framing::frame(SchemaName::Envelope.offline_id(), &[0x04]);
    let err = rt
        .block_on(codec.decode_envelope(&bad, &Limits::default()))
        .expect_err("bad datum");
    assert!(matches!(err, Error::Envelope(_)), "{err:?}");
}
