//! `zenvelope audit`: check, prove and query the audit log, for auditors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use zenvelope_audit::note::{Checkpoint, Verifier};
use zenvelope_audit::store::{AnyStore, AuditStore, Query, ScyllaConfig, StoreConfig};
use zenvelope_audit::verify::{self, Report};
use zenvelope_schemas::{AuditEvent, SchemaCodec};

use crate::replay::{parse_time, time_text};

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
    /// HIPAA accounting of disclosures: every model call that received a subject's data.
    ///
    /// Lists DISCLOSURE events: when, to which provider and model, for which purpose, by
    /// which enclave image, with the hashes of the sealed request and result.
    ///
    /// Example: zenvelope audit disclosures --store .zenvelope/audit.db --subject 7f3a... --from 2026-01-01T00:00:00Z
    Disclosures {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

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
            eprintln!("error: {error:#}");
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
            json,
        } => {
            let store = store.open().await?;
            let rows = store
                .query(&filter.query(Some("DISCLOSURE".to_owned())))
                .await?;
            for row in &rows {
                let event: AuditEvent = codec.decode(&row.record.value).await?;
                let Some(d) = &event.disclosure else {
                    continue;
                };
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
                        })
                    );
                } else {
                    println!(
                        "{}  {} {}  to {} / {}  purpose {}  {}  message {}",
                        time_text(event.occurred_at_ms),
                        event.tenant,
                        event.subject,
                        d.provider,
                        d.model,
                        d.purpose.symbol(),
                        event.outcome.symbol(),
                        event.message_id.map(|m| m.to_string()).unwrap_or_default(),
                    );
                }
            }
            if !*json {
                eprintln!("{} disclosure(s).", rows.len());
            }
            Ok(true)
        }
    }
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
