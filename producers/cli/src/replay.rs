//! `zenvelope replay`: re-read topics and report on them, for auditors. Verifies
//! signatures and reads public headers only; never decrypts anything.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zenvelope_envelope::{Keyring, VerifyingKey};
use zenvelope_producer::replay::{ReplayReport, TopicRole, WindowBound};
use zenvelope_producer::{ReplayAudit, ReplayFilter, ReplayOptions, TrustedKeys};
use zenvelope_runtime::{KafkaConfig, ReadFrom, ReadTo};
use zenvelope_schemas::SchemaCodec;
use zenvelope_schemas::names::topic;

/// Exit status: the report is clean.
pub(crate) const EXIT_CLEAN: u8 = 0;
/// Exit status: the replay ran and found problems or gaps.
pub(crate) const EXIT_FINDINGS: u8 = 1;
/// Exit status: the replay could not run (bad arguments, unreadable key, broker
/// unreachable, unknown topic, ...).
pub(crate) const EXIT_ERROR: u8 = 2;

/// How long the broker may take to answer before the replay gives up.
pub(crate) const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries shown per list in the human report; `--json` has them all.
const HUMAN_LIST_LIMIT: usize = 20;
/// The PEM label of a SubjectPublicKeyInfo.
const PEM_PUBLIC_KEY: &str = "PUBLIC KEY";

/// Arguments of `zenvelope replay`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: String,
    /// A topic to replay; repeat for several. Default: zenvelope.requests,
    /// zenvelope.results and zenvelope.dlq. Topics are opened (their end fixed) in the
    /// order given.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// Start at this offset on every partition (inclusive).
    #[arg(long, value_name = "OFFSET", conflicts_with = "from_time")]
    from_offset: Option<u64>,
    /// Stop before this offset on every partition (exclusive).
    #[arg(long, value_name = "OFFSET", conflicts_with = "to_time")]
    to_offset: Option<u64>,
    /// Start at the first record at or after this time (inclusive): RFC 3339
    /// (2025-01-31T00:00:00Z) or milliseconds since the Unix epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from_time: Option<i64>,
    /// Stop before the first record at or after this time (exclusive): RFC 3339 or
    /// milliseconds since the Unix epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to_time: Option<i64>,
    /// Report only on this tenant.
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Report only on this subject pseudonym (sp1_...).
    #[arg(long, value_name = "PSEUDONYM")]
    subject: Option<String>,
    /// A producer signing key to trust for REQUEST and RECORD envelopes: key id, key
    /// version and a file holding the public key (SPKI, PEM or DER). Repeatable.
    #[arg(long = "trust-producer-key", value_name = "ID:VERSION=FILE", value_parser = parse_key_spec)]
    producer_keys: Vec<KeySpec>,
    /// A result-signing key of the enclave fleet to trust for RESULT and ERROR
    /// envelopes, as for --trust-producer-key. Repeatable.
    #[arg(long = "result-key", value_name = "ID:VERSION=FILE", value_parser = parse_key_spec)]
    result_keys: Vec<KeySpec>,
    /// Print the full report as JSON on standard output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    read: ReadArgs,
}

/// How a command that re-reads topics reads them; shared by `replay` and
/// `audit cross-check`.
#[derive(clap::Args, Debug)]
pub(crate) struct ReadArgs {
    /// No progress bar (it is shown only when standard error is a terminal anyway).
    #[arg(long, short)]
    quiet: bool,
    /// Confluent Schema Registry URL, when the records were framed with registry ids
    /// rather than the offline catalog's.
    #[arg(long, value_name = "URL")]
    schema_registry: Option<String>,
    /// Give up when no record arrives for this long (a broker that stopped answering).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    idle_timeout_secs: u64,
}

impl ReadArgs {
    /// The codec: the registry's when --schema-registry is given, the offline catalog's
    /// otherwise.
    pub(crate) fn codec(&self) -> anyhow::Result<SchemaCodec> {
        SchemaCodec::from_registry_url(self.schema_registry.as_deref())
            .context("cannot set up the schema codec")
    }

    /// How long a read may wait for a record (at least a second).
    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    /// A progress bar on standard error, hidden with --quiet or when it is not a
    /// terminal.
    pub(crate) fn progress_bar(&self) -> ProgressBar {
        progress_bar(!self.quiet && std::io::stderr().is_terminal())
    }
}

