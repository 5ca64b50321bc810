//! The embedded store, the appender and `verify`, end to end without Kafka: events in,
//! checkpoints signed, proofs checked by the independent verifier, and every kind of
//! tampering with the SQLite file found and named.

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use rusqlite::Connection;
use uuid::Uuid;
use zenvelope_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use zenvelope_audit::note::{Checkpoint, Signer, Verifier};
use zenvelope_audit::sink::{AppendOutcome, Appender, BatchConfig, Checkpointer, decode_record};
use zenvelope_audit::store::embedded::SUBJECT_INDEX_LAG_ROWS;
use zenvelope_audit::store::{AuditStore, EmbeddedStore, EventRecord, Query, StoredEvent};
use zenvelope_audit::verify::{Problem, Report, prove, verify};
use zenvelope_schemas::{
    AuditEvent, AuditOperation, Disclosure, Outcome, PurposeOfUse, SchemaCodec, Subject,
};

const ORIGIN: &str = "audit.test.example/zenvelope";

struct Log {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<EmbeddedStore>,
    codec: SchemaCodec,
    signer_text: zeroize::Zeroizing<String>,
    verifier: Verifier,
}

impl Log {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.db");
        let signer = Signer::generate(ORIGIN)?;
        Ok(Self {
            store: Arc::new(EmbeddedStore::open(&path)?),
            path,
            _dir: dir,
            codec: SchemaCodec::offline()?,
            verifier: signer.verifier(),
            signer_text: signer.to_private_key_text(),
        })
    }

    async fn appender(&self, every_events: u64) -> Result<Appender<EmbeddedStore>> {
        let signer = Signer::from_private_key_text(&self.signer_text)?;
        let checkpoints = Checkpointer::new(signer, ORIGIN.to_owned(), every_events, 60_000, None)?;
        Ok(Appender::open(Arc::clone(&self.store), BatchConfig::default(), checkpoints).await?)
    }

    /// Appends `n` events in batches of `batch`, signing a checkpoint every `every`.
    async fn fill(&self, n: usize, batch: usize, every: u64) -> Result<Vec<EventRecord>> {
        self.fill_from(0, n, batch, every).await
    }

    /// [`Log::fill`] with events numbered from `first` (a reopened appender).
    async fn fill_from(
        &self,
        first: usize,
        n: usize,
        batch: usize,
        every: u64,
    ) -> Result<Vec<EventRecord>> {
        let mut appender = self.appender(every).await?;
        let mut all = Vec::new();
        for chunk in (first..first + n).collect::<Vec<_>>().chunks(batch) {
            let mut records = Vec::new();
            for &i in chunk {
                records.push(record(&self.codec, i).await?);
            }
            let outcomes = appender.append_batch(records.clone()).await?;
            ensure!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, AppendOutcome::Appended(_))),
                "fresh events must all be appended: {outcomes:?}"
            );
            all.extend(records);
            appender.sign_due(false).await;
        }
        appender.sign_due(true).await;
        Ok(all)
    }

    async fn verify(&self) -> Result<Report> {
        Ok(verify(
            self.store.as_ref(),
            &self.codec,
            &self.verifier,
            None,
            |_, _| {},
        )
        .await?)
    }

    /// A raw connection with the append-only tripwire removed, as an attacker would.
    fn tamper(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.execute_batch(
            "DROP TRIGGER events_append_only_update; DROP TRIGGER events_append_only_delete;
             DROP TRIGGER checkpoints_append_only_update; DROP TRIGGER checkpoints_append_only_delete;",
        )?;
        Ok(conn)
    }
}

fn event(i: usize) -> AuditEvent {
    let disclosure = i % 4 == 3;
    AuditEvent {
        event_id: Uuid::now_v7(),
        occurred_at_ms: 1_700_000_000_000 + i as i64 * 1_000,
        tenant: if i.is_multiple_of(2) {
            "clinic-a"
        } else {
            "clinic-b"
        }
        .to_owned(),
        subject: format!("subject-{}", i % 3),
        operation: if disclosure {
            AuditOperation::Disclosure
        } else {
            AuditOperation::RequestOpened
        },
        message_id: Some(Uuid::now_v7()),
        correlation_id: None,
        actor: "enclave-app".to_owned(),
        outcome: Outcome::Success,
        reason_code: None,
        enclave_measurement: Some("ab".repeat(48)),
        key_id: Some("fleet".to_owned()),
        key_version: Some(1),
        request_sha256: Some("cd".repeat(32)),
        result_sha256: None,
        disclosure: disclosure.then(|| Disclosure {
            provider: "openai".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            purpose: PurposeOfUse::Treatment,
            signature: None,
            tokens: None,
        }),
    }
}

