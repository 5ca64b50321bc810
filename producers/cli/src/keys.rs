//! `zenvelope keys`: look at the key directory as the SDK sees it, and make DEV keys.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use zenvelope_envelope::{DEFAULT_RSA_BITS, SigningKey};
use zenvelope_producer::{ClientConfig, KeyDirectory};
use zenvelope_schemas::SchemaCodec;

/// `zenvelope keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Read zenvelope.keys and show every entry with the SDK's verdict (nothing secret).
    ///
    /// Verifies each entry exactly as `produce` would before wrapping a key: pinned root,
    /// pinned PCRs, the key and the entry's fields bound by the attestation document,
    /// validity. Exit status 0 if at least one fleet encryption key verifies, 1 if none.
    ///
    /// Example: zenvelope keys show --config .zenvelope/client.toml
    Show {
        /// The client configuration (broker and key directory policy).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// How long to read the topic before showing it, in seconds.
        #[arg(long, default_value_t = 3)]
        wait_secs: u64,
    },
    /// DEV ONLY: generate a producer signing key and a metadata key for a backend.
    ///
    /// Writes `danger-dev-<id>-v<version>.pk8` (PKCS#8, owner-readable only),
    /// `<id>-v<version>-public.der` (SPKI, for the enclave's trusted_signers and for
    /// replay) and `danger-dev-metadata.key` (64 hex digits) into --out, and prints the
    /// trusted_signers line for the enclave configuration. Production keys belong in a
    /// KMS or HSM, not in files made by a CLI.
    ///
    /// Example: zenvelope keys generate --out keys/ --key-id journal-backend --version 2
    Generate {
        /// Folder to write into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Key id the signatures will name.
        #[arg(long, default_value = "journal-backend")]
        key_id: String,
        /// Key version (rotate by generating the next one and trusting both for a while).
        #[arg(long, default_value_t = 1)]
        version: i32,
        /// `rsa` (RSA-PSS, the design's default) or `ecdsa` (P-256, about 100x faster to sign).
        #[arg(long, default_value = "rsa", value_parser = ["rsa", "ecdsa"])]
        algorithm: String,
        /// RSA modulus size (2048, 3072 or 4096).
        #[arg(long, default_value_t = DEFAULT_RSA_BITS)]
        rsa_bits: usize,
        /// Replace files that already exist.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) fn run(command: &KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Show { config, wait_secs } => show(config, *wait_secs),
        KeysCommand::Generate {
            out,
            key_id,
            version,
            algorithm,
            rsa_bits,
            force,
        } => generate(out, key_id, *version, algorithm, *rsa_bits, *force),
    }
}

fn show(config: &std::path::Path, wait_secs: u64) -> anyhow::Result<()> {
    let config = ClientConfig::load(config)?;
    let policy = config.key_directory_policy()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let directory = KeyDirectory::follow(
                config.kafka.clone(),
                Arc::new(SchemaCodec::offline()?),
                policy,
            )?;
            tokio::time::sleep(Duration::from_secs(wait_secs)).await;
            let entries = directory.entries();
            if entries.is_empty() {
                bail!(
                    "no entry on zenvelope.keys at {} within {wait_secs} s (is enclave-host running with key_directory.publish?)",
                    config.kafka.bootstrap_servers
                );
            }
            for entry in &entries {
                let verdict = match &entry.rejection {
                    None => "verified".to_owned(),
                    Some(reason) => format!("REFUSED: {reason}"),
                };
                println!(
                    "{}  {}  {verdict}",
                    entry.name,
                    entry.fingerprint.as_deref().unwrap_or("-")
                );
            }
            match directory.fleet() {
                Ok(ring) => {
                    let key = ring.current().context("empty fleet keyring")?;
                    println!(
                        "requests are wrapped to fleet key {} v{}",
                        zenvelope_envelope::Keyed::key_id(key),
                        zenvelope_envelope::Keyed::key_version(key)
                    );
                    Ok(())
                }
                Err(error) => Err(error.into()),
            }
        })
}

fn generate(
    out: &std::path::Path,
    key_id: &str,
    version: i32,
    algorithm: &str,
    rsa_bits: usize,
    force: bool,
) -> anyhow::Result<()> {
    eprintln!("WARNING: DEV keys in plain files; production keys belong in a KMS or HSM.");
    let key = match algorithm {
        "ecdsa" => SigningKey::generate_ecdsa_p256(key_id, version)?,
        _ => SigningKey::generate(key_id, version, rsa_bits)?,
    };
    let mut metadata = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut *metadata).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let files = [
        (
            format!("danger-dev-{key_id}-v{version}.pk8"),
            key.to_pkcs8_der()?.to_vec(),
            true,
        ),
        (
            format!("{key_id}-v{version}-public.der"),
            key.spki_der().to_vec(),
            false,
        ),
        (
            "danger-dev-metadata.key".to_owned(),
            hex::encode(*metadata).into_bytes(),
            true,
        ),
    ];
    for (name, bytes, secret) in &files {
        let path = out.join(name);
        if path.exists() && !force {
            bail!(
                "{} exists; pass --force to replace it (a replaced metadata key changes every subject pseudonym)",
                path.display()
            );
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        if *secret {
            crate::up::restrict(&path)?;
        }
        println!("wrote {}", path.display());
    }
    println!(
        "enclave-app [app] trusted_signers entry:\n  {{ key_id = \"{key_id}\", key_version = {version}, spki_der_hex = \"{}\" }}",
        hex::encode(key.spki_der())
    );
    println!(
        "fingerprint (SHA-256 of SPKI): {}",
        zenvelope_envelope::spki_fingerprint(key.spki_der())
    );
    Ok(())
}
