//! The key directory end to end: the enclave attests its public keys (`KeysRequest` →
//! `Keys` over the frame protocol), the host publishes them on `zenvelope.keys`, and the
//! producer SDK verifies each one before wrapping a DEK to it. Every forgery of an entry
//! is refused with its own reason, an unverifiable directory stops sealing with a clear
//! error, and a new key version is picked up while the client runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use tokio_util::sync::CancellationToken;
use zenvelope_attestation::danger::{DevCa, dev_measurements};
use zenvelope_enclave::app::launch::DEV_MEASUREMENT_LABEL;
use zenvelope_enclave::app::{Processor, serve};
use zenvelope_enclave::host::{EnclaveClient, publish_once};
use zenvelope_enclave::transport::TransportAddr;
use zenvelope_envelope::{FleetPrivateKey, MetadataKey, RecipientType, SigningKey};
use zenvelope_producer::directory::{Rejection, VerifiedKey, verify_entry};
use zenvelope_producer::{
    Client, Error as SdkError, KeyDirectoryPolicy, Passphrase, PinnedMeasurements, Request,
};
use zenvelope_runtime::{EmbeddedBroker, KafkaConfig, Producer, Subscriber};
use zenvelope_schemas::names::topic;
use zenvelope_schemas::{KeyDirectoryEntry, KeyPurpose, KeyStatus, SchemaCodec};

const TENANT: &str = "clinic";

fn dev_pins() -> PinnedMeasurements {
    let pcrs = dev_measurements(DEV_MEASUREMENT_LABEL);
    PinnedMeasurements::new().with_pcr(0, pcrs[&0].clone())
}

fn processor(ca: &DevCa, versions: &[i32]) -> Result<Processor> {
    zenvelope_tests::inprocess::attested_processor(ca, TENANT, versions)
}

async fn entries(processor: &Processor) -> Result<Vec<KeyDirectoryEntry>> {
    let codec = SchemaCodec::offline()?;
    let mut out = Vec::new();
    for bytes in processor.key_directory().await {
        out.push(codec.decode(bytes.as_bytes()).await?);
    }
    Ok(out)
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

#[tokio::test]
async fn enclave_entries_verify_and_every_forgery_is_refused() -> Result<()> {
    let ca = DevCa::generate(false)?;
    let processor = processor(&ca, &[1])?;
    let entries = entries(&processor).await?;
    ensure!(entries.len() == 2, "one fleet key and one result key");
    let policy = KeyDirectoryPolicy::danger_dev_root(ca.root_der(), dev_pins())?;
    let now = now_ms();

    let fleet = entries
        .iter()
        .find(|e| e.purpose == KeyPurpose::FleetEncryption)
        .context("no fleet entry")?;
    let signing = entries
        .iter()
        .find(|e| e.purpose == KeyPurpose::FleetSigning)
        .context("no signing entry")?;
    assert!(matches!(
        verify_entry(fleet, &policy, now),
        Ok(VerifiedKey::Fleet(_))
    ));
    assert!(matches!(
        verify_entry(signing, &policy, now),
        Ok(VerifiedKey::ResultSigning(_))
    ));

    let refused = |mutate: &dyn Fn(&mut KeyDirectoryEntry), policy: &KeyDirectoryPolicy, at| {
        let mut e = fleet.clone();
        mutate(&mut e);
        verify_entry(&e, policy, at).err()
    };
    let same = |_: &mut KeyDirectoryEntry| {};

    // Another root (anyone can run a dev CA): the chain does not verify.
    let other_ca = DevCa::generate(false)?;
    let other_root = KeyDirectoryPolicy::danger_dev_root(other_ca.root_der(), dev_pins())?;
    assert!(matches!(
        refused(&same, &other_root, now),
        Some(Rejection::Attestation(_))
    ));
    // The right root, but another enclave image.
    let other_image = KeyDirectoryPolicy::danger_dev_root(
        ca.root_der(),
        PinnedMeasurements::new().with_pcr(0, vec![0x42; 48]),
    )?;
    assert!(matches!(
        refused(&same, &other_image, now),
        Some(Rejection::Measurement(_))
    ));
    // The host swaps in its own key, with a matching fingerprint.
    let substitute = FleetPrivateKey::generate("fleet", 1, 2048)?;
    let spki = substitute.public_key().spki_der().to_vec();
    assert_eq!(
        refused(
            &|e| {
                e.public_key_spki_der = spki.clone();
                e.fingerprint_sha256 = zenvelope_envelope::spki_fingerprint(&spki);
            },
            &policy,
            now
        ),
        Some(Rejection::KeyNotAttested)
    );
    // Fields changed after attestation.
    assert_eq!(
        refused(&|e| e.key_version = 9, &policy, now),
        Some(Rejection::BindingMismatch)
    );
    assert_eq!(
        refused(&|e| e.not_after_ms += 86_400_000, &policy, now),
        Some(Rejection::BindingMismatch)
    );
    assert_eq!(
        refused(&|e| e.fingerprint_sha256 = "00".repeat(32), &policy, now),
        Some(Rejection::FingerprintMismatch)
    );
    assert_eq!(
        refused(&|e| e.attestation_document = None, &policy, now),
        Some(Rejection::NoEvidence)
    );
    assert_eq!(
        refused(
            &|e| e.enclave_measurement = Some("ab".repeat(48)),
            &policy,
            now
        ),
        Some(Rejection::MeasurementLabel)
    );
    assert_eq!(
        refused(&|e| e.status = KeyStatus::Retired, &policy, now),
        Some(Rejection::Unsupported),
        "a retired fleet key is never wrapped to"
    );
    assert!(matches!(
        refused(
            &|e| {
                if let Some(doc) = e.attestation_document.as_mut() {
                    let last = doc.len() - 1;
                    doc[last] ^= 1;
                }
            },
            &policy,
            now
        ),
        Some(Rejection::Attestation(_))
    ));
    // Time: the entry's own window, checked at use.
    assert_eq!(
        refused(&same, &policy, fleet.not_after_ms + 1),
        Some(Rejection::Expired)
    );
    assert_eq!(
        refused(&same, &policy, fleet.not_before_ms - 3_600_000),
        Some(Rejection::NotYetValid)
    );
    Ok(())
}

/// Starts `processor` behind the frame protocol and has the host publish its directory.
async fn publish(
    processor: Processor,
    kafka: &KafkaConfig,
    stop: &CancellationToken,
) -> Result<usize> {
    let listener = "tcp://127.0.0.1:0".parse::<TransportAddr>()?.bind().await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, Arc::new(processor), stop.clone(), 8));
    Ok(publish_once(
        &EnclaveClient::new(addr, Duration::from_secs(10)),
        &Producer::new(kafka)?,
        &SchemaCodec::offline()?,
    )
    .await?)
}