async fn record(codec: &SchemaCodec, i: usize) -> Result<EventRecord> {
    let value = codec.encode(Subject::AuditValue, &event(i)).await?;
    Ok(decode_record(codec, &value).await?)
}

fn problems(report: &Report) -> String {
    report
        .problems
        .iter()
        .map(Problem::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn a_clean_log_verifies_and_every_event_proves_inclusion() -> Result<()> {
    let log = Log::new()?;
    let records = log.fill(250, 40, 100).await?;
    let report = log.verify().await?;
    ensure!(
        report.is_clean(),
        "clean log reported: {}",
        problems(&report)
    );
    ensure!(report.size == 250, "size {}", report.size);
    // Checkpoints at 120 (first batch past 100), 240 and the final 250.
    ensure!(
        report.checkpoints_valid == report.checkpoints_stored && report.checkpoints_stored >= 3,
        "checkpoints: {} valid of {}",
        report.checkpoints_valid,
        report.checkpoints_stored
    );
    ensure!(
        report.covered_size == 250,
        "covered {}",
        report.covered_size
    );

    for (i, r) in records.iter().enumerate().step_by(17) {
        let proof = prove(log.store.as_ref(), &log.verifier, r.event_id)
            .await?
            .context("stored event has no proof")?;
        ensure!(
            proof.index == i as u64,
            "event {i} at index {}",
            proof.index
        );
        // Check it from the published material only: the note, the value, the path.
        let cp = Checkpoint::open(&proof.checkpoint, &log.verifier)?;
        let path: Vec<[u8; 32]> = proof
            .proof
            .iter()
            .map(|h| Ok(<[u8; 32]>::try_from(hex::decode(h)?.as_slice())?))
            .collect::<Result<_>>()?;
        verify_inclusion(&leaf_hash(&r.value), proof.index, cp.size, &path, &cp.root)?;
        // A different event does not prove under the same path.
        let other = &records[(i + 1) % records.len()];
        ensure!(
            verify_inclusion(
                &leaf_hash(&other.value),
                proof.index,
                cp.size,
                &path,
                &cp.root
            )
            .is_err(),
            "another event proved under event {i}'s path"
        );
    }
    ensure!(
        prove(log.store.as_ref(), &log.verifier, Uuid::now_v7())
            .await?
            .is_none(),
        "an unknown event id must have no proof"
    );
    Ok(())
}

#[tokio::test]
async fn redelivered_events_are_not_appended_twice_and_reopening_resumes_the_tree() -> Result<()> {
    let log = Log::new()?;
    let records = log.fill(30, 30, 1_000).await?;
    let mut appender = log.appender(1_000).await?;
    ensure!(appender.size() == 30, "reopened at {}", appender.size());
    let new = record(&log.codec, 31).await?;
    let mut batch = records[5..10].to_vec();
    batch.push(new.clone());
    batch.push(new.clone());
    // A different event reusing a stored id, and one reusing the new id: not redeliveries.
    let mut impostor = record(&log.codec, 32).await?;
    impostor.event_id = records[0].event_id;
    batch.push(impostor.clone());
    impostor.event_id = new.event_id;
    batch.push(impostor);
    let outcomes = appender.append_batch(batch).await?;
    let expected: Vec<AppendOutcome> = std::iter::repeat_n(AppendOutcome::Duplicate, 5)
        .chain([
            AppendOutcome::Appended(30),
            AppendOutcome::Duplicate,
            AppendOutcome::ConflictingId,
            AppendOutcome::ConflictingId,
        ])
        .collect();
    ensure!(outcomes == expected, "outcomes {outcomes:?}");
    appender.sign_due(true).await;
    let report = log.verify().await?;
    ensure!(
        report.is_clean() && report.size == 31,
        "{}",
        problems(&report)
    );
    Ok(())
}

#[tokio::test]
async fn the_append_only_tripwire_refuses_update_and_delete() -> Result<()> {
    let log = Log::new()?;
    log.fill(3, 3, 1).await?;
    let conn = Connection::open(&log.path)?;
    for sql in [
        "UPDATE events SET tenant = 'x' WHERE idx = 1",
        "DELETE FROM events WHERE idx = 1",
        "DELETE FROM checkpoints",
    ] {
        let error = conn.execute(sql, []).err().context(sql)?;
        ensure!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    Ok(())
}

/// Fills a log of 100 events (checkpoints every 20; the by-subject index reaching row
/// 60), applies `attack`, and returns the report.
async fn attacked(attack: impl FnOnce(&Connection) -> Result<()>) -> Result<Report> {
    let log = Log::new()?;
    log.fill(60, 10, 20).await?;
    ensure!(log.store.index_now().await? == 60, "indexing");
    log.fill_from(60, 40, 10, 20).await?;
    let conn = log.tamper()?;
    attack(&conn)?;
    let report = log.verify().await?;
    ensure!(!report.is_clean(), "tampering went unnoticed");
    Ok(report)
}

fn first_bad(report: &Report, index: u64) -> Result<()> {
    ensure!(
        report.first_bad_index == Some(index),
        "first bad {:?}, expected {index}: {}",
        report.first_bad_index,
        problems(report)
    );
    Ok(())
}

fn has(report: &Report, wanted: &Problem) -> Result<()> {
    ensure!(
        report.problems.contains(wanted),
        "expected {wanted:?}, got: {}",
        problems(report)
    );
    Ok(())
}

#[tokio::test]
async fn an_edited_event_is_named() -> Result<()> {
    let report = attacked(|conn| {
        // Flip one byte of the Avro value (the reason an event would be edited: hide
        // an outcome, move a time).
        conn.execute(
            "UPDATE events SET value = substr(value, 1, 20) || X'FF' || substr(value, 22) WHERE idx = 37",
            [],
        )?;
        Ok(())
    })
    .await?;
    has(&report, &Problem::LeafMismatch { index: 37 })?;
    first_bad(&report, 37)?;
    Ok(())
}

#[tokio::test]
async fn an_edited_event_with_rewritten_hashes_is_still_named() -> Result<()> {
    let report = attacked(|conn| {
        // The attacker rewrites the value and its leaf hash (but cannot re-sign).
        let value: Vec<u8> =
            conn.query_row("SELECT value FROM events WHERE idx = 52", [], |r| r.get(0))?;
        let mut forged = value.clone();
        let n = forged.len();
        forged[n - 3] ^= 0x01;
        conn.execute(
            "UPDATE events SET value = ?1, leaf_hash = ?2 WHERE idx = 52",
            rusqlite::params![forged, leaf_hash(&forged).as_slice()],
        )?;
        Ok(())
    })
    .await?;
    has(&report, &Problem::RootMismatch { index: 52 })?;
    has(
        &report,
        &Problem::CheckpointRoot {
            size: 60,
            after: 40,
        },
    )?;
    first_bad(&report, 52)?;
    Ok(())
}

#[tokio::test]
async fn a_deleted_event_is_named() -> Result<()> {
    let report = attacked(|conn| {
        conn.execute("DELETE FROM events WHERE idx = 12", [])?;
        Ok(())
    })
    .await?;
    has(
        &report,
        &Problem::RowMissing {
            index: 12,
            found_index: 13,
        },
    )?;
    first_bad(&report, 12)?;
    Ok(())
}

#[tokio::test]
async fn deleting_the_newest_events_is_caught_by_the_checkpoint() -> Result<()> {
    let report = attacked(|conn| {
        conn.execute("DELETE FROM events WHERE idx >= 95", [])?;
        Ok(())
    })
    .await?;
    has(
        &report,
        &Problem::CheckpointBeyondLog {
            size: 100,
            log_size: 95,
        },
    )?;
    Ok(())
}

#[tokio::test]
async fn reordered_events_are_named() -> Result<()> {
    let report = attacked(|conn| {
        conn.execute_batch(
            "UPDATE events SET idx = -1 WHERE idx = 70;
             UPDATE events SET idx = 70 WHERE idx = 71;
             UPDATE events SET idx = 71 WHERE idx = -1;",
        )?;
        Ok(())
    })
    .await?;
    has(&report, &Problem::RootMismatch { index: 70 })?;
    has(
        &report,
        &Problem::CheckpointRoot {
            size: 80,
            after: 60,
        },
    )?;
    first_bad(&report, 70)?;
    Ok(())
}

#[tokio::test]
async fn an_inserted_event_is_named() -> Result<()> {
    let report = attacked(|conn| {
        // Make room at 25 and insert a copy of another row with a fresh id.
        let rows: Vec<i64> = conn
            .prepare("SELECT idx FROM events WHERE idx >= 25 ORDER BY idx DESC")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for idx in rows {
            conn.execute("UPDATE events SET idx = idx + 1 WHERE idx = ?1", [idx])?;
        }
        conn.execute(
            "INSERT INTO events SELECT 25, ?1, occurred_at_ms, tenant, subject, operation, leaf_hash, root_after, value FROM events WHERE idx = 3",
            [Uuid::now_v7().as_bytes().as_slice()],
        )?;
        Ok(())
    })
    .await?;
    has(&report, &Problem::RootMismatch { index: 25 })?;
    has(
        &report,
        &Problem::ColumnMismatch {
            index: 25,
            column: "event_id",
        },
    )?;
    first_bad(&report, 25)?;
    Ok(())
}

#[tokio::test]
async fn a_query_column_edited_to_hide_an_event_is_named() -> Result<()> {
    let report = attacked(|conn| {
        conn.execute(
            "UPDATE events SET subject = 'someone-else' WHERE idx = 44",
            [],
        )?;
        Ok(())
    })
    .await?;
    has(
        &report,
        &Problem::ColumnMismatch {
            index: 44,
            column: "subject",
        },
    )?;
    first_bad(&report, 44)?;
    Ok(())
}

#[tokio::test]
async fn a_consistent_rewrite_is_caught_only_by_the_signed_checkpoints() -> Result<()> {
    // The strongest attacker: rewrites row 65 and every leaf hash and stored root after
    // it, so every row looks right on its own. Only signatures remain.
    let report = attacked(|conn| {
        let rows: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT idx, value FROM events ORDER BY idx")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut tree = zenvelope_audit::merkle::CompactRange::new();
        for (idx, mut value) in rows {
            if idx == 65 {
                // Same length, still a valid event with the same columns: another actor.
                let at = value
                    .windows(11)
                    .position(|w| w == b"enclave-app")
                    .context("actor in the value")?;
                value[at + 8] = b'x';
            }
            let leaf = leaf_hash(&value);
            tree.push(leaf);
            conn.execute(
                "UPDATE events SET value = ?1, leaf_hash = ?2, root_after = ?3 WHERE idx = ?4",
                rusqlite::params![value, leaf.as_slice(), tree.root().as_slice(), idx],
            )?;
        }
        Ok(())
    })
    .await?;
    has(
        &report,
        &Problem::CheckpointRoot {
            size: 80,
            after: 60,
        },
    )?;
    ensure!(
        !report.problems.iter().any(|p| matches!(
            p,
            Problem::RootMismatch { .. } | Problem::LeafMismatch { .. }
        )),
        "rows should look consistent: {}",
        problems(&report)
    );
    first_bad(&report, 60)?;
    Ok(())
}

#[tokio::test]
async fn a_forged_or_foreign_checkpoint_is_refused() -> Result<()> {
    let report = attacked(|conn| {
        let forger = Signer::generate(ORIGIN)?;
        let note: String =
            conn.query_row("SELECT note FROM checkpoints WHERE size = 40", [], |r| {
                r.get(0)
            })?;
        let body = note.split("\n\n").next().context("note body")?.to_owned() + "\n";
        let forged = Checkpoint::parse_body(&body)?.sign(&forger)?;
        conn.execute("UPDATE checkpoints SET note = ?1 WHERE size = 40", [forged])?;
        Ok(())
    })
    .await?;
    ensure!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::CheckpointSignature { size: 40, .. })),
        "{}",
        problems(&report)
    );
    Ok(())
}

