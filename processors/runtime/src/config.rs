//! Typed configuration, loaded once at start-up from a TOML file and environment
//! overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zenvelope_schemas::names;

use crate::error::Error;

/// Separator between the prefix and the path segments of an environment override.
pub const ENV_SEPARATOR: &str = "__";

/// The `KafkaConfig` field whose keys are librdkafka property names: in environment
/// overrides below it, `_` stands for `.` (`…__PROPERTIES__SASL_PASSWORD` sets
/// `sasl.password`), because shells do not allow dots in variable names.
pub const PROPERTIES_FIELD: &str = "properties";

/// Default `client.id`.
pub const DEFAULT_CLIENT_ID: &str = "zenvelope";

/// Substrings that mark a property as secret; its value is redacted in `Debug`.
const SECRET_MARKERS: &[&str] = &["password", "secret", "key", "token"];

/// What redacted values print as.
const REDACTED: &str = "**REDACTED**";

/// How to reach the Kafka cluster.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Client id sent to the broker (librdkafka `client.id`).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// librdkafka properties passed through verbatim (`security.protocol`, `sasl.*`,
    /// `ssl.*` for MSK, `linger.ms`, ...). The runtime's delivery guarantees
    /// (idempotence, `acks`, offset storage) cannot be overridden here: the runtime sets
    /// them after these. `Debug` redacts values whose key contains "password", "secret",
    /// "key" or "token".
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Use Kafka transactions with this id if set and the broker supports them: the
    /// processing loop then commits its outputs, dead letters and consumed offsets
    /// together every [`ProcessorConfig::transaction_interval_ms`]. If
    /// `init_transactions` fails, it runs idempotent-only. Correctness never depends on
    /// transactions. Every running instance needs its own id (e.g. group id plus host
    /// name): a second instance with the same id fences the first.
    #[serde(default)]
    pub transactional_id: Option<String>,
}

impl KafkaConfig {
    /// A configuration with only the bootstrap servers set.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: default_client_id(),
            properties: BTreeMap::new(),
            transactional_id: None,
        }
    }

    /// The common librdkafka configuration: servers, client id, then the pass-through
    /// properties.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", &self.client_id);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Producer configuration: idempotent, `acks=all`.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        c
    }

    /// The largest record the producer accepts (`message.max.bytes`, librdkafka's
    /// default 1 000 000 unless overridden in `properties`).
    pub(crate) fn producer_max_message_bytes(&self) -> usize {
        self.properties
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1_000_000)
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let value = if is_secret_key(k) {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), value)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("properties", &properties)
            .field("transactional_id", &self.transactional_id)
            .finish()
    }
}

/// Whether a librdkafka property's value must never be printed.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| key.contains(m))
}

fn default_client_id() -> String {
    DEFAULT_CLIENT_ID.to_owned()
}

/// How a processor consumes, bounds and routes its work.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Consumer group id.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Most messages handled at once; polling stops while this many are in flight.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Inbound values larger than this go to the DLQ as `oversized` without reaching the
    /// handler.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How often a message whose handler returns `Retry` is retried before it goes to
    /// the DLQ as `retries_exhausted`.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Backoff before the first retry; it doubles with each further retry (capped at
    /// [`MAX_BACKOFF_MS`](crate::MAX_BACKOFF_MS)). Also the backoff between attempts to
    /// produce after a transient failure.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// How long shutdown waits for in-flight messages before abandoning them (they are
    /// redelivered after a restart).
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Where dead letters go.
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// With transactions (`kafka.transactional_id`): how often the open transaction is
    /// committed. Longer means fewer commits, and results that reach `read_committed`
    /// readers later.
    #[serde(default = "default_transaction_interval_ms")]
    pub transaction_interval_ms: u64,
}

impl ProcessorConfig {
    /// A configuration with defaults for everything but the group and the topics.
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            max_in_flight: default_max_in_flight(),
            max_message_bytes: default_max_message_bytes(),
            max_retries: default_max_retries(),
            retry_backoff_ms: default_retry_backoff_ms(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            dlq_topic: default_dlq_topic(),
            transaction_interval_ms: default_transaction_interval_ms(),
        }
    }

    /// Checks the values serde cannot.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.group_id.trim().is_empty() {
            return Err(Error::ConfigValue {
                field: "group_id",
                reason: "it must not be empty",
            });
        }
        if self.topics.is_empty() {
            return Err(Error::ConfigValue {
                field: "topics",
                reason: "at least one topic is needed",
            });
        }
        if self.max_in_flight == 0 {
            return Err(Error::ConfigValue {
                field: "max_in_flight",
                reason: "it must be at least 1",
            });
        }
        if self.max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(Error::ConfigValue {
                field: "max_in_flight",
                reason: "it is larger than a semaphore can count",
            });
        }
        if self.transaction_interval_ms == 0 {
            return Err(Error::ConfigValue {
                field: "transaction_interval_ms",
                reason: "it must be at least 1",
            });
        }
        if self.dlq_topic.trim().is_empty() {
            return Err(Error::ConfigValue {
                field: "dlq_topic",
                reason: "it must not be empty",
            });
        }
        Ok(())
    }
}

