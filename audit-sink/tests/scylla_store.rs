//! Tests of the ScyllaDB audit store.
//!
//! The configuration tests always run. The store tests need a ScyllaDB cluster: they run
//! when `ZENVELOPE_SCYLLA_NODES` names one (`host:port`, comma-separated), and otherwise
//! print why they skipped and pass. Each store test writes its own log (a fresh uuid) in
//! the keyspace `zenvelope_audit_test`, created with replication factor 1 if absent.
//! LWTs on tablet keyspaces need ScyllaDB 2025.4 or later.

use std::collections::HashSet;

use anyhow::{Context as _, Result, ensure};
use tokio::sync::OnceCell;
use uuid::Uuid;
use zenvelope_audit::Error;
use zenvelope_audit::store::scylla::{BUCKET_ROWS, SCYLLA_NODES_ENV, ScyllaConsistency};
use zenvelope_audit::store::{
    AuditStore, EventRecord, Query, ScyllaConfig, ScyllaStore, StoredCheckpoint, StoredEvent,
};

const SKIPPED: &str =
    "SKIPPED: set ZENVELOPE_SCYLLA_NODES=host:port to run the ScyllaDB store tests";

/// The keyspace the store tests write to.
const TEST_KEYSPACE: &str = "zenvelope_audit_test";

/// Created once per test binary; the tests run in parallel.
static SCHEMA: OnceCell<()> = OnceCell::const_new();

/// A config for a fresh log on the cluster `ZENVELOPE_SCYLLA_NODES` names, or `None`
/// (after printing why) when it names none.
fn test_config() -> Option<ScyllaConfig> {
    let Some(mut config) = ScyllaConfig::from_env() else {
        eprintln!("{SKIPPED}");
        return None;
    };
    config.keyspace = TEST_KEYSPACE.to_owned();
    config.log = format!("test-{}", Uuid::new_v4());
    Some(config)
}

/// A store on a fresh log, or `None` when there is no cluster to test against.
async fn store() -> Result<Option<(ScyllaConfig, ScyllaStore)>> {
    let Some(config) = test_config() else {
        return Ok(None);
    };
    SCHEMA
        .get_or_try_init(|| ScyllaStore::create_schema(&config, 1))
        .await
        .context("creating the test schema")?;
    let store = ScyllaStore::connect(&config)
        .await
        .context("connecting to ScyllaDB")?;
    Ok(Some((config, store)))
}

fn hash(index: u64, tag: u8) -> [u8; 32] {
    let mut hash = [tag; 32];
    hash[..8].copy_from_slice(&index.to_be_bytes());
    hash
}

/// A row at `index`; the store keeps hashes as given, so any 32 bytes do.
fn row(
    index: u64,
    tenant: &str,
    subject: &str,
    operation: &str,
    occurred_at_ms: i64,
) -> StoredEvent {
    StoredEvent {
        index,
        leaf_hash: hash(index, 0x1e),
        root_after: hash(index, 0x2f),
        record: EventRecord {
            event_id: Uuid::new_v4(),
            occurred_at_ms,
            tenant: tenant.to_owned(),
            subject: subject.to_owned(),
            operation: operation.to_owned(),
            value: format!("framed-avro-{index}").into_bytes(),
        },
    }
}

/// `count` rows from `first`, all for one tenant and subject.
fn rows(first: u64, count: u64) -> Vec<StoredEvent> {
    (first..first + count)
        .map(|i| row(i, "t1", "s1", "DISCLOSURE", 1_000 + i as i64))
        .collect()
}

/// What `query` must return from `rows`, by `Query::matches` and the trait's order.
fn expected(rows: &[StoredEvent], query: &Query) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = rows
        .iter()
        .filter(|r| query.matches(&r.record))
        .cloned()
        .collect();
    out.sort_by_key(|r| (r.record.occurred_at_ms, r.index));
    if let Some(limit) = query.limit {
        out.truncate(limit as usize);
    }
    out
}

// Configuration: always run.

