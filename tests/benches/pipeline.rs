//! Pipeline benchmark: whole runs, not criterion samples (each sample is a pipeline run).
//!
//! Default mode, **encrypted vs plaintext baseline**: one tansu broker and one
//! zero-latency model server; per round, a fresh pipeline of each variant runs in this
//! process ([`zenvelope_tests::inprocess`]): the real enclave `Processor` behind `serve`
//! and the real host `RequestHandler` in `zenvelope_runtime::run`, or the plaintext
//! baseline that takes the same path without any envelope step. N requests are prepared
//! first (sealing is the producer's cost, not timed), produced as fast as possible, and
//! each result's arrival on the results topic is matched to its request by the
//! `zenvelope-correlation-id` header. Rounds alternate baseline, encrypted, baseline, ...
//! and the report gives the median of the rounds per variant.
//!
//! ```sh
//! cargo bench -p zenvelope-tests --bench pipeline -- [--requests 2000] [--rounds 2] [--rsa-bits 3072]
//!     [--result-signature ecdsa|rsa] [--dek-session-messages 1] [--rate MSG_PER_S] [--enclave-only]
//! ```
//!
//! In-flight mode: the real `enclave-host` and `enclave-app` binaries
//! ([`zenvelope_tests::pipeline::Pipeline`]) against a model answering in 500 ms, with
//! each count of requests produced at once; reports completion, total time and the peak
//! resident memory (VmHWM) of both processes.
//!
//! ```sh
//! cargo bench -p zenvelope-tests --bench pipeline -- --in-flight 1000,10000 [--model-latency-ms 500]
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use zenvelope_envelope::{
    DekSessionPolicy, FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring, Kind, MetadataKey,
    Passphrase, Purpose, Sealer, SigningKey, UserKey,
};
use zenvelope_runtime::{KafkaConfig, Outbound, Producer, Subscriber};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{SchemaCodec, SchemaName};
use zenvelope_tests::Tansu;
use zenvelope_tests::inprocess::{
    self, Bounds, EnclaveKeys, InProcess, PlaintextBaseline, Topics, Variant,
};
use zenvelope_tests::model_server::ModelServer;
use zenvelope_tests::pipeline::{Options, PRODUCER_KEY_ID, Pipeline, TENANT, USER};

/// librdkafka property: longest a fetch waits on the broker for records.
const FETCH_WAIT_MAX_MS: &str = "fetch.wait.max.ms";
/// Warm-up requests per run (consumer group joined, connections up) before timing.
const WARMUP: usize = 20;
/// Longest a run may take to deliver its results.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The enclave's in-flight bound in the in-flight mode (file descriptors: every model
/// call holds an egress stream, two sockets in the host).
const APP_IN_FLIGHT_CAP: usize = 2_048;

struct Args {
    requests: usize,
    rounds: usize,
    rsa_bits: usize,
    host_in_flight: usize,
    app_in_flight: usize,
    in_flight: Option<Vec<usize>>,
    model_latency_ms: u64,
    /// Produce the measured requests at this fixed rate (msg/s) instead of all at once:
    /// below capacity, latency is the pipeline's own, not queueing.
    rate: Option<f64>,
    /// Only time the enclave's per-request processing, sequentially, both variants.
    enclave_only: bool,
    /// In-flight mode: cap the host's `max_in_flight` at this (default: the count), to
    /// show memory stays flat when more requests wait than the host takes at once.
    host_bound: Option<usize>,
    /// The fleet's result-signing algorithm: ECDSA P-256 (the default) or RSA-PSS at
    /// `rsa_bits`.
    result_rsa: bool,
    /// Messages the producer seals under one DEK (1: a fresh DEK per message).
    dek_session_messages: u32,
}