const AFTER_HELP: &str = "\
What it checks:
  Every envelope's signature is verified against the keys you trust (REQUEST and RECORD
  envelopes against --trust-producer-key, RESULT and ERROR against --result-key). Only
  public headers are read: nothing is decrypted and no secret key is needed. Then every
  verified request is accounted for: answered (a verified RESULT or ERROR names it),
  dead-lettered (a DLQ record carries it), or without result. Verified answers whose
  request was not read are listed too. DLQ records are grouped by reason code.

  The window is half-open: --from-* is inclusive, --to-* exclusive, so consecutive windows
  never overlap. Whatever --to-* says, reading stops at the offsets the topics had when
  the replay started, so a replay of a live topic ends. Near the window's edges a request
  may not be answered yet, or an answer may answer a request before the window.

Exit status:
  0  clean: no problem, no request without result, no answer without request
  1  findings: any problem record (malformed, tampered, unsigned, untrusted signer,
     misplaced or mismatched), requests without results, or answers without requests
     (dead letters and duplicates alone are not findings)
  2  the replay could not run: bad arguments, unreadable key, broker unreachable,
     unknown topic

Examples:
  # The whole pipeline, trusting one producer key and the fleet's result key:
  zenvelope replay --bootstrap kafka:9092 \\
      --trust-producer-key journal-backend:1=producer.pem \\
      --result-key fleet-results:1=results.pem

  # One tenant, January 2025, as JSON for a script:
  zenvelope replay --bootstrap kafka:9092 --tenant demo-clinic \\
      --from-time 2025-01-01T00:00:00Z --to-time 2025-02-01T00:00:00Z \\
      --trust-producer-key journal-backend:1=producer.pem \\
      --result-key fleet-results:1=results.pem --json > january.json

  # Only the dead-letter queue, offsets 100 to 199:
  zenvelope replay --bootstrap kafka:9092 --topic zenvelope.dlq \\
      --from-offset 100 --to-offset 200
";

/// `ID:VERSION=FILE`.
#[derive(Clone, Debug)]
pub(crate) struct KeySpec {
    key_id: String,
    key_version: i32,
    path: PathBuf,
}

pub(crate) fn parse_key_spec(s: &str) -> Result<KeySpec, String> {
    const FORMAT: &str = "expected ID:VERSION=FILE, e.g. journal-backend:1=producer.pem";
    let (id_version, path) = s.split_once('=').ok_or(FORMAT)?;
    let (key_id, version) = id_version.rsplit_once(':').ok_or(FORMAT)?;
    if key_id.is_empty() || path.is_empty() {
        return Err(FORMAT.to_owned());
    }
    let key_version = version
        .parse()
        .map_err(|_| format!("the key version {version:?} is not a number ({FORMAT})"))?;
    Ok(KeySpec {
        key_id: key_id.to_owned(),
        key_version,
        path: PathBuf::from(path),
    })
}

/// RFC 3339, or milliseconds since the Unix epoch.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("{s} is too large for milliseconds since the Unix epoch"));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            format!(
                "{s:?} is neither an RFC 3339 time (2025-01-31T00:00:00Z) nor milliseconds since the Unix epoch"
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s} is out of range"))
}

/// Reads a public key file: PEM (`-----BEGIN PUBLIC KEY-----`) or DER SPKI.
fn load_key(spec: &KeySpec) -> anyhow::Result<VerifyingKey> {
    let bytes = std::fs::read(&spec.path)
        .with_context(|| format!("cannot read the key file {}", spec.path.display()))?;
    let der = match std::str::from_utf8(&bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
            pem_spki(text).with_context(|| {
                format!(
                    "{} is PEM but not a single {PEM_PUBLIC_KEY} block",
                    spec.path.display()
                )
            })?
        }
        _ => bytes,
    };
    VerifyingKey::from_spki_der(spec.key_id.clone(), spec.key_version, &der).with_context(|| {
        format!(
            "{} does not hold an RSA or P-256 public key (SPKI)",
            spec.path.display()
        )
    })
}

fn pem_spki(text: &str) -> anyhow::Result<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_PUBLIC_KEY}-----");
    let end = format!("-----END {PEM_PUBLIC_KEY}-----");
    let start = text.find(&begin).context("no BEGIN line")? + begin.len();
    let stop = start + text[start..].find(&end).context("no END line")?;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

pub(crate) fn keyring(specs: &[KeySpec]) -> anyhow::Result<Keyring<VerifyingKey>> {
    let mut ring = Keyring::new();
    for spec in specs {
        ring.insert(load_key(spec)?).with_context(|| {
            format!(
                "the key {}:{} is given twice",
                spec.key_id, spec.key_version
            )
        })?;
    }
    Ok(ring)
}

