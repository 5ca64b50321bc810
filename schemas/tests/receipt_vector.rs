//! The disclosure-receipt vector (`schemas/vectors/disclosure-receipt-v1.json`): a receipt,
//! its digest ([`AuditEvent::receipt_digest`]) and an ECDSA P-256 signature over it, for
//! other implementations (the Python interop test, a browser SDK) to check against.
//!
//! `ZENVELOPE_WRITE_VECTORS=1 cargo test -p zenvelope-schemas --test receipt_vector`
//! writes a fresh vector (a new key and signature); otherwise the committed one is checked.

use std::path::PathBuf;

use serde_json::{Value, json};
use zenvelope_envelope::{Keyed as _, Keyring, SigningKey, VerifyingKey};
use zenvelope_schemas::{
    AuditEvent, AuditOperation, Disclosure, KeyAlgorithm, Outcome, PurposeOfUse, ReceiptCheck,
    ReceiptSignature,
};

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/disclosure-receipt-v1.json")
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field}"))
        .to_owned()
}

fn opt(v: &Value, field: &str) -> Option<String> {
    v[field].as_str().map(str::to_owned)
}

/// The receipt the vector describes, signature included.
fn receipt_of(v: &Value) -> AuditEvent {
    let r = &v["receipt"];
    let s = &v["signature"];
    AuditEvent {
        event_id: text(r, "event_id").parse().expect("uuid"),
        occurred_at_ms: r["occurred_at_ms"].as_i64().expect("time"),
        tenant: text(r, "tenant"),
        subject: text(r, "subject"),
        operation: AuditOperation::Disclosure,
        message_id: opt(r, "message_id").map(|m| m.parse().expect("uuid")),
        correlation_id: None,
        actor: text(r, "actor"),
        outcome: Outcome::from_symbol(&text(r, "outcome")).expect("outcome"),
        reason_code: opt(r, "reason_code"),
        enclave_measurement: opt(r, "enclave_measurement"),
        key_id: None,
        key_version: None,
        request_sha256: opt(r, "request_sha256"),
        result_sha256: opt(r, "result_sha256"),
        disclosure: Some(Disclosure {
            provider: text(r, "provider"),
            model: text(r, "model"),
            purpose: PurposeOfUse::from_symbol(&text(r, "purpose")).expect("purpose"),
            signature: Some(ReceiptSignature {
                key_id: text(s, "key_id"),
                key_version: s["key_version"].as_i64().expect("version") as i32,
                algorithm: KeyAlgorithm::from_symbol(&text(s, "algorithm")).expect("algorithm"),
                value: hex::decode(text(s, "value_hex")).expect("hex"),
            }),
            tokens: None,
        }),
    }
}

fn write_vector() {
    let key = SigningKey::generate_ecdsa_p256("fleet-results", 3).expect("key");
    let mut v = json!({
        "description": "A disclosure receipt, the SHA-256 digest the enclave signs (AuditEvent::receipt_digest, docs/audit.md) and an ECDSA P-256 SHA-256 signature over that digest, r || s (IEEE P1363). reason_code is absent: opt() encodes it as a single 0x00.",
        "receipt": {
            "event_id": "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
            "occurred_at_ms": 1_763_900_000_123_i64,
            "tenant": "demo-clinic",
            "subject": "sp1_Qm9vdHN0cmFwIHN1YmplY3QgcHNldWRvbnlt",
            "actor": "enclave-app",
            "outcome": "SUCCESS",
            "reason_code": null,
            "message_id": "0192f3c4-0000-7000-8000-000000000001",
            "enclave_measurement": "ab".repeat(48),
            "request_sha256": "cd".repeat(32),
            "result_sha256": "ef".repeat(32),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "purpose": "TREATMENT",
        },
        "public_key_spki_der_hex": hex::encode(key.spki_der()),
        "signature": {
            "key_id": key.key_id(),
            "key_version": key.key_version(),
            "algorithm": "ECDSA_P256_SHA256",
            "value_hex": "",
        },
    });
    let unsigned = receipt_of(&v);
    let digest = unsigned
        .receipt_digest(
            key.key_id(),
            key.key_version(),
            KeyAlgorithm::EcdsaP256Sha256,
        )
        .expect("a receipt");
    v["digest_hex"] = json!(hex::encode(digest));
    v["signature"]["value_hex"] = json!(hex::encode(key.sign(&digest).expect("sign")));
    let text = serde_json::to_string_pretty(&v).expect("json") + "\n";
    std::fs::write(path(), text).expect("write the vector");
}

#[test]
fn the_receipt_vector_holds() {
    if std::env::var_os("ZENVELOPE_WRITE_VECTORS").is_some() {
        write_vector();
    }
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(path()).expect("the vector")).expect("json");
    let receipt = receipt_of(&v);
    let s = &v["signature"];
    let digest = receipt
        .receipt_digest(
            &text(s, "key_id"),
            s["key_version"].as_i64().expect("version") as i32,
            KeyAlgorithm::EcdsaP256Sha256,
        )
        .expect("a receipt");
    assert_eq!(hex::encode(digest), text(&v, "digest_hex"));
    let key = VerifyingKey::from_spki_der(
        text(s, "key_id"),
        s["key_version"].as_i64().expect("version") as i32,
        &hex::decode(text(&v, "public_key_spki_der_hex")).expect("hex"),
    )
    .expect("key");
    let mut trusted = Keyring::new();
    trusted.insert(key).expect("insert");
    assert_eq!(receipt.check_receipt(&trusted), ReceiptCheck::Valid);
}
