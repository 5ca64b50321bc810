//! `zenvelope dlq` and `zenvelope usage`: the operators' view of dead letters and of
//! metered usage (public facts only: nothing here opens an envelope).

use std::process::ExitCode;

use anyhow::Context as _;
use zenvelope_processors::dlq::{self, DEFAULT_MAX_REDRIVES, Entry, Selection};
use zenvelope_runtime::KafkaConfig;
use zenvelope_schemas::names::topic;

use crate::replay::parse_time;

/// Where the DLQ is and how to read it.
#[derive(clap::Args, Debug)]
pub(crate) struct DlqTarget {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: String,
    /// The dead-letter topic.
    #[arg(long, value_name = "TOPIC", default_value = topic::DLQ)]
    dlq_topic: String,
    /// Confluent Schema Registry URL, when records were framed with registry ids.
    #[arg(long, value_name = "URL")]
    schema_registry: Option<String>,
}

/// Which dead letters.
#[derive(clap::Args, Debug)]
pub(crate) struct DlqFilter {
    /// Only this reason code (e.g. bad_signature, quota_exceeded, malformed).
    #[arg(long, value_name = "CODE")]
    reason: Option<String>,
    /// Only dead letters written at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Only dead letters written before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// Only the dead letter at this DLQ position; repeat for several.
    #[arg(long = "at", value_name = "PARTITION:OFFSET", value_parser = parse_position)]
    at: Vec<(i32, i64)>,
    /// Redrives allowed per message: one redriven this many times already is refused.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_REDRIVES)]
    max_redrives: i32,
}

impl DlqTarget {
    /// The Kafka configuration and the schema codec the DLQ is read with.
    fn connect(&self) -> anyhow::Result<(KafkaConfig, zenvelope_schemas::SchemaCodec)> {
        Ok((
            KafkaConfig::new(self.bootstrap.clone()),
            codec(self.schema_registry.as_deref())?,
        ))
    }
}

impl DlqFilter {
    fn selection(&self) -> Selection {
        Selection {
            reason: self.reason.clone(),
            since_ms: self.since,
            until_ms: self.until,
            at: self.at.clone(),
        }
    }
}

const DLQ_HELP: &str = "\
A dead letter is a message that could not be admitted, opened, verified or answered. It
stays sealed on the DLQ with a reason code; nothing here decrypts it. What is shown is its
public header (message id, tenant, subject pseudonym, kind), the reason and the times.

Redrive re-publishes the original record, byte for byte, to the topic it came from, with
its key and headers and `zenvelope-redrive-count` one higher. A message that fails again
comes back with that count; once it reaches --max-redrives it is refused, so a poison
message cannot loop. Fix the cause first (a missing producer key, a quota), then redrive.

Examples:
  zenvelope dlq list --bootstrap kafka:9092 --reason untrusted_signer --since 2026-11-23T00:00:00Z
  zenvelope dlq show --bootstrap kafka:9092 0:42
  zenvelope dlq redrive --bootstrap kafka:9092 --reason untrusted_signer --dry-run
  zenvelope dlq redrive --bootstrap kafka:9092 --at 0:42

Exit status: 0 done; 1 (redrive) some selected dead letters were refused; 2 the command
could not run.
";

/// `zenvelope dlq`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum DlqCommand {
    /// List dead letters, newest last, by reason and time.
    #[command(after_long_help = DLQ_HELP)]
    List {
        #[command(flatten)]
        target: DlqTarget,
        #[command(flatten)]
        filter: DlqFilter,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter in full (reason, origin, public header).
    #[command(after_long_help = DLQ_HELP)]
    Show {
        #[command(flatten)]
        target: DlqTarget,
        /// Its DLQ position.
        #[arg(value_name = "PARTITION:OFFSET", value_parser = parse_position)]
        position: (i32, i64),
    },
    /// Re-publish dead letters to the topic they came from.
    #[command(after_long_help = DLQ_HELP)]
    Redrive {
        #[command(flatten)]
        target: DlqTarget,
        #[command(flatten)]
        filter: DlqFilter,
        /// Show what would be redriven; produce nothing.
        #[arg(long)]
        dry_run: bool,
        /// Needed to redrive without --at or --reason (every dead letter).
        #[arg(long)]
        all: bool,
        /// JSON report.
        #[arg(long)]
        json: bool,
    },
}

