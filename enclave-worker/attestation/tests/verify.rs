//! Dev documents: round trip, verification, and one test per tamper, each asserting its
//! specific error.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use minicbor::Encoder;
use zenvelope_attestation::danger::{DevAttestor, DevCa, dev_measurements};
use zenvelope_attestation::format::{self, ES384_PROTECTED_HEADER};
use zenvelope_attestation::{
    AttestationDocument, AttestationRequest, Attestor, CertPosition, CoseSign1, Error,
    PinnedMeasurements, TrustAnchor, expect_pcrs, verify,
};

const DAY: Duration = Duration::from_secs(86_400);

struct Fixture {
    ca: DevCa,
    attestor: DevAttestor,
    anchor: TrustAnchor,
}

/// One CA (with intermediate) and one attestor shared by the tests; key generation is
/// the slow part.
fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let ca = DevCa::generate(true).expect("dev CA");
        let attestor = ca
            .issue("enclave-1", dev_measurements(b"image-v1"))
            .expect("leaf");
        let anchor = ca.trust_anchor().expect("anchor");
        Fixture {
            ca,
            attestor,
            anchor,
        }
    })
}

fn request() -> AttestationRequest {
    AttestationRequest {
        user_data: Some(b"fleet-key-v3".to_vec()),
        nonce: Some(vec![7u8; 32]),
        public_key: Some(vec![0x30, 0x82, 0x01, 0x22, 0x01, 0x02]),
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn good_doc() -> Vec<u8> {
    fx().attestor.attest(&request()).expect("attest")
}

fn good_payload() -> AttestationDocument {
    let cose = CoseSign1::decode(&good_doc()).expect("cose");
    AttestationDocument::decode(&cose.payload).expect("payload")
}

fn verify_dev(doc: &[u8]) -> Result<zenvelope_attestation::VerifiedAttestation, Error> {
    verify(doc, &fx().anchor, now())
}

/// Re-signs `payload` with the real dev leaf key: a failure is then about the content,
/// never about the signature.
fn signed(payload: &[u8]) -> Vec<u8> {
    fx().attestor.sign_payload(payload).expect("sign")
}

/// Encodes a payload map from (key, already-encoded value) pairs.
fn raw_payload(fields: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    e.map(fields.len() as u64).expect("enc");
    for (k, v) in fields {
        e.str(k).expect("enc");
        e.writer_mut().extend_from_slice(v);
    }
    e.into_writer()
}

fn cbor(f: impl FnOnce(&mut Encoder<Vec<u8>>)) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    f(&mut e);
    e.into_writer()
}

/// The fields of a good payload, encoded one by one, for surgery.
fn good_fields() -> Vec<(&'static str, Vec<u8>)> {
    let d = good_payload();
    vec![
        ("module_id", cbor(|e| drop(e.str(&d.module_id)))),
        ("digest", cbor(|e| drop(e.str("SHA384")))),
        ("timestamp", cbor(|e| drop(e.u64(d.timestamp_ms)))),
        (
            "pcrs",
            cbor(|e| {
                e.map(d.pcrs.len() as u64).expect("enc");
                for (i, v) in &d.pcrs {
                    e.u8(*i).expect("enc").bytes(v).expect("enc");
                }
            }),
        ),
        ("certificate", cbor(|e| drop(e.bytes(&d.certificate)))),
        (
            "cabundle",
            cbor(|e| {
                e.array(d.cabundle.len() as u64).expect("enc");
                for c in &d.cabundle {
                    e.bytes(c).expect("enc");
                }
            }),
        ),
        ("public_key", cbor(|e| drop(e.null()))),
        ("user_data", cbor(|e| drop(e.null()))),
        ("nonce", cbor(|e| drop(e.null()))),
    ]
}

fn with_field(name: &str, value: Vec<u8>) -> Vec<u8> {
    let fields: Vec<_> = good_fields()
        .into_iter()
        .map(|(k, v)| {
            if k == name {
                (k, value.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    signed(&raw_payload(&fields))
}

// ---------------------------------------------------------------- happy paths

#[test]
fn dev_document_round_trips_and_verifies() {
    let doc = good_doc();
    let v = verify_dev(&doc).expect("verifies");
    assert_eq!(v.user_data(), Some(&b"fleet-key-v3"[..]));
    assert_eq!(v.nonce(), Some(&[7u8; 32][..]));
    assert_eq!(
        v.public_key(),
        Some(&[0x30, 0x82, 0x01, 0x22, 0x01, 0x02][..])
    );
    assert_eq!(v.module_id(), "dev-enclave-1");
    assert_eq!(v.pcrs(), &dev_measurements(b"image-v1"));
    assert!(!v.is_debug_mode());
    let age = now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        - v.timestamp_ms();
    assert!(age < 60_000);

    // Decode → encode reproduces the payload and the whole document byte for byte.
    let cose = CoseSign1::decode(&doc).expect("cose");
    assert_eq!(cose.protected, ES384_PROTECTED_HEADER);
    let payload = AttestationDocument::decode(&cose.payload).expect("payload");
    assert_eq!(payload.encode().expect("encode"), cose.payload);
    assert_eq!(cose.encode().expect("encode"), doc);
    assert_eq!(payload.cabundle.len(), 2);
    assert_eq!(payload.cabundle[0], fx().ca.root_der());
}

#[test]
fn dev_document_without_optional_fields_encodes_nulls_like_the_nsm() {
    let doc = fx()
        .attestor
        .attest(&AttestationRequest::default())
        .expect("attest");
    let v = verify_dev(&doc).expect("verifies");
    assert_eq!(
        (v.public_key(), v.user_data(), v.nonce()),
        (None, None, None)
    );
    // The NSM (serde_cbor) writes absent options as null; so do we.
    let cose = CoseSign1::decode(&doc).expect("cose");
    let null_nonce = [&b"enonce"[..], &[0xf6]].concat();
    assert!(cose.payload.ends_with(&null_nonce));
}

#[test]
fn chain_without_intermediate_verifies() {
    let ca = DevCa::generate(false).expect("ca");
    let a = ca.issue("solo", dev_measurements(b"x")).expect("leaf");
    let doc = a.attest(&request()).expect("attest");
    let v = verify(&doc, &ca.trust_anchor().expect("anchor"), now()).expect("verifies");
    assert_eq!(v.module_id(), "dev-solo");
}

#[test]
fn tagged_cose_sign1_is_accepted() {
    let mut doc = vec![0xd2]; // tag(18)
    doc.extend(good_doc());
    verify_dev(&doc).expect("tag 18 accepted");
}

#[test]
fn pinned_pcrs_match() {
    let v = verify_dev(&good_doc()).expect("verifies");
    let m = dev_measurements(b"image-v1");
    let pins = PinnedMeasurements::new()
        .with_pcr(0, m[&0].clone())
        .with_pcr(1, m[&1].clone())
        .with_pcr(2, m[&2].clone())
        .with_pcr(8, vec![0u8; 48]);
    expect_pcrs(&v, &pins).expect("match");
}

// ---------------------------------------------------------------- tampering

#[test]
fn flipped_payload_byte_breaks_the_signature() {
    let mut cose = CoseSign1::decode(&good_doc()).expect("cose");
    // The last payload byte is inside the nonce value: still well-formed, now unsigned.
    let last = cose.payload.len() - 1;
    cose.payload[last] ^= 0x01;
    let doc = cose.encode().expect("encode");
    assert!(matches!(verify_dev(&doc), Err(Error::SignatureInvalid)));
}

#[test]
fn flipped_signature_byte_fails() {
    let mut doc = good_doc();
    let last = doc.len() - 1;
    doc[last] ^= 0x80;
    assert!(matches!(verify_dev(&doc), Err(Error::SignatureInvalid)));
}

#[test]
fn protected_header_is_covered_by_the_signature() {
    // Same algorithm (-35) in a non-minimal encoding: different signed bytes.
    let mut cose = CoseSign1::decode(&good_doc()).expect("cose");
    cose.protected = vec![0xa1, 0x01, 0x39, 0x00, 0x22];
    let doc = cose.encode().expect("encode");
    assert!(matches!(verify_dev(&doc), Err(Error::SignatureInvalid)));
}

#[test]
fn flipped_protected_header_byte_names_another_algorithm() {
    let mut cose = CoseSign1::decode(&good_doc()).expect("cose");
    cose.protected[3] ^= 0x01; // -35 → -36 (ES512)
    let doc = cose.encode().expect("encode");
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::UnsupportedAlgorithm { alg: -36 })
    ));
}

#[test]
fn non_es384_algorithm_is_rejected_even_when_signed() {
    let payload = good_payload().encode().expect("encode");
    // {1: -7} = ES256
    let doc = fx()
        .attestor
        .sign_with_protected(&[0xa1, 0x01, 0x26], &payload)
        .expect("sign");
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::UnsupportedAlgorithm { alg: -7 })
    ));
    // Extra header parameters and empty headers are rejected too.
    let doc = fx()
        .attestor
        .sign_with_protected(&[0xa2, 0x01, 0x38, 0x22, 0x04, 0x40], &payload)
        .expect("sign");
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::InvalidProtectedHeader { .. })
    ));
    let doc = fx()
        .attestor
        .sign_with_protected(&[], &payload)
        .expect("sign");
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::InvalidProtectedHeader { .. })
    ));
}

