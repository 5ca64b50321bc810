//! `zenvelope demo`: the whole pipeline in one process, on embedded defaults, stage by
//! stage.
//!
//! What runs for real: an in-memory Kafka-protocol broker (librdkafka's mock cluster; or
//! the broker given with `--bootstrap`), the producer SDK (PBKDF2 user key, DEK wrap to
//! the fleet key and the user, AES-256-GCM, RSA-PSS signature, produce), the admission
//! processor (producer signature against the tenant's registered keys, purpose, tier
//! quota, usage metering; it refuses a request signed by an unregistered backend, and the
//! SDK shows the refusal), the `enclave-host` loop (consume, forward, produce result and audit events, store offsets
//! after the acks) and the `enclave-app` processor (verify, unwrap, open, model call,
//! seal, ECDSA result signature, audit events) talking the host⇄enclave frame protocol
//! over loopback TCP, the key directory (the enclave attests its public keys with a dev
//! CA in the real Nitro document format, the host publishes them on `zenvelope.keys`, and
//! the SDK verifies chain, PCR0 and binding before it wraps anything), and the SDK
//! opening the answers, and the audit sink on its embedded store. What does not run
//! here: vsock, the Nitro NSM and KMS key release (the dev keys are generated in this
//! process; the end-to-end tests run `enclave-app` with a dev attestation and moto's KMS). The model is the one `--provider` names (through an in-process
//! egress proxy that allows only its address), or, without an API key, the offline
//! analyser, which is labelled as NOT a model.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use zenvelope_audit::store::AuditStore as _;
use zenvelope_envelope::SigningKey;
use zenvelope_envelope::{DEFAULT_PBKDF2_ITERATIONS, DEFAULT_RSA_BITS, MetadataKey};
use zenvelope_producer::{Client, Error as SdkError, Passphrase, Request};
use zenvelope_runtime::Subscriber;
use zenvelope_schemas::AuditEvent;
use zenvelope_schemas::names::{header, topic};

use crate::inspect::public_view;
use zenvelope_processors::Tier;

use crate::stack::{LocalStack, PRODUCER_KEY_ID, StackOptions, TENANT};

