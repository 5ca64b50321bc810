//! `zenvelope audit`: check, prove and query the audit log, for auditors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use zenvelope_audit::cross_check::{self, Report as CrossCheckReport, Stage};
use zenvelope_audit::note::{Checkpoint, Verifier};
use zenvelope_audit::store::{AnyStore, AuditStore, Query, ScyllaConfig, StoreConfig};
use zenvelope_audit::verify::{self, Report};
use zenvelope_runtime::KafkaConfig;
use zenvelope_schemas::names::topic;
use zenvelope_schemas::{AuditEvent, ReceiptCheck, SchemaCodec};

use crate::replay::{
    BROKER_CHECK_TIMEOUT, KeySpec, ReadArgs, keyring, parse_key_spec, parse_time, time_text,
};

/// The audit subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Recompute the Merkle tree from the store and check every row and every signed
    /// checkpoint; name the first row found altered.
    ///
    /// Exit status 0 when the log is intact, 1 when something was altered, 2 when the
    /// check could not run. Pass a checkpoint you kept from an earlier audit (or from the
    /// zenvelope.checkpoints topic) with --trusted-checkpoint to prove the log still
    /// extends it.
    ///
    /// Example: zenvelope audit verify --store .zenvelope/audit.db --vkey-file .zenvelope/audit.vkey
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: VerifierArgs,
        /// A signed checkpoint (note text) this log must extend.
        #[arg(long, value_name = "FILE")]
        trusted_checkpoint: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an inclusion proof of one event against the newest signed checkpoint.
    ///
    /// The proof (JSON) holds the event's bytes, its leaf hash, the audit path and the
    /// signed checkpoint: anyone with the verifier key can check it without the store.
    ///
    /// Example: zenvelope audit prove 0192f3c4-... --store .zenvelope/audit.db --vkey-file .zenvelope/audit.vkey
    Prove {
        /// The event id (a UUID).
        event_id: uuid::Uuid,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: VerifierArgs,
    },
    /// List audit events by tenant, subject, operation and time.
    ///
    /// Example: zenvelope audit query --store .zenvelope/audit.db --subject 7f3a... --from 2026-11-01T00:00:00Z
    Query {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Only this operation (REQUEST_RECEIVED, REQUEST_OPENED, MODEL_CALLED,
        /// RESULT_PUBLISHED, DEAD_LETTERED, KEY_RELEASED, DISCLOSURE).
        #[arg(long, value_name = "OPERATION")]
        operation: Option<String>,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the audit topic and confirm the store holds exactly its events, and that
    /// every checkpoint published on the checkpoints topic matches the store.
    ///
    /// Exit status 0 when the store and the topics agree, 1 on findings, 2 when the
    /// check could not run.
    ///
    /// Example: zenvelope audit cross-check --bootstrap kafka:9092 --store audit.db --vkey-file audit.vkey
    #[command(after_long_help = CROSS_CHECK_HELP)]
    CrossCheck(Box<CrossCheckArgs>),
    /// HIPAA accounting of disclosures: every model call that received a subject's data.
    ///
    /// Lists DISCLOSURE events: when, to which provider and model, for which purpose, by
    /// which enclave image, with the hashes of the sealed request and result. Each is a
    /// receipt the enclave signed with the fleet's result-signing key: give that key with
    /// --result-key to check every signature.
    ///
    /// Exit status 0 when every receipt listed verifies (or no key was given), 1 when one
    /// is unsigned, signed by an unknown key or altered, 2 when the listing could not run.
    ///
    /// Example: zenvelope audit disclosures --store .zenvelope/audit.db --subject 7f3a... --from 2026-01-01T00:00:00Z --result-key fleet-results:1=results-public.der
    Disclosures {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// The enclave fleet's result-signing public key to check receipts with: key id,
        /// key version and a file holding the key (SPKI, PEM or DER), as `zenvelope keys
        /// show` or the fleet's operator gives it. Repeatable (one per key version).
        #[arg(long = "result-key", value_name = "ID:VERSION=FILE", value_parser = parse_key_spec)]
        result_keys: Vec<KeySpec>,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `zenvelope audit cross-check`.
#[derive(clap::Args, Debug)]
pub(crate) struct CrossCheckArgs {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: VerifierArgs,
    /// The audit topic the sink consumes.
    #[arg(long, value_name = "TOPIC", default_value = topic::AUDIT)]
    topic: String,
    /// The topic the sink publishes its signed checkpoints on.
    #[arg(long, value_name = "TOPIC", default_value = topic::CHECKPOINTS)]
    checkpoints_topic: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    read: ReadArgs,
}

const CROSS_CHECK_HELP: &str = "\
What it checks:
  Reads the audit topic and the checkpoints topic from their oldest offsets to their
  ends as of the start (a live topic does not keep it running), then pages through the
  store. Only ids, rows, offsets and hashes are kept and printed, never event bytes.

  missing_from_store       a well-formed event on the topic is not in the store: lost,
                           deleted, or not yet appended by the sink. Run the check
                           again once the sink has caught up: what is still missing
                           then was lost or deleted.
  not_on_topic             a stored event is not on the topic: inserted into the store,
                           or dropped from the topic by retention (the report prints
                           each partition's oldest offset).
  differs_from_store       the stored bytes of an event differ from the topic's.
  conflicting_on_topic     two different events carry one id; the sink dead-letters the
                           later one (conflicting_event_id). A finding only when the
                           store holds neither.
  malformed_on_topic       a record is not an audit event (dead-lettered by the sink as
                           malformed_audit_event); listed, not a finding.
  checkpoint_signature     a record on the checkpoints topic does not verify with the
                           log's key (forged, or another log's).
  checkpoint_beyond_store  a checkpoint covers more rows than the store holds.
  checkpoint_root          a checkpoint's root differs from the store's at its size.

  Redeliveries (one event several times, byte for byte) are counted only. Run
  `zenvelope audit verify` too: it checks the store against itself.

Exit status:
  0  the store holds exactly the topic's well-formed events and every checkpoint on the
     topic matches it
  1  findings
  2  the check could not run: bad arguments, unreadable key or store, broker
     unreachable, unknown topic

Example:
  zenvelope audit cross-check --bootstrap kafka:9092 \\
      --store /var/lib/zenvelope/audit.db --vkey-file audit.vkey --json > cross-check.json
";

/// Which store to read.
#[derive(clap::Args, Debug)]
pub(crate) struct StoreArgs {
    /// The embedded store file (as written by `zenvelope up` or the audit-sink).
    #[arg(long, value_name = "PATH", required_unless_present = "scylla_nodes")]
    store: Option<PathBuf>,
    /// ScyllaDB contact points (host:port, comma-separated) instead of --store.
    #[arg(
        long,
        value_name = "NODES",
        env = "ZENVELOPE_SCYLLA_NODES",
        conflicts_with = "store"
    )]
    scylla_nodes: Option<String>,
    /// The ScyllaDB keyspace.
    #[arg(long, value_name = "NAME", default_value = "zenvelope_audit")]
    scylla_keyspace: String,
    /// The log's name in that keyspace.
    #[arg(long, value_name = "NAME", default_value = "default")]
    scylla_log: String,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<AnyStore> {
        let config = match (&self.store, &self.scylla_nodes) {
            (Some(path), _) => {
                if !path.exists() {
                    anyhow::bail!("there is no audit store at {}", path.display());
                }
                StoreConfig::Embedded { path: path.clone() }
            }
            (None, Some(nodes)) => {
                let mut config = ScyllaConfig::from_node_list(nodes)
                    .context("--scylla-nodes is not a list of host:port")?;
                config.keyspace = self.scylla_keyspace.clone();
                config.log = self.scylla_log.clone();
                StoreConfig::Scylla(config)
            }
            (None, None) => anyhow::bail!("give --store PATH or --scylla-nodes HOST:PORT"),
        };
        Ok(AnyStore::open(&config).await?)
    }
}

/// The checkpoint verifier key.
#[derive(clap::Args, Debug)]
pub(crate) struct VerifierArgs {
    /// The log's verifier key file (`<name>+<id>+<key>`, as `zenvelope up` or
    /// `audit-sink --new-key` wrote it). Get it from the log's operator, not from the
    /// store you are checking.
    #[arg(long, value_name = "FILE")]
    vkey_file: PathBuf,
}

impl VerifierArgs {
    fn load(&self) -> anyhow::Result<Verifier> {
        let text = std::fs::read_to_string(&self.vkey_file)
            .with_context(|| format!("cannot read {}", self.vkey_file.display()))?;
        Verifier::from_vkey(text.trim())
            .with_context(|| format!("{} is not a verifier key", self.vkey_file.display()))
    }
}

/// Filters shared by `query` and `disclosures`.
#[derive(clap::Args, Debug)]
pub(crate) struct FilterArgs {
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this subject pseudonym.
    #[arg(long)]
    subject: Option<String>,
    /// Events at or after this time (RFC 3339, or ms since the epoch).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<i64>,
    /// Events before this time (RFC 3339, or ms since the epoch).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<i64>,
    /// At most this many events, oldest first.
    #[arg(long)]
    limit: Option<u64>,
}

impl FilterArgs {
    fn query(&self, operation: Option<String>) -> Query {
        Query {
            tenant: self.tenant.clone(),
            subject: self.subject.clone(),
            operation,
            from_ms: self.from,
            to_ms: self.to,
            limit: self.limit,
        }
    }
}

/// Runs an audit subcommand; exit 0 clean, 1 findings, 2 could not run.
pub(crate) fn main(command: &AuditCommand) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {}", zenvelope_runtime::error_report(error.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn run(command: &AuditCommand) -> anyhow::Result<bool> {
    let codec = SchemaCodec::offline()?;
    match command {
        AuditCommand::Verify {
            store,
            key,
            trusted_checkpoint,
            json,
        } => {
            let verifier = key.load()?;
            let trusted = trusted_checkpoint
                .as_deref()
                .map(|path| read_checkpoint(path, &verifier))
                .transpose()?;
            let store = store.open().await?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("verifying {pos}/{len} rows {wide_bar}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = verify::verify(&store, &codec, &verifier, trusted.as_ref(), |done, of| {
                bar.set_length(of);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            Ok(report.is_clean())
        }
        AuditCommand::CrossCheck(args) => cross_check(args).await,
        AuditCommand::Prove {
            event_id,
            store,
            key,
        } => {
            let verifier = key.load()?;
            let store = store.open().await?;
            match verify::prove(&store, &verifier, *event_id).await? {
                Some(proof) => {
                    println!("{}", serde_json::to_string_pretty(&proof)?);
                    Ok(true)
                }
                None => {
                    eprintln!("The event {event_id} is not in the audit log.");
                    Ok(false)
                }
            }
        }
        AuditCommand::Query {
            store,
            filter,
            operation,
            json,
        } => {
            let store = store.open().await?;
            let rows = store.query(&filter.query(operation.clone())).await?;
            for row in &rows {
                let event: AuditEvent = codec.decode(&row.record.value).await?;
                if *json {
                    let mut value = serde_json::to_value(&event)?;
                    value["index"] = row.index.into();
                    println!("{value}");
                } else {
                    println!(
                        "#{:<6} {}  {:<16} {:<8} {} subject={} actor={}{}",
                        row.index,
                        time_text(event.occurred_at_ms),
                        row.record.operation,
                        event.outcome.symbol(),
                        event.tenant,
                        event.subject,
                        event.actor,
                        event
                            .reason_code
                            .as_deref()
                            .map(|r| format!(" reason={r}"))
                            .unwrap_or_default(),
                    );
                }
            }
            if !*json {
                eprintln!("{} event(s).", rows.len());
            }
            Ok(true)
        }
        AuditCommand::Disclosures {
            store,
            filter,
            result_keys,
            json,
        } => {
            let trusted = (!result_keys.is_empty())
                .then(|| keyring(result_keys))
                .transpose()?;
            let mut failed = 0usize;
            let store = store.open().await?;
            let rows = store
                .query(&filter.query(Some("DISCLOSURE".to_owned())))
                .await?;
            for row in &rows {
                let event: AuditEvent = codec.decode(&row.record.value).await?;
                let Some(d) = &event.disclosure else {
                    continue;
                };
                let receipt = trusted.as_ref().map(|keys| event.check_receipt(keys));
                failed += usize::from(receipt.is_some_and(|r| r != ReceiptCheck::Valid));
                if *json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "index": row.index,
                            "event_id": event.event_id,
                            "occurred_at_ms": event.occurred_at_ms,
                            "tenant": event.tenant,
                            "subject": event.subject,
                            "provider": d.provider,
                            "model": d.model,
                            "purpose": d.purpose.symbol(),
                            "outcome": event.outcome.symbol(),
                            "enclave_measurement": event.enclave_measurement,
                            "message_id": event.message_id,
                            "request_sha256": event.request_sha256,
                            "result_sha256": event.result_sha256,
                            "receipt": receipt,
                            "signed_by": d.signature.as_ref().map(|s| format!("{}:{}", s.key_id, s.key_version)),
                        })
                    );
                } else {
                    println!(
                        "{}  {} {}  to {} / {}  purpose {}  {}  message {}  receipt {}",
                        time_text(event.occurred_at_ms),
                        event.tenant,
                        event.subject,
                        d.provider,
                        d.model,
                        d.purpose.symbol(),
                        event.outcome.symbol(),
                        event.message_id.map(|m| m.to_string()).unwrap_or_default(),
                        receipt.map_or("not checked", ReceiptCheck::as_str),
                    );
                }
            }
            if !*json {
                eprintln!("{} disclosure(s).", rows.len());
                match &trusted {
                    None => eprintln!(
                        "Receipt signatures not checked: give the fleet's result-signing key with --result-key."
                    ),
                    Some(_) if failed == 0 => {
                        eprintln!("Every receipt is signed by a trusted fleet key and verifies.")
                    }
                    Some(_) => eprintln!(
                        "{failed} receipt(s) unsigned, signed by an unknown key, or altered."
                    ),
                }
            }
            Ok(failed == 0)
        }
    }
}

