//! `zenvelope-admission`: admission checks, tier quotas and usage metering in front of the
//! enclave fleet. Holds no key; never opens an envelope.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use zenvelope_processors::AdmissionConfig;
use zenvelope_runtime::service::{cancel_on_signals, init_tracing, log_stopped};

/// Admission processor: checks every sealed request (framing, structure, size, the
/// tenant's producer signature, allowed purposes), enforces tier quotas (Free 100/day,
/// Starter 10,000/month, Pro 100,000/month, Enterprise unlimited) and meters usage.
///
/// Reads zenvelope.requests; admitted requests go to zenvelope.admitted (point the
/// enclave host's consumer.topics there), refused ones to zenvelope.dlq with a reason
/// code and a notice on zenvelope.rejections. Usage: GET /v1/usage and /v1/health on
/// http.listen (127.0.0.1:9470 by default).
///
/// Configuration: a TOML file (processors/config/admission.example.toml) and/or
/// ZENVELOPE_ADMISSION__SECTION__FIELD environment variables, e.g.
/// ZENVELOPE_ADMISSION__KAFKA__BOOTSTRAP_SERVERS=broker:9092.
#[derive(Parser, Debug)]
#[command(name = "zenvelope-admission", version)]
struct Args {
    /// The configuration file.
    #[arg(long, env = "ZENVELOPE_ADMISSION_CONFIG")]
    config: Option<PathBuf>,
    /// Only check the configuration (and read every producer key), then exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    zenvelope_runtime::service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing();
    let config =
        AdmissionConfig::load(args.config.as_deref()).context("cannot load the configuration")?;
    let tenants = config
        .tenants()
        .context("the configuration is not usable")?;
    if args.check {
        println!(
            "Configuration OK: {} tenant(s), {} producer key(s).",
            tenants.len(),
            config
                .tenants
                .values()
                .map(|t| t.producer_keys.len())
                .sum::<usize>()
        );
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let summary = zenvelope_processors::service::run(config, shutdown).await?;
    log_stopped(&summary.check);
    log_stopped(&summary.quota);
    log_stopped(&summary.metering);
    Ok(())
}