#[tokio::test]
async fn a_trusted_checkpoint_gets_a_consistency_proof_and_a_rewritten_log_fails_it() -> Result<()>
{
    let log = Log::new()?;
    log.fill(60, 10, 20).await?;
    let stored = log.store.checkpoints().await?;
    let old = stored
        .iter()
        .find(|c| c.size == 20)
        .context("checkpoint 20")?;
    let trusted = Checkpoint::open(&old.note, &log.verifier)?;
    log.fill_from(1_000, 40, 10, 20).await?;
    let report = verify(
        log.store.as_ref(),
        &log.codec,
        &log.verifier,
        Some(&trusted),
        |_, _| {},
    )
    .await?;
    ensure!(report.is_clean(), "{}", problems(&report));
    let proof: Vec<[u8; 32]> = report
        .consistency_proof
        .context("no consistency proof")?
        .iter()
        .map(|h| Ok(<[u8; 32]>::try_from(hex::decode(h)?.as_slice())?))
        .collect::<Result<_>>()?;
    let newest = log.store.checkpoints().await?.pop().context("newest")?;
    verify_consistency(20, newest.size, &trusted.root, &newest.root, &proof)?;

    // A trusted checkpoint from another history does not match.
    let mut other = trusted.clone();
    other.root[0] ^= 1;
    let report = verify(
        log.store.as_ref(),
        &log.codec,
        &log.verifier,
        Some(&other),
        |_, _| {},
    )
    .await?;
    ensure!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::TrustedCheckpoint { size: 20, .. })),
        "{}",
        problems(&report)
    );
    Ok(())
}

