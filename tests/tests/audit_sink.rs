//! The `audit-sink` service against tansu: killed with SIGKILL while it appends, restarted,
//! and the log then holds every event exactly once, verifies, and its checkpoints are on
//! the topic. A record that is not an audit event goes to the DLQ with its reason.
//!
//! The cross-check against the same kind of setup: clean after the sink stored
//! everything, and naming the one event produced while the sink was stopped, both
//! through the library and through `zenvelope audit cross-check --json`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures_util::future::try_join_all;
use serde_json::Value;
use zenvelope_audit::cross_check::{self, Finding, TopicPosition};
use zenvelope_audit::note::{Checkpoint, Verifier};
use zenvelope_audit::store::{AuditStore, EmbeddedStore};
use zenvelope_runtime::{KafkaConfig, Outbound, Producer, RangeReader, ReadFrom, ReadTo};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{AuditEvent, AuditOperation, Outcome, SchemaCodec, Subject};
use zenvelope_tests::{OutputLog, Tansu, workspace_binary};

/// Events produced before the sink starts.
const EVENTS: usize = 20_000;
/// The sink is killed once the store holds at least this many.
const KILL_AT: u64 = 2_000;
const ORIGIN: &str = "audit.test.example/zenvelope";

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::now_v7(),
        occurred_at_ms: 1_700_000_000_000 + i as i64,
        tenant: "clinic-a".to_owned(),
        subject: format!("sp1_subject_{}", i % 50),
        operation: AuditOperation::RequestOpened,
        message_id: Some(uuid::Uuid::now_v7()),
        correlation_id: None,
        actor: "enclave-app".to_owned(),
        outcome: Outcome::Success,
        reason_code: None,
        enclave_measurement: None,
        key_id: None,
        key_version: None,
        request_sha256: Some("ab".repeat(32)),
        result_sha256: None,
        disclosure: None,
    }
}

fn start_sink(bin: &std::path::Path, config: &std::path::Path, log: &OutputLog) -> Result<Child> {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start audit-sink")?;
    log.capture("audit-sink", &mut child);
    Ok(child)
}

/// Starts tansu with the sink's topics, one partition each.
async fn broker() -> Result<(Tansu, KafkaConfig)> {
    let tansu = Tansu::start()?;
    let kafka = KafkaConfig::new(tansu.bootstrap_servers());
    zenvelope_runtime::ensure_topics(
        &kafka,
        &[(topic::AUDIT, 1), (topic::CHECKPOINTS, 1), (topic::DLQ, 1)],
    )
    .await?;
    Ok((tansu, kafka))
}

/// Makes the checkpoint key as an operator does; returns the key file, the verifier key
/// file and the verifier.
fn new_key(bin: &Path, dir: &Path) -> Result<(PathBuf, PathBuf, Verifier)> {
    let (key, vkey) = (dir.join("audit.key"), dir.join("audit.vkey"));
    let out = Command::new(bin)
        .args(["--new-key", ORIGIN, "--key-file"])
        .arg(&key)
        .arg("--vkey-file")
        .arg(&vkey)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verifier = Verifier::from_vkey(std::fs::read_to_string(&vkey)?.trim())?;
    Ok((key, vkey, verifier))
}

/// Writes the sink's configuration; a checkpoint every `every_events` events or 500 ms.
fn write_config(
    dir: &Path,
    tansu: &Tansu,
    store: &Path,
    key: &Path,
    group: &str,
    every_events: u64,
) -> Result<PathBuf> {
    let config = dir.join("audit-sink.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[consumer]
group_id = "{group}"
topics = ["{audit}"]
max_in_flight = 1024

[store]
backend = "embedded"
path = "{store}"

[checkpoint]
origin = "{ORIGIN}"
signing_key_file = "{key}"
every_events = {every_events}
every_ms = 500
"#,
            bootstrap = tansu.bootstrap_servers(),
            audit = topic::AUDIT,
            store = store.display(),
            key = key.display(),
        ),
    )?;
    Ok(config)
}

/// A running `audit-sink` on a fresh embedded store.
struct Sink {
    child: Child,
    /// The store, opened once the sink created it.
    store: EmbeddedStore,
    store_path: PathBuf,
    /// Its configuration, to start it again.
    config: PathBuf,
    log: OutputLog,
}

impl Sink {
    /// Writes the configuration (see [`write_config`]), starts the sink and waits until
    /// it has created its store.
    async fn start(
        bin: &Path,
        dir: &Path,
        tansu: &Tansu,
        key: &Path,
        group: &str,
        every_events: u64,
    ) -> Result<Sink> {
        let store_path = dir.join("audit.db");
        let config = write_config(dir, tansu, &store_path, key, group, every_events)?;
        let log = OutputLog::default();
        let child = start_sink(bin, &config, &log)?;
        let started = Instant::now();
        while !store_path.exists() {
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no store file: {}",
                log.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Sink {
            child,
            store: EmbeddedStore::open(&store_path)?,
            store_path,
            config,
            log,
        })
    }
}