/// Runs the command and maps the outcome to the documented exit status.
pub(crate) fn main(args: &Args) -> ExitCode {
    match run(args) {
        Ok(true) => ExitCode::from(EXIT_CLEAN),
        Ok(false) => ExitCode::from(EXIT_FINDINGS),
        Err(e) => {
            eprintln!("error: {}", zenvelope_runtime::error_report(e.as_ref()));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether the report is clean.
fn run(args: &Args) -> anyhow::Result<bool> {
    let options = options(args)?;
    let needs_producer_keys = options
        .topics
        .iter()
        .any(|t| TopicRole::of(t) == TopicRole::Envelopes && t != topic::RESULTS);
    let needs_result_keys = options.topics.iter().any(|t| {
        TopicRole::of(t) == TopicRole::Envelopes && t != topic::REQUESTS && t != topic::VAULT
    });
    if needs_producer_keys && args.producer_keys.is_empty() {
        bail!(
            "at least one --trust-producer-key is needed to verify the requests on the topics replayed"
        );
    }
    if needs_result_keys && args.result_keys.is_empty() {
        bail!("at least one --result-key is needed to verify the answers on the topics replayed");
    }
    let keys = TrustedKeys {
        producers: keyring(&args.producer_keys)?,
        results: keyring(&args.result_keys)?,
    };
    let codec = Arc::new(args.read.codec()?);
    let filter = ReplayFilter {
        tenant: args.tenant.clone(),
        subject: args.subject.clone(),
    };
    let kafka = KafkaConfig::new(args.bootstrap.clone());

    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            zenvelope_runtime::check_broker(&kafka, BROKER_CHECK_TIMEOUT).await?;
            let bar = args.read.progress_bar();
            let audit = ReplayAudit::new(codec, keys, filter);
            let report = zenvelope_producer::replay(&kafka, &options, audit, |p| {
                if bar.length() != Some(p.expected) {
                    bar.set_length(p.expected);
                }
                bar.set_position(p.read);
                bar.set_message(p.topic.clone());
            })
            .await;
            bar.finish_and_clear();
            anyhow::Ok(report?)
        })?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(report.clean)
}

fn options(args: &Args) -> anyhow::Result<ReplayOptions> {
    let mut options = ReplayOptions::pipeline();
    if !args.topics.is_empty() {
        options.topics.clone_from(&args.topics);
    }
    let offset = |o: u64, flag: &str| {
        i64::try_from(o).with_context(|| format!("{flag} {o} is larger than any Kafka offset"))
    };
    options.from = match (args.from_offset, args.from_time) {
        (Some(o), _) => ReadFrom::Offset(offset(o, "--from-offset")?),
        (None, Some(t)) => ReadFrom::TimestampMs(t),
        (None, None) => ReadFrom::Beginning,
    };
    options.to = match (args.to_offset, args.to_time) {
        (Some(o), _) => ReadTo::Offset(offset(o, "--to-offset")?),
        (None, Some(t)) => ReadTo::TimestampMs(t),
        (None, None) => ReadTo::Watermark,
    };
    if let (Some(from), Some(to)) = (args.from_offset, args.to_offset)
        && from > to
    {
        bail!("--from-offset {from} is after --to-offset {to}");
    }
    if let (Some(from), Some(to)) = (args.from_time, args.to_time)
        && from > to
    {
        bail!("--from-time is after --to-time");
    }
    options.idle_timeout = args.read.idle_timeout();
    Ok(options)
}

fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::default_bar()
        .template("{msg:20} [{bar:40}] {pos}/{len} records, {per_sec}, {eta} left")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC), or the number if out of range.
pub(crate) fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn bound_text(b: WindowBound, end: bool) -> String {
    match b {
        WindowBound::Beginning => "the beginning".to_owned(),
        WindowBound::Watermark => "the end (as of the replay's start)".to_owned(),
        WindowBound::Offset { offset } if end => format!("offset {offset} (exclusive)"),
        WindowBound::Offset { offset } => format!("offset {offset}"),
        WindowBound::Time { timestamp_ms } if end => {
            format!("{} (exclusive)", time_text(timestamp_ms))
        }
        WindowBound::Time { timestamp_ms } => time_text(timestamp_ms),
    }
}

fn at(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}@{offset}")
}

