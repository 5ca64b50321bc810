//! The bounded range reader against an in-process mock cluster.
//!
//! The mock does not resolve `offsets_for_times` (its `ListOffsets` handler answers -1,
//! "no such record", for every timestamp; see `rdkafka_mock_handlers.c`), so the tests
//! here cover only timestamps beyond the last record, where that answer is also the
//! right one. Timestamps inside a topic are tested against tansu in
//! `producers/cli/tests/replay.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use common::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use zenvelope_runtime::{
    Error, Inbound, KafkaConfig, PartitionRange, RangeReader, ReadFrom, ReadProgress, ReadTo,
};

/// Reads everything the reader returns.
async fn drain(reader: &mut RangeReader) -> Result<Vec<Inbound>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(r) = tokio::time::timeout_at(deadline, reader.next()).await?? {
        out.push(r);
    }
    Ok(out)
}

/// Produces `n` records to `partition` of `topic`, values `"{tag}-{i}"`. (The runtime's
/// `Producer` leaves the partition to the partitioner, so this uses rdkafka directly.)
async fn produce_to(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    tag: &str,
    n: usize,
) -> Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create()?;
    for i in 0..n {
        let value = format!("{tag}-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&value),
                WAIT,
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn offsets(records: &[Inbound]) -> Vec<(i32, i64)> {
    let mut o: Vec<_> = records.iter().map(|r| (r.partition, r.offset)).collect();
    o.sort_unstable();
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_between_offsets_and_stops() -> Result<()> {
    let cluster = cluster()?;
    let topic = unique("offsets");
    topics(&cluster, &[(&topic, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &topic, &payloads(10)).await?;

    let mut all = RangeReader::open(&kafka, &topic, ReadFrom::Beginning, ReadTo::Watermark).await?;
    let records = drain(&mut all).await?;
    ensure!(offsets(&records) == (0..10).map(|o| (0, o)).collect::<Vec<_>>());
    ensure!(records[3].payload == b"sealed-3" && records[3].key.as_deref() == Some(&b"k3"[..]));
    ensure!(
        all.progress()
            == ReadProgress {
                read: 10,
                expected: 10,
                partitions_done: 1,
                partitions: 1
            },
        "{:?}",
        all.progress()
    );

    // From 3 (inclusive) to 7 (exclusive).
    let mut some =
        RangeReader::open(&kafka, &topic, ReadFrom::Offset(3), ReadTo::Offset(7)).await?;
    ensure!(
        some.ranges().copied().collect::<Vec<_>>()
            == [PartitionRange {
                partition: 0,
                start: 3,
                end: 7,
                low_watermark: 0,
                high_watermark: 10
            }]
    );
    let records = drain(&mut some).await?;
    ensure!(offsets(&records) == [(0, 3), (0, 4), (0, 5), (0, 6)]);
    ensure!(some.progress().read == 4 && some.progress().expected == 4);

    // Bounds outside the partition are clamped to what it holds.
    let mut past =
        RangeReader::open(&kafka, &topic, ReadFrom::Offset(8), ReadTo::Offset(99)).await?;
    ensure!(offsets(&drain(&mut past).await?) == [(0, 8), (0, 9)]);
    let mut none =
        RangeReader::open(&kafka, &topic, ReadFrom::Offset(50), ReadTo::Watermark).await?;
    ensure!(drain(&mut none).await?.is_empty());
    ensure!(none.progress().expected == 0 && none.progress().partitions_done == 1);
    let mut backwards =
        RangeReader::open(&kafka, &topic, ReadFrom::Offset(6), ReadTo::Offset(2)).await?;
    ensure!(drain(&mut backwards).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_topic_ends_at_once() -> Result<()> {
    let cluster = cluster()?;
    let topic = unique("empty");
    topics(&cluster, &[(&topic, 3)])?;
    let kafka = kafka(&cluster);
    let mut reader = RangeReader::open(&kafka, &topic, ReadFrom::Beginning, ReadTo::Watermark)
        .await?
        .with_idle_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    ensure!(reader.next().await?.is_none());
    ensure!(started.elapsed() < Duration::from_millis(100), "it waited");
    ensure!(
        reader.progress()
            == ReadProgress {
                read: 0,
                expected: 0,
                partitions_done: 3,
                partitions: 3
            }
    );
    ensure!(reader.ranges().count() == 3 && reader.ranges().all(PartitionRange::is_empty));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_partition_in_order() -> Result<()> {
    let cluster = cluster()?;
    let topic = unique("multi");
    topics(&cluster, &[(&topic, 3)])?;
    let kafka = kafka(&cluster);
    produce_to(&kafka, &topic, 0, "a", 4).await?;
    produce_to(&kafka, &topic, 2, "c", 2).await?;
    // Partition 1 stays empty.

    let mut reader =
        RangeReader::open(&kafka, &topic, ReadFrom::Beginning, ReadTo::Watermark).await?;
    let ranges: Vec<_> = reader
        .ranges()
        .map(|r| (r.partition, r.start, r.end))
        .collect();
    ensure!(ranges == [(0, 0, 4), (1, 0, 0), (2, 0, 2)], "{ranges:?}");
    let records = drain(&mut reader).await?;
    let mut by_partition: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for r in &records {
        ensure!(r.topic == topic);
        by_partition
            .entry(r.partition)
            .or_default()
            .push((r.offset, r.payload.clone()));
    }
    let want: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = [
        (
            0,
            (0..4).map(|i| (i, format!("a-{i}").into_bytes())).collect(),
        ),
        (
            2,
            (0..2).map(|i| (i, format!("c-{i}").into_bytes())).collect(),
        ),
    ]
    .into();
    ensure!(by_partition == want, "{by_partition:?}");
    ensure!(reader.progress().read == 6 && reader.progress().expected == 6);

    // The same offset bound applies to every partition.
    let mut tail =
        RangeReader::open(&kafka, &topic, ReadFrom::Offset(1), ReadTo::Offset(3)).await?;
    ensure!(offsets(&drain(&mut tail).await?) == [(0, 1), (0, 2), (2, 1)]);
    Ok(())
}

/// Records produced after the reader was opened are not read: a replay of a live topic
/// ends at the watermarks it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_topic_ends_at_the_starting_watermark() -> Result<()> {
    let cluster = cluster()?;
    let topic = unique("live");
    topics(&cluster, &[(&topic, 2)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &topic, &payloads(6)).await?;
    let mut reader =
        RangeReader::open(&kafka, &topic, ReadFrom::Beginning, ReadTo::Watermark).await?;
    produce(&kafka, &topic, &payloads(6)).await?;
    let records = drain(&mut reader).await?;
    ensure!(records.len() == 6, "{} records", records.len());
    ensure!(reader.progress().read == 6 && reader.progress().expected == 6);
    Ok(())
}

/// Timestamps beyond the last record: reading from one reads nothing, reading to one
/// reads everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_beyond_the_last_record() -> Result<()> {
    let cluster = cluster()?;
    let topic = unique("times");
    topics(&cluster, &[(&topic, 2)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &topic, &payloads(5)).await?;
    let future_ms = i64::MAX / 2;

    let mut from_future = RangeReader::open(
        &kafka,
        &topic,
        ReadFrom::TimestampMs(future_ms),
        ReadTo::Watermark,
    )
    .await?;
    ensure!(drain(&mut from_future).await?.is_empty());
    ensure!(from_future.progress().expected == 0);

    let mut to_future = RangeReader::open(
        &kafka,
        &topic,
        ReadFrom::Beginning,
        ReadTo::TimestampMs(future_ms),
    )
    .await?;
    let records = drain(&mut to_future).await?;
    ensure!(records.len() == 5);
    ensure!(records.iter().all(|r| r.timestamp_ms.is_some()));
    Ok(())
}

/// A broker that answers metadata but no fetch: the read stalls after the idle timeout
/// instead of hanging, and goes on once fetches work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_read_times_out_and_can_resume() -> Result<()> {
    let cluster = cluster()?;
    let topic = unique("stall");
    topics(&cluster, &[(&topic, 1)])?;
    let kafka = kafka(&cluster);
    produce(&kafka, &topic, &payloads(3)).await?;
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 1000],
    );
    let mut reader = RangeReader::open(&kafka, &topic, ReadFrom::Beginning, ReadTo::Watermark)
        .await?
        .with_idle_timeout(Duration::from_millis(500));
    match reader.next().await {
        Err(Error::ReadStalled {
            topic: t,
            waited_ms: 500,
        }) if t == topic => {}
        Err(e) => bail!("unexpected error: {e}"),
        Ok(r) => bail!("read {r:?} although every fetch fails"),
    }
    ensure!(
        Error::ReadStalled {
            topic: "t".into(),
            waited_ms: 500
        }
        .to_string()
            == "reading topic t stalled: no record and no end of partition arrived within 500 ms"
    );
    cluster.clear_request_errors(RDKafkaApiKey::Fetch);
    let mut reader = reader.with_idle_timeout(WAIT);
    ensure!(drain(&mut reader).await?.len() == 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_is_an_error() -> Result<()> {
    let cluster = cluster()?;
    let kafka = kafka(&cluster);
    let topic = unique("missing");
    match RangeReader::open(&kafka, &topic, ReadFrom::Beginning, ReadTo::Watermark).await {
        Err(Error::UnknownTopic { topic: t }) if t == topic => Ok(()),
        Err(e) => bail!("unexpected error: {e}"),
        Ok(_) => bail!("a missing topic was opened"),
    }
}