/// Stops the sink with SIGTERM (it signs a final checkpoint) and checks it exited cleanly.
fn stop_sink(mut sink: Child, log: &OutputLog) -> Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(sink.id().to_string())
        .status()?;
    ensure!(status.success(), "kill -TERM failed");
    let exit = sink.wait()?;
    ensure!(
        exit.success(),
        "audit-sink exited with {exit}: {}",
        log.text_for("audit-sink")
    );
    Ok(())
}

async fn wait_for_size(store: &EmbeddedStore, at_least: u64, child: &mut Child) -> Result<u64> {
    let started = Instant::now();
    loop {
        let size = store.size().await?;
        if size >= at_least {
            return Ok(size);
        }
        if let Some(status) = child.try_wait()? {
            bail!("audit-sink exited early ({status}) at size {size}");
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the store holds {size} events after 180 s, expected {at_least}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_all(kafka: &KafkaConfig, topic: &str) -> Result<Vec<zenvelope_runtime::Inbound>> {
    let mut reader =
        RangeReader::open(kafka, topic, ReadFrom::Beginning, ReadTo::Watermark).await?;
    let mut out = Vec::new();
    while let Some(record) = reader.next().await? {
        out.push(record);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sink_loses_nothing_and_doubles_nothing() -> Result<()> {
    let (tansu, kafka) = broker().await?;
    let dir = tempfile::tempdir()?;
    let bin = workspace_binary("zenvelope-audit", "audit-sink")?;

    let (key, _vkey, verifier) = new_key(&bin, dir.path())?;

    // The events, and one record that is not an audit event.
    let codec = SchemaCodec::offline()?;
    let producer = Producer::new(&kafka)?;
    let mut ids = HashSet::new();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(1_000) {
        let mut sends = Vec::new();
        for &i in chunk {
            let e = event(i);
            ids.insert(e.event_id);
            let value = codec.encode(Subject::AuditValue, &e).await?;
            sends.push(producer.send(Outbound::new(
                topic::AUDIT,
                Some(e.subject.into_bytes()),
                value,
            )));
            if i == EVENTS / 2 {
                sends.push(producer.send(Outbound::new(topic::AUDIT, None, b"not avro".to_vec())));
            }
        }
        try_join_all(sends).await?;
    }

    let Sink {
        child: mut sink,
        store: reader,
        store_path: _,
        config,
        log,
    } = Sink::start(&bin, dir.path(), &tansu, &key, "audit-sink-kill-test", 2000).await?;
    // Once the sink is appending, SIGKILL it mid-stream.
    let at_kill = wait_for_size(&reader, KILL_AT, &mut sink).await?;
    sink.kill()?;
    sink.wait()?;
    ensure!(
        (at_kill as usize) < EVENTS,
        "the sink finished before it could be killed ({at_kill} events)"
    );

    // Restarted: it resumes from the committed offsets and skips what it already holds.
    let mut sink = start_sink(&bin, &config, &log)?;
    let size = wait_for_size(&reader, EVENTS as u64, &mut sink).await?;
    // Graceful stop: the last checkpoint covers everything.
    stop_sink(sink, &log)?;

    // Nothing lost, nothing doubled, the log verifies.
    ensure!(
        size == EVENTS as u64,
        "the store holds {size} rows for {EVENTS} events"
    );
    let rows = reader.read_range(0, size).await?;
    let stored: HashSet<_> = rows.iter().map(|r| r.record.event_id).collect();
    ensure!(stored.len() == rows.len(), "an event id is stored twice");
    ensure!(
        stored == ids,
        "the stored events differ from the produced ones"
    );
    let report =
        zenvelope_audit::verify::verify(&reader, &codec, &verifier, None, |_, _| {}).await?;
    ensure!(report.is_clean(), "problems: {:?}", report.problems);
    ensure!(
        report.covered_size == EVENTS as u64,
        "the final checkpoint covers {} of {EVENTS}",
        report.covered_size
    );

    // The checkpoints are on the topic, signed, and the newest is the store's.
    let notes = read_all(&kafka, topic::CHECKPOINTS).await?;
    let last = notes.last().context("no checkpoint on the topic")?;
    let cp = Checkpoint::open(std::str::from_utf8(&last.payload)?, &verifier)?;
    ensure!(
        cp.size == EVENTS as u64 && hex::encode(cp.root) == report.root,
        "newest published checkpoint: size {}",
        cp.size
    );

    // The malformed record is in the DLQ with its reason, not silently dropped.
    let dead = read_all(&kafka, topic::DLQ).await?;
    let reasons: Vec<_> = dead
        .iter()
        .filter_map(|r| r.header(header::REASON))
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    ensure!(
        reasons.iter().any(|r| r == "malformed_audit_event"),
        "DLQ reasons: {reasons:?}"
    );
    Ok(())
}

/// Events produced for the cross-check test.
const CROSS_CHECK_EVENTS: usize = 40;

/// Runs `zenvelope audit cross-check` with `extra` arguments.
fn cross_check_cli(
    cli: &Path,
    tansu: &Tansu,
    store: &Path,
    vkey: &Path,
    extra: &[&str],
) -> Result<std::process::Output> {
    Ok(Command::new(cli)
        .args(["audit", "cross-check", "--idle-timeout-secs", "10"])
        .args(["--bootstrap", &tansu.bootstrap_servers()])
        .arg("--store")
        .arg(store)
        .arg("--vkey-file")
        .arg(vkey)
        .args(extra)
        .output()?)
}

/// Runs `zenvelope audit cross-check --json`; returns the exit code and the report.
fn cross_check_json(
    cli: &Path,
    tansu: &Tansu,
    store: &Path,
    vkey: &Path,
) -> Result<(Option<i32>, Value)> {
    let out = cross_check_cli(cli, tansu, store, vkey, &["--json"])?;
    let report = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "no JSON report (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), report))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_check_names_an_event_the_sink_did_not_store() -> Result<()> {
    let started = Instant::now();
    let (tansu, kafka) = broker().await?;
    let dir = tempfile::tempdir()?;
    let bin = workspace_binary("zenvelope-audit", "audit-sink")?;
    let cli = workspace_binary("zenvelope-cli", "zenvelope")?;
    let (key, vkey, verifier) = new_key(&bin, dir.path())?;

    // The events, one of them twice (a redelivery), and a record that is not an event.
    let codec = Arc::new(SchemaCodec::offline()?);
    let producer = Producer::new(&kafka)?;
    let mut values = Vec::new();
    for i in 0..CROSS_CHECK_EVENTS {
        values.push(codec.encode(Subject::AuditValue, &event(i)).await?);
    }
    values.push(values[0].clone());
    values.push(b"not avro".to_vec());
    for value in values {
        producer
            .send(Outbound::new(topic::AUDIT, None, value))
            .await?;
    }

    let Sink {
        child: mut sink,
        store,
        store_path,
        config: _,
        log,
    } = Sink::start(&bin, dir.path(), &tansu, &key, "cross-check-test", 10).await?;
    wait_for_size(&store, CROSS_CHECK_EVENTS as u64, &mut sink).await?;
    stop_sink(sink, &log)?;

    // Everything stored: clean, redelivery and malformed record counted, every
    // checkpoint on the topic matches.
    let options = cross_check::Options {
        idle_timeout: Duration::from_secs(10),
        ..cross_check::Options::default()
    };
    let run = || {
        cross_check::run(
            &kafka,
            &store,
            Arc::clone(&codec),
            verifier.clone(),
            &options,
            |_, _, _| {},
        )
    };
    let report = run().await?;
    ensure!(report.is_clean(), "findings: {:?}", report.findings);
    ensure!(
        report.topic_events == CROSS_CHECK_EVENTS as u64
            && report.store_rows == CROSS_CHECK_EVENTS as u64
            && report.matched == CROSS_CHECK_EVENTS as u64
            && report.redeliveries == 1
            && report.malformed_on_topic == 1,
        "{report:?}"
    );
    ensure!(
        report.checkpoints_matched >= 1
            && report.checkpoint_problems == 0
            && report.checkpoint_covered_size == CROSS_CHECK_EVENTS as u64,
        "{report:?}"
    );
    let (code, json) = cross_check_json(&cli, &tansu, &store_path, &vkey)?;
    ensure!(
        code == Some(0) && json["clean"] == true,
        "exit {code:?}: {json}"
    );

    // One more event while the sink is stopped: named, with its offset.
    let late = event(CROSS_CHECK_EVENTS);
    let value = codec.encode(Subject::AuditValue, &late).await?;
    let (partition, offset) = producer
        .send(Outbound::new(topic::AUDIT, None, value))
        .await?;
    let report = run().await?;
    let wanted = [Finding::MissingFromStore {
        event_id: late.event_id,
        at: TopicPosition { partition, offset },
    }];
    ensure!(report.findings == wanted, "findings: {:?}", report.findings);
    ensure!(!report.is_clean() && report.missing_from_store == 1);
    let (code, json) = cross_check_json(&cli, &tansu, &store_path, &vkey)?;
    let finding = &json["findings"][0];
    ensure!(
        code == Some(1)
            && finding["kind"] == "missing_from_store"
            && finding["event_id"] == late.event_id.to_string()
            && finding["at"]["offset"] == offset,
        "exit {code:?}: {json}"
    );
    // The human report names the event and says how to tell a lagging sink from a loss.
    let out = cross_check_cli(&cli, &tansu, &store_path, &vkey, &[])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(1)
            && text.contains(&late.event_id.to_string())
            && text.contains("run again once the sink has caught up"),
        "exit {:?}: {text}",
        out.status.code()
    );
    eprintln!("{text}");
    eprintln!("cross-check test took {:?}", started.elapsed());
    Ok(())
}