async fn cross_check(args: &CrossCheckArgs) -> anyhow::Result<bool> {
    let verifier = args.key.load()?;
    let codec = Arc::new(args.read.codec()?);
    let store = args.store.open().await?;
    let kafka = KafkaConfig::new(args.bootstrap.clone());
    zenvelope_runtime::check_broker(&kafka, BROKER_CHECK_TIMEOUT).await?;
    let options = cross_check::Options {
        topic: args.topic.clone(),
        checkpoints_topic: args.checkpoints_topic.clone(),
        idle_timeout: args.read.idle_timeout(),
    };
    let bar = args.read.progress_bar();
    let mut stage = None;
    let report = cross_check::run(&kafka, &store, codec, verifier, &options, |s, done, of| {
        if stage != Some(s) {
            stage = Some(s);
            bar.set_message(match s {
                Stage::Topic => options.topic.clone(),
                Stage::Checkpoints => options.checkpoints_topic.clone(),
                Stage::Store => "store rows".to_owned(),
            });
        }
        bar.set_length(of);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", cross_check_text(&report));
    }
    Ok(report.is_clean())
}

/// The human cross-check report: counts, offsets, ids and rows; never event bytes.
fn cross_check_text(r: &CrossCheckReport) -> String {
    let mut o = String::new();
    let offsets = |spans: &[cross_check::PartitionSpan]| {
        spans
            .iter()
            .map(|s| {
                format!(
                    "partition {}: {}..{}",
                    s.partition, s.low_offset, s.end_offset
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        o,
        "topic               {}: {} record(s), {} event(s); {} redelivered, {} malformed, {} conflicting id(s)",
        r.topic,
        r.topic_records,
        r.topic_events,
        r.redeliveries,
        r.malformed_on_topic,
        r.conflicting_on_topic
    );
    let _ = writeln!(
        o,
        "offsets read        {} (oldest held..end; records before the oldest were dropped by retention)",
        offsets(&r.partitions)
    );
    let _ = writeln!(
        o,
        "store               {} row(s), {} matching the topic",
        r.store_rows, r.matched
    );
    if r.stored_during_check > 0 {
        let _ = writeln!(
            o,
            "                    {} row(s) appended while the topic was read, from records after its end (not checked)",
            r.stored_during_check
        );
    }
    let _ = writeln!(
        o,
        "checkpoints         {}: {} read, {} match the store (up to row {}), {} failed",
        r.checkpoints_topic,
        r.checkpoints_read,
        r.checkpoints_matched,
        r.checkpoint_covered_size,
        r.checkpoint_problems
    );
    let explained = [
        (
            "missing from store",
            r.missing_from_store,
            "event(s) on the topic: lost, deleted, or not yet appended by the sink; run again once the sink has caught up, and what is still missing was lost or deleted",
        ),
        (
            "not on topic",
            r.not_on_topic,
            "stored row(s): inserted into the store, or dropped from the topic by retention (compare the oldest offsets above)",
        ),
        (
            "differs from store",
            r.differs_from_store,
            "stored row(s) whose bytes differ from the topic's",
        ),
    ];
    for (label, count, meaning) in explained.into_iter().filter(|(_, n, _)| *n > 0) {
        let _ = writeln!(o, "{label:<20}{count} {meaning}");
    }
    let _ = writeln!(
        o,
        "result              {}",
        if r.is_clean() {
            "CONSISTENT"
        } else {
            "FINDINGS"
        }
    );
    for finding in &r.findings {
        let _ = writeln!(o, "  - {}: {}", finding.kind(), finding.describe());
    }
    if r.findings_not_listed > 0 {
        let _ = writeln!(
            o,
            "  … and {} more (all counted above)",
            r.findings_not_listed
        );
    }
    if !r.notices.is_empty() {
        let _ = writeln!(o, "notices (dead-lettered by the sink, not findings)");
        for notice in &r.notices {
            let _ = writeln!(o, "  - {}: {}", notice.kind(), notice.describe());
        }
        if r.notices_not_listed > 0 {
            let _ = writeln!(o, "  … and {} more", r.notices_not_listed);
        }
    }
    o
}

fn read_checkpoint(path: &Path, verifier: &Verifier) -> anyhow::Result<Checkpoint> {
    let note =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Checkpoint::open(&note, verifier).with_context(|| {
        format!(
            "{} is not a checkpoint signed by {}",
            path.display(),
            verifier.name()
        )
    })
}

fn print_report(report: &Report) {
    println!("rows                {}", report.size);
    println!("root                {}", report.root);
    println!(
        "checkpoints         {} valid of {} stored; signed coverage up to row {}",
        report.checkpoints_valid, report.checkpoints_stored, report.covered_size
    );
    if report.size > report.covered_size {
        println!(
            "not yet signed      {} row(s) after the newest checkpoint (the sink signs every few seconds)",
            report.size - report.covered_size
        );
    }
    if let Some(proof) = &report.consistency_proof {
        println!(
            "trusted checkpoint  extended by this log (consistency proof of {} hashes verified)",
            proof.len()
        );
    }
    println!(
        "query index         {}",
        if report.query_index_checked {
            "checked against the rows"
        } else {
            "not checked on this store"
        }
    );
    if report.is_clean() {
        println!("result              INTACT");
        return;
    }
    println!("result              ALTERED");
    if let Some(index) = report.first_bad_index {
        println!("first bad row       {index}");
    }
    for problem in &report.problems {
        println!("  - {}", problem.describe());
    }
    if report.problems_not_listed > 0 {
        println!("  … and {} more", report.problems_not_listed);
    }
}
