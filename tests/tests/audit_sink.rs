//! The `audit-sink` service against tansu: killed with SIGKILL while it appends, restarted,
//! and the log then holds every event exactly once, verifies, and its checkpoints are on
//! the topic. A record that is not an audit event goes to the DLQ with its reason.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures_util::future::try_join_all;
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
    let tansu = Tansu::start()?;
    let kafka = KafkaConfig::new(tansu.bootstrap_servers());
    zenvelope_runtime::ensure_topics(
        &kafka,
        &[(topic::AUDIT, 1), (topic::CHECKPOINTS, 1), (topic::DLQ, 1)],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let bin = workspace_binary("zenvelope-audit", "audit-sink")?;

    // The checkpoint key, as an operator makes it.
    let (key, vkey) = (dir.path().join("audit.key"), dir.path().join("audit.vkey"));
    let out = Command::new(&bin)
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

    let store_path = dir.path().join("audit.db");
    let config = dir.path().join("audit-sink.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"

[consumer]
group_id = "audit-sink-kill-test"
topics = ["{audit}"]
max_in_flight = 1024

[store]
backend = "embedded"
path = "{store}"

[checkpoint]
origin = "{ORIGIN}"
signing_key_file = "{key}"
every_events = 2000
every_ms = 500
"#,
            bootstrap = tansu.bootstrap_servers(),
            audit = topic::AUDIT,
            store = store_path.display(),
            key = key.display(),
        ),
    )?;

    let log = OutputLog::default();
    let mut sink = start_sink(&bin, &config, &log)?;
    // Wait until the file exists and the sink is appending, then SIGKILL it mid-stream.
    let started = Instant::now();
    while !store_path.exists() {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no store file: {}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reader = EmbeddedStore::open(&store_path)?;
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