#[test]
fn config_parses_with_defaults() -> Result<()> {
    let config: ScyllaConfig = serde_json::from_str(r#"{"nodes": ["10.0.0.1:9042"]}"#)?;
    assert_eq!(config.nodes, vec!["10.0.0.1:9042"]);
    assert_eq!(config.keyspace, "zenvelope_audit");
    assert_eq!(config.log, "default");
    assert_eq!(config.consistency, ScyllaConsistency::LocalQuorum);
    assert_eq!(config.connect_timeout_ms, 10_000);
    assert_eq!(config.username, None);
    assert_eq!(config.password, None);
    config.validate()?;
    Ok(())
}

#[test]
fn config_parses_every_field() -> Result<()> {
    let config: ScyllaConfig = serde_json::from_str(
        r#"{
            "nodes": ["a:9042", "b:9042"],
            "keyspace": "audit_eu",
            "log": "clinic-7",
            "consistency": "EACH_QUORUM",
            "connect_timeout_ms": 2500,
            "username": "sink",
            "password": "hunter2"
        }"#,
    )?;
    assert_eq!(config.nodes, vec!["a:9042", "b:9042"]);
    assert_eq!(config.keyspace, "audit_eu");
    assert_eq!(config.log, "clinic-7");
    assert_eq!(config.consistency, ScyllaConsistency::EachQuorum);
    assert_eq!(config.connect_timeout_ms, 2_500);
    assert_eq!(config.username.as_deref(), Some("sink"));
    assert_eq!(config.password.as_deref(), Some("hunter2"));
    config.validate()?;
    Ok(())
}

