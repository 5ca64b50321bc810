//! The admission service's configuration (TOML, with `ZENVELOPE_ADMISSION__…` overrides).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zenvelope_envelope::{Keyring, Purpose, VerifyingKey};
use zenvelope_runtime::{KafkaConfig, ProcessorConfig, TelemetryConfig};
use zenvelope_schemas::names::topic;

use crate::error::Error;
use crate::tier::Tier;

/// Prefix of the environment variables that override the configuration, e.g.
/// `ZENVELOPE_ADMISSION__KAFKA__BOOTSTRAP_SERVERS`.
pub const ENV_PREFIX: &str = "ZENVELOPE_ADMISSION";

/// Default HTTP listen address of `GET /v1/usage` and `GET /v1/health`.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9470";

/// The admission service's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// The Kafka cluster.
    pub kafka: KafkaConfig,
    /// Topic names; the defaults are the zenvelope topics.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// The stateless checks' consumer (group `zenvelope-admission`, topic
    /// `zenvelope.requests` by default).
    #[serde(default = "default_check")]
    pub check: ProcessorConfig,
    /// The quota stage's consumer (group `zenvelope-admission-quota`). It handles one
    /// record at a time: its counters must see records in offset order.
    #[serde(default = "default_quota_one")]
    pub quota: ProcessorConfig,
    /// The metering consumer (group `zenvelope-admission-usage`, topics `zenvelope.results` and
    /// `zenvelope.audit`).
    #[serde(default = "default_metering_one")]
    pub metering: ProcessorConfig,
    /// Tenants by id: tier, allowed purposes and the producer keys they sign with.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The usage endpoint (`GET /v1/usage`, `GET /v1/health`).
    #[serde(default)]
    pub http: HttpConfig,
    /// Metrics.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Confluent Schema Registry URL; the offline catalog when absent.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    /// Create the topics at start-up if they are missing (local runs).
    #[serde(default)]
    pub create_topics: bool,
    /// Partitions of topics created by `create_topics`.
    #[serde(default = "default_partitions")]
    pub topic_partitions: i32,
}

/// Topic names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Where producers write requests.
    pub requests: String,
    /// The repartition topic, keyed by tenant.
    pub by_tenant: String,
    /// Where admitted requests go (the enclave host's input).
    pub admitted: String,
    /// Rejection notices for clients.
    pub rejections: String,
    /// The compacted usage counters (also the quota state).
    pub usage: String,
    /// Sealed answers, metered by the metering stage.
    pub results: String,
    /// Audit events: the metering stage reads model tokens off disclosure receipts.
    pub audit: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            requests: topic::REQUESTS.to_owned(),
            by_tenant: topic::ADMISSION_BY_TENANT.to_owned(),
            admitted: topic::ADMITTED.to_owned(),
            rejections: topic::REJECTIONS.to_owned(),
            usage: topic::USAGE.to_owned(),
            results: topic::RESULTS.to_owned(),
            audit: topic::AUDIT.to_owned(),
        }
    }
}

/// One tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// `free` (100 requests a day), `starter` (10,000 a month), `pro` (100,000 a month)
    /// or `enterprise` (no quota).
    pub tier: Tier,
    /// Purposes of use the tenant may claim (envelope symbols, e.g. `TREATMENT`,
    /// `INDIVIDUAL_REQUEST`); requests claiming others are refused.
    pub allowed_purposes: Vec<String>,
    /// The producer keys the tenant's backends sign requests with.
    pub producer_keys: Vec<ProducerKeyConfig>,
}

/// A registered producer signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerKeyConfig {
    /// Key id, as in the envelope's signature.
    pub key_id: String,
    /// Key version.
    pub key_version: i32,
    /// DER SubjectPublicKeyInfo file (RSA for RSA-PSS, or P-256 for ECDSA).
    pub spki_der_file: PathBuf,
}

/// The usage endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; `GET /v1/usage?tenant=ID&period=P` and `GET /v1/health`.
    pub listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_HTTP_LISTEN.parse().ok(),
        }
    }
}

fn default_check() -> ProcessorConfig {
    ProcessorConfig::new("zenvelope-admission", vec![topic::REQUESTS.to_owned()])
}
fn default_quota() -> ProcessorConfig {
    ProcessorConfig::new(
        "zenvelope-admission-quota",
        vec![topic::ADMISSION_BY_TENANT.to_owned()],
    )
}
fn default_metering() -> ProcessorConfig {
    ProcessorConfig::new(
        "zenvelope-admission-usage",
        vec![topic::RESULTS.to_owned(), topic::AUDIT.to_owned()],
    )
}
fn default_partitions() -> i32 {
    4
}

/// A tenant, ready to check requests against.
pub struct Tenant {
    /// Its tier.
    pub tier: Tier,
    /// Purposes it may claim.
    pub purposes: Vec<Purpose>,
    /// Verifies requests against its producer keys (a signature is required).
    pub producers: zenvelope_envelope::Opener,
}

impl Tenant {
    /// A tenant of `tier` that may claim `purposes` and signs with the keys in
    /// `producer_keys`.
    pub fn new(tier: Tier, purposes: Vec<Purpose>, producer_keys: Keyring<VerifyingKey>) -> Self {
        Self {
            tier,
            purposes,
            producers: zenvelope_envelope::Opener::new(producer_keys),
        }
    }
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("tier", &self.tier)
            .field("purposes", &self.purposes)
            .field("producer_keys", &self.producers.trusted().len())
            .finish()
    }
}