#[test]
fn leaf_from_another_ca_fails_the_chain() {
    let other = DevCa::generate(true).expect("ca");
    let stranger = other
        .issue("enclave-1", dev_measurements(b"image-v1"))
        .expect("leaf");
    let mut d = good_payload();
    d.certificate = stranger.certificate().to_vec();
    let doc = signed(&d.encode().expect("encode"));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::CertificateSignature {
            position: CertPosition::Leaf
        })
    ));
}

#[test]
fn leaf_of_another_enclave_from_the_same_ca_fails_the_cose_signature() {
    let sibling = fx()
        .ca
        .issue("enclave-2", dev_measurements(b"image-v1"))
        .expect("leaf");
    let mut d = good_payload();
    d.certificate = sibling.certificate().to_vec();
    let doc = signed(&d.encode().expect("encode"));
    assert!(matches!(verify_dev(&doc), Err(Error::SignatureInvalid)));
}

#[test]
fn wrong_root_pinned_is_untrusted() {
    let other = DevCa::generate(false).expect("ca");
    let doc = good_doc();
    assert!(matches!(
        verify(&doc, &other.trust_anchor().expect("anchor"), now()),
        Err(Error::UntrustedRoot)
    ));
    // A dev document never verifies against the production AWS root.
    assert!(matches!(
        verify(&doc, &TrustAnchor::aws_nitro_root_g1(), now()),
        Err(Error::UntrustedRoot)
    ));
}

