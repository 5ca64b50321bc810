//! `zenvelope demo`: the whole pipeline in one process, on embedded defaults, stage by
//! stage.
//!
//! What runs for real: an in-memory Kafka-protocol broker (librdkafka's mock cluster; or
//! the broker given with `--bootstrap`), the producer SDK (PBKDF2 user key, DEK wrap to
//! the fleet key and the user, AES-256-GCM, RSA-PSS signature, produce), the
//! `enclave-host` loop (consume, forward, produce result and audit events, store offsets
//! after the acks) and the `enclave-app` processor (verify, unwrap, open, model call,
//! seal, ECDSA result signature, audit events) talking the host⇄enclave frame protocol
//! over loopback TCP, and the SDK opening the answers. What does not run here: vsock,
//! attestation and KMS key release (the dev keys are generated in this process; the
//! end-to-end tests run `enclave-app` with a dev attestation and moto's KMS), a real model
//! (the answer comes from the offline analyser, which is labelled as NOT a model), and
//! the audit sink (the audit events are read back from the topic).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio_util::sync::CancellationToken;
use zenvelope_enclave::app::{AppConfig, Processor, ProcessorParts, serve};
use zenvelope_enclave::host::{EnclaveClient, RequestHandler};
use zenvelope_enclave::providers::OfflineAnalyser;
use zenvelope_enclave::transport::TransportAddr;
use zenvelope_envelope::{
    DEFAULT_PBKDF2_ITERATIONS, DEFAULT_RSA_BITS, FleetPrivateKey, FleetPublicKey, Keyring,
    MetadataKey, SigningKey,
};
use zenvelope_producer::{Client, Passphrase, Request};
use zenvelope_runtime::{EmbeddedBroker, KafkaConfig, ProcessorConfig, Subscriber};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{AuditEvent, SchemaCodec};

use crate::inspect::public_view;

const TENANT: &str = "demo-clinic";
const USER: &str = "alice@example.com";
/// A dev-only passphrase: the demo is not a place for real credentials.
const DANGER_DEMO_PASSPHRASE: &str = "demo passphrase: dev only";
/// How long `--bootstrap` may take to answer before the demo gives up.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the demo waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

const ENTRIES: &[&str] = &[
    "Nov 20. Slept four hours again. Chest felt tight before the team meeting, better after a walk.",
    "Nov 21. Talked to my sister about Mum's diagnosis. Cried in the car, then felt lighter.",
    "Nov 22. Skipped the gym, anxious about Monday's review. Wrote a list of what I can control.",
];