impl Args {
    /// The crypto configuration, for the report.
    fn crypto(&self) -> String {
        format!(
            "RSA-{} fleet and producer keys, results signed with {}, {}",
            self.rsa_bits,
            if self.result_rsa {
                format!("RSA-PSS-{}", self.rsa_bits)
            } else {
                "ECDSA P-256".to_owned()
            },
            match self.dek_session_messages {
                1 => "a fresh DEK per request".to_owned(),
                n => format!("DEK sessions of {n} requests"),
            }
        )
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        requests: 2_000,
        rounds: 2,
        rsa_bits: 3072,
        host_in_flight: 256,
        app_in_flight: 256,
        in_flight: None,
        model_latency_ms: 500,
        rate: None,
        enclave_only: false,
        host_bound: None,
        result_rsa: false,
        dek_session_messages: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--requests" => args.requests = value()?.parse()?,
            "--rounds" => args.rounds = value()?.parse()?,
            "--rsa-bits" => args.rsa_bits = value()?.parse()?,
            "--host-in-flight" => args.host_in_flight = value()?.parse()?,
            "--app-in-flight" => args.app_in_flight = value()?.parse()?,
            "--model-latency-ms" => args.model_latency_ms = value()?.parse()?,
            "--rate" => args.rate = Some(value()?.parse()?),
            "--enclave-only" => args.enclave_only = true,
            "--host-bound" => args.host_bound = Some(value()?.parse()?),
            "--result-signature" => {
                args.result_rsa = match value()?.as_str() {
                    "ecdsa" => false,
                    "rsa" => true,
                    other => bail!("--result-signature is ecdsa or rsa, not {other:?}"),
                }
            }
            "--dek-session-messages" => {
                args.dek_session_messages = value()?.parse()?;
                ensure!(
                    args.dek_session_messages >= 1,
                    "--dek-session-messages is at least 1"
                );
            }
            "--in-flight" => {
                args.in_flight = Some(
                    value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?,
                );
            }
            // Passed by `cargo bench`.
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match &args.in_flight {
            Some(counts) => in_flight(counts, args.model_latency_ms, args.host_bound).await,
            None => compare(&args).await,
        }
    })
}

fn prompt(n: usize) -> String {
    format!("Journal entry {n}: slept badly, anxious about the appointment. REQ-{n}")
}

/// One prepared request: its id and the record to produce.
struct Prepared {
    id: String,
    record: Outbound,
}

/// What one run measured.
#[derive(Debug, Clone)]
struct RunStats {
    throughput: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

struct Producing {
    codec: SchemaCodec,
    dek_session: DekSessionPolicy,
    sealer_parts: (Arc<UserKey>, Arc<Keyring<FleetPublicKey>>, Arc<SigningKey>),
    subject: String,
}

impl Producing {
    fn sealed(&self, topic: &str, range: std::ops::Range<usize>) -> Result<Vec<Prepared>> {
        let (user, fleet, signer) = &self.sealer_parts;
        let mut sealer = Sealer::new(vec![user.clone(), fleet.clone()])
            .with_signer(signer.clone())
            .with_dek_session(self.dek_session);
        let fields = HeaderFields {
            tenant: TENANT.into(),
            subject: self.subject.clone(),
            kind: Kind::Request,
            purpose: Purpose::IndividualRequest,
            content_type: "text/plain; charset=utf-8".into(),
            schema_id: 0,
        };
        let schema = self.codec.catalog().id(SchemaName::Envelope);
        range
            .map(|n| {
                let envelope = sealer.seal(&fields, prompt(n).as_bytes())?;
                let id = envelope.header.message_id.to_string();
                let value = zenvelope_schemas::framing::frame(
                    schema,
                    &zenvelope_envelope::encode(&envelope),
                );
                Ok(self.record(topic, id, value))
            })
            .collect()
    }

    fn plain(&self, topic: &str, range: std::ops::Range<usize>) -> Vec<Prepared> {
        range
            .map(|n| {
                let id = uuid::Uuid::now_v7().to_string();
                self.record(topic, id, prompt(n).into_bytes())
            })
            .collect()
    }

    fn record(&self, topic: &str, id: String, value: Vec<u8>) -> Prepared {
        let record = Outbound::new(topic, Some(self.subject.clone().into_bytes()), value)
            .with_header(header::MESSAGE_ID, id.clone().into_bytes());
        Prepared { id, record }
    }
}

/// Correlation ids of results with the moment each arrived.
type Arrivals = mpsc::UnboundedReceiver<(String, Instant)>;

/// Reads `topic` from the beginning and reports each record's correlation id and arrival.
fn spawn_reader(
    kafka: &KafkaConfig,
    topic: &str,
) -> Result<(Arrivals, tokio::task::JoinHandle<()>)> {
    let subscriber = Subscriber::new(
        kafka,
        &format!("bench-reader-{}", uuid::Uuid::now_v7()),
        &[topic],
        true,
    )?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(record) = subscriber.recv().await {
            let at = Instant::now();
            let Some(id) = record
                .header(header::CORRELATION_ID)
                .and_then(|v| std::str::from_utf8(v).ok())
            else {
                continue;
            };
            if tx.send((id.to_owned(), at)).is_err() {
                break;
            }
        }
    });
    Ok((rx, task))
}

