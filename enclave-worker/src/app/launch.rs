//! Boot of the enclave application: attestation, key release through KMS, the model
//! provider behind the egress tunnel, then [`serve`](super::serve) on the host connection.
//!
//! Configuration is one TOML document ([`LaunchConfig`]); the binary `enclave-app` reads it
//! and calls [`run`]. Everything dangerous for local runs carries `danger` in its name and
//! logs a warning at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use zenvelope_attestation::Attestor;
use zenvelope_envelope::{Keyring, SigningKey};

use super::{AppConfig, Processor, ProcessorParts};
use crate::egress::{
    EgressConnector, EgressConnectorConfig, LocalForwarder, LocalForwarderConfig, TrustAnchors,
    parse_certificates,
};
use crate::kms::{self, SealedKey};
use crate::providers::{self, ProviderConfig, ProviderKind, RetryPolicy};
use crate::transport::TransportAddr;

/// The label the `danger_dev` attestor derives its PCRs from
/// ([`zenvelope_attestation::danger::dev_measurements`]); local producers pin the
/// resulting PCR0.
pub const DEV_MEASUREMENT_LABEL: &[u8] = b"enclave-app";

/// Attempts at releasing the keys at boot (about a minute in all).
const KEY_RELEASE_ATTEMPTS: u32 = 8;

/// The enclave application's whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Where the enclave listens for the host: `vsock://4294967295:5005` in production,
    /// `tcp://127.0.0.1:PORT` locally.
    pub listen: String,
    /// The host's egress proxy: `vsock://3:5006` in production.
    pub host_egress: String,
    /// Where attestation documents come from.
    pub attestation: AttestationConfig,
    /// How the fleet keys are released.
    pub kms: KmsConfig,
    /// The sealed keys to release.
    pub keys: KeysConfig,
    /// The model provider.
    pub provider: ProviderSection,
    /// Policy, limits, caches (see [`AppConfig`]).
    pub app: AppConfig,
}

/// Attestation source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// `nsm` (the Nitro Security Module, production) or `danger_dev` (a throwaway dev CA
    /// generated at start-up; the document format is real, the trust is not).
    pub mode: AttestationMode,
    /// With `danger_dev`: write the dev CA's root certificate (DER) to this file at
    /// start-up, so local producers can pin it to verify the key directory
    /// (`zenvelope ... --dev-attestation-root FILE`). Ignored with `nsm`.
    #[serde(default)]
    pub danger_dev_root_out: Option<PathBuf>,
}

/// Attestation source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationMode {
    /// `/dev/nsm` inside a Nitro Enclave.
    Nsm,
    /// A dev CA made at start-up. Never in production.
    DangerDev,
}

/// KMS access. The SDK's HTTPS connections leave the enclave through a local forwarder
/// and the host's egress proxy; TLS ends inside the enclave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The endpoint the SDK is told, e.g. `https://kms.eu-west-1.amazonaws.com` (mapped
    /// to the forwarder's address inside the enclave), or the forwarder's `http://` URL
    /// for a local emulator.
    pub endpoint_url: String,
    /// The in-enclave forwarder to the KMS endpoint, through the host.
    pub forward: ForwardConfig,
    /// Decrypt without `Recipient`, for emulators that lack it (moto): the key crosses
    /// the network in the clear and no attestation binds its release. Local runs only.
    #[serde(default)]
    pub danger_without_recipient: bool,
}

/// An in-enclave loopback port forwarded to one destination through the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Loopback address to listen on inside the enclave.
    pub listen: SocketAddr,
    /// Destination host name (or allowlisted IP literal) the host connects to.
    pub host: String,
    /// Destination port.
    pub port: u16,
}

/// The sealed private keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Fleet decryption keys (every version still in use); the newest is current.
    pub fleet: Vec<SealedKeyConfig>,
    /// The fleet's result signing key.
    pub result_signing: SealedKeyConfig,
}

/// One KMS-sealed private key (PKCS#8 DER encrypted under a KMS key with the standard
/// encryption context: purpose, key id, key version).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKeyConfig {
    /// Key id.
    pub key_id: String,
    /// Key version.
    pub key_version: i32,
    /// The KMS `CiphertextBlob`, standard base64.
    pub ciphertext_base64: String,
    /// The KMS key id or ARN to pin, if any.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

