//! End to end on real parts: tansu (Kafka protocol), moto (KMS), a model server speaking
//! the OpenAI and Anthropic formats, and the `enclave-host` / `enclave-app` binaries as
//! child processes. Requests are sealed by a producer, answers are opened by the user.
//!
//! The services log at debug level, and every test that sends a plaintext canary checks
//! that it never appears in their output, on the audit or DLQ topics, in the raw result
//! bytes, or in the host's metrics.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use zenvelope_envelope::Kind;
use zenvelope_schemas::names::topic;
use zenvelope_schemas::{AuditEvent, DeadLetter};
use zenvelope_tests::model_server::Fault;
use zenvelope_tests::pipeline::{Api, Options, Pipeline};

const CANARY: &str = "CANARY-PHI-5f1c9e";
const WAIT: Duration = Duration::from_secs(90);

fn prompt(n: usize) -> String {
    format!(
        "Journal entry {n}: slept badly, anxious about the appointment. Patient {CANARY}. REQ-{n}"
    )
}

/// Everything observable outside the user's side and the model must be free of the canary.
async fn assert_no_canary(pipeline: &Pipeline) -> Result<()> {
    let logs = pipeline.logs.text();
    ensure!(
        !logs.is_empty(),
        "the services logged nothing: the check would be vacuous"
    );
    ensure!(
        !logs.contains(CANARY),
        "the canary appears in the service logs"
    );
    for topic in [topic::AUDIT, topic::DLQ, topic::RESULTS] {
        for record in pipeline
            .read_topic(topic, usize::MAX, Duration::from_secs(3))
            .await?
        {
            let hit = |bytes: &[u8]| bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes());
            ensure!(!hit(&record.payload), "the canary appears on {topic}");
            ensure!(
                !record.headers.iter().any(|(_, v)| hit(v)),
                "the canary appears in a header on {topic}"
            );
        }
    }
    let metrics = pipeline.metrics_text().await?;
    ensure!(
        metrics.contains("zenvelope_"),
        "the metrics endpoint shows no zenvelope metric: the check would be vacuous"
    );
    ensure!(
        !metrics.contains(CANARY),
        "the canary appears in the metrics"
    );
    Ok(())
}

async fn produce_prompts(
    pipeline: &Pipeline,
    range: std::ops::Range<usize>,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in range {
        let request = pipeline.seal_text(&prompt(n))?;
        pipeline.produce(&request).await?;
        ids.push(request.message_id);
    }
    Ok(ids)
}

