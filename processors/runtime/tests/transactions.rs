//! Kafka transactions in the processing loop, against librdkafka's mock cluster (which
//! implements the transaction coordinator; tansu's sqlite engine does not, see
//! LOCAL-SERVICES.md).
//!
//! Two limits of the mock, both visible in librdkafka's `rdkafka_mock_handlers.c`:
//! `TxnOffsetCommit` is acknowledged but its offsets are not stored, so the group's
//! committed offsets cannot be read back; and `Fetch` reports the last stable offset as
//! the end of the log with no aborted transactions, so a `read_committed` reader also
//! sees records of aborted transactions. The tests therefore check what the mock does
//! implement: the transactional producer, gated enqueueing, `AddOffsetsToTxn` and
//! `TxnOffsetCommit` accepted (a wrong topic or partition would be rejected), commits,
//! an abort when the coordinator rejects `EndTxn`, and the rewind after it (to the
//! beginning, since the mock holds no committed offset), plus the fallback to
//! idempotent-only when `init_transactions` fails.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Result, ensure};
use common::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use zenvelope_runtime::{Disposition, Handler, Inbound, KafkaConfig, Outbound};

/// Echoes each record to `out`, except values starting with "bad", which go to the DLQ.
struct Echo {
    out: String,
}

impl Handler for Echo {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        if msg.payload.starts_with(b"bad") {
            return Disposition::dead_letter("test_rejected", "The test rejects it.");
        }
        Disposition::Produce(vec![Outbound::new(
            &self.out,
            msg.key.clone(),
            msg.payload.clone(),
        )])
    }
}

fn transactional(cluster: &Cluster) -> KafkaConfig {
    let mut k = kafka(cluster);
    k.transactional_id = Some(unique("txn"));
    k
}

fn set_of(records: &[Inbound]) -> BTreeSet<Vec<u8>> {
    records.iter().map(|r| r.payload.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_dead_letters_and_offsets_are_committed_in_transactions() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 2), (&output, 1), (&dlq, 1)])?;
    let kafka = transactional(&cluster);
    let mut inputs = payloads(18);
    inputs.push(b"bad-1".to_vec());
    inputs.push(b"bad-2".to_vec());
    produce(&kafka, &input, &inputs).await?;

    let handler = Arc::new(Echo {
        out: output.clone(),
    });
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    let outputs = read(&kafka, &output, 18).await?;
    let letters = read(&kafka, &dlq, 2).await?;
    let summary = stop(shutdown, task).await?;

    ensure!(
        set_of(&outputs) == payloads(18).into_iter().collect(),
        "outputs differ from inputs"
    );
    ensure!(
        set_of(&letters) != BTreeSet::new() && letters.len() == 2,
        "two dead letters"
    );
    ensure!(
        summary.processed == 20 && summary.dead_lettered == 2,
        "{summary:?}"
    );
    ensure!(
        summary.transactions_committed >= 1 && summary.transactions_aborted == 0,
        "transactions were used and none aborted: {summary:?}"
    );
    Ok(())
}

/// An abortable failure at commit (the coordinator rejects EndTxn) aborts the
/// transaction; the loop forgets its uncommitted progress, rewinds to the committed
/// offsets and handles those records again, so no input is left without an output in a
/// committed transaction. (On a real broker the aborted outputs are invisible to
/// `read_committed` readers; the mock shows them, see the top of this file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_is_rewound_and_nothing_is_lost() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 2), (&output, 1), (&dlq, 1)])?;
    let kafka = transactional(&cluster);
    let all = payloads(30);
    produce(&kafka, &input, &all[..10]).await?;

    let handler = Arc::new(Echo {
        out: output.clone(),
    });
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    // The first batch is done. An idle loop then commits empty transactions, which send
    // nothing to the coordinator, so the injected error hits the second batch's commit.
    let first = read(&kafka, &output, 10).await?;
    ensure!(set_of(&first) == all[..10].iter().cloned().collect());
    // The next EndTxn that reaches the coordinator fails with an error librdkafka
    // treats as abortable; the abort itself then succeeds.
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_POLICY_VIOLATION],
    );
    produce(&kafka, &input, &all[10..]).await?;

    // Every input gets an output, and after the abort the rewound records are handled
    // again: with no committed offset in the mock, the rewind goes back to the start, so
    // more than 30 outputs arrive in all (duplicates are allowed by at-least-once).
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let sub = zenvelope_runtime::Subscriber::new(&kafka, &unique("reader"), &[&output], true)?;
    while seen.len() < 30 || total < 40 {
        let Ok(record) = tokio::time::timeout(WAIT, sub.recv()).await else {
            break;
        };
        seen.insert(record?.payload);
        total += 1;
    }
    ensure!(
        seen == all.iter().cloned().collect(),
        "{} of 30 inputs have an output",
        seen.len()
    );
    ensure!(
        total >= 40,
        "only {total} outputs: nothing was handled again"
    );
    let summary = stop(shutdown, task).await?;
    ensure!(
        summary.transactions_aborted >= 1,
        "the injected error aborted a transaction: {summary:?}"
    );
    ensure!(
        summary.processed > 30,
        "the aborted transaction's records were handled again: {summary:?}"
    );
    Ok(())
}

/// If `init_transactions` fails (here the coordinator refuses the transactional id), the
/// loop runs idempotent-only and still delivers and commits everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_transactions_the_loop_runs_idempotent_only() -> Result<()> {
    let cluster = cluster()?;
    let (input, output, dlq, group) = (unique("in"), unique("out"), unique("dlq"), unique("g"));
    topics(&cluster, &[(&input, 1), (&output, 1), (&dlq, 1)])?;
    let kafka = transactional(&cluster);
    produce(&kafka, &input, &payloads(5)).await?;
    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED],
    );

    let handler = Arc::new(Echo {
        out: output.clone(),
    });
    let (shutdown, task) = start(&kafka, &processor(&group, &[&input], &dlq), handler)?;
    let outputs = read(&kafka, &output, 5).await?;
    eventually("all offsets committed", || async {
        Ok(committed_total(&kafka, &group, &input).await? == 5)
    })
    .await?;
    let summary = stop(shutdown, task).await?;
    ensure!(set_of(&outputs) == payloads(5).into_iter().collect());
    ensure!(
        summary.processed == 5 && summary.transactions_committed == 0,
        "{summary:?}"
    );
    Ok(())
}