#[test]
fn substituted_root_with_same_name_is_untrusted() {
    // An attacker's CA with identical names: cabundle[0] differs from the pin.
    let evil = DevCa::generate(true).expect("ca");
    let a = evil
        .issue("enclave-1", dev_measurements(b"image-v1"))
        .expect("leaf");
    let doc = a.attest(&request()).expect("attest");
    assert!(matches!(verify_dev(&doc), Err(Error::UntrustedRoot)));
}

#[test]
fn expired_leaf_is_rejected() {
    let t = now();
    let a = fx()
        .ca
        .issue_with_validity("old", dev_measurements(b"image-v1"), t - 2 * DAY, t - DAY)
        .expect("leaf");
    let doc = a.attest(&request()).expect("attest");
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::CertificateExpired {
            position: CertPosition::Leaf
        })
    ));
}

#[test]
fn verification_time_outside_the_chain_is_rejected() {
    let doc = good_doc();
    // Before the CA existed: the root is the first certificate checked.
    assert!(matches!(
        verify(&doc, &fx().anchor, now() - 2 * DAY),
        Err(Error::CertificateExpired {
            position: CertPosition::Bundle(0)
        })
    ));
    // After the leaf's 30 days but within the CA's ten years.
    assert!(matches!(
        verify(&doc, &fx().anchor, now() + 31 * DAY),
        Err(Error::CertificateExpired {
            position: CertPosition::Leaf
        })
    ));
}