async fn expect_answers(pipeline: &Pipeline, ids: &[String], first: usize) -> Result<usize> {
    let (answers, duplicates) = pipeline.collect_answers(ids, WAIT).await?;
    ensure!(
        answers.len() == ids.len(),
        "{} of {} requests answered; logs:\n{}",
        answers.len(),
        ids.len(),
        pipeline.logs.text()
    );
    for (i, id) in ids.iter().enumerate() {
        let answer = &answers[id];
        ensure!(
            answer.kind == Kind::Result,
            "request {i} got {:?}",
            answer.kind
        );
        ensure!(
            answer.text == format!("ANSWER-{}", first + i),
            "request {} got the answer {:?}",
            first + i,
            answer.text
        );
    }
    Ok(duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_requests_get_sealed_answers_through_openai() -> Result<()> {
    let pipeline = Pipeline::start(Options::default()).await?;
    let ids = produce_prompts(&pipeline, 0..24).await?;
    expect_answers(&pipeline, &ids, 0).await?;
    ensure!(
        pipeline.model.calls() == 24,
        "model calls: {}",
        pipeline.model.calls()
    );

    // Two audit events per answered request (opened + disclosure receipt), none with PHI.
    let audit = pipeline.read_topic(topic::AUDIT, 48, WAIT).await?;
    ensure!(audit.len() >= 48, "{} audit events", audit.len());
    let mut disclosed = BTreeSet::new();
    for record in &audit {
        let event: AuditEvent = pipeline.codec.decode(&record.payload).await?;
        if let Some(d) = &event.disclosure {
            ensure!(d.provider == "openai", "disclosure to {:?}", d.provider);
            disclosed.insert(
                event
                    .message_id
                    .context("receipt without a message id")?
                    .to_string(),
            );
        }
    }
    ensure!(
        ids.iter().all(|id| disclosed.contains(id)),
        "not every request has a disclosure receipt"
    );
    ensure!(
        pipeline
            .read_topic(topic::DLQ, 1, Duration::from_secs(2))
            .await?
            .is_empty(),
        "good requests reached the DLQ"
    );
    assert_no_canary(&pipeline).await
}

/// A client built only from the spec (the Python implementation in tests/interop/python)
/// and librdkafka's Python binding, not from this repository's Rust code, seals requests,
/// produces them, and verifies and opens the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_python_client_gets_verified_answers() -> Result<()> {
    let pipeline = Pipeline::start(Options::default()).await?;
    let report = pipeline
        .run_independent_client(&["--requests", "4", "--timeout", "90"])
        .await?;
    ensure!(report["sent"] == 4, "{report}");
    let requests = report["requests"].as_object().context("requests")?;
    let answered = report["answered"].as_object().context("answered")?;
    ensure!(answered.len() == 4, "{report}");
    for (id, n) in requests {
        let answer = &answered[id];
        ensure!(answer["kind"] == "RESULT", "{answer}");
        ensure!(
            answer["output"] == format!("ANSWER-{n}").as_str(),
            "request {n} got {answer}"
        );
        ensure!(answer["provider"] == "openai", "{answer}");
    }
    ensure!(
        report["rejected"].as_array().is_some_and(Vec::is_empty),
        "records the client could not verify or open: {report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_requests_get_sealed_answers_through_anthropic() -> Result<()> {
    let pipeline = Pipeline::start(Options {
        api: Api::Anthropic,
        ..Options::default()
    })
    .await?;
    let ids = produce_prompts(&pipeline, 100..106).await?;
    let (answers, _) = pipeline.collect_answers(&ids, WAIT).await?;
    ensure!(answers.len() == 6, "{} answers", answers.len());
    for (i, id) in ids.iter().enumerate() {
        let answer = &answers[id];
        ensure!(
            answer.text == format!("ANSWER-{}", 100 + i),
            "{:?}",
            answer.text
        );
        ensure!(
            answer
                .provider
                .as_ref()
                .is_some_and(|(p, _)| p == "anthropic"),
            "provider {:?}",
            answer.provider
        );
    }
    assert_no_canary(&pipeline).await
}

/// Reads the DLQ until `count` dead letters arrived; returns them decoded.
async fn dead_letters(pipeline: &Pipeline, count: usize) -> Result<Vec<DeadLetter>> {
    let mut letters = Vec::new();
    for record in pipeline.read_topic(topic::DLQ, count, WAIT).await? {
        letters.push(pipeline.codec.decode::<DeadLetter>(&record.payload).await?);
    }
    Ok(letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_goes_to_the_dlq_with_a_reason_and_the_service_stays_up() -> Result<()> {
    let pipeline = Pipeline::start(Options {
        host_max_message_bytes: 64 * 1024,
        ..Options::default()
    })
    .await?;
    let key = pipeline.subject().as_bytes().to_vec();

    let mut tampered = pipeline.seal_text(&prompt(1))?.value;
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let wrong_tenant = pipeline.seal_with(&prompt(2), |f| f.tenant = "other-clinic".into())?;
    let unsigned = pipeline.seal_unsigned(&prompt(3))?;
    let replayed = pipeline.seal_dated(&prompt(4), Duration::from_secs(3600))?;
    // (No canary here: the DLQ keeps what was produced byte for byte, and a producer that
    // writes plaintext to the topic has already disclosed it.)
    let garbage = b"not an envelope".to_vec();
    let oversized = vec![0x42; 100 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad_signature", tampered),
        ("tenant_not_allowed", wrong_tenant.value),
        ("unsigned", unsigned.value),
        ("stale", replayed.value),
        ("wrong_magic_byte", garbage),
        ("oversized", oversized),
    ];
    for (_, value) in &cases {
        pipeline.produce_raw(&key, value.clone()).await?;
    }
    // A good request after all of that, and its exact replay (same bytes again).
    let good = pipeline.seal_text(&prompt(7))?;
    pipeline.produce(&good).await?;
    pipeline.produce(&good).await?;

    let letters = dead_letters(&pipeline, cases.len()).await?;
    ensure!(
        letters.len() == cases.len(),
        "{} dead letters: {:?}",
        letters.len(),
        letters.iter().map(|l| &l.reason_code).collect::<Vec<_>>()
    );
    // Records of one key are processed concurrently, so dead letters come in any order:
    // each is matched by the bytes it carries (the oversized one may carry none).
    for (reason, value) in &cases {
        let letter = letters
            .iter()
            .find(|l| l.original_value == *value)
            .or_else(|| {
                letters
                    .iter()
                    .find(|l| l.reason_code == "oversized" && *reason == "oversized")
            })
            .with_context(|| format!("no dead letter for the {reason} case"))?;
        ensure!(
            letter.reason_code == *reason,
            "expected {reason}, got {} ({})",
            letter.reason_code,
            letter.reason_detail
        );
        ensure!(
            letter.original_topic == topic::REQUESTS,
            "{}",
            letter.original_topic
        );
        ensure!(
            letter.original_value == *value || letter.reason_code == "oversized",
            "the dead letter for {reason} does not carry the original bytes"
        );
        ensure!(!letter.reason_detail.is_empty(), "no detail for {reason}");
    }

    // The service stayed up: the good request is answered, once by the model, and its
    // replay gets the same sealed answer without a second model call.
    let results = pipeline.read_topic(topic::RESULTS, 2, WAIT).await?;
    ensure!(results.len() == 2, "{} results", results.len());
    ensure!(
        results[0].payload == results[1].payload,
        "the replay got a different answer"
    );
    let answer = pipeline.open_answer(&results[0].payload).await?;
    ensure!(
        answer.correlation_id == good.message_id && answer.text == "ANSWER-7",
        "{answer:?}"
    );
    ensure!(
        pipeline.model.calls() == 1,
        "model calls: {}",
        pipeline.model.calls()
    );

    // Every offset moved on: the group's committed offsets cover all 8 records.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let committed = zenvelope_runtime::committed_offsets(
            &pipeline.kafka,
            "zenvelope-enclave-host",
            topic::REQUESTS,
        )
        .await?;
        let total: i64 = committed.values().map(|o| o.unwrap_or(0)).sum();
        if total == 8 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "committed offsets stay at {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_no_canary(&pipeline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_loses_nothing_and_the_enclave_dedupes() -> Result<()> {
    // Offsets are committed rarely, so the kill certainly leaves answered requests
    // uncommitted and the restarted host sends them again.
    let mut pipeline = Pipeline::start(Options {
        host_commit_interval_ms: 60_000,
        ..Options::default()
    })
    .await?;
    let latency = Duration::from_millis(300);
    pipeline.model.set_latency(latency);
    let ids = produce_prompts(&pipeline, 0..30).await?;
    // Kill the host (SIGKILL: no drain, no commit) once some answers are out. A model call
    // still in flight would die with the host's egress proxy and rightly be made again
    // after the restart, so the kill waits until every call was answered (the server
    // counts a call on arrival and answers a latency later): then the count below shows
    // that redelivered requests cost no second call.
    let deadline = tokio::time::Instant::now() + WAIT;
    while pipeline.model.calls() < 30 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the model was not called 30 times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(latency + Duration::from_millis(200)).await;
    let early = pipeline.read_topic(topic::RESULTS, 5, WAIT).await?;
    ensure!(early.len() == 5, "only {} early answers", early.len());
    pipeline.kill_host()?;
    pipeline.start_host()?;
    let duplicates = expect_answers(&pipeline, &ids, 0).await?;
    // The new host gets the partitions once the killed member's session expires, and
    // sends the uncommitted requests again; the enclave answers them from its cache.
    let deadline = tokio::time::Instant::now() + WAIT;
    // (Log fields are ANSI-coloured: match the message and the value.)
    while !pipeline
        .logs
        .text_for("enclave-app")
        .lines()
        .any(|l| l.contains("Request handled.") && l.contains("\"duplicate\""))
    {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no redelivered request reached the enclave's duplicate cache"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Redelivered requests were answered from the enclave's cache: one model call each.
    ensure!(
        pipeline.model.calls() == 30,
        "model calls: {}",
        pipeline.model.calls()
    );

    // Kill the enclave too: the host waits for it and nothing is dead-lettered.
    pipeline.kill_app()?;
    let more = produce_prompts(&pipeline, 30..36).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pipeline.start_app()?;
    expect_answers(&pipeline, &more, 30).await?;
    ensure!(
        pipeline
            .read_topic(topic::DLQ, 1, Duration::from_secs(2))
            .await?
            .is_empty(),
        "an outage sent requests to the DLQ"
    );
    eprintln!("duplicates seen by the subscriber after the host was killed: {duplicates}");
    assert_no_canary(&pipeline).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() -> Result<()> {
    let mut pipeline = Pipeline::start(Options::default()).await?;
    let first = produce_prompts(&pipeline, 0..5).await?;
    expect_answers(&pipeline, &first, 0).await?;
    pipeline.tansu.restart()?;
    let second = produce_prompts(&pipeline, 5..10).await?;
    expect_answers(&pipeline, &second, 5).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_are_retried_or_answered_with_a_sealed_error() -> Result<()> {
    let pipeline = Pipeline::start(Options {
        provider_attempts: 3,
        provider_attempt_timeout_ms: 1_000,
        ..Options::default()
    })
    .await?;
    let cases: Vec<(Vec<Fault>, Kind, u64)> = vec![
        // 429 then 500, then success on the third attempt.
        (
            vec![Fault::Status(429), Fault::Status(500)],
            Kind::Result,
            3,
        ),
        // A timeout, then success.
        (vec![Fault::Delay(Duration::from_secs(3))], Kind::Result, 2),
        // Garbage JSON is not retried: the client gets a sealed error.
        (vec![Fault::Garbage], Kind::Error, 1),
        // 500 on every attempt: a sealed error after three.
        (vec![Fault::Status(500); 3], Kind::Error, 3),
    ];
    for (n, (faults, kind, calls)) in cases.into_iter().enumerate() {
        let before = pipeline.model.calls();
        pipeline.model.inject(faults.clone());
        let request = pipeline.seal_text(&prompt(n))?;
        pipeline.produce(&request).await?;
        let (answers, _) = pipeline
            .collect_answers(std::slice::from_ref(&request.message_id), WAIT)
            .await?;
        let answer = answers
            .get(&request.message_id)
            .with_context(|| format!("no answer for {faults:?}"))?;
        ensure!(
            answer.kind == kind,
            "{faults:?}: {:?} {:?}",
            answer.kind,
            answer.text
        );
        if kind == Kind::Result {
            ensure!(answer.text == format!("ANSWER-{n}"), "{:?}", answer.text);
        } else {
            ensure!(
                !answer.text.contains(CANARY),
                "the error text carries the prompt"
            );
        }
        let made = pipeline.model.calls() - before;
        ensure!(
            made == calls,
            "{faults:?}: {made} model calls, expected {calls}"
        );
    }
    assert_no_canary(&pipeline).await
}