#[tokio::test]
async fn a_sink_refuses_to_extend_a_tampered_log() -> Result<()> {
    let log = Log::new()?;
    log.fill(10, 10, 100).await?;
    let conn = log.tamper()?;
    conn.execute(
        "UPDATE events SET leaf_hash = zeroblob(32) WHERE idx = 4",
        [],
    )?;
    let error = log
        .appender(100)
        .await
        .err()
        .context("opened a tampered log")?;
    ensure!(error.to_string().contains("was altered"), "error: {error}");
    Ok(())
}

#[tokio::test]
async fn a_deleted_query_index_entry_is_named() -> Result<()> {
    // Rows 0..60 are indexed: deleting an entry would hide row 30 from queries by subject.
    let report = attacked(|conn| {
        conn.execute("DELETE FROM subject_index WHERE idx = 30", [])?;
        Ok(())
    })
    .await?;
    has(&report, &Problem::QueryIndex { index: 30 })?;
    first_bad(&report, 30)?;
    Ok(())
}

#[tokio::test]
async fn an_index_mark_moved_past_unindexed_rows_is_named() -> Result<()> {
    // Queries would read rows 60..100 through an index that does not hold them.
    let report = attacked(|conn| {
        conn.execute(
            "UPDATE meta SET value = '100' WHERE key = 'subject_indexed_upto'",
            [],
        )?;
        Ok(())
    })
    .await?;
    has(&report, &Problem::QueryIndex { index: 60 })?;
    first_bad(&report, 60)?;
    Ok(())
}

