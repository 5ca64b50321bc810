//! `zenvelope up`: the local stack, left running for `produce` and `subscribe`.
//!
//! Starts what `demo` starts (see [`crate::stack`]) and writes a client configuration
//! with the dev material into the state folder, so other terminals can use the stack with
//! `--config`. Stops on Ctrl-C (or SIGTERM).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use zenvelope_envelope::DEFAULT_RSA_BITS;

use zenvelope_processors::Tier;

use crate::stack::{LocalStack, PRODUCER_KEY_ID, RESULT_KEY_ID, StackOptions, TENANT};

/// The client configuration `up` writes into the state folder.
pub(crate) const CLIENT_CONFIG_FILE: &str = "client.toml";

/// Arguments of `zenvelope up`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folder for the stack's client configuration and DEV key files (created; its
    /// previous content is replaced).
    #[arg(long, default_value = ".zenvelope", value_name = "DIR")]
    state_dir: PathBuf,
    /// Use this Kafka broker (host:port) instead of the embedded one: a development
    /// broker of its own, not one where other zenvelope services run (this stack's
    /// admission and host read zenvelope.requests and zenvelope.admitted there too).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// RSA modulus size of the dev fleet and producer keys (2048, 3072 or 4096).
    #[arg(long, default_value_t = DEFAULT_RSA_BITS)]
    rsa_bits: usize,
    #[command(flatten)]
    model: crate::stack::ModelArgs,
    /// The stack tenant's tier: its quota, which admission enforces (counters live on
    /// the broker's zenvelope.usage topic, so they start afresh with the embedded one).
    #[arg(long, value_enum, default_value_t = Tier::Free)]
    tier: Tier,
    /// Where admission serves `GET /v1/usage` and `GET /v1/health` (port 0: any free
    /// port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = zenvelope_processors::config::DEFAULT_HTTP_LISTEN)]
    usage_listen: std::net::SocketAddr,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(up(args))
}

async fn up(args: &Args) -> anyhow::Result<()> {
    println!("zenvelope up: the local pipeline, running until Ctrl-C.");
    println!("WARNING: dev keys and a dev attestation CA; never use them for real data.\n");
    let stack = LocalStack::start(&StackOptions {
        bootstrap: args.bootstrap.clone(),
        rsa_bits: args.rsa_bits,
        host_group: "zenvelope-up-host",
        model: args.model.clone(),
        audit_dir: args.state_dir.clone(),
        tier: args.tier,
        usage_listen: Some(args.usage_listen),
    })
    .await?;
    let config = write_state(&args.state_dir, &stack)?;
    println!("ready      client configuration: {}", config.display());
    println!("           in another terminal:");
    println!(
        "             echo 'Slept badly again.' | ZENVELOPE_PASSPHRASE='a passphrase' zenvelope produce --config {} --user alice@example.com",
        config.display()
    );
    println!(
        "             ZENVELOPE_PASSPHRASE='a passphrase' zenvelope subscribe --config {} --user alice@example.com --from-beginning",
        config.display()
    );
    let file = |name: &str| args.state_dir.join(name).display().to_string();
    let (store, vkey) = (
        file(crate::stack::audit_files::STORE),
        file(crate::stack::audit_files::VERIFIER_KEY),
    );
    let results_key = file(crate::demo::RESULTS_PUBLIC_KEY_FILE);
    let bootstrap = &stack.kafka.bootstrap_servers;
    println!(
        "           audit the topics (nothing decrypted): zenvelope replay --bootstrap {bootstrap} --trust-producer-key {PRODUCER_KEY_ID}:1={} --result-key {RESULT_KEY_ID}:1={results_key}",
        file("producer-public.der"),
    );
    println!(
        "           check the audit log: zenvelope audit verify --store {store} --vkey-file {vkey}"
    );
    println!(
        "           account for disclosures: zenvelope audit disclosures --store {store} --result-key {RESULT_KEY_ID}:1={results_key}"
    );
    println!(
        "           compare it with the audit topic: zenvelope audit cross-check --bootstrap {bootstrap} --store {store} --vkey-file {vkey}"
    );
    println!(
        "           usage and quota: zenvelope usage --bootstrap {bootstrap} --tenant {TENANT}"
    );
    println!(
        "           dead letters (refused or unanswerable requests): zenvelope dlq list --bootstrap {bootstrap}"
    );
    println!("           Ctrl-C stops the stack.");

    let stopping = stack.stopping();
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot wait for Ctrl-C")?,
        () = terminated() => {}
        () = stopping.cancelled() => {}
    }
    println!("\nstopping   ...");
    let (summary, admission) = stack.stop().await?;
    println!(
        "stopped    {} processed by the host ({} dead-lettered); admission checked {} and refused {}",
        crate::demo::plural(summary.processed, "request"),
        summary.dead_lettered,
        crate::demo::plural(admission.check.processed, "request"),
        admission.check.dead_lettered + admission.quota.dead_lettered,
    );
    Ok(())
}

#[cfg(unix)]
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminated() {
    std::future::pending().await
}

/// Writes the dev key files and `client.toml`; returns the configuration's path.
fn write_state(dir: &Path, stack: &LocalStack) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the state folder {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        restrict(&path)
    };
    write("danger-dev-producer.pk8", &stack.producer_pkcs8)?;
    write(
        "danger-dev-metadata.key",
        hex::encode(stack.metadata_key).as_bytes(),
    )?;
    write("danger-dev-attestation-root.der", &stack.dev_root)?;
    // Public keys, for `zenvelope replay`.
    write("producer-public.der", stack.producer_signer()?.spki_der())?;
    write(crate::demo::RESULTS_PUBLIC_KEY_FILE, &stack.result_spki)?;
    let config = format!(
        r#"# Written by `zenvelope up`: DEV ONLY. The key files next to this one are throwaway
# dev keys; the attestation root is a local dev CA that proves nothing about an enclave.
tenant = "{TENANT}"

[kafka]
bootstrap_servers = "{bootstrap}"

[keys]
signing_key_file = "danger-dev-producer.pk8"
signing_key_id = "{PRODUCER_KEY_ID}"
signing_key_version = 1
metadata_key_file = "danger-dev-metadata.key"

[key_directory]
root = "danger_dev"
danger_dev_root_file = "danger-dev-attestation-root.der"
pcrs = {{ 0 = "{pcr0}" }}
"#,
        bootstrap = stack.kafka.bootstrap_servers,
        pcr0 = hex::encode(&stack.pcr0),
    );
    let path = dir.join(CLIENT_CONFIG_FILE);
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Key files are readable by their owner only.
#[cfg(unix)]
pub(crate) fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

#[cfg(not(unix))]
pub(crate) fn restrict(_: &Path) -> anyhow::Result<()> {
    Ok(())
}