/// The human report: short, no plaintext (there is none to print), full lists in JSON.
fn human(r: &ReplayReport) -> String {
    let mut o = String::new();
    let s = &r.summary;
    let _ = writeln!(
        o,
        "zenvelope replay: signatures verified, nothing decrypted"
    );
    if let Some(w) = &r.window {
        let _ = writeln!(
            o,
            "window     from {} to {}",
            bound_text(w.from, false),
            bound_text(w.to, true)
        );
    }
    if r.filter.tenant.is_some() || r.filter.subject.is_some() {
        let _ = writeln!(
            o,
            "filter     tenant {}, subject {}",
            r.filter.tenant.as_deref().unwrap_or("(any)"),
            r.filter.subject.as_deref().unwrap_or("(any)")
        );
    }
    let width = r.topics.keys().map(String::len).max().unwrap_or(5).max(5);
    let _ = writeln!(
        o,
        "\n{:width$}  {:>8}  {:>8}  {:>8}  {:>8}",
        "topic", "records", "in scope", "verified", "problems"
    );
    for (name, t) in &r.topics {
        let _ = writeln!(
            o,
            "{name:width$}  {:>8}  {:>8}  {:>8}  {:>8}{}",
            t.records,
            t.in_scope,
            t.verified,
            t.problems,
            if t.role == TopicRole::NotInspected {
                "  (counted, not inspected)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        o,
        "\nrequests   {} verified: {} answered, {} dead-lettered, {} without result",
        s.requests, s.answered, s.dead_lettered, s.without_result
    );
    let _ = writeln!(
        o,
        "answers    {} verified ({} ERROR): {} without request, {} requests answered more than once",
        s.answers, s.error_answers, s.answers_without_request, s.duplicate_answers
    );
    if s.duplicate_requests > 0 {
        let _ = writeln!(
            o,
            "           {} request ids on more than one request record",
            s.duplicate_requests
        );
    }

    section(
        &mut o,
        "problems",
        r.problems.len(),
        r.problems.iter().map(|p| {
            let mut line = format!(
                "{:16} {:22} {}",
                p.class.as_str(),
                p.reason,
                at(&p.record.topic, p.record.partition, p.record.offset)
            );
            if let Some(k) = &p.signer {
                let _ = write!(line, "  signer {}:{}", k.key_id, k.key_version);
            }
            line
        }),
    );
    section(
        &mut o,
        "requests without results",
        r.requests_without_results.len(),
        r.requests_without_results.iter().map(|e| {
            format!(
                "{}  {}  sealed {}  tenant {}  subject {}",
                e.message_id,
                e.records
                    .first()
                    .map(|x| at(&x.topic, x.partition, x.offset))
                    .unwrap_or_default(),
                time_text(e.created_at_ms),
                e.tenant,
                e.subject
            )
        }),
    );
    section(
        &mut o,
        "answers without requests",
        r.answers_without_requests.len(),
        r.answers_without_requests.iter().map(|a| {
            format!(
                "{} {}  {}  answers {} (request id minted {})",
                a.kind,
                a.message_id,
                at(&a.record.topic, a.record.partition, a.record.offset),
                a.correlation_id,
                time_text(a.request_created_at_ms)
            )
        }),
    );
    if !r.dead_letters.is_empty() {
        let _ = writeln!(o, "\ndead letters by reason");
        for (reason, g) in &r.dead_letters {
            let accounted = g
                .records
                .iter()
                .filter(|d| d.accounts_for.is_some())
                .count();
            let _ = writeln!(
                o,
                "  {reason:24} {:>6}  ({accounted} for requests read here)",
                g.count
            );
        }
    }

    let _ = writeln!(o);
    if r.clean {
        let _ = writeln!(o, "CLEAN");
    } else {
        let _ = writeln!(
            o,
            "FINDINGS: {}, {}, {}",
            count(s.problems, "problem", "problems"),
            count(
                s.without_result,
                "request without result",
                "requests without results"
            ),
            count(
                s.answers_without_request,
                "answer without request",
                "answers without requests"
            ),
        );
    }
    o
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn section(o: &mut String, title: &str, total: usize, lines: impl Iterator<Item = String>) {
    if total == 0 {
        return;
    }
    let _ = writeln!(o, "\n{title} ({total})");
    for line in lines.take(HUMAN_LIST_LIMIT) {
        let _ = writeln!(o, "  {line}");
    }
    if total > HUMAN_LIST_LIMIT {
        let _ = writeln!(
            o,
            "  ... and {} more (--json lists them all)",
            total - HUMAN_LIST_LIMIT
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs() {
        let k = parse_key_spec("journal-backend:2=keys/p.pem").expect("valid");
        assert_eq!(
            (k.key_id.as_str(), k.key_version, k.path),
            ("journal-backend", 2, PathBuf::from("keys/p.pem"))
        );
        let k = parse_key_spec("urn:x:7=/k=1.der").expect("colons in the id, = in the path");
        assert_eq!(
            (k.key_id.as_str(), k.key_version, k.path),
            ("urn:x", 7, PathBuf::from("/k=1.der"))
        );
        for bad in ["p.pem", "id=p.pem", ":1=p.pem", "id:1=", "id:v=p.pem"] {
            assert!(parse_key_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000));
        assert_eq!(
            parse_time("2025-01-31T01:00:00.5+01:00"),
            Ok(1_738_281_600_500)
        );
        assert!(parse_time("2025-01-31").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-5").is_err());
        assert_eq!(time_text(1_738_281_600_500), "2025-01-31T00:00:00.5Z");
    }
}
