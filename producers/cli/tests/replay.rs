//! `zenvelope replay` driven as an auditor would, against a broker the test fills itself:
//! valid signed requests and results, a request with no result, a result with no
//! request, a request whose bytes were flipped, a dead letter. Checks the JSON report
//! exactly, the human report, the exit statuses, and the errors.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use zenvelope_envelope::{
    DekWrapper, Envelope, FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring, Kind,
    MetadataKey, Opener, Passphrase, Purpose, RecipientType, ResponseFields, Sealer, SigningKey,
    UserKey, seal_response,
};
use zenvelope_runtime::{
    EmbeddedBroker, KafkaConfig, Outbound, Producer, RangeReader, ReadFrom, ReadTo,
};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{DeadLetter, SchemaCodec, Subject};

const TENANT: &str = "clinic-a";
/// Stands in for PHI: it must never reach the output.
const CANARY: &str = "CANARY-PHI-replay-93f1";

fn zenvelope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zenvelope"))
        .args(args)
        .output()
        .expect("run zenvelope")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The pipeline's parties, with dev keys.
struct Parties {
    dir: tempfile::TempDir,
    user: Arc<UserKey>,
    subject: String,
    producer: Arc<SigningKey>,
    fleet: Keyring<FleetPrivateKey>,
    fleet_public: Arc<Keyring<FleetPublicKey>>,
    results: SigningKey,
    codec: SchemaCodec,
}

impl Parties {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let fleet = FleetPrivateKey::generate("fleet", 1, 2048)?;
        let fleet_public = Keyring::new().with(FleetPublicKey::from_spki_der(
            "fleet",
            1,
            fleet.public_key().spki_der(),
        )?)?;
        let producer = SigningKey::generate("journal-backend", 1, 2048)?;
        let results = SigningKey::generate_ecdsa_p256("fleet-results", 1)?;
        // The producer key as PEM, the result key as DER: both formats are accepted.
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(producer.spki_der())
        );
        std::fs::write(dir.path().join("producer.pem"), pem)?;
        std::fs::write(dir.path().join("results.der"), results.spki_der())?;
        Ok(Self {
            user: Arc::new(UserKey::derive_with_iterations(
                TENANT,
                "ada@example.org",
                &Passphrase::new("correct horse"),
                100_000,
            )?),
            subject: MetadataKey::from_bytes([7; 32]).pseudonym(TENANT, "ada@example.org"),
            dir,
            producer: Arc::new(producer),
            fleet: Keyring::new().with(fleet)?,
            fleet_public: Arc::new(fleet_public),
            results,
            codec: SchemaCodec::offline()?,
        })
    }

    fn key_args(&self) -> Vec<String> {
        let path = |f: &str| self.dir.path().join(f).display().to_string();
        vec![
            "--trust-producer-key".into(),
            format!("journal-backend:1={}", path("producer.pem")),
            "--result-key".into(),
            format!("fleet-results:1={}", path("results.der")),
        ]
    }

    /// A request sealed for the user and the fleet, signed, framed.
    fn request(&self) -> Result<Envelope> {
        let user: Arc<dyn DekWrapper> = self.user.clone();
        let fleet: Arc<dyn DekWrapper> = self.fleet_public.clone();
        Ok(Sealer::new(vec![user, fleet])
            .with_signer(self.producer.clone())
            .seal(
                &HeaderFields {
                    tenant: TENANT.to_owned(),
                    subject: self.subject.clone(),
                    kind: Kind::Request,
                    purpose: Purpose::IndividualRequest,
                    content_type: "text/plain".to_owned(),
                    schema_id: 0,
                },
                format!("Slept badly; {CANARY}").as_bytes(),
            )?)
    }

    /// The enclave's answer: opened with the fleet key, sealed under the response key,
    /// signed with the result key.
    fn answer(&self, request: &Envelope) -> Result<Envelope> {
        let trusted = Keyring::new().with(self.producer.verifying_key()?)?;
        let opened = Opener::new(trusted).open(request.clone(), &self.fleet)?;
        Ok(seal_response(
            &opened,
            &ResponseFields {
                kind: Kind::Result,
                content_type: "text/plain".to_owned(),
                schema_id: 0,
            },
            format!("Answer about {CANARY}").as_bytes(),
            |r| r.recipient_type != RecipientType::RsaOaepSha256,
            Some(&self.results),
        )?)
    }

    async fn framed(&self, env: &Envelope, subject: Subject) -> Result<Vec<u8>> {
        Ok(self.codec.encode_envelope(subject, env).await?)
    }

    /// A request record as the SDK produces it.
    async fn request_record(&self, env: &Envelope) -> Result<Outbound> {
        Ok(Outbound::new(
            topic::REQUESTS,
            Some(self.subject.clone().into_bytes()),
            self.framed(env, Subject::RequestsValue).await?,
        )
        .with_header(header::MESSAGE_ID, env.header.message_id.to_string())
        .with_header(header::TENANT, TENANT))
    }

    /// A result record as the enclave host produces it.
    async fn result_record(&self, env: &Envelope) -> Result<Outbound> {
        let h = &env.header;
        let correlation = h.correlation_id.context("an answer")?.to_string();
        Ok(Outbound::new(
            topic::RESULTS,
            Some(correlation.clone().into_bytes()),
            self.framed(env, Subject::ResultsValue).await?,
        )
        .with_header(header::KIND, h.kind.symbol())
        .with_header(header::TENANT, h.tenant.clone())
        .with_header(header::SUBJECT, h.subject.clone())
        .with_header(header::MESSAGE_ID, h.message_id.to_string())
        .with_header(header::CORRELATION_ID, correlation)
        .with_header(header::SCHEMA_ID, h.schema_id.to_string()))
    }
}

