//! The processing loop against an in-process mock cluster (real Kafka protocol on
//! loopback).

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use tokio::sync::Notify;
use zenvelope_runtime::{Disposition, Handler, Inbound, Outbound, reason};
use zenvelope_schemas::{DeadLetter, SchemaCodec, names};

/// A handler from a closure.
struct FnHandler<F>(F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Arc<Inbound>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send,
{
    fn handle(&self, msg: Arc<Inbound>) -> impl Future<Output = Disposition> + Send {
        (self.0)(msg)
    }
}

fn echo_to(out: &str, msg: &Inbound) -> Disposition {
    Disposition::Produce(vec![
        Outbound::new(out, msg.key.clone(), msg.payload.clone())
            .with_header("offset", msg.offset.to_string()),
    ])
}

async fn decode_dlq(records: &[Inbound]) -> Result<Vec<DeadLetter>> {
    let codec = SchemaCodec::offline()?;
    let mut out = Vec::new();
    for r in records {
        out.push(codec.decode::<DeadLetter>(&r.payload).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_produced_and_committed() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 2), (&output, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    let n = 20;
    produce(&kafka, &input, &payloads(n)).await?;

    let out = output.clone();
    let handler = Arc::new(FnHandler(move |m: Arc<Inbound>| {
        let d = echo_to(&out, &m);
        async move { d }
    }));
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    let records = read(&kafka, &output, n).await?;
    eventually("all offsets committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == n as i64)
    })
    .await?;
    let summary = stop(shutdown, task).await?;

    let mut got: Vec<_> = records.iter().map(|r| r.payload.clone()).collect();
    got.sort();
    let mut want = payloads(n);
    want.sort();
    ensure!(got == want, "outputs differ from inputs");
    ensure!(
        summary.processed == n as u64 && summary.dead_lettered == 0,
        "{summary:?}"
    );
    ensure!(committed_total(&kafka, &group, &input).await? == n as i64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_carry_reason_and_original_bytes() -> Result<()> {
    let cluster = cluster()?;
    let (input, audit, dlq, group) = (unique("in"), unique("audit"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&audit, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &input, &payloads(2)).await?;

    let audit_topic = audit.clone();
    let handler = Arc::new(FnHandler(move |m: Arc<Inbound>| {
        let d = Disposition::DeadLetter {
            reason_code: "bad_signature".into(),
            detail: "The signature does not verify.".into(),
            also: vec![Outbound::new(
                &audit_topic,
                None,
                format!("audit-{}", m.offset).into_bytes(),
            )],
        };
        async move { d }
    }));
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    let dead = read(&kafka, &dlq, 2).await?;
    let audits = read(&kafka, &audit, 2).await?;
    eventually("offsets committed past the dead letters", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 2)
    })
    .await?;
    let summary = stop(shutdown, task).await?;

    let letters = decode_dlq(&dead).await?;
    for (record, letter) in dead.iter().zip(&letters) {
        ensure!(letter.reason_code == "bad_signature");
        ensure!(letter.reason_detail == "The signature does not verify.");
        ensure!(letter.original_topic == input && letter.original_partition == 0);
        let i = letter.original_offset as usize;
        ensure!(
            letter.original_value == payloads(2)[i],
            "original bytes kept"
        );
        ensure!(letter.original_key == Some(format!("k{i}").into_bytes()));
        ensure!(record.header(names::header::REASON) == Some(&b"bad_signature"[..]));
        ensure!(
            record.key == letter.original_key,
            "DLQ record keyed like the original"
        );
    }
    ensure!(audits.len() == 2);
    ensure!(
        summary.processed == 2 && summary.dead_lettered == 2,
        "{summary:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_success_produce_once() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&output, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &input, &payloads(1)).await?;

    let calls = Arc::new(AtomicUsize::new(0));
    let (out, c) = (output.clone(), calls.clone());
    let handler = Arc::new(FnHandler(move |m: Arc<Inbound>| {
        let d = if c.fetch_add(1, Ordering::SeqCst) < 2 {
            Disposition::retry("model_unavailable", "The model did not answer.")
        } else {
            echo_to(&out, &m)
        };
        async move { d }
    }));
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    read(&kafka, &output, 1).await?;
    eventually("offset committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 1)
    })
    .await?;
    let summary = stop(shutdown, task).await?;
    ensure!(
        calls.load(Ordering::SeqCst) == 3,
        "handler called three times"
    );
    ensure!(
        summary.retries == 2 && summary.dead_lettered == 0,
        "{summary:?}"
    );
    assert_no_more(&kafka, &output, 1, Duration::from_millis(300)).await?;
    assert_no_more(&kafka, &dlq, 0, Duration::from_millis(300)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_retries_end_in_the_dlq() -> Result<()> {
    let cluster = cluster()?;
    let (input, dlq, group) = (unique("in"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &input, &payloads(1)).await?;

    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = Arc::new(FnHandler(move |_m: Arc<Inbound>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Disposition::retry("model_unavailable", "The model did not answer.") }
    }));
    let mut config = processor(&group, &[&input], &dlq);
    config.max_retries = 2;
    let (shutdown, task) = start(&kafka, &config, handler)?;
    let dead = read(&kafka, &dlq, 1).await?;
    eventually("offset committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 1)
    })
    .await?;
    let summary = stop(shutdown, task).await?;

    let letter = &decode_dlq(&dead).await?[0];
    ensure!(letter.reason_code == reason::RETRIES_EXHAUSTED);
    ensure!(
        letter.reason_detail.contains("model_unavailable"),
        "{}",
        letter.reason_detail
    );
    ensure!(letter.original_value == payloads(1)[0]);
    ensure!(
        calls.load(Ordering::SeqCst) == 3,
        "one call plus two retries"
    );
    ensure!(summary.dead_lettered == 1, "{summary:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_empty_records_skip_the_handler() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&output, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    // Offsets: 0 empty, 1 oversized but fits a dead letter, 2 too big for a dead letter
    // under the processor's message.max.bytes, 3 fine.
    let inputs = vec![
        Vec::new(),
        vec![7u8; 500],
        vec![9u8; 5_000],
        b"fine".to_vec(),
    ];
    produce(&kafka, &input, &inputs).await?;

    let calls = Arc::new(AtomicUsize::new(0));
    let (out, c) = (output.clone(), calls.clone());
    let handler = Arc::new(FnHandler(move |m: Arc<Inbound>| {
        c.fetch_add(1, Ordering::SeqCst);
        let d = echo_to(&out, &m);
        async move { d }
    }));
    let mut config = processor(&group, &[&input], &dlq);
    config.max_message_bytes = 100;
    let mut processor_kafka = kafka.clone();
    processor_kafka
        .properties
        .insert("message.max.bytes".into(), "20000".into());
    let (shutdown, task) = start(&processor_kafka, &config, handler)?;
    let dead = read(&kafka, &dlq, 3).await?;
    read(&kafka, &output, 1).await?;
    eventually("offsets committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 4)
    })
    .await?;
    let summary = stop(shutdown, task).await?;

    let mut letters = decode_dlq(&dead).await?;
    letters.sort_by_key(|l| l.original_offset);
    ensure!(letters[0].reason_code == reason::EMPTY_PAYLOAD && letters[0].original_offset == 0);
    ensure!(letters[1].reason_code == reason::OVERSIZED && letters[1].original_value == inputs[1]);
    ensure!(letters[2].reason_code == reason::OVERSIZED && letters[2].original_value.is_empty());
    ensure!(letters[2].original_offset == 2 && letters[2].original_topic == input);
    ensure!(
        letters[2].reason_detail.contains("left out"),
        "{}",
        letters[2].reason_detail
    );
    ensure!(
        calls.load(Ordering::SeqCst) == 1,
        "handler saw only the fine record"
    );
    ensure!(
        summary.processed == 4 && summary.dead_lettered == 3,
        "{summary:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_produce_error_sends_the_input_to_the_dlq() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&output, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &input, &payloads(1)).await?;

    let out = output.clone();
    let handler = Arc::new(FnHandler(move |_m: Arc<Inbound>| {
        // Larger than librdkafka's default message.max.bytes: rejected locally.
        let d = Disposition::Produce(vec![Outbound::new(&out, None, vec![0u8; 2_000_000])]);
        async move { d }
    }));
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    let dead = read(&kafka, &dlq, 1).await?;
    let summary = stop(shutdown, task).await?;
    let letter = &decode_dlq(&dead).await?[0];
    ensure!(letter.reason_code == reason::PRODUCE_FAILED, "{letter:?}");
    ensure!(
        letter.reason_detail.contains(&output),
        "{}",
        letter.reason_detail
    );
    ensure!(summary.dead_lettered == 1, "{summary:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offset_never_passes_an_unfinished_record() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&output, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &input, &payloads(6)).await?;

    let release = Arc::new(Notify::new());
    let (out, r) = (output.clone(), release.clone());
    let handler = Arc::new(FnHandler(move |m: Arc<Inbound>| {
        let d = echo_to(&out, &m);
        let r = r.clone();
        async move {
            if m.offset == 2 {
                r.notified().await;
            } else if m.offset % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            d
        }
    }));
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    read(&kafka, &output, 5).await?;
    eventually("offsets up to the blocked record committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 2)
    })
    .await?;
    // Several auto-commit intervals later it still has not moved past offset 2.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(committed_total(&kafka, &group, &input).await? == 2);

    release.notify_one();
    read(&kafka, &output, 6).await?;
    eventually("all offsets committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 6)
    })
    .await?;
    let summary = stop(shutdown, task).await?;
    ensure!(summary.processed == 6, "{summary:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_commits_and_a_restart_resumes() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&output, 1), (&dlq, 1)])?;
    let mut kafka = kafka(&cluster);
    // The mock coordinator, unlike a real broker, waits `session.timeout.ms - 1 s` for
    // the departed member after an explicit leave before it lets a new member in.
    kafka
        .properties
        .insert("session.timeout.ms".into(), "2500".into());
    kafka
        .properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    let n = 10;
    produce(&kafka, &input, &payloads(n)).await?;

    let started = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
    let make = |delay: Duration| {
        let (out, st, seen) = (output.clone(), started.clone(), seen.clone());
        Arc::new(FnHandler(move |m: Arc<Inbound>| {
            st.fetch_add(1, Ordering::SeqCst);
            *seen.lock().expect("lock").entry(m.offset).or_default() += 1;
            let d = echo_to(&out, &m);
            async move {
                tokio::time::sleep(delay).await;
                d
            }
        }))
    };
    let mut config = processor(&group, &[&input], &dlq);
    config.max_in_flight = 4;
    let (shutdown, task) = start(&kafka, &config, make(Duration::from_millis(400)))?;
    eventually("four records in flight", || async {
        Ok(started.load(Ordering::SeqCst) >= 4)
    })
    .await?;
    let first = stop(shutdown, task).await?;
    ensure!(
        first.abandoned == 0,
        "in-flight work finished within the grace: {first:?}"
    );
    ensure!(
        first.processed >= 4 && first.processed < n as u64,
        "{first:?}"
    );
    ensure!(committed_total(&kafka, &group, &input).await? == first.processed as i64);

    let (shutdown, task) = start(&kafka, &config, make(Duration::ZERO))?;
    read(&kafka, &output, n).await?;
    eventually("all offsets committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == n as i64)
    })
    .await?;
    let second = stop(shutdown, task).await?;
    ensure!(
        first.processed + second.processed == n as u64,
        "{first:?} {second:?}"
    );
    let seen = seen.lock().expect("lock").clone();
    ensure!(
        seen.len() == n && seen.values().all(|&c| c == 1),
        "no record handled twice: {seen:?}"
    );
    assert_no_more(&kafka, &output, n, Duration::from_millis(300)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_bounds_concurrency() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 2), (&output, 1), (&dlq, 1)])?;
    let kafka = kafka(&cluster);
    let n = 12;
    produce(&kafka, &input, &payloads(n)).await?;

    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (out, now2, peak2) = (output.clone(), now.clone(), peak.clone());
    let handler = Arc::new(FnHandler(move |m: Arc<Inbound>| {
        let d = echo_to(&out, &m);
        let (now, peak) = (now2.clone(), peak2.clone());
        async move {
            let c = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            d
        }
    }));
    let mut config = processor(&group, &[&input], &dlq);
    config.max_in_flight = 3;
    let (shutdown, task) = start(&kafka, &config, handler)?;
    read(&kafka, &output, n).await?;
    let summary = stop(shutdown, task).await?;
    let peak = peak.load(Ordering::SeqCst);
    ensure!(peak == 3, "peak concurrency {peak}, bound 3");
    ensure!(summary.processed == n as u64, "{summary:?}");
    Ok(())
}
