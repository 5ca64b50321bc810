//! The registry path against a small in-process Confluent Schema Registry: the endpoints
//! `schema_registry_converter` calls (`POST /subjects/{subject}/versions`,
//! `GET /schemas/ids/{id}`), over real HTTP on loopback.
#![cfg(feature = "registry")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zenvelope_envelope::{Envelope, Header, Kind, Limits, MessageId, Purpose};
use zenvelope_schemas::registry::{RegistryClient, SrSettings};
use zenvelope_schemas::*;

/// The registry's state: schemas by global id (identical schema text, one id, as the
/// Confluent registry does) and every request seen.
#[derive(Default)]
struct State {
    next_id: u32,
    schemas: HashMap<u32, String>,
    versions: HashMap<String, Vec<u32>>,
    requests: Vec<(String, String, String)>,
}

struct MiniRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl MiniRegistry {
    async fn start(first_id: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            next_id: first_id,
            ..State::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self) -> RegistryClient {
        let settings = SrSettings::new_builder(self.url())
            .no_proxy()
            .build()
            .expect("settings");
        RegistryClient::new(settings)
    }

    /// Stores a schema under a chosen id, as if another producer had registered it.
    fn seed(&self, id: u32, schema: &str) {
        self.state
            .lock()
            .expect("state")
            .schemas
            .insert(id, schema.to_owned());
    }

