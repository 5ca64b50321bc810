//! `zenvelope`: the command-line tool.
//!
//! Thin by design: parse arguments, call into the library crates.

mod audit;
mod demo;
mod inspect;
mod keys;
mod ops;
mod produce;
mod replay;
mod stack;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// End-to-end-encrypted AI processing of sensitive data over Kafka.
///
/// Backends and browsers seal data into envelopes; only attested enclave workers can open
/// them, call the model and seal the answer; an audit sink keeps a tamper-evident log.
#[derive(Parser, Debug)]
#[command(name = "zenvelope", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline locally on sample journal entries and show every stage.
    ///
    /// Starts an embedded Kafka-protocol broker (or uses --bootstrap), the enclave host
    /// and the enclave application in this process, then seals each entry with the
    /// producer SDK (user key from a passphrase with PBKDF2, fleet key wrap, producer
    /// signature), shows what the broker holds, lets the enclave open it and ask the model
    /// (--provider: OpenAI, Anthropic or any OpenAI-compatible server, keys from
    /// ZENVELOPE_OPENAI_API_KEY / ZENVELOPE_ANTHROPIC_API_KEY; without a key, the clearly
    /// labelled offline analyser, not a model), opens the sealed answer as the user, and
    /// prints the audit trail, which the audit sink appends to a tamper-evident log in
    /// --audit-dir. Dev keys only; only the audit log is kept.
    ///
    /// Example: zenvelope demo --entries 2 --iterations 100000
    Demo(demo::Args),
    /// Start the local pipeline and keep it running for `produce` and `subscribe`.
    ///
    /// Runs what `demo` runs (embedded broker or --bootstrap, enclave with a DANGER dev
    /// attestation CA, host, key directory) and writes a client configuration with the
    /// dev key files to --state-dir. Stops on Ctrl-C.
    ///
    /// Example: zenvelope up --state-dir .zenvelope
    Up(up::Args),
    /// Seal a text for a user and send it for analysis (producer SDK).
    ///
    /// The fleet key comes from the attested key directory and is verified first. The
    /// passphrase comes from $ZENVELOPE_PASSPHRASE or --passphrase-file, never from the
    /// command line.
    ///
    /// Example: echo 'Slept badly again.' | ZENVELOPE_PASSPHRASE=... zenvelope produce --config .zenvelope/client.toml --user alice@example.com --wait
    Produce(produce::ProduceArgs),
    /// Follow the result topic: a user's opened answers, or public metadata only without --user.
    ///
    /// Exits non-zero if an answer addressed to the user could not be opened (a wrong
    /// passphrase opens nothing).
    ///
    /// Example: ZENVELOPE_PASSPHRASE=... zenvelope subscribe --config .zenvelope/client.toml --user alice@example.com --from-beginning --count 1
    Subscribe(produce::SubscribeArgs),
    /// The key directory as the SDK sees it (`show`), and DEV keys for a backend (`generate`).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Re-read topics and report on them, for auditors: signatures, gaps, dead letters.
    ///
    /// Reads the request, result and dead-letter topics (or those given with --topic)
    /// over a window of offsets or times, verifies every envelope's signature against the
    /// keys you trust, and reports malformed, tampered and untrusted records, requests
    /// without results, answers without requests and dead letters by reason. Reads
    /// public headers only: nothing is decrypted. Exit status 0 when clean, 1 on
    /// findings, 2 when the replay could not run.
    ///
    /// Example: zenvelope replay --bootstrap kafka:9092 --trust-producer-key
    /// journal-backend:1=producer.pem --result-key fleet-results:1=results.pem
    Replay(Box<replay::Args>),
    /// Check, prove and query the tamper-evident audit log (for auditors).
    ///
    /// `verify` recomputes the Merkle tree and checks every signed checkpoint,
    /// `cross-check` re-reads the audit topic and confirms the store holds exactly its
    /// events, `prove` prints an inclusion proof, `query` and `disclosures` list events
    /// (no PHI: ids, pseudonyms, codes and hashes).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Dead letters: list them by reason and time, show one, redrive them (operators).
    ///
    /// Nothing is decrypted: a dead letter stays sealed; its public header, reason and
    /// times are shown. Redrive re-publishes the original record to its topic with a
    /// redrive count, and refuses messages that already failed --max-redrives times.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// Metered usage per tenant and period, from the admission service's counters.
    ///
    /// Example: zenvelope usage --bootstrap kafka:9092 --tenant therapy-journal
    Usage(ops::UsageArgs),
    /// Print the public header of a sealed envelope (no keys needed, nothing decrypted).
    ///
    /// Reads Avro bytes, raw or Confluent-framed (0x00 + 4-byte schema id), from a file
    /// or from standard input, as binary or hex.
    ///
    /// Example: zenvelope inspect --hex envelope.hex
    Inspect {
        /// File to read; standard input when absent or `-`.
        path: Option<PathBuf>,
        /// The input is hex text rather than binary.
        #[arg(long)]
        hex: bool,
    },
}

/// Logs to stderr, filtered by `RUST_LOG`; by default warnings only (the DANGER notices
/// of dev material among them), and the stack's own progress for `up`.
fn init_tracing(command: &Command) {
    use tracing_subscriber::EnvFilter;
    let default = match command {
        Command::Up(_) => "info,librdkafka=warn,rdkafka=warn",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Demo(_) | Command::Inspect { .. }) {
        init_tracing(&cli.command);
    }
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Up(args) => up::run(&args),
        Command::Produce(args) => produce::produce(&args),
        Command::Subscribe(args) => produce::subscribe(&args),
        Command::Keys(command) => keys::run(&command),
        // Its own exit statuses: clean, findings, error.
        Command::Replay(args) => return replay::main(&args),
        Command::Audit(command) => return audit::main(&command),
        Command::Dlq(command) => return ops::dlq_main(&command),
        Command::Usage(args) => ops::usage(&args),
        Command::Inspect { path, hex } => inspect::run(path.as_deref(), hex),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", zenvelope_runtime::error_report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
