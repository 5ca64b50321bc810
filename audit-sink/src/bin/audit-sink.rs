//! `audit-sink`: consumes `zenvelope.audit` into the tamper-evident audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use zenvelope_audit::service::{self, SinkConfig};

/// The zenvelope audit sink.
///
/// Consumes audit events (ids, pseudonyms, codes and hashes; never PHI) from
/// zenvelope.audit and appends each exactly once to an append-only store: an embedded
/// SQLite file by default, ScyllaDB in production. Every row extends an RFC 6962 Merkle
/// tree; every few seconds the sink signs a checkpoint (C2SP signed note, Ed25519), stores
/// it and publishes it on zenvelope.checkpoints. An offset is stored only after its event
/// is fsynced.
///
/// Check the log with `zenvelope audit verify`.
///
/// Configuration: a TOML file and/or ZENVELOPE_AUDIT__SECTION__FIELD environment
/// variables (e.g. ZENVELOPE_AUDIT__KAFKA__BOOTSTRAP_SERVERS=broker:9092); see
/// docs/audit.md.
///
/// Examples:
///   audit-sink --new-key audit.example.org/zenvelope --key-file audit.key --vkey-file audit.vkey
///   audit-sink --config audit-sink.toml
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML); environment overrides apply on top.
    #[arg(long, short, env = "ZENVELOPE_AUDIT_CONFIG")]
    config: Option<PathBuf>,
    /// Only check the configuration, then exit.
    #[arg(long)]
    check: bool,
    /// Generate a checkpoint signing key named after this origin, write it to
    /// --key-file (owner-only) and its public verifier key to --vkey-file, then exit.
    #[arg(long, value_name = "ORIGIN", requires_all = ["key_file", "vkey_file"])]
    new_key: Option<String>,
    /// Where --new-key writes the private key.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Where --new-key writes the verifier key (give it to auditors).
    #[arg(long, value_name = "PATH")]
    vkey_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    zenvelope_runtime::service::init_tracing();
    zenvelope_runtime::service::exit_code(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let (Some(origin), Some(key), Some(vkey)) = (&args.new_key, &args.key_file, &args.vkey_file)
    {
        let text = service::write_new_signer(origin, key, vkey)?;
        println!("Signing key written to {} (keep it secret).", key.display());
        println!("Verifier key written to {}: {text}", vkey.display());
        return Ok(());
    }
    let config =
        SinkConfig::load(args.config.as_deref()).context("cannot load the configuration")?;
    if args.check {
        service::read_signer(&config.checkpoint.signing_key_file)?;
        println!("Configuration is valid.");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    zenvelope_runtime::service::cancel_on_signals(shutdown.clone());
    let summary = service::run(config, shutdown).await?;
    zenvelope_runtime::service::log_stopped(&summary);
    Ok(())
}
