//! [`ClientConfig`]: the SDK's configuration file, for [`Client::from_config`].
//!
//! ```toml
//! tenant = "therapy-journal"
//!
//! [kafka]
//! bootstrap_servers = "b-1.msk.example:9098"
//! properties = { "security.protocol" = "SASL_SSL" }
//!
//! [keys]
//! # The backend's producer signing key (PKCS#8 DER, RSA or P-256); its public half is
//! # pinned in the enclave's trusted_signers.
//! signing_key_file = "/etc/zenvelope/producer.pk8"
//! signing_key_id = "journal-backend"
//! signing_key_version = 1
//! # The tenant's 32-byte metadata key (pseudonyms), hex, in a file.
//! metadata_key_file = "/etc/zenvelope/metadata.key"
//!
//! [key_directory]
//! # "aws_nitro" in production; "danger_dev" with danger_dev_root_file locally.
//! root = "aws_nitro"
//! pcrs = { 0 = "<PCR0 hex from nitro-cli build-enclave>" }
//! ```
//!
//! Relative paths are read relative to the configuration file's folder. Key files are
//! secrets: keep them readable by the backend only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zenvelope_envelope::{MetadataKey, SigningKey};
use zenvelope_runtime::KafkaConfig;

use crate::directory::KeyDirectoryPolicy;
use crate::error::Error;
use crate::{Client, PinnedMeasurements};

/// The SDK's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The tenant this backend seals for.
    pub tenant: String,
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// The backend's keys.
    pub keys: KeysSection,
    /// How fleet keys are verified.
    pub key_directory: KeyDirectorySection,
    /// PBKDF2 iterations for user keys; 600,000 when absent. Only for the legacy format
    /// and tests.
    #[serde(default)]
    pub pbkdf2_iterations: Option<u32>,
}

/// The backend's own keys, as files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// PKCS#8 DER file of the producer signing key.
    pub signing_key_file: PathBuf,
    /// Its key id, as the enclave's `trusted_signers` names it.
    pub signing_key_id: String,
    /// Its key version.
    pub signing_key_version: i32,
    /// File holding the tenant's 32-byte metadata key as 64 hex digits.
    pub metadata_key_file: PathBuf,
}

/// Which attestation root the key directory must chain to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootName {
    /// The AWS Nitro Enclaves root G1 (production).
    AwsNitro,
    /// A local dev CA, from `danger_dev_root_file`. Local runs only.
    DangerDev,
}

/// How fleet keys are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDirectorySection {
    /// The attestation root.
    pub root: RootName,
    /// With `danger_dev`: the dev CA's root certificate, DER.
    #[serde(default)]
    pub danger_dev_root_file: Option<PathBuf>,
    /// Pinned PCRs, index to lowercase hex; at least PCR0.
    pub pcrs: BTreeMap<u8, String>,
}

impl ClientConfig {
    /// Reads and parses `path`, resolving relative key paths against its folder.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| Error::ConfigFile {
            path: path.display().to_string(),
            reason: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.keys.signing_key_file);
        resolve(&mut config.keys.metadata_key_file);
        if let Some(p) = config.key_directory.danger_dev_root_file.as_mut() {
            resolve(p);
        }
        Ok(config)
    }

    /// The key directory policy this configuration describes.
    pub fn key_directory_policy(&self) -> Result<KeyDirectoryPolicy, Error> {
        let section = &self.key_directory;
        if section.pcrs.is_empty() {
            return Err(Error::KeyDirectory {
                reason: "key_directory.pcrs is empty; pin at least PCR0".to_owned(),
            });
        }
        let mut pins = PinnedMeasurements::new();
        for (index, value) in &section.pcrs {
            let bytes = hex::decode(value.trim()).map_err(|_| Error::KeyDirectory {
                reason: format!("key_directory.pcrs.{index} is not hex"),
            })?;
            pins = pins.with_pcr(*index, bytes);
        }
        match section.root {
            RootName::AwsNitro => Ok(KeyDirectoryPolicy::aws_nitro(pins)),
            RootName::DangerDev => {
                let path =
                    section
                        .danger_dev_root_file
                        .as_ref()
                        .ok_or_else(|| Error::KeyDirectory {
                            reason: "root = \"danger_dev\" needs danger_dev_root_file".to_owned(),
                        })?;
                let root = read(path)?;
                KeyDirectoryPolicy::danger_dev_root(&root, pins)
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::ConfigFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Client {
    /// Builds a client from a configuration file ([`ClientConfig`]): loads the signing
    /// and metadata keys and follows the attested key directory. Needs a Tokio runtime.
    pub fn from_config(path: &Path) -> Result<Client, Error> {
        let config = ClientConfig::load(path)?;
        Self::from_client_config(&config)
    }

    /// Builds a client from an already parsed [`ClientConfig`].
    pub fn from_client_config(config: &ClientConfig) -> Result<Client, Error> {
        let keys = &config.keys;
        let der = zeroize::Zeroizing::new(read(&keys.signing_key_file)?);
        let signer = SigningKey::from_pkcs8_der(
            keys.signing_key_id.clone(),
            keys.signing_key_version,
            &der,
        )?;
        let metadata_hex = zeroize::Zeroizing::new(read(&keys.metadata_key_file)?);
        let metadata = std::str::from_utf8(&metadata_hex)
            .ok()
            .and_then(|s| hex::decode(s.trim()).ok())
            .map(zeroize::Zeroizing::new)
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| Error::ConfigFile {
                path: keys.metadata_key_file.display().to_string(),
                reason: "the metadata key must be 64 hex digits (32 bytes)".to_owned(),
            })?;
        let mut builder = Client::builder(config.kafka.clone(), config.tenant.clone())
            .signer(signer)
            .metadata_key(MetadataKey::from_bytes(metadata))
            .key_directory(config.key_directory_policy()?);
        if let Some(n) = config.pbkdf2_iterations {
            builder = builder.pbkdf2_iterations(n);
        }
        builder.build()
    }
}