impl SealedKeyConfig {
    fn sealed(&self, purpose: &str) -> Result<SealedKey> {
        let ciphertext_blob = base64::engine::general_purpose::STANDARD
            .decode(self.ciphertext_base64.trim())
            .with_context(|| {
                format!(
                    "keys: ciphertext_base64 of {} v{} is not base64",
                    self.key_id, self.key_version
                )
            })?;
        Ok(SealedKey {
            key_id: self.key_id.clone(),
            key_version: self.key_version,
            ciphertext_blob,
            encryption_context: SealedKey::standard_context(
                purpose,
                &self.key_id,
                self.key_version,
            ),
            kms_key_id: self.kms_key_id.clone(),
        })
    }
}

/// The model provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// `openai` (also any OpenAI-compatible server), `anthropic`, or `offline` (a
    /// deterministic text analyser: NOT a model).
    pub kind: ProviderKindName,
    /// Base URL, e.g. `https://api.openai.com`; ignored by `offline`.
    #[serde(default)]
    pub base_url: String,
    /// Extra CA certificates (PEM) trusted instead of the public roots, for private
    /// endpoints.
    #[serde(default)]
    pub ca_pem_path: Option<PathBuf>,
    /// Allow `http://` base URLs (bytes in the clear through the host): local model
    /// servers and tests only.
    #[serde(default)]
    pub danger_allow_plain_http: bool,
    /// Attempts per request, first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Timeout of one attempt, milliseconds.
    #[serde(default = "default_attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
    /// First backoff, milliseconds (doubles per attempt).
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
}

fn default_max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}
fn default_attempt_timeout_ms() -> u64 {
    RetryPolicy::default().attempt_timeout_ms
}
fn default_backoff_base_ms() -> u64 {
    RetryPolicy::default().backoff_base_ms
}

/// Provider names in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKindName {
    /// OpenAI chat completions or compatible.
    Openai,
    /// Anthropic messages.
    Anthropic,
    /// The offline analyser (not a model).
    Offline,
}

impl LaunchConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).context("the enclave-app configuration is invalid")
    }
}

fn attestor(config: &AttestationConfig) -> Result<Arc<dyn Attestor>> {
    Ok(match config.mode {
        AttestationMode::Nsm => Arc::new(
            zenvelope_attestation::NsmAttestor::open()
                .context("cannot open the Nitro Security Module (/dev/nsm)")?,
        ),
        AttestationMode::DangerDev => {
            tracing::warn!(
                "DANGER: attestation documents are signed by a dev CA generated at start-up; no KMS key policy should trust them."
            );
            let ca = zenvelope_attestation::danger::DevCa::generate(false)
                .context("cannot create the dev CA")?;
            if let Some(path) = &config.danger_dev_root_out {
                std::fs::write(path, ca.root_der()).with_context(|| {
                    format!(
                        "cannot write the dev attestation root to {}",
                        path.display()
                    )
                })?;
                tracing::warn!(path = %path.display(), "DANGER: the dev attestation root was written; only local producers may pin it.");
            }
            Arc::new(
                ca.issue(
                    "enclave-app",
                    zenvelope_attestation::danger::dev_measurements(DEV_MEASUREMENT_LABEL),
                )
                .context("cannot issue the dev attestor")?,
            )
        }
    })
}