#[test]
fn non_p384_leaf_is_rejected() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
        .expect("params")
        .self_signed(&kp)
        .expect("cert");
    let mut d = good_payload();
    d.certificate = cert.der().to_vec();
    let doc = signed(&d.encode().expect("encode"));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::CertificateAlgorithm {
            position: CertPosition::Leaf
        })
    ));
}

#[test]
fn leaf_cannot_act_as_a_ca() {
    // Without an intermediate: the leaf, put in the bundle as if it issued a second
    // leaf, is not a CA.
    let ca = DevCa::generate(false).expect("ca");
    let a = ca.issue("solo", dev_measurements(b"x")).expect("leaf");
    let cose = CoseSign1::decode(&a.attest(&request()).expect("attest")).expect("cose");
    let mut d = AttestationDocument::decode(&cose.payload).expect("payload");
    d.cabundle.push(d.certificate.clone());
    let doc = a.sign_payload(&d.encode().expect("encode")).expect("sign");
    assert!(matches!(
        verify(&doc, &ca.trust_anchor().expect("anchor"), now()),
        Err(Error::NotACa {
            position: CertPosition::Bundle(1)
        })
    ));
    // With the intermediate (pathLenConstraint 0), the extra CA level breaks its path
    // length first.
    let d0 = good_payload();
    let mut d = d0.clone();
    d.cabundle.push(d0.certificate.clone());
    let doc = signed(&d.encode().expect("encode"));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::NotACa {
            position: CertPosition::Bundle(1)
        })
    ));
}

#[test]
fn garbage_certificate_is_malformed() {
    let mut d = good_payload();
    d.certificate = vec![0x30, 0x03, 0x02, 0x01, 0x01];
    let doc = signed(&d.encode().expect("encode"));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::CertificateMalformed {
            position: CertPosition::Leaf
        })
    ));
}

#[test]
fn pcr_mismatch_missing_and_empty_pins() {
    let v = verify_dev(&good_doc()).expect("verifies");
    let other = dev_measurements(b"image-v2");
    let pins = PinnedMeasurements::new().with_pcr(0, other[&0].clone());
    assert!(matches!(
        expect_pcrs(&v, &pins),
        Err(Error::PcrMismatch { index: 0 })
    ));
    let m = dev_measurements(b"image-v1");
    let pins = PinnedMeasurements::new()
        .with_pcr(0, m[&0].clone())
        .with_pcr(2, other[&2].clone());
    assert!(matches!(
        expect_pcrs(&v, &pins),
        Err(Error::PcrMismatch { index: 2 })
    ));
    let pins = PinnedMeasurements::new().with_pcr(20, vec![0u8; 48]);
    assert!(matches!(
        expect_pcrs(&v, &pins),
        Err(Error::PcrMissing { index: 20 })
    ));
    assert!(matches!(
        expect_pcrs(&v, &PinnedMeasurements::new()),
        Err(Error::NoPinnedMeasurements)
    ));
}

// ---------------------------------------------------------------- syntax and bounds

#[test]
fn oversized_optional_fields_are_rejected() {
    for (field, max) in [
        ("user_data", format::MAX_USER_DATA_BYTES),
        ("nonce", format::MAX_NONCE_BYTES),
        ("public_key", format::MAX_PUBLIC_KEY_BYTES),
    ] {
        let doc = with_field(field, cbor(|e| drop(e.bytes(&vec![1u8; max + 1]))));
        match verify_dev(&doc) {
            Err(Error::FieldLength { field: f, len, .. }) => {
                assert_eq!((f, len), (field, max + 1));
            }
            other => panic!("{field}: {other:?}"),
        }
        // At the bound it is fine.
        let doc = with_field(field, cbor(|e| drop(e.bytes(&vec![1u8; max]))));
        verify_dev(&doc).expect("at bound");
    }
    // public_key must not be empty when present; user_data and nonce may be.
    let doc = with_field("public_key", cbor(|e| drop(e.bytes(&[]))));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::FieldLength {
            field: "public_key",
            ..
        })
    ));
    verify_dev(&with_field("nonce", cbor(|e| drop(e.bytes(&[]))))).expect("empty nonce");
}