fn parse_position(s: &str) -> Result<(i32, i64), String> {
    let (p, o) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not PARTITION:OFFSET, e.g. 0:42"))?;
    Ok((
        p.parse()
            .map_err(|_| format!("{p:?} is not a partition number"))?,
        o.parse().map_err(|_| format!("{o:?} is not an offset"))?,
    ))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn codec(url: Option<&str>) -> anyhow::Result<zenvelope_schemas::SchemaCodec> {
    zenvelope_schemas::SchemaCodec::from_registry_url(url).context("cannot set up the schema codec")
}

fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn print_entry_line(e: &Entry) {
    println!(
        "{:>3}:{:<8} {:<22} {:<24} {} from {}[{}]@{} redriven {}{}",
        e.partition,
        e.offset,
        e.reason_code,
        time_text(e.failed_at_ms),
        e.message_id.as_deref().unwrap_or("(not an envelope)"),
        e.original_topic,
        e.original_partition,
        e.original_offset,
        e.redrive_count,
        if e.not_redrivable.is_some() {
            " (not redrivable)"
        } else {
            ""
        },
    );
}

/// Runs `zenvelope dlq …`; exit status 0, 1 (refusals on redrive) or 2 (error).
pub(crate) fn dlq_main(command: &DlqCommand) -> ExitCode {
    match run_dlq(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", zenvelope_runtime::error_report(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

fn run_dlq(command: &DlqCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match command {
        DlqCommand::List {
            target,
            filter,
            json,
        } => {
            let (kafka, codec) = target.connect()?;
            let entries = rt.block_on(dlq::list(
                &kafka,
                &codec,
                &target.dlq_topic,
                &filter.selection(),
                filter.max_redrives,
            ))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!("{} dead letter(s) on {}", entries.len(), target.dlq_topic);
                for e in &entries {
                    print_entry_line(e);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { target, position } => {
            let (kafka, codec) = target.connect()?;
            let sel = Selection {
                at: vec![*position],
                ..Selection::default()
            };
            let entries = rt.block_on(dlq::list(
                &kafka,
                &codec,
                &target.dlq_topic,
                &sel,
                DEFAULT_MAX_REDRIVES,
            ))?;
            let e = entries.first().with_context(|| {
                format!(
                    "no dead letter at {}:{} on {}",
                    position.0, position.1, target.dlq_topic
                )
            })?;
            println!("{}", serde_json::to_string_pretty(e)?);
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Redrive {
            target,
            filter,
            dry_run,
            all,
            json,
        } => {
            if filter.at.is_empty() && filter.reason.is_none() && !*all {
                anyhow::bail!(
                    "choose what to redrive with --at or --reason (or --all for every dead letter)"
                );
            }
            let (kafka, codec) = target.connect()?;
            let report = rt.block_on(dlq::redrive(
                &kafka,
                &codec,
                &target.dlq_topic,
                &filter.selection(),
                filter.max_redrives,
                *dry_run,
            ))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let verb = if *dry_run {
                    "would redrive"
                } else {
                    "redriven"
                };
                println!(
                    "{} {verb}, {} refused",
                    report.redriven.len(),
                    report.refused.len()
                );
                for e in &report.redriven {
                    print_entry_line(e);
                }
                for e in &report.refused {
                    println!(
                        "refused {}:{}: {}",
                        e.partition,
                        e.offset,
                        e.not_redrivable.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(if report.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `zenvelope usage`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Usage is counted by the admission service (zenvelope-admission) on the compacted
zenvelope.usage topic: requests admitted and their sealed bytes, requests refused for
quota, answers (RESULT and ERROR) and their sealed bytes, per tenant and period (a UTC day
for the free tier, a UTC month for the others). Counts and sizes only: no PHI.

Examples:
  zenvelope usage --bootstrap kafka:9092
  zenvelope usage --bootstrap kafka:9092 --tenant therapy-journal --period 2026-11-23 --json
")]
pub(crate) struct UsageArgs {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: String,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this period (2026-11-23 or 2026-11).
    #[arg(long)]
    period: Option<String>,
    /// The usage topic.
    #[arg(long, value_name = "TOPIC", default_value = topic::USAGE)]
    usage_topic: String,
    /// Confluent Schema Registry URL, when records were framed with registry ids.
    #[arg(long, value_name = "URL")]
    schema_registry: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `zenvelope usage`.
pub(crate) fn usage(args: &UsageArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let kafka = KafkaConfig::new(args.bootstrap.clone());
    let codec = codec(args.schema_registry.as_deref())?;
    let usage = rt.block_on(zenvelope_processors::usage::read(
        &kafka,
        &codec,
        &args.usage_topic,
        args.tenant.as_deref(),
        args.period.as_deref(),
    ))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<10} {:>9} {:>12} {:>9} {:>8} {:>7} {:>12}",
        "tenant", "period", "requests", "req bytes", "refused", "results", "errors", "result bytes"
    );
    for u in &usage {
        println!(
            "{:<24} {:<10} {:>9} {:>12} {:>9} {:>8} {:>7} {:>12}",
            u.tenant,
            u.period,
            u.requests,
            u.request_bytes,
            u.quota_rejected,
            u.results,
            u.errors,
            u.result_bytes
        );
    }
    if usage.is_empty() {
        println!(
            "(no usage recorded{})",
            args.tenant
                .as_deref()
                .map(|t| format!(" for {t}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