impl AdmissionConfig {
    /// Reads the file (if any) and the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        Ok(zenvelope_runtime::load_config(path, ENV_PREFIX)?)
    }

    /// Reads every tenant's keys and checks the values serde cannot: known purposes,
    /// readable keys, a quota stage that takes one record at a time.
    pub fn tenants(&self) -> Result<BTreeMap<String, Tenant>, Error> {
        self.validate()?;
        let mut out = BTreeMap::new();
        for (id, t) in &self.tenants {
            let purposes = t
                .allowed_purposes
                .iter()
                .map(|p| {
                    Purpose::from_symbol(p).ok_or_else(|| {
                        Error::Config(format!("tenant {id:?}: unknown purpose of use {p:?}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut producers = Keyring::new();
            for k in &t.producer_keys {
                let der = std::fs::read(&k.spki_der_file).map_err(|e| {
                    Error::Config(format!(
                        "tenant {id:?}: cannot read producer key file {}: {e}",
                        k.spki_der_file.display()
                    ))
                })?;
                let key = VerifyingKey::from_spki_der(k.key_id.clone(), k.key_version, &der)
                    .map_err(|e| {
                        Error::Config(format!(
                            "tenant {id:?}: {} is not a usable public key: {e}",
                            k.spki_der_file.display()
                        ))
                    })?;
                producers
                    .insert(key)
                    .map_err(|e| Error::Config(format!("tenant {id:?}: {e}")))?;
            }
            out.insert(id.clone(), Tenant::new(t.tier, purposes, producers));
        }
        Ok(out)
    }

    /// Checks the settings serde cannot: no transactional id, quota and metering stages
    /// that take one record at a time.
    pub fn validate(&self) -> Result<(), Error> {
        if self.kafka.transactional_id.is_some() {
            return Err(Error::Config(
                "kafka.transactional_id is not supported by admission: its three loops would share (and fence) one id, and its counters do not rely on transactions".to_owned(),
            ));
        }
        if self.quota.max_in_flight != 1 {
            return Err(Error::Config(
                "quota.max_in_flight must be 1: the quota counters count records in offset order"
                    .to_owned(),
            ));
        }
        if self.metering.max_in_flight != 1 {
            return Err(Error::Config(
                "metering.max_in_flight must be 1: the usage counters count records in offset order"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::new("127.0.0.1:9092"),
            topics: TopicsConfig::default(),
            check: default_check(),
            quota: default_quota_one(),
            metering: default_metering_one(),
            tenants: BTreeMap::new(),
            http: HttpConfig::default(),
            telemetry: TelemetryConfig::default(),
            schema_registry_url: None,
            create_topics: false,
            topic_partitions: default_partitions(),
        }
    }
}

fn default_quota_one() -> ProcessorConfig {
    let mut c = default_quota();
    c.max_in_flight = 1;
    c
}
fn default_metering_one() -> ProcessorConfig {
    let mut c = default_metering();
    c.max_in_flight = 1;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rel: &str) -> AdmissionConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        zenvelope_runtime::load_config_from_vars(Some(&path), ENV_PREFIX, Vec::new())
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn the_shipped_configurations_parse() {
        let example = parse("config/admission.example.toml");
        assert_eq!(example.tenants["therapy-journal"].tier, Tier::Free);
        assert_eq!(example.tenants["clinic-notes"].tier, Tier::Pro);
        assert_eq!(
            (example.quota.max_in_flight, example.metering.max_in_flight),
            (1, 1)
        );
        assert_eq!(example.topics.admitted, topic::ADMITTED);
        let compose = parse("../deploy/compose/admission.toml");
        assert_eq!(compose.tenants["demo-clinic"].tier, Tier::Starter);
        assert_eq!(compose.http.listen.map(|a| a.port()), Some(9470));
        // Without a [quota] section the stage still takes one record at a time.
        assert_eq!(compose.quota.max_in_flight, 1);
    }

    #[test]
    fn a_concurrent_quota_stage_and_unknown_purposes_are_refused() {
        let mut c = AdmissionConfig::default();
        c.quota.max_in_flight = 8;
        assert!(
            c.tenants()
                .is_err_and(|e| e.to_string().contains("quota.max_in_flight must be 1"))
        );
        let mut c = AdmissionConfig::default();
        c.tenants.insert(
            "t".into(),
            TenantConfig {
                tier: Tier::Free,
                allowed_purposes: vec!["GOSSIP".into()],
                producer_keys: Vec::new(),
            },
        );
        assert!(
            c.tenants()
                .is_err_and(|e| e.to_string().contains("unknown purpose of use \"GOSSIP\""))
        );
        let mut c = AdmissionConfig::default();
        c.tenants.insert(
            "t".into(),
            TenantConfig {
                tier: Tier::Free,
                allowed_purposes: Vec::new(),
                producer_keys: vec![ProducerKeyConfig {
                    key_id: "k".into(),
                    key_version: 1,
                    spki_der_file: "/nonexistent/key.der".into(),
                }],
            },
        );
        assert!(c.tenants().is_err_and(|e| {
            e.to_string()
                .contains("cannot read producer key file /nonexistent/key.der")
        }));
    }
}