#[test]
fn oversized_request_is_refused_before_signing() {
    let req = AttestationRequest {
        user_data: Some(vec![0u8; 513]),
        ..Default::default()
    };
    assert!(matches!(
        fx().attestor.attest(&req),
        Err(Error::RequestTooLarge {
            field: "user_data",
            len: 513,
            max: 512
        })
    ));
}

#[test]
fn oversized_document_is_rejected_before_parsing() {
    let doc = vec![0u8; format::MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::TooLarge { len, .. }) if len == format::MAX_DOCUMENT_BYTES + 1
    ));
}

#[test]
fn oversized_certificate_and_bundle_are_rejected() {
    let doc = with_field("certificate", cbor(|e| drop(e.bytes(&[0u8; 1025]))));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::FieldLength {
            field: "certificate",
            len: 1025,
            ..
        })
    ));
    let doc = with_field(
        "cabundle",
        cbor(|e| {
            e.array(17).expect("enc");
            for _ in 0..17 {
                e.bytes(&[0x30]).expect("enc");
            }
        }),
    );
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::FieldLength {
            field: "cabundle",
            len: 17,
            ..
        })
    ));
    let doc = with_field("cabundle", cbor(|e| drop(e.array(0))));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::FieldLength {
            field: "cabundle",
            len: 0,
            ..
        })
    ));
}

#[test]
fn declared_length_beyond_the_input_is_malformed_not_allocated() {
    // A byte string claiming 2^62 bytes inside a tiny document.
    let mut doc = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0];
    doc.extend([0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(verify_dev(&doc), Err(Error::MalformedCbor { .. })));
    // And a payload map claiming 2^32 entries.
    let payload = [0xba, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        verify_dev(&signed(&payload)),
        Err(Error::MalformedCbor { .. })
    ));
}

#[test]
fn every_missing_required_field_is_named() {
    for missing in [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
    ] {
        let fields: Vec<_> = good_fields()
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        match verify_dev(&signed(&raw_payload(&fields))) {
            Err(Error::MissingField { field }) => assert_eq!(field, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
    // Optional fields may be absent altogether.
    let fields: Vec<_> = good_fields()
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "public_key" | "user_data" | "nonce"))
        .collect();
    verify_dev(&signed(&raw_payload(&fields))).expect("optional fields absent");
}

#[test]
fn wrong_digest_is_rejected() {
    for digest in ["SHA256", "SHA512", "sha384", ""] {
        let doc = with_field("digest", cbor(|e| drop(e.str(digest))));
        assert!(matches!(verify_dev(&doc), Err(Error::UnsupportedDigest)));
    }
}

#[test]
fn wrong_types_duplicates_and_unknown_fields() {
    let doc = with_field("timestamp", cbor(|e| drop(e.str("now"))));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::WrongType { field: "timestamp" })
    ));
    let doc = with_field("module_id", cbor(|e| drop(e.bytes(b"x"))));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::WrongType { field: "module_id" })
    ));
    let doc = with_field("user_data", cbor(|e| drop(e.str("x"))));
    assert!(matches!(
        verify_dev(&doc),
        Err(Error::WrongType { field: "user_data" })
    ));
    let doc = with_field("timestamp", cbor(|e| drop(e.u64(0))));
    assert!(matches!(verify_dev(&doc), Err(Error::ZeroTimestamp)));

    let mut fields = good_fields();
    fields.push(("digest", cbor(|e| drop(e.str("SHA384")))));
    assert!(matches!(
        verify_dev(&signed(&raw_payload(&fields))),
        Err(Error::DuplicateField { field: "digest" })
    ));
    let mut fields = good_fields();
    fields.push(("extra", cbor(|e| drop(e.u8(1)))));
    assert!(matches!(
        verify_dev(&signed(&raw_payload(&fields))),
        Err(Error::UnknownField)
    ));
}

