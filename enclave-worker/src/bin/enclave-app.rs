//! `enclave-app`: the enclave side of the worker. Attests, releases the fleet keys through
//! KMS, then opens requests from the host, calls the model and seals the answers.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use zenvelope_enclave::app::launch::{self, LaunchConfig};

/// The zenvelope enclave application.
///
/// Runs inside an AWS Nitro Enclave (vsock, /dev/nsm) or, for local development, as a
/// plain process on TCP loopback with `attestation.mode = "danger_dev"`. The configuration
/// (TOML) names where to listen for the host, the host's egress proxy, the KMS-sealed
/// fleet keys, the model provider and the tenant policy; see docs/enclave-worker.md.
///
/// Example: enclave-app --config enclave-app.toml
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short, env = "ZENVELOPE_APP_CONFIG")]
    config: PathBuf,
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
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config =
        LaunchConfig::from_toml(&text).with_context(|| format!("in {}", args.config.display()))?;
    if args.check {
        println!("{}: configuration is valid.", args.config.display());
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    zenvelope_enclave::cli::cancel_on_signals(shutdown.clone());
    launch::run(config, shutdown).await
}
