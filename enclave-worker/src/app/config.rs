//! [`AppConfig`]: the enclave application's typed configuration, parsed once at start-up.
//!
//! It holds policy and bounds only. Key material is not configuration: the fleet private
//! keys and the result signing key are released by KMS at boot ([`crate::kms`]) and
//! handed to [`super::Processor::new`] in [`super::ProcessorParts`]; the producers' public
//! keys are pinned here (public data) and turned into a keyring by
//! [`AppConfig::trusted_signer_keyring`].

use std::collections::BTreeMap;

use serde::Deserialize;
use zenvelope_envelope::{Keyring, Limits, Purpose, VerifyingKey};

use super::AppError;

/// Actor written into every audit event by default.
pub const DEFAULT_ACTOR: &str = "enclave-app";

/// The enclave application's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Identity written as `actor` into every audit event (a fixed service name, not a
    /// host name). Default `enclave-app`.
    #[serde(default = "default_actor")]
    pub actor: String,
    /// Producer signing keys the enclave trusts (zero trust: nothing else is opened).
    #[serde(default)]
    pub trusted_signers: Vec<TrustedSignerConfig>,
    /// Tenants allowed to use this enclave, each with the purposes of use it may claim.
    /// A tenant not listed is refused (`tenant_not_allowed`).
    pub tenants: BTreeMap<String, TenantPolicy>,
    /// How old or how far in the future a request's `created_at_ms` may be.
    #[serde(default)]
    pub freshness: FreshnessConfig,
    /// Opens unsigned requests. Never in production: anyone who can write to the request
    /// topic could then make the enclave call the model with the fleet's authority.
    #[serde(default)]
    pub danger_accept_unsigned: bool,
    /// Size bounds of request envelopes, checked before anything is allocated.
    #[serde(default)]
    pub limits: Limits,
    /// The model this enclave calls and the bounds on what a request may ask of it.
    pub model: ModelConfig,
    /// Sizes of the duplicate-request and DEK caches.
    #[serde(default)]
    pub caches: CacheConfig,
    /// Most requests processed at once; `Process` frames above it get `BUSY`.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long a published key directory entry is valid, milliseconds from when the host
    /// asked for it. Default seven days; the host asks again every hour by default.
    #[serde(default = "default_key_directory_validity_ms")]
    pub key_directory_validity_ms: i64,
}

fn default_key_directory_validity_ms() -> i64 {
    super::directory::DEFAULT_KEY_VALIDITY_MS
}

fn default_actor() -> String {
    DEFAULT_ACTOR.to_owned()
}

fn default_max_in_flight() -> usize {
    64
}

impl AppConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, AppError> {
        toml::from_str(text).map_err(|e| AppError::Config {
            reason: e.message().to_owned(),
        })
    }

    /// The pinned producer keys as a keyring.
    pub fn trusted_signer_keyring(&self) -> Result<Keyring<VerifyingKey>, AppError> {
        let mut ring = Keyring::new();
        for signer in &self.trusted_signers {
            let der = decode_hex(&signer.spki_der_hex).ok_or_else(|| AppError::Config {
                reason: format!(
                    "trusted signer {:?} version {}: spki_der_hex is not hex",
                    signer.key_id, signer.key_version
                ),
            })?;
            let key = VerifyingKey::from_spki_der(signer.key_id.clone(), signer.key_version, &der)
                .map_err(|e| AppError::Config {
                    reason: format!(
                        "trusted signer {:?} version {}: {e}",
                        signer.key_id, signer.key_version
                    ),
                })?;
            ring.insert(key).map_err(|e| AppError::Config {
                reason: format!("trusted signers: {e}"),
            })?;
        }
        Ok(ring)
    }
}

/// One pinned producer signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedSignerConfig {
    /// Key id the producer signs with.
    pub key_id: String,
    /// Key version.
    pub key_version: i32,
    /// DER SubjectPublicKeyInfo of the RSA-PSS key, hex.
    pub spki_der_hex: String,
}