/// Arguments of `zenvelope demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// How many sample journal entries to send (1 to 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    entries: u8,
    /// PBKDF2 iterations for the user key (100,000 to 10,000,000).
    #[arg(long, default_value_t = DEFAULT_PBKDF2_ITERATIONS)]
    iterations: u32,
    /// RSA modulus size of the demo's dev fleet and producer keys (2048, 3072 or 4096).
    #[arg(long, default_value_t = DEFAULT_RSA_BITS)]
    rsa_bits: usize,
    /// Use this Kafka broker (host:port) instead of the embedded one; the demo's topics
    /// are created if missing.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if !zenvelope_envelope::ACCEPTED_RSA_BITS.contains(&args.rsa_bits) {
        bail!(
            "RSA keys must be 2048, 3072 or 4096 bits (--rsa-bits {})",
            args.rsa_bits
        );
    }
    if !(100_000..=10_000_000).contains(&args.iterations) {
        bail!(
            "PBKDF2 iterations must be between 100,000 and 10,000,000 (--iterations {})",
            args.iterations
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(pipeline(args))
}

async fn pipeline(args: &Args) -> anyhow::Result<()> {
    println!("zenvelope demo: the whole pipeline in one process, every stage shown.");
    println!(
        "WARNING: dev keys generated in memory and a fixed dev passphrase; never use them for real data.\n"
    );
    let topics = [
        (topic::REQUESTS, 2),
        (topic::RESULTS, 2),
        (topic::DLQ, 1),
        (topic::AUDIT, 1),
    ];

    // The broker.
    let (_embedded, kafka) = match &args.bootstrap {
        Some(servers) => {
            let kafka = KafkaConfig::new(servers.clone());
            zenvelope_runtime::check_broker(&kafka, BROKER_CHECK_TIMEOUT).await?;
            zenvelope_runtime::ensure_topics(&kafka, &topics)
                .await
                .with_context(|| format!("cannot create the demo's topics on {servers}"))?;
            println!("broker     {servers} (given with --bootstrap)");
            (None, kafka)
        }
        None => {
            let broker = EmbeddedBroker::start(&topics)?;
            println!(
                "broker     embedded Kafka-protocol broker at {} (librdkafka's in-memory mock cluster)",
                broker.bootstrap_servers()
            );
            let kafka = broker.kafka_config();
            (Some(broker), kafka)
        }
    };

    // Keys.
    let t = Instant::now();
    let fleet = FleetPrivateKey::generate("fleet", 1, args.rsa_bits)
        .context("cannot generate the dev fleet key")?;
    let fleet_public = FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der())?;
    let producer = SigningKey::generate("journal-backend", 1, args.rsa_bits)?;
    let producer_public = producer.verifying_key()?;
    let result_signer = SigningKey::generate_ecdsa_p256("fleet-results", 1)?;
    let result_public = result_signer.verifying_key()?;
    println!(
        "keys       dev keys: fleet encryption and producer signing (RSA-{}), fleet result signing (ECDSA P-256), {} ms",
        args.rsa_bits,
        t.elapsed().as_millis()
    );
    println!(
        "           fleet key fingerprint (SHA-256 of SPKI): {}",
        fleet_public.fingerprint()
    );

    // The enclave application, in this process, on loopback TCP.
    let stop = CancellationToken::new();
    let processor = Processor::new(
        &AppConfig::from_toml(&format!(
            "[tenants.{TENANT}]\nallowed_purposes = [\"INDIVIDUAL_REQUEST\"]\n[model]\nmodel = \"offline\"\n"
        ))?,
        ProcessorParts {
            trusted_signers: Keyring::new().with(producer_public)?,
            fleet_keys: Keyring::new().with(fleet)?,
            result_signer,
            provider: Arc::new(OfflineAnalyser),
            enclave_measurement: None,
        },
    )?;
    let listener = "tcp://127.0.0.1:0".parse::<TransportAddr>()?.bind().await?;
    let enclave_addr = listener.local_addr()?;
    let app = tokio::spawn(serve(listener, Arc::new(processor), stop.clone(), 64));
    println!(
        "enclave    enclave-app at {enclave_addr} (TCP loopback here, vsock in a Nitro Enclave; keys given directly, no attestation or KMS in this demo)"
    );
    println!("           model: the offline analyser, NOT a model (it counts words)");

    // The host loop.
    let codec = Arc::new(SchemaCodec::offline()?);
    let handler = RequestHandler::new(
        EnclaveClient::new(enclave_addr, Duration::from_secs(30)),
        codec.clone(),
        Duration::from_secs(1),
        stop.clone(),
    );
    let host_config = ProcessorConfig::new("zenvelope-demo-host", vec![topic::REQUESTS.to_owned()]);
    let (host_kafka, host_codec, host_stop) = (kafka.clone(), codec.clone(), stop.clone());
    let host = tokio::spawn(async move {
        zenvelope_runtime::run(
            &host_kafka,
            &host_config,
            host_codec,
            Arc::new(handler),
            host_stop,
        )
        .await
    });
    println!("host       enclave-host consuming {}\n", topic::REQUESTS);

    // The backend, with the producer SDK.
    let client = Client::builder(kafka.clone(), TENANT)
        .signer(producer)
        .fleet_keys(Keyring::new().with(fleet_public)?)
        .result_keys(Keyring::new().with(result_public)?)
        .metadata_key(MetadataKey::from_bytes(random_32()?))
        .codec(codec.clone())
        .pbkdf2_iterations(args.iterations)
        .build()?;
    let t = Instant::now();
    let user = client
        .login(USER, Passphrase::new(DANGER_DEMO_PASSPHRASE))
        .await?;
    println!(
        "user side  derived the user key from the passphrase (PBKDF2-HMAC-SHA256, {} iterations, {} ms)",
        args.iterations,
        t.elapsed().as_millis()
    );
    println!(
        "           subject pseudonym {} (HMAC: no email on Kafka or in audit rows)\n",
        user.subject()
    );
    let mut answers = client.results(&user, true)?;
    let wire = Subscriber::new(&kafka, "zenvelope-demo-wire", &[topic::REQUESTS], true)?;

    for (n, entry) in ENTRIES.iter().take(usize::from(args.entries)).enumerate() {
        let n = n + 1;
        let sent = client
            .analyze(
                &user,
                Request::text("Summarise this journal entry in one sentence.", *entry),
            )
            .await?;
        println!(
            "entry {n}    {} characters sealed and produced: message id {}, partition {}, offset {}",
            entry.chars().count(),
            sent.message_id,
            sent.partition,
            sent.offset
        );
        // What the broker holds: the record as any consumer sees it.
        let record = loop {
            let r = tokio::time::timeout(ANSWER_TIMEOUT, wire.recv())
                .await
                .context("the request did not show up on the broker")??;
            if r.header(header::MESSAGE_ID) == Some(sent.message_id.as_bytes()) {
                break r;
            }
        };
        ensure!(
            !record
                .payload
                .windows(entry.len())
                .any(|w| w == entry.as_bytes()),
            "the plaintext is on the broker"
        );
        let envelope = codec
            .decode_envelope(&record.payload, &zenvelope_envelope::Limits::default())
            .await?;
        println!(
            "broker     key {:?}, value {} bytes; plaintext in the record: no. Public header:",
            String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()),
            record.payload.len()
        );
        println!(
            "           {}",
            public_view(&envelope, record.payload.len())
        );
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, answers.next())
            .await
            .context("no answer arrived")??;
        ensure!(answer.correlation_id == sent.message_id, "a stray answer");
        let (provider, model) = answer.provider.clone().unwrap_or_default();
        println!(
            "enclave    verified signature (journal-backend v1), opened, asked {provider}/{model}, sealed and signed the answer"
        );
        println!(
            "user side  opened the answer with their passphrase: {:?} ({})\n",
            answer.text,
            answer.kind.symbol()
        );
    }

    // The audit trail, as the audit sink will receive it.
    let audit = Subscriber::new(&kafka, "zenvelope-demo-audit", &[topic::AUDIT], true)?;
    let expected = 2 * usize::from(args.entries);
    println!("audit      {} (no plaintext, no email):", topic::AUDIT);
    for _ in 0..expected {
        let record = tokio::time::timeout(ANSWER_TIMEOUT, audit.recv())
            .await
            .context("the audit events did not arrive")??;
        let event: AuditEvent = codec.decode(&record.payload).await?;
        let disclosure = event.disclosure.as_ref().map_or(String::new(), |d| {
            format!(
                ", disclosure receipt: {}/{} for {:?}",
                d.provider, d.model, d.purpose
            )
        });
        println!(
            "           {:?} {:?} by {} for message {}{disclosure}",
            event.operation,
            event.outcome,
            event.actor,
            event
                .message_id
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
        );
    }

    stop.cancel();
    let summary = host.await.context("the host task failed")??;
    let _ = app.await;
    println!(
        "\nhost       stopped: {} processed, {} dead-lettered; offsets committed after every ack",
        plural(summary.processed, "request"),
        summary.dead_lettered
    );
    println!(
        "\nNext: docs/enclave-worker.md runs the same parts as separate processes with dev attestation and a KMS emulator."
    );
    Ok(())
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn random_32() -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(key)
}