#[tokio::test]
async fn queries_read_the_index_and_the_rows_after_it_alike() -> Result<()> {
    let log = Log::new()?;
    log.fill(25, 5, 100).await?;
    ensure!(log.store.index_now().await? == 25, "indexing");
    log.fill_from(25, 15, 5, 100).await?;
    let all = log.store.read_range(0, 40).await?;
    let mut checked = 0;
    for tenant in [None, Some("clinic-a"), Some("clinic-b")] {
        for subject in [None, Some("subject-0"), Some("subject-2")] {
            for operation in [None, Some("DISCLOSURE")] {
                for window in [None, Some((20_000, 33_000))] {
                    for limit in [None, Some(2)] {
                        let q = Query {
                            tenant: tenant.map(str::to_owned),
                            subject: subject.map(str::to_owned),
                            operation: operation.map(str::to_owned),
                            from_ms: window.map(|(from, _)| 1_700_000_000_000 + from),
                            to_ms: window.map(|(_, to)| 1_700_000_000_000 + to),
                            limit,
                        };
                        let got: Vec<u64> =
                            log.store.query(&q).await?.iter().map(|r| r.index).collect();
                        let want: Vec<u64> = all
                            .iter()
                            .filter(|r| q.matches(&r.record))
                            .map(|r| r.index)
                            .take(limit.map_or(usize::MAX, |l| l as usize))
                            .collect();
                        ensure!(got == want, "{q:?}: got {got:?}, want {want:?}");
                        checked += usize::from(!want.is_empty());
                    }
                }
            }
        }
    }
    ensure!(checked > 50, "only {checked} queries had rows");
    // A subject's rows on both sides of the index mark (25), in time order.
    let rows = log
        .store
        .query(&Query {
            tenant: Some("clinic-b".to_owned()),
            subject: Some("subject-1".to_owned()),
            ..Query::default()
        })
        .await?;
    let got: Vec<u64> = rows.iter().map(|r| r.index).collect();
    ensure!(got == vec![1, 7, 13, 19, 25, 31, 37], "got {got:?}");
    ensure!(log.verify().await?.is_clean(), "the indexed log verifies");
    Ok(())
}

