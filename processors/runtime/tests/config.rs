//! Configuration loading and secret redaction.

use std::path::PathBuf;

use anyhow::{Result, bail, ensure};
use serde::Deserialize;
use zenvelope_runtime::{
    Error, KafkaConfig, ProcessorConfig, TelemetryConfig, load_config, load_config_from_vars,
};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    kafka: KafkaConfig,
    processor: ProcessorConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
}

const PREFIX: &str = "ZENVELOPE_TEST";

fn write_temp(name: &str, text: &str) -> Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "{name}-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const FILE: &str = r#"
[kafka]
bootstrap_servers = "broker:9092"

[kafka.properties]
"security.protocol" = "SASL_SSL"

[processor]
group_id = "host"
topics = ["zenvelope.requests"]
max_in_flight = 64
"#;

#[test]
fn file_plus_env_overrides() -> Result<()> {
    let path = write_temp("file_plus_env", FILE)?;
    let env = vars(&[
        ("ZENVELOPE_TEST__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        (
            "ZENVELOPE_TEST__KAFKA__PROPERTIES__SASL_PASSWORD",
            "hunter2",
        ),
        ("ZENVELOPE_TEST__PROCESSOR__MAX_RETRIES", "7"),
        ("ZENVELOPE_TEST__PROCESSOR__TOPICS", r#"["a", "b"]"#),
        (
            "ZENVELOPE_TEST__TELEMETRY__METRICS_LISTEN",
            "127.0.0.1:9464",
        ),
        ("OTHER__KAFKA__BOOTSTRAP_SERVERS", "ignored:1"),
    ]);
    let c: ServiceConfig = load_config_from_vars(Some(&path), PREFIX, env)?;
    std::fs::remove_file(&path)?;
    ensure!(c.kafka.bootstrap_servers == "127.0.0.1:9092");
    ensure!(c.kafka.client_id == zenvelope_runtime::DEFAULT_CLIENT_ID);
    ensure!(c.kafka.properties["security.protocol"] == "SASL_SSL");
    ensure!(c.kafka.properties["sasl.password"] == "hunter2");
    ensure!(c.processor.max_retries == 7 && c.processor.max_in_flight == 64);
    ensure!(c.processor.topics == ["a", "b"]);
    ensure!(c.processor.dlq_topic == zenvelope_schemas::names::topic::DLQ);
    ensure!(c.processor.max_message_bytes == 1024 * 1024 && c.processor.retry_backoff_ms == 200);
    ensure!(c.processor.shutdown_grace_ms == 30_000);
    ensure!(c.telemetry.metrics_listen == Some("127.0.0.1:9464".parse()?));
    Ok(())
}

#[test]
fn env_alone_is_enough() -> Result<()> {
    let env = vars(&[
        ("ZENVELOPE_TEST__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        ("ZENVELOPE_TEST__PROCESSOR__GROUP_ID", "\"1\""),
        ("ZENVELOPE_TEST__PROCESSOR__TOPICS", r#"["t"]"#),
    ]);
    let c: ServiceConfig = load_config_from_vars(None, PREFIX, env)?;
    ensure!(c.processor.group_id == "1");
    ensure!(c.kafka.transactional_id.is_none());
    Ok(())
}

#[test]
fn unknown_fields_are_errors_naming_their_origin() -> Result<()> {
    let path = write_temp("unknown_field", &format!("{FILE}\nmax_inflight = 3\n"))?;
    let result: Result<ServiceConfig, Error> =
        load_config_from_vars(Some(&path), PREFIX, vars(&[]));
    std::fs::remove_file(&path)?;
    match result {
        Err(e @ Error::ConfigInvalid { .. }) => {
            let msg = e.to_string();
            ensure!(
                msg.contains("max_inflight") && msg.contains(&path.display().to_string()),
                "{msg}"
            );
        }
        other => bail!("expected ConfigInvalid, got {other:?}"),
    }

    let env = vars(&[("ZENVELOPE_TEST__KAFKA__BOOTSTRAP_SERVER", "x:1")]);
    let path = write_temp("unknown_env", FILE)?;
    let result: Result<ServiceConfig, Error> = load_config_from_vars(Some(&path), PREFIX, env);
    std::fs::remove_file(&path)?;
    let msg = match result {
        Err(e) => e.to_string(),
        Ok(_) => bail!("an unknown field from the environment was accepted"),
    };
    ensure!(
        msg.contains("ZENVELOPE_TEST__KAFKA__BOOTSTRAP_SERVER") && msg.contains("bootstrap_server"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn unreadable_and_malformed_files_are_named() -> Result<()> {
    let missing = std::env::temp_dir().join("zenvelope-no-such-config.toml");
    match load_config::<ServiceConfig>(Some(&missing), PREFIX) {
        Err(e @ Error::ConfigRead { .. }) => {
            ensure!(e.to_string().contains("zenvelope-no-such-config.toml"))
        }
        other => bail!("expected ConfigRead, got {other:?}"),
    }
    let path = write_temp("malformed", "[kafka]\nbootstrap_servers = \n")?;
    let result = load_config_from_vars::<ServiceConfig, _>(Some(&path), PREFIX, vars(&[]));
    std::fs::remove_file(&path)?;
    match result {
        Err(Error::ConfigSyntax { line, .. }) => ensure!(line == 2, "line {line}"),
        other => bail!("expected ConfigSyntax, got {other:?}"),
    }
    Ok(())
}

#[test]
fn kafka_config_debug_redacts_secrets() -> Result<()> {
    let mut k = KafkaConfig::new("broker:9092");
    for (key, value) in [
        ("sasl.password", "canary-password"),
        ("ssl.key.password", "canary-keypass"),
        ("sasl.oauthbearer.client.secret", "canary-secret"),
        ("ssl.key.pem", "canary-pem"),
        ("sasl.oauthbearer.token", "canary-token"),
        ("security.protocol", "SASL_SSL"),
    ] {
        k.properties.insert(key.into(), value.into());
    }
    let debug = format!("{k:?} {:#?}", k.clone());
    ensure!(!debug.contains("canary"), "{debug}");
    ensure!(
        debug.contains("sasl.password") && debug.contains("SASL_SSL"),
        "{debug}"
    );
    Ok(())
}

#[test]
fn processor_config_rejects_unknown_fields_directly() -> Result<()> {
    let r: Result<ProcessorConfig, _> =
        toml::from_str("group_id = \"g\"\ntopics = []\nbogus = 1\n");
    ensure!(r.is_err());
    Ok(())
}
