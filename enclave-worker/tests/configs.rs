//! The example configurations shipped in enclave-worker/config/ parse, and mistakes in
//! them are reported.

use std::path::Path;

use zenvelope_enclave::app::launch::LaunchConfig;
use zenvelope_enclave::host::HostConfig;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_example_app_config_parses() {
    let config = LaunchConfig::from_toml(&example("enclave-app.example.toml")).expect("parses");
    assert_eq!(config.keys.fleet.len(), 2);
    assert!(!config.kms.danger_without_recipient);
    assert_eq!(config.app.tenants.len(), 2);
}

#[test]
fn the_example_host_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/enclave-host.example.toml");
    let config: HostConfig =
        zenvelope_runtime::load_config_from_vars(Some(&path), "ZENVELOPE_HOST", Vec::new())
            .expect("parses");
    assert_eq!(config.consumer.topics, ["zenvelope.requests"]);
    let egress = config.egress.expect("an egress section");
    assert_eq!(egress.proxy_config().expect("valid").max_streams, 256);
}

#[test]
fn an_unknown_field_is_an_error_that_names_it() {
    let text = example("enclave-app.example.toml").replace("[app.model]", "[app.model]\nmodle = 1");
    let error = format!("{:#}", LaunchConfig::from_toml(&text).expect_err("refused"));
    assert!(error.contains("modle"), "{error}");
}

#[test]
fn env_overrides_the_host_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/enclave-host.example.toml");
    let config: HostConfig = zenvelope_runtime::load_config_from_vars(
        Some(&path),
        "ZENVELOPE_HOST",
        vec![(
            "ZENVELOPE_HOST__KAFKA__BOOTSTRAP_SERVERS".to_owned(),
            "broker-1:9092".to_owned(),
        )],
    )
    .expect("parses");
    assert_eq!(config.kafka.bootstrap_servers, "broker-1:9092");
}