    fn requests(&self) -> Vec<(String, String, String)> {
        self.state.lock().expect("state").requests.clone()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let content_length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < header_end + content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + content_length]).into_owned();
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let (status, reply) = route(&state, &method, &target, &body);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn route(state: &Mutex<State>, method: &str, target: &str, body: &str) -> (&'static str, String) {
    let mut s = state.lock().expect("state");
    s.requests
        .push((method.to_owned(), target.to_owned(), body.to_owned()));
    let not_found = || {
        (
            "404 Not Found",
            r#"{"error_code":40403,"message":"Schema not found"}"#.to_owned(),
        )
    };
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => {
            let request: serde_json::Value = match serde_json::from_str(body) {
                Ok(v) => v,
                Err(_) => {
                    return (
                        "422 Unprocessable Entity",
                        r#"{"error_code":42201,"message":"Invalid schema"}"#.to_owned(),
                    );
                }
            };
            let Some(schema) = request["schema"].as_str() else {
                return (
                    "422 Unprocessable Entity",
                    r#"{"error_code":42201,"message":"Invalid schema"}"#.to_owned(),
                );
            };
            let existing = s
                .schemas
                .iter()
                .find(|(_, v)| *v == schema)
                .map(|(k, _)| *k);
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = s.next_id;
                    s.next_id += 1;
                    s.schemas.insert(id, schema.to_owned());
                    id
                }
            };
            s.versions
                .entry((*subject).to_owned())
                .or_default()
                .push(id);
            ("200 OK", serde_json::json!({ "id": id }).to_string())
        }
        ("GET", ["schemas", "ids", id]) => {
            match id.parse::<u32>().ok().and_then(|id| s.schemas.get(&id)) {
                Some(schema) => (
                    "200 OK",
                    serde_json::json!({ "schema": schema }).to_string(),
                ),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn dead_letter() -> DeadLetter {
    DeadLetter {
        original_topic: names::topic::REQUESTS.to_owned(),
        original_partition: 2,
        original_offset: 1234,
        original_key: Some(b"sp1_x".to_vec()),
        original_value: vec![0, 0, 0, 0, 1, 2, 3],
        reason_code: "untrusted_signer".to_owned(),
        reason_detail: "The envelope is signed by a key that is not trusted.".to_owned(),
        failed_at_ms: 1_763_000_000_000,
        redrive_count: 3,
    }
}

fn envelope() -> Envelope {
    Envelope {
        header: Header {
            version: 1,
            message_id: "01937f6e-1a2b-7c3d-8e4f-5a6b7c8d9e0f"
                .parse::<MessageId>()
                .expect("id"),
            tenant: "clinic-a".into(),
            subject: "sp1_x".into(),
            kind: Kind::Request,
            purpose: Purpose::Treatment,
            content_type: names::media_type::ANALYSIS_REQUEST.into(),
            created_at_ms: 1_763_000_000_000,
            correlation_id: None,
            schema_id: 2,
            key_commitment: [9; 32],
        },
        recipients: vec![],
        payload: vec![1, 2, 3],
        signature: None,
    }
}

#[tokio::test]
async fn encode_registers_the_schema_and_frames_with_the_registry_id() {
    let registry = MiniRegistry::start(41).await;
    let codec = SchemaCodec::with_registry(registry.client()).expect("codec");
    assert!(!codec.is_offline());

    let framed = codec
        .encode(Subject::DlqValue, &dead_letter())
        .await
        .expect("encode");
    assert_eq!(framed[0], framing::MAGIC_BYTE);
    assert_eq!(
        &framed[1..5],
        &41u32.to_be_bytes(),
        "the id the registry returned"
    );
    // Same datum as offline; only the id differs.
    let offline = SchemaCodec::offline().expect("offline");
    let offline_framed = offline
        .encode(Subject::DlqValue, &dead_letter())
        .await
        .expect("encode");
    assert_eq!(&framed[5..], &offline_framed[5..]);

    let requests = registry.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (method, target, body) = &requests[0];
    assert_eq!(method, "POST");
    assert_eq!(target, "/subjects/zenvelope.dlq-value/versions");
    let body: serde_json::Value = serde_json::from_str(body).expect("json body");
    assert_eq!(body["schema"], SchemaName::DeadLetter.avsc());
    assert_eq!(body["schemaType"], "AVRO");

    // Decoding fetches the writer's schema by id.
    let back: DeadLetter = codec.decode(&framed).await.expect("decode");
    assert_eq!(back, dead_letter());
    assert!(
        registry
            .requests()
            .iter()
            .any(|(m, t, _)| m == "GET" && t.starts_with("/schemas/ids/41")),
        "{:?}",
        registry.requests()
    );

    // Both lookups are cached: encoding and decoding again make no further calls.
    let before = registry.requests().len();
    codec
        .encode(Subject::DlqValue, &dead_letter())
        .await
        .expect("encode");
    let _: DeadLetter = codec.decode(&framed).await.expect("decode");
    assert_eq!(registry.requests().len(), before);
}

#[tokio::test]
async fn plaintext_subjects_use_the_record_name_and_envelopes_share_one_id() {
    let registry = MiniRegistry::start(500).await;
    let codec = SchemaCodec::with_registry(registry.client()).expect("codec");

    let request = AnalysisRequest {
        instruction: "Summarise.".into(),
        input: AnalysisInput::Text(TextInput::plain("Slept badly.")),
        model: ModelPreferences::default(),
        limits: RequestLimits::default(),
        client_reference: None,
    };
    let (id, datum) = codec
        .encode_datum(Subject::AnalysisRequest, &request)
        .await
        .expect("encode");
    assert_eq!(id, SchemaId::new(500));
    let back: AnalysisRequest = codec.decode_datum(id, &datum).await.expect("decode");
    assert_eq!(back, request);

    let mut env = envelope();
    env.header.schema_id = id.to_header_field().expect("fits");
    let on_requests = codec
        .encode_envelope(Subject::RequestsValue, &env)
        .await
        .expect("frame");
    let on_vault = codec
        .encode_envelope(Subject::VaultValue, &env)
        .await
        .expect("frame");
    assert_eq!(&on_requests[1..5], &501u32.to_be_bytes());
    assert_eq!(
        on_requests, on_vault,
        "one schema, one id, whatever the subject"
    );
    let decoded = codec
        .decode_envelope(&on_requests, &Limits::default())
        .await
        .expect("decode");
    assert_eq!(decoded, env);

    let targets: Vec<String> = registry.requests().into_iter().map(|(_, t, _)| t).collect();
    assert!(
        targets.contains(&"/subjects/io.zenvelope.v1.AnalysisRequest/versions".to_owned()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"/subjects/zenvelope.requests-value/versions".to_owned()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&"/subjects/zenvelope.vault-value/versions".to_owned()),
        "{targets:?}"
    );
}

#[tokio::test]
async fn data_written_under_an_older_registered_schema_reads_with_defaults() {
    // Another producer registered a DeadLetter schema from before `redrive_count`.
    let old_text = SchemaName::DeadLetter.avsc().replace(
        r#",
    {"name": "redrive_count", "type": "int", "default": 0, "doc": "How many times this message has already been redriven from the DLQ."}"#,
        "",
    );
    let old = apache_avro::Schema::parse_str(&old_text).expect("old schema");
    assert_ne!(
        old.canonical_form(),
        SchemaName::DeadLetter
            .parse()
            .expect("current")
            .canonical_form()
    );
    let registry = MiniRegistry::start(1).await;
    registry.seed(77, &old_text);

    let d = dead_letter();
    let mut record = apache_avro::types::Record::new(&old).expect("record");
    record.put("original_topic", d.original_topic.clone());
    record.put("original_partition", d.original_partition);
    record.put("original_offset", d.original_offset);
    record.put(
        "original_key",
        Value::Union(
            1,
            Box::new(Value::Bytes(d.original_key.clone().expect("key"))),
        ),
    );
    record.put("original_value", Value::Bytes(d.original_value.clone()));
    record.put("reason_code", d.reason_code.clone());
    record.put("reason_detail", d.reason_detail.clone());
    record.put("failed_at_ms", Value::TimestampMillis(d.failed_at_ms));
    let datum = GenericDatumWriter::builder(&old)
        .build()
        .expect("writer")
        .write_value_to_vec(record)
        .expect("write");

    let codec = SchemaCodec::with_registry(registry.client()).expect("codec");
    let back: DeadLetter = codec
        .decode(&framing::frame(SchemaId::new(77), &datum))
        .await
        .expect("decode with the older writer schema");
    assert_eq!(
        back,
        DeadLetter {
            redrive_count: 0,
            ..d
        }
    );
}

#[tokio::test]
async fn ids_of_other_records_and_other_envelope_layouts_are_refused() {
    let registry = MiniRegistry::start(1).await;
    registry.seed(
        90,
        r#"{"type": "record", "name": "Other", "namespace": "com.example", "fields": [{"name": "a", "type": "long"}]}"#,
    );
    // An envelope schema with one more (defaulted) field: compatible Avro, but not the
    // layout the hand-written codec reads.
    let grown = SchemaName::Envelope.avsc().replacen(
        r#"{"name": "payload""#,
        r#"{"name": "extra", "type": "int", "default": 0}, {"name": "payload""#,
        1,
    );
    assert_ne!(grown, SchemaName::Envelope.avsc());
    registry.seed(91, &grown);
    let codec = SchemaCodec::with_registry(registry.client()).expect("codec");

    let err = codec
        .decode::<DeadLetter>(&framing::frame(SchemaId::new(90), &[2]))
        .await
        .expect_err("another record");
    assert!(
        matches!(&err, Error::WrongSchema { expected: "io.zenvelope.v1.DeadLetter", found } if found == "com.example.Other"),
        "{err:?}"
    );

    let framed = framing::frame(SchemaId::new(91), &zenvelope_envelope::encode(&envelope()));
    let err = codec
        .decode_envelope(&framed, &Limits::default())
        .await
        .expect_err("other layout");
    assert!(matches!(err, Error::EnvelopeSchemaMismatch(91)), "{err:?}");
}

#[tokio::test]
async fn unknown_ids_and_unreachable_registries_are_registry_errors() {
    let registry = MiniRegistry::start(1).await;
    let codec = SchemaCodec::with_registry(registry.client()).expect("codec");
    let err = codec
        .decode::<DeadLetter>(&framing::frame(SchemaId::new(4040), &[]))
        .await
        .expect_err("unknown id");
    assert!(matches!(err, Error::Registry(_)), "{err:?}");
    assert_eq!(err.reason_code(), "schema_registry");
    assert!(
        !err.is_retriable(),
        "a missing schema does not appear by retrying"
    );

    // Nothing listens on a port we bound and released.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let settings = SrSettings::new_builder(format!("http://{closed}"))
        .no_proxy()
        .build()
        .expect("settings");
    let codec = SchemaCodec::with_registry(RegistryClient::new(settings)).expect("codec");
    let err = codec
        .encode(Subject::DlqValue, &dead_letter())
        .await
        .expect_err("unreachable");
    assert!(matches!(err, Error::Registry(_)), "{err:?}");
    assert!(err.is_retriable(), "a connection failure is worth retrying");
}

#[test]
fn no_registry_url_means_the_offline_catalog() {
    assert!(
        SchemaCodec::from_registry_url(None)
            .expect("offline")
            .is_offline()
    );
    assert!(
        SchemaCodec::from_registry_url(Some("  "))
            .expect("offline")
            .is_offline()
    );
    assert!(
        !SchemaCodec::from_registry_url(Some("http://127.0.0.1:8081"))
            .expect("registry")
            .is_offline()
    );
}

#[test]
fn subject_names_agree_with_schema_registry_converter_strategies() {
    for subject in Subject::ALL {
        let derived = RegistryClient::strategy(*subject)
            .get_subject()
            .expect("subject");
        assert_eq!(derived, subject.name());
    }
}

#[test]
fn the_codec_and_its_futures_can_move_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let codec = SchemaCodec::from_registry_url(Some("http://127.0.0.1:8081")).expect("codec");
    send_sync(&codec);
    let value = dead_letter();
    send(&codec.encode(Subject::DlqValue, &value));
    send(&codec.decode::<DeadLetter>(&[]));
    send(&codec.decode_envelope(&[], &Limits::default()));
}