/// Produces every record at once, or paced at `rate` msg/s; returns when each send was
/// started, by id.
async fn produce_all(
    producer: &Arc<Producer>,
    batch: Vec<Prepared>,
    rate: Option<f64>,
) -> Result<HashMap<String, Instant>> {
    let mut tasks = Vec::with_capacity(batch.len());
    let start = tokio::time::Instant::now();
    for (i, prepared) in batch.into_iter().enumerate() {
        if let Some(rate) = rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        }
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            producer
                .send(prepared.record)
                .await
                .map(|_| (prepared.id, at))
        }));
    }
    let mut sent = HashMap::new();
    for task in tasks {
        let (id, at) = task.await??;
        sent.insert(id, at);
    }
    Ok(sent)
}

/// Waits until every id in `expected` arrived; returns the arrivals.
async fn arrivals(
    rx: &mut Arrivals,
    expected: &HashSet<String>,
) -> Result<HashMap<String, Instant>> {
    let mut seen = HashMap::new();
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while seen.len() < expected.len() {
        let Ok(Some((id, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("{} of {} results arrived", seen.len(), expected.len());
        };
        if expected.contains(&id) {
            seen.entry(id).or_insert(at);
        }
    }
    Ok(seen)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// One run of one variant: start it, warm up, time N, stop it.
#[allow(clippy::too_many_arguments)]
async fn run_once(
    label: &str,
    variant: Variant,
    kafka: &KafkaConfig,
    topics: &Topics,
    bounds: Bounds,
    producer: &Arc<Producer>,
    warmup: Vec<Prepared>,
    measured: Vec<Prepared>,
    rate: Option<f64>,
) -> Result<RunStats> {
    let pipeline = InProcess::start(variant, kafka, topics, bounds).await?;
    let (mut rx, reader) = spawn_reader(kafka, &topics.results)?;

    let warm_ids: HashSet<String> = warmup.iter().map(|p| p.id.clone()).collect();
    produce_all(producer, warmup, None).await?;
    arrivals(&mut rx, &warm_ids)
        .await
        .with_context(|| format!("{label}: warm-up"))?;

    let ids: HashSet<String> = measured.iter().map(|p| p.id.clone()).collect();
    let n = ids.len();
    let sent = produce_all(producer, measured, rate).await?;
    let arrived = arrivals(&mut rx, &ids)
        .await
        .with_context(|| format!("{label}: measured run"))?;
    reader.abort();
    let summary = pipeline.stop().await?;
    ensure!(
        summary.dead_lettered == 0,
        "{label}: {} requests were dead-lettered",
        summary.dead_lettered
    );

    let first = sent.values().min().context("nothing sent")?;
    let last = arrived.values().max().context("nothing arrived")?;
    let mut latencies: Vec<f64> = ids
        .iter()
        .map(|id| (arrived[id].saturating_duration_since(sent[id])).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let stats = RunStats {
        throughput: n as f64 / last.duration_since(*first).as_secs_f64(),
        p50_ms: percentile(&latencies, 50.0),
        p95_ms: percentile(&latencies, 95.0),
        p99_ms: percentile(&latencies, 99.0),
    };
    eprintln!(
        "{label}: {n} requests, {:.0} msg/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        stats.throughput, stats.p50_ms, stats.p95_ms, stats.p99_ms
    );
    Ok(stats)
}

/// Times `Processor::process` (and the plaintext baseline's) one request at a time: the
/// enclave's own cost per request, model round trip to the local server included, no Kafka.
async fn enclave_only(
    args: &Args,
    producing: &Producing,
    keys: &EnclaveKeys,
    provider: Arc<dyn zenvelope_enclave::providers::ModelProvider>,
    audit_sizes: Vec<usize>,
) -> Result<()> {
    use zenvelope_enclave::app::RequestProcessor;
    let n = args.requests;
    let sealed = producing.sealed("enclave-only", 0..n)?;
    let plain = producing.plain("enclave-only", 0..n);
    let processor = inprocess::real_processor(keys, provider.clone(), 1)?;
    let baseline = PlaintextBaseline::new(provider, audit_sizes)?;
    let mut report = Vec::new();
    for (label, batch) in [("baseline", &plain), ("encrypted", &sealed)] {
        let mut times = Vec::with_capacity(n);
        for prepared in batch {
            let request_id = *uuid::Uuid::parse_str(&prepared.id)?.as_bytes();
            let start = Instant::now();
            let outcome = if label == "encrypted" {
                processor
                    .process(request_id, &prepared.record.payload)
                    .await
            } else {
                baseline.process(request_id, &prepared.record.payload).await
            };
            times.push(start.elapsed().as_secs_f64() * 1e3);
            ensure!(
                outcome.result_envelope().is_some(),
                "{label}: no result ({:?})",
                outcome.reason_code()
            );
        }
        times.sort_by(f64::total_cmp);
        report.push(format!(
            "| {label} | {:.2} ms | {:.2} ms | {:.2} ms |",
            percentile(&times, 50.0),
            percentile(&times, 95.0),
            percentile(&times, 99.0)
        ));
    }
    println!();
    println!(
        "Enclave processing, {n} requests one at a time, {}:",
        args.crypto()
    );
    println!();
    println!("| variant | p50 | p95 | p99 |");
    println!("|---|---|---|---|");
    for line in report {
        println!("{line}");
    }
    Ok(())
}

/// The Kafka configuration of every client of a run on `tansu`.
fn kafka_config(tansu: &Tansu) -> KafkaConfig {
    let mut kafka = KafkaConfig::new(tansu.bootstrap_servers());
    // librdkafka's default long poll (500 ms) is not cut short by tansu when records
    // arrive, which quantises every arrival to half a second; every client of the run
    // (host consumer and result reader, both variants) polls every 10 ms instead.
    kafka
        .properties
        .insert(FETCH_WAIT_MAX_MS.to_owned(), "10".to_owned());
    kafka
}

async fn compare(args: &Args) -> Result<()> {
    let bits = args.rsa_bits;
    eprintln!(
        "Pipeline benchmark: {} requests x {} rounds per variant, {}, host/app in flight {}/{}.",
        args.requests,
        args.rounds,
        args.crypto(),
        args.host_in_flight,
        args.app_in_flight
    );
    let model = ModelServer::start().await?;
    let provider = inprocess::provider(&model.base_url())?;

    let fleet = FleetPrivateKey::generate("fleet", 1, bits)?;
    let result_signer = if args.result_rsa {
        SigningKey::generate("fleet-results", 1, bits)?
    } else {
        SigningKey::generate_ecdsa_p256("fleet-results", 1)?
    };
    let producer_signer = Arc::new(SigningKey::generate(PRODUCER_KEY_ID, 1, bits)?);
    let keys = EnclaveKeys {
        fleet_pkcs8: fleet.to_pkcs8_der()?.to_vec(),
        result_signer_pkcs8: result_signer.to_pkcs8_der()?.to_vec(),
        producer_spki: producer_signer.spki_der().to_vec(),
    };
    // PBKDF2 once, outside everything timed.
    let user = Arc::new(UserKey::derive_with_iterations(
        TENANT,
        USER,
        &Passphrase::new("benchmark passphrase"),
        100_000,
    )?);
    let fleet_public = Arc::new(Keyring::new().with(FleetPublicKey::from_spki_der(
        "fleet",
        1,
        fleet.public_key().spki_der(),
    )?)?);
    let producing = Producing {
        codec: SchemaCodec::offline()?,
        dek_session: DekSessionPolicy {
            max_messages: args.dek_session_messages,
            // Long enough that only the message bound ends a session in a run.
            max_age_ms: if args.dek_session_messages > 1 {
                600_000
            } else {
                0
            },
        },
        sealer_parts: (user, fleet_public, producer_signer),
        subject: MetadataKey::from_bytes([7; 32]).pseudonym(TENANT, USER),
    };
    let bounds = Bounds {
        host_max_in_flight: args.host_in_flight,
        app_max_in_flight: args.app_in_flight,
    };

    // One request through the real processor: checks it answers, and gives the sizes of
    // its audit events for the baseline.
    let probe = producing.sealed("probe", 0..1)?.remove(0);
    let request_id = *uuid::Uuid::parse_str(&probe.id)?.as_bytes();
    let processed = inprocess::real_processor(&keys, provider.clone(), 1)?
        .process(request_id, &probe.record.payload)
        .await;
    ensure!(
        processed.result_envelope().is_some(),
        "the real processor did not answer the probe: {:?}",
        processed.reason_code()
    );
    let audit_sizes: Vec<usize> = processed
        .audit_events
        .iter()
        .map(|e| e.as_bytes().len())
        .collect();
    eprintln!(
        "Probe: sealed request {} bytes, sealed result {} bytes, audit events {:?} bytes.",
        probe.record.payload.len(),
        processed.result_envelope().map_or(0, <[u8]>::len),
        audit_sizes
    );

    if args.enclave_only {
        return enclave_only(args, &producing, &keys, provider, audit_sizes).await;
    }

    let mut results: Vec<(&str, RunStats)> = Vec::new();
    for round in 0..args.rounds {
        for encrypted in [false, true] {
            let label = if encrypted { "encrypted" } else { "baseline" };
            // A fresh broker per run: tansu's sqlite store slows down as a run's records
            // accumulate, which would penalise whichever variant runs later.
            let tansu = Tansu::start()?;
            let kafka = kafka_config(&tansu);
            let producer = Arc::new(Producer::new(&kafka)?);
            let topics = Topics::unique(label);
            topics.create(&kafka, 4).await?;
            let n = args.requests;
            let (variant, warmup, measured) = if encrypted {
                let sealing = Instant::now();
                let warmup = producing.sealed(&topics.requests, 0..WARMUP)?;
                let measured = producing.sealed(&topics.requests, WARMUP..WARMUP + n)?;
                eprintln!(
                    "Round {round}: sealed {} requests in {:.1} s (not timed).",
                    n + WARMUP,
                    sealing.elapsed().as_secs_f64()
                );
                let processor =
                    inprocess::real_processor(&keys, provider.clone(), bounds.app_max_in_flight)?;
                (Variant::Encrypted(processor), warmup, measured)
            } else {
                let warmup = producing.plain(&topics.requests, 0..WARMUP);
                let measured = producing.plain(&topics.requests, WARMUP..WARMUP + n);
                let baseline = PlaintextBaseline::new(provider.clone(), audit_sizes.clone())?;
                (Variant::Baseline(Box::new(baseline)), warmup, measured)
            };
            let stats = run_once(
                &format!("round {round} {label}"),
                variant,
                &kafka,
                &topics,
                bounds,
                &producer,
                warmup,
                measured,
                args.rate,
            )
            .await?;
            results.push((label, stats));
        }
    }

    let of = |label: &str, f: fn(&RunStats) -> f64| {
        median(
            results
                .iter()
                .filter(|(l, _)| *l == label)
                .map(|(_, s)| f(s))
                .collect(),
        )
    };
    let row = |label: &str| {
        format!(
            "| {label} | {:.0} msg/s | {:.1} ms | {:.1} ms | {:.1} ms |",
            of(label, |s| s.throughput),
            of(label, |s| s.p50_ms),
            of(label, |s| s.p95_ms),
            of(label, |s| s.p99_ms)
        )
    };
    println!();
    println!(
        "Medians of {} rounds, {} requests each, {}, host/app in flight {}/{}:",
        args.rounds,
        args.requests,
        args.crypto(),
        args.host_in_flight,
        args.app_in_flight
    );
    println!();
    println!("| variant | throughput | p50 | p95 | p99 |");
    println!("|---|---|---|---|---|");
    println!("{}", row("baseline"));
    println!("{}", row("encrypted"));
    println!();
    let ratio = of("encrypted", |s| s.throughput) / of("baseline", |s| s.throughput);
    let added_p99 = of("encrypted", |s| s.p99_ms) - of("baseline", |s| s.p99_ms);
    println!(
        "Throughput encrypted/baseline: {ratio:.2}x (target >= 0.9x: {}).",
        if ratio >= 0.9 { "met" } else { "not met" }
    );
    println!(
        "Added p99: {added_p99:.1} ms (target <= 2 ms: {}).",
        if added_p99 <= 2.0 { "met" } else { "not met" }
    );
    println!();
    println!("Every round:");
    for (label, s) in &results {
        println!(
            "- {label}: {:.0} msg/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            s.throughput, s.p50_ms, s.p95_ms, s.p99_ms
        );
    }
    Ok(())
}

/// A `Vm*:` line of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The value of an unlabelled metric in a Prometheus exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn in_flight(
    counts: &[usize],
    model_latency_ms: u64,
    host_bound: Option<usize>,
) -> Result<()> {
    let mut rows = Vec::new();
    for &n in counts {
        let host = host_bound.map_or(n, |b| n.min(b));
        let app = host.min(APP_IN_FLIGHT_CAP);
        let pipeline = Pipeline::start(Options {
            host_max_in_flight: host,
            app_max_in_flight: app,
            egress_max_streams: app + 64,
            provider_attempt_timeout_ms: 60_000,
            // Info for the start-up lines the harness waits for; warnings otherwise.
            log_filter: "warn,zenvelope_enclave=info".to_owned(),
            ..Options::default()
        })
        .await?;
        pipeline
            .model
            .set_latency(Duration::from_millis(model_latency_ms));
        let app_pid = pipeline.app_pid().context("no enclave-app")?;
        let host_pid = pipeline.host_pid().context("no enclave-host")?;
        let idle = (
            proc_status_kib(app_pid, "VmHWM:").unwrap_or(0),
            proc_status_kib(host_pid, "VmHWM:").unwrap_or(0),
        );
        let sealing = Instant::now();
        let requests = (0..n)
            .map(|i| pipeline.seal_text(&prompt(i)))
            .collect::<Result<Vec<_>>>()?;
        eprintln!(
            "{n} in flight: sealed {n} requests in {:.1} s (not timed); idle VmHWM app {} KiB, host {} KiB.",
            sealing.elapsed().as_secs_f64(),
            idle.0,
            idle.1
        );
        let ids: HashSet<String> = requests.iter().map(|r| r.message_id.clone()).collect();

        // The host's in-flight gauge, sampled while the run lasts.
        let peak_in_flight = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let produced = futures_util::stream::iter(requests.iter())
            .map(|r| pipeline.produce(r))
            .buffer_unordered(512)
            .collect::<Vec<_>>();
        let sampling = async {
            loop {
                if let Ok(text) = pipeline.metrics_text().await
                    && let Some(v) = metric(&text, "zenvelope_runtime_in_flight")
                {
                    peak_in_flight.fetch_max(v as u64, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let run = async {
            for r in produced.await {
                r?;
            }
            let produced_in = start.elapsed();
            let records = pipeline.read_topic(topic::RESULTS, n, RUN_TIMEOUT).await?;
            anyhow::Ok((produced_in, records))
        };
        let (produced_in, records) = tokio::select! {
            r = run => r?,
            _ = sampling => bail!("the metrics sampler stopped"),
        };
        let total = start.elapsed();
        let mut answered = HashSet::new();
        let mut errors = 0;
        for record in &records {
            if record.header(header::KIND) != Some(Kind::Result.symbol().as_bytes()) {
                errors += 1;
            }
            if let Some(id) = record
                .header(header::CORRELATION_ID)
                .and_then(|v| std::str::from_utf8(v).ok())
                && ids.contains(id)
            {
                answered.insert(id.to_owned());
            }
        }
        let app_hwm = proc_status_kib(app_pid, "VmHWM:").unwrap_or(0);
        let host_hwm = proc_status_kib(host_pid, "VmHWM:").unwrap_or(0);
        let metrics = pipeline.metrics_text().await.unwrap_or_default();
        let retries = metric(&metrics, "zenvelope_host_enclave_retries_total").unwrap_or(0.0);
        let peak = peak_in_flight.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{n} in flight: {} of {n} answered ({errors} not RESULT) in {:.1} s (produced in {:.1} s); peak host in flight {peak}; enclave BUSY/retries {retries}; VmHWM app {app_hwm} KiB, host {host_hwm} KiB.",
            answered.len(),
            total.as_secs_f64(),
            produced_in.as_secs_f64()
        );
        rows.push(format!(
            "| {n} ({host}) | {app} | {}/{n} | {:.1} s | {peak} | {retries:.0} | {:.0} MiB ({:.0}) | {:.0} MiB ({:.0}) |",
            answered.len(),
            total.as_secs_f64(),
            app_hwm as f64 / 1024.0,
            idle.0 as f64 / 1024.0,
            host_hwm as f64 / 1024.0,
            idle.1 as f64 / 1024.0,
        ));
        ensure!(
            answered.len() == n,
            "only {} of {n} requests were answered",
            answered.len()
        );
    }
    println!();
    println!("Model latency {model_latency_ms} ms; every request produced at once.");
    println!();
    println!(
        "| requests (host max in flight) | app max in flight | answered | total time | peak host in flight (sampled) | host retries (enclave BUSY) | enclave-app VmHWM (idle) | enclave-host VmHWM (idle) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