/// Flips one bit in the middle of the envelope's ciphertext.
fn tamper(value: &mut [u8], env: &Envelope) -> Result<()> {
    let at = value
        .windows(env.payload.len())
        .position(|w| w == env.payload.as_slice())
        .context("payload in the record")?;
    value[at + env.payload.len() / 2] ^= 0x01;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the test planted, by position.
struct Planted {
    gap: Envelope,
    tampered: Envelope,
    dead: Envelope,
    orphan: Envelope,
}

/// Fills requests (0 answered, 1 gap, 2 tampered, 3 dead-lettered), results (0 answers
/// request 0, 1 answers a request never produced) and the DLQ (0 for request 3).
async fn plant(kafka: &KafkaConfig, p: &Parties) -> Result<Planted> {
    let producer = Producer::new(kafka)?;
    let (answered, gap, tampered, dead) = (p.request()?, p.request()?, p.request()?, p.request()?);
    let never_sent = p.request()?;
    let orphan = p.answer(&never_sent)?;

    producer.send(p.request_record(&answered).await?).await?;
    producer.send(p.request_record(&gap).await?).await?;
    let mut flipped = p.request_record(&tampered).await?;
    tamper(&mut flipped.payload, &tampered)?;
    producer.send(flipped).await?;
    let dead_record = p.request_record(&dead).await?;
    let (partition, offset) = producer.send(dead_record.clone()).await?;

    producer
        .send(p.result_record(&p.answer(&answered)?).await?)
        .await?;
    producer.send(p.result_record(&orphan).await?).await?;

    let letter = DeadLetter {
        original_topic: topic::REQUESTS.to_owned(),
        original_partition: partition,
        original_offset: offset,
        original_key: dead_record.key.clone(),
        original_value: dead_record.payload.clone(),
        reason_code: "stale".to_owned(),
        reason_detail: "The request is older than the freshness window.".to_owned(),
        failed_at_ms: 1_763_000_000_000,
        redrive_count: 0,
    };
    let mut dlq = Outbound::new(
        topic::DLQ,
        dead_record.key.clone(),
        p.codec.encode(Subject::DlqValue, &letter).await?,
    );
    dlq.headers = dead_record.headers.clone();
    dlq.headers
        .push((header::REASON.to_owned(), b"stale".to_vec()));
    producer.send(dlq).await?;
    Ok(Planted {
        gap,
        tampered,
        dead,
        orphan,
    })
}

fn broker() -> Result<EmbeddedBroker> {
    Ok(EmbeddedBroker::start(&[
        (topic::REQUESTS, 1),
        (topic::RESULTS, 1),
        (topic::DLQ, 1),
    ])?)
}

/// Replaces every `timestamp_ms` (the broker's, unknown to the test) with null.
fn without_record_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "timestamp_ms" {
                    ensure_number(v);
                    *v = Value::Null;
                } else {
                    without_record_times(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(without_record_times),
        _ => {}
    }
}

fn ensure_number(v: &Value) {
    assert!(v.is_i64(), "every record has a broker timestamp: {v}");
}

fn at(topic: &str, offset: i64) -> Value {
    json!({"topic": topic, "partition": 0, "offset": offset, "timestamp_ms": null})
}

fn range(start: i64, end: i64, high: i64) -> Value {
    json!([{"partition": 0, "start_offset": start, "end_offset": end, "low_watermark": 0, "high_watermark": high}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_gaps_tampering_and_dead_letters_exactly() -> Result<()> {
    let broker = broker()?;
    let p = Parties::new()?;
    let planted = plant(&broker.kafka_config(), &p).await?;
    let servers = broker.bootstrap_servers();
    let mut args = vec!["replay", "--bootstrap", &servers, "--json", "--quiet"];
    let keys = p.key_args();
    args.extend(keys.iter().map(String::as_str));

    let out = zenvelope(&args);
    let stdout = text(&out.stdout);
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}; stderr: {}",
        out.status.code(),
        text(&out.stderr)
    );
    ensure!(!stdout.contains(CANARY) && !text(&out.stderr).contains(CANARY));
    let mut report: Value = serde_json::from_str(&stdout).context("JSON report")?;
    without_record_times(&mut report);

    let (req, res, dlq) = (topic::REQUESTS, topic::RESULTS, topic::DLQ);
    let id = |e: &Envelope| e.header.message_id.to_string();
    let subject = p.subject.as_str();
    let orphan_request = planted.orphan.header.correlation_id.context("answer")?;
    let mut topics = serde_json::Map::new();
    topics.insert(
        dlq.into(),
        json!({"role": "dead_letters", "ranges": range(0, 1, 1), "records": 1, "in_scope": 1, "verified": 1, "problems": 0}),
    );
    topics.insert(
        req.into(),
        json!({"role": "envelopes", "ranges": range(0, 4, 4), "records": 4, "in_scope": 4, "verified": 3, "problems": 1}),
    );
    topics.insert(
        res.into(),
        json!({"role": "envelopes", "ranges": range(0, 2, 2), "records": 2, "in_scope": 2, "verified": 2, "problems": 0}),
    );
    let expected = json!({
        "clean": false,
        "window": {"from": {"at": "beginning"}, "to": {"at": "watermark"}},
        "filter": {"tenant": null, "subject": null},
        "topics": topics,
        "summary": {
            "requests": 3, "answered": 1, "dead_lettered": 1, "without_result": 1,
            "answers": 2, "error_answers": 0, "answers_without_request": 1,
            "duplicate_answers": 0, "duplicate_requests": 0, "dead_letters": 1, "problems": 1,
        },
        "problems": [{
            "topic": req, "partition": 0, "offset": 2, "timestamp_ms": null,
            "class": "tampered", "reason": "bad_signature",
            "message_id": id(&planted.tampered),
            "signer": {"key_id": "journal-backend", "key_version": 1},
            "detail": "Envelope signature does not verify.",
        }],
        "requests_without_results": [{
            "message_id": id(&planted.gap), "tenant": TENANT, "subject": subject,
            "created_at_ms": planted.gap.header.created_at_ms, "records": [at(req, 1)],
        }],
        "dead_lettered_requests": [{
            "message_id": id(&planted.dead), "tenant": TENANT, "subject": subject,
            "created_at_ms": planted.dead.header.created_at_ms, "records": [at(req, 3)],
            "reasons": ["stale"], "dead_letters": [at(dlq, 0)],
        }],
        "answers_without_requests": [{
            "topic": res, "partition": 0, "offset": 1, "timestamp_ms": null,
            "message_id": id(&planted.orphan), "correlation_id": orphan_request.to_string(),
            "kind": "RESULT", "tenant": TENANT, "subject": subject,
            "request_created_at_ms": orphan_request.timestamp_ms(),
        }],
        "duplicate_answers": [],
        "duplicate_requests": [],
        "dead_letters": {"stale": {"count": 1, "records": [{
            "topic": dlq, "partition": 0, "offset": 0, "timestamp_ms": null,
            "original_topic": req, "original_partition": 0, "original_offset": 3,
            "message_id": id(&planted.dead), "accounts_for": id(&planted.dead),
            "failed_at_ms": 1_763_000_000_000_i64, "redrive_count": 0,
            "detail": "The request is older than the freshness window.",
        }]}},
    });
    ensure!(
        report == expected,
        "report:\n{}\nexpected:\n{}",
        serde_json::to_string_pretty(&report)?,
        serde_json::to_string_pretty(&expected)?
    );

    // The same replay for a human: short, the findings named, exit status 1.
    let human_args: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
    let out = zenvelope(&human_args);
    let stdout = text(&out.stdout);
    ensure!(out.status.code() == Some(1), "{stdout}");
    for line in [
        "requests   3 verified: 1 answered, 1 dead-lettered, 1 without result",
        "problems (1)",
        "tampered         bad_signature          zenvelope.requests/0@2  signer journal-backend:1",
        "requests without results (1)",
        "answers without requests (1)",
        "stale",
        "FINDINGS: 1 problem, 1 request without result, 1 answer without request",
    ] {
        ensure!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    ensure!(!stdout.contains(CANARY));

    // A window holding only the first record of each topic is clean: exit status 0. The
    // dead letter's request (offset 3) is outside it, so it accounts for nothing.
    let mut window = args.clone();
    window.extend(["--to-offset", "1"]);
    let out = zenvelope(&window);
    ensure!(
        out.status.code() == Some(0),
        "exit {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(report["summary"]["answered"] == 1 && report["summary"]["requests"] == 1);
    ensure!(report["dead_letters"]["stale"]["records"][0]["accounts_for"].is_null());
    ensure!(report["window"]["to"] == json!({"at": "offset", "offset": 1}));

    // Another tenant sees none of it: even the tampered record claims clinic-a.
    let mut other = args.clone();
    other.extend(["--tenant", "clinic-b"]);
    let out = zenvelope(&other);
    ensure!(out.status.code() == Some(0), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(report["summary"]["requests"] == 0 && report["summary"]["dead_letters"] == 0);
    Ok(())
}

#[test]
fn replay_fails_clearly_on_a_missing_broker_topic_or_key() -> Result<()> {
    // No broker: exit status 2, the address named.
    let out = zenvelope(&[
        "replay",
        "--bootstrap",
        "127.0.0.1:1",
        "--topic",
        topic::DLQ,
    ]);
    ensure!(out.status.code() == Some(2), "{:?}", out.status.code());
    ensure!(
        text(&out.stderr).contains("no Kafka broker answered at 127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );

    let broker = broker()?;
    let servers = broker.bootstrap_servers();
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("k.der");
    std::fs::write(&key, SigningKey::generate_ecdsa_p256("k", 1)?.spki_der())?;
    let producer_key = format!("k:1={}", key.display());
    let keyed = |topic: &'static str| {
        vec![
            "replay".to_owned(),
            "--bootstrap".to_owned(),
            servers.clone(),
            "--topic".to_owned(),
            topic.to_owned(),
            "--trust-producer-key".to_owned(),
            producer_key.clone(),
            "--result-key".to_owned(),
            producer_key.clone(),
        ]
    };
    let run = |args: &[String]| zenvelope(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // A topic that does not exist on the broker.
    let out = run(&keyed("zenvelope.nope"));
    ensure!(out.status.code() == Some(2), "{:?}", out.status.code());
    ensure!(
        text(&out.stderr).contains("topic zenvelope.nope does not exist on the broker"),
        "{}",
        text(&out.stderr)
    );
    // The same key given twice, a key file that is not there, a file that is no key.
    let mut twice = keyed(topic::REQUESTS);
    twice.extend(["--trust-producer-key".to_owned(), producer_key.clone()]);
    let out = run(&twice);
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("the key k:1 is given twice"),
        "{}",
        text(&out.stderr)
    );
    let mut missing = keyed(topic::REQUESTS);
    missing[6] = "k:1=/nonexistent/k.pem".to_owned();
    let out = run(&missing);
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("cannot read the key file /nonexistent/k.pem"),
        "{}",
        text(&out.stderr)
    );
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(
        &not_a_key,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )?;
    let mut bad = keyed(topic::REQUESTS);
    bad[6] = format!("k:1={}", not_a_key.display());
    let out = run(&bad);
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("does not hold an RSA or P-256 public key"),
        "{}",
        text(&out.stderr)
    );
    // Envelopes to verify but no key to verify them with.
    let out = zenvelope(&["replay", "--bootstrap", &servers]);
    ensure!(out.status.code() == Some(2));
    ensure!(
        text(&out.stderr).contains("--trust-producer-key is needed"),
        "{}",
        text(&out.stderr)
    );
    // An empty dead-letter queue alone needs no key, and is clean.
    let out = zenvelope(&["replay", "--bootstrap", &servers, "--topic", topic::DLQ]);
    ensure!(out.status.code() == Some(0), "{}", text(&out.stderr));
    ensure!(text(&out.stdout).contains("CLEAN"), "{}", text(&out.stdout));

    // Usage errors: exit status 2 from the argument parser or the range check.
    for bad in [
        &["replay"][..],
        &[
            "replay",
            "--bootstrap",
            &servers,
            "--trust-producer-key",
            "no-version=x.pem",
        ],
        &[
            "replay",
            "--bootstrap",
            &servers,
            "--from-time",
            "yesterday",
        ],
        &[
            "replay",
            "--bootstrap",
            &servers,
            "--from-offset",
            "1",
            "--from-time",
            "1",
        ],
        &[
            "replay",
            "--bootstrap",
            &servers,
            "--topic",
            topic::DLQ,
            "--from-offset",
            "5",
            "--to-offset",
            "2",
        ],
    ] {
        let out = zenvelope(bad);
        ensure!(
            out.status.code() == Some(2),
            "{bad:?}: {:?}",
            out.status.code()
        );
    }
    Ok(())
}

#[test]
fn replay_help_teaches_with_examples_and_exit_statuses() {
    let out = zenvelope(&["replay", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "zenvelope replay --bootstrap kafka:9092",
        "--trust-producer-key <ID:VERSION=FILE>",
        "--from-time",
        "Exit status:",
        "1  findings",
        "2  the replay could not run",
    ] {
        assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
    }
}

/// Time windows against tansu, whose `ListOffsets` resolves timestamps (librdkafka's mock
/// cluster does not): the reader directly, then the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_windows_select_records_by_broker_time() -> Result<()> {
    let tansu = zenvelope_tests::Tansu::start()?;
    let kafka = KafkaConfig::new(tansu.bootstrap_servers());
    zenvelope_runtime::ensure_topics(&kafka, &[(topic::REQUESTS, 2)]).await?;
    let p = Parties::new()?;
    let producer = Producer::new(&kafka)?;
    let mut early = Vec::new();
    for _ in 0..3 {
        let r = p.request()?;
        producer.send(p.request_record(&r).await?).await?;
        early.push(r.header.message_id.to_string());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let split = now_ms();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = Vec::new();
    for _ in 0..2 {
        let r = p.request()?;
        producer.send(p.request_record(&r).await?).await?;
        late.push(r.header.message_id.to_string());
    }

    let ids = |records: &[zenvelope_runtime::Inbound]| -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .filter_map(|r| r.header(header::MESSAGE_ID))
            .map(text)
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    for (from, to, want) in [
        (
            ReadFrom::TimestampMs(split),
            ReadTo::Watermark,
            late.clone(),
        ),
        (
            ReadFrom::Beginning,
            ReadTo::TimestampMs(split),
            early.clone(),
        ),
    ] {
        let mut reader = RangeReader::open(&kafka, topic::REQUESTS, from, to).await?;
        let mut got = Vec::new();
        while let Some(r) = reader.next().await? {
            got.push(r);
        }
        ensure!(
            ids(&got) == sorted(want.clone()),
            "{from:?}..{to:?}: {:?}",
            ids(&got)
        );
    }

    let split_text =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(split) * 1_000_000)?
            .format(&time::format_description::well_known::Rfc3339)?;
    let servers = tansu.bootstrap_servers();
    let keys = p.key_args();
    for (flag, value, want) in [
        ("--from-time", split_text.clone(), late),
        ("--to-time", split.to_string(), early),
    ] {
        let mut args = vec![
            "replay",
            "--bootstrap",
            &servers,
            "--topic",
            topic::REQUESTS,
            "--json",
            flag,
            &value,
        ];
        args.extend(keys.iter().map(String::as_str));
        let out = zenvelope(&args);
        // Every request is without result: no result topic was read.
        ensure!(out.status.code() == Some(1), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout)?;
        let mut got: Vec<String> = report["requests_without_results"]
            .as_array()
            .context("list")?
            .iter()
            .filter_map(|e| e["message_id"].as_str().map(str::to_owned))
            .collect();
        got.sort();
        ensure!(got == sorted(want), "{flag} {value}: {got:?}");
        ensure!(report["window"].to_string().contains(&split.to_string()));
    }
    Ok(())
}