#[test]
fn config_refuses_unknown_fields_and_bad_values() -> Result<()> {
    assert!(serde_json::from_str::<ScyllaConfig>(r#"{"nodes": ["a:1"], "node": "b:1"}"#).is_err());
    assert!(serde_json::from_str::<ScyllaConfig>(r#"{"keyspace": "k"}"#).is_err());
    assert!(
        serde_json::from_str::<ScyllaConfig>(r#"{"nodes": ["a:1"], "consistency": "TWO"}"#)
            .is_err()
    );

    let base = ScyllaConfig::new(vec!["a:9042".to_owned()]);
    base.validate()?;
    let bad: [(&str, ScyllaConfig); 6] = [
        (
            "store.scylla.nodes",
            ScyllaConfig {
                nodes: vec![],
                ..base.clone()
            },
        ),
        (
            "store.scylla.keyspace",
            ScyllaConfig {
                keyspace: "Audit".to_owned(),
                ..base.clone()
            },
        ),
        (
            "store.scylla.keyspace",
            ScyllaConfig {
                keyspace: "a;b".to_owned(),
                ..base.clone()
            },
        ),
        (
            "store.scylla.log",
            ScyllaConfig {
                log: String::new(),
                ..base.clone()
            },
        ),
        (
            "store.scylla.connect_timeout_ms",
            ScyllaConfig {
                connect_timeout_ms: 0,
                ..base.clone()
            },
        ),
        (
            "store.scylla.username",
            ScyllaConfig {
                password: Some("p".to_owned()),
                ..base.clone()
            },
        ),
    ];
    for (want, config) in bad {
        match config.validate() {
            Err(Error::Config { field, .. }) => assert_eq!(field, want),
            other => panic!("{config:?} should be refused on {want}, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn consistency_names_round_trip() -> Result<()> {
    let names = [
        "ONE",
        "QUORUM",
        "LOCAL_QUORUM",
        "ALL",
        "EACH_QUORUM",
        "LOCAL_ONE",
    ];
    assert_eq!(ScyllaConsistency::VARIANTS.len(), names.len());
    for (level, name) in ScyllaConsistency::VARIANTS.into_iter().zip(names) {
        assert_eq!(level.name(), name);
        assert_eq!(level.to_string(), name);
        assert_eq!(name.parse::<ScyllaConsistency>()?, level);
        assert_eq!(
            name.to_ascii_lowercase().parse::<ScyllaConsistency>()?,
            level
        );
        let parsed: ScyllaConsistency = serde_json::from_str(&format!("\"{name}\""))?;
        assert_eq!(parsed, level);
    }
    assert_eq!(ScyllaConsistency::default(), ScyllaConsistency::LocalQuorum);
    for bad in ["", "TWO", "SERIAL", "LOCAL_SERIAL", "ANY", "LOCAL QUORUM"] {
        assert!(bad.parse::<ScyllaConsistency>().is_err(), "{bad} accepted");
    }
    Ok(())
}

#[test]
fn debug_redacts_the_password() {
    let mut config = ScyllaConfig::new(vec!["a:9042".to_owned()]);
    config.username = Some("sink".to_owned());
    config.password = Some("correct horse battery staple".to_owned());
    let printed = format!("{config:?}");
    assert!(!printed.contains("correct horse"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(printed.contains("sink"), "{printed}");
    let pretty = format!("{config:#?}");
    assert!(!pretty.contains("correct horse"), "{pretty}");

    config.password = None;
    assert!(!format!("{config:?}").contains("<redacted>"));
}

#[test]
fn node_lists_parse() {
    assert_eq!(SCYLLA_NODES_ENV, "ZENVELOPE_SCYLLA_NODES");
    assert!(ScyllaConfig::from_node_list("").is_none());
    assert!(ScyllaConfig::from_node_list(" , ,").is_none());
    let config = ScyllaConfig::from_node_list(" a:9042, b:9043 ,,").expect("two nodes");
    assert_eq!(config.nodes, vec!["a:9042", "b:9043"]);
    assert_eq!(config.keyspace, "zenvelope_audit");
    assert_eq!(config.log, "default");
}

#[test]
fn buckets_hold_65536_rows() {
    assert_eq!(BUCKET_ROWS, 65_536);
}

// The store itself: only with a cluster.

#[tokio::test]
async fn append_size_and_read_range_round_trip() -> Result<()> {
    let Some((_, store)) = store().await? else {
        return Ok(());
    };
    assert_eq!(store.size().await?, 0);
    assert!(store.read_range(0, 10).await?.is_empty());

    let first = rows(0, 3);
    store.append(0, first.clone()).await?;
    assert_eq!(store.size().await?, 3);
    store.append(3, Vec::new()).await?;
    assert_eq!(store.size().await?, 3);

    let second = rows(3, 2);
    store.append(3, second.clone()).await?;
    assert_eq!(store.size().await?, 5);

    let all: Vec<StoredEvent> = first.iter().chain(&second).cloned().collect();
    assert_eq!(store.read_range(0, 5).await?, all);
    assert_eq!(store.read_range(1, 4).await?, all[1..4]);
    assert_eq!(store.read_range(2, u64::MAX).await?, all[2..]);
    assert!(store.read_range(5, 9).await?.is_empty());
    assert!(store.read_range(4, 2).await?.is_empty());

    assert_eq!(
        store.find(all[3].record.event_id).await?,
        Some(all[3].clone())
    );
    assert_eq!(store.find(Uuid::new_v4()).await?, None);
    Ok(())
}

#[tokio::test]
async fn existing_ids_reports_stored_events_and_duplicates_are_refused() -> Result<()> {
    let Some((_, store)) = store().await? else {
        return Ok(());
    };
    let stored = rows(0, 3);
    store.append(0, stored.clone()).await?;

    let unknown = Uuid::new_v4();
    let asked = [
        stored[0].record.event_id,
        unknown,
        stored[2].record.event_id,
        stored[0].record.event_id,
    ];
    let found = store.existing_ids(&asked).await?;
    let want: HashSet<Uuid> = [stored[0].record.event_id, stored[2].record.event_id].into();
    assert_eq!(found, want);
    assert!(store.existing_ids(&[]).await?.is_empty());

    // Appending an event the log holds is refused, and the head does not move.
    let mut again = row(3, "t1", "s1", "DISCLOSURE", 9);
    again.record.event_id = stored[1].record.event_id;
    assert!(matches!(
        store.append(3, vec![again]).await,
        Err(Error::Scylla { .. })
    ));
    assert_eq!(store.size().await?, 3);
    assert_eq!(
        store.find(stored[1].record.event_id).await?,
        Some(stored[1].clone())
    );

    // So is one append carrying the same event twice.
    let mut twice = rows(3, 2);
    twice[1].record.event_id = twice[0].record.event_id;
    assert!(matches!(
        store.append(3, twice).await,
        Err(Error::Scylla { .. })
    ));
    assert_eq!(store.size().await?, 3);
    Ok(())
}

#[tokio::test]
async fn wrong_expected_size_is_a_conflict() -> Result<()> {
    let Some((config, store)) = store().await? else {
        return Ok(());
    };
    store.append(0, rows(0, 2)).await?;

    let err = store.append(0, rows(0, 1)).await;
    assert!(
        matches!(
            err,
            Err(Error::Conflict {
                expected: 0,
                actual: 2
            })
        ),
        "{err:?}"
    );
    let err = store.append(5, rows(5, 1)).await;
    assert!(
        matches!(
            err,
            Err(Error::Conflict {
                expected: 5,
                actual: 2
            })
        ),
        "{err:?}"
    );
    // Rows that do not start at the expected size are refused like the embedded store.
    let err = store.append(2, rows(3, 1)).await;
    assert!(
        matches!(
            err,
            Err(Error::Conflict {
                expected: 2,
                actual: 3
            })
        ),
        "{err:?}"
    );

    // A second writer on the same log: whoever moves the head first wins.
    let other = ScyllaStore::connect(&config).await?;
    other.append(2, rows(2, 1)).await?;
    let err = store.append(2, rows(2, 1)).await;
    assert!(
        matches!(
            err,
            Err(Error::Conflict {
                expected: 2,
                actual: 3
            })
        ),
        "{err:?}"
    );
    assert_eq!(store.size().await?, 3);
    Ok(())
}

#[tokio::test]
async fn rows_past_the_head_are_ignored_then_overwritten() -> Result<()> {
    let Some((_, store)) = store().await? else {
        return Ok(());
    };
    let committed = rows(0, 2);
    store.append(0, committed.clone()).await?;

    // A writer crashes after writing rows 2 and 3 but before moving the head.
    let garbage = vec![
        row(2, "t9", "s9", "ERASURE", 50),
        row(3, "t9", "s9", "ERASURE", 51),
    ];
    store.append_rows_without_head(2, garbage.clone()).await?;
    let garbage_ids: Vec<Uuid> = garbage.iter().map(|r| r.record.event_id).collect();

    assert_eq!(store.size().await?, 2);
    assert_eq!(store.read_range(0, 10).await?, committed);
    assert!(store.existing_ids(&garbage_ids).await?.is_empty());
    assert_eq!(store.find(garbage_ids[0]).await?, None);
    let by_subject = Query {
        tenant: Some("t9".to_owned()),
        subject: Some("s9".to_owned()),
        ..Query::default()
    };
    assert!(store.query(&by_subject).await?.is_empty());
    let by_operation = Query {
        operation: Some("ERASURE".to_owned()),
        ..Query::default()
    };
    assert!(store.query(&by_operation).await?.is_empty());
    assert_eq!(store.query(&Query::default()).await?.len(), 2);

    // The restarted writer appends a different event at index 2: it overwrites the
    // leftover row, and the leftover event ids still count as absent (one of them names
    // index 2, which now holds another event).
    let next = row(2, "t1", "s1", "ACCESS", 60);
    store.append(2, vec![next.clone()]).await?;
    assert_eq!(store.size().await?, 3);
    let mut all = committed.clone();
    all.push(next.clone());
    assert_eq!(store.read_range(0, 10).await?, all);
    assert!(store.existing_ids(&garbage_ids).await?.is_empty());
    assert_eq!(store.find(garbage_ids[0]).await?, None);
    assert!(store.query(&by_subject).await?.is_empty());

    // Kafka redelivers the first leftover event; it lands at index 3 and is found there.
    let mut redelivered = garbage[0].clone();
    redelivered.index = 3;
    store.append(3, vec![redelivered.clone()]).await?;
    assert_eq!(store.find(garbage_ids[0]).await?, Some(redelivered.clone()));
    let found = store.existing_ids(&garbage_ids).await?;
    assert_eq!(found, HashSet::from([garbage_ids[0]]));
    assert_eq!(store.query(&by_subject).await?, vec![redelivered]);
    Ok(())
}

#[tokio::test]
async fn queries_by_subject_time_and_operation() -> Result<()> {
    let Some((_, store)) = store().await? else {
        return Ok(());
    };
    // Times deliberately out of index order, with a tie, across two tenants.
    let stored = vec![
        row(0, "t1", "s1", "DISCLOSURE", 300),
        row(1, "t1", "s1", "ACCESS", 100),
        row(2, "t1", "s2", "DISCLOSURE", 200),
        row(3, "t2", "s1", "DISCLOSURE", 150),
        row(4, "t1", "s1", "DISCLOSURE", 100),
        row(5, "t1", "s1", "DISCLOSURE", 500),
    ];
    store.append(0, stored.clone()).await?;

    let subject = |from_ms, to_ms, operation: Option<&str>, limit| Query {
        tenant: Some("t1".to_owned()),
        subject: Some("s1".to_owned()),
        operation: operation.map(str::to_owned),
        from_ms,
        to_ms,
        limit,
    };
    let queries = [
        subject(None, None, None, None),
        subject(Some(100), Some(300), None, None),
        subject(Some(101), None, None, None),
        subject(None, Some(100), None, None),
        subject(None, None, Some("DISCLOSURE"), None),
        subject(None, None, None, Some(2)),
        subject(Some(400), Some(300), None, None),
        Query {
            operation: Some("DISCLOSURE".to_owned()),
            ..Query::default()
        },
        Query {
            operation: Some("DISCLOSURE".to_owned()),
            limit: Some(3),
            ..Query::default()
        },
        Query {
            tenant: Some("t1".to_owned()),
            from_ms: Some(150),
            ..Query::default()
        },
        Query {
            subject: Some("s1".to_owned()),
            to_ms: Some(200),
            ..Query::default()
        },
        Query::default(),
        Query {
            limit: Some(0),
            ..Query::default()
        },
    ];
    for query in &queries {
        let want = expected(&stored, query);
        let got = store.query(query).await?;
        ensure!(got == want, "{query:?}: got {got:?}, want {want:?}");
    }
    // Spot-check the reference itself: tenant t1, subject s1, oldest first, ties by index.
    let indices: Vec<u64> = expected(&stored, &queries[0])
        .iter()
        .map(|r| r.index)
        .collect();
    assert_eq!(indices, vec![1, 4, 0, 5]);
    Ok(())
}

#[tokio::test]
async fn checkpoints_are_idempotent_and_ordered() -> Result<()> {
    let Some((_, store)) = store().await? else {
        return Ok(());
    };
    assert!(store.checkpoints().await?.is_empty());
    let checkpoint = |size: u64, note: &str| StoredCheckpoint {
        size,
        root: hash(size, 0x3c),
        note: note.to_owned(),
        created_at_ms: 1_700_000_000_000 + size as i64,
    };
    let at_five = checkpoint(5, "note at 5");
    let at_two = checkpoint(2, "note at 2");
    let at_forty = checkpoint(40, "note at 40");
    store.add_checkpoint(&at_five).await?;
    store.add_checkpoint(&at_forty).await?;
    store.add_checkpoint(&at_two).await?;
    // Storing a checkpoint for a size already held changes nothing.
    store.add_checkpoint(&at_five).await?;
    store
        .add_checkpoint(&checkpoint(5, "another note at 5"))
        .await?;
    assert_eq!(store.checkpoints().await?, vec![at_two, at_five, at_forty]);
    Ok(())
}