#[test]
fn pcr_rules() {
    let pcr = |i: u64, len: usize| {
        cbor(move |e| {
            e.map(1)
                .expect("enc")
                .u64(i)
                .expect("enc")
                .bytes(&vec![1u8; len])
                .expect("enc");
        })
    };
    assert!(matches!(
        verify_dev(&with_field("pcrs", pcr(32, 48))),
        Err(Error::PcrIndex { index: 32 })
    ));
    assert!(matches!(
        verify_dev(&with_field("pcrs", pcr(3, 47))),
        Err(Error::PcrLength { index: 3, len: 47 })
    ));
    for len in [32, 48, 64] {
        verify_dev(&with_field("pcrs", pcr(0, len))).expect("valid PCR length");
    }
    assert!(matches!(
        verify_dev(&with_field("pcrs", cbor(|e| drop(e.map(0))))),
        Err(Error::FieldLength {
            field: "pcrs",
            len: 0,
            ..
        })
    ));
    let dup = cbor(|e| {
        e.map(2).expect("enc");
        e.u8(1).expect("enc").bytes(&[0u8; 48]).expect("enc");
        e.u8(1).expect("enc").bytes(&[0u8; 48]).expect("enc");
    });
    assert!(matches!(
        verify_dev(&with_field("pcrs", dup)),
        Err(Error::DuplicateField { field: "pcrs" })
    ));
}

#[test]
fn cose_structure_rules() {
    let doc = good_doc();
    // Another tag.
    let mut tagged = vec![0xd8, 0x62]; // tag(98) = COSE_Sign
    tagged.extend(&doc);
    assert!(matches!(
        verify_dev(&tagged),
        Err(Error::NotCoseSign1 { .. })
    ));
    // Trailing bytes.
    let mut trailing = doc.clone();
    trailing.push(0x00);
    assert!(matches!(
        verify_dev(&trailing),
        Err(Error::TrailingBytes { .. })
    ));
    // Non-empty unprotected header.
    let cose = CoseSign1::decode(&doc).expect("cose");
    let with_unprotected = cbor(|e| {
        e.array(4)
            .expect("enc")
            .bytes(&cose.protected)
            .expect("enc");
        e.map(1)
            .expect("enc")
            .u8(4)
            .expect("enc")
            .bytes(b"kid")
            .expect("enc");
        e.bytes(&cose.payload)
            .expect("enc")
            .bytes(&cose.signature)
            .expect("enc");
    });
    assert!(matches!(
        verify_dev(&with_unprotected),
        Err(Error::NotCoseSign1 { .. })
    ));
    // Short signature.
    let short = cbor(|e| {
        e.array(4)
            .expect("enc")
            .bytes(&cose.protected)
            .expect("enc");
        e.map(0).expect("enc");
        e.bytes(&cose.payload)
            .expect("enc")
            .bytes(&cose.signature[..95])
            .expect("enc");
    });
    assert!(matches!(
        verify_dev(&short),
        Err(Error::FieldLength {
            field: "signature",
            len: 95,
            ..
        })
    ));
    // Three items; indefinite-length array.
    assert!(matches!(
        verify_dev(&[0x83, 0x40, 0xa0, 0x40]),
        Err(Error::NotCoseSign1 { .. })
    ));
    assert!(matches!(
        verify_dev(&[0x9f, 0x40, 0xa0, 0x40, 0x40, 0xff]),
        Err(Error::NotCoseSign1 {
            reason: "not a definite-length array"
        })
    ));
    assert!(matches!(verify_dev(&[]), Err(Error::MalformedCbor { .. })));
}

#[test]
fn error_messages_are_sentences() {
    let e = Error::CertificateExpired {
        position: CertPosition::Bundle(2),
    };
    assert_eq!(
        e.to_string(),
        "The certificate at cabundle[2] is not valid at the verification time."
    );
    assert!(Error::SignatureInvalid.to_string().ends_with('.'));
}

#[test]
fn dev_measurements_look_like_a_real_document() {
    let m: BTreeMap<u8, Vec<u8>> = dev_measurements(b"a");
    assert_eq!(m.len(), 16);
    assert!(m.values().all(|v| v.len() == 48));
    assert_ne!(m[&0], dev_measurements(b"b")[&0]);
}
