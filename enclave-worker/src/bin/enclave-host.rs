//! `enclave-host`: the parent-instance side of the worker. Bridges `zenvelope.requests`
//! and the enclave, produces sealed results, dead letters and audit events, and runs the
//! enclave's egress proxy.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use zenvelope_enclave::host::{self, HostConfig};

/// The zenvelope enclave host.
///
/// Consumes sealed requests, forwards them to the enclave (vsock in production, TCP on
/// loopback locally), and produces what the enclave answers: sealed results on
/// zenvelope.results, dead letters on zenvelope.dlq, audit events on zenvelope.audit. An
/// offset is stored only after all of them are acknowledged. It never holds a key that
/// opens anything.
///
/// Configuration: a TOML file and/or ZENVELOPE_HOST__SECTION__FIELD environment
/// variables (e.g. ZENVELOPE_HOST__KAFKA__BOOTSTRAP_SERVERS=broker:9092); see
/// docs/enclave-worker.md.
///
/// Example: enclave-host --config enclave-host.toml
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML); environment overrides apply on top.
    #[arg(long, short, env = "ZENVELOPE_HOST_CONFIG")]
    config: Option<PathBuf>,
    /// Only check the configuration, then exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    zenvelope_runtime::service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    zenvelope_enclave::cli::init_tracing();
    let config =
        HostConfig::load(args.config.as_deref()).context("cannot load the configuration")?;
    if args.check {
        println!("Configuration is valid.");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    zenvelope_enclave::cli::cancel_on_signals(shutdown.clone());
    let summary = host::run(config, shutdown).await?;
    zenvelope_runtime::service::log_stopped(&summary);
    Ok(())
}