/// Boots the enclave application and serves the host until `shutdown`.
pub async fn run(config: LaunchConfig, shutdown: CancellationToken) -> Result<()> {
    let listen: TransportAddr = config.listen.parse().context("listen")?;
    let host_egress: TransportAddr = config.host_egress.parse().context("host_egress")?;
    if config.keys.fleet.is_empty() {
        bail!("keys.fleet is empty: the enclave needs at least one fleet key to open requests");
    }

    // KMS traffic leaves through the host like everything else.
    let forwarder = LocalForwarder::bind(LocalForwarderConfig::new(
        config.kms.forward.listen,
        host_egress,
        config.kms.forward.host.clone(),
        config.kms.forward.port,
    ))
    .await
    .context("cannot start the KMS forwarder")?;
    tracing::info!(listen = %forwarder.local_addr(), destination = %format!("{}:{}", config.kms.forward.host, config.kms.forward.port), "KMS forwarder ready.");
    let forwarder_stop = shutdown.child_token();
    tokio::spawn(forwarder.serve(forwarder_stop.clone()));

    let attestor = attestor(&config.attestation)?;
    let measurement = kms::attested_measurement(&*attestor).ok();
    // The host's egress proxy may still be starting: retry with backoff for a while.
    let mut attempt = 0u32;
    let (fleet_keys, result_signer) = loop {
        attempt += 1;
        match release_keys(&config, &*attestor).await {
            Ok(keys) => break keys,
            Err(error) if attempt < KEY_RELEASE_ATTEMPTS && !shutdown.is_cancelled() => {
                tracing::warn!(error = %format!("{error:#}"), attempt, "Key release failed; trying again.");
                tokio::time::sleep(std::time::Duration::from_millis(250 << attempt.min(5))).await;
            }
            Err(error) => return Err(error.context("cannot release the fleet keys")),
        }
    };
    // Keys are released once; the forwarder is not needed afterwards.
    forwarder_stop.cancel();
    tracing::info!(
        fleet_keys = fleet_keys.len(),
        "Fleet keys released; the result signing key is ready."
    );

    let provider = build_provider(&config.provider, host_egress)?;
    let processor = Processor::new(
        &config.app,
        ProcessorParts {
            trusted_signers: config.app.trusted_signer_keyring()?,
            fleet_keys,
            result_signer,
            provider,
            enclave_measurement: measurement,
            attestor: Some(attestor.clone()),
        },
    )?;
    let listener = listen
        .bind()
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "Enclave application ready for the host.");
    super::serve(
        listener,
        Arc::new(processor),
        shutdown,
        config.app.max_in_flight,
    )
    .await;
    Ok(())
}

async fn release_keys(
    config: &LaunchConfig,
    attestor: &dyn Attestor,
) -> Result<(Keyring<zenvelope_envelope::FleetPrivateKey>, SigningKey)> {
    let mut fleet = Keyring::new();
    let signing = config
        .keys
        .result_signing
        .sealed(kms::PURPOSE_SIGNING_KEY)?;
    if config.kms.danger_without_recipient {
        let client = kms::danger::local_kms_client(&config.kms.endpoint_url, &config.kms.region);
        for key in &config.keys.fleet {
            let sealed = key.sealed(kms::PURPOSE_FLEET_KEY)?;
            fleet.insert(kms::danger::danger_release_without_recipient(&client, &sealed).await?)?;
        }
        let der = kms::danger::danger_release_secret_without_recipient(&client, &signing).await?;
        let signer = SigningKey::from_pkcs8_der(signing.key_id.clone(), signing.key_version, &der)
            .context("the released result signing key is not a PKCS#8 RSA key")?;
        return Ok((fleet, signer));
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.kms.region.clone()))
        .endpoint_url(&config.kms.endpoint_url)
        .load()
        .await;
    let client = aws_sdk_kms::Client::new(&sdk);
    for key in &config.keys.fleet {
        let sealed = key.sealed(kms::PURPOSE_FLEET_KEY)?;
        fleet.insert(kms::release_fleet_key(&client, attestor, &sealed).await?)?;
    }
    let signer = kms::release_signing_key(&client, attestor, &signing).await?;
    Ok((fleet, signer))
}

fn build_provider(
    section: &ProviderSection,
    host_egress: TransportAddr,
) -> Result<Arc<dyn providers::ModelProvider>> {
    let kind = match section.kind {
        ProviderKindName::Openai => ProviderKind::OpenAi,
        ProviderKindName::Anthropic => ProviderKind::Anthropic,
        ProviderKindName::Offline => {
            tracing::warn!(
                "The provider is the offline analyser: NOT a model. Answers are a deterministic summary of the text."
            );
            ProviderKind::Offline
        }
    };
    let mut connector = EgressConnectorConfig::new(host_egress);
    if section.danger_allow_plain_http {
        tracing::warn!(
            "DANGER: plain http:// to the model is allowed; the host can read prompts. Local model servers and tests only."
        );
        connector.allow_plain_http = true;
    }
    if let Some(path) = &section.ca_pem_path {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read provider.ca_pem_path {}", path.display()))?;
        connector.trust_anchors = TrustAnchors::Only(parse_certificates(&pem)?);
    }
    let connector = Arc::new(EgressConnector::new(connector)?);
    let mut provider = ProviderConfig::from_env(kind, section.base_url.clone());
    provider.retry = RetryPolicy {
        max_attempts: section.max_attempts,
        attempt_timeout_ms: section.attempt_timeout_ms,
        backoff_base_ms: section.backoff_base_ms,
        ..RetryPolicy::default()
    };
    Ok(Arc::from(providers::build_provider(provider, connector)?))
}