/// What one tenant may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Purposes of use the tenant may claim, as envelope symbols (`TREATMENT`,
    /// `PAYMENT`, `OPERATIONS`, `RESEARCH`, `PUBLIC_HEALTH`, `INDIVIDUAL_REQUEST`).
    /// Others are refused (`purpose_not_allowed`).
    pub allowed_purposes: Vec<String>,
}

impl TenantPolicy {
    pub(crate) fn purposes(&self, tenant: &str) -> Result<Vec<Purpose>, AppError> {
        self.allowed_purposes
            .iter()
            .map(|p| {
                Purpose::from_symbol(p).ok_or_else(|| AppError::Config {
                    reason: format!("tenant {tenant:?}: unknown purpose of use {p:?}"),
                })
            })
            .collect()
    }
}

/// Freshness of requests (their header's `created_at_ms` against the enclave clock).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreshnessConfig {
    /// Oldest a request may be, in milliseconds (`stale` beyond). Default 15 minutes.
    pub max_age_ms: u64,
    /// How far a request's creation time may lie ahead of the enclave clock, in
    /// milliseconds (`from_the_future` beyond). Default 2 minutes.
    pub max_future_skew_ms: u64,
}

impl Default for FreshnessConfig {
    fn default() -> Self {
        Self {
            max_age_ms: 15 * 60 * 1000,
            max_future_skew_ms: 2 * 60 * 1000,
        }
    }
}

/// The model the enclave calls. Requests may lower, never raise, these bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model name as the provider knows it (written into every disclosure receipt). The
    /// request's model preference is ignored: the enclave discloses only to what it is
    /// configured for.
    pub model: String,
    /// Upper bound on output tokens per call; a request's `max_output_tokens` is capped
    /// to it. `None`: the request's value, or the provider default.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature when the request gives none; `None`: provider default.
    #[serde(default)]
    pub default_temperature: Option<f32>,
}

/// Cache sizes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most answered requests remembered for duplicate suppression (0 disables it).
    pub dedupe_max_entries: usize,
    /// Most bytes of sealed results kept for duplicate suppression.
    pub dedupe_max_bytes: usize,
    /// Most unwrapped DEKs kept (0 disables the DEK cache).
    pub dek_cache_max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dedupe_max_entries: 10_000,
            dedupe_max_bytes: 64 * 1024 * 1024,
            dek_cache_max_entries: 1024,
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[limits]` reads into the envelope crate's `Limits`: unset fields keep their
    /// defaults, unknown ones are refused.
    #[test]
    fn limits_take_defaults_and_refuse_unknown_fields() {
        let base = "[tenants.clinic]\nallowed_purposes = [\"TREATMENT\"]\n[model]\nmodel = \"m\"\n";
        let cfg =
            AppConfig::from_toml(&format!("{base}[limits]\nmax_recipients = 4\n")).expect("parses");
        assert_eq!(
            cfg.limits,
            Limits {
                max_recipients: 4,
                ..Limits::default()
            }
        );
        assert!(AppConfig::from_toml(&format!("{base}[limits]\nmax_recipient = 4\n")).is_err());
    }

    #[test]
    fn parses_a_minimal_config_and_refuses_unknown_fields() {
        let cfg = AppConfig::from_toml(
            r#"
            [tenants.clinic]
            allowed_purposes = ["TREATMENT"]
            [model]
            model = "gpt-test"
            "#,
        )
        .expect("config");
        assert_eq!(cfg.actor, DEFAULT_ACTOR);
        assert_eq!(cfg.freshness.max_age_ms, 900_000);
        assert!(!cfg.danger_accept_unsigned);
        assert_eq!(
            cfg.limits.max_envelope_bytes,
            Limits::default().max_envelope_bytes
        );
        assert!(
            AppConfig::from_toml("accept_unsigned = true\n[tenants]\n[model]\nmodel = \"m\"")
                .is_err()
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            decode_hex(&encode_hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