const USER: &str = "alice@example.com";
/// A dev-only passphrase: the demo is not a place for real credentials.
const DANGER_DEMO_PASSPHRASE: &str = "demo passphrase: dev only";
/// How long the SDK may take to find a verified fleet key in the key directory.
const KEY_DIRECTORY_TIMEOUT: Duration = Duration::from_secs(20);
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
    /// are created if missing. A development broker of its own, not one where other
    /// zenvelope services run (the demo's admission and host would read their topics).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    #[command(flatten)]
    model: crate::stack::ModelArgs,
    /// The demo tenant's tier: its quota, which admission enforces.
    #[arg(long, value_enum, default_value_t = Tier::Free)]
    tier: Tier,
    /// Folder the demo keeps its audit log in (audit.db, a DEV checkpoint key and the
    /// verifier key), for `zenvelope audit verify`. Created if missing; runs append.
    #[arg(long, value_name = "DIR", default_value = ".zenvelope/demo-audit")]
    audit_dir: std::path::PathBuf,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
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
    let stack = LocalStack::start(&StackOptions {
        bootstrap: args.bootstrap.clone(),
        rsa_bits: args.rsa_bits,
        host_group: "zenvelope-demo-host",
        model: args.model.clone(),
        audit_dir: args.audit_dir.clone(),
        tier: args.tier,
        usage_listen: None,
    })
    .await?;
    let (kafka, codec) = (stack.kafka.clone(), stack.codec.clone());
    let audit_store = zenvelope_audit::store::EmbeddedStore::open(
        &args.audit_dir.join(crate::stack::audit_files::STORE),
    )?;
    let audit_size_at_start = audit_store.size().await?;

    // The backend, with the producer SDK: fleet keys come from the key directory.
    let client = Client::builder(kafka.clone(), TENANT)
        .signer(stack.producer_signer()?)
        .key_directory(stack.key_directory_policy()?)
        .metadata_key(MetadataKey::from_bytes(stack.metadata_key))
        .codec(codec.clone())
        .pbkdf2_iterations(args.iterations)
        .build()?;
    let fleet = client
        .wait_for_fleet_key(KEY_DIRECTORY_TIMEOUT)
        .await
        .context("the SDK found no trusted fleet key")?;
    println!(
        "user side  key directory: fleet key {} v{} verified (chain to the pinned root, PCR0, key and entry bound by the attestation document)",
        fleet.key_id, fleet.key_version
    );
    println!("           fingerprint {}", fleet.fingerprint);
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
        // The host reads only zenvelope.admitted: an answer means admission let it pass.
        println!(
            "admission  signature {PRODUCER_KEY_ID} v1 registered for {TENANT}, purpose allowed, {}: forwarded unchanged to {}",
            match args.tier.quota() {
                Some(_) => format!("within the {} quota", args.tier.name()),
                None => format!("{} tier (no quota)", args.tier.name()),
            },
            topic::ADMITTED
        );
        println!(
            "enclave    verified signature (journal-backend v1), opened, asked {provider}/{model}, sealed and signed the answer"
        );
        println!(
            "user side  opened the answer with their passphrase: {:?} ({})\n",
            answer.text,
            answer.kind.symbol()
        );
    }

    refused_demo(&stack, &user, &mut answers, args).await?;
    usage_demo(&stack, args).await?;

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
                ", disclosure receipt: {}/{} for {:?}, {}",
                d.provider,
                d.model,
                d.purpose,
                d.signature.as_ref().map_or_else(
                    || "UNSIGNED".to_owned(),
                    |s| format!("signed by {}:{}", s.key_id, s.key_version)
                )
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

    // Let the sink append them before stopping (it runs beside the host).
    let appended = audit_size_at_start + expected as u64;
    let waited = Instant::now();
    while audit_store.size().await? < appended && waited.elapsed() < ANSWER_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The receipts' signing key, for `audit disclosures --result-key`. A fresh key each
    // run: receipts from earlier runs in the same directory were signed by theirs.
    let results_key = args.audit_dir.join(RESULTS_PUBLIC_KEY_FILE);
    std::fs::write(&results_key, &stack.result_spki)?;
    let (summary, admission) = stack.stop().await?;
    println!(
        "\nadmission  stopped: {} checked, {} refused (on {}); offsets committed after every ack",
        plural(admission.check.processed, "request"),
        admission.check.dead_lettered + admission.quota.dead_lettered,
        topic::DLQ
    );
    println!(
        "host       stopped: {} processed, {} dead-lettered; offsets committed after every ack",
        plural(summary.processed, "request"),
        summary.dead_lettered
    );
    let store = args.audit_dir.join(crate::stack::audit_files::STORE);
    let vkey = args.audit_dir.join(crate::stack::audit_files::VERIFIER_KEY);
    let verifier =
        zenvelope_audit::note::Verifier::from_vkey(std::fs::read_to_string(&vkey)?.trim())?;
    let report =
        zenvelope_audit::verify::verify(&audit_store, &codec, &verifier, None, |_, _| {}).await?;
    println!(
        "audit log  {} events in {}, {} signed checkpoint(s), {}",
        report.size,
        store.display(),
        report.checkpoints_valid,
        if report.is_clean() {
            "INTACT"
        } else {
            "ALTERED"
        }
    );
    println!(
        "           check it yourself: zenvelope audit verify --store {} --vkey-file {}",
        store.display(),
        vkey.display()
    );
    println!(
        "           account for disclosures: zenvelope audit disclosures --store {} --result-key {}:1={}",
        store.display(),
        crate::stack::RESULT_KEY_ID,
        results_key.display()
    );
    println!(
        "\nNext: `zenvelope up` keeps this stack running for `produce`, `subscribe`, `keys show` and `replay`; docs/enclave-worker.md runs the same parts as separate processes with a KMS emulator."
    );
    Ok(())
}