#[tokio::test]
async fn the_store_indexes_by_subject_in_bulk_once_enough_rows_wait() -> Result<()> {
    let log = Log::new()?;
    let mark = |log: &Log| -> Result<Option<String>> {
        Ok(Connection::open(&log.path)?
            .query_row(
                "SELECT value FROM meta WHERE key = 'subject_indexed_upto'",
                [],
                |r| r.get(0),
            )
            .ok())
    };
    // Rows shaped like the appender's (the hashes do not matter to the index).
    let rows = |from: u64, n: u64| -> Vec<StoredEvent> {
        (from..from + n)
            .map(|i| StoredEvent {
                index: i,
                leaf_hash: [1; 32],
                root_after: [2; 32],
                record: EventRecord {
                    event_id: Uuid::now_v7(),
                    occurred_at_ms: 1_700_000_000_000 + i as i64,
                    tenant: "clinic-a".to_owned(),
                    subject: format!("subject-{}", i % 1_000),
                    operation: "REQUEST_OPENED".to_owned(),
                    value: vec![0; 16],
                },
            })
            .collect()
    };
    let lag = SUBJECT_INDEX_LAG_ROWS;
    log.store.append(0, rows(0, lag - 1)).await?;
    ensure!(
        mark(&log)?.is_none(),
        "indexed too early: {:?}",
        mark(&log)?
    );
    log.store.append(lag - 1, rows(lag - 1, 2)).await?;
    ensure!(
        mark(&log)? == Some((lag + 1).to_string()),
        "mark {:?}",
        mark(&log)?
    );
    log.store.append(lag + 1, rows(lag + 1, 10)).await?;
    let got = log
        .store
        .query(&Query {
            subject: Some("subject-7".to_owned()),
            ..Query::default()
        })
        .await?;
    let want: Vec<u64> = (0..lag + 11).filter(|i| i % 1_000 == 7).collect();
    let got: Vec<u64> = got.iter().map(|r| r.index).collect();
    ensure!(got == want, "got {} rows, want {}", got.len(), want.len());
    Ok(())
}

#[tokio::test]
async fn queries_filter_by_tenant_subject_operation_and_time() -> Result<()> {
    let log = Log::new()?;
    log.fill(40, 40, 100).await?;
    let all = log.store.query(&Query::default()).await?;
    ensure!(all.len() == 40, "all {}", all.len());
    let q = Query {
        tenant: Some("clinic-b".to_owned()),
        subject: Some("subject-1".to_owned()),
        operation: Some("DISCLOSURE".to_owned()),
        from_ms: Some(1_700_000_000_000 + 5_000),
        to_ms: Some(1_700_000_000_000 + 30_000),
        limit: None,
    };
    let got: Vec<u64> = log.store.query(&q).await?.iter().map(|r| r.index).collect();
    let want: Vec<u64> = all
        .iter()
        .filter(|r| q.matches(&r.record))
        .map(|r| r.index)
        .collect();
    ensure!(
        !want.is_empty() && got == want,
        "got {got:?}, want {want:?}"
    );
    // i % 2 == 1, i % 3 == 1, i % 4 == 3, 5 <= i < 30: 7 and 19.
    ensure!(got == vec![7, 19], "got {got:?}");
    let limited = log
        .store
        .query(&Query {
            limit: Some(3),
            ..Query::default()
        })
        .await?;
    ensure!(limited.len() == 3 && limited[0].index == 0, "limit");
    Ok(())
}

/// Two processes (the sink and an auditor's CLI) may open a new store at the same moment:
/// both opens succeed, whichever writes the format version first.
#[test]
fn a_new_store_opened_twice_at_once_opens_both_times() -> Result<()> {
    for _ in 0..20 {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.db");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let opens: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    EmbeddedStore::open(&path).map(|_| ())
                })
            })
            .collect();
        for open in opens {
            open.join()
                .map_err(|_| anyhow::anyhow!("an open panicked"))??;
        }
    }
    // A store of another format version is still refused.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.db");
    drop(EmbeddedStore::open(&path)?);
    Connection::open(&path)?.execute(
        "UPDATE meta SET value = '0' WHERE key = 'format_version'",
        [],
    )?;
    let refused = EmbeddedStore::open(&path).err().map(|e| e.to_string());
    ensure!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("written by another version")),
        "{refused:?}"
    );
    Ok(())
}
