//! Append throughput of the embedded audit store, against a baseline measured in the same
//! run: the same values inserted into a bare SQLite table with the same durability
//! (WAL, `synchronous = FULL`, one transaction per batch), without ids, indexes, leaf
//! hashes or tree roots. The ratio is what the audit log's evidence costs.
//!
//! `cargo bench -p zenvelope-audit --bench append`

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use zenvelope_audit::note::Signer;
use zenvelope_audit::sink::{Appender, BatchConfig, Checkpointer};
use zenvelope_audit::store::{EmbeddedStore, EventRecord};

/// Events per store transaction (the sink's default `batch.max_events`).
const BATCH: usize = 1_000;
/// Size of one encoded audit event, about what the enclave writes.
const VALUE_BYTES: usize = 420;

/// Subject pseudonyms the events are spread over: a clinic's patients, each event on a
/// different page of the by-subject index.
const SUBJECTS: u64 = 10_000;

/// The next `n` events of a log, numbered from `*next`: ids and times increase as the
/// enclave writes them, subjects cycle through [`SUBJECTS`] in a scattered order.
fn records(next: &mut u64, n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|_| {
            let i = *next;
            *next += 1;
            EventRecord {
                event_id: uuid::Uuid::now_v7(),
                occurred_at_ms: 1_700_000_000_000 + i as i64,
                tenant: "clinic-a".to_owned(),
                subject: format!("sp1_subject_{}", (i * 7_919) % SUBJECTS),
                operation: "REQUEST_OPENED".to_owned(),
                value: vec![(i % 251) as u8; VALUE_BYTES],
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);

    let store = Arc::new(EmbeddedStore::open(&dir.path().join("audit.db")).expect("store"));
    let signer = Signer::generate("bench.example/audit").expect("key");
    let checkpoints = Checkpointer::new(
        signer,
        "bench.example/audit".to_owned(),
        10_000,
        60_000,
        None,
    )
    .expect("checkpointer");
    let mut appender = rt
        .block_on(Appender::open(store, BatchConfig::default(), checkpoints))
        .expect("appender");
    let mut next = 0;
    group.bench_function("embedded_store_1000_per_txn", |b| {
        b.iter_batched(
            || records(&mut next, BATCH),
            |batch| {
                rt.block_on(async {
                    appender.append_batch(batch).await.expect("append");
                    appender.sign_due(false).await;
                })
            },
            BatchSize::LargeInput,
        )
    });

    let conn = rusqlite::Connection::open(dir.path().join("baseline.db")).expect("baseline");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch("CREATE TABLE t (value BLOB NOT NULL)")
        .expect("table");
    let mut conn = conn;
    let mut next = 0;
    group.bench_function("baseline_bare_sqlite_1000_per_txn", |b| {
        b.iter_batched(
            || records(&mut next, BATCH),
            |batch| {
                let tx = conn.transaction().expect("tx");
                {
                    let mut stmt = tx
                        .prepare_cached("INSERT INTO t (value) VALUES (?1)")
                        .expect("stmt");
                    for r in &batch {
                        stmt.execute([&r.value]).expect("insert");
                    }
                }
                tx.commit().expect("commit");
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
