//! The key-directory vector (`schemas/vectors/key-directory-v1.json`): entries made by
//! the real enclave `Processor` with a dev CA, forgeries of them, and the verdict the Rust
//! SDK's `verify_entry` gives each, for other implementations (the browser SDK) to match.
//!
//! `ZENVELOPE_WRITE_VECTORS=1 cargo test -p zenvelope-tests --test key_directory_vector`
//! writes a fresh vector (new CA, keys and documents); otherwise the committed one is
//! checked, so it cannot drift from what the Rust SDK decides.
//!
//! The vector does not age: `verify_entry` checks the document's certificates at the
//! document's own timestamp, and the entry's window at the `now_ms` the vector fixes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Map, Value, json};
use zenvelope_attestation::danger::{DevCa, dev_measurements};
use zenvelope_attestation::{AttestationRequest, TrustAnchor};
use zenvelope_enclave::app::Processor;
use zenvelope_enclave::app::launch::DEV_MEASUREMENT_LABEL;
use zenvelope_envelope::{FleetPrivateKey, spki_fingerprint};
use zenvelope_producer::directory::verify_entry;
use zenvelope_producer::{KeyDirectoryPolicy, PinnedMeasurements};
use zenvelope_schemas::{
    KeyAlgorithm, KeyDirectoryEntry, KeyPurpose, KeyStatus, SchemaCodec, SchemaName, Subject,
};

const HOUR_MS: i64 = 3_600_000;
const SKEW_MS: i64 = 5 * 60 * 1000;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/vectors/key-directory-v1.json")
}

fn processor(ca: &DevCa, versions: &[i32]) -> Result<Processor> {
    zenvelope_tests::inprocess::attested_processor(ca, "clinic", versions)
}

fn pins_json(pins: &[(u8, Vec<u8>)]) -> Value {
    Value::Object(
        pins.iter()
            .map(|(i, v)| (i.to_string(), json!(hex::encode(v))))
            .collect::<Map<String, Value>>(),
    )
}