fn client(kafka: &KafkaConfig, policy: KeyDirectoryPolicy) -> Result<Client> {
    Ok(Client::builder(kafka.clone(), TENANT)
        .signer(SigningKey::generate_ecdsa_p256("backend", 1)?)
        .key_directory(policy)
        .metadata_key(MetadataKey::from_bytes([3; 32]))
        .pbkdf2_iterations(100_000)
        .build()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_wraps_to_verified_keys_and_picks_up_rotation() -> Result<()> {
    let broker = EmbeddedBroker::start(&[(topic::KEYS, 1), (topic::REQUESTS, 1)])?;
    let kafka = broker.kafka_config();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let ca = DevCa::generate(false)?;

    ensure!(publish(processor(&ca, &[1])?, &kafka, &stop).await? == 2);
    let client = client(
        &kafka,
        KeyDirectoryPolicy::danger_dev_root(ca.root_der(), dev_pins())?,
    )?;
    let first = client.wait_for_fleet_key(Duration::from_secs(20)).await?;
    assert_eq!((first.key_id.as_str(), first.key_version), ("fleet", 1));
    let user = client
        .login("ada@example.org", Passphrase::new("pass phrase"))
        .await?;
    client
        .analyze(&user, Request::text("Summarise.", "One."))
        .await?;

    // The enclave fleet rotates to version 2; the running client follows.
    ensure!(publish(processor(&ca, &[1, 2])?, &kafka, &stop).await? == 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let current = client.wait_for_fleet_key(Duration::from_secs(1)).await?;
        if current.key_version == 2 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the client did not pick up fleet key version 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .analyze(&user, Request::text("Summarise.", "Two."))
        .await?;

    // What the broker holds: the first request wrapped to v1, the second to v2.
    let codec = SchemaCodec::offline()?;
    let wire = Subscriber::new(&kafka, "key-directory-test", &[topic::REQUESTS], true)?;
    let mut versions = Vec::new();
    for _ in 0..2 {
        let record = tokio::time::timeout(Duration::from_secs(20), wire.recv()).await??;
        let envelope = codec
            .decode_envelope(&record.payload, &zenvelope_envelope::Limits::default())
            .await?;
        let fleet: Vec<i32> = envelope
            .recipients
            .iter()
            .filter(|r| r.recipient_type == RecipientType::RsaOaepSha256)
            .map(|r| r.key_version)
            .collect();
        versions.push(fleet);
    }
    assert_eq!(versions, vec![vec![1], vec![2]]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_directory_stops_sealing_with_a_clear_error() -> Result<()> {
    let broker = EmbeddedBroker::start(&[(topic::KEYS, 1), (topic::REQUESTS, 1)])?;
    let kafka = broker.kafka_config();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let ca = DevCa::generate(false)?;
    publish(processor(&ca, &[1])?, &kafka, &stop).await?;

    // This producer pins another enclave image.
    let client = client(
        &kafka,
        KeyDirectoryPolicy::danger_dev_root(
            ca.root_der(),
            PinnedMeasurements::new().with_pcr(0, vec![7; 48]),
        )?,
    )?;
    let user = client
        .login("ada@example.org", Passphrase::new("pass phrase"))
        .await?;
    let canary = "CANARY-2c41 journal text";
    let error = client
        .analyze(&user, Request::text("Summarise.", canary))
        .await
        .err()
        .context("sealed to an unverified key")?;
    assert!(
        matches!(error, SdkError::NoTrustedFleetKey { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("FLEET_ENCRYPTION/fleet/1") && text.contains("measurements"),
        "{text}"
    );
    assert!(!text.contains(canary));
    // Nothing reached the request topic.
    let wire = Subscriber::new(&kafka, "unverifiable-test", &[topic::REQUESTS], true)?;
    assert!(
        tokio::time::timeout(Duration::from_secs(2), wire.recv())
            .await
            .is_err(),
        "a request was produced"
    );
    Ok(())
}