fn default_max_in_flight() -> usize {
    256
}
fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_backoff_ms() -> u64 {
    200
}
fn default_shutdown_grace_ms() -> u64 {
    30_000
}
fn default_transaction_interval_ms() -> u64 {
    100
}
fn default_dlq_topic() -> String {
    names::topic::DLQ.to_owned()
}

/// Telemetry: where Prometheus scrapes metrics.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the Prometheus scrape endpoint (`/metrics`); none, no exporter.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

/// Loads a service's configuration: the TOML file at `path` (if any), then environment
/// overrides named `{env_prefix}__SECTION__FIELD`.
///
/// A double underscore separates nesting levels; names are matched in lower case. Values
/// are parsed as TOML (`256`, `true`, `["a", "b"]`, `"1"` for a string of digits) and
/// taken as plain strings when they do not parse (`127.0.0.1:9092`). Below a
/// [`PROPERTIES_FIELD`] table, `_` stands for `.`:
/// `ZENVELOPE_HOST__KAFKA__PROPERTIES__SECURITY_PROTOCOL=SASL_SSL` sets
/// `kafka.properties."security.protocol"`.
pub fn load_config<T: DeserializeOwned>(path: Option<&Path>, env_prefix: &str) -> Result<T, Error> {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_config_from_vars(path, env_prefix, vars)
}

/// [`load_config`] with the environment given explicitly (for tests, and for callers
/// that already hold a snapshot of it).
pub fn load_config_from_vars<T, I>(
    path: Option<&Path>,
    env_prefix: &str,
    vars: I,
) -> Result<T, Error>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
                path: path.to_owned(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| Error::ConfigSyntax {
                    path: path.to_owned(),
                    line: e
                        .span()
                        .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                        .unwrap_or(0),
                    message: e.message().to_owned(),
                })?
        }
        None => toml::Table::new(),
    };

    let prefix = format!("{env_prefix}{ENV_SEPARATOR}");
    let mut overrides: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    // Deterministic order, so that conflicting overrides fail the same way every time.
    overrides.sort();
    let mut var_names = Vec::new();
    for (var, value) in overrides {
        let segments = env_segments(&var[prefix.len()..]).map_err(|reason| Error::ConfigEnv {
            var: var.clone(),
            reason,
        })?;
        insert_override(&mut table, &segments, parse_env_value(&value)).map_err(|reason| {
            Error::ConfigEnv {
                var: var.clone(),
                reason,
            }
        })?;
        var_names.push(var);
    }

    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            let mut origin = match path {
                Some(p) => format!("the file {}", p.display()),
                None => "no file".to_owned(),
            };
            if !var_names.is_empty() {
                origin.push_str(&format!(
                    " with the environment overrides {}",
                    var_names.join(", ")
                ));
            }
            Error::ConfigInvalid {
                origin,
                message: e.message().to_owned(),
            }
        })
}

/// Splits the part of a variable name after the prefix into lower-case keys.
fn env_segments(rest: &str) -> Result<Vec<String>, &'static str> {
    let raw: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
    if raw.iter().any(|s| s.is_empty()) {
        return Err(
            "it has an empty segment (three or more underscores in a row, or a trailing separator)",
        );
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut in_properties = false;
    for seg in raw {
        let mut key = seg.to_ascii_lowercase();
        if in_properties {
            key = key.replace('_', ".");
        }
        in_properties = key == PROPERTIES_FIELD;
        out.push(key);
    }
    Ok(out)
}

/// A TOML scalar or array if the value parses as one, else the string itself.
fn parse_env_value(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

fn insert_override(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), &'static str> {
    let Some((last, parents)) = path.split_last() else {
        return Err("it names no key after the prefix");
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => return Err("a key on its path is a value, not a table"),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_parse_as_toml_or_string() {
        assert_eq!(parse_env_value("256"), toml::Value::Integer(256));
        assert_eq!(parse_env_value("true"), toml::Value::Boolean(true));
        assert_eq!(
            parse_env_value("127.0.0.1:9092"),
            toml::Value::String("127.0.0.1:9092".into())
        );
        assert_eq!(parse_env_value("\"1\""), toml::Value::String("1".into()));
        assert!(parse_env_value("[\"a\", \"b\"]").is_array());
        assert_eq!(
            parse_env_value("{ a = 1 }"),
            toml::Value::String("{ a = 1 }".into())
        );
    }

    #[test]
    fn properties_segments_use_dots() -> Result<(), &'static str> {
        assert_eq!(
            env_segments("KAFKA__PROPERTIES__SASL_PASSWORD")?,
            ["kafka", "properties", "sasl.password"]
        );
        assert_eq!(env_segments("KAFKA__CLIENT_ID")?, ["kafka", "client_id"]);
        assert!(env_segments("KAFKA____X").is_err());
        Ok(())
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "TOKEN",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["security.protocol", "sasl.mechanism", "linger.ms"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