async fn write_vector() -> Result<()> {
    let ca = DevCa::generate(true)?;
    let codec = SchemaCodec::offline()?;
    let framed: Vec<Vec<u8>> = processor(&ca, &[1, 2])?
        .key_directory()
        .await
        .iter()
        .map(|o| o.as_bytes().to_vec())
        .collect();
    let mut entries = Vec::new();
    for bytes in &framed {
        entries.push((
            bytes.clone(),
            codec.decode::<KeyDirectoryEntry>(bytes).await?,
        ));
    }
    let find = |purpose, version| {
        entries
            .iter()
            .find(|(_, e)| e.purpose == purpose && e.key_version == version)
            .cloned()
            .context("an entry is missing")
    };
    let (fleet1_bytes, fleet1) = find(KeyPurpose::FleetEncryption, 1)?;
    let (_, fleet2) = find(KeyPurpose::FleetEncryption, 2)?;
    let (signing_bytes, signing) = find(KeyPurpose::FleetSigning, 1)?;
    let now = fleet1.not_before_ms + HOUR_MS;
    for (_, e) in &entries {
        ensure!(e.not_before_ms - SKEW_MS <= now && now <= e.not_after_ms);
    }

    let mut records = Map::new();
    let mut cases = Vec::new();
    let mut record = |name: &str, bytes: &[u8]| {
        records.insert(name.to_owned(), json!(hex::encode(bytes)));
    };
    let framed_of = |e: KeyDirectoryEntry| {
        let codec = &codec;
        async move { codec.encode(Subject::KeysValue, &e).await }
    };
    let forge = |mutate: &dyn Fn(&mut KeyDirectoryEntry)| {
        let mut e = fleet1.clone();
        mutate(&mut e);
        e
    };

    record("fleet_v1", &fleet1_bytes);
    // One record bare (the datum without its Confluent frame), as readers must accept.
    record(
        "fleet_v2_bare",
        &codec.encode_datum(Subject::KeysValue, &fleet2).await?.1,
    );
    record("signing", &signing_bytes);
    let substitute = FleetPrivateKey::generate("fleet", 1, 2048)?;
    let spki = substitute.public_key().spki_der().to_vec();
    record(
        "substituted_key",
        &framed_of(forge(&|e| {
            e.public_key_spki_der = spki.clone();
            e.fingerprint_sha256 = spki_fingerprint(&spki);
        }))
        .await?,
    );
    record(
        "changed_version",
        &framed_of(forge(&|e| e.key_version = 9)).await?,
    );
    record(
        "extended_validity",
        &framed_of(forge(&|e| e.not_after_ms += 24 * HOUR_MS)).await?,
    );
    record(
        "wrong_fingerprint",
        &framed_of(forge(&|e| e.fingerprint_sha256 = "00".repeat(32))).await?,
    );
    record(
        "no_evidence",
        &framed_of(forge(&|e| e.attestation_document = None)).await?,
    );
    record(
        "wrong_measurement_label",
        &framed_of(forge(&|e| e.enclave_measurement = Some("ab".repeat(48)))).await?,
    );
    record(
        "retired_fleet_key",
        &framed_of(forge(&|e| e.status = KeyStatus::Retired)).await?,
    );
    record(
        "flipped_signature_byte",
        &framed_of(forge(&|e| {
            if let Some(doc) = e.attestation_document.as_mut() {
                let last = doc.len() - 1;
                doc[last] ^= 1;
            }
        }))
        .await?,
    );
    record("truncated", &fleet1_bytes[..fleet1_bytes.len() - 1]);
    // The enclave itself attests a signing entry whose key is not of its algorithm: every
    // check passes but the last.
    let attestor = ca.issue("enclave-app", dev_measurements(DEV_MEASUREMENT_LABEL))?;
    let mut mislabelled = KeyDirectoryEntry {
        key_id: "fleet-results".to_owned(),
        key_version: 2,
        purpose: KeyPurpose::FleetSigning,
        algorithm: KeyAlgorithm::EcdsaP256Sha256,
        public_key_spki_der: spki.clone(),
        fingerprint_sha256: spki_fingerprint(&spki),
        attestation_document: None,
        ..signing.clone()
    };
    mislabelled.attestation_document = Some(attestor.attest_at(
        &AttestationRequest {
            public_key: Some(spki.clone()),
            user_data: Some(mislabelled.attestation_binding().to_vec()),
            nonce: None,
        },
        u64::try_from(signing.not_before_ms)?,
    )?);
    record("mislabelled_signing_key", &framed_of(mislabelled).await?);

    let other_root = hex::encode(DevCa::generate(false)?.root_der());
    let other_image = pins_json(&[(0, vec![0x42; 48])]);
    let mut case = |name: &str, rec: &str, expect: &str, over: Value| {
        let mut c = json!({"name": name, "record": rec, "expect": expect});
        if let (Some(c), Value::Object(over)) = (c.as_object_mut(), over) {
            c.extend(over);
        }
        cases.push(c);
    };
    let none = || json!({});
    case(
        "fleet key v1, as the enclave made it",
        "fleet_v1",
        "ok",
        none(),
    );
    case("fleet key v2, bare datum", "fleet_v2_bare", "ok", none());
    case("result-signing key", "signing", "ok", none());
    case(
        "another dev root pinned",
        "fleet_v1",
        "Attestation",
        json!({"root_der_hex": other_root}),
    );
    case(
        "another image's PCR0 pinned",
        "fleet_v1",
        "Measurement",
        json!({"pins": other_image}),
    );
    case(
        "no PCR pinned",
        "fleet_v1",
        "Measurement",
        json!({"pins": {}}),
    );
    case(
        "substituted key with a matching fingerprint",
        "substituted_key",
        "KeyNotAttested",
        none(),
    );
    case(
        "version changed after attestation",
        "changed_version",
        "BindingMismatch",
        none(),
    );
    case(
        "validity extended after attestation",
        "extended_validity",
        "BindingMismatch",
        none(),
    );
    case(
        "wrong fingerprint",
        "wrong_fingerprint",
        "FingerprintMismatch",
        none(),
    );
    case(
        "no attestation document",
        "no_evidence",
        "NoEvidence",
        none(),
    );
    case(
        "wrong enclave_measurement label",
        "wrong_measurement_label",
        "MeasurementLabel",
        none(),
    );
    case(
        "retired fleet key",
        "retired_fleet_key",
        "Unsupported",
        none(),
    );
    case(
        "one signature byte of the document flipped",
        "flipped_signature_byte",
        "Attestation",
        none(),
    );
    case("record cut short", "truncated", "Malformed", none());
    case(
        "attested key of another algorithm than the entry's",
        "mislabelled_signing_key",
        "BadKey",
        none(),
    );
    let (nb, na) = (fleet1.not_before_ms, fleet1.not_after_ms);
    case(
        "one ms after not_after",
        "fleet_v1",
        "Expired",
        json!({"now_ms": na + 1}),
    );
    case("at not_after", "fleet_v1", "ok", json!({"now_ms": na}));
    case(
        "an hour before not_before",
        "fleet_v1",
        "NotYetValid",
        json!({"now_ms": nb - HOUR_MS}),
    );
    case(
        "five minutes before not_before (the skew)",
        "fleet_v1",
        "ok",
        json!({"now_ms": nb - SKEW_MS}),
    );
    case(
        "one ms more than the skew before not_before",
        "fleet_v1",
        "NotYetValid",
        json!({"now_ms": nb - SKEW_MS - 1}),
    );

    let pcr0 = dev_measurements(DEV_MEASUREMENT_LABEL)[&0].clone();
    let v = json!({
        "description": "Key directory entries (schemas/avro/key-directory-entry.avsc) made by the real enclave Processor with a dev CA (root, intermediate, leaf; ECDSA P-384), forgeries of them, and the verdict of zenvelope_producer::directory::verify_entry for each: \"ok\" or the Rejection variant's name (docs/key-directory.md). Records are hex: Confluent-framed (0x00, u32be schema id 6, datum) unless the name ends in _bare. A case's root_der_hex, pins and now_ms override the top-level ones; \"pins\" maps a PCR index to its hex value. Certificates are checked at each document's own timestamp, so the vector does not expire.",
        "root_der_hex": hex::encode(ca.root_der()),
        "pins": pins_json(&[(0, pcr0)]),
        "now_ms": now,
        "records": records,
        "cases": cases,
    });
    std::fs::write(path(), serde_json::to_string_pretty(&v)? + "\n")?;
    Ok(())
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str> {
    v[field]
        .as_str()
        .with_context(|| format!("{field} is not text"))
}

fn pins_of(v: &Value) -> Result<PinnedMeasurements> {
    let mut pins = PinnedMeasurements::new();
    let map: &Map<String, Value> = v.as_object().context("pins")?;
    for (index, value) in map {
        let value = value.as_str().context("pin")?;
        pins = pins.with_pcr(index.parse()?, hex::decode(value)?);
    }
    Ok(pins)
}

#[tokio::test]
async fn the_key_directory_vector_holds() -> Result<()> {
    if std::env::var_os("ZENVELOPE_WRITE_VECTORS").is_some() {
        write_vector().await?;
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path())?)?;
    let codec = SchemaCodec::offline()?;
    let mut seen = BTreeMap::new();
    let cases = v["cases"].as_array().context("cases")?;
    for case in cases {
        let name = text(case, "name")?;
        let pick = |field: &str| {
            if case.get(field).is_some() {
                &case[field]
            } else {
                &v[field]
            }
        };
        let root = hex::decode(pick("root_der_hex").as_str().context("root")?)?;
        let policy =
            KeyDirectoryPolicy::with_anchor(TrustAnchor::from_der(&root)?, pins_of(pick("pins"))?);
        let now = pick("now_ms").as_i64().context("now_ms")?;
        let record_name = text(case, "record")?;
        let bytes = hex::decode(text(&v["records"], record_name)?)?;
        let entry = if record_name.ends_with("_bare") {
            codec
                .decode_datum::<KeyDirectoryEntry>(
                    SchemaName::KeyDirectoryEntry.offline_id(),
                    &bytes,
                )
                .await
        } else {
            codec.decode::<KeyDirectoryEntry>(&bytes).await
        };
        let verdict = match entry {
            Err(_) => "Malformed".to_owned(),
            Ok(entry) => match verify_entry(&entry, &policy, now) {
                Ok(_) => "ok".to_owned(),
                Err(rejection) => format!("{rejection:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            },
        };
        assert_eq!(verdict, text(case, "expect")?, "{name}");
        *seen.entry(verdict).or_insert(0) += 1;
    }
    // Every reachable refusal is in the vector, and valid keys of both purposes.
    let expected = [
        "Attestation",
        "BadKey",
        "BindingMismatch",
        "Expired",
        "FingerprintMismatch",
        "KeyNotAttested",
        "Malformed",
        "Measurement",
        "MeasurementLabel",
        "NoEvidence",
        "NotYetValid",
        "Unsupported",
        "ok",
    ];
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    Ok(())
}