/// A backend whose key the tenant never registered sends a request: admission refuses it
/// before any enclave sees it, and the user's SDK shows the refusal.
async fn refused_demo(
    stack: &LocalStack,
    user: &zenvelope_producer::User,
    answers: &mut zenvelope_producer::Results,
    args: &Args,
) -> anyhow::Result<()> {
    let rogue = Client::builder(stack.kafka.clone(), TENANT)
        .signer(SigningKey::generate_ecdsa_p256("unregistered-backend", 1)?)
        .key_directory(stack.key_directory_policy()?)
        .metadata_key(MetadataKey::from_bytes(stack.metadata_key))
        .codec(stack.codec.clone())
        .pbkdf2_iterations(args.iterations)
        .build()?;
    rogue
        .wait_for_fleet_key(KEY_DIRECTORY_TIMEOUT)
        .await
        .context("the SDK found no trusted fleet key")?;
    // The same user and key: only the backend's signature differs.
    let sent = rogue
        .analyze(
            user,
            Request::text("Summarise this journal entry in one sentence.", ENTRIES[0]),
        )
        .await?;
    println!(
        "bad input  a backend whose signing key {TENANT} never registered sends message {}",
        sent.message_id
    );
    let refusal = match tokio::time::timeout(ANSWER_TIMEOUT, answers.outcome_of(&sent.message_id))
        .await
        .context("no refusal arrived")?
    {
        Err(SdkError::Refused(refusal)) => refusal,
        Ok(_) => bail!("a request from an unregistered backend was answered"),
        Err(e) => return Err(e.into()),
    };
    println!(
        "admission  refused it ({}): {}",
        refusal.reason_code, refusal.detail
    );
    println!(
        "user side  the SDK told the user (notice on {}); the request, still sealed, waits on {} for an operator: zenvelope dlq list\n",
        topic::REJECTIONS,
        topic::DLQ
    );
    Ok(())
}

/// What admission metered for the tenant today (or this month), read back from the
/// usage topic as `zenvelope usage` and `GET /v1/usage` read it.
async fn usage_demo(stack: &LocalStack, args: &Args) -> anyhow::Result<()> {
    let entries = i64::from(args.entries);
    // Answers are metered from zenvelope.results a moment after they arrive.
    let waited = Instant::now();
    let usage = loop {
        let all = zenvelope_processors::usage::read(
            &stack.kafka,
            &stack.codec,
            topic::USAGE,
            Some(TENANT),
            None,
        )
        .await?;
        let current = all.into_iter().max_by(|a, b| a.period.cmp(&b.period));
        match current {
            Some(u) if u.results + u.errors >= entries || waited.elapsed() > ANSWER_TIMEOUT => {
                break u;
            }
            None if waited.elapsed() > ANSWER_TIMEOUT => {
                bail!(
                    "admission recorded no usage for {TENANT} on {}",
                    topic::USAGE
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let quota = args
        .tier
        .quota()
        .map_or_else(|| "no quota".to_owned(), |q| format!("quota {q}"));
    println!(
        "usage      {TENANT} {}: {} admitted ({quota}), {} answered, {} sealed bytes in, {} out, model tokens {} in / {} out",
        usage.period,
        plural(usage.requests.max(0).unsigned_abs(), "request"),
        usage.results + usage.errors,
        usage.request_bytes,
        usage.result_bytes,
        usage.input_tokens,
        usage.output_tokens
    );
    println!(
        "           read from zenvelope.usage as `zenvelope usage --tenant {TENANT}` and GET /v1/usage read it (on `zenvelope up`, which keeps running)\n"
    );
    Ok(())
}

/// The file in the audit directory holding this run's result-signing public key (DER).
pub(crate) const RESULTS_PUBLIC_KEY_FILE: &str = "results-public.der";

pub(crate) fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
